// The scenario suite (issue 11): for each vendor, sluice loading the vendor's preset
// (config/presets/<vendor>.yaml) in front of a simulator that enforces the same preset's published
// rules (its vendor_policy), under more load than the vendor allows. Each scenario
// asserts zero vendor 429s, that no rule ever saw more than its limit in any window, that the
// binding rule's quota was used (>= 95 % over the saturated middle of the run), and that every
// request got an answer; two harder ones (a vendor stricter than published, a second consumer of
// the same key) bound the vendor 429s instead. Windows are scaled by each scenario's time scale,
// in the simulator and in sluice alike. A one-line summary per scenario goes to stdout.

#include <catch2/catch.hpp>

#include "scenarios/scenario.hpp"

using namespace sluice::test::sim;
using namespace std::chrono_literals;

namespace {

Fields api_key(int key) {
    return {{"Authorization", "Bearer key-" + std::to_string(key)}};
}

ClientGroup group(std::string name, int clients, std::string method,
                  std::function<std::string(int, std::uint64_t)> target,
                  std::function<Fields(int)> headers = {}, std::chrono::milliseconds pace = 0ms) {
    ClientGroup g;
    g.name = std::move(name);
    g.clients = clients;
    g.method = std::move(method);
    g.target = std::move(target);
    g.headers = std::move(headers);
    g.pace = pace;
    return g;
}

#if !SLUICE_SCENARIOS_FROM_PRESETS
Rule rolling(std::string name, std::int64_t limit, std::chrono::nanoseconds window,
             std::optional<Match> match = std::nullopt) {
    Rule rule;
    rule.name = std::move(name);
    rule.kind = Rule::Kind::rolling;
    rule.limit = limit;
    rule.window = window;
    rule.match = std::move(match);
    return rule;
}
#endif

// Intercom: 166 per rolling 10 s (its 1,000 per minute, enforced per 10 s; the preset also
// publishes the minute), X-RateLimit-* with the reset as a Unix time on every response. 50
// clients ask for many times the quota.
Scenario intercom_base() {
    Scenario s;
    s.name = "intercom";
#if SLUICE_SCENARIOS_FROM_PRESETS
    s.preset = "intercom";
    s.rules = preset_rules(s.preset);
#else
    s.rules = {rolling("per-10s", 166, 10s), rolling("per-minute", 1000, 1min)};
    s.routes = {{"all", std::nullopt, {"per-10s", "per-minute"}}};
    s.feedback = {"reset_mode: unix_seconds"};
#endif
    s.vendor.vendor = "intercom";
    s.vendor.style = Style::intercom;
    s.time_scale = 2;  // 10 s -> 5 s: the reset's whole seconds stay small against the window
    s.consumers = {{group(
        "contacts", 50, "GET",
        [](int c, std::uint64_t n) { return "/contacts/" + std::to_string(c) + "-" + std::to_string(n); }, {},
        30ms)}};
    s.duration = 18s;
    s.measure_after = 2500ms;
    s.binding = {"per-10s"};
    return s;
}

// Close: per endpoint group, 20/s per API key and 60/s per organization; headers for the limit
// closest to being hit on every response, 429s with retry-after and the JSON body.
Scenario close_base() {
    Scenario s;
    s.name = "close";
#if SLUICE_SCENARIOS_FROM_PRESETS
    s.preset = "close";
    s.rules = preset_rules(s.preset);  // lead reads and activity writes, per key and per organization
#else
    const Match lead_read{{"GET"}, "/api/v1/lead/**", ""};
    Rule key = rolling("lead-read-key", 20, 1s, lead_read);
    key.per = Per{"Authorization"};
    Rule org = rolling("lead-read-org", 60, 1s, lead_read);
    org.per = Per{"Authorization"};
    org.per_group = "organization";
    s.rules = {key, org};
    s.routes = {{"lead-read", lead_read, {"lead-read-key", "lead-read-org"}}};
    s.feedback = {"reset_mode: delta_seconds", "body_field: error.rate_reset"};
#endif
    s.vendor.vendor = "close";
    s.vendor.style = Style::close;
    for (int k = 0; k < 4; ++k) s.vendor.key_groups["Bearer key-" + std::to_string(k)] = "org-1";
    // 4 keys, 3 clients each: 80/s of key quota against 60/s for the organization.
    s.consumers = {{group(
        "leads", 12, "GET",
        [](int c, std::uint64_t n) {
            return "/api/v1/lead/?c=" + std::to_string(c) + "&n=" + std::to_string(n);
        },
        [](int c) { return api_key(c % 4); })}};
    s.duration = 8s;
    s.measure_after = 1s;
    s.binding = {"lead-read-org"};
    return s;
}

// Close with keys of two organizations through one sluice: each organization's 60/s holds its
// own four keys together (80/s of key quota each), so sluice must count per organization (a
// group_by key), not across both (which would use half of the vendor's quota).
Scenario close_two_organizations() {
    Scenario s = close_base();
    s.name = "close-two-orgs";
    s.vendor.key_groups.clear();
    for (int k = 0; k < 8; ++k)
        s.vendor.key_groups["Bearer key-" + std::to_string(k)] = k < 4 ? "org-1" : "org-2";
    s.consumers = {{group(
        "leads", 24, "GET",
        [](int c, std::uint64_t n) {
            return "/api/v1/lead/?c=" + std::to_string(c) + "&n=" + std::to_string(n);
        },
        [](int c) { return api_key(c % 8); })}};
    s.duration = 5s;
    return s;
}

// Convertr: rolling 5-minute windows, account-wide: 100 logins, 1,400 lead-results, 3,000 over
// every endpoint (a lead-result or a login counts against both), at most 9 in flight. The logins
// are saturated (12 clients for 100 per window): while they wait for their own window, the
// blanket must keep serving the others.
Scenario convertr_base() {
    Scenario s;
    s.name = "convertr";
#if SLUICE_SCENARIOS_FROM_PRESETS
    s.preset = "convertr";
    s.rules = preset_rules(s.preset);
#else
    const Match login{{"POST"}, "/api/v2.*/login", ""};
    const Match lead_result{{}, "/api/v2.*/publisher/{publisher_id}/lead-result/{lead_id}", ""};
    Rule concurrent;
    concurrent.name = "concurrent";
    concurrent.kind = Rule::Kind::concurrency;
    concurrent.limit = 9;  // "keep concurrent requests under 10"
    s.rules = {rolling("login", 100, 5min, login), rolling("lead-result", 1400, 5min, lead_result),
               rolling("blanket", 3000, 5min), concurrent};
    s.routes = {{"login", login, {"login", "blanket", "concurrent"}},
                {"lead-result", lead_result, {"lead-result", "blanket", "concurrent"}},
                {"other", std::nullopt, {"blanket", "concurrent"}}};
#endif
    s.vendor.vendor = "convertr";
    s.time_scale = 30;  // 5 min -> 10 s
    s.consumers = {
        {group("login", 12, "POST", [](int, std::uint64_t) { return std::string("/api/v2.1/login"); })},
        {group("lead-result", 6, "GET",
               [](int c, std::uint64_t n) {
                   return "/api/v2.1/publisher/" + std::to_string(c) + "/lead-result/" + std::to_string(n);
               })},
        {group("other", 6, "GET", [](int c, std::uint64_t n) {
            return "/api/v4/leads?client=" + std::to_string(c) + "&page=" + std::to_string(n);
        })}};
    s.duration = 16s;
    s.measure_after = 5s;  // the middle of the first window: one whole window to the end
    s.binding = {"blanket", "login"};
    return s;
}

// Constant Contact: 4/s and 10,000 per day (from midnight in New York), the OAuth token endpoint
// 1/s. API calls from three keys saturate the 4/s, a client refreshing its token in a loop the
// token endpoint.
Scenario constant_contact_base() {
    Scenario s;
    s.name = "constant-contact";
#if SLUICE_SCENARIOS_FROM_PRESETS
    // The preset's two upstreams (the API under /v3, the auth host) both lead to the simulator.
    s.preset = "constant-contact";
    s.rules = preset_rules(s.preset);
    s.upstreams = {{"api", "/v3"}, {"auth", ""}};
    const std::string api_path = "/contacts";
#else
    const Match api{{}, "", "/v3/"};
    Rule rate = rolling("per-second", 4, 1s, api);
    rate.per = Per{"Authorization"};
    Rule daily = rolling("per-day", 10'000, 24h, api);
    daily.kind = Rule::Kind::fixed;
    daily.utc_offset = -5h;
    daily.per = Per{"Authorization"};
    s.rules = {rate, daily, rolling("token", 1, 1s, Match{{"POST"}, "/oauth2/default/v1/token", ""})};
    s.routes = {{"token", Match{{"POST"}, "/oauth2/default/v1/token", ""}, {"token"}},
                {"api", api, {"per-second", "per-day"}}};
    const std::string api_path = "/v3/contacts";
#endif
    s.vendor.vendor = "constant-contact";
    s.consumers = {{group(
                       "contacts", 6, "GET",
                       [api_path](int c, std::uint64_t n) {
                           return api_path + "?client=" + std::to_string(c) + "&n=" + std::to_string(n);
                       },
                       [](int c) { return api_key(c % 3); })},
                   {group("token", 2, "POST",
                          [](int, std::uint64_t) { return std::string("/oauth2/default/v1/token"); })}};
    s.duration = 8s;
    s.measure_after = 1s;
    s.binding = {"per-second", "token"};
    return s;
}

// Amplemarket: per API key, 500 per minute across endpoints, /people/search 30 per minute, email
// validations 15,000 units per hour (units from a header), and credits that run out: the
// vendor's insufficient_credits error reaches the client as it was, sent once.
Scenario amplemarket_base() {
    Scenario s;
    s.name = "amplemarket";
    const Match validations{{"POST"}, "/email-validations/**", ""};
#if SLUICE_SCENARIOS_FROM_PRESETS
    s.preset = "amplemarket";
    s.rules = preset_rules(s.preset);
#else
    const Match search{{}, "/people/search", ""};
    const auto per_key = [](Rule rule) {
        rule.per = Per{"Authorization"};
        return rule;
    };
    Rule units = per_key(rolling("email-validations", 15'000, 1h, validations));
    units.cost = Cost{"X-Units", 100'000};
    s.rules = {per_key(rolling("per-minute", 500, 1min)), per_key(rolling("people-search", 30, 1min, search)),
               units};
    s.routes = {{"search", search, {"people-search", "per-minute"}},
                {"validations", validations, {"email-validations", "per-minute"}},
                {"other", std::nullopt, {"per-minute"}}};
#endif
    s.vendor.vendor = "amplemarket";
    s.vendor.credits =
        Credits{validations, 12'500, "X-Units", 402,
                R"({"_errors":[{"code":"insufficient_credits","title":"Insufficient credits"}]})"};
    s.time_scale = 30;  // 1 min -> 2 s, 1 h -> 2 min
    s.max_wait = 5s;    // a validation that would wait for the hour is refused at once (a queue bound)
    const auto key = [](int) { return api_key(0); };
    s.consumers = {
        {group(
            "people", 10, "GET",
            [](int c, std::uint64_t n) { return "/people/" + std::to_string(c) + "-" + std::to_string(n); },
            key)},
        {group(
            "search", 4, "POST", [](int, std::uint64_t) { return std::string("/people/search"); }, key)},
        {group(
            "validations", 2, "POST",
            [](int c, std::uint64_t n) {
                return "/email-validations/" + std::to_string(c) + "-" + std::to_string(n);
            },
            [](int) {
                auto fields = api_key(0);
                fields.emplace_back("X-Units", "2500");
                return fields;
            },
            200ms)}};
    s.duration = 10s;
    s.measure_after = 1s;
    s.binding = {"per-minute", "people-search"};
    return s;
}

// The stricter vendor: Intercom's published 166 per 10 s, but the vendor really allows 100 and
// says so only with a 429 and a Retry-After (no Remaining). sluice must learn the real limit.
Scenario stricter_intercom() {
    Scenario s = intercom_base();
    s.name = "stricter-intercom";
    s.vendor.enforced_limits = {{"per-10s", 100}};
    s.vendor.style = Style::bare;
    s.vendor.retry_after = true;
    s.duration = 20s;
    // A vendor that takes 40 ms to answer, not the simulator's usual 0.5 ms: many requests are on
    // their way when the first 429 comes back, so the first burst costs more (52 measured, 4 at
    // 0.5 ms) and each refusal's reading of what the vendor accepted is exposed to requests
    // overtaking each other. The targets after the first half window are the same (2 late 429s
    // and 100 % measured at 20, 40 and 80 ms).
    s.service_time = std::chrono::milliseconds(40);
    return s;
}

// A second consumer on the same key: another process spends about a quarter of a Close key's
// 20 per second straight at the vendor; Close's headers and 429s are all sluice has to go by.
Scenario close_second_consumer() {
    Scenario s = close_base();
    s.name = "close-second-consumer";
    s.consumers = {{group(
                       "leads", 4, "GET",
                       [](int c, std::uint64_t n) {
                           return "/api/v1/lead/?c=" + std::to_string(c) + "&n=" + std::to_string(n);
                       },
                       [](int) { return api_key(0); })},
                   {group(
                        "other-process", 1, "GET",
                        [](int, std::uint64_t n) { return "/api/v1/lead/?direct=" + std::to_string(n); },
                        [](int) {
                            return Fields{{"Authorization", "Bearer key-0"}, {kConsumerHeader, "direct"}};
                        },
                        200ms),
                    true}};
    s.binding = {"lead-read-key"};
    return s;
}

}  // namespace

TEST_CASE("intercom: 166 per rolling 10 s, X-RateLimit-* on every response", "[scenario][intercom]") {
    const auto s = intercom_base();
    check_scenario(s, run_scenario(s), Targets{});
}

TEST_CASE("close: 20/s per key and 60/s per organization, headers for the closest limit",
          "[scenario][close]") {
    const auto s = close_base();
    check_scenario(s, run_scenario(s), Targets{});
}

TEST_CASE("close with two organizations: each organization's limit held per organization (group_by)",
          "[scenario][close][group-by]") {
    const auto s = close_two_organizations();
    const auto r = run_scenario(s);
    check_scenario(s, r, Targets{});
    // Two counters at the vendor, each used >= 95 % (check_scenario): twice what one account-wide
    // limit would have let through.
    CHECK(r.rule("lead-read-org").partitions == 2);
}

TEST_CASE("convertr: 100 logins, 1,400 lead-results, 3,000 in all per rolling 5 min, 9 in flight",
          "[scenario][convertr]") {
    const auto s = convertr_base();
    check_scenario(s, run_scenario(s), Targets{});
}

TEST_CASE("constant contact: 4/s and 10,000/day, the token endpoint 1/s", "[scenario][constant-contact]") {
    const auto s = constant_contact_base();
    check_scenario(s, run_scenario(s), Targets{});
}

TEST_CASE("amplemarket: 500/min, search 30/min, validation units per hour, insufficient_credits relayed once",
          "[scenario][amplemarket]") {
    const auto s = amplemarket_base();
    const auto r = run_scenario(s);
    check_scenario(s, r, Targets{});
    CHECK(r.credits_refused >= 1);
    CHECK(r.credits_sent_twice == 0);  // never retried
    std::size_t relayed = 0;
    for (const auto& e : r.load.exchanges) {
        if (e.status == 402 && e.from_vendor && e.body.find("insufficient_credits") != std::string::npos)
            ++relayed;
    }
    CHECK(relayed == r.credits_refused);  // each reached its client unchanged
    CHECK(r.rule("email-validations").max_arrivals <= 15'000);
}

TEST_CASE("a vendor stricter than published: sluice learns the real limit", "[scenario][stricter]") {
    const auto s = stricter_intercom();
    Targets targets;
    // The first burst is the price of learning: up to the 66 the published limit exceeds the real
    // one by, each of them maybe refused once more on its retry. After the first half window:
    // at most 5 (issue 11), and at least 90 % of the real allowance used.
    targets.max_vendor_429 = 2 * 66;
    targets.max_vendor_429_late = 5;
    targets.min_utilization = 0.90;
    targets.sent_within_limits = false;
    targets.allowed_synthetic.insert("vendor_rate_limited");
    check_scenario(s, run_scenario(s), targets);
}

TEST_CASE("a second consumer on the same key: sluice takes what is left without a 429 storm",
          "[scenario][second-consumer]") {
    const auto s = close_second_consumer();
    Targets targets;
    // The other process's share changes from one second to the next, and only the vendor's
    // answers tell: when it slips a request into a window sluice had counted on, sluice's last
    // request of that window is refused. So about one 429 per 1 s window (4-7 measured after
    // the first second, of ~140 requests); the bound allows 10 in those 7 s, and the key's
    // quota (both consumers together) used at least 90 %.
    targets.max_vendor_429 = 12;
    targets.max_vendor_429_late = 10;
    targets.min_utilization = 0.90;
    targets.sent_within_limits = false;
    targets.allowed_synthetic.insert("vendor_rate_limited");
    check_scenario(s, run_scenario(s), targets);
}
