// `sluice simulate`'s engine against answers worked out by hand: the daemon's limiters and
// admission controller on a simulated clock, fed by a discrete-event loop.

#include "sluice/simulate/simulator.hpp"

#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "sluice/config/loader.hpp"

#include "unit/simulate/simulate_support.hpp"

using namespace sluice;
using namespace sluice::simulate;
using namespace std::chrono_literals;

using sluice::simulate::test::kStart;
using sluice::simulate::test::load;

namespace {

TrafficRequest get(Nanos at, std::string path = "/v1/items",
                   std::vector<std::pair<std::string, std::string>> headers = {}) {
    TrafficRequest request;
    request.at = at;
    request.method = "GET";
    request.host = "api.example.com";
    request.path = std::move(path);
    request.headers = std::move(headers);
    return request;
}

std::vector<TrafficRequest> burst(std::size_t count, Nanos at = kStart) {
    std::vector<TrafficRequest> traffic;
    for (std::size_t i = 0; i < count; ++i) traffic.push_back(get(at));
    return traffic;
}

const std::string kFivePerSecond = R"(
upstreams:
  vendor: {url: "http://127.0.0.1:9"}
limits:
  five: {algorithm: sliding_window, limit: 5, window: 1s}
routes:
  - {name: api, match: {path_prefix: /v1/}, upstream: vendor, limits: [five], queue: {max_wait: QUEUE}}
)";

std::string with_queue(const std::string& queue) {
    auto yaml = kFivePerSecond;
    yaml.replace(yaml.find("max_wait: QUEUE"), 15, queue);
    return yaml;
}

}  // namespace

TEST_CASE("simulate: a 5/s sliding window and 8 requests at once: 5 go, 3 wait exactly 1 s", "[simulate]") {
    const auto config = load(with_queue("max_wait: 3s"));
    const auto result = run_simulation(*config, burst(8), true);
    REQUIRE(result.error.empty());
    REQUIRE(result.outcomes.size() == 8);
    for (std::size_t i = 0; i < 5; ++i) {
        CHECK(result.outcomes[i].verdict == Verdict::at_once);
        CHECK(result.outcomes[i].delay == 0ns);
    }
    for (std::size_t i = 5; i < 8; ++i) {
        CHECK(result.outcomes[i].verdict == Verdict::delayed);
        CHECK(result.outcomes[i].delay == 1s);
    }
    CHECK(result.at_once == 5);
    CHECK(result.delayed == 3);
    const auto& five = result.limits[0];
    CHECK(five.name == "five");
    CHECK(five.requests == 8);
    CHECK(five.at_once == 5);
    CHECK(five.delayed == 3);
    CHECK(five.peak_usage == 5);
    CHECK(five.peak_at == kStart);
    CHECK(five.longest_queue == 3);
    CHECK(five.delays.p50 == 0ns);
    CHECK(five.delays.p90 == 1s);
    CHECK(five.delays.max == 1s);
    CHECK(result.last_event == kStart + 1s);
}

TEST_CASE("simulate: a full queue refuses queue_full at once", "[simulate]") {
    const auto config = load(with_queue("max_wait: 3s, max_depth: 2"));
    const auto result = run_simulation(*config, burst(8), true);
    std::size_t at_once = 0, delayed = 0, full = 0;
    for (const auto& outcome : result.outcomes) {
        if (outcome.verdict == Verdict::at_once) ++at_once;
        if (outcome.verdict == Verdict::delayed) ++delayed;
        if (outcome.verdict == Verdict::refused) {
            CHECK(outcome.reason == Errc::queue_full);
            CHECK(outcome.delay == 0ns);
            CHECK(outcome.limit == std::size_t{0});
            ++full;
        }
    }
    CHECK(at_once == 5);
    CHECK(delayed == 2);
    CHECK(full == 1);
    CHECK(result.outcomes[7].verdict == Verdict::refused);  // the last to arrive
    REQUIRE(result.limits[0].refused.size() == 1);
    CHECK(result.limits[0].refused[0] == std::pair<std::string, std::uint64_t>{"queue_full", 1});
    CHECK(result.limits[0].longest_queue == 2);
}

