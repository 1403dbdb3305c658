// Fixed windows of whole days in a time zone with daylight saving (time_zone:), against
// America/New_York's 2026 changes: 2026-03-08 is 23 hours long (02:00 EST -> 03:00 EDT), and
// 2026-11-01 is 25 hours long (02:00 EDT -> 01:00 EST). A fixed utc_offset of -5h is right for
// only half of the year; the zone's day must start at local midnight all year.

#include <catch2/catch.hpp>

#include "sluice/common/clock.hpp"
#include "sluice/common/zoned_days.hpp"
#include "sluice/limit/limiter.hpp"

namespace {

using namespace std::chrono_literals;
using sluice::FakeClock;
using sluice::Instant;
using sluice::Nanos;
using sluice::ZonedDays;
using sluice::config::Algorithm;
using sluice::config::LimitConfig;
using sluice::limit::make_limiter;

// Local midnights in New York, as Unix time.
constexpr Nanos kMar7 = 1'772'859'600s;  // 2026-03-07 00:00 EST = 05:00 UTC
constexpr Nanos kMar8 = 1'772'946'000s;  // 2026-03-08 00:00 EST = 05:00 UTC (a 23 h day)
constexpr Nanos kMar9 = 1'773'028'800s;  // 2026-03-09 00:00 EDT = 04:00 UTC
constexpr Nanos kNov1 = 1'793'505'600s;  // 2026-11-01 00:00 EDT = 04:00 UTC (a 25 h day)
constexpr Nanos kNov2 = 1'793'595'600s;  // 2026-11-02 00:00 EST = 05:00 UTC

LimitConfig daily(std::int64_t limit, std::string zone, Nanos margin = 0ns) {
    LimitConfig c;
    c.name = "cc-daily";
    c.algorithm = Algorithm::fixed_window;
    c.limit = limit;
    c.window = 24h;
    c.time_zone = std::move(zone);
    c.margin = margin;
    return c;
}

}  // namespace

TEST_CASE("zoned days: periods start at local midnight, 23 h and 25 h across the changes",
          "[limit][fixed][zone]") {
    const ZonedDays ny("America/New_York", 1);
    const auto period = ny.period_of(kMar8.count());
    CHECK(ny.start_of(period) == kMar8.count());
    CHECK(ny.start_of(period + 1) == kMar9.count());
    CHECK(ny.start_of(period + 1) - ny.start_of(period) == Nanos(23h).count());
    CHECK(ny.period_of(kMar9.count() - 1) == period);
    CHECK(ny.period_of(kMar9.count()) == period + 1);
    CHECK(ny.period_of(kMar8.count() - 1) == period - 1);
    CHECK(ny.start_of(period - 1) == kMar7.count());

    const auto fall = ny.period_of(kNov1.count());
    CHECK(ny.start_of(fall + 1) - ny.start_of(fall) == Nanos(25h).count());
    CHECK(ny.period_of(kNov2.count() - 1) == fall);
    CHECK(ny.period_of(kNov2.count()) == fall + 1);

    // Seven-day periods hold seven local days, one of them 23 hours long.
    const ZonedDays weekly("America/New_York", 7);
    const auto week = weekly.period_of(kMar8.count());
    CHECK(weekly.start_of(week) <= kMar8.count());
    CHECK(weekly.start_of(week + 1) - weekly.start_of(week) == Nanos(7 * 24h - 1h).count());
}

TEST_CASE("zoned days: UTC and zones without daylight saving are plain days", "[limit][fixed][zone]") {
    const ZonedDays utc("UTC", 1);
    const auto p = utc.period_of(kMar8.count());
    CHECK(utc.start_of(p) == kMar8.count() - Nanos(5h).count());
    const ZonedDays tokyo("Asia/Tokyo", 1);  // UTC+9 all year
    const auto t = tokyo.period_of(kNov1.count());
    CHECK(tokyo.start_of(t + 1) - tokyo.start_of(t) == Nanos(24h).count());
    CHECK((tokyo.start_of(t) + Nanos(9h).count()) % Nanos(24h).count() == 0);
}

