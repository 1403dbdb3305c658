#pragma once
// The admission controller: the one place that decides when a request may be
// forwarded. Pure code (no Asio): it takes Instants and returns decisions as
// values; the I/O layer (proxy/limit_service) owns the single timer that calls
// poll() at next_wakeup(), and serialises all calls (it is not thread-safe).
//
// Contract:
// - A request is admitted only if every limit it uses allows it, and then it
//   consumes from all of them (all-or-nothing). Shadow limits (enforce: false)
//   are counted but never block.
// - The admission order (docs/priorities.md): a waiting request stands at its
//   arrival moved later by AdmissionRequest::handicap (its priority class), or
//   at its fair-share start tag plus the handicap (AdmissionRequest::fair_share),
//   then at its arrival sequence; fixed at arrival. Without classes or fair
//   shares it is the arrival order. Below, "older" means "ahead in this order",
//   and the units of a request that yields on a (limit, key) (AdmissionRequest::
//   yields) are not counted there for requests of other bands.
// - Waiting requests sit in a FIFO queue per (route, keys of its limits, band),
//   bounded by max_depth. Within a queue, strict FIFO: only the head may be
//   admitted. Across queues, heads are visited oldest first whenever capacity
//   appears, and a head (or a newcomer with no queue of its own) may go when
//   either rule allows it:
//   * the strict rule: every enforced limit has room now for its cost plus the
//     units of all OLDER waiting requests on the same (limit, key). Requests
//     that compete for a limit are served in arrival order; nobody starves.
//   * work conservation (AdmissionOptions::work_conserving, on by default):
//     every enforced limit has room now for its own cost, and on each
//     (limit, key) where older requests wait, it cannot delay them. Let B be
//     the earliest moment any of those older requests could be admitted by
//     its time-based limits under the strict rule (the least bound of their
//     queue heads, a lower bound). Then
//       - time-based limits (sliding, fixed, token bucket, vendor gate): after
//         its cost is taken now, the limit still has room at B for ALL the
//         older units (Limiter::room_later). Room only grows with time, so
//         each older request still has room at its own turn: its earliest
//         admission is exactly what it was.
//       - concurrency: B is at least lend_horizon away. A lent permit is one
//         the strict rule would have kept idle for lend_horizon or longer; if
//         the exchange holding it outlasts that, an older request that could
//         otherwise go waits for it, by at most (that exchange's duration -
//         lend_horizon), so never longer than the upstream timeout less the
//         horizon. Meanwhile nothing more is lent on that limit (B is then
//         closer than lend_horizon), and the permits go back in arrival order.
//     So each older request keeps the earliest admission the strict rule gave
//     it when it was overtaken (rate limits), or gets it later by at most the
//     lent exchange's excess over lend_horizon (concurrency). If a request
//     further ahead leaves afterwards (cancel, timeout), its turn comes sooner
//     and it may not gain all of that, but never ends up later than that time.
//     An older request that may go now (B <= now) lends nothing: it goes first.
//     Older units that need several windows (a backlog) rarely all fit at B,
//     so behind such a backlog the strict rule decides alone.
//   The oracle test (tests/unit/queue/admission_oracle_test.cpp) checks both
//   rules against brute-force models at every admission.
// - A request is refused AT ONCE (never after waiting in vain) when its queue is
//   full, or when the earliest possible admission, counting the units already
//   waiting ahead of it (each limit estimates the waves they take), is later
//   than its max_wait less the scheduling slack (below). (That estimate follows
//   the strict rule: lending might have let it go sooner, never later.) A queued request whose
//   deadline passes, or whose earliest admission moves past its deadline (e.g. a
//   vendor pause), is refused then; one is never admitted after its deadline
//   (a late poll refuses it).
// - The scheduling slack, min(10 ms, max_wait / 10): admissions happen when the
//   I/O layer's timer fires, a little after the exact moment, and each wave of
//   a sliding window starts from when the previous one actually went. A
//   request whose estimate falls in the last 10 ms of its max_wait would miss
//   its deadline by that lateness and get its 429 only after waiting; it is
//   refused at arrival instead.
// - cancel() removes a waiting request (client gone); it consumes nothing.
// - No polling: next_wakeup() is the exact moment something can change (a head
//   becoming admissible, or a deadline), kNever when only a release can help.
//   For a head that could be lent capacity once its own limits have room, that
//   moment; otherwise the moment the strict rule could admit it (a head that
//   becomes lendable because an older one's bound moved later is seen at its
//   next probe: on a release, cancel, feedback, refusal, or its own time).

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "sluice/common/clock.hpp"
#include "sluice/common/error.hpp"
#include "sluice/config/config.hpp"
#include "sluice/limit/limiter.hpp"
#include "sluice/limit/request_key.hpp"
#include "sluice/queue/last_minute_counts.hpp"

