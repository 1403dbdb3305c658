// sluice check --vendor: the worst case a configuration lets reach a vendor, per rule. Every
// shipped preset keeps its own policy; each way of breaking one is caught.

#include "sluice/config/vendor_check.hpp"

#include <string>

#include <catch2/catch.hpp>

#include "sluice/config/loader.hpp"

using namespace sluice::config;
using namespace std::chrono_literals;

namespace {

std::shared_ptr<const Config> load(const std::string& yaml, double time_scale = 1.0) {
    LoadOptions options;
    options.presets_dir = SLUICE_SOURCE_DIR "/config/presets";
    options.time_scale = time_scale;
    return load_config_string(yaml, "user.yaml", options);
}

const RuleVerdict& verdict(const VendorCheck& check, const std::string& rule) {
    for (const auto& v : check.rules) {
        if (v.rule->name == rule) return v;
    }
    FAIL("no rule " << rule);
    throw;
}

}  // namespace

TEST_CASE("check: every shipped preset keeps its vendor's policy", "[config][vendor_check]") {
    for (const auto* preset : {"convertr", "intercom", "close", "constant-contact", "amplemarket"}) {
        for (const double scale : {1.0, 30.0}) {
            for (const auto* tier : {"", "partner"}) {
                if (std::string(tier) == "partner" && std::string(preset) != "constant-contact") continue;
                INFO(preset << " at time scale " << scale << " tier " << tier);
                std::string yaml = std::string("vendors:\n  v: {preset: ") + preset + ", path_prefix: /v/";
                if (*tier) yaml += std::string(", tier: ") + tier;
                const auto config = load(yaml + "}\n", scale);
                const auto check = check_vendor(*config, "v");
                INFO(format_vendor_check(check));
                CHECK(check.kept());
                CHECK(!check.rules.empty());
                for (const auto& v : check.rules) CHECK(!v.routes.empty());
            }
        }
    }
}

TEST_CASE("check: the bounds of the shipped presets, number by number", "[config][vendor_check]") {
    const auto convertr = check_vendor(*load("vendors:\n  c: {preset: convertr}\n"), "c");
    CHECK(*verdict(convertr, "login").worst_case == 100);
    CHECK(verdict(convertr, "login").routes == std::vector<std::string>{"c.login"});
    CHECK(*verdict(convertr, "lead-result").worst_case == 1400);
    CHECK(*verdict(convertr, "blanket").worst_case == 3000);
    CHECK(verdict(convertr, "blanket").routes.size() == 3);
    CHECK(*verdict(convertr, "concurrent").worst_case == 9);
    CHECK(verdict(convertr, "concurrent").bounded_by == std::vector<std::string>{"c.concurrent"});

    const auto intercom = check_vendor(*load("vendors:\n  i: {preset: intercom}\n"), "i");
    CHECK(*verdict(intercom, "per-10s").worst_case == 166);
    CHECK(*verdict(intercom, "per-minute").worst_case == 996);  // six windows of 10.1 s

    const auto close = check_vendor(*load("vendors:\n  c: {preset: close}\n"), "c");
    CHECK(*verdict(close, "lead-read-key").worst_case == 20);
    CHECK(*verdict(close, "lead-read-org").worst_case == 60);
    // The per-key limit does not bound the organization's rule, and says why.
    const auto& org_notes = verdict(close, "lead-read-org").notes;
    CHECK(std::find(
              org_notes.begin(), org_notes.end(),
              "limit c.lead-read-key is per Authorization and the rule per organization: it bounds the rule "
              "only if each organization uses one key") != org_notes.end());

    const auto cc = check_vendor(*load("vendors:\n  cc: {preset: constant-contact}\n"), "cc");
    CHECK(cc.tier == "standard");
    CHECK(cc.rules.size() == 3);  // the partner rules are not checked on the standard tier
    CHECK(*verdict(cc, "per-second").worst_case == 4);  // burst 1 + floor(4 * 1s / 1.05s)
    CHECK(*verdict(cc, "per-day").worst_case == 10000);
    CHECK(*verdict(cc, "token").worst_case == 1);

    const auto ample = check_vendor(*load("vendors:\n  a: {preset: amplemarket}\n"), "a");
    CHECK(*verdict(ample, "email-validations").worst_case == 15000);
    CHECK(verdict(ample, "email-validations").routes == std::vector<std::string>{"a.validations"});
    CHECK(*verdict(ample, "people-search").worst_case == 30);
    CHECK(*verdict(ample, "per-minute").worst_case == 500);
}

