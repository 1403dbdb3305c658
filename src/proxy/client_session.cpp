#include "sluice/proxy/client_session.hpp"

#include <algorithm>
#include <atomic>
#include <tuple>
#include <type_traits>
#include <utility>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/bind_handler.hpp>
#include <boost/beast/core/read_size.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>

#include "sluice/common/failpoint.hpp"
#include "sluice/common/log.hpp"
#include "sluice/config/loader.hpp"
#include "sluice/cost/body_cost.hpp"
#include "sluice/feedback/vendor_signals.hpp"
#include "sluice/proxy/http_headers.hpp"
#include "sluice/proxy/message_framing.hpp"
#include "sluice/proxy/request_metrics.hpp"
#include "sluice/proxy/upstream_request.hpp"

namespace sluice::proxy {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

namespace {

// One buffer relays both bodies, in turn; 32 KiB keeps syscalls few and memory
// per connection small.
constexpr std::size_t kBodyBufferSize = 32 * 1024;
constexpr std::size_t kResponseHeaderLimit = 64 * 1024;
// How many bytes past the header a client may have sent ahead (pipelining, the
// start of a body) before sluice stops reading: bounds the read buffer.
constexpr std::size_t kReadAheadLimit = 64 * 1024;
// Most bytes one socket read asks for.
constexpr std::size_t kReadChunk = 64 * 1024;
// Read steps completed from buffered bytes in a row before one goes through the scheduler.
constexpr unsigned kMaxInlineSteps = 16;

bool status_has_no_body(unsigned status) {
    return status / 100 == 1 || status == 204 || status == 304;
}

// How much of a vendor 429 body is read to find the configured JSON field.
constexpr std::size_t kVendorBodyLimit = feedback::kMaxVendorBodyBytes;

// RFC 9110 9.2.2: a request that may be repeated with the same effect.
bool is_idempotent(http::verb method) {
    switch (method) {
        case http::verb::get:
        case http::verb::head:
        case http::verb::put:
        case http::verb::delete_:
        case http::verb::options:
        case http::verb::trace: return true;
        default: return false;
    }
}

// Whether a response can carry a rate-limit signal, checked in one pass over the
// fields so that ordinary responses skip the parsers entirely.
bool has_rate_limit_fields(const ArenaFields& fields) {
    for (const auto& field : fields) {
        const auto name = field.name_string();
        if (beast::iequals(name, "retry-after")) return true;
        if (name.size() >= 9 && (beast::iequals(name.substr(0, 9), "ratelimit") ||
                                 (name.size() >= 11 && beast::iequals(name.substr(0, 11), "x-ratelimit")) ||
                                 (name.size() >= 12 && beast::iequals(name.substr(0, 12), "x-rate-limit")))) {
            return true;
        }
    }
    return false;
}

double seconds_of(Nanos d) {
    return static_cast<double>(d.count()) / 1e9;
}

std::optional<std::uint64_t> std_optional(const boost::optional<std::uint64_t>& value) {
    return value ? std::optional<std::uint64_t>(*value) : std::nullopt;
}

// At most one "session failed" line per second, process-wide: whatever makes
// one session throw, a client can repeat, and the log must not be its tool.
bool exception_log_due() {
    static std::atomic<std::int64_t> next_ns{0};
    const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
    auto due = next_ns.load(std::memory_order_relaxed);
    return now >= due && next_ns.compare_exchange_strong(due, now + 1'000'000'000, std::memory_order_relaxed);
}

}  // namespace

ClientSession::ClientSession(tcp::socket socket, std::shared_ptr<Runtime> runtime, std::size_t listener_index)
    : socket_(std::move(socket)),
      buffer_(runtime->config->server.max_header_bytes + kReadAheadLimit),
      runtime_(std::move(runtime)),
      listener_index_(listener_index),
      watchdog_(socket_.get_executor()) {
    beast::error_code ec;
    const auto remote = socket_.remote_endpoint(ec);
    if (!ec) client_address_ = remote.address().to_string();
    socket_.set_option(tcp::no_delay(true), ec);
    socket_.non_blocking(true, ec);  // writes are tried synchronously first: they must never block
    runtime_->counters.open_client_connections.fetch_add(1, std::memory_order_relaxed);
    access_log_ = runtime_->access_log;
}

ClientSession::~ClientSession() {
    // Whatever path ended the session, nothing taken on its behalf may leak.
    if (waiting_ticket_ != 0) runtime_->limits->cancel(waiting_ticket_);
    release_permits();
    end_streamed_body();
    release_upstream(false);
    runtime_->metrics.session_ended(metrics_marks_);
    runtime_->counters.open_client_connections.fetch_sub(1, std::memory_order_relaxed);
}

// ---------------------------------------------------------------- the crash barrier

template <class Member, class... Bound>
auto ClientSession::step(Member member, Bound... bound) {
    return [self = shared_from_this(), member, bound...](auto&&... args) {
        self->guarded([&] { ((*self).*member)(bound..., std::forward<decltype(args)>(args)...); });
    };
}

template <class Body>
void ClientSession::guarded(Body&& body) noexcept {
    try {
        body();
    } catch (const std::exception& e) {
        on_step_exception(e.what());
    } catch (...) {
        on_step_exception("an exception of unknown type");
    }
}

void ClientSession::on_step_exception(const char* what) noexcept {
    // Nothing on the request path should throw; if third-party code does
    // anyway, this one connection ends and the process serves on.
    try {
        runtime_->counters.session_exceptions.fetch_add(1, std::memory_order_relaxed);
        if (exception_log_due()) {
            log::error("proxy", "a client session failed and was closed: " + printable_excerpt(what) + " (" +
                                    describe_request() + ")");
        }
        do_close();
    } catch (...) {
        closed_ = true;  // out of memory, most likely: the destructor releases what is held
    }
}

template <class Handler>
auto ClientSession::on_strand(Handler&& handler) {
    return net::bind_executor(socket_.get_executor(), std::forward<Handler>(handler));
}

template <class Handler>
void ClientSession::post_to_session(Handler&& handler) {
    // With one io thread the session's executor is the io_context's own: posting
    // to it directly skips the type-erased executor's require/prefer copies.
    if (const auto* plain = socket_.get_executor().target<net::io_context::executor_type>()) {
        return net::post(*plain, std::forward<Handler>(handler));
    }
    net::post(socket_.get_executor(), std::forward<Handler>(handler));
}

void ClientSession::start() {
    net::dispatch(socket_.get_executor(), step(&ClientSession::do_read_header));
}

std::string ClientSession::describe_request() const {
    // Logged and put in error bodies: what the client sent, bounded and printable.
    return printable_excerpt(method_, 32) + " " + printable_excerpt(host_ + path_, 256, false);
}

// ---------------------------------------------------------------- timeouts

void ClientSession::time_client(Nanos timeout) {
    set_deadline(TimedSide::client, std::chrono::steady_clock::now() + timeout);
}

void ClientSession::time_upstream(Nanos timeout) {
    set_deadline(TimedSide::upstream, std::chrono::steady_clock::now() + timeout);
}

void ClientSession::time_body_read() {
    const auto now = std::chrono::steady_clock::now();
    const auto& timeouts = config().server.timeouts;
    // A stall timeout alone lets a client trickle a byte just inside it forever.
    if (body_deadline_ == std::chrono::steady_clock::time_point::max()) {
        body_deadline_ = now + timeouts.client_body_total;
    }
    set_deadline(TimedSide::client, std::min(now + timeouts.client_body, body_deadline_));
}

void ClientSession::set_deadline(TimedSide side, std::chrono::steady_clock::time_point deadline) {
    timed_side_ = side;
    timed_out_ = false;
    op_deadline_ = deadline;
    // Deadlines mostly move later (each is "now + a timeout"): the armed timer is
    // then left alone and re-checks when it fires. Only an earlier one re-arms it.
    if (op_deadline_ < watchdog_at_) arm_watchdog(op_deadline_);
}

void ClientSession::arm_watchdog(std::chrono::steady_clock::time_point at) {
    watchdog_at_ = at;
    watchdog_.expires_at(at);
    // A weak reference: an armed watchdog must not keep a finished session alive.
    watchdog_.async_wait([weak = weak_from_this()](beast::error_code ec) {
        if (auto self = weak.lock()) self->guarded([&] { self->on_watchdog(ec); });
    });
}

void ClientSession::on_watchdog(beast::error_code ec) {
    if (ec || closed_) return;  // re-armed earlier, or the session ended
    watchdog_at_ = std::chrono::steady_clock::time_point::max();
    if (timed_side_ == TimedSide::none) return;  // between operations: re-armed by the next one
    if (std::chrono::steady_clock::now() < op_deadline_) return arm_watchdog(op_deadline_);
    // The operation under way ran out of time: cancel it; its handler sees
    // operation_aborted, which settle() turns into beast::error::timeout.
    timed_out_ = true;
    beast::error_code ignored;
    if (timed_side_ == TimedSide::client) {
        socket_.cancel(ignored);
    } else if (upstream_) {
        upstream_->socket().cancel(ignored);
    }
}

beast::error_code ClientSession::settle(beast::error_code ec) {
    timed_side_ = TimedSide::none;
    const bool timed_out = std::exchange(timed_out_, false);
    if (timed_out && ec == net::error::operation_aborted) return beast::error::timeout;
    return ec;
}

// ---------------------------------------------------------------- reading and writing

bool ClientSession::reads_client(ReadStep step) {
    return step == ReadStep::request_header || step == ReadStep::held_body || step == ReadStep::request_body;
}

template <class Parser>
bool ClientSession::parse_buffered(Parser& parser, beast::flat_buffer& buffer, bool header_only,
                                   beast::error_code& ec) {
    while (buffer.size() > 0 && !(header_only ? parser.is_header_done() : parser.is_done())) {
        const auto used = parser.put(buffer.data(), ec);
        buffer.consume(used);
        if constexpr (std::is_same_v<Parser, RequestParser>) record_.bytes_in += used;
        // need_more: what is buffered ends inside a line or a chunk header; read on.
        if (ec == http::error::need_more) {
            ec = {};
            break;
        }
        // need_buffer: the relay buffer is full; the step is complete.
        if (ec == http::error::need_buffer) {
            ec = {};
            return true;
        }
        if (ec) return true;
        if (used == 0) break;
    }
    if (header_only) return parser.is_header_done();
    // A body step completes with whatever piece is at hand: relaying it now keeps
    // a slowly streamed body (server-sent events, a long upload) flowing.
    return parser.is_done() || parser.get().body().size < kBodyBufferSize;
}

void ClientSession::read(ReadStep step) {
    const bool from_client = reads_client(step);
    const bool header_only = step == ReadStep::request_header || step == ReadStep::response_header;
    auto& buffer = from_client ? buffer_ : upstream_->buffer();
    beast::error_code ec;
    const bool complete = from_client ? parse_buffered(*request_parser_, buffer, header_only, ec)
                                      : parse_buffered(*response_parser_, buffer, header_only, ec);
    if (complete) {
        // A peer that sent many messages ahead is answered from the buffer; a
        // scheduler trip now and then bounds the stack and lets others run.
        if (++inline_steps_ > kMaxInlineSteps) {
            inline_steps_ = 0;
            return net::post(socket_.get_executor(), [self = shared_from_this(), step, ec] {
                self->guarded([&] { self->read_done(step, ec); });
            });
        }
        return read_done(step, ec);
    }
    if (buffer.size() >= buffer.max_size()) return read_done(step, http::error::buffer_overflow);
    const auto room = beast::read_size(buffer, kReadChunk);
    auto handler = this->step(&ClientSession::on_read_some, step);
    if (from_client) return socket_.async_read_some(buffer.prepare(room), std::move(handler));
    if (step == ReadStep::response_header) {
        // Often the vendor has answered already: take it without a trip through the
        // scheduler (the same recv the asynchronous read would try first). Bounded: a
        // vendor trickling its header must not grow the stack without end.
        if (!upstream_->is_tls() && ++sync_header_reads_ <= kMaxInlineSteps) {
            beast::error_code read_ec;
            const auto bytes = upstream_->socket().read_some(buffer.prepare(room), read_ec);
            if (read_ec != net::error::would_block && read_ec != net::error::try_again) {
                return on_read_some(step, read_ec, bytes);
            }
        }
        // The vendor is taking its time: notice meanwhile if the client gives up. The
        // watch's read becomes the next header's read, so it costs little more than that.
        if (request_parser_->is_done()) watch_client();
    }
    upstream_->with_stream(
        [&](auto& stream) { stream.async_read_some(buffer.prepare(room), on_strand(std::move(handler))); });
}

void ClientSession::on_read_some(ReadStep step, beast::error_code ec, std::size_t bytes) {
    inline_steps_ = 0;
    const bool from_client = reads_client(step);
    if (!from_client && !upstream_) return read_done(step, net::error::operation_aborted);
    (from_client ? buffer_ : upstream_->buffer()).commit(bytes);
    if (ec == net::error::eof) {
        // The peer closed: that ends a close-delimited body, or the message is cut short.
        const bool got_some = from_client ? request_parser_->got_some() : response_parser_->got_some();
        if (!got_some) return read_done(step, http::error::end_of_stream);
        ec = {};
        if (from_client) {
            request_parser_->put_eof(ec);
        } else {
            response_parser_->put_eof(ec);
        }
        return read_done(step, ec);
    }
    if (ec) return read_done(step, ec);
    if (step == ReadStep::request_header && awaiting_first_byte_ && bytes > 0) {
        // The next request has begun: its header gets client_header from here, not
        // what is left of the keep-alive wait (docs/configuration.md).
        awaiting_first_byte_ = false;
        time_client(config().server.timeouts.client_header);
    }
    read(step);
}

void ClientSession::read_done(ReadStep step, beast::error_code ec) {
    // Abandoned while the upstream read was under way: that read's end hands back the connection.
    if (closed_ && !reads_client(step)) return do_close();
    switch (step) {
        case ReadStep::request_header: return on_read_header(ec, 0);
        case ReadStep::held_body: return on_held_body_read(ec, 0);
        case ReadStep::request_body: return on_request_body_read(ec, 0);
        case ReadStep::response_header: return on_response_header(ec, 0);
        case ReadStep::response_body: return on_response_body_read(ec, 0);
        case ReadStep::vendor_body: return on_vendor_body_read(ec, 0);
    }
}

template <class Stream, class Handler>
void ClientSession::write(Stream& stream, const RelayWriter::Buffers& buffers, Handler&& handler,
                          bool bind_to_session) {
    std::size_t written = 0;
    if constexpr (std::is_same_v<Stream, tcp::socket>) {
        // The socket is non-blocking: this takes what fits in the kernel's buffer
        // and returns at once. Usually that is all of it.
        beast::error_code ec;
        const auto* first =
            std::find_if(buffers.begin(), buffers.end(), [](const auto& b) { return b.size() > 0; });
        // One buffer goes out with send(), several with sendmsg().
        written = first != buffers.end() && first->size() == total_size(buffers)
                      ? stream.write_some(*first, ec)
                      : stream.write_some(buffers, ec);
        if (ec == net::error::would_block || ec == net::error::try_again) {
            written = 0;
        } else if (ec || written == total_size(buffers)) {
            // The exchange goes on from the scheduler's queue, not from here: the
            // next step reads the peer's answer, and after the other ready work has
            // run that answer has usually arrived, so the read needs no wait for
            // readiness (nor a recv that finds nothing). It also bounds the stack.
            return post_to_session(
                beast::bind_handler(std::forward<Handler>(handler), ec, ec ? std::size_t{0} : written));
        }
    }
    RelayWriter::Buffers rest{};
    std::size_t skip = written;
    std::size_t n = 0;
    for (const auto& piece : buffers) {
        if (skip >= piece.size()) {
            skip -= piece.size();
            continue;
        }
        rest[n++] = piece + skip;
        skip = 0;
    }
    if (bind_to_session) {
        net::async_write(stream, rest, on_strand(std::forward<Handler>(handler)));
    } else {
        net::async_write(stream, rest, std::forward<Handler>(handler));
    }
}

// ---------------------------------------------------------------- intake

void ClientSession::do_read_header() {
    if (closed_) return;
    // Bytes the watch already took (a pipelined request) are parsed first, with the watch ended.
    if (buffer_.size() > 0 && end_watch_then(Resume::read_header)) return;
    record_.bytes_in = 0;
    // The response's fields go first: with both parsers gone the arena starts over.
    response_parser_.reset();
    kept_refusal_ = false;
    retry_after_body_ = false;
    request_parser_.emplace(std::piecewise_construct, std::make_tuple(),
                            std::make_tuple(ArenaAllocator<char>(&header_arena_)));
    request_parser_->header_limit(static_cast<std::uint32_t>(
        std::min<std::size_t>(config().server.max_header_bytes, std::numeric_limits<std::uint32_t>::max())));
    request_parser_->body_limit(config().server.max_body_bytes);
    uses_.clear();
    tightest_limit_.reset();
    response_started_ = false;
    attempts_ = 0;
    body_deadline_ = std::chrono::steady_clock::time_point::max();
    const auto& timeouts = config().server.timeouts;
    // A new connection, or a request already (partly) buffered, is in its header;
    // a keep-alive connection waits for the next request's first byte.
    awaiting_first_byte_ = !first_request_ && buffer_.size() == 0;
    time_client(awaiting_first_byte_ ? timeouts.client_idle : timeouts.client_header);
    if (!watch_idle_for_drain()) return do_close();
    if (watching_client_) {
        // The watch's read, still waiting, is this header's first read: its end (bytes, EOF,
        // the timeout's or the drain's cancel) goes to on_read_some like any other.
        resume_after_watch_ = Resume::as_header_read;
        return;
    }
    read(ReadStep::request_header);
}

bool ClientSession::watch_idle_for_drain() {
    idle_watch_ = runtime_->idle_sessions.add([weak = weak_from_this(), executor = socket_.get_executor()] {
        net::post(executor, [weak] {
            if (auto self = weak.lock()) self->on_drain_while_idle();
        });
    });
    return idle_watch_ != 0;
}

void ClientSession::on_drain_while_idle() {
    // A request already begun is answered (with Connection: close); only a
    // connection with nothing sent yet is cut, its read ending operation_aborted.
    if (closed_ || idle_watch_ == 0 || buffer_.size() > 0 || request_parser_->got_some()) return;
    beast::error_code ignored;
    socket_.cancel(ignored);
}

void ClientSession::on_read_header(beast::error_code ec, std::size_t) {
    runtime_->idle_sessions.remove(std::exchange(idle_watch_, 0));
    metrics::ProxyMetrics::begin_request(metrics_marks_);
    ec = settle(ec);
    first_request_ = false;
    if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
        ec == net::error::connection_reset || ec == net::error::operation_aborted) {
        return do_close();
    }
    if (access_log_) begin_record();
    version_ = 11;
    keep_alive_ = false;
    if (ec) {
        runtime_->counters.client_errors.fetch_add(1, std::memory_order_relaxed);
        if (ec == http::error::header_limit || ec == http::error::buffer_overflow) {
            return send_synthetic(make_error_response(
                Errc::header_too_large,
                "the request header exceeds " + std::to_string(config().server.max_header_bytes) + " bytes",
                11, false));
        }
        if (ec == http::error::body_limit) {
            return send_synthetic(make_error_response(
                Errc::body_too_large,
                "the request body exceeds " + std::to_string(config().server.max_body_bytes) + " bytes", 11,
                false));
        }
        return send_synthetic(make_error_response(Errc::malformed_request,
                                                  "malformed HTTP request: " + ec.message(), 11, false));
    }
    handle_request();
}

void ClientSession::handle_request() {
    // A reload since this connection's last request: this one follows the config
    // in force now (its routes, pools and limits; the limit state is shared).
    if (runtime_->process->current_generation() != runtime_->generation)
        runtime_ = runtime_->process->current();
    runtime_->counters.requests.fetch_add(1, std::memory_order_relaxed);
    failpoint::hit(failpoint::Point::session_handle_request);
    auto& req = request_parser_->get();
    version_ = req.version();
    // The parser worked keep-alive out while reading Connection; asking the fields would scan it again.
    keep_alive_ = request_parser_->keep_alive() && !runtime_->draining.load(std::memory_order_relaxed);
    head_request_ = req.method() == http::verb::head;
    method_.assign(req.method_string());
    host_.clear();
    path_.clear();

    // Refused or routed by the head alone (upstream_request.hpp: the same code the request
    // fuzz target checks against llhttp). A refused request is never counted or forwarded.
    auto intake = intake_request(req.base(), runtime_->routes, listener_index_);
    host_ = std::move(intake.host);
    path_ = std::move(intake.path);
    if (access_log_) note_request(intake);
    if (intake.refusal) {
        const auto& refusal = *intake.refusal;
        if (refusal.code == Errc::no_route) {
            runtime_->counters.no_route.fetch_add(1, std::memory_order_relaxed);
            log::debug("proxy", "no route for " + describe_request());
        } else {
            runtime_->counters.client_errors.fetch_add(1, std::memory_order_relaxed);
        }
        return send_synthetic(
            make_error_response(refusal.code, refusal.message, version_,
                                refusal.keep_alive_allowed && keep_alive_ && request_parser_->is_done()));
    }
    const auto& match = intake.match;
    route_index_ = match->route_index;
    const auto& route_config = config().routes[route_index_];
    upstream_index_ = route_config.upstream_index;
    metrics::ProxyMetrics::routed(metrics_marks_, route_index_, upstream_index_);

    // Keys and costs are read from the request as the client sent it, before any
    // header is rewritten; only hashes are kept.
    limit::RequestAttributes attributes{method_, intake.query, &match->params, [&req](std::string_view name) {
                                            return find_field(req.base(), name);
                                        }};
    // The request's class (docs/priorities.md): the client's Sluice-Priority, else the route's,
    // else the default class. Without `priorities` the header means nothing (and, like every
    // Sluice-* header, is never forwarded).
    const auto& priorities = config().priorities;
    priority_class_ = 0;
    if (priorities.enabled()) {
        const auto asked = find_field(req.base(), "Sluice-Priority");
        const auto found = config::request_class(config(), route_config, asked);
        if (!found) {
            runtime_->counters.client_errors.fetch_add(1, std::memory_order_relaxed);
            std::string known;
            for (const auto& name : priorities.classes) known += (known.empty() ? "" : ", ") + name;
            return send_synthetic(make_error_response(Errc::unknown_priority,
                                                      "Sluice-Priority names no class: got " +
                                                          printable_excerpt(*asked, 64) +
                                                          ", expected one of " + known,
                                                      version_, false));
        }
        priority_class_ = *found;
        metrics::ProxyMetrics::classed(metrics_marks_, priority_class_);
    }
    limit::collect_limit_uses(
        config(), route_config, attributes, priority_class_, config().listeners[listener_index_].name,
        [&runtime = *runtime_](std::size_t limit_index) { return runtime.limit_slot(limit_index); },
        runtime_->vendor_gate_index(upstream_index_), uses_, use_marks_);
    if (access_log_) note_class(use_marks_);
    if (auto refusal = limit::header_cost_refusal(config(), use_marks_); !refusal.empty()) {
        // Never clamped: counting less than the client says would let the vendor see more.
        runtime_->counters.client_errors.fetch_add(1, std::memory_order_relaxed);
        return send_synthetic(make_error_response(Errc::cost_too_large, refusal, version_,
                                                  keep_alive_ && request_parser_->is_done()));
    }
    // A body cost is read once the body is whole (admit_held_body).
    const auto& costs = runtime_->route_costs[route_index_];
    body_costs_ = costs.body_costs;
    settles_costs_ = costs.settles;
    settle_body_limit_ = costs.settle_body_max;
    held_body_limit_ = costs.held_body_max;
    Nanos max_wait = route_config.queue.max_wait;
    if (const auto asked = find_field(req.base(), "Sluice-Max-Wait")) {
        const auto parsed = config::parse_max_wait_header(*asked);
        if (!parsed) {
            runtime_->counters.client_errors.fetch_add(1, std::memory_order_relaxed);
            return send_synthetic(make_error_response(
                Errc::malformed_request,
                "Sluice-Max-Wait must be seconds (\"0\", \"2.5\") or a duration (\"250ms\"), got " +
                    printable_excerpt(*asked),
                version_, false));
        }
        max_wait = std::min(max_wait, *parsed);  // a client may wait less, never more than the route allows
    }
    if (!prepare_upstream_request(*match, intake.query)) return;
    deadline_ = runtime_->limits->clock().now().mono + max_wait;
    max_wait_ = max_wait;
    sends_ = 0;
    replay_body_.clear();
    replayable_ = true;
    replaying_ = false;
    forward_chunked_ = request_parser_->chunked();
    take_body();
}

bool ClientSession::prepare_upstream_request(const route::RouteMatchResult& match, std::string_view query) {
    const auto& up = upstream_config();
    const auto& forwarded = config().server.forwarded;
    const auto authority = authority_for(up.scheme, up.host, up.port);
    const auto rewrite = rewrite_for_upstream(
        request_parser_->get().base(), match, query,
        ParsedFraming{request_parser_->chunked(), std_optional(request_parser_->content_length()),
                      request_parser_->is_done()},
        UpstreamHeadOptions{authority, forwarded.x_forwarded_for, forwarded.x_forwarded_proto,
                            client_address_});
    if (rewrite.refusal) {
        runtime_->counters.client_errors.fetch_add(1, std::memory_order_relaxed);
        send_synthetic(make_error_response(rewrite.refusal->code, rewrite.refusal->message, version_, false));
        return false;
    }
    expect_continue_ = rewrite.expect_continue;
    return true;
}

// ---------------------------------------------------------------- the request body, before admission

void ClientSession::take_body() {
    if (request_parser_->is_done()) return admit_held_body();
    const auto limit = held_body_limit_;
    const auto length = request_parser_->content_length();
    // A chunked body of unknown size is read up to the limit, then streamed if it goes on.
    if (length ? *length > limit : limit == 0) return body_costs_ ? refuse_unread_body_cost() : stream_body();
    if (expect_continue_) {
        // The client waits for a 100 before it sends the body; a body this small is
        // worth taking before the request is admitted, even if it ends up refused.
        expect_continue_ = false;
        return send_continue(AfterContinue::read_held_body);
    }
    read_held_body();
}

void ClientSession::read_held_body() {
    if (!body_buffer_) body_buffer_ = std::make_unique<char[]>(kBodyBufferSize);
    auto& body = request_parser_->get().body();
    body.data = body_buffer_.get();
    body.size = kBodyBufferSize;
    time_body_read();
    read(ReadStep::held_body);
}

void ClientSession::on_held_body_read(beast::error_code ec, std::size_t) {
    ec = settle(ec);
    if (ec == http::error::need_buffer) ec = {};
    if (ec) return fail_request_body(ec);
    replay_body_.append(body_buffer_.get(), kBodyBufferSize - request_parser_->get().body().size);
    if (request_parser_->is_done()) {
        // Whole: the vendor gets it with a Content-Length (some refuse chunked
        // uploads), and it can be sent again after a vendor 429.
        if (forward_chunked_) {
            forward_chunked_ = false;
            set_forwarded_framing(request_parser_->get().base(), false, replay_body_.size());
        }
        replaying_ = true;
        return admit_held_body();
    }
    if (replay_body_.size() > held_body_limit_) {
        if (body_costs_) return refuse_unread_body_cost();
        // A chunked body larger than it may be held: what was read goes first, the rest streams.
        replaying_ = true;
        replayable_ = false;
        return stream_body();
    }
    read_held_body();
}

void ClientSession::admit_held_body() {
    if (body_costs_) {
        for (auto& use : uses_) {
            const auto& limit_config = runtime_->limit_config(use.limit_index);
            if (!limit_config.cost.body) continue;
            const auto read =
                limit::body_request_cost(limit_config, replay_body_, config().server.max_buffered_body_bytes);
            if (read.error != Errc::ok) {
                // Nothing was counted or forwarded: all-or-nothing holds before admission.
                runtime_->counters.client_errors.fetch_add(1, std::memory_order_relaxed);
                log::debug("proxy", "cost refused (" + std::string(error_code_name(read.error)) +
                                        "): " + describe_request());
                return send_synthetic(make_error_response(read.error, read.message, version_,
                                                          keep_alive_ && request_parser_->is_done()));
            }
            use.cost = read.cost;
        }
    }
    request_admission(max_wait_);
}

void ClientSession::refuse_unread_body_cost() {
    // The body is not read at all (the connection then closes): a cost that cannot be read is
    // never guessed, and a body this large is not held.
    runtime_->counters.client_errors.fetch_add(1, std::memory_order_relaxed);
    std::string names;
    for (const auto& use : uses_) {
        const auto& limit_config = runtime_->limit_config(use.limit_index);
        if (!limit_config.cost.body) continue;
        names += (names.empty() ? "'" : ", '") + limit_config.name + "'";
    }
    send_synthetic(make_error_response(Errc::cost_body_too_large,
                                       "the request body is larger than the " +
                                           std::to_string(held_body_limit_) + " bytes limit " + names +
                                           " reads its cost from (cost.body.max_bytes); split the request",
                                       version_, false));
}

void ClientSession::stream_body() {
    auto& pool = *runtime_->pools[upstream_index_];
    if (!pool.try_begin_streamed_body()) {
        // Checked before admission: the refused request has taken no quota.
        runtime_->counters.streamed_body_refusals.fetch_add(1, std::memory_order_relaxed);
        auto response = make_error_response(
            Errc::upstream_busy,
            "upstream '" + upstream_config().name + "' already has " +
                std::to_string(pool.config().max_streamed_bodies) +
                " streamed request bodies in progress (max_streamed_bodies); retry shortly",
            version_, false);
        response.set(http::field::retry_after, "1");
        return send_synthetic(std::move(response));
    }
    streamed_body_ = true;
    request_admission(max_wait_);
}

void ClientSession::end_streamed_body() {
    if (!std::exchange(streamed_body_, false)) return;
    runtime_->pools[upstream_index_]->end_streamed_body();
}

void ClientSession::fail_request_body(beast::error_code ec) {
    // Whatever the upstream saw of this request is spoiled, and so is its connection.
    release_upstream(false);
    if (ec == http::error::body_limit) {
        runtime_->counters.client_errors.fetch_add(1, std::memory_order_relaxed);
        return send_synthetic(make_error_response(
            Errc::body_too_large,
            "the request body exceeds " + std::to_string(config().server.max_body_bytes) + " bytes", version_,
            false));
    }
    if (ec == beast::error::timeout) {
        runtime_->counters.body_timeouts.fetch_add(1, std::memory_order_relaxed);
        const bool total = std::chrono::steady_clock::now() >= body_deadline_;
        const auto& timeouts = config().server.timeouts;
        const auto seconds = std::chrono::duration_cast<std::chrono::duration<double>>(
            total ? timeouts.client_body_total : timeouts.client_body);
        log::debug("proxy", "client body too slow: " + describe_request());
        return send_synthetic(make_error_response(
            Errc::request_timeout,
            total ? "the request body did not arrive within client_body_total (" +
                        std::to_string(seconds.count()) + "s)"
                  : "the request body stalled for client_body (" + std::to_string(seconds.count()) + "s)",
            version_, false));
    }
    if (ec == http::error::end_of_stream || ec == net::error::connection_reset ||
        ec == http::error::partial_message) {
        return do_close();  // the client left mid-body: nobody to answer
    }
    runtime_->counters.client_errors.fetch_add(1, std::memory_order_relaxed);
    send_synthetic(make_error_response(Errc::malformed_request, "malformed request body: " + ec.message(),
                                       version_, false));
}

// ---------------------------------------------------------------- admission

void ClientSession::request_admission(Nanos max_wait) {
    auto request =
        queue::make_admission_request(config(), route_index_, uses_, use_marks_, priority_class_, max_wait);
    const auto admission = runtime_->limits->submit(std::move(request), socket_.get_executor(), [this] {
        return [self = shared_from_this()](const queue::Admission& decided) {
            self->guarded([&] { self->on_queued_decision(decided); });
        };
    });
    switch (admission.outcome) {
        case queue::Outcome::queued:
            if (access_log_) note_queued(admission);
            runtime_->metrics.queued(metrics_marks_, steady_nanos());
            waiting_ticket_ = admission.ticket;
            watch_client();
            return;
        case queue::Outcome::admitted:
        case queue::Outcome::rejected: apply_admission(admission); return;
    }
}

void ClientSession::on_queued_decision(const queue::Admission& admission) {
    if (closed_ || admission.ticket != waiting_ticket_) {
        // Decided while the client was leaving: give back what it took.
        if (admission.outcome == queue::Outcome::admitted) runtime_->limits->release(uses_, admission.lease);
        return;
    }
    waiting_ticket_ = 0;
    apply_admission(admission);  // the watch goes on, if it was on: until the response begins
}

void ClientSession::apply_admission(const queue::Admission& admission) {
    if (access_log_) note_admission(admission);
    tightest_ = admission.tightest;
    tightest_limit_ = admission.limiting_limit;
    admitted_at_ = admission.at;
    lease_ = admission.lease;
    if (admission.outcome == queue::Outcome::rejected && kept_refusal_) return relay_kept_refusal();
    if (admission.outcome == queue::Outcome::rejected) {
        runtime_->counters.rejected_by_limits.fetch_add(1, std::memory_order_relaxed);
        const auto now = runtime_->limits->clock().now();
        const config::LimitConfig* limit =
            admission.limiting_limit ? &runtime_->limit_config(*admission.limiting_limit) : nullptr;
        return send_synthetic(make_rejection_response(admission, limit,
                                                      config().server.rate_limit_headers.style, now, version_,
                                                      keep_alive_ && request_parser_->is_done()));
    }
    runtime_->metrics.admitted(metrics_marks_, metrics_marks_.waiting ? steady_nanos() : Nanos::zero(),
                               admission.shadow_would_refuse);
    // Only concurrency permits go back when the exchange ends; rate permits stay
    // spent, so an exchange that took none skips the release (and its poll).
    holds_permits_ = std::any_of(uses_.begin(), uses_.end(), [this](const limit::LimitUse& use) {
        return runtime_->limit_config(use.limit_index).algorithm == config::Algorithm::concurrency;
    });
    admitted_marks_.clear();
    if (upstream_config().feedback.enabled) {
        auto& tally = runtime_->limits->tally();
        for (const auto& use : uses_)
            admitted_marks_.push_back(tally.add(use.limit_index, use.key, use.cost));
    }
    on_admitted();
}

void ClientSession::watch_client() {
    // A read, not a readiness wait: Asio re-registers the socket with epoll for
    // every wait, and a wait cannot tell bytes from a close without a second
    // system call. When the read-ahead room is used up the watch stops (the
    // buffer is bounded); the client is then noticed leaving only when sluice
    // next writes to it.
    if (watching_client_ || closed_) return;
    const auto room = std::min(beast::read_size(buffer_, kReadChunk), buffer_.max_size() - buffer_.size());
    if (room == 0) return;
    watching_client_ = true;
    socket_.async_read_some(buffer_.prepare(room), step(&ClientSession::on_client_watch_read));
}

bool ClientSession::end_watch_then(Resume next) {
    if (!watching_client_) return false;
    // The watch's read owns the buffer's free space until its handler runs; no
    // write is under way at the points that call this, so cancel() ends only that read.
    resume_after_watch_ = next;
    beast::error_code ignored;
    socket_.cancel(ignored);
    return true;
}

void ClientSession::on_client_watch_read(beast::error_code ec, std::size_t bytes) {
    watching_client_ = false;
    const auto resume = std::exchange(resume_after_watch_, Resume::none);
    if (resume == Resume::as_header_read) return on_read_some(ReadStep::request_header, ec, bytes);
    buffer_.commit(bytes);
    if (closed_) return;
    switch (resume) {
        // What the watch read, or that the client closed, the resumed read finds.
        case Resume::read_header: return do_read_header();
        case Resume::request_body: return relay_request_body();
        case Resume::held_body: return read_held_body();
        case Resume::as_header_read:  // handled above
        case Resume::none: break;
    }
    if (!ec) return watch_client();                   // bytes sent ahead (a pipelined request): still there
    if (ec == net::error::operation_aborted) return;  // a client-side timeout cancelled it
    if (waiting_ticket_ != 0) {
        log::debug("proxy", "client left while queued: " + describe_request() + " (" + ec.message() + ")");
        // If the decision is already posted, on_queued_decision() sees closed_ and releases.
        runtime_->limits->cancel(std::exchange(waiting_ticket_, 0));
        return do_close();
    }
    if (synthetic_ || response_started_) {
        keep_alive_ = false;  // the answer under way is written; the connection ends with it
        return;
    }
    abandon_exchange();
}

void ClientSession::abandon_exchange() {
    // Admitted, its answer not begun, and nobody left to read it: stop what was
    // done on the client's behalf. The concurrency permits and the upstream
    // connection go back; rate-limit units stay spent (the vendor may have
    // counted the request already).
    runtime_->counters.abandoned_by_client.fetch_add(1, std::memory_order_relaxed);
    log::debug("proxy", "client left before its response began: " + describe_request());
    if (upstream_ && timed_side_ == TimedSide::upstream) {
        // A read or write on the upstream connection is under way: it keeps the
        // connection until its handler has run (read_done, on_request_written).
        beast::error_code ignored;
        upstream_->socket().cancel(ignored);
        closed_ = true;
        release_permits();
        socket_.close(ignored);
        return;
    }
    do_close();  // a pool wait in progress hands its connection back in on_upstream_acquired
}

void ClientSession::on_admitted() {
    runtime_->counters.forwarded.fetch_add(1, std::memory_order_relaxed);
    if (expect_continue_) return send_continue(AfterContinue::acquire_upstream);
    acquire_upstream();
}

void ClientSession::send_continue(AfterContinue next) {
    static constexpr char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";
    time_client(config().server.timeouts.client_write);
    net::async_write(socket_, net::buffer(kContinue, sizeof kContinue - 1),
                     on_strand(step(&ClientSession::on_continue_written, next)));
}

// ---------------------------------------------------------------- upstream exchange

void ClientSession::on_continue_written(AfterContinue next, beast::error_code ec, std::size_t) {
    ec = settle(ec);
    if (ec) return do_close();
    if (next == AfterContinue::read_held_body) {
        if (end_watch_then(Resume::held_body)) return;
        return read_held_body();
    }
    acquire_upstream();
}

void ClientSession::acquire_upstream() {
    ++attempts_;
    if (access_log_) note_sent();
    if (auto idle = runtime_->pools[upstream_index_]->try_acquire_idle()) {
        return on_upstream_acquired({}, std::move(idle));
    }
    // Waiting for a connection: notice meanwhile if the client gives up.
    if (request_parser_->is_done()) watch_client();
    runtime_->pools[upstream_index_]->async_acquire(socket_.get_executor(),
                                                    step(&ClientSession::on_upstream_acquired));
}

void ClientSession::on_upstream_acquired(std::error_code ec, upstream::ConnectionPtr connection) {
    if (closed_) {
        if (connection) runtime_->pools[upstream_index_]->release(std::move(connection), true);
        return;
    }
    if (ec) {
        const auto code = ec.category() == sluice_category() ? static_cast<Errc>(ec.value())
                                                             : Errc::upstream_connect_failed;
        // Not one byte of this request reached the vendor (no connection; a retry
        // after a vendor 429 or a closed pooled connection did send before): the
        // units it took go back, for the retry that needs them.
        if (sends_ == 0) runtime_->limits->refund(uses_, admitted_at_, lease_);
        return fail_upstream(code, "cannot reach upstream '" + upstream_config().name + "': " + ec.message(),
                             false);
    }
    upstream_ = std::move(connection);
    upstream_reusable_ = false;
    write_request_header();
}

void ClientSession::write_request_header() {
    ++sends_;
    metrics::ProxyMetrics::sent(metrics_marks_, steady_nanos());
    if (kept_refusal_) {
        // The retry after a vendor 429 is on its way: the refusal kept for the
        // client is no longer needed, and only now does the retry count.
        kept_refusal_ = false;
        runtime_->feedback[route_index_]->retried.fetch_add(1, std::memory_order_relaxed);
    }
    auto& req = request_parser_->get();
    if (replaying_ && replay_body_.empty()) replaying_ = false;
    // A chunked request always has a body on the wire (its last-chunk at least).
    const bool chunked = forward_chunked_;
    const bool bodyless = !replaying_ && request_parser_->is_done() && !chunked;
    request_writer_.start_request(req.base(), chunked, bodyless);
    // With a body, the head leaves together with its first piece, in one write.
    if (!bodyless) return relay_request_body();
    write_to_upstream(request_writer_.next(nullptr, 0, true));
}

void ClientSession::relay_request_body() {
    if (replaying_) {
        // The body read before admission (or kept for a retry after a vendor 429),
        // or the start of a long chunked one whose rest streams after it.
        replaying_ = false;
        return write_to_upstream(
            request_writer_.next(replay_body_.data(), replay_body_.size(), request_parser_->is_done()));
    }
    if (request_parser_->is_done()) return write_to_upstream(request_writer_.next(nullptr, 0, true));
    if (end_watch_then(Resume::request_body)) return;
    if (!body_buffer_) body_buffer_ = std::make_unique<char[]>(kBodyBufferSize);
    auto& body = request_parser_->get().body();
    body.data = body_buffer_.get();
    body.size = kBodyBufferSize;
    time_body_read();
    read(ReadStep::request_body);
}

void ClientSession::on_request_body_read(beast::error_code ec, std::size_t) {
    ec = settle(ec);
    if (ec == http::error::need_buffer) ec = {};
    if (ec) return fail_request_body(ec);
    const std::size_t size = kBodyBufferSize - request_parser_->get().body().size;
    if (replayable_) {
        if (replay_body_.size() + size <= config().server.max_buffered_body_bytes) {
            replay_body_.append(body_buffer_.get(), size);
        } else {
            replayable_ = false;
            std::string().swap(replay_body_);
        }
    }
    write_to_upstream(request_writer_.next(body_buffer_.get(), size, request_parser_->is_done()));
}

void ClientSession::write_to_upstream(const RelayWriter::Buffers& buffers) {
    if (total_size(buffers) == 0) return on_request_written({}, 0);  // an empty piece: read on
    time_upstream(upstream_config().body_timeout);
    upstream_->with_stream(
        [&](auto& stream) { write(stream, buffers, step(&ClientSession::on_request_written), true); });
}

void ClientSession::on_request_written(beast::error_code ec, std::size_t) {
    if (closed_) return do_close();  // abandoned while this write was under way: the connection goes back
    ec = settle(ec);
    if (ec) {
        if (retry_on_fresh_connection(ec)) return;
        return fail_upstream(
            ec == beast::error::timeout ? Errc::upstream_timeout : Errc::upstream_closed,
            "sending the request to '" + upstream_config().name + "' failed: " + ec.message(), false);
    }
    if (request_writer_.done()) {
        // The share bounds connections held while a client sends; from here the vendor's
        // answer holds this one, as for any request. Ending it now (not after the response is
        // relayed) also means a client that has its answer never finds the share still taken.
        end_streamed_body();
        return read_response_header();
    }
    relay_request_body();
}

void ClientSession::read_response_header() {
    sync_header_reads_ = 0;
    response_parser_.emplace(std::piecewise_construct, std::make_tuple(),
                             std::make_tuple(ArenaAllocator<char>(&header_arena_)));
    response_parser_->body_limit(
        boost::none);  // streamed through a fixed buffer: size is not a memory concern
    response_parser_->header_limit(kResponseHeaderLimit);
    if (head_request_) response_parser_->skip(true);
    time_upstream(upstream_config().response_timeout);
    read(ReadStep::response_header);
}

void ClientSession::on_response_header(beast::error_code ec, std::size_t) {
    ec = settle(ec);
    if (access_log_) note_answered();
    if (ec) {
        if (retry_on_fresh_connection(ec)) return;
        if (ec == beast::error::timeout) {
            return fail_upstream(Errc::upstream_timeout,
                                 "upstream '" + upstream_config().name + "' did not answer within " +
                                     std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                        upstream_config().response_timeout)
                                                        .count()) +
                                     "ms",
                                 false);
        }
        const bool closed = ec == http::error::end_of_stream || ec == net::error::eof ||
                            ec == net::error::connection_reset || ec == http::error::partial_message;
        return fail_upstream(closed ? Errc::upstream_closed : Errc::upstream_protocol_error,
                             "bad response from '" + upstream_config().name + "': " + ec.message(), false);
    }
    auto& res = response_parser_->get();
    const unsigned status = res.result_int();
    if (status / 100 == 1) {
        if (status == 101) {
            return fail_upstream(Errc::upstream_protocol_error,
                                 "upstream '" + upstream_config().name + "' switched protocols unasked",
                                 false);
        }
        return read_response_header();  // interim (100, 103): the final answer follows
    }
    runtime_->metrics.upstream_responded(metrics_marks_, status, steady_nanos());
    // The upstream's own view (a close-delimited body ends with the connection);
    // a head that another parser could frame differently leaves bytes nobody can
    // place, so its connection carries no second exchange.
    upstream_reusable_ = response_parser_->keep_alive() && !response_framing_is_ambiguous(res.base());
    vendor_body_.clear();
    relay_vendor_body_ = false;
    const auto& feedback = upstream_config().feedback;
    const bool feedback_signals =
        feedback.enabled && (status == 429 || status == 503 || has_rate_limit_fields(res.base()));
    if (settles_costs_) {
        if (settle_body_limit_ > 0 && settles_from_body(res.base(), status)) {
            // Settled when the body is in (on_settle_body_read), before the client sees the head.
            reading_settle_body_ = true;
            feedback_after_settle_ = feedback_signals;
            return read_vendor_body();
        }
        settle_costs(std::nullopt);
    }
    if (feedback_signals) {
        if (!head_request_ && !status_has_no_body(status) && feedback::wants_body(status, feedback.signals)) {
            return read_vendor_body();
        }
        return on_vendor_response(false);
    }
    relay_response_header();
}

