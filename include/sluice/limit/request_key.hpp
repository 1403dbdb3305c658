#pragma once
// From a request to the limits it uses: which key of each limit (hashed), and at
// what cost. Pure code: the I/O layer passes a RequestAttributes view.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/common/error.hpp"
#include "sluice/config/config.hpp"
#include "sluice/limit/limiter.hpp"
#include "sluice/route/route_table.hpp"

namespace sluice::limit {

// What key and cost extraction may look at. `header` returns the first value of
// a header by case-insensitive name, or nullopt.
struct RequestAttributes {
    std::string_view method;
    std::string_view query;  // raw query string without '?', may be empty
    const route::PathParams* path_params = nullptr;
    std::function<std::optional<std::string_view>(std::string_view)> header;
};

// One limit as used by one request.
struct LimitUse {
    std::size_t limit_index = 0;  // into Config::limits (and the controller's limiters)
    KeyHash key = 0;
    std::int64_t cost = 1;
};

// The key of `limit` for this request: 0 for an unkeyed limit; otherwise a
// 64-bit hash of the limit name and every key source's value (an absent
// header/parameter hashes as a distinct "absent" marker, so all requests
// lacking it share one bucket). Deterministic across processes (state files
// and a shared backend need the same key for the same value); never the raw value.
KeyHash request_key(const config::LimitConfig& limit, const RequestAttributes& request);

// The request's cost for `limit`: cost.fixed, or the cost header's value when
// present and a valid non-negative integer (saturated at INT64_MAX, never clamped:
// cost_too_large_message says whether it can be admitted).
std::int64_t request_cost(const config::LimitConfig& limit, const RequestAttributes& request);

// Why a request costing `units` on `limit` is refused at once (cost_too_large, docs/costs.md),
// or empty: above cost.max, or above what the limit can ever admit (its limit; its burst for a
// token bucket). Never clamped: counting less than the request costs would let the vendor see
// more than the limit. A shadow limit (enforce: false) refuses nothing.
std::string cost_too_large_message(const config::LimitConfig& limit, std::int64_t units);

// What a request's admission needs besides its uses (docs/priorities.md, docs/costs.md).
struct UseMarks {
    // Bit i: the request yields uses[i] (queue::AdmissionRequest::yields): its class is capped there.
    std::uint64_t yields = 0;
    // The use of the route's fair-shared limit (at most one), its caller and the caller's weight.
    std::optional<std::size_t> fair_use;
    std::size_t fair_limit = 0;  // that limit's index in Config::limits
    std::uint64_t fair_caller = 0;
    std::int64_t fair_weight = 1;
    // The caller as named (a view into the request's header, or the listener's name): only
    // valid while the request is; the access log copies it.
    std::string_view fair_caller_name;
    // The first limit (index in Config::limits) whose cost header asks for more than
    // cost_too_large_message allows, with that cost: the request is refused 422 at once.
    std::optional<std::size_t> too_costly;
    std::int64_t too_costly_units = 0;
};

// The limits one request on `route` uses, in the route's order, each with this request's key
// and cost (a body cost replaces it later, once the body is whole), each followed by the limits
// derived from it for priority classes (a class's cap, the room other classes leave a reserve)
// that count `priority_class`; `slot_of(i)` is where Config::limits[i] lives in the admission
// controller. A route without limits of its own whose upstream reads vendor feedback uses its
// upstream's vendor gate (in `vendor_gate_slot`): the gate admits everything until a vendor
// signal pauses or caps it. `listener` names the listener the request came in on (a fair share's
// caller may be it). The client session and `sluice simulate` both build a request's uses here,
// so a simulation asks the controller what the daemon would ask.
template <class SlotOf>
void collect_limit_uses(const config::Config& config, const config::RouteConfig& route,
                        const RequestAttributes& request, std::size_t priority_class,
                        std::string_view listener, SlotOf&& slot_of, std::size_t vendor_gate_slot,
                        std::vector<LimitUse>& uses, UseMarks& marks) {
    uses.clear();
    uses.reserve(route.limit_indexes.size());
    marks = UseMarks{};
    const auto add = [&](std::size_t limit_index) {
        const auto& limit = config.limits[limit_index];
        uses.push_back(
            LimitUse{slot_of(limit_index), request_key(limit, request), request_cost(limit, request)});
        if (!marks.too_costly && !limit.cost.header.empty() &&
            !cost_too_large_message(limit, uses.back().cost).empty()) {
            marks.too_costly = limit_index;
            marks.too_costly_units = uses.back().cost;
        }
    };
    const auto yield_last = [&] {
        if (uses.size() <= 64) marks.yields |= std::uint64_t{1} << (uses.size() - 1);
    };
    for (const auto limit_index : route.limit_indexes) {
        const auto& limit = config.limits[limit_index];
        if (limit.fair_share) {
            const auto& fair = *limit.fair_share;
            const std::string_view caller =
                fair.caller == config::FairShareConfig::Caller::listener
                    ? listener
                    : (request.header ? request.header(fair.header) : std::nullopt)
                          .value_or(std::string_view{});
            marks.fair_use = uses.size();
            marks.fair_limit = limit_index;
            marks.fair_caller = std::hash<std::string_view>{}(caller);
            marks.fair_caller_name = caller;
            marks.fair_weight = fair.weight_of(caller);
        }
        // A class capped on this limit yields it (and the room reserves leave) to the other
        // classes: waiting for its cap, it holds nobody else back (docs/priorities.md).
        bool capped = false;
        for (const auto& share : limit.class_shares)
            capped = capped || (share.class_index == priority_class && share.max_share);
        add(limit_index);
        if (capped) yield_last();
        for (const auto derived_index : limit.derived) {
            const auto& derived = config.limits[derived_index];
            if (!config::counts_class(derived, priority_class)) continue;
            add(derived_index);
            if (capped && derived.counted_classes != std::uint64_t{1} << priority_class) yield_last();
        }
    }
    if (uses.empty() && config.upstreams[route.upstream_index].feedback.enabled)
        uses.push_back(LimitUse{vendor_gate_slot, 0, 1});
}

// Why the request is refused at once for a header cost (422 cost_too_large, docs/costs.md): the
// message for marks.too_costly, or empty. The client session and `sluice simulate` both refuse by it.
std::string header_cost_refusal(const config::Config& config, const UseMarks& marks);

// A cost read from the request body (cost.body, docs/costs.md), or why none can be used:
// a cost that cost_too_large_message refuses is cost_too_large.
struct BodyRequestCost {
    std::int64_t cost = 0;
    Errc error = Errc::ok;  // cost_body_too_large, cost_unreadable or cost_too_large
    std::string message;    // for the client: which limit, what was wrong
};
// A count of units in a header (a request's cost.header, the vendor's cost.settle.header): a
// plain non-negative decimal integer, surrounding spaces allowed, saturated at INT64_MAX;
// anything else (empty, "-1", "2.5", "1e3", "12 units") is nullopt.
std::optional<std::int64_t> parse_unit_count(std::string_view value) noexcept;

// The largest body a body rule (cost.body, cost.settle.body) reads: its max_bytes, or the
// server's max_buffered_body_bytes when unset.
inline std::size_t body_rule_max_bytes(const config::BodyCostConfig& rule,
                                       std::size_t max_buffered_body_bytes) noexcept {
    return rule.max_bytes > 0 ? rule.max_bytes : max_buffered_body_bytes;
}
// The largest body `limit` reads its cost from (body_rule_max_bytes of its cost.body).
std::size_t body_cost_max_bytes(const config::LimitConfig& limit, std::size_t max_buffered_body_bytes);
// How a route's requests have their costs read beyond the head (docs/costs.md): worked out once
// per route when a config is taken into use, not per request.
struct RouteCostReading {
    bool body_costs = false;          // a limit reads its cost from the request body: held whole first
    bool settles = false;             // a limit settles its cost from the vendor's response
    std::size_t held_body_max = 0;    // the largest request body held (max_buffered_body_bytes at least)
    std::size_t settle_body_max = 0;  // the largest 2xx response body read to settle; 0: none is
};
RouteCostReading route_cost_reading(const config::Config& config, const config::RouteConfig& route);

// `body` is the whole request body. Call only for a limit with cost.body. Never throws.
BodyRequestCost body_request_cost(const config::LimitConfig& limit, std::string_view body,
                                  std::size_t max_buffered_body_bytes) noexcept;

// Short printable form of a key for logs and the admin page ("k:3f9a...").
std::string key_label(KeyHash key);

}  // namespace sluice::limit