namespace sluice::queue {

using TicketId = std::uint64_t;  // unique per controller, never 0

// How much earlier than its deadline a request's estimated admission must be
// for it to be queued (see the contract above).
constexpr Nanos kSchedulingSlack{10'000'000};
constexpr Nanos scheduling_slack(Nanos max_wait) {
    return max_wait / 10 < kSchedulingSlack ? max_wait / 10 : kSchedulingSlack;
}

// How much a younger request may borrow from older waiters that cannot go yet
// (see the contract above).
struct AdmissionOptions {
    // Off: the strict rule alone (a head goes only with room for every older
    // unit waiting on its keys). For comparisons and tests.
    bool work_conserving = true;
    // A concurrency permit is lent to a younger request only while every older
    // waiter on that limit is held back by its time-based limits for at least
    // this long; an older waiter is delayed only by a lent exchange that lasts
    // longer than this, and by at most its excess.
    Nanos lend_horizon{500'000'000};
};

struct AdmissionRequest {
    std::size_t route_index = 0;
    std::vector<limit::LimitUse> uses;  // may be empty: admitted at once
    Nanos max_wait{0};          // this request's effective max_wait (route's, or the client's smaller one)
    std::size_t max_depth = 0;  // the route's queue bound
    // Priority classes and fair shares (docs/priorities.md): the request competes
    // as if it had arrived this much later (>= 0). Its class's rank below the
    // highest times the aging step, plus its caller's fair-share lag. 0 for all
    // requests: today's arrival order.
    Nanos handicap{0};
    // Fair sharing between the callers of one limit (docs/priorities.md): among
    // the requests of `group`, start-time fair queueing by caller.
    struct FairShare {
        std::size_t group = 0;     // which fair-shared limit (an index into Config::limits)
        std::uint64_t caller = 0;  // who is asking (a hash of the caller's name)
        Nanos step{0};  // this request's cost in virtual time: units * time per unit * total weight / weight
    };
    std::optional<FairShare> fair_share;
    // Bit i: on uses[i]'s (limit, key) this request yields (docs/priorities.md, a capped class):
    // its units there are never counted ahead of a request of another band (class, caller), so
    // while it waits for its own cap it holds nobody else back on the limit it shares. It then
    // gets that limit's room only as the others leave it. Uses past the 64th never yield.
    std::uint64_t yields = 0;
};

// A fair-shared request's AdmissionRequest::FairShare::step: its cost in time at the limit's
// full rate (window / limit per unit; 1 s / limit for a concurrency limit), times the limit's
// total weight over its caller's weight. Callers backlogged together then advance their tags
// about as fast as the clock, so the tags stay comparable with arrival times (classes, other
// routes). Saturates at a day per request.
Nanos fair_share_step(const config::LimitConfig& limit, std::int64_t cost, std::int64_t weight);

// What a request of `priority_class` asks on route `route_index` (Config::routes), with the uses
// and marks limit::collect_limit_uses made: its handicap (class index * aging), yields and fair
// share. The client session and `sluice simulate` both ask the controller with it.
AdmissionRequest make_admission_request(const config::Config& config, std::size_t route_index,
                                        const std::vector<limit::LimitUse>& uses,
                                        const limit::UseMarks& marks, std::size_t priority_class,
                                        Nanos max_wait);

enum class Outcome { admitted, queued, rejected };

// What one limit did to the requests that used it, since the controller began
// (metrics and the admin pages). A request counts once on each limit it uses
// when admitted, queued or waiting; a refusal counts only on the limit that
// refused it (Admission::limiting_limit). Refusals on drain (shutting_down)
// and cancels are not the limit's doing: they only end a wait.
struct LimitActivity {
    std::uint64_t admitted = 0;  // admitted at once or after waiting
    std::uint64_t queued = 0;    // had to wait (then admitted, refused or cancelled)
    std::uint64_t refused = 0;   // queue_full, admission_timeout or key_capacity, on this limit
    std::size_t waiting = 0;     // waiting now
    // Shadow limits (enforce: false) only: admissions this limit would have refused.
    std::uint64_t shadow_would_refuse = 0;
    // `queued` and `refused` over the last minute (mono time of each; read with
    // the caller's now): what a status page opened a moment ago can show.
    LastMinuteCounts queued_last_minute;
    LastMinuteCounts refused_last_minute;
};

// The requests waiting on one (limit, key) (admin pages).
struct KeyWaiting {
    std::size_t requests = 0;
    std::int64_t units = 0;       // their cost on this limit
    Nanos oldest_since = kNever;  // mono arrival of the oldest (kNever: none waits)
};

struct QueueState {
    std::size_t depth = 0;  // waiting requests in this request's queue (after the decision)
    std::size_t max_depth = 0;
};

struct Admission {
    Outcome outcome = Outcome::rejected;
    TicketId ticket = 0;
    Nanos at{0};             // mono: when it was decided (admitted: when its units were consumed)
    Errc reason = Errc::ok;  // rejected: queue_full | admission_timeout | key_capacity
    Nanos retry_after{0};    // rejected: precise delay until a retry could be admitted (0 if unknown)
    std::optional<std::size_t>
        limiting_limit;        // the limit that refused / is tightest (index into Config::limits)
    limit::Decision tightest;  // that limit's decision: limit, remaining, reset (for headers)
    QueueState queue;
    bool shadow_would_refuse = false;  // admitted: a shadow limit (enforce: false) would have refused
    // Admitted through the shared stage (shared_stage.hpp): the id of its leases in the shared
    // store, given back when the exchange ends (LimitService::release). 0: none.
    std::uint64_t lease = 0;
};

class AdmissionController {
public:
    // `limiters[i]` enforces Config::limits[i]; the controller owns them.
    explicit AdmissionController(std::vector<std::unique_ptr<limit::Limiter>> limiters,
                                 AdmissionOptions options = {});
    ~AdmissionController();

