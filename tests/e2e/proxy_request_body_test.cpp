// Request bodies before admission, and clients that leave (issue 10, items 6, 7, 10):
// - a body up to server.max_buffered_body_bytes is read whole before the request
//   takes quota or an upstream connection, so slow clients hold neither;
// - every body has a total deadline (client_body_total) besides its stall timeout,
//   and a body too slow gets 408;
// - larger bodies stream within their upstream's max_streamed_bodies share;
// - a client that leaves after admission, before its response began, is not
//   forwarded (waiting for a connection) or gives its concurrency permit and its
//   upstream connection back (waiting for the vendor);
// - a keep-alive request's header gets client_header from its first byte;
// - a pooled connection handed straight to a waiter gets the stale-bytes check.

#include <arpa/inet.h>
#include <atomic>
#include <chrono>
#include <functional>
#include <netinet/in.h>
#include <poll.h>
#include <string>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include <catch2/catch.hpp>

#include "support/admin_status.hpp"
#include "support/http_client.hpp"
#include "support/mock_upstream.hpp"
#include "support/proxy_config.hpp"
#include "support/raw_upstream.hpp"
#include "support/sluice_process.hpp"
#include "support/synthetic_checks.hpp"

using namespace sluice::test;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

struct BodyYaml {
    std::string url;
    std::string server_lines;    // extra keys under server:
    std::string upstream_lines;  // extra keys under upstreams.vendor:
    std::string limit = "{algorithm: sliding_window, limit: 1000, window: 1m}";
    std::string queue = "{max_depth: 100, max_wait: 0s}";
    std::string client_body = "5s";
    std::string client_body_total;  // empty: the default
    std::string client_header = "2s";
    std::string client_idle = "10s";

    std::string yaml() const {
        return yaml_subst(
            R"(server:
  workers: {WORKERS}
{SERVER}  timeouts: {client_header: {HEADER}, client_body: {BODY}{TOTAL}, client_idle: {IDLE}, client_write: 5s}
  admin:
    listen: "127.0.0.1:0"
listeners:
  - name: main
    listen: "127.0.0.1:0"
upstreams:
  vendor:
    url: "{URL}"
    connect_timeout: 3s
    response_timeout: 5s
    body_timeout: 5s
    feedback: {enabled: false}
{UPSTREAM}limits:
  quota: {LIMIT}
queue: {QUEUE}
routes:
  - name: r
    upstream: vendor
    limits: [quota]
)",
            {{"WORKERS", std::to_string(e2e_workers())},
             {"SERVER", server_lines},
             {"HEADER", client_header},
             {"BODY", client_body},
             {"TOTAL", client_body_total.empty() ? "" : ", client_body_total: " + client_body_total},
             {"IDLE", client_idle},
             {"URL", url},
             {"UPSTREAM", upstream_lines},
             {"LIMIT", limit},
             {"QUEUE", queue}});
    }
};

double seconds_since(Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
}

// A blocking socket for the tests that trickle bytes while watching for the answer
// (HttpClient's operations each run its own io_context, so one cannot write while
// another waits to read). Every wait is bounded by poll().
class TrickleClient {
public:
    explicit TrickleClient(std::uint16_t port) {
        fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_port = htons(port);
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    }
    ~TrickleClient() { ::close(fd_); }
    TrickleClient(const TrickleClient&) = delete;
    TrickleClient& operator=(const TrickleClient&) = delete;

    bool send(std::string_view bytes) {
        return ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size());
    }
    // Waits up to `wait` for bytes or a close; appends what arrives to received(). false: nothing happened.
    bool poll_input(std::chrono::milliseconds wait) {
        pollfd p{fd_, POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(wait.count())) <= 0) return false;
        char chunk[4096];
        const auto n = ::recv(fd_, chunk, sizeof chunk, 0);
        if (n <= 0) {
            closed_ = true;
        } else {
            received_.append(chunk, static_cast<std::size_t>(n));
        }
        return true;
    }
    // Sends `bytes` one at a time, `gap` apart, until sluice answers or closes; then reads
    // until it closes (bounded by `limit`).
    void trickle(std::string_view bytes, std::chrono::milliseconds gap, std::chrono::milliseconds limit) {
        const auto deadline = Clock::now() + limit;
        const auto answered_before = received_.size();
        std::size_t next = 0;
        while (!closed_ && Clock::now() < deadline) {
            const bool answered = received_.size() > answered_before;
            if (!answered && next < bytes.size() && !send(bytes.substr(next++, 1))) break;
            poll_input(gap);
        }
    }
    bool closed() const { return closed_; }
    const std::string& received() const { return received_; }

private:
    int fd_ = -1;
    bool closed_ = false;
    std::string received_;
};

}  // namespace

