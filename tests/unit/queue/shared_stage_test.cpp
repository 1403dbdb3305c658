// The shared stage (queue/shared_stage.hpp) against a scripted store: who asks
// when, what an answer does, deadlines, and the failure policies.

#include "sluice/queue/shared_stage.hpp"

#include <catch2/catch.hpp>

namespace sluice::queue {
namespace {

using namespace std::chrono_literals;

config::LimitConfig sliding(std::string name, std::int64_t limit, config::Duration window,
                            config::RedisFailurePolicy policy = config::RedisFailurePolicy::local) {
    config::LimitConfig c;
    c.name = std::move(name);
    c.algorithm = config::Algorithm::sliding_window;
    c.limit = limit;
    c.window = window;
    c.on_redis_failure = policy;
    return c;
}

config::LimitConfig concurrency(std::string name, std::int64_t limit) {
    config::LimitConfig c;
    c.name = std::move(name);
    c.algorithm = config::Algorithm::concurrency;
    c.limit = limit;
    return c;
}

Instant at(Nanos mono) {
    return Instant{mono, mono};
}

struct Fixture {
    explicit Fixture(SharedStageOptions options = {}) : stage(options, at(Nanos{0})) {}

    void add(std::size_t slot, const config::LimitConfig& config) {
        configs.push_back(std::make_unique<config::LimitConfig>(config));
        stage.add_limit(slot, *configs.back());
    }
    void enter(TicketId ticket, std::vector<limit::LimitUse> uses, Nanos now, Nanos max_wait = 10s) {
        Admission local;
        local.outcome = Outcome::admitted;
        local.at = now;
        stage.enter(ticket, std::move(uses), local, now + max_wait, at(now));
    }
    SharedStage::Step poll(Nanos now) {
        SharedStage::Step step;
        stage.poll(at(now), step);
        return step;
    }
    void answer(TicketId ticket, bool allowed, Nanos earliest, Nanos now) {
        StoreAnswer a;
        a.allowed = allowed;
        a.earliest = earliest;
        a.limiting = 0;
        stage.answered(ticket, a, at(now));
    }
    void unavailable(TicketId ticket, Nanos now) {
        StoreAnswer a;
        a.kind = StoreAnswer::Kind::unavailable;
        stage.answered(ticket, a, at(now));
    }

