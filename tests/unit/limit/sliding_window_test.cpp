#include <algorithm>
#include <cstdint>
#include <deque>
#include <random>
#include <unordered_map>
#include <vector>

#include <catch2/catch.hpp>

#include "sluice/common/clock.hpp"
#include "sluice/limit/algorithms.hpp"
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

LimitConfig sliding(std::int64_t limit, Nanos window, Nanos margin = 0ns) {
    LimitConfig c;
    c.name = "sw";
    c.algorithm = Algorithm::sliding_window;
    c.limit = limit;
    c.window = window;
    c.margin = margin;
    return c;
}

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

void admit(Limiter& l, FakeClock& clock, std::int64_t cost = 1) {
    REQUIRE(l.probe(0, cost, 0, clock.now()).allowed);
    l.consume(0, cost, clock.now());
}

}  // namespace

TEST_CASE("sliding window: 166 per 10 s, the 167th waits exactly for the first to leave",
          "[limit][sliding]") {
    FakeClock clock;
    auto l = make_limiter(sliding(166, 10s));
    const auto t0 = clock.now().mono;
    for (int i = 0; i < 166; ++i) admit(*l, clock);
    const auto d = l->probe(0, 1, 0, clock.now());
    CHECK_FALSE(d.allowed);
    CHECK(d.limit == 166);
    CHECK(d.remaining == 0);
    CHECK(d.earliest == t0 + 10s);
    CHECK(d.reset == t0 + 10s);
    expect_exact_earliest(*l, clock, 1);
    CHECK(l->probe(0, 0, 0, clock.now()).remaining == 166);
}

TEST_CASE("sliding window: 999 ms vs 1000 ms, and window + margin", "[limit][sliding]") {
    FakeClock clock;
    auto l = make_limiter(sliding(1, 1s));
    admit(*l, clock);
    clock.advance(999ms);
    CHECK_FALSE(l->probe(0, 1, 0, clock.now()).allowed);
    clock.advance(1ms);
    CHECK(l->probe(0, 1, 0, clock.now()).allowed);

    FakeClock c2;
    auto m = make_limiter(sliding(1, 1s, 100ms));
    admit(*m, c2);
    c2.advance(1s);
    CHECK_FALSE(m->probe(0, 1, 0, c2.now()).allowed);
    c2.advance(99'999'999ns);
    CHECK_FALSE(m->probe(0, 1, 0, c2.now()).allowed);
    c2.advance(1ns);
    CHECK(m->probe(0, 1, 0, c2.now()).allowed);
}

TEST_CASE("sliding window: rolling, not reset at boundaries", "[limit][sliding]") {
    FakeClock clock;
    auto l = make_limiter(sliding(5, 1s));
    const auto t0 = clock.now().mono;
    admit(*l, clock, 3);
    clock.advance(400ms);
    admit(*l, clock, 2);
    clock.advance(600ms);  // t0 + 1 s: the first 3 left, the 2 from 400 ms remain
    auto d = l->probe(0, 4, 0, clock.now());
    CHECK_FALSE(d.allowed);
    CHECK(d.remaining == 3);
    CHECK(d.reset == t0 + 1400ms);
    CHECK(d.earliest == t0 + 1400ms);
    CHECK(l->probe(0, 3, 0, clock.now()).allowed);
    expect_exact_earliest(*l, clock, 4);
}

TEST_CASE("sliding window: costs > 1 leave unit by unit", "[limit][sliding]") {
    FakeClock clock;
    auto l = make_limiter(sliding(10, 1s));
    const auto t0 = clock.now().mono;
    admit(*l, clock, 7);
    clock.advance(500ms);
    admit(*l, clock, 3);
    clock.advance(100ms);
    CHECK(l->probe(0, 5, 0, clock.now()).earliest == t0 + 1s);      // 5 must leave: all from t0
    CHECK(l->probe(0, 8, 0, clock.now()).earliest == t0 + 1500ms);  // 8 must leave: 3 of them from 500 ms
    CHECK(l->probe(0, 10, 0, clock.now()).earliest == t0 + 1500ms);
    expect_exact_earliest(*l, clock, 8);
}

