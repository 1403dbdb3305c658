#pragma once
// Splitting an HTTP/1.1 request target (RFC 9112 3.2) into what routing needs.
// Pure code. Accepts origin-form ("/path?q", host from the Host header) and
// absolute-form ("http://host:port/path?q", as sent to an HTTP_PROXY; the
// authority in the URI wins over the Host header, RFC 9112 3.2.2).
// authority-form (CONNECT) and asterisk-form are reported as such: sluice does
// not tunnel (yet) and has nothing to say to OPTIONS *.

#include <optional>
#include <string>
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
// control character, a byte outside US-ASCII (RFC 9112 3.2 allows none raw), a
// backslash (no URI has one; some servers read it as '/'),
// an absolute URI without a host or with userinfo). `host_header` is used for
// origin-form only.
std::optional<ParsedTarget> parse_request_target(std::string_view target, std::string_view host_header);

// RFC 3986 5.2.4 (remove_dot_segments) applied to an origin-form path, after
// decoding "%2E"/"%2e" (an unreserved character, RFC 3986 6.2.2.2), so that
// "/v1/../../admin" and "/v1/%2e%2e/admin" are routed, limited and forwarded as
// the vendor will read them once it normalizes: a path can never climb out of
// an upstream's base_path. Returns nullopt when the path is already normal
// (the usual case: no allocation). The result starts with '/'.
std::optional<std::string> normalize_path(std::string_view path);

// What an error message or a log line may quote of a target: without its query,
// which often carries an API key (`?api_key=...`), and with any userinfo of an
// absolute URI (`http://user:password@host/`) replaced by "[userinfo]".
std::string quotable_target(std::string_view target);

}  // namespace sluice::route
