#include <algorithm>
#include <arpa/inet.h>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <fstream>
#include <map>
#include <memory>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <optional>
#include <poll.h>
#include <random>
#include <sstream>
#include <stdexcept>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "support/overload.hpp"

namespace sluice::test {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

std::uint64_t process_rss_bytes(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("VmRSS:", 0) == 0) return std::strtoull(line.c_str() + 6, nullptr, 10) * 1024;
    }
    return 0;
}

std::size_t process_open_fds(pid_t pid) {
    DIR* dir = ::opendir(("/proc/" + std::to_string(pid) + "/fd").c_str());
    if (dir == nullptr) return 0;
    std::size_t count = 0;
    while (const dirent* entry = ::readdir(dir)) {
        if (entry->d_name[0] != '.') ++count;
    }
    ::closedir(dir);
    return count;
}

std::uint64_t raise_fd_limit(std::uint64_t want) {
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return 0;
    if (limit.rlim_cur < want) {
        limit.rlim_cur = std::min<rlim_t>(want, limit.rlim_max);
        ::setrlimit(RLIMIT_NOFILE, &limit);
        ::getrlimit(RLIMIT_NOFILE, &limit);
    }
    return limit.rlim_cur;
}

bool sanitized_process(pid_t pid) {
    // A sanitizer runtime is linked dynamically (gcc: libasan, libtsan) or statically (clang):
    // either way its initialiser's name is in the mapped files or in the executable.
    static const std::string kMarkers[] = {"__asan_init", "__tsan_init", "libasan.so", "libtsan.so"};
    const auto contains_marker = [](const std::string& path) {
        std::ifstream in(path, std::ios::binary);
        std::string carry;
        std::vector<char> block(1 << 20);
        while (in) {
            in.read(block.data(), static_cast<std::streamsize>(block.size()));
            const std::string chunk =
                carry + std::string(block.data(), static_cast<std::size_t>(in.gcount()));
            for (const auto& marker : kMarkers)
                if (chunk.find(marker) != std::string::npos) return true;
            carry = chunk.substr(chunk.size() > 32 ? chunk.size() - 32 : 0);
        }
        return false;
    };
    const std::string proc = "/proc/" + std::to_string(pid);
    return contains_marker(proc + "/maps") || contains_marker(proc + "/exe");
}

bool latency_unreliable(pid_t pid) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    return true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
    return true;
#endif
#endif
    const char* env = std::getenv("SLUICE_E2E_NO_LATENCY");
    if (env != nullptr && std::string(env) == "1") return true;
    return sanitized_process(pid);
}

double percentile(std::vector<double> values, double p) {
    if (values.empty()) return 0;
    std::sort(values.begin(), values.end());
    const auto index = static_cast<std::size_t>(p * static_cast<double>(values.size() - 1) + 0.5);
    return values[std::min(index, values.size() - 1)];
}

// ------------------------------------------------------------------ LoadClients

namespace {

struct LoadRun {
    LoadClients::Options options;
    net::io_context ioc{1};
    SteadyClock::time_point start;
    SteadyClock::time_point end;
    std::vector<Exchange> exchanges;
    std::size_t connects = 0;
    std::mt19937 rng{12345};
};

class LoadClient : public std::enable_shared_from_this<LoadClient> {
public:
    LoadClient(LoadRun& run, std::size_t id) : run_(run), stream_(run.ioc), timer_(run.ioc) {
        request_.method(http::verb::get);
        request_.target(run.options.target +
                        (run.options.target.find('?') == std::string::npos ? "?c=" : "&c=") +
                        std::to_string(id));
        request_.version(11);
        request_.set(http::field::host, "overload.test");
        request_.keep_alive(true);
    }

    void begin() { next(); }

private:
    void next() {
        if (SteadyClock::now() >= run_.end) {
            beast::error_code ignored;
            stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
            stream_.close();
            return;
        }
        if (!stream_.socket().is_open()) {
            stream_.expires_after(run_.options.exchange_timeout);
            ++run_.connects;
            stream_.async_connect(tcp::endpoint(net::ip::address_v4::loopback(), run_.options.port),
                                  [self = shared_from_this()](beast::error_code ec) {
                                      if (ec) return self->failed();
                                      self->next();
                                  });
            return;
        }
        sent_ = SteadyClock::now();
        stream_.expires_after(run_.options.exchange_timeout);
        http::async_write(stream_, request_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
            if (ec) return self->failed();
            self->parser_.emplace();
            self->parser_->body_limit(1 << 20);
            http::async_read(self->stream_, self->buffer_, *self->parser_,
                             [self](beast::error_code ec2, std::size_t) { self->read(ec2); });
        });
    }

