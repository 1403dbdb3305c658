// Limiter::charge: units the vendor charged beyond an admitted request's cost (a cost settled
// from the response, docs/costs.md), counted at `now` even past the limit. And the response
// header's parsing (parse_unit_count).

#include <chrono>
#include <cstdint>
#include <limits>

#include <catch2/catch.hpp>

#include "sluice/common/clock.hpp"
#include "sluice/limit/limiter.hpp"
#include "sluice/limit/request_key.hpp"

namespace {

using namespace std::chrono_literals;
using sluice::FakeClock;
using sluice::Nanos;
using sluice::config::Algorithm;
using sluice::config::LimitConfig;
using sluice::limit::Limiter;
using sluice::limit::make_limiter;
using sluice::limit::parse_unit_count;

LimitConfig config_for(Algorithm algorithm, std::int64_t limit, Nanos window) {
    LimitConfig c;
    c.name = "units";
    c.algorithm = algorithm;
    c.limit = limit;
    c.window = algorithm == Algorithm::concurrency ? 0ns : window;
    if (algorithm == Algorithm::token_bucket) c.burst = limit;
    return c;
}

void admit(Limiter& l, FakeClock& clock, std::int64_t cost) {
    REQUIRE(l.probe(0, cost, 0, clock.now()).allowed);
    l.consume(0, cost, clock.now());
}

std::int64_t remaining(Limiter& l, FakeClock& clock) {
    return l.probe(0, 0, 0, clock.now()).remaining;
}

}  // namespace

TEST_CASE("charge: a sliding window counts the extra units from now, until they leave", "[limit][charge]") {
    for (const std::int64_t limit : {10, 1000}) {  // the exact log, and the bucket ring
        INFO("limit " << limit);
        FakeClock clock;
        auto l = make_limiter(config_for(Algorithm::sliding_window, limit, 1s));
        const auto t0 = clock.now().mono;
        admit(*l, clock, 3);
        clock.advance(100ms);
        l->charge(0, limit - 5, clock.now());  // the vendor charged more than the 3 admitted
        CHECK(remaining(*l, clock) == 2);
        CHECK(l->probe(0, 2, 0, clock.now()).allowed);
        CHECK_FALSE(l->probe(0, 3, 0, clock.now()).allowed);
        // The admitted 3 leave a window after their admission, the charged ones a window after
        // they were charged (the ring may hold them up to one granularity longer, never shorter).
        clock.set({t0 + 1s, clock.now().wall});
        CHECK(remaining(*l, clock) <= 5);
        clock.set({t0 + 1s + 100ms - 1ns, clock.now().wall});
        CHECK(remaining(*l, clock) <= 5);
        clock.set({t0 + 1s + 100ms + 5ms, clock.now().wall});  // the ring's granularity is 3.9 ms
        CHECK(remaining(*l, clock) == limit);
    }
}

TEST_CASE("charge: past the limit, a sliding window refuses until the charged units leave",
          "[limit][charge]") {
    FakeClock clock;
    auto l = make_limiter(config_for(Algorithm::sliding_window, 4, 1s));
    const auto t0 = clock.now().mono;
    admit(*l, clock, 4);
    l->charge(0, 6, clock.now());  // 10 units in a window of 4
    const auto refused = l->probe(0, 1, 0, clock.now());
    CHECK_FALSE(refused.allowed);
    CHECK(refused.remaining == 0);
    CHECK(refused.earliest == t0 + 1s);
    clock.advance(1s - 1ns);
    CHECK_FALSE(l->probe(0, 1, 0, clock.now()).allowed);
    clock.advance(1ns);
    CHECK(remaining(*l, clock) == 4);
}

TEST_CASE("charge: a fixed window counts the extra units in the current window", "[limit][charge]") {
    FakeClock clock;  // wall time on a whole second: the window starts now
    auto l = make_limiter(config_for(Algorithm::fixed_window, 10, 1s));
    admit(*l, clock, 2);
    l->charge(0, 5, clock.now());
    CHECK(remaining(*l, clock) == 3);
    l->charge(0, 20, clock.now());
    CHECK(remaining(*l, clock) == 0);
    CHECK_FALSE(l->probe(0, 1, 0, clock.now()).allowed);
    clock.advance(999ms);
    CHECK_FALSE(l->probe(0, 1, 0, clock.now()).allowed);
    clock.advance(1ms);
    CHECK(remaining(*l, clock) == 10);  // the next window starts afresh (the vendor's does too)
}

TEST_CASE("charge: a token bucket takes the tokens, into debt", "[limit][charge]") {
    FakeClock clock;
    auto l = make_limiter(config_for(Algorithm::token_bucket, 10, 1s));  // 1 token per 100 ms, burst 10
    const auto t0 = clock.now().mono;
    admit(*l, clock, 10);
    CHECK(l->probe(0, 1, 0, clock.now()).earliest == t0 + 100ms);
    l->charge(0, 10, clock.now());  // 10 tokens of debt: the next token comes 1 s later
    const auto refused = l->probe(0, 1, 0, clock.now());
    CHECK_FALSE(refused.allowed);
    CHECK(refused.remaining == 0);
    CHECK(refused.earliest == t0 + 1100ms);
    clock.set({t0 + 1100ms - 1ns, clock.now().wall});
    CHECK_FALSE(l->probe(0, 1, 0, clock.now()).allowed);
    clock.set({t0 + 1100ms, clock.now().wall});
    CHECK(l->probe(0, 1, 0, clock.now()).allowed);
}

TEST_CASE("charge: concurrency limits count requests, not work: a no-op", "[limit][charge]") {
    FakeClock clock;
    auto l = make_limiter(config_for(Algorithm::concurrency, 2, 0s));
    admit(*l, clock, 1);
    l->charge(0, 5, clock.now());
    CHECK(l->probe(0, 1, 0, clock.now()).allowed);
    l->release(0, 1, clock.now());
    CHECK(remaining(*l, clock) == 2);
}

TEST_CASE("charge: zero or negative units change nothing; a key not yet tracked is counted",
          "[limit][charge]") {
    FakeClock clock;
    auto l = make_limiter(config_for(Algorithm::sliding_window, 10, 1s));
    l->charge(0, 0, clock.now());
    l->charge(0, -3, clock.now());
    CHECK(remaining(*l, clock) == 10);
    l->charge(42, 4, clock.now());
    CHECK(l->probe(42, 0, 0, clock.now()).remaining == 6);
    CHECK(remaining(*l, clock) == 10);
}

TEST_CASE("refund then charge: a settled cost lower than admitted gives units back", "[limit][charge]") {
    FakeClock clock;
    auto l = make_limiter(config_for(Algorithm::sliding_window, 10, 1s));
    const auto t0 = clock.now().mono;
    admit(*l, clock, 8);
    clock.advance(10ms);
    l->refund(0, 6, t0, clock.now());  // the vendor charged 2 of the 8
    CHECK(remaining(*l, clock) == 8);
}

TEST_CASE("parse_unit_count: plain non-negative integers only", "[limit][charge]") {
    CHECK(parse_unit_count("0") == 0);
    CHECK(parse_unit_count("42") == 42);
    CHECK(parse_unit_count(" 7\t") == 7);
    CHECK(parse_unit_count("99999999999999999999999") == std::numeric_limits<std::int64_t>::max());
    for (const auto* bad : {"", " ", "-1", "+1", "2.5", "1e3", "12 units", "0x10", "abc"}) {
        INFO(bad);
        CHECK_FALSE(parse_unit_count(bad).has_value());
    }
}
