// Priority classes and fair shares at controller level (issue 15,
// docs/priorities.md), driven like the limit service drives the controller (a
// timer at next_wakeup, then poll), on a fake clock: each test measures exactly.
//
// The limit is a token bucket of 10 per second with a burst of 1: one admission
// every 100 ms, the admission interval the bounds below are stated in.

#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <vector>

#include <catch2/catch.hpp>

#include "sluice/common/clock.hpp"
#include "sluice/config/loader.hpp"
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
using sluice::queue::TicketId;

constexpr Nanos kInterval = 100ms;
constexpr Nanos kAging = 2s;  // classes [interactive, default, batch]: batch's handicap is 2 steps

std::vector<std::unique_ptr<sluice::limit::Limiter>> one_bucket() {
    LimitConfig c;
    c.name = "intercom";
    c.algorithm = Algorithm::token_bucket;
    c.limit = 10;
    c.window = 1s;
    c.burst = 1;
    std::vector<std::unique_ptr<sluice::limit::Limiter>> limiters;
    limiters.push_back(sluice::limit::make_limiter(c));
    return limiters;
}

AdmissionRequest request(Nanos handicap, Nanos max_wait = 600s) {
    AdmissionRequest r{0, {LimitUse{0, 0, 1}}, max_wait, 100'000};
    r.handicap = handicap;
    return r;
}

// The controller, its clock and what became of each ticket.
struct Drive {
    AdmissionController controller{one_bucket()};
    Drive() = default;
    explicit Drive(std::vector<std::unique_ptr<sluice::limit::Limiter>> limiters)
        : controller(std::move(limiters)) {}
    FakeClock clock;
    std::map<TicketId, Nanos> admitted_at;  // queued tickets, once admitted
    std::size_t refused = 0;
    std::function<void(TicketId, Nanos)> on_admitted = [](TicketId, Nanos) {};

    // Submits; returns the ticket (0: admitted at once, recorded under `at_once`).
    TicketId submit(AdmissionRequest r, std::size_t* at_once = nullptr) {
        const Admission a = controller.submit(std::move(r), clock.now());
        if (a.outcome == Outcome::admitted && at_once) ++*at_once;
        if (a.outcome == Outcome::rejected) ++refused;
        return a.outcome == Outcome::queued ? a.ticket : 0;
    }

    // Runs the timer until `until` (mono), polling at every wake-up.
    void run_until(Nanos until) {
        while (true) {
            const Nanos t = controller.next_wakeup(clock.now());
            if (t == kNever || t > until) break;
            if (t > clock.now().mono) clock.advance(t - clock.now().mono);
            for (const Admission& a : controller.poll(clock.now())) {
                if (a.outcome == Outcome::admitted) {
                    admitted_at[a.ticket] = a.at;
                    on_admitted(a.ticket, a.at);
                } else {
                    ++refused;
                }
            }
        }
        if (until > clock.now().mono) clock.advance(until - clock.now().mono);
    }
};

}  // namespace

TEST_CASE("priority: an interactive request overtakes a full batch backlog within one admission interval",
          "[queue][priority]") {
    for (const Nanos offset : {0ms, 1ms, 37ms, 99ms}) {
        Drive d;
        const Nanos t0 = d.clock.now().mono;
        for (int i = 0; i < 200; ++i) d.submit(request(2 * kAging));  // 20 s of batch work
        d.run_until(t0 + 3s + offset);
        const Nanos arrived = d.clock.now().mono;
        const TicketId interactive = d.submit(request(Nanos{0}));
        REQUIRE(interactive != 0);  // the bucket is empty: it waits, but for the bucket only
        d.run_until(arrived + 1s);
        REQUIRE(d.admitted_at.count(interactive) == 1);
        const Nanos waited = d.admitted_at.at(interactive) - arrived;
        INFO("waited " << waited.count() << " ns");
        CHECK(waited <= kInterval);
        CHECK(d.refused == 0);
    }
}

