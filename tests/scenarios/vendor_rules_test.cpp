// The scenario suite's yardstick, checked with exact times: the simulator's rules (rolling and
// calendar windows, concurrency, keys, organizations, units, matching), its answers in each
// vendor's format, and the report's "most in any window" and utilization.

#include "scenarios/vendor_rules.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

using namespace sluice::test::sim;
using namespace std::chrono_literals;

namespace {

constexpr Nanos kMs = 1'000'000;
constexpr Nanos kS = 1'000'000'000;

Request get(std::string path, Fields headers = {}) {
    return {"GET", std::move(path), std::move(headers)};
}

Rule rolling(std::string name, std::int64_t limit, std::chrono::nanoseconds window) {
    Rule r;
    r.name = std::move(name);
    r.limit = limit;
    r.window = window;
    return r;
}

unsigned status(VendorRules& v, const Request& r, Nanos at, Nanos unix_at = 0) {
    return v.arrive(r, at, unix_at == 0 ? at : unix_at).second.status;
}

std::string field(const Reply& reply, const std::string& name) {
    return find_field(reply.headers, name).value_or("<absent>");
}

}  // namespace

TEST_CASE(
    "a rolling rule accepts at most its limit in any window, and a request leaves it after exactly one "
    "window",
    "[simulator]") {
    VendorRules v({rolling("r", 2, 1s)}, {});
    CHECK(status(v, get("/a"), 0) == 200);
    CHECK(status(v, get("/a"), 100 * kMs) == 200);
    CHECK(status(v, get("/a"), 999 * kMs) == 429);  // refused: does not count
    CHECK(status(v, get("/a"), kS - 1) == 429);
    CHECK(status(v, get("/a"), kS) == 200);  // the first left at exactly 1 s
    CHECK(status(v, get("/a"), kS + 99 * kMs) == 429);
    CHECK(status(v, get("/a"), kS + 100 * kMs) == 200);
}

TEST_CASE("a vendor that counts its 429s refuses until the refusals have left the window too",
          "[simulator]") {
    Options options;
    options.count_refused = true;
    VendorRules v({rolling("r", 1, 1s)}, options);
    CHECK(status(v, get("/a"), 0) == 200);
    CHECK(status(v, get("/a"), 500 * kMs) == 429);
    CHECK(status(v, get("/a"), kS) == 429);  // the 429 at 0.5 s still counts, and so does this one
    CHECK(status(v, get("/a"), 2 * kS - 1) == 429);
    CHECK(status(v, get("/a"), 3 * kS) == 200);  // a whole window without a request
}

TEST_CASE("a request counts against every rule or none", "[simulator]") {
    Rule narrow = rolling("narrow", 1, 1s);
    narrow.match = Match{{}, "/api/v2.*/publisher/{publisher_id}/lead-result/{lead_id}", ""};
    VendorRules v({rolling("blanket", 3, 1s), narrow}, {});
    CHECK(status(v, get("/api/v2.1/publisher/7/lead-result/42"), 0) == 200);
    CHECK(status(v, get("/api/v2.10/publisher/7/lead-result/43"), 1) == 429);  // narrow is full
    CHECK(status(v, get("/api/v4/leads"), 2) == 200);  // not a lead-result: the blanket only
    CHECK(status(v, get("/api/v2.1/publisher/7/lead-result"), 3) == 200);  // no {lead_id}: not matched
    CHECK(status(v, get("/api/v4/leads"), 4) == 429);  // the blanket has 3, the refusal took none
    const auto& log = v.log();
    REQUIRE(log.size() == 5);
    CHECK(log[1].refused_by == "narrow");
    CHECK(log[4].refused_by == "blanket");
    CHECK(log[2].partitions[1].empty());  // narrow did not match it
}

TEST_CASE("methods narrow a match", "[simulator]") {
    Rule login = rolling("login", 1, 1s);
    login.match = Match{{"POST"}, "/api/v2.*/login", ""};
    VendorRules v({login}, {});
    CHECK(status(v, {"POST", "/api/v2.1/login", {}}, 0) == 200);
    CHECK(status(v, {"GET", "/api/v2.1/login", {}}, 1) == 200);  // a GET is not a login
    CHECK(status(v, {"POST", "/api/v2.1/login", {}}, 2) == 429);
}

TEST_CASE("per key and per organization: one counter per key, and one per organization across its keys",
          "[simulator]") {
    Rule key = rolling("key", 2, 1s);
    key.per = Per{"Authorization"};
    Rule org = rolling("org", 3, 1s);
    org.per = Per{"Authorization"};
    org.per_group = "organization";
    Options options;
    options.key_groups = {{"k1", "org-a"}, {"k2", "org-a"}, {"k3", "org-b"}};
    VendorRules v({key, org}, options);
    const auto as = [](const char* k) { return Fields{{"authorization", k}}; };
    CHECK(status(v, get("/", as("k1")), 0) == 200);
    CHECK(status(v, get("/", as("k1")), 1) == 200);
    CHECK(status(v, get("/", as("k1")), 2) == 429);  // k1's own limit
    CHECK(status(v, get("/", as("k2")), 3) == 200);  // org-a: 3 of 3
    CHECK(status(v, get("/", as("k2")), 4) == 429);  // k2 has room, org-a has not
    CHECK(v.log()[4].refused_by == "org");
    CHECK(status(v, get("/", as("k3")), 5) == 200);  // another organization
    CHECK(v.log()[5].partitions[1] == "org-b");
}

