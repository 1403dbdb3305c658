#include <catch2/catch.hpp>

#include "sluice/common/clock.hpp"
#include "sluice/limit/limiter.hpp"

namespace {

using namespace std::chrono_literals;
using sluice::FakeClock;
using sluice::Instant;
using sluice::kNever;
using sluice::Nanos;
using sluice::config::Algorithm;
using sluice::config::LimitConfig;
using sluice::limit::Limiter;
using sluice::limit::make_limiter;

constexpr Nanos kDay = 24h;

LimitConfig fixed(std::int64_t limit, Nanos window, Nanos utc_offset = 0ns, Nanos margin = 0ns) {
    LimitConfig c;
    c.name = "fw";
    c.algorithm = Algorithm::fixed_window;
    c.limit = limit;
    c.window = window;
    c.utc_offset = utc_offset;
    c.margin = margin;
    return c;
}

// A clock whose wall time is `wall` (Unix ns) and whose mono time is unrelated
// (1000 s): earliest must be converted, not copied.
FakeClock clock_at(Nanos wall) {
    return FakeClock(Instant{1000s, wall});
}

// 2023-11-14 00:00:00 UTC (a Tuesday), a whole number of days since the epoch.
constexpr Nanos kMidnight = 1'699'920'000s;

void admit(Limiter& l, FakeClock& clock, std::int64_t cost = 1) {
    REQUIRE(l.probe(0, cost, 0, clock.now()).allowed);
    l.consume(0, cost, clock.now());
}

}  // namespace

