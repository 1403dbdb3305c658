#include <catch2/catch.hpp>

#include "sluice/common/clock.hpp"
#include "sluice/limit/limiter.hpp"

namespace {

using namespace std::chrono_literals;
using sluice::FakeClock;
using sluice::kNever;
using sluice::Nanos;
using sluice::config::Algorithm;
using sluice::config::LimitConfig;
using sluice::limit::Decision;
using sluice::limit::Limiter;
using sluice::limit::make_limiter;

LimitConfig bucket(std::int64_t limit, Nanos window, std::int64_t burst = 0, Nanos margin = 0ns) {
    LimitConfig c;
    c.name = "tb";
    c.algorithm = Algorithm::token_bucket;
    c.limit = limit;
    c.window = window;
    c.burst = burst;
    c.margin = margin;
    return c;
}

// Advances to the refused decision's `earliest` minus 1 ns (still refused), then
// to `earliest` (allowed): the estimate is exact.
void expect_exact_earliest(Limiter& l, FakeClock& clock, std::int64_t cost, std::int64_t ahead = 0) {
    const Decision d = l.probe(0, cost, ahead, clock.now());
    REQUIRE_FALSE(d.allowed);
    REQUIRE(d.earliest != kNever);
    REQUIRE(d.earliest > clock.now().mono);
    clock.advance(d.earliest - clock.now().mono - 1ns);
    CHECK_FALSE(l.probe(0, cost, ahead, clock.now()).allowed);
    clock.advance(1ns);
    CHECK(l.probe(0, cost, ahead, clock.now()).allowed);
}

}  // namespace

TEST_CASE("token bucket: a full bucket admits burst, then one token per interval", "[limit][token_bucket]") {
    FakeClock clock;
    auto l = make_limiter(bucket(4, 1s));
    const auto t0 = clock.now().mono;
    for (int i = 0; i < 4; ++i) {
        const auto d = l->probe(0, 1, 0, clock.now());
        REQUIRE(d.allowed);
        CHECK(d.remaining == 4 - i);
        CHECK(d.limit == 4);
        CHECK(d.earliest == t0);
        l->consume(0, 1, clock.now());
    }
    const auto refused = l->probe(0, 1, 0, clock.now());
    CHECK_FALSE(refused.allowed);
    CHECK(refused.remaining == 0);
    CHECK(refused.earliest == t0 + 250ms);
    CHECK(refused.reset == t0 + 1s);
    expect_exact_earliest(*l, clock, 1);
    CHECK(clock.now().mono == t0 + 250ms);
}

TEST_CASE("token bucket: 999 ms vs 1000 ms for one token per second", "[limit][token_bucket]") {
    FakeClock clock;
    auto l = make_limiter(bucket(1, 1s));
    l->consume(0, 1, clock.now());
    clock.advance(999ms);
    CHECK_FALSE(l->probe(0, 1, 0, clock.now()).allowed);
    clock.advance(1ms);
    CHECK(l->probe(0, 1, 0, clock.now()).allowed);
}

TEST_CASE("token bucket: margin slows the refill to limit per (window + margin)", "[limit][token_bucket]") {
    FakeClock clock;
    auto l = make_limiter(bucket(10, 1s, 1, 100ms));  // one token per 110 ms
    const auto t0 = clock.now().mono;
    l->consume(0, 1, clock.now());
    CHECK(l->probe(0, 1, 0, clock.now()).earliest == t0 + 110ms);
    expect_exact_earliest(*l, clock, 1);
}

TEST_CASE("token bucket: no drift with a non-integer interval over thousands of tokens",
          "[limit][token_bucket]") {
    FakeClock clock;
    auto l = make_limiter(bucket(3, 1s));  // 333,333,333.33 ns per token
    const auto t0 = clock.now().mono;
    l->consume(0, 3, clock.now());
    for (int i = 0; i < 3000; ++i) {
        const auto d = l->probe(0, 1, 0, clock.now());
        if (!d.allowed) clock.advance(d.earliest - clock.now().mono);
        REQUIRE(l->probe(0, 1, 0, clock.now()).allowed);
        l->consume(0, 1, clock.now());
    }
    // 3000 tokens at exactly 3 per second take exactly 1000 s: no accumulated rounding.
    CHECK(clock.now().mono == t0 + 1000s);
    // The first refill after the burst is rounded up to the next ns, never down.
    FakeClock c2;
    auto l2 = make_limiter(bucket(3, 1s));
    l2->consume(0, 3, c2.now());
    CHECK(l2->probe(0, 1, 0, c2.now()).earliest == c2.now().mono + 333'333'334ns);
    expect_exact_earliest(*l2, c2, 1);
}

