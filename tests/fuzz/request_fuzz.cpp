// A client's bytes through sluice's request path, in process: Beast's request_parser with the
// limits and buffer ClientSession uses, intake_request (CONNECT, check_request_head, the target,
// dot-segments, the route table), rewrite_for_upstream (Expect, hop-by-hop and Sluice-* fields,
// framing, target, Host) and the RelayWriter's serialization of head and body, re-chunked.
// Properties:
//  - no crash, leak or UB, no exception (the request path never throws);
//  - DIFFERENTIAL: what would be written upstream, parsed by llhttp (an HTTP parser that is not
//    Beast), is exactly the requests sluice accepted, in order: same method, target and body, one
//    message per request, nothing left over, and each framed by exactly one Content-Length or
//    by Transfer-Encoding: chunked (or neither, for a request without a body).
//
// Input: byte 0 picks how the body is read (the relay buffer's size, 1..64 bytes or ClientSession's
// 32 KiB) and how the client's bytes arrive (all at once, or in reads of 1..8 bytes); the rest is
// what the client sends on one connection, pipelined requests included.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <llhttp.h>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>

#include "sluice/config/loader.hpp"
#include "sluice/proxy/header_arena.hpp"
#include "sluice/proxy/http_headers.hpp"
#include "sluice/proxy/relay_writer.hpp"
#include "sluice/proxy/upstream_request.hpp"
#include "sluice/route/route_table.hpp"

#include "fuzz/fuzz_check.hpp"

namespace http = boost::beast::http;
namespace proxy = sluice::proxy;

namespace {

// Small limits, so that 4 KiB inputs reach them. Every route names its methods: llhttp knows a
// fixed list of methods, while HTTP (and Beast, and sluice) allow any token.
constexpr std::string_view kConfig = R"(
server: {max_header_bytes: 1k, max_body_bytes: 2k, forwarded: {x_forwarded_for: true, x_forwarded_proto: true}}
upstreams:
  api: {url: "http://127.0.0.1:9/v1"}
  other: {url: "http://[::1]:8080"}
routes:
  - {match: {path: "/items/{id}/**", methods: [GET, HEAD, DELETE]}, upstream: api}
  - {match: {path_prefix: /strip/, methods: [GET, POST, PUT, PATCH, OPTIONS]}, strip_prefix: true, upstream: api}
  - {match: {path_prefix: /, host: "*.example.com", methods: [GET, POST]}, upstream: other}
  - {match: {path_prefix: /, methods: [POST, PUT, GET]}, upstream: api}
)";

// ClientSession's: the read buffer holds the header limit plus this much read ahead.
constexpr std::size_t kReadAheadLimit = 64 * 1024;
constexpr std::size_t kSessionBodyBuffer = 32 * 1024;

struct Fixture {
    std::shared_ptr<const sluice::config::Config> config =
        sluice::config::load_config_string(std::string(kConfig), "fuzz.yaml");
    sluice::route::RouteTable routes{*config};
};

const Fixture& fixture() {
    static const Fixture f;
    return f;
}

// What sluice forwarded, as the vendor must read it.
struct Forwarded {
    std::string method;
    std::string target;
    std::string body;
};

using RequestParser = http::request_parser<http::buffer_body, proxy::ArenaAllocator<char>>;

// The client's bytes, delivered into the session's read buffer as reads would deliver them.
class Client {
public:
    Client(std::string_view bytes, std::size_t read_size, std::size_t buffer_max)
        : bytes_(bytes), read_size_(read_size), buffer_(buffer_max) {}

    boost::beast::flat_buffer& buffer() { return buffer_; }

    // One more read; false at EOF or when the buffer is full (ClientSession's buffer_overflow).
    bool read() {
        if (bytes_.empty()) return false;
        const auto room = buffer_.max_size() - buffer_.size();
        if (room == 0) return false;
        const auto n = std::min({read_size_, room, bytes_.size()});
        const auto out = buffer_.prepare(n);
        std::copy_n(bytes_.data(), n, static_cast<char*>(out.data()));
        buffer_.commit(n);
        bytes_.remove_prefix(n);
        return true;
    }
    bool at_eof() const { return bytes_.empty(); }

private:
    std::string_view bytes_;
    std::size_t read_size_;
    boost::beast::flat_buffer buffer_;
};

// ClientSession::parse_buffered: what is buffered goes to the parser first; need_more reads on.
// Returns whether the step (head, or a body piece) is complete.
bool parse_buffered(RequestParser& parser, boost::beast::flat_buffer& buffer, bool header_only,
                    std::size_t body_buffer, boost::beast::error_code& ec) {
    while (buffer.size() > 0 && !(header_only ? parser.is_header_done() : parser.is_done())) {
        const auto used = parser.put(buffer.data(), ec);
        buffer.consume(used);
        if (ec == http::error::need_more) {
            ec = {};
            break;
        }
        if (ec == http::error::need_buffer) {
            ec = {};
            return true;
        }
        if (ec) return true;
        if (used == 0) break;
    }
    if (header_only) return parser.is_header_done();
    return parser.is_done() || parser.get().body().size < body_buffer;
}

