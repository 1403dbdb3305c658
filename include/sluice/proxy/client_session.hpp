#pragma once
// One client connection: reads requests in order (pipelined ones wait in the
// read buffer and are answered in order), routes each, obtains admission from
// the limit service (possibly waiting in its queue), then relays the request to
// a pooled upstream connection and the response back, streaming both bodies
// through one fixed buffer. Every operation has a timeout; every handler runs
// on the session's strand and holds the session alive through shared_from_this().

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/parser.hpp>

#include "sluice/access_log/request_record.hpp"
#include "sluice/limit/request_key.hpp"
#include "sluice/proxy/header_arena.hpp"
#include "sluice/proxy/relay_writer.hpp"
#include "sluice/proxy/runtime.hpp"
#include "sluice/proxy/synthetic_response.hpp"
#include "sluice/queue/admission_controller.hpp"
#include "sluice/upstream/connection_pool.hpp"

namespace sluice::proxy {

struct RequestIntake;  // upstream_request.hpp

class ClientSession : public std::enable_shared_from_this<ClientSession> {
public:
    ClientSession(boost::asio::ip::tcp::socket socket, std::shared_ptr<Runtime> runtime,
                  std::size_t listener_index);
    ~ClientSession();
    void start();

private:
    // Both parsers keep their fields in the session's arena (header_arena.hpp).
    using RequestParser =
        boost::beast::http::request_parser<boost::beast::http::buffer_body, ArenaAllocator<char>>;
    using ResponseParser =
        boost::beast::http::response_parser<boost::beast::http::buffer_body, ArenaAllocator<char>>;

    // The crash barrier: every completion handler is a step(), which runs the
    // member under guarded(); an exception escaping it closes this session
    // (counted, logged at a bounded rate) instead of unwinding io_context::run().
    template <class Member, class... Bound>
    auto step(Member member, Bound... bound);
    template <class Body>
    void guarded(Body&& body) noexcept;
    void on_step_exception(const char* what) noexcept;

    template <class Handler>
    auto on_strand(Handler&& handler);
    template <class Handler>
    void post_to_session(Handler&& handler);

    // Timeouts: one watchdog timer per session instead of one per operation. A
    // session has at most one timed operation under way (on the client or the
    // upstream connection); time_*() gives it its deadline, settle() ends it.
    enum class TimedSide : std::uint8_t { none, client, upstream };
    void time_client(Nanos timeout);
    void time_upstream(Nanos timeout);
    void time_body_read();  // client_body per read, within client_body_total for the whole body
    void set_deadline(TimedSide side, std::chrono::steady_clock::time_point deadline);
    void arm_watchdog(std::chrono::steady_clock::time_point at);
    void on_watchdog(boost::beast::error_code ec);
    boost::beast::error_code settle(boost::beast::error_code ec);

    // Reading. Whatever is already buffered is parsed first; the socket is read
    // only when the parser needs more bytes. A step completes when its part of
    // the message is parsed (a header, or the next piece of a body) and goes to
    // its handler below, with no composed operation in between.
    enum class ReadStep : std::uint8_t {
        request_header,
        held_body,  // a body read whole before admission
        request_body,
        response_header,
        response_body,
        vendor_body
    };
    static bool reads_client(ReadStep step);  // else it reads the upstream connection
    void read(ReadStep step);
    template <class Parser>
    bool parse_buffered(Parser& parser, boost::beast::flat_buffer& buffer, bool header_only,
                        boost::beast::error_code& ec);
    void on_read_some(ReadStep step, boost::beast::error_code ec, std::size_t bytes);
    void read_done(ReadStep step, boost::beast::error_code ec);

    // Writing: a plain socket is written synchronously first (non-blocking); only
    // what the kernel did not take goes out asynchronously.
    template <class Stream, class Handler>
    void write(Stream& stream, const RelayWriter::Buffers& buffers, Handler&& handler, bool bind_to_session);

    // Request intake.
    void do_read_header();
    void on_read_header(boost::beast::error_code ec, std::size_t bytes);
    void handle_request();
    // Drain: waiting for a next header, the session is registered in
    // runtime_->idle_sessions and woken (closed) when draining begins.
    bool watch_idle_for_drain();  // false: draining already, close instead of waiting
    void on_drain_while_idle();
    bool prepare_upstream_request(const route::RouteMatchResult& match, std::string_view query);

    // The request body, before admission. One up to server.max_buffered_body_bytes is
    // read whole first (a slow client then holds no quota and no upstream connection,
    // and the vendor gets it with a Content-Length); a larger one is streamed, within
    // its upstream's max_streamed_bodies share of the pool.
    void take_body();
    // The body is whole in replay_body_: read the costs some limits take from it (refusing the
    // request with a 4xx when one cannot be read), then ask for admission.
    void admit_held_body();
    void refuse_unread_body_cost();
    void read_held_body();
    void on_held_body_read(boost::beast::error_code ec, std::size_t);
    void stream_body();
    void end_streamed_body();
    void fail_request_body(boost::beast::error_code ec);

