#pragma once
// One asynchronous, pipelined connection to Redis (issue 14: limits shared through Redis).
//
// hiredis is used only to format commands and to parse replies (its redisReader); every byte goes
// through Asio: TCP (the host resolved with a timeout), a unix socket, or TLS over TCP (peer and host
// name verified unless tls_verify is false). Nothing of hiredis leaks out of this header: replies are
// copied into Reply.
//
// The contract:
// - Everything runs on one strand; every callback runs on it. command()/eval_script()/stop() are
//   callable from any thread, never block, never throw on the I/O path, and never call the callback
//   from inside the call (it is always posted).
// - Commands are answered in order. Those issued while a write is in flight go out together in the
//   next write (pipelining). At most kMaxPending are outstanding: beyond that the callback gets
//   error::too_many_pending at once.
// - Each command has command_timeout. When an outstanding command times out, every outstanding
//   callback gets error::timed_out, the connection is dropped (a late reply could not be matched any
//   more) and re-established.
// - Any I/O error fails every outstanding callback with that I/O error (e.g. asio::error::eof), a
//   malformed or oversized reply with error::protocol; then the connection is re-established with
//   backoff: reconnect_min doubling up to reconnect_max, each wait drawn in [wait/2, wait] (jitter).
// - After connecting: AUTH (username and password, or password alone) when a password is set, SELECT
//   when db != 0, SCRIPT LOAD of every script eval_script() has seen, and a PING; the connection is
//   ready (connected() true, the state hook called with true) only when all of them answered, within
//   connect_timeout. An AUTH or SELECT error is logged and retried with backoff: never ready.
// - While not ready, command() fails at once with error::not_connected.
// - An error reply from Redis is delivered as error::server, with the Reply (type error, str = the
//   message, e.g. "WRONGTYPE ...").
// - Owned by a shared_ptr (make_shared); its operations hold it alive until stop(): call stop() before
//   letting it go, or it reconnects for as long as the io_context runs.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/system/error_code.hpp>

#include "sluice/common/log.hpp"

struct redisReader;  // hiredis's parser, used in redis_connection.cpp only

namespace sluice::redis {

using Duration = std::chrono::nanoseconds;  // as config::Duration

// Where and how to connect, parsed from `server.state.redis` by the config loader.
struct RedisEndpoint {
    std::string host;
    std::uint16_t port = 6379;
    std::string unix_path;  // set: a unix socket, host and port unused (no TLS)
    int db = 0;
    std::string username;  // Redis 6 ACL user; empty: AUTH <password>
    std::string password;  // already read from its file or environment variable; empty: no AUTH
    bool tls = false;
    std::string tls_ca_file;      // empty: the system's trust store
    std::string tls_server_name;  // SNI and the name verified; empty: host
    bool tls_verify = true;
    Duration connect_timeout = std::chrono::seconds(1);  // resolve + connect + TLS + AUTH/SELECT/SCRIPT LOAD
    Duration command_timeout = std::chrono::milliseconds(250);
    Duration reconnect_min = std::chrono::milliseconds(100);
    Duration reconnect_max = std::chrono::seconds(5);
};

// A reply copied out of hiredis's redisReply (so nothing of hiredis leaks into callers).
struct Reply {
    enum class Type : std::uint8_t { string, array, integer, nil, status, error, double_, other };
    Type type = Type::nil;
    std::string str;  // string, status, error, double_ (its text)
    long long integer = 0;
    std::vector<Reply> elements;
    bool is_error() const { return type == Type::error; }
};

// A Lua script run with EVALSHA; sha1 (lower-case hex) is computed with OpenSSL.
struct Script {
    std::string source;
    std::string sha1;
    explicit Script(std::string lua);
};

enum class error {
    not_connected = 1,  // not ready (connecting, reconnecting, stopped): nothing was sent
    timed_out,          // no reply within command_timeout (the connection is re-established)
    protocol,  // a reply hiredis cannot parse, too large, or unexpected (the connection is re-established)
    server,    // Redis answered with an error reply (Reply::str holds it)
    too_many_pending,  // kMaxPending commands are already outstanding: nothing was sent
};
const boost::system::error_category& redis_category() noexcept;  // "sluice.redis"
boost::system::error_code make_error_code(error e) noexcept;
// A bounded label for a failed call (metrics: sluice_shared_command_errors_total{reason}):
// "not_connected", "timed_out", "protocol", "server", "too_many_pending", "aborted" (stop()),
// "connection_lost" (any other I/O error), "" for success.
std::string_view error_reason(const boost::system::error_code& ec) noexcept;

class RedisConnection : public std::enable_shared_from_this<RedisConnection> {
public:
    using Callback = std::function<void(boost::system::error_code, Reply)>;

    static constexpr std::size_t kMaxPending = 10'000;
    // A reply (or the part of one received so far) larger than this is a protocol error.
    static constexpr std::size_t kMaxReplyBytes = std::size_t{64} * 1024 * 1024;

