// The crash barriers (docs/security.md): a failpoint (SLUICE_FAILPOINTS,
// common/failpoint.hpp) makes a handler throw on purpose; only that connection
// ends, the exception is counted on /status, and the process serves on.

#include <chrono>
#include <string>

#include <catch2/catch.hpp>

#include "support/http_client.hpp"
#include "support/mock_upstream.hpp"
#include "support/proxy_config.hpp"
#include "support/sluice_process.hpp"

using namespace sluice::test;
using namespace std::chrono_literals;

namespace {

SluiceProcess::Options with_failpoints(const std::string& spec) {
    SluiceProcess::Options options;
    options.environment = {"SLUICE_FAILPOINTS=" + spec};
    return options;
}

nlohmann::json counters(const SluiceProcess& sluice) {
    HttpClient admin(sluice.admin_port(), 5s);
    const auto res = admin.get("/status");
    REQUIRE(res.status == 200);
    return res.json()["counters"];
}

std::size_t count_of(const std::string& text, const std::string& needle) {
    std::size_t n = 0;
    for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
    return n;
}

}  // namespace

TEST_CASE("a request whose handler throws loses its connection; the process serves the next",
          "[e2e][barrier][security]") {
    MockUpstream upstream;
    SluiceProcess sluice(ProxyConfig{upstream.url()}.yaml(),
                         with_failpoints("session.handle_request:throw:1"));
    {
        HttpClient client(sluice.port("vendor"), 3s);
        client.write_raw("GET /first HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        CHECK(client.read_until_close().empty());  // closed without a response
    }
    REQUIRE(sluice.running());
    HttpClient client(sluice.port("vendor"));
    CHECK(client.get("/second").status == 200);
    CHECK(counters(sluice)["session_exceptions"] == 1);
    CHECK(upstream.request_count() == 1);  // the failed request was never forwarded
    const auto log = sluice.stderr_text();
    CHECK(log.find("a client session failed and was closed: \"failpoint session.handle_request\"") !=
          std::string::npos);
}

TEST_CASE("a handler that throws on every request: every one is cut, the log is bounded, the process lives",
          "[e2e][barrier][security]") {
    MockUpstream upstream;
    SluiceProcess sluice(ProxyConfig{upstream.url()}.yaml(), with_failpoints("session.handle_request:throw"));
    constexpr int kRequests = 50;
    for (int i = 0; i < kRequests; ++i) {
        HttpClient client(sluice.port("vendor"), 3s);
        client.write_raw("GET /x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        CHECK(client.read_until_close().empty());
    }
    REQUIRE(sluice.running());
    CHECK(counters(sluice)["session_exceptions"] == kRequests);
    CHECK(upstream.request_count() == 0);
    // At most one line a second, however many sessions fail.
    CHECK(count_of(sluice.stderr_text(), "a client session failed") <= 3);
}

TEST_CASE("an admin handler that throws closes that admin connection only",
          "[e2e][barrier][admin][security]") {
    MockUpstream upstream;
    SluiceProcess sluice(ProxyConfig{upstream.url()}.yaml(), with_failpoints("admin.handle_request:throw:1"));
    {
        HttpClient admin(sluice.admin_port(), 3s);
        admin.write_raw("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        CHECK(admin.read_until_close().empty());
    }
    REQUIRE(sluice.running());
    HttpClient client(sluice.port("vendor"));
    CHECK(client.get("/after").status == 200);
    const auto c = counters(sluice);
    CHECK(c["admin_exceptions"] == 1);
    CHECK(c["session_exceptions"] == 0);
    CHECK(sluice.stderr_text().find(
              "an admin request failed and was contained: 'failpoint admin.handle_request'") !=
          std::string::npos);
}

TEST_CASE("an accept loop that throws costs one connection and keeps accepting", "[e2e][barrier][security]") {
    MockUpstream upstream;
    SluiceProcess sluice(ProxyConfig{upstream.url()}.yaml(), with_failpoints("listener.accept:throw:1"));
    {
        HttpClient client(sluice.port("vendor"), 3s);
        client.write_raw("GET /first HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        CHECK(client.read_until_close().empty());
    }
    REQUIRE(sluice.running());
    HttpClient client(sluice.port("vendor"));
    CHECK(client.get("/second").status == 200);
    CHECK(counters(sluice)["listener_exceptions"] == 1);
}

TEST_CASE("an unknown failpoint stops sluice at start", "[e2e][barrier]") {
    MockUpstream upstream;
    CHECK_THROWS_WITH(
        SluiceProcess(ProxyConfig{upstream.url()}.yaml(), with_failpoints("session.handle:throw")),
        Catch::Contains("unknown failpoint 'session.handle:throw'"));
}