    // Admitted now, queued (ticket to wait on), or rejected now.
    Admission submit(AdmissionRequest request, const Instant& now);

    // Decides what can be decided at `now`: queued requests that are now
    // admitted (consumed) or refused (deadline). Each queued ticket appears in
    // exactly one Admission returned by poll(), unless cancelled first.
    std::vector<Admission> poll(const Instant& now);

    // When poll() should next be called; kNever if nothing is waiting on time.
    Nanos next_wakeup(const Instant& now);

    // The client went away while queued. Returns false if the ticket is not waiting.
    bool cancel(TicketId ticket, const Instant& now);

    // Refuses every waiting request with `reason` (e.g. shutting_down on drain),
    // oldest first; each ticket's Admission is returned exactly once, as poll()
    // would return it, so the I/O layer answers it through the usual path.
    std::vector<Admission> reject_all(Errc reason, const Instant& now);

    // An admitted exchange ended: return concurrency permits. Call poll() after.
    void release(const std::vector<limit::LimitUse>& uses, const Instant& now);

    // The admitted request never reached the vendor (it could not be connected):
    // its units go back to its rate limits (Limiter::refund). Call poll() after.
    void refund(const std::vector<limit::LimitUse>& uses, Nanos admitted_at, const Instant& now);
    // The vendor charged more than an admitted request's cost (docs/costs.md, settle): each
    // use's `cost` is the extra units, counted at `now` even past the limit (Limiter::charge).
    void charge(const std::vector<limit::LimitUse>& uses, const Instant& now);

    // Vendor feedback pass-throughs (pause/cap a limit's key); call poll() after.
    void pause_until(std::size_t limit_index, limit::KeyHash key, Nanos until, const Instant& now);
    void cap_remaining(std::size_t limit_index, limit::KeyHash key, std::int64_t remaining, Nanos reset_at,
                       const Instant& now);

    // Vendor feedback that needs more than the two calls above (a deficit, a
    // learned limit, a count to read): the limiter to act on, with the queue
    // told that its heads may have changed. Call poll() after.
    limit::Limiter& feedback_target(std::size_t limit_index);

    // Reload (limits are never renumbered; a config's limits map to these
    // indexes by their StableId, proxy/limit_service): a new limit, at the next index.
    std::size_t add_limiter(std::unique_ptr<limit::Limiter> limiter);

    // Reload: these limits take no new requests. A retired limit with a
    // successor has handed its state over to it (limit_state.hpp); requests
    // waiting on it now wait on the successor instead, keeping their tickets,
    // deadlines and arrival order (every queue is rebuilt in arrival order), and
    // release, pause, cap and feedback_target on it reach the successor (release
    // reaches both: the successor carried its permits in flight). One without a
    // successor (the limit is gone) stops holding its waiters back.
    struct Retirement {
        std::size_t limit_index = 0;
        std::optional<std::size_t> successor;
    };
    void retire(const std::vector<Retirement>& retirements, const Instant& now);
    bool retired(std::size_t limit_index) const;

    // Drain: nobody waits past `close_at` (mono). Every waiter's deadline, and
    // every later request's, is cut to it; one that cannot be admitted by then
    // is refused shutting_down (at the next poll, or at arrival), not after
    // waiting in vain. What is still waiting at the close is refused then.
    // Returns the refusals made now, as poll() would.
    std::vector<Admission> close_queue_at(Nanos close_at, const Instant& now);

    std::size_t waiting() const;  // requests queued across all queues
    const LimitActivity& activity(std::size_t limit_index) const;
    // When the oldest request waiting on this limit arrived (mono; kNever: none
    // waits). O(1): cheap enough to ask under the admission lock for every limit.
    Nanos oldest_waiting_since(std::size_t limit_index) const;
    // The requests waiting on one key of an enforced limit, O(1) (a hash lookup);
    // nullopt for a shadow limit (enforce: false), which holds nobody back and so
    // keeps no per-key line (its waiting requests wait on other limits).
    std::optional<KeyWaiting> waiting_on(std::size_t limit_index, limit::KeyHash key) const;
    std::size_t queue_count() const;  // non-empty queues (an empty queue is forgotten at once)
    const limit::Limiter& limiter(std::size_t limit_index) const;
    std::size_t limiter_count() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace sluice::queue