TEST_CASE("sliding window: a cost above the limit is never admitted", "[limit][sliding]") {
    FakeClock clock;
    for (const std::int64_t limit : {10, 1000}) {
        auto l = make_limiter(sliding(limit, 1s));
        const auto d = l->probe(0, limit + 1, 0, clock.now());
        CHECK_FALSE(d.allowed);
        CHECK(d.earliest == kNever);
        CHECK(l->probe(0, limit, 0, clock.now()).allowed);
    }
}

TEST_CASE("sliding window: units ahead", "[limit][sliding]") {
    FakeClock clock;
    auto l = make_limiter(sliding(10, 1s));
    const auto t0 = clock.now().mono;
    admit(*l, clock, 4);
    clock.advance(200ms);
    admit(*l, clock, 4);
    // 2 free: 3 ahead + 1 = 4 means 2 must leave, both from t0.
    CHECK(l->probe(0, 1, 3, clock.now()).earliest == t0 + 1s);
    // 6 ahead + 1 = 7: 5 must leave, one of them from 200 ms.
    CHECK(l->probe(0, 1, 6, clock.now()).earliest == t0 + 1200ms);
    CHECK(l->probe(0, 1, 1, clock.now()).allowed);
    // More ahead than the limit: the units go in waves. Number the 8 counted
    // units and those to come 1, 2, ...: unit j goes when unit j - 10 has left,
    // so 9-10 go now (t0 + 200 ms), 11-14 at t0 + 1 s, 15-20 at t0 + 1.2 s,
    // 21-24 at t0 + 2 s, 25-30 at t0 + 2.2 s, 31-34 at t0 + 3 s, ...
    CHECK(l->probe(0, 1, 12, clock.now()).earliest == t0 + 2s);      // unit 21
    CHECK(l->probe(0, 1, 15, clock.now()).earliest == t0 + 2s);      // unit 24
    CHECK(l->probe(0, 1, 16, clock.now()).earliest == t0 + 2200ms);  // unit 25
    CHECK(l->probe(0, 1, 28, clock.now()).earliest == t0 + 3200ms);  // unit 37
    CHECK(l->probe(0, 1, 32, clock.now()).earliest == t0 + 4s);      // unit 41
}

// The estimate behind a long queue is what refuses a request at arrival: it must
// agree with a unit-by-unit simulation of the waves, for every number ahead.
TEST_CASE("sliding window: units ahead agree with a unit-by-unit simulation", "[limit][sliding]") {
    for (const std::int64_t limit : {1, 3, 20, 256, 257, 1000}) {
        FakeClock clock;
        auto l = make_limiter(sliding(limit, 1s, 50ms));
        const Nanos span = 1050ms;
        // An uneven history: some units at each of a few instants.
        std::vector<Nanos> log;
        for (int step = 0; step < 5; ++step) {
            const std::int64_t n =
                std::min<std::int64_t>(limit / 5 + step % 2, limit - static_cast<std::int64_t>(log.size()));
            if (n > 0) {
                admit(*l, clock, n);
                for (std::int64_t i = 0; i < n; ++i) log.push_back(clock.now().mono);
            }
            clock.advance(130ms);
        }
        const Nanos now = clock.now().mono;
        // Simulate: unit j (0-based, log then future) goes at max(now, unit j - limit + span).
        std::vector<Nanos> seq = log;
        const Nanos granularity = sluice::limit::sliding_window_granularity(sliding(limit, 1s, 50ms));
        for (std::int64_t ahead = 0; ahead <= 4 * limit + 3; ahead += std::max<std::int64_t>(limit / 7, 1)) {
            while (static_cast<std::int64_t>(seq.size()) <
                   static_cast<std::int64_t>(log.size()) + ahead + 1) {
                const auto j = static_cast<std::int64_t>(seq.size());
                seq.push_back(j < limit ? now
                                        : std::max(now, seq[static_cast<std::size_t>(j - limit)] + span));
            }
            const Nanos truth = seq.back();
            const auto d = l->probe(0, 1, ahead, clock.now());
            INFO("limit " << limit << " ahead " << ahead);
            CHECK(d.allowed == (truth == now));
            if (granularity == 0ns) {
                CHECK(d.earliest == truth);
            } else {
                // The ring rounds each unit's leaving up to its bucket's: never early, at most a
                // granule late per wave.
                const std::int64_t waves = (static_cast<std::int64_t>(log.size()) + ahead) / limit + 1;
                CHECK(d.earliest >= truth);
                CHECK(d.earliest <= truth + granularity * waves);
            }
        }
    }
}

