#pragma once
// Header rules for a forwarding proxy (RFC 9110 7.6.1): connection-specific
// fields never cross sluice, and sluice's own request fields never reach a vendor.

#include <boost/beast/http/fields.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace sluice::proxy {

// Removes Connection, Keep-Alive, Proxy-Connection, TE, Trailer, Upgrade,
// Proxy-Authorization, Proxy-Authenticate and every field named in Connection.
// Transfer-Encoding is left to the serializer, which re-frames the body as it
// relays it (the same coding, chunk by chunk).
void strip_hop_by_hop(boost::beast::http::fields& fields);

// Removes every field whose name starts with "Sluice-" (case-insensitive).
void strip_sluice_fields(boost::beast::http::fields& fields);

// First value of a field by case-insensitive name.
std::optional<std::string_view> find_field(const boost::beast::http::fields& fields, std::string_view name);

// "host" or "host:port" (port omitted when it is the scheme's default; IPv6 in brackets).
std::string authority_for(std::string_view scheme, std::string_view host, unsigned port);

}  // namespace sluice::proxy
