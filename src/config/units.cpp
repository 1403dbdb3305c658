// Duration and size syntax shared by every key that takes one (docs/configuration.md,
// "Durations and sizes"). Integers only: a fraction such as "1.5s" is rejected rather
// than rounded, because a limit's window must be exactly what the vendor documents.

#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string_view>

#include "sluice/config/loader.hpp"

namespace sluice::config {
namespace {

constexpr std::int64_t kMaxNanos = std::numeric_limits<std::int64_t>::max();

std::optional<std::int64_t> unit_nanos(std::string_view unit) {
    if (unit == "ns") return 1;
    if (unit == "us" || unit == "\u00b5s") return 1'000;
    if (unit == "ms") return 1'000'000;
    if (unit == "s") return 1'000'000'000;
    if (unit == "m") return 60'000'000'000;
    if (unit == "h") return 3'600'000'000'000;
    if (unit == "d") return 86'400'000'000'000;
    return std::nullopt;
}

bool is_digit(char c) {
    return c >= '0' && c <= '9';
}

// Reads a run of decimal digits at `pos`; nullopt if there is none or it overflows.
std::optional<std::uint64_t> read_digits(std::string_view text, std::size_t& pos) {
    const std::size_t start = pos;
    std::uint64_t value = 0;
    while (pos < text.size() && is_digit(text[pos])) {
        const auto digit = static_cast<std::uint64_t>(text[pos] - '0');
        if (value > (std::numeric_limits<std::uint64_t>::max() - digit) / 10) return std::nullopt;
        value = value * 10 + digit;
        ++pos;
    }
    if (pos == start) return std::nullopt;
    return value;
}

}  // namespace

std::optional<Duration> parse_duration(std::string_view text, bool allow_negative) {
    std::size_t pos = 0;
    bool negative = false;
    if (pos < text.size() && (text[pos] == '-' || text[pos] == '+')) {
        negative = text[pos] == '-';
        ++pos;
    }
    if (negative && !allow_negative) return std::nullopt;
    if (pos == text.size()) return std::nullopt;

    std::int64_t total = 0;
    while (pos < text.size()) {
        const auto number = read_digits(text, pos);
        if (!number) return std::nullopt;
        // The unit is the whole run of letters, so "1ms" is milliseconds and never "1m" + "s".
        const std::size_t unit_start = pos;
        while (pos < text.size() && (std::isalpha(static_cast<unsigned char>(text[pos])) ||
                                     static_cast<unsigned char>(text[pos]) >= 0x80)) {
            ++pos;
        }
        const auto unit = unit_nanos(text.substr(unit_start, pos - unit_start));
        if (!unit) return std::nullopt;  // also a bare number: a unit is required
        if (*number > static_cast<std::uint64_t>(kMaxNanos / *unit)) return std::nullopt;
        const auto part = static_cast<std::int64_t>(*number) * *unit;
        if (total > kMaxNanos - part) return std::nullopt;
        total += part;
    }
    return Duration(negative ? -total : total);
}

std::optional<std::uint64_t> parse_size(std::string_view text) {
    std::size_t pos = 0;
    const auto number = read_digits(text, pos);
    if (!number) return std::nullopt;
    std::string suffix;
    for (const char c : text.substr(pos))
        suffix += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::uint64_t multiplier = 1;
    if (suffix.empty()) {
        multiplier = 1;
    } else if (suffix == "k" || suffix == "kib") {
        multiplier = 1ull << 10;
    } else if (suffix == "m" || suffix == "mib") {
        multiplier = 1ull << 20;
    } else if (suffix == "g" || suffix == "gib") {
        multiplier = 1ull << 30;
    } else {
        return std::nullopt;
    }
    if (*number > std::numeric_limits<std::uint64_t>::max() / multiplier) return std::nullopt;
    return *number * multiplier;
}

std::optional<Duration> parse_max_wait_header(std::string_view text) {
    if (auto d = parse_duration(text)) return *d;
    double seconds = 0;
    const auto* end = text.data() + text.size();
    const auto [ptr, ec] = std::from_chars(text.data(), end, seconds);
    if (ec != std::errc() || ptr != end || !std::isfinite(seconds) || seconds < 0) return std::nullopt;
    return std::chrono::duration_cast<Duration>(std::chrono::duration<double>(std::min(seconds, 1e9)));
}

}  // namespace sluice::config
