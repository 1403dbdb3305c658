#pragma once
// How a relayed message's body is framed, decided once and strictly (RFC 9112
// 6.1-6.3), so that sluice and the peer it forwards to can never disagree about
// where one message ends and the next begins. A disagreement on a pooled
// upstream connection would put one client's bytes in front of the next
// client's request (request smuggling), so:
//
// - a request head whose framing has more than one reading is refused before
//   anything of it is forwarded (check_request_head): Transfer-Encoding other
//   than exactly "chunked", Transfer-Encoding with Content-Length, or in an
//   HTTP/1.0 request; Content-Length values that differ; no Host, or two;
// - what is forwarded carries framing sluice writes itself from what its parser
//   read (set_forwarded_framing), never the sender's framing fields: one
//   Content-Length with the parsed length, or "Transfer-Encoding: chunked" with
//   the body re-chunked (relay_writer.hpp), or neither for a bodiless message.
//
// Beast's parser already rejects the rest of the class (bare LF, a space before
// the colon, control bytes in values, bad chunk sizes, Content-Length lists
// with differing members); the checks here cover what it lets through.

#include <cstdint>
#include <optional>
#include <string_view>

#include <boost/beast/http/fields.hpp>
#include <boost/beast/http/message.hpp>

#include "sluice/common/error.hpp"
#include "sluice/proxy/header_arena.hpp"

namespace sluice::proxy {

// Why a head is refused: the error (its status) and a fixed message that
// echoes nothing the peer sent.
struct HeadRefusal {
    Errc code;
    std::string_view message;
};

// The request-head rules above. `version` is the parsed HTTP version (10, 11).
template <class Allocator>
std::optional<HeadRefusal> check_request_head(const boost::beast::http::basic_fields<Allocator>& fields,
                                              unsigned version);

// A response head's framing is ambiguous (Transfer-Encoding other than exactly
// "chunked", or both framing fields): it is relayed as sluice's parser read it,
// but the connection that carried it is not trusted with another exchange.
template <class Allocator>
bool response_framing_is_ambiguous(const boost::beast::http::basic_fields<Allocator>& fields);

// Replaces every Content-Length and Transfer-Encoding field with the framing
// the message will be sent with: chunked, or `content_length`, or none.
template <class Allocator>
void set_forwarded_framing(boost::beast::http::basic_fields<Allocator>& fields, bool chunked,
                           std::optional<std::uint64_t> content_length);

#define SLUICE_MESSAGE_FRAMING_EXTERN(Alloc)                                                            \
    extern template std::optional<HeadRefusal> check_request_head(                                      \
        const boost::beast::http::basic_fields<Alloc>&, unsigned);                                      \
    extern template bool response_framing_is_ambiguous(const boost::beast::http::basic_fields<Alloc>&); \
    extern template void set_forwarded_framing(boost::beast::http::basic_fields<Alloc>&, bool,          \
                                               std::optional<std::uint64_t>);
SLUICE_MESSAGE_FRAMING_EXTERN(std::allocator<char>)
SLUICE_MESSAGE_FRAMING_EXTERN(ArenaAllocator<char>)
#undef SLUICE_MESSAGE_FRAMING_EXTERN

}  // namespace sluice::proxy
