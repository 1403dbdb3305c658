#pragma once
// `sluice simulate` (docs/simulate.md): what sluice would have done to recorded traffic, found
// by running the daemon's own pieces on a simulated clock. Pure code: no Asio, no real clock.
//
// The same sequence as a client session and the limit service, by calling the same functions:
// the route table (route::RouteTable), the request's limit uses (limit::collect_limit_uses:
// keys and costs), the max wait (the route's, or a smaller Sluice-Max-Wait header,
// config::parse_max_wait_header), limit::make_limiter for every limit and one vendor gate per
// upstream, in the daemon's slot order, and one queue::AdmissionController with the daemon's
// default options. A discrete-event loop feeds it: arrivals in time order; before each, the
// controller is polled at every next_wakeup() up to it, and every exchange that ends (its
// admission plus the log's upstream time, or the default) releases its concurrency permits
// and polls, as LimitService::release does.
//
// Vendor feedback: a request whose log line keeps the vendor's answer (TrafficRequest::response)
// is answered at its admission plus its upstream time; with its upstream's feedback on, the
// signals are read (feedback::read_vendor_signals) and acted on by queue::react_to_vendor, as
// ClientSession::on_vendor_response and LimitService::react do, with the daemon's admission tally
// for what was admitted after it; a retry after a vendor 429 is submitted again, and its
// admission is the request's outcome (the retry's own answer is not logged: it succeeds).
//
// What it does not replay: body costs (no body is logged: such limits count their fixed cost),
// the shared (Redis) stage, reloads, and a client that leaves while queued.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "sluice/common/clock.hpp"
#include "sluice/common/error.hpp"
#include "sluice/config/config.hpp"
#include "sluice/config/vendor_policy.hpp"
#include "sluice/simulate/traffic.hpp"

namespace sluice::simulate {

struct SimulationOptions {
    // How long the vendor holds a request the log gives no upstream time for (a concurrency
    // limit's permit is held this long).
    Nanos upstream_time{std::chrono::milliseconds(100)};
    std::size_t listener_index = 0;  // the listener requests arrive on (logs do not say)
    std::string vendor;              // a `vendors:` instance to check the forwarded traffic against
    std::size_t plot_points = 600;   // time buckets of the series (bounded whatever the traffic)
};

enum class Verdict { at_once, delayed, refused, not_routed };
std::string_view verdict_name(Verdict verdict) noexcept;  // "at_once", "delayed", "refused", "not_routed"

// What sluice would have done to one request.
struct RequestOutcome {
    Verdict verdict = Verdict::not_routed;
    Nanos arrival{0};        // Unix time
    Nanos delay{0};          // admitted: admission - arrival; refused: how long it waited first
    Errc reason = Errc::ok;  // refused: queue_full, admission_timeout, key_capacity; not_routed: no_route
                             // (or malformed_request: a Sluice-Max-Wait header that is not a duration;
                             // cost_too_large: a cost header above what a limit can ever admit)
    std::optional<std::size_t> route;  // into Config::routes
    // The limit that refused it or held it back longest (into SimulationResult::limits).
    std::optional<std::size_t> limit;
};

struct DelayPercentiles {
    Nanos p50{0}, p90{0}, p99{0}, max{0};
};

// One point of a limit's series: the most of each quantity within its time bucket.
struct SeriesPoint {
    Nanos at{0};                 // the bucket's start (Unix time)
    std::int64_t usage = 0;      // units the limit counted (its own window; in flight for concurrency)
    std::size_t waiting = 0;     // requests waiting on the limit
    std::uint64_t admitted = 0;  // requests admitted through the limit within the bucket
};

struct LimitReport {
    std::string name;
    config::Algorithm algorithm = config::Algorithm::sliding_window;
    std::int64_t limit = 0;
    std::int64_t capacity = 0;  // the most units one key holds: a token bucket's burst, else `limit`
    Nanos window{0};
    bool enforce = true;
    bool vendor_gate = false;  // an upstream's vendor gate (routes without limits of their own)
    // Keyed on a request header (or a header cost) the traffic does not carry: one key, fixed cost.
    bool needs_missing_headers = false;
    std::uint64_t requests = 0;  // that used the limit
    std::uint64_t at_once = 0;
    std::uint64_t delayed = 0;
    // Refusals count on the limit that refused (as the daemon's metrics do): code -> count.
    std::vector<std::pair<std::string, std::uint64_t>> refused;
    std::int64_t peak_usage =
        0;  // the most units the limit counted for any key at any moment (of `capacity`)
    Nanos peak_at{0};
    std::size_t longest_queue = 0;  // the most requests waiting on it at once
    Nanos longest_queue_at{0};
    DelayPercentiles delays;  // over the admitted requests that used it (at once counts as 0)
    std::vector<SeriesPoint> series;
};

// A vendor's published rule (config/vendor_policy.hpp) against the simulated forwarded traffic.
struct VendorRuleReport {
    std::string name;
    config::PolicyRuleKind kind = config::PolicyRuleKind::rolling;
    std::int64_t limit = 0;
    Nanos window{0};
    std::uint64_t requests = 0;  // forwarded requests the rule counts
    std::int64_t peak = 0;  // most units in any window (rolling: trailing, fixed: its period) or in flight
    Nanos peak_at{0};
    bool exceeded = false;
    Nanos first_exceeded_at{0};
    std::vector<std::string> notes;  // assumptions made (a key the log does not carry, ...)
};

struct VendorReport {
    std::string instance;
    std::string vendor;
    std::string tier;
    std::vector<VendorRuleReport> rules;
    bool kept() const;
};

struct SimulationResult {
    std::vector<RequestOutcome> outcomes;  // in the traffic's order
    std::vector<LimitReport> limits;       // Config::limits, then one vendor gate per upstream
    std::vector<std::string> route_names;  // Config::routes' names (RequestOutcome::route)
    std::uint64_t requests = 0, at_once = 0, delayed = 0, not_routed = 0;
    std::vector<std::pair<std::string, std::uint64_t>> refused;  // code -> count
    DelayPercentiles delays;                                     // over every admitted request
    std::size_t limits_needing_missing_headers = 0;
    // Vendor feedback replayed (docs/simulate.md, "Vendor feedback"): the logged answers looked at,
    // those that paused or capped a limit, and the requests sent again after a vendor 429.
    std::uint64_t vendor_answers = 0, vendor_paused = 0, vendor_capped = 0, vendor_retried = 0;
    Nanos first_arrival{0}, last_event{0};
    Nanos bucket{0};  // the series' time bucket
    std::optional<VendorReport> vendor;
    std::string error;  // not empty: nothing was simulated (e.g. an unknown --vendor)
};

// Runs the traffic (any order: it is sorted by arrival) through the config's limits.
// `carries_headers`: the traffic's requests carry the headers limits key on (TrafficLog).
SimulationResult run_simulation(const config::Config& config, const std::vector<TrafficRequest>& traffic,
                                bool carries_headers, const SimulationOptions& options = {});

}  // namespace sluice::simulate
