// The vendor_policy section of a preset: what it reads, and the errors (file:line:col) for
// what it refuses.

#include "sluice/config/vendor_policy.hpp"

#include <string>

#include <catch2/catch.hpp>

#include "sluice/config/loader.hpp"

using namespace sluice::config;
using namespace std::chrono_literals;

namespace {

std::string error_of(const std::string& yaml) {
    try {
        parse_vendor_policy(yaml, "p.yaml");
    } catch (const ConfigError& e) {
        return e.what();
    }
    return "(no error)";
}

const std::string kHead = "vendor_policy:\n  vendor: V\n  source: https://v.example/limits\n  rules:\n";

}  // namespace

TEST_CASE("vendor_policy: every field is read", "[config][vendor_policy]") {
    const auto policy = parse_vendor_policy(R"(upstream: {url: https://x.example}
vendor_policy:
  vendor: Convertr
  source: "https://docs.example/rate-limits"
  tiers: [standard, partner]
  rules:
    - name: blanket
      kind: rolling
      limit: 3000
      window: 5m
    - name: lead-result
      kind: rolling
      limit: 1400
      window: 5m
      match: {methods: [get], path: "/api/v2.*/publisher/{publisher_id}/lead-result/{lead_id}"}
    - name: daily
      kind: fixed
      limit: 250000
      window: 1d
      utc_offset: -5h
      per: {header: Authorization}
      tier: partner
    - name: org
      kind: rolling
      limit: 60
      window: 1s
      per: {header: Authorization}
      per_group: organization
      match: {path_prefix: /api/v1/lead/}
    - name: units
      kind: rolling
      limit: 15000
      window: 1h
      cost: {header: X-Units, max: 100000}
    - name: in-flight
      kind: concurrency
      limit: 9
    - name: ny-day
      kind: fixed
      limit: 10
      window: 1d
      time_zone: America/New_York
)",
                                            "p.yaml");
    CHECK(policy.vendor == "Convertr");
    CHECK(policy.source == "https://docs.example/rate-limits");
    CHECK(policy.tiers == std::vector<std::string>{"standard", "partner"});
    CHECK(policy.default_tier() == "standard");
    REQUIRE(policy.rules.size() == 7);
    const auto& blanket = policy.rules[0];
    CHECK(blanket.kind == PolicyRuleKind::rolling);
    CHECK(blanket.limit == 3000);
    CHECK(blanket.window == 5min);
    CHECK(blanket.match.matches_everything());
    CHECK(blanket.account_wide());
    CHECK(blanket.location.line == 7);
    const auto& lead = policy.rules[1];
    CHECK(lead.match.methods == std::vector<std::string>{"GET"});
    CHECK(lead.match.path == "/api/v2.*/publisher/{publisher_id}/lead-result/{lead_id}");
    const auto& daily = policy.rules[2];
    CHECK(daily.kind == PolicyRuleKind::fixed);
    CHECK(daily.utc_offset == -5h);
    CHECK(daily.per_header == "Authorization");
    CHECK(daily.per_key());
    CHECK(daily.tier == "partner");
    const auto& org = policy.rules[3];
    CHECK(org.per_group == "organization");
    CHECK_FALSE(org.per_key());
    CHECK_FALSE(org.account_wide());
    CHECK(org.match.path_prefix == "/api/v1/lead/");
    const auto& units = policy.rules[4];
    CHECK(units.counts_units);
    CHECK(units.cost.header == "X-Units");
    CHECK(units.cost.max == 100000);
    CHECK(units.cost.default_units == 1);
    CHECK(policy.rules[5].kind == PolicyRuleKind::concurrency);
    CHECK(policy.rules[5].limit == 9);
    CHECK(policy.rules[6].time_zone == "America/New_York");

    // The partner tier adds its rule; the default (standard) does not have it.
    CHECK(policy.rules_for_tier("").size() == 6);
    CHECK(policy.rules_for_tier("standard").size() == 6);
    CHECK(policy.rules_for_tier("partner").size() == 7);
}

TEST_CASE("vendor_policy: errors name the place and what is expected", "[config][vendor_policy]") {
    CHECK(
        error_of("upstream: {url: https://x}\n") ==
        "p.yaml:1:1: no 'vendor_policy' section; expected a preset with vendor_policy: {vendor: ..., source: "
        "..., rules: [...]}");
    CHECK(error_of(kHead + "    - {name: a, kind: sliding, limit: 1, window: 1s}\n") ==
          "p.yaml:5:23: vendor_policy.rules[1].kind: unknown kind 'sliding'; expected one of rolling, fixed, "
          "concurrency");
    CHECK(error_of(kHead + "    - {name: a, kind: rolling, limit: 1}\n") ==
          "p.yaml:5:7: vendor_policy.rules[1]: missing 'window'; expected the window length, e.g. window: "
          "5m");
    CHECK(error_of(kHead + "    - {name: a, kind: rolling, limit: 0, window: 1s}\n") ==
          "p.yaml:5:39: vendor_policy.rules[1].limit: got '0'; expected an integer >= 1");
    CHECK(error_of(kHead + "    - {name: a, kind: rolling, limit: 1, window: 10}\n") ==
          "p.yaml:5:50: vendor_policy.rules[1].window: got '10'; expected a positive duration with a unit, "
          "e.g. 10s, 5m, 1d");
    CHECK(error_of(kHead + "    - {name: a, kind: rolling, limit: 1, window: 1s, wndow: 2s}\n") ==
          "p.yaml:5:54: vendor_policy.rules[1]: unknown key 'wndow'; expected one of name, kind, limit, "
          "window, "
          "utc_offset, time_zone, match, per, per_group, cost, tier");
    CHECK(error_of(kHead + "    - {name: a, kind: concurrency, limit: 9, window: 1s}\n") ==
          "p.yaml:5:54: vendor_policy.rules[1]: 'window' does not apply to a concurrency rule; expected only "
          "name, kind, limit, match, per, per_group, tier");
    CHECK(error_of(kHead + "    - {name: a, kind: rolling, limit: 1, window: 1s, utc_offset: 1h}\n") ==
          "p.yaml:5:66: vendor_policy.rules[1]: 'utc_offset' applies to fixed rules only; expected kind: "
          "fixed, or no utc_offset");
    CHECK(error_of(kHead +
                   "    - {name: a, kind: rolling, limit: 1, window: 1s, match: {path: \"/a/{x}\"}}\n") ==
          "(no error)");
    CHECK(error_of(kHead + "    - {name: a, kind: rolling, limit: 1, window: 1s, match: {path: nope}}\n") ==
          "p.yaml:5:68: vendor_policy.rules[1].match.path: 'nope' does not start with '/'; expected a path "
          "pattern starting with '/'");
    CHECK(error_of(kHead + "    - {name: a, kind: rolling, limit: 1, window: 1s, tier: gold}\n") ==
          "p.yaml:5:60: vendor_policy.rules[1].tier: unknown tier 'gold'; expected a 'tiers' list in "
          "vendor_policy first");
    CHECK(
        error_of(kHead + "    - {name: a, kind: rolling, limit: 1, window: 1s, per_group: org}\n") ==
        "p.yaml:5:65: vendor_policy.rules[1].per_group: per_group without per; expected per: {header: NAME} "
        "naming the key that is grouped");
    CHECK(error_of(kHead + "    - {name: a, kind: rolling, limit: 1, window: 1s}\n    - {name: a, kind: "
                           "rolling, limit: 2, window: 1s}\n") ==
          "p.yaml:6:7: vendor_policy.rules[2]: duplicate rule name 'a' (first at line 5); expected unique "
          "rule "
          "names");
}
