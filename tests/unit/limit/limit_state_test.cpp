// Limiter state as plain values (limit_state.hpp): export_keys / import_keys for
// a reload or a restart, and refund() for a request that never reached the vendor.
// Each restored limiter is checked against the original by probing both at many
// later instants (explicit Instants, fixed seeds): it must never allow what the
// original refuses, and for the exact forms it must answer identically.

#include "sluice/limit/limit_state.hpp"

#include <algorithm>
#include <chrono>
#include <random>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "sluice/common/clock.hpp"
#include "sluice/limit/algorithms.hpp"
#include "sluice/limit/limiter.hpp"
#include "sluice/limit/vendor_gate.hpp"

namespace {

using namespace std::chrono_literals;
using sluice::FakeClock;
using sluice::Instant;
using sluice::kNever;
using sluice::Nanos;
using sluice::config::Algorithm;
using sluice::config::LimitConfig;
using sluice::limit::AdmittedLot;
using sluice::limit::Decision;
using sluice::limit::ImportMode;
using sluice::limit::KeyExport;
using sluice::limit::KeyHash;
using sluice::limit::Limiter;
using sluice::limit::make_limiter;
using sluice::limit::PauseCause;
using sluice::limit::PauseReason;

struct Case {
    std::string label;
    Algorithm algorithm;
    std::int64_t limit;
    Nanos window;
    Nanos margin = 0ns;
    std::int64_t burst = 0;
    Nanos utc_offset = 0ns;
    std::string time_zone;
    // How much later the restored limiter may answer `earliest`: 0 for the exact
    // forms; 1 ns for a token bucket whose rate does not divide its period in ns
    // (its state is kept in 1/limit ns, a lot's time in whole ns); kNever where
    // the export is only conservative (a fixed window with 2M >= P).
    Nanos tolerance = 0ns;
};

LimitConfig config_of(const Case& c, bool keyed) {
    LimitConfig config;
    config.name = c.label;
    config.algorithm = c.algorithm;
    config.limit = c.limit;
    config.window = c.window;
    config.margin = c.margin;
    config.burst = c.burst;
    config.utc_offset = c.utc_offset;
    config.time_zone = c.time_zone;
    if (keyed) config.key.push_back({sluice::config::KeySource::Kind::header, "X-Api-Key"});
    return config;
}

// 2026-03-07 00:00 EST: the zoned case crosses the 23-hour day that follows.
constexpr Nanos kWallStart = 1'772'859'600s;
Instant instant_at(Nanos mono) {
    return Instant{mono, kWallStart + mono};
}

std::vector<Case> round_trip_cases() {
    return {
        {"sliding exact", Algorithm::sliding_window, 20, 10s},
        {"sliding exact, margin", Algorithm::sliding_window, 20, 10s, 1s},
        {"sliding exact, 256", Algorithm::sliding_window, sluice::limit::kSlidingExactMaxUnits, 1min},
        {"sliding bucketed", Algorithm::sliding_window, 1000, 1min},
        {"sliding bucketed, margin", Algorithm::sliding_window, 3000, 5min, 1s},
        {"fixed", Algorithm::fixed_window, 20, 10s},
        {"fixed, margin", Algorithm::fixed_window, 20, 10s, 2s},
        {"fixed, utc_offset", Algorithm::fixed_window, 30, 1h, 0ns, 0, -5min},
        {"fixed, time_zone", Algorithm::fixed_window, 40, 24h, 0ns, 0, 0ns, "America/New_York"},
        {"fixed, time_zone and margin", Algorithm::fixed_window, 40, 24h, 1h, 0, 0ns, "America/New_York"},
        {"fixed, margin = window", Algorithm::fixed_window, 20, 10s, 10s, 0, 0ns, "", kNever},
        {"token bucket", Algorithm::token_bucket, 10, 1s, 0ns, 10},
        {"token bucket, burst", Algorithm::token_bucket, 100, 1min, 0ns, 30},
        {"token bucket, 3/s", Algorithm::token_bucket, 3, 1s, 0ns, 5, 0ns, "", 1ns},
        {"token bucket, 166/10s, margin", Algorithm::token_bucket, 166, 10s, 100ms, 0, 0ns, "", 1ns},
    };
}

Nanos random_below(std::mt19937_64& rng, Nanos bound) {
    return Nanos{static_cast<std::int64_t>(
        rng() % static_cast<std::uint64_t>(std::max<Nanos::rep>(bound.count(), 1)))};
}

std::int64_t capacity_of(const Case& c) {
    return c.algorithm == Algorithm::token_bucket && c.burst > 0 ? c.burst : c.limit;
}

// Admits random requests (whatever `l` allows) on `keys` from mono `from` on;
// returns the instant after the last step.
Instant admit_randomly(Limiter& l, std::mt19937_64& rng, const Case& c, const std::vector<KeyHash>& keys,
                       Nanos from, int steps) {
    Nanos mono = from;
    const std::int64_t max_cost = std::max<std::int64_t>(capacity_of(c) / 4, 1);
    for (int i = 0; i < steps; ++i) {
        mono += random_below(rng, (c.window + c.margin) / 16);
        const KeyHash key = keys[rng() % keys.size()];
        const std::int64_t cost = 1 + static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(max_cost));
        if (l.probe(key, cost, 0, instant_at(mono)).allowed) l.consume(key, cost, instant_at(mono));
    }
    return instant_at(mono);
}

