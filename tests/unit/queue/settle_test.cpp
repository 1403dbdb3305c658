// A cost settled from the vendor's response (docs/costs.md) through the controller: units
// charged beyond the admitted cost hold back later requests; units given back let a waiter go.

#include <catch2/catch.hpp>

#include "sluice/common/clock.hpp"
#include "sluice/limit/limiter.hpp"
#include "sluice/queue/admission_controller.hpp"

namespace {

using namespace std::chrono_literals;
using sluice::FakeClock;
using sluice::Nanos;
using sluice::config::Algorithm;
using sluice::config::LimitConfig;
using sluice::limit::LimitUse;
using sluice::queue::AdmissionController;
using sluice::queue::AdmissionRequest;
using sluice::queue::Outcome;

std::unique_ptr<AdmissionController> controller_for(std::int64_t limit) {
    LimitConfig c;
    c.name = "units";
    c.algorithm = Algorithm::sliding_window;
    c.limit = limit;
    c.window = 1min;
    std::vector<std::unique_ptr<sluice::limit::Limiter>> limiters;
    limiters.push_back(sluice::limit::make_limiter(c));
    return std::make_unique<AdmissionController>(std::move(limiters));
}

AdmissionRequest request(std::int64_t cost, Nanos max_wait) {
    return AdmissionRequest{0, {LimitUse{0, 0, cost}}, max_wait, 100};
}

}  // namespace

TEST_CASE("settle: units charged beyond the admitted cost hold later requests back", "[queue][settle]") {
    FakeClock clock;
    auto controller = controller_for(10);
    REQUIRE(controller->submit(request(2, 0s), clock.now()).outcome == Outcome::admitted);
    controller->charge({LimitUse{0, 0, 7}}, clock.now());  // the vendor charged 9
    CHECK(controller->submit(request(2, 0s), clock.now()).outcome == Outcome::rejected);
    CHECK(controller->submit(request(1, 0s), clock.now()).outcome == Outcome::admitted);
}

TEST_CASE("settle: units given back let a queued request go at the next poll", "[queue][settle]") {
    FakeClock clock;
    auto controller = controller_for(10);
    const auto admitted_at = clock.now().mono;
    REQUIRE(controller->submit(request(8, 0s), clock.now()).outcome == Outcome::admitted);
    REQUIRE(controller->submit(request(8, 2min), clock.now()).outcome == Outcome::queued);  // room in 1 min
    clock.advance(10ms);
    CHECK(controller->poll(clock.now()).empty());
    controller->refund({LimitUse{0, 0, 6}}, admitted_at, clock.now());  // the vendor charged 2
    const auto decided = controller->poll(clock.now());
    REQUIRE(decided.size() == 1);
    CHECK(decided[0].outcome == Outcome::admitted);
}
