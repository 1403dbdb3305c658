// The vendor gate: admits everything on its own, refuses only while the vendor
// has paused or capped it, and forgets itself once those expire.

#include "sluice/limit/vendor_gate.hpp"

#include <catch2/catch.hpp>

#include "sluice/common/clock.hpp"
#include "sluice/limit/limiter.hpp"
#include "sluice/queue/admission_controller.hpp"

namespace {

using namespace std::chrono_literals;
using sluice::FakeClock;
using sluice::config::Algorithm;
using sluice::limit::make_limiter;
using sluice::limit::vendor_gate_config;

}  // namespace

TEST_CASE("vendor gate: named after its upstream, not a YAML algorithm", "[limit][vendor_gate]") {
    const auto config = vendor_gate_config("close");
    CHECK(config.name == "upstream:close");
    CHECK(config.algorithm == Algorithm::vendor_gate);
    CHECK(config.key.empty());
}

TEST_CASE("vendor gate: admits any amount until the vendor pauses it", "[limit][vendor_gate]") {
    FakeClock clock;
    auto gate = make_limiter(vendor_gate_config("v"));
    for (int i = 0; i < 10'000; ++i) {
        REQUIRE(gate->probe(0, 1, i, clock.now()).allowed);
        gate->consume(0, 1, clock.now());
    }
    CHECK(gate->probe(0, 1'000'000, 0, clock.now()).allowed);

    const auto until = clock.now().mono + 400ms;
    gate->pause_until(0, until, clock.now());
    auto d = gate->probe(0, 1, 0, clock.now());
    CHECK_FALSE(d.allowed);
    CHECK(d.earliest == until);
    CHECK(d.remaining == 0);
    clock.advance(399ms);
    CHECK_FALSE(gate->probe(0, 1, 0, clock.now()).allowed);
    clock.advance(1ms);
    CHECK(gate->probe(0, 1, 0, clock.now()).allowed);
    gate->evict_idle(clock.now());
    CHECK(gate->key_count() == 0);  // nothing left to remember once the pause is over
}

TEST_CASE("vendor gate: a cap allows exactly what the vendor said remains", "[limit][vendor_gate]") {
    FakeClock clock;
    auto gate = make_limiter(vendor_gate_config("v"));
    const auto reset = clock.now().mono + 1s;
    gate->cap_remaining(0, 2, reset, clock.now());
    for (int i = 0; i < 2; ++i) {
        REQUIRE(gate->probe(0, 1, 0, clock.now()).allowed);
        gate->consume(0, 1, clock.now());
    }
    const auto d = gate->probe(0, 1, 0, clock.now());
    CHECK_FALSE(d.allowed);
    CHECK(d.earliest == reset);
    clock.advance(1s);
    CHECK(gate->probe(0, 1, 0, clock.now()).allowed);
}

TEST_CASE("vendor gate: a request queued behind a paused gate leaves when the pause ends",
          "[limit][vendor_gate]") {
    FakeClock clock;
    std::vector<std::unique_ptr<sluice::limit::Limiter>> limiters;
    limiters.push_back(make_limiter(vendor_gate_config("v")));
    sluice::queue::AdmissionController controller(std::move(limiters));
    const sluice::queue::AdmissionRequest request{0, {sluice::limit::LimitUse{0, 0, 1}}, 5s, 10};

    CHECK(controller.submit(request, clock.now()).outcome == sluice::queue::Outcome::admitted);
    controller.pause_until(0, 0, clock.now().mono + 300ms, clock.now());
    const auto queued = controller.submit(request, clock.now());
    REQUIRE(queued.outcome == sluice::queue::Outcome::queued);
    CHECK(controller.next_wakeup(clock.now()) == clock.now().mono + 300ms);
    clock.advance(300ms);
    const auto decided = controller.poll(clock.now());
    REQUIRE(decided.size() == 1);
    CHECK(decided[0].ticket == queued.ticket);
    CHECK(decided[0].outcome == sluice::queue::Outcome::admitted);

    // A pause longer than the request may wait is refused at once.
    controller.pause_until(0, 0, clock.now().mono + 10s, clock.now());
    CHECK(controller.submit(request, clock.now()).outcome == sluice::queue::Outcome::rejected);
}