TEST_CASE("priority: without a handicap the same request waits behind the backlog (the test above measures)",
          "[queue][priority]") {
    Drive d;
    const Nanos t0 = d.clock.now().mono;
    for (int i = 0; i < 200; ++i) d.submit(request(Nanos{0}));
    d.run_until(t0 + 3s);
    const Nanos arrived = d.clock.now().mono;
    const TicketId same_class = d.submit(request(Nanos{0}));
    d.run_until(arrived + 5s);
    CHECK(d.admitted_at.count(same_class) == 0);
}

TEST_CASE("priority: aging, a batch request is overtaken only by requests that arrive within its handicap",
          "[queue][priority]") {
    Drive d;
    const Nanos t0 = d.clock.now().mono;
    std::map<TicketId, Nanos> arrived;
    TicketId batch = 0;
    Nanos batch_admitted = kNever;
    std::vector<std::pair<Nanos, Nanos>> interactive;  // (arrived, admitted), admitted after the batch one
    d.on_admitted = [&](TicketId t, Nanos at) {
        if (t == batch) {
            batch_admitted = at;
        } else if (batch_admitted != kNever) {
            interactive.emplace_back(arrived.at(t), at);
        } else if (batch != 0) {
            // Went before the batch request: it arrived before the batch one's handicap ran out.
            CHECK(arrived.at(t) <= arrived.at(batch) + 2 * kAging);
        }
    };
    // Interactive traffic at twice the limit's rate for 30 s: without aging, batch would never go.
    for (int i = 0; i < 600; ++i) {
        if (i == 50) {
            batch = d.submit(request(2 * kAging));
            REQUIRE(batch != 0);
            arrived[batch] = d.clock.now().mono;
        }
        const TicketId t = d.submit(request(Nanos{0}));
        if (t != 0) arrived[t] = d.clock.now().mono;
        d.run_until(t0 + Nanos{(i + 1) * 50'000'000LL});
    }
    REQUIRE(batch_admitted != kNever);
    // Everything that arrived after the handicap ran out went after it.
    for (const auto& [at, admitted] : interactive) CHECK(at >= arrived.at(batch) + 2 * kAging - 50ms);
    REQUIRE_FALSE(interactive.empty());
    CHECK(d.refused == 0);
}

namespace {

// Two callers of one fair-shared limit, each keeping `backlog` requests waiting.
struct FairRun {
    std::map<std::uint64_t, std::size_t> admitted;  // by caller, in the measured span
};

AdmissionRequest fair_request(std::uint64_t caller, std::int64_t weight, std::int64_t total_weight) {
    AdmissionRequest r = request(Nanos{0});
    r.fair_share = AdmissionRequest::FairShare{0, caller, kInterval * total_weight / weight};
    return r;
}

}  // namespace

TEST_CASE("fair share: callers weighted 2:1 get 2:1 of the admissions under saturation, within 5 %",
          "[queue][priority][fair]") {
    Drive d;
    const Nanos t0 = d.clock.now().mono;
    std::map<TicketId, std::uint64_t> caller_of;
    std::map<std::uint64_t, std::size_t> admitted;
    constexpr std::uint64_t kA = 11, kB = 22;
    const auto send = [&](std::uint64_t caller) {
        // The first finds the bucket full and goes at once; every other one waits.
        if (const TicketId t = d.submit(fair_request(caller, caller == kA ? 2 : 1, 3))) caller_of[t] = caller;
    };
    // Caller A starts alone with a deep backlog (and uses all the capacity),
    // B joins 5 s later; both keep their backlog (50 for A, 50 for B) from then on.
    for (int i = 0; i < 100; ++i) send(kA);
    d.run_until(t0 + 5s);
    for (int i = 0; i < 50; ++i) send(kB);
    d.on_admitted = [&](TicketId t, Nanos at) {
        const std::uint64_t caller = caller_of.at(t);
        if (at >= t0 + 5s) ++admitted[caller];
        send(caller);  // closed loop: the backlog stays full
    };
    d.run_until(t0 + 65s);
    INFO("A " << admitted[kA] << ", B " << admitted[kB]);
    REQUIRE(admitted[kB] > 0);
    const double ratio = static_cast<double>(admitted[kA]) / static_cast<double>(admitted[kB]);
    CHECK(ratio >= 2.0 * 0.95);
    CHECK(ratio <= 2.0 * 1.05);
    // The limit is used to the full: one admission per interval.
    CHECK(admitted[kA] + admitted[kB] >= 599);
}

