#include "sluice/proxy/proxy_server.hpp"

#include <algorithm>
#include <chrono>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <sstream>
#include <stdexcept>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/http/write.hpp>

#include "sluice/admin/admin_server.hpp"
#include "sluice/common/crash_barrier.hpp"
#include "sluice/common/failpoint.hpp"
#include "sluice/common/log.hpp"
#include "sluice/common/memory_release.hpp"
#include "sluice/proxy/client_session.hpp"
#include "sluice/proxy/synthetic_response.hpp"

namespace sluice::proxy {

namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {

// After a failed accept (EMFILE: the fd limit; ENFILE, ENOBUFS, ENOMEM) the
// next one fails at once too, so retrying at once spins a core and floods the
// log. Accepting pauses instead, nginx-style: 10 ms, doubling up to 1 s, back
// to 10 ms after a success. Pending connections wait in the kernel's backlog.
constexpr auto kAcceptBackoffFirst = std::chrono::milliseconds(10);
constexpr auto kAcceptBackoffMax = std::chrono::seconds(1);
// At most one accept-failure line per interval; the others are counted in it.
constexpr auto kAcceptLogInterval = std::chrono::seconds(1);

// The answer to a connection over server.max_client_connections, serialised
// once: the shed path must cost no more than the close it replaces.
std::string too_many_connections_response() {
    auto res =
        make_error_response(Errc::too_many_connections,
                            "sluice has reached server.max_client_connections; retry shortly", 11, false);
    res.set(boost::beast::http::field::retry_after, "1");
    std::ostringstream out;
    out << res;
    return out.str();
}

}  // namespace

// Gives the memory of closed connections back to the OS once their number has
// dropped (sluice/common/memory_release.hpp): samples the open connection count
// once a second, on the io_context, and stops with the server.
class MemoryReleaser : public std::enable_shared_from_this<MemoryReleaser> {
public:
    MemoryReleaser(net::io_context& ioc, std::shared_ptr<Runtime> runtime)
        : timer_(net::make_strand(ioc)), runtime_(std::move(runtime)) {}

    void start() { arm(); }
    void stop() {
        net::post(timer_.get_executor(), [self = shared_from_this()] {
            self->stopped_ = true;
            self->timer_.cancel();
        });
    }

private:
    void arm() {
        timer_.expires_after(std::chrono::seconds(1));
        timer_.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
            const auto self = weak.lock();
            if (!self || ec || self->stopped_) return;
            if (self->policy_.observe(self->runtime_->counters.open_client_connections.load())) {
#if defined(__GLIBC__)
                ::malloc_trim(0);
#endif
            }
            self->arm();
        });
    }

    net::steady_timer timer_;
    std::shared_ptr<Runtime> runtime_;
    MemoryReleasePolicy policy_;
    bool stopped_ = false;
};

// Accepts connections on one configured listener.
class Listener : public std::enable_shared_from_this<Listener> {
public:
    Listener(upstream::ConnectionExecutor executors, std::shared_ptr<Runtime> runtime, std::size_t index)
        : executors_(executors),
          acceptor_(executors.make()),
          backoff_timer_(acceptor_.get_executor()),
          runtime_(std::move(runtime)),
          index_(index),
          refusal_(too_many_connections_response()) {}

    void bind() {
        const auto& cfg = runtime_->config->listeners[index_];
        boost::system::error_code ec;
        const auto address = net::ip::make_address(cfg.address, ec);
        if (ec) throw std::runtime_error("listener '" + cfg.name + "': bad address '" + cfg.address + "'");
        const tcp::endpoint endpoint(address, cfg.port);
        const auto where = "listener '" + cfg.name + "' on " + cfg.address + ":" + std::to_string(cfg.port);
        acceptor_.open(endpoint.protocol(), ec);
        if (!ec) acceptor_.set_option(net::socket_base::reuse_address(true), ec);
        if (!ec) acceptor_.bind(endpoint, ec);
        if (!ec) acceptor_.listen(net::socket_base::max_listen_connections, ec);
        if (ec) throw std::runtime_error(where + ": " + ec.message());
        port_ = acceptor_.local_endpoint().port();
        log::info("proxy", "listener '" + cfg.name + "' on " + cfg.address + ":" + std::to_string(port_));
    }

    void start() { do_accept(); }

    void stop() {
        net::post(acceptor_.get_executor(), [self = shared_from_this()] {
            boost::system::error_code ignored;
            self->acceptor_.close(ignored);
            self->backoff_timer_.cancel();
        });
    }

