// Issue 2 acceptance: bodies stream through sluice in both directions with
// bounded memory, and Expect: 100-continue works with a real client.

#include <arpa/inet.h>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <netinet/in.h>
#include <poll.h>
#include <string>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "support/http_client.hpp"
#include "support/mock_upstream.hpp"
#include "support/proxy_config.hpp"
#include "support/sluice_process.hpp"
#include "support/synthetic_checks.hpp"

using namespace sluice::test;
using namespace std::chrono_literals;

namespace {

constexpr std::uint64_t kMiB = 1024 * 1024;
constexpr std::uint64_t kBigBody = 20 * kMiB;
// A proxy that held the whole body would grow by at least kBigBody (27 MiB was
// measured with a deliberately hoarding build); streaming with fixed buffers
// grows by a few KiB. The margin leaves room for allocator noise, not for
// buffering a fifth of the body.
constexpr std::uint64_t kMaxPeakGrowth = 4 * kMiB;
constexpr std::uint64_t kMaxPeakRss = 60 * kMiB;

void check_memory_bounded(const SluiceProcess& sluice, std::uint64_t baseline_peak) {
    const auto peak = sluice.peak_rss_bytes();
    INFO("sluice VmHWM before the transfer " << baseline_peak / 1024 << " KiB, after " << peak / 1024
                                             << " KiB");
    REQUIRE(peak > 0);
    CHECK(peak - baseline_peak < kMaxPeakGrowth);
    CHECK(peak < kMaxPeakRss);
}

}  // namespace

TEST_CASE("a 20 MB chunked upload streams through with bounded memory", "[e2e][proxy][streaming]") {
    MockUpstream upstream;
    SluiceProcess sluice(ProxyConfig{upstream.url()}.yaml());
    HttpClient client(sluice.port("vendor"), 20s);
    REQUIRE(client.upload_chunked("POST", "/warm-up", 256 * 1024).status == 200);
    const auto baseline = sluice.peak_rss_bytes();

    const auto response = client.upload_chunked("POST", "/upload", kBigBody);
    INFO("answer: " << response.status << " " << response.body.substr(0, 300));
    REQUIRE(response.status == 200);
    const auto expected = pattern_checksum(kBigBody);
    const auto echoed = response.json();
    CHECK(echoed.value("body_bytes", std::uint64_t{0}) == kBigBody);
    CHECK(echoed.value("body_checksum", std::uint64_t{0}) == expected.value());

    const auto requests = upstream.requests();
    REQUIRE(requests.size() == 2);
    CHECK(requests[1].target == "/upload");
    CHECK(requests[1].complete);
    CHECK(requests[1].body_bytes == kBigBody);
    CHECK(requests[1].body_checksum == expected.value());
    check_memory_bounded(sluice, baseline);
}

TEST_CASE("a 20 MB chunked download streams through with bounded memory", "[e2e][proxy][streaming]") {
    MockUpstream upstream([](const RecordedRequest& request) {
        return request.target == "/download" ? MockReply::stream(kBigBody, true)
                                             : MockReply::stream(256 * 1024);
    });
    SluiceProcess sluice(ProxyConfig{upstream.url()}.yaml());
    HttpClient client(sluice.port("vendor"), 20s);
    REQUIRE(client.download("/warm-up").body_bytes == 256 * 1024);
    const auto baseline = sluice.peak_rss_bytes();

    const auto response = client.download("/download");
    REQUIRE(response.status == 200);
    CHECK(response.body_bytes == kBigBody);
    CHECK(response.body_checksum == pattern_checksum(kBigBody).value());
    CHECK(response.header("Content-Type").value_or("<absent>") == "application/octet-stream");
    check_memory_bounded(sluice, baseline);
}

TEST_CASE("a 20 MB Content-Length download streams through with bounded memory", "[e2e][proxy][streaming]") {
    MockUpstream upstream([](const RecordedRequest& request) {
        return MockReply::stream(request.target == "/download" ? kBigBody : 256 * 1024, false);
    });
    SluiceProcess sluice(ProxyConfig{upstream.url()}.yaml());
    HttpClient client(sluice.port("vendor"), 20s);
    REQUIRE(client.download("/warm-up").body_bytes == 256 * 1024);
    const auto baseline = sluice.peak_rss_bytes();

    const auto response = client.download("/download");
    REQUIRE(response.status == 200);
    CHECK(response.body_bytes == kBigBody);
    CHECK(response.body_checksum == pattern_checksum(kBigBody).value());
    check_memory_bounded(sluice, baseline);
}

