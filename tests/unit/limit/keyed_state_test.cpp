// What all algorithms share (keyed_limiter.hpp): key partitioning, the max_keys
// bound and safe eviction, vendor overlays, status, memory per key.

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
using sluice::limit::make_limiter;

LimitConfig config_for(Algorithm algorithm, std::int64_t limit, Nanos window, std::size_t max_keys = 10'000) {
    LimitConfig c;
    c.name = "keyed";
    c.algorithm = algorithm;
    c.limit = limit;
    c.window = algorithm == Algorithm::concurrency ? 0ns : window;
    if (algorithm == Algorithm::token_bucket) c.burst = limit;
    c.max_keys = max_keys;
    c.key.push_back({sluice::config::KeySource::Kind::header, "X-Api-Key"});
    return c;
}

const Algorithm kAll[] = {Algorithm::token_bucket, Algorithm::sliding_window, Algorithm::fixed_window,
                          Algorithm::concurrency};

}  // namespace

TEST_CASE("keyed: keys are independent", "[limit][keys]") {
    for (const auto algorithm : kAll) {
        FakeClock clock;
        auto l = make_limiter(config_for(algorithm, 2, 1min));
        l->consume(1, 2, clock.now());
        CHECK_FALSE(l->probe(1, 1, 0, clock.now()).allowed);
        CHECK(l->probe(2, 2, 0, clock.now()).allowed);
        l->consume(2, 1, clock.now());
        CHECK(l->probe(2, 0, 0, clock.now()).remaining == 1);
        CHECK(l->key_count() == 2);
    }
}

TEST_CASE("keyed: probing an unknown key records nothing", "[limit][keys]") {
    for (const auto algorithm : kAll) {
        FakeClock clock;
        auto l = make_limiter(config_for(algorithm, 2, 1min));
        const auto d = l->probe(7, 1, 0, clock.now());
        CHECK(d.allowed);
        CHECK(d.remaining == 2);
        CHECK(l->key_count() == 0);
        CHECK(l->probe(7, 3, 0, clock.now()).earliest == kNever);
    }
}

TEST_CASE("keyed: max_keys refuses a new key only while no key may be forgotten", "[limit][keys]") {
    FakeClock clock;
    auto l = make_limiter(config_for(Algorithm::sliding_window, 1, 10s, 2));
    l->consume(1, 1, clock.now());
    clock.advance(1s);
    l->consume(2, 1, clock.now());
    auto d = l->probe(3, 1, 0, clock.now());
    CHECK_FALSE(d.allowed);
    CHECK(d.key_capacity);
    CHECK(d.earliest == kNever);
    CHECK(l->key_count() == 2);
    // Key 1's unit leaves at +10 s: from then on forgetting it cannot let traffic through early.
    clock.advance(9s - 1ns);
    CHECK(l->probe(3, 1, 0, clock.now()).key_capacity);
    clock.advance(1ns);
    d = l->probe(3, 1, 0, clock.now());
    CHECK(d.allowed);
    CHECK_FALSE(d.key_capacity);
    l->consume(3, 1, clock.now());
    CHECK(l->key_count() == 2);
    // Key 2 was kept: its unit still counts.
    CHECK_FALSE(l->probe(2, 1, 0, clock.now()).allowed);
}

TEST_CASE("keyed: keys with concurrency permits out are never forgotten", "[limit][keys]") {
    FakeClock clock;
    auto l = make_limiter(config_for(Algorithm::concurrency, 1, 0ns, 1));
    l->consume(1, 1, clock.now());
    clock.advance(24h);
    CHECK(l->probe(2, 1, 0, clock.now()).key_capacity);
    l->evict_idle(clock.now());
    CHECK(l->key_count() == 1);
    l->release(1, 1, clock.now());  // key 1 is fresh again: a new key may take its place at once
    CHECK(l->probe(2, 1, 0, clock.now()).allowed);
    l->consume(2, 1, clock.now());
    CHECK(l->key_count() == 1);
    CHECK(l->probe(1, 1, 0, clock.now()).key_capacity);
}

TEST_CASE("keyed: evict_idle forgets only fresh-equivalent keys", "[limit][keys]") {
    for (const auto algorithm :
         {Algorithm::token_bucket, Algorithm::sliding_window, Algorithm::fixed_window}) {
        FakeClock clock;
        auto l = make_limiter(config_for(algorithm, 5, 1min));
        l->consume(1, 1, clock.now());
        l->consume(2, 1, clock.now());
        l->pause_until(2, clock.now().mono + 1h, clock.now());
        l->consume(3, 1, clock.now());
        l->cap_remaining(3, 0, clock.now().mono + 2h, clock.now());
        l->evict_idle(clock.now());
        CHECK(l->key_count() == 3);
        clock.advance(61s);
        l->evict_idle(clock.now());
        CHECK(l->key_count() == 2);  // key 1 forgotten; the paused and capped keys kept
        clock.advance(1h);
        l->evict_idle(clock.now());
        CHECK(l->key_count() == 1);
        clock.advance(1h);
        l->evict_idle(clock.now());
        CHECK(l->key_count() == 0);
    }
}