TEST_CASE("a fixed rule counts per calendar period, aligned to Unix time minus its utc_offset",
          "[simulator]") {
    Rule day = rolling("day", 2, 24h);
    day.kind = Rule::Kind::fixed;
    day.utc_offset = -5h;  // a day that starts at 05:00 UTC
    VendorRules v({day}, {});
    const Nanos day_start = 20'000 * 24 * 3600 * kS + 5 * 3600 * kS;  // 05:00 UTC on day 20000
    CHECK(status(v, get("/"), 1, day_start - 2) == 200);
    CHECK(status(v, get("/"), 2, day_start - 1) == 200);
    CHECK(status(v, get("/"), 3, day_start - 1) == 429);
    CHECK(status(v, get("/"), 4, day_start) == 200);  // a new day, the whole quota back
    CHECK(status(v, get("/"), 5, day_start + 1) == 200);
    CHECK(status(v, get("/"), 6, day_start + 2) == 429);
}

TEST_CASE("a concurrency rule refuses while its slots are busy, and an answer frees its slot",
          "[simulator]") {
    Rule slots;
    slots.name = "slots";
    slots.kind = Rule::Kind::concurrency;
    slots.limit = 2;
    VendorRules v({slots}, {});
    const auto a = v.arrive(get("/"), 0, 0).first;
    v.arrive(get("/"), 1, 1);
    CHECK(status(v, get("/"), 2) == 429);
    v.finish(a, 3);
    CHECK(status(v, get("/"), 3) == 200);
    const auto reports = analyze(v, 0, 10, 0);
    CHECK(reports[0].max_in_window == 2);
    CHECK(reports[0].max_arrivals == 3);  // the refused one was at the vendor too, if briefly
}

TEST_CASE("units come from a header, clamped to the rule's max (invalid or absent: 1)", "[simulator]") {
    Rule units = rolling("units", 100, 1s);
    units.cost = Cost{"X-Units", 60};
    VendorRules v({units}, {});
    CHECK(status(v, get("/", {{"X-Units", "30"}}), 0) == 200);
    CHECK(status(v, get("/", {{"X-Units", "500"}}), 1) == 200);  // counts as 60: 90 used
    CHECK(status(v, get("/", {{"X-Units", "11"}}), 2) == 429);
    CHECK(status(v, get("/", {{"X-Units", "x"}}), 3) == 200);  // 1
    CHECK(status(v, get("/"), 4) == 200);                      // 1
    CHECK(v.log()[1].costs[0] == 60);
}

TEST_CASE("stricter mode: the vendor enforces less than it publishes", "[simulator]") {
    Options options;
    options.enforced_limits = {{"r", 1}};
    VendorRules v({rolling("r", 3, 1s)}, options);
    CHECK(status(v, get("/"), 0) == 200);
    CHECK(status(v, get("/"), 1) == 429);
    CHECK(v.enforced_limit(0) == 1);
}

TEST_CASE("Intercom's answers: X-RateLimit-* on every response, the reset a Unix time rounded up",
          "[simulator]") {
    Options options;
    options.style = Style::intercom;
    VendorRules v({rolling("r", 2, 10s)}, options);
    const Nanos unix0 = 1'700'000'000 * kS + 250 * kMs;
    auto reply = v.arrive(get("/"), 0, unix0).second;
    CHECK(reply.status == 200);
    CHECK(field(reply, "X-RateLimit-Limit") == "2");
    CHECK(field(reply, "X-RateLimit-Remaining") == "1");
    CHECK(field(reply, "X-RateLimit-Reset") == "1700000011");  // 1700000010.25, rounded up
    CHECK(field(reply, "X-Vendor") == "sim");
    v.arrive(get("/"), kS, unix0 + kS);
    reply = v.arrive(get("/"), 2 * kS, unix0 + 2 * kS).second;
    CHECK(reply.status == 429);
    CHECK(field(reply, "X-RateLimit-Remaining") == "0");
    CHECK(field(reply, "X-RateLimit-Reset") == "1700000011");  // when the first leaves
}

