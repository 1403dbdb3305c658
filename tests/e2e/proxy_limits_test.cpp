// Issue 3 acceptance: limits and queues through the real sluice binary. The
// upstream records when each request arrived; the tests check the vendor's view
// of the traffic (never more than a limit allows, yet close to all of it),
// FIFO admission, immediate 429s, prompt wake-ups, concurrency, clients leaving
// a queue, shadow mode, keyed limits and all-or-nothing admission.
//
// Windows are scaled down (20 per 1 s and less) so each case runs in a few
// seconds. Sluice and the mock upstream read the same CLOCK_MONOTONIC, so an
// arrival time at the upstream can be compared with a limit's window directly;
// the margins in the configs (and the tolerances below) absorb the forwarding
// latency, which varies by a few ms on a loaded 2-core machine.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "support/admin_status.hpp"
#include "support/http_client.hpp"
#include "support/mock_upstream.hpp"
#include "support/proxy_config.hpp"
#include "support/sluice_process.hpp"
#include "support/synthetic_checks.hpp"

using namespace sluice::test;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

// One listener "main", one upstream "vendor" (the mock), the given limits and
// routes (YAML text indented under `limits:` / `routes:`), an admin listener.
std::string limits_yaml(const MockUpstream& upstream, const std::string& limits, const std::string& routes,
                        unsigned workers = e2e_workers(),
                        const std::string& queue = "{max_depth: 1000, max_wait: 10s}") {
    return yaml_subst(R"(server:
  workers: {WORKERS}
  timeouts: {client_header: 2s, client_body: 5s, client_idle: 10s, client_write: 5s}
  admin:
    listen: "127.0.0.1:0"
listeners:
  - name: main
    listen: "127.0.0.1:0"
upstreams:
  vendor:
    url: "{URL}"
    connect_timeout: 1s
    response_timeout: 5s
    body_timeout: 5s
    feedback: {enabled: false}
limits:
{LIMITS}queue: {QUEUE}
routes:
{ROUTES})",
                      {{"WORKERS", std::to_string(workers)},
                       {"URL", upstream.url()},
                       {"LIMITS", limits},
                       {"QUEUE", queue},
                       {"ROUTES", routes}});
}

// A route "r" on every path, through the given limits (a YAML flow list), after
// a route "warm" (/warm/, no limits) for opening upstream connections first.
std::string one_route(const std::string& limit_list, const std::string& extra = "") {
    return "  - name: warm\n    match: {path_prefix: /warm/}\n    upstream: vendor\n"
           "  - name: r\n    upstream: vendor\n    limits: " +
           limit_list + "\n" + extra;
}

double ms_of(Clock::duration d) {
    return std::chrono::duration<double, std::milli>(d).count();
}

std::vector<Clock::time_point> arrivals(const MockUpstream& upstream) {
    std::vector<Clock::time_point> out;
    for (const auto& r : upstream.requests()) out.push_back(r.arrival);
    std::sort(out.begin(), out.end());
    return out;
}

std::size_t waiting(const SluiceProcess& sluice) {
    return admin_status(sluice)["queue"]["waiting"].get<std::size_t>();
}

// Polls the admin page (bounded) until `count` requests wait in sluice's queues.
bool wait_for_waiting(const SluiceProcess& sluice, std::size_t count,
                      std::chrono::milliseconds timeout = 3s) {
    const auto until = Clock::now() + timeout;
    while (Clock::now() < until) {
        if (waiting(sluice) == count) return true;
        std::this_thread::sleep_for(5ms);
    }
    return false;
}

const nlohmann::json& limit_status(const nlohmann::json& status, const std::string& name) {
    for (const auto& limit : status["limits"])
        if (limit.value("name", "") == name) return limit;
    FAIL("limit " << name << " not on the status page: " << status.dump());
    return status;  // unreachable
}

std::string raw_get(const std::string& target, const std::string& extra_headers = "") {
    return "GET " + target + " HTTP/1.1\r\nHost: client.test\r\n" + extra_headers + "\r\n";
}