TEST_CASE("sliding window: 1 ns ticks and hour-long gaps", "[limit][sliding]") {
    FakeClock clock;
    auto l = make_limiter(sliding(3, 10ns));
    const auto t0 = clock.now().mono;
    for (int i = 0; i < 3; ++i) {
        admit(*l, clock);
        clock.advance(1ns);
    }
    for (int i = 3; i < 10; ++i) {
        CHECK_FALSE(l->probe(0, 1, 0, clock.now()).allowed);
        clock.advance(1ns);
    }
    CHECK(clock.now().mono == t0 + 10ns);
    admit(*l, clock);
    CHECK_FALSE(l->probe(0, 1, 0, clock.now()).allowed);  // units from +1 and +2 ns still count
    clock.advance(3h);
    CHECK(l->probe(0, 0, 0, clock.now()).remaining == 3);
    admit(*l, clock, 3);
}

TEST_CASE("sliding window: bucket ring for large limits (3000 per 5 min)", "[limit][sliding]") {
    const auto config = sliding(3000, 5min);
    const Nanos granularity = sluice::limit::sliding_window_granularity(config);
    CHECK(granularity > 0ns);
    CHECK(granularity <= Nanos{5min} / 255);
    CHECK(sluice::limit::sliding_window_granularity(sliding(256, 5min)) == 0ns);

    FakeClock clock;
    auto l = make_limiter(config);
    CHECK(l->bytes_per_key() <= 4096);
    const auto t0 = clock.now().mono;
    admit(*l, clock, 1000);
    clock.advance(100s);
    admit(*l, clock, 2000);
    clock.advance(1s);
    auto d = l->probe(0, 1, 0, clock.now());
    CHECK_FALSE(d.allowed);
    CHECK(d.remaining == 0);
    // Never before the exact moment, at most one granule after it.
    CHECK(d.earliest >= t0 + 5min);
    CHECK(d.earliest <= t0 + 5min + granularity);
    CHECK(d.reset >= t0 + 100s + 5min);
    CHECK(d.reset <= t0 + 100s + 5min + granularity);
    // Units ahead: 501 must leave (from the first batch), then 1501 (the second batch too).
    CHECK(l->probe(0, 1, 500, clock.now()).earliest == d.earliest);
    CHECK(l->probe(0, 1, 1500, clock.now()).earliest == d.reset);
    expect_exact_earliest(*l, clock, 1000);  // exact with respect to the ring's own accounting
    CHECK_FALSE(l->probe(0, 1001, 0, clock.now()).allowed);
}