    void read(beast::error_code ec) {
        if (ec) return failed();
        const auto& res = parser_->get();
        Exchange e;
        e.status = res.result_int();
        if (const auto it = res.find("Sluice-Error"); it != res.end()) e.error = std::string(it->value());
        e.started_s = std::chrono::duration<double>(sent_ - run_.start).count();
        e.ms = std::chrono::duration<double, std::milli>(SteadyClock::now() - sent_).count();
        run_.exchanges.push_back(std::move(e));
        const bool keep = res.keep_alive();
        const unsigned status = res.result_int();
        parser_.reset();
        if (!keep) {
            beast::error_code ignored;
            stream_.socket().close(ignored);
        }
        if (status == 429 || status == 503) {
            // A client that honours Retry-After backs off; a short pause keeps the
            // load at hundreds of requests a second without 500 clients spinning.
            const auto base = run_.options.pause_after_429;
            std::uniform_int_distribution<long> jitter(0, base.count());
            timer_.expires_after(base + std::chrono::milliseconds(jitter(run_.rng)));
            timer_.async_wait([self = shared_from_this()](beast::error_code) { self->next(); });
            return;
        }
        next();
    }

    void failed() {
        Exchange e;
        e.status = 0;
        e.started_s = std::chrono::duration<double>(sent_ - run_.start).count();
        e.ms = std::chrono::duration<double, std::milli>(SteadyClock::now() - sent_).count();
        run_.exchanges.push_back(std::move(e));
        beast::error_code ignored;
        stream_.socket().close(ignored);
        buffer_.clear();
        parser_.reset();
        // Reconnect after a pause (bounded by the run's end).
        timer_.expires_after(std::chrono::milliseconds(50));
        timer_.async_wait([self = shared_from_this()](beast::error_code) { self->next(); });
    }

    LoadRun& run_;
    beast::tcp_stream stream_;
    net::steady_timer timer_;
    beast::flat_buffer buffer_;
    http::request<http::empty_body> request_;
    std::optional<http::response_parser<http::string_body>> parser_;
    SteadyClock::time_point sent_{};
};

}  // namespace

std::vector<Exchange> LoadClients::run() {
    LoadRun r;
    r.options = options_;
    r.start = SteadyClock::now();
    r.end = r.start + options_.duration;
    r.exchanges.reserve(options_.clients * 16);
    for (std::size_t i = 0; i < options_.clients; ++i) std::make_shared<LoadClient>(r, i)->begin();
    r.ioc.run();
    connects_ = r.connects;
    return std::move(r.exchanges);
}

// ------------------------------------------------------------------ HeldSockets

namespace {

// The ESTABLISHED IPv4 connections whose local port is `port`: remote port -> send queue bytes.
std::map<std::uint16_t, std::uint64_t> established_peers(std::uint16_t port) {
    std::map<std::uint16_t, std::uint64_t> peers;
    std::ifstream in("/proc/net/tcp");
    std::string line;
    std::getline(in, line);  // the column names
    while (std::getline(in, line)) {
        // "  sl: 0100007F:1F90 0100007F:C350 01 00000000:00000000 ..." (hex address:port, hex state,
        // 01 = ESTABLISHED, then hex tx_queue:rx_queue)
        std::istringstream fields(line);
        std::string slot, local, remote, state, queues;
        fields >> slot >> local >> remote >> state >> queues;
        if (state != "01") continue;
        const auto local_port = std::strtoul(local.substr(local.find(':') + 1).c_str(), nullptr, 16);
        if (local_port != port) continue;
        const auto remote_port = std::strtoul(remote.substr(remote.find(':') + 1).c_str(), nullptr, 16);
        peers[static_cast<std::uint16_t>(remote_port)] =
            std::strtoull(queues.substr(0, queues.find(':')).c_str(), nullptr, 16);
    }
    return peers;
}

// Starts a non-blocking connect (completed by wait_connected).
int start_connect(std::uint16_t port, int rcvbuf) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
    if (rcvbuf > 0) ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0 && errno != EINPROGRESS) {
        const int err = errno;
        ::close(fd);
        throw std::runtime_error(std::string("connect: ") + std::strerror(err));
    }
    return fd;
}

