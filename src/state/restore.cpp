#include "sluice/state/restore.hpp"

#include <algorithm>
#include <limits>
#include <unordered_map>
#include <unordered_set>

namespace sluice::state {

namespace {

// Times read from a file are any 64-bit values: arithmetic on them saturates rather than wraps.
Nanos saturating_add(Nanos a, Nanos b) {
    std::int64_t sum = 0;
    if (__builtin_add_overflow(a.count(), b.count(), &sum))
        return b.count() > 0 ? Nanos::max() : Nanos::min();
    return Nanos{sum};
}

Nanos saturating_sub(Nanos a, Nanos b) {
    std::int64_t difference = 0;
    if (__builtin_sub_overflow(a.count(), b.count(), &difference))
        return b.count() < 0 ? Nanos::max() : Nanos::min();
    return Nanos{difference};
}

Nanos abs_nanos(Nanos d) {
    return d == Nanos::min() ? Nanos::max() : (d < Nanos::zero() ? -d : d);
}

// Moves a saved mono time into the current timeline: by `offset` (0 within a boot).
// 0 stays 0: it means "none" (no pause, not raised).
class Translation {
public:
    explicit Translation(Nanos offset) : offset_(offset) {}
    Nanos operator()(Nanos saved) const {
        if (saved == Nanos::zero()) return saved;
        return saturating_add(saved, offset_);
    }

private:
    Nanos offset_;
};

bool has_state(const limit::KeyExport& key) {
    return !key.admitted.empty() || key.paused_until != Nanos::zero() || key.cap_remaining >= 0 ||
           key.deficit != 0 || key.learned.limit != 0;
}

limit::KeyExport translate_key(const limit::KeyExport& saved, const Translation& move, const Instant& now,
                               Nanos sliding_span, bool prune_lots) {
    limit::KeyExport key = saved;
    key.admitted.clear();
    for (const auto& lot : saved.admitted) {
        // Never after now: a lot from the future would count longer than any window.
        const auto at = std::min(move(lot.at), now.mono);
        if (prune_lots && saturating_add(at, sliding_span) <= now.mono) continue;
        key.admitted.push_back(limit::AdmittedLot{at, lot.units});
    }
    key.paused_until = move(saved.paused_until);
    if (key.paused_until <= now.mono) {
        key.paused_until = Nanos::zero();
        key.pause_cause = limit::PauseCause::unspecified;
    }
    key.cap_reset = move(saved.cap_reset);
    if (key.cap_remaining < 0 || key.cap_reset <= now.mono) {
        key.cap_remaining = -1;
        key.cap_reset = Nanos::zero();
    }
    key.deficit_until = move(saved.deficit_until);
    if (key.deficit == 0 || key.deficit_until <= now.mono) {
        key.deficit = 0;
        key.deficit_until = Nanos::zero();
    }
    if (key.learned.limit != 0) {
        key.learned.lowered_at = std::min(move(saved.learned.lowered_at), now.mono);
        key.learned.raised_at = std::min(move(saved.learned.raised_at), now.mono);
    }
    return key;
}

}  // namespace

RestorePlan plan_restore(const StateSnapshot& saved, const std::vector<config::LimitConfig>& current_limits,
                         const Instant& now, std::string_view boot_id_now) {
    RestorePlan plan;
    const auto mono_elapsed = saturating_sub(now.mono, saved.saved_at.mono);
    const auto wall_elapsed = saturating_sub(now.wall, saved.saved_at.wall);
    // A mono clock behind the save's cannot be the same boot's, whatever the ids say.
    plan.same_boot = !boot_id_now.empty() && boot_id_now == saved.boot_id && mono_elapsed >= Nanos::zero();
    Nanos offset{0};
    if (plan.same_boot) {
        plan.clocks_disagree = abs_nanos(saturating_sub(wall_elapsed, mono_elapsed)) > kClockTolerance;
        plan.downtime = mono_elapsed;
    } else {
        // t' = now.mono - (now.wall - (saved.wall + (t - saved.mono))) = t + offset.
        offset = saturating_sub(mono_elapsed, wall_elapsed);
        plan.wall_went_back = wall_elapsed < Nanos::zero();
        plan.clocks_disagree = plan.wall_went_back;
        plan.downtime = std::max(wall_elapsed, Nanos::zero());
    }
    const Translation move(offset);

    std::unordered_map<std::string_view, std::size_t> current_by_name;
    for (std::size_t i = 0; i < current_limits.size(); ++i)
        current_by_name.emplace(current_limits[i].name, i);
    std::unordered_set<std::string_view> restored;

    for (const auto& limit : saved.limits) {
        const auto& name = limit.id.name;
        const auto found = current_by_name.find(name);
        if (found == current_by_name.end()) {
            plan.dropped.push_back(name + ": no longer configured");
            continue;
        }
        if (!restored.insert(name).second) {
            plan.dropped.push_back(name + ": saved more than once (the first is restored)");
            continue;
        }
        const auto& current = current_limits[found->second];
        LimitRestore restore;
        restore.current_index = found->second;
        const bool same_limit = limit::stable_id(current) == limit.id;
        const bool calendar = limit.algorithm == config::Algorithm::fixed_window ||
                              current.algorithm == config::Algorithm::fixed_window;
        const bool times_trusted = !plan.wall_went_back && !(plan.clocks_disagree && calendar);
        restore.mode = same_limit && times_trusted ? limit::ImportMode::exact : limit::ImportMode::carry_used;
        // Only a sliding window says when a lot stops counting (a token bucket's lot of more
        // than `limit` units takes longer than one window to refill; a fixed window's period is
        // decided by the wall clock): those lots are left to the limiter.
        const bool prune = !plan.wall_went_back && limit.algorithm == config::Algorithm::sliding_window;
        const auto span = saturating_add(limit.window, limit.margin);
        for (const auto& key : limit.keys) {
            auto moved = translate_key(key, move, now, span, prune);
            if (has_state(moved)) restore.keys.push_back(std::move(moved));
        }
        plan.limits.push_back(std::move(restore));
    }
    return plan;
}

bool worth_saving(const config::LimitConfig& config, Nanos min_window) {
    switch (config.algorithm) {
        case config::Algorithm::fixed_window: return true;
        case config::Algorithm::sliding_window:
        case config::Algorithm::token_bucket: return config.window >= min_window;
        case config::Algorithm::concurrency:
        case config::Algorithm::vendor_gate: return false;
    }
    return false;
}

void keep_worth_saving(const config::LimitConfig& config, Nanos min_window, const Instant& now,
                       std::vector<limit::KeyExport>& keys) {
    if (worth_saving(config, min_window)) return;
    std::erase_if(keys, [&](const limit::KeyExport& key) {
        const bool paused = key.paused_until > now.mono;
        const bool capped = key.cap_remaining >= 0 && key.cap_reset > now.mono;
        return !paused && !capped;
    });
}

}  // namespace sluice::state