    std::vector<std::unique_ptr<config::LimitConfig>> configs;
    SharedStage stage;
};

const limit::LimitUse kUse{0, 7, 1};

}  // namespace

TEST_CASE("shared stage: an open line asks for every request at once; after a refusal only its head asks") {
    Fixture f;
    f.add(0, sliding("vendor", 10, 1s));
    f.stage.set_available(true, at(Nanos{0}));
    f.enter(1, {kUse}, Nanos{0});
    f.enter(2, {kUse}, Nanos{0});
    auto step = f.poll(Nanos{0});
    REQUIRE(step.asks.size() == 2);  // pipelined: Redis runs them in order
    CHECK(step.asks[0].ticket == 1);
    CHECK(step.asks[1].ticket == 2);
    CHECK(f.poll(Nanos{1}).asks.empty());  // nothing asked twice

    f.answer(1, true, kNever, 1ms);
    step = f.poll(1ms);
    REQUIRE(step.decided.size() == 1);
    CHECK(step.decided[0].ticket == 1);
    CHECK(step.decided[0].outcome == Outcome::admitted);
    CHECK(step.decided[0].lease == 1);
    CHECK(step.decided[0].at == Nanos{0});  // when the local stage consumed its units
    REQUIRE(step.admitted_leases.size() == 1);

    // A refusal blocks the line: newcomers wait, and only the head asks again, at the earliest time.
    f.answer(2, false, 500ms, 1ms);
    f.enter(3, {kUse}, 2ms);
    step = f.poll(2ms);
    CHECK(step.asks.empty());
    const auto wake = f.stage.next_wakeup();
    CHECK(wake >= 500ms);
    step = f.poll(wake);
    REQUIRE(step.asks.size() == 1);
    CHECK(step.asks[0].ticket == 2);
    // Allowed again: the line opens, and the others ask at once.
    f.answer(2, true, kNever, wake);
    step = f.poll(wake);
    REQUIRE(step.decided.size() == 1);
    REQUIRE(step.asks.size() == 1);
    CHECK(step.asks[0].ticket == 3);
}

TEST_CASE("shared stage: at most kMaxAsking asks are out per line") {
    Fixture f;
    f.add(0, sliding("vendor", 1000, 1s));
    f.stage.set_available(true, at(Nanos{0}));
    for (TicketId t = 1; t <= 40; ++t) f.enter(t, {kUse}, Nanos{0});
    auto step = f.poll(Nanos{0});
    CHECK(step.asks.size() == 32);
    f.answer(1, true, kNever, 1ms);
    step = f.poll(1ms);
    CHECK(step.asks.size() == 1);
    CHECK(step.asks[0].ticket == 33);
}

TEST_CASE("shared stage: a refused head sleeps until the store's earliest time, then asks again") {
    Fixture f;
    f.add(0, sliding("vendor", 10, 1s));
    f.stage.set_available(true, at(Nanos{0}));
    f.enter(1, {kUse}, Nanos{0});
    REQUIRE(f.poll(Nanos{0}).asks.size() == 1);
    f.answer(1, false, 500ms, 1ms);
    auto step = f.poll(1ms);
    CHECK(step.asks.empty());
    CHECK(step.decided.empty());
    const auto wake = f.stage.next_wakeup();
    // Never before the earliest time; jitter at most 2 ms.
    CHECK(wake >= 500ms);
    CHECK(wake <= 500ms + 2ms);
    CHECK(f.poll(wake - Nanos{1}).asks.empty());
    step = f.poll(wake);
    REQUIRE(step.asks.size() == 1);
    CHECK(step.asks[0].ticket == 1);
}

TEST_CASE("shared stage: a refusal that cannot end before the deadline is answered at once") {
    Fixture f;
    f.add(0, sliding("vendor", 10, 1s));
    f.stage.set_available(true, at(Nanos{0}));
    f.enter(1, {kUse}, Nanos{0}, 100ms);
    REQUIRE(f.poll(Nanos{0}).asks.size() == 1);
    f.answer(1, false, 800ms, 1ms);
    auto step = f.poll(1ms);
    REQUIRE(step.decided.size() == 1);
    CHECK(step.decided[0].outcome == Outcome::rejected);
    CHECK(step.decided[0].reason == Errc::admission_timeout);
    CHECK(step.decided[0].retry_after == 799ms);
    REQUIRE(step.refused_uses.size() == 1);  // its local units go back
    CHECK(f.stage.waiting() == 0);
}

TEST_CASE(
    "shared stage: a deadline passing while the ask is out refuses at once; a late grant is given back") {
    Fixture f;
    f.add(0, concurrency("permits", 2));
    f.stage.set_available(true, at(Nanos{0}));
    f.enter(1, {kUse}, Nanos{0}, 50ms);
    REQUIRE(f.poll(Nanos{0}).asks.size() == 1);
    auto step = f.poll(50ms);
    REQUIRE(step.decided.size() == 1);
    CHECK(step.decided[0].reason == Errc::admission_timeout);
    f.answer(1, true, kNever, 60ms);
    step = f.poll(60ms);
    CHECK(step.decided.empty());
    REQUIRE(step.orphan_leases.size() == 1);
    CHECK(step.orphan_leases[0].first == 1);
}

TEST_CASE("shared stage: a cancel while asking gives the lease back when the grant arrives") {
    Fixture f;
    f.add(0, concurrency("permits", 2));
    f.stage.set_available(true, at(Nanos{0}));
    f.enter(1, {kUse}, Nanos{0});
    REQUIRE(f.poll(Nanos{0}).asks.size() == 1);
    const auto units = f.stage.cancel(1);
    REQUIRE(units);
    CHECK(units->uses.size() == 1);
    f.answer(1, true, kNever, 1ms);
    auto step = f.poll(1ms);
    CHECK(step.decided.empty());
    CHECK(step.orphan_leases.size() == 1);
    CHECK_FALSE(f.stage.cancel(1));
}

TEST_CASE(
    "shared stage: a concurrency refusal asks again after permit_retry, or at once on a local release") {
    Fixture f;
    f.add(0, concurrency("permits", 2));
    f.stage.set_available(true, at(Nanos{0}));
    f.enter(1, {kUse}, Nanos{0});
    REQUIRE(f.poll(Nanos{0}).asks.size() == 1);
    f.answer(1, false, kNever, 1ms);
    CHECK(f.poll(1ms).asks.empty());
    CHECK(f.stage.next_wakeup() == 1ms + 20ms);
    f.stage.released({kUse}, at(5ms));
    CHECK(f.poll(5ms).asks.size() == 1);
}

TEST_CASE("shared stage: without the store, `local` admits limit / replicas per window and records them") {
    SharedStageOptions options;
    options.replicas = 4;
    Fixture f(options);
    f.add(0, sliding("vendor", 10, 1s));  // 10 / 4 = 2 per second for this replica
    f.stage.set_available(true, at(Nanos{0}));
    f.enter(1, {kUse}, Nanos{0});
    REQUIRE(f.poll(Nanos{0}).asks.size() == 1);
    f.unavailable(1, 1ms);
    for (TicketId t = 2; t <= 4; ++t) f.enter(t, {kUse}, 1ms);
    auto step = f.poll(1ms);
    CHECK(f.stage.in_fallback());
    CHECK(step.asks.empty());
    REQUIRE(step.decided.size() == 2);
    CHECK(step.decided[0].ticket == 1);
    CHECK(step.decided[0].lease == 0);  // no lease: the store never saw it
    CHECK(step.decided[1].ticket == 2);
    CHECK(f.stage.waiting() == 2);
    // The third waits for the fallback window to move (sliding: 1 s after the first admission).
    CHECK(f.stage.next_wakeup() == 1ms + 1s);
    step = f.poll(1ms + 1s);
    REQUIRE(step.decided.size() == 2);
    CHECK(f.stage.fallback_admissions() == 4);
    const auto lots = f.stage.take_fallback_lots();
    REQUIRE(lots.size() == 4);
    CHECK(lots[0].at == 1ms);
    CHECK(lots[3].at == 1ms + 1s);
    CHECK(f.stage.take_fallback_lots().empty());
}

TEST_CASE("shared stage: the fallback counts what the store admitted, so its share is never granted twice") {
    SharedStageOptions options;
    options.replicas = 2;
    Fixture f(options);
    f.add(0, sliding("vendor", 4, 1s));  // a share of 2
    f.stage.set_available(true, at(Nanos{0}));
    for (TicketId t = 1; t <= 2; ++t) {
        f.enter(t, {kUse}, Nanos{0});
        REQUIRE(f.poll(Nanos{0}).asks.size() == 1);
        f.answer(t, true, kNever, Nanos{0});
        REQUIRE(f.poll(Nanos{0}).decided.size() == 1);
    }
    f.stage.set_available(false, at(1ms));
    f.enter(3, {kUse}, 1ms);
    auto step = f.poll(1ms);
    CHECK(step.decided.empty());  // the share is spent by the store's admissions
    // After the store lost its data, the replica's own admissions still counted are recorded.
    CHECK(f.stage.recent_lots(at(1ms)).size() >= 1);
}

TEST_CASE("shared stage: deny refuses at once with shared_state_unavailable; allow admits") {
    Fixture f;
    f.add(0, sliding("strict", 10, 1s, config::RedisFailurePolicy::deny));
    f.add(1, sliding("open", 10, 1s, config::RedisFailurePolicy::allow));
    f.stage.set_available(false, at(Nanos{0}));
    f.enter(1, {limit::LimitUse{0, 1, 1}}, Nanos{0});
    f.enter(2, {limit::LimitUse{1, 1, 1}}, Nanos{0});
    auto step = f.poll(Nanos{0});
    REQUIRE(step.decided.size() == 2);
    for (const auto& d : step.decided) {
        if (d.ticket == 1) {
            CHECK(d.outcome == Outcome::rejected);
            CHECK(d.reason == Errc::shared_state_unavailable);
            CHECK(d.limiting_limit == std::optional<std::size_t>{0});
        } else {
            CHECK(d.outcome == Outcome::admitted);
        }
    }
    CHECK(f.stage.denied() == 1);
    CHECK(f.stage.fallback_admissions() == 1);
    CHECK(f.stage.fallback_allowed_open() == 1);
}

TEST_CASE(
    "shared stage: before the store first answers, requests wait connect_grace, then the fallback applies") {
    SharedStageOptions options;
    options.connect_grace = 200ms;
    Fixture f(options);
    f.add(0, sliding("vendor", 10, 1s));
    f.enter(1, {kUse}, Nanos{0});
    auto step = f.poll(Nanos{0});
    CHECK(step.empty());
    CHECK(f.stage.next_wakeup() == 200ms);
    step = f.poll(200ms);
    REQUIRE(step.decided.size() == 1);
    CHECK(step.decided[0].outcome == Outcome::admitted);
    CHECK(f.stage.in_fallback());
}

TEST_CASE("shared stage: the store coming up while requests wait in the grace makes them ask") {
    Fixture f;
    f.add(0, sliding("vendor", 10, 1s));
    f.enter(1, {kUse}, Nanos{0});
    CHECK(f.poll(Nanos{0}).empty());
    f.stage.set_available(true, at(5ms));
    auto step = f.poll(5ms);
    REQUIRE(step.asks.size() == 1);
}

}  // namespace sluice::queue

