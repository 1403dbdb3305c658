// Translating a saved snapshot to the current process (restore.hpp's rules, one case each),
// with explicit Instants: same boot and other boot, wall clock steps forward and back.
#include "sluice/state/restore.hpp"

#include <numeric>

#include <catch2/catch.hpp>

namespace {

using namespace std::chrono_literals;
using sluice::Instant;
using sluice::Nanos;
using sluice::config::Algorithm;
using sluice::config::LimitConfig;
using sluice::limit::AdmittedLot;
using sluice::limit::ImportMode;
using sluice::limit::KeyExport;
using sluice::limit::PauseCause;
using sluice::limit::stable_id;
using namespace sluice::state;

constexpr Nanos kWall0 = Nanos{1'700'000'000'000'000'000};  // the save's wall time
const Instant kSavedAt{1000s, kWall0};
constexpr std::string_view kBoot = "boot-a";

LimitConfig limit_config(std::string name, Algorithm algorithm, std::int64_t limit, Nanos window) {
    LimitConfig c;
    c.name = std::move(name);
    c.algorithm = algorithm;
    c.limit = limit;
    c.window = window;
    return c;
}

LimitSnapshot saved_limit(const LimitConfig& config, std::vector<KeyExport> keys) {
    return LimitSnapshot{stable_id(config), config.algorithm, config.window, config.margin, std::move(keys)};
}

KeyExport key_with_lots(std::uint64_t hash, std::vector<AdmittedLot> lots) {
    KeyExport key;
    key.key = hash;
    key.admitted = std::move(lots);
    return key;
}

StateSnapshot snapshot_of(std::vector<LimitSnapshot> limits, std::string boot = std::string(kBoot)) {
    StateSnapshot s;
    s.saved_at = kSavedAt;
    s.boot_id = std::move(boot);
    s.limits = std::move(limits);
    return s;
}

std::int64_t units_of(const LimitRestore& restore) {
    std::int64_t units = 0;
    for (const auto& key : restore.keys) {
        for (const auto& lot : key.admitted) units += lot.units;
    }
    return units;
}

const LimitConfig kDaily = limit_config("daily", Algorithm::fixed_window, 1000, 24h);
const LimitConfig kHourly = limit_config("hourly", Algorithm::sliding_window, 100, 1h);

}  // namespace

TEST_CASE("restore: limits match by name; same id exact, changed carry_used, gone dropped",
          "[state][restore]") {
    auto changed = kHourly;
    changed.limit = 50;
    const auto gone = limit_config("gone", Algorithm::sliding_window, 5, 1h);
    const auto saved = snapshot_of({saved_limit(kDaily, {key_with_lots(1, {{990s, 3}})}),
                                    saved_limit(kHourly, {key_with_lots(2, {{990s, 4}})}),
                                    saved_limit(gone, {key_with_lots(3, {{990s, 5}})})});
    const std::vector<LimitConfig> current{changed, kDaily};  // another order than saved
    const auto plan = plan_restore(saved, current, Instant{1010s, kWall0 + 10s}, kBoot);
    REQUIRE(plan.limits.size() == 2);
    CHECK(plan.limits[0].current_index == 1);
    CHECK(plan.limits[0].mode == ImportMode::exact);
    CHECK(units_of(plan.limits[0]) == 3);
    CHECK(plan.limits[1].current_index == 0);
    CHECK(plan.limits[1].mode == ImportMode::carry_used);
    CHECK(units_of(plan.limits[1]) == 4);
    CHECK(plan.dropped == std::vector<std::string>{"gone: no longer configured"});
    CHECK(plan.same_boot);
    CHECK_FALSE(plan.clocks_disagree);
    CHECK(plan.downtime == 10s);
}

TEST_CASE("restore: a limit saved twice is restored once", "[state][restore]") {
    const auto saved = snapshot_of({saved_limit(kDaily, {key_with_lots(1, {{990s, 3}})}),
                                    saved_limit(kDaily, {key_with_lots(1, {{990s, 9}})})});
    const auto plan = plan_restore(saved, {kDaily}, Instant{1010s, kWall0 + 10s}, kBoot);
    REQUIRE(plan.limits.size() == 1);
    CHECK(units_of(plan.limits[0]) == 3);
    CHECK(plan.dropped == std::vector<std::string>{"daily: saved more than once (the first is restored)"});
}

