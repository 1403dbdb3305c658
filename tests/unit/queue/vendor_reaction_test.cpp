// queue::react_to_vendor: the reaction to a vendor's signals carried out on the controller's
// limiters, as LimitService::react and `sluice simulate` both call it.

#include "sluice/queue/vendor_reaction.hpp"

#include <memory>
#include <vector>

#include <catch2/catch.hpp>

#include "sluice/common/clock.hpp"

namespace {

using namespace std::chrono_literals;
using sluice::FakeClock;
using sluice::config::Algorithm;
using sluice::config::LimitConfig;
using sluice::limit::LimitUse;
using sluice::queue::AdmissionController;
using sluice::queue::AdmissionRequest;
using sluice::queue::Outcome;
using Kind = sluice::feedback::FeedbackAction::Kind;

LimitConfig sliding(std::int64_t limit) {
    LimitConfig c;
    c.name = "sliding";
    c.algorithm = Algorithm::sliding_window;
    c.limit = limit;
    c.window = 1s;
    return c;
}

std::unique_ptr<AdmissionController> controller_of(std::vector<LimitConfig> configs) {
    std::vector<std::unique_ptr<sluice::limit::Limiter>> owned;
    for (const auto& c : configs) owned.push_back(sluice::limit::make_limiter(c));
    return std::make_unique<AdmissionController>(std::move(owned));
}

}  // namespace

TEST_CASE("react_to_vendor: a 429 with a pause pauses every limit the request used, shared too", "[queue]") {
    FakeClock clock;
    auto controller = controller_of({sliding(10), sliding(5)});
    const std::vector<LimitUse> uses{{0, 7, 1}, {1, 7, 1}};
    REQUIRE(controller->submit(AdmissionRequest{0, uses, 10s, 100}, clock.now()).outcome ==
            Outcome::admitted);
    sluice::feedback::VendorSignal signal;
    signal.rate_limited = true;
    signal.pause = 2s;
    signal.pause_source = sluice::feedback::SignalSource::retry_after;
    sluice::config::FeedbackSettings settings;
    settings.learn = false;
    std::vector<sluice::queue::SharedFeedbackAction> shared;
    const auto reaction = sluice::queue::react_to_vendor(*controller, uses, {0, 0}, signal, settings, 429,
                                                         false, clock.now().mono + 10s, clock.now(), &shared);
    CHECK(reaction.paused);
    CHECK(sluice::queue::changes_limits(reaction));
    REQUIRE(shared.size() == 2);
    CHECK(shared[0].second.kind == Kind::pause);
    CHECK(shared[0].second.until == clock.now().mono + 2s);
    CHECK(shared[1].first.limit_index == 1);
    CHECK(sluice::queue::pause_reason_of(signal).cause == sluice::limit::PauseCause::vendor_refused);
    // The key waits for the pause's end; another key does not.
    const auto held = controller->submit(AdmissionRequest{0, {{0, 7, 1}}, 10s, 100}, clock.now());
    CHECK(held.outcome == Outcome::queued);
    CHECK(controller->next_wakeup(clock.now()) == clock.now().mono + 2s);
    CHECK(controller->submit(AdmissionRequest{0, {{0, 8, 1}}, 10s, 100}, clock.now()).outcome ==
          Outcome::admitted);
}

TEST_CASE("react_to_vendor: an answer without signals changes nothing and shares nothing", "[queue]") {
    FakeClock clock;
    auto controller = controller_of({sliding(5)});
    const std::vector<LimitUse> uses{{0, 0, 1}};
    REQUIRE(controller->submit(AdmissionRequest{0, uses, 10s, 100}, clock.now()).outcome ==
            Outcome::admitted);
    const sluice::feedback::VendorSignal nothing;
    const sluice::config::FeedbackSettings settings;
    std::vector<sluice::queue::SharedFeedbackAction> shared;
    const auto reaction = sluice::queue::react_to_vendor(*controller, uses, {}, nothing, settings, 200, false,
                                                         clock.now().mono + 10s, clock.now(), &shared);
    CHECK_FALSE(sluice::queue::changes_limits(reaction));
    CHECK(shared.empty());
    REQUIRE(reaction.actions.size() == 1);
    CHECK(reaction.actions.back().kind == Kind::relay);
}