// The ids (X-Id header) the upstream saw, in arrival order.
std::vector<std::string> ids_seen(const MockUpstream& upstream) {
    auto requests = upstream.requests();
    std::stable_sort(
        requests.begin(), requests.end(),
        [](const RecordedRequest& a, const RecordedRequest& b) { return a.arrival < b.arrival; });
    std::vector<std::string> ids;
    for (const auto& r : requests) ids.push_back(r.header("X-Id").value_or("?"));
    return ids;
}

// `threads` clients, each on its own connection, send GETs back to back until
// `duration` has passed (a request queued at that moment still completes).
// Returns the statuses that were not 200 (none expected).
std::vector<unsigned> saturate(std::uint16_t port, unsigned threads, Clock::duration duration) {
    const auto end = Clock::now() + duration;
    std::vector<std::vector<unsigned>> bad(threads);
    std::vector<std::thread> pool;
    for (unsigned t = 0; t < threads; ++t) {
        pool.emplace_back([&, t] {
            try {
                HttpClient client(port, 10s);
                while (Clock::now() < end) {
                    const auto res = client.get("/load/" + std::to_string(t));
                    if (res.status != 200) bad[t].push_back(res.status);
                }
            } catch (const std::exception&) {
                bad[t].push_back(0);
            }
        });
    }
    for (auto& th : pool) th.join();
    std::vector<unsigned> all;
    for (const auto& b : bad) all.insert(all.end(), b.begin(), b.end());
    return all;
}

// Opens `threads` upstream connections (kept idle in sluice's pool) through the
// "warm" route, so that a measurement does not include the first connects.
void warm_up(std::uint16_t port, unsigned threads, MockUpstream& upstream) {
    std::vector<std::thread> pool;
    for (unsigned t = 0; t < threads; ++t) {
        pool.emplace_back([port] {
            try {
                HttpClient client(port, 10s);
                for (int i = 0; i < 3; ++i) client.get("/warm/" + std::to_string(i));
            } catch (const std::exception&) {
            }
        });
    }
    for (auto& th : pool) th.join();
    REQUIRE(upstream.wait_for_complete_requests(3 * threads, 5s));
}

// Arrivals of the requests whose target does not start with /warm/.
std::vector<Clock::time_point> measured_arrivals(const MockUpstream& upstream) {
    std::vector<Clock::time_point> out;
    for (const auto& r : upstream.requests())
        if (r.target.rfind("/warm/", 0) != 0) out.push_back(r.arrival);
    std::sort(out.begin(), out.end());
    return out;
}

// A 429 sluice made itself because of a limit: the documented body and headers.
nlohmann::json check_limit_rejection(const HttpResponse& res, const std::string& code,
                                     const std::string& limit) {
    check_synthetic(res, 429, code);
    const auto body = res.json();
    CHECK(body.value("limit", "") == limit);
    REQUIRE(body.contains("retry_after"));
    REQUIRE(body["retry_after"].is_number());
    REQUIRE(body.contains("queue"));
    CHECK(body["queue"].contains("depth"));
    CHECK(body["queue"].contains("max_depth"));
    // Retry-After: whole seconds, rounded UP from the precise delay (at least 1).
    const double precise = body["retry_after"].get<double>();
    const auto retry_after = res.header("Retry-After");
    REQUIRE(retry_after);
    const long long whole = std::stoll(*retry_after);
    CHECK(std::to_string(whole) == *retry_after);
    // The JSON is rounded to the millisecond, so allow for that rounding either way.
    const long long low = std::max<long long>(1, static_cast<long long>(std::ceil(precise - 0.0005)));
    const long long high = std::max<long long>(1, static_cast<long long>(std::ceil(precise + 0.0005)));
    INFO("retry_after " << precise << " Retry-After " << whole);
    CHECK(whole >= low);
    CHECK(whole <= high);
    CHECK(res.has_header("X-RateLimit-Limit"));
    CHECK(header_or_absent(res, "X-RateLimit-Remaining") == "0");
    CHECK(header_or_absent(res, "RateLimit-Policy").find("\"" + limit + "\"") == 0);
    return body;
}

// Timed request: the response and how long it took.
struct Timed {
    HttpResponse res;
    double ms = 0;
};

