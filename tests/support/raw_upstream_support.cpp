#include <arpa/inet.h>
#include <cerrno>
#include <cstdlib>
#include <netinet/in.h>
#include <poll.h>
#include <stdexcept>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/beast/core/string.hpp>

#include "support/raw_upstream.hpp"

namespace sluice::test {

namespace {

constexpr int kPollMs = 100;
constexpr std::size_t kMaxRequestBytes = 1 << 20;

// Content-Length of a request head, 0 when absent (the tests send no chunked requests here).
std::size_t content_length(const std::string& head) {
    std::size_t at = 0;
    while ((at = head.find("\r\n", at)) != std::string::npos) {
        at += 2;
        constexpr std::string_view name = "content-length:";
        if (head.size() - at >= name.size() &&
            boost::beast::iequals(std::string_view(head).substr(at, name.size()), name)) {
            return static_cast<std::size_t>(std::strtoull(head.c_str() + at + name.size(), nullptr, 10));
        }
    }
    return 0;
}

}  // namespace

RawUpstream::RawUpstream(Reply reply, std::chrono::milliseconds delay)
    : reply_(std::move(reply)), delay_(delay) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listen_fd_ < 0) throw std::runtime_error("RawUpstream: socket() failed");
    const int on = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
        ::listen(listen_fd_, 64) != 0 ||
        ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
        ::close(listen_fd_);
        throw std::runtime_error("RawUpstream: cannot listen on 127.0.0.1");
    }
    port_ = ntohs(address.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
}

RawUpstream::~RawUpstream() {
    stopping_ = true;
    acceptor_.join();
    std::vector<std::thread> threads;
    {
        const std::lock_guard<std::mutex> lock(mutex_);
        threads.swap(threads_);
    }
    for (auto& t : threads) t.join();
    ::close(listen_fd_);
}

std::vector<std::string> RawUpstream::heads() const {
    const std::lock_guard<std::mutex> lock(mutex_);
    return heads_;
}

void RawUpstream::accept_loop() {
    while (!stopping_) {
        pollfd p{listen_fd_, POLLIN, 0};
        if (::poll(&p, 1, kPollMs) <= 0) continue;
        const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0) continue;
        ++connections_;
        const std::lock_guard<std::mutex> lock(mutex_);
        threads_.emplace_back([this, fd] { serve(fd); });
    }
}

void RawUpstream::serve(int fd) {
    std::string pending;
    char chunk[4096];
    while (!stopping_) {
        const auto end = pending.find("\r\n\r\n");
        if (end != std::string::npos) {
            const std::string head = pending.substr(0, end + 4);
            const auto need = head.size() + content_length(head);
            if (pending.size() >= need) {
                pending.erase(0, need);
                std::size_t index = 0;
                {
                    const std::lock_guard<std::mutex> lock(mutex_);
                    index = heads_.size();
                    heads_.push_back(head);
                }
                std::this_thread::sleep_for(delay_);
                const auto reply = reply_(index);
                if (reply.empty()) break;
                for (std::size_t sent = 0; sent < reply.size();) {
                    const auto n = ::send(fd, reply.data() + sent, reply.size() - sent, MSG_NOSIGNAL);
                    if (n <= 0) break;
                    sent += static_cast<std::size_t>(n);
                }
                continue;
            }
        }
        if (pending.size() > kMaxRequestBytes) break;
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, kPollMs) <= 0) continue;
        const auto n = ::recv(fd, chunk, sizeof chunk, 0);
        if (n <= 0) break;
        pending.append(chunk, static_cast<std::size_t>(n));
    }
    ::close(fd);
}

}  // namespace sluice::test
