// The process lifecycle under pressure: the fd limit (accept backoff), the
// connection bound (503 too_many_connections), and draining on SIGTERM (queued
// requests answered 503 shutting_down, idle connections closed at once, the
// admin listener up until the end), SIGHUP ignored.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <signal.h>
#include <sstream>
#include <string>
#include <sys/resource.h>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <catch2/catch.hpp>

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

std::size_t count_lines_containing(const std::string& text, const std::string& needle) {
    std::size_t n = 0;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line))
        if (line.find(needle) != std::string::npos) ++n;
    return n;
}

std::size_t open_fds(pid_t pid) {
    std::size_t n = 0;
    for ([[maybe_unused]] const auto& entry :
         std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd"))
        ++n;
    return n;
}

std::string with_server_keys(std::string yaml, const std::string& lines) {
    const std::string anchor = "server:\n";
    yaml.insert(yaml.find(anchor) + anchor.size(), lines);
    return yaml;
}

// One route "r" on listener "main" through a sliding window of one request per
// 8 s: the first request is admitted, the next three wait (8, 16, 24 s < max_wait),
// longer than the drain (2 s): on SIGTERM none of them can go.
std::string queueing_yaml(const MockUpstream& upstream) {
    return yaml_subst(R"(server:
  workers: {WORKERS}
  drain_timeout: 2s
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
  one-per-window: {algorithm: sliding_window, limit: 1, window: 8s}
queue: {max_depth: 100, max_wait: 30s}
routes:
  - name: r
    upstream: vendor
    limits: [one-per-window]
)",
                      {{"WORKERS", std::to_string(e2e_workers())}, {"URL", upstream.url()}});
}

}  // namespace

TEST_CASE("at the fd limit sluice backs off accepting, logs a little, and serves again",
          "[e2e][lifecycle][accept]") {
    MockUpstream upstream;
    SluiceProcess sluice(ProxyConfig{upstream.url()}.yaml());
    {
        HttpClient warm(sluice.port("vendor"), 5s);
        REQUIRE(warm.get("/warm").status == 200);  // the upstream connection is pooled: it keeps its fd
    }
    // Room for a few more descriptors only: the connections below exhaust it.
    // One count for both: two counts can differ (a descriptor closing in between), and a soft
    // limit above the hard one makes prlimit fail.
    const auto room = static_cast<rlim_t>(open_fds(sluice.pid()) + 4);
    const rlimit limit{room, room};
    REQUIRE(::prlimit(sluice.pid(), RLIMIT_NOFILE, &limit, nullptr) == 0);

    boost::asio::io_context ioc;
    std::vector<boost::asio::ip::tcp::socket> held;
    const boost::asio::ip::tcp::endpoint proxy(boost::asio::ip::make_address("127.0.0.1"),
                                               sluice.port("vendor"));
    for (int i = 0; i < 24; ++i) {  // the kernel completes these handshakes from the listen backlog
        held.emplace_back(ioc);
        held.back().connect(proxy);
    }
    REQUIRE(wait_until([&] { return sluice.stderr_text().find("accept failed") != std::string::npos; }, 3s));
    const auto before = count_lines_containing(sluice.stderr_text(), "accept failed");
    std::this_thread::sleep_for(1s);
    const auto logged = count_lines_containing(sluice.stderr_text(), "accept failed") - before;
    INFO("accept-failure lines logged in 1 s: " << logged);
    CHECK(logged <= 3);  // one per second, with the count of those not logged

    for (auto& socket : held) socket.close();
    held.clear();
    // The backlog's connections (closed by now) are accepted and end; then there is room again.
    bool served = false;
    wait_until(
        [&] {
            try {
                HttpClient client(sluice.port("vendor"), 2s);
                served = client.get("/after").status == 200;
            } catch (const std::exception&) {
                served = false;
            }
            return served;
        },
        6s);
    CHECK(served);
    CHECK(admin_status(sluice)["counters"].value("accept_failures", 0) > 0);
}

