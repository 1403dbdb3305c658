// Issue 14 acceptance: limits shared through Redis (docs/distributed.md), through the real
// binary. Several sluice processes ("replicas") point at one real Redis (support/redis_server.hpp)
// and one mock vendor that enforces its own limit exactly (support/mock_vendor.hpp):
//  - under load from every replica the vendor sees no 429 and nearly all of its quota;
//  - Redis killed mid-load and restarted: each limit follows its on_redis_failure policy
//    (local: a share of the limit per replica; deny: 503 shared_state_unavailable at once),
//    nothing hangs, and the replicas go back to shared limiting;
//  - a replica SIGKILLed while holding concurrency permits gives them back within the lease;
//  - a vendor 429 seen by one replica pauses the others for that key.
//
// Windows are scaled down (20 per 1 s), so each case runs in a few seconds. Sluice, the mock
// vendor and the test read the same CLOCK_MONOTONIC, so the vendor's arrival times compare with
// the test's own. Load runs on plain threads that only record what they saw: every assertion
// is made on the test's thread after they were joined (Catch2 v2's asserts are not thread-safe).

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <future>
#include <map>
#include <memory>
#include <signal.h>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "support/admin_status.hpp"
#include "support/http_client.hpp"
#include "support/mock_upstream.hpp"
#include "support/mock_vendor.hpp"
#include "support/overload.hpp"
#include "support/proxy_config.hpp"
#include "support/redis_server.hpp"
#include "support/sluice_process.hpp"
#include "support/synthetic_checks.hpp"

using namespace sluice::test;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

// The vendor's limit, and sluice's shared limit in front of it.
constexpr std::int64_t kLimit = 20;
constexpr auto kWindow = 1000ms;
// sluice's margin: forwarding latency varies between replicas by tens of ms on a loaded 2-core
// machine (three sluice, Redis, the vendor and the clients share it), and a request forwarded
// right at the window's edge must not reach the vendor before the one it replaces has left.
constexpr auto kMargin = 100ms;
// The load's requests carry this vendor key, so that warm-up requests (no key) spend nothing of
// the measured quota.
constexpr const char* kVendorKeyHeader = "X-Vendor-Key";
constexpr const char* kLoadKey = "load";

// "At once" for an answer that needs no wait, only a Redis round trip (or none); a sanitizer
// build (or SLUICE_E2E_NO_LATENCY=1) gets more, as in the other e2e tests' latency checks.
std::chrono::milliseconds at_once(pid_t sluice) {
    return latency_unreliable(sluice) ? 2000ms : 250ms;
}

double ms_of(Clock::duration d) {
    return std::chrono::duration<double, std::milli>(d).count();
}

// N sluice processes sharing one Redis: `server.state.backend: redis`, one listener "main", one
// upstream "vendor", a route "warm" (/warm/, no limits) and a route "r" (everything else) through
// `route_limits`.
struct SharedConfig {
    std::string redis_address;
    std::string upstream_url;
    std::string limits;        // lines under `limits:` (none: no limits section)
    std::string route_limits;  // a YAML flow list, e.g. "[shared]" (empty: the route has none)
    std::string feedback = "{enabled: false}";
    std::string queue = "{max_depth: 1000, max_wait: 10s}";
    std::string response_timeout = "5s";
    unsigned replicas = 3;
    std::string lease = "1s";

    std::string yaml() const {
        return yaml_subst(
            R"(server:
  workers: {WORKERS}
  timeouts: {client_header: 2s, client_body: 5s, client_idle: 30s, client_write: 5s}
  admin:
    listen: "127.0.0.1:0"
  state:
    backend: redis
    redis:
      address: "{REDIS}"
      key_prefix: sluice-e2e
      connect_timeout: 1s
      command_timeout: 250ms
      replicas: {REPLICAS}
      lease: {LEASE}
listeners:
  - name: main
    listen: "127.0.0.1:0"
upstreams:
  vendor:
    url: "{URL}"
    connect_timeout: 1s
    response_timeout: {RESPONSE}
    body_timeout: 5s
    feedback: {FEEDBACK}
{LIMITS}queue: {QUEUE}
routes:
  - name: warm
    match: {path_prefix: /warm/}
    upstream: vendor
  - name: r
    upstream: vendor
{ROUTE_LIMITS})",
            {{"WORKERS", std::to_string(e2e_workers())},
             {"REDIS", redis_address},
             {"REPLICAS", std::to_string(replicas)},
             {"LEASE", lease},
             {"URL", upstream_url},
             {"RESPONSE", response_timeout},
             {"FEEDBACK", feedback},
             {"LIMITS", limits.empty() ? "" : "limits:\n" + limits},
             {"QUEUE", queue},
             {"ROUTE_LIMITS", route_limits.empty() ? "" : "    limits: " + route_limits + "\n"}});
    }
};

