// The admin pages' view of who waits (AdmissionController::oldest_waiting_since,
// waiting_on), over the real limiters.

#include <memory>
#include <vector>

#include <catch2/catch.hpp>

#include "sluice/common/clock.hpp"
#include "sluice/limit/limiter.hpp"
#include "sluice/queue/admission_controller.hpp"

namespace {

using namespace std::chrono_literals;
using sluice::FakeClock;
using sluice::kNever;
using sluice::Nanos;
using sluice::config::Algorithm;
using sluice::config::LimitConfig;
using sluice::limit::LimitUse;
using sluice::queue::Admission;
using sluice::queue::AdmissionController;
using sluice::queue::AdmissionRequest;
using sluice::queue::Outcome;

LimitConfig sliding(std::int64_t limit, Nanos window) {
    LimitConfig c;
    c.name = "sliding";
    c.algorithm = Algorithm::sliding_window;
    c.limit = limit;
    c.window = window;
    return c;
}

LimitConfig shadow(LimitConfig c) {
    c.enforce = false;
    return c;
}

struct Fixture {
    explicit Fixture(const std::vector<LimitConfig>& configs) {
        std::vector<std::unique_ptr<sluice::limit::Limiter>> owned;
        for (const auto& c : configs) owned.push_back(sluice::limit::make_limiter(c));
        controller = std::make_unique<AdmissionController>(std::move(owned));
    }
    Admission submit(std::size_t route, std::vector<LimitUse> uses) {
        return controller->submit(AdmissionRequest{route, std::move(uses), 10s, 100}, clock.now());
    }
    std::vector<Admission> poll() { return controller->poll(clock.now()); }
    void advance_to(Nanos mono) { clock.advance(mono - clock.now().mono); }
    Nanos now() const { return clock.now().mono; }

    FakeClock clock;
    std::unique_ptr<AdmissionController> controller;
};

std::vector<LimitUse> on(std::initializer_list<std::size_t> limits, std::int64_t cost,
                         sluice::limit::KeyHash key) {
    std::vector<LimitUse> uses;
    for (auto l : limits) uses.push_back(LimitUse{l, key, cost});
    return uses;
}

}  // namespace

TEST_CASE("the oldest waiter's arrival is kept per limit and per key, whoever leaves first",
          "[queue][activity]") {
    // Limit 0: 1 per second per key; limit 1: shadow (counts, holds nobody back).
    Fixture f({sliding(1, 1s), shadow(sliding(1, 1s))});
    const Nanos t0 = f.now();
    CHECK(f.controller->oldest_waiting_since(0) == kNever);
    CHECK(f.controller->waiting_on(0, 7)->requests == 0);
    CHECK_FALSE(f.controller->waiting_on(1, 7).has_value());  // shadow: no per-key line
    REQUIRE(f.submit(0, on({0, 1}, 1, 7)).outcome == Outcome::admitted);
    REQUIRE(f.submit(0, on({0, 1}, 1, 9)).outcome == Outcome::admitted);
    f.advance_to(t0 + 100ms);
    const Admission a = f.submit(0, on({0, 1}, 1, 7));  // key 7, oldest waiter overall
    f.advance_to(t0 + 200ms);
    const Admission b = f.submit(1, on({0, 1}, 1, 9));  // key 9, another queue
    f.advance_to(t0 + 300ms);
    const Admission c = f.submit(0, on({0, 1}, 1, 7));  // key 7, behind a
    REQUIRE(a.outcome == Outcome::queued);
    REQUIRE(b.outcome == Outcome::queued);
    REQUIRE(c.outcome == Outcome::queued);
    CHECK(f.controller->oldest_waiting_since(0) == t0 + 100ms);
    CHECK(f.controller->oldest_waiting_since(1) == t0 + 100ms);  // a shadow limit still sees who waits
    const auto key7 = f.controller->waiting_on(0, 7);
    REQUIRE(key7.has_value());
    CHECK(key7->requests == 2);
    CHECK(key7->units == 2);
    CHECK(key7->oldest_since == t0 + 100ms);
    CHECK(f.controller->waiting_on(0, 9)->oldest_since == t0 + 200ms);
    // The oldest leaves by cancel: the next oldest on the limit is b, on key 7 it is c.
    REQUIRE(f.controller->cancel(a.ticket, f.clock.now()));
    CHECK(f.controller->oldest_waiting_since(0) == t0 + 200ms);
    CHECK(f.controller->waiting_on(0, 7)->oldest_since == t0 + 300ms);
    CHECK(f.controller->waiting_on(0, 7)->requests == 1);
    // The windows slide: b and c are admitted; nothing waits.
    f.advance_to(t0 + 1s);
    const auto decided = f.poll();
    CHECK(decided.size() == 2);
    CHECK(f.controller->oldest_waiting_since(0) == kNever);
    CHECK(f.controller->oldest_waiting_since(1) == kNever);
    CHECK(f.controller->waiting_on(0, 7)->requests == 0);
    CHECK(f.controller->waiting_on(0, 7)->oldest_since == kNever);
}