Timed timed_get(HttpClient& client, const std::string& target, const Headers& headers = {}) {
    const auto start = Clock::now();
    Timed t{client.get(target, headers), 0};
    t.ms = ms_of(Clock::now() - start);
    return t;
}

}  // namespace

// ---------------------------------------------------------------- 1 and 10: the vendor's view under load

TEST_CASE("a sliding window never lets the upstream see more than its limit, yet uses all of it",
          "[e2e][ratelimit][load]") {
    const unsigned workers = GENERATE(1u, 2u);
    INFO("workers: " << workers);
    constexpr int kLimit = 20;
    constexpr auto kWindow = 1000ms;
    constexpr auto kWindowWithMargin = 1050ms;
    MockUpstream upstream;
    SluiceProcess sluice(
        limits_yaml(upstream, "  rolling: {algorithm: sliding_window, limit: 20, window: 1s, margin: 50ms}\n",
                    one_route("[rolling]"), workers));
    warm_up(sluice.port("main"), 8, upstream);
    const auto start = Clock::now();
    const auto load_for = 2000ms;
    CHECK(saturate(sluice.port("main"), 8, load_for).empty());
    const auto end = start + load_for;

    const auto at = measured_arrivals(upstream);
    INFO("arrivals: " << at.size());
    REQUIRE(at.size() >= 2 * kLimit + 8);
    // Zero violations: no interval of length `window` holds more than `limit` arrivals.
    for (std::size_t i = 0; i + kLimit < at.size(); ++i) {
        INFO("arrival " << i << " and " << i + kLimit << " are " << ms_of(at[i + kLimit] - at[i])
                        << " ms apart");
        CHECK(at[i + kLimit] - at[i] >= kWindow);
    }
    // Full use: while every client waits, the (i + limit)-th request goes as
    // soon as the i-th leaves the window.
    double worst = 0;
    for (std::size_t i = 0; i + kLimit < at.size() && at[i] + kWindowWithMargin + 100ms < end; ++i) {
        worst = std::max(worst, ms_of(at[i + kLimit] - at[i] - kWindowWithMargin));
    }
    INFO("latest admission after room appeared: " << worst << " ms");
    CHECK(worst < 100);
    // And so the first two windows are full.
    const auto in_two_windows = std::count_if(at.begin(), at.end(), [&](Clock::time_point t) {
        return t < at.front() + kWindowWithMargin + 100ms;
    });
    CHECK(in_two_windows == 2 * kLimit);
}

TEST_CASE("a token bucket keeps the upstream within burst plus rate, at full rate",
          "[e2e][ratelimit][load]") {
    constexpr int kBurst = 5;
    constexpr auto kPeriod = 52'500us;  // one token per (1 s + 50 ms) / 20
    MockUpstream upstream;
    SluiceProcess sluice(
        limits_yaml(upstream, "  bucket: {algorithm: token_bucket, rate: 20/1s, burst: 5, margin: 50ms}\n",
                    one_route("[bucket]")));
    warm_up(sluice.port("main"), 6, upstream);
    CHECK(saturate(sluice.port("main"), 6, 1600ms).empty());

    const auto at = measured_arrivals(upstream);
    REQUIRE(at.size() >= 10);
    // In any [a, b]: at most burst + (b - a) / period, with 20 ms for forwarding jitter.
    for (std::size_t i = 0; i < at.size(); ++i) {
        for (std::size_t j = i + 1; j < at.size(); ++j) {
            const auto allowed = kBurst + static_cast<std::size_t>((at[j] - at[i] + 20ms) / kPeriod);
            INFO("arrivals " << i << ".." << j << " over " << ms_of(at[j] - at[i]) << " ms");
            CHECK(j - i + 1 <= allowed);
        }
    }
    // Full rate: the burst, then one every period.
    const auto span = 1500ms;
    const auto sent =
        std::count_if(at.begin(), at.end(), [&](Clock::time_point t) { return t <= at.front() + span; });
    const auto expected = kBurst + static_cast<long>((span - 100ms) / kPeriod);
    INFO("arrivals in the first " << ms_of(span) << " ms: " << sent << ", expected at least " << expected);
    CHECK(sent >= expected);
}

