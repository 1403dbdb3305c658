// The vendor overlays added for issue 11 (keyed_limiter.hpp): a deficit (the
// vendor counts someone else's units) and a learned limit kept across windows
// and probed back up.

#include <catch2/catch.hpp>

#include "sluice/common/clock.hpp"
#include "sluice/limit/limiter.hpp"

namespace {

using namespace std::chrono_literals;
using sluice::FakeClock;
using sluice::Nanos;
using sluice::config::Algorithm;
using sluice::config::LimitConfig;
using sluice::limit::Limiter;
using sluice::limit::make_limiter;

LimitConfig limit_of(Algorithm algorithm, std::int64_t limit, Nanos window) {
    LimitConfig c;
    c.name = "l";
    c.algorithm = algorithm;
    c.limit = limit;
    c.window = window;
    return c;
}

// Admits one unit at a time while the limiter allows; returns how many went.
int admit_all(Limiter& l, FakeClock& clock, std::uint64_t key = 0) {
    int n = 0;
    while (l.probe(key, 1, 0, clock.now()).allowed) {
        l.consume(key, 1, clock.now());
        ++n;
    }
    return n;
}

}  // namespace

TEST_CASE("a learned limit holds across windows and climbs back one unit per clean window",
          "[limit][feedback]") {
    const auto algorithm = GENERATE(Algorithm::sliding_window, Algorithm::fixed_window);
    FakeClock clock(sluice::Instant{Nanos{1'000'000'000}, Nanos{1'700'000'000'000'000'000}});
    auto l = make_limiter(limit_of(algorithm, 10, 1s));
    const std::uint64_t key = 7;
    REQUIRE(admit_all(*l, clock, key) == 10);
    l->lower_learned(key, 6, clock.now());
    CHECK(l->feedback_view(key, clock.now()).limit == 6);
    CHECK(l->feedback_view(key, clock.now()).counted == 10);

    clock.advance(1s);  // a new window: 6 go, not 10; the learning raised it by one: 7
    CHECK(l->feedback_view(key, clock.now()).limit == 7);
    CHECK(admit_all(*l, clock, key) == 7);
    const auto d = l->probe(key, 1, 0, clock.now());
    CHECK_FALSE(d.allowed);
    CHECK(d.limit == 7);
    CHECK(d.remaining == 0);

    clock.advance(3s);  // three more clean windows: 10, the configured limit, and the learning is over
    CHECK(l->feedback_view(key, clock.now()).limit == 10);
    CHECK(admit_all(*l, clock, key) == 10);

    SECTION("another key is not affected") {
        CHECK(admit_all(*l, clock, 8) == 10);
    }
}

TEST_CASE("a learned limit is never raised by a lowering, and a failed probe slows the probing",
          "[limit][feedback]") {
    FakeClock clock;
    auto l = make_limiter(limit_of(Algorithm::sliding_window, 166, 1s));
    l->lower_learned(0, 100, clock.now());
    l->lower_learned(0, 120, clock.now());  // not a raise
    CHECK(l->feedback_view(0, clock.now()).limit == 100);

    clock.advance(1s);  // probed up to 101, refused there: back to 100, and now +1 per 2 windows
    REQUIRE(l->feedback_view(0, clock.now()).limit == 101);
    l->lower_learned(0, 100, clock.now());
    auto status = l->status(clock.now(), 1);
    REQUIRE(status.size() == 1);
    CHECK(status[0].learned.limit == 100);
    CHECK(status[0].learned.probe_windows == 2);
    CHECK(status[0].learned.lowered_at == clock.now().mono);
    CHECK(status[0].learned.raised_at == Nanos{0});
    clock.advance(1s);
    CHECK(l->feedback_view(0, clock.now()).limit == 100);
    clock.advance(1s);
    CHECK(l->feedback_view(0, clock.now()).limit == 101);
    status = l->status(clock.now(), 1);
    CHECK(status[0].learned.raised_at == clock.now().mono);
}

TEST_CASE("a refused request under a learned limit is told when it fits", "[limit][feedback]") {
    FakeClock clock;
    auto l = make_limiter(limit_of(Algorithm::sliding_window, 10, 1s));
    const auto start = clock.now().mono;
    for (int i = 0; i < 5; ++i) {
        l->consume(0, 1, clock.now());
        clock.advance(100ms);
    }
    l->lower_learned(0, 5, clock.now());
    const auto d = l->probe(0, 1, 0, clock.now());
    CHECK_FALSE(d.allowed);
    CHECK(d.earliest == start + 1s);  // the first unit leaves the window
}

TEST_CASE("a deficit counts someone else's units until the vendor's reset, and only then",
          "[limit][feedback]") {
    FakeClock clock;
    auto l = make_limiter(limit_of(Algorithm::sliding_window, 10, 1s));
    REQUIRE(admit_all(*l, clock) == 10);
    clock.advance(1s);
    l->set_deficit(0, 4, clock.now().mono + 300ms, clock.now());
    CHECK(admit_all(*l, clock) == 6);
    const auto d = l->probe(0, 1, 0, clock.now());
    CHECK_FALSE(d.allowed);
    CHECK(d.earliest == clock.now().mono + 300ms);  // the deficit ends before any of our units leave
    clock.advance(300ms);
    CHECK(admit_all(*l, clock) == 4);

    SECTION("a later report of no deficit clears it") {
        clock.advance(1s);
        l->set_deficit(0, 8, clock.now().mono + 500ms, clock.now());
        l->set_deficit(0, 0, clock.now().mono + 500ms, clock.now());
        CHECK(admit_all(*l, clock) == 10);
    }
}

TEST_CASE("an overlay that has expired lets the key be forgotten", "[limit][feedback]") {
    FakeClock clock;
    auto l = make_limiter(limit_of(Algorithm::sliding_window, 3, 1s));
    l->lower_learned(5, 1, clock.now());
    l->set_deficit(5, 1, clock.now().mono + 100ms, clock.now());
    clock.advance(1500ms);
    l->evict_idle(clock.now());
    CHECK(l->key_count() == 1);  // still learning (1 -> 3 takes two windows)
    clock.advance(1s);
    l->evict_idle(clock.now());
    CHECK(l->key_count() == 0);
}

TEST_CASE("the lowest reading of a burst is learned, never raised by a later one", "[limit][feedback]") {
    FakeClock clock;
    auto l = make_limiter(limit_of(Algorithm::sliding_window, 166, 1s));
    l->lower_learned(0, 100, clock.now());
    clock.advance(10ms);
    l->lower_learned(0, 95, clock.now());   // a refusal overtaken on the way
    l->lower_learned(0, 120, clock.now());  // not a raise
    CHECK(l->feedback_view(0, clock.now()).limit == 95);
}

TEST_CASE("the refusals of one window lower a learned limit at most to half", "[limit][feedback]") {
    // A second consumer that spent the vendor's whole window makes sluice's next
    // requests look like a limit of 1: that must not be learned at once.
    FakeClock clock;
    auto l = make_limiter(limit_of(Algorithm::sliding_window, 166, 1s));
    l->lower_learned(0, 1, clock.now());
    CHECK(l->feedback_view(0, clock.now()).limit == 83);
    clock.advance(500ms);
    l->lower_learned(0, 1, clock.now());  // the same burst's other 429s
    CHECK(l->feedback_view(0, clock.now()).limit == 83);
    clock.advance(500ms);  // a new episode (and one raise: 84): half again
    l->lower_learned(0, 1, clock.now());
    CHECK(l->feedback_view(0, clock.now()).limit == 42);
}

TEST_CASE("the learning summary follows the key lowered last, and counts every lowering",
          "[limit][feedback]") {
    FakeClock clock;
    auto l = make_limiter(limit_of(Algorithm::sliding_window, 10, 1s));
    CHECK(l->learned_summary(clock.now()).lowerings == 0);
    CHECK(l->learned_summary(clock.now()).latest.limit == 0);

    l->lower_learned(7, 6, clock.now());
    const Nanos first = clock.now().mono;
    clock.advance(100ms);
    l->lower_learned(8, 5, clock.now());
    l->lower_learned(8, 9, clock.now());  // not a lowering: not counted
    auto s = l->learned_summary(clock.now());
    CHECK(s.lowerings == 2);
    CHECK(s.latest.limit == 5);
    CHECK(s.latest.lowered_at == first + 100ms);
    CHECK(s.latest.raised_at == Nanos{0});

    clock.advance(1s);  // one clean window: raised to 6
    s = l->learned_summary(clock.now());
    CHECK(s.latest.limit == 6);
    CHECK(s.latest.raised_at == first + 1100ms);

    clock.advance(10s);  // climbed back to 10: nothing learned any more, the count stays
    s = l->learned_summary(clock.now());
    CHECK(s.latest.limit == 0);
    CHECK(s.lowerings == 2);
}