TEST_CASE("token bucket: burst larger than the rate", "[limit][token_bucket]") {
    FakeClock clock;
    auto l = make_limiter(bucket(1, 1s, 10));
    const auto t0 = clock.now().mono;
    CHECK(l->probe(0, 10, 0, clock.now()).allowed);
    l->consume(0, 10, clock.now());
    const auto d = l->probe(0, 1, 0, clock.now());
    CHECK(d.limit == 10);
    CHECK(d.earliest == t0 + 1s);
    CHECK(d.reset == t0 + 10s);
    clock.advance(5s);
    CHECK(l->probe(0, 0, 0, clock.now()).remaining == 5);
    CHECK(l->probe(0, 5, 0, clock.now()).allowed);
    CHECK_FALSE(l->probe(0, 6, 0, clock.now()).allowed);
}

TEST_CASE("token bucket: cost > 1, partial tokens and remaining", "[limit][token_bucket]") {
    FakeClock clock;
    auto l = make_limiter(bucket(4, 1s));
    const auto t0 = clock.now().mono;
    l->consume(0, 3, clock.now());
    auto d = l->probe(0, 2, 0, clock.now());
    CHECK_FALSE(d.allowed);
    CHECK(d.remaining == 1);
    CHECK(d.earliest == t0 + 250ms);
    clock.advance(100ms);  // 1.4 tokens: still 1 whole token
    CHECK(l->probe(0, 0, 0, clock.now()).remaining == 1);
    expect_exact_earliest(*l, clock, 2);
    CHECK(l->probe(0, 0, 0, clock.now()).remaining == 2);
}

TEST_CASE("token bucket: a cost above the burst is never admitted", "[limit][token_bucket]") {
    FakeClock clock;
    auto l = make_limiter(bucket(100, 1s, 5));
    const auto d = l->probe(0, 6, 0, clock.now());
    CHECK_FALSE(d.allowed);
    CHECK(d.earliest == kNever);
    CHECK(d.remaining == 5);
    clock.advance(24h);
    CHECK(l->probe(0, 6, 0, clock.now()).earliest == kNever);
}

TEST_CASE("token bucket: units ahead push the estimate back", "[limit][token_bucket]") {
    FakeClock clock;
    auto l = make_limiter(bucket(4, 1s));
    const auto t0 = clock.now().mono;
    // Bucket full (4): 4 units ahead take it all, ours waits one interval.
    auto d = l->probe(0, 1, 4, clock.now());
    CHECK_FALSE(d.allowed);
    CHECK(d.earliest == t0 + 250ms);
    CHECK(l->probe(0, 1, 3, clock.now()).allowed);
    // More ahead than the bucket holds: 10 ahead + 1 = 4 now, 7 more at 250 ms each.
    d = l->probe(0, 1, 10, clock.now());
    CHECK(d.earliest == t0 + 1750ms);
    // Which is exactly what happens when they are admitted as soon as possible.
    for (int i = 0; i < 10; ++i) {
        const auto x = l->probe(0, 1, 0, clock.now());
        if (!x.allowed) clock.advance(x.earliest - clock.now().mono);
        l->consume(0, 1, clock.now());
    }
    CHECK(l->probe(0, 1, 0, clock.now()).earliest == t0 + 1750ms);
}

TEST_CASE("token bucket: 1 ns ticks and hour-long gaps", "[limit][token_bucket]") {
    FakeClock clock;
    auto l = make_limiter(bucket(1, 10ns, 2));
    l->consume(0, 2, clock.now());
    for (int i = 0; i < 9; ++i) {
        clock.advance(1ns);
        CHECK_FALSE(l->probe(0, 1, 0, clock.now()).allowed);
    }
    clock.advance(1ns);
    CHECK(l->probe(0, 1, 0, clock.now()).allowed);
    clock.advance(5h);
    const auto d = l->probe(0, 1, 0, clock.now());
    CHECK(d.allowed);
    CHECK(d.remaining == 2);  // never more than the burst, however long the gap
    CHECK(d.reset == clock.now().mono);
}

TEST_CASE("token bucket: shadow-mode consume beyond the burst is counted", "[limit][token_bucket]") {
    FakeClock clock;
    auto config = bucket(4, 1s);
    config.enforce = false;
    auto l = make_limiter(config);
    const auto t0 = clock.now().mono;
    l->consume(0, 10, clock.now());  // 6 tokens of debt
    const auto d = l->probe(0, 1, 0, clock.now());
    CHECK_FALSE(d.allowed);
    CHECK(d.remaining == 0);
    CHECK(d.earliest == t0 + 1750ms);  // debt of 6 + 1 token = 7 intervals
    CHECK(d.reset == t0 + 2500ms);
    expect_exact_earliest(*l, clock, 1);
}