    // Admission.
    void request_admission(Nanos max_wait);
    void on_queued_decision(const queue::Admission& admission);
    void apply_admission(const queue::Admission& admission);
    void on_admitted();

    // Watching the client from the request's end until its response begins: a read
    // that ends with EOF means the client left (leave the queue, or abandon the
    // upstream exchange and give back its connection and permits); bytes it sent
    // ahead are kept for the parser. Whatever next reads the client socket first
    // ends the watch and resumes once its read has completed.
    // as_header_read: the watch's read, still waiting, is the next header's first read.
    enum class Resume : std::uint8_t { none, read_header, request_body, held_body, as_header_read };
    void watch_client();
    bool end_watch_then(Resume next);
    void on_client_watch_read(boost::beast::error_code ec, std::size_t bytes);
    void abandon_exchange();

    // Upstream exchange.
    enum class AfterContinue : std::uint8_t { read_held_body, acquire_upstream };
    void send_continue(AfterContinue next);
    void on_continue_written(AfterContinue next, boost::beast::error_code ec, std::size_t);
    void acquire_upstream();
    void on_upstream_acquired(std::error_code ec, upstream::ConnectionPtr connection);
    void write_request_header();
    void relay_request_body();
    void on_request_body_read(boost::beast::error_code ec, std::size_t);
    void write_to_upstream(const RelayWriter::Buffers& buffers);
    void on_request_written(boost::beast::error_code ec, std::size_t);
    void read_response_header();
    void on_response_header(boost::beast::error_code ec, std::size_t);
    void relay_response_header();
    void relay_response_body();
    void on_response_body_read(boost::beast::error_code ec, std::size_t);
    void write_to_client(const RelayWriter::Buffers& buffers);
    void on_response_written(boost::beast::error_code ec, std::size_t);
    void finish_exchange();

    // Vendor feedback: a response carrying rate-limit signals (docs/feedback.md).
    void read_vendor_body();
    void on_vendor_body_read(boost::beast::error_code ec, std::size_t);
    void on_vendor_response(bool have_body);
    // cost.settle: the units the vendor says it charged correct each limit's count, from its
    // headers and, for a settle.body limit, from `body` (the whole 2xx body; nullopt: none read).
    void settle_costs(std::optional<std::string_view> body);
    // A settle.body limit's value comes from the vendor's 2xx body: read it (bounded) first.
    bool settles_from_body(const ArenaFields& head, unsigned status) const;
    void on_settle_body_read();
    bool may_retry() const;
    void retry_after_vendor_refusal();
    void relay_kept_refusal();

    // Failure paths.
    void fail_upstream(Errc code, const std::string& why, bool response_started);
    bool retry_on_fresh_connection(const boost::beast::error_code& ec);
    void send_synthetic(SyntheticResponse response);
    void on_synthetic_written(boost::beast::error_code ec, std::size_t);
    void release_upstream(bool reusable);
    void release_permits();
    void do_close();

    // The access log (client_session_log.cpp): each is called only when the log is on
    // (access_log_ set), at the points of a request's life that it records.
    void begin_record();
    void note_request(const RequestIntake& intake);
    void note_class(const limit::UseMarks& marks);  // the class and fair-share caller, once known
    void note_queued(const queue::Admission& admission);
    void note_admission(const queue::Admission& admission);
    void note_sent();
    void note_answered();
    void note_synthetic(const SyntheticResponse& response);
    void end_record(bool complete) noexcept;

    const config::Config& config() const { return *runtime_->config; }
    const config::UpstreamConfig& upstream_config() const { return config().upstreams[upstream_index_]; }
    std::string describe_request() const;

    boost::asio::ip::tcp::socket socket_;
    boost::beast::flat_buffer buffer_;
    std::shared_ptr<Runtime> runtime_;
    std::size_t listener_index_;
    std::string client_address_;
    boost::asio::steady_timer watchdog_;
    std::chrono::steady_clock::time_point op_deadline_{};
    std::chrono::steady_clock::time_point watchdog_at_ = std::chrono::steady_clock::time_point::max();
    TimedSide timed_side_ = TimedSide::none;
    bool timed_out_ = false;          // the watchdog cancelled the operation under way
    unsigned inline_steps_ = 0;       // read steps completed without a trip through the scheduler, in a row
    unsigned sync_header_reads_ = 0;  // synchronous reads of this response header (read())