// The sliding window shared by the replicas, with the given Redis failure policy.
std::string shared_limit(const std::string& on_redis_failure) {
    std::ostringstream text;
    text << "  shared: {algorithm: sliding_window, limit: " << kLimit << ", window: " << kWindow.count()
         << "ms, margin: " << kMargin.count() << "ms, on_redis_failure: " << on_redis_failure << "}\n";
    return text.str();
}

// /status's "shared" section, or null when the page has none (the feature is missing).
nlohmann::json shared_section(const SluiceProcess& sluice) {
    HttpClient admin(sluice.admin_port(), 2s);
    const auto page = admin.get("/status");
    if (page.status != 200) return nullptr;
    const auto status = nlohmann::json::parse(page.body, nullptr, false);
    if (status.is_discarded() || !status.is_object() || !status.contains("shared")) return nullptr;
    return status["shared"];
}

bool in_shared_mode(const SluiceProcess& sluice) {
    try {
        const auto shared = shared_section(sluice);
        return shared.is_object() && shared.value("mode", "") == "shared" && shared.value("connected", false);
    } catch (const std::exception&) {
        return false;  // the admin listener did not answer in time: not yet
    }
}

using Replicas = std::vector<std::unique_ptr<SluiceProcess>>;

Replicas start_replicas(const SharedConfig& config, std::size_t count) {
    Replicas replicas;
    for (std::size_t i = 0; i < count; ++i)
        replicas.push_back(std::make_unique<SluiceProcess>(config.yaml()));
    return replicas;
}

// Polls (bounded) until every replica's /status shows shared mode, connected.
bool wait_all_shared(const Replicas& replicas, std::chrono::milliseconds timeout) {
    return wait_until(
        [&] {
            return std::all_of(replicas.begin(), replicas.end(),
                               [](const auto& replica) { return in_shared_mode(*replica); });
        },
        timeout);
}

// Every replica's return guard (its fallback share, kept for a while after Redis is back) is over.
bool wait_guards_over(const Replicas& replicas, std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
        bool over = true;
        for (const auto& replica : replicas) {
            try {
                const auto status = shared_section(*replica);
                over = over && status.is_object() && status.value("return_guard_left_s", 1.0) == 0.0;
            } catch (const std::exception&) {
                over = false;  // the admin listener did not answer in time: not yet
            }
        }
        if (over) return true;
        std::this_thread::sleep_for(100ms);
    }
    return false;
}

std::string shared_sections(const Replicas& replicas) {
    std::string text;
    for (const auto& replica : replicas) {
        try {
            text += shared_section(*replica).dump() + "\n";
        } catch (const std::exception& e) {
            text += std::string("(no status: ") + e.what() + ")\n";
        }
    }
    return text;
}

// Opens a few upstream connections from every replica through the unlimited "warm" route, so that
// the measured requests do not include the first connects. Warm-up requests carry no vendor key:
// the vendor counts them in a window of their own.
void warm_up(const Replicas& replicas, MockUpstream& upstream) {
    const auto before = upstream.request_count();
    for (const auto& replica : replicas) {
        HttpClient client(replica->port("main"), 5s);
        for (int i = 0; i < 3; ++i) REQUIRE(client.get("/warm/" + std::to_string(i)).status == 200);
    }
    REQUIRE(upstream.wait_for_complete_requests(before + 3 * replicas.size(), 5s));
}

// One client exchange as the load saw it.
struct ClientExchange {
    std::size_t replica = 0;
    unsigned status = 0;  // 0: no answer (connection error, or the client's timeout)
    std::string error;    // Sluice-Error, the JSON body's "error", or the client's exception text
    Clock::time_point sent;
    Clock::time_point answered;

    Clock::duration took() const { return answered - sent; }
};

// `clients_per_replica` keep-alive clients per replica, each on its own thread, sending GETs
// back to back (after an answer other than 200, a 20 ms pause, so that a replica refusing at once
// is not spun against) until stop(). Each thread records what it saw; nothing is asserted there.
class SharedLoad {
public:
    SharedLoad(const Replicas& replicas, unsigned clients_per_replica,
               std::chrono::milliseconds client_timeout)
        : timeout_(client_timeout) {
        std::vector<std::pair<std::size_t, std::uint16_t>> clients;
        for (std::size_t r = 0; r < replicas.size(); ++r)
            for (unsigned c = 0; c < clients_per_replica; ++c)
                clients.emplace_back(r, replicas[r]->port("main"));
        per_client_.resize(clients.size());
        for (std::size_t i = 0; i < clients.size(); ++i) {
            threads_.emplace_back(
                [this, i, replica = clients[i].first, port = clients[i].second] { run(i, replica, port); });
        }
    }
    ~SharedLoad() { stop(); }
    SharedLoad(const SharedLoad&) = delete;
    SharedLoad& operator=(const SharedLoad&) = delete;