// `restored` never allows what `original` refuses, and never names an earlier
// time; within `tolerance` of it (0: identical answers).
void check_no_more_permissive(Limiter& original, Limiter& restored, const std::vector<KeyHash>& keys,
                              std::int64_t capacity, const Instant& now, Nanos tolerance) {
    for (const KeyHash key : keys) {
        for (const std::int64_t cost :
             {std::int64_t{1}, std::int64_t{2}, capacity / 2, capacity, capacity + 1}) {
            const Decision a = original.probe(key, cost, 0, now);
            const Decision b = restored.probe(key, cost, 0, now);
            INFO("key " << key << " cost " << cost << " at " << now.mono.count());
            if (!a.allowed) REQUIRE_FALSE(b.allowed);
            REQUIRE(b.earliest >= a.earliest);
            REQUIRE(b.remaining <= a.remaining);
            if (tolerance == Nanos::zero()) {
                REQUIRE(b.allowed == a.allowed);
                REQUIRE(b.earliest == a.earliest);
                REQUIRE(b.remaining == a.remaining);
                REQUIRE(b.reset == a.reset);
            } else if (tolerance != kNever && a.earliest != kNever) {
                REQUIRE(b.earliest - a.earliest <= tolerance);
            }
        }
    }
}

// Probes both at random later instants; where both allow a request, both admit it.
void compare_over_time(Limiter& original, Limiter& restored, std::mt19937_64& rng, const Case& c,
                       const std::vector<KeyHash>& keys, Instant from) {
    Nanos mono = from.mono;
    const std::int64_t capacity = capacity_of(c);
    for (int i = 0; i < 120; ++i) {
        check_no_more_permissive(original, restored, keys, capacity, instant_at(mono), c.tolerance);
        const KeyHash key = keys[rng() % keys.size()];
        const std::int64_t cost =
            1 + static_cast<std::int64_t>(
                    rng() % static_cast<std::uint64_t>(std::max<std::int64_t>(capacity / 4, 1)));
        if (original.probe(key, cost, 0, instant_at(mono)).allowed &&
            restored.probe(key, cost, 0, instant_at(mono)).allowed) {
            original.consume(key, cost, instant_at(mono));
            restored.consume(key, cost, instant_at(mono));
        }
        mono += random_below(rng, (c.window + c.margin) / 8);
    }
}

std::int64_t units_of(const KeyExport& e) {
    std::int64_t units = 0;
    for (const AdmittedLot& lot : e.admitted) units += lot.units;
    return units;
}

const KeyExport* find_export(const std::vector<KeyExport>& keys, KeyHash key) {
    const auto it = std::find_if(keys.begin(), keys.end(), [&](const KeyExport& e) { return e.key == key; });
    return it == keys.end() ? nullptr : &*it;
}

}  // namespace

TEST_CASE("limit state: an exact round trip answers as the original, keyed and unkeyed", "[limit][state]") {
    std::uint64_t seed = 1;
    for (const Case& c : round_trip_cases()) {
        for (const bool keyed : {false, true}) {
            for (const bool later : {false, true}) {
                ++seed;
                INFO(c.label << (keyed ? ", keyed" : ", unkeyed") << (later ? ", imported later" : "")
                             << ", seed " << seed);
                std::mt19937_64 rng(seed);
                const std::vector<KeyHash> keys =
                    keyed ? std::vector<KeyHash>{11, 12, 13, 14, 15} : std::vector<KeyHash>{0};
                auto original = make_limiter(config_of(c, keyed));
                const Instant exported_at = admit_randomly(*original, rng, c, keys, 1s, 300);
                std::vector<KeyExport> exported;
                original->export_keys(exported_at, exported);
                for (const KeyExport& e : exported) {
                    REQUIRE(std::is_sorted(
                        e.admitted.begin(), e.admitted.end(),
                        [](const AdmittedLot& a, const AdmittedLot& b) { return a.at < b.at; }));
                }
                // Imported later, the times are kept: the lots expire when the original's do.
                const Instant imported_at =
                    later ? instant_at(exported_at.mono + random_below(rng, c.window / 2)) : exported_at;
                auto restored = make_limiter(config_of(c, keyed));
                REQUIRE(restored->import_keys(exported, ImportMode::exact, imported_at) == 0);
                compare_over_time(*original, *restored, rng, c, keys, imported_at);
            }
        }
    }
}