TEST_CASE("a slow small body holds neither an upstream connection nor quota until it has arrived",
          "[e2e][body]") {
    MockUpstream upstream;
    BodyYaml config{upstream.url()};
    config.upstream_lines = "    max_connections: 2\n";
    config.limit = "{algorithm: sliding_window, limit: 3, window: 1m}";
    SluiceProcess sluice(config.yaml());

    // Two clients start a 10-byte body and stall (each read well within client_body).
    std::vector<std::unique_ptr<HttpClient>> slow;
    for (int i = 0; i < 2; ++i) {
        slow.push_back(std::make_unique<HttpClient>(sluice.port("main"), 5s));
        slow.back()->write_raw("POST /slow HTTP/1.1\r\nHost: a.test\r\nContent-Length: 10\r\n\r\nabc");
    }
    std::this_thread::sleep_for(300ms);

    // Meanwhile the whole quota and both connections are there for others, at once.
    for (int i = 0; i < 3; ++i) {
        HttpClient fast(sluice.port("main"), 3s);
        const auto start = Clock::now();
        const auto response = fast.get("/fast");
        INFO("fast request " << i << ": " << response.status << " " << response.body);
        CHECK(response.status == 200);
        CHECK(seconds_since(start) < 0.5);
    }
    CHECK(upstream.request_count() == 3);

    // The slow bodies arrive: the quota is spent now, so they are refused (max_wait 0),
    // and nothing of them reached the vendor.
    for (auto& client : slow) {
        client->write_raw("defghij");
        check_synthetic(client->read_response(), 429, "admission_timeout");
    }
    CHECK(upstream.request_count() == 3);
}

TEST_CASE("a body that stalls gets 408 after client_body; one that trickles, after client_body_total",
          "[e2e][body]") {
    MockUpstream upstream;
    BodyYaml config{upstream.url()};
    config.client_body = "600ms";
    config.client_body_total = "1500ms";
    SluiceProcess sluice(config.yaml());

    SECTION("stalled") {
        HttpClient client(sluice.port("main"), 5s);
        const auto start = Clock::now();
        client.write_raw("POST /stalled HTTP/1.1\r\nHost: a.test\r\nContent-Length: 10\r\n\r\nabc");
        const auto response = client.read_response();
        check_synthetic(response, 408, "request_timeout");
        CHECK_FALSE(response.keep_alive);
        CHECK(seconds_since(start) >= 0.55);
        CHECK(seconds_since(start) < 1.4);
    }
    SECTION("trickled, each byte within the stall timeout") {
        TrickleClient client(sluice.port("main"));
        const auto start = Clock::now();
        REQUIRE(client.send("POST /trickled HTTP/1.1\r\nHost: a.test\r\nContent-Length: 100\r\n\r\n"));
        client.trickle(std::string(100, 'x'), 200ms, 5s);
        INFO("received: " << client.received());
        CHECK(client.received().rfind("HTTP/1.1 408 ", 0) == 0);
        CHECK(client.received().find("client_body_total") != std::string::npos);
        CHECK(client.closed());
        CHECK(seconds_since(start) >= 1.4);
        CHECK(seconds_since(start) < 2.5);
    }
    CHECK(upstream.request_count() == 0);
    CHECK(admin_status(sluice)["counters"].value("body_timeouts", 0) == 1);
}

namespace {

// Bodies over 1 KiB stream; the vendor's pool has 2 connections, 1 of them for a streamed body.
BodyYaml one_streamed_body_of_two(const MockUpstream& upstream) {
    BodyYaml config{upstream.url()};
    config.server_lines = "  max_buffered_body_bytes: 1k\n";
    config.upstream_lines = "    max_connections: 2\n    max_streamed_bodies: 1\n";
    return config;
}

}  // namespace

TEST_CASE("bodies larger than max_buffered_body_bytes stream within max_streamed_bodies", "[e2e][body]") {
    MockUpstream upstream;
    const auto config = one_streamed_body_of_two(upstream);
    SluiceProcess sluice(config.yaml());

    const std::string big = pattern_string(5000);
    HttpClient streaming(sluice.port("main"), 5s);
    streaming.write_raw("POST /big HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5000\r\n\r\n" +
                        big.substr(0, 2000));
    REQUIRE(upstream.wait_for_requests(1, 2s));  // streamed: forwarded before the body has arrived

    // A second streamed body would take the other connection: refused at once, no quota taken.
    HttpClient second(sluice.port("main"), 5s);
    const auto refused = second.request("POST", "/big2", big);
    check_synthetic(refused, 503, "upstream_busy");
    CHECK(header_or_absent(refused, "Retry-After") == "1");

    // A small body still gets the connection left.
    HttpClient small(sluice.port("main"), 5s);
    CHECK(small.request("POST", "/small", "tiny").status == 200);

    streaming.write_raw(big.substr(2000));
    const auto done = streaming.read_response();
    CHECK(done.status == 200);
    REQUIRE(upstream.wait_for_complete_requests(2, 2s));
    const auto requests = upstream.requests();
    REQUIRE(requests.size() == 2);
    CHECK(requests[0].target == "/big");
    CHECK(requests[0].body_bytes == 5000);
    CHECK(requests[0].body_checksum == pattern_checksum(5000).value());

    // The share is back: the next streamed body goes through.
    CHECK(second.request("POST", "/big3", big).status == 200);
    CHECK(admin_status(sluice)["counters"].value("streamed_body_refusals", 0) == 1);
}

