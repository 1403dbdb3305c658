#pragma once
// The shared stage of admission (docs/distributed.md): limits shared by several
// sluice replicas through a store that answers over the network (Redis).
//
// Pure code, like the AdmissionController it follows: no I/O, time passed in,
// every effect returned as a value (asks to send to the store, decisions to
// deliver, leases to give back). The I/O layer (proxy/limit_service and
// proxy/shared_store) carries them out and feeds the store's answers back in.
//
// A request reaches this stage once the local stage (the AdmissionController,
// whose in-memory limiters hold the FULL limits) has admitted it: a replica
// alone can never exceed a shared limit, so the local stage only orders and
// bounds. Here the requests wait in FIFO lines, one per set of (limit, key) they
// use; only a line's head asks the store, with ONE atomic decision for all of
// its limits. Refused, the line sleeps until the earliest admission time the
// store gave (plus jitter, so replicas do not ask in lockstep); a replica with
// nothing waiting asks nothing. A request that cannot be admitted before its
// deadline is refused at once.
//
// When the store cannot answer, each limit follows its on_redis_failure:
// `local` admits within limit / replicas, counted by an in-memory limiter that
// sees every admission of this replica (so it is warm when the store goes);
// `deny` refuses shared_state_unavailable; `allow` checks nothing more.
// Admissions made meanwhile are kept (bounded) so that they can be recorded
// in the store when it answers again: its counts only ever grow.

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <unordered_map>
#include <vector>

#include "sluice/common/clock.hpp"
#include "sluice/config/config.hpp"
#include "sluice/limit/limit_state.hpp"
#include "sluice/limit/limiter.hpp"
#include "sluice/limit/request_key.hpp"
#include "sluice/queue/admission_controller.hpp"

namespace sluice::queue {

// The store's answer to one ask, its times already in this process's mono clock.
struct StoreAnswer {
    enum class Kind : std::uint8_t {
        decided,      // the store decided (allowed or refused)
        unavailable,  // no answer (disconnected, timed out, an error reply): the failure policy applies
    };
    Kind kind = Kind::decided;
    bool allowed = false;
    // Refused: when it could be admitted (kNever when nothing predicts it: a concurrency
    // limit waits for a release somewhere). Allowed: unused.
    Nanos earliest = kNever;
    // The limit that refused, or the tightest one (an index into the ask's uses), with its decision.
    std::optional<std::size_t> limiting;
    limit::Decision decision;
};

// Ask the store for all of `uses` at once, for the request `ticket`.
struct StoreAsk {
    TicketId ticket = 0;
    std::vector<limit::LimitUse> uses;
};

// An admission made without the store (fallback `local` or `allow`), to be recorded in it later.
struct FallbackLot {
    limit::LimitUse use;
    Nanos at{0};  // mono
};

struct SharedStageOptions {
    unsigned replicas = 1;  // the local fallback's share: limit / replicas
    // Before the store has ever answered, requests wait this long for it (then the fallback applies).
    Nanos connect_grace = std::chrono::seconds(1);
    // A concurrency refusal predicts nothing: ask again after this (a local release asks at once).
    Nanos permit_retry = std::chrono::milliseconds(20);
    std::size_t max_fallback_lots = 100'000;
    // Back from the fallback, the share still applies for the longest window plus this: about as
    // long as the other replicas may take to reconnect (their backoff's cap plus a connect).
    Nanos return_guard{0};
};

class SharedStage {
public:
    explicit SharedStage(SharedStageOptions options, const Instant& now);

    // A limit's slot takes part (every limit when the backend is shared). Idempotent per slot.
    void add_limit(std::size_t slot, const config::LimitConfig& config);
    bool shared(std::size_t slot) const { return slot < fallback_.size() && fallback_[slot] != nullptr; }

    // A request the local stage admitted (`local`, kept for its headers and passed on) enters;
    // `deadline` (mono) is when it stops waiting.
    void enter(TicketId ticket, std::vector<limit::LimitUse> uses, const Admission& local, Nanos deadline,
               const Instant& now);

    // The store answered the ask for `ticket`.
    void answered(TicketId ticket, const StoreAnswer& answer, const Instant& now);

    // A request that leaves this stage without being admitted: the units the local stage gave
    // it are the caller's to give back (refund and release).
    struct LocalUnits {
        TicketId ticket = 0;
        std::vector<limit::LimitUse> uses;
        Nanos admitted_at{0};  // mono: when the local stage admitted it
    };
    // The client left. Its local units, if it was waiting here.
    std::optional<LocalUnits> cancel(TicketId ticket);

    // The store can (up) or cannot answer. Up again: the caller records take_fallback_lots() first.
    void set_available(bool up, const Instant& now);
    bool available() const { return mode_ == Mode::shared; }
    bool in_fallback() const { return mode_ == Mode::fallback; }
    // Back from the fallback: how long the share still applies (0: not any more).
    Nanos return_guard_left(const Instant& now) const {
        return mode_ == Mode::shared && guard_until_ > now.mono ? guard_until_ - now.mono : Nanos{0};
    }

    // An admitted exchange ended: its concurrency permits go back to the fallback limiters,
    // and lines waiting for a permit ask again.
    void released(const std::vector<limit::LimitUse>& uses, const Instant& now);

