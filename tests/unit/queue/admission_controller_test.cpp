#include "sluice/queue/admission_controller.hpp"

#include <algorithm>
#include <map>
#include <vector>

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
using sluice::limit::LimitUse;
using sluice::queue::Admission;
using sluice::queue::AdmissionController;
using sluice::queue::AdmissionRequest;
using sluice::queue::Outcome;
using sluice::queue::TicketId;
using Errc = sluice::Errc;

// The real limiters: these scenarios test the controller as it runs in sluice.
std::unique_ptr<sluice::limit::Limiter> build(const LimitConfig& config) {
    return sluice::limit::make_limiter(config);
}

LimitConfig sliding(std::int64_t limit, Nanos window) {
    LimitConfig c;
    c.name = "sliding";
    c.algorithm = Algorithm::sliding_window;
    c.limit = limit;
    c.window = window;
    return c;
}

LimitConfig concurrency(std::int64_t max_in_flight) {
    LimitConfig c;
    c.name = "concurrency";
    c.algorithm = Algorithm::concurrency;
    c.limit = max_in_flight;
    return c;
}

LimitConfig shadow(LimitConfig c) {
    c.enforce = false;
    return c;
}

// A controller over `configs`, keeping plain pointers to its limiters so a test
// can look at what was consumed (the controller owns them; they live as long).
struct Fixture {
    explicit Fixture(std::vector<LimitConfig> configs) {
        std::vector<std::unique_ptr<sluice::limit::Limiter>> owned;
        for (const auto& c : configs) {
            owned.push_back(build(c));
            limiters.push_back(owned.back().get());
        }
        controller = std::make_unique<AdmissionController>(std::move(owned));
    }

    Admission submit(std::size_t route, std::vector<LimitUse> uses, Nanos max_wait = 10s,
                     std::size_t max_depth = 100) {
        return controller->submit(AdmissionRequest{route, std::move(uses), max_wait, max_depth}, clock.now());
    }
    std::vector<Admission> poll() { return controller->poll(clock.now()); }
    Nanos next_wakeup() { return controller->next_wakeup(clock.now()); }
    void advance_to(Nanos mono) { clock.advance(mono - clock.now().mono); }
    Nanos now() const { return clock.now().mono; }
    // Units still available on a limit's key, asked of the limiter itself.
    std::int64_t remaining(std::size_t limit, sluice::limit::KeyHash key = 0) {
        return limiters[limit]->probe(key, 0, 0, clock.now()).remaining;
    }

    FakeClock clock;
    std::vector<sluice::limit::Limiter*> limiters;
    std::unique_ptr<AdmissionController> controller;
};

std::vector<LimitUse> on(std::initializer_list<std::size_t> limits, std::int64_t cost = 1,
                         sluice::limit::KeyHash key = 0) {
    std::vector<LimitUse> uses;
    for (auto l : limits) uses.push_back(LimitUse{l, key, cost});
    return uses;
}

}  // namespace

TEST_CASE("a request within its limits is admitted at once with the tightest limit", "[queue]") {
    Fixture f({sliding(100, 1s), sliding(5, 1s)});
    f.submit(0, on({1}, 2));
    const Admission a = f.submit(0, on({0, 1}));
    CHECK(a.outcome == Outcome::admitted);
    CHECK(a.ticket == 0);
    REQUIRE(a.limiting_limit == 1u);  // 2 of 5 left after it, against 99 of 100
    CHECK(a.tightest.limit == 5);
    CHECK(a.tightest.remaining == 2);
    CHECK(f.controller->waiting() == 0);
    CHECK(f.next_wakeup() == kNever);
}

TEST_CASE("a request without limits is admitted at once", "[queue]") {
    Fixture f({sliding(1, 1s)});
    const Admission a = f.submit(0, {});
    CHECK(a.outcome == Outcome::admitted);
    CHECK_FALSE(a.limiting_limit.has_value());
}

TEST_CASE("all or nothing: a refusal on one limit consumes nothing from the others", "[queue]") {
    Fixture f({sliding(10, 1s), sliding(1, 1s), sliding(10, 1s)});
    REQUIRE(f.submit(0, on({0, 1, 2})).outcome == Outcome::admitted);
    const Admission refused = f.submit(0, on({0, 1, 2}), 0s);
    CHECK(refused.outcome == Outcome::rejected);
    CHECK(refused.reason == Errc::admission_timeout);
    CHECK(refused.limiting_limit == 1u);
    CHECK(refused.tightest.remaining == 0);
    CHECK(f.remaining(0) == 9);
    CHECK(f.remaining(2) == 9);
    // Nothing was set aside for the refused request either.
    CHECK(f.submit(1, on({0, 2}, 9)).outcome == Outcome::admitted);
}

TEST_CASE("a queued request is admitted exactly at next_wakeup, not a nanosecond before", "[queue]") {
    Fixture f({sliding(2, 1s)});
    const Nanos t0 = f.now();
    REQUIRE(f.submit(0, on({0}, 2)).outcome == Outcome::admitted);
    f.advance_to(t0 + 300ms);
    const Admission q = f.submit(0, on({0}), 2s);
    REQUIRE(q.outcome == Outcome::queued);
    CHECK(q.ticket != 0);
    CHECK(q.queue.depth == 1);
    CHECK(q.limiting_limit == 0u);
    CHECK(f.controller->waiting() == 1);
    REQUIRE(f.next_wakeup() == t0 + 1s);

    f.advance_to(t0 + 1s - 1ns);
    CHECK(f.poll().empty());
    CHECK(f.next_wakeup() == t0 + 1s);
    f.advance_to(t0 + 1s);
    const auto decided = f.poll();
    REQUIRE(decided.size() == 1);
    CHECK(decided[0].outcome == Outcome::admitted);
    CHECK(decided[0].ticket == q.ticket);
    CHECK(decided[0].queue.depth == 0);
    CHECK(f.controller->waiting() == 0);
    CHECK(f.controller->queue_count() == 0);
    CHECK(f.next_wakeup() == kNever);
}

