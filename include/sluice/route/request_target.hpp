#pragma once
// Splitting an HTTP/1.1 request target (RFC 9112 3.2) into what routing needs.
// Pure code. Accepts origin-form ("/path?q", host from the Host header) and
// absolute-form ("http://host:port/path?q", as sent to an HTTP_PROXY; the
// authority in the URI wins over the Host header, RFC 9112 3.2.2).
// authority-form (CONNECT) and asterisk-form are reported as such: sluice does
// not tunnel (yet) and has nothing to say to OPTIONS *.

#include <optional>
#include <string_view>

namespace sluice::route {

struct ParsedTarget {
    enum class Form { origin, absolute, authority, asterisk };
    Form form = Form::origin;
    std::string_view scheme;  // absolute-form only, e.g. "http"
    std::string_view host;    // lower-casing is the matcher's job; no port, no brackets around IPv6
    std::string_view port;    // may be empty
    std::string_view path;    // starts with '/'; "/" when the absolute URI had no path
    std::string_view query;   // without '?', may be empty
};

// Returns nullopt for a target that is none of the four forms (e.g. "x/y", a
// control character, an absolute URI without a host). `host_header` is used for
// origin-form only.
std::optional<ParsedTarget> parse_request_target(std::string_view target, std::string_view host_header);

}  // namespace sluice::route