TEST_CASE("restore: same boot keeps mono times; ended pauses, caps and deficits are dropped",
          "[state][restore]") {
    KeyExport key = key_with_lots(7, {{400s, 2}, {990s, 3}});
    key.paused_until = 1100s;
    key.pause_cause = PauseCause::vendor_refused;
    key.cap_remaining = 4;
    key.cap_reset = 1050s;  // over at 1060 s
    key.deficit = 5;
    key.deficit_until = 1200s;
    key.learned = {80, 900s, 950s, 2};
    const auto saved = snapshot_of({saved_limit(kDaily, {key})});
    const auto plan = plan_restore(saved, {kDaily}, Instant{1060s, kWall0 + 60s}, kBoot);
    REQUIRE(plan.limits.size() == 1);
    CHECK(plan.limits[0].mode == ImportMode::exact);
    REQUIRE(plan.limits[0].keys.size() == 1);
    const auto& restored = plan.limits[0].keys[0];
    CHECK(restored.admitted == std::vector<AdmittedLot>{{400s, 2}, {990s, 3}});
    CHECK(restored.paused_until == 1100s);
    CHECK(restored.pause_cause == PauseCause::vendor_refused);
    CHECK(restored.cap_remaining == -1);
    CHECK(restored.cap_reset == 0s);
    CHECK(restored.deficit == 5);
    CHECK(restored.deficit_until == 1200s);
    CHECK(restored.learned.limit == 80);
    CHECK(restored.learned.lowered_at == 900s);
    CHECK(restored.learned.raised_at == 950s);

    // A pause ending exactly now is over.
    const auto later = plan_restore(saved, {kDaily}, Instant{1100s, kWall0 + 100s}, kBoot);
    CHECK(later.limits[0].keys[0].paused_until == 0s);
    CHECK(later.limits[0].keys[0].pause_cause == PauseCause::unspecified);
}

TEST_CASE("restore: same boot, a wall step beyond 1 s makes the clocks disagree", "[state][restore]") {
    const auto saved = snapshot_of({saved_limit(kDaily, {key_with_lots(1, {{990s, 600}})}),
                                    saved_limit(kHourly, {key_with_lots(2, {{990s, 60}})})});
    SECTION("within 1 s: agree") {
        for (const auto wall_step : {1s, -1s}) {
            const auto plan =
                plan_restore(saved, {kDaily, kHourly}, Instant{1060s, kWall0 + 60s + wall_step}, kBoot);
            CHECK_FALSE(plan.clocks_disagree);
            CHECK(plan.limits[0].mode == ImportMode::exact);
            CHECK(plan.limits[1].mode == ImportMode::exact);
        }
    }
    for (const Nanos wall_step : {Nanos{1s} + Nanos{1}, -Nanos{1s} - Nanos{1}, Nanos{2h}, -Nanos{2h}}) {
        INFO("wall step " << wall_step.count() << " ns");
        const auto plan =
            plan_restore(saved, {kDaily, kHourly}, Instant{1060s, kWall0 + 60s + wall_step}, kBoot);
        CHECK(plan.same_boot);
        CHECK(plan.clocks_disagree);
        CHECK_FALSE(plan.wall_went_back);
        // The fixed window's period cannot be placed: its units count as used now.
        CHECK(plan.limits[0].mode == ImportMode::carry_used);
        CHECK(units_of(plan.limits[0]) == 600);
        // The sliding window trusts mono: the lot keeps its time.
        CHECK(plan.limits[1].mode == ImportMode::exact);
        CHECK(plan.limits[1].keys[0].admitted == std::vector<AdmittedLot>{{990s, 60}});
    }
}