TEST_CASE("within a queue, strict FIFO: a small request waits behind a big one", "[queue]") {
    Fixture f({sliding(2, 1s)});
    const Nanos t0 = f.now();
    REQUIRE(f.submit(0, on({0}, 1)).outcome == Outcome::admitted);
    const Admission big = f.submit(0, on({0}, 2));
    const Admission small = f.submit(0, on({0}, 1));  // would fit now, but is behind `big`
    REQUIRE(big.outcome == Outcome::queued);
    REQUIRE(small.outcome == Outcome::queued);
    CHECK(f.poll().empty());

    REQUIRE(f.next_wakeup() == t0 + 1s);
    f.advance_to(t0 + 1s);
    auto decided = f.poll();
    REQUIRE(decided.size() == 1);
    CHECK(decided[0].ticket == big.ticket);
    REQUIRE(f.next_wakeup() == t0 + 2s);
    f.advance_to(t0 + 2s);
    decided = f.poll();
    REQUIRE(decided.size() == 1);
    CHECK(decided[0].ticket == small.ticket);
}

TEST_CASE("a newcomer queues behind a head that is due but not yet polled", "[queue]") {
    // The I/O layer's timer may fire a little late: a submit can come first.
    Fixture f({sliding(2, 1s)});
    const Nanos t0 = f.now();
    REQUIRE(f.submit(0, on({0}, 2)).outcome == Outcome::admitted);
    const TicketId head = f.submit(0, on({0}, 1)).ticket;
    f.advance_to(t0 + 1s);
    const Admission newcomer = f.submit(0, on({0}, 1));
    CHECK(newcomer.outcome == Outcome::queued);
    const auto decided = f.poll();
    REQUIRE(decided.size() == 2);
    CHECK(decided[0].ticket == head);
    CHECK(decided[1].ticket == newcomer.ticket);
}

TEST_CASE("across queues that share a limit, the oldest goes first", "[queue]") {
    Fixture f({sliding(1, 1s)});
    const Nanos t0 = f.now();
    REQUIRE(f.submit(0, on({0})).outcome == Outcome::admitted);
    const TicketId y1 = f.submit(1, on({0})).ticket;
    const TicketId z1 = f.submit(0, on({0})).ticket;  // its own queue is empty: y1 is still ahead
    const TicketId y2 = f.submit(1, on({0})).ticket;
    REQUIRE(f.controller->waiting() == 3);
    REQUIRE(f.controller->queue_count() == 2);

    std::vector<std::pair<TicketId, Nanos>> order;
    while (f.controller->waiting() > 0) {
        f.advance_to(f.next_wakeup());
        for (const auto& a : f.poll()) {
            REQUIRE(a.outcome == Outcome::admitted);
            order.emplace_back(a.ticket, f.now());
        }
    }
    const std::vector<std::pair<TicketId, Nanos>> expected{{y1, t0 + 1s}, {z1, t0 + 2s}, {y2, t0 + 3s}};
    CHECK(order == expected);
}

TEST_CASE("a newcomer does not take capacity promised to an older request blocked elsewhere", "[queue]") {
    // Limit 0 is tight (1 per 10 s); limit 1 is shared (2 per second). `a`
    // needs both and can go at t0 + 10 s; a newcomer on limit 1 alone may only
    // take what is free again by then (the work-conserving rule).
    Fixture f({sliding(1, 10s), sliding(2, 1s)});
    const Nanos t0 = f.now();
    REQUIRE(f.submit(0, on({0})).outcome == Outcome::admitted);
    f.advance_to(t0 + 9500ms);
    const Admission a = f.submit(1, on({0, 1}), 20s);
    REQUIRE(a.outcome == Outcome::queued);
    // Limit 1 has 2 free units, but one is promised to `a`, and a unit taken
    // now is still in limit 1's window at t0 + 10 s: a cost-2 newcomer cannot go.
    const Admission b = f.submit(2, on({1}, 2), 0s);
    CHECK(b.outcome == Outcome::rejected);
    CHECK(b.reason == Errc::admission_timeout);
    // A cost-1 newcomer fits beside `a`'s unit.
    CHECK(f.submit(3, on({1}, 1)).outcome == Outcome::admitted);
    // Now nothing is left beside it: a newcomer queues behind `a` (which is older) on limit 1.
    CHECK(f.submit(3, on({1}, 1)).outcome == Outcome::queued);
    f.advance_to(t0 + 10s);
    const auto decided = f.poll();
    REQUIRE(decided.size() == 1);
    CHECK(decided[0].ticket == a.ticket);
}