// ---------------------------------------------------------------- vendor feedback

bool ClientSession::settles_from_body(const ArenaFields& head, unsigned status) const {
    if (head_request_ || status / 100 != 2 || status_has_no_body(status)) return false;
    // A compressed body cannot be read without inflating it, which sluice does not do on the
    // request path: its settle.body limits keep the admitted cost (logged once in a while).
    if (const auto encoding = find_field(head, "Content-Encoding");
        encoding && !beast::iequals(*encoding, "identity")) {
        runtime_->feedback[route_index_]->clamped.fetch_add(1, std::memory_order_relaxed);
        SLUICE_LOG_LIMITED(log::Level::warn, "feedback",
                           "route '" + config().routes[route_index_].name +
                               "': a response with Content-Encoding " + printable_excerpt(*encoding) +
                               " cannot be read for cost.settle.body; the admitted cost stands");
        return false;
    }
    return true;
}

void ClientSession::on_settle_body_read() {
    const bool done = response_parser_->is_done();
    if (!done && vendor_body_.size() <= settle_body_limit_) return read_vendor_body();
    reading_settle_body_ = false;
    // One read may bring more than the bound: a body over it is not parsed either way.
    const bool whole = done && vendor_body_.size() <= settle_body_limit_;
    if (!whole) {
        // Too long to hold: the admitted cost stands, and what was read goes ahead of the rest.
        runtime_->feedback[route_index_]->clamped.fetch_add(1, std::memory_order_relaxed);
        SLUICE_LOG_LIMITED(log::Level::warn, "feedback",
                           "route '" + config().routes[route_index_].name + "': a response body over " +
                               std::to_string(settle_body_limit_) +
                               " bytes (cost.settle.body.max_bytes) is not read; the admitted cost stands");
    }
    settle_costs(whole ? std::optional<std::string_view>(vendor_body_) : std::nullopt);
    if (feedback_after_settle_) {
        const auto& feedback = upstream_config().feedback;
        const unsigned status = response_parser_->get().result_int();
        return on_vendor_response(whole && vendor_body_.size() <= kVendorBodyLimit &&
                                  feedback::wants_body(status, feedback.signals));
    }
    relay_vendor_body_ = !vendor_body_.empty();
    relay_response_header();
}