    // What the I/O layer must do now.
    struct Step {
        std::vector<StoreAsk> asks;
        std::vector<Admission> decided;  // admitted (lease = ticket) or refused
        // Refused requests whose local units the caller gives back (refund + release).
        std::vector<LocalUnits> refused_uses;
        // Admitted through the store: leases to renew while their exchange runs.
        std::vector<std::pair<TicketId, std::vector<limit::LimitUse>>> admitted_leases;
        // Admitted in the store after the request had gone (cancelled, past its deadline): the
        // store's concurrency permits must be released under this lease.
        std::vector<std::pair<TicketId, std::vector<limit::LimitUse>>> orphan_leases;
        bool empty() const {
            return asks.empty() && decided.empty() && refused_uses.empty() && orphan_leases.empty();
        }
    };
    // Drain: every waiting request is refused with `reason` (their asks' answers only give back).
    void reject_all(Errc reason, const Instant& now, Step& step);
    // Advances to `now`: deadlines, due lines, the fallback. Appends to `step`.
    void poll(const Instant& now, Step& step);
    // When poll() should next run (kNever: nothing waits on time).
    Nanos next_wakeup() const;

    // Admissions made without the store since the last call (then forgotten here).
    std::vector<FallbackLot> take_fallback_lots();
    std::size_t dropped_fallback_lots() const { return dropped_lots_; }
    // Every admission of this replica the fallback limiters still count (the store lost its data).
    std::vector<FallbackLot> recent_lots(const Instant& now) const;

    std::size_t waiting() const { return entries_.size(); }
    std::uint64_t fallback_admissions() const { return fallback_admissions_; }
    // Of those, admitted with a limit that checked nothing (on_redis_failure: allow): fail open.
    std::uint64_t fallback_allowed_open() const { return fallback_open_; }
    std::uint64_t denied() const { return denied_; }

private:
    enum class Mode : std::uint8_t { connecting, shared, fallback };
    struct Line;
    struct Entry {
        TicketId ticket = 0;
        std::vector<limit::LimitUse> uses;
        Admission local;
        Nanos deadline{0};
        Line* line = nullptr;
        bool asking = false;
        // No time to wait (max_wait 0, Sluice-Max-Wait: 0): admitted if its first ask finds room,
        // refused otherwise. Kept out of `deadlines_` so that it is asked at all.
        bool ask_once = false;
        std::uint32_t refusals = 0;    // answers that refused it (the jitter shrinks with them)
        Nanos last_earliest = kNever;  // the last refusal's earliest (for Retry-After)
        std::optional<std::size_t> last_limiting;
        limit::Decision last_decision;
    };
    struct Line {
        std::vector<std::pair<std::size_t, limit::KeyHash>> id;
        std::deque<TicketId> fifo;
        Nanos due = kNever;      // when the line may act; kNever: waiting for answers or a release
        std::size_t asking = 0;  // its requests whose ask is out (each counted until answered or removed)
        // A refusal came (since the last admission): only the head asks, once nothing is out.
        // Open (the usual case): every request asks at once, pipelined, up to kMaxAsking.
        bool blocked = false;
        bool waits_for_permit = false;
    };
    using LineId = std::vector<std::pair<std::size_t, limit::KeyHash>>;
    // Asks out at once per open line: enough to keep one connection's pipeline full, bounded so
    // that a refusal wastes few asks.
    static constexpr std::size_t kMaxAsking = 32;

    void schedule(Line& line, Nanos due);
    void admit(Entry& entry, const Instant& now, Step& step, bool via_store);
    void refuse(Entry& entry, Errc reason, Nanos retry_after, const Instant& now, Step& step);
    void remove(TicketId ticket);  // from its line and every index
    void act(Line& line, const Instant& now, Step& step);
    void ask(Entry& entry, Step& step);
    // The fallback's answer for the head: admitted, refused, or the time to look again.
    void act_fallback(Entry& entry, const Instant& now, Step& step);
    // A fresh draw per refusal, shrinking with the refusals this request already took: requests
    // refused together on several replicas come back spread out, and the longest refused comes
    // back first (an approximation of FIFO across replicas: docs/distributed.md, "Fairness").
    Nanos jitter(const Entry& entry, Nanos delay, const Instant& now) const;
    // Back from the fallback: until guard_until_, a head asks the store only when its fallback
    // share (on_redis_failure: local) has room too. The replicas come back one by one, and the
    // first back would otherwise take from the store what the others, still on their shares and
    // not yet merged, have already sent. Returns the time to look again, or 0 to ask now.
    Nanos guard_wait(Entry& entry, const Instant& now, bool& waits_for_permit);

    SharedStageOptions options_;
    Mode mode_ = Mode::connecting;
    Nanos connecting_until_{0};
    Nanos guard_until_{0};
    Nanos guard_span_{0};  // the longest window (+ margin) of the shared rate limits
    std::vector<std::unique_ptr<limit::Limiter>> fallback_;  // by slot; null: not shared
    std::vector<const config::LimitConfig*> configs_;        // by slot
    std::unordered_map<TicketId, Entry> entries_;
    std::map<LineId, Line> lines_;
    std::set<std::pair<Nanos, Line*>> due_;
    std::set<std::pair<Nanos, TicketId>> deadlines_;
    std::vector<std::pair<TicketId, StoreAnswer>> pending_answers_;  // answered(), handled by poll()
    // Asks whose request is gone (cancelled, past its deadline): their answer only gives back.
    std::unordered_map<TicketId, std::vector<limit::LimitUse>> orphaned_;
    std::vector<FallbackLot> fallback_lots_;
    std::size_t dropped_lots_ = 0;
    std::uint64_t fallback_admissions_ = 0;
    std::uint64_t fallback_open_ = 0;
    std::uint64_t denied_ = 0;
};

}  // namespace sluice::queue
