#pragma once
// The request path's own metrics storage (docs/operations.md, "Metrics"): counters
// and histograms per route and per upstream, in arrays sized and indexed once,
// when the Runtime is built from the config. The request path only does relaxed
// atomic adds on them: no lock, no allocation, no lookup by name. Each route's and
// upstream's block is shared by name with the previous config's (a reload): its
// counters go on from where they were, and a request still waiting under the old
// config leaves the same waiting gauge that the new config shows. The admin
// listener reads them at scrape time (admin/metrics_page) and turns them into
// Prometheus families there; this folder knows nothing of the format.
//
// A request's outcome is counted exactly once, when its answer is decided:
// the vendor's response head relayed (forwarded, or queued_then_forwarded if
// it waited for admission), or a response sluice wrote itself (by its error
// code). ExchangeMarks carries what a session knows of its current request
// between those points; the session calls one record_*() per point.

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "sluice/common/clock.hpp"
#include "sluice/common/error.hpp"
#include "sluice/metrics/histogram.hpp"

namespace sluice::metrics {

// Every Errc value, ok included (an index into the per-code counters).
inline constexpr std::size_t kErrcCount = static_cast<std::size_t>(Errc::unknown_priority) + 1;

// The outcome label of a request (sluice_requests_total{outcome}).
enum class Outcome : std::uint8_t {
    forwarded,              // the vendor's answer relayed, admitted at once
    queued_then_forwarded,  // the same, after waiting in the admission queue
    no_route,               // 404 no_route
    client_error,           // the request was refused as malformed, too large, too slow...
    synthetic_429,          // refused by a limit (queue_full, admission_timeout, key_capacity, vendor pause)
    upstream_error,         // sluice answered 502/503/504 for an upstream that failed or was busy
    unavailable,            // 503: draining, or too many client connections
};
inline constexpr std::size_t kOutcomeCount = 7;

Outcome outcome_of(Errc code) noexcept;
std::string_view outcome_name(Outcome outcome) noexcept;
// The Errc whose error_code_name() is `name` (a synthetic response's Sluice-Error).
std::optional<Errc> errc_from_name(std::string_view name) noexcept;

inline constexpr std::size_t kCacheLine = 64;

// One route's counters, on cache lines of their own: sessions on different
// io threads serving different routes never share a line.
struct alignas(kCacheLine) RouteMetrics {
    std::atomic<std::uint64_t> forwarded{0};
    std::atomic<std::uint64_t> queued_then_forwarded{0};
    // Admitted requests that a shadow limit (enforce: false) would have refused:
    // also counted under their real outcome.
    std::atomic<std::uint64_t> shadow_would_refuse{0};
    std::array<std::atomic<std::uint64_t>, kErrcCount> synthetic{};  // by Errc
    std::atomic<std::int64_t> waiting{0};  // requests of this route in the admission queue now
    AdmissionWaitHistogram admission_wait;
};

// One upstream's responses as the vendor sent them (before any retry).
struct alignas(kCacheLine) UpstreamMetrics {
    std::array<std::atomic<std::uint64_t>, 5> responses_by_class{};  // 1xx..5xx (final responses)
    std::atomic<std::uint64_t> responses_429{0};
    // The vendor's response failed after its head had gone to the client (the
    // connection to the client was cut): not an outcome of its own, the request
    // already counted as forwarded.
    std::atomic<std::uint64_t> failed_mid_body{0};
    ResponseTimeHistogram response_time;
};

// One priority class's admissions (docs/priorities.md): how long its requests waited for
// admission, how many wait now, how many a limit refused. Only with `priorities` configured.
struct alignas(kCacheLine) ClassMetrics {
    std::atomic<std::int64_t> waiting{0};
    std::atomic<std::uint64_t> limit_refusals{0};  // synthetic 429s (outcome synthetic_429)
    AdmissionWaitHistogram admission_wait;
};

// What a session knows of its current request, between the record_*() calls.
// Plain data, one per session, reset when a request begins.
struct ExchangeMarks {
    static constexpr std::size_t kUnrouted = static_cast<std::size_t>(-1);
    std::size_t route = kUnrouted;
    std::size_t upstream = 0;
    std::size_t priority_class = kUnrouted;  // none: no priorities configured, or not yet known
    bool waiting = false;                    // queued for admission now (waiting_since is set)
    bool was_queued = false;                 // waited for admission at least once
    bool answered = false;                   // counted as forwarded: the vendor's head was relayed
    Nanos waiting_since{0};                  // steady clock
    Nanos sent_at{0};                        // steady clock: the request's head went to the upstream
};

// Each of `names` gets the block `previous` holds under the same name (previous_names[i]
// names previous[i]), else a new one: how a reload carries per-route and per-upstream
// counters on. Reload time only: O(names), a hash map per call.
template <class Block>
std::vector<std::shared_ptr<Block>> carry_by_name(const std::vector<std::string>& names,
                                                  const std::vector<std::string>& previous_names,
                                                  const std::vector<std::shared_ptr<Block>>& previous) {
    std::unordered_map<std::string_view, std::size_t> previous_index;
    for (std::size_t i = 0; i < previous_names.size() && i < previous.size(); ++i)
        previous_index.emplace(previous_names[i], i);
    std::vector<std::shared_ptr<Block>> blocks;
    blocks.reserve(names.size() + 1);
    for (const auto& name : names) {
        const auto kept = previous_index.find(name);
        blocks.push_back(kept != previous_index.end() ? previous[kept->second] : std::make_shared<Block>());
    }
    return blocks;
}

class ProxyMetrics {
public:
    // Blocks for unnamed routes and upstreams, all at 0.
    ProxyMetrics(std::size_t route_count, std::size_t upstream_count);
    // The config's routes and upstreams, in index order. A name that `carried_from`
    // (the previous config's metrics) also has keeps that block, shared with it:
    // counts survive a reload, and what the old config's requests still add lands
    // in it too. A new name starts at 0; a name gone is not carried. The unrouted
    // block is always carried. Reload time only: O(names), a hash map per call.
    // Priority classes (`class_names`, empty without `priorities`) are carried the same way.
    ProxyMetrics(std::vector<std::string> route_names, std::vector<std::string> upstream_names,
                 std::vector<std::string> class_names, const ProxyMetrics* carried_from);