    std::uint16_t port() const { return port_; }
    const std::string& name() const { return runtime_->config->listeners[index_].name; }

private:
    void do_accept() {
        acceptor_.async_accept(executors_.make(),
                               [self = shared_from_this()](boost::system::error_code ec, tcp::socket socket) {
                                   self->on_accept_contained(ec, std::move(socket));
                               });
    }

    // The accept loop's crash barrier: whatever escapes on_accept() costs the one
    // connection being accepted (its socket closes as the exception unwinds), is
    // counted in listener_exceptions, and accepting resumes after a pause (what
    // threw may throw again at once: no spinning).
    void on_accept_contained(boost::system::error_code ec, tcp::socket socket) noexcept {
        static log::RateLimitedSite site;
        if (run_contained(runtime_->counters.listener_exceptions, site, "proxy", "the accept loop",
                          [&] { on_accept(ec, std::move(socket)); })) {
            return;
        }
        if (!acceptor_.is_open()) return;
        run_contained(runtime_->counters.listener_exceptions, site, "proxy", "resuming the accept loop", [&] {
            backoff_timer_.expires_after(kAcceptBackoffFirst);
            backoff_timer_.async_wait([weak = weak_from_this()](boost::system::error_code wait_ec) {
                if (wait_ec) return;
                if (auto self = weak.lock(); self && self->acceptor_.is_open()) self->do_accept();
            });
        });
    }

    void on_accept(boost::system::error_code ec, tcp::socket socket) {
        if (ec == net::error::operation_aborted || !acceptor_.is_open()) return;
        if (ec) return pause_after_failure(ec);
        failpoint::hit(failpoint::Point::listener_accept);
        if (failures_since_success_ > 0) {
            log::info("proxy", "accepting again after " + std::to_string(failures_since_success_) +
                                   " failed accept(s)");
            failures_since_success_ = 0;
        }
        backoff_ = {};
        if (runtime_->counters.open_client_connections.load(std::memory_order_relaxed) >=
            static_cast<std::int64_t>(runtime_->config->server.max_client_connections)) {
            refuse(std::move(socket));  // over the connection bound: shed instead of growing
        } else {
            std::make_shared<ClientSession>(std::move(socket), runtime_, index_)->start();
        }
        do_accept();
    }

    void pause_after_failure(const boost::system::error_code& ec) {
        runtime_->counters.accept_failures.fetch_add(1, std::memory_order_relaxed);
        ++failures_since_success_;
        backoff_ = backoff_ == std::chrono::milliseconds::zero()
                       ? kAcceptBackoffFirst
                       : std::min<std::chrono::milliseconds>(backoff_ * 2, kAcceptBackoffMax);
        const auto now = std::chrono::steady_clock::now();
        if (now >= next_failure_log_) {
            log::warn("proxy", "accept failed: " + ec.message() + "; pausing accepts for " +
                                   std::to_string(backoff_.count()) + " ms (" +
                                   std::to_string(suppressed_failure_logs_) +
                                   " similar failure(s) not logged)");
            suppressed_failure_logs_ = 0;
            next_failure_log_ = now + kAcceptLogInterval;
        } else {
            ++suppressed_failure_logs_;
        }
        backoff_timer_.expires_after(backoff_);
        // A weak reference: a pause must not keep a stopped listener alive.
        backoff_timer_.async_wait([weak = weak_from_this()](boost::system::error_code wait_ec) {
            if (wait_ec) return;
            if (auto self = weak.lock(); self && self->acceptor_.is_open()) self->do_accept();
        });
    }

    // One non-blocking attempt to write the 503, then close. Never a wait: a
    // client that does not read (or floods connections) costs one send() each.
    void refuse(tcp::socket socket) {
        runtime_->counters.refused_client_connections.fetch_add(1, std::memory_order_relaxed);
        boost::system::error_code ignored;
        socket.non_blocking(true, ignored);
        socket.write_some(net::buffer(refusal_), ignored);
        // Drain what the client already sent, if anything, without waiting: closing
        // with unread bytes resets the connection, and the reset can overtake the 503.
        char discard[4096];
        socket.read_some(net::buffer(discard), ignored);
        socket.shutdown(tcp::socket::shutdown_both, ignored);
        socket.close(ignored);
        const auto now = std::chrono::steady_clock::now();
        if (now >= next_refusal_log_) {
            log::warn("proxy", "max_client_connections reached; connection refused with 503 (" +
                                   std::to_string(suppressed_refusal_logs_) + " more not logged)");
            suppressed_refusal_logs_ = 0;
            next_refusal_log_ = now + kAcceptLogInterval;
        } else {
            ++suppressed_refusal_logs_;
        }
    }

