#include "sluice/redis/redis_connection.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <hiredis/hiredis.h>
#include <optional>
#include <string_view>
#include <utility>

#include <boost/asio/connect.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/write.hpp>
#include <openssl/sha.h>
#include <openssl/ssl.h>

#include "sluice/common/log.hpp"

namespace sluice::redis {

namespace asio = boost::asio;
using boost::system::error_code;
using tcp = asio::ip::tcp;

struct RedisConnection::Transport {
    std::optional<tcp::socket> tcp_socket;
    std::optional<asio::ssl::stream<tcp::socket>> tls_stream;
    std::optional<asio::local::stream_protocol::socket> unix_socket;
    std::array<char, std::size_t{16} * 1024> read_buffer;

    template <class Handler>
    void visit(Handler&& handler) {
        if (tls_stream) {
            handler(*tls_stream);
        } else if (tcp_socket) {
            handler(*tcp_socket);
        } else if (unix_socket) {
            handler(*unix_socket);
        }
    }
    void close() {
        error_code ignored;
        if (tls_stream) tls_stream->lowest_layer().close(ignored);
        if (tcp_socket) tcp_socket->close(ignored);
        if (unix_socket) unix_socket->close(ignored);
    }
};

namespace {

constexpr std::string_view kComponent = "redis";

class RedisCategory final : public boost::system::error_category {
public:
    const char* name() const noexcept override { return "sluice.redis"; }
    std::string message(int value) const override {
        switch (static_cast<error>(value)) {
            case error::not_connected: return "not connected to redis";
            case error::timed_out: return "redis command timed out";
            case error::protocol: return "redis protocol error";
            case error::server: return "redis error reply";
            case error::too_many_pending: return "too many redis commands outstanding";
        }
        return "unknown redis error";
    }
};

std::string sha1_hex(const std::string& text) {
    unsigned char digest[SHA_DIGEST_LENGTH];
    ::SHA1(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest);
    static constexpr char kHex[] = "0123456789abcdef";
    std::string hex;
    hex.reserve(std::size_t{2} * SHA_DIGEST_LENGTH);
    for (unsigned char byte : digest) {
        hex.push_back(kHex[byte >> 4]);
        hex.push_back(kHex[byte & 0xf]);
    }
    return hex;
}

// hiredis's encoder: RESP, binary-safe. Empty when argv is empty.
std::string format_command(const std::vector<std::string>& argv) {
    if (argv.empty()) return {};
    std::vector<const char*> args;
    std::vector<std::size_t> lengths;
    args.reserve(argv.size());
    lengths.reserve(argv.size());
    for (const auto& arg : argv) {
        args.push_back(arg.data());
        lengths.push_back(arg.size());
    }
    char* formatted = nullptr;
    const int length =
        ::redisFormatCommandArgv(&formatted, static_cast<int>(args.size()), args.data(), lengths.data());
    if (length < 0 || !formatted) return {};
    std::string out(formatted, static_cast<std::size_t>(length));
    ::redisFreeCommand(formatted);
    return out;
}

Reply copy_reply(const redisReply& reply) {
    Reply out;
    switch (reply.type) {
        case REDIS_REPLY_STRING: out.type = Reply::Type::string; break;
        case REDIS_REPLY_ARRAY: out.type = Reply::Type::array; break;
        case REDIS_REPLY_INTEGER: out.type = Reply::Type::integer; break;
        case REDIS_REPLY_NIL: out.type = Reply::Type::nil; break;
        case REDIS_REPLY_STATUS: out.type = Reply::Type::status; break;
        case REDIS_REPLY_ERROR: out.type = Reply::Type::error; break;
#ifdef REDIS_REPLY_DOUBLE
        case REDIS_REPLY_DOUBLE: out.type = Reply::Type::double_; break;
#endif
        default: out.type = Reply::Type::other; break;
    }
    if (reply.str) out.str.assign(reply.str, reply.len);
    out.integer = reply.integer;
    if (reply.type == REDIS_REPLY_ARRAY && reply.element) {
        out.elements.reserve(reply.elements);
        for (std::size_t i = 0; i < reply.elements; ++i) {
            if (reply.element[i]) out.elements.push_back(copy_reply(*reply.element[i]));
        }
    }
    return out;
}

}  // namespace

const boost::system::error_category& redis_category() noexcept {
    static const RedisCategory category;
    return category;
}

boost::system::error_code make_error_code(error e) noexcept {
    return {static_cast<int>(e), redis_category()};
}

void RedisConnection::ReaderFree::operator()(redisReader* reader) const noexcept {
    ::redisReaderFree(reader);
}

RedisConnection::RedisConnection(const asio::any_io_executor& executor, RedisEndpoint endpoint)
    : strand_(asio::make_strand(executor)),
      endpoint_(std::move(endpoint)),
      resolver_(strand_),
      connect_timer_(strand_),
      command_timer_(strand_),
      reconnect_timer_(strand_),
      backoff_(endpoint_.reconnect_min),
      jitter_(std::random_device{}()) {
    if (!endpoint_.tls || !endpoint_.unix_path.empty()) return;
    // Set up once; an error here (an unreadable CA file) is reported at every connect attempt
    // rather than thrown: the process runs on with the limits' on_redis_failure policies.
    tls_context_ = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_client);
    ::SSL_CTX_set_min_proto_version(tls_context_->native_handle(), TLS1_2_VERSION);
    error_code ec;
    if (endpoint_.tls_verify) {
        if (endpoint_.tls_ca_file.empty()) {
            tls_context_->set_default_verify_paths(ec);
        } else {
            tls_context_->load_verify_file(endpoint_.tls_ca_file, ec);
        }
        if (!ec) tls_context_->set_verify_mode(asio::ssl::verify_peer, ec);
    } else {
        tls_context_->set_verify_mode(asio::ssl::verify_none, ec);
    }
    if (ec) {
        tls_context_error_ = "TLS setup (ca_file '" + endpoint_.tls_ca_file + "'): " + ec.message();
        tls_context_.reset();
    }
}

