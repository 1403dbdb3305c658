#pragma once
// Recorded traffic for `sluice simulate` (docs/simulate.md): the requests of a log, each with
// when it arrived and what the limits key on. Pure code: it reads a stream, never a clock.
//
// Three formats, one request a line:
// - access: sluice's own access log (JSON lines, access_log/line_format.hpp). It carries no
//   request headers (none is ever logged), so limits keyed on headers see one key; it does carry
//   what the daemon did (status, answered_by, queue_wait_seconds), how long the vendor took, the
//   request's priority class (replayed as its Sluice-Priority) and a fair share's caller.
// - csv: a header row naming the columns, then one request a row. `timestamp`, `method`, `host`
//   and `path` are required; `query` and `upstream_seconds` are optional; every other column is a
//   request header of that name (an empty cell: the header was absent).
// - jsonl: {"timestamp": ..., "method": ..., "host": ..., "path": ..., "query": ...,
//   "headers": {"Authorization": "..."}, "upstream_seconds": 0.12,
//   "response": {"status": 429, "headers": {"Retry-After": "2"}, "body": "..."}} ("response" optional).
//   csv: `response_status` and `response:NAME` columns (a response header NAME) carry the same.
// A timestamp is RFC 3339 ("2026-12-06T23:21:03.123Z", "...+01:00") or Unix seconds (a number,
// fractions allowed). A path may carry its query ("/v1/items?page=2").
//
// A line that cannot be read is an error naming the file and line, unless the caller allows a
// bounded number of bad lines to be skipped (they are then counted, and the first few quoted).

#include <cstddef>
#include <cstdint>
#include <istream>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sluice/common/clock.hpp"

namespace sluice::simulate {

enum class TrafficFormat { access, csv, jsonl };
std::string_view traffic_format_name(TrafficFormat format) noexcept;
std::optional<TrafficFormat> parse_traffic_format(
    std::string_view name) noexcept;  // "access", "csv", "jsonl"

// What the daemon did to a request, as its access log says (access format only).
struct LoggedOutcome {
    unsigned status = 0;      // 0: no response reached the client
    std::string answered_by;  // "vendor", a sluice error code ("queue_full"), or empty
    Nanos queue_wait{0};
    std::string route;  // empty: refused before routing
};

// The vendor's answer to a forwarded request, when the log keeps it: replayed as vendor
// feedback (docs/simulate.md, "Vendor feedback").
struct LoggedResponse {
    unsigned status = 0;
    std::vector<std::pair<std::string, std::string>> headers;  // as written; looked up without case
    std::optional<std::string> body;  // none: not logged (or longer than the daemon reads of it)
};

struct TrafficRequest {
    Nanos at{0};  // Unix time of arrival (the access log: when the request's header was read)
    std::string method;
    std::string host;
    std::string path;  // without the query
    std::string query;
    std::vector<std::pair<std::string, std::string>> headers;  // as written; looked up without case
    std::optional<Nanos> upstream_time;  // how long the vendor took; none: the simulation's default
    std::size_t line = 0;                // 1-based line in the log
    std::optional<LoggedOutcome> logged;
    // jsonl "response", csv response_status and response:NAME columns; the access log: a status
    // the vendor answered (no headers).
    std::optional<LoggedResponse> response;
    // The access log's "caller": who a fair-shared limit served (its caller header's value, or the
    // listener's name), replayed in place of that header or listener.
    std::optional<std::string> caller;
};

struct TrafficReadOptions {
    std::optional<TrafficFormat> format;  // none: guessed from the first line
    std::size_t max_bad_lines = 0;        // skipped (counted) before a bad line is an error
    // Bounds memory: the requests are sorted by arrival before the run, so all are held.
    std::size_t max_requests = 5'000'000;  // about 2.5 GB of memory
};

struct TrafficLog {
    TrafficFormat format = TrafficFormat::access;
    std::vector<TrafficRequest> requests;  // in file order
    bool carries_headers = false;          // csv/jsonl: keys on headers can be replayed
    std::size_t skipped_bad_lines = 0;
    std::vector<std::string> skipped_examples;  // "FILE:LINE: why", the first few
    // Access log lines of requests refused before their head could be read (method null):
    // nothing to replay, counted only.
    std::size_t unreplayable = 0;
    std::string error;  // not empty: the log cannot be used ("FILE:LINE: why")
};

// Reads a whole log; `name` names it in messages. Never throws on its content.
TrafficLog read_traffic(std::istream& in, const std::string& name, const TrafficReadOptions& options = {});

// The format a log's first non-blank line suggests: a JSON object with "answered_by" is the access
// log, another JSON object jsonl, anything else csv.
TrafficFormat guess_traffic_format(std::string_view first_line) noexcept;

// RFC 3339 date-time ("2026-12-06T23:21:03.123Z", offsets "+01:00") as Unix time; nullopt when not one.
std::optional<Nanos> parse_rfc3339(std::string_view text) noexcept;

// The first value of header `name` (case-insensitive), or nullopt.
std::optional<std::string_view> find_header(const TrafficRequest& request, std::string_view name) noexcept;

}  // namespace sluice::simulate
