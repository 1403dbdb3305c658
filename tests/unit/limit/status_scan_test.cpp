// Inspection in bounded steps (Limiter::status_step, StatusScan): what the admin
// page does instead of one walk over every key under the admission lock.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <set>

#include <catch2/catch.hpp>

#include "sluice/common/clock.hpp"
#include "sluice/limit/limiter.hpp"

namespace {

using namespace std::chrono_literals;
using sluice::FakeClock;
using sluice::Nanos;
using sluice::config::Algorithm;
using sluice::config::LimitConfig;
using sluice::limit::KeyStatus;
using sluice::limit::make_limiter;
using sluice::limit::StatusScan;

LimitConfig keyed(Algorithm algorithm, std::size_t max_keys) {
    LimitConfig c;
    c.name = "scan";
    c.algorithm = algorithm;
    c.limit = 1000;
    c.window = algorithm == Algorithm::concurrency ? 0ns : Nanos(1h);
    if (algorithm == Algorithm::token_bucket) c.burst = 1000;
    c.max_keys = max_keys;
    c.key.push_back({sluice::config::KeySource::Kind::header, "X-Api-Key"});
    return c;
}

// Key k has consumed k % 997 units: distinct pressures, so the top is well defined.
std::unique_ptr<sluice::limit::Limiter> filled(Algorithm algorithm, std::size_t keys, FakeClock& clock) {
    auto l = make_limiter(keyed(algorithm, keys));
    for (std::size_t k = 1; k <= keys; ++k) {
        const auto cost = static_cast<std::int64_t>(k % 997);
        if (cost > 0)
            l->consume(k * 0x1234567ULL, cost, clock.now());
        else
            l->pause_until(k * 0x1234567ULL, clock.now().mono + 1s, clock.now());  // keeps the key tracked
    }
    return l;
}

}  // namespace

TEST_CASE("status_step examines at most max_slots per step and finds the same top as one walk",
          "[limit][status]") {
    for (const auto algorithm : {Algorithm::token_bucket, Algorithm::sliding_window, Algorithm::fixed_window,
                                 Algorithm::concurrency}) {
        FakeClock clock;
        auto l = filled(algorithm, 5000, clock);
        REQUIRE(l->key_count() == 5000);
        const auto whole = l->status(clock.now(), 20);
        REQUIRE(whole.size() == 20);
        CHECK(std::is_sorted(whole.begin(), whole.end(), sluice::limit::more_constrained));
        StatusScan scan(20);
        std::size_t steps = 0;
        while (!scan.done()) {
            const auto before = scan.slots_examined();
            l->status_step(clock.now(), scan, 256);
            CHECK(scan.slots_examined() - before <= 256);
            ++steps;
        }
        CHECK(steps > 5000 / 256);
        const auto stepped = scan.take();
        REQUIRE(stepped.size() == whole.size());
        for (std::size_t i = 0; i < whole.size(); ++i) {
            CHECK(stepped[i].key == whole[i].key);
            CHECK(stepped[i].remaining == whole[i].remaining);
        }
    }
}

TEST_CASE("a scan keeps a key once when the table moves it between steps", "[limit][status]") {
    FakeClock clock;
    auto l = filled(Algorithm::sliding_window, 100, clock);
    StatusScan scan(1000);
    l->status_step(clock.now(), scan, 64);
    // Growth between two steps moves every slot: keys already seen may come again.
    for (std::size_t k = 1000; k < 3000; ++k) l->consume(k, 1, clock.now());
    while (!scan.done()) l->status_step(clock.now(), scan, 64);
    const auto keys = scan.take();
    std::set<std::uint64_t> distinct;
    for (const auto& k : keys) distinct.insert(k.key);
    CHECK(distinct.size() == keys.size());
}

TEST_CASE("an empty limiter's scan is done in one step", "[limit][status]") {
    FakeClock clock;
    auto l = make_limiter(keyed(Algorithm::sliding_window, 10));
    StatusScan scan(20);
    l->status_step(clock.now(), scan, 1024);
    CHECK(scan.done());
    CHECK(scan.take().empty());
}

// The measurement behind the admin page's step size (docs/security.md): how long
// the admission lock is held by one walk over every key (before) and by the
// longest step of 1,024 slots (after). Hidden: run with
//   build/tests/sluice_limit_tests "[.status-bench]"
TEST_CASE("status: lock hold time, whole walk vs bounded steps", "[.status-bench]") {
    using Clock = std::chrono::steady_clock;
    for (const std::size_t keys : {std::size_t{10'000}, std::size_t{100'000}}) {
        for (const auto algorithm : {Algorithm::sliding_window, Algorithm::token_bucket}) {
            FakeClock clock;
            auto l = filled(algorithm, keys, clock);
            auto start = Clock::now();
            const auto whole = l->status(clock.now(), 20);
            const auto whole_us = std::chrono::duration<double, std::micro>(Clock::now() - start).count();
            StatusScan scan(20);
            double longest_step_us = 0;
            std::size_t steps = 0;
            while (!scan.done()) {
                start = Clock::now();
                l->status_step(clock.now(), scan, 1024);
                longest_step_us = std::max(
                    longest_step_us, std::chrono::duration<double, std::micro>(Clock::now() - start).count());
                ++steps;
            }
            std::printf("%-15s %7zu keys: whole walk %9.1f us; %4zu steps of 1024 slots, longest %6.1f us\n",
                        algorithm == Algorithm::sliding_window ? "sliding_window" : "token_bucket", keys,
                        whole_us, steps, longest_step_us);
            CHECK(scan.take().size() == whole.size());
        }
    }
}