TEST_CASE("a fixed window keeps every calendar period at its limit and fills it", "[e2e][ratelimit][load]") {
    constexpr long kLimit = 10;
    constexpr auto kPeriod = 500ms;
    // Arrival times are monotonic; periods are aligned to wall time.
    const auto wall_offset =
        std::chrono::system_clock::now().time_since_epoch() - Clock::now().time_since_epoch();
    const auto period_of = [&](Clock::time_point t) {
        return (t.time_since_epoch() + wall_offset) /
               std::chrono::duration_cast<std::chrono::nanoseconds>(kPeriod);
    };
    MockUpstream upstream;
    SluiceProcess sluice(limits_yaml(
        upstream, "  calendar: {algorithm: fixed_window, limit: 10, window: 500ms, margin: 25ms}\n",
        one_route("[calendar]")));
    warm_up(sluice.port("main"), 6, upstream);
    const auto start = Clock::now();
    const auto load_for = 1800ms;
    CHECK(saturate(sluice.port("main"), 6, load_for).empty());
    const auto end = start + load_for;

    const auto at = measured_arrivals(upstream);
    REQUIRE(!at.empty());
    std::map<long long, long> per_period;
    for (const auto t : at) ++per_period[static_cast<long long>(period_of(t))];
    const auto first = static_cast<long long>(period_of(at.front()));
    const auto last_full = static_cast<long long>(period_of(end)) - 1;
    int full_periods = 0;
    for (const auto& [period, count] : per_period) {
        INFO("period " << period - first << ": " << count << " arrivals");
        CHECK(count <= kLimit);
        // Periods after the first two (which may share units sent in the margin) are filled.
        if (period >= first + 2 && period <= last_full) {
            ++full_periods;
            CHECK(count == kLimit);
        }
    }
    CHECK(full_periods >= 1);
}

// ---------------------------------------------------------------- 2: FIFO

TEST_CASE("requests queued on one limit are forwarded in the order they reached sluice",
          "[e2e][ratelimit][queue]") {
    MockUpstream upstream;
    SluiceProcess sluice(limits_yaml(
        upstream, "  one: {algorithm: sliding_window, limit: 1, window: 120ms}\n", one_route("[one]")));
    HttpClient first(sluice.port("main"));
    REQUIRE(first.get("/x", {{"X-Id", "first"}}).status == 200);

    constexpr int kQueued = 6;
    std::vector<std::unique_ptr<HttpClient>> clients;
    for (int i = 0; i < kQueued; ++i) {
        clients.push_back(std::make_unique<HttpClient>(sluice.port("main")));
        clients.back()->write_raw(raw_get("/x", "X-Id: " + std::to_string(i) + "\r\n"));
        // The next one is sent only once this one waits (or, at the end, was already let through).
        const auto until = Clock::now() + 3s;
        while (Clock::now() < until &&
               waiting(sluice) + upstream.request_count() < static_cast<std::size_t>(i + 2))
            std::this_thread::sleep_for(2ms);
    }
    for (auto& client : clients) CHECK(client->read_response().status == 200);

    std::vector<std::string> expected{"first"};
    for (int i = 0; i < kQueued; ++i) expected.push_back(std::to_string(i));
    CHECK(ids_seen(upstream) == expected);
    const auto at = arrivals(upstream);
    for (std::size_t i = 1; i < at.size(); ++i)
        CHECK(at[i] - at[i - 1] >= 100ms);  // the window, less forwarding jitter
}

// ---------------------------------------------------------------- 3: immediate 429s