TEST_CASE("check: a limit raised over the vendor's is EXCEEDED", "[config][vendor_check]") {
    const auto config = load("vendors:\n  i:\n    preset: intercom\n    limits: {rolling: {limit: 200}}\n");
    const auto check = check_vendor(*config, "i");
    CHECK_FALSE(check.kept());
    CHECK_FALSE(verdict(check, "per-10s").kept);
    CHECK(*verdict(check, "per-10s").worst_case == 200);
    CHECK(format_vendor_check(check).find(
              "EXCEEDED  per-10s: 166 per rolling 10s; worst case 200 (i.rolling)") != std::string::npos);
}

TEST_CASE("check: a token bucket's burst can break a rolling window", "[config][vendor_check]") {
    const auto config =
        load("vendors:\n  cc:\n    preset: constant-contact\n    limits: {rate: {burst: 4}}\n");
    const auto check = check_vendor(*config, "cc");
    CHECK_FALSE(check.kept());
    CHECK(*verdict(check, "per-second").worst_case == 7);  // 4 at once, then 3 more within the second
    // Without the margin the refill alone fits 4 in the second, plus the one token in the bucket.
    const auto no_margin =
        load("vendors:\n  cc:\n    preset: constant-contact\n    limits: {rate: {margin: 0s}}\n");
    CHECK(*verdict(check_vendor(*no_margin, "cc"), "per-second").worst_case == 5);
}

TEST_CASE("check: a route outside every limit is unbounded", "[config][vendor_check]") {
    const auto config = load(R"(vendors:
  i: {preset: intercom, path_prefix: /intercom/}
routes:
  - name: raw
    match: {path_prefix: /raw/}
    strip_prefix: true
    upstream: i
)");
    const auto check = check_vendor(*config, "i");
    CHECK_FALSE(check.kept());
    const auto& v = verdict(check, "per-10s");
    CHECK_FALSE(v.worst_case.has_value());
    CHECK(v.routes == std::vector<std::string>{"raw", "i.all"});
    CHECK(std::find(v.notes.begin(), v.notes.end(), "route raw has no limit that counts toward this rule") !=
          v.notes.end());
    CHECK(format_vendor_check(check).find("worst case unbounded") != std::string::npos);
}

TEST_CASE("check: routes with different limits add up", "[config][vendor_check]") {
    // A second route with its own 100 per 10 s: the vendor may see 166 + 100.
    const auto config = load(R"(vendors:
  i: {preset: intercom, path_prefix: /intercom/}
limits:
  side: {algorithm: sliding_window, limit: 100, window: 10s}
routes:
  - name: side
    match: {path_prefix: /side/}
    strip_prefix: true
    upstream: i
    limits: [side]
)");
    const auto check = check_vendor(*config, "i");
    const auto& v = verdict(check, "per-10s");
    CHECK(*v.worst_case == 266);
    CHECK(v.bounded_by == std::vector<std::string>{"i.rolling", "side"});
    // The same route also under the preset's limit: 166 is the bound again.
    const auto shared = load(R"(vendors:
  i: {preset: intercom, path_prefix: /intercom/}
limits:
  side: {algorithm: sliding_window, limit: 100, window: 10s}
routes:
  - name: side
    match: {path_prefix: /side/}
    strip_prefix: true
    upstream: i
    limits: [side, i.rolling]
)");
    CHECK(*verdict(check_vendor(*shared, "i"), "per-10s").worst_case == 166);
}

TEST_CASE("check: a per-key limit does not bound an account-wide rule", "[config][vendor_check]") {
    // Intercom's limit keyed by Authorization: every key may send 166.
    const auto config =
        load("vendors:\n  i:\n    preset: intercom\n    limits: {rolling: {key: {header: Authorization}}}\n");
    const auto check = check_vendor(*config, "i");
    const auto& v = verdict(check, "per-10s");
    CHECK_FALSE(v.kept);
    CHECK_FALSE(v.worst_case.has_value());
    CHECK(v.notes.front() ==
          "limit i.rolling is per key and the rule account-wide: it bounds the rule only if a single key is "
          "used");
}

