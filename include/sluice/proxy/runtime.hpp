#pragma once
// The proxy's state: what lives as long as one configuration (Runtime) and
// what lives as long as the process (ProcessState).

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "sluice/config/config.hpp"
#include "sluice/limit/request_key.hpp"
#include "sluice/limit/vendor_gate.hpp"
#include "sluice/metrics/proxy_metrics.hpp"
#include "sluice/proxy/access_log.hpp"
#include "sluice/proxy/limit_service.hpp"
#include "sluice/route/route_table.hpp"
#include "sluice/upstream/connection_pool.hpp"

namespace sluice::proxy {

struct ProxyCounters {
    std::atomic<std::uint64_t> requests{0};
    std::atomic<std::uint64_t> forwarded{0};
    std::atomic<std::uint64_t> rejected_by_limits{0};
    std::atomic<std::uint64_t> no_route{0};
    std::atomic<std::uint64_t> upstream_errors{0};
    std::atomic<std::uint64_t> client_errors{0};
    std::atomic<std::int64_t> open_client_connections{0};
    std::atomic<std::uint64_t> session_exceptions{0};  // sessions closed by the crash barrier
    // Exceptions contained by the other barriers (common/crash_barrier.hpp): an
    // accept loop, the admin listener, and main's io_context::run() itself.
    std::atomic<std::uint64_t> listener_exceptions{0};
    std::atomic<std::uint64_t> admin_exceptions{0};
    std::atomic<std::uint64_t> loop_exceptions{0};
    std::atomic<std::uint64_t> admin_unauthorized{0};  // admin requests refused 401 (no or a wrong token)
    std::atomic<std::uint64_t> accept_failures{0};     // accept() errors (EMFILE, ENFILE, ENOBUFS...)
    std::atomic<std::uint64_t> refused_client_connections{0};  // over max_client_connections: 503 and close
    // The client left after admission, before its response began.
    std::atomic<std::uint64_t> abandoned_by_client{0};
    // 408: a request body stalled, or ran past client_body_total.
    std::atomic<std::uint64_t> body_timeouts{0};
    // 503: an upstream's max_streamed_bodies were all in use.
    std::atomic<std::uint64_t> streamed_body_refusals{0};
};

// The client sessions waiting for their next request header. On drain every one
// is woken at once (its idle read cancelled, so it closes), instead of staying
// open until client_idle while the process waits out its grace period.
class IdleSessionRegistry {
public:
    using Wake = std::function<void()>;  // must only post to the session's executor: it runs under no lock

    // Registers a session that is about to wait for a header. 0: draining has
    // begun already, the session should close instead of waiting.
    std::uint64_t add(Wake wake) {
        const std::lock_guard<std::mutex> lock(mutex_);
        if (draining_) return 0;
        const auto id = next_id_++;
        sessions_.emplace(id, std::move(wake));
        return id;
    }

    void remove(std::uint64_t id) {
        if (id == 0) return;
        const std::lock_guard<std::mutex> lock(mutex_);
        sessions_.erase(id);
    }