TEST_CASE("a wait beyond max_wait, and Sluice-Max-Wait: 0, get a 429 at once", "[e2e][ratelimit][429]") {
    MockUpstream upstream;
    // Routes are tried in order: /patient/ (10 s max_wait) before the catch-all (1 s).
    const std::string routes =
        "  - name: patient\n    match: {path_prefix: /patient/}\n"
        "    upstream: vendor\n    limits: [slow]\n"
        "    queue: {max_depth: 100, max_wait: 10s}\n" +
        one_route("[slow]", "    queue: {max_depth: 2, max_wait: 1s}\n");
    SluiceProcess sluice(
        limits_yaml(upstream, "  slow: {algorithm: sliding_window, limit: 1, window: 2s}\n", routes));
    HttpClient client(sluice.port("main"));
    REQUIRE(client.get("/x", {{"X-Id", "admitted"}}).status == 200);

    SECTION("the earliest admission is later than the route's max_wait") {
        const auto t = timed_get(client, "/x", {{"X-Id", "too-late"}});
        INFO("answered after " << t.ms << " ms");
        CHECK(t.ms < 250);
        const auto body = check_limit_rejection(t.res, "admission_timeout", "slow");
        // 2 s window: the precise delay is just below 2 s, Retry-After rounds it up to 2.
        CHECK(body["retry_after"].get<double>() > 1.5);
        CHECK(body["retry_after"].get<double>() <= 2.0);
        CHECK(header_or_absent(t.res, "Retry-After") == "2");
        CHECK(body["queue"]["depth"] == 0);
        CHECK(body["queue"]["max_depth"] == 2);
    }
    SECTION("Sluice-Max-Wait: 0 on a route that would wait 10 s") {
        const auto t = timed_get(client, "/patient/x", {{"X-Id", "no-wait"}, {"Sluice-Max-Wait", "0"}});
        INFO("answered after " << t.ms << " ms");
        CHECK(t.ms < 250);
        check_limit_rejection(t.res, "admission_timeout", "slow");
        CHECK(header_or_absent(t.res, "Retry-After") == "2");
    }
    SECTION("Sluice-Max-Wait below the delay on a route that would wait 10 s") {
        const auto t =
            timed_get(client, "/patient/x", {{"X-Id", "short-wait"}, {"Sluice-Max-Wait", "300ms"}});
        INFO("answered after " << t.ms << " ms");
        CHECK(t.ms < 250);
        check_limit_rejection(t.res, "admission_timeout", "slow");
    }
    CHECK(ids_seen(upstream) == std::vector<std::string>{"admitted"});
    CHECK(admin_status(sluice)["counters"]["rejected_by_limits"] == 1);
}

TEST_CASE("a request beyond max_depth gets queue_full at once and the queued ones still go",
          "[e2e][ratelimit][429]") {
    MockUpstream upstream;
    SluiceProcess sluice(limits_yaml(upstream,
                                     "  paced: {algorithm: sliding_window, limit: 1, window: 300ms}\n",
                                     one_route("[paced]", "    queue: {max_depth: 2, max_wait: 5s}\n")));
    const auto port = sluice.port("main");
    HttpClient client(port);
    REQUIRE(client.get("/x", {{"X-Id", "admitted"}}).status == 200);
    HttpClient one(port), two(port);
    one.write_raw(raw_get("/x", "X-Id: queued-1\r\n"));
    REQUIRE(wait_for_waiting(sluice, 1));
    two.write_raw(raw_get("/x", "X-Id: queued-2\r\n"));
    REQUIRE(wait_for_waiting(sluice, 2));

    const auto t = timed_get(client, "/x", {{"X-Id", "refused"}});
    INFO("answered after " << t.ms << " ms");
    CHECK(t.ms < 150);
    const auto body = check_limit_rejection(t.res, "queue_full", "paced");
    CHECK(body["queue"]["depth"] == 2);
    CHECK(body["queue"]["max_depth"] == 2);
    CHECK(t.res.keep_alive);

    CHECK(one.read_response().status == 200);
    CHECK(two.read_response().status == 200);
    CHECK(ids_seen(upstream) == std::vector<std::string>{"admitted", "queued-1", "queued-2"});
}

TEST_CASE("Sluice-* request headers are never forwarded upstream", "[e2e][ratelimit]") {
    MockUpstream upstream;
    SluiceProcess sluice(limits_yaml(
        upstream, "  roomy: {algorithm: sliding_window, limit: 100, window: 1s}\n", one_route("[roomy]")));
    HttpClient client(sluice.port("main"));
    const auto res =
        client.get("/x", {{"Sluice-Max-Wait", "2.5"}, {"sluice-trace", "abc"}, {"X-Keep", "yes"}});
    REQUIRE(res.status == 200);
    const auto requests = upstream.requests();
    REQUIRE(requests.size() == 1);
    CHECK(requests[0].header("X-Keep").value_or("") == "yes");
    for (const auto& [name, value] : requests[0].headers) {
        INFO(name << ": " << value);
        CHECK_FALSE((name.size() >= 7 && (name.substr(0, 7) == "Sluice-" || name.substr(0, 7) == "sluice-")));
    }
    // An unreadable Sluice-Max-Wait is the client's error, not a wait.
    const auto bad = client.get("/x", {{"Sluice-Max-Wait", "soon"}});
    check_synthetic(bad, 400, "malformed_request");
    CHECK(upstream.request_count() == 1);
}