// The newest bucket's count is kept beside the ring, not in it, until a later
// bucket takes over: counts must be the same whichever bucket holds the units,
// through the head expiring with the window and ring slots being reused.
TEST_CASE("sliding window: bucket ring: the head bucket kept apart counts like the others",
          "[limit][sliding]") {
    const auto config = sliding(3000, 5min);
    const Nanos g = sluice::limit::sliding_window_granularity(config) + 1ns;  // bucket width
    const Nanos span = 5min;
    FakeClock clock;
    auto l = make_limiter(config);
    // Start on a bucket boundary so that each batch below has a bucket of its own.
    clock.advance(g - Nanos{clock.now().mono.count() % g.count()});
    const auto b0 = clock.now().mono;  // start of bucket b0
    admit(*l, clock, 600);
    admit(*l, clock, 400);  // same (head) bucket
    clock.advance(g);
    admit(*l, clock, 1000);  // b0 + 1: b0's count moves into the ring
    clock.advance(g);
    admit(*l, clock, 999);  // b0 + 2
    CHECK(l->probe(0, 1, 0, clock.now()).remaining == 1);
    admit(*l, clock, 1);
    // Bucket b leaves at (b+1)*g - 1 + span: b0's 1000, then b0+1's 1000, then the head's 1000.
    auto d = l->probe(0, 1, 0, clock.now());
    CHECK_FALSE(d.allowed);
    CHECK(d.earliest == b0 + g - 1ns + span);
    CHECK(l->probe(0, 1001, 0, clock.now()).earliest == b0 + 2 * g - 1ns + span);
    CHECK(l->probe(0, 2001, 0, clock.now()).earliest == b0 + 3 * g - 1ns + span);
    CHECK(d.reset == b0 + 3 * g - 1ns + span);
    expect_exact_earliest(*l, clock, 1000);
    admit(*l, clock, 1000);  // into the bucket of now, the new head
    CHECK(l->probe(0, 1, 0, clock.now()).earliest == b0 + 2 * g - 1ns + span);
    // Everything leaves, the head too: a fresh window, whatever slot comes next.
    clock.advance(2 * span);
    d = l->probe(0, 0, 0, clock.now());
    CHECK(d.remaining == 3000);
    CHECK(d.reset == clock.now().mono);
    // A bucket 256 after the last head reuses its ring slot.
    clock.advance(256 * g - Nanos{(clock.now().mono - b0).count() % (256 * g).count()});
    admit(*l, clock, 3000);
    CHECK_FALSE(l->probe(0, 1, 0, clock.now()).allowed);
    clock.advance(g);
    CHECK_FALSE(l->probe(0, 1, 0, clock.now()).allowed);
    clock.advance(span);
    CHECK(l->probe(0, 3000, 0, clock.now()).allowed);
}

