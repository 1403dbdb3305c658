#pragma once
// A bounded keep-alive pool of connections to one upstream.
//
// - At most max_connections open (lent + idle + connecting). Past that,
//   acquirers wait (bounded queue, each with the connect timeout); when none
//   frees in time they get Errc::upstream_busy.
// - New connections: async DNS, TCP connect, and for https a TLS handshake with
//   SNI, certificate chain verification and hostname verification (on unless the
//   config turns it off explicitly), all under connect_timeout.
// - Idle connections are kept at most max_idle_connections and idle_timeout; a
//   sweep timer closes stale ones, and acquire() discards any the peer closed.
// Thread-safe: a mutex guards the pool's lists; completions are delivered on the
// executor the caller's handler is bound to (through the caller's own binding).

#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <system_error>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "sluice/config/config.hpp"
#include "sluice/upstream/connection_executor.hpp"
#include "sluice/upstream/upstream_connection.hpp"

namespace sluice::upstream {

using ConnectionPtr = std::unique_ptr<UpstreamConnection>;
using AcquireHandler = std::function<void(std::error_code, ConnectionPtr)>;

class ConnectionPool : public std::enable_shared_from_this<ConnectionPool> {
public:
    // Throws std::runtime_error if the TLS context cannot be set up (e.g. an
    // unreadable ca_file): called at startup only.
    ConnectionPool(ConnectionExecutor executors, config::UpstreamConfig config);
    ~ConnectionPool();

    void start();  // arms the idle sweep
    void stop();   // closes idle connections, fails waiters
    // A reload replaced this pool: idle connections close now, and each busy one
    // when its exchange ends; requests already waiting for a connection are
    // still served.
    void retire();

    // Completes with a connection, or an error: Errc::upstream_connect_failed,
    // upstream_tls_failed, upstream_timeout, upstream_busy. The handler is
    // invoked through `executor` (the caller's strand), never inline.
    void async_acquire(boost::asio::any_io_executor executor, AcquireHandler handler);

    // An idle connection, lent at once (the common case under load), or null:
    // then async_acquire() opens one or waits for one.
    ConnectionPtr try_acquire_idle();

    // Gives a lent connection back. `reusable`: the last exchange ended cleanly
    // and both sides allow keep-alive. Otherwise it is closed.
    void release(ConnectionPtr connection, bool reusable);

    // A request whose body is streamed (too large to read whole first) holds its connection for
    // as long as its client takes to send it; at most config().max_streamed_bodies may do so at
    // once, so slow uploads leave the rest of the pool to other requests. false: over the share.
    bool try_begin_streamed_body();
    void end_streamed_body();
    std::size_t streamed_bodies() const { return streamed_bodies_.load(std::memory_order_relaxed); }

    const config::UpstreamConfig& config() const { return config_; }
    std::size_t open_connections() const;
    std::size_t idle_connections() const;
    std::uint64_t connections_opened() const;
    // Connection attempts that failed: DNS, TCP connect or a connect timeout; the TLS handshake
    // or certificate verification (metrics).
    std::uint64_t connect_failures() const { return connect_failures_.load(std::memory_order_relaxed); }
    std::uint64_t tls_failures() const { return tls_failures_.load(std::memory_order_relaxed); }

private:
    struct Waiter;
    ConnectionPtr take_idle_locked(std::vector<ConnectionPtr>& stale);
    static void close_all(std::vector<ConnectionPtr>& connections);
    void connect_new(boost::asio::any_io_executor executor, AcquireHandler handler);
    void on_connect_failed();
    template <class Fail, class Done>
    void start_tls_handshake(UpstreamConnection::TlsStream& stream, const bool& timed_out, Fail fail,
                             Done done);
    void schedule_sweep();
    void sweep();
    static bool peer_closed(UpstreamConnection& connection);
    void deliver(boost::asio::any_io_executor executor, AcquireHandler handler, std::error_code ec,
                 ConnectionPtr connection);

    ConnectionExecutor executors_;
    config::UpstreamConfig config_;
    std::string port_text_;
    std::shared_ptr<boost::asio::ssl::context> tls_;  // null for http
    mutable std::mutex mutex_;
    std::vector<ConnectionPtr> idle_;  // most recently used last
    std::deque<std::shared_ptr<Waiter>> waiters_;
    std::size_t open_ = 0;
    std::uint64_t opened_total_ = 0;
    bool stopped_ = false;
    bool retired_ = false;  // retire(): no connection goes back to idle
    std::atomic<std::size_t> streamed_bodies_{0};
    std::atomic<std::uint64_t> connect_failures_{0};
    std::atomic<std::uint64_t> tls_failures_{0};
    boost::asio::steady_timer sweep_timer_;
};

}  // namespace sluice::upstream