TEST_CASE("restore: another boot moves times by the wall clock; downtime counts as elapsed",
          "[state][restore]") {
    KeyExport key = key_with_lots(9, {{990s, 3}, {999s, 4}});
    key.paused_until = 1200s;  // 200 s after the save
    key.cap_remaining = 2;
    key.cap_reset = 1050s;  // 50 s after the save: over after 100 s down
    const auto saved = snapshot_of({saved_limit(kDaily, {key})});
    // The new boot's mono clock starts near 0; 100 s of wall time went by.
    const Instant now{5s, kWall0 + 100s};
    for (const std::string_view boot_now : {"boot-b", ""}) {
        const auto plan = plan_restore(saved, {kDaily}, now, boot_now);
        CHECK_FALSE(plan.same_boot);
        CHECK_FALSE(plan.clocks_disagree);
        CHECK(plan.downtime == 100s);
        REQUIRE(plan.limits.size() == 1);
        CHECK(plan.limits[0].mode == ImportMode::exact);
        const auto& restored = plan.limits[0].keys[0];
        // t' = now.mono - (now.wall - (saved.wall + (t - saved.mono))): 10 s before the save, 100 s ago.
        CHECK(restored.admitted == std::vector<AdmittedLot>{{5s - 110s, 3}, {5s - 101s, 4}});
        CHECK(restored.paused_until == 105s);
        CHECK(restored.cap_remaining == -1);
    }
    // An unknown boot id on the saved side is another boot too.
    const auto plan = plan_restore(snapshot_of({saved_limit(kDaily, {key})}, ""), {kDaily}, now, "");
    CHECK_FALSE(plan.same_boot);
    CHECK(plan.limits[0].keys[0].paused_until == 105s);
}

TEST_CASE("restore: the same boot id with a mono clock behind the save is another boot", "[state][restore]") {
    const auto saved = snapshot_of({saved_limit(kHourly, {key_with_lots(1, {{990s, 3}})})});
    const auto plan = plan_restore(saved, {kHourly}, Instant{20s, kWall0 + 30s}, kBoot);
    CHECK_FALSE(plan.same_boot);
    CHECK(plan.limits[0].keys[0].admitted[0].at == 20s - 40s);
}

TEST_CASE("restore: another boot with the wall clock behind the save carries every limit as used",
          "[state][restore]") {
    KeyExport key = key_with_lots(1, {{990s, 600}});
    key.paused_until = 1030s;
    const auto saved =
        snapshot_of({saved_limit(kDaily, {key}), saved_limit(kHourly, {key_with_lots(2, {{999s, 60}})})});
    const Instant now{5s, kWall0 - 1h};
    const auto plan = plan_restore(saved, {kDaily, kHourly}, now, "boot-b");
    CHECK(plan.wall_went_back);
    CHECK(plan.clocks_disagree);
    CHECK(plan.downtime == 0s);
    REQUIRE(plan.limits.size() == 2);
    for (const auto& restore : plan.limits) {
        CHECK(restore.mode == ImportMode::carry_used);
        for (const auto& k : restore.keys) {
            for (const auto& lot : k.admitted) CHECK(lot.at <= now.mono);
        }
    }
    CHECK(units_of(plan.limits[0]) == 600);
    CHECK(units_of(plan.limits[1]) == 60);
    // The pause is lengthened by the step rather than shortened (30 s after the save, 1 h back).
    CHECK(plan.limits[0].keys[0].paused_until == 5s + 30s + 1h);
}

TEST_CASE("restore: sliding-window lots older than window + margin are dropped, and empty keys with them",
          "[state][restore]") {
    auto hourly = kHourly;
    hourly.margin = 1min;
    const auto saved = snapshot_of(
        {saved_limit(hourly, {key_with_lots(1, {{100s, 1}, {990s, 2}}), key_with_lots(2, {{200s, 5}})})});
    // Same boot, 3000 s later (4000 s): 100 s + 3660 s and 200 s + 3660 s are past, 990 s is not.
    auto plan = plan_restore(saved, {hourly}, Instant{4000s, kWall0 + 3000s}, kBoot);
    REQUIRE(plan.limits[0].keys.size() == 1);
    CHECK(plan.limits[0].keys[0].admitted == std::vector<AdmittedLot>{{990s, 2}});
    // At exactly window + margin after the lot it counts no more.
    plan = plan_restore(saved, {hourly}, Instant{990s + 1h + 1min, kWall0 + 1h + 1min - 10s}, kBoot);
    CHECK(plan.limits[0].keys.empty());
    // A fixed window's lots are left to the limiter, whatever their age.
    const auto fixed = snapshot_of({saved_limit(kDaily, {key_with_lots(1, {{100s, 1}})})});
    CHECK(plan_restore(fixed, {kDaily}, Instant{100'000s, kWall0 + 99'000s}, kBoot).limits[0].keys.size() ==
          1);
}