TEST_CASE("sliding window: the bucket ring keeps >= 99% of an exact sender's throughput",
          "[limit][sliding]") {
    FakeClock clock;
    auto l = make_limiter(sliding(1000, 1s));
    const auto t0 = clock.now().mono;
    std::int64_t admitted = 0;
    while (clock.now().mono < t0 + 100s) {
        const auto d = l->probe(0, 1, 0, clock.now());
        if (d.allowed) {
            l->consume(0, 1, clock.now());
            ++admitted;
        } else {
            clock.advance(d.earliest - clock.now().mono);
        }
    }
    // An exact window admits 1000 per second to a greedy sender: 100,000 in 100 s.
    CHECK(admitted >= 99'000);
    CHECK(admitted <= 100'000);
}

TEST_CASE("sliding window: shadow-mode consume beyond the limit", "[limit][sliding]") {
    for (const std::int64_t limit : {10, 1000}) {
        FakeClock clock;
        auto config = sliding(limit, 1s);
        config.enforce = false;
        auto l = make_limiter(config);
        const auto t0 = clock.now().mono;
        l->consume(0, 2 * limit, clock.now());
        clock.advance(500ms);
        l->consume(0, 1, clock.now());
        auto d = l->probe(0, 1, 0, clock.now());
        CHECK_FALSE(d.allowed);
        CHECK(d.remaining == 0);
        // t0 + 1 s (+ one granule for the bucket ring): the overdraft has left, the unit from 500 ms has not.
        clock.advance(500ms + sluice::limit::sliding_window_granularity(config));
        d = l->probe(0, 1, 0, clock.now());
        CHECK(d.allowed);
        CHECK(d.remaining == limit - 1);
        clock.advance(t0 + 3s - clock.now().mono);
        CHECK(l->probe(0, 0, 0, clock.now()).remaining == limit);
    }
}

// The exact log keeps the oldest units (copied) and the newest (pending, not
// yet in the ring) in the key's slot. Against a per-key list of every live
// unit, across many keys (slots moved by growth and eviction), gaps that do
// and do not fit the slot's 32-bit offsets (> 4.3 s), costs above one, the
// ring wrapping many times and units ahead: every answer must be the exact one.
TEST_CASE("sliding window: the exact log's slot-kept ends agree with every live unit", "[limit][sliding]") {
    struct Case {
        std::int64_t limit;
        Nanos window;
    };
    const Case cases[] = {{166, 10s}, {5, 20s}, {1, 9s}, {256, 1min}, {3, 100ns}, {7, 2min}};
    std::uint64_t seed = 100;
    for (const auto& c : cases) {
        for (const std::size_t key_count : {std::size_t{1}, std::size_t{3}, std::size_t{50}}) {
            ++seed;
            INFO("limit " << c.limit << " window " << c.window.count() << " keys " << key_count << " seed "
                          << seed);
            std::mt19937_64 rng(seed);
            auto config = sliding(c.limit, c.window);
            config.key = {sluice::config::KeySource{sluice::config::KeySource::Kind::header, "X-K"}};
            auto l = make_limiter(config);
            const std::int64_t span = c.window.count();
            FakeClock clock;
            std::unordered_map<std::uint64_t, std::deque<std::int64_t>> live;  // per key, oldest first
            std::int64_t admitted = 0;
            for (int step = 0; step < 20'000; ++step) {
                // Steps: 1 ns, about the limit's rate (so windows stay full), 4.3-6 s (beyond a
                // 32-bit offset), rarely a whole window.
                const auto kind = rng() % 16;
                std::int64_t dt = 1;
                if (kind < 4)
                    dt = 1;
                else if (kind < 13)
                    dt = static_cast<std::int64_t>(
                        rng() % static_cast<std::uint64_t>(
                                    2 * span / c.limit / static_cast<std::int64_t>(key_count) + 1));
                else if (kind < 15)
                    dt = 4'300'000'000 + static_cast<std::int64_t>(rng() % 1'700'000'000);
                else
                    dt = span + static_cast<std::int64_t>(rng() % 1000);
                clock.advance(Nanos{dt});
                const std::int64_t t = clock.now().mono.count();
                const std::uint64_t key = 1 + rng() % key_count;
                auto& units = live[key];
                while (!units.empty() && units.front() <= t - span) units.pop_front();
                const std::int64_t n = static_cast<std::int64_t>(units.size());
                const std::int64_t cost =
                    rng() % 8 == 0
                        ? 1 + static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(c.limit))
                        : 1;
                const std::int64_t ahead = rng() % 8 == 0 ? static_cast<std::int64_t>(rng() % 3) : 0;
                const Decision d = l->probe(key, cost, ahead, clock.now());
                REQUIRE(d.allowed == (n + cost + ahead <= c.limit));
                REQUIRE(d.remaining == c.limit - n);
                REQUIRE(d.reset.count() == (n > 0 ? units.back() + span : t));
                if (!d.allowed) {
                    const std::int64_t k = n + cost + ahead - c.limit;
                    if (k <= n)
                        REQUIRE(d.earliest.count() == units[static_cast<std::size_t>(k - 1)] + span);
                    else
                        REQUIRE(d.earliest.count() >= t + span);
                } else {
                    l->consume(key, cost, clock.now());
                    for (std::int64_t i = 0; i < cost; ++i) units.push_back(t);
                    admitted += cost;
                }
                if (rng() % 64 == 0) {
                    l->evict_idle(clock.now());  // forgets keys whose window emptied; moves slots
                    for (auto it = live.begin(); it != live.end();) {
                        while (!it->second.empty() && it->second.front() <= t - span) it->second.pop_front();
                        it = it->second.empty() ? live.erase(it) : std::next(it);
                    }
                    REQUIRE(l->key_count() == live.size());
                }
            }
            CHECK(admitted > 1000);
        }
    }
}

