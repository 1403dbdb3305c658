#include "sluice/upstream/connection_pool.hpp"

#include <algorithm>
#include <cerrno>
#include <stdexcept>
#include <sys/socket.h>
#include <type_traits>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/beast/core/error.hpp>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "sluice/common/error.hpp"
#include "sluice/common/log.hpp"

namespace sluice::upstream {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace ssl = boost::asio::ssl;
using tcp = net::ip::tcp;

namespace {

// Waiters beyond this many per upstream are refused at once: a pool that is
// that far behind will not catch up within a connect timeout.
constexpr std::size_t kMaxWaiters = 4096;
// Idle connections younger than this are lent without the liveness check.
constexpr std::chrono::milliseconds kCheckAfterIdle{1000};

std::shared_ptr<ssl::context> make_tls_context(const config::UpstreamConfig& config) {
    auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
    ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                     ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    boost::system::error_code ec;
    if (config.tls.ca_file.empty()) {
        ctx->set_default_verify_paths(ec);
    } else {
        ctx->load_verify_file(config.tls.ca_file, ec);
    }
    if (ec) {
        throw std::runtime_error(
            "upstream '" + config.name + "': cannot load CA certificates" +
            (config.tls.ca_file.empty() ? std::string(" (system store)") : " from " + config.tls.ca_file) +
            ": " + ec.message());
    }
    ctx->set_verify_mode(config.tls.verify ? ssl::verify_peer : ssl::verify_none);
    return ctx;
}

std::string describe(const config::UpstreamConfig& c) {
    return c.name + " (" + c.scheme + "://" + c.host + ":" + std::to_string(c.port) + ")";
}

}  // namespace

struct ConnectionPool::Waiter {
    net::any_io_executor executor;
    AcquireHandler handler;
    net::steady_timer timer;
    bool done = false;
};

ConnectionPool::ConnectionPool(ConnectionExecutor executors, config::UpstreamConfig config)
    : executors_(executors),
      config_(std::move(config)),
      port_text_(std::to_string(config_.port)),
      tls_(config_.scheme == "https" ? make_tls_context(config_) : nullptr),
      sweep_timer_(executors_.make()) {}

ConnectionPool::~ConnectionPool() = default;

void ConnectionPool::start() {
    schedule_sweep();
}

void ConnectionPool::stop() {
    std::vector<ConnectionPtr> idle;
    std::deque<std::shared_ptr<Waiter>> waiters;
    {
        const std::lock_guard<std::mutex> lock(mutex_);
        stopped_ = true;
        idle.swap(idle_);
        waiters.swap(waiters_);
        open_ -= idle.size();
    }
    sweep_timer_.cancel();
    for (auto& c : idle) {
        beast::error_code ignored;
        c->socket().close(ignored);
    }
    for (auto& w : waiters) {
        w->timer.cancel();
        if (!w->done) {
            w->done = true;
            deliver(w->executor, std::move(w->handler), make_error_code(Errc::shutting_down), nullptr);
        }
    }
}

void ConnectionPool::retire() {
    std::vector<ConnectionPtr> idle;
    {
        const std::lock_guard<std::mutex> lock(mutex_);
        retired_ = true;
        idle.swap(idle_);
        open_ -= idle.size();
    }
    close_all(idle);
}

std::size_t ConnectionPool::open_connections() const {
    const std::lock_guard<std::mutex> lock(mutex_);
    return open_;
}

std::size_t ConnectionPool::idle_connections() const {
    const std::lock_guard<std::mutex> lock(mutex_);
    return idle_.size();
}

std::uint64_t ConnectionPool::connections_opened() const {
    const std::lock_guard<std::mutex> lock(mutex_);
    return opened_total_;
}

void ConnectionPool::deliver(net::any_io_executor executor, AcquireHandler handler, std::error_code ec,
                             ConnectionPtr connection) {
    net::post(executor, [handler = std::move(handler), ec, connection = std::move(connection)]() mutable {
        handler(ec, std::move(connection));
    });
}

bool ConnectionPool::peer_closed(UpstreamConnection& connection) {
    // A keep-alive connection the upstream closed while idle reads as EOF. A
    // plain connection with unread bytes is out of step with HTTP framing; a TLS
    // one may legitimately have records pending (TLS 1.3 session tickets).
    if (!connection.is_tls() && connection.buffer().size() > 0) return true;
    auto& socket = connection.socket();
    if (!socket.is_open()) return true;
    char byte = 0;
    const auto n = ::recv(socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0) return true;
    if (n < 0) return errno != EAGAIN && errno != EWOULDBLOCK;
    return !connection.is_tls();
}

ConnectionPtr ConnectionPool::take_idle_locked(std::vector<ConnectionPtr>& stale) {
    const auto now = std::chrono::steady_clock::now();
    while (!idle_.empty()) {
        auto candidate = std::move(idle_.back());
        idle_.pop_back();
        const auto idle_for = now - candidate->idle_since;
        // A connection that idled only briefly was not closed by the upstream's
        // idle timeout; checking it would cost a system call on every request.
        // A close race on one is still caught (bodiless requests are retried on
        // a fresh connection: ClientSession::retry_on_fresh_connection).
        if (idle_for >= config_.idle_timeout || (idle_for >= kCheckAfterIdle && peer_closed(*candidate)) ||
            (!candidate->is_tls() && candidate->buffer().size() > 0)) {
            --open_;
            stale.push_back(std::move(candidate));
            continue;
        }
        return candidate;
    }
    return nullptr;
}

void ConnectionPool::close_all(std::vector<ConnectionPtr>& connections) {
    for (auto& c : connections) {
        beast::error_code ignored;
        c->socket().close(ignored);
    }
}

ConnectionPtr ConnectionPool::try_acquire_idle() {
    std::vector<ConnectionPtr> stale;
    ConnectionPtr reused;
    {
        const std::lock_guard<std::mutex> lock(mutex_);
        if (!stopped_ && !retired_) reused = take_idle_locked(stale);
    }
    close_all(stale);
    return reused;
}

void ConnectionPool::async_acquire(net::any_io_executor executor, AcquireHandler handler) {
    std::vector<ConnectionPtr> stale;
    ConnectionPtr reused;
    bool open_new = false;
    {
        const std::lock_guard<std::mutex> lock(mutex_);
        if (stopped_) {
            deliver(executor, std::move(handler), make_error_code(Errc::shutting_down), nullptr);
            return;
        }
        reused = take_idle_locked(stale);
        if (!reused) {
            if (open_ < config_.max_connections) {
                ++open_;
                open_new = true;
            } else if (waiters_.size() >= kMaxWaiters) {
                deliver(executor, std::move(handler), make_error_code(Errc::upstream_busy), nullptr);
                return;
            } else {
                auto waiter = std::make_shared<Waiter>(
                    Waiter{executor, std::move(handler), net::steady_timer(executors_.make()), false});
                waiter->timer.expires_after(config_.connect_timeout);
                waiter->timer.async_wait([self = shared_from_this(), waiter](beast::error_code ec) {
                    if (ec) return;  // cancelled: served
                    {
                        const std::lock_guard<std::mutex> lock(self->mutex_);
                        if (waiter->done) return;
                        waiter->done = true;
                        auto it = std::find(self->waiters_.begin(), self->waiters_.end(), waiter);
                        if (it != self->waiters_.end()) self->waiters_.erase(it);
                    }
                    self->deliver(waiter->executor, std::move(waiter->handler),
                                  make_error_code(Errc::upstream_busy), nullptr);
                });
                waiters_.push_back(std::move(waiter));
            }
        }
    }
    close_all(stale);
    if (reused) {
        deliver(executor, std::move(handler), {}, std::move(reused));
    } else if (open_new) {
        connect_new(std::move(executor), std::move(handler));
    }
}

void ConnectionPool::release(ConnectionPtr connection, bool reusable) {
    if (!connection) return;
    std::shared_ptr<Waiter> waiter;
    bool connect_for_waiter = false;
    ConnectionPtr to_close;
    {
        const std::lock_guard<std::mutex> lock(mutex_);
        if (stopped_ || retired_) reusable = false;
        // Hand the slot to the oldest waiter still waiting.
        while (!waiters_.empty() && !waiter) {
            waiter = std::move(waiters_.front());
            waiters_.pop_front();
            if (waiter->done) waiter.reset();
        }
        if (waiter) waiter->done = true;
        // Handed straight on, a connection gets the check an idle one gets before it is lent:
        // bytes the upstream sent past its response (or its close) would otherwise be read as
        // the next client's response.
        if (reusable && waiter && peer_closed(*connection)) reusable = false;
        if (reusable && waiter) {
            // lent straight on: open_ unchanged
        } else if (reusable && idle_.size() < config_.max_idle_connections) {
            connection->idle_since = std::chrono::steady_clock::now();
            idle_.push_back(std::move(connection));
        } else {
            to_close = std::move(connection);
            if (waiter) {
                connect_for_waiter = true;  // the closed connection's slot goes to a new one
            } else {
                --open_;
            }
        }
    }
    if (to_close) {
        beast::error_code ignored;
        to_close->socket().shutdown(tcp::socket::shutdown_both, ignored);
        to_close->socket().close(ignored);
    }
    if (waiter) {
        waiter->timer.cancel();
        if (connect_for_waiter) {
            connect_new(waiter->executor, std::move(waiter->handler));
        } else {
            deliver(waiter->executor, std::move(waiter->handler), {}, std::move(connection));
        }
    }
}

bool ConnectionPool::try_begin_streamed_body() {
    auto streaming = streamed_bodies_.load(std::memory_order_relaxed);
    do {
        if (streaming >= config_.max_streamed_bodies) return false;
    } while (!streamed_bodies_.compare_exchange_weak(streaming, streaming + 1, std::memory_order_relaxed));
    return true;
}

void ConnectionPool::end_streamed_body() {
    streamed_bodies_.fetch_sub(1, std::memory_order_relaxed);
}

void ConnectionPool::on_connect_failed() {
    std::shared_ptr<Waiter> waiter;
    {
        const std::lock_guard<std::mutex> lock(mutex_);
        while (!waiters_.empty() && !waiter) {
            waiter = std::move(waiters_.front());
            waiters_.pop_front();
            if (waiter->done) waiter.reset();
        }
        if (waiter) {
            waiter->done = true;  // keeps the failed attempt's slot for the waiter
        } else {
            --open_;
        }
    }
    if (waiter) {
        waiter->timer.cancel();
        connect_new(waiter->executor, std::move(waiter->handler));
    }
}

namespace {

// State of one connection attempt: DNS, TCP, TLS, bounded by one deadline. The
// deadline timer cancels whichever step is under way; that step's handler then
// reports the timeout under its own name.
struct ConnectAttempt {
    net::any_io_executor executor;
    AcquireHandler handler;
    tcp::resolver resolver;
    net::steady_timer deadline_timer;
    ConnectionPtr connection;
    bool timed_out = false;
};

}  // namespace

void ConnectionPool::connect_new(net::any_io_executor executor, AcquireHandler handler) {
    auto strand = executors_.make();
    auto attempt = std::make_shared<ConnectAttempt>(
        ConnectAttempt{std::move(executor), std::move(handler), tcp::resolver(strand),
                       net::steady_timer(strand), nullptr, false});
    if (tls_) {
        attempt->connection =
            std::make_unique<UpstreamConnection>(UpstreamConnection::TlsStream(tcp::socket(strand), *tls_));
    } else {
        attempt->connection = std::make_unique<UpstreamConnection>(UpstreamConnection::PlainStream(strand));
    }
    auto self = shared_from_this();
    auto fail = [self, attempt](Errc code, const std::string& why) {
        // A vendor that is down fails every attempt: one line a second says so.
        SLUICE_LOG_LIMITED(log::Level::warn, "upstream",
                           describe(self->config_) + ": " + std::string(error_code_name(code)) + ": " + why);
        (code == Errc::upstream_tls_failed ? self->tls_failures_ : self->connect_failures_)
            .fetch_add(1, std::memory_order_relaxed);
        attempt->deadline_timer.cancel();
        beast::error_code ignored;
        attempt->connection->socket().close(ignored);
        self->on_connect_failed();
        self->deliver(attempt->executor, std::move(attempt->handler), make_error_code(code), nullptr);
    };

    attempt->deadline_timer.expires_after(config_.connect_timeout);
    attempt->deadline_timer.async_wait([attempt](beast::error_code ec) {
        if (ec || !attempt->connection) return;  // cancelled: the attempt ended first
        attempt->timed_out = true;
        attempt->resolver.cancel();
        // Closed, not just cancelled: a range connect would go on to the next address.
        beast::error_code ignored;
        attempt->connection->socket().close(ignored);
    });
    auto on_resolved = [self, attempt, fail](beast::error_code ec,
                                             const tcp::resolver::results_type& endpoints) {
        if (attempt->timed_out) return fail(Errc::upstream_timeout, "DNS resolution timed out");
        if (ec) return fail(Errc::upstream_connect_failed, "DNS resolution failed: " + ec.message());
        net::async_connect(attempt->connection->socket(), endpoints,
                           [self, attempt, fail](beast::error_code ec, const tcp::endpoint&) {
                               if (attempt->timed_out)
                                   return fail(Errc::upstream_timeout, "connect timed out");
                               if (ec)
                                   return fail(Errc::upstream_connect_failed,
                                               "connect failed: " + ec.message());
                               beast::error_code ignored;
                               attempt->connection->socket().set_option(tcp::no_delay(true), ignored);
                               // Plain writes are tried synchronously first (ClientSession): they must
                               // never block.
                               attempt->connection->socket().non_blocking(true, ignored);
                               auto done = [self, attempt]() {
                                   attempt->deadline_timer.cancel();
                                   {
                                       const std::lock_guard<std::mutex> lock(self->mutex_);
                                       attempt->connection->id = ++self->opened_total_;
                                   }
                                   self->deliver(attempt->executor, std::move(attempt->handler), {},
                                                 std::move(attempt->connection));
                               };
                               if (!attempt->connection->is_tls()) return done();
                               attempt->connection->with_stream([&](auto& stream) {
                                   using Stream = std::decay_t<decltype(stream)>;
                                   if constexpr (std::is_same_v<Stream, UpstreamConnection::TlsStream>) {
                                       self->start_tls_handshake(stream, attempt->timed_out, fail, done);
                                   }
                               });
                           });
    };
    // An IP literal needs no DNS. Skipping the resolver also keeps the process
    // single-threaded: Asio resolves on a thread of its own, started on first use
    // and kept for the process's life, and with a second thread the kernel takes a
    // reference on the file for every system call on a socket (fdget), measurably
    // more system time per request (docs/benchmarks.md, "Where sluice's time goes").
    boost::system::error_code not_ip;
    const auto address = net::ip::make_address(config_.host, not_ip);
    if (!not_ip) {
        const tcp::endpoint endpoint(address, static_cast<unsigned short>(config_.port));
        net::post(attempt->deadline_timer.get_executor(),
                  [on_resolved, endpoint, host = config_.host, port = port_text_]() {
                      on_resolved({}, tcp::resolver::results_type::create(endpoint, host, port));
                  });
        return;
    }
    attempt->resolver.async_resolve(config_.host, port_text_, on_resolved);
}

template <class Fail, class Done>
void ConnectionPool::start_tls_handshake(UpstreamConnection::TlsStream& stream, const bool& timed_out,
                                         Fail fail, Done done) {
    const std::string& name = config_.tls.server_name.empty() ? config_.host : config_.tls.server_name;
    boost::system::error_code not_ip;
    net::ip::make_address(name, not_ip);
    // SNI carries host names only, never IP literals (RFC 6066 section 3).
    if (not_ip && !SSL_set_tlsext_host_name(stream.native_handle(), name.c_str())) {
        return fail(Errc::upstream_tls_failed, "cannot set SNI to " + name);
    }
    if (config_.tls.verify) {
        // The chain is checked by verify_peer (the context); the name must be
        // checked too, or any valid certificate would do (RFC 9110 4.3.4).
        stream.set_verify_callback(ssl::host_name_verification(name));
    }
    stream.async_handshake(
        ssl::stream_base::client, [&stream, &timed_out, name, fail, done](beast::error_code ec) {
            if (timed_out) return fail(Errc::upstream_timeout, "TLS handshake timed out");
            if (ec) {
                std::string why = "TLS handshake with " + name + " failed: " + ec.message();
                const long verify = SSL_get_verify_result(stream.native_handle());
                if (verify != X509_V_OK)
                    why += std::string(" (certificate: ") + X509_verify_cert_error_string(verify) + ")";
                return fail(Errc::upstream_tls_failed, why);
            }
            done();
        });
}

void ConnectionPool::schedule_sweep() {
    const auto period = std::clamp<std::chrono::nanoseconds>(
        config_.idle_timeout / 2, std::chrono::milliseconds(100), std::chrono::seconds(30));
    sweep_timer_.expires_after(period);
    sweep_timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
        if (ec) return;
        {
            // A stopped or retired pool's sweep ends here (and lets go of the pool):
            // retire() runs on any thread, so it does not touch the timer itself.
            const std::lock_guard<std::mutex> lock(self->mutex_);
            if (self->stopped_ || self->retired_) return;
        }
        self->sweep();
        self->schedule_sweep();
    });
}

void ConnectionPool::sweep() {
    std::vector<ConnectionPtr> stale;
    {
        const std::lock_guard<std::mutex> lock(mutex_);
        if (stopped_) return;
        const auto now = std::chrono::steady_clock::now();
        auto keep = std::partition(idle_.begin(), idle_.end(), [&](const ConnectionPtr& c) {
            return now - c->idle_since < config_.idle_timeout && !peer_closed(*c);
        });
        for (auto it = keep; it != idle_.end(); ++it) stale.push_back(std::move(*it));
        idle_.erase(keep, idle_.end());
        open_ -= stale.size();
    }
    for (auto& c : stale) {
        beast::error_code ignored;
        c->socket().close(ignored);
    }
}

}  // namespace sluice::upstream
