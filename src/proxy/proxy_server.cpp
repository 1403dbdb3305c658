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
        // The config in force now (a reload may have replaced the one this listener began with).
        auto current = runtime_->process->current();
        if (current->counters.open_client_connections.load(std::memory_order_relaxed) >=
            static_cast<std::int64_t>(current->config->server.max_client_connections)) {
            refuse(std::move(socket));  // over the connection bound: shed instead of growing
        } else {
            std::make_shared<ClientSession>(std::move(socket), std::move(current), index_)->start();
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

namespace {

// Whether a pool made for `a` can serve `b` as it is (a reload keeps such pools,
// their idle connections and their max_connections bound).
bool same_connection_settings(const config::UpstreamConfig& a, const config::UpstreamConfig& b) {
    return a.name == b.name && a.scheme == b.scheme && a.host == b.host && a.port == b.port &&
           a.tls.verify == b.tls.verify && a.tls.ca_file == b.tls.ca_file &&
           a.tls.server_name == b.tls.server_name && a.max_connections == b.max_connections &&
           a.max_idle_connections == b.max_idle_connections && a.idle_timeout == b.idle_timeout &&
           a.connect_timeout == b.connect_timeout && a.max_streamed_bodies == b.max_streamed_bodies;
}

bool same_redis(const config::RedisConfig& a, const config::RedisConfig& b) {
    return a.host == b.host && a.port == b.port && a.unix_path == b.unix_path && a.db == b.db &&
           a.username == b.username && a.password_file == b.password_file &&
           a.password_env == b.password_env && a.tls == b.tls && a.tls_ca_file == b.tls_ca_file &&
           a.tls_server_name == b.tls_server_name && a.tls_verify == b.tls_verify &&
           a.key_prefix == b.key_prefix && a.connect_timeout == b.connect_timeout &&
           a.command_timeout == b.command_timeout && a.replicas == b.replicas && a.lease == b.lease;
}

// What a reload cannot change in a running process; empty when `next` changes none of it.
std::string unreloadable_change(const config::Config& current, const config::Config& next) {
    const auto& a = current.server;
    const auto& b = next.server;
    if (current.listeners.size() != next.listeners.size())
        return "the listeners changed (a reload cannot add or remove a listener: restart sluice)";
    for (std::size_t i = 0; i < current.listeners.size(); ++i) {
        const auto& x = current.listeners[i];
        const auto& y = next.listeners[i];
        if (x.name != y.name || x.address != y.address || (x.port != y.port && y.port != 0))
            return "listener '" + x.name + "' changed (a reload cannot rebind a listener: restart sluice)";
    }
    if (a.admin.enabled != b.admin.enabled || a.admin.address != b.admin.address ||
        (a.admin.port != b.admin.port && b.admin.port != 0) || a.admin.token_file != b.admin.token_file ||
        a.admin.token_env != b.admin.token_env)
        return "server.admin changed (its listener and token are set at start: restart sluice)";
    if (a.workers != b.workers) return "server.workers changed (threads are started once: restart sluice)";
    if (a.access_log.enabled != b.access_log.enabled || a.access_log.path != b.access_log.path ||
        a.access_log.log_query != b.access_log.log_query ||
        a.access_log.buffer_bytes != b.access_log.buffer_bytes)
        return "server.access_log changed (the log is opened at start: restart sluice)";
    if (a.state.enabled != b.state.enabled || a.state.dir != b.state.dir ||
        a.state.save_interval != b.state.save_interval || a.state.min_window != b.state.min_window)
        return "server.state changed (the state file is opened at start: restart sluice)";
    if (a.state.backend != b.state.backend || !same_redis(a.state.redis, b.state.redis))
        return "server.state.backend or server.state.redis changed (Redis is connected at start: restart "
               "sluice)";
    return {};
}

}  // namespace

ProxyServer::ProxyServer(net::io_context& ioc, std::shared_ptr<const config::Config> config,
                         const Clock& clock)
    : ioc_(ioc),
      executors_(ioc, std::max(1u, config->server.workers)),
      process_(std::make_shared<ProcessState>()) {
    process_->limits = std::make_shared<LimitService>(ioc, clock);
    // Before the first install: every limit is then shared (docs/distributed.md).
    if (config->server.state.backend == config::StateBackend::redis)
        process_->limits->share_through_redis(config->server.state.redis);
    // Before the first runtime: it takes the log from the process state.
    if (config->server.access_log.enabled) process_->access_log = std::make_unique<AccessLog>(*config);
    std::string error;
    runtime_ = build_runtime(config, nullptr, error);
    if (!runtime_) throw std::runtime_error(error);
    process_->make_current(runtime_, runtime_->generation);
    for (std::size_t i = 0; i < config->listeners.size(); ++i) {
        listeners_.push_back(std::make_shared<Listener>(executors_, runtime_, i));
    }
    if (config->server.admin.enabled) admin_ = std::make_shared<admin::AdminServer>(ioc, runtime_);
}

std::shared_ptr<Runtime> ProxyServer::build_runtime(std::shared_ptr<const config::Config> config,
                                                    const Runtime* previous, std::string& error) {
    route::RouteTable table(*config);
    auto runtime = std::make_shared<Runtime>(process_, config, std::move(table), previous);
    runtime->generation = previous ? previous->generation + 1 : 1;
    for (const auto& upstream : config->upstreams) {
        std::shared_ptr<upstream::ConnectionPool> pool;
        if (previous) {
            for (std::size_t i = 0; i < previous->config->upstreams.size() && !pool; ++i) {
                if (same_connection_settings(previous->config->upstreams[i], upstream))
                    pool = previous->pools[i];
            }
        }
        if (!pool) pool = std::make_shared<upstream::ConnectionPool>(executors_, upstream);
        runtime->pools.push_back(std::move(pool));
    }
    // Last: from here on the limit state is the new config's (LimitService::install).
    auto installed = process_->limits->install(runtime->limiter_configs());
    if (!installed.error.empty()) {
        error = installed.error;
        return nullptr;
    }
    runtime->set_limit_slots(std::move(installed.slots));
    last_install_ = std::move(installed);
    return runtime;
}

ProxyServer::Reloaded ProxyServer::reload(std::shared_ptr<const config::Config> config) {
    const std::lock_guard<std::mutex> lock(reload_mutex_);
    Reloaded result;
    const auto fail = [&](std::string why) {
        result.error = std::move(why);
        process_->reloads.failed.fetch_add(1, std::memory_order_relaxed);
        process_->reloads.last_failed.store(true);
        return result;
    };
    if (process_->draining.load()) return fail("sluice is shutting down");
    const auto previous = process_->current();
    if (auto why = unreloadable_change(*previous->config, *config); !why.empty()) return fail(std::move(why));
    std::string error;
    auto next = build_runtime(std::move(config), previous.get(), error);
    if (!next) return fail(error);
    for (auto& pool : next->pools) {
        const bool kept =
            std::find(previous->pools.begin(), previous->pools.end(), pool) != previous->pools.end();
        if (!kept) pool->start();
    }
    process_->make_current(next, next->generation);
    runtime_ = next;
    // Pools the new config no longer uses serve the exchanges still on them, then close.
    for (auto& pool : previous->pools) {
        if (std::find(next->pools.begin(), next->pools.end(), pool) == next->pools.end()) pool->retire();
    }
    process_->reloads.succeeded.fetch_add(1, std::memory_order_relaxed);
    process_->reloads.last_failed.store(false);
    result.ok = true;
    result.generation = next->generation;
    result.limits = last_install_;
    return result;
}

ProxyServer::~ProxyServer() {
    // The process state points at the current runtime and the state file, which point back
    // at it: break the cycles so that everything is freed with the server.
    process_->make_current(nullptr, 0);
    process_->state_file.reset();
}

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
    for (auto& listener : listeners_) listener->bind();
    if (admin_) admin_->bind();
    for (auto& pool : runtime_->pools) pool->start();
    for (auto& listener : listeners_) listener->start();
    if (admin_) admin_->start();
    memory_releaser_ = std::make_shared<MemoryReleaser>(ioc_, runtime_);
    memory_releaser_->start();
}

void ProxyServer::stop() {
    begin_drain(Nanos{0});
    end_drain();
}

void ProxyServer::begin_drain(Nanos queue_close) {
    const std::lock_guard<std::mutex> lock(reload_mutex_);  // no reload halfway through a drain
    process_->draining.store(true);
    for (auto& listener : listeners_) listener->stop();
    if (memory_releaser_) memory_releaser_->stop();
    // Idle keep-alive connections close now; busy ones after their response (they see `draining`).
    process_->idle_sessions.wake_all_for_drain();
    process_->limits->close_queue_at(queue_close);
    // The admin listener stays: /readyz answers 503 while draining (stop_admin()).
}

void ProxyServer::end_drain() {
    const std::lock_guard<std::mutex> lock(reload_mutex_);
    process_->limits->stop();  // what still waits gets its 503 shutting_down
    for (auto& pool : runtime_->pools) pool->stop();
}

void ProxyServer::stop_admin() {
    if (admin_) admin_->stop();
}

void ProxyServer::set_reload_hook(std::function<admin::ReloadAnswer()> hook) {
    if (admin_) admin_->set_reload_hook(std::move(hook));
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
