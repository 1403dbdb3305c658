// Issue 10, "Overload and faults": the real sluice binary under more clients
// than its limits admit, and under connections that hold resources without
// making progress.
//
// 1. 500 concurrent clients against 20 per second (sliding window), a queue of
//    100 and max_wait 2 s: every request is answered within max_wait + 100 ms,
//    a 429 comes at arrival (never after waiting in vain), the upstream never
//    sees more than 20 in any second, and sluice's RSS and open fds stay
//    bounded and come back to their baseline.
// 2. 3,000 idle connections, slowloris clients and slow readers held open at
//    once: other clients are served within normal latency meanwhile, the slow
//    ones are cut at the documented timeouts, and fds and RSS come back.
//
// Durations are scaled for CI (10 s of load, not the issue's 20 s; the
// concurrency is the issue's): SLUICE_E2E_OVERLOAD_SECONDS=20 runs the full
// length. Latency bounds are not asserted in sanitizer builds, nor with
// SLUICE_E2E_NO_LATENCY=1 (support/overload.hpp); everything else is.

#include <algorithm>
#include <arpa/inet.h>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <map>
#include <netinet/in.h>
#include <poll.h>
#include <string>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include <catch2/catch.hpp>

#include "support/http_client.hpp"
#include "support/mock_upstream.hpp"
#include "support/overload.hpp"
#include "support/proxy_config.hpp"
#include "support/sluice_process.hpp"

using namespace sluice::test;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

double ms_between(Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
}

std::chrono::milliseconds overload_duration() {
    const char* text = std::getenv("SLUICE_E2E_OVERLOAD_SECONDS");
    const long seconds = text != nullptr ? std::strtol(text, nullptr, 10) : 0;
    return std::chrono::seconds(seconds >= 1 && seconds <= 600 ? seconds : 10);
}

// Samples a process's RSS and open fds every 100 ms on a thread of its own.
class ResourceSampler {
public:
    explicit ResourceSampler(pid_t pid)
        : thread_([this, pid] {
              while (!stop_) {
                  const auto rss = process_rss_bytes(pid);
                  const auto fds = process_open_fds(pid);
                  max_rss_ = std::max<std::uint64_t>(max_rss_, rss);
                  max_fds_ = std::max<std::size_t>(max_fds_, fds);
                  std::this_thread::sleep_for(100ms);
              }
          }) {}
    ~ResourceSampler() { stop(); }
    void stop() {
        stop_ = true;
        if (thread_.joinable()) thread_.join();
    }
    std::uint64_t max_rss() const { return max_rss_; }
    std::size_t max_fds() const { return max_fds_; }

private:
    std::atomic<bool> stop_{false};
    std::atomic<std::uint64_t> max_rss_{0};
    std::atomic<std::size_t> max_fds_{0};
    std::thread thread_;
};

// Waits (bounded) until sluice holds at most `fds` open fds; returns the last count.
std::size_t wait_for_fds_at_most(pid_t pid, std::size_t fds, std::chrono::milliseconds timeout) {
    const auto until = Clock::now() + timeout;
    std::size_t now = process_open_fds(pid);
    while (now > fds && Clock::now() < until) {
        std::this_thread::sleep_for(50ms);
        now = process_open_fds(pid);
    }
    return now;
}

// sluice's open fds once they stop changing (pooled upstream connections closing at their
// idle_timeout): two samples 300 ms apart agree, within 3 s.
std::size_t settled_fds(pid_t pid) {
    std::size_t last = process_open_fds(pid);
    for (const auto until = Clock::now() + 3s; Clock::now() < until;) {
        std::this_thread::sleep_for(300ms);
        const std::size_t now = process_open_fds(pid);
        if (now == last) break;
        last = now;
    }
    return last;
}

double mib(std::uint64_t bytes) {
    return static_cast<double>(bytes) / (1024.0 * 1024.0);
}

}  // namespace

