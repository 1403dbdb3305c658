// Differential test: the decision script (Redis, clock override) against the in-memory limiters
// (make_limiter, probe + consume) on the same random sequences of (key, cost, time step,
// release, vendor pause or cap). Every decision must be the same: allowed at every step, the
// earliest time (memory's rounded up to the microsecond), remaining, limit and reset. Beside
// that, brute force over what the script admitted checks that it never over-admits.

#include <algorithm>
#include <chrono>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "sluice/limit/limit_state.hpp"
#include "sluice/limit/limiter.hpp"
#include "sluice/redis/decision_script.hpp"

#include "unit/redis/script_redis.hpp"

using namespace std::chrono_literals;

namespace sluice::redis {
namespace {

using script_test::ScriptRedis;

constexpr std::int64_t kStart = 1'700'000'000'000'000;  // Unix us
constexpr std::string_view kPrefix = "conf";

std::int64_t ceil_us(Nanos d) {
    return (d.count() + 999) / 1000;
}

// A delay as the script reports it (whole us, rounded up), from an in-memory absolute time.
Nanos expected_delay(Nanos at, Nanos now) {
    if (at == kNever) return kNever;
    return Nanos{ceil_us(at - now) * 1000};
}

struct Admission {
    std::int64_t at_us;
    std::int64_t units;
};

struct Scenario {
    std::vector<config::LimitConfig> limits;  // every request uses all of them, on one key
    std::int64_t max_step_us = 0;             // time steps are uniform in [0, max_step_us]
    std::int64_t max_cost = 1;
    int steps = 1500;
    bool record = true;  // also merge units admitted elsewhere (record vs memory's exact import)
    // Also give back (all or part of) a recent admission, at its time (Limiter::refund vs the
    // script's refund). Not with records: a log's lump then makes the script give back less.
    bool refund = false;
};

// Checks what was admitted on one key against the limit's definition, by brute force.
void check_never_over_admits(const config::LimitConfig& c, const std::vector<Admission>& admitted) {
    const std::int64_t n = static_cast<std::int64_t>(admitted.size());
    switch (c.algorithm) {
        case config::Algorithm::sliding_window: {
            const std::int64_t span = (c.window + c.margin).count() / 1000;
            for (std::int64_t j = 0; j < n; ++j) {  // every window (t - D, t] ending at an admission
                std::int64_t sum = 0;
                for (std::int64_t i = 0; i <= j; ++i)
                    if (admitted[i].at_us > admitted[j].at_us - span) sum += admitted[i].units;
                INFO("sliding window ending at " << admitted[j].at_us);
                REQUIRE(sum <= c.limit);
            }
            break;
        }
        case config::Algorithm::token_bucket: {
            // GCRA: in any span [a, b] at most burst + (b - a) * limit / period units.
            const std::int64_t period = (c.window + c.margin).count() / 1000;
            const std::int64_t burst = c.burst > 0 ? c.burst : c.limit;
            for (std::int64_t i = 0; i < n; ++i) {
                std::int64_t sum = 0;
                for (std::int64_t j = i; j < n; ++j) {
                    sum += admitted[j].units;
                    const std::int64_t refill = (admitted[j].at_us - admitted[i].at_us) * c.limit / period;
                    INFO("token bucket from " << admitted[i].at_us << " to " << admitted[j].at_us);
                    REQUIRE(sum <= burst + refill);
                }
            }
            break;
        }
        case config::Algorithm::fixed_window: {
            const std::int64_t period = c.window.count() / 1000;
            const std::int64_t offset = c.utc_offset.count() / 1000;
            std::map<std::int64_t, std::int64_t> per_window;
            for (const Admission& a : admitted) {
                const std::int64_t w = a.at_us + offset;
                per_window[w >= 0 ? w / period : (w - period + 1) / period] += a.units;
            }
            for (const auto& [window, units] : per_window) {
                INFO("fixed window " << window);
                REQUIRE(units <= c.limit);
            }
            break;
        }
        default: break;  // concurrency: checked as it runs
    }
}

void run(const Scenario& scenario, std::uint32_t seed) {
    ScriptRedis& redis = ScriptRedis::instance();
    redis.flush();
    std::mt19937_64 rng(seed);
    const auto uniform = [&](std::int64_t lo, std::int64_t hi) {
        return std::uniform_int_distribution<std::int64_t>(lo, hi)(rng);
    };
    std::vector<std::unique_ptr<limit::Limiter>> memory;
    for (const auto& c : scenario.limits) memory.push_back(limit::make_limiter(c));
    constexpr limit::KeyHash kKeys[] = {0x11, 0x2222, 0xfeedface};
    // Per key: what the script admitted (for the brute force), and leases in flight.
    std::map<limit::KeyHash, std::vector<Admission>> admitted;
    struct Lease {
        std::string id;
        limit::KeyHash key;
        std::int64_t cost;
    };
    std::vector<Lease> leases;
    std::map<limit::KeyHash, std::int64_t> in_flight;
    std::int64_t t = kStart + uniform(0, 10'000'000);
    int ticket = 0;
    int admissions = 0;
    int refusals = 0;

    for (int step = 0; step < scenario.steps; ++step) {
        t += uniform(0, scenario.max_step_us);
        const Instant now{Nanos{t * 1000}, Nanos{t * 1000}};
        const limit::KeyHash key = kKeys[uniform(0, 2)];
        const std::int64_t cost = uniform(1, scenario.max_cost);
        std::vector<SharedUse> uses;
        for (const auto& c : scenario.limits) uses.push_back(SharedUse{&c, key, cost});
        INFO("seed " << seed << " step " << step << " t " << t << " key " << key << " cost " << cost);

        const std::int64_t action = uniform(0, 99);
        if (action < 3) {  // a vendor pause, on every limit of the request
            const Nanos delay{uniform(1, 3 * scenario.max_step_us) * 1000};
            for (std::size_t i = 0; i < uses.size(); ++i) {
                memory[i]->pause_until(key, now.mono + delay, now);
                redis.eval(encode_pause(kPrefix, uses[i], delay, "vendor_refused", t));
            }
            continue;
        }
        if (action < 6) {  // a vendor cap
            const std::int64_t remaining = uniform(0, 3);
            const Nanos reset{uniform(1, 5 * scenario.max_step_us) * 1000};
            for (std::size_t i = 0; i < uses.size(); ++i) {
                memory[i]->cap_remaining(key, remaining, now.mono + reset, now);
                redis.eval(encode_cap(kPrefix, uses[i], remaining, reset, t));
            }
            continue;
        }
        if (action < 9 && scenario.record) {  // units admitted elsewhere (a fallback) merged
            const Nanos age{uniform(0, 2 * scenario.max_step_us) * 1000};
            for (std::size_t i = 0; i < uses.size(); ++i) {
                limit::KeyExport lot;
                lot.key = key;
                lot.admitted.push_back(limit::AdmittedLot{now.mono - age, cost});
                memory[i]->import_keys({lot}, limit::ImportMode::exact, now);
            }
            std::vector<RecordedLot> lots;
            for (const auto& use : uses) lots.push_back(RecordedLot{use, age});
            const Reply r = redis.eval(encode_record(kPrefix, lots, now.wall, t));
            REQUIRE(r.type == Reply::Type::integer);
            continue;
        }
        if (action < 14 && scenario.refund && !admitted[key].empty()) {
            // One of the key's last admissions never reached the vendor, or was charged less. The
            // brute force then checks the rest: what the vendor actually got.
            auto& list = admitted[key];
            const std::size_t which =
                list.size() - 1 -
                static_cast<std::size_t>(
                    uniform(0, std::min<std::int64_t>(3, static_cast<std::int64_t>(list.size()) - 1)));
            Admission& refunded = list[which];
            const std::int64_t units = uniform(1, refunded.units);
            const Nanos admitted_at{refunded.at_us * 1000};
            std::vector<RecordedLot> lots;
            for (std::size_t i = 0; i < memory.size(); ++i) {
                memory[i]->refund(key, units, admitted_at, now);
                lots.push_back(
                    RecordedLot{SharedUse{&scenario.limits[i], key, units}, now.mono - admitted_at});
            }
            const Reply r = redis.eval(encode_refund(kPrefix, lots, 0ns, now.wall, t));
            REQUIRE(r.type == Reply::Type::integer);
            refunded.units -= units;
            if (refunded.units == 0) list.erase(list.begin() + static_cast<std::ptrdiff_t>(which));
            continue;
        }
        if (action < 30 && !leases.empty()) {  // an exchange ends
            const std::size_t which =
                static_cast<std::size_t>(uniform(0, static_cast<std::int64_t>(leases.size()) - 1));
            const Lease lease = leases[which];
            leases.erase(leases.begin() + static_cast<std::ptrdiff_t>(which));
            std::vector<SharedUse> held;
            for (std::size_t i = 0; i < memory.size(); ++i) {
                memory[i]->release(lease.key, lease.cost, now);
                held.push_back(SharedUse{&scenario.limits[i], lease.key, lease.cost});
            }
            redis.eval(encode_release(kPrefix, held, lease.id));
            in_flight[lease.key] -= lease.cost;
            continue;
        }

        // The in-memory protocol: probe every limit, consume from all only if every enforced one allows.
        std::vector<limit::Decision> expected;
        bool allowed = true;
        for (std::size_t i = 0; i < memory.size(); ++i) {
            expected.push_back(memory[i]->probe(key, cost, 0, now));
            if (scenario.limits[i].enforce && !expected.back().allowed) allowed = false;
        }
        const std::string lease_id = "r1:" + std::to_string(++ticket);
        std::string error;
        const auto got = decode_decision(redis.eval(encode_acquire(kPrefix, uses, lease_id, 1h, now.wall, t)),
                                         uses.size(), error);
        INFO(error);
        REQUIRE(got);
        REQUIRE(got->allowed == allowed);
        // The limit the answer describes, picked as the admission controller picks it (its earliest
        // times compared as the script sees them: in whole us).
        std::optional<std::size_t> blocking;
        std::optional<std::size_t> tightest;
        const auto share = [&](std::size_t i) {
            const auto left = static_cast<double>(std::max<std::int64_t>(expected[i].remaining - cost, 0));
            return left / static_cast<double>(std::max<std::int64_t>(expected[i].limit, 1));
        };
        for (std::size_t i = 0; i < memory.size(); ++i) {
            if (!scenario.limits[i].enforce) continue;
            if (!expected[i].allowed &&
                (!blocking || expected_delay(expected[i].earliest, now.mono) >
                                  expected_delay(expected[*blocking].earliest, now.mono)))
                blocking = i;
            if (!tightest || share(i) < share(*tightest)) tightest = i;
        }
        REQUIRE(got->limiting == (blocking ? blocking : tightest));
        for (std::size_t i = 0; i < memory.size(); ++i) {
            const limit::Decision& m = expected[i];
            const UseDecision& r = got->uses[i];
            INFO("limit " << scenario.limits[i].name);
            REQUIRE(r.allowed == m.allowed);
            REQUIRE(r.limit == m.limit);
            REQUIRE(r.remaining == m.remaining);
            if (!m.allowed) {
                if (r.predictable) {
                    REQUIRE(r.earliest_delay == expected_delay(m.earliest, now.mono));
                } else {
                    REQUIRE(scenario.limits[i].algorithm == config::Algorithm::concurrency);
                    REQUIRE(m.earliest == kNever);
                }
            }
            REQUIRE(r.reset_delay == expected_delay(m.reset, now.mono));
        }
        if (allowed) {
            ++admissions;
            for (std::size_t i = 0; i < memory.size(); ++i) memory[i]->consume(key, cost, now);
            admitted[key].push_back(Admission{t, cost});
            leases.push_back(Lease{lease_id, key, cost});
            in_flight[key] += cost;
            for (const auto& c : scenario.limits) {
                if (c.algorithm == config::Algorithm::concurrency && c.enforce)
                    REQUIRE(in_flight[key] <= c.limit);
            }
            if (leases.size() > 64)
                leases.erase(leases.begin());  // the oldest exchanges never end (memory keeps them)
        } else {
            ++refusals;
        }
    }
    // The sequences must exercise both answers, or they prove little.
    CHECK(admissions > scenario.steps / 10);
    CHECK(refusals > scenario.steps / 10);
    for (const auto& c : scenario.limits) {
        if (!c.enforce) continue;
        for (const auto& [key, list] : admitted) check_never_over_admits(c, list);
    }
}

config::LimitConfig make(config::Algorithm algorithm, std::string name, std::int64_t limit, Nanos window) {
    config::LimitConfig c;
    c.name = std::move(name);
    c.algorithm = algorithm;
    c.limit = limit;
    c.window = window;
    return c;
}

void run_seeds(const Scenario& scenario) {
    for (std::uint32_t seed : {1u, 2u, 3u}) run(scenario, seed);
}

// The scenario with refunds instead of merged records.
Scenario with_refunds(Scenario s) {
    s.record = false;
    s.refund = true;
    return s;
}

}  // namespace

TEST_CASE("conformance: sliding window, exact log") {
    Scenario s;
    auto c = make(config::Algorithm::sliding_window, "log", 5, 1s);
    c.margin = 200ms;
    s.limits = {c};
    s.max_step_us = 150'000;
    s.max_cost = 3;
    run_seeds(s);
    run_seeds(with_refunds(s));
}

TEST_CASE("conformance: sliding window, bucket ring") {
    Scenario s;
    // D = 2.55 s: the bucket width is 10 ms in both (memory's in ns, the script's in us).
    auto c = make(config::Algorithm::sliding_window, "ring", 300, 2'500ms);
    c.margin = 50ms;
    s.limits = {c};
    s.record = false;  // memory imports an old lot into its newest bucket, the script into the lot's own
    s.max_step_us = 30'000;
    s.max_cost = 30;
    run_seeds(s);
    run_seeds(with_refunds(s));
}

TEST_CASE("conformance: token bucket with a burst and a margin") {
    Scenario s;
    auto c = make(config::Algorithm::token_bucket, "tb", 7, 1s);
    c.burst = 3;
    c.margin = 100ms;  // 7 per 1.1 s: a token every 157 142.857 us
    s.limits = {c};
    s.max_step_us = 300'000;
    s.max_cost = 3;
    run_seeds(s);
    run_seeds(with_refunds(s));
}

TEST_CASE("conformance: fixed window with a utc_offset and a margin") {
    Scenario s;
    auto c = make(config::Algorithm::fixed_window, "fw", 5, 10s);
    c.utc_offset = -3s;
    c.margin = 500ms;
    s.limits = {c};
    s.max_step_us = 1'500'000;
    s.max_cost = 3;
    run_seeds(s);
    run_seeds(with_refunds(s));
}

TEST_CASE("conformance: concurrency") {
    Scenario s;
    s.limits = {make(config::Algorithm::concurrency, "conc", 3, 0s)};
    s.max_step_us = 100'000;
    s.max_cost = 2;
    run_seeds(s);
}

TEST_CASE("conformance: several limits at once, one of them shadow") {
    Scenario s;
    auto log = make(config::Algorithm::sliding_window, "m-log", 6, 1s);
    auto tb = make(config::Algorithm::token_bucket, "m-tb", 4, 1s);
    auto shadow = make(config::Algorithm::fixed_window, "m-shadow", 2, 2s);
    shadow.enforce = false;
    // A shadow log past its limit: the oldest units folded into one lump, as memory folds them.
    auto shadow_log = make(config::Algorithm::sliding_window, "m-shadow-log", 2, 1500ms);
    shadow_log.enforce = false;
    s.limits = {log, tb, shadow, shadow_log};
    s.max_step_us = 200'000;
    s.max_cost = 2;
    run_seeds(s);
}

}  // namespace sluice::redis
