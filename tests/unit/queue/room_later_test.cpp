// The lending probe of the real limiters, Limiter::room_later, against the
// exact reference limiters: it must never be optimistic (the controller lends
// capacity on its word), and should be exact where the limiter is exact. The
// bucket ring (sliding windows over 256 units) is only conservative, so it is
// checked for that alone. Random histories, fake time.

#include <random>

#include <catch2/catch.hpp>

#include "sluice/common/clock.hpp"
#include "sluice/limit/limiter.hpp"

namespace sluice::queue::testing {
std::unique_ptr<limit::Limiter> make_exact_limiter(const config::LimitConfig& config);
}  // namespace sluice::queue::testing

namespace {

using namespace std::chrono_literals;
using sluice::Instant;
using sluice::Nanos;
using sluice::config::Algorithm;
using sluice::config::LimitConfig;

LimitConfig config_of(Algorithm algorithm, std::int64_t limit, Nanos window, std::int64_t burst = 0) {
    LimitConfig c;
    c.name = "room-later";
    c.algorithm = algorithm;
    c.limit = limit;
    c.window = window;
    c.burst = burst;
    return c;
}

void cross_check(const LimitConfig& config, bool exact, std::uint64_t seed,
                 std::int64_t steps_per_window = 20) {
    auto real = sluice::limit::make_limiter(config);
    auto reference = sluice::queue::testing::make_exact_limiter(config);
    std::mt19937_64 rng(seed);
    const Nanos window = std::max(config.window, Nanos{1'000'000});
    Instant now{1s, Nanos{1'700'000'000'000'000'000}};
    std::size_t asked = 0, yes = 0;
    std::int64_t held = 0;  // units consumed and not released
    for (int step = 0; step < 4000; ++step) {
        now.mono += Nanos{static_cast<std::int64_t>(
            rng() % static_cast<std::uint64_t>(window.count() / steps_per_window + 1))};
        now.wall = now.mono + Nanos{1'700'000'000'000'000'000} - 1s;
        const std::int64_t cost = 1 + static_cast<std::int64_t>(rng() % 3);
        if (real->probe(0, cost, 0, now).allowed && rng() % 3 != 0) {
            real->consume(0, cost, now);
            reference->consume(0, cost, now);
            held += cost;
        } else if (held >= cost &&
                   rng() % 2 == 0) {  // concurrency: an exchange ends (a no-op for the others)
            real->release(0, cost, now);
            reference->release(0, cost, now);
            held -= cost;
        }
        const std::int64_t units =
            static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(config.limit + 2));
        const Nanos then =
            now.mono +
            Nanos{static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(2 * window.count()))};
        const bool said = real->room_later(0, cost, units, then, now);
        const bool truth = reference->room_later(0, cost, units, then, now);
        INFO("step " << step << " cost " << cost << " units " << units << " in "
                     << (then - now.mono).count());
        if (said) REQUIRE(truth);  // never optimistic
        if (exact) REQUIRE(said == truth);
        ++asked;
        yes += said ? 1 : 0;
    }
    // Both answers must actually occur, or the check above proves little.
    CHECK(yes > asked / 20);
    CHECK(yes < asked - asked / 20);
}

}  // namespace

TEST_CASE("room_later: exact for the sliding log, token bucket, fixed window and concurrency",
          "[queue][limit]") {
    cross_check(config_of(Algorithm::sliding_window, 20, 1s), true, 1);
    cross_check(config_of(Algorithm::token_bucket, 10, 1s, 4), true, 2);
    cross_check(config_of(Algorithm::token_bucket, 10, 1s), true, 3);
    cross_check(config_of(Algorithm::fixed_window, 20, 1s), true, 4);
    cross_check(config_of(Algorithm::concurrency, 20, 0s), true, 5);
}

TEST_CASE("room_later: never optimistic for the sliding bucket ring", "[queue][limit]") {
    cross_check(config_of(Algorithm::sliding_window, 600, 10s), false, 6, 400);
}