TEST_CASE(
    "500 clients against 20 per second: answers within max_wait and 429s at arrival, the upstream "
    "within the limit, resources back to baseline",
    "[e2e][overload]") {
    REQUIRE(raise_fd_limit(4096) >= 2048);
    constexpr std::size_t kClients = 500;
    constexpr int kLimit = 20;
    constexpr auto kWindow = 1000ms;
    constexpr double kMaxWaitMs = 2000;
    const auto duration = overload_duration();

    MockUpstream upstream([](const RecordedRequest&) { return MockReply::fixed(200, "ok"); });
    SluiceProcess sluice(yaml_subst(R"(server:
  workers: {WORKERS}
  max_client_connections: 2000
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
    idle_timeout: 3s
    feedback: {enabled: false}
limits:
  rolling: {algorithm: sliding_window, limit: 20, window: 1s, margin: 100ms}
queue: {max_depth: 100, max_wait: 2s}
routes:
  - name: r
    upstream: vendor
    limits: [rolling]
)",
                                    {{"WORKERS", std::to_string(e2e_workers())}, {"URL", upstream.url()}}));
    const pid_t pid = sluice.pid();
    const bool timing = !latency_unreliable(pid);  // also memory: ASan's shadow and quarantine
    // Baseline: started, one request served (lazy allocations done), its pooled
    // upstream connection closed again by the 3 s idle_timeout (long enough to keep
    // the pool warm between waves: a connect per wave would add forwarding jitter).
    {
        HttpClient client(sluice.port("main"));
        REQUIRE(client.get("/baseline").status == 200);
    }
    std::this_thread::sleep_for(3500ms);
    const std::size_t base_fds = settled_fds(pid);
    const std::uint64_t base_rss = process_rss_bytes(pid);
    const std::size_t upstream_before = upstream.request_count();

    ResourceSampler sampler(pid);
    LoadClients load({sluice.port("main"), kClients, "/load", duration, 200ms, 10s});
    const auto started = Clock::now();
    const std::vector<Exchange> exchanges = load.run();
    const double ran_s = std::chrono::duration<double>(Clock::now() - started).count();
    sampler.stop();

    // Every request answered: 200 (forwarded) or sluice's 429, nothing else, no error.
    std::map<std::string, std::size_t> outcomes;
    std::vector<double> ok_ms, refused_ms;
    std::size_t slow_429 = 0, late = 0;
    for (const Exchange& e : exchanges) {
        const std::string what = e.status == 0 ? "failed" : std::to_string(e.status) + " " + e.error;
        ++outcomes[what];
        if (e.status == 200) ok_ms.push_back(e.ms);
        if (e.status == 429) {
            refused_ms.push_back(e.ms);
            if (e.ms > 200) ++slow_429;
        }
        if (e.ms > kMaxWaitMs + 100) ++late;
    }
    std::string summary;
    for (const auto& [what, n] : outcomes) summary += what + ": " + std::to_string(n) + "; ";
    const auto at = [&] {
        std::vector<Clock::time_point> out;
        const auto requests = upstream.requests();
        for (std::size_t i = upstream_before; i < requests.size(); ++i) out.push_back(requests[i].arrival);
        std::sort(out.begin(), out.end());
        return out;
    }();
    INFO("ran " << ran_s << " s, " << exchanges.size() << " exchanges over " << load.connects()
                << " connections: " << summary);
    INFO("200: p50 " << percentile(ok_ms, 0.5) << " ms, p99 " << percentile(ok_ms, 0.99) << " ms, max "
                     << percentile(ok_ms, 1) << " ms; 429: p50 " << percentile(refused_ms, 0.5) << " ms, p99 "
                     << percentile(refused_ms, 0.99) << " ms, max " << percentile(refused_ms, 1) << " ms, "
                     << slow_429 << " after more than 200 ms");
    INFO("sluice fds: baseline " << base_fds << ", max " << sampler.max_fds() << "; RSS: baseline "
                                 << mib(base_rss) << " MiB, max " << mib(sampler.max_rss()) << " MiB");
    WARN("overload: " << summary << "200 p99 " << percentile(ok_ms, 0.99) << " ms max "
                      << percentile(ok_ms, 1) << " ms; 429 p99 " << percentile(refused_ms, 0.99) << " ms max "
                      << percentile(refused_ms, 1) << " ms, " << slow_429 << " 429s after > 200 ms; upstream "
                      << at.size() << " in " << ran_s << " s; fds " << base_fds << " -> max "
                      << sampler.max_fds() << "; RSS " << mib(base_rss) << " -> max "
                      << mib(sampler.max_rss()) << " MiB");
    CHECK(outcomes.count("failed") == 0);
    for (const auto& [what, n] : outcomes) {
        INFO(what);
        CHECK((what == "200 " || what == "429 admission_timeout" || what == "429 queue_full"));
    }
    REQUIRE(ok_ms.size() >= static_cast<std::size_t>(kLimit));
    REQUIRE(!refused_ms.empty());  // an overload indeed: 500 clients want far more than 20/s

    // Every request answered within max_wait + 100 ms, and a 429 at once: a
    // request that cannot be admitted in time is refused when it arrives.
    if (timing) {
        CHECK(late == 0);
        CHECK(slow_429 == 0);
        CHECK(percentile(refused_ms, 0.99) < 100);
    }

    // The upstream saw every admitted request, and never more than 20 in any 1 s. The
    // margin (100 ms) is what absorbs the time from sluice's admission to the upstream's
    // arrival: on a 2-core machine shared with other work, 500 clients' traffic delayed a
    // forward by more than 50 ms now and then (a 50 ms margin saw 21 arrivals within 998.7 ms).
    CHECK(at.size() == ok_ms.size());
    std::size_t violations = 0;
    for (std::size_t i = 0; i + kLimit < at.size(); ++i) {
        if (at[i + kLimit] - at[i] < kWindow) {
            ++violations;
            UNSCOPED_INFO("arrivals " << i << " and " << i + kLimit << " are "
                                      << ms_between(at[i], at[i + kLimit]) << " ms apart");
        }
    }
    double min_gap = 1e9;
    for (std::size_t i = 0; i + kLimit < at.size(); ++i)
        min_gap = std::min(min_gap, ms_between(at[i], at[i + kLimit]));
    WARN("upstream: the shortest span holding 21 arrivals: " << min_gap << " ms");
    CHECK(violations == 0);
    // And the limit was used: at least 90 % of 20 per (1 s + 100 ms margin) over the run.
    CHECK(static_cast<double>(at.size()) >= 0.9 * kLimit * (ran_s - 2.5) / 1.1);

    // Bounded while it ran: one fd per client connection and at most the upstream pool (64)
    // above the baseline; memory within 64 MiB of it.
    CHECK(sampler.max_fds() <= base_fds + kClients + 64 + 8);
    if (timing) CHECK(sampler.max_rss() <= base_rss + 64ull * 1024 * 1024);
    // And back afterwards: every client and upstream connection closed (the pool's idle_timeout
    // is 3 s), memory within 8 MiB of the baseline (allocator caches; ASan keeps a quarantine).
    const std::size_t after_fds = wait_for_fds_at_most(pid, base_fds, 8s);
    const std::uint64_t after_rss = process_rss_bytes(pid);
    WARN("after: fds " << after_fds << " (baseline " << base_fds << "), RSS " << mib(after_rss)
                       << " MiB (baseline " << mib(base_rss) << " MiB)");
    CHECK(after_fds <= base_fds);
    if (timing) CHECK(after_rss <= base_rss + 8ull * 1024 * 1024);
    CHECK(sluice.running());
}