void ClientSession::settle_costs(std::optional<std::string_view> body) {
    const auto& head = response_parser_->get().base();
    std::vector<limit::LimitUse> more;
    std::vector<limit::LimitUse> less;
    for (const auto& use : uses_) {
        const auto& limit_config = runtime_->limit_config(use.limit_index);
        const auto& cost = limit_config.cost;
        std::optional<std::int64_t> charged;
        if (const auto& rule = cost.settle_body) {
            if (!body) continue;  // no 2xx body read: the admitted cost stands
            const auto read = cost::read_body_cost(*body, rule->kind, rule->pointer);
            if (read.problem == cost::BodyCostProblem::missing) continue;  // not said
            if (!read.ok()) {
                runtime_->feedback[route_index_]->clamped.fetch_add(1, std::memory_order_relaxed);
                SLUICE_LOG_LIMITED(log::Level::warn, "feedback",
                                   "limit '" + limit_config.name + "': the response's " + read.message +
                                       "; the cost is not settled");
                continue;
            }
            charged = read.units;
        } else {
            const auto& header = cost.settle_header;
            if (header.empty()) continue;
            const auto value = find_field(head, header);
            if (!value) continue;  // not said: the admitted cost stands
            charged = limit::parse_unit_count(*value);
            if (!charged) {
                // Malformed: no correction (never a guess), counted with the feedback values ignored.
                runtime_->feedback[route_index_]->clamped.fetch_add(1, std::memory_order_relaxed);
                SLUICE_LOG_LIMITED(log::Level::warn, "feedback",
                                   "limit '" + limit_config.name + "': " + header + " " +
                                       printable_excerpt(*value) +
                                       " is not a non-negative integer; the cost is not settled");
                continue;
            }
        }
        if (*charged > use.cost)
            more.push_back(limit::LimitUse{use.limit_index, use.key, *charged - use.cost});
        if (*charged < use.cost)
            less.push_back(limit::LimitUse{use.limit_index, use.key, use.cost - *charged});
    }
    runtime_->limits->settle(more, less, admitted_at_, lease_);
}