// A table grown to 100,000 keys (every slot moved many times) keeps each key's
// log, with its slot-kept ends, and forgets every key once its window is over.
TEST_CASE("sliding window: 100,000 keys keep their logs through table growth", "[limit][sliding]") {
    constexpr std::uint64_t kKeys = 100'000;
    auto config = sliding(4, 10s);
    config.key = {sluice::config::KeySource{sluice::config::KeySource::Kind::header, "X-K"}};
    config.max_keys = 2 * kKeys;
    auto l = make_limiter(config);
    FakeClock clock;
    const auto t0 = clock.now().mono;
    for (int round = 0; round < 3; ++round) {
        for (std::uint64_t k = 0; k < kKeys; ++k) {
            REQUIRE(l->probe(k * 0x9e3779b97f4a7c15ULL, 1, 0, clock.now()).allowed);
            l->consume(k * 0x9e3779b97f4a7c15ULL, 1, clock.now());
        }
        clock.advance(1s);
    }
    REQUIRE(l->key_count() == kKeys);
    for (std::uint64_t k = 0; k < kKeys; ++k) {
        const Decision d = l->probe(k * 0x9e3779b97f4a7c15ULL, 2, 0, clock.now());
        REQUIRE_FALSE(d.allowed);
        REQUIRE(d.remaining == 1);
        REQUIRE(d.earliest == t0 + 10s);    // the first unit leaves
        REQUIRE(d.reset == t0 + 2s + 10s);  // the newest one
    }
    clock.advance(t0 + 12s - clock.now().mono);
    CHECK(l->probe(7 * 0x9e3779b97f4a7c15ULL, 4, 0, clock.now()).allowed);
    l->evict_idle(clock.now());
    CHECK(l->key_count() == 0);
}

// Shadow mode folds the oldest units into one lump, reading the slot's copy
// and writing the pending units out first; it must never count fewer units
// than were admitted in the window.
TEST_CASE("sliding window: shadow overdraft with slot-kept ends never undercounts", "[limit][sliding]") {
    auto config = sliding(6, 10s);
    config.enforce = false;
    auto l = make_limiter(config);
    FakeClock clock;
    std::mt19937_64 rng(7);
    std::vector<std::int64_t> times;
    for (int step = 0; step < 5000; ++step) {
        clock.advance(Nanos{static_cast<std::int64_t>(rng() % 3'000'000'000)});
        const std::int64_t t = clock.now().mono.count();
        const auto cost = static_cast<std::int64_t>(1 + rng() % 4);
        l->consume(0, cost, clock.now());
        for (std::int64_t i = 0; i < cost; ++i) times.push_back(t);
        const auto in_window = static_cast<std::int64_t>(
            times.end() - std::upper_bound(times.begin(), times.end(), t - (10s).count()));
        // (The lump is held until its newest unit leaves: it may count more, never fewer.)
        REQUIRE(l->probe(0, 0, 0, clock.now()).remaining <= std::max<std::int64_t>(0, 6 - in_window));
        if (in_window >= 6) REQUIRE_FALSE(l->probe(0, 1, 0, clock.now()).allowed);
    }
}

TEST_CASE("sliding window: memory per key", "[limit][sliding]") {
    for (const std::int64_t limit : {1, 20, 166, 256, 257, 3000, 1'000'000}) {
        auto l = make_limiter(sliding(limit, 5min));
        CHECK(l->bytes_per_key() <= 4096);
        CHECK(l->bytes_per_key() >= 64);
    }
}
