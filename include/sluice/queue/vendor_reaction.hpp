#pragma once
// A vendor's answer acted on (docs/feedback.md): each limit the request used is
// read for its key (count, limit in force), the pure feedback::react decides, and
// its limit actions are carried out on the controller's limiters. Pure code, no
// lock and no clock: the daemon calls it under LimitService's lock, `sluice
// simulate` on its simulated clock, so both run the very same feedback.

#include <cstdint>
#include <utility>
#include <vector>

#include "sluice/common/clock.hpp"
#include "sluice/config/config.hpp"
#include "sluice/feedback/reaction.hpp"
#include "sluice/feedback/vendor_signals.hpp"
#include "sluice/limit/limiter.hpp"
#include "sluice/limit/request_key.hpp"
#include "sluice/queue/admission_controller.hpp"

namespace sluice::queue {

// A pause or cap that other replicas must hear of too (the shared store).
using SharedFeedbackAction = std::pair<limit::LimitUse, feedback::FeedbackAction>;

// Runs feedback::react on `uses` (what the request took; `admitted_after[i]` is what
// uses[i]'s limit admitted for its key after the request, missing entries 0) and applies
// its pause, cap, deficit and lower_limit actions to the limiters. The retry or relay is
// the caller's, and so is the poll (changes_limits says whether one is due). Pauses and
// caps are appended to `shared` when it is not null.
feedback::Reaction react_to_vendor(AdmissionController& controller, const std::vector<limit::LimitUse>& uses,
                                   const std::vector<std::int64_t>& admitted_after,
                                   const feedback::VendorSignal& signal,
                                   const config::FeedbackSettings& settings, unsigned status,
                                   bool retry_eligible, Nanos deadline, const Instant& now,
                                   std::vector<SharedFeedbackAction>* shared);

// Whether the reaction acted on a limiter (anything but its retry or relay): the
// queue's heads may then have changed.
bool changes_limits(const feedback::Reaction& reaction) noexcept;

// What a pause from this signal is kept as (the admin pages' "why"). A refusal
// pauses for the signal's pause, or the upstream's default_pause when it gave
// none; a 0 remaining pauses until the reset it gave.
limit::PauseReason pause_reason_of(const feedback::VendorSignal& signal) noexcept;

}  // namespace sluice::queue