RedisConnection::~RedisConnection() = default;

std::string RedisConnection::describe() const {
    if (!endpoint_.unix_path.empty()) return "unix:" + endpoint_.unix_path;
    return endpoint_.host + ":" + std::to_string(endpoint_.port) + (endpoint_.tls ? " (tls)" : "");
}

void RedisConnection::start() {
    asio::post(strand_, [self = shared_from_this()] { self->do_start(); });
}

void RedisConnection::stop() {
    asio::post(strand_, [self = shared_from_this()] { self->do_stop(); });
}

void RedisConnection::on_state_change(std::function<void(bool ready)> hook) {
    asio::post(strand_, [self = shared_from_this(), hook = std::move(hook)]() mutable {
        self->state_hook_ = std::move(hook);
    });
}

void RedisConnection::do_start() {
    if (phase_ != Phase::stopped) return;
    backoff_ = endpoint_.reconnect_min;
    do_connect();
}

void RedisConnection::do_stop() {
    if (phase_ == Phase::stopped) return;
    phase_ = Phase::stopped;
    reconnect_timer_.cancel();
    close_transport();
    tell_lost();
    fail_all(asio::error::operation_aborted);
}

void RedisConnection::do_connect() {
    phase_ = Phase::connecting;
    reader_.reset(::redisReaderCreate());
    reply_bytes_ = 0;
    if (!reader_) {
        drop(make_error_code(error::protocol), "cannot create the reply parser");
        return;
    }
    const auto generation = generation_;
    connect_timer_.expires_after(endpoint_.connect_timeout);
    connect_timer_.async_wait([self = shared_from_this(), generation](error_code ec) {
        // Already queued when become_ready() cancelled it: nothing to time out any more.
        if (ec || generation != self->generation_ || self->phase_ == Phase::ready) return;
        self->drop(make_error_code(error::timed_out), "connect timed out");
    });
    transport_ = std::make_shared<Transport>();
    if (!endpoint_.unix_path.empty()) {
        transport_->unix_socket.emplace(strand_);
        transport_->unix_socket->async_connect(
            asio::local::stream_protocol::endpoint(endpoint_.unix_path),
            [self = shared_from_this(), generation, transport = transport_](error_code ec) {
                self->on_connected(generation, ec);
            });
        return;
    }
    if (endpoint_.tls && !tls_context_) {
        drop(make_error_code(boost::system::errc::invalid_argument), tls_context_error_);
        return;
    }
    resolver_.async_resolve(
        endpoint_.host, std::to_string(endpoint_.port),
        [self = shared_from_this(), generation](error_code ec, const tcp::resolver::results_type& results) {
            self->on_resolved(generation, ec, results);
        });
}

