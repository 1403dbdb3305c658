// A reload retires limits and adds their successors (AdmissionController::retire):
// waiting requests move over in arrival order, keep their tickets and deadlines,
// and what still refers to a retired limit reaches its successor.

#include <algorithm>
#include <chrono>
#include <memory>
#include <vector>

#include <catch2/catch.hpp>

#include "sluice/common/clock.hpp"
#include "sluice/limit/limiter.hpp"
#include "sluice/queue/admission_controller.hpp"

using namespace std::chrono_literals;
using sluice::FakeClock;
using sluice::Nanos;
using sluice::config::Algorithm;
using sluice::config::LimitConfig;
using sluice::limit::LimitUse;
using sluice::queue::Admission;
using sluice::queue::AdmissionController;
using sluice::queue::AdmissionRequest;
using sluice::queue::Outcome;

namespace {

LimitConfig limit_of(Algorithm algorithm, std::int64_t limit, Nanos window, const char* name) {
    LimitConfig c;
    c.name = name;
    c.algorithm = algorithm;
    c.limit = limit;
    c.window = window;
    return c;
}

struct Fixture {
    Fixture() {
        std::vector<std::unique_ptr<sluice::limit::Limiter>> none;
        controller = std::make_unique<AdmissionController>(std::move(none));
    }
    std::size_t add(const LimitConfig& c) { return controller->add_limiter(sluice::limit::make_limiter(c)); }
    Admission submit(std::size_t route, std::size_t limit, Nanos max_wait = 10s) {
        return controller->submit(AdmissionRequest{route, {LimitUse{limit, 0, 1}}, max_wait, 100},
                                  clock.now());
    }
    std::vector<Admission> poll() { return controller->poll(clock.now()); }

    FakeClock clock;
    std::unique_ptr<AdmissionController> controller;
};

std::vector<sluice::queue::TicketId> admitted(const std::vector<Admission>& decided) {
    std::vector<sluice::queue::TicketId> tickets;
    for (const auto& a : decided)
        if (a.outcome == Outcome::admitted) tickets.push_back(a.ticket);
    return tickets;
}

}  // namespace

TEST_CASE("requests waiting on a retired limit wait on its successor, in arrival order", "[queue][reload]") {
    Fixture f;
    const auto old_limit = f.add(limit_of(Algorithm::sliding_window, 1, 1s, "api"));
    REQUIRE(f.submit(0, old_limit).outcome == Outcome::admitted);
    const auto first = f.submit(0, old_limit);
    const auto second = f.submit(0, old_limit);
    REQUIRE(first.outcome == Outcome::queued);
    REQUIRE(second.outcome == Outcome::queued);

    // The reload: "api" is now 2 per second, and (as the state carry would) the
    // successor already counts the unit admitted before.
    const auto new_limit = f.add(limit_of(Algorithm::sliding_window, 2, 1s, "api"));
    f.controller->limiter(new_limit);  // exists
    f.controller->feedback_target(new_limit).consume(0, 1, f.clock.now());
    f.controller->retire({{old_limit, new_limit}}, f.clock.now());
    CHECK(f.controller->retired(old_limit));
    CHECK(f.controller->waiting() == 2);
    CHECK(f.controller->activity(new_limit).waiting == 2);
    CHECK(f.controller->activity(old_limit).waiting == 0);

    // A newcomer on the new limit queues behind both: FIFO across the reload.
    const auto third = f.submit(0, new_limit);
    REQUIRE(third.outcome == Outcome::queued);

    // The new limit has room for one more now: the oldest goes first.
    CHECK(admitted(f.poll()) == std::vector{first.ticket});
    f.clock.advance(1s);
    CHECK(admitted(f.poll()) == std::vector{second.ticket, third.ticket});
    CHECK(f.controller->waiting() == 0);
}

TEST_CASE("a waiting request keeps its deadline across a reload", "[queue][reload]") {
    Fixture f;
    const auto old_limit = f.add(limit_of(Algorithm::sliding_window, 1, 10s, "slow"));
    REQUIRE(f.submit(0, old_limit).outcome == Outcome::admitted);
    f.clock.advance(1s);
    const auto waiter = f.submit(0, old_limit, 10s);  // may be admitted at 10 s, its deadline is at 11 s
    REQUIRE(waiter.outcome == Outcome::queued);
    const auto new_limit = f.add(limit_of(Algorithm::sliding_window, 1, 20s, "slow"));
    f.controller->feedback_target(new_limit).consume(0, 1, f.clock.now());
    f.controller->retire({{old_limit, new_limit}}, f.clock.now());
    f.clock.advance(10s);  // 11 s: the deadline; the new window holds it until 21 s
    const auto decided = f.poll();
    REQUIRE(decided.size() == 1);
    CHECK(decided[0].ticket == waiter.ticket);
    CHECK(decided[0].outcome == Outcome::rejected);
    CHECK(decided[0].reason == sluice::Errc::admission_timeout);
}

