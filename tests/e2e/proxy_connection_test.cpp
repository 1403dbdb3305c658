// Issue 2 acceptance: client connections (keep-alive, pipelining, idle and
// header timeouts) and the request limits (400, 413, 431).

#include <chrono>

#include <catch2/catch.hpp>

#include "support/http_client.hpp"
#include "support/mock_upstream.hpp"
#include "support/proxy_config.hpp"
#include "support/sluice_process.hpp"
#include "support/synthetic_checks.hpp"

using namespace sluice::test;
using namespace std::chrono_literals;

TEST_CASE("sequential requests reuse the client connection and pooled upstream connections",
          "[e2e][proxy][connections]") {
    MockUpstream upstream;
    SluiceProcess sluice(ProxyConfig{upstream.url()}.yaml());
    HttpClient client(sluice.port("vendor"));
    constexpr int kRequests = 10;
    for (int i = 0; i < kRequests; ++i) {
        const auto response = client.get("/seq/" + std::to_string(i));
        REQUIRE(response.status == 200);
        CHECK(response.keep_alive);
        CHECK(response.json().value("target", "") == "/seq/" + std::to_string(i));
    }
    CHECK(client.connects() == 1);
    CHECK(upstream.request_count() == kRequests);
    INFO("upstream connections: " << upstream.connections_accepted());
    CHECK(upstream.connections_accepted() < kRequests);
}

TEST_CASE("pipelined requests are answered in order", "[e2e][proxy][connections]") {
    // The first answer is the slowest: a proxy that relays concurrently and
    // writes answers as they come would reorder them.
    MockUpstream upstream([](const RecordedRequest& request) {
        auto reply = MockReply::fixed(200, "answer " + request.target);
        return request.target == "/p1" ? reply.with_delay(300ms) : reply;
    });
    SluiceProcess sluice(ProxyConfig{upstream.url()}.yaml());
    HttpClient client(sluice.port("vendor"));
    const std::string host = "Host: 127.0.0.1\r\n";
    client.write_raw("GET /p1 HTTP/1.1\r\n" + host + "\r\n" + "POST /p2 HTTP/1.1\r\n" + host +
                     "Content-Length: 5\r\n\r\nhello" + "GET /p3 HTTP/1.1\r\n" + host + "\r\n");
    for (const char* target : {"/p1", "/p2", "/p3"}) {
        const auto response = client.read_response();
        INFO("expected the answer for " << target);
        CHECK(response.status == 200);
        CHECK(response.body == std::string("answer ") + target);
    }
    const auto requests = upstream.requests();
    REQUIRE(requests.size() == 3);
    CHECK(requests[1].body_prefix == "hello");
}

TEST_CASE("an idle client connection is closed after client_idle", "[e2e][proxy][connections]") {
    MockUpstream upstream;
    ProxyConfig config{upstream.url()};
    config.client_idle_timeout = "300ms";
    SluiceProcess sluice(config.yaml());
    HttpClient client(sluice.port("vendor"));
    REQUIRE(client.get("/x").status == 200);
    const auto start = std::chrono::steady_clock::now();
    CHECK(client.wait_for_close(3s));
    CHECK(std::chrono::steady_clock::now() - start < 2s);
}

TEST_CASE("a client that never finishes its header is cut off after client_header",
          "[e2e][proxy][connections]") {
    MockUpstream upstream;
    ProxyConfig config{upstream.url()};
    config.client_header_timeout = "300ms";
    SluiceProcess sluice(config.yaml());
    HttpClient client(sluice.port("vendor"), 4s);
    client.write_raw("GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Partial: ");
    const auto start = std::chrono::steady_clock::now();
    const auto answer = client.read_until_close();  // a 408 before closing is allowed
    INFO("received: " << answer);
    CHECK(std::chrono::steady_clock::now() - start < 2s);
    CHECK(upstream.request_count() == 0);
}

