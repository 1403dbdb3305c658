#pragma once
// Calendar periods of whole days in an IANA time zone (America/New_York): period k starts at
// local midnight of local day k * days (days counted from 1970-01-01), so a day is 23 or 25 hours
// long across a daylight saving change, as a vendor that counts "per day, Eastern time" counts it.
// Pure code over the system's tz database (Debian's tzdata, read by Howard Hinnant's date/tz
// library, which GCC 12's std::chrono lacks); times are Unix nanoseconds, as in Instant::wall.
//
// Not thread-safe: the last period found is cached (a limiter asks about the same day again and
// again), and the caller serialises calls (the admission controller does).

#include <cstdint>
#include <string>
#include <string_view>

namespace date {
class time_zone;
}

namespace sluice {

// "" when `name` is a zone of the system's tz database; otherwise why not, for a config error.
std::string check_time_zone(std::string_view name);

class ZonedDays {
public:
    // `name` must have passed check_time_zone; `days` >= 1.
    ZonedDays(const std::string& name, std::int64_t days);

    // The period holding Unix time `wall_ns`, and where periods start (Unix ns).
    std::int64_t period_of(std::int64_t wall_ns) const;
    std::int64_t start_of(std::int64_t period) const;

    const std::string& name() const noexcept { return name_; }

private:
    std::string name_;
    const date::time_zone* zone_;
    std::int64_t days_;
    // The period last asked about: [cached_start_, cached_end_) is period cached_period_.
    mutable std::int64_t cached_period_ = 0;
    mutable std::int64_t cached_start_ = 0;
    mutable std::int64_t cached_end_ = 0;  // cached_end_ <= cached_start_: nothing cached
};

}  // namespace sluice
