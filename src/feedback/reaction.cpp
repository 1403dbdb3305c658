#include "sluice/feedback/reaction.hpp"

#include <algorithm>

namespace sluice::feedback {

namespace {

using config::Algorithm;
using Kind = FeedbackAction::Kind;
__extension__ using Int128 = __int128;

// Limits counted per window: the only ones whose count a vendor's window count
// can be compared with, and the only ones a limit is learned for.
bool counts_a_window(const config::LimitConfig& limit) noexcept {
    return limit.algorithm == Algorithm::sliding_window || limit.algorithm == Algorithm::fixed_window;
}

std::int64_t vendor_limit_of(const config::LimitConfig& limit) noexcept {
    return limit.feedback.vendor_limit.value_or(limit.limit);
}

// The vendor's report describes this limit exactly: the same limit value over
// (by configuration) the same window. Then the vendor's count and the limit's
// own count can be compared unit for unit.
bool same_quota(const VendorSignal& signal, const config::LimitConfig& limit) noexcept {
    return counts_a_window(limit) && signal.limit && *signal.limit == limit.limit;
}

// Without a signal naming a limit, the refusal is taken to come from the limit
// closest to its own limit (the largest share used): learning on a limit that
// had room to spare (a daily quota while the per-second one refused) would
// lower it for days.
std::optional<std::size_t> fullest_window_limit(std::span<const LimitInUse> limits) {
    std::optional<std::size_t> best;
    for (std::size_t i = 0; i < limits.size(); ++i) {
        const auto& use = limits[i];
        if (!counts_a_window(*use.config) || !use.config->enforce || use.limit_in_force <= 0) continue;
        if (!best) {
            best = i;
            continue;
        }
        const auto& b = limits[*best];
        // counted / in_force > b.counted / b.in_force, without division.
        if (static_cast<Int128>(use.counted) * b.limit_in_force >
            static_cast<Int128>(b.counted) * use.limit_in_force)
            best = i;
    }
    return best;
}

// What a vendor's answer shows of its real limit, for the limits it may describe: after a
// bare 429, the units of ours it had accepted before the refused one; after a report that
// its window is spent, the units of ours it had accepted, this one included. Without a
// signal naming a limit, only the fullest limit learns (fullest_window_limit).
enum class Evidence : std::uint8_t { refused, spent };

void learn_limit(const ReactionInput& in, const std::vector<bool>& targets, MatchRule rule, Evidence evidence,
                 Reaction& out) {
    const auto& signal = *in.signal;
    const bool named = rule == MatchRule::limit_type || rule == MatchRule::limit_value;
    std::vector<std::size_t> candidates;
    if (rule == MatchRule::all_limits) {
        if (const auto best = fullest_window_limit(in.limits)) candidates.push_back(*best);
    } else {
        for (std::size_t i = 0; i < in.limits.size(); ++i) {
            if (!targets[i] || !counts_a_window(*in.limits[i].config)) continue;
            // A spent window on the very quota configured is another consumer's doing,
            // which the deficit accounts for (apply_remaining), not a stricter limit.
            if (evidence == Evidence::spent && named && same_quota(signal, *in.limits[i].config)) continue;
            candidates.push_back(i);
        }
    }
    for (const std::size_t i : candidates) {
        const auto& use = in.limits[i];
        std::int64_t learned = evidence == Evidence::refused
                                   ? accepted_before_refusal(use)
                                   : std::max<std::int64_t>(use.counted - use.admitted_after, 0);
        // A vendor that states a limit below this one's (and so was not matched by it) is believed.
        if (rule == MatchRule::all_limits && signal.limit && *signal.limit > 0)
            learned = std::min(learned, *signal.limit);
        learned = std::max<std::int64_t>(learned, 1);
        // Every reading below the configured limit goes to the limiter, which
        // averages the readings of one window's refusals (keyed_limiter.hpp).
        if (learned < use.config->limit) out.actions.push_back({Kind::lower_limit, i, Nanos{0}, learned});
        if (learned < use.limit_in_force) out.lowered = true;
    }
}

void apply_remaining(const ReactionInput& in, const std::vector<bool>& targets, MatchRule rule,
                     Reaction& out) {
    const auto& signal = *in.signal;
    const std::int64_t remaining = std::max<std::int64_t>(*signal.remaining, 0);
    const Nanos reset_at = in.now.mono + *signal.reset_after;
    const bool named = rule == MatchRule::limit_type || rule == MatchRule::limit_value;
    for (std::size_t i = 0; i < in.limits.size(); ++i) {
        if (!targets[i]) continue;
        const auto& use = in.limits[i];
        const std::int64_t allowance = remaining - use.admitted_after;
        if (named && same_quota(signal, *use.config)) {
            // The vendor's count, less the units of this limit it has seen, is
            // what someone else spent: count that, and nothing of our own twice.
            // (vendor used) - (ours it has seen) = (limit - remaining) - (counted - admitted_after).
            const std::int64_t deficit = (use.config->limit - remaining) - (use.counted - use.admitted_after);
            // Until the vendor's reset and no longer: the next window is the vendor's to
            // report (its first answer there sets the deficit again if the other consumer
            // is still at it); carrying it over would hold back units the vendor has.
            out.actions.push_back({Kind::deficit, i, reset_at, std::max<std::int64_t>(deficit, 0)});
            if (deficit > 0) out.capped = true;
            continue;
        }
        if (remaining == 0) {
            // The vendor's window is spent and nothing says how it relates to this limit's.
            out.actions.push_back({Kind::pause, i, reset_at, 0});
            out.paused = true;
            out.pause = *signal.reset_after;
            continue;
        }
        const std::int64_t clamped = std::max<std::int64_t>(allowance, 0);
        out.actions.push_back({Kind::cap, i, reset_at, clamped});
        if (clamped < use.limit_in_force - use.counted) out.capped = true;
    }
    // A vendor whose window is spent before this limit's is stricter than configured, exactly like
    // one that refuses (learn_limit), only without the 429: learn what it accepted of ours,
    // this request included, so the next windows stop there too instead of running into the wall.
    if (in.settings->learn && remaining == 0) learn_limit(in, targets, rule, Evidence::spent, out);
    // A vendor that states a lower limit than the only limit it can describe.
    if (in.settings->learn && rule == MatchRule::all_limits && in.limits.size() == 1 && signal.limit &&
        *signal.limit > 0 && counts_a_window(*in.limits[0].config) &&
        *signal.limit < in.limits[0].limit_in_force) {
        out.actions.push_back({Kind::lower_limit, 0, Nanos{0}, *signal.limit});
        out.lowered = true;
    }
}

}  // namespace

std::string_view match_rule_name(MatchRule rule) noexcept {
    switch (rule) {
        case MatchRule::none: return "none";
        case MatchRule::limit_type: return "limit_type";
        case MatchRule::limit_value: return "limit_value";
        case MatchRule::all_limits: return "all_limits";
    }
    return "none";
}

std::vector<bool> match_limits(const VendorSignal& signal, std::span<const LimitInUse> limits,
                               MatchRule& rule) {
    std::vector<bool> targets(limits.size(), false);
    bool any = false;
    if (!signal.limit_type.empty()) {
        for (std::size_t i = 0; i < limits.size(); ++i) {
            const auto& type = limits[i].config->feedback.vendor_limit_type;
            if (!type.empty() && type == signal.limit_type) targets[i] = any = true;
        }
        if (any) {
            rule = MatchRule::limit_type;
            return targets;
        }
    }
    if (signal.limit) {
        for (std::size_t i = 0; i < limits.size(); ++i) {
            const auto& limit = *limits[i].config;
            if (limit.algorithm != Algorithm::vendor_gate && limit.algorithm != Algorithm::concurrency &&
                vendor_limit_of(limit) == *signal.limit)
                targets[i] = any = true;
        }
        if (any) {
            rule = MatchRule::limit_value;
            return targets;
        }
    }
    rule = limits.empty() ? MatchRule::none : MatchRule::all_limits;
    std::fill(targets.begin(), targets.end(), true);
    return targets;
}

std::int64_t accepted_before_refusal(const LimitInUse& use) noexcept {
    return std::max<std::int64_t>(use.counted - use.cost - use.admitted_after, 0);
}

Reaction react(const ReactionInput& in) {
    Reaction out;
    const auto& signal = *in.signal;
    const auto& settings = *in.settings;
    MatchRule rule = MatchRule::none;
    const auto targets = match_limits(signal, in.limits, rule);
    out.matched_by = rule;

    if (signal.rate_limited) {
        out.vendor_429 = true;
        const Nanos pause =
            std::min(signal.pause.value_or(settings.default_pause), settings.signals.max_pause);
        if (settings.pause_on_429 && pause > Nanos::zero()) {
            out.pause = pause;
            out.paused = true;
            for (std::size_t i = 0; i < in.limits.size(); ++i)
                if (targets[i]) out.actions.push_back({Kind::pause, i, in.now.mono + pause, 0});
        }
        // A 429 that states the vendor's remaining count explains itself (the
        // vendor's count, someone else's share included); only a bare one is
        // evidence of a limit stricter than configured.
        if (settings.learn && !signal.remaining) learn_limit(in, targets, rule, Evidence::refused, out);
        // Without the pause nothing would hold a retry back: the client decides.
        if (settings.pause_on_429 && in.retry_eligible && in.now.mono + pause <= in.deadline) {
            out.actions.push_back({Kind::retry, 0, in.now.mono + pause, 0});
        } else {
            out.relayed_429 = true;
            out.actions.push_back({Kind::relay, 0, Nanos{0}, 0});
        }
        return out;
    }
    if (settings.cap_from_remaining && signal.remaining && signal.reset_after &&
        *signal.reset_after > Nanos::zero())
        apply_remaining(in, targets, rule, out);
    out.actions.push_back({Kind::relay, 0, Nanos{0}, 0});
    return out;
}

}  // namespace sluice::feedback