TEST_CASE("malformed requests get 400 malformed_request and the connection is closed",
          "[e2e][proxy][limits]") {
    MockUpstream upstream;
    SluiceProcess sluice(ProxyConfig{upstream.url()}.yaml());
    HttpClient client(sluice.port("vendor"));
    std::string raw;
    SECTION("a header line without a colon") {
        raw = "GET /x HTTP/1.1\r\nHost: 127.0.0.1\r\nNoColonHere\r\n\r\n";
    }
    SECTION("a garbage request line") {
        raw = "THIS IS NOT HTTP\r\n\r\n";
    }
    SECTION("an invalid Content-Length") {
        raw = "POST /x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 12abc\r\n\r\nhello";
    }
    SECTION("Content-Length together with chunked (request smuggling)") {
        raw =
            "POST /x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
            "5\r\nhello\r\n0\r\n\r\n";
    }
    SECTION("a bad chunk size") {
        raw =
            "POST /x HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: "
            "chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n";
    }
    client.write_raw(raw);
    const auto response = client.read_response();
    check_synthetic(response, 400, "malformed_request");
    if (client.is_open()) CHECK(client.wait_for_close(2s));
    // A request whose framing is broken must never reach the vendor complete.
    for (const auto& request : upstream.requests()) CHECK_FALSE(request.complete);
}

TEST_CASE("a request body over max_body_bytes gets 413 body_too_large", "[e2e][proxy][limits]") {
    MockUpstream upstream;
    ProxyConfig config{upstream.url()};
    config.max_body_bytes = 1024;
    SluiceProcess sluice(config.yaml());
    HttpClient client(sluice.port("vendor"));

    SECTION("declared by Content-Length: refused before anything is forwarded") {
        check_synthetic(client.request("POST", "/big", std::string(2048, 'x')), 413, "body_too_large");
        CHECK(upstream.request_count() == 0);
    }
    SECTION("found while streaming a chunked body") {
        const auto response = client.upload_chunked("POST", "/big", 8 * 1024, {}, 512);
        check_synthetic(response, 413, "body_too_large");
        for (const auto& request : upstream.requests()) CHECK_FALSE(request.complete);
    }
    SECTION("a body of exactly max_body_bytes passes") {
        const auto response = client.request("POST", "/fits", std::string(1024, 'x'));
        CHECK(response.status == 200);
        CHECK(upstream.request_count() == 1);
    }
}

TEST_CASE("a request header over max_header_bytes gets 431 header_too_large", "[e2e][proxy][limits]") {
    MockUpstream upstream;
    ProxyConfig config{upstream.url()};
    config.max_header_bytes = 4096;
    SluiceProcess sluice(config.yaml());
    HttpClient client(sluice.port("vendor"));

    SECTION("one huge field") {
        check_synthetic(client.get("/x", {{"X-Big", std::string(8000, 'h')}}), 431, "header_too_large");
        CHECK(upstream.request_count() == 0);
    }
    SECTION("many fields") {
        Headers headers;
        for (int i = 0; i < 100; ++i)
            headers.emplace_back("X-Field-" + std::to_string(i), std::string(60, 'v'));
        check_synthetic(client.get("/x", headers), 431, "header_too_large");
        CHECK(upstream.request_count() == 0);
    }
    SECTION("a header well under the limit passes") {
        CHECK(client.get("/x", {{"X-Small", std::string(1000, 's')}}).status == 200);
        CHECK(upstream.request_count() == 1);
    }
}

TEST_CASE("a 413 reaches a client that is still sending a large body", "[e2e][proxy][limits]") {
    // sluice answers as soon as Content-Length is over the limit, while the
    // client is still writing megabytes: closing at once with unread data would
    // reset the connection and could destroy the 413 before the client reads it.
    MockUpstream upstream;
    ProxyConfig config{upstream.url()};
    config.max_body_bytes = 1024;
    SluiceProcess sluice(config.yaml());
    HttpClient client(sluice.port("vendor"));
    check_synthetic(client.request("POST", "/huge", std::string(8 * 1024 * 1024, 'x')), 413,
                    "body_too_large");
    CHECK(upstream.request_count() == 0);
}

TEST_CASE("an HTTP/1.0 client gets a chunked upstream body unchunked, then the connection closes",
          "[e2e][proxy][connections]") {
    MockUpstream upstream([](const RecordedRequest&) { return MockReply::stream(100'000, true); });
    SluiceProcess sluice(ProxyConfig{upstream.url()}.yaml());
    HttpClient client(sluice.port("vendor"));
    client.write_raw("GET /old HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    const auto raw = client.read_until_close();
    const auto header_end = raw.find("\r\n\r\n");
    REQUIRE(header_end != std::string::npos);
    const auto header = raw.substr(0, header_end);
    INFO("response header:\n" << header);
    CHECK(header.rfind("HTTP/1.0 200", 0) == 0);
    CHECK(header.find("chunked") == std::string::npos);
    const auto body = raw.substr(header_end + 4);
    CHECK(body.size() == 100'000);
    CHECK(body == pattern_string(100'000));
}