void RedisConnection::on_resolved(std::uint64_t generation, error_code ec,
                                  const tcp::resolver::results_type& results) {
    if (generation != generation_) return;
    if (ec) {
        drop(ec, "resolve " + endpoint_.host);
        return;
    }
    auto handler = [self = shared_from_this(), generation, transport = transport_](
                       error_code ec, const tcp::endpoint&) { self->on_connected(generation, ec); };
    if (endpoint_.tls) {
        auto& stream = transport_->tls_stream.emplace(strand_, *tls_context_);
        const auto& name = endpoint_.tls_server_name.empty() ? endpoint_.host : endpoint_.tls_server_name;
        // SNI, and the certificate checked against the name (not only against the CA).
        ::SSL_set_tlsext_host_name(stream.native_handle(), name.c_str());
        if (endpoint_.tls_verify) stream.set_verify_callback(asio::ssl::host_name_verification(name));
        asio::async_connect(stream.next_layer(), results, std::move(handler));
    } else {
        asio::async_connect(transport_->tcp_socket.emplace(strand_), results, std::move(handler));
    }
}

void RedisConnection::on_connected(std::uint64_t generation, error_code ec) {
    if (generation != generation_) return;
    if (ec) {
        drop(ec, "connect");
        return;
    }
    if (transport_->tcp_socket) transport_->tcp_socket->set_option(tcp::no_delay(true), ec);
    if (!transport_->tls_stream) {
        do_handshake(generation);
        return;
    }
    transport_->tls_stream->next_layer().set_option(tcp::no_delay(true), ec);
    transport_->tls_stream->async_handshake(
        asio::ssl::stream_base::client,
        [self = shared_from_this(), generation, transport = transport_](error_code ec) {
            if (generation != self->generation_) return;
            if (ec) {
                self->drop(ec, "TLS handshake");
                return;
            }
            self->do_handshake(generation);
        });
}

// AUTH, SELECT, SCRIPT LOAD and PING, pipelined in one write. Ready once all answered; the PING
// proves Redis serves commands (a busy Redis accepts connections long before it answers).
void RedisConnection::do_handshake(std::uint64_t generation) {
    phase_ = Phase::handshaking;
    do_read();
    const auto step = [this, generation](const char* name, bool required) {
        ++handshake_outstanding_;
        return [self = shared_from_this(), generation, name, required](error_code ec, const Reply& reply) {
            self->on_handshake_reply(generation, name, required, ec, reply);
        };
    };
    const Duration timeout = endpoint_.connect_timeout;
    if (!endpoint_.password.empty()) {
        std::vector<std::string> auth{"AUTH"};
        if (!endpoint_.username.empty()) auth.push_back(endpoint_.username);
        auth.push_back(endpoint_.password);
        issue(format_command(auth), step("AUTH", true), timeout);
    }
    if (endpoint_.db != 0) {
        issue(format_command({"SELECT", std::to_string(endpoint_.db)}), step("SELECT", true), timeout);
    }
    std::vector<std::shared_ptr<const Script>> scripts;
    {
        std::lock_guard lock(scripts_mutex_);
        scripts = scripts_;
    }
    for (const auto& script : scripts) {
        // Not required: a script Redis refuses fails its own calls, not the connection.
        issue(format_command({"SCRIPT", "LOAD", script->source}), step("SCRIPT LOAD", false), timeout);
    }
    issue(format_command({"PING"}), step("PING", true), timeout);
}