TEST_CASE("Close's answers describe the limit closest to being hit, and a 429 names its limit in the body",
          "[simulator]") {
    Rule key = rolling("lead-key", 2, 1s);
    key.per = Per{"Authorization"};
    Rule org = rolling("lead-org", 3, 1s);
    org.per = Per{"Authorization"};
    org.per_group = "organization";
    Options options;
    options.style = Style::close;
    options.key_groups = {{"k1", "o"}, {"k2", "o"}};
    VendorRules v({key, org}, options);
    auto reply = v.arrive(get("/", {{"Authorization", "k1"}}), 0, 0).second;
    CHECK(field(reply, "x-rate-limit-limit") == "2");  // key: 1 left; org: 2 left
    CHECK(field(reply, "x-rate-limit-remaining") == "1");
    CHECK(field(reply, "x-rate-limit-reset") == "1.000");
    v.arrive(get("/", {{"Authorization", "k2"}}), 100 * kMs, 0);
    reply = v.arrive(get("/", {{"Authorization", "k2"}}), 200 * kMs, 0).second;
    // Both at 0 left: the one that frees later (k2's key at 1.1 s, the organization at 1.0 s).
    CHECK(field(reply, "x-rate-limit-limit") == "2");
    CHECK(field(reply, "x-rate-limit-remaining") == "0");
    CHECK(field(reply, "x-rate-limit-reset") == "0.900");
    reply = v.arrive(get("/", {{"Authorization", "k2"}}), 300 * kMs, 0).second;
    REQUIRE(reply.status == 429);
    CHECK(field(reply, "retry-after") == "1");  // 0.8 s, rounded up
    CHECK(field(reply, "x-rate-limit-reset") == "0.800");
    auto body = nlohmann::json::parse(reply.body);
    CHECK(body["error"]["rate_limit_type"] == "key");  // both refuse; the key frees later
    CHECK(body["error"]["rate_endpoint_group"] == "lead-key");
    CHECK(body["error"]["rate_reset"] == Approx(0.8));
    reply = v.arrive(get("/", {{"Authorization", "k1"}}), 350 * kMs, 0).second;
    REQUIRE(reply.status == 429);  // k1 has room, its organization has not
    body = nlohmann::json::parse(reply.body);
    CHECK(body["error"]["rate_limit_type"] == "org");
    CHECK(body["error"]["rate_reset"] == Approx(0.65));
}

TEST_CASE("a bare vendor's 429 carries only a Retry-After, when it sends one", "[simulator]") {
    Options options;
    options.retry_after = true;
    VendorRules v({rolling("r", 1, 10s)}, options);
    v.arrive(get("/"), 0, 0);
    const auto reply = v.arrive(get("/"), 2500 * kMs, 0).second;
    CHECK(reply.status == 429);
    CHECK(field(reply, "Retry-After") == "8");  // 7.5 s, rounded up
    CHECK(field(reply, "X-RateLimit-Remaining") == "<absent>");
}

TEST_CASE("credits: once spent, a matching request gets the configured error and counts nowhere",
          "[simulator]") {
    Rule units = rolling("units", 100, 1s);
    units.cost = Cost{"X-Units", 0};
    Options options;
    options.credits =
        Credits{Match{{}, "", "/validate"}, 50, "X-Units", 402, R"({"error":"insufficient_credits"})"};
    VendorRules v({units}, options);
    CHECK(status(v, {"POST", "/validate", {{"X-Units", "40"}}}, 0) == 200);
    const auto reply = v.arrive({"POST", "/validate", {{"X-Units", "20"}}}, 1, 1).second;
    CHECK(reply.status == 402);
    CHECK(reply.body.find("insufficient_credits") != std::string::npos);
    CHECK(status(v, {"POST", "/validate", {{"X-Units", "10"}}}, 2) == 200);  // fits what is left
    CHECK(status(v, get("/other", {{"X-Units", "50"}}), 3) == 200);          // outside the credits: units 100
    CHECK(v.log()[1].refused_by == "credits");
}

TEST_CASE("the most in any rolling window is exact, windows half-open at their start", "[simulator]") {
    using T = std::vector<std::pair<Nanos, std::int64_t>>;
    CHECK(max_in_rolling_window(T{}, 10) == 0);
    CHECK(max_in_rolling_window(T{{0, 1}, {9, 1}, {10, 1}}, 10) == 2);  // 0 has left at 10
    CHECK(max_in_rolling_window(T{{0, 1}, {9, 1}, {10, 1}}, 11) == 3);
    CHECK(max_in_rolling_window(T{{0, 5}, {3, 1}, {12, 7}}, 10) == 8);
}

TEST_CASE("utilization: accepted over whole windows of the measured interval, all partitions",
          "[simulator]") {
    Rule key = rolling("key", 2, 1s);
    key.per = Per{"k"};
    VendorRules v({key}, {});
    for (Nanos t = 0; t < 4 * kS; t += 100 * kMs) {
        v.arrive(get("/", {{"k", "a"}}), t, t);
        if (t < 2 * kS) v.arrive(get("/", {{"k", "b"}}), t, t);
    }
    const auto r = analyze(v, 500 * kMs, 3900 * kMs, 0);  // [0.5 s, 3.5 s): 3 windows
    CHECK(r[0].max_in_window == 2);
    CHECK(r[0].max_arrivals == 10);  // every 100 ms, per key
    CHECK(r[0].partitions == 2);
    CHECK(r[0].allowed == 2 * 3 * 2);
    CHECK(r[0].accepted == 6 + 2);  // a: 1.0, 1.1, 2.0, 2.1, 3.0, 3.1 s; b (sends until 2 s): 1.0, 1.1 s
}