TEST_CASE("a connection over max_client_connections gets 503 too_many_connections with Retry-After",
          "[e2e][lifecycle][connections]") {
    MockUpstream upstream;
    SluiceProcess sluice(
        with_server_keys(ProxyConfig{upstream.url()}.yaml(), "  max_client_connections: 2\n"));
    HttpClient first(sluice.port("vendor"), 5s);
    HttpClient second(sluice.port("vendor"), 5s);
    REQUIRE(first.get("/a").status == 200);
    REQUIRE(second.get("/b").status == 200);

    HttpClient third(sluice.port("vendor"), 3s);
    const auto answer = third.read_until_close();  // written on accept, before any request
    INFO("third connection received: " << answer);
    CHECK(answer.rfind("HTTP/1.1 503", 0) == 0);
    CHECK(answer.find("Sluice-Error: too_many_connections") != std::string::npos);
    CHECK(answer.find("Retry-After: 1") != std::string::npos);
    CHECK(answer.find("\"error\":\"too_many_connections\"") != std::string::npos);
    CHECK(upstream.request_count() == 2);
    CHECK(first.get("/still").status == 200);  // the connections within the bound are untouched
    CHECK(admin_status(sluice)["counters"].value("refused_client_connections", 0) == 1);
}

TEST_CASE("SIGTERM answers queued requests 503 shutting_down at once", "[e2e][lifecycle][drain]") {
    MockUpstream upstream;
    SluiceProcess sluice(queueing_yaml(upstream));
    {
        HttpClient client(sluice.port("main"), 5s);
        REQUIRE(client.get("/first").status == 200);  // the window's one request
    }
    constexpr int kQueued = 3;
    std::vector<HttpResponse> answers(kQueued);
    std::vector<Clock::time_point> answered(kQueued);
    std::vector<std::thread> clients;
    for (int i = 0; i < kQueued; ++i) {
        clients.emplace_back([&, i] {
            try {
                HttpClient client(sluice.port("main"), 8s);
                answers[i] = client.get("/queued/" + std::to_string(i));
            } catch (const std::exception&) {
                // status stays 0: cut without an answer
            }
            answered[i] = Clock::now();
        });
    }
    const bool queued =
        wait_until([&] { return admin_status(sluice)["queue"].value("waiting", 0) == kQueued; }, 5s);
    const auto signalled = Clock::now();
    ::kill(sluice.pid(), SIGTERM);
    for (auto& t : clients) t.join();
    REQUIRE(queued);
    for (int i = 0; i < kQueued; ++i) {
        const double after_ms = std::chrono::duration<double, std::milli>(answered[i] - signalled).count();
        INFO("queued request " << i << " answered after " << after_ms << " ms");
        check_synthetic(answers[i], 503, "shutting_down");
        CHECK(answers[i].header("Retry-After").has_value());
        CHECK_FALSE(answers[i].keep_alive);
        CHECK(answered[i] - signalled < 1s);  // the drain lasts 2 s: told at once, not at its end
    }
    CHECK(upstream.request_count() == 1);
    const auto status = sluice.stop(5s);
    CHECK_FALSE(status.needed_sigkill);
    CHECK(status.code == 0);
}

TEST_CASE("SIGTERM closes an idle keep-alive client connection promptly", "[e2e][lifecycle][drain]") {
    MockUpstream upstream;
    SluiceProcess sluice(ProxyConfig{upstream.url()}.yaml());  // client_idle: 10 s
    HttpClient client(sluice.port("vendor"), 5s);
    const auto response = client.get("/x");
    REQUIRE(response.status == 200);
    REQUIRE(response.keep_alive);
    const auto signalled = Clock::now();
    ::kill(sluice.pid(), SIGTERM);
    CHECK(client.wait_for_close(3s));
    CHECK(Clock::now() - signalled < 1s);
    // Nothing left open: the process exits without waiting out the grace.
    CHECK(wait_until([&] { return !sluice.running(); }, 2s));
}

TEST_CASE("while draining /readyz answers 503 and /healthz 200 until the in-flight exchange ends",
          "[e2e][lifecycle][drain][admin]") {
    MockUpstream upstream(
        [](const RecordedRequest&) { return MockReply::fixed(200, "slow").with_delay(1500ms); });
    SluiceProcess sluice(ProxyConfig{upstream.url()}.yaml());
    HttpResponse in_flight;
    std::thread client_thread([&] {
        try {
            HttpClient client(sluice.port("vendor"), 8s);
            in_flight = client.get("/slow");
        } catch (const std::exception&) {
        }
    });
    const bool arrived = upstream.wait_for_requests(1, 3s);
    ::kill(sluice.pid(), SIGTERM);
    unsigned readyz = 0;
    unsigned healthz = 0;
    // The drain has begun once /readyz says so (or the admin listener is gone).
    wait_until(
        [&] {
            try {
                HttpClient admin(sluice.admin_port(), 1s);
                readyz = admin.get("/readyz").status;
                healthz = admin.get("/healthz").status;
            } catch (const std::exception&) {
                readyz = healthz = 0;
            }
            return readyz == 503;
        },
        1s);
    client_thread.join();
    REQUIRE(arrived);
    CHECK(readyz == 503);
    CHECK(healthz == 200);
    CHECK(in_flight.status == 200);
    CHECK(in_flight.body == "slow");
    CHECK_FALSE(in_flight.keep_alive);  // answered with Connection: close
    const auto status = sluice.stop(5s);
    CHECK_FALSE(status.needed_sigkill);
    CHECK(status.code == 0);
}