TEST_CASE("a newcomer goes ahead of an older request blocked elsewhere when it cannot delay it",
          "[queue][work-conserving]") {
    // As above, but `a` can go only 10 s later and limit 1's window is 1 s:
    // whatever a newcomer takes from limit 1 now has left it by then.
    Fixture f({sliding(1, 10s), sliding(2, 1s)});
    const Nanos t0 = f.now();
    REQUIRE(f.submit(0, on({0})).outcome == Outcome::admitted);
    const Admission a = f.submit(1, on({0, 1}), 20s);
    REQUIRE(a.outcome == Outcome::queued);
    // The strict rule would keep one of limit 1's units for `a` and refuse this one.
    CHECK(f.submit(2, on({1}, 2), 0s).outcome == Outcome::admitted);
    const Admission c = f.submit(2, on({1}, 1));
    REQUIRE(c.outcome == Outcome::queued);  // limit 1 is full: it waits its own turn
    f.advance_to(f.next_wakeup());
    CHECK(f.now() == t0 + 1s);
    auto decided = f.poll();
    REQUIRE(decided.size() == 1);
    CHECK(decided[0].ticket == c.ticket);
    // `a` is admitted at exactly the moment the strict rule would have admitted it.
    f.advance_to(t0 + 10s);
    decided = f.poll();
    REQUIRE(decided.size() == 1);
    CHECK(decided[0].ticket == a.ticket);
    CHECK(decided[0].outcome == Outcome::admitted);
}

TEST_CASE("concurrency permits are lent only while the older waiter is held back for the lend horizon",
          "[queue][work-conserving]") {
    // `a` needs limit 0 (free at t0 + 10 s) and a permit; 1 permit in all.
    auto make = [] {
        std::vector<std::unique_ptr<sluice::limit::Limiter>> owned;
        owned.push_back(build(sliding(1, 10s)));
        owned.push_back(build(concurrency(1)));
        sluice::queue::AdmissionOptions options;
        options.lend_horizon = 2s;
        return std::make_unique<AdmissionController>(std::move(owned), options);
    };
    auto controller = make();
    FakeClock clock;
    const Nanos t0 = clock.now().mono;
    const auto submit = [&](std::size_t route, std::vector<LimitUse> uses) {
        return controller->submit(AdmissionRequest{route, std::move(uses), 20s, 100}, clock.now());
    };
    REQUIRE(submit(0, on({0})).outcome == Outcome::admitted);
    const Admission a = submit(1, on({0, 1}));
    REQUIRE(a.outcome == Outcome::queued);
    // 10 s before `a` can go: the permit is lent, and returned.
    CHECK(submit(2, on({1})).outcome == Outcome::admitted);
    controller->release(on({1}), clock.now());
    CHECK(controller->poll(clock.now()).empty());
    // 1.5 s before: within the horizon, the permit stays for `a`.
    clock.advance(t0 + 8500ms - clock.now().mono);
    const Admission late = submit(2, on({1}));
    CHECK(late.outcome == Outcome::queued);
    clock.advance(t0 + 10s - clock.now().mono);
    const auto decided = controller->poll(clock.now());
    REQUIRE(decided.size() == 1);
    CHECK(decided[0].ticket == a.ticket);
}

TEST_CASE("no starvation: a request needing two limits is not overtaken forever", "[queue]") {
    // `slow` needs limit 0 (free again at t0 + 10 s) and limit 1; a steady stream
    // on limit 1 alone would use every unit of limit 1 if nothing were promised.
    Fixture f({sliding(1, 10s), sliding(5, 1s)});
    const Nanos t0 = f.now();
    REQUIRE(f.submit(0, on({0})).outcome == Outcome::admitted);
    const Admission slow = f.submit(1, on({0, 1}), 20s);
    REQUIRE(slow.outcome == Outcome::queued);

    Nanos slow_admitted = kNever;
    std::size_t stream_admitted = 0;
    Nanos next_arrival = t0;
    while (f.now() < t0 + 15s) {
        const Nanos t = std::min(next_arrival, f.next_wakeup());
        f.advance_to(t);
        for (const auto& a : f.poll()) {
            REQUIRE(a.outcome == Outcome::admitted);
            if (a.ticket == slow.ticket) slow_admitted = f.now();
            ++stream_admitted;
        }
        if (t == next_arrival) {
            const Admission s = f.submit(2, on({1}), 20s);
            REQUIRE(s.outcome != Outcome::rejected);
            if (s.outcome == Outcome::admitted) ++stream_admitted;
            next_arrival += 100ms;
        }
    }
    CHECK(slow_admitted == t0 + 10s);
    CHECK(stream_admitted > 60);  // the stream still got (almost) all the rest of limit 1
}

TEST_CASE("a full queue refuses at once with the estimated delay", "[queue]") {
    Fixture f({sliding(3, 1s)});
    const Nanos t0 = f.now();
    REQUIRE(f.submit(0, on({0}, 3)).outcome == Outcome::admitted);
    f.advance_to(t0 + 100ms);
    REQUIRE(f.submit(0, on({0}), 10s, 2).outcome == Outcome::queued);
    REQUIRE(f.submit(0, on({0}), 10s, 2).outcome == Outcome::queued);
    const Admission full = f.submit(0, on({0}), 10s, 2);
    CHECK(full.outcome == Outcome::rejected);
    CHECK(full.reason == Errc::queue_full);
    CHECK(full.queue.depth == 2);
    CHECK(full.queue.max_depth == 2);
    CHECK(full.retry_after == 900ms);  // room for the two ahead and this one when t0's 3 units leave
    CHECK(f.controller->waiting() == 2);

    SECTION("max_depth 0 never queues") {
        const Admission none = f.submit(1, on({0}), 10s, 0);
        CHECK(none.outcome == Outcome::rejected);
        CHECK(none.reason == Errc::queue_full);
    }
}