TEST_CASE("limit state: export skips keys indistinguishable from fresh", "[limit][state]") {
    for (const Case& c : round_trip_cases()) {
        INFO(c.label);
        auto l = make_limiter(config_of(c, true));
        const Instant t0 = instant_at(1s);
        l->consume(1, 1, t0);
        l->consume(2, 1, t0);
        std::vector<KeyExport> out;
        l->export_keys(t0, out);
        CHECK(out.size() == 2);
        out.clear();
        // Three windows on (a day window spans 24 h, a zoned one 23-25 h): nothing counts.
        l->export_keys(instant_at(t0.mono + 3 * (c.window + c.margin) + 2h), out);
        CHECK(out.empty());
    }
    auto concurrency = make_limiter(config_of({"c", Algorithm::concurrency, 5, 0ns}, true));
    concurrency->consume(1, 3, instant_at(1s));
    std::vector<KeyExport> out;
    concurrency->export_keys(instant_at(1s), out);
    CHECK(out.empty());  // what is in flight stays with its limiter
}

TEST_CASE("limit state: a sliding window exports one lot per admission time", "[limit][state]") {
    auto l = make_limiter(config_of({"s", Algorithm::sliding_window, 20, 10s}, false));
    l->consume(0, 3, instant_at(1s));
    l->consume(0, 2, instant_at(2s));
    l->consume(0, 1, instant_at(2s));
    l->consume(0, 4, instant_at(3s));
    std::vector<KeyExport> out;
    l->export_keys(instant_at(4s), out);
    REQUIRE(out.size() == 1);
    CHECK(out[0].admitted == std::vector<AdmittedLot>{{1s, 3}, {2s, 3}, {3s, 4}});
    out.clear();
    l->export_keys(instant_at(11s), out);  // the units of 1 s have left the window
    REQUIRE(out.size() == 1);
    CHECK(out[0].admitted == std::vector<AdmittedLot>{{2s, 3}, {3s, 4}});
}

TEST_CASE("limit state: carry_used counts every unit as consumed at the import", "[limit][state]") {
    const Instant t = instant_at(10min + 17s);
    SECTION("sliding window: 60 of 100 per 5 min into 50 per 1 min") {
        auto before = make_limiter(config_of({"s", Algorithm::sliding_window, 100, 5min}, false));
        before->consume(0, 30, instant_at(t.mono - 4min));
        before->consume(0, 30, instant_at(t.mono - 1min));
        std::vector<KeyExport> out;
        before->export_keys(t, out);
        auto after = make_limiter(config_of({"s", Algorithm::sliding_window, 50, 1min}, false));
        CHECK(after->import_keys(out, ImportMode::carry_used, t) == 0);
        const Decision d = after->probe(0, 1, 0, t);
        CHECK_FALSE(d.allowed);
        CHECK(d.earliest == t.mono + 1min);
        CHECK_FALSE(after->probe(0, 1, 0, instant_at(t.mono + 1min - 1ns)).allowed);
        CHECK(after->probe(0, 50, 0, instant_at(t.mono + 1min)).allowed);
    }
    SECTION("bucketed sliding window into an exact one") {
        auto before = make_limiter(config_of({"s", Algorithm::sliding_window, 1000, 1h}, false));
        before->consume(0, 300, instant_at(t.mono - 50min));
        std::vector<KeyExport> out;
        before->export_keys(t, out);
        auto after = make_limiter(config_of({"s", Algorithm::sliding_window, 200, 10min}, false));
        after->import_keys(out, ImportMode::carry_used, t);
        CHECK(after->probe(0, 1, 0, instant_at(t.mono + 10min - 1ns)).earliest == t.mono + 10min);
        CHECK(after->probe(0, 200, 0, instant_at(t.mono + 10min)).allowed);
    }
    SECTION("fixed window: the window holding the import is spent") {
        auto before = make_limiter(config_of({"f", Algorithm::fixed_window, 100, 1h}, false));
        before->consume(0, 60, instant_at(t.mono - 5min));
        std::vector<KeyExport> out;
        before->export_keys(t, out);
        auto after = make_limiter(config_of({"f", Algorithm::fixed_window, 50, 1min}, false));
        after->import_keys(out, ImportMode::carry_used, t);
        const Decision d = after->probe(0, 1, 0, t);
        CHECK_FALSE(d.allowed);
        CHECK(d.remaining == 0);
        // Wall time 17 s into its minute: the next minute starts 43 s on.
        CHECK(d.earliest == t.mono + 43s);
        CHECK(after->probe(0, 50, 0, instant_at(t.mono + 43s)).allowed);
    }
    SECTION("token bucket: 60 tokens owed into a bucket of 50") {
        auto before = make_limiter(config_of({"t", Algorithm::token_bucket, 100, 5min, 0ns, 100}, false));
        before->consume(0, 60, t);
        std::vector<KeyExport> out;
        before->export_keys(t, out);
        REQUIRE(out.size() == 1);
        CHECK(units_of(out[0]) == 60);
        auto after = make_limiter(config_of({"t", Algorithm::token_bucket, 50, 1min, 0ns, 50}, false));
        after->import_keys(out, ImportMode::carry_used, t);
        // 10 tokens below empty, one token per 1.2 s: the next one in 11 * 1.2 s.
        CHECK(after->probe(0, 1, 0, t).earliest == t.mono + 13200ms);
    }
    SECTION("exact times are not needed: a lot from long ago counts from now") {
        auto after = make_limiter(config_of({"s", Algorithm::sliding_window, 10, 1min}, false));
        const std::vector<KeyExport> in{{7, {{Nanos{5}, 4}, {Nanos{6}, 6}}}};
        after->import_keys(in, ImportMode::carry_used, t);
        CHECK(after->probe(7, 1, 0, t).earliest == t.mono + 1min);
        auto exact = make_limiter(config_of({"s", Algorithm::sliding_window, 10, 1min}, false));
        exact->import_keys(in, ImportMode::exact, t);
        CHECK(exact->probe(7, 10, 0, t).allowed);  // long expired
        CHECK(exact->key_count() == 0);
    }
}

