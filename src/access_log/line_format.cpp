#include "sluice/access_log/line_format.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstring>

namespace sluice::access_log {

namespace {

// The line is written through a raw pointer into room reserved up front (one resize of
// a string whose capacity stays from line to line): measured under callgrind, appending
// piece by piece to the std::string cost about twice as many instructions.
//
// What the fixed parts of a line take at most: the field names and punctuation (about
// 240 bytes), the time (24), six numbers of at most 20 digits and two durations of at
// most 28.
constexpr std::size_t kFixedBound = 640;
// An escaped byte takes at most 6 bytes ("\u001f"; U+FFFD for a bad byte is "\ufffd").
constexpr std::size_t kEscapedBound = 6;

constexpr char kHex[] = "0123456789abcdef";

// Per byte: 0 copied as is, 1 escaped (JSON specials and control bytes), 2 the start
// of something that is either UTF-8 or not.
constexpr std::array<std::uint8_t, 256> kByteClass = [] {
    std::array<std::uint8_t, 256> classes{};
    for (int c = 0; c < 256; ++c) {
        if (c < 0x20 || c == 0x7f || c == '"' || c == '\\') {
            classes[c] = 1;
        } else if (c >= 0x80) {
            classes[c] = 2;
        }
    }
    return classes;
}();

class Cursor {
public:
    explicit Cursor(char* at) : at_(at) {}
    char* at() const { return at_; }

