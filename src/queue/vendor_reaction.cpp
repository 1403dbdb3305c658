#include "sluice/queue/vendor_reaction.hpp"

namespace sluice::queue {

limit::PauseReason pause_reason_of(const feedback::VendorSignal& signal) noexcept {
    if (signal.rate_limited) {
        return {limit::PauseCause::vendor_refused,
                signal.pause ? feedback::signal_source_name(signal.pause_source) : "default_pause"};
    }
    return {limit::PauseCause::quota_spent, feedback::signal_source_name(signal.reset_source)};
}

bool changes_limits(const feedback::Reaction& reaction) noexcept {
    using Kind = feedback::FeedbackAction::Kind;
    for (const auto& action : reaction.actions)
        if (action.kind != Kind::retry && action.kind != Kind::relay) return true;
    return false;
}

feedback::Reaction react_to_vendor(AdmissionController& controller, const std::vector<limit::LimitUse>& uses,
                                   const std::vector<std::int64_t>& admitted_after,
                                   const feedback::VendorSignal& signal,
                                   const config::FeedbackSettings& settings, unsigned status,
                                   bool retry_eligible, Nanos deadline, const Instant& now,
                                   std::vector<SharedFeedbackAction>* shared) {
    std::vector<feedback::LimitInUse> limits;
    limits.reserve(uses.size());
    for (std::size_t i = 0; i < uses.size(); ++i) {
        auto& limiter = controller.feedback_target(uses[i].limit_index);
        const auto view = limiter.feedback_view(uses[i].key, now);
        limits.push_back(feedback::LimitInUse{&limiter.config(), uses[i].cost,
                                              i < admitted_after.size() ? admitted_after[i] : 0, view.counted,
                                              view.limit});
    }
    auto reaction = feedback::react(
        feedback::ReactionInput{status, &signal, &settings, limits, retry_eligible, deadline, now});
    for (const auto& action : reaction.actions) {
        using Kind = feedback::FeedbackAction::Kind;
        if (action.kind == Kind::retry || action.kind == Kind::relay) continue;
        const auto& use = uses[action.limit];
        auto& limiter = controller.feedback_target(use.limit_index);
        if (shared && (action.kind == Kind::pause || action.kind == Kind::cap))
            shared->emplace_back(use, action);
        switch (action.kind) {
            case Kind::pause: limiter.pause_until(use.key, action.until, now, pause_reason_of(signal)); break;
            case Kind::cap: limiter.cap_remaining(use.key, action.units, action.until, now); break;
            case Kind::deficit: limiter.set_deficit(use.key, action.units, action.until, now); break;
            case Kind::lower_limit: limiter.lower_learned(use.key, action.units, now); break;
            case Kind::retry:
            case Kind::relay: break;
        }
    }
    return reaction;
}

}  // namespace sluice::queue