TEST_CASE("a request that cannot be admitted within max_wait is refused at once", "[queue]") {
    Fixture f({sliding(3, 1s)});
    const Nanos t0 = f.now();
    REQUIRE(f.submit(0, on({0}, 3)).outcome == Outcome::admitted);
    f.advance_to(t0 + 200ms);

    const Admission late = f.submit(0, on({0}), 799ms);
    CHECK(late.outcome == Outcome::rejected);
    CHECK(late.reason == Errc::admission_timeout);
    CHECK(late.retry_after == 800ms);
    CHECK(late.limiting_limit == 0u);
    CHECK(late.tightest.remaining == 0);
    CHECK(f.controller->waiting() == 0);

    // Within the scheduling slack (10 ms) of max_wait: refused too, a timer a few ms
    // late would make it miss its deadline.
    const Admission tight = f.submit(0, on({0}), 809ms);
    CHECK(tight.outcome == Outcome::rejected);
    CHECK(tight.reason == Errc::admission_timeout);

    // max_wait less the slack away is in time: queued, and admitted 10 ms before its deadline.
    const Admission just = f.submit(0, on({0}), 810ms);
    REQUIRE(just.outcome == Outcome::queued);
    REQUIRE(f.next_wakeup() == t0 + 1s);
    f.advance_to(t0 + 1s);
    const auto decided = f.poll();
    REQUIRE(decided.size() == 1);
    CHECK(decided[0].outcome == Outcome::admitted);

    SECTION("a cost above the limit is never admissible") {
        const Admission huge = f.submit(1, on({0}, 4), 1000s);
        CHECK(huge.outcome == Outcome::rejected);
        CHECK(huge.reason == Errc::admission_timeout);
    }
}

TEST_CASE("max_wait 0 never queues", "[queue]") {
    Fixture f({sliding(1, 1s), concurrency(1)});
    REQUIRE(f.submit(0, on({0, 1})).outcome == Outcome::admitted);
    const Admission rate = f.submit(0, on({0}), 0s);
    CHECK(rate.outcome == Outcome::rejected);
    CHECK(rate.reason == Errc::admission_timeout);
    CHECK(rate.retry_after == 1s);
    const Admission permits = f.submit(1, on({1}), 0s);  // earliest unknown (kNever)
    CHECK(permits.outcome == Outcome::rejected);
    CHECK(permits.reason == Errc::admission_timeout);
    CHECK(permits.retry_after == 0s);
    CHECK(f.controller->waiting() == 0);
}

TEST_CASE("a queued request whose deadline passes is refused by poll", "[queue]") {
    Fixture f({concurrency(1)});
    const Nanos t0 = f.now();
    REQUIRE(f.submit(0, on({0})).outcome == Outcome::admitted);
    const Admission q = f.submit(0, on({0}), 1s);
    REQUIRE(q.outcome == Outcome::queued);
    REQUIRE(f.next_wakeup() == t0 + 1s);  // no admission time to predict: only the deadline
    f.advance_to(t0 + 1s - 1ns);
    CHECK(f.poll().empty());
    f.advance_to(t0 + 1s);
    const auto decided = f.poll();
    REQUIRE(decided.size() == 1);
    CHECK(decided[0].ticket == q.ticket);
    CHECK(decided[0].outcome == Outcome::rejected);
    CHECK(decided[0].reason == Errc::admission_timeout);
    CHECK(decided[0].limiting_limit == 0u);
    CHECK(f.controller->waiting() == 0);
    CHECK(f.next_wakeup() == kNever);
}

TEST_CASE("requests behind a blocked head are refused at their own deadlines", "[queue]") {
    Fixture f({concurrency(1)});
    const Nanos t0 = f.now();
    REQUIRE(f.submit(0, on({0})).outcome == Outcome::admitted);
    const Admission head = f.submit(0, on({0}), 5s);
    const Admission behind = f.submit(0, on({0}), 1s);  // a client asked for less
    REQUIRE(f.next_wakeup() == t0 + 1s);
    f.advance_to(t0 + 1s);
    auto decided = f.poll();
    REQUIRE(decided.size() == 1);
    CHECK(decided[0].ticket == behind.ticket);
    CHECK(decided[0].reason == Errc::admission_timeout);
    CHECK(f.next_wakeup() == t0 + 5s);
    f.controller->release(on({0}), f.clock.now());
    decided = f.poll();
    REQUIRE(decided.size() == 1);
    CHECK(decided[0].ticket == head.ticket);
    CHECK(decided[0].outcome == Outcome::admitted);
}

TEST_CASE("cancel removes a request from the middle of its queue", "[queue]") {
    Fixture f({sliding(1, 1s)});
    const Nanos t0 = f.now();
    REQUIRE(f.submit(0, on({0})).outcome == Outcome::admitted);
    const TicketId b = f.submit(0, on({0})).ticket;
    const TicketId c = f.submit(0, on({0})).ticket;
    const TicketId d = f.submit(0, on({0})).ticket;
    CHECK(f.controller->cancel(c, f.clock.now()));
    CHECK_FALSE(f.controller->cancel(c, f.clock.now()));
    CHECK_FALSE(f.controller->cancel(12345, f.clock.now()));
    CHECK(f.controller->waiting() == 2);
    // A newcomer on another queue counts only b and d ahead of it.
    const TicketId e = f.submit(1, on({0})).ticket;

    std::vector<std::pair<TicketId, Nanos>> order;
    while (f.controller->waiting() > 0) {
        f.advance_to(f.next_wakeup());
        for (const auto& a : f.poll()) order.emplace_back(a.ticket, f.now());
    }
    const std::vector<std::pair<TicketId, Nanos>> expected{{b, t0 + 1s}, {d, t0 + 2s}, {e, t0 + 3s}};
    CHECK(order == expected);
}