    // Stops the clients (a request under way still completes) and returns every exchange.
    std::vector<ClientExchange> stop() {
        stop_ = true;
        for (auto& thread : threads_)
            if (thread.joinable()) thread.join();
        std::vector<ClientExchange> all;
        for (const auto& exchanges : per_client_) all.insert(all.end(), exchanges.begin(), exchanges.end());
        std::sort(all.begin(), all.end(),
                  [](const ClientExchange& a, const ClientExchange& b) { return a.sent < b.sent; });
        return all;
    }

private:
    void run(std::size_t index, std::size_t replica, std::uint16_t port) {
        auto& out = per_client_[index];
        auto client = std::make_unique<HttpClient>(port, timeout_);
        const Headers headers{{kVendorKeyHeader, kLoadKey}};
        while (!stop_) {
            ClientExchange exchange;
            exchange.replica = replica;
            exchange.sent = Clock::now();
            try {
                const auto response = client->get("/load/" + std::to_string(index), headers);
                exchange.status = response.status;
                exchange.error = response.header("Sluice-Error").value_or("");
                if (exchange.error.empty() && response.status != 200) {
                    const auto body = nlohmann::json::parse(response.body, nullptr, false);
                    if (body.is_object()) exchange.error = body.value("error", "");
                }
            } catch (const std::exception& e) {
                exchange.error = e.what();
                client = std::make_unique<HttpClient>(port, timeout_);
            }
            exchange.answered = Clock::now();
            out.push_back(exchange);
            if (exchange.status != 200) std::this_thread::sleep_for(20ms);
        }
    }

    std::chrono::milliseconds timeout_;
    std::atomic<bool> stop_{false};
    std::vector<std::vector<ClientExchange>> per_client_;  // one per thread, sized before they start
    std::vector<std::thread> threads_;
};

// The vendor's answers to the load (its key), with `at` in [from, to).
std::vector<MockVendor::Answer> load_answers(const MockVendor& vendor,
                                             Clock::time_point from = Clock::time_point::min(),
                                             Clock::time_point to = Clock::time_point::max()) {
    std::vector<MockVendor::Answer> out;
    for (const auto& a : vendor.answers())
        if (a.key == kLoadKey && a.at >= from && a.at < to) out.push_back(a);
    return out;
}

std::vector<Clock::time_point> accepted_times(const std::vector<MockVendor::Answer>& answers) {
    std::vector<Clock::time_point> out;
    for (const auto& a : answers)
        if (a.status == 200) out.push_back(a.at);
    std::sort(out.begin(), out.end());
    return out;
}

std::size_t refused(const std::vector<MockVendor::Answer>& answers) {
    return static_cast<std::size_t>(std::count_if(
        answers.begin(), answers.end(), [](const MockVendor::Answer& a) { return a.status == 429; }));
}

// How many intervals [t, t + window) hold more than `limit` of `at` (sorted): 0 for a vendor that
// never went over.
std::size_t windows_over_limit(const std::vector<Clock::time_point>& at) {
    std::size_t over = 0;
    for (std::size_t i = 0; i + kLimit < at.size(); ++i)
        if (at[i + kLimit] - at[i] < kWindow) ++over;
    return over;
}

// "status[/error]: count, ..." of the exchanges that were not 200.
std::string failures_summary(const std::vector<ClientExchange>& exchanges) {
    std::map<std::string, std::size_t> counts;
    for (const auto& e : exchanges)
        if (e.status != 200) ++counts[std::to_string(e.status) + (e.error.empty() ? "" : "/" + e.error)];
    if (counts.empty()) return "none";
    std::string text;
    for (const auto& [what, count] : counts)
        text += (text.empty() ? "" : ", ") + what + ": " + std::to_string(count);
    return text;
}

std::size_t count_status(const std::vector<ClientExchange>& exchanges, unsigned status) {
    return static_cast<std::size_t>(std::count_if(
        exchanges.begin(), exchanges.end(), [&](const ClientExchange& e) { return e.status == status; }));
}

std::vector<ClientExchange> sent_between(const std::vector<ClientExchange>& exchanges, Clock::time_point from,
                                         Clock::time_point to) {
    std::vector<ClientExchange> out;
    for (const auto& e : exchanges)
        if (e.sent >= from && e.sent < to) out.push_back(e);
    return out;
}

// Every exchange was answered (a status), and none later than `bound` after it was sent.
void check_all_answered(const std::vector<ClientExchange>& exchanges, Clock::duration bound) {
    std::size_t unanswered = 0;
    std::size_t late = 0;
    Clock::duration longest{0};
    for (const auto& e : exchanges) {
        if (e.status == 0) ++unanswered;
        if (e.took() > bound) ++late;
        longest = std::max(longest, e.took());
    }
    INFO(exchanges.size() << " exchanges; the longest took " << ms_of(longest)
                          << " ms; not 200: " << failures_summary(exchanges));
    CHECK(unanswered == 0);
    CHECK(late == 0);
}

}  // namespace