TEST_CASE("simulate: a wait longer than max_wait is refused admission_timeout at arrival", "[simulate]") {
    const auto config = load(with_queue("max_wait: 500ms"));
    auto traffic = burst(6);
    traffic.push_back(get(kStart + 600ms));  // 400 ms to wait: within max_wait
    const auto result = run_simulation(*config, traffic, true);
    for (std::size_t i = 0; i < 5; ++i) CHECK(result.outcomes[i].verdict == Verdict::at_once);
    CHECK(result.outcomes[5].verdict == Verdict::refused);
    CHECK(result.outcomes[5].reason == Errc::admission_timeout);
    CHECK(result.outcomes[5].delay == 0ns);
    CHECK(result.outcomes[6].verdict == Verdict::delayed);
    CHECK(result.outcomes[6].delay == 400ms);
}

TEST_CASE("simulate: a client's Sluice-Max-Wait shortens the wait, as in the daemon", "[simulate]") {
    const auto config = load(with_queue("max_wait: 3s"));
    auto traffic = burst(5);
    traffic.push_back(get(kStart, "/v1/items", {{"sluice-max-wait", "0.2"}}));
    traffic.push_back(get(kStart, "/v1/items", {{"Sluice-Max-Wait", "soon"}}));
    traffic.push_back(get(kStart));
    const auto result = run_simulation(*config, traffic, true);
    CHECK(result.outcomes[5].verdict == Verdict::refused);
    CHECK(result.outcomes[5].reason == Errc::admission_timeout);
    CHECK(result.outcomes[6].verdict == Verdict::refused);
    CHECK(result.outcomes[6].reason == Errc::malformed_request);
    CHECK(result.outcomes[7].verdict == Verdict::delayed);
    CHECK(result.outcomes[7].delay == 1s);
}

TEST_CASE("simulate: concurrency permits are held for the upstream time, then released", "[simulate]") {
    const auto config = load(R"(
upstreams:
  vendor: {url: "http://127.0.0.1:9"}
limits:
  two: {algorithm: concurrency, limit: 2}
routes:
  - {name: api, upstream: vendor, limits: [two], queue: {max_wait: 10s}}
)");
    auto traffic = burst(4);
    traffic[0].upstream_time = 3s;
    traffic[1].upstream_time = 1s;  // the others: the default
    SimulationOptions options;
    options.upstream_time = 2s;
    const auto result = run_simulation(*config, traffic, true, options);
    CHECK(result.outcomes[0].verdict == Verdict::at_once);
    CHECK(result.outcomes[1].verdict == Verdict::at_once);
    CHECK(result.outcomes[2].verdict == Verdict::delayed);
    CHECK(result.outcomes[2].delay == 1s);  // request 1's permit
    CHECK(result.outcomes[3].verdict == Verdict::delayed);
    CHECK(result.outcomes[3].delay == 3s);  // request 0's, before request 2's (1 s + 2 s)
    CHECK(result.limits[0].peak_usage == 2);
    CHECK(result.limits[0].longest_queue == 2);
}

TEST_CASE("simulate: arrivals are replayed in time order, whatever the log's order", "[simulate]") {
    const auto config = load(with_queue("max_wait: 3s"));
    std::vector<TrafficRequest> traffic;
    for (int i = 5; i >= 0; --i) traffic.push_back(get(kStart + std::chrono::milliseconds(i * 10)));
    const auto result = run_simulation(*config, traffic, true);
    CHECK(result.outcomes[0].verdict == Verdict::delayed);  // the latest (50 ms), written first
    CHECK(result.outcomes[0].delay == 950ms);               // waits for the first's second to pass
    for (std::size_t i = 1; i < 6; ++i) CHECK(result.outcomes[i].verdict == Verdict::at_once);
}

TEST_CASE("simulate: keys on headers split the traffic; without headers they are one key, and said so",
          "[simulate]") {
    const auto config = load(R"(
upstreams:
  vendor: {url: "http://127.0.0.1:9"}
limits:
  per-key: {algorithm: sliding_window, limit: 5, window: 1s, key: [{header: Authorization}]}
routes:
  - {name: api, upstream: vendor, limits: [per-key]}
)");
    std::vector<TrafficRequest> traffic;
    for (int i = 0; i < 10; ++i)
        traffic.push_back(get(kStart, "/x", {{"Authorization", i % 2 ? "key-a" : "key-b"}}));
    const auto with_headers = run_simulation(*config, traffic, true);
    CHECK(with_headers.at_once == 10);
    CHECK(with_headers.limits_needing_missing_headers == 0);
    for (auto& request : traffic) request.headers.clear();
    const auto without = run_simulation(*config, traffic, false);
    CHECK(without.at_once == 5);
    CHECK(without.delayed == 5);
    CHECK(without.limits_needing_missing_headers == 1);
    CHECK(without.limits[0].needs_missing_headers);
}