    // Wakes every registered session once; later add()s return 0.
    void wake_all_for_drain() {
        std::unordered_map<std::uint64_t, Wake> woken;
        {
            const std::lock_guard<std::mutex> lock(mutex_);
            draining_ = true;
            woken.swap(sessions_);
        }
        for (auto& [id, wake] : woken) wake();
    }

private:
    std::mutex mutex_;
    bool draining_ = false;
    std::uint64_t next_id_ = 1;
    std::unordered_map<std::uint64_t, Wake> sessions_;
};

// What listening to the vendor did, per route (docs/feedback.md).
struct RouteFeedbackCounters {
    std::atomic<std::uint64_t> vendor_429{0};    // 429s (and 503s with Retry-After) from the vendor
    std::atomic<std::uint64_t> paused{0};        // pauses applied (after a 429, or Remaining: 0)
    std::atomic<std::uint64_t> capped{0};        // allowances lowered to the vendor's Remaining
    std::atomic<std::uint64_t> lowered{0};       // learned limits lowered after a vendor 429
    std::atomic<std::uint64_t> retried{0};       // requests sent again after a vendor 429 (counted when sent)
    std::atomic<std::uint64_t> relayed_429{0};   // vendor 429s passed back to the client unchanged
    std::atomic<std::uint64_t> clamped{0};       // signals cut to max_pause or ignored as malformed
    std::atomic<std::uint64_t> paused_nanos{0};  // the pauses' lengths added up (as applied, after clamping)
};

// Reloads of the configuration (SIGHUP, POST /v1/reload), for /metrics and /status.
struct ReloadCounters {
    std::atomic<std::uint64_t> succeeded{0};
    std::atomic<std::uint64_t> failed{0};  // the file was invalid, or changed what a reload cannot
    std::atomic<bool> last_failed{false};
};

struct Runtime;
class LimitStateFile;

// What outlives a configuration, one per process: the limit state (owned by
// the LimitService, addressed by StableId), the counters, the drain flag, the
// idle-session registry and the access log. A reload builds a new Runtime on
// the same ProcessState and makes it current; connections that began under an
// older one take the current one at their next request, so old and new
// requests count against the same limit state.
struct ProcessState {
    std::shared_ptr<LimitService> limits;
    ProxyCounters counters;
    ReloadCounters reloads;
    std::atomic<bool> draining{false};
    IdleSessionRegistry idle_sessions;
    // Null when server.access_log is off: sessions then collect and format nothing.
    std::unique_ptr<AccessLog> access_log;
    // Null when server.state is off.
    std::shared_ptr<LimitStateFile> state_file;
    // Unix time at which the process built its first runtime.
    Nanos started_wall{
        std::chrono::duration_cast<Nanos>(std::chrono::system_clock::now().time_since_epoch())};

    // The runtime new requests use. Cheap to check: a session compares the
    // generation it holds with current_generation() (one relaxed load) and
    // takes the lock only when a reload happened.
    std::shared_ptr<Runtime> current() const {
        const std::lock_guard<std::mutex> lock(current_mutex_);
        return current_;
    }
    std::uint64_t current_generation() const noexcept { return generation_.load(std::memory_order_acquire); }
    void make_current(std::shared_ptr<Runtime> runtime, std::uint64_t generation) {
        const std::lock_guard<std::mutex> lock(current_mutex_);
        current_ = std::move(runtime);
        generation_.store(generation, std::memory_order_release);
    }

private:
    mutable std::mutex current_mutex_;
    std::shared_ptr<Runtime> current_;
    std::atomic<std::uint64_t> generation_{0};
};

// Everything a client session needs for one config snapshot: the config, the
// compiled routes, one connection pool per upstream, where each of the
// config's limits lives in the LimitService, and per-route counters.
// Immutable after construction except for the pools' and limits' internal
// (synchronised) state, so sessions on any thread share it through a shared_ptr.
struct Runtime {
    std::shared_ptr<ProcessState> process;
    std::shared_ptr<const config::Config> config;
    std::uint64_t generation = 1;  // 1 for the config loaded at start, +1 per reload
    Nanos loaded_wall;             // Unix time at which this config was loaded
    route::RouteTable routes;
    std::vector<std::shared_ptr<upstream::ConnectionPool>> pools;  // index = Config::upstreams index
    // The limiters' configs: Config::limits in order, then one vendor gate per
    // upstream; limit_slots[i] is where limiter i lives in the LimitService
    // (LimitUse::limit_index, the admission controller's index).
    std::vector<config::LimitConfig> vendor_gates;
    std::vector<limit::RouteCostReading> route_costs;  // index = Config::routes index
    std::vector<std::size_t> limit_slots;
    std::shared_ptr<LimitService> limits;  // the process's
    ProxyCounters& counters;               // the process's
    // Index = Config::routes index. Like `metrics`, a route keeps its counters
    // across a reload (shared by name with the previous runtime's).
    std::vector<std::shared_ptr<RouteFeedbackCounters>> feedback;
    // Per route and per upstream (index = Config::routes / Config::upstreams index):
    // outcomes, admission waits, upstream responses (docs/operations.md, "Metrics").
    // Carried across a reload by route and upstream name (ProxyMetrics).
    metrics::ProxyMetrics metrics;
    Nanos started_wall;  // the process's start
    std::atomic<bool>& draining;
    IdleSessionRegistry& idle_sessions;
    AccessLog* access_log;  // the process's; null when off