void RedisConnection::on_handshake_reply(std::uint64_t generation, const char* step, bool required,
                                         error_code ec, const Reply& reply) {
    if (generation != generation_) return;  // failed by a drop: that drop reconnects
    if (ec) {
        const std::string what =
            std::string(step) + " failed: " + (reply.is_error() ? reply.str : ec.message());
        if (required) {
            // A wrong password or db is an operator's error: said at error level, retried with backoff.
            drop(ec, what, log::Level::error);
            return;
        }
        log::error(kComponent, describe() + ": " + what);
    }
    if (--handshake_outstanding_ == 0) become_ready();
}

void RedisConnection::become_ready() {
    connect_timer_.cancel();
    phase_ = Phase::ready;
    backoff_ = endpoint_.reconnect_min;
    ready_.store(true, std::memory_order_release);
    log::info(kComponent, "connected to " + describe());
    hook_told_ready_ = true;
    if (state_hook_) state_hook_(true);
}

void RedisConnection::command(const std::vector<std::string>& argv, Callback cb) {
    auto formatted = format_command(argv);
    asio::post(strand_,
               [self = shared_from_this(), formatted = std::move(formatted), cb = std::move(cb)]() mutable {
                   if (formatted.empty()) {
                       cb(make_error_code(error::protocol), Reply{});  // no command name
                   } else if (self->phase_ != Phase::ready) {
                       cb(make_error_code(error::not_connected), Reply{});
                   } else if (self->pending_.size() >= kMaxPending) {
                       cb(make_error_code(error::too_many_pending), Reply{});
                   } else {
                       self->issue(formatted, std::move(cb), self->endpoint_.command_timeout);
                   }
               });
}

std::shared_ptr<const Script> RedisConnection::remember_script(const Script& script) {
    std::lock_guard lock(scripts_mutex_);
    for (const auto& known : scripts_) {
        if (known->sha1 == script.sha1) return known;
    }
    auto added = std::make_shared<const Script>(script);
    if (scripts_.size() < kMaxScripts) scripts_.push_back(added);  // beyond: NOSCRIPT loads it each time
    return added;
}

void RedisConnection::eval_script(const Script& script, std::vector<std::string> keys,
                                  std::vector<std::string> args, Callback cb) {
    auto known = remember_script(script);
    std::vector<std::string> argv;
    argv.reserve(3 + keys.size() + args.size());
    argv.push_back("EVALSHA");
    argv.push_back(known->sha1);
    argv.push_back(std::to_string(keys.size()));
    for (auto& key : keys) argv.push_back(std::move(key));
    for (auto& arg : args) argv.push_back(std::move(arg));
    auto evalsha = format_command(argv);
    asio::post(strand_, [self = shared_from_this(), known = std::move(known), evalsha = std::move(evalsha),
                         cb = std::move(cb)]() mutable {
        self->do_eval(std::move(known), std::move(evalsha), std::move(cb), false);
    });
}

void RedisConnection::do_eval(std::shared_ptr<const Script> script, std::string evalsha, Callback cb,
                              bool retried) {
    if (phase_ != Phase::ready) {
        cb(make_error_code(error::not_connected), Reply{});
        return;
    }
    if (pending_.size() >= kMaxPending) {
        cb(make_error_code(error::too_many_pending), Reply{});
        return;
    }
    const std::string formatted = evalsha;  // evalsha itself moves into the callback, for a retry
    issue(
        formatted,
        [self = shared_from_this(), script, evalsha = std::move(evalsha), cb = std::move(cb), retried](
            error_code ec, Reply reply) mutable {
            // Redis lost its script cache (SCRIPT FLUSH, a restart behind a proxy, a failover):
            // load it again and retry once. Both go out in the same write, answered in order.
            if (!retried && ec == error::server && reply.str.rfind("NOSCRIPT", 0) == 0 &&
                self->phase_ == Phase::ready) {
                self->issue(
                    format_command({"SCRIPT", "LOAD", script->source}),
                    [](error_code, const Reply&) {},  // its failure shows in the retry's answer
                    self->endpoint_.command_timeout);
                self->do_eval(std::move(script), std::move(evalsha), std::move(cb), true);
                return;
            }
            cb(ec, std::move(reply));
        },
        endpoint_.command_timeout);
}