// ---------------------------------------------------------------- three replicas, one vendor quota

TEST_CASE("three replicas sharing one Redis give the vendor all of its quota and never more",
          "[e2e][redis][load]") {
    RedisServer redis;
    MockVendor vendor({kLimit, kWindow, MockVendor::Window::rolling, kVendorKeyHeader, VendorStyle{}});
    MockUpstream upstream(vendor.handler());
    SharedConfig config;
    config.redis_address = redis.address();
    config.upstream_url = upstream.url();
    config.limits = shared_limit("local");
    config.route_limits = "[shared]";
    const auto replicas = start_replicas(config, 3);
    REQUIRE(wait_all_shared(replicas, 5s));
    warm_up(replicas, upstream);

    // 12 clients for a quota of 20 per second: every slot is wanted the moment it frees.
    constexpr unsigned kClientsPerReplica = 4;
    constexpr int kWindows = 4;
    std::vector<ClientExchange> exchanges;
    {
        SharedLoad load(replicas, kClientsPerReplica, 15s);
        std::this_thread::sleep_for(kWindows * kWindow + 600ms);
        exchanges = load.stop();
    }
    const auto answers = load_answers(vendor);
    const auto at = accepted_times(answers);
    REQUIRE(at.size() > kLimit);

    // The vendor never refused, and never held more than its limit in any window.
    CHECK(refused(answers) == 0);
    CHECK(windows_over_limit(at) == 0);
    // Every client request was answered, and with a 200 (max_wait 10 s is ample).
    check_all_answered(exchanges, 10s + 2s);
    CHECK(count_status(exchanges, 200) == exchanges.size());

    // What one exact sender could get: in [first, first + k windows), k times the limit (any
    // interval of one window holds at most `limit`, and k disjoint windows cover it).
    const auto in_k_windows = static_cast<std::int64_t>(std::count_if(
        at.begin(), at.end(), [&](Clock::time_point t) { return t < at.front() + kWindows * kWindow; }));
    const auto exact = kWindows * kLimit;
    // Over the whole span, first to last acceptance, for the report: an exact sender gets a full
    // window's worth at the start of each window that begins within it.
    const auto span = at.back() - at.front();
    const auto exact_over_span = kLimit * (1 + static_cast<std::int64_t>(span / kWindow));
    std::map<std::size_t, std::size_t> per_replica;
    for (const auto& e : exchanges)
        if (e.status == 200) ++per_replica[e.replica];
    WARN("shared sliding window " << kLimit << "/" << kWindow.count() << " ms, 3 replicas x "
                                  << kClientsPerReplica << " clients: vendor accepted " << in_k_windows
                                  << " of " << exact << " possible in the first " << kWindows << " windows ("
                                  << 100.0 * static_cast<double>(in_k_windows) / static_cast<double>(exact)
                                  << " %); " << at.size() << " over " << ms_of(span)
                                  << " ms, where an exact sender gets " << exact_over_span
                                  << "; vendor 429s: " << refused(answers) << "; per replica: "
                                  << per_replica[0] << " / " << per_replica[1] << " / " << per_replica[2]);
    // Full use is about timing: not asserted under a sanitizer.
    if (!latency_unreliable(replicas[0]->pid()))
        CHECK(static_cast<double>(in_k_windows) >= 0.97 * static_cast<double>(exact));
}

// ---------------------------------------------------------------- Redis killed mid-load