    // `previous`: the runtime this one replaces (a reload), whose per-route and
    // per-upstream counters it carries on by name; null at start.
    Runtime(std::shared_ptr<ProcessState> state, std::shared_ptr<const config::Config> cfg,
            route::RouteTable table, const Runtime* previous = nullptr)
        : process(std::move(state)),
          config(std::move(cfg)),
          loaded_wall(std::chrono::duration_cast<Nanos>(std::chrono::system_clock::now().time_since_epoch())),
          routes(std::move(table)),
          limits(process->limits),
          counters(process->counters),
          feedback(carried_feedback(*config, previous)),
          metrics(route_names(*config), upstream_names(*config), config->priorities.classes,
                  previous ? &previous->metrics : nullptr),
          started_wall(process->started_wall),
          draining(process->draining),
          idle_sessions(process->idle_sessions),
          access_log(process->access_log.get()) {
        for (const auto& upstream : config->upstreams)
            vendor_gates.push_back(limit::vendor_gate_config(upstream.name));
        route_costs.reserve(config->routes.size());
        for (const auto& route : config->routes)
            route_costs.push_back(limit::route_cost_reading(*config, route));
    }

    // The limiters' configs in limit_slots order.
    std::vector<config::LimitConfig> limiter_configs() const {
        std::vector<config::LimitConfig> all = config->limits;
        all.insert(all.end(), vendor_gates.begin(), vendor_gates.end());
        return all;
    }

    // The slot of Config::limits[i], and of upstream u's vendor gate.
    std::size_t limit_slot(std::size_t config_index) const { return limit_slots[config_index]; }
    std::size_t vendor_gate_index(std::size_t upstream_index) const {
        return limit_slots[config->limits.size() + upstream_index];
    }

    // Where this runtime's limiters live (LimitService::install), in limiter_configs() order.
    void set_limit_slots(std::vector<std::size_t> slots) {
        limit_slots = std::move(slots);
        std::size_t top = 0;
        for (const auto slot : limit_slots) top = std::max(top, slot + 1);
        config_index_of_slot_.assign(top, kNoConfigIndex);
        for (std::size_t i = 0; i < limit_slots.size(); ++i) config_index_of_slot_[limit_slots[i]] = i;
    }

    // The config of the limiter in `slot`: one of this runtime's, or (a request
    // that waited across a reload) whichever config the slot was made for.
    const config::LimitConfig& limit_config(std::size_t slot) const {
        const auto index = slot < config_index_of_slot_.size() ? config_index_of_slot_[slot] : kNoConfigIndex;
        if (index == kNoConfigIndex) return limits->slot_config(slot);
        return index < config->limits.size() ? config->limits[index]
                                             : vendor_gates[index - config->limits.size()];
    }

private:
    static std::vector<std::string> route_names(const config::Config& cfg) {
        std::vector<std::string> names;
        for (const auto& route : cfg.routes) names.push_back(route.name);
        return names;
    }
    static std::vector<std::string> upstream_names(const config::Config& cfg) {
        std::vector<std::string> names;
        for (const auto& upstream : cfg.upstreams) names.push_back(upstream.name);
        return names;
    }
    // Each route's feedback counters: the previous runtime's for a route of the same
    // name, else new ones.
    static std::vector<std::shared_ptr<RouteFeedbackCounters>> carried_feedback(const config::Config& cfg,
                                                                                const Runtime* previous) {
        if (!previous) return metrics::carry_by_name<RouteFeedbackCounters>(route_names(cfg), {}, {});
        return metrics::carry_by_name(route_names(cfg), route_names(*previous->config), previous->feedback);
    }

    static constexpr std::size_t kNoConfigIndex = static_cast<std::size_t>(-1);
    std::vector<std::size_t> config_index_of_slot_;
};

}  // namespace sluice::proxy
