#include "sluice/common/zoned_days.hpp"

#include <chrono>
#include <date/tz.h>
#include <exception>

#include "sluice/common/excerpt.hpp"

namespace sluice {
namespace {

constexpr std::int64_t kNanosPerDay = 86'400'000'000'000;

constexpr std::int64_t floor_div(std::int64_t a, std::int64_t b) noexcept {
    const std::int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

// IANA names are ASCII letters, digits and "/_+-" (Etc/GMT+5, America/Port-au-Prince); anything
// else cannot name a zone, and is refused before the database is asked.
bool plausible_zone_name(std::string_view name) {
    if (name.empty() || name.size() > 64) return false;
    for (const char c : name) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                        c == '/' || c == '_' || c == '+' || c == '-';
        if (!ok) return false;
    }
    return true;
}

}  // namespace

std::string check_time_zone(std::string_view name) {
    if (!plausible_zone_name(name)) {
        return "time_zone " + quoted_excerpt(name) + " is not an IANA zone name";
    }
    try {
        (void)date::locate_zone(name);
        return "";
    } catch (const std::exception& e) {
        // The database's own reason: the zone is unknown, or the database could not be read.
        return "time_zone " + quoted_excerpt(name) + ": " + e.what() +
               " (is the tzdata package installed? zones are read from /usr/share/zoneinfo)";
    }
}

ZonedDays::ZonedDays(const std::string& name, std::int64_t days)
    : name_(name), zone_(date::locate_zone(name)), days_(days < 1 ? 1 : days) {}

std::int64_t ZonedDays::period_of(std::int64_t wall_ns) const {
    if (wall_ns >= cached_start_ && wall_ns < cached_end_) return cached_period_;
    using namespace std::chrono;
    const date::sys_seconds at{floor<seconds>(nanoseconds{wall_ns})};
    const auto info = zone_->get_info(at);
    const std::int64_t local_ns = wall_ns + duration_cast<nanoseconds>(info.offset).count();
    const std::int64_t period = floor_div(floor_div(local_ns, kNanosPerDay), days_);
    cached_period_ = period;
    cached_start_ = start_of(period);
    cached_end_ = start_of(period + 1);
    return period;
}

std::int64_t ZonedDays::start_of(std::int64_t period) const {
    using namespace std::chrono;
    const date::local_seconds midnight{duration_cast<seconds>(date::days{period * days_})};
    const auto info = zone_->get_info(midnight);
    std::int64_t sys_seconds = 0;
    switch (info.result) {
        case date::local_info::unique:
        case date::local_info::ambiguous:  // midnight twice: the day starts at the first one
            sys_seconds = (midnight - info.first.offset).time_since_epoch().count();
            break;
        case date::local_info::nonexistent:  // skipped by a change at midnight: the day starts at the change
            sys_seconds = info.first.end.time_since_epoch().count();
            break;
    }
    return sys_seconds * 1'000'000'000;
}

}  // namespace sluice
