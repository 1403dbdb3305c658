#pragma once
// Moving a saved snapshot's limit state into the current process: which saved limit goes
// to which configured one, how (ImportMode), and its times translated to the current mono
// timeline. Pure code: the caller passes `now` and the boot id it read.
//
// The rules, each one tested (tests/unit/state/restore_test.cpp):
// - Limits match by name. Same StableId: ImportMode::exact; same name, other fingerprint
//   (parameters changed): carry_used; a name no longer configured: dropped (listed, with why).
// - Same boot (boot ids equal and not empty): the host's CLOCK_MONOTONIC did not restart, so
//   mono times are kept as they are. If the wall clock moved differently from mono between
//   the save and now by more than kClockTolerance (an NTP step, either way), the clocks
//   disagree: mono stays the truth for sliding-window and token-bucket lots, but fixed
//   windows, whose periods are decided by wall time that cannot be trusted, are restored
//   with carry_used.
// - Another boot (or a boot id unknown on either side): times move by the wall clock,
//       t' = now.mono - (now.wall - (saved.wall + (t - saved.mono)))
//   so the downtime counts as elapsed. If now.wall < saved_at.wall (the clock went back
//   past the save), nothing can be dated: every limit is carry_used (its lots count as
//   consumed now, for a whole new window: never a fresh quota).
// - Pause, cap and deficit end times translate the same way; those already over at `now`
//   are dropped. A lot is never dated after `now` (a later date is clamped to now).
// - When the times are trusted (not the clock-went-back case), sliding-window lots older
//   than the saved window plus margin are dropped: they count no more. Keys left with
//   nothing to carry are dropped.
// A wall clock step can therefore shorten or lengthen what the lots count for only across
// a reboot, where no other clock exists; within a boot it never makes a quota fresh.

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/common/clock.hpp"
#include "sluice/config/config.hpp"
#include "sluice/limit/limit_state.hpp"
#include "sluice/state/snapshot.hpp"

namespace sluice::state {

// How far the two clocks may drift apart between a save and a restore before a step is assumed.
inline constexpr Nanos kClockTolerance = std::chrono::seconds(1);

// One configured limit's state to import (Limiter::import_keys).
struct LimitRestore {
    std::size_t current_index = 0;  // into the current Config::limits
    limit::ImportMode mode = limit::ImportMode::exact;
    std::vector<limit::KeyExport> keys;  // times in the current mono timeline
};

struct RestorePlan {
    std::vector<LimitRestore> limits;
    std::vector<std::string> dropped;  // "name: why", one per saved limit not restored
    bool same_boot = false;            // mono times were kept as saved
    bool clocks_disagree = false;      // a wall step since the save (same boot), or the wall clock went back
    bool wall_went_back = false;       // now.wall < saved_at.wall: every limit is carry_used
    Nanos downtime{0};                 // wall (or, same boot, mono) time since the save; 0 if negative
};

RestorePlan plan_restore(const StateSnapshot& saved, const std::vector<config::LimitConfig>& current_limits,
                         const Instant& now, std::string_view boot_id_now);

// Whether a limit's counts are worth carrying across a restart: fixed windows always (a
// daily quota), sliding windows and token buckets when their window is at least
// `min_window` (a shorter one is refilled before a restart is over), concurrency and the
// implicit vendor gates never (what is in flight ends with the process).
bool worth_saving(const config::LimitConfig& config, Nanos min_window);

// Filters one limit's export for saving: all of it if worth_saving(), else only the keys under
// a vendor pause or cap still in force at `now` (a vendor's "no more until" outlives any window).
void keep_worth_saving(const config::LimitConfig& config, Nanos min_window, const Instant& now,
                       std::vector<limit::KeyExport>& keys);

}  // namespace sluice::state
