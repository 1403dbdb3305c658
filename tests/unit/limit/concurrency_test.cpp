#include <catch2/catch.hpp>

#include "sluice/common/clock.hpp"
#include "sluice/limit/limiter.hpp"

namespace {

using namespace std::chrono_literals;
using sluice::FakeClock;
using sluice::kNever;
using sluice::config::Algorithm;
using sluice::config::LimitConfig;
using sluice::limit::make_limiter;

LimitConfig concurrency(std::int64_t limit) {
    LimitConfig c;
    c.name = "cc";
    c.algorithm = Algorithm::concurrency;
    c.limit = limit;
    return c;
}

}  // namespace

TEST_CASE("concurrency: consume takes, release returns, full waits for a release", "[limit][concurrency]") {
    FakeClock clock;
    auto l = make_limiter(concurrency(2));
    auto d = l->probe(0, 1, 0, clock.now());
    CHECK(d.allowed);
    CHECK(d.remaining == 2);
    CHECK(d.reset == clock.now().mono);
    l->consume(0, 1, clock.now());
    l->consume(0, 1, clock.now());
    d = l->probe(0, 1, 0, clock.now());
    CHECK_FALSE(d.allowed);
    CHECK(d.earliest == kNever);
    CHECK(d.remaining == 0);
    CHECK(d.reset == kNever);
    clock.advance(10h);  // time alone does not help
    CHECK_FALSE(l->probe(0, 1, 0, clock.now()).allowed);
    l->release(0, 1, clock.now());
    d = l->probe(0, 1, 0, clock.now());
    CHECK(d.allowed);
    CHECK(d.remaining == 1);
}

TEST_CASE("concurrency: release never goes below zero", "[limit][concurrency]") {
    FakeClock clock;
    auto l = make_limiter(concurrency(2));
    l->consume(0, 1, clock.now());
    l->release(0, 1, clock.now());
    l->release(0, 1, clock.now());  // duplicate
    l->release(0, 5, clock.now());
    CHECK(l->probe(0, 2, 0, clock.now()).allowed);
    CHECK_FALSE(l->probe(0, 3, 0, clock.now()).allowed);
    l->release(42, 1, clock.now());  // an unknown key: nothing happens
    CHECK(l->key_count() <= 1);
}

TEST_CASE("concurrency: cost > 1, cost > limit, units ahead", "[limit][concurrency]") {
    FakeClock clock;
    auto l = make_limiter(concurrency(10));
    l->consume(0, 4, clock.now());
    CHECK(l->probe(0, 6, 0, clock.now()).allowed);
    CHECK_FALSE(l->probe(0, 7, 0, clock.now()).allowed);
    CHECK(l->probe(0, 11, 0, clock.now()).earliest == kNever);
    CHECK(l->probe(0, 2, 4, clock.now()).allowed);
    const auto d = l->probe(0, 2, 5, clock.now());
    CHECK_FALSE(d.allowed);
    CHECK(d.earliest == kNever);
    l->release(0, 4, clock.now());
    CHECK(l->probe(0, 10, 0, clock.now()).allowed);
}

TEST_CASE("concurrency: shadow mode may exceed the limit", "[limit][concurrency]") {
    FakeClock clock;
    auto config = concurrency(1);
    config.enforce = false;
    auto l = make_limiter(config);
    l->consume(0, 1, clock.now());
    l->consume(0, 1, clock.now());
    CHECK(l->probe(0, 0, 0, clock.now()).remaining == 0);
    l->release(0, 1, clock.now());
    CHECK_FALSE(l->probe(0, 1, 0, clock.now()).allowed);  // still one in flight
    l->release(0, 1, clock.now());
    CHECK(l->probe(0, 1, 0, clock.now()).allowed);
}
