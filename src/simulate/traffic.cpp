#include "sluice/simulate/traffic.hpp"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>

#include <nlohmann/json.hpp>

#include "sluice/feedback/vendor_signals.hpp"

namespace sluice::simulate {

namespace {

using nlohmann::json;

// How many skipped lines are quoted in the summary: enough to see what is wrong.
constexpr std::size_t kQuotedExamples = 5;
// A line longer than this is refused rather than held (a log is read a line at a time).
constexpr std::size_t kMaxLineBytes = 1 << 20;
// The most of a vendor's body the daemon reads for feedback: a longer one is decided on its
// headers alone.
constexpr std::size_t kVendorBodyLimit = feedback::kMaxVendorBodyBytes;
// A csv column "response:Retry-After" is the vendor's Retry-After header.
constexpr std::string_view kResponseColumn = "response:";

bool iequals(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        const auto x = static_cast<unsigned char>(a[i]);
        const auto y = static_cast<unsigned char>(b[i]);
        if (std::tolower(x) != std::tolower(y)) return false;
    }
    return true;
}

std::string_view trim(std::string_view text) noexcept {
    while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
    while (!text.empty() && (text.back() == ' ' || text.back() == '\t' || text.back() == '\r'))
        text.remove_suffix(1);
    return text;
}

// Unix seconds as a double hold about 0.2 us of resolution today: rounded to the microsecond.
std::optional<Nanos> seconds_to_nanos(double seconds) noexcept {
    // Up to year 2262 as Unix time, and never negative.
    if (!std::isfinite(seconds) || seconds < 0 || seconds > 9.2e9) return std::nullopt;
    const double whole = std::floor(seconds);
    const auto micros = std::llround((seconds - whole) * 1e6);
    return Nanos(static_cast<std::int64_t>(whole) * 1'000'000'000 + micros * 1'000);
}

// "12", "0.042", "1796637600.123456789": decimal seconds read exactly (to the nanosecond).
std::optional<Nanos> parse_seconds_text(std::string_view text) noexcept {
    text = trim(text);
    const auto dot = text.find('.');
    const auto whole_text = text.substr(0, dot);
    std::int64_t whole = 0;
    const auto [ptr, ec] = std::from_chars(whole_text.data(), whole_text.data() + whole_text.size(), whole);
    if (whole_text.empty() || ec != std::errc() || ptr != whole_text.data() + whole_text.size() ||
        whole < 0 || whole > 9'200'000'000)
        return std::nullopt;
    std::int64_t fraction = 0;
    if (dot != std::string_view::npos) {
        const auto digits = text.substr(dot + 1);
        if (digits.empty()) return std::nullopt;
        std::int64_t scale = 100'000'000;
        for (const char c : digits) {
            if (c < '0' || c > '9') return std::nullopt;
            fraction += (c - '0') * scale;
            scale /= 10;
        }
    }
    return Nanos(whole * 1'000'000'000 + fraction);
}

// A timestamp cell or field: RFC 3339, or Unix seconds.
std::optional<Nanos> parse_timestamp_text(std::string_view text) noexcept {
    text = trim(text);
    if (auto at = parse_rfc3339(text)) return at;
    return parse_seconds_text(text);
}

std::optional<Nanos> json_number_seconds(const json& value) {
    if (value.is_number_unsigned() && value.get<std::uint64_t>() <= 9'200'000'000)
        return Nanos(static_cast<std::int64_t>(value.get<std::uint64_t>()) * 1'000'000'000);
    return seconds_to_nanos(value.get<double>());
}

std::optional<Nanos> json_timestamp(const json& value) {
    if (value.is_number()) return json_number_seconds(value);
    if (value.is_string()) return parse_timestamp_text(value.get_ref<const std::string&>());
    return std::nullopt;
}

std::optional<Nanos> json_seconds(const json& value) {
    if (value.is_number()) return json_number_seconds(value);
    if (value.is_string()) return parse_seconds_text(value.get_ref<const std::string&>());
    return std::nullopt;
}

void split_query(TrafficRequest& request) {
    const auto mark = request.path.find('?');
    if (mark == std::string::npos) return;
    if (request.query.empty()) request.query = request.path.substr(mark + 1);
    request.path.resize(mark);
}

// Why a request cannot be replayed, or "" when it can.
std::string check_request(const TrafficRequest& request) {
    if (request.method.empty()) return "no method";
    if (request.path.empty() || request.path.front() != '/') return "the path must start with '/'";
    return {};
}

const json* field(const json& object, const char* name) {
    const auto it = object.find(name);
    return it == object.end() || it->is_null() ? nullptr : &*it;
}

std::string string_field(const json& object, const char* name, std::string& error) {
    const json* value = field(object, name);
    if (value == nullptr) return {};
    if (!value->is_string()) {
        error = std::string("\"") + name + "\" must be a string";
        return {};
    }
    return value->get<std::string>();
}

// One access log line. Returns "" or why not; `unreplayable` when the line is sound but the
// request was refused before its head was read.
std::string parse_access_line(const json& line, TrafficRequest& request, bool& unreplayable) {
    if (!line.is_object()) return "not a JSON object";
    const json* time = field(line, "time");
    if (time == nullptr) return "no \"time\"";
    const auto at = json_timestamp(*time);
    if (!at) return "\"time\" is not an RFC 3339 time";
    request.at = *at;
    std::string error;
    request.method = string_field(line, "method", error);
    request.host = string_field(line, "host", error);
    request.path = string_field(line, "path", error);
    request.query = string_field(line, "query", error);
    LoggedOutcome logged;
    logged.route = string_field(line, "route", error);
    logged.answered_by = string_field(line, "answered_by", error);
    // The class the daemon gave the request, whichever way it got it (header or route default):
    // replayed as the header, which the simulator reads first (docs/priorities.md).
    const std::string priority = string_field(line, "priority", error);
    if (const json* caller = field(line, "caller")) {
        if (!caller->is_string()) return "\"caller\" must be a string";
        request.caller = caller->get<std::string>();
    }
    if (!error.empty()) return error;
    if (!priority.empty()) request.headers.emplace_back("Sluice-Priority", priority);
    if (const json* status = field(line, "status")) {
        if (!status->is_number_unsigned()) return "\"status\" must be a number";
        logged.status = status->get<unsigned>();
    }
    if (const json* wait = field(line, "queue_wait_seconds")) {
        const auto parsed = json_seconds(*wait);
        if (!parsed) return "\"queue_wait_seconds\" must be a number of seconds";
        logged.queue_wait = *parsed;
    }
    if (const json* upstream = field(line, "upstream_seconds")) {
        request.upstream_time = json_seconds(*upstream);
        if (!request.upstream_time) return "\"upstream_seconds\" must be a number of seconds";
    }
    // The access log keeps no response headers: a vendor's answer is replayed by its status alone.
    if (logged.answered_by == "vendor" && logged.status != 0)
        request.response = LoggedResponse{logged.status, {}, {}};
    request.logged = std::move(logged);
    if (request.method.empty()) {
        unreplayable = true;
        return {};
    }
    split_query(request);
    return check_request(request);
}

// A jsonl line's "response": {"status": 429, "headers": {...}, "body": "..."}.
std::string parse_jsonl_response(const json& value, TrafficRequest& request) {
    if (value.is_null()) return {};
    if (!value.is_object()) return "\"response\" must be an object";
    LoggedResponse response;
    const json* status = field(value, "status");
    if (status == nullptr || !status->is_number_unsigned() || status->get<std::uint64_t>() < 100 ||
        status->get<std::uint64_t>() > 999)
        return "\"response\" needs a \"status\" (100-999)";
    response.status = status->get<unsigned>();
    if (const json* headers = field(value, "headers")) {
        if (!headers->is_object()) return "\"response\".\"headers\" must be an object of strings";
        for (const auto& [name, header] : headers->items()) {
            if (header.is_null()) continue;
            if (!header.is_string()) return "response header \"" + name + "\" must be a string";
            response.headers.emplace_back(name, header.get<std::string>());
        }
    }
    if (const json* body = field(value, "body")) {
        if (!body->is_null() && !body->is_string()) return "\"response\".\"body\" must be a string";
        // The daemon reads at most kVendorBodyLimit of it, and decides on the headers past that.
        if (body->is_string() && body->get_ref<const std::string&>().size() < kVendorBodyLimit)
            response.body = body->get<std::string>();
    }
    request.response = std::move(response);
    return {};
}

std::string parse_jsonl_line(const json& line, TrafficRequest& request) {
    if (!line.is_object()) return "not a JSON object";
    const json* time = field(line, "timestamp");
    if (time == nullptr) time = field(line, "time");
    if (time == nullptr) return "no \"timestamp\"";
    const auto at = json_timestamp(*time);
    if (!at) return "\"timestamp\" is neither RFC 3339 nor Unix seconds";
    request.at = *at;
    std::string error;
    request.method = string_field(line, "method", error);
    request.host = string_field(line, "host", error);
    request.path = string_field(line, "path", error);
    request.query = string_field(line, "query", error);
    if (!error.empty()) return error;
    if (const json* headers = field(line, "headers")) {
        if (!headers->is_object()) return "\"headers\" must be an object of strings";
        for (const auto& [name, value] : headers->items()) {
            if (value.is_null()) continue;
            if (!value.is_string()) return "header \"" + name + "\" must be a string";
            request.headers.emplace_back(name, value.get<std::string>());
        }
    }
    if (const json* upstream = field(line, "upstream_seconds")) {
        request.upstream_time = json_seconds(*upstream);
        if (!request.upstream_time) return "\"upstream_seconds\" must be a number of seconds";
    }
    if (const json* response = field(line, "response")) {
        if (auto error = parse_jsonl_response(*response, request); !error.empty()) return error;
    }
    split_query(request);
    return check_request(request);
}

// RFC 4180 without line breaks inside a cell: commas separate, a quoted cell may hold commas
// and doubled quotes. Returns false on an unterminated quote.
bool split_csv(std::string_view line, std::vector<std::string>& cells) {
    cells.clear();
    std::string cell;
    std::size_t i = 0;
    while (true) {
        cell.clear();
        if (i < line.size() && line[i] == '"') {
            ++i;
            while (true) {
                if (i >= line.size()) return false;
                if (line[i] == '"') {
                    if (i + 1 < line.size() && line[i + 1] == '"') {
                        cell.push_back('"');
                        i += 2;
                        continue;
                    }
                    ++i;
                    break;
                }
                cell.push_back(line[i++]);
            }
            while (i < line.size() && line[i] != ',') ++i;  // anything after the closing quote
        } else {
            const auto end = std::min(line.find(',', i), line.size());
            cell.assign(trim(line.substr(i, end - i)));
            i = end;
        }
        cells.push_back(cell);
        if (i >= line.size()) return true;
        ++i;  // the comma
    }
}

struct CsvColumns {
    std::optional<std::size_t> timestamp, method, host, path, query, upstream_seconds, response_status;
    std::vector<std::pair<std::size_t, std::string>> headers;           // column, header name
    std::vector<std::pair<std::size_t, std::string>> response_headers;  // column, header name
};

std::string read_csv_header(const std::vector<std::string>& cells, CsvColumns& columns) {
    for (std::size_t i = 0; i < cells.size(); ++i) {
        const std::string_view name = cells[i];
        if (iequals(name, "timestamp") || iequals(name, "time")) {
            columns.timestamp = i;
        } else if (iequals(name, "method")) {
            columns.method = i;
        } else if (iequals(name, "host")) {
            columns.host = i;
        } else if (iequals(name, "path")) {
            columns.path = i;
        } else if (iequals(name, "query")) {
            columns.query = i;
        } else if (iequals(name, "upstream_seconds")) {
            columns.upstream_seconds = i;
        } else if (iequals(name, "response_status")) {
            columns.response_status = i;
        } else if (name.size() > kResponseColumn.size() &&
                   iequals(name.substr(0, kResponseColumn.size()), kResponseColumn)) {
            columns.response_headers.emplace_back(i, std::string(name.substr(kResponseColumn.size())));
        } else if (!name.empty()) {
            columns.headers.emplace_back(i, std::string(name));
        }
    }
    std::string missing;
    if (!columns.timestamp) missing += " timestamp";
    if (!columns.method) missing += " method";
    if (!columns.host) missing += " host";
    if (!columns.path) missing += " path";
    if (!missing.empty())
        return "the header row lacks the column(s)" + missing +
               " (expected: timestamp,method,host,path[,query][,upstream_seconds][,HEADER...])";
    return {};
}

std::string parse_csv_row(const std::vector<std::string>& cells, const CsvColumns& columns,
                          TrafficRequest& request) {
    const auto cell = [&](std::optional<std::size_t> column) -> std::string_view {
        return column && *column < cells.size() ? std::string_view(cells[*column]) : std::string_view();
    };
    const auto at = parse_timestamp_text(cell(columns.timestamp));
    if (!at)
        return "the timestamp '" + std::string(cell(columns.timestamp)) +
               "' is neither RFC 3339 nor Unix seconds";
    request.at = *at;
    request.method = cell(columns.method);
    request.host = cell(columns.host);
    request.path = cell(columns.path);
    request.query = cell(columns.query);
    if (columns.upstream_seconds && !cell(columns.upstream_seconds).empty()) {
        request.upstream_time = parse_seconds_text(cell(columns.upstream_seconds));
        if (!request.upstream_time) return "upstream_seconds must be a number of seconds";
    }
    if (columns.response_status && !cell(columns.response_status).empty()) {
        const auto text = cell(columns.response_status);
        unsigned status = 0;
        const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), status);
        if (ec != std::errc() || end != text.data() + text.size() || status < 100 || status > 999)
            return "response_status must be an HTTP status (100-999)";
        LoggedResponse response;
        response.status = status;
        for (const auto& [column, name] : columns.response_headers) {
            if (column < cells.size() && !cells[column].empty())
                response.headers.emplace_back(name, cells[column]);
        }
        request.response = std::move(response);
    }
    for (const auto& [column, name] : columns.headers) {
        if (column < cells.size() && !cells[column].empty())
            request.headers.emplace_back(name, cells[column]);
    }
    split_query(request);
    return check_request(request);
}

}  // namespace

std::string_view traffic_format_name(TrafficFormat format) noexcept {
    switch (format) {
        case TrafficFormat::access: return "access";
        case TrafficFormat::csv: return "csv";
        case TrafficFormat::jsonl: return "jsonl";
    }
    return "access";
}

std::optional<TrafficFormat> parse_traffic_format(std::string_view name) noexcept {
    if (name == "access") return TrafficFormat::access;
    if (name == "csv") return TrafficFormat::csv;
    if (name == "jsonl") return TrafficFormat::jsonl;
    return std::nullopt;
}

TrafficFormat guess_traffic_format(std::string_view first_line) noexcept {
    first_line = trim(first_line);
    if (first_line.empty() || first_line.front() != '{') return TrafficFormat::csv;
    return first_line.find("\"answered_by\"") != std::string_view::npos ? TrafficFormat::access
                                                                        : TrafficFormat::jsonl;
}

std::optional<Nanos> parse_rfc3339(std::string_view text) noexcept {
    // YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)
    const auto digits = [&](std::size_t at, std::size_t count) -> std::optional<int> {
        if (at + count > text.size()) return std::nullopt;
        int value = 0;
        for (std::size_t i = at; i < at + count; ++i) {
            if (text[i] < '0' || text[i] > '9') return std::nullopt;
            value = value * 10 + (text[i] - '0');
        }
        return value;
    };
    const auto is = [&](std::size_t at, char c) { return at < text.size() && text[at] == c; };
    const auto year = digits(0, 4), month = digits(5, 2), day = digits(8, 2);
    const auto hour = digits(11, 2), minute = digits(14, 2), second = digits(17, 2);
    if (!year || !month || !day || !hour || !minute || !second || !is(4, '-') || !is(7, '-') ||
        !(is(10, 'T') || is(10, 't') || is(10, ' ')) || !is(13, ':') || !is(16, ':'))
        return std::nullopt;
    using namespace std::chrono;
    const year_month_day date{std::chrono::year(*year), std::chrono::month(static_cast<unsigned>(*month)),
                              std::chrono::day(static_cast<unsigned>(*day))};
    if (!date.ok() || *hour > 23 || *minute > 59 || *second > 60) return std::nullopt;
    std::size_t at = 19;
    std::int64_t fraction_ns = 0;
    if (is(at, '.')) {
        ++at;
        std::int64_t scale = 100'000'000;
        const auto begin = at;
        while (at < text.size() && text[at] >= '0' && text[at] <= '9') {
            fraction_ns += (text[at] - '0') * scale;
            scale /= 10;
            ++at;
        }
        if (at == begin) return std::nullopt;
    }
    std::int64_t offset_seconds = 0;
    if (is(at, 'Z') || is(at, 'z')) {
        ++at;
    } else if (is(at, '+') || is(at, '-')) {
        const auto oh = digits(at + 1, 2), om = digits(at + 4, 2);
        if (!oh || !om || !is(at + 3, ':') || *oh > 23 || *om > 59) return std::nullopt;
        offset_seconds = (std::int64_t{*oh} * 3600 + std::int64_t{*om} * 60) * (text[at] == '-' ? -1 : 1);
        at += 6;
    } else {
        return std::nullopt;
    }
    if (at != text.size()) return std::nullopt;
    const auto since_epoch = sys_days(date).time_since_epoch();
    const std::int64_t unix_seconds = duration_cast<seconds>(since_epoch).count() +
                                      std::int64_t{*hour} * 3600 + std::int64_t{*minute} * 60 + *second -
                                      offset_seconds;
    if (unix_seconds < 0 || unix_seconds > 9'200'000'000) return std::nullopt;
    return Nanos(unix_seconds * 1'000'000'000 + fraction_ns);
}

std::optional<std::string_view> find_header(const TrafficRequest& request, std::string_view name) noexcept {
    for (const auto& [header, value] : request.headers)
        if (iequals(header, name)) return std::string_view(value);
    return std::nullopt;
}

TrafficLog read_traffic(std::istream& in, const std::string& name, const TrafficReadOptions& options) {
    TrafficLog log;
    std::string text;
    std::size_t line_number = 0;
    bool format_known = options.format.has_value();
    if (format_known) log.format = *options.format;
    bool csv_header_read = false;
    CsvColumns columns;
    std::vector<std::string> cells;
    const auto where = [&] { return name + ":" + std::to_string(line_number) + ": "; };
    // A bad line: skipped while the allowance lasts, else the log's error. Returns false to stop.
    const auto bad_line = [&](const std::string& why) {
        if (log.skipped_bad_lines >= options.max_bad_lines) {
            log.error = where() + why;
            if (options.max_bad_lines > 0)
                log.error += " (" + std::to_string(log.skipped_bad_lines) +
                             " bad lines skipped before it, the most allowed)";
            return false;
        }
        ++log.skipped_bad_lines;
        if (log.skipped_examples.size() < kQuotedExamples) log.skipped_examples.push_back(where() + why);
        return true;
    };
    while (std::getline(in, text)) {
        ++line_number;
        if (text.size() > kMaxLineBytes) {
            if (!bad_line("the line is longer than " + std::to_string(kMaxLineBytes) + " bytes")) return log;
            continue;
        }
        if (trim(text).empty()) continue;
        if (!format_known) {
            log.format = guess_traffic_format(text);
            format_known = true;
        }
        if (log.format == TrafficFormat::csv && !csv_header_read) {
            if (!split_csv(text, cells)) {
                log.error = where() + "the header row has an unterminated quote";
                return log;
            }
            if (auto error = read_csv_header(cells, columns); !error.empty()) {
                log.error = where() + error;
                return log;
            }
            csv_header_read = true;
            continue;
        }
        if (log.requests.size() >= options.max_requests) {
            log.error = where() + "more than " + std::to_string(options.max_requests) +
                        " requests: split the log and simulate it in parts";
            return log;
        }
        TrafficRequest request;
        request.line = line_number;
        std::string error;
        bool unreplayable = false;
        if (log.format == TrafficFormat::csv) {
            if (!split_csv(text, cells)) {
                error = "an unterminated quote";
            } else {
                error = parse_csv_row(cells, columns, request);
            }
        } else {
            const json line = json::parse(text, nullptr, false);
            if (line.is_discarded()) {
                error = "not JSON";
            } else if (log.format == TrafficFormat::access) {
                error = parse_access_line(line, request, unreplayable);
            } else {
                error = parse_jsonl_line(line, request);
            }
        }
        if (!error.empty()) {
            if (!bad_line(error)) return log;
            continue;
        }
        if (unreplayable) {
            ++log.unreplayable;
            continue;
        }
        log.requests.push_back(std::move(request));
    }
    if (in.bad()) log.error = name + ": read error after line " + std::to_string(line_number);
    if (log.format == TrafficFormat::csv && !csv_header_read && log.error.empty() && line_number > 0)
        log.error = name + ": no header row";
    log.carries_headers = log.format != TrafficFormat::access;
    return log;
}

}  // namespace sluice::simulate