TEST_CASE("fair share: an idle caller's share goes to the others, and it gets its share back at once",
          "[queue][priority][fair]") {
    Drive d;
    const Nanos t0 = d.clock.now().mono;
    std::map<TicketId, std::uint64_t> caller_of;
    std::map<std::uint64_t, std::vector<Nanos>> admitted;
    constexpr std::uint64_t kA = 11, kB = 22;
    d.on_admitted = [&](TicketId t, Nanos at) { admitted[caller_of.at(t)].push_back(at); };
    // A alone, weight 1 of 3: a backlog of 100 (10 s of the whole limit).
    std::size_t at_once = 0;
    for (int i = 0; i < 100; ++i) {
        if (const TicketId t = d.submit(fair_request(kA, 1, 3), &at_once)) caller_of[t] = kA;
    }
    CHECK(at_once == 1);
    d.run_until(t0 + 5s);
    // Work conserving: the idle caller's share was A's.
    CHECK(admitted[kA].size() >= 48);
    // B (weight 2) arrives behind A's remaining 50: it does not wait for them.
    const Nanos b_arrived = d.clock.now().mono;
    for (int i = 0; i < 4; ++i) caller_of[d.submit(fair_request(kB, 2, 3))] = kB;
    d.run_until(t0 + 20s);
    REQUIRE(admitted[kB].size() == 4);
    // Two of every three admissions are B's until it is served: its 4 within 6 intervals, or so.
    CHECK(admitted[kB].back() - b_arrived <= 7 * kInterval);
    CHECK(admitted[kA].size() == 99);
}

