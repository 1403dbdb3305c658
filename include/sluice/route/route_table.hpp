#pragma once
// Route matching: pure code, no I/O. Built once per config snapshot from
// Config::routes; matching never allocates except for captured path parameters.
//
// A route matches when ALL of its criteria hold: the listener (by index), the
// host (exact, case-insensitive, or "*.example.com" matching any subdomain,
// not the apex), the method, and the path (a prefix, or a pattern). The first
// matching route in file order wins.
//
// Path patterns are matched segment by segment against the path without its
// query string:
//   literal segments match exactly (case-sensitive, as URLs are);
//   `*` inside a segment matches any run of characters except '/', so
//       `v2.*` matches `v2.1` and `v2.10`, and `*` alone matches one whole segment
//       (like `{name}`, a non-empty one: `/a/*` does not match `/a/`);
//   `{name}` matches one whole non-empty segment and captures it as a path parameter;
//   a final `/**` matches the rest of the path (zero or more segments), so
//       `/api/**` matches `/api`, `/api/` and `/api/x/y` but not `/apix`.
// Nothing is decoded: `%2F` is three literal characters inside one segment, and a
// trailing slash is an empty last segment (`/lead/` and `/lead` are different paths).
// A prefix `/intercom/` matches `/intercom/x` (not `/intercom`); a prefix `/intercom`
// matches `/intercom`, `/intercom/x` and `/intercom?q` but not `/intercomx`.
// A request host ending in one '.' (a fully qualified name) matches as without it.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sluice/config/config.hpp"

namespace sluice::route {

// Captured `{name}` segments, in pattern order. Small and flat on purpose.
using PathParams = std::vector<std::pair<std::string, std::string>>;

std::optional<std::string_view> find_param(const PathParams& params, std::string_view name);

struct RequestTarget {
    std::size_t listener_index = 0;
    std::string_view host;    // without port, as sent (Host header or absolute-form authority); may be empty
    std::string_view method;  // e.g. "GET"
    std::string_view path;    // origin-form path, no query string, e.g. "/api/v1/lead/"
};

struct RouteMatchResult {
    std::size_t route_index = 0;  // into Config::routes
    PathParams params;
    // The path to send upstream: the request path with the route's path_prefix stripped
    // (when strip_prefix; a `path` pattern alone is never stripped, and with both a stripped
    // path_prefix and a `path`, the pattern matches what follows the prefix) and the upstream's
    // base_path prepended. Always starts with '/'.
    std::string upstream_path;
};

class RouteTable {
public:
    // Compiles every route's patterns. Throws config::ConfigError (with the route's
    // location) for an invalid pattern: empty `{}`, unbalanced braces, `**` not last
    // (see validate_path_pattern), an invalid host (validate_host_pattern), or a
    // path_prefix not starting with '/'. The table copies what it needs: it does
    // not keep a reference to `config`.
    explicit RouteTable(const config::Config& config);
    ~RouteTable();
    RouteTable(RouteTable&&) noexcept;
    RouteTable& operator=(RouteTable&&) noexcept;

    std::optional<RouteMatchResult> match(const RequestTarget& target) const;

    std::size_t size() const noexcept;  // the number of routes

private:
    struct CompiledRoute;
    std::vector<CompiledRoute> routes_;
};

// Checks a pattern without building a table (used by the config loader).
// Returns an empty string if valid, else what is wrong ("'**' must be the last segment").
// Besides the errors above it rejects: a pattern not starting with '/', an empty
// segment ("//"), `{name}` or `**` sharing a segment with other characters, a
// parameter name other than letters, digits, '_' and '-', a repeated parameter
// name, and '?', '#', spaces or control characters (the query is never matched).
std::string validate_path_pattern(std::string_view pattern);

// Checks a route host: "api.example.com" or "*.example.com" (the '*' only as the
// whole first label, with at least one label after it). Returns "" if valid.
std::string validate_host_pattern(std::string_view host);

}  // namespace sluice::route