TEST_CASE("simulate: a request no route matches is not routed", "[simulate]") {
    const auto config = load(with_queue("max_wait: 3s"));
    auto traffic = burst(1);
    traffic.push_back(get(kStart, "/v2/other"));
    const auto result = run_simulation(*config, traffic, true);
    CHECK(result.outcomes[0].verdict == Verdict::at_once);
    CHECK(result.outcomes[1].verdict == Verdict::not_routed);
    CHECK(result.outcomes[1].reason == Errc::no_route);
    CHECK(result.not_routed == 1);
    CHECK(result.limits[0].requests == 1);
}

TEST_CASE("simulate: the series shows the window's count and the queue per time bucket", "[simulate]") {
    const auto config = load(with_queue("max_wait: 3s"));
    auto traffic = burst(8);
    traffic.push_back(get(kStart + 2s));  // the span: 2 s in 20 buckets of 100 ms
    SimulationOptions options;
    options.plot_points = 20;
    const auto result = run_simulation(*config, traffic, true, options);
    const auto& series = result.limits[0].series;
    REQUIRE(series.size() >= 11);
    CHECK(series[0].at == kStart);
    CHECK(series[0].usage == 5);
    CHECK(series[0].waiting == 3);
    CHECK(series[0].admitted == 5);
    CHECK(series[5].usage == 5);  // the window is still full half a second later
    CHECK(series[5].waiting == 3);
    CHECK(series[10].admitted == 3);  // the three that waited, at 1 s
}

TEST_CASE("simulate: --vendor finds a published rule an over-permissive config lets through", "[simulate]") {
    // Convertr asks for fewer than 10 requests in flight; this config allows 20.
    const std::string loose =
        "vendors:\n  c:\n    preset: convertr\n    path_prefix: /c/\n"
        "    limits: {concurrent: {limit: 20}}\n";
    const std::string kept = "vendors:\n  c: {preset: convertr, path_prefix: /c/}\n";
    std::vector<TrafficRequest> traffic;
    for (int i = 0; i < 15; ++i) traffic.push_back(get(kStart, "/c/api/v4/leads"));
    SimulationOptions options;
    options.vendor = "c";
    options.upstream_time = 1s;

    const auto over = run_simulation(*load(loose), traffic, true, options);
    REQUIRE(over.error.empty());
    REQUIRE(over.vendor);
    CHECK_FALSE(over.vendor->kept());
    const VendorRuleReport* concurrent = nullptr;
    for (const auto& rule : over.vendor->rules)
        if (rule.name == "concurrent") concurrent = &rule;
    REQUIRE(concurrent);
    CHECK(concurrent->peak == 15);
    CHECK(concurrent->exceeded);
    CHECK(concurrent->first_exceeded_at == kStart);
    CHECK(over.at_once == 15);

    const auto within = run_simulation(*load(kept), traffic, true, options);
    REQUIRE(within.vendor);
    CHECK(within.vendor->kept());
    for (const auto& rule : within.vendor->rules) {
        if (rule.name == "concurrent") CHECK(rule.peak == 9);
        if (rule.name == "blanket") CHECK(rule.peak == 15);   // every request, over the run
        if (rule.name == "login") CHECK(rule.requests == 0);  // a POST to .../login only
    }

    options.vendor = "nobody";
    const auto unknown = run_simulation(*load(kept), traffic, true, options);
    CHECK(unknown.error.find("nobody") != std::string::npos);
}

TEST_CASE("simulate: a cost header above what the limit can ever admit is refused cost_too_large",
          "[simulate]") {
    const auto config = load(R"(
upstreams:
  vendor: {url: "http://127.0.0.1:9"}
limits:
  units: {algorithm: sliding_window, limit: 10, window: 1s, cost: {header: X-Units}}
routes:
  - {name: api, upstream: vendor, limits: [units]}
)");
    std::vector<TrafficRequest> traffic{get(kStart, "/x", {{"X-Units", "11"}}),
                                        get(kStart, "/x", {{"X-Units", "10"}}),
                                        get(kStart, "/x", {{"X-Units", "1"}})};
    const auto result = run_simulation(*config, traffic, true);
    CHECK(result.outcomes[0].verdict == Verdict::refused);
    CHECK(result.outcomes[0].reason == Errc::cost_too_large);
    CHECK(result.outcomes[1].verdict == Verdict::at_once);
    CHECK(result.outcomes[2].verdict == Verdict::delayed);  // the window's 10 units are spent
    CHECK(result.outcomes[2].delay == 1s);
    CHECK(result.limits[0].requests == 2);
    CHECK(result.limits[0].peak_usage == 10);
}