namespace {

// The uses of a request of class `class_index` on route `route`, and where it yields (as the
// proxy builds them, client_session.cpp): each limit of the route, then its caps and reserves
// that count the class; a class capped on a limit yields there but on its own cap.
AdmissionRequest request_for(const sluice::config::Config& config, std::size_t route,
                             std::size_t class_index) {
    AdmissionRequest r{0, {}, 600s, 100'000};
    r.handicap = static_cast<std::int64_t>(class_index) * config.priorities.aging;
    for (const std::size_t index : config.routes[route].limit_indexes) {
        const auto& limit = config.limits[index];
        const bool capped =
            std::any_of(limit.class_shares.begin(), limit.class_shares.end(),
                        [&](const auto& s) { return s.class_index == class_index && s.max_share; });
        if (capped) r.yields |= std::uint64_t{1} << r.uses.size();
        r.uses.push_back(LimitUse{index, 0, 1});
        for (const std::size_t derived : limit.derived) {
            if (!sluice::config::counts_class(config.limits[derived], class_index)) continue;
            if (capped && config.limits[derived].counted_classes != std::uint64_t{1} << class_index)
                r.yields |= std::uint64_t{1} << r.uses.size();
            r.uses.push_back(LimitUse{derived, 0, 1});
        }
    }
    return r;
}

std::int64_t most_in_window(const std::vector<Nanos>& times, Nanos window) {
    std::int64_t most = 0;
    std::size_t first = 0;
    for (std::size_t last = 0; last < times.size(); ++last) {
        while (times[last] - times[first] >= window) ++first;
        most = std::max<std::int64_t>(most, static_cast<std::int64_t>(last - first + 1));
    }
    return most;
}

}  // namespace

TEST_CASE("priority: a batch cap of 70 % is held, and interactive calls always find room",
          "[queue][priority][cap]") {
    const auto config = sluice::config::load_config_string(R"(
priorities: {classes: [interactive, default, batch], aging: 2s}
upstreams:
  intercom: {url: https://api.intercom.io}
limits:
  intercom:
    algorithm: sliding_window
    limit: 100
    window: 10s
    classes: {batch: {max_share: 70%}, interactive: {reserve: 20%}}
routes:
  - upstream: intercom
    limits: [intercom]
)",
                                                           "cap.yaml");
    REQUIRE(config->limits.size() == 3);
    std::vector<std::unique_ptr<sluice::limit::Limiter>> limiters;
    for (const auto& limit : config->limits) limiters.push_back(sluice::limit::make_limiter(limit));
    Drive d{std::move(limiters)};
    const Nanos t0 = d.clock.now().mono;
    const AdmissionRequest batch = request_for(*config, 0, 2);
    const AdmissionRequest interactive = request_for(*config, 0, 0);
    CHECK(batch.uses.size() == 3);        // the limit, the batch cap, the interactive reserve
    CHECK(batch.yields == 0b101);         // yields on the limit and the reserve, not on its own cap
    CHECK(interactive.uses.size() == 1);  // the limit alone
    CHECK(interactive.yields == 0);

    std::vector<Nanos> batch_times, all_times;
    std::map<TicketId, bool> is_batch;
    d.on_admitted = [&](TicketId t, Nanos at) {
        if (is_batch.at(t)) batch_times.push_back(at);
        all_times.push_back(at);
    };
    const auto submit = [&](const AdmissionRequest& r) {
        const Admission a = d.controller.submit(r, d.clock.now());
        const bool of_batch = r.uses.size() == 3;
        if (a.outcome == Outcome::admitted) {
            if (of_batch) batch_times.push_back(a.at);
            all_times.push_back(a.at);
        } else if (a.outcome == Outcome::queued) {
            is_batch[a.ticket] = of_batch;
        }
        return a.outcome;
    };
    // The nightly sync: 1,000 requests at once, far more than its share; it soon waits longer
    // than its handicap (4 s), yet holds no user-facing call back.
    for (int i = 0; i < 1000; ++i) submit(batch);
    // User-facing calls, 2 per second for a minute: each goes at once.
    std::size_t interactive_waited = 0;
    for (int i = 0; i < 120; ++i) {
        d.run_until(t0 + Nanos{i * 500'000'000LL});
        if (submit(interactive) != Outcome::admitted) ++interactive_waited;
    }
    d.run_until(t0 + 60s);
    CHECK(interactive_waited == 0);
    std::sort(batch_times.begin(), batch_times.end());
    std::sort(all_times.begin(), all_times.end());
    CHECK(most_in_window(batch_times, 10s) <= 70);
    CHECK(most_in_window(all_times, 10s) <= 100);
    // Batch still uses its whole share: 70 in each of the 6 windows.
    CHECK(batch_times.size() >= 6 * 70);
}

TEST_CASE("fair share: a request's step is its cost at the limit's full rate, scaled by the weights",
          "[queue][priority][fair]") {
    LimitConfig sliding;
    sliding.algorithm = Algorithm::sliding_window;
    sliding.limit = 100;
    sliding.window = 10s;
    sliding.fair_share = sluice::config::FairShareConfig{};
    sliding.fair_share->total_weight = 3;
    // 100 ms a unit at the full rate; a caller of weight 2 of 3 advances 150 ms a unit.
    CHECK(sluice::queue::fair_share_step(sliding, 1, 2) == 150ms);
    CHECK(sluice::queue::fair_share_step(sliding, 4, 1) == 1200ms);
    CHECK(sluice::queue::fair_share_step(sliding, 0, 1) == 0ms);
    LimitConfig concurrency;
    concurrency.algorithm = Algorithm::concurrency;
    concurrency.limit = 4;
    concurrency.fair_share = sluice::config::FairShareConfig{};
    CHECK(sluice::queue::fair_share_step(concurrency, 1, 1) == 250ms);  // 1 s / limit stands for the window
    // A huge cost saturates at a day rather than overflowing.
    CHECK(sluice::queue::fair_share_step(sliding, 1'000'000'000'000LL, 1) == 24h);
}