// Waits (at most 10 s) until every connect started has completed; returns when each did.
// Throws on a failure.
std::vector<SteadyClock::time_point> wait_connected(const std::vector<int>& fds) {
    const auto until = SteadyClock::now() + std::chrono::seconds(10);
    std::vector<SteadyClock::time_point> done(fds.size());
    std::vector<std::size_t> pending(fds.size());
    for (std::size_t i = 0; i < fds.size(); ++i) pending[i] = i;
    std::vector<pollfd> polled;
    while (!pending.empty()) {
        if (SteadyClock::now() >= until) throw std::runtime_error("connects not completed within 10 s");
        polled.clear();
        for (const std::size_t i : pending) polled.push_back(pollfd{fds[i], POLLOUT, 0});
        ::poll(polled.data(), polled.size(), 100);
        const auto now = SteadyClock::now();
        std::vector<std::size_t> left;
        for (std::size_t k = 0; k < polled.size(); ++k) {
            if (polled[k].revents == 0) {
                left.push_back(pending[k]);
                continue;
            }
            int err = 0;
            socklen_t length = sizeof err;
            ::getsockopt(polled[k].fd, SOL_SOCKET, SO_ERROR, &err, &length);
            if (err != 0) throw std::runtime_error(std::string("connect: ") + std::strerror(err));
            done[pending[k]] = now;
        }
        pending.swap(left);
    }
    return done;
}

}  // namespace

HeldSockets::~HeldSockets() {
    close_all();
}

void HeldSockets::open(Kind kind, std::size_t count, const std::string& request) {
    // Connects 100 at a time (non-blocking), then the requests: thousands take a fraction of a
    // second, without a burst of SYNs larger than a listen queue drains at once (a connect
    // whose SYN is dropped is retried by the kernel a second later).
    constexpr std::size_t kBatch = 100;
    std::vector<int> fds;
    std::vector<SteadyClock::time_point> opened;
    try {
        for (std::size_t first = 0; first < count; first += kBatch) {
            std::vector<int> batch;
            for (std::size_t i = first; i < std::min(count, first + kBatch); ++i) {
                batch.push_back(start_connect(port_, kind == Kind::slow_reader ? 4096 : 0));
                fds.push_back(batch.back());
            }
            const auto done = wait_connected(batch);
            opened.insert(opened.end(), done.begin(), done.end());
            add(kind, batch, done, request);  // watched from now on
        }
    } catch (...) {
        for (const int fd : fds) ::close(fd);
        throw;
    }
}

void HeldSockets::add(Kind kind, const std::vector<int>& fds,
                      const std::vector<SteadyClock::time_point>& opened, const std::string& request) {
    std::vector<Held> made;
    for (std::size_t i = 0; i < fds.size(); ++i) {
        Held h;
        h.kind = kind;
        h.fd = fds[i];
        h.opened = opened[i];
        h.last_progress = opened[i];
        sockaddr_in local{};
        socklen_t length = sizeof local;
        ::getsockname(h.fd, reinterpret_cast<sockaddr*>(&local), &length);
        h.local_port = ntohs(local.sin_port);
        // A request fits the empty send buffer of a new connection: one send() takes it all.
        if ((kind == Kind::slow_reader || kind == Kind::idle_after_request) &&
            ::send(h.fd, request.data(), request.size(), MSG_NOSIGNAL) !=
                static_cast<ssize_t>(request.size())) {
            throw std::runtime_error("sending a request on a held connection failed");
        }
        made.push_back(h);
    }
    std::lock_guard lock(mutex_);
    held_.insert(held_.end(), made.begin(), made.end());
}

void HeldSockets::start(std::chrono::milliseconds trickle) {
    trickle_ = trickle;
    watcher_ = std::thread([this] { watch(); });
}

void HeldSockets::drain_slow_readers() {
    std::lock_guard lock(mutex_);
    drain_readers_ = true;
}