TEST_CASE("simulate: priority classes replay as the daemon orders them; an unknown class is refused",
          "[simulate][priority]") {
    // 5/s, batch by default: 20 batch requests at 0 s fill 4 seconds; an interactive one at 0.5 s
    // goes at the first room, 1 s, ahead of the 15 waiting batch requests.
    const auto config = load(R"(
priorities: {classes: [interactive, batch], default: batch, aging: 10s}
upstreams:
  vendor: {url: "http://127.0.0.1:9"}
limits:
  five: {algorithm: sliding_window, limit: 5, window: 1s}
routes:
  - {name: api, match: {path_prefix: /v1/}, upstream: vendor, limits: [five], queue: {max_wait: 10s}}
)");
    auto traffic = burst(20);
    traffic.push_back(get(kStart + 500ms, "/v1/items", {{"Sluice-Priority", "interactive"}}));
    traffic.push_back(get(kStart + 600ms, "/v1/items", {{"Sluice-Priority", "urgent"}}));
    const auto result = run_simulation(*config, traffic, true);
    REQUIRE(result.error.empty());
    REQUIRE(result.outcomes.size() == 22);
    const auto& interactive = result.outcomes[20];
    CHECK(interactive.verdict == Verdict::delayed);
    CHECK(interactive.delay == 500ms);
    // The batch requests behind it: 4 more at 1 s (the interactive took the fifth), 5 at 2 s, ...
    CHECK(result.outcomes[8].delay == 1s);
    CHECK(result.outcomes[9].delay == 2s);
    CHECK(result.outcomes[19].delay == 4s);
    const auto& unknown = result.outcomes[21];
    CHECK(unknown.verdict == Verdict::refused);
    CHECK(unknown.reason == Errc::unknown_priority);
}

TEST_CASE("simulate: an access log's caller replays a fair share it could not replay from headers",
          "[simulate][priority]") {
    // 6/s shared 2:1 between svc-a and svc-b; svc-a's backlog of 30 arrived first. The access log
    // keeps no headers, but it keeps each request's caller: svc-b gets its third of the room from
    // the first refill on, as the daemon gave it. Without the callers, svc-b waits behind svc-a.
    const auto config = load(R"(
upstreams:
  vendor: {url: "http://127.0.0.1:9"}
limits:
  six:
    algorithm: sliding_window
    limit: 6
    window: 1s
    fair_share: {caller: {header: X-Caller}, weights: {svc-a: 2, svc-b: 1}}
routes:
  - {name: api, match: {path_prefix: /v1/}, upstream: vendor, limits: [six], queue: {max_wait: 20s, max_depth: 100}}
)");
    const auto traffic_of = [](bool with_callers) {
        std::vector<TrafficRequest> traffic;
        for (int i = 0; i < 60; ++i) {
            traffic.push_back(get(kStart));
            if (with_callers) traffic.back().caller = i < 30 ? "svc-a" : "svc-b";
        }
        return traffic;
    };
    const auto svc_b_within = [](const SimulationResult& result, Nanos by) {
        std::size_t count = 0;
        for (std::size_t i = 30; i < 60; ++i) count += result.outcomes[i].delay <= by ? 1 : 0;
        return count;
    };
    const auto replayed = run_simulation(*config, traffic_of(true), true);
    REQUIRE(replayed.error.empty());
    REQUIRE(replayed.outcomes.size() == 60);
    // 6 at once (svc-a's: nobody waited yet), then 6 a second at 1 s, 2 s, 3 s in turns of 2:1.
    CHECK(svc_b_within(replayed, 2s) == 4);
    CHECK(svc_b_within(replayed, 3s) == 6);
    const auto unreplayed = run_simulation(*config, traffic_of(false), true);
    REQUIRE(unreplayed.error.empty());
    CHECK(svc_b_within(unreplayed, 3s) == 0);
}
