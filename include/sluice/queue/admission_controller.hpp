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
// - Waiting requests sit in a FIFO queue per (route, keys of its limits),
//   bounded by max_depth. Within a queue, strict FIFO: only the head may be
//   admitted. Across queues, whenever capacity appears the oldest admissible
//   head goes first, so requests that compete for a limit are served in arrival
//   order and nobody starves. Precisely: a head may go when every enforced
//   limit has room for its cost plus the units of all OLDER waiting requests
//   on the same (limit, key), so a younger request may pass an older one that
//   is blocked on another limit, but never takes capacity the older one needs.
// - A request is refused AT ONCE (never after waiting in vain) when its queue is
//   full, or when the earliest possible admission, counting the units already
//   waiting ahead of it (each limit estimates the waves they take), is later
//   than its max_wait less the scheduling slack (below). A queued request whose
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

namespace sluice::queue {

using TicketId = std::uint64_t;  // unique per controller, never 0

// How much earlier than its deadline a request's estimated admission must be
// for it to be queued (see the contract above).
constexpr Nanos kSchedulingSlack{10'000'000};
constexpr Nanos scheduling_slack(Nanos max_wait) {
    return max_wait / 10 < kSchedulingSlack ? max_wait / 10 : kSchedulingSlack;
}

struct AdmissionRequest {
    std::size_t route_index = 0;
    std::vector<limit::LimitUse> uses;  // may be empty: admitted at once
    Nanos max_wait{0};          // this request's effective max_wait (route's, or the client's smaller one)
    std::size_t max_depth = 0;  // the route's queue bound
};

enum class Outcome { admitted, queued, rejected };

struct QueueState {
    std::size_t depth = 0;  // waiting requests in this request's queue (after the decision)
    std::size_t max_depth = 0;
};

struct Admission {
    Outcome outcome = Outcome::rejected;
    TicketId ticket = 0;
    Errc reason = Errc::ok;  // rejected: queue_full | admission_timeout | key_capacity
    Nanos retry_after{0};    // rejected: precise delay until a retry could be admitted (0 if unknown)
    std::optional<std::size_t>
        limiting_limit;        // the limit that refused / is tightest (index into Config::limits)
    limit::Decision tightest;  // that limit's decision: limit, remaining, reset (for headers)
    QueueState queue;
};

class AdmissionController {
public:
    // `limiters[i]` enforces Config::limits[i]; the controller owns them.
    explicit AdmissionController(std::vector<std::unique_ptr<limit::Limiter>> limiters);
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

    // Vendor feedback pass-throughs (pause/cap a limit's key); call poll() after.
    void pause_until(std::size_t limit_index, limit::KeyHash key, Nanos until, const Instant& now);
    void cap_remaining(std::size_t limit_index, limit::KeyHash key, std::int64_t remaining, Nanos reset_at,
                       const Instant& now);

    // Vendor feedback that needs more than the two calls above (a deficit, a
    // learned limit, a count to read): the limiter to act on, with the queue
    // told that its heads may have changed. Call poll() after.
    limit::Limiter& feedback_target(std::size_t limit_index);

    std::size_t waiting() const;      // requests queued across all queues
    std::size_t queue_count() const;  // non-empty queues (an empty queue is forgotten at once)
    const limit::Limiter& limiter(std::size_t limit_index) const;
    std::size_t limiter_count() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace sluice::queue
