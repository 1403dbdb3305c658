#pragma once
// Header rules for a forwarding proxy (RFC 9110 7.6.1): connection-specific
// fields never cross sluice, and sluice's own request fields never reach a vendor.

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <boost/beast/http/fields.hpp>

#include "sluice/proxy/header_arena.hpp"

namespace sluice::proxy {

// Removes Connection, Keep-Alive, Proxy-Connection, TE, Trailer, Upgrade,
// Proxy-Authorization, Proxy-Authenticate and every field named in Connection.
// Transfer-Encoding is left to the serializer, which re-frames the body as it
// relays it (the same coding, chunk by chunk).
template <class Allocator>
void strip_hop_by_hop(boost::beast::http::basic_fields<Allocator>& fields);

// Removes every field whose name starts with "Sluice-" (case-insensitive).
template <class Allocator>
void strip_sluice_fields(boost::beast::http::basic_fields<Allocator>& fields);

// First value of a field by case-insensitive name.
template <class Allocator>
std::optional<std::string_view> find_field(const boost::beast::http::basic_fields<Allocator>& fields,
                                           std::string_view name);

// Defined in http_headers.cpp for these two fields types: Beast's default, and
// the session's arena-backed one (header_arena.hpp).
#define SLUICE_HTTP_HEADERS_EXTERN(Alloc)                                               \
    extern template void strip_hop_by_hop(boost::beast::http::basic_fields<Alloc>&);    \
    extern template void strip_sluice_fields(boost::beast::http::basic_fields<Alloc>&); \
    extern template std::optional<std::string_view> find_field(                         \
        const boost::beast::http::basic_fields<Alloc>&, std::string_view);
SLUICE_HTTP_HEADERS_EXTERN(std::allocator<char>)
SLUICE_HTTP_HEADERS_EXTERN(ArenaAllocator<char>)
#undef SLUICE_HTTP_HEADERS_EXTERN

// "host" or "host:port" (port omitted when it is the scheme's default; IPv6 in brackets).
std::string authority_for(std::string_view scheme, std::string_view host, unsigned port);

}  // namespace sluice::proxy