TEST_CASE("check_time_zone: IANA names only, with the reason otherwise", "[limit][fixed][zone]") {
    CHECK(sluice::check_time_zone("America/New_York").empty());
    CHECK(sluice::check_time_zone("Etc/GMT+5").empty());
    CHECK_FALSE(sluice::check_time_zone("America/Nowhere").empty());
    CHECK(sluice::check_time_zone("../../etc/passwd") ==
          "time_zone '../../etc/passwd' is not an IANA zone name");
    CHECK_FALSE(sluice::check_time_zone("").empty());
}

TEST_CASE("fixed window in a zone: the 23 h day resets at local midnight, not at 05:00 UTC",
          "[limit][fixed][zone]") {
    // Mono time unrelated to wall time, so the conversion is exercised.
    FakeClock clock(Instant{1000s, kMar8 + 22h});  // 2026-03-08 23:00 EDT, the day's last hour
    auto l = make_limiter(daily(3, "America/New_York"));
    for (int i = 0; i < 3; ++i) {
        REQUIRE(l->probe(0, 1, 0, clock.now()).allowed);
        l->consume(0, 1, clock.now());
    }
    const auto refused = l->probe(0, 1, 0, clock.now());
    CHECK_FALSE(refused.allowed);
    // The day ends 1 hour later (local midnight, 04:00 UTC), where a -5h offset would say 2 hours.
    CHECK(refused.earliest == clock.now().mono + 1h);
    CHECK(refused.reset == clock.now().mono + 1h);
    clock.advance(1h - 1ns);
    CHECK_FALSE(l->probe(0, 1, 0, clock.now()).allowed);
    clock.advance(1ns);
    CHECK(l->probe(0, 1, 0, clock.now()).allowed);
}

TEST_CASE("fixed window in a zone: the 25 h day holds its quota for 25 hours", "[limit][fixed][zone]") {
    FakeClock clock(Instant{1000s, kNov1});
    auto l = make_limiter(daily(2, "America/New_York"));
    for (int i = 0; i < 2; ++i) {
        REQUIRE(l->probe(0, 1, 0, clock.now()).allowed);
        l->consume(0, 1, clock.now());
    }
    CHECK(l->probe(0, 1, 0, clock.now()).earliest == clock.now().mono + 25h);
    clock.advance(24h);  // 00:00 UTC-5 would have been a new day for utc_offset: -5h
    CHECK_FALSE(l->probe(0, 1, 0, clock.now()).allowed);
    clock.advance(1h);
    CHECK(l->probe(0, 1, 0, clock.now()).allowed);
}

TEST_CASE("fixed window in a zone: units beyond today's room wait for a later local midnight",
          "[limit][fixed][zone]") {
    FakeClock clock(Instant{1000s, kMar8 + 1h});
    auto l = make_limiter(daily(2, "America/New_York"));
    // 5 units ahead of this one on a 2-a-day limit: 2 go today, 2 on the 9th, and this 6th one no
    // earlier than 2026-03-10 00:00 EDT (a 24 h day after the 23 h one).
    const auto d = l->probe(0, 1, 5, clock.now());
    CHECK_FALSE(d.allowed);
    CHECK(d.earliest == clock.now().mono + (kMar9 + 24h - (kMar8 + 1h)));
}

TEST_CASE("fixed window in a zone: the margin counts a unit near midnight in both days",
          "[limit][fixed][zone]") {
    FakeClock clock(Instant{1000s, kMar9 - 1s});  // one second before the 23 h day ends
    auto l = make_limiter(daily(1, "America/New_York", 5s));
    REQUIRE(l->probe(0, 1, 0, clock.now()).allowed);
    l->consume(0, 1, clock.now());
    clock.advance(2s);  // a new local day, but within the margin of the unit sent before it
    const auto d = l->probe(0, 1, 0, clock.now());
    CHECK_FALSE(d.allowed);
    // The unit counts in the new day too: free again only at the next local midnight + margin.
    CHECK(d.earliest == clock.now().mono + (kMar9 + 24h + 5s - (kMar9 + 1s)));
}
