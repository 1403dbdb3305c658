#pragma once
// What sluice does about one vendor response: pure code in the style of an
// I/O-free state machine (Boost.Redis's writer_fsm). The proxy gathers the
// inputs (the parsed VendorSignal, each limit the request was admitted against
// with its own counts for the request's key, the upstream's settings, the
// request's retry eligibility, now) and gets back a list of actions to carry
// out (pause, cap, deficit, lower a learned limit on limit i; retry or relay)
// plus which counters to bump. Nothing here reads a clock, a socket or a
// limiter; docs/feedback.md states the rules in prose.
//
// Which limits a signal acts on (docs/feedback.md, "Which limit a signal
// describes"), first rule that names at least one of the request's limits:
//   1. the 429 body's limit type (limit_type_field) equal to a limit's
//      `feedback.vendor_limit_type`;
//   2. the vendor's stated limit (X-RateLimit-Limit, IETF quota) equal to a
//      limit's `feedback.vendor_limit` (default: its own `limit`);
//   3. otherwise every limit of the request (the signal names none of them).

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "sluice/common/clock.hpp"
#include "sluice/config/config.hpp"
#include "sluice/feedback/vendor_signals.hpp"

namespace sluice::feedback {

// One limit the request was admitted against, as seen for the request's key.
struct LimitInUse {
    const config::LimitConfig* config = nullptr;  // never null
    std::int64_t cost = 1;                        // units this request took
    // Units this limit admitted for this key after this request: the vendor had
    // not counted them when it answered (admission_tally.hpp).
    std::int64_t admitted_after = 0;
    std::int64_t counted = 0;         // units the limit counts now for this key (its window), before overlays
    std::int64_t limit_in_force = 0;  // the configured limit, or a learned lower one
};

struct ReactionInput {
    unsigned status = 0;
    const VendorSignal* signal = nullptr;
    const config::FeedbackSettings* settings = nullptr;
    std::span<const LimitInUse> limits;
    // The request may be sent again (idempotent or allowed, attempts left, body
    // at hand); whether it is depends on the pause fitting before `deadline`.
    bool retry_eligible = false;
    Nanos deadline{0};  // mono: the request's max_wait ends here
    Instant now;
};

struct FeedbackAction {
    enum class Kind : std::uint8_t {
        pause,        // no admission on limit `limit` (the request's key) before `until`
        cap,          // at most `units` more admissions on `limit` before `until`
        deficit,      // `units` more counted as admitted on `limit` before `until` (0 clears)
        lower_limit,  // lower the learned limit of `limit` to `units`
        retry,        // send the request again (through the queue; the pause holds it)
        relay,        // pass the vendor's response to the client
    };
    Kind kind = Kind::relay;
    std::size_t limit = 0;   // index into ReactionInput::limits
    Nanos until{0};          // mono
    std::int64_t units = 0;  // cap: units left; deficit: units; lower_limit: the new limit

    bool operator==(const FeedbackAction&) const = default;
};

// How a signal was matched to the request's limits.
enum class MatchRule : std::uint8_t { none, limit_type, limit_value, all_limits };
std::string_view match_rule_name(MatchRule rule) noexcept;

struct Reaction {
    std::vector<FeedbackAction> actions;  // limit actions first, then exactly one retry or relay
    MatchRule matched_by = MatchRule::none;
    std::optional<Nanos> pause;  // the pause applied (after a 429 or a Remaining of 0), for the log
    // Counters to bump (RouteFeedbackCounters): `retried` is not among them, it
    // counts when the retry is actually sent.
    bool vendor_429 = false;
    bool paused = false;
    bool capped = false;   // an allowance was lowered below what the limit itself allows
    bool lowered = false;  // a learned limit was lowered
    bool relayed_429 = false;

    bool retry() const noexcept {
        return !actions.empty() && actions.back().kind == FeedbackAction::Kind::retry;
    }
};

Reaction react(const ReactionInput& input);

// Which of `limits` the signal describes (rules 1-3 above); `rule` says which
// rule matched. Exposed for tests and logs.
std::vector<bool> match_limits(const VendorSignal& signal, std::span<const LimitInUse> limits,
                               MatchRule& rule);

// What the vendor accepted in this limit's window before refusing the request:
// what the limit counts, less the request itself and what was admitted after it
// (those reached the vendor after the refusal). Requests that overtake each
// other on the way to the vendor make it approximate (low, mostly).
std::int64_t accepted_before_refusal(const LimitInUse& use) noexcept;

}  // namespace sluice::feedback