TEST_CASE(
    "Redis killed mid-load with on_redis_failure local: a share per replica, nothing hangs, "
    "shared limiting resumes",
    "[e2e][redis][failure]") {
    RedisServer redis;
    MockVendor vendor({kLimit, kWindow, MockVendor::Window::rolling, kVendorKeyHeader, VendorStyle{}});
    MockUpstream upstream(vendor.handler());
    SharedConfig config;
    config.redis_address = redis.address();
    config.upstream_url = upstream.url();
    config.limits = shared_limit("local");
    config.route_limits = "[shared]";
    constexpr auto kMaxWait = 3s;
    config.queue = "{max_depth: 1000, max_wait: 3s}";
    const auto replicas = start_replicas(config, 3);
    REQUIRE(wait_all_shared(replicas, 5s));
    warm_up(replicas, upstream);

    std::vector<ClientExchange> exchanges;
    Clock::time_point killed, restarted, resumed, load_end;
    bool all_resumed = false;
    {
        SharedLoad load(replicas, 4, kMaxWait + 5s);
        std::this_thread::sleep_for(1500ms);
        killed = Clock::now();
        redis.kill();
        std::this_thread::sleep_for(2000ms);
        restarted = Clock::now();
        redis.restart();
        all_resumed = wait_all_shared(replicas, 10s);
        resumed = Clock::now();
        // A window for the replicas' fallback admissions to leave it, then shared load again.
        std::this_thread::sleep_for(kWindow + kMargin + 2000ms);
        load_end = Clock::now();
        exchanges = load.stop();
    }
    INFO("the replicas' shared state:\n" << shared_sections(replicas));
    CHECK(all_resumed);
    // No request waited past its max_wait because of Redis.
    check_all_answered(exchanges, kMaxWait + 1500ms);

    // What the outage cost, from the kill until a window after every replica was shared again.
    const auto settled = resumed + kWindow + kMargin;
    const auto outage_answers = load_answers(vendor, killed, settled);
    const auto outage_exchanges = sent_between(exchanges, killed, settled);
    // Where the vendor's 429s fell: the switch to the fallback (its first window), the fallback
    // itself, and the way back (from the restart to a window after every replica was shared).
    const auto switch_end = killed + kWindow + kMargin;
    WARN("on_redis_failure local, Redis down "
         << ms_of(restarted - killed) << " ms, every replica shared again " << ms_of(resumed - restarted)
         << " ms after its restart: vendor " << accepted_times(outage_answers).size() << " accepted, "
         << refused(outage_answers) << " 429s (" << refused(load_answers(vendor, killed, switch_end))
         << " in the first window after the kill, " << refused(load_answers(vendor, switch_end, restarted))
         << " later in the outage, " << refused(load_answers(vendor, restarted, settled))
         << " from the restart to a window after all were shared); clients " << outage_exchanges.size()
         << " requests, not 200: " << failures_summary(outage_exchanges));
    // Once the fallback is in place, the replicas' shares add up to no more than the limit: the
    // vendor refuses nothing until Redis is back.
    CHECK(refused(load_answers(vendor, switch_end, restarted)) == 0);
    // Before the kill, and once shared again, the replicas limit jointly: no vendor 429.
    CHECK(refused(load_answers(vendor, Clock::time_point::min(), killed)) == 0);
    const auto after = load_answers(vendor, settled, load_end + 1s);
    CHECK(refused(after) == 0);
    CHECK(accepted_times(after).size() >= static_cast<std::size_t>(kLimit));

    // Jointly: with the window empty, one replica alone gets the whole limit (the local fallback
    // would give it a third), and the others then get nothing. (A short max wait rather than 0,
    // which a case of its own checks.) Back from the fallback, each replica keeps its share for a
    // while (the return guard, docs/distributed.md): wait until no replica is under it.
    CHECK(wait_guards_over(replicas, 15s));
    std::this_thread::sleep_for(kWindow + kMargin + 100ms);
    const Headers now_or_never{{"Sluice-Max-Wait", "300ms"}, {kVendorKeyHeader, "joint"}};
    HttpClient first(replicas[0]->port("main"));
    std::size_t admitted = 0;
    std::string refusal;
    for (int i = 0; i < kLimit; ++i) {
        const auto response = first.get("/joint", now_or_never);
        if (response.status == 200) {
            ++admitted;
        } else if (refusal.empty()) {
            refusal = std::to_string(response.status) + " " + response.body;
        }
    }
    INFO("replica 0's first refusal: " << refusal);
    CHECK(admitted == static_cast<std::size_t>(kLimit));
    for (std::size_t r = 1; r < replicas.size(); ++r) {
        HttpClient other(replicas[r]->port("main"));
        const auto response = other.get("/joint", now_or_never);
        INFO("replica " << r << " after replica 0 took the whole limit");
        CHECK(response.status == 429);
        CHECK(header_or_absent(response, "Sluice-Error") == "admission_timeout");
    }
}