// ---------------------------------------------------------------- 4: prompt admission

TEST_CASE("a queued request is forwarded the moment the window has room", "[e2e][ratelimit][queue]") {
    constexpr auto kWindow = 250ms;
    MockUpstream upstream;
    SluiceProcess sluice(limits_yaml(
        upstream, "  paced: {algorithm: sliding_window, limit: 1, window: 250ms}\n", one_route("[paced]")));
    const auto port = sluice.port("main");
    // Warm the upstream connection pool, then let the window empty.
    {
        HttpClient warm(port);
        REQUIRE(warm.get("/warm").status == 200);
    }
    std::this_thread::sleep_for(kWindow + 20ms);
    const auto before = upstream.request_count();

    constexpr int kRequests = 5;
    std::vector<std::unique_ptr<HttpClient>> clients;
    for (int i = 0; i < kRequests; ++i) {
        clients.push_back(std::make_unique<HttpClient>(port));
        clients.back()->write_raw(raw_get("/x", "X-Id: " + std::to_string(i) + "\r\n"));
    }
    for (auto& client : clients) CHECK(client->read_response().status == 200);
    auto at = arrivals(upstream);
    at.erase(at.begin(), at.begin() + static_cast<std::ptrdiff_t>(before));
    REQUIRE(at.size() == kRequests);
    // The window frees at (previous admission + window); each waiting request
    // should reach the upstream right then, not at some polling tick after.
    std::vector<double> late;
    for (std::size_t i = 1; i < at.size(); ++i) late.push_back(ms_of(at[i] - at[i - 1] - kWindow));
    double sum = 0;
    for (const double l : late) {
        INFO("forwarded " << l << " ms after room appeared");
        CHECK(l > -20);  // (never early: that would break the limit)
        CHECK(l < 60);
        sum += l;
    }
    INFO("mean delay " << sum / static_cast<double>(late.size()) << " ms");
    CHECK(sum / static_cast<double>(late.size()) < 30);
}

// ---------------------------------------------------------------- 5: concurrency

TEST_CASE("a concurrency limit keeps at most 2 requests in flight at a slow upstream",
          "[e2e][ratelimit][concurrency]") {
    constexpr auto kDelay = 150ms;
    MockUpstream upstream([&](const RecordedRequest&) { return MockReply::echo().with_delay(kDelay); });
    SluiceProcess sluice(
        limits_yaml(upstream, "  parallel: {algorithm: concurrency, limit: 2}\n", one_route("[parallel]")));
    const auto port = sluice.port("main");
    constexpr int kThreads = 5;
    constexpr int kPerThread = 2;
    std::atomic<int> ok{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&] {
            try {
                HttpClient client(port, 10s);
                for (int i = 0; i < kPerThread; ++i)
                    if (client.get("/slow").status == 200) ++ok;
            } catch (const std::exception&) {
            }
        });
    }
    for (auto& th : threads) th.join();
    CHECK(ok == kThreads * kPerThread);

    // A request is in flight at the upstream from its arrival until its answer,
    // at least `delay` later; count overlaps at every arrival.
    const auto at = arrivals(upstream);
    REQUIRE(at.size() == kThreads * kPerThread);
    int most = 0;
    for (const auto t : at) {
        const auto in_flight = std::count_if(at.begin(), at.end(),
                                             [&](Clock::time_point s) { return s <= t && t < s + kDelay; });
        most = std::max<int>(most, static_cast<int>(in_flight));
    }
    CHECK(most == 2);  // never more, and the limit was used
}

// ---------------------------------------------------------------- 6: a client leaves the queue