TEST_CASE("limit state: pauses, caps, deficits and learned limits survive both modes", "[limit][state]") {
    const std::vector<Case> cases{{"sliding", Algorithm::sliding_window, 20, 10s},
                                  {"sliding bucketed", Algorithm::sliding_window, 1000, 10s},
                                  {"fixed", Algorithm::fixed_window, 20, 10s},
                                  {"token bucket", Algorithm::token_bucket, 20, 10s, 0ns, 20}};
    for (const Case& c : cases) {
        INFO(c.label);
        const std::int64_t capacity = capacity_of(c);
        const Instant t = instant_at(100s);
        // Probing moves a fixed window's wall time on for good: one original per pass.
        const auto make_original = [&] {
            auto l = make_limiter(config_of(c, true));
            l->consume(1, 2, t);
            l->pause_until(1, t.mono + 30s, t, PauseReason{PauseCause::vendor_refused, "retry_after"});
            l->cap_remaining(2, 3, t.mono + 20s, t);
            l->set_deficit(3, 5, t.mono + 40s, t);
            l->lower_learned(4, 4, t);
            l->lower_learned(5, 6, instant_at(t.mono - 25s));  // raised twice since (window 10 s)
            return l;
        };
        auto original = make_original();
        const std::vector<KeyHash> keys{1, 2, 3, 4, 5};
        std::vector<KeyExport> out;
        original->export_keys(t, out);
        REQUIRE(out.size() == 5);
        CHECK(find_export(out, 1)->pause_cause == PauseCause::vendor_refused);
        CHECK(find_export(out, 2)->cap_remaining == 3);
        CHECK(find_export(out, 3)->deficit == 5);
        // A first refusal lowers at most to half the limit in force (keyed_limiter.hpp).
        CHECK(find_export(out, 4)->learned.limit == std::max<std::int64_t>(4, capacity / 2));
        CHECK(find_export(out, 5)->learned.limit == std::max<std::int64_t>(6, capacity / 2) + 2);
        CHECK(find_export(out, 5)->configured_limit == capacity);

        for (const ImportMode mode : {ImportMode::exact, ImportMode::carry_used}) {
            INFO((mode == ImportMode::exact ? "exact" : "carry_used"));
            original = make_original();
            auto restored = make_limiter(config_of(c, true));
            REQUIRE(restored->import_keys(out, mode, t) == 0);
            const auto status = restored->status(t, 10);
            const auto paused =
                std::find_if(status.begin(), status.end(), [](const auto& s) { return s.key == 1; });
            REQUIRE(paused != status.end());
            CHECK(paused->paused_until == t.mono + 30s);
            CHECK(paused->pause_reason.cause == PauseCause::vendor_refused);
            // Keys 2..5 hold no units (key 1's 2 units are dated `t`: both modes agree),
            // so the overlays alone decide: identical answers from here on.
            for (Nanos mono = t.mono; mono < t.mono + 60s; mono += 700ms) {
                check_no_more_permissive(*original, *restored, keys, capacity, instant_at(mono), c.tolerance);
                for (const KeyHash key : {4, 5})
                    CHECK(restored->feedback_view(key, instant_at(mono)).limit ==
                          original->feedback_view(key, instant_at(mono)).limit);
            }
        }
        // carry_used into a limit whose configured limit changed: the learned limits go.
        Case changed = c;
        changed.limit = c.limit * 2;
        changed.burst = c.burst * 2;
        auto other = make_limiter(config_of(changed, true));
        other->import_keys(out, ImportMode::carry_used, t);
        CHECK(other->feedback_view(4, t).limit == capacity_of(changed));
        CHECK(other->feedback_view(5, t).limit == capacity_of(changed));
        CHECK_FALSE(other->probe(1, 1, 0, t).allowed);  // still paused
        CHECK_FALSE(other->probe(2, 4, 0, t).allowed);  // still capped at 3
        CHECK(other->probe(2, 3, 0, t).allowed);
        // An exporter that did not say its configured limit: the learned limit is kept.
        std::vector<KeyExport> unknown = out;
        for (KeyExport& e : unknown) e.configured_limit = 0;
        auto kept = make_limiter(config_of(changed, true));
        kept->import_keys(unknown, ImportMode::carry_used, t);
        CHECK(kept->feedback_view(4, t).limit == find_export(out, 4)->learned.limit);
    }
}