TEST_CASE("fixed window: 999 ms vs 1000 ms at a second boundary", "[limit][fixed]") {
    auto clock = clock_at(kMidnight + 10s);
    auto l = make_limiter(fixed(4, 1s));
    for (int i = 0; i < 4; ++i) admit(*l, clock);
    auto d = l->probe(0, 1, 0, clock.now());
    CHECK_FALSE(d.allowed);
    CHECK(d.remaining == 0);
    CHECK(d.earliest == clock.now().mono + 1s);
    CHECK(d.reset == clock.now().mono + 1s);
    clock.advance(999ms);
    CHECK_FALSE(l->probe(0, 1, 0, clock.now()).allowed);
    clock.advance(999'999ns);
    CHECK_FALSE(l->probe(0, 1, 0, clock.now()).allowed);
    clock.advance(1ns);
    d = l->probe(0, 1, 0, clock.now());
    CHECK(d.allowed);
    CHECK(d.remaining == 4);
}

TEST_CASE("fixed window: the count resets at the boundary, not a window after the first use",
          "[limit][fixed]") {
    auto clock = clock_at(kMidnight + 10s + 900ms);
    auto l = make_limiter(fixed(4, 1s));
    admit(*l, clock, 4);
    clock.advance(100ms);  // the next second began: a full window at once
    CHECK(l->probe(0, 4, 0, clock.now()).allowed);
}

TEST_CASE("fixed window: 10,000 per day with a US-Eastern day (utc_offset -5h)", "[limit][fixed]") {
    // 04:59:59.999 UTC: one millisecond before the Eastern day starts at 05:00 UTC.
    auto clock = clock_at(kMidnight + 5h - 1ms);
    auto l = make_limiter(fixed(10'000, kDay, -5h));
    admit(*l, clock, 10'000);
    auto d = l->probe(0, 1, 0, clock.now());
    CHECK_FALSE(d.allowed);
    CHECK(d.earliest == clock.now().mono + 1ms);
    clock.advance(1ms);
    CHECK(l->probe(0, 10'000, 0, clock.now()).allowed);
    admit(*l, clock, 10'000);
    // Spent at 05:00 UTC: nothing until 05:00 UTC the next day, across UTC midnight.
    d = l->probe(0, 1, 0, clock.now());
    CHECK(d.earliest == clock.now().mono + kDay);
    clock.advance(19h);  // 00:00 UTC: a new UTC day, the same Eastern day
    CHECK_FALSE(l->probe(0, 1, 0, clock.now()).allowed);
    clock.advance(5h - 1ns);
    CHECK_FALSE(l->probe(0, 1, 0, clock.now()).allowed);
    clock.advance(1ns);
    CHECK(l->probe(0, 1, 0, clock.now()).allowed);
}

TEST_CASE("fixed window: a positive utc_offset starts the day before UTC midnight", "[limit][fixed]") {
    auto clock = clock_at(kMidnight - 2h - 1ns);  // 21:59:59.999999999 UTC, one ns before 00:00 at UTC+2
    auto l = make_limiter(fixed(1, kDay, 2h));
    admit(*l, clock);
    CHECK(l->probe(0, 1, 0, clock.now()).earliest == clock.now().mono + 1ns);
    clock.advance(1ns);
    admit(*l, clock);
    clock.advance(23h);
    CHECK_FALSE(l->probe(0, 1, 0, clock.now()).allowed);
    clock.advance(1h);
    CHECK(l->probe(0, 1, 0, clock.now()).allowed);
}

TEST_CASE("fixed window: margin keeps the spent window in force after the boundary", "[limit][fixed]") {
    auto clock = clock_at(kMidnight + 5h - 10min);
    auto l = make_limiter(fixed(100, kDay, -5h, 1min));
    admit(*l, clock, 100);
    auto d = l->probe(0, 1, 0, clock.now());
    CHECK(d.earliest == clock.now().mono + 11min);  // boundary (10 min away) + margin
    clock.advance(10min);                           // at the boundary: still refused
    CHECK_FALSE(l->probe(0, 1, 0, clock.now()).allowed);
    clock.advance(1min - 1ns);
    CHECK_FALSE(l->probe(0, 1, 0, clock.now()).allowed);
    clock.advance(1ns);
    d = l->probe(0, 100, 0, clock.now());
    CHECK(d.allowed);
    CHECK(d.remaining == 100);
}

TEST_CASE("fixed window: units within the margin before a boundary count in both windows", "[limit][fixed]") {
    auto clock = clock_at(kMidnight + 1h - 30s);
    auto l = make_limiter(fixed(10, 1h, 0ns, 1min));
    admit(*l, clock, 6);  // 30 s before the boundary: counts in this hour and the next
    clock.advance(2min);  // 90 s into the next hour, past the margin
    const auto d = l->probe(0, 5, 0, clock.now());
    CHECK_FALSE(d.allowed);
    CHECK(d.remaining == 4);
    CHECK(l->probe(0, 4, 0, clock.now()).allowed);
    // Without the margin the next hour would be empty.
    auto clock2 = clock_at(kMidnight + 1h - 30s);
    auto plain = make_limiter(fixed(10, 1h));
    admit(*plain, clock2, 6);
    clock2.advance(2min);
    CHECK(plain->probe(0, 10, 0, clock2.now()).allowed);
}

TEST_CASE("fixed window: cost > 1, cost > limit, units ahead", "[limit][fixed]") {
    auto clock = clock_at(kMidnight + 30s);
    auto l = make_limiter(fixed(10, 1min));
    admit(*l, clock, 5);
    CHECK(l->probe(0, 5, 0, clock.now()).allowed);
    CHECK_FALSE(l->probe(0, 6, 0, clock.now()).allowed);
    CHECK(l->probe(0, 11, 0, clock.now()).earliest == kNever);
    CHECK(l->probe(0, 1, 4, clock.now()).allowed);
    CHECK(l->probe(0, 1, 5, clock.now()).earliest == clock.now().mono + 30s);
    // More ahead than the next window holds: 5 fit now, 10 in each later window.
    CHECK(l->probe(0, 3, 8, clock.now()).earliest == clock.now().mono + 30s);
    CHECK(l->probe(0, 1, 14, clock.now()).earliest == clock.now().mono + 30s);
    CHECK(l->probe(0, 1, 15, clock.now()).earliest == clock.now().mono + 90s);
    CHECK(l->probe(0, 1, 24, clock.now()).earliest == clock.now().mono + 90s);
    CHECK(l->probe(0, 1, 25, clock.now()).earliest == clock.now().mono + 150s);
}

TEST_CASE("fixed window: hour-long ticks over several days, and 1 ns ticks", "[limit][fixed]") {
    auto clock = clock_at(kMidnight);
    auto l = make_limiter(fixed(3, kDay));
    int admitted = 0;
    for (int hour = 0; hour < 24 * 5; ++hour) {
        if (l->probe(0, 1, 0, clock.now()).allowed) {
            l->consume(0, 1, clock.now());
            ++admitted;
        }
        clock.advance(1h);
    }
    CHECK(admitted == 15);  // 3 per calendar day, 5 days

    auto c2 = clock_at(kMidnight);
    auto small = make_limiter(fixed(2, 1s));
    admit(*small, c2, 2);
    c2.advance(1s - 1ns);
    CHECK_FALSE(small->probe(0, 1, 0, c2.now()).allowed);
    c2.advance(1ns);
    CHECK(small->probe(0, 2, 0, c2.now()).allowed);
}

TEST_CASE("fixed window: a wall clock stepped back cannot reopen a spent window", "[limit][fixed]") {
    auto clock = clock_at(kMidnight + 1h + 1s);
    auto l = make_limiter(fixed(5, 1h));
    admit(*l, clock, 5);
    clock.set(Instant{clock.now().mono + 1s, clock.now().wall - 2s});  // back into the previous hour
    CHECK_FALSE(l->probe(0, 1, 0, clock.now()).allowed);
}

TEST_CASE("fixed window: shadow-mode consume beyond the limit", "[limit][fixed]") {
    auto clock = clock_at(kMidnight + 10s);
    auto config = fixed(5, 1min);
    config.enforce = false;
    auto l = make_limiter(config);
    l->consume(0, 12, clock.now());
    const auto d = l->probe(0, 0, 0, clock.now());
    CHECK_FALSE(d.allowed);  // even a zero-cost probe sees the overdraft
    CHECK(d.remaining == 0);
    CHECK(d.reset == clock.now().mono + 50s);
    clock.advance(50s);
    CHECK(l->probe(0, 5, 0, clock.now()).allowed);
}