TEST_CASE("restore: no clock jump restores a fresh daily quota", "[state][restore]") {
    // 600 of 1000 used today, saved at kSavedAt.
    const auto saved = snapshot_of({saved_limit(kDaily, {key_with_lots(1, {{400s, 300}, {990s, 300}})})});
    struct Case {
        const char* what;
        Instant now;
        std::string_view boot;
    };
    const std::vector<Case> cases{
        {"same boot, wall stepped forward a day", {1060s, kWall0 + 60s + 24h}, kBoot},
        {"same boot, wall stepped back a day", {1060s, kWall0 + 60s - 24h}, kBoot},
        {"other boot, wall went back", {5s, kWall0 - 10min}, "boot-b"},
        {"other boot, one minute down", {5s, kWall0 + 1min}, "boot-b"},
        {"same boot, no step", {1060s, kWall0 + 60s}, kBoot},
    };
    for (const auto& c : cases) {
        INFO(c.what);
        const auto plan = plan_restore(saved, {kDaily}, c.now, c.boot);
        REQUIRE(plan.limits.size() == 1);
        const auto& restore = plan.limits[0];
        // Every used unit is carried ...
        CHECK(units_of(restore) == 600);
        // ... and, when its time is kept, dated no later than it would be without the jump:
        // within the last minute-and-a-bit of mono time, as the save saw it.
        if (restore.mode == ImportMode::exact) {
            CHECK_FALSE(plan.clocks_disagree);
            for (const auto& lot : restore.keys[0].admitted) {
                CHECK(lot.at <= c.now.mono);
                CHECK(c.now.mono - lot.at <= (kSavedAt.mono - 400s) + 1min);
            }
        }
    }
}

TEST_CASE("restore: worth_saving and keep_worth_saving", "[state][restore]") {
    const auto minute = 1min;
    CHECK(worth_saving(limit_config("f", Algorithm::fixed_window, 10, 1s), minute));
    CHECK(worth_saving(limit_config("s", Algorithm::sliding_window, 10, 1min), minute));
    CHECK_FALSE(worth_saving(limit_config("s", Algorithm::sliding_window, 10, 59s), minute));
    CHECK(worth_saving(limit_config("t", Algorithm::token_bucket, 10, 1h), minute));
    CHECK_FALSE(worth_saving(limit_config("t", Algorithm::token_bucket, 10, 1s), minute));
    CHECK_FALSE(worth_saving(limit_config("c", Algorithm::concurrency, 10, 0s), minute));
    CHECK_FALSE(worth_saving(limit_config("g", Algorithm::vendor_gate, 0, 0s), minute));
    CHECK(worth_saving(limit_config("s", Algorithm::sliding_window, 10, 1s), 0s));

    const Instant now{1000s, kWall0};
    KeyExport paused = key_with_lots(1, {});
    paused.paused_until = 1001s;
    KeyExport pause_over = key_with_lots(2, {});
    pause_over.paused_until = 1000s;
    KeyExport capped = key_with_lots(3, {{999s, 1}});
    capped.cap_remaining = 0;
    capped.cap_reset = 1500s;
    const KeyExport counted = key_with_lots(4, {{999s, 1}});
    const std::vector<KeyExport> all{paused, pause_over, capped, counted};

    auto keys = all;
    keep_worth_saving(limit_config("c", Algorithm::concurrency, 10, 0s), minute, now, keys);
    REQUIRE(keys.size() == 2);
    CHECK(keys[0].key == 1);
    CHECK(keys[1].key == 3);

    keys = all;
    keep_worth_saving(limit_config("s", Algorithm::sliding_window, 10, 1s), minute, now, keys);
    CHECK(keys.size() == 2);

    keys = all;
    keep_worth_saving(limit_config("f", Algorithm::fixed_window, 10, 1h), minute, now, keys);
    CHECK(keys.size() == 4);
}