    upstream::ConnectionExecutor executors_;
    tcp::acceptor acceptor_;
    net::steady_timer backoff_timer_;
    std::shared_ptr<Runtime> runtime_;
    std::size_t index_;
    std::uint16_t port_ = 0;
    const std::string refusal_;             // the serialised 503 too_many_connections
    std::chrono::milliseconds backoff_{0};  // the current pause after a failed accept; 0 after a success
    std::uint64_t failures_since_success_ = 0;
    std::uint64_t suppressed_failure_logs_ = 0;
    std::chrono::steady_clock::time_point next_failure_log_{};
    std::uint64_t suppressed_refusal_logs_ = 0;
    std::chrono::steady_clock::time_point next_refusal_log_{};
};

ProxyServer::ProxyServer(net::io_context& ioc, std::shared_ptr<const config::Config> config,
                         const Clock& clock)
    : ioc_(ioc) {
    route::RouteTable table(*config);
    const upstream::ConnectionExecutor executors(ioc, std::max(1u, config->server.workers));
    runtime_ = std::make_shared<Runtime>(config, std::move(table));
    for (const auto& upstream : config->upstreams) {
        runtime_->pools.push_back(std::make_shared<upstream::ConnectionPool>(executors, upstream));
    }
    std::vector<std::unique_ptr<limit::Limiter>> limiters;
    for (const auto& limit : config->limits) limiters.push_back(limit::make_limiter(limit));
    for (const auto& gate : runtime_->vendor_gates) limiters.push_back(limit::make_limiter(gate));
    runtime_->limits = std::make_shared<LimitService>(ioc, clock, std::move(limiters));
    for (std::size_t i = 0; i < config->listeners.size(); ++i) {
        listeners_.push_back(std::make_shared<Listener>(executors, runtime_, i));
    }
    if (config->server.admin.enabled) admin_ = std::make_shared<admin::AdminServer>(ioc, runtime_);
}

ProxyServer::~ProxyServer() = default;

void ProxyServer::start() {
    for (const auto& upstream : runtime_->config->upstreams) {
        if (upstream.scheme == "https" && !upstream.tls.verify) {
            // Explicit in the config, and said once at start: a reader of the log
            // must not have to find the line in the YAML to know keys travel unverified.
            log::warn("upstream",
                      "upstream '" + upstream.name + "' (" + upstream.host + ":" +
                          std::to_string(upstream.port) +
                          "): TLS verification is OFF (tls.verify: false); its certificate and host "
                          "name are not checked, so anyone on the path can read and alter this "
                          "traffic, API keys included");
        }
    }
    // Opened before anything listens: a path that cannot be written is a start error.
    if (runtime_->config->server.access_log.enabled)
        runtime_->access_log = std::make_unique<AccessLog>(*runtime_->config);
    for (auto& listener : listeners_) listener->bind();
    if (admin_) admin_->bind();
    for (auto& pool : runtime_->pools) pool->start();
    for (auto& listener : listeners_) listener->start();
    if (admin_) admin_->start();
    memory_releaser_ = std::make_shared<MemoryReleaser>(ioc_, runtime_);
    memory_releaser_->start();
}

void ProxyServer::stop() {
    runtime_->draining.store(true);
    for (auto& listener : listeners_) listener->stop();
    if (memory_releaser_) memory_releaser_->stop();
    // Idle keep-alive connections close now; busy ones after their response
    // (they see `draining`), queued requests get a 503 shutting_down.
    runtime_->idle_sessions.wake_all_for_drain();
    runtime_->limits->stop();
    for (auto& pool : runtime_->pools) pool->stop();
    // The admin listener stays: /readyz answers 503 while draining (stop_admin()).
}

void ProxyServer::stop_admin() {
    if (admin_) admin_->stop();
}

std::vector<std::pair<std::string, std::uint16_t>> ProxyServer::listener_ports() const {
    std::vector<std::pair<std::string, std::uint16_t>> out;
    for (const auto& listener : listeners_) out.emplace_back(listener->name(), listener->port());
    return out;
}

std::uint16_t ProxyServer::admin_port() const {
    return admin_ ? admin_->port() : 0;
}

}  // namespace sluice::proxy