TEST_CASE("a limit removed by a reload holds its waiters back no longer", "[queue][reload]") {
    Fixture f;
    const auto gone = f.add(limit_of(Algorithm::sliding_window, 1, 1min, "gone"));
    REQUIRE(f.submit(0, gone).outcome == Outcome::admitted);
    const auto waiter = f.submit(0, gone, 2min);
    REQUIRE(waiter.outcome == Outcome::queued);
    f.controller->retire({{gone, std::nullopt}}, f.clock.now());
    CHECK(admitted(f.poll()) == std::vector{waiter.ticket});
}

TEST_CASE("permits in flight on a retired concurrency limit come back to its successor too",
          "[queue][reload]") {
    Fixture f;
    const auto old_limit = f.add(limit_of(Algorithm::concurrency, 1, 0s, "calls"));
    REQUIRE(f.submit(0, old_limit).outcome == Outcome::admitted);
    const auto new_limit = f.add(limit_of(Algorithm::concurrency, 1, 0s, "calls"));
    // The successor carried the permit in flight.
    f.controller->feedback_target(new_limit).consume(0, 1, f.clock.now());
    f.controller->retire({{old_limit, new_limit}}, f.clock.now());
    const auto waiter = f.submit(0, new_limit);
    REQUIRE(waiter.outcome == Outcome::queued);
    // The exchange admitted before the reload ends: its release names the old limit.
    f.controller->release({LimitUse{old_limit, 0, 1}}, f.clock.now());
    CHECK(admitted(f.poll()) == std::vector{waiter.ticket});
}

TEST_CASE(
    "on drain, a waiter that cannot be admitted before the queue closes is refused shutting_down at once",
    "[queue][drain]") {
    Fixture f;
    const auto limit = f.add(limit_of(Algorithm::sliding_window, 1, 1s, "api"));
    REQUIRE(f.submit(0, limit).outcome == Outcome::admitted);
    const auto soon = f.submit(0, limit);  // admissible at 1 s
    const auto late = f.submit(0, limit);  // at 2 s
    REQUIRE(soon.outcome == Outcome::queued);
    REQUIRE(late.outcome == Outcome::queued);
    auto decided = f.controller->close_queue_at(f.clock.now().mono + 1500ms, f.clock.now());
    REQUIRE(decided.size() == 1);
    CHECK(decided[0].ticket == late.ticket);
    CHECK(decided[0].reason == sluice::Errc::shutting_down);
    // A newcomer that could only go after the close is refused at arrival.
    const auto newcomer = f.submit(0, limit);
    CHECK(newcomer.outcome == Outcome::rejected);
    CHECK(newcomer.reason == sluice::Errc::shutting_down);
    // The one that fits goes at its time.
    f.clock.advance(1s);
    CHECK(admitted(f.poll()) == std::vector{soon.ticket});
}

TEST_CASE("reload: waiters keep their class, caller and yields on the successor",
          "[queue][reload][priority]") {
    Fixture f;
    const std::size_t old_limit = f.add(limit_of(Algorithm::sliding_window, 1, 1s, "one"));
    const auto submit = [&](Nanos handicap) {
        AdmissionRequest r{0, {LimitUse{old_limit, 0, 1}}, 60s, 100};
        r.handicap = handicap;
        return f.controller->submit(std::move(r), f.clock.now());
    };
    REQUIRE(submit(0s).outcome == Outcome::admitted);  // the window is taken
    const auto batch = submit(4s);                     // waits as if it came 4 s later
    f.clock.advance(1ms);
    const auto interactive = submit(0s);  // arrives later, yet ahead of it
    REQUIRE(batch.outcome == Outcome::queued);
    REQUIRE(interactive.outcome == Outcome::queued);

    const std::size_t successor = f.add(limit_of(Algorithm::sliding_window, 1, 1s, "one"));
    f.controller->retire({{old_limit, successor}}, f.clock.now());
    // The successor starts empty: the first one in admission order goes, then the other a window later.
    CHECK(admitted(f.poll()) == std::vector<sluice::queue::TicketId>{interactive.ticket});
    f.clock.advance(1s);
    CHECK(admitted(f.poll()) == std::vector<sluice::queue::TicketId>{batch.ticket});
}
