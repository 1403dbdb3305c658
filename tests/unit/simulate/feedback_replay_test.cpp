// `sluice simulate` replays the vendor's logged answers as the daemon reacts to them
// (queue::react_to_vendor): pauses, caps, the retry after a 429, all on the simulated clock,
// against answers worked out by hand.

#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "sluice/config/loader.hpp"
#include "sluice/simulate/simulator.hpp"

#include "unit/simulate/simulate_support.hpp"

using namespace sluice;
using namespace sluice::simulate;
using namespace std::chrono_literals;

using sluice::simulate::test::kStart;
using sluice::simulate::test::load;

namespace {

// A 5/s window, wide enough that only the vendor's feedback holds anything back. Learning is
// off (it would lower the limit after a 429, tested in tests/unit/feedback), and so are retries
// unless FEEDBACK / RETRY say otherwise.
std::string config_with(const std::string& feedback, const std::string& retry = "{on_vendor_429: false}") {
    return R"(
upstreams:
  vendor: {url: "http://127.0.0.1:9", feedback: )" +
           feedback + R"(}
limits:
  five: {algorithm: sliding_window, limit: 5, window: 1s}
routes:
  - {name: api, match: {path_prefix: /v1/}, upstream: vendor, limits: [five], queue: {max_wait: 5s},
     retry: )" +
           retry + R"(}
)";
}

TrafficRequest get(Nanos at, Nanos upstream = 100ms) {
    TrafficRequest request;
    request.at = kStart + at;
    request.method = "GET";
    request.host = "api.example.com";
    request.path = "/v1/items";
    request.upstream_time = upstream;
    return request;
}

TrafficRequest answered(Nanos at, unsigned status, std::vector<std::pair<std::string, std::string>> headers) {
    auto request = get(at);
    request.response = LoggedResponse{status, std::move(headers), std::nullopt};
    return request;
}

}  // namespace

TEST_CASE("simulate feedback: a logged 429 with Retry-After: 2 pauses the limit until it ends",
          "[simulate][feedback]") {
    const auto config = load(config_with("{learn: false}"));
    // 0 s: answered 429 at 0.1 s, Retry-After 2: paused until 2.1 s. 0.05 s: before the answer, at
    // once. 0.5 s and 1.5 s: wait for the pause's end, 2.1 s. 3 s: after it, at once.
    const std::vector<TrafficRequest> traffic{answered(0ms, 429, {{"Retry-After", "2"}}), get(50ms),
                                              get(500ms), get(1500ms), get(3s)};
    const auto result = run_simulation(*config, traffic, true);
    REQUIRE(result.error.empty());
    CHECK(result.outcomes[0].verdict == Verdict::at_once);  // its 429 went back to the client
    CHECK(result.outcomes[1].verdict == Verdict::at_once);
    CHECK(result.outcomes[2].verdict == Verdict::delayed);
    CHECK(result.outcomes[2].delay == 1600ms);
    CHECK(result.outcomes[3].verdict == Verdict::delayed);
    CHECK(result.outcomes[3].delay == 600ms);
    CHECK(result.outcomes[4].verdict == Verdict::at_once);
    CHECK(result.at_once == 3);
    CHECK(result.delayed == 2);
    CHECK(result.delays.max == 1600ms);
    CHECK(result.vendor_answers == 1);
    CHECK(result.vendor_paused == 1);
    CHECK(result.vendor_retried == 0);
}

TEST_CASE("simulate feedback: a 429 without headers pauses for default_pause (the access log's case)",
          "[simulate][feedback]") {
    const auto config = load(config_with("{learn: false, default_pause: 3s}"));
    const std::vector<TrafficRequest> traffic{answered(0ms, 429, {}), get(1s)};
    const auto result = run_simulation(*config, traffic, true);
    REQUIRE(result.error.empty());
    CHECK(result.outcomes[1].verdict == Verdict::delayed);
    CHECK(result.outcomes[1].delay == 2100ms);  // paused from 0.1 s to 3.1 s
}

