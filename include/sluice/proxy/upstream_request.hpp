#pragma once
// The request intake of a client session as functions of the parsed head alone: no socket,
// no session, no limits. intake_request is what ClientSession::handle_request decides before
// admission (refuse, or route), rewrite_for_upstream is how prepare_upstream_request turns the
// client's head into the one the vendor receives. Kept apart from the session so that the
// request fuzz target (tests/fuzz/request_fuzz.cpp) and unit tests run the very code that
// decides what reaches a vendor, and check it against an independent parser.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <boost/beast/http/message.hpp>

#include "sluice/common/error.hpp"
#include "sluice/proxy/header_arena.hpp"
#include "sluice/route/route_table.hpp"

namespace sluice::proxy {

// A request answered by sluice itself: the error (its status) and the text for the client,
// which quotes what the client sent only through printable_excerpt. The connection closes
// after the answer unless `keep_alive_allowed` (the head was sound, only no route matched).
struct IntakeRefusal {
    Errc code;
    std::string message;
    bool keep_alive_allowed = false;
};

// A routed request, or why not.
struct RequestIntake {
    std::optional<IntakeRefusal> refusal;          // set: answer it, forward nothing
    std::string host;                              // from the target or Host, no port; may be empty
    std::string path;                              // dot-segments removed (route::normalize_path)
    std::string query;                             // without '?'
    std::optional<route::RouteMatchResult> match;  // set exactly when refusal is not
};

// In ClientSession::handle_request's order: CONNECT (405), check_request_head (framing and
// Host, RFC 9112 6.3 and 3.2), the target (route::parse_request_target: origin or absolute
// form, http:// only), route::normalize_path, then the route table (no_route, the only
// refusal that leaves the connection usable). Never throws.
template <class Fields>
RequestIntake intake_request(const boost::beast::http::header<true, Fields>& head,
                             const route::RouteTable& routes, std::size_t listener_index);

// What the rewrite needs to know besides the head.
struct UpstreamHeadOptions {
    std::string_view authority;    // Host for the vendor: authority_for(scheme, host, port)
    bool x_forwarded_for = false;  // server.forwarded
    bool x_forwarded_proto = false;
    std::string_view client_address;  // appended to X-Forwarded-For when set
};

// The parse as Beast's request_parser reports it after the head: the body's framing.
struct ParsedFraming {
    bool chunked = false;
    std::optional<std::uint64_t> content_length;
    bool body_done = false;  // parser.is_done(): no body bytes remain to be read
};

struct UpstreamRewrite {
    std::optional<IntakeRefusal> refusal;  // an Expect other than 100-continue (417 is not sent: 400)
    bool expect_continue = false;          // the client waits for "100 Continue" before its body
};

// prepare_upstream_request's rewrite, in its order: Expect, hop-by-hop and Sluice-* fields
// removed, framing written from the parse (set_forwarded_framing), the target set to the
// route's upstream path plus the query, HTTP/1.1, Host, X-Forwarded-*. Never throws
// (allocation failure aside).
template <class Fields>
UpstreamRewrite rewrite_for_upstream(boost::beast::http::header<true, Fields>& head,
                                     const route::RouteMatchResult& match, std::string_view query,
                                     const ParsedFraming& framing, const UpstreamHeadOptions& options);

#define SLUICE_UPSTREAM_REQUEST_EXTERN(Fields)                                                             \
    extern template RequestIntake intake_request(const boost::beast::http::header<true, Fields>&,          \
                                                 const route::RouteTable&, std::size_t);                   \
    extern template UpstreamRewrite rewrite_for_upstream(boost::beast::http::header<true, Fields>&,        \
                                                         const route::RouteMatchResult&, std::string_view, \
                                                         const ParsedFraming&, const UpstreamHeadOptions&);
SLUICE_UPSTREAM_REQUEST_EXTERN(boost::beast::http::fields)
SLUICE_UPSTREAM_REQUEST_EXTERN(ArenaFields)
#undef SLUICE_UPSTREAM_REQUEST_EXTERN

}  // namespace sluice::proxy