TEST_CASE("check: fixed windows, calendars and time zones", "[config][vendor_check]") {
    // The preset's day follows New York (time_zone), like the vendor's: aligned, 10,000.
    const auto preset = check_vendor(*load("vendors:\n  cc: {preset: constant-contact}\n"), "cc");
    CHECK(verdict(preset, "per-day").kept);
    CHECK(*verdict(preset, "per-day").worst_case == 10000);
    // A day at a fixed -5h is the vendor's day in winter only: in summer two of its days overlap
    // one of the vendor's.
    const auto config = load(
        "vendors:\n  cc:\n    preset: constant-contact\n    limits: {daily: {time_zone: null, "
        "utc_offset: -5h}}\n");
    const auto check = check_vendor(*config, "cc");
    const auto& v = verdict(check, "per-day");
    CHECK_FALSE(v.kept);
    CHECK(*v.worst_case == 20000);
    // Another zone: its days are as short as 23 hours against the vendor's.
    const auto tokyo = check_vendor(
        *load(
            "vendors:\n  cc:\n    preset: constant-contact\n    limits: {daily: {time_zone: Asia/Tokyo}}\n"),
        "cc");
    CHECK_FALSE(verdict(tokyo, "per-day").kept);
    const auto offsets = zone_offsets("America/New_York");
    REQUIRE(offsets.has_value());
    CHECK(*offsets == std::vector<Duration>{-5h, -4h});
    CHECK_FALSE(zone_offsets("../etc/passwd").has_value());
    CHECK_FALSE(zone_offsets("No/Such_Zone").has_value());
}

TEST_CASE("check: units from the request", "[config][vendor_check]") {
    // A request whose units are above cost.max is refused (cost_too_large), never counted as
    // less: a limit counting the vendor's header bounds the units whatever its max.
    const auto lower_max = load(
        "vendors:\n  a:\n    preset: amplemarket\n    limits: {validations: {cost: {header: X-Units, max: "
        "50000}}}\n");
    const auto lower_max_check = check_vendor(*lower_max, "a");
    const auto& kept = verdict(lower_max_check, "email-validations");
    CHECK(kept.kept);
    CHECK(*kept.worst_case == 15'000);
    CHECK(kept.bounded_by == std::vector<std::string>{"a.validations"});
    // A limit counting another header bounds the units only as requests: 500 requests per 61 s,
    // 60 such windows in the hour, 100,000 units each.
    const auto other_header = load(
        "vendors:\n  a:\n    preset: amplemarket\n    limits: {validations: {cost: {header: X-Emails}}}\n");
    const auto other_header_check = check_vendor(*other_header, "a");
    const auto& v = verdict(other_header_check, "email-validations");
    CHECK_FALSE(v.kept);
    CHECK(*v.worst_case == 3'000'000'000);
    CHECK(v.bounded_by == std::vector<std::string>{"a.all"});
}

TEST_CASE("check: unknown instance, no policy", "[config][vendor_check]") {
    const auto config = load("vendors:\n  i: {preset: intercom}\n");
    CHECK_THROWS_WITH(check_vendor(*config, "x"),
                      "no vendor instance 'x' in the configuration (there are: i)");
}

TEST_CASE("check: an organization limit keyed by group_by bounds the per-organization rule",
          "[config][vendor_check]") {
    // Keys of several organizations through one sluice: the -org limit keyed by the key's organization.
    const auto grouped = [](const std::string& unmapped) {
        return load(
            "vendors:\n  c:\n    preset: close\n    limits:\n      lead-read-org: {key: {header: "
            "Authorization, group_by: {groups: {acme: [k1, k2]}, unmapped: " +
            unmapped + "}}}\n");
    };
    const auto shared = check_vendor(*grouped("shared"), "c");
    CHECK(verdict(shared, "lead-read-org").kept);
    CHECK(verdict(shared, "lead-read-org").worst_case == 60);
    // Unlisted keys each in their own bucket: two of them may be one organization.
    const auto own = check_vendor(*grouped("own"), "c");
    const auto& v = verdict(own, "lead-read-org");
    CHECK_FALSE(v.kept);
    bool explained = false;
    for (const auto& note : v.notes) explained = explained || note.find("unmapped: own") != std::string::npos;
    CHECK(explained);
}

TEST_CASE("check: a cost read from the body or settled from the response bounds no requests",
          "[config][vendor_check][cost]") {
    for (const auto* cost : {"{body: {array_length: /items}}", "{default: 1, settle: {header: X-Charged}}"}) {
        INFO(cost);
        const auto config =
            load(std::string("vendors:\n  i:\n    preset: intercom\n    limits: {rolling: {cost: ") + cost +
                 "}}\n");
        const auto check = check_vendor(*config, "i");
        const auto report = format_vendor_check(check);
        INFO(report);
        CHECK_FALSE(check.kept());
        CHECK_FALSE(verdict(check, "per-10s").worst_case.has_value());
        CHECK(report.find(std::string(cost).find("body") != std::string::npos
                              ? "counts units from the request body (a request may cost 0), not requests"
                              : "is corrected from X-Charged (a request may end up costing 0)") !=
              std::string::npos);
    }
}