void ClientSession::read_vendor_body() {
    if (!body_buffer_) body_buffer_ = std::make_unique<char[]>(kBodyBufferSize);
    auto& body = response_parser_->get().body();
    body.data = body_buffer_.get();
    body.size = kBodyBufferSize;
    time_upstream(upstream_config().body_timeout);
    read(ReadStep::vendor_body);
}

void ClientSession::on_vendor_body_read(beast::error_code ec, std::size_t) {
    ec = settle(ec);
    if (ec == http::error::need_buffer) ec = {};
    if (ec) {
        return fail_upstream(
            ec == beast::error::timeout ? Errc::upstream_timeout : Errc::upstream_closed,
            "reading a 429 body from '" + upstream_config().name + "' failed: " + ec.message(), false);
    }
    auto& body = response_parser_->get().body();
    vendor_body_.append(body_buffer_.get(), kBodyBufferSize - body.size);
    if (reading_settle_body_) return on_settle_body_read();
    if (retry_after_body_) {
        // Reading the 429 whole, to keep it for the client while its retry waits.
        if (response_parser_->is_done()) {
            retry_after_body_ = false;
            return retry_after_vendor_refusal();
        }
        if (vendor_body_.size() < kVendorBodyLimit) return read_vendor_body();
        // Too long to keep: no retry, the client gets this 429 (the rest streams after what was read).
        retry_after_body_ = false;
        runtime_->feedback[route_index_]->relayed_429.fetch_add(1, std::memory_order_relaxed);
        relay_vendor_body_ = true;
        return relay_response_header();
    }
    if (response_parser_->is_done()) return on_vendor_response(true);
    // Too long to be a rate-limit notice worth parsing: decide on the headers, and
    // relay what was read ahead of the rest of the stream.
    if (vendor_body_.size() >= kVendorBodyLimit) return on_vendor_response(false);
    read_vendor_body();
}

