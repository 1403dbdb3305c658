// Malformed and ambiguous requests (issue 10): each is answered with the right
// status, its connection closes where RFC 9112 says it must, nothing of it
// reaches the upstream, and the next client's request on the same pooled
// upstream connection arrives intact (no bytes left in front of it).

#include <chrono>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "support/http_client.hpp"
#include "support/mock_upstream.hpp"
#include "support/proxy_config.hpp"
#include "support/sluice_process.hpp"

using namespace sluice::test;
using namespace std::chrono_literals;

namespace {

const std::string kHost = "Host: 127.0.0.1\r\n";

struct RefusedCase {
    const char* name;
    std::string request;
    unsigned status;
};

std::vector<RefusedCase> refused_cases() {
    const std::string chunked_hello = "5\r\nhello\r\n0\r\n\r\n";
    return {
        {"Transfer-Encoding xchunked",
         "POST /s HTTP/1.1\r\n" + kHost + "Transfer-Encoding: xchunked\r\n\r\n" + chunked_hello, 400},
        {"Transfer-Encoding chunkedx",
         "POST /s HTTP/1.1\r\n" + kHost + "Transfer-Encoding: chunkedx\r\n\r\n" + chunked_hello, 400},
        {"Transfer-Encoding chunked, identity",
         "POST /s HTTP/1.1\r\n" + kHost + "Transfer-Encoding: chunked, identity\r\n\r\n" + chunked_hello,
         400},
        {"Transfer-Encoding chunked, chunked",
         "POST /s HTTP/1.1\r\n" + kHost + "Transfer-Encoding: chunked, chunked\r\n\r\n" + chunked_hello, 400},
        {"Transfer-Encoding in two fields",
         "POST /s HTTP/1.1\r\n" + kHost + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n" +
             chunked_hello,
         400},
        {"Transfer-Encoding identity with a chunked body",
         "POST /s HTTP/1.1\r\n" + kHost + "Transfer-Encoding: identity\r\n\r\n" + chunked_hello, 400},
        {"Transfer-Encoding gzip with Content-Length",
         "POST /s HTTP/1.1\r\n" + kHost + "Transfer-Encoding: gzip\r\nContent-Length: 5\r\n\r\nhello", 400},
        {"Transfer-Encoding gzip, chunked",
         "POST /s HTTP/1.1\r\n" + kHost + "Transfer-Encoding: gzip, chunked\r\n\r\n" + chunked_hello, 501},
        {"Transfer-Encoding chunked with Content-Length",
         "POST /s HTTP/1.1\r\n" + kHost + "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n" +
             chunked_hello,
         400},
        {"Transfer-Encoding in HTTP/1.0",
         "POST /s HTTP/1.0\r\n" + kHost + "Transfer-Encoding: chunked\r\n\r\n" + chunked_hello, 400},
        {"Content-Length list with differing members",
         "POST /s HTTP/1.1\r\n" + kHost + "Content-Length: 5, 6\r\n\r\nhello!", 400},
        {"two Content-Length fields that differ",
         "POST /s HTTP/1.1\r\n" + kHost + "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400},
        {"Content-Length with a sign", "POST /s HTTP/1.1\r\n" + kHost + "Content-Length: +5\r\n\r\nhello",
         400},
        {"HTTP/1.1 without Host", "GET /s HTTP/1.1\r\n\r\n", 400},
        {"two Host fields", "GET /s HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n", 400},
        {"Host with userinfo", "GET /s HTTP/1.1\r\nHost: user@a.test\r\n\r\n", 400},
        {"Host with a byte outside ASCII", "GET /s HTTP/1.1\r\nHost: a\xff.test\r\n\r\n", 400},
        {"a raw 0xFF in the target", "GET /\xff HTTP/1.1\r\n" + kHost + "\r\n", 400},
        {"an ftp absolute-form target", "GET ftp://127.0.0.1/s HTTP/1.1\r\n" + kHost + "\r\n", 400},
        {"an https absolute-form target", "GET https://127.0.0.1/s HTTP/1.1\r\n" + kHost + "\r\n", 400},
        {"userinfo in the target", "GET http://u:p@127.0.0.1/s HTTP/1.1\r\n" + kHost + "\r\n", 400},
        {"obs-text in Sluice-Max-Wait", "GET /s HTTP/1.1\r\n" + kHost + "Sluice-Max-Wait: \xff\xfe\r\n\r\n",
         400},
        {"obs-text in Expect", "POST /s HTTP/1.1\r\n" + kHost + "Expect: \xff\r\nContent-Length: 1\r\n\r\nx",
         400},
        {"bare LF line endings", "GET /s HTTP/1.1\n" + std::string("Host: 127.0.0.1\n\n"), 400},
        {"a space before the colon", "GET /s HTTP/1.1\r\n" + kHost + "X-A : b\r\n\r\n", 400},
        {"a control byte in a value",
         "GET /s HTTP/1.1\r\n" + kHost +
             "X-A: a\x01"
             "b\r\n\r\n",
         400},
        {"a bare CR in a value", "GET /s HTTP/1.1\r\n" + kHost + "X-A: a\rb\r\n\r\n", 400},
        {"a NUL in a field name", std::string("GET /s HTTP/1.1\r\nHo\0st: a\r\n\r\n", 29), 400},
        {"a chunk size that overflows",
         "POST /s HTTP/1.1\r\n" + kHost +
             "Transfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\nhello\r\n0\r\n\r\n",
         400},
        {"a negative chunk size",
         "POST /s HTTP/1.1\r\n" + kHost + "Transfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n", 400},
        {"HTTP/0.9", "GET /s\r\n\r\n", 400},
        {"the HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400},
        {"CONNECT", "CONNECT 127.0.0.1:443 HTTP/1.1\r\n" + kHost + "\r\n", 405},
        {"a malformed request with a pipelined one behind it",
         "GET /s HTTP/1.1\r\n\r\nGET /smuggled HTTP/1.1\r\n" + kHost + "\r\n", 400},
    };
}

// The next, ordinary client: its request must reach the upstream exactly as sent.
void check_next_client_intact(SluiceProcess& sluice, MockUpstream& upstream, std::size_t expected_before) {
    HttpClient next(sluice.port("vendor"));
    const auto response = next.request("POST", "/next", "body!");
    REQUIRE(response.status == 200);
    REQUIRE(upstream.wait_for_complete_requests(expected_before + 1, 2s));
    const auto requests = upstream.requests();
    REQUIRE(requests.size() == expected_before + 1);
    const auto& last = requests.back();
    CHECK(last.method == "POST");
    CHECK(last.target == "/next");
    CHECK(last.body_prefix == "body!");
}

}  // namespace

TEST_CASE("ambiguous or malformed requests are refused, closed, and never reach the upstream",
          "[e2e][proxy][smuggling]") {
    MockUpstream upstream;
    SluiceProcess sluice(ProxyConfig{upstream.url()}.yaml());
    // A pooled upstream connection first, so a leak would land on it.
    check_next_client_intact(sluice, upstream, 0);
    std::size_t forwarded = 1;
    for (const auto& c : refused_cases()) {
        INFO("case: " << c.name);
        HttpClient client(sluice.port("vendor"));
        client.write_raw(c.request);
        const auto response = client.read_response();
        CHECK(response.status == c.status);
        CHECK(response.header("Sluice-Error").has_value());
        CHECK_FALSE(response.keep_alive);  // answered with Connection: close, then closed
        check_next_client_intact(sluice, upstream, forwarded++);
        REQUIRE(sluice.running());
    }
}

TEST_CASE("a Content-Length list of equal values is forwarded as one value", "[e2e][proxy][smuggling]") {
    MockUpstream upstream;
    SluiceProcess sluice(ProxyConfig{upstream.url()}.yaml());
    for (const char* lengths : {"Content-Length: 5, 5\r\n", "Content-Length: 5\r\nContent-Length: 5\r\n",
                                "Content-Length: 005\r\n"}) {
        INFO("lengths: " << lengths);
        const auto before = upstream.request_count();
        HttpClient client(sluice.port("vendor"));
        client.write_raw("POST /cl HTTP/1.1\r\n" + kHost + lengths + "\r\nhello");
        const auto response = client.read_response();
        CHECK(response.status == 200);
        REQUIRE(upstream.wait_for_complete_requests(before + 1, 2s));
        const auto sent = upstream.requests().back();
        CHECK(count_header(sent.headers, "Content-Length") == 1);
        CHECK(sent.header("Content-Length") == "5");
        CHECK(sent.body_prefix == "hello");
        check_next_client_intact(sluice, upstream, before + 1);
    }
}

TEST_CASE("a chunked request is forwarded with sluice's own framing fields only", "[e2e][proxy][smuggling]") {
    MockUpstream upstream;
    SluiceProcess sluice(ProxyConfig{upstream.url()}.yaml());
    HttpClient client(sluice.port("vendor"));
    // Chunk extensions and a mixed-case coding name: the vendor sees neither.
    client.write_raw("POST /ch HTTP/1.1\r\n" + kHost +
                     "Transfer-Encoding: Chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\n\r\n");
    const auto response = client.read_response();
    CHECK(response.status == 200);
    REQUIRE(upstream.wait_for_complete_requests(1, 2s));
    const auto sent = upstream.requests().back();
    CHECK(sent.header("Transfer-Encoding") == "chunked");
    CHECK_FALSE(sent.has_header("Content-Length"));
    CHECK(sent.body_prefix == "hello");
    check_next_client_intact(sluice, upstream, 1);
}

TEST_CASE("dot-segments are removed before routing and the normalized path is forwarded",
          "[e2e][proxy][smuggling]") {
    MockUpstream upstream;
    SluiceProcess sluice(ProxyConfig{upstream.url() + "/base"}.yaml());
    HttpClient client(sluice.port("vendor"));
    for (const auto& [sent, forwarded] :
         std::vector<std::pair<std::string, std::string>>{{"/up/../../etc/passwd", "/base/etc/passwd"},
                                                          {"/v1/%2e%2e/%2E%2e/admin?x=1", "/base/admin?x=1"},
                                                          {"/a/./b/", "/base/a/b/"}}) {
        INFO("target: " << sent);
        const auto response = client.get(sent);
        REQUIRE(response.status == 200);
        CHECK(response.json().value("target", "") == forwarded);
    }
}

TEST_CASE("a request whose 404 message would carry invalid UTF-8 is answered, and sluice lives",
          "[e2e][proxy][smuggling]") {
    MockUpstream upstream;
    SluiceProcess sluice(ProxyConfig{upstream.url()}.yaml());
    // The main listener routes by path prefix and host: this matches nothing.
    HttpClient client(sluice.port("main"));
    const auto response = client.get("/nothing/%ff", {{"Host", "unrouted.test"}});
    CHECK(response.status == 404);
    CHECK(response.json().value("error", "") == "no_route");
    HttpClient again(sluice.port("main"));
    again.write_raw("GET /\xff\xfe HTTP/1.1\r\nHost: unrouted.test\r\n\r\n");
    CHECK(again.read_response().status == 400);
    REQUIRE(sluice.running());
    HttpClient after(sluice.port("vendor"));
    CHECK(after.get("/alive").status == 200);
}