TEST_CASE(
    "Redis killed mid-load with on_redis_failure deny: 503 shared_state_unavailable at once, "
    "nothing forwarded, shared limiting resumes",
    "[e2e][redis][failure]") {
    RedisServer redis;
    MockVendor vendor({kLimit, kWindow, MockVendor::Window::rolling, kVendorKeyHeader, VendorStyle{}});
    MockUpstream upstream(vendor.handler());
    SharedConfig config;
    config.redis_address = redis.address();
    config.upstream_url = upstream.url();
    config.limits = shared_limit("deny");
    config.route_limits = "[shared]";
    constexpr auto kMaxWait = 5s;
    config.queue = "{max_depth: 1000, max_wait: 5s}";
    const auto replicas = start_replicas(config, 3);
    REQUIRE(wait_all_shared(replicas, 5s));
    warm_up(replicas, upstream);

    // Requests sent this long after the kill find it noticed: a command already sent is bounded by
    // command_timeout (250 ms), a lost connection is seen at once.
    constexpr auto kNoticed = 300ms;
    std::vector<ClientExchange> exchanges;
    Clock::time_point killed, restarted, resumed, load_end;
    bool all_resumed = false;
    HttpResponse during;
    double during_ms = 0;
    {
        SharedLoad load(replicas, 3, kMaxWait + 5s);
        std::this_thread::sleep_for(1000ms);
        killed = Clock::now();
        redis.kill();
        std::this_thread::sleep_for(kNoticed + 400ms);
        {
            HttpClient client(replicas[1]->port("main"), 10s);
            const auto sent = Clock::now();
            during = client.get("/during", {{kVendorKeyHeader, kLoadKey}});
            during_ms = ms_of(Clock::now() - sent);
        }
        std::this_thread::sleep_for(500ms);
        restarted = Clock::now();
        redis.restart();
        all_resumed = wait_all_shared(replicas, 10s);
        resumed = Clock::now();
        std::this_thread::sleep_for(2500ms);
        load_end = Clock::now();
        exchanges = load.stop();
    }
    INFO("the replicas' shared state:\n" << shared_sections(replicas));
    CHECK(all_resumed);
    check_all_answered(exchanges, kMaxWait + 1500ms);

    // A request during the outage: the documented 503, at once.
    INFO("a request during the outage took " << during_ms << " ms");
    check_synthetic(during, 503, "shared_state_unavailable");
    CHECK(during_ms < ms_of(at_once(replicas[1]->pid())));

    const auto outage = sent_between(exchanges, killed + kNoticed, restarted);
    REQUIRE(!outage.empty());
    std::size_t not_denied = 0;
    Clock::duration slowest{0};
    for (const auto& e : outage) {
        if (e.status != 503 || e.error != "shared_state_unavailable") ++not_denied;
        slowest = std::max(slowest, e.took());
    }
    const auto outage_answers = load_answers(vendor, killed, resumed);
    WARN("on_redis_failure deny, Redis down "
         << ms_of(restarted - killed) << " ms, shared again " << ms_of(resumed - restarted)
         << " ms after its restart: vendor " << accepted_times(outage_answers).size() << " accepted, "
         << refused(outage_answers) << " 429s; clients " << outage.size()
         << " requests during the outage, not 200: " << failures_summary(outage)
         << ", the slowest answered in " << ms_of(slowest) << " ms");
    CHECK(not_denied == 0);
    CHECK(slowest < at_once(replicas[0]->pid()));  // far below max_wait (5 s)
    // Fail closed: the vendor saw nothing from sluice while Redis was away, and never a 429.
    CHECK(load_answers(vendor, killed + kNoticed, restarted).empty());
    CHECK(refused(load_answers(vendor)) == 0);
    // Shared again: requests go through.
    const auto after = sent_between(exchanges, resumed, load_end);
    INFO("after the restart, not 200: " << failures_summary(after));
    CHECK(!after.empty());
    CHECK(count_status(after, 200) == after.size());
}

TEST_CASE("Sluice-Max-Wait: 0 in shared mode admits while the shared limit has room, then refuses at once",
          "[e2e][redis][429]") {
    RedisServer redis;
    MockUpstream upstream;
    SharedConfig config;
    config.redis_address = redis.address();
    config.upstream_url = upstream.url();
    config.limits = "  few: {algorithm: sliding_window, limit: 3, window: 10s}\n";
    config.route_limits = "[few]";
    config.replicas = 2;
    const auto replicas = start_replicas(config, 2);
    REQUIRE(wait_all_shared(replicas, 5s));
    HttpClient first(replicas[0]->port("main"));
    HttpClient second(replicas[1]->port("main"));
    const Headers now_or_never{{"Sluice-Max-Wait", "0"}};
    // Answered with `status`, at once (a Redis round trip, not a wait).
    const auto expect = [&](HttpClient& client, unsigned status) {
        const auto sent = Clock::now();
        auto response = client.get("/x", now_or_never);
        const auto took = Clock::now() - sent;
        INFO("answered " << response.status << " in " << ms_of(took) << " ms: " << response.body);
        CHECK(response.status == status);
        CHECK(took < at_once(replicas[0]->pid()));
        return response;
    };
    // 3 of 3: two through the first replica, one through the second.
    expect(first, 200);
    expect(first, 200);
    expect(second, 200);
    // The shared window is full for either replica.
    check_synthetic(expect(second, 429), 429, "admission_timeout");
    check_synthetic(expect(first, 429), 429, "admission_timeout");
    CHECK(upstream.request_count() == 3);
}

namespace {

// The vendor says it charged what the test asks (cost.settle, docs/costs.md).
MockReply charge_as_asked(const RecordedRequest& request) {
    return MockReply::fixed(200, "ok", {{"X-Charged", request.header("X-Test-Charge").value_or("1")}});
}

// Two replicas sharing `units`: a cost from X-Units, settled from the vendor's X-Charged.
Replicas settling_replicas(const RedisServer& redis, const MockUpstream& upstream,
                           const std::string& window) {
    SharedConfig config;
    config.redis_address = redis.address();
    config.upstream_url = upstream.url();
    config.limits = "  units: {algorithm: sliding_window, limit: 10, window: " + window +
                    ", cost: {header: X-Units, settle: {header: X-Charged}}}\n";
    config.route_limits = "[units]";
    config.replicas = 2;
    return start_replicas(config, 2);
}

}  // namespace