TEST_CASE("a client that disconnects while queued leaves the queue and consumes nothing",
          "[e2e][ratelimit][queue]") {
    // Also after sending more while it waited: bytes sent ahead (its body, a
    // pipelined request) must not end the watch on the client.
    const bool sends_ahead = GENERATE(false, true);
    INFO((sends_ahead ? "the leaver sends its body and another request while queued"
                      : "the leaver sends a GET"));
    constexpr auto kWindow = 400ms;
    MockUpstream upstream;
    SluiceProcess sluice(limits_yaml(
        upstream, "  paced: {algorithm: sliding_window, limit: 1, window: 400ms}\n", one_route("[paced]")));
    const auto port = sluice.port("main");
    HttpClient first(port);
    REQUIRE(first.get("/x", {{"X-Id", "first"}}).status == 200);

    HttpClient leaver(port);
    if (sends_ahead) {
        // A small body is read before the request queues; the pipelined request behind it
        // arrives while it waits.
        leaver.write_raw("POST /x HTTP/1.1\r\nHost: localhost\r\nX-Id: leaver\r\nContent-Length: 11\r\n\r\n");
        std::this_thread::sleep_for(50ms);
        leaver.write_raw("hello world");
        REQUIRE(wait_for_waiting(sluice, 1));
        leaver.write_raw(raw_get("/y", "X-Id: leaver-2\r\n"));
        std::this_thread::sleep_for(50ms);
    } else {
        leaver.write_raw(raw_get("/x", "X-Id: leaver\r\n"));
        REQUIRE(wait_for_waiting(sluice, 1));
    }
    leaver.close();
    REQUIRE(wait_for_waiting(sluice, 0));

    HttpClient next(port);
    next.write_raw(raw_get("/x", "X-Id: next\r\n"));
    CHECK(next.read_response().status == 200);
    CHECK(ids_seen(upstream) == std::vector<std::string>{"first", "next"});
    const auto at = arrivals(upstream);
    REQUIRE(at.size() == 2);
    // The slot the leaver would have taken went to the next request: it went in
    // the first free window, not one window later.
    INFO("next forwarded " << ms_of(at[1] - at[0]) << " ms after the first");
    CHECK(at[1] - at[0] < kWindow + 150ms);
    CHECK(admin_status(sluice)["counters"]["forwarded"] == 2);
}

// ---------------------------------------------------------------- 7: shadow mode

TEST_CASE("a shadow limit neither delays nor refuses, but counts", "[e2e][ratelimit][shadow]") {
    MockUpstream upstream;
    SluiceProcess sluice(
        limits_yaml(upstream, "  trial: {algorithm: sliding_window, limit: 3, window: 10s, enforce: false}\n",
                    one_route("[trial]")));
    HttpClient client(sluice.port("main"));
    REQUIRE(client.get("/x").status == 200);
    REQUIRE(client.get("/x").status == 200);
    {
        const auto trial = limit_status(admin_status(sluice), "trial");
        CHECK(trial["enforce"] == false);
        REQUIRE(trial["keys"].size() == 1);
        CHECK(trial["keys"][0]["remaining"] == 1);  // 2 of 3 counted
    }
    const auto start = Clock::now();
    for (int i = 0; i < 8; ++i) {
        const auto res = client.get("/x", {{"Sluice-Max-Wait", "0"}});
        CHECK(res.status == 200);
        CHECK_FALSE(res.has_header("Sluice-Error"));
    }
    INFO("8 requests over the limit took " << ms_of(Clock::now() - start) << " ms");
    CHECK(Clock::now() - start < 1500ms);
    CHECK(upstream.request_count() == 10);
    const auto status = admin_status(sluice);
    CHECK(status["counters"]["rejected_by_limits"] == 0);
    const auto trial = limit_status(status, "trial");
    REQUIRE(trial["keys"].size() == 1);
    CHECK(trial["keys"][0]["remaining"] == 0);
    CHECK(trial["keys"][0]["reset_in"].get<double>() > 5.0);
}

// ---------------------------------------------------------------- 8: keyed limits