TEST_CASE("keyed: shadow consume for a new key when the table is full is dropped", "[limit][keys]") {
    FakeClock clock;
    auto config = config_for(Algorithm::sliding_window, 1, 10s, 1);
    config.enforce = false;
    auto l = make_limiter(config);
    l->consume(1, 1, clock.now());
    l->consume(2, 1, clock.now());
    CHECK(l->key_count() == 1);
}

TEST_CASE("keyed: pause_until refuses with earliest >= until and reports nothing remaining",
          "[limit][overlay]") {
    for (const auto algorithm : kAll) {
        FakeClock clock;
        auto l = make_limiter(config_for(algorithm, 5, 1s));
        const auto until = clock.now().mono + 30s;
        l->pause_until(0, until, clock.now());
        auto d = l->probe(0, 1, 0, clock.now());
        CHECK_FALSE(d.allowed);
        CHECK(d.earliest == until);
        CHECK(d.remaining == 0);
        CHECK(d.reset >= until);
        clock.advance(30s - 1ns);
        CHECK_FALSE(l->probe(0, 1, 0, clock.now()).allowed);
        clock.advance(1ns);
        d = l->probe(0, 1, 0, clock.now());
        CHECK(d.allowed);
        CHECK(d.remaining == 5);
    }
}

TEST_CASE("keyed: a pause shorter than the algorithm's own wait changes nothing", "[limit][overlay]") {
    FakeClock clock;
    auto l = make_limiter(config_for(Algorithm::sliding_window, 1, 10s));
    l->consume(0, 1, clock.now());
    l->pause_until(0, clock.now().mono + 2s, clock.now());
    l->pause_until(0, clock.now().mono + 1s, clock.now());  // an earlier pause never shortens one in force
    CHECK(l->probe(0, 1, 0, clock.now()).earliest == clock.now().mono + 10s);
    clock.advance(1500ms);
    CHECK(l->key_count() == 1);
    auto status = l->status(clock.now(), 10);
    REQUIRE(status.size() == 1);
    CHECK(status[0].paused_until == clock.now().mono + 500ms);
    l->pause_until(0, clock.now().mono - 1ns, clock.now());  // in the past: ignored
}

TEST_CASE("keyed: cap_remaining admits at most `remaining` more until reset_at", "[limit][overlay]") {
    for (const auto algorithm : {Algorithm::token_bucket, Algorithm::sliding_window, Algorithm::fixed_window,
                                 Algorithm::concurrency}) {
        FakeClock clock;
        auto l = make_limiter(config_for(algorithm, 10, 1h));
        const auto reset_at = clock.now().mono + 5s;
        l->cap_remaining(0, 2, reset_at, clock.now());
        auto d = l->probe(0, 1, 0, clock.now());
        CHECK(d.allowed);
        CHECK(d.remaining == 2);
        CHECK(d.reset >= reset_at);
        CHECK_FALSE(l->probe(0, 3, 0, clock.now()).allowed);
        CHECK(l->probe(0, 1, 2, clock.now()).earliest == reset_at);
        l->consume(0, 2, clock.now());
        d = l->probe(0, 1, 0, clock.now());
        CHECK_FALSE(d.allowed);
        CHECK(d.remaining == 0);
        CHECK(d.earliest == reset_at);
        clock.advance(5s);
        d = l->probe(0, 1, 0, clock.now());
        CHECK(d.allowed);  // the algorithm alone decides again
        CHECK(d.remaining == 8);
    }
}

TEST_CASE("keyed: cap_remaining never raises the allowance", "[limit][overlay]") {
    FakeClock clock;
    auto l = make_limiter(config_for(Algorithm::sliding_window, 5, 1min));
    l->consume(0, 4, clock.now());
    l->cap_remaining(0, 100, clock.now().mono + 10s, clock.now());
    auto d = l->probe(0, 2, 0, clock.now());
    CHECK_FALSE(d.allowed);
    CHECK(d.remaining == 1);
    CHECK(d.earliest == clock.now().mono + 1min);
}