    template <std::size_t N>
    void literal(const char (&text)[N]) {
        std::memcpy(at_, text, N - 1);
        at_ += N - 1;
    }
    void raw(std::string_view text) {
        std::memcpy(at_, text.data(), text.size());
        at_ += text.size();
    }
    void put(char c) { *at_++ = c; }
    void number(std::uint64_t value) { at_ = std::to_chars(at_, at_ + 20, value).ptr; }
    void padded(unsigned value, int width) {
        for (int i = width - 1; i >= 0; --i) {
            at_[i] = static_cast<char>('0' + value % 10);
            value /= 10;
        }
        at_ += width;
    }
    // Seconds with microsecond resolution, in integer arithmetic so a line never depends
    // on how a double prints: "0.000250", "12.500000".
    void seconds(std::chrono::nanoseconds duration) {
        const auto ns = duration.count() < 0 ? 0 : duration.count();
        const auto micros = static_cast<std::uint64_t>((ns + 500) / 1000);
        number(micros / 1'000'000);
        put('.');
        padded(static_cast<unsigned>(micros % 1'000'000), 6);
    }
    void escaped(std::string_view text);
    void string(std::string_view text) {
        put('"');
        escaped(text);
        put('"');
    }
    void time(std::int64_t unix_ms);

private:
    char* at_;
};

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

// Whether any of 8 bytes needs more than a copy: below 0x20, 0x7f and above, '"' or '\\'
// (the classic "has a byte less than n" and "has a zero byte" word tricks: exact as to
// whether one exists).
bool word_needs_escaping(std::uint64_t word) {
    constexpr std::uint64_t kOnes = 0x0101010101010101ull;
    constexpr std::uint64_t kHigh = 0x8080808080808080ull;
    const auto has_zero = [](std::uint64_t x) { return (x - kOnes) & ~x & kHigh; };
    const auto below_space = (word - kOnes * 0x20) & ~word & kHigh;
    return (below_space | (word & kHigh) | has_zero(word ^ (kOnes * '"')) | has_zero(word ^ (kOnes * '\\')) |
            has_zero(word ^ (kOnes * 0x7f))) != 0;
}

void Cursor::escaped(std::string_view text) {
    std::size_t i = 0;
    const std::size_t size = text.size();
    while (i < size) {
        // Eight plain bytes at a time: paths and names are mostly plain ASCII.
        if (size - i >= 8) {
            std::uint64_t word;
            std::memcpy(&word, text.data() + i, 8);
            if (!word_needs_escaping(word)) {
                std::memcpy(at_, &word, 8);
                at_ += 8;
                i += 8;
                continue;
            }
        }
        const auto c = static_cast<unsigned char>(text[i]);
        const auto kind = kByteClass[c];
        if (kind == 0) {
            *at_++ = static_cast<char>(c);
            ++i;
            continue;
        }
        if (kind == 1) {
            *at_++ = '\\';
            switch (c) {
                case '"': *at_++ = '"'; break;
                case '\\': *at_++ = '\\'; break;
                case '\n': *at_++ = 'n'; break;
                case '\r': *at_++ = 'r'; break;
                case '\t': *at_++ = 't'; break;
                default:
                    literal("u00");
                    *at_++ = kHex[c >> 4];
                    *at_++ = kHex[c & 0xf];
            }
            ++i;
            continue;
        }
        if (const auto length = utf8_sequence_length(text, i)) {
            raw(text.substr(i, length));
            i += length;
        } else {
            literal("\\ufffd");  // not UTF-8: replaced, byte by byte
            ++i;
        }
    }
}

void Cursor::time(std::int64_t unix_ms) {
    using namespace std::chrono;
    // Lines of one second share their date and time but for the milliseconds: the
    // calendar arithmetic is done once per second and thread.
    thread_local std::int64_t cached_second = INT64_MIN;
    thread_local char cached_text[19];
    const auto second = unix_ms >= 0 ? unix_ms / 1000 : (unix_ms - 999) / 1000;
    if (second != cached_second) {
        const sys_seconds at{std::chrono::seconds(second)};
        const auto day = floor<days>(at);
        const year_month_day date{day};
        const hh_mm_ss<std::chrono::seconds> clock{at - day};
        Cursor text(cached_text);
        text.padded(static_cast<unsigned>(static_cast<int>(date.year())), 4);
        text.put('-');
        text.padded(static_cast<unsigned>(date.month()), 2);
        text.put('-');
        text.padded(static_cast<unsigned>(date.day()), 2);
        text.put('T');
        text.padded(static_cast<unsigned>(clock.hours().count()), 2);
        text.put(':');
        text.padded(static_cast<unsigned>(clock.minutes().count()), 2);
        text.put(':');
        text.padded(static_cast<unsigned>(clock.seconds().count()), 2);
        cached_second = second;
    }
    raw(std::string_view(cached_text, sizeof cached_text));
    put('.');
    padded(static_cast<unsigned>(unix_ms - second * 1000), 3);
    put('Z');
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
    if (redacted.empty()) return false;
    char decoded[256];
    std::size_t length = 0;
    const bool decodable = name.size() <= sizeof decoded;
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
    const auto old_size = out.size();
    out.resize(old_size + 2 + kEscapedBound * text.size());
    Cursor cursor(out.data() + old_size);
    cursor.string(text);
    out.resize(static_cast<std::size_t>(cursor.at() - out.data()));
}

void append_redacted_query(std::string_view query, const std::vector<std::string>& redacted,
                           std::string& out) {
    redact_query(query, redacted, [&out](std::string_view piece) { out.append(piece); });
}

void append_rfc3339_ms(std::int64_t unix_ms, std::string& out) {
    const auto old_size = out.size();
    out.resize(old_size + 24);
    Cursor cursor(out.data() + old_size);
    cursor.time(unix_ms);
}

void append_line(const RequestRecord& record, const LineOptions& options, std::string& out) {
    // A request whose header could not be parsed has no method, host or path: null,
    // not the previous request's.
    const bool parsed = !record.method.empty();
    std::size_t variable = record.route.value_or(std::string_view()).size() + record.priority.size() +
                           record.caller.size() + record.method.size() + record.host.size() +
                           record.path.size() + record.answered_by.size();
    for (std::size_t i = 0; i < record.delayed_by_count; ++i) variable += record.delayed_by[i].size() + 3;
    std::size_t query_bound = 0;
    if (options.log_query) {
        // Each parameter's value may become "REDACTED", longer than it was.
        const auto parameters =
            static_cast<std::size_t>(std::count(record.query.begin(), record.query.end(), '&')) + 1;
        query_bound = kEscapedBound * record.query.size() + kRedacted.size() * parameters + 16;
    }
    const auto old_size = out.size();
    out.resize(old_size + kFixedBound + kEscapedBound * variable + query_bound);
    Cursor line(out.data() + old_size);

    line.literal("{\"time\":\"");
    line.time(record.unix_ms);
    line.literal("\",\"route\":");
    if (record.route) {
        line.string(*record.route);
    } else {
        line.literal("null");
    }
    line.literal(",\"priority\":");
    if (!record.priority.empty()) {
        line.string(record.priority);
    } else {
        line.literal("null");
    }
    line.literal(",\"caller\":");
    if (record.has_caller) {
        line.string(record.caller);
    } else {
        line.literal("null");
    }
    const auto field = [&](std::string_view value) {
        if (parsed) {
            line.string(value);
        } else {
            line.literal("null");
        }
    };
    line.literal(",\"method\":");
    field(record.method);
    line.literal(",\"host\":");
    field(record.host);
    line.literal(",\"path\":");
    field(record.path);
    if (options.log_query) {
        line.literal(",\"query\":");
        if (parsed) {
            line.put('"');
            redact_query(record.query, options.redacted_query_params,
                         [&line](std::string_view piece) { line.escaped(piece); });
            line.put('"');
        } else {
            line.literal("null");
        }
    }
    line.literal(",\"status\":");
    if (record.status != 0) {
        line.number(record.status);
    } else {
        line.literal("null");
    }
    line.literal(",\"answered_by\":");
    if (!record.answered_by.empty()) {
        line.string(record.answered_by);
    } else {
        line.literal("null");
    }
    line.literal(",\"queue_wait_seconds\":");
    line.seconds(record.queue_wait);
    line.literal(",\"upstream_seconds\":");
    if (record.upstream_time) {
        line.seconds(*record.upstream_time);
    } else {
        line.literal("null");
    }
    line.literal(",\"bytes_in\":");
    line.number(record.bytes_in);
    line.literal(",\"bytes_out\":");
    line.number(record.bytes_out);
    line.literal(",\"attempts\":");
    line.number(record.attempts);
    line.literal(",\"delayed_by\":[");
    for (std::size_t i = 0; i < record.delayed_by_count; ++i) {
        if (i > 0) line.put(',');
        line.string(record.delayed_by[i]);
    }
    line.literal("],\"complete\":");
    if (record.complete) {
        line.literal("true");
    } else {
        line.literal("false");
    }
    line.literal("}\n");
    out.resize(static_cast<std::size_t>(line.at() - out.data()));
}

}  // namespace sluice::access_log