TEST_CASE("limit state: the vendor gate exports and imports its pauses and caps", "[limit][state]") {
    const Instant t = instant_at(50s);
    auto gate = sluice::limit::make_vendor_gate(sluice::limit::vendor_gate_config("v"));
    std::vector<KeyExport> out;
    gate->export_keys(t, out);
    CHECK(out.empty());
    gate->pause_until(0, t.mono + 5s, t, PauseReason{PauseCause::quota_spent, "x_ratelimit"});
    gate->cap_remaining(0, 2, t.mono + 9s, t);
    gate->export_keys(t, out);
    REQUIRE(out.size() == 1);
    CHECK(out[0].admitted.empty());
    CHECK(out[0].paused_until == t.mono + 5s);
    CHECK(out[0].pause_cause == PauseCause::quota_spent);
    CHECK(out[0].cap_remaining == 2);
    CHECK(out[0].cap_reset == t.mono + 9s);
    auto restored = sluice::limit::make_vendor_gate(sluice::limit::vendor_gate_config("v"));
    restored->import_keys(out, ImportMode::exact, t);
    for (Nanos mono = t.mono; mono < t.mono + 12s; mono += 250ms) {
        for (const std::int64_t cost : {1, 2, 3}) {
            const Decision a = gate->probe(0, cost, 0, instant_at(mono));
            const Decision b = restored->probe(0, cost, 0, instant_at(mono));
            CHECK(a.allowed == b.allowed);
            CHECK(a.earliest == b.earliest);
        }
    }
    CHECK_FALSE(restored->probe(0, 1, 0, instant_at(t.mono + 5s - 1ns)).allowed);
    CHECK(restored->probe(0, 2, 0, instant_at(t.mono + 5s)).allowed);
    CHECK_FALSE(restored->probe(0, 3, 0, instant_at(t.mono + 5s)).allowed);
}

TEST_CASE("limit state: importing into a tracked key counts at least what either counted", "[limit][state]") {
    for (const Case& c : round_trip_cases()) {
        INFO(c.label);
        const std::vector<KeyHash> keys{1, 2, 3};
        auto a = make_limiter(config_of(c, true));
        auto b = make_limiter(config_of(c, true));
        auto b_twin = make_limiter(config_of(c, true));  // b as it was before the merge
        std::mt19937_64 rng_a(98);
        std::mt19937_64 rng_b(99);
        std::mt19937_64 rng_twin(99);
        const Instant ta = admit_randomly(*a, rng_a, c, keys, 1s, 100);
        const Instant tb = admit_randomly(*b, rng_b, c, keys, 1s, 100);
        admit_randomly(*b_twin, rng_twin, c, keys, 1s, 100);
        const Instant t = ta.mono > tb.mono ? ta : tb;
        std::vector<KeyExport> from_a;
        a->export_keys(t, from_a);
        b->import_keys(from_a, ImportMode::exact, t);
        for (Nanos mono = t.mono; mono < t.mono + 2 * (c.window + c.margin);
             mono += (c.window + c.margin) / 7) {
            check_no_more_permissive(*a, *b, keys, capacity_of(c), instant_at(mono), kNever);
            check_no_more_permissive(*b_twin, *b, keys, capacity_of(c), instant_at(mono), kNever);
        }
    }
}

TEST_CASE("limit state: max_keys keeps the most used keys on import", "[limit][state]") {
    const Case c{"s", Algorithm::sliding_window, 50, 1min};
    const Instant t = instant_at(1min);
    auto original = make_limiter(config_of(c, true));
    for (KeyHash key = 1; key <= 10; ++key)
        original->consume(key, static_cast<std::int64_t>(key * 3 % 11), t);
    std::vector<KeyExport> out;
    original->export_keys(t, out);
    REQUIRE(out.size() == 10);
    auto config = config_of(c, true);
    config.max_keys = 4;
    auto restored = make_limiter(config);
    CHECK(restored->import_keys(out, ImportMode::exact, t) == 6);
    CHECK(restored->key_count() == 4);
    // Costs key * 3 % 11: 3 6 9 1 4 7 10 2 5 8; the four largest are keys 7 (10), 3 (9), 10 (8), 6 (7).
    for (KeyHash key = 1; key <= 10; ++key) {
        const bool kept = key == 7 || key == 3 || key == 10 || key == 6;
        INFO("key " << key);
        if (kept) {
            CHECK(restored->probe(key, 0, 0, t).remaining == 50 - static_cast<std::int64_t>(key * 3 % 11));
        } else {
            CHECK(restored->probe(key, 1, 0, t).key_capacity);
        }
    }
    // Tracked keys are merged without needing room.
    CHECK(restored->import_keys(out, ImportMode::exact, t) == 6);
    CHECK(restored->probe(7, 0, 0, t).remaining == 50 - 20);
    // Keys that count nothing any more take no room, and are not dropped.
    auto later = make_limiter(config);
    CHECK(later->import_keys(out, ImportMode::exact, instant_at(t.mono + 1min)) == 0);
    CHECK(later->key_count() == 0);
    // Ranked by what counts at the import: key 7's units have left, key 1's not.
    std::vector<KeyExport> aged{{7, {{t.mono - 2min, 30}}}, {1, {{t.mono, 3}}}, {2, {{t.mono, 6}}}};
    config.max_keys = 1;
    auto one = make_limiter(config);
    CHECK(one->import_keys(aged, ImportMode::exact, t) == 1);
    CHECK(one->probe(2, 0, 0, t).remaining == 44);
    CHECK(one->probe(1, 1, 0, t).key_capacity);
    // A pause alone is worth keeping over nothing.
    std::vector<KeyExport> paused{{8, {}}, {9, {}}};
    paused[1].paused_until = t.mono + 3min;
    CHECK(one->import_keys(paused, ImportMode::exact, instant_at(t.mono + 2min)) == 0);
    CHECK_FALSE(one->probe(9, 1, 0, instant_at(t.mono + 2min)).allowed);
}