void HeldSockets::watch() {
    // epoll, not poll: thousands of quiet sockets must not cost the test (and so
    // sluice, on a 2-core machine) a scan of every one each 10 ms.
    const int ep = ::epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) return;
    std::vector<bool> registered;
    auto next_trickle = SteadyClock::now();
    auto next_proc_scan = SteadyClock::now();
    std::vector<epoll_event> events(256);
    char buffer[64 * 1024];
    while (!stop_) {
        const auto now = SteadyClock::now();
        {
            std::lock_guard lock(mutex_);
            registered.resize(held_.size(), false);
            for (std::size_t i = 0; i < held_.size(); ++i) {
                const Held& h = held_[i];
                if (registered[i] || h.closed || (h.kind == Kind::slow_reader && !drain_readers_)) continue;
                epoll_event ev{};
                ev.events = EPOLLIN | EPOLLRDHUP;
                ev.data.u64 = i;
                ::epoll_ctl(ep, EPOLL_CTL_ADD, h.fd, &ev);
                registered[i] = true;
            }
            if (now >= next_trickle) {
                next_trickle = now + trickle_;
                for (Held& h : held_) {
                    if (h.closed || h.kind != Kind::slowloris || h.sent + 1 >= slowloris_request_.size())
                        continue;
                    if (h.sent == 0) h.first_byte_sent = now;
                    const ssize_t n = ::send(h.fd, slowloris_request_.data() + h.sent, 1, MSG_NOSIGNAL);
                    if (n == 1) {
                        ++h.sent;
                    } else if (n < 0 && errno != EAGAIN) {
                        h.closed = true;
                        h.closed_at = now;
                    }
                }
            }
            const bool uncut = std::any_of(held_.begin(), held_.end(), [](const Held& h) {
                return h.kind == Kind::slow_reader && !h.cut;
            });
            if (uncut && now >= next_proc_scan) {
                next_proc_scan = now + std::chrono::milliseconds(50);
                const auto established = established_peers(port_);
                for (Held& h : held_) {
                    if (h.kind != Kind::slow_reader || h.cut) continue;
                    const auto found = established.find(h.local_port);
                    if (found == established.end()) {
                        h.cut = true;
                        h.cut_at = now;
                    } else if (found->second != h.send_queue) {
                        // sluice's writes made progress (its send queue changed): the stall starts again.
                        h.send_queue = found->second;
                        h.last_progress = now;
                    }
                }
            }
        }
        const int ready = ::epoll_wait(ep, events.data(), static_cast<int>(events.size()), 10);
        std::lock_guard lock(mutex_);
        const auto at = SteadyClock::now();
        for (int k = 0; k < ready; ++k) {
            Held& h = held_[events[static_cast<std::size_t>(k)].data.u64];
            if (h.closed) continue;
            // Read what is there; EOF or an error is the close we are waiting for.
            while (true) {
                const ssize_t n = ::recv(h.fd, buffer, sizeof buffer, 0);
                if (n > 0) {
                    if (h.bytes_received == 0) h.first_reply_at = at;
                    h.bytes_received += static_cast<std::uint64_t>(n);
                    continue;
                }
                if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
                h.closed = true;
                h.closed_at = at;
                ::epoll_ctl(ep, EPOLL_CTL_DEL, h.fd, nullptr);
                break;
            }
        }
    }
    ::close(ep);
}

bool HeldSockets::wait_cut(std::chrono::milliseconds timeout) {
    const auto until = SteadyClock::now() + timeout;
    const auto uncut = [this] {
        std::lock_guard lock(mutex_);
        return std::count_if(held_.begin(), held_.end(),
                             [](const Held& h) { return h.kind == Kind::slow_reader && !h.cut; });
    };
    while (uncut() > 0 && SteadyClock::now() < until)
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    return uncut() == 0;
}

std::vector<double> HeldSockets::cut_delays() {
    std::lock_guard lock(mutex_);
    std::vector<double> out;
    for (const Held& h : held_)
        if (h.kind == Kind::slow_reader && h.cut)
            out.push_back(std::chrono::duration<double>(h.cut_at - h.last_progress).count());
    return out;
}

bool HeldSockets::wait_closed(Kind kind, std::chrono::milliseconds timeout) {
    const auto until = SteadyClock::now() + timeout;
    while (SteadyClock::now() < until) {
        if (open_count(kind) == 0) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return open_count(kind) == 0;
}

std::size_t HeldSockets::open_count(Kind kind) {
    std::lock_guard lock(mutex_);
    return static_cast<std::size_t>(std::count_if(
        held_.begin(), held_.end(), [&](const Held& h) { return h.kind == kind && !h.closed; }));
}

std::vector<double> HeldSockets::close_delays(Kind kind) {
    std::lock_guard lock(mutex_);
    std::vector<double> out;
    for (const Held& h : held_) {
        if (h.kind != kind || !h.closed) continue;
        const auto from = h.kind == Kind::idle_after_request ? h.first_reply_at : h.opened;
        out.push_back(std::chrono::duration<double>(h.closed_at - from).count());
    }
    return out;
}

std::uint64_t HeldSockets::bytes_received(Kind kind) {
    std::lock_guard lock(mutex_);
    std::uint64_t total = 0;
    for (const Held& h : held_)
        if (h.kind == kind) total += h.bytes_received;
    return total;
}

void HeldSockets::close_all() {
    stop_ = true;
    if (watcher_.joinable()) watcher_.join();
    std::lock_guard lock(mutex_);
    for (Held& h : held_) {
        if (h.fd >= 0) ::close(h.fd);
        h.fd = -1;
    }
}

}  // namespace sluice::test