TEST_CASE("keyed: cap reports merge: same window keeps the tighter, a later window replaces",
          "[limit][overlay]") {
    FakeClock clock;
    auto l = make_limiter(config_for(Algorithm::token_bucket, 100, 1s));
    const auto t0 = clock.now().mono;
    l->cap_remaining(0, 3, t0 + 10s, clock.now());
    l->cap_remaining(0, 7, t0 + 10s, clock.now());  // an older response arriving late
    CHECK(l->probe(0, 0, 0, clock.now()).remaining == 3);
    l->cap_remaining(0, 1, t0 + 5s, clock.now());
    CHECK(l->probe(0, 0, 0, clock.now()).remaining == 1);
    l->cap_remaining(0, 50, t0 + 20s, clock.now());  // the vendor's next window
    CHECK(l->probe(0, 0, 0, clock.now()).remaining == 50);
    CHECK(l->probe(0, 51, 0, clock.now()).earliest == t0 + 20s);
}

TEST_CASE("keyed: status lists the most constrained keys first", "[limit][keys]") {
    FakeClock clock;
    auto l = make_limiter(config_for(Algorithm::sliding_window, 10, 1min));
    l->consume(1, 2, clock.now());
    l->consume(2, 9, clock.now());
    l->consume(3, 5, clock.now());
    l->pause_until(4, clock.now().mono + 10s, clock.now());
    auto all = l->status(clock.now(), 10);
    REQUIRE(all.size() == 4);
    CHECK(all[0].key == 4);
    CHECK(all[0].remaining == 0);
    CHECK(all[0].paused_until == clock.now().mono + 10s);
    CHECK(all[1].key == 2);
    CHECK(all[1].remaining == 1);
    CHECK(all[1].paused_until == Nanos{0});
    CHECK(all[1].reset == clock.now().mono + 1min);
    CHECK(all[2].key == 3);
    CHECK(all[3].key == 1);
    const auto top = l->status(clock.now(), 2);
    REQUIRE(top.size() == 2);
    CHECK(top[1].key == 2);
}

TEST_CASE("keyed: bytes per key", "[limit][keys]") {
    // Small states: the map node dominates. Rings: at most 2 KiB plus the node.
    CHECK(make_limiter(config_for(Algorithm::concurrency, 10, 0ns))->bytes_per_key() <= 128);
    CHECK(make_limiter(config_for(Algorithm::token_bucket, 10, 1s))->bytes_per_key() <= 128);
    CHECK(make_limiter(config_for(Algorithm::fixed_window, 10, 1s))->bytes_per_key() <= 128);
    CHECK(make_limiter(config_for(Algorithm::sliding_window, 20, 1s))->bytes_per_key() <= 320);
    CHECK(make_limiter(config_for(Algorithm::sliding_window, 3000, 5min))->bytes_per_key() <= 4096);
}

TEST_CASE("keyed: an unkeyed limit uses key 0 like any other", "[limit][keys]") {
    FakeClock clock;
    auto config = config_for(Algorithm::sliding_window, 3, 1s, 1);
    config.key.clear();
    auto l = make_limiter(config);
    for (int i = 0; i < 3; ++i) l->consume(0, 1, clock.now());
    CHECK_FALSE(l->probe(0, 1, 0, clock.now()).allowed);
    CHECK(l->key_count() == 1);
}

TEST_CASE("keyed: a pause keeps the reason of the pause that ends last, and shows it only while paused",
          "[limit][overlay]") {
    using sluice::limit::PauseCause;
    using sluice::limit::PauseReason;
    for (const auto algorithm : kAll) {
        FakeClock clock;
        auto l = make_limiter(config_for(algorithm, 5, 10s));
        l->pause_until(3, clock.now().mono + 2s, clock.now(),
                       PauseReason{PauseCause::quota_spent, "x_ratelimit"});
        // Shorter: neither the pause nor its reason changes.
        l->pause_until(3, clock.now().mono + 1s, clock.now(),
                       PauseReason{PauseCause::vendor_refused, "retry_after"});
        auto status = l->status(clock.now(), 10);
        REQUIRE(status.size() == 1);
        CHECK(status[0].paused_until == clock.now().mono + 2s);
        CHECK(status[0].pause_reason == PauseReason{PauseCause::quota_spent, "x_ratelimit"});
        // Longer: it replaces both.
        l->pause_until(3, clock.now().mono + 4s, clock.now(),
                       PauseReason{PauseCause::vendor_refused, "body_field"});
        status = l->status(clock.now(), 10);
        REQUIRE(status.size() == 1);
        CHECK(status[0].pause_reason.cause == PauseCause::vendor_refused);
        CHECK(status[0].pause_reason.signal == "body_field");
        CHECK(sluice::limit::pause_cause_name(status[0].pause_reason.cause) == "vendor_refused");
        clock.advance(4s);  // over: no pause, no reason
        status = l->status(clock.now(), 10);
        for (const auto& key : status) {
            CHECK(key.paused_until == Nanos{0});
            CHECK(key.pause_reason == PauseReason{});
        }
    }
}