void ClientSession::on_vendor_response(bool have_body) {
    auto& res = response_parser_->get();
    const unsigned status = res.result_int();
    const auto& settings = upstream_config().feedback;
    const auto now = runtime_->limits->clock().now();
    const auto signal = feedback::read_vendor_signals(
        status, [&res](std::string_view name) { return find_field(res.base(), name); },
        have_body ? std::optional<std::string_view>(vendor_body_) : std::nullopt, settings.signals, now);
    auto& counters = *runtime_->feedback[route_index_];
    const auto& route_name = config().routes[route_index_].name;
    for (const auto& warning : signal.warnings)
        SLUICE_LOG_LIMITED(log::Level::warn, "feedback", "route '" + route_name + "': " + warning);
    if (signal.clamped || !signal.warnings.empty()) counters.clamped.fetch_add(1, std::memory_order_relaxed);

    // What each limit admitted for its key after this request: the vendor had not
    // counted those when it answered.
    std::vector<std::int64_t> admitted_after(uses_.size(), 0);
    const auto& tally = runtime_->limits->tally();
    for (std::size_t i = 0; i < uses_.size() && i < admitted_marks_.size(); ++i)
        admitted_after[i] = tally.since(uses_[i].limit_index, uses_[i].key, admitted_marks_[i]);
    const auto reaction =
        runtime_->limits->react(uses_, admitted_after, signal, settings, status, may_retry(), deadline_);

    if (reaction.vendor_429) counters.vendor_429.fetch_add(1, std::memory_order_relaxed);
    if (reaction.paused) counters.paused.fetch_add(1, std::memory_order_relaxed);
    if (reaction.paused && reaction.pause)
        counters.paused_nanos.fetch_add(
            static_cast<std::uint64_t>(std::max(Nanos::zero(), *reaction.pause).count()),
            std::memory_order_relaxed);
    if (reaction.capped) counters.capped.fetch_add(1, std::memory_order_relaxed);
    if (reaction.lowered) counters.lowered.fetch_add(1, std::memory_order_relaxed);
    if (reaction.paused && signal.rate_limited) {
        SLUICE_LOG_LIMITED(log::Level::info, "feedback",
                           "route '" + route_name + "': vendor " + std::to_string(status) + " (" +
                               std::string(feedback::signal_source_name(signal.pause_source)) +
                               ", matched by " + std::string(feedback::match_rule_name(reaction.matched_by)) +
                               "), pausing for " +
                               std::to_string(seconds_of(reaction.pause.value_or(Nanos::zero()))) + "s");
    }
    if (reaction.lowered) {
        for (const auto& action : reaction.actions) {
            if (action.kind != feedback::FeedbackAction::Kind::lower_limit) continue;
            SLUICE_LOG_LIMITED(log::Level::info, "feedback",
                               "route '" + route_name + "': limit '" +
                                   runtime_->limit_config(uses_[action.limit].limit_index).name +
                                   "' learned from the vendor: " + std::to_string(action.units) +
                                   " per window");
        }
    }
    if (reaction.capped) {
        log::debug("feedback", "route '" + route_name + "': vendor reports " +
                                   std::to_string(signal.remaining.value_or(0)) + " remaining (matched by " +
                                   std::string(feedback::match_rule_name(reaction.matched_by)) + ")");
    }

    if (reaction.retry()) {
        // The retry waits in the queue; the client gets this 429 if it cannot be
        // admitted in time, so the whole response is read and kept first.
        if (!response_parser_->is_done()) {
            retry_after_body_ = true;
            return read_vendor_body();
        }
        return retry_after_vendor_refusal();
    }
    if (reaction.relayed_429) counters.relayed_429.fetch_add(1, std::memory_order_relaxed);
    relay_vendor_body_ = !vendor_body_.empty();
    relay_response_header();
}