TEST_CASE("cancelling the head lets the next one go when it can", "[queue]") {
    Fixture f({sliding(2, 1s)});
    const Nanos t0 = f.now();
    REQUIRE(f.submit(0, on({0}, 1)).outcome == Outcome::admitted);
    const TicketId big = f.submit(0, on({0}, 2)).ticket;
    const TicketId small = f.submit(0, on({0}, 1)).ticket;
    REQUIRE(f.next_wakeup() == t0 + 1s);
    REQUIRE(f.controller->cancel(big, f.clock.now()));
    CHECK(f.next_wakeup() <= f.now());  // `small` fits now
    const auto decided = f.poll();
    REQUIRE(decided.size() == 1);
    CHECK(decided[0].ticket == small);
}

TEST_CASE("shadow limits are counted but never delay or refuse", "[queue]") {
    Fixture f({sliding(10, 1s), shadow(sliding(1, 1s))});
    for (int i = 0; i < 3; ++i) {
        const Admission a = f.submit(0, on({0, 1}));
        CHECK(a.outcome == Outcome::admitted);
        CHECK(a.limiting_limit == 0u);  // headers describe limits that can refuse
    }
    CHECK(f.submit(1, on({1})).outcome == Outcome::admitted);
    CHECK(f.remaining(0) == 7);
    CHECK(f.remaining(1) == 0);
    CHECK_FALSE(f.limiters[1]->probe(0, 1, 0, f.clock.now()).allowed);
}

TEST_CASE("a concurrency limit queues until a permit is released", "[queue]") {
    Fixture f({concurrency(2)});
    const Nanos t0 = f.now();
    const auto uses = on({0});
    REQUIRE(f.submit(0, uses).outcome == Outcome::admitted);
    REQUIRE(f.submit(0, uses).outcome == Outcome::admitted);
    const Admission c = f.submit(0, uses, 10s);
    REQUIRE(c.outcome == Outcome::queued);
    CHECK(f.next_wakeup() == t0 + 10s);  // only the deadline: a release cannot be predicted
    f.advance_to(t0 + 1s);
    CHECK(f.poll().empty());
    f.controller->release(uses, f.clock.now());
    const auto decided = f.poll();
    REQUIRE(decided.size() == 1);
    CHECK(decided[0].ticket == c.ticket);
    CHECK(decided[0].outcome == Outcome::admitted);
    CHECK(f.next_wakeup() == kNever);
}

TEST_CASE("a keyed limit at max_keys refuses a new key with key_capacity", "[queue]") {
    LimitConfig keyed = sliding(5, 1s);
    keyed.key.push_back({sluice::config::KeySource::Kind::header, "x-api-key"});
    keyed.max_keys = 1;
    Fixture f({sliding(100, 1s), keyed});
    std::vector<LimitUse> first{{0, 0, 1}, {1, 111, 1}};
    std::vector<LimitUse> second{{0, 0, 1}, {1, 222, 1}};
    REQUIRE(f.submit(0, first).outcome == Outcome::admitted);
    const Admission a = f.submit(0, second);
    CHECK(a.outcome == Outcome::rejected);
    CHECK(a.reason == Errc::key_capacity);
    CHECK(a.limiting_limit == 1u);
    CHECK(f.remaining(0) == 99);  // all or nothing
}

TEST_CASE("a vendor pause refuses the heads that can no longer make their deadline", "[queue]") {
    Fixture f({sliding(10, 1s)});
    const Nanos t0 = f.now();
    REQUIRE(f.submit(0, on({0}, 10)).outcome == Outcome::admitted);
    const Admission short_wait = f.submit(0, on({0}), 2s);
    const Admission long_wait = f.submit(0, on({0}), 5s);
    REQUIRE(short_wait.outcome == Outcome::queued);
    REQUIRE(long_wait.outcome == Outcome::queued);
    REQUIRE(f.next_wakeup() == t0 + 1s);

    f.advance_to(t0 + 100ms);
    f.controller->pause_until(0, 0, t0 + 3s, f.clock.now());
    CHECK(f.next_wakeup() <= f.now());  // something to decide now
    auto decided = f.poll();
    REQUIRE(decided.size() == 1);
    CHECK(decided[0].ticket == short_wait.ticket);
    CHECK(decided[0].outcome == Outcome::rejected);
    CHECK(decided[0].reason == Errc::admission_timeout);
    CHECK(decided[0].retry_after == 2900ms);
    REQUIRE(f.next_wakeup() == t0 + 3s);
    f.advance_to(t0 + 3s);
    decided = f.poll();
    REQUIRE(decided.size() == 1);
    CHECK(decided[0].ticket == long_wait.ticket);
    CHECK(decided[0].outcome == Outcome::admitted);
}