TEST_CASE("curl posting with Expect: 100-continue gets its body through promptly",
          "[e2e][proxy][streaming][curl]") {
    MockUpstream upstream;
    SluiceProcess sluice(ProxyConfig{upstream.url()}.yaml());
    const std::uint64_t size = 300 * 1024;
    const auto file = sluice.dir() + "/body.bin";
    {
        std::ofstream out(file, std::ios::binary);
        out << pattern_string(size);
    }
    const auto start = std::chrono::steady_clock::now();
    // curl waits up to --expect100-timeout for the interim 100 before sending
    // the body anyway; a prompt answer proves the 100 Continue came through.
    const auto result = run_curl({"--expect100-timeout", "6", "-H", "Expect: 100-continue", "--data-binary",
                                  "@" + file, "-o", "/dev/null", "-w", "%{http_code}",
                                  "http://127.0.0.1:" + std::to_string(sluice.port("vendor")) + "/upload"});
    const auto elapsed = std::chrono::steady_clock::now() - start;
    INFO("curl stderr: " << result.err);
    REQUIRE(result.exit_code == 0);
    CHECK(result.out == "200");
    CHECK(elapsed < 3s);
    const auto requests = upstream.requests();
    REQUIRE(requests.size() == 1);
    CHECK(requests[0].complete);
    CHECK(requests[0].body_bytes == size);
    CHECK(requests[0].body_checksum == pattern_checksum(size).value());
}

namespace {

// A one-connection upstream written with plain sockets, to control exactly when
// each byte of a response leaves: it sends `head`, then 200 ms later `first`,
// then holds the rest back until release() (or 5 s), then sends `rest`.
class TrickleUpstream {
public:
    TrickleUpstream(std::string head, std::string first, std::string rest)
        : head_(std::move(head)), first_(std::move(first)), rest_(std::move(rest)) {
        listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
        REQUIRE(::listen(listen_fd_, 4) == 0);
        socklen_t len = sizeof addr;
        ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
        port_ = ntohs(addr.sin_port);
        thread_ = std::thread([this] { serve(); });
    }
    ~TrickleUpstream() {
        release();
        ::shutdown(listen_fd_, SHUT_RDWR);
        thread_.join();
        ::close(listen_fd_);
    }
    std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
    void release() {
        const std::lock_guard<std::mutex> lock(mutex_);
        released_ = true;
        released_cv_.notify_all();
    }

private:
    void serve() {
        const int fd = ::accept(listen_fd_, nullptr, nullptr);
        if (fd < 0) return;
        timeval timeout{5, 0};
        ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
        std::string request;
        char buf[4096];
        while (request.find("\r\n\r\n") == std::string::npos) {
            const auto n = ::recv(fd, buf, sizeof buf, 0);
            if (n <= 0) break;
            request.append(buf, static_cast<std::size_t>(n));
        }
        ::send(fd, head_.data(), head_.size(), MSG_NOSIGNAL);
        std::this_thread::sleep_for(200ms);  // the first piece arrives on its own, after the head
        ::send(fd, first_.data(), first_.size(), MSG_NOSIGNAL);
        {
            std::unique_lock<std::mutex> lock(mutex_);
            released_cv_.wait_for(lock, 5s, [this] { return released_; });
        }
        ::send(fd, rest_.data(), rest_.size(), MSG_NOSIGNAL);
        ::close(fd);
    }

    std::string head_;
    std::string first_;
    std::string rest_;
    int listen_fd_ = -1;
    std::uint16_t port_ = 0;
    std::mutex mutex_;
    std::condition_variable released_cv_;
    bool released_ = false;
    std::thread thread_;
};

// Reads from a raw client socket until `needle` has arrived or `wait` is over.
bool read_until(int fd, std::string& received, std::string_view needle, std::chrono::milliseconds wait) {
    const auto until = std::chrono::steady_clock::now() + wait;
    char buf[4096];
    while (received.find(needle) == std::string::npos) {
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
        if (left <= 0ms) return false;
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
        const auto n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) return false;
        received.append(buf, static_cast<std::size_t>(n));
    }
    return true;
}

}  // namespace

TEST_CASE("each piece of a slowly streamed response reaches the client as it arrives",
          "[e2e][proxy][streaming]") {
    // Server-sent events and long polls depend on it: sluice must not wait for
    // its relay buffer to fill (or the body to end) before passing a piece on.
    const bool chunked = GENERATE(true, false);
    INFO((chunked ? "chunked" : "Content-Length") << " response");
    const std::string head = chunked ? "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                     : "HTTP/1.1 200 OK\r\nContent-Length: 26\r\n\r\n";
    const std::string first = chunked ? "d\r\nevent: first\n\r\n" : "event: first\n";
    const std::string rest = chunked ? "d\r\nevent: later\n\r\n0\r\n\r\n" : "event: later\n";
    TrickleUpstream upstream(head, first, rest);
    SluiceProcess sluice(ProxyConfig{upstream.url()}.yaml());

    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(sluice.port("vendor"));
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    const std::string request = "GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n";
    REQUIRE(::send(fd, request.data(), request.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(request.size()));

    std::string received;
    // The upstream holds the rest back for 5 s: the first piece must come well before.
    const auto start = std::chrono::steady_clock::now();
    CHECK(read_until(fd, received, "event: first", 3s));
    CHECK(std::chrono::steady_clock::now() - start < 2s);
    CHECK(received.find("event: later") == std::string::npos);
    upstream.release();
    CHECK(read_until(fd, received, "event: later", 5s));
    INFO("received: " << received);
    CHECK(received.rfind("HTTP/1.1 200", 0) == 0);
    if (chunked) CHECK(read_until(fd, received, "0\r\n\r\n", 5s));
    ::close(fd);
}
