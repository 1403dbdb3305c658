#pragma once
// One access log line: a RequestRecord as one JSON object and a newline
// (docs/operations.md, "The access log", lists the fields). Pure and allocation-free once the
// output string has grown to a line's size: the client session formats into a string
// it reuses.
//
// What never appears in a line: header values (none is logged, so Authorization,
// Cookie, Proxy-Authorization and the key headers cannot leak), the query unless
// log_query is on, and then not the values of the query parameters that limits key
// on. Every string is escaped for JSON: quotes, backslashes and control bytes as
// escapes, and bytes that are not valid UTF-8 as U+FFFD, so a line is always valid
// JSON in valid UTF-8 whatever a client sent.

#include <string>
#include <string_view>
#include <vector>

#include "sluice/access_log/request_record.hpp"

namespace sluice::access_log {

// What replaces a redacted query parameter's value.
inline constexpr std::string_view kRedacted = "REDACTED";

struct LineOptions {
    bool log_query = false;
    // Query parameter names whose values are never written (the limits' `key: {query: NAME}`).
    // Matched without regard to case, as sent and percent-decoded, so `API_KEY=` and
    // `api%5Fkey=` are redacted for `api_key` too.
    std::vector<std::string> redacted_query_params;
};

// Appends the record's line, ending in '\n', to `out`.
void append_line(const RequestRecord& record, const LineOptions& options, std::string& out);

// Appends `text` as a JSON string (quotes included).
void append_json_string(std::string_view text, std::string& out);

// Appends the raw query with the values of redacted parameters replaced by kRedacted
// (their names, and every other parameter, as sent).
void append_redacted_query(std::string_view query, const std::vector<std::string>& redacted,
                           std::string& out);

// "2026-12-06T23:21:03.123Z": RFC 3339, UTC, milliseconds.
void append_rfc3339_ms(std::int64_t unix_ms, std::string& out);

}  // namespace sluice::access_log