TEST_CASE(
    "simulate feedback: X-RateLimit-Remaining with a reset caps the limit, less what was admitted after",
    "[simulate][feedback]") {
    const auto config = load(config_with("{learn: false}"));
    SECTION("Remaining 1, one request admitted after the answered one: nothing left until the reset") {
        // 0 s answered at 0.1 s: 1 remaining until 0.1 + 2 = 2.1 s; the request of 0.05 s reached
        // the vendor after it, so the cap is 1 - 1 = 0 and the requests of 0.5 s wait for 2.1 s.
        const std::vector<TrafficRequest> traffic{
            answered(0ms, 200, {{"X-RateLimit-Remaining", "1"}, {"X-RateLimit-Reset", "2"}}), get(50ms),
            get(500ms), get(500ms)};
        const auto result = run_simulation(*config, traffic, true);
        REQUIRE(result.error.empty());
        CHECK(result.outcomes[1].verdict == Verdict::at_once);
        CHECK(result.outcomes[2].verdict == Verdict::delayed);
        CHECK(result.outcomes[2].delay == 1600ms);
        CHECK(result.outcomes[3].verdict == Verdict::delayed);
        CHECK(result.outcomes[3].delay == 1600ms);
    }
    SECTION("Remaining 2: one more goes at once, the next waits for the reset") {
        const std::vector<TrafficRequest> traffic{
            answered(0ms, 200, {{"X-RateLimit-Remaining", "2"}, {"X-RateLimit-Reset", "2"}}), get(50ms),
            get(500ms), get(500ms)};
        const auto result = run_simulation(*config, traffic, true);
        REQUIRE(result.error.empty());
        CHECK(result.outcomes[2].verdict == Verdict::at_once);
        CHECK(result.outcomes[3].verdict == Verdict::delayed);
        CHECK(result.outcomes[3].delay == 1600ms);
    }
}

TEST_CASE("simulate feedback: feedback.enabled: false ignores the logged answers", "[simulate][feedback]") {
    const auto config = load(config_with("{enabled: false}"));
    const std::vector<TrafficRequest> traffic{
        answered(0ms, 429, {{"Retry-After", "2"}}), get(500ms),
        answered(1s, 200, {{"X-RateLimit-Remaining", "0"}, {"X-RateLimit-Reset", "2"}}), get(1500ms)};
    const auto result = run_simulation(*config, traffic, true);
    REQUIRE(result.error.empty());
    CHECK(result.at_once == 4);
    CHECK(result.delayed == 0);
    CHECK(result.vendor_answers == 0);
}

TEST_CASE("simulate feedback: a 429'd request is retried after the pause and counted once, as the retry",
          "[simulate][feedback]") {
    SECTION("the pause ends before its deadline: the retry is its outcome") {
        const auto config = load(config_with("{learn: false}", "{on_vendor_429: true}"));
        // 429 at 0.1 s, Retry-After 1: the retry, queued at 0.1 s, and the request of 0.5 s both
        // leave at 1.1 s, when the pause ends.
        const std::vector<TrafficRequest> traffic{answered(0ms, 429, {{"Retry-After", "1"}}), get(500ms)};
        const auto result = run_simulation(*config, traffic, true);
        REQUIRE(result.error.empty());
        CHECK(result.outcomes[0].verdict == Verdict::delayed);
        CHECK(result.outcomes[0].delay == 1100ms);
        CHECK(result.outcomes[1].verdict == Verdict::delayed);
        CHECK(result.outcomes[1].delay == 600ms);
        CHECK(result.requests == 2);
        CHECK(result.delayed == 2);
        CHECK(result.at_once == 0);
        CHECK(result.limits[0].delayed == 2);
        CHECK(result.limits[0].at_once == 0);
        CHECK(result.delays.max == 1100ms);
        CHECK(result.vendor_retried == 1);
    }
    SECTION("the pause outlasts its deadline: not retried, the vendor's 429 goes back") {
        const auto config = load(config_with("{learn: false}", "{on_vendor_429: true}"));
        const std::vector<TrafficRequest> traffic{answered(0ms, 429, {{"Retry-After", "10"}})};
        const auto result = run_simulation(*config, traffic, true);
        REQUIRE(result.error.empty());
        CHECK(result.outcomes[0].verdict == Verdict::at_once);
        CHECK(result.at_once == 1);
    }
    SECTION("a POST is not retried unless non_idempotent") {
        const auto config = load(config_with("{learn: false}", "{on_vendor_429: true}"));
        auto post = answered(0ms, 429, {{"Retry-After", "1"}});
        post.method = "POST";
        const auto result = run_simulation(*config, std::vector<TrafficRequest>{post}, true);
        REQUIRE(result.error.empty());
        CHECK(result.outcomes[0].verdict == Verdict::at_once);
    }
}

