#include "sluice/feedback/http_date.hpp"

#include <array>
#include <chrono>

namespace sluice::feedback {
namespace {

constexpr std::array<std::string_view, 7> kDayNames = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
constexpr std::array<std::string_view, 7> kLongDayNames = {"Monday", "Tuesday",  "Wednesday", "Thursday",
                                                           "Friday", "Saturday", "Sunday"};
constexpr std::array<std::string_view, 12> kMonthNames = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

bool iequals(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        auto lower = [](char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; };
        if (lower(a[i]) != lower(b[i])) return false;
    }
    return true;
}

// A cursor over the text; every step either consumes exactly what it expects or fails.
class Cursor {
public:
    explicit Cursor(std::string_view text) : text_(text) {}

    bool done() const noexcept { return text_.empty(); }

    bool literal(std::string_view expected) {
        if (text_.size() < expected.size() || !iequals(text_.substr(0, expected.size()), expected))
            return false;
        text_.remove_prefix(expected.size());
        return true;
    }

    // Exactly `count` digits.
    bool digits(std::size_t count, int& out) {
        if (text_.size() < count) return false;
        int value = 0;
        for (std::size_t i = 0; i < count; ++i) {
            const char c = text_[i];
            if (c < '0' || c > '9') return false;
            value = value * 10 + (c - '0');
        }
        out = value;
        text_.remove_prefix(count);
        return true;
    }

    template <std::size_t N>
    bool name(const std::array<std::string_view, N>& names, int& index) {
        for (std::size_t i = 0; i < N; ++i) {
            if (text_.size() >= names[i].size() && iequals(text_.substr(0, names[i].size()), names[i])) {
                // A short name must not be the start of a longer word ("Mon" vs "Monday").
                const auto rest = text_.substr(names[i].size());
                if (!rest.empty() && ((rest.front() >= 'a' && rest.front() <= 'z') ||
                                      (rest.front() >= 'A' && rest.front() <= 'Z'))) {
                    continue;
                }
                index = static_cast<int>(i);
                text_.remove_prefix(names[i].size());
                return true;
            }
        }
        return false;
    }

    // time-of-day = hour ":" minute ":" second
    bool time_of_day(int& hour, int& minute, int& second) {
        return digits(2, hour) && literal(":") && digits(2, minute) && literal(":") && digits(2, second);
    }

private:
    std::string_view text_;
};

struct Fields {
    int year = 0;
    int month = 0;  // 0-based
    int day = 0;
    int hour = 0;
    int minute = 0;
    int second = 0;
};

std::optional<std::int64_t> to_unix(const Fields& f) {
    using namespace std::chrono;
    if (f.month < 0 || f.month > 11 || f.hour > 23 || f.minute > 59 || f.second > 60) return std::nullopt;
    const year_month_day date{year{f.year}, month{static_cast<unsigned>(f.month + 1)},
                              day{static_cast<unsigned>(f.day)}};
    if (!date.ok()) return std::nullopt;
    const auto days = sys_days{date}.time_since_epoch().count();
    const std::int64_t seconds_of_day = f.hour * 3600 + f.minute * 60 + f.second;  // < 86401: fits an int
    return std::int64_t{days} * 86400 + seconds_of_day;
}

int year_of(Nanos wall) {
    using namespace std::chrono;
    const auto days = floor<std::chrono::days>(sys_time<Nanos>{wall});
    return static_cast<int>(year_month_day{days}.year());
}

// IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT"
std::optional<Fields> imf_fixdate(std::string_view text) {
    Cursor c(text);
    Fields f;
    int weekday = 0;
    if (c.name(kDayNames, weekday) && c.literal(", ") && c.digits(2, f.day) && c.literal(" ") &&
        c.name(kMonthNames, f.month) && c.literal(" ") && c.digits(4, f.year) && c.literal(" ") &&
        c.time_of_day(f.hour, f.minute, f.second) && c.literal(" GMT") && c.done()) {
        return f;
    }
    return std::nullopt;
}

// RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT"
std::optional<Fields> rfc850(std::string_view text, Nanos now_wall) {
    Cursor c(text);
    Fields f;
    int weekday = 0;
    int yy = 0;
    if (c.name(kLongDayNames, weekday) && c.literal(", ") && c.digits(2, f.day) && c.literal("-") &&
        c.name(kMonthNames, f.month) && c.literal("-") && c.digits(2, yy) && c.literal(" ") &&
        c.time_of_day(f.hour, f.minute, f.second) && c.literal(" GMT") && c.done()) {
        // RFC 9110 5.6.7: more than 50 years in the future -> the most recent past such year.
        const int current = year_of(now_wall);
        f.year = current / 100 * 100 + yy;
        if (f.year > current + 50) f.year -= 100;
        return f;
    }
    return std::nullopt;
}

// asctime: "Sun Nov  6 08:49:37 1994" (day is 2DIGIT or SP DIGIT)
std::optional<Fields> asctime_date(std::string_view text) {
    Cursor c(text);
    Fields f;
    int weekday = 0;
    if (!(c.name(kDayNames, weekday) && c.literal(" ") && c.name(kMonthNames, f.month) && c.literal(" "))) {
        return std::nullopt;
    }
    if (!c.literal(" ")) {
        if (!c.digits(2, f.day)) return std::nullopt;
    } else if (!c.digits(1, f.day)) {
        return std::nullopt;
    }
    if (c.literal(" ") && c.time_of_day(f.hour, f.minute, f.second) && c.literal(" ") &&
        c.digits(4, f.year) && c.done()) {
        return f;
    }
    return std::nullopt;
}

}  // namespace

std::optional<std::int64_t> parse_http_date(std::string_view text, Nanos now_wall) {
    while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
    while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
    std::optional<Fields> fields = imf_fixdate(text);
    if (!fields) fields = rfc850(text, now_wall);
    if (!fields) fields = asctime_date(text);
    if (!fields) return std::nullopt;
    return to_unix(*fields);
}

}  // namespace sluice::feedback