TEST_CASE("limit state: exporting 10,000 keys is linear in their lots", "[limit][state]") {
    for (const std::int64_t limit : {std::int64_t{256}, std::int64_t{5000}}) {
        INFO("limit " << limit);
        auto l = make_limiter(config_of({"s", Algorithm::sliding_window, limit, 1min}, true));
        for (KeyHash key = 1; key <= 10'000; ++key) {
            for (int lot = 0; lot < 5; ++lot) l->consume(key, 40, instant_at(1s + lot * 1s));
        }
        std::vector<KeyExport> out;
        out.reserve(10'000);
        l->export_keys(instant_at(10s), out);
        REQUIRE(out.size() == 10'000);
        for (const KeyExport& e : out) {
            REQUIRE(e.admitted.size() <= 5);  // one lot per admission time (or per bucket), not per unit
            REQUIRE(units_of(e) == 200);
        }
        auto restored = make_limiter(config_of({"s", Algorithm::sliding_window, limit, 1min}, true));
        CHECK(restored->import_keys(out, ImportMode::exact, instant_at(10s)) == 0);
        CHECK(restored->key_count() == 10'000);
        CHECK(restored->probe(777, 0, 0, instant_at(10s)).remaining == limit - 200);
    }
}

TEST_CASE("refund: as if the admission had never happened, for the exact forms", "[limit][refund]") {
    const std::vector<Case> cases{
        {"sliding exact", Algorithm::sliding_window, 20, 10s},
        {"sliding exact, margin", Algorithm::sliding_window, 30, 10s, 1s},
        {"fixed", Algorithm::fixed_window, 20, 10s},
        {"fixed, margin", Algorithm::fixed_window, 20, 10s, 2s},
        {"fixed, margin = window", Algorithm::fixed_window, 20, 10s, 10s},
        {"fixed, time_zone", Algorithm::fixed_window, 40, 24h, 1h, 0, 0ns, "America/New_York"},
        {"sliding bucketed", Algorithm::sliding_window, 1000, 1min},
        {"token bucket", Algorithm::token_bucket, 10, 1s, 0ns, 10},
        {"token bucket, 3/s", Algorithm::token_bucket, 3, 1s, 0ns, 5}};
    std::uint64_t seed = 40;
    for (const Case& c : cases) {
        for (const bool at_once : {true, false}) {
            ++seed;
            INFO(c.label << (at_once ? ", refunded at once" : ", refunded later") << ", seed " << seed);
            // Exact when refunded at once; later, the token bucket gives back less
            // (what refilled since) and so may the bucketed sliding window.
            const bool exact = c.algorithm != Algorithm::token_bucket || at_once;
            const bool conservative_only = !exact || c.limit > sluice::limit::kSlidingExactMaxUnits;
            std::mt19937_64 rng(seed);
            const std::vector<KeyHash> keys{1, 2};
            auto refunded = make_limiter(config_of(c, true));
            auto never = make_limiter(config_of(c, true));  // never saw the refunded admissions
            const std::int64_t capacity = capacity_of(c);
            Nanos mono = 1s;
            struct Pending {
                KeyHash key;
                std::int64_t cost;
                Nanos at;
            };
            std::vector<Pending> pending;
            for (int step = 0; step < 300; ++step) {
                mono += random_below(rng, (c.window + c.margin) / 16);
                const Instant now = instant_at(mono);
                // Refunds come a little after their admission (a failed connect),
                // other admissions in between.
                if (rng() % 3 == 0) {
                    for (const Pending& p : pending) refunded->refund(p.key, p.cost, p.at, now);
                    pending.clear();
                }
                const KeyHash key = keys[rng() % keys.size()];
                const std::int64_t cost =
                    1 + static_cast<std::int64_t>(
                            rng() % static_cast<std::uint64_t>(std::max<std::int64_t>(capacity / 4, 1)));
                // Identical once every refund is in (for the exact forms); before, only stricter.
                check_no_more_permissive(*never, *refunded, keys, capacity, now,
                                         conservative_only || !pending.empty() ? kNever : 0ns);
                if (!refunded->probe(key, cost, 0, now).allowed) continue;
                refunded->consume(key, cost, now);
                if (rng() % 3 == 0) {
                    if (at_once) {
                        refunded->refund(key, cost, now.mono, now);
                    } else {
                        pending.push_back({key, cost, now.mono});
                    }
                } else {
                    never->consume(key, cost, now);
                }
            }
        }
    }
}

TEST_CASE("refund: nothing comes back once the units no longer count", "[limit][refund]") {
    SECTION("sliding window: after the window") {
        auto l = make_limiter(config_of({"s", Algorithm::sliding_window, 5, 10s}, false));
        l->consume(0, 5, instant_at(1s));
        l->consume(0, 5, instant_at(11s));  // the first five have left at 11 s
        l->refund(0, 5, 1s, instant_at(12s));
        CHECK(l->probe(0, 0, 0, instant_at(12s)).remaining == 0);
        l->refund(0, 2, 11s, instant_at(12s));
        CHECK(l->probe(0, 0, 0, instant_at(12s)).remaining == 2);
        l->refund(0, 9, 11s, instant_at(12s));  // never more than was admitted then
        CHECK(l->probe(0, 0, 0, instant_at(12s)).remaining == 5);
    }
    SECTION("fixed window: after the period rolled") {
        auto l = make_limiter(config_of({"f", Algorithm::fixed_window, 5, 10s}, false));
        // Wall time: kWallStart is a whole minute, so windows start at mono multiples of 10 s.
        l->consume(0, 3, instant_at(11s));
        l->consume(0, 4, instant_at(21s));
        l->refund(0, 3, 11s, instant_at(22s));
        CHECK(l->probe(0, 0, 0, instant_at(22s)).remaining == 1);
        l->refund(0, 4, 21s, instant_at(22s));
        CHECK(l->probe(0, 0, 0, instant_at(22s)).remaining == 5);
    }
    SECTION("bucketed sliding window: at most what the bucket holds") {
        auto l = make_limiter(config_of({"s", Algorithm::sliding_window, 1000, 1min}, false));
        l->consume(0, 10, instant_at(1s));
        l->refund(0, 50, 1s, instant_at(1s));
        CHECK(l->probe(0, 0, 0, instant_at(1s)).remaining == 1000);
        l->consume(0, 10, instant_at(1s));
        l->refund(0, 10, 1s, instant_at(2min));
        CHECK(l->probe(0, 0, 0, instant_at(2min)).remaining == 1000);
    }
    SECTION("token bucket: never above the bucket, less what refilled") {
        auto l = make_limiter(config_of({"t", Algorithm::token_bucket, 10, 1s, 0ns, 10}, false));
        l->consume(0, 4, instant_at(1s));
        l->refund(0, 4, 1s, instant_at(1s + 200ms));  // 2 tokens refilled since: 2 come back
        CHECK(l->probe(0, 0, 0, instant_at(1s + 200ms)).remaining == 10);
        l->consume(0, 10, instant_at(2s));
        l->refund(0, 10, 2s, instant_at(2s + 300ms));  // 3 refilled: 7 back, 10 in all
        CHECK(l->probe(0, 0, 0, instant_at(2s + 300ms)).remaining == 10);
        l->consume(0, 10, instant_at(3s));
        l->consume(0, 0, instant_at(3s));
        l->refund(0, 2, 3s, instant_at(3s + 100ms));  // 1 refilled + 1 back
        CHECK(l->probe(0, 0, 0, instant_at(3s + 100ms)).remaining == 2);
        l->refund(0, 2, 3s, instant_at(4s));  // a whole refill since: nothing to give back
        CHECK(l->probe(0, 0, 0, instant_at(4s)).remaining == 10);
    }
    SECTION("token bucket: an admission in between may have found the bucket full without it") {
        // Burst 2, one token per second. A takes one at 0 s, B one at 0.5 s. Without
        // A, B would have left the bucket full again at 1.5 s; with A refunded as
        // if its token were simply back, at 1 s: 2 tokens at 1.2 s would be too many.
        auto l = make_limiter(config_of({"t", Algorithm::token_bucket, 1, 1s, 0ns, 2}, false));
        l->consume(0, 1, instant_at(10s));
        l->consume(0, 1, instant_at(10s + 500ms));
        l->refund(0, 1, 10s, instant_at(10s + 500ms));
        CHECK_FALSE(l->probe(0, 2, 0, instant_at(11s + 200ms)).allowed);
        CHECK(l->probe(0, 2, 0, instant_at(11s + 500ms)).allowed);
    }
    SECTION("concurrency: a no-op") {
        auto l = make_limiter(config_of({"c", Algorithm::concurrency, 3, 0ns}, false));
        l->consume(0, 2, instant_at(1s));
        l->refund(0, 2, 1s, instant_at(1s));
        CHECK(l->probe(0, 0, 0, instant_at(1s)).remaining == 1);
    }
    SECTION("pauses and caps are untouched") {
        auto l = make_limiter(config_of({"s", Algorithm::sliding_window, 10, 10s}, false));
        const Instant t = instant_at(1s);
        l->cap_remaining(0, 4, t.mono + 5s, t);
        l->pause_until(0, t.mono + 1s, t, PauseReason{PauseCause::vendor_refused, "retry_after"});
        l->consume(0, 3, t);
        l->refund(0, 3, t.mono, t);
        CHECK_FALSE(l->probe(0, 1, 0, t).allowed);
        const Instant later = instant_at(t.mono + 1s);
        CHECK(l->probe(0, 1, 0, later).allowed);
        CHECK_FALSE(l->probe(0, 2, 0, later).allowed);  // the cap spent stays spent
        CHECK(l->probe(0, 0, 0, later).remaining == 1);
    }
}

TEST_CASE("refund: a fixed window gives nothing back across a wall clock step", "[limit][refund]") {
    auto l = make_limiter(config_of({"f", Algorithm::fixed_window, 5, 10s}, false));
    l->consume(0, 3, instant_at(11s));
    // The wall clock is stepped 3 s ahead (still the same window): the admission's
    // wall time can no longer be told from mono, so nothing is given back.
    const Instant stepped{12s, kWallStart + 12s + 3s};
    l->refund(0, 3, 11s, stepped);
    CHECK(l->probe(0, 0, 0, stepped).remaining == 2);
    // An admission after the step is refunded as usual.
    const Instant after{13s, kWallStart + 13s + 3s};
    l->consume(0, 1, after);
    l->refund(0, 1, after.mono, Instant{14s, kWallStart + 14s + 3s});
    CHECK(l->probe(0, 0, 0, Instant{14s, kWallStart + 14s + 3s}).remaining == 2);
}

TEST_CASE("limit state: a shadow limit's overdraft survives the round trip", "[limit][state]") {
    const std::vector<Case> cases{{"sliding exact", Algorithm::sliding_window, 10, 10s},
                                  {"sliding bucketed", Algorithm::sliding_window, 300, 10s},
                                  {"fixed", Algorithm::fixed_window, 10, 10s, 2s},
                                  {"token bucket", Algorithm::token_bucket, 10, 10s, 0ns, 10}};
    for (const Case& c : cases) {
        INFO(c.label);
        auto config = config_of(c, false);
        config.enforce = false;
        auto original = make_limiter(config);
        // Three times the limit, the oldest units folded into the log's lump.
        for (int i = 0; i < 6; ++i) original->consume(0, c.limit / 2, instant_at(1s + i * 1s));
        const Instant t = instant_at(7s);
        std::vector<KeyExport> out;
        original->export_keys(t, out);
        REQUIRE(out.size() == 1);
        CHECK(units_of(out[0]) > c.limit);
        auto restored = make_limiter(config);
        restored->import_keys(out, ImportMode::exact, t);
        for (Nanos mono = t.mono; mono < t.mono + 40s; mono += 900ms)
            check_no_more_permissive(*original, *restored, {0}, c.limit, instant_at(mono), 0ns);
    }
}

TEST_CASE("limit state: a fixed window's count survives a wall - mono offset that moved a little",
          "[limit][state]") {
    // Another process reads the clocks at other instants: its wall - mono offset differs by
    // the jitter between two readings, or by an NTP slew since the save. A lot dated at the
    // window's first nanosecond would then fall into the window before and count nowhere.
    for (const Nanos margin : {Nanos{0}, Nanos{1'000'000}}) {
        for (const Nanos shift :
             {Nanos{-1}, Nanos{1}, Nanos{-3'000'000}, Nanos{3'000'000}, Nanos{-2'000'000'000}}) {
            INFO("margin " << margin.count() << " ns, offset moved by " << shift.count() << " ns");
            Case c{"fixed", Algorithm::fixed_window, 10, 1h};
            c.margin = margin;
            const auto config = config_of(c, false);
            auto original = make_limiter(config);
            // 20 minutes into the hour (kWallStart is a whole hour).
            const Instant at = instant_at(20min);
            for (int i = 0; i < 6; ++i) original->consume(0, 1, at);
            std::vector<KeyExport> keys;
            original->export_keys(at, keys);
            auto restored = make_limiter(config);
            const Instant later{at.mono + 1s, at.wall + 1s + shift};
            restored->import_keys(keys, ImportMode::exact, later);
            CHECK(restored->probe(0, 4, 0, later).allowed);
            CHECK_FALSE(restored->probe(0, 5, 0, later).allowed);
        }
    }
}