    // The request path. `now` is the steady clock, read by the caller only where needed.
    static void begin_request(ExchangeMarks& marks) noexcept { marks = ExchangeMarks{}; }
    static void routed(ExchangeMarks& marks, std::size_t route, std::size_t upstream) noexcept {
        marks.route = route;
        marks.upstream = upstream;
    }
    static void classed(ExchangeMarks& marks, std::size_t priority_class) noexcept {
        marks.priority_class = priority_class;
    }
    void queued(ExchangeMarks& marks, Nanos now) noexcept;
    // `now` is read only when the request waited (marks.waiting); else pass zero.
    void admitted(ExchangeMarks& marks, Nanos now, bool shadow_would_refuse) noexcept;
    static void sent(ExchangeMarks& marks, Nanos now) noexcept { marks.sent_at = now; }
    void upstream_responded(const ExchangeMarks& marks, unsigned status, Nanos now) noexcept;
    void relayed(ExchangeMarks& marks) noexcept;
    void synthetic(ExchangeMarks& marks, Errc code) noexcept;
    void failed_mid_body(const ExchangeMarks& marks) noexcept;
    // The session is gone (the client left while queued, among others).
    void session_ended(ExchangeMarks& marks) noexcept { stop_waiting(marks); }

    // Scrape time.
    std::size_t route_count() const noexcept { return route_count_; }
    std::size_t upstream_count() const noexcept { return upstream_count_; }
    const RouteMetrics& route(std::size_t index) const noexcept { return *routes_[index]; }
    // Requests that ended before a route was known (no_route, a malformed head, ...).
    const RouteMetrics& unrouted() const noexcept { return *routes_[route_count_]; }
    const UpstreamMetrics& upstream(std::size_t index) const noexcept { return *upstreams_[index]; }
    std::size_t class_count() const noexcept { return classes_.size(); }
    const ClassMetrics& priority_class(std::size_t index) const noexcept { return *classes_[index]; }

private:
    void stop_waiting(ExchangeMarks& marks) noexcept;
    RouteMetrics& slot(const ExchangeMarks& marks) noexcept {
        return *routes_[marks.route < route_count_ ? marks.route : route_count_];
    }
    ClassMetrics* class_slot(const ExchangeMarks& marks) noexcept {
        return marks.priority_class < classes_.size() ? classes_[marks.priority_class].get() : nullptr;
    }

    std::size_t route_count_;
    std::size_t upstream_count_;
    std::vector<std::string> route_names_;  // empty: unnamed (nothing carried from or to them)
    std::vector<std::string> upstream_names_;
    // Shared with the previous and next configs' metrics by name (see the constructor).
    std::vector<std::shared_ptr<RouteMetrics>> routes_;  // route_count_ + 1: the last is "unrouted"
    std::vector<std::shared_ptr<UpstreamMetrics>> upstreams_;
    std::vector<std::string> class_names_;
    std::vector<std::shared_ptr<ClassMetrics>> classes_;
};

}  // namespace sluice::metrics