TEST_CASE("SIGHUP leaves sluice running and serving", "[e2e][lifecycle][signals]") {
    MockUpstream upstream;
    SluiceProcess sluice(ProxyConfig{upstream.url()}.yaml());
    ::kill(sluice.pid(), SIGHUP);
    std::this_thread::sleep_for(200ms);
    REQUIRE(sluice.running());
    HttpClient client(sluice.port("vendor"), 5s);
    CHECK(client.get("/after-hup").status == 200);
    CHECK(sluice.stderr_text().find("SIGHUP") != std::string::npos);
}

TEST_CASE(
    "SIGTERM: a queued request admitted within drain_timeout goes out, a later one gets 503 at once, exit 0",
    "[e2e][lifecycle][drain]") {
    MockUpstream upstream;
    auto yaml = queueing_yaml(upstream);
    yaml.replace(yaml.find("limit: 1, window: 8s"), 20, "limit: 1, window: 2s");
    yaml.replace(yaml.find("drain_timeout: 2s"), 17, "drain_timeout: 4s");
    SluiceProcess sluice(yaml);
    {
        HttpClient client(sluice.port("main"), 5s);
        REQUIRE(client.get("/first").status == 200);
    }
    // Admissible at 2 s and 4 s after the first; the queue closes at 3.6 s.
    std::vector<unsigned> statuses(2, 0);
    std::vector<std::optional<std::string>> errors(2);
    std::vector<std::thread> clients;
    for (int i = 0; i < 2; ++i) {
        clients.emplace_back([&, i] {
            std::this_thread::sleep_for(std::chrono::milliseconds(50 * i));  // in this order
            try {
                HttpClient client(sluice.port("main"), 8s);
                const auto response = client.get("/queued/" + std::to_string(i));
                statuses[i] = response.status;
                errors[i] = response.header("Sluice-Error");
            } catch (const std::exception&) {
            }
        });
    }
    REQUIRE(wait_until([&] { return admin_status(sluice)["queue"].value("waiting", 0) == 2; }, 5s));
    ::kill(sluice.pid(), SIGTERM);
    for (auto& t : clients) t.join();
    CHECK(statuses[0] == 200);
    CHECK(statuses[1] == 503);
    CHECK(errors[1] == std::optional<std::string>("shutting_down"));
    CHECK(upstream.request_count() == 2);
    const auto status = sluice.stop(6s);
    CHECK_FALSE(status.needed_sigkill);
    CHECK(status.code == 0);
}

TEST_CASE("a second SIGTERM exits at once, without waiting for the drain", "[e2e][lifecycle][drain]") {
    MockUpstream upstream([](const RecordedRequest&) { return MockReply::echo().with_delay(20000ms); });
    auto yaml = queueing_yaml(upstream);
    yaml.replace(yaml.find("drain_timeout: 2s"), 17, "drain_timeout: 30s");
    SluiceProcess sluice(yaml);
    std::thread slow([&] {
        try {
            HttpClient client(sluice.port("main"), 25s);
            client.get("/slow");
        } catch (const std::exception&) {
        }
    });
    REQUIRE(upstream.wait_for_requests(1, 5s));
    ::kill(sluice.pid(), SIGTERM);
    std::this_thread::sleep_for(200ms);
    CHECK(sluice.running());  // draining: the slow exchange is in flight
    const auto second = std::chrono::steady_clock::now();
    ::kill(sluice.pid(), SIGTERM);
    const auto status = sluice.stop(5s);
    CHECK(std::chrono::steady_clock::now() - second < 3s);
    CHECK_FALSE(status.needed_sigkill);
    CHECK(status.code == 0);
    slow.join();
}
