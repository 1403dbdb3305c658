#pragma once
// A vendor's published rate-limit rules, as data: the `vendor_policy:` section of a preset
// (config/presets/<vendor>.yaml). It is kept apart from the preset's limits on purpose: the
// limits are how sluice keeps the rules, the policy is what the vendor says, and
// `sluice check --vendor` (vendor_check.hpp) compares the two; the scenario suite's simulator
// enforces the same rules. The normal loader validates this section and otherwise ignores it.
//
//   vendor_policy:
//     vendor: Convertr
//     source: "https://..."
//     tiers: [standard, partner]      # optional; the first is the default
//     rules:
//       - name: blanket               # unique in the policy
//         kind: rolling               # rolling | fixed | concurrency
//         limit: 3000                 # per window (units when `cost` is given); in flight for concurrency
//         window: 5m                  # rolling and fixed only
//         utc_offset: -5h             # fixed only, optional (or time_zone: America/New_York)
//         match: {methods: [GET], path: "/api/v2.*/lead-result/{lead_id}"}   # or path_prefix; optional
//         per: {header: Authorization}   # optional: one window per API key
//         per_group: organization     # optional: one window per group of keys (Close's organization)
//         cost: {header: X-Units, max: 100000}   # optional: the rule counts units, not requests
//         tier: partner               # optional: the rule holds only on that tier

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/config/config.hpp"

namespace sluice::config {

enum class PolicyRuleKind { rolling, fixed, concurrency };

// Which requests a rule counts. Empty fields match everything; `path` uses the route pattern
// syntax ({param}, "v2.*", trailing /**), `path_prefix` a plain prefix; at most one of the two.
struct PolicyMatch {
    std::vector<std::string> methods;  // upper case
    std::string path;
    std::string path_prefix;

    bool matches_everything() const { return methods.empty() && path.empty() && path_prefix.empty(); }
};

// Units a request costs under a rule that counts units: the value of `header`, `default_units`
// when absent, never more than `max` per request (the vendor's per-request cap; 0 = none).
struct PolicyCost {
    std::string header;
    std::int64_t default_units = 1;
    std::int64_t max = 0;
};

struct VendorRule {
    std::string name;
    PolicyRuleKind kind = PolicyRuleKind::rolling;
    std::int64_t limit = 0;  // requests (or units) per window; requests in flight for concurrency
    Duration window{0};      // rolling: length; fixed: period aligned to UTC midnight + utc_offset
    Duration utc_offset{0};  // fixed only
    std::string time_zone;   // fixed only, IANA name, instead of utc_offset (kept as written)
    PolicyMatch match;       // empty: every request to the vendor
    std::string per_header;  // non-empty: one window per value of this header (per API key)
    std::string per_group;   // non-empty: one window per group of keys, e.g. "organization"
    bool counts_units = false;
    PolicyCost cost;          // when counts_units
    std::string tier;         // empty: every tier
    SourceLocation location;  // where the rule was written

    bool per_key() const { return !per_header.empty() && per_group.empty(); }
    bool account_wide() const { return per_header.empty() && per_group.empty(); }
};

struct VendorPolicy {
    std::string vendor;
    std::string source;              // where the rules were published
    std::vector<std::string> tiers;  // empty: no tiers
    std::vector<VendorRule> rules;
    SourceLocation location;  // of the vendor_policy section

    // The tier in force when none is chosen: the first listed, or "" without tiers.
    std::string default_tier() const { return tiers.empty() ? std::string() : tiers.front(); }
    // The rules that hold on `tier` ("" = the default tier): those without a tier, and its own.
    std::vector<const VendorRule*> rules_for_tier(std::string_view tier) const;
};

// Reads the `vendor_policy:` section of a preset file. Throws ConfigError (loader.hpp) with
// file:line:column for a missing section, an unknown key or a bad value.
VendorPolicy load_vendor_policy(const std::string& preset_file);

// Same, from text; `source_name` stands in for the file name in messages.
VendorPolicy parse_vendor_policy(const std::string& yaml_text, const std::string& source_name);

}  // namespace sluice::config