TEST_CASE("units the vendor charged beyond the admission are counted for every replica",
          "[e2e][redis][costs]") {
    RedisServer redis;
    MockUpstream upstream(charge_as_asked);
    const auto replicas = settling_replicas(redis, upstream, "10s");
    REQUIRE(wait_all_shared(replicas, 5s));
    HttpClient first(replicas[0]->port("main"));
    HttpClient second(replicas[1]->port("main"));
    // 1 unit admitted through the first replica, 10 charged: the shared window holds 10.
    CHECK(first.get("/x", {{"X-Units", "1"}, {"X-Test-Charge", "10"}}).status == 200);
    // The charge goes to Redis after the response: give the loopback round trip a moment.
    std::this_thread::sleep_for(100ms);
    check_synthetic(second.get("/x", {{"X-Units", "1"}, {"Sluice-Max-Wait", "0"}}), 429, "admission_timeout");
    CHECK(upstream.request_count() == 1);
}

namespace {

// The other replica asks with Sluice-Max-Wait: 0 until it gets anything but a 429 (which takes
// nothing), for a bounded while: a refund reaches Redis just after the answer that caused it has
// gone out, so the next ask may come a moment before it.
HttpResponse first_not_refused(const SluiceProcess& replica, const Headers& headers) {
    HttpResponse last;
    wait_until(
        [&] {
            HttpClient client(replica.port("main"), 5s);
            last = client.get("/x", headers);
            return last.status != 429;
        },
        2000ms);
    return last;
}

}  // namespace

TEST_CASE("a request that could not reach the vendor gives its unit back to every replica",
          "[e2e][redis][refund]") {
    RedisServer redis;
    SharedConfig config;
    config.redis_address = redis.address();
    config.upstream_url = "http://127.0.0.1:" + std::to_string(closed_port());
    config.limits = "  one: {algorithm: sliding_window, limit: 1, window: 60s}\n";
    config.route_limits = "[one]";
    config.replicas = 2;
    const auto replicas = start_replicas(config, 2);
    REQUIRE(wait_all_shared(replicas, 5s));
    const Headers now_or_never{{"Sluice-Max-Wait", "0"}};
    // Without the refund in Redis, the minute's one unit would be spent after the first request,
    // for both replicas: 429 for every one after it.
    for (int i = 0; i < 4; ++i) {
        const auto& replica = *replicas[static_cast<std::size_t>(i % 2)];
        check_synthetic(first_not_refused(replica, now_or_never), 502, "upstream_connect_failed");
    }
}

TEST_CASE("units the vendor charged below the admission are given back to every replica",
          "[e2e][redis][costs]") {
    RedisServer redis;
    MockUpstream upstream(charge_as_asked);
    const auto replicas = settling_replicas(redis, upstream, "60s");
    REQUIRE(wait_all_shared(replicas, 5s));
    // 10 units admitted through the first replica, 1 charged: 9 go back, in Redis too.
    HttpClient first(replicas[0]->port("main"));
    CHECK(first.get("/x", {{"X-Units", "10"}, {"X-Test-Charge", "1"}}).status == 200);
    CHECK(
        first_not_refused(*replicas[1], {{"X-Units", "9"}, {"X-Test-Charge", "9"}, {"Sluice-Max-Wait", "0"}})
            .status == 200);
    // And no more than that: the window is full.
    HttpClient second(replicas[1]->port("main"));
    check_synthetic(second.get("/x", {{"X-Units", "1"}, {"Sluice-Max-Wait", "0"}}), 429, "admission_timeout");
    CHECK(upstream.request_count() == 2);
}

// ---------------------------------------------------------------- concurrency leases

