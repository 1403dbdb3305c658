#pragma once
// `sluice check --vendor NAME`: for each rule of a vendor's published policy (vendor_policy.hpp),
// the most requests (or units, or requests in flight) the EFFECTIVE configuration can let reach
// the vendor in any window of the rule's length, compared with the rule's limit.
//
// The bound is sound, never optimistic: a rule covers every route to the vendor whose match may
// overlap the rule's (overlap is assumed when unsure), and a route's requests are bounded only by
// limits that partition traffic the same way as the rule or more coarsely (an unkeyed limit
// bounds a per-key rule; a per-key limit does not bound an account-wide one). The capacity of a
// limit over a window W (windows are half-open, (t - W, t], as the vendor counts them):
//   sliding_window L per w (+ margin m)  L * ceil(W / (w + m))
//   fixed_window L per period p          L * W/p when the rule's calendar periods are made of
//                                        whole periods of the limit, else L * (ceil(W/p) + 1)
//   token_bucket burst b, L per w (+ m)  b + floor(L * W / (w + m))
//   concurrency                          no bound on a rate (it bounds requests in flight)
// Several limits on one route: the smallest capacity. A rule over several routes: the smallest of
// one limit shared by all of them, or a sum over groups of routes that covers them all. Rules on
// requests in flight are bounded by concurrency limits and by the upstreams' max_connections.
// docs/configuration.md ("sluice check --vendor") shows the report.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "sluice/config/config.hpp"
#include "sluice/config/vendor_policy.hpp"

namespace sluice::config {

struct RuleVerdict {
    const VendorRule* rule = nullptr;
    Duration window{0};                      // the rule's window after the time scale
    std::optional<std::int64_t> worst_case;  // nullopt: unbounded
    bool kept = false;                       // worst_case <= rule->limit
    std::vector<std::string> bounded_by;     // the limits (and upstreams) whose capacities sum to worst_case
    std::vector<std::string> routes;         // the routes the rule covers
    std::vector<std::string> notes;          // why a limit did not count, assumptions made
};

struct VendorCheck {
    std::string instance;
    std::string preset;
    std::string tier;
    std::shared_ptr<const VendorPolicy> policy;  // kept alive: the verdicts point at its rules
    std::vector<RuleVerdict> rules;

    bool kept() const;
};

// Checks the instance named `instance` of `config` (its policy, its tier). The rules' windows
// are divided by config.time_scale, as the limits' were at load. Throws std::invalid_argument
// naming the instances there are when there is no such instance or it has no policy.
VendorCheck check_vendor(const Config& config, const std::string& instance);

// The report: one line per rule, "kept" or "EXCEEDED", with the numbers.
std::string format_vendor_check(const VendorCheck& check);

// The UTC offsets a time zone has used since 2000 (from the system's tz database), or nullopt
// when it cannot be read: the check then assumes any offset.
std::optional<std::vector<Duration>> zone_offsets(const std::string& zone);

}  // namespace sluice::config