TEST_CASE(
    "3000 idle connections and slowloris and slow readers: others served meanwhile, the slow ones "
    "cut at their timeouts, resources back to baseline",
    "[e2e][overload]") {
    constexpr std::size_t kSlowloris = 200;
    constexpr std::size_t kSlowReaders = 20;
    constexpr std::uint64_t kBigBody = 32ull * 1024 * 1024;  // far beyond what socket buffers absorb
    constexpr double kHeaderTimeout = 4, kWriteTimeout = 2, kIdleTimeout = 5;
    // The test holds every connection (and the mock upstream's side of sluice's), sluice its side.
    std::size_t idle_count = 3000;
    const std::uint64_t fd_limit = raise_fd_limit(8192);
    if (fd_limit < idle_count + 1000) {
        idle_count = fd_limit > 1500 ? static_cast<std::size_t>(fd_limit) - 1000 : 500;
        WARN("RLIMIT_NOFILE hard limit " << fd_limit << ": holding " << idle_count << " idle connections");
    }

    MockUpstream upstream([](const RecordedRequest& r) {
        if (r.target.rfind("/big", 0) == 0) return MockReply::stream(kBigBody, false);
        return MockReply::fixed(200, "ok");
    });
    SluiceProcess sluice(yaml_subst(R"(server:
  workers: {WORKERS}
  max_client_connections: 4000
  timeouts: {client_header: 4s, client_body: 5s, client_idle: 5s, client_write: 2s}
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
    idle_timeout: 1s
    feedback: {enabled: false}
routes:
  - name: r
    upstream: vendor
)",
                                    {{"WORKERS", std::to_string(e2e_workers())}, {"URL", upstream.url()}}));
    const pid_t pid = sluice.pid();
    const bool timing = !latency_unreliable(pid);  // also memory: ASan's shadow and quarantine
    const auto port = sluice.port("main");

    // Normal latency: 4 clients back to back for `span`, on their own threads.
    const auto probe = [port](std::chrono::milliseconds span) {
        std::vector<std::vector<double>> per(4);
        std::vector<std::thread> threads;
        std::atomic<std::size_t> failures{0};
        for (std::size_t t = 0; t < per.size(); ++t) {
            threads.emplace_back([&, t] {
                try {
                    HttpClient client(port, 5s);
                    const auto end = Clock::now() + span;
                    while (Clock::now() < end) {
                        const auto start = Clock::now();
                        if (client.get("/probe").status != 200) ++failures;
                        per[t].push_back(ms_between(start, Clock::now()));
                    }
                } catch (const std::exception&) {
                    ++failures;
                }
            });
        }
        for (auto& th : threads) th.join();
        std::vector<double> all;
        for (const auto& v : per) all.insert(all.end(), v.begin(), v.end());
        return std::make_pair(all, failures.load());
    };

    const auto [quiet_ms, quiet_failures] = probe(500ms);
    std::this_thread::sleep_for(1500ms);  // the probes' pooled upstream connections close (idle_timeout 1 s)
    const std::size_t base_fds = settled_fds(pid);
    const std::uint64_t base_rss = process_rss_bytes(pid);

    ResourceSampler sampler(pid);
    HeldSockets held(port);
    const auto opened = Clock::now();
    // The keep-alive ones first: their one request each is answered before the measurement.
    const std::size_t kept_count = idle_count / 2;
    const std::size_t upstream_before = upstream.request_count();
    held.start(100ms);  // from now on: slowloris bytes every 100 ms, replies and closes noted
    held.open(HeldSockets::Kind::idle_after_request, kept_count,
              "GET /keep-alive HTTP/1.1\r\nHost: idle.test\r\n\r\n");
    REQUIRE(upstream.wait_for_complete_requests(upstream_before + kept_count, 10s));
    held.open(HeldSockets::Kind::slow_reader, kSlowReaders, "GET /big HTTP/1.1\r\nHost: slow.test\r\n\r\n");
    held.open(HeldSockets::Kind::slowloris, kSlowloris);
    held.open(HeldSockets::Kind::idle, idle_count - kept_count);
    const double open_s = std::chrono::duration<double>(Clock::now() - opened).count();
    REQUIRE(
        upstream.wait_for_requests(upstream_before + kept_count + kSlowReaders, 5s));  // their responses flow
    // sluice holds them all once it has accepted them (bounded wait: its accept loop may lag).
    const std::size_t fds_expected = base_fds + idle_count + kSlowloris + 2 * kSlowReaders - 2;
    std::size_t fds_held = process_open_fds(pid);
    for (const auto until = Clock::now() + 2s; fds_held < fds_expected && Clock::now() < until;
         fds_held = process_open_fds(pid)) {
        std::this_thread::sleep_for(20ms);
    }

    // While they are all open (before the first timeout), others are served as before.
    const auto [busy_ms, busy_failures] = probe(800ms);
    const double in_hold_s = std::chrono::duration<double>(Clock::now() - opened).count();
    INFO("opened " << idle_count << " idle, " << kSlowloris << " slowloris, " << kSlowReaders
                   << " slow readers in " << open_s << " s; probes ended " << in_hold_s << " s after");
    INFO("probe latency quiet: p50 " << percentile(quiet_ms, 0.5) << " p99 " << percentile(quiet_ms, 0.99)
                                     << " max " << percentile(quiet_ms, 1) << " ms (" << quiet_ms.size()
                                     << "); held: p50 " << percentile(busy_ms, 0.5) << " p99 "
                                     << percentile(busy_ms, 0.99) << " max " << percentile(busy_ms, 1)
                                     << " ms (" << busy_ms.size() << ")");
    CHECK(quiet_failures == 0);
    CHECK(busy_failures == 0);
    CHECK_FALSE(busy_ms.empty());
    // How many probes fit in the 800 ms is a rate: asserted only where latencies are (not under
    // sanitizers, which slow sluice down several times: 79 under TSan on a busy machine).
    if (timing) CHECK(busy_ms.size() >= 100);
    CHECK(held.open_count(HeldSockets::Kind::idle) + held.open_count(HeldSockets::Kind::idle_after_request) ==
          idle_count);                // none cut early
    CHECK(fds_held >= fds_expected);  // sluice holds them all (client sides, the slow readers' upstreams)
    if (timing) {
        // The upstream answers at once: 200 ms is the whole budget, sluice's share included.
        CHECK(percentile(busy_ms, 0.99) < 200);
        CHECK(percentile(busy_ms, 1) < 1000);
    }

    // Slowloris: cut at client_header, although bytes keep coming. For a connection's first
    // request sluice counts client_header from the accept (docs/configuration.md), so the
    // delay is measured from the connect.
    REQUIRE(held.wait_closed(HeldSockets::Kind::slowloris, 6s));
    const auto loris = held.close_delays(HeldSockets::Kind::slowloris);
    // Fresh connections that send nothing: cut at client_header from the connect (no
    // request has begun; client_idle is the wait between requests).
    REQUIRE(held.wait_closed(HeldSockets::Kind::idle, 6s));
    const auto fresh = held.close_delays(HeldSockets::Kind::idle);
    // Slow readers: cut at client_write once sluice's writes stall (their buffers full).
    const bool readers_cut = held.wait_cut(8s);
    const auto readers = held.cut_delays();
    // Keep-alive connections idle after a response: cut at client_idle.
    REQUIRE(held.wait_closed(HeldSockets::Kind::idle_after_request, 8s));
    const auto kept = held.close_delays(HeldSockets::Kind::idle_after_request);
    // What the slow readers had been sent before the cut: the rest of each is in the socket buffers.
    held.drain_slow_readers();
    const bool readers_closed = held.wait_closed(HeldSockets::Kind::slow_reader, 5s);
    const std::uint64_t reader_bytes = held.bytes_received(HeldSockets::Kind::slow_reader);
    const auto range = [](const std::vector<double>& v) {
        return std::to_string(percentile(v, 0)) + ".." + std::to_string(percentile(v, 1)) + " s (" +
               std::to_string(v.size()) + ")";
    };
    INFO("cut after: slowloris " << range(loris) << " from the first byte; fresh idle " << range(fresh)
                                 << "; keep-alive idle " << range(kept) << "; slow readers " << range(readers)
                                 << " from the connect, " << reader_bytes / kSlowReaders << " bytes each of "
                                 << kBigBody);
    WARN("held: probes p99 " << percentile(busy_ms, 0.99) << " ms max " << percentile(busy_ms, 1)
                             << " ms (quiet p99 " << percentile(quiet_ms, 0.99)
                             << " ms); cut after: slowloris " << range(loris) << ", fresh idle "
                             << range(fresh) << ", keep-alive idle " << range(kept) << ", slow readers "
                             << range(readers) << "; fds " << base_fds << " -> " << fds_held << "; max RSS "
                             << mib(sampler.max_rss()) << " MiB (baseline " << mib(base_rss) << ")");
    // (Measured by a watcher thread that may notice a reply or a close a little late.)
    CHECK(percentile(loris, 0) >= kHeaderTimeout - 0.1);
    CHECK(percentile(loris, 1) <= kHeaderTimeout + 1.0);
    CHECK(percentile(fresh, 0) >= kHeaderTimeout - 0.1);
    CHECK(percentile(fresh, 1) <= kHeaderTimeout + 1.0);
    CHECK(percentile(kept, 0) >= kIdleTimeout - 0.5);  // the reply may be noticed late, the close not
    CHECK(percentile(kept, 1) <= kIdleTimeout + 1.0);
    CHECK(readers_cut);
    // The stall is seen by sampling the send queue every 50 ms; on a loaded machine the sampler
    // runs late (1.79 s measured once for 2 s), which shortens the delay it reports.
    CHECK(percentile(readers, 0) >= kWriteTimeout - 0.3);
    // Their writes stall once sluice's send buffer is full, a moment after the connect.
    CHECK(percentile(readers, 1) <= kWriteTimeout + 2.0);
    CHECK(readers_closed);
    CHECK(reader_bytes < kSlowReaders * kBigBody / 4);  // cut, not served in full

    // Everything back: fds to the baseline, memory within 16 MiB of it.
    sampler.stop();
    held.close_all();
    const std::size_t after_fds = wait_for_fds_at_most(pid, base_fds, 5s);
    const std::uint64_t after_rss = process_rss_bytes(pid);
    WARN("after: fds " << after_fds << " (baseline " << base_fds << "), RSS " << mib(after_rss)
                       << " MiB (baseline " << mib(base_rss) << " MiB, max " << mib(sampler.max_rss())
                       << ")");
    CHECK(after_fds <= base_fds);
    if (timing) CHECK(sampler.max_rss() <= base_rss + 128ull * 1024 * 1024);
    if (timing) CHECK(after_rss <= base_rss + 16ull * 1024 * 1024);
    // And it still serves.
    HttpClient client(port, 5s);
    CHECK(client.get("/after").status == 200);
    CHECK(sluice.running());
}