// Whether this request may be sent again after a vendor 429, the pause aside
// (the reaction checks that the pause ends before the request's deadline).
bool ClientSession::may_retry() const {
    const auto& retry = config().routes[route_index_].retry;
    if (!retry.on_vendor_429 || closed_ || sends_ >= retry.max_attempts) return false;
    if (!is_idempotent(request_parser_->get().method()) && !retry.non_idempotent) return false;
    // The whole body must be at hand to send it again.
    return request_parser_->is_done() && replayable_;
}

void ClientSession::retry_after_vendor_refusal() {
    log::debug("feedback", "retrying " + describe_request() + " after a vendor 429");
    // The refused exchange is over (its response read whole): its connection
    // goes back, and its concurrency permits too. Rate permits stay spent: the
    // vendor counted the request too. The response itself is kept, for the client
    // if the retry cannot be admitted.
    release_upstream(upstream_reusable_ && response_parser_->is_done());
    release_permits();
    kept_refusal_ = true;
    replaying_ = true;
    expect_continue_ = false;  // the client already sent its body
    attempts_ = 0;
    const Nanos now = runtime_->limits->clock().now().mono;
    request_admission(std::max(Nanos::zero(), deadline_ - now));
}

// The retry of a vendor 429 was refused (queue full, the pause outlasting the
// deadline, draining): the client gets the vendor's own 429, as if never retried.
void ClientSession::relay_kept_refusal() {
    kept_refusal_ = false;
    runtime_->feedback[route_index_]->relayed_429.fetch_add(1, std::memory_order_relaxed);
    log::debug("feedback",
               "the retry of " + describe_request() + " was not admitted; relaying the vendor's 429");
    relay_vendor_body_ = !vendor_body_.empty();
    relay_response_header();
}