TEST_CASE("a replica SIGKILLed while holding the shared concurrency permits gives them back within the lease",
          "[e2e][redis][concurrency]") {
    constexpr auto kLease = 1000ms;
    RedisServer redis;
    // /hold/ is answered long after the test ends (abandoned with the upstream); the rest at once.
    MockUpstream upstream([](const RecordedRequest& request) {
        return request.target.rfind("/hold/", 0) == 0 ? MockReply::echo().with_delay(30s) : MockReply::echo();
    });
    SharedConfig config;
    config.redis_address = redis.address();
    config.upstream_url = upstream.url();
    config.limits = "  parallel: {algorithm: concurrency, limit: 2}\n";
    config.route_limits = "[parallel]";
    config.replicas = 2;
    config.lease = "1s";
    config.response_timeout = "60s";
    const auto replicas = start_replicas(config, 2);
    REQUIRE(wait_all_shared(replicas, 5s));
    auto& holder = *replicas[0];
    auto& other = *replicas[1];

    // The holder takes both permits. Its clients lose their connections when it is killed.
    const auto hold = [port = holder.port("main")](int i) {
        return std::async(std::launch::async, [port, i] {
            try {
                HttpClient client(port, 60s);
                return client.get("/hold/" + std::to_string(i)).status;
            } catch (const std::exception&) {
                return 0u;
            }
        });
    };
    auto held_1 = hold(1);
    auto held_2 = hold(2);
    REQUIRE(upstream.wait_for_requests(2, 5s));

    auto waiting = std::async(std::launch::async, [port = other.port("main")] {
        HttpClient client(port, 15s);
        return client.get("/after-kill");
    });
    // Longer than the lease: the holder renews its leases while its exchanges run, so the other
    // replica still waits.
    std::this_thread::sleep_for(kLease + 500ms);
    CHECK(upstream.request_count() == 2);

    const auto killed = Clock::now();
    REQUIRE(::kill(holder.pid(), SIGKILL) == 0);
    const bool forwarded = upstream.wait_for_requests(3, kLease + 3s);
    const auto response = waiting.get();
    CHECK(response.status == 200);
    REQUIRE(forwarded);
    Clock::time_point arrival{};
    for (const auto& request : upstream.requests())
        if (request.target == "/after-kill") arrival = request.arrival;
    REQUIRE(arrival != Clock::time_point{});
    WARN("concurrency lease " << kLease.count() << " ms: the other replica's request reached the upstream "
                              << ms_of(arrival - killed) << " ms after the holder was SIGKILLed");
    CHECK(arrival - killed <= kLease + at_once(other.pid()) * 2);
    holder.stop();
    CHECK(held_1.get() == 0);
    CHECK(held_2.get() == 0);
}

// ---------------------------------------------------------------- vendor pauses

TEST_CASE("a vendor 429 seen by one replica pauses the other until the vendor's reset",
          "[e2e][redis][feedback]") {
    constexpr std::int64_t kQuota = 3;
    VendorStyle style;
    style.retry_after_decimal = true;
    MockVendor vendor({kQuota, 1000ms, MockVendor::Window::fixed, "", style});
    MockUpstream upstream(vendor.handler());
    RedisServer redis;
    SharedConfig config;
    config.redis_address = redis.address();
    config.upstream_url = upstream.url();
    config.feedback = "{enabled: true, max_pause: 5s, default_pause: 3s}";
    config.replicas = 2;
    const auto replicas = start_replicas(config, 2);
    REQUIRE(wait_all_shared(replicas, 5s));
    auto& first = *replicas[0];
    auto& second = *replicas[1];

    // A second consumer spends the period's quota at its start: the first replica's request then
    // draws a 429 whose Retry-After names the period's end, most of a second away.
    std::this_thread::sleep_until(vendor.next_period_start() + 20ms);
    {
        HttpClient direct(upstream.port());
        for (std::int64_t i = 0; i < kQuota; ++i)
            REQUIRE(direct.get("/direct", {{kConsumerHeader, "direct"}}).status == 200);
    }
    auto refused_one = std::async(std::launch::async, [port = first.port("main")] {
        HttpClient client(port, 10s);
        return client.get("/first", {{kConsumerHeader, "first"}}).status;
    });
    REQUIRE(vendor.wait_for("first", 429, 1, 2s));
    MockVendor::Answer refusal;
    for (const auto& a : vendor.answers())
        if (a.consumer == "first" && a.status == 429) refusal = a;
    // The first replica reads the 429 and writes the pause to Redis within a few ms (loopback).
    std::this_thread::sleep_for(50ms);

    const auto sent = Clock::now();
    HttpClient client(second.port("main"), 10s);
    const auto response = client.get("/second", {{kConsumerHeader, "second"}});
    const auto answered = Clock::now();
    CHECK(response.status == 200);
    CHECK(refused_one.get() == 200);  // the first replica retried its GET after the pause

    std::vector<MockVendor::Answer> seconds;
    for (const auto& a : vendor.answers())
        if (a.consumer == "second") seconds.push_back(a);
    REQUIRE(!seconds.empty());
    WARN("vendor pause shared: the second replica's request was sent "
         << ms_of(refusal.retry_at - sent) << " ms before the vendor's reset and reached it "
         << ms_of(seconds.front().at - refusal.retry_at) << " ms after the reset (answered in "
         << ms_of(answered - sent) << " ms)");
    CHECK(vendor.count("second", 429) == 0);
    // It waited for the pause the other replica learned of (a few ms for the clocks' reading).
    CHECK(seconds.front().at >= refusal.retry_at - 20ms);
    CHECK(seconds.front().at <= refusal.retry_at + at_once(second.pid()));
}