namespace sluice::queue {

TEST_CASE(
    "shared stage: with no time to wait (max_wait 0) a head asks once: admitted if allowed, else refused") {
    Fixture f;
    f.add(0, sliding("vendor", 10, 1s));
    f.stage.set_available(true, at(Nanos{0}));
    f.enter(1, {kUse}, Nanos{0}, Nanos{0});
    auto step = f.poll(Nanos{0});
    REQUIRE(step.asks.size() == 1);
    CHECK(step.decided.empty());
    f.answer(1, true, kNever, 1ms);
    step = f.poll(1ms);
    REQUIRE(step.decided.size() == 1);
    CHECK(step.decided[0].outcome == Outcome::admitted);

    f.enter(2, {kUse}, 2ms, Nanos{0});
    REQUIRE(f.poll(2ms).asks.size() == 1);
    f.answer(2, false, 300ms, 3ms);
    step = f.poll(3ms);
    REQUIRE(step.decided.size() == 1);
    CHECK(step.decided[0].ticket == 2);
    CHECK(step.decided[0].reason == Errc::admission_timeout);
    CHECK(step.decided[0].retry_after == 297ms);

    // Behind a refused head (a blocked line): nothing to wait for, refused at once.
    f.enter(4, {kUse}, 4ms);
    REQUIRE(f.poll(4ms).asks.size() == 1);
    f.answer(4, false, 300ms, 4ms);
    CHECK(f.poll(4ms).asks.empty());
    f.enter(5, {kUse}, 5ms, Nanos{0});
    step = f.poll(5ms);
    REQUIRE(step.decided.size() == 1);
    CHECK(step.decided[0].ticket == 5);
    CHECK(step.decided[0].reason == Errc::admission_timeout);
    CHECK(f.stage.cancel(4));
    CHECK(f.stage.waiting() == 0);
    CHECK(f.stage.next_wakeup() == kNever);
}

}  // namespace sluice::queue