TEST_CASE("a streamed body gives its share back once sent and before the vendor answers", "[e2e][body]") {
    // The vendor takes its time over /slow: its body has arrived whole, so only the vendor's
    // answer holds the connection, and the share of streamed bodies is free for the next upload.
    MockUpstream upstream([](const RecordedRequest& request) {
        return request.target == "/slow" ? MockReply::echo().with_delay(1500ms) : MockReply::echo();
    });
    const auto config = one_streamed_body_of_two(upstream);
    SluiceProcess sluice(config.yaml());

    const std::string big = pattern_string(5000);
    HttpClient slow(sluice.port("main"), 5s);
    slow.write_raw("POST /slow HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5000\r\n\r\n" + big);
    REQUIRE(upstream.wait_for_complete_requests(1, 2s));

    HttpClient next(sluice.port("main"), 5s);
    const auto start = Clock::now();
    CHECK(next.request("POST", "/next", big).status == 200);
    CHECK(seconds_since(start) < 1.0);  // it did not wait for /slow's answer either
    CHECK(slow.read_response().status == 200);
    CHECK(admin_status(sluice)["counters"].value("streamed_body_refusals", 0) == 0);
}

TEST_CASE("a chunked body read whole is forwarded with a Content-Length; a long one stays chunked",
          "[e2e][body]") {
    MockUpstream upstream;
    BodyYaml config{upstream.url()};
    config.server_lines = "  max_buffered_body_bytes: 4k\n";
    SluiceProcess sluice(config.yaml());
    HttpClient client(sluice.port("main"), 5s);

    CHECK(client.upload_chunked("POST", "/small", 3000, {}, 1000).status == 200);
    CHECK(client.upload_chunked("POST", "/large", 20000, {}, 1000).status == 200);
    REQUIRE(upstream.wait_for_complete_requests(2, 2s));
    const auto requests = upstream.requests();
    REQUIRE(requests.size() == 2);
    CHECK_FALSE(requests[0].chunked);
    CHECK(requests[0].header("Content-Length") == "3000");
    CHECK(requests[0].body_checksum == pattern_checksum(3000).value());
    CHECK(requests[1].chunked);
    CHECK_FALSE(requests[1].has_header("Content-Length"));
    CHECK(requests[1].body_bytes == 20000);
    CHECK(requests[1].body_checksum == pattern_checksum(20000).value());
}

