// Issue 2 acceptance: what the client gets when the upstream cannot be reached,
// answers too slowly, or hangs up.

#include <chrono>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <catch2/catch.hpp>

#include "support/http_client.hpp"
#include "support/mock_upstream.hpp"
#include "support/proxy_config.hpp"
#include "support/sluice_process.hpp"
#include "support/synthetic_checks.hpp"

using namespace sluice::test;
using namespace std::chrono_literals;

TEST_CASE("an upstream slower than response_timeout gets 504 upstream_timeout", "[e2e][proxy][upstream]") {
    MockUpstream upstream(
        [](const RecordedRequest&) { return MockReply::fixed(200, "too late").with_delay(2500ms); });
    ProxyConfig config{upstream.url()};
    config.response_timeout = "300ms";
    SluiceProcess sluice(config.yaml());
    HttpClient client(sluice.port("vendor"));
    const auto start = std::chrono::steady_clock::now();
    const auto response = client.get("/slow");
    const auto elapsed = std::chrono::steady_clock::now() - start;
    check_synthetic(response, 504, "upstream_timeout");
    CHECK(elapsed >= 250ms);
    CHECK(elapsed < 1500ms);
    CHECK(upstream.request_count() == 1);
}

TEST_CASE("a refused upstream connection gets 502 upstream_connect_failed", "[e2e][proxy][upstream]") {
    ProxyConfig config{"http://127.0.0.1:" + std::to_string(closed_port())};
    SluiceProcess sluice(config.yaml());
    HttpClient client(sluice.port("vendor"));
    const auto start = std::chrono::steady_clock::now();
    check_synthetic(client.get("/x"), 502, "upstream_connect_failed");
    CHECK(std::chrono::steady_clock::now() - start < 1500ms);

    // The client connection survives a failed exchange.
    check_synthetic(client.request("POST", "/y", "payload"), 502, "upstream_connect_failed");
}

TEST_CASE("an upstream that closes without answering gets 502 upstream_closed", "[e2e][proxy][upstream]") {
    MockUpstream upstream([](const RecordedRequest&) { return MockReply::close_without_answer(); });
    SluiceProcess sluice(ProxyConfig{upstream.url()}.yaml());
    HttpClient client(sluice.port("vendor"));
    check_synthetic(client.request("POST", "/hangup", "payload"), 502, "upstream_closed");
    CHECK(upstream.request_count() >= 1);
}

TEST_CASE("after an upstream failure the next request on the connection succeeds", "[e2e][proxy][upstream]") {
    MockUpstream upstream([](const RecordedRequest& request) {
        return request.target == "/slow" ? MockReply::fixed(200, "late").with_delay(1500ms)
                                         : MockReply::echo();
    });
    ProxyConfig config{upstream.url()};
    config.response_timeout = "200ms";
    SluiceProcess sluice(config.yaml());
    HttpClient client(sluice.port("vendor"));
    check_synthetic(client.get("/slow"), 504, "upstream_timeout");
    const auto next = client.get("/fast");
    CHECK(next.status == 200);
    CHECK(next.json().value("target", "") == "/fast");
}

TEST_CASE("an upstream that drops idle pooled connections does not fail bodiless requests",
          "[e2e][proxy][upstream]") {
    // The vendor closes each connection right after answering, without saying
    // Connection: close (as an idle timeout firing at the wrong moment does).
    MockUpstream upstream([](const RecordedRequest&) {
        auto reply = MockReply::echo();
        reply.drop_after = true;
        return reply;
    });
    SluiceProcess sluice(ProxyConfig{upstream.url()}.yaml());
    HttpClient client(sluice.port("vendor"));
    for (int i = 0; i < 5; ++i) {
        const auto response = client.get("/again/" + std::to_string(i));
        INFO("request " << i << ": " << response.status << " " << response.body);
        CHECK(response.status == 200);
    }
    CHECK(upstream.request_count() == 5);
}

TEST_CASE("an https upstream that never finishes the TLS handshake gets 504 within connect_timeout",
          "[e2e][proxy][upstream]") {
    // It accepts TCP and then says nothing: the connect attempt's deadline timer
    // must end the handshake step, and the client hears of it at once.
    boost::asio::io_context ioc;
    boost::asio::ip::tcp::acceptor silent(ioc, {boost::asio::ip::make_address("127.0.0.1"), 0});
    ProxyConfig config{"https://127.0.0.1:" + std::to_string(silent.local_endpoint().port())};
    config.connect_timeout = "400ms";
    SluiceProcess sluice(config.yaml());
    HttpClient client(sluice.port("vendor"));
    const auto start = std::chrono::steady_clock::now();
    const auto response = client.get("/x");
    const auto elapsed = std::chrono::steady_clock::now() - start;
    check_synthetic(response, 504, "upstream_timeout");
    CHECK(sluice.stderr_text().find("TLS handshake timed out") != std::string::npos);
    CHECK(elapsed >= 350ms);
    CHECK(elapsed < 1500ms);
}