// One step read to completion the way ClientSession::read/on_read_some do: parse, read more,
// and at EOF let the parser decide (put_eof). False: the step failed (the session answers an
// error or closes; nothing more is relayed).
bool read_step(RequestParser& parser, Client& client, bool header_only, std::size_t body_buffer) {
    while (true) {
        boost::beast::error_code ec;
        if (parse_buffered(parser, client.buffer(), header_only, body_buffer, ec)) return !ec;
        if (!client.read()) {
            if (!client.at_eof()) return false;    // buffer_overflow
            if (!parser.got_some()) return false;  // end_of_stream
            parser.put_eof(ec);
            return !ec && (header_only ? parser.is_header_done() : parser.is_done());
        }
    }
}

// ---- llhttp's reading of the upstream bytes

struct Seen {
    std::vector<Forwarded> messages;
    Forwarded current;
    std::string field;
    std::string value;
    bool in_value = false;
    unsigned content_length_fields = 0;
    unsigned transfer_encoding_fields = 0;
    bool framing_ok = true;
    std::string framing_problem;

    void end_field() {
        if (!in_value) return;
        in_value = false;
        auto lower = field;
        for (auto& c : lower) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
        if (lower == "content-length") ++content_length_fields;
        if (lower == "transfer-encoding") {
            ++transfer_encoding_fields;
            if (value != "chunked") framing_ok = false;
        }
        field.clear();
        value.clear();
    }
};

Seen& seen(llhttp_t* p) {
    return *static_cast<Seen*>(p->data);
}

llhttp_settings_t make_settings() {
    llhttp_settings_t s;
    llhttp_settings_init(&s);
    s.on_message_begin = [](llhttp_t* p) {
        auto& v = seen(p);
        v.current = {};
        v.content_length_fields = v.transfer_encoding_fields = 0;
        return 0;
    };
    s.on_url = [](llhttp_t* p, const char* at, size_t n) {
        seen(p).current.target.append(at, n);
        return 0;
    };
    s.on_header_field = [](llhttp_t* p, const char* at, size_t n) {
        auto& v = seen(p);
        v.end_field();
        v.field.append(at, n);
        return 0;
    };
    s.on_header_value = [](llhttp_t* p, const char* at, size_t n) {
        auto& v = seen(p);
        v.in_value = true;
        v.value.append(at, n);
        return 0;
    };
    s.on_headers_complete = [](llhttp_t* p) {
        auto& v = seen(p);
        v.end_field();
        v.current.method = llhttp_method_name(static_cast<llhttp_method_t>(llhttp_get_method(p)));
        // Exactly one framing: one Content-Length, or one Transfer-Encoding that is "chunked".
        if (v.content_length_fields > 1 || v.transfer_encoding_fields > 1 ||
            (v.content_length_fields == 1 && v.transfer_encoding_fields == 1)) {
            v.framing_ok = false;
        }
        return 0;
    };
    s.on_body = [](llhttp_t* p, const char* at, size_t n) {
        auto& v = seen(p);
        // Neither framing field: the request has no body (RFC 9112 6.3), whatever follows.
        if (v.content_length_fields == 0 && v.transfer_encoding_fields == 0) v.framing_ok = false;
        v.current.body.append(at, n);
        return 0;
    };
    s.on_message_complete = [](llhttp_t* p) {
        auto& v = seen(p);
        v.messages.push_back(std::move(v.current));
        v.current = {};
        return 0;
    };
    return s;
}

void check_upstream_bytes(const std::string& wire, const std::vector<Forwarded>& accepted) {
    static const llhttp_settings_t settings = make_settings();
    llhttp_t parser;
    llhttp_init(&parser, HTTP_REQUEST, &settings);
    Seen result;
    parser.data = &result;
    const auto err = llhttp_execute(&parser, wire.data(), wire.size());
    if (err != HPE_OK) {
        std::fprintf(stderr, "llhttp refused the upstream bytes: %s (%s) at offset %zu\n",
                     llhttp_errno_name(err), llhttp_get_error_reason(&parser),
                     static_cast<std::size_t>(llhttp_get_error_pos(&parser) - wire.data()));
    }
    SLUICE_FUZZ_CHECK(err == HPE_OK);
    // Nothing left over: the stream ends between messages.
    SLUICE_FUZZ_CHECK(llhttp_message_needs_eof(&parser) == 0);
    SLUICE_FUZZ_CHECK(result.current.target.empty() && result.current.body.empty());
    SLUICE_FUZZ_CHECK(result.framing_ok);
    SLUICE_FUZZ_CHECK(result.messages.size() == accepted.size());
    for (std::size_t i = 0; i < accepted.size(); ++i) {
        SLUICE_FUZZ_CHECK(result.messages[i].method == accepted[i].method);
        SLUICE_FUZZ_CHECK(result.messages[i].target == accepted[i].target);
        SLUICE_FUZZ_CHECK(result.messages[i].body == accepted[i].body);
    }
}

