#pragma once
// An upstream that answers with raw bytes, for the tests that need what no
// well-behaved HTTP server sends (a bad chunk size, bytes past the end of a
// response, a second response nobody asked for). The Beast-based MockUpstream
// frames everything it writes correctly, so it cannot play these parts.
//
// Contract: listens on 127.0.0.1 (ephemeral port); each connection runs on its
// own thread, reads request heads (and Content-Length bodies), and answers the
// Nth request received across all connections (0-based) with reply(N), written
// as given after `delay`. An empty reply closes the connection instead. Every
// blocking call is bounded (100 ms polls); the destructor stops and joins all.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace sluice::test {

class RawUpstream {
public:
    using Reply = std::function<std::string(std::size_t request_index)>;

    explicit RawUpstream(Reply reply, std::chrono::milliseconds delay = std::chrono::milliseconds(0));
    ~RawUpstream();
    RawUpstream(const RawUpstream&) = delete;
    RawUpstream& operator=(const RawUpstream&) = delete;

    std::uint16_t port() const { return port_; }
    std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

    // Request heads received so far, in arrival order (each up to its blank line).
    std::vector<std::string> heads() const;
    std::size_t connections_accepted() const { return connections_.load(); }

private:
    void accept_loop();
    void serve(int fd);

    Reply reply_;
    std::chrono::milliseconds delay_;
    int listen_fd_ = -1;
    std::uint16_t port_ = 0;
    std::atomic<bool> stopping_{false};
    std::atomic<std::size_t> connections_{0};
    mutable std::mutex mutex_;
    std::vector<std::string> heads_;
    std::vector<std::thread> threads_;  // guarded by mutex_ (the accept thread adds to it)
    std::thread acceptor_;
};

}  // namespace sluice::test
