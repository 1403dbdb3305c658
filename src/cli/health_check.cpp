#include "sluice/cli/health_check.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

namespace sluice::cli {

namespace {

using Clock = std::chrono::steady_clock;

// A socket closed on every return path.
class Socket {
public:
    explicit Socket(int fd) : fd_(fd) {}
    Socket(const Socket&) = delete;
    Socket& operator=(const Socket&) = delete;
    ~Socket() {
        if (fd_ >= 0) ::close(fd_);
    }
    int fd() const { return fd_; }

private:
    int fd_;
};

int remaining_ms(Clock::time_point deadline) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    return left.count() > 0 ? static_cast<int>(left.count()) : 0;
}

// Waits for `events` on `fd` until the deadline: an empty string when ready, else why not.
std::string wait_for(int fd, short events, Clock::time_point deadline, const char* what) {
    for (;;) {
        pollfd p{fd, events, 0};
        const int n = ::poll(&p, 1, remaining_ms(deadline));
        if (n > 0) return {};
        if (n == 0) return std::string("timed out ") + what;
        if (errno != EINTR) return std::string("poll: ") + std::strerror(errno);
    }
}

// A non-blocking connect to one address, bounded by the deadline.
std::string connect_one(int fd, const addrinfo& address, Clock::time_point deadline) {
    if (::connect(fd, address.ai_addr, address.ai_addrlen) == 0) return {};
    if (errno != EINPROGRESS) return std::strerror(errno);
    if (auto error = wait_for(fd, POLLOUT, deadline, "connecting"); !error.empty()) return error;
    int so_error = 0;
    socklen_t length = sizeof so_error;
    if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &length) != 0) return std::strerror(errno);
    return so_error == 0 ? std::string() : std::strerror(so_error);
}

std::string send_all(int fd, std::string_view data, Clock::time_point deadline) {
    while (!data.empty()) {
        const auto n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
        if (n >= 0) {
            data.remove_prefix(static_cast<std::size_t>(n));
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            if (auto error = wait_for(fd, POLLOUT, deadline, "sending the request"); !error.empty())
                return error;
        } else if (errno != EINTR) {
            return std::string("send: ") + std::strerror(errno);
        }
    }
    return {};
}

// Reads until the status line is complete, the peer closes, or kMaxStatusLineBytes.
std::string read_status_line(int fd, Clock::time_point deadline, std::string& head) {
    char buffer[256];
    while (head.size() < kMaxStatusLineBytes && head.find('\n') == std::string::npos) {
        const auto want = std::min(sizeof buffer, kMaxStatusLineBytes - head.size());
        const auto n = ::recv(fd, buffer, want, 0);
        if (n > 0) {
            head.append(buffer, static_cast<std::size_t>(n));
        } else if (n == 0) {
            return {};  // closed: parse_status_line decides whether what came is enough
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            if (auto error = wait_for(fd, POLLIN, deadline, "waiting for the answer"); !error.empty())
                return error;
        } else if (errno != EINTR) {
            return std::string("recv: ") + std::strerror(errno);
        }
    }
    return {};
}

bool all_digits(std::string_view text) {
    if (text.empty()) return false;
    for (const char c : text) {
        if (c < '0' || c > '9') return false;
    }
    return true;
}

}  // namespace

std::string parse_admin_address(std::string_view text, HealthTarget& target) {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos) return "expected HOST:PORT, got '" + std::string(text) + "'";
    auto host = text.substr(0, colon);
    const auto port = text.substr(colon + 1);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
        host = host.substr(1, host.size() - 2);
    } else if (host.find(':') != std::string_view::npos) {
        return "an IPv6 address goes in brackets ([::1]:9901), got '" + std::string(text) + "'";
    }
    if (!all_digits(port) || port.size() > 5 || std::stoi(std::string(port)) == 0 ||
        std::stoi(std::string(port)) > 65535) {
        return "expected a port 1-65535 after ':', got '" + std::string(text) + "'";
    }
    target.host = host.empty() ? "127.0.0.1" : std::string(host);
    target.port = std::string(port);
    return {};
}

std::optional<int> parse_status_line(std::string_view head) {
    const auto end = head.find('\n');
    if (end == std::string_view::npos) return std::nullopt;
    auto line = head.substr(0, end);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    // "HTTP/1.1 200" followed by the end of the line or " reason" (RFC 9112, section 4).
    constexpr std::string_view kVersion = "HTTP/1.";
    if (line.size() < kVersion.size() + 5 || line.substr(0, kVersion.size()) != kVersion) return std::nullopt;
    if (!all_digits(line.substr(kVersion.size(), 1)) || line[kVersion.size() + 1] != ' ') return std::nullopt;
    const auto code = line.substr(kVersion.size() + 2, 3);
    if (!all_digits(code)) return std::nullopt;
    if (line.size() > kVersion.size() + 5 && line[kVersion.size() + 5] != ' ') return std::nullopt;
    return std::stoi(std::string(code));
}

HealthResult check_health(const HealthTarget& target) {
    HealthResult result;
    const auto deadline = Clock::now() + target.timeout;

    // The admin listener's address is an IP literal in sluice's config; a name is looked up
    // by the system resolver, which poll() cannot bound (the probe's own timeout still does).
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    addrinfo* addresses = nullptr;
    if (const int rc = ::getaddrinfo(target.host.c_str(), target.port.c_str(), &hints, &addresses); rc != 0) {
        result.error = "cannot resolve " + target.host + ": " + ::gai_strerror(rc);
        return result;
    }

    std::string error = "no address for " + target.host;
    std::string head;
    for (const addrinfo* address = addresses; address != nullptr; address = address->ai_next) {
        Socket socket(::socket(address->ai_family, address->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                               address->ai_protocol));
        if (socket.fd() < 0) {
            error = std::string("socket: ") + std::strerror(errno);
            continue;
        }
        if (const auto why = connect_one(socket.fd(), *address, deadline); !why.empty()) {
            error = "connect to " + target.host;
            error += ":" + target.port + ": " + why;
            continue;
        }
        error.clear();
        const std::string request = "GET " + target.path + " HTTP/1.1\r\nHost: " + target.host + ":" +
                                    target.port +
                                    "\r\nUser-Agent: sluice-health\r\nConnection: close\r\n\r\n";
        error = send_all(socket.fd(), request, deadline);
        if (error.empty()) error = read_status_line(socket.fd(), deadline, head);
        break;  // connected: this address answers for the target, good or bad
    }
    ::freeaddrinfo(addresses);

    if (!error.empty()) {
        result.error = error;
        return result;
    }
    const auto status = parse_status_line(head);
    if (!status) {
        result.error = head.empty() ? "the connection closed without an answer" : "not an HTTP answer";
        return result;
    }
    result.status = *status;
    result.healthy = *status == 200;
    return result;
}

}  // namespace sluice::cli