void append(std::string& wire, const proxy::RelayWriter::Buffers& buffers) {
    for (const auto& b : buffers) wire.append(static_cast<const char*>(b.data()), b.size());
}

void run(const std::uint8_t* data, std::size_t size) {
    const auto& f = fixture();
    const auto& server = f.config->server;
    const std::uint8_t mode = size > 0 ? data[0] : 0;
    const std::size_t body_buffer = (mode & 0x40) ? kSessionBodyBuffer : (mode & 0x3f) + 1u;
    const std::size_t read_size = (mode & 0x80) ? (mode & 0x07) + 1u : SIZE_MAX;
    const std::string_view bytes =
        size > 0 ? std::string_view(reinterpret_cast<const char*>(data) + 1, size - 1) : std::string_view{};

    Client client(bytes, read_size, server.max_header_bytes + kReadAheadLimit);
    proxy::HeaderArena arena;
    std::optional<RequestParser> parser;
    proxy::RelayWriter writer;
    const auto body = std::make_unique<char[]>(body_buffer);
    std::string wire;  // what one upstream connection would carry, request after request
    std::vector<Forwarded> accepted;

    while (true) {
        // ClientSession::do_read_header
        parser.reset();
        parser.emplace(std::piecewise_construct, std::make_tuple(),
                       std::make_tuple(proxy::ArenaAllocator<char>(&arena)));
        parser->header_limit(static_cast<std::uint32_t>(server.max_header_bytes));
        parser->body_limit(server.max_body_bytes);
        if (!read_step(*parser, client, true, body_buffer)) break;

        // ClientSession::handle_request and prepare_upstream_request
        auto& req = parser->get();
        const bool keep_alive = parser->keep_alive();
        const auto intake = proxy::intake_request(req.base(), f.routes, 0);
        if (intake.refusal) {
            SLUICE_FUZZ_CHECK(!intake.refusal->message.empty());
            SLUICE_FUZZ_CHECK(intake.match.has_value() == false);
            // Only a sound head without a body leaves the connection to the next request.
            if (intake.refusal->keep_alive_allowed && keep_alive && parser->is_done()) continue;
            break;
        }
        SLUICE_FUZZ_CHECK(intake.match.has_value());
        Forwarded forwarded{std::string(req.method_string()), {}, {}};
        const proxy::ParsedFraming framing{
            parser->chunked(),
            parser->content_length() ? std::optional<std::uint64_t>(*parser->content_length()) : std::nullopt,
            parser->is_done()};
        const auto& up = f.config->upstreams[f.config->routes[intake.match->route_index].upstream_index];
        const std::string authority = proxy::authority_for(up.scheme, up.host, up.port);
        const proxy::UpstreamHeadOptions options{authority, server.forwarded.x_forwarded_for,
                                                 server.forwarded.x_forwarded_proto, "127.0.0.1"};
        const auto rewrite =
            proxy::rewrite_for_upstream(req.base(), *intake.match, intake.query, framing, options);
        if (rewrite.refusal) break;
        forwarded.target = std::string(req.target());
        SLUICE_FUZZ_CHECK(!forwarded.target.empty() && forwarded.target.front() == '/');

        // ClientSession::write_request_header and relay_request_body
        const bool chunked = parser->chunked();
        const bool bodyless = parser->is_done() && !chunked;
        writer.start_request(req.base(), chunked, bodyless);
        std::string sent;
        if (bodyless) {
            append(sent, writer.next(nullptr, 0, true));
        } else if (parser->is_done()) {
            append(sent, writer.next(nullptr, 0, true));
        } else {
            bool failed = false;
            while (!writer.done()) {
                auto& b = req.body();
                b.data = body.get();
                b.size = body_buffer;
                if (!read_step(*parser, client, false, body_buffer)) {
                    failed = true;  // the upstream connection saw part of a request: it is discarded
                    break;
                }
                const std::size_t n = body_buffer - req.body().size;
                forwarded.body.append(body.get(), n);
                append(sent, writer.next(body.get(), n, parser->is_done()));
            }
            if (failed) break;
        }
        SLUICE_FUZZ_CHECK(writer.done());
        wire += sent;
        accepted.push_back(std::move(forwarded));
        if (!keep_alive) break;
    }
    // SLUICE_FUZZ_VERBOSE=1 (replaying one input): what was forwarded, to see a seed's reach.
    static const bool verbose = std::getenv("SLUICE_FUZZ_VERBOSE") != nullptr;
    if (verbose) {
        for (const auto& a : accepted) {
            std::fprintf(stderr, "forwarded %s %s with %zu body bytes\n", a.method.c_str(), a.target.c_str(),
                         a.body.size());
        }
        std::fprintf(stderr, "upstream bytes:\n%s\n", wire.c_str());
    }
    check_upstream_bytes(wire, accepted);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    try {
        run(data, size);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "the request path threw: %s\n", e.what());
        std::abort();
    } catch (...) {
        std::fprintf(stderr, "the request path threw a non-std::exception\n");
        std::abort();
    }
    return 0;
}