void ClientSession::relay_response_header() {
    runtime_->metrics.relayed(metrics_marks_);
    auto& res = response_parser_->get();
    const unsigned status = res.result_int();
    if (access_log_) {
        record_.status = status;
        record_.answered_by.assign("vendor");
    }
    strip_hop_by_hop(res.base());
    if (config().server.rate_limit_headers.on_proxied && tightest_limit_) {
        add_rate_limit_headers(res.base(), config().server.rate_limit_headers.style,
                               runtime_->limit_config(*tightest_limit_), tightest_,
                               runtime_->limits->clock().now());
    }
    const bool bodyless = head_request_ || status_has_no_body(status);
    bool chunked = false;
    if (!bodyless) {
        // The client gets the body framed as sluice read it, in framing sluice
        // writes: the vendor's own chunked or length, or for a close-delimited
        // body chunked (a 1.0 client: close-delimited).
        chunked = response_parser_->chunked();
        const auto length = std_optional(response_parser_->content_length());
        if (!chunked && !length) {
            if (version_ >= 11) {
                chunked = true;
            } else {
                keep_alive_ = false;
            }
        }
        if (version_ < 11 && chunked) {
            chunked = false;  // HTTP/1.0 has no chunked coding: stream raw and close
            keep_alive_ = false;
        }
        set_forwarded_framing(res.base(), chunked, chunked ? std::nullopt : length);
    }
    res.version(version_ < 11 ? 10 : 11);
    if (runtime_->draining.load(std::memory_order_relaxed)) keep_alive_ = false;
    // Connection was stripped with the other hop-by-hop fields: say only what
    // the version's default does not (what res.keep_alive(bool) would, without its scan).
    if (version_ >= 11 && !keep_alive_) res.set(http::field::connection, "close");
    if (version_ < 11 && keep_alive_) res.set(http::field::connection, "keep-alive");
    response_writer_.start_response(res.base(), chunked, bodyless);
    response_started_ = true;
    if (bodyless) return write_to_client(response_writer_.next(nullptr, 0, true));
    // The head goes out with the first piece of the body, in one write.
    relay_response_body();
}