void RedisConnection::issue(const std::string& formatted, Callback cb, Duration timeout) {
    pending_.push_back(
        Pending{std::move(cb), std::chrono::steady_clock::now() +
                                   std::chrono::duration_cast<std::chrono::steady_clock::duration>(timeout)});
    write_next_ += formatted;
    // Deadlines are in order except after the handshake's (connect_timeout, possibly longer than
    // command_timeout): a nearer one moves the timer.
    if (!command_timer_running_ || pending_.back().deadline < command_timer_.expiry()) arm_command_timer();
    if (!writing_) do_write();
}

void RedisConnection::do_write() {
    if (writing_ || write_next_.empty() || !transport_) return;
    writing_ = true;
    // The buffer belongs to the operation: a close does not free what a cancelled write still reads.
    auto buffer = std::make_shared<std::string>(std::move(write_next_));
    write_next_.clear();
    const auto generation = generation_;
    transport_->visit([&](auto& stream) {
        asio::async_write(stream, asio::buffer(*buffer),
                          [self = shared_from_this(), generation, buffer, transport = transport_](
                              error_code ec, std::size_t) { self->on_write(generation, ec); });
    });
}

void RedisConnection::on_write(std::uint64_t generation, error_code ec) {
    if (generation != generation_) return;
    writing_ = false;
    if (ec) {
        drop(ec, "write");
        return;
    }
    do_write();
}

void RedisConnection::do_read() {
    const auto generation = generation_;
    auto transport = transport_;
    transport->visit([&](auto& stream) {
        stream.async_read_some(
            asio::buffer(transport->read_buffer),
            [self = shared_from_this(), generation, transport](error_code ec, std::size_t bytes) {
                self->on_read(generation, ec, bytes);
            });
    });
}

void RedisConnection::on_read(std::uint64_t generation, error_code ec, std::size_t bytes) {
    if (generation != generation_) return;
    if (ec) {
        drop(ec, "read");
        return;
    }
    if (::redisReaderFeed(reader_.get(), transport_->read_buffer.data(), bytes) != REDIS_OK) {
        drop(make_error_code(error::protocol), std::string("parse: ") + reader_->errstr);
        return;
    }
    reply_bytes_ += bytes;
    for (;;) {
        void* raw = nullptr;
        if (::redisReaderGetReply(reader_.get(), &raw) != REDIS_OK) {
            drop(make_error_code(error::protocol), std::string("parse: ") + reader_->errstr);
            return;
        }
        if (!raw) break;
        auto* reply_object = static_cast<redisReply*>(raw);
        Reply reply = copy_reply(*reply_object);
        ::freeReplyObject(reply_object);
        // What is left in the reader's buffer belongs to the next reply.
        reply_bytes_ = reader_->len - reader_->pos;
        if (pending_.empty()) {
            drop(make_error_code(error::protocol), "a reply nothing asked for");
            return;
        }
        auto callback = std::move(pending_.front().callback);
        pending_.pop_front();
        const auto result = reply.is_error() ? make_error_code(error::server) : error_code{};
        callback(result, std::move(reply));
        if (generation != generation_) return;  // the callback's outcome dropped the connection
    }
    if (reply_bytes_ > kMaxReplyBytes) {
        drop(make_error_code(error::protocol), "a reply larger than 64 MiB");
        return;
    }
    do_read();
}