TEST_CASE("simulate feedback: the logs carry the vendor's answer", "[simulate][feedback]") {
    SECTION("jsonl: \"response\" with status, headers and body") {
        std::istringstream in(R"({"timestamp": 1796637600, "method": "GET", "host": "a", "path": "/v1/x", )"
                              R"("response": {"status": 429, "headers": {"Retry-After": "2"}, "body": "{}"}})"
                              "\n"
                              R"({"timestamp": 1796637601, "method": "GET", "host": "a", "path": "/v1/x"})"
                              "\n");
        const auto log = read_traffic(in, "t.jsonl");
        REQUIRE(log.error.empty());
        REQUIRE(log.requests.size() == 2);
        REQUIRE(log.requests[0].response);
        CHECK(log.requests[0].response->status == 429);
        REQUIRE(log.requests[0].response->headers.size() == 1);
        CHECK(log.requests[0].response->headers[0].second == "2");
        CHECK(log.requests[0].response->body == std::optional<std::string>("{}"));
        CHECK_FALSE(log.requests[1].response);
    }
    SECTION("jsonl: a response without a status is an error naming the line") {
        std::istringstream in(
            R"({"timestamp": 1796637600, "method": "GET", "host": "a", "path": "/v1/x", "response": {}})"
            "\n");
        const auto log = read_traffic(in, "t.jsonl");
        CHECK(log.error.find("t.jsonl:1") != std::string::npos);
        CHECK(log.error.find("status") != std::string::npos);
    }
    SECTION("csv: response_status and response:NAME columns") {
        std::istringstream in(
            "timestamp,method,host,path,response_status,response:Retry-After,Authorization\n"
            "1796637600,GET,a,/v1/x,429,2,key-a\n"
            "1796637601,GET,a,/v1/x,,,key-a\n");
        const auto log = read_traffic(in, "t.csv");
        REQUIRE(log.error.empty());
        REQUIRE(log.requests.size() == 2);
        REQUIRE(log.requests[0].response);
        CHECK(log.requests[0].response->status == 429);
        REQUIRE(log.requests[0].response->headers.size() == 1);
        CHECK(log.requests[0].response->headers[0].first == "Retry-After");
        REQUIRE(log.requests[0].headers.size() == 1);  // Authorization, not the response's column
        CHECK_FALSE(log.requests[1].response);
    }
    SECTION("access: a vendor's 429 is a bare 429; sluice's own is not the vendor's") {
        std::istringstream in(
            R"({"time": "2026-12-07T10:00:00Z", "method": "GET", "host": "a", "path": "/v1/x", "status": 429, )"
            R"("answered_by": "vendor", "route": "api"})"
            "\n"
            R"({"time": "2026-12-07T10:00:01Z", "method": "GET", "host": "a", "path": "/v1/x", "status": 429, )"
            R"("answered_by": "admission_timeout", "route": "api"})"
            "\n");
        const auto log = read_traffic(in, "access.log");
        REQUIRE(log.error.empty());
        REQUIRE(log.requests.size() == 2);
        REQUIRE(log.requests[0].response);
        CHECK(log.requests[0].response->status == 429);
        CHECK(log.requests[0].response->headers.empty());
        CHECK_FALSE(log.requests[1].response);
    }
}