TEST_CASE("a keyed limit gives each API key its own quota and never shows the key",
          "[e2e][ratelimit][keys]") {
    const std::string alpha = "secret-alpha-5f2e91";
    const std::string beta = "secret-beta-77c0d4";
    MockUpstream upstream;
    SluiceProcess sluice(limits_yaml(
        upstream, "  per-key: {algorithm: sliding_window, limit: 2, window: 10s, key: {header: X-Api-Key}}\n",
        one_route("[per-key]")));
    HttpClient client(sluice.port("main"));
    const auto send = [&](const std::string& key) {
        Headers headers{{"Sluice-Max-Wait", "0"}};
        if (!key.empty()) headers.emplace_back("X-Api-Key", key);
        return client.get("/x", headers);
    };
    CHECK(send(alpha).status == 200);
    CHECK(send(alpha).status == 200);
    const auto refused = send(alpha);
    check_limit_rejection(refused, "admission_timeout", "per-key");
    CHECK(refused.body.find(alpha) == std::string::npos);
    CHECK(send(beta).status == 200);
    CHECK(send(beta).status == 200);
    CHECK(send(beta).status == 429);
    CHECK(send("").status == 200);  // no key: one shared "absent" key
    CHECK(upstream.request_count() == 5);

    HttpClient admin(sluice.admin_port());
    const auto page = admin.get("/status");
    REQUIRE(page.status == 200);
    CHECK(page.body.find(alpha) == std::string::npos);
    CHECK(page.body.find(beta) == std::string::npos);
    const auto per_key = limit_status(page.json(), "per-key");
    CHECK(per_key["tracked_keys"] == 3);
    std::vector<long> remaining;
    for (const auto& key : per_key["keys"]) {
        CHECK(key.value("key", "").rfind("k:", 0) == 0);
        remaining.push_back(key["remaining"].get<long>());
    }
    std::sort(remaining.begin(), remaining.end());
    CHECK(remaining == std::vector<long>{0, 0, 1});
}

// ---------------------------------------------------------------- 9: all or nothing

TEST_CASE("a request refused or waiting on one limit takes nothing from another",
          "[e2e][ratelimit][shared]") {
    MockUpstream upstream;
    const std::string limits =
        "  endpoint: {algorithm: sliding_window, limit: 2, window: 400ms}\n"
        "  blanket: {algorithm: sliding_window, limit: 4, window: 10s}\n";
    const std::string routes =
        "  - name: a\n    match: {path_prefix: /a/}\n    upstream: vendor\n    limits: [endpoint, blanket]\n"
        "  - name: b\n    match: {path_prefix: /b/}\n    upstream: vendor\n    limits: [blanket]\n";
    SluiceProcess sluice(limits_yaml(upstream, limits, routes));
    const auto port = sluice.port("main");
    HttpClient client(port);
    const Headers now_or_never{{"Sluice-Max-Wait", "0"}};
    const auto count_of = [&](const std::string& prefix) {
        const auto requests = upstream.requests();
        return std::count_if(requests.begin(), requests.end(),
                             [&](const RecordedRequest& r) { return r.target.rfind(prefix, 0) == 0; });
    };

    REQUIRE(client.get("/a/1").status == 200);
    REQUIRE(client.get("/a/2").status == 200);
    SECTION("refused by the endpoint limit") {
        check_limit_rejection(client.get("/a/3", now_or_never), "admission_timeout", "endpoint");
    }
    SECTION("waiting on the endpoint limit, then gone") {
        HttpClient leaver(port);
        leaver.write_raw(raw_get("/a/3"));
        REQUIRE(wait_for_waiting(sluice, 1));
        leaver.close();
        REQUIRE(wait_for_waiting(sluice, 0));
    }
    // The blanket still has 2 of 4: route b gets both, then nothing.
    CHECK(client.get("/b/1", now_or_never).status == 200);
    CHECK(client.get("/b/2", now_or_never).status == 200);
    check_limit_rejection(client.get("/b/3", now_or_never), "admission_timeout", "blanket");
    // Once the endpoint window has room, the blanket (4 of 4 spent) refuses a.
    std::this_thread::sleep_for(450ms);
    check_limit_rejection(client.get("/a/4", now_or_never), "admission_timeout", "blanket");
    CHECK(count_of("/a/") == 2);
    CHECK(count_of("/b/") == 2);
}
