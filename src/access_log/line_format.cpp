#include "sluice/access_log/line_format.hpp"

#include <charconv>
#include <chrono>
#include <cstdint>

namespace sluice::access_log {

namespace {

constexpr char kHex[] = "0123456789abcdef";

void append_unsigned(std::uint64_t value, std::string& out) {
    char digits[20];
    const auto [end, ec] = std::to_chars(digits, digits + sizeof digits, value);
    out.append(digits, end);
}

void append_padded(unsigned value, int width, std::string& out) {
    char digits[10];
    for (int i = width - 1; i >= 0; --i) {
        digits[i] = static_cast<char>('0' + value % 10);
        value /= 10;
    }
    out.append(digits, static_cast<std::size_t>(width));
}

// Seconds with microsecond resolution, in integer arithmetic so a line never depends on
// how a double prints: "0.000250", "12.500000".
void append_seconds(std::chrono::nanoseconds duration, std::string& out) {
    const auto ns = duration.count() < 0 ? 0 : duration.count();
    const auto micros = static_cast<std::uint64_t>((ns + 500) / 1000);
    append_unsigned(micros / 1'000'000, out);
    out.push_back('.');
    append_padded(static_cast<unsigned>(micros % 1'000'000), 6, out);
}

// The length of the valid UTF-8 sequence starting text[i] (RFC 3629: no overlong
// forms, no surrogates, nothing above U+10FFFF), or 0 when it is not one.
std::size_t utf8_sequence_length(std::string_view text, std::size_t i) {
    const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(text[k]); };
    const auto lead = byte(i);
    std::size_t length = 0;
    unsigned char low = 0x80;
    unsigned char high = 0xbf;
    if (lead >= 0xc2 && lead <= 0xdf) {
        length = 2;
    } else if (lead >= 0xe0 && lead <= 0xef) {
        length = 3;
        if (lead == 0xe0) low = 0xa0;   // overlong
        if (lead == 0xed) high = 0x9f;  // surrogates
    } else if (lead >= 0xf0 && lead <= 0xf4) {
        length = 4;
        if (lead == 0xf0) low = 0x90;   // overlong
        if (lead == 0xf4) high = 0x8f;  // above U+10FFFF
    } else {
        return 0;
    }
    if (i + length > text.size()) return 0;
    if (byte(i + 1) < low || byte(i + 1) > high) return 0;
    for (std::size_t k = 2; k < length; ++k)
        if (byte(i + k) < 0x80 || byte(i + k) > 0xbf) return 0;
    return length;
}

bool iequals_ascii(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        auto x = static_cast<unsigned char>(a[i]);
        auto y = static_cast<unsigned char>(b[i]);
        if (x >= 'A' && x <= 'Z') x = static_cast<unsigned char>(x + 32);
        if (y >= 'A' && y <= 'Z') y = static_cast<unsigned char>(y + 32);
        if (x != y) return false;
    }
    return true;
}

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// Whether a parameter name, as sent or percent-decoded ('+' as a space), is one of
// `redacted`, ignoring case. Decoding goes into a fixed buffer: a name longer than it
// is compared as sent only, and no redacted name is that long.
bool is_redacted(std::string_view name, const std::vector<std::string>& redacted) {
    char decoded[256];
    std::size_t length = 0;
    bool decodable = name.size() <= sizeof decoded;
    for (std::size_t i = 0; decodable && i < name.size(); ++i) {
        char c = name[i];
        if (c == '%' && i + 2 < name.size() && hex_value(name[i + 1]) >= 0 && hex_value(name[i + 2]) >= 0) {
            c = static_cast<char>(hex_value(name[i + 1]) * 16 + hex_value(name[i + 2]));
            i += 2;
        } else if (c == '+') {
            c = ' ';
        }
        decoded[length++] = c;
    }
    for (const auto& secret : redacted) {
        if (iequals_ascii(name, secret)) return true;
        if (decodable && iequals_ascii(std::string_view(decoded, length), secret)) return true;
    }
    return false;
}

void append_escaped(std::string_view text, std::string& out) {
    std::size_t i = 0;
    while (i < text.size()) {
        const auto c = static_cast<unsigned char>(text[i]);
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
            // Runs of plain ASCII, the common case, are copied at once.
            std::size_t end = i + 1;
            while (end < text.size()) {
                const auto d = static_cast<unsigned char>(text[end]);
                if (d < 0x20 || d >= 0x7f || d == '"' || d == '\\') break;
                ++end;
            }
            out.append(text.data() + i, end - i);
            i = end;
            continue;
        }
        if (c < 0x80) {
            switch (c) {
                case '"': out.append("\\\""); break;
                case '\\': out.append("\\\\"); break;
                case '\n': out.append("\\n"); break;
                case '\r': out.append("\\r"); break;
                case '\t': out.append("\\t"); break;
                default: {
                    const char escaped[] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 0xf]};
                    out.append(escaped, sizeof escaped);
                }
            }
            ++i;
            continue;
        }
        if (const auto length = utf8_sequence_length(text, i)) {
            out.append(text.data() + i, length);
            i += length;
        } else {
            out.append("\\ufffd");  // not UTF-8: replaced, byte by byte
            ++i;
        }
    }
}