void ClientSession::relay_response_body() {
    if (relay_vendor_body_) {
        // The start of the body, read ahead to look for a rate-limit field.
        relay_vendor_body_ = false;
        return write_to_client(
            response_writer_.next(vendor_body_.data(), vendor_body_.size(), response_parser_->is_done()));
    }
    if (response_parser_->is_done()) return write_to_client(response_writer_.next(nullptr, 0, true));
    if (!body_buffer_) body_buffer_ = std::make_unique<char[]>(kBodyBufferSize);
    auto& body = response_parser_->get().body();
    body.data = body_buffer_.get();
    body.size = kBodyBufferSize;
    // A small response usually arrived whole with its header: read() takes what
    // is already buffered without a trip through the scheduler.
    time_upstream(upstream_config().body_timeout);
    read(ReadStep::response_body);
}

void ClientSession::on_response_body_read(beast::error_code ec, std::size_t) {
    ec = settle(ec);
    if (ec == http::error::need_buffer) ec = {};
    if (ec && !response_writer_.head_sent()) {
        // Nothing reached the client yet (the head leaves with the first piece):
        // it can still be told, with a 502, instead of an empty reply.
        response_started_ = false;
        return fail_upstream(Errc::upstream_protocol_error,
                             "bad response body from '" + upstream_config().name + "': " + ec.message(),
                             false);
    }
    if (ec) {
        // The client already has the status line: all that is left is to cut the
        // connection so it cannot mistake a truncated body for a whole one.
        SLUICE_LOG_LIMITED(log::Level::warn, "proxy",
                           "upstream '" + upstream_config().name + "' failed mid-body for " +
                               describe_request() + ": " + ec.message());
        runtime_->counters.upstream_errors.fetch_add(1, std::memory_order_relaxed);
        runtime_->metrics.failed_mid_body(metrics_marks_);
        release_upstream(false);
        return do_close();
    }
    const std::size_t size = kBodyBufferSize - response_parser_->get().body().size;
    write_to_client(response_writer_.next(body_buffer_.get(), size, response_parser_->is_done()));
}

void ClientSession::write_to_client(const RelayWriter::Buffers& buffers) {
    client_write_size_ = total_size(buffers);
    if (client_write_size_ == 0) return on_response_written({}, 0);  // an empty piece: read on
    time_client(config().server.timeouts.client_write);
    write(socket_, buffers, step(&ClientSession::on_response_written), false);
}

void ClientSession::on_response_written(beast::error_code ec, std::size_t) {
    ec = settle(ec);
    if (ec) {
        release_upstream(false);
        return do_close();
    }
    record_.bytes_out += client_write_size_;
    if (response_writer_.done()) return finish_exchange();
    relay_response_body();
}

void ClientSession::finish_exchange() {
    if (access_log_) end_record(true);
    release_permits();
    end_streamed_body();
    release_upstream(upstream_reusable_ && response_parser_ && response_parser_->is_done() &&
                     request_writer_.done());
    if (keep_alive_ && request_parser_->is_done()) return do_read_header();
    do_close();
}

// ---------------------------------------------------------------- failures

bool ClientSession::retry_on_fresh_connection(const beast::error_code& ec) {
    // A pooled connection the upstream closed at the same moment we reused it
    // fails before any response byte. Retrying is safe only when the whole body
    // is still at hand and the connection was a reused one (a fresh connection
    // failing is a real failure).
    const bool race = ec == http::error::end_of_stream || ec == net::error::eof ||
                      ec == net::error::connection_reset || ec == net::error::broken_pipe;
    if (!race || !upstream_ || upstream_->requests_served == 0 || attempts_ > 1) return false;
    // The request was written, perhaps whole: the vendor may have acted on it.
    // Only a method that may be repeated is sent again (RFC 9112 9.3.1).
    if (!is_idempotent(request_parser_->get().method())) return false;
    // The whole body must be at hand to send it again (a held one is).
    if (!request_parser_->is_done() || !replayable_) return false;
    log::debug("proxy", "pooled connection to '" + upstream_config().name + "' was closed; retrying once");
    release_upstream(false);
    replaying_ = true;
    acquire_upstream();
    return true;
}

void ClientSession::fail_upstream(Errc code, const std::string& why, bool) {
    runtime_->counters.upstream_errors.fetch_add(1, std::memory_order_relaxed);
    SLUICE_LOG_LIMITED(log::Level::warn, "proxy", describe_request() + ": " + why);
    release_upstream(false);
    if (response_started_) return do_close();
    const bool body_consumed = request_parser_ && request_parser_->is_done();
    send_synthetic(make_error_response(code, why, version_, keep_alive_ && body_consumed));
}

void ClientSession::send_synthetic(SyntheticResponse response) {
    if (closed_) return;
    if (access_log_) note_synthetic(response);
    record_synthetic_outcome(runtime_->metrics, metrics_marks_, response);
    if (!response.keep_alive() || runtime_->draining.load(std::memory_order_relaxed)) keep_alive_ = false;
    synthetic_.emplace(std::move(response));
    synthetic_->version(version_ < 11 ? 10 : 11);
    synthetic_->keep_alive(keep_alive_);
    time_client(config().server.timeouts.client_write);
    http::async_write(socket_, *synthetic_, step(&ClientSession::on_synthetic_written));
}

void ClientSession::on_synthetic_written(beast::error_code ec, std::size_t bytes) {
    ec = settle(ec);
    if (access_log_) {
        record_.bytes_out += bytes;
        end_record(!ec);
    }
    synthetic_.reset();
    release_permits();
    end_streamed_body();
    release_upstream(false);
    if (!ec && keep_alive_ && request_parser_ && request_parser_->is_done()) return do_read_header();
    do_close();
}

void ClientSession::release_upstream(bool reusable) {
    if (!upstream_) return;
    if (reusable) ++upstream_->requests_served;
    runtime_->pools[upstream_index_]->release(std::move(upstream_), reusable);
}

void ClientSession::release_permits() {
    if (!holds_permits_) return;
    holds_permits_ = false;
    runtime_->limits->release(uses_, std::exchange(lease_, 0));
}

void ClientSession::do_close() {
    closed_ = true;
    end_record(false);  // a request cut short (the client left, or the answer could not be finished)
    timed_side_ = TimedSide::none;
    watchdog_.cancel();
    release_permits();
    end_streamed_body();
    release_upstream(false);
    beast::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_send, ignored);
    socket_.close(ignored);
}

}  // namespace sluice::proxy