// One timer for the nearest deadline of all outstanding commands (the oldest user command's, unless
// a handshake step's is nearer). It is re-armed when it fires or a nearer deadline comes, never per reply.
void RedisConnection::arm_command_timer() {
    if (pending_.empty()) {
        command_timer_running_ = false;
        return;
    }
    command_timer_running_ = true;
    auto deadline = pending_.front().deadline;
    for (const auto& pending : pending_) deadline = std::min(deadline, pending.deadline);
    command_timer_.expires_at(deadline);
    command_timer_.async_wait([self = shared_from_this(), generation = generation_](error_code ec) {
        if (ec || generation != self->generation_) return;
        self->on_command_timer(generation);
    });
}

void RedisConnection::on_command_timer(std::uint64_t) {
    command_timer_running_ = false;
    if (pending_.empty()) return;
    const auto now = std::chrono::steady_clock::now();
    if (std::any_of(pending_.begin(), pending_.end(),
                    [now](const Pending& p) { return p.deadline <= now; })) {
        // Its reply may still come, but could no longer be told from the next one's.
        drop(make_error_code(error::timed_out), "command timed out");
        return;
    }
    arm_command_timer();
}

void RedisConnection::close_transport() {
    ++generation_;
    ready_.store(false, std::memory_order_release);
    connect_timer_.cancel();
    command_timer_.cancel();
    command_timer_running_ = false;
    resolver_.cancel();
    if (transport_) {
        transport_->close();
        transport_.reset();
    }
    writing_ = false;
    write_next_.clear();
    reader_.reset();
    reply_bytes_ = 0;
    handshake_outstanding_ = 0;
}

void RedisConnection::fail_all(error_code ec) {
    auto failed = std::move(pending_);
    pending_.clear();
    for (auto& pending : failed) pending.callback(ec, Reply{});
}

void RedisConnection::tell_lost() {
    if (!hook_told_ready_) return;
    hook_told_ready_ = false;
    if (state_hook_) state_hook_(false);
}

void RedisConnection::drop(error_code ec, const std::string& why, log::Level level) {
    const bool was_ready = phase_ == Phase::ready;
    if (was_ready && log::enabled(level)) {
        log::write(level, kComponent,
                   "connection to " + describe() + " lost: " + why + " (" + ec.message() + ")");
    } else if (!was_ready) {
        // Retried every reconnect_max at most, forever: one line per interval, the first at once.
        log::write_limited(connect_failure_log_, level, kComponent, [&] {
            return "cannot connect to " + describe() + ": " + why + " (" + ec.message() + ")";
        });
    }
    close_transport();
    schedule_reconnect();
    tell_lost();
    fail_all(ec);
}

void RedisConnection::schedule_reconnect() {
    phase_ = Phase::waiting;
    // Drawn in [backoff/2, backoff]: replicas that lost the same Redis do not all come back at once.
    const auto ceiling = std::max<Duration::rep>(backoff_.count(), 1);
    std::uniform_int_distribution<Duration::rep> draw(ceiling / 2, ceiling);
    const Duration wait{draw(jitter_)};
    backoff_ = std::min(backoff_ * 2, endpoint_.reconnect_max);
    reconnect_timer_.expires_after(wait);
    reconnect_timer_.async_wait([self = shared_from_this(), generation = generation_](error_code ec) {
        if (ec || generation != self->generation_ || self->phase_ != Phase::waiting) return;
        self->do_connect();
    });
}

std::string_view error_reason(const boost::system::error_code& ec) noexcept {
    if (!ec) return {};
    if (ec.category() == redis_category()) {
        switch (static_cast<error>(ec.value())) {
            case error::not_connected: return "not_connected";
            case error::timed_out: return "timed_out";
            case error::protocol: return "protocol";
            case error::server: return "server";
            case error::too_many_pending: return "too_many_pending";
        }
    }
    if (ec == asio::error::operation_aborted) return "aborted";
    return "connection_lost";
}

Script::Script(std::string lua) : source(std::move(lua)), sha1(sha1_hex(source)) {}

}  // namespace sluice::redis