    RedisConnection(const boost::asio::any_io_executor& executor, RedisEndpoint endpoint);
    ~RedisConnection();
    RedisConnection(const RedisConnection&) = delete;
    RedisConnection& operator=(const RedisConnection&) = delete;

    // Connects (then AUTH, SELECT, SCRIPT LOAD and the state hook), and reconnects with backoff forever.
    void start();
    // Closes; outstanding callbacks get operation_aborted; no reconnect. start() may be called again.
    void stop();

    // Pipelined; see the contract above.
    void command(const std::vector<std::string>& argv, Callback cb);
    // EVALSHA sha numkeys keys... args...; on NOSCRIPT: SCRIPT LOAD and EVALSHA again, once. The script
    // is remembered on first use and loaded on every (re)connect.
    void eval_script(const Script& script, std::vector<std::string> keys, std::vector<std::string> args,
                     Callback cb);

    bool connected() const noexcept { return ready_.load(std::memory_order_acquire); }

    // Called on the strand each time the connection becomes ready (after AUTH/SELECT/script load) or
    // is lost (false: only after a true).
    void on_state_change(std::function<void(bool ready)> hook);

    const RedisEndpoint& endpoint() const noexcept { return endpoint_; }

private:
    struct Pending {
        Callback callback;
        std::chrono::steady_clock::time_point deadline;
    };
    struct ReaderFree {
        void operator()(redisReader* reader) const noexcept;
    };
    // The socket (TCP, TLS over TCP, or unix) and its read buffer, shared with the handlers of the
    // operations started on it: closing it never frees what a cancelled operation still touches.
    struct Transport;

    void do_start();
    void do_stop();
    void do_connect();
    void on_resolved(std::uint64_t generation, boost::system::error_code ec,
                     const boost::asio::ip::tcp::resolver::results_type& results);
    void on_connected(std::uint64_t generation, boost::system::error_code ec);
    void do_handshake(std::uint64_t generation);
    void on_handshake_reply(std::uint64_t generation, const char* step, bool required,
                            boost::system::error_code ec, const Reply& reply);
    void become_ready();
    void issue(const std::string& formatted, Callback cb, Duration timeout);
    void do_write();
    void on_write(std::uint64_t generation, boost::system::error_code ec);
    void do_read();
    void on_read(std::uint64_t generation, boost::system::error_code ec, std::size_t bytes);
    void arm_command_timer();
    void on_command_timer(std::uint64_t generation);
    // Fails every outstanding callback with `ec`, closes, tells the hook, and reconnects after a backoff.
    // `level`: a failure that is the operator's to fix (a wrong password or db) is an error.
    void drop(boost::system::error_code ec, const std::string& why, log::Level level = log::Level::warn);
    void close_transport();
    void fail_all(boost::system::error_code ec);
    void tell_lost();
    void schedule_reconnect();
    std::shared_ptr<const Script> remember_script(const Script& script);
    void do_eval(std::shared_ptr<const Script> script, std::string evalsha, Callback cb, bool retried);
    std::string describe() const;  // host:port or unix:path, for log lines (never the password)

    boost::asio::strand<boost::asio::any_io_executor> strand_;
    const RedisEndpoint endpoint_;
    boost::asio::ip::tcp::resolver resolver_;
    boost::asio::steady_timer connect_timer_;  // resolve + connect + TLS + handshake
    boost::asio::steady_timer command_timer_;  // the oldest outstanding command's deadline
    boost::asio::steady_timer reconnect_timer_;
    std::unique_ptr<boost::asio::ssl::context> tls_context_;
    std::string tls_context_error_;  // why the TLS context could not be set up (every connect then fails)
    std::shared_ptr<Transport> transport_;
    std::unique_ptr<redisReader, ReaderFree> reader_;

    enum class Phase : std::uint8_t { stopped, connecting, handshaking, ready, waiting };
    Phase phase_ = Phase::stopped;
    std::uint64_t generation_ = 0;  // bumped at every close: handlers of an older transport do nothing
    std::atomic<bool> ready_{false};
    std::function<void(bool)> state_hook_;
    bool hook_told_ready_ = false;

    std::deque<Pending> pending_;  // bounded: kMaxPending (+ the handshake's few)
    bool command_timer_running_ = false;
    std::string write_next_;  // commands issued while a write is in flight (coalesced)
    bool writing_ = false;
    std::size_t reply_bytes_ = 0;  // bytes fed to the reader since its last complete reply
    std::size_t handshake_outstanding_ = 0;

    // Every script eval_script() has seen, loaded at each connect. Guarded by scripts_mutex_ (it is
    // looked up on the caller's thread, so a script's source is not copied per call).
    static constexpr std::size_t kMaxScripts = 64;
    std::mutex scripts_mutex_;
    std::vector<std::shared_ptr<const Script>> scripts_;

    Duration backoff_;
    std::minstd_rand jitter_;
    log::RateLimitedSite connect_failure_log_{std::chrono::seconds(10)};
};

}  // namespace sluice::redis

template <>
struct boost::system::is_error_code_enum<sluice::redis::error> : std::true_type {};