// Issue 10 item 10, found again by the slowloris runs on the overload branch
// (before main's client_session rewrite): after a response, a keep-alive
// connection's next request header was timed by client_idle from the end of
// that response, not by client_header from its first byte, so a slowloris on a
// reused connection held it for client_idle (4.0 s here) instead of
// client_header (1 s). Passes since the rewrite (merged from main).
TEST_CASE("a keep-alive connection's next request header trickled a byte at a time is cut at client_header",
          "[e2e][overload]") {
    MockUpstream upstream([](const RecordedRequest&) { return MockReply::fixed(200, "ok"); });
    ProxyConfig config;
    config.upstream_url = upstream.url();
    config.client_header_timeout = "1s";
    config.client_idle_timeout = "4s";
    SluiceProcess sluice(config.yaml());
    // A plain socket: one request, its response read, then the next header a byte every 100 ms.
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(sluice.port("vendor"));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0);
    const std::string first = "GET /first HTTP/1.1\r\nHost: slow.test\r\n\r\n";
    REQUIRE(::send(fd, first.data(), first.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(first.size()));
    std::string reply;
    char buffer[4096];
    for (const auto until = Clock::now() + 5s;
         reply.find("\r\n\r\nok") == std::string::npos && Clock::now() < until;) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 100) == 1) {
            const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
            if (n <= 0) break;
            reply.append(buffer, static_cast<std::size_t>(n));
        }
    }
    REQUIRE(reply.rfind("HTTP/1.1 200", 0) == 0);
    const std::string next =
        "GET /second HTTP/1.1\r\nHost: slow.test\r\nX-Pad: "
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    const auto first_byte = Clock::now();
    bool closed = false;
    for (std::size_t i = 0; i + 1 < next.size() && !closed; ++i) {
        if (::send(fd, next.data() + i, 1, MSG_NOSIGNAL) != 1) break;
        pollfd p{fd, POLLIN | POLLRDHUP, 0};
        if (::poll(&p, 1, 100) == 1) closed = ::recv(fd, buffer, sizeof buffer, 0) <= 0;
    }
    if (!closed) {
        pollfd p{fd, POLLIN | POLLRDHUP, 0};
        closed = ::poll(&p, 1, 5000) == 1 && ::recv(fd, buffer, sizeof buffer, 0) <= 0;
    }
    ::close(fd);
    const double after = std::chrono::duration<double>(Clock::now() - first_byte).count();
    INFO("cut " << after
                << " s after the first byte of the second header (client_header 1 s, client_idle 4 s)");
    REQUIRE(closed);
    CHECK(after <= 1.5);
}