TEST_CASE("Expect: 100-continue with a small body: 100 at once, the body read, then admission",
          "[e2e][body]") {
    MockUpstream upstream;
    SluiceProcess sluice(BodyYaml{upstream.url()}.yaml());
    HttpClient client(sluice.port("main"), 5s);
    client.write_raw("POST /e HTTP/1.1\r\nHost: a.test\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
    // read_response() skips interim responses, so read the 100 by hand: the body is not sent before it.
    std::this_thread::sleep_for(200ms);
    CHECK(upstream.request_count() == 0);
    client.write_raw("hello");
    const auto response = client.read_response();
    CHECK(response.status == 200);
    REQUIRE(upstream.wait_for_complete_requests(1, 2s));
    CHECK(upstream.requests()[0].body_prefix == "hello");
    CHECK_FALSE(upstream.requests()[0].has_header("Expect"));
}

TEST_CASE("a client that leaves while its request waits for the vendor gives back its permit and connection",
          "[e2e][body][abandon]") {
    MockUpstream upstream([](const RecordedRequest& request) {
        return request.target == "/slow" ? MockReply::echo().with_delay(1500ms) : MockReply::echo();
    });
    BodyYaml config{upstream.url()};
    config.limit = "{algorithm: concurrency, limit: 1}";
    SluiceProcess sluice(config.yaml());

    {
        HttpClient leaver(sluice.port("main"), 5s);
        leaver.write_raw("GET /slow HTTP/1.1\r\nHost: a.test\r\n\r\n");
        REQUIRE(upstream.wait_for_requests(1, 2s));
        std::this_thread::sleep_for(100ms);
    }  // closes: the vendor's answer is still 1.4 s away
    REQUIRE(wait_until([&] { return admin_status(sluice)["counters"].value("abandoned_by_client", 0) == 1; },
                       2s));

    // The concurrency permit is free again at once (max_wait 0 would refuse otherwise).
    HttpClient next(sluice.port("main"), 5s);
    const auto start = Clock::now();
    CHECK(next.get("/fast").status == 200);
    CHECK(seconds_since(start) < 0.5);
}

TEST_CASE("a client that leaves while waiting for a pooled connection is never forwarded",
          "[e2e][body][abandon]") {
    MockUpstream upstream([](const RecordedRequest& request) {
        return request.target == "/hold" ? MockReply::echo().with_delay(1200ms) : MockReply::echo();
    });
    BodyYaml config{upstream.url()};
    config.upstream_lines = "    max_connections: 1\n";
    SluiceProcess sluice(config.yaml());

    std::atomic<unsigned> holder_status{0};  // checked after join(): Catch2's CHECK is not thread-safe
    std::thread holder([&] {
        HttpClient client(sluice.port("main"), 5s);
        holder_status = client.get("/hold").status;
    });
    REQUIRE(upstream.wait_for_requests(1, 2s));
    {
        HttpClient leaver(sluice.port("main"), 5s);
        leaver.write_raw("GET /never HTTP/1.1\r\nHost: a.test\r\n\r\n");
        std::this_thread::sleep_for(200ms);
    }
    holder.join();
    CHECK(holder_status == 200);
    std::this_thread::sleep_for(300ms);
    CHECK(upstream.request_count() == 1);
    CHECK(admin_status(sluice)["counters"].value("abandoned_by_client", 0) == 1);

    HttpClient next(sluice.port("main"), 5s);
    CHECK(next.get("/after").status == 200);  // the pool is whole again
}

TEST_CASE("a keep-alive connection's next header gets client_header from its first byte", "[e2e][body]") {
    MockUpstream upstream;
    BodyYaml config{upstream.url()};
    config.client_header = "800ms";
    config.client_idle = "10s";
    SluiceProcess sluice(config.yaml());

    TrickleClient client(sluice.port("main"));
    REQUIRE(client.send("GET /first HTTP/1.1\r\nHost: a.test\r\n\r\n"));
    REQUIRE(client.poll_input(2s));
    REQUIRE(client.received().rfind("HTTP/1.1 200 ", 0) == 0);
    std::this_thread::sleep_for(1s);  // idle longer than client_header: the idle wait is client_idle
    // The next header, a byte every 150 ms (each within any stall timeout), never finished.
    const auto start = Clock::now();
    const std::string next = "GET /second HTTP/1.1\r\nHost: a.test\r\n";
    client.poll_input(50ms);  // the rest of the first response, if it came in two pieces
    const auto answered = client.received().size();
    client.trickle(next, 150ms, 4s);
    CHECK(client.closed());
    CHECK(client.received().size() == answered);  // closed without an answer
    CHECK(seconds_since(start) < 1.6);
    CHECK(upstream.request_count() == 1);
}

TEST_CASE("a pooled connection with bytes past its response is not handed to the next request",
          "[e2e][body][pool]") {
    // The upstream answers each request with its response plus a second, unasked-for one:
    // lent on as it is, the next client would get "EVIL" for its own request.
    RawUpstream upstream(
        [](std::size_t) {
            return std::string(
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nEVIL");
        },
        400ms);
    BodyYaml config{upstream.url()};
    config.upstream_lines = "    max_connections: 1\n";
    SluiceProcess sluice(config.yaml());

    std::vector<std::string> bodies(2);
    std::thread first([&] {
        HttpClient client(sluice.port("main"), 5s);
        bodies[0] = client.get("/a").body;
    });
    std::this_thread::sleep_for(150ms);  // the second waits for the one connection
    {
        HttpClient client(sluice.port("main"), 5s);
        bodies[1] = client.get("/b").body;
    }
    first.join();
    CHECK(bodies[0] == "ok");
    CHECK(bodies[1] == "ok");
    CHECK(upstream.heads().size() == 2);
    CHECK(upstream.connections_accepted() == 2);
}

TEST_CASE("a bad chunk size before any of the body was relayed gives the client a 502", "[e2e][body][pool]") {
    RawUpstream upstream([](std::size_t) {
        return std::string("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n");
    });
    SluiceProcess sluice(BodyYaml{upstream.url()}.yaml());
    HttpClient client(sluice.port("main"), 5s);
    check_synthetic(client.get("/bad"), 502, "upstream_protocol_error");
}