TEST_CASE("10,000 waiting requests drain in order, a window's worth per wake-up", "[queue]") {
    Fixture f({sliding(100, 1s)});
    const Nanos t0 = f.now();
    REQUIRE(f.submit(0, on({0}, 100)).outcome == Outcome::admitted);
    std::vector<TicketId> tickets;
    for (int i = 0; i < 10'000; ++i) {
        const Admission a = f.submit(i % 2, on({0}), 1000s, 10'000);
        REQUIRE(a.outcome == Outcome::queued);
        tickets.push_back(a.ticket);
    }
    REQUIRE(f.controller->waiting() == 10'000);
    std::size_t wakeups = 0;
    std::size_t next = 0;
    while (f.controller->waiting() > 0) {
        const Nanos wake = f.next_wakeup();
        REQUIRE(wake == t0 + Nanos{1s} * (wakeups + 1));
        f.advance_to(wake);
        ++wakeups;
        const auto decided = f.poll();
        REQUIRE(decided.size() == 100);
        for (const auto& a : decided) REQUIRE(a.ticket == tickets[next++]);
    }
    CHECK(wakeups == 100);
}

namespace {

// Forwards to a real limiter and counts the probes the controller makes.
class CountingLimiter final : public sluice::limit::Limiter {
public:
    CountingLimiter(std::unique_ptr<sluice::limit::Limiter> inner, std::size_t* probes)
        : Limiter(inner->config()), inner_(std::move(inner)), probes_(probes) {}
    sluice::limit::Decision probe(sluice::limit::KeyHash key, std::int64_t cost, std::int64_t ahead,
                                  const Instant& now) override {
        ++*probes_;
        return inner_->probe(key, cost, ahead, now);
    }
    void consume(sluice::limit::KeyHash key, std::int64_t cost, const Instant& now) override {
        inner_->consume(key, cost, now);
    }
    void release(sluice::limit::KeyHash key, std::int64_t cost, const Instant& now) override {
        inner_->release(key, cost, now);
    }
    using Limiter::pause_until;
    void pause_until(sluice::limit::KeyHash key, Nanos until, const Instant& now,
                     sluice::limit::PauseReason reason) override {
        inner_->pause_until(key, until, now, reason);
    }
    void cap_remaining(sluice::limit::KeyHash key, std::int64_t remaining, Nanos reset_at,
                       const Instant& now) override {
        inner_->cap_remaining(key, remaining, reset_at, now);
    }
    std::size_t key_count() const override { return inner_->key_count(); }
    void evict_idle(const Instant& now) override { inner_->evict_idle(now); }
    std::vector<sluice::limit::KeyStatus> status(const Instant& now, std::size_t max_keys) const override {
        return inner_->status(now, max_keys);
    }
    std::size_t bytes_per_key() const override { return inner_->bytes_per_key(); }

private:
    std::unique_ptr<sluice::limit::Limiter> inner_;
    std::size_t* probes_;
};

}  // namespace

TEST_CASE("an admission probes only the heads that are due, however many queues wait", "[queue]") {
    // 2,000 queues (one per route) share one token bucket of one token per ms.
    LimitConfig c;
    c.name = "one-per-ms";
    c.algorithm = Algorithm::token_bucket;
    c.limit = 1000;
    c.window = 1s;
    c.burst = 1;
    std::size_t probes = 0;
    std::vector<std::unique_ptr<sluice::limit::Limiter>> limiters;
    limiters.push_back(std::make_unique<CountingLimiter>(build(c), &probes));
    AdmissionController controller(std::move(limiters));
    FakeClock clock;
    constexpr std::size_t kQueues = 2'000;
    std::vector<TicketId> tickets;
    for (std::size_t route = 0; route <= kQueues; ++route) {
        const Admission a = controller.submit(AdmissionRequest{route, on({0}), 3600s, 10}, clock.now());
        REQUIRE(a.outcome == (route == 0 ? Outcome::admitted : Outcome::queued));
        if (route > 0) tickets.push_back(a.ticket);
    }
    REQUIRE(controller.queue_count() == kQueues);
    for (std::size_t i = 0; i < 100; ++i) {
        const Nanos wake = controller.next_wakeup(clock.now());
        REQUIRE(wake == clock.now().mono + 1ms);
        clock.advance(wake - clock.now().mono);
        probes = 0;
        const auto decided = controller.poll(clock.now());
        REQUIRE(decided.size() == 1);
        REQUIRE(decided[0].outcome == Outcome::admitted);
        REQUIRE(decided[0].ticket == tickets[i]);  // oldest first
        // The due head (a probe, and one more for the headers), and the next
        // one, due at the same time: not one probe per waiting queue.
        CHECK(probes <= 8);
    }
    // A cancel may bring any head forward: the next wake-up re-probes them all, once.
    REQUIRE(controller.cancel(tickets[100], clock.now()));
    probes = 0;
    REQUIRE(controller.next_wakeup(clock.now()) == clock.now().mono + 1ms);
    CHECK(probes >= kQueues - 101);
    probes = 0;
    REQUIRE(controller.next_wakeup(clock.now()) == clock.now().mono + 1ms);
    CHECK(probes == 0);
}

// Issue 10: 500 clients against 20 per second, a queue of 100, max_wait 2 s.
// Behind 20 waiters a request would go in the second window from now, at its
// deadline (behind 40, in the third, after it): it must get its 429 at
// arrival, not after waiting 2 s in vain. (The estimate used to be "now + one
// window" for any number of units ahead beyond the limit, so all 100 were
// queued and 60 refused at their deadlines.)
TEST_CASE("behind a queue of several windows, a request that cannot make max_wait is refused at arrival",
          "[queue][overload]") {
    // max_wait 2 s: the second wave (t0 + 2 s) falls within the scheduling slack of the
    // deadline; with 10 ms more it is in time. Either way nobody waits in vain.
    const Nanos max_wait = GENERATE(Nanos{2s}, Nanos{2010ms});
    const int in_time = max_wait == 2s ? 20 : 40;
    INFO("max_wait " << max_wait.count() << " ns");
    Fixture f({sliding(20, 1s)});
    const Nanos t0 = f.now();
    REQUIRE(f.submit(0, on({0}, 20)).outcome == Outcome::admitted);
    std::vector<TicketId> queued;
    for (int i = 0; i < 100; ++i) {
        const Admission a = f.submit(0, on({0}), max_wait, 100);
        if (i < in_time) {
            REQUIRE(a.outcome == Outcome::queued);
            queued.push_back(a.ticket);
        } else {
            INFO("request " << i << " behind " << in_time << " waiters");
            REQUIRE(a.outcome == Outcome::rejected);
            CHECK(a.reason == Errc::admission_timeout);
            CHECK(a.queue.depth == static_cast<std::size_t>(in_time));
            // It could go in the wave after those ahead (refused requests hold nothing).
            CHECK(a.retry_after == Nanos{1s} * (in_time / 20 + 1));
        }
    }
    CHECK(f.controller->waiting() == static_cast<std::size_t>(in_time));
    // The queued go in waves of 20, none refused.
    std::size_t next = 0;
    for (int wave = 1; wave <= in_time / 20; ++wave) {
        REQUIRE(f.next_wakeup() == t0 + Nanos{1s} * wave);
        f.advance_to(t0 + Nanos{1s} * wave);
        const auto decided = f.poll();
        REQUIRE(decided.size() == 20);
        for (const Admission& a : decided) {
            CHECK(a.outcome == Outcome::admitted);
            CHECK(a.ticket == queued[next++]);
        }
    }
    CHECK(f.controller->waiting() == 0);
}

// The same load as a steady stream on the fake clock: 100 arrivals a second
// for 20 s, the timer firing exactly at next_wakeup(). Every refusal is given
// at arrival; every queued request is admitted, by its deadline; the limit
// holds in every window and is used in full.
TEST_CASE("under a steady overload, every refusal is at arrival and every waiter is admitted in time",
          "[queue][overload]") {
    for (const bool ring : {false, true}) {
        // 20 per second as an exact log, or 300 per 15 s (the bucket ring), both 5 windows of queue.
        const std::int64_t limit = ring ? 300 : 20;
        const Nanos window = ring ? Nanos{15s} : Nanos{1s};
        const Nanos gap = window / (limit * 5);  // 5 times the limit arrives
        const Nanos max_wait = 2 * window;
        const std::size_t max_depth = static_cast<std::size_t>(5 * limit);
        Fixture f({sliding(limit, window)});
        const Nanos t0 = f.now();
        std::map<TicketId, Nanos> deadlines;
        std::vector<Nanos> admitted;
        std::size_t refused_at_arrival = 0;
        const auto take = [&](const std::vector<Admission>& decided) {
            for (const Admission& a : decided) {
                INFO("ticket " << a.ticket << " at " << (f.now() - t0).count() << " ns");
                REQUIRE(a.outcome == Outcome::admitted);
                REQUIRE(f.now() <= deadlines.at(a.ticket));
                deadlines.erase(a.ticket);
                admitted.push_back(f.now());
            }
        };
        for (Nanos arrival = t0; arrival < t0 + 20 * window; arrival += gap) {
            while (f.next_wakeup() <= arrival) {
                f.advance_to(f.next_wakeup());
                take(f.poll());
            }
            f.advance_to(arrival);
            const Admission a = f.submit(0, on({0}), max_wait, max_depth);
            if (a.outcome == Outcome::admitted) admitted.push_back(f.now());
            if (a.outcome == Outcome::queued) deadlines.emplace(a.ticket, f.now() + max_wait);
            if (a.outcome == Outcome::rejected) {
                CHECK(a.reason == Errc::admission_timeout);  // the queue never fills: it is refused first
                ++refused_at_arrival;
            }
        }
        while (f.next_wakeup() != kNever) {
            f.advance_to(f.next_wakeup());
            take(f.poll());
        }
        CHECK(deadlines.empty());
        CHECK(refused_at_arrival > 0);
        // Never more than `limit` in any window, and the limit used in full (one window lost
        // to the ring's granules at most).
        std::sort(admitted.begin(), admitted.end());
        for (std::size_t i = static_cast<std::size_t>(limit); i < admitted.size(); ++i)
            REQUIRE(admitted[i] - admitted[i - static_cast<std::size_t>(limit)] >= window);
        CHECK(static_cast<std::int64_t>(admitted.size()) >= 21 * limit - limit);
    }
}

// A busy io thread polls late: a waiter whose deadline has passed is refused,
// never forwarded after the max_wait its client was promised.
TEST_CASE("a late poll never admits a waiter after its deadline", "[queue][overload]") {
    Fixture f({sliding(1, 1s)});
    const Nanos t0 = f.now();
    REQUIRE(f.submit(0, on({0})).outcome == Outcome::admitted);
    f.advance_to(t0 + 100ms);
    const Admission q = f.submit(0, on({0}), 910ms);  // admissible at t0 + 1 s, deadline t0 + 1.01 s
    REQUIRE(q.outcome == Outcome::queued);
    REQUIRE(f.next_wakeup() == t0 + 1s);
    SECTION("polled up to its deadline: admitted") {
        f.advance_to(t0 + 1010ms);
        const auto decided = f.poll();
        REQUIRE(decided.size() == 1);
        CHECK(decided[0].outcome == Outcome::admitted);
    }
    SECTION("polled 1 ns after its deadline: refused, although the window has room") {
        f.advance_to(t0 + 1010ms + 1ns);
        const auto decided = f.poll();
        REQUIRE(decided.size() == 1);
        CHECK(decided[0].outcome == Outcome::rejected);
        CHECK(decided[0].reason == Errc::admission_timeout);
        CHECK(f.remaining(0) == 1);  // nothing consumed
    }
}

TEST_CASE("a lent permit held past the horizon delays the older waiter by at most its excess",
          "[queue][work-conserving]") {
    std::vector<std::unique_ptr<sluice::limit::Limiter>> owned;
    owned.push_back(build(sliding(1, 10s)));
    owned.push_back(build(concurrency(1)));
    sluice::queue::AdmissionOptions options;
    options.lend_horizon = 2s;
    AdmissionController controller(std::move(owned), options);
    FakeClock clock;
    const Nanos t0 = clock.now().mono;
    const auto submit = [&](std::size_t route, std::vector<LimitUse> uses) {
        return controller.submit(AdmissionRequest{route, std::move(uses), 20s, 100}, clock.now());
    };
    REQUIRE(submit(0, on({0})).outcome == Outcome::admitted);
    const Admission a = submit(1, on({0, 1}));  // the strict rule would admit it at t0 + 10 s
    REQUIRE(a.outcome == Outcome::queued);
    // 2.1 s before `a` can go: the permit is lent, to an exchange that lasts 3 s.
    clock.advance(7900ms);
    REQUIRE(submit(2, on({1})).outcome == Outcome::admitted);
    clock.advance(t0 + 10s - clock.now().mono);
    CHECK(controller.poll(clock.now()).empty());             // `a` may go by time, but the permit is out
    CHECK(controller.next_wakeup(clock.now()) == t0 + 20s);  // its deadline: only the release can help
    clock.advance(t0 + 10900ms - clock.now().mono);
    controller.release(on({1}), clock.now());
    const auto decided = controller.poll(clock.now());
    REQUIRE(decided.size() == 1);
    CHECK(decided[0].ticket == a.ticket);
    CHECK(decided[0].outcome == Outcome::admitted);
    // Delayed by 0.9 s: the exchange's 3 s less the 2 s horizon, at most.
    CHECK(clock.now().mono - (t0 + 10s) <= 3s - options.lend_horizon);
}

TEST_CASE("each limit counts what it admitted, made wait and refused; waiting ends with every decision",
          "[queue][activity]") {
    Fixture f({sliding(2, 1s), sliding(100, 1s)});
    const auto& tight = f.controller->activity(0);
    const auto& wide = f.controller->activity(1);
    REQUIRE(f.submit(0, on({0, 1})).outcome == Outcome::admitted);
    REQUIRE(f.submit(0, on({0, 1})).outcome == Outcome::admitted);
    const Admission queued = f.submit(0, on({0, 1}));  // waits for the window to slide
    REQUIRE(queued.outcome == Outcome::queued);
    const Admission cancelled = f.submit(0, on({0, 1}));
    REQUIRE(cancelled.outcome == Outcome::queued);
    CHECK(tight.waiting == 2);
    CHECK(wide.waiting == 2);
    // Refused at once: it cannot be admitted within its max_wait; the refusal is the tight limit's.
    REQUIRE(f.submit(1, on({0, 1}), 0s).outcome == Outcome::rejected);
    CHECK(tight.refused == 1);
    CHECK(wide.refused == 0);
    REQUIRE(f.controller->cancel(cancelled.ticket, f.clock.now()));
    CHECK(tight.waiting == 1);
    f.advance_to(f.next_wakeup());
    const auto decided = f.poll();
    REQUIRE(decided.size() == 1);
    CHECK(decided[0].outcome == Outcome::admitted);
    CHECK(tight.admitted == 3);
    CHECK(wide.admitted == 3);
    CHECK(tight.queued == 2);
    CHECK(wide.queued == 2);
    CHECK(tight.waiting == 0);
    CHECK(wide.waiting == 0);
    CHECK(tight.refused == 1);  // a cancel is the client's doing, not the limit's
    // The window is full again (one admitted at its slide, one more fits): the next request,
    // with 50 ms to wait where 1 s would be needed, is refused at once.
    REQUIRE(f.submit(0, on({0}), 50ms).outcome == Outcome::admitted);
    CHECK(f.submit(0, on({0}), 50ms).outcome == Outcome::rejected);
    CHECK(tight.refused == 2);
    CHECK(tight.admitted == 4);
    CHECK(tight.waiting == 0);
}

TEST_CASE("a refusal after waiting counts on the limit that refused it", "[queue][activity]") {
    Fixture f({sliding(1, 1s)});
    const auto& activity = f.controller->activity(0);
    REQUIRE(f.submit(0, on({0})).outcome == Outcome::admitted);
    REQUIRE(f.submit(0, on({0}), 2s).outcome == Outcome::queued);
    // A vendor pause moves its earliest admission past its deadline: refused now, not at 2 s.
    f.controller->pause_until(0, 0, f.now() + 10s, f.clock.now());
    const auto decided = f.poll();
    REQUIRE(decided.size() == 1);
    CHECK(decided[0].outcome == Outcome::rejected);
    CHECK(activity.queued == 1);
    CHECK(activity.refused == 1);
    CHECK(activity.waiting == 0);
    CHECK(activity.admitted == 1);
    // The same over the last minute (the status page's), until that minute has passed.
    CHECK(activity.queued_last_minute.total(f.now()) == 1);
    CHECK(activity.refused_last_minute.total(f.now()) == 1);
    CHECK(activity.refused_last_minute.total(f.now() + 61s) == 0);
    CHECK(activity.queued_last_minute.total(f.now() + 61s) == 0);
}

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