namespace sluice::queue {

TEST_CASE("shared stage: back from the fallback, a head asks only within its share for one window") {
    SharedStageOptions options;
    options.replicas = 2;
    Fixture f(options);
    f.add(0, sliding("vendor", 4, 1s));  // a share of 2
    f.stage.set_available(false, at(Nanos{0}));
    for (TicketId t = 1; t <= 2; ++t) f.enter(t, {kUse}, Nanos{0});
    REQUIRE(f.poll(Nanos{0}).decided.size() == 2);  // the share, on the fallback
    f.stage.set_available(true, at(100ms));
    f.enter(3, {kUse}, 100ms);
    auto step = f.poll(100ms);
    CHECK(step.asks.empty());            // the share is spent: the store is not even asked
    CHECK(f.stage.next_wakeup() == 1s);  // when the fallback's window frees a unit
    step = f.poll(1s);
    REQUIRE(step.asks.size() == 1);
    f.answer(3, true, kNever, 1s);
    REQUIRE(f.poll(1s).decided.size() == 1);
    // One window after the return the share no longer applies: the store alone decides.
    for (TicketId t = 4; t <= 6; ++t) {
        f.enter(t, {kUse}, 1100ms + 1ms);
        step = f.poll(1100ms + 1ms);
        REQUIRE(step.asks.size() == 1);
        f.answer(t, true, kNever, 1100ms + 1ms);
        REQUIRE(f.poll(1100ms + 1ms).decided.size() == 1);
    }
}

}  // namespace sluice::queue
