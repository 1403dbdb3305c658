#pragma once
// Everything a client session needs for one config snapshot: the config, the
// compiled routes, one connection pool per upstream, and the limit service.
// Immutable after construction except for the pools' and limits' internal
// (synchronised) state, so sessions on any thread share it through a
// shared_ptr; a reload (roadmap) builds a new Runtime and swaps the pointer.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "sluice/config/config.hpp"
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

struct Runtime {
    std::shared_ptr<const config::Config> config;
    route::RouteTable routes;
    std::vector<std::shared_ptr<upstream::ConnectionPool>> pools;  // index = Config::upstreams index
    // The limiters behind `limits`: Config::limits in order, then one vendor gate
    // per upstream (vendor_gates[u] has limit index vendor_gate_index(u)).
    std::vector<config::LimitConfig> vendor_gates;
    std::shared_ptr<LimitService> limits;
    ProxyCounters counters;
    std::vector<RouteFeedbackCounters> feedback;  // index = Config::routes index
    // Per route and per upstream (index = Config::routes / Config::upstreams index):
    // outcomes, admission waits, upstream responses (docs/operations-metrics.md).
    metrics::ProxyMetrics metrics;
    // Unix time at which this runtime (the process's config) was built: the
    // process start time and the config's load time as far as metrics tell.
    Nanos started_wall;
    std::atomic<bool> draining{false};
    IdleSessionRegistry idle_sessions;
    // Null when server.access_log is off: sessions then collect and format nothing.
    std::unique_ptr<AccessLog> access_log;

    Runtime(std::shared_ptr<const config::Config> cfg, route::RouteTable table)
        : config(std::move(cfg)),
          routes(std::move(table)),
          feedback(config->routes.size()),
          metrics(config->routes.size(), config->upstreams.size()),
          started_wall(
              std::chrono::duration_cast<Nanos>(std::chrono::system_clock::now().time_since_epoch())) {
        for (const auto& upstream : config->upstreams)
            vendor_gates.push_back(limit::vendor_gate_config(upstream.name));
    }

    std::size_t vendor_gate_index(std::size_t upstream_index) const {
        return config->limits.size() + upstream_index;
    }

    // The config of limiter `index` (a configured limit or a vendor gate).
    const config::LimitConfig& limit_config(std::size_t index) const {
        return index < config->limits.size() ? config->limits[index]
                                             : vendor_gates[index - config->limits.size()];
    }
};

}  // namespace sluice::proxy