// The query piece by piece, each redacted parameter's value replaced: `emit` gets the
// pieces to write in order (escaped or not, as the caller needs).
template <class Emit>
void redact_query(std::string_view query, const std::vector<std::string>& redacted, Emit&& emit) {
    bool first = true;
    while (true) {
        const auto amp = query.find('&');
        const auto part = query.substr(0, amp);
        if (!first) emit(std::string_view("&"));
        first = false;
        const auto eq = part.find('=');
        if (eq != std::string_view::npos && is_redacted(part.substr(0, eq), redacted)) {
            emit(part.substr(0, eq + 1));
            emit(kRedacted);
        } else {
            emit(part);
        }
        if (amp == std::string_view::npos) break;
        query.remove_prefix(amp + 1);
    }
}

}  // namespace

void append_json_string(std::string_view text, std::string& out) {
    out.push_back('"');
    append_escaped(text, out);
    out.push_back('"');
}

void append_redacted_query(std::string_view query, const std::vector<std::string>& redacted,
                           std::string& out) {
    redact_query(query, redacted, [&out](std::string_view piece) { out.append(piece); });
}

void append_rfc3339_ms(std::int64_t unix_ms, std::string& out) {
    using namespace std::chrono;
    const sys_time<milliseconds> at{milliseconds(unix_ms)};
    const auto day = floor<days>(at);
    const year_month_day date{day};
    const hh_mm_ss<milliseconds> time{at - day};
    append_padded(static_cast<unsigned>(static_cast<int>(date.year())), 4, out);
    out.push_back('-');
    append_padded(static_cast<unsigned>(date.month()), 2, out);
    out.push_back('-');
    append_padded(static_cast<unsigned>(date.day()), 2, out);
    out.push_back('T');
    append_padded(static_cast<unsigned>(time.hours().count()), 2, out);
    out.push_back(':');
    append_padded(static_cast<unsigned>(time.minutes().count()), 2, out);
    out.push_back(':');
    append_padded(static_cast<unsigned>(time.seconds().count()), 2, out);
    out.push_back('.');
    append_padded(static_cast<unsigned>(time.subseconds().count()), 3, out);
    out.push_back('Z');
}

void append_line(const RequestRecord& record, const LineOptions& options, std::string& out) {
    // A request whose header could not be parsed has no method, host or path: null,
    // not the previous request's.
    const bool parsed = !record.method.empty();
    out.append("{\"time\":\"");
    append_rfc3339_ms(record.unix_ms, out);
    out.append("\",\"route\":");
    if (record.route) {
        append_json_string(*record.route, out);
    } else {
        out.append("null");
    }
    const auto field = [&](const char* prefix, std::string_view value) {
        out.append(prefix);
        if (parsed) {
            append_json_string(value, out);
        } else {
            out.append("null");
        }
    };
    field(",\"method\":", record.method);
    field(",\"host\":", record.host);
    field(",\"path\":", record.path);
    if (options.log_query) {
        out.append(",\"query\":");
        if (parsed) {
            out.push_back('"');
            redact_query(record.query, options.redacted_query_params,
                         [&out](std::string_view piece) { append_escaped(piece, out); });
            out.push_back('"');
        } else {
            out.append("null");
        }
    }
    out.append(",\"status\":");
    if (record.status != 0) {
        append_unsigned(record.status, out);
    } else {
        out.append("null");
    }
    out.append(",\"answered_by\":");
    if (!record.answered_by.empty()) {
        append_json_string(record.answered_by, out);
    } else {
        out.append("null");
    }
    out.append(",\"queue_wait_seconds\":");
    append_seconds(record.queue_wait, out);
    out.append(",\"upstream_seconds\":");
    if (record.upstream_time) {
        append_seconds(*record.upstream_time, out);
    } else {
        out.append("null");
    }
    out.append(",\"bytes_in\":");
    append_unsigned(record.bytes_in, out);
    out.append(",\"bytes_out\":");
    append_unsigned(record.bytes_out, out);
    out.append(",\"attempts\":");
    append_unsigned(record.attempts, out);
    out.append(",\"delayed_by\":[");
    for (std::size_t i = 0; i < record.delayed_by_count; ++i) {
        if (i > 0) out.push_back(',');
        append_json_string(record.delayed_by[i], out);
    }
    out.append("],\"complete\":");
    out.append(record.complete ? "true" : "false");
    out.append("}\n");
}

}  // namespace sluice::access_log