    HeaderArena header_arena_;  // before the parsers: it must outlive their fields
    std::optional<RequestParser> request_parser_;
    RelayWriter request_writer_;
    std::optional<ResponseParser> response_parser_;
    RelayWriter response_writer_;
    std::optional<SyntheticResponse> synthetic_;
    std::unique_ptr<char[]> body_buffer_;

    // The current exchange.
    std::size_t route_index_ = 0;
    std::size_t upstream_index_ = 0;
    std::vector<limit::LimitUse> uses_;
    // Priority classes and fair shares (docs/priorities.md): the request's class (an index into
    // Config::priorities.classes; 0 without classes), and, on a route with a fair-shared limit,
    // that limit's place in uses_, the caller's hash and weight.
    std::size_t priority_class_ = 0;  // docs/priorities.md: 0 without priorities
    limit::UseMarks use_marks_;       // what collect_limit_uses found beside uses_
    // Some of uses_ read their cost from the body (cost.body): it must be read whole, up to
    // held_body_limit_ (the server's max_buffered_body_bytes, or a limit's larger max_bytes).
    bool body_costs_ = false;
    bool settles_costs_ = false;  // some of uses_ are corrected from the response (cost.settle)
    std::size_t held_body_limit_ = 0;
    // The largest response body a settle.body limit of uses_ reads (0: none settles from the body).
    std::size_t settle_body_limit_ = 0;
    bool reading_settle_body_ = false;    // the 2xx body is being read into vendor_body_ to settle
    bool feedback_after_settle_ = false;  // then the response goes to the feedback reaction
    limit::Decision tightest_;
    std::optional<std::size_t> tightest_limit_;
    bool holds_permits_ = false;
    std::uint64_t lease_ = 0;  // shared limits: the store's lease on its permits (Admission::lease)
    queue::TicketId waiting_ticket_ = 0;
    bool watching_client_ = false;  // the watch's read is under way (it owns the read buffer's free space)
    Resume resume_after_watch_ = Resume::none;  // what to do once that read has ended
    upstream::ConnectionPtr upstream_;
    bool upstream_reusable_ = false;
    bool keep_alive_ = false;
    bool expect_continue_ = false;
    bool head_request_ = false;
    bool response_started_ = false;
    unsigned version_ = 11;
    int attempts_ = 0;      // connection acquisitions for this send (stale-connection retry)
    Nanos admitted_at_{0};  // mono: when the admission consumed the request's units
    unsigned sends_ = 0;    // times this request was sent to the vendor (vendor-429 retries)
    Nanos deadline_{0};     // mono: the request's max_wait ends here, retries included
    Nanos max_wait_{0};     // the request's max_wait, for its admission after the body is read
    std::chrono::steady_clock::time_point body_deadline_;  // client_body_total ends here
    bool awaiting_first_byte_ = false;  // a keep-alive wait (client_idle) until the next request's first byte
    std::string replay_body_;           // the request body read so far, while <= max_buffered_body_bytes
    bool replayable_ = true;            // replay_body_ holds the whole body read so far
    bool replaying_ = false;        // the next body write sends replay_body_ (then streams the rest, if any)
    bool forward_chunked_ = false;  // the vendor gets the body chunked (streamed), else with a Content-Length
    bool streamed_body_ = false;    // holds one of the upstream's max_streamed_bodies
    std::string vendor_body_;       // a vendor 429 body read ahead (bounded) for its JSON field
    // Per use: the admission tally's total for its limit and key just after this
    // request was admitted (feedback/admission_tally.hpp); empty when feedback is off.
    std::vector<std::uint64_t> admitted_marks_;
    bool retry_after_body_ = false;  // the 429's body is being read whole before the retry
    // The vendor's 429 (head in response_parser_, body in vendor_body_) is kept while
    // its retry waits: if the retry is refused, the client gets it instead.
    bool kept_refusal_ = false;
    bool relay_vendor_body_ = false;  // vendor_body_ goes to the client before the rest of the body
    std::string method_;
    std::string host_;
    std::string path_;
    bool first_request_ = true;
    bool closed_ = false;
    std::uint64_t idle_watch_ = 0;  // the registration in runtime_->idle_sessions while waiting for a header

    // The access log: null when it is off, and then nothing below is filled but two counters.
    AccessLog* access_log_ = nullptr;
    access_log::RequestRecord record_;
    bool record_open_ = false;           // a request has begun and its line is not written yet
    std::size_t client_write_size_ = 0;  // the response bytes of the write under way
    std::chrono::steady_clock::time_point queued_at_{};  // set while waiting in the queue
    std::chrono::steady_clock::time_point sent_at_{};    // set from a send until the vendor answers
    std::string log_line_;                               // reused: no allocation per line
    metrics::ExchangeMarks metrics_marks_;               // the current request, for runtime_->metrics
};

}  // namespace sluice::proxy
