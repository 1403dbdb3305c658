#pragma once
// sluice's own error domain. Every response sluice generates itself (as opposed
// to relaying the vendor's) is derived from one of these codes, in one place
// (error_response.cpp): the HTTP status, the stable machine-readable code in the
// JSON body, and the `Sluice-Error` response header that lets a client tell a
// synthetic answer from the vendor's.

#include <string_view>
#include <system_error>

namespace sluice {

enum class Errc {
    ok = 0,
    no_route,                  // 404: nothing in the config matches; never forwarded
    malformed_request,         // 400
    header_too_large,          // 431
    body_too_large,            // 413
    method_not_allowed,        // 405: e.g. CONNECT, not supported yet
    upstream_connect_failed,   // 502: DNS or TCP connect failed
    upstream_tls_failed,       // 502: handshake or certificate/hostname verification failed
    upstream_protocol_error,   // 502: the upstream sent something that is not HTTP/1.1
    upstream_closed,           // 502: the upstream closed the connection mid-exchange
    upstream_timeout,          // 504: connect or response timeout
    upstream_busy,             // 503: the pool is at max_connections and no slot came in time
    queue_full,                // 429: the route's queue is at max_depth
    admission_timeout,         // 429: the earliest admission is later than max_wait
    key_capacity,              // 429: a keyed limit holds max_keys keys and none can be forgotten safely
    vendor_rate_limited,       // 429: the vendor paused this limit (feedback) beyond max_wait
    shutting_down,             // 503: sluice is draining after SIGTERM; queued requests are answered with it
    too_many_connections,      // 503: server.max_client_connections reached; written before closing the new
                               // connection
    not_implemented,           // 501: e.g. a request transfer coding other than chunked
    request_timeout,           // 408: the request body stalled (client_body) or ran past client_body_total
    shared_state_unavailable,  // 503: a shared limit with on_redis_failure: deny, and Redis cannot answer
    // Costs read from the request body (docs/costs.md); never forwarded, never counted.
    cost_unreadable,      // 400: the body is not JSON, or has no non-negative integer / array at the pointer
    cost_body_too_large,  // 413: the body is too large to read its cost (over the limit's
                          // cost.body.max_bytes)
    cost_too_large,    // 422: the cost is above the limit's cost.max or above what the limit can ever admit
    unknown_priority,  // 400: the Sluice-Priority header names no class of `priorities` (docs/priorities.md)
};

const std::error_category& sluice_category() noexcept;
std::error_code make_error_code(Errc e) noexcept;

// The stable code string used in JSON bodies and the Sluice-Error header, e.g. "no_route".
std::string_view error_code_name(Errc e) noexcept;
// The HTTP status sluice answers with for this error.
unsigned error_http_status(Errc e) noexcept;

}  // namespace sluice

template <>
struct std::is_error_code_enum<sluice::Errc> : std::true_type {};
