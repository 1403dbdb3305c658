#pragma once
// The facts the access log keeps about one request, collected by the client session as
// the request goes (proxy/client_session_log.cpp) and turned into one JSON line at its
// end (line_format.hpp). Plain values and views only: the views point into the
// session's own strings and the config, which outlive the record's formatting, and
// nothing here allocates per request (the query string keeps its capacity).

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sluice::access_log {

struct RequestRecord {
    // Limits named in delayed_by at most: a request uses few limits, and this keeps the
    // record free of allocations. Further ones are dropped (add_delayed_by), not counted.
    static constexpr std::size_t kMaxDelayedBy = 4;

    std::int64_t unix_ms = 0;               // wall clock when the request's header was read
    std::optional<std::string_view> route;  // the matched route's name; none: refused before routing
    std::string_view priority;              // the request's class (docs/priorities.md); empty: none
    std::string caller;                     // a fair-shared limit's caller (its header or listener)
    bool has_caller = false;                // the route has a fair-shared limit: caller is logged
    std::string_view method;                // empty: the header could not be parsed
    std::string_view host;
    std::string_view path;    // without the query
    std::string query;        // raw, without '?'; kept only when log_query is on
    unsigned status = 0;      // 0: no response reached the client
    std::string answered_by;  // "vendor", a sluice error code, or empty: nobody answered
    std::chrono::nanoseconds queue_wait{0};
    std::optional<std::chrono::nanoseconds> upstream_time;  // none: no send to the vendor was tried
    std::uint64_t bytes_in = 0;   // request bytes read from the client (head and body)
    std::uint64_t bytes_out = 0;  // response bytes written to the client (head and body)
    unsigned attempts = 0;        // sends to the vendor tried, from taking a connection (retries included)
    std::array<std::string_view, kMaxDelayedBy> delayed_by{};
    std::size_t delayed_by_count = 0;
    bool complete = false;  // the whole response was written (else the connection was cut or left)

    // Adds a limit's name once, whatever the order of the calls.
    void add_delayed_by(std::string_view limit_name) {
        for (std::size_t i = 0; i < delayed_by_count; ++i)
            if (delayed_by[i] == limit_name) return;
        if (delayed_by_count < kMaxDelayedBy) delayed_by[delayed_by_count++] = limit_name;
    }
};

}  // namespace sluice::access_log
