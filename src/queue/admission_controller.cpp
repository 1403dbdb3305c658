// How the controller keeps waiting requests cheap:
// - one FIFO std::list per queue (route + its (limit, key) list) and a ticket
//   index into it, so a cancel anywhere is O(1);
// - one WaitingUnits (Fenwick tree) per enforced (limit, key) and band with
//   units waiting, so "units ordered before this request on this key" is
//   O(log n) per band: it is the `ahead` of every probe, for newcomers and heads
//   alike. Within a band the admission order is the arrival order; another
//   band's units ordered before are found by a binary search on their orders.
//   Without classes or fair shares every line has one band (the old cost);
// - the queue heads in a std::set ordered by the time each may first become
//   admissible (its limiters' earliest, a lower bound), so poll() probes only
//   the heads that are due, and next_wakeup() is the first of them or the
//   first deadline, O(1);
// - a change that can bring a head FORWARD (a cancel, a release, vendor
//   feedback, a refusal: units that no longer wait ahead of younger heads)
//   marks every head due, and the next poll() or next_wakeup() re-probes all.
//   An admission never does: the units it consumes at now were already counted
//   ahead of every younger head on its keys, so no younger head's earliest can
//   move earlier, and each stored time stays a lower bound (an admission that
//   went ahead of older heads only takes capacity from them: later, not earlier);
// - for work conservation, each head's bound (when its time-based limits could
//   first admit it) is kept in every WaitingUnits it waits on, so "the earliest
//   any older waiter on this key could go" is one O(log n) query per key, asked
//   only for a head refused behind older units. Heads are probed oldest first,
//   so the bounds a head reads are current; after a change that can bring a
//   head forward (all_due), nothing is lent until the heads are probed again.
// A waiting request is never touched until it heads its queue and is due, or
// its deadline comes; each admission costs O(uses * log n + log queues). A
// request admitted at once with nothing waiting on its keys pays nothing more.

#include "sluice/queue/admission_controller.hpp"

#include <algorithm>
#include <cassert>
#include <deque>
#include <list>
#include <set>
#include <unordered_map>
#include <utility>

#include "sluice/queue/arrival_list.hpp"
#include "sluice/queue/waiting_units.hpp"

namespace sluice::queue {

namespace {

using limit::Decision;
using limit::KeyHash;
using limit::LimitUse;

// The order in which waiting requests compete for shared capacity: arrival
// moved later by the request's handicap (its priority class, its caller's
// fair-share tag), then the arrival sequence. Without classes or fair shares it
// is the arrival order. Fixed at arrival, so the units counted "ahead" of a
// request are those of the requests ordered before it, whenever it is asked.
using AdmissionOrder = WaitOrder;

struct LineKey {
    std::size_t limit_index = 0;
    KeyHash key = 0;
    bool operator==(const LineKey&) const = default;
};

std::size_t mix(std::uint64_t x) {
    // splitmix64 finaliser: keys are already hashes, but limit indexes are small integers.
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return static_cast<std::size_t>(x);
}

struct LineKeyHash {
    std::size_t operator()(const LineKey& k) const noexcept {
        return mix(k.key ^ (static_cast<std::uint64_t>(k.limit_index) * 0x9e3779b97f4a7c15ULL));
    }
};

// A queue's identity: the route and every (limit, key) its requests use, so two
// requests share a queue exactly when they compete for the same permits in the
// same way, and FIFO among them never makes one wait for a limit it does not use.
// A band: the requests whose admission order is their arrival order (one class,
// and one caller of one fair-shared limit). Requests of different bands never
// share a queue, so within a queue the admission order is the arrival order.
struct BandId {
    Nanos handicap{0};         // the class's
    std::uint64_t caller = 0;  // fair share: mixes the group and the caller; 0 without
    // A queue's: AdmissionRequest::yields. A line's band: 1 if its requests yield on that line.
    std::uint64_t yields = 0;
    bool operator==(const BandId&) const = default;
};

struct QueueKey {
    std::size_t route_index = 0;
    std::vector<LineKey> lines;
    BandId band;
    bool operator==(const QueueKey&) const = default;
};

struct QueueKeyHash {
    std::size_t operator()(const QueueKey& k) const noexcept {
        std::size_t h = mix(k.route_index ^ static_cast<std::uint64_t>(k.band.handicap.count()) ^
                            k.band.caller ^ k.band.yields);
        for (const LineKey& line : k.lines) h = mix(h ^ LineKeyHash{}(line));
        return h;
    }
};

Nanos saturating_add(Nanos a, Nanos b) {
    if (b.count() > 0 && a > kNever - b) return kNever;
    return a + b;
}

Nanos retry_after(Nanos earliest, const Instant& now) {
    if (earliest == kNever || earliest <= now.mono) return Nanos{0};
    return earliest - now.mono;
}

// The wake-up time for a head that is not admissible now. A limiter whose
// estimate is not in the future (it must be, when it refuses) would otherwise
// make the I/O layer spin; the next nanosecond keeps it correct and bounded.
Nanos wake_time(Nanos earliest, const Instant& now) {
    if (earliest == kNever) return kNever;
    return std::max(earliest, now.mono + Nanos{1});
}

// a is tighter than b: less left relative to its limit after this request's
// cost. Only picks which limit the rate-limit headers describe, so doubles do.
bool tighter(const Decision& a, std::int64_t cost_a, const Decision& b, std::int64_t cost_b) {
    const auto share = [](const Decision& d, std::int64_t cost) {
        const auto left = static_cast<double>(std::max<std::int64_t>(d.remaining - cost, 0));
        return left / static_cast<double>(std::max<std::int64_t>(d.limit, 1));
    };
    return share(a, cost_a) < share(b, cost_b);
}

}  // namespace

struct AdmissionController::Impl {
    struct Queue;
    struct Line;

    // One use of a waiting request. The position is a WaitingUnits handle, so a
    // WaitingUse must not move while queued (the vector is sized once).
    struct WaitingUse {
        LimitUse use;
        Line* line = nullptr;          // null for shadow limits: they hold nobody back
        WaitingUnits* band = nullptr;  // its band's units in `line`
        WaitingUnits::Position position = 0;
        // Its place among the requests waiting on the limit, and on the (limit, key)
        // (enforced limits only, with `line`): the admin pages' oldest waiter.
        ArrivalList::Link on_limit;
        ArrivalList::Link on_key;
        ArrivalList* key_arrivals = nullptr;
    };

    // The units of the requests of one band (one handicap) waiting on a line,
    // in admission order (within a band, arrival order is admission order).
    struct Band {
        BandId id;
        WaitingUnits units;
    };

    // The requests waiting on one enforced (limit, key). Usually one band; one
    // more per priority class (or fair-share tag) that waits there. A deque: a
    // WaitingUse points at its band, which must not move; bands go with the line.
    struct Line {
        std::deque<Band> bands;
        ArrivalList arrivals;
        std::int64_t total = 0;
        std::size_t requests = 0;

        WaitingUnits& band(BandId id) {
            for (Band& b : bands) {
                if (b.id == id) return b.units;
            }
            return bands.emplace_back(Band{id, {}}).units;
        }
        // Whether the units of band `b` are counted ahead of a request of band `own`: those
        // ordered before it are, unless their band yields on this line (AdmissionRequest::yields).
        static bool counts(const Band& b, const WaitingUnits* own) {
            return &b.units == own || b.id.yields == 0;
        }

        // Units ordered before `order` (a request of band `own` not yet waiting: all of its own band).
        std::int64_t ahead_of_newcomer(BandId own, WaitOrder order) const {
            if (bands.size() == 1 && bands.front().id == own) [[likely]]
                return total;
            return ahead_across_bands(own, order);
        }
        // Out of line: the common case above stays small enough to inline into every probe.
        [[gnu::noinline]] std::int64_t ahead_across_bands(BandId own, WaitOrder order) const {
            std::int64_t units = 0;
            for (const Band& b : bands) {
                if (b.id == own) {
                    units += b.units.total();
                } else if (b.id.yields == 0) {
                    units += b.units.before_order(order);
                }
            }
            return units;
        }
        std::int64_t ahead_of(const WaitingUnits* own, WaitingUnits::Position position,
                              WaitOrder order) const {
            if (bands.size() == 1) return own->before(position);
            std::int64_t units = 0;
            for (const Band& b : bands) {
                if (!counts(b, own)) continue;
                units += &b.units == own ? own->before(position) : b.units.before_order(order);
            }
            return units;
        }
        Nanos min_bound_for_newcomer(BandId own, WaitOrder order) const {
            Nanos m = kNever;
            for (const Band& b : bands) {
                if (b.id == own) {
                    m = std::min(m, b.units.min_bound());
                } else if (b.id.yields == 0) {
                    m = std::min(m, b.units.min_bound_before_order(order));
                }
            }
            return m;
        }
        Nanos min_bound_before(const WaitingUnits* own, WaitingUnits::Position position,
                               WaitOrder order) const {
            Nanos m = kNever;
            for (const Band& b : bands) {
                if (!counts(b, own)) continue;
                m = std::min(m, &b.units == own ? own->min_bound_before(position)
                                                : b.units.min_bound_before_order(order));
            }
            return m;
        }
    };

    struct Waiter {
        TicketId ticket = 0;
        AdmissionOrder order;
        Nanos arrived{0};  // mono
        Nanos deadline{0};
        bool deadline_is_close = false;  // the deadline is the drain's close (close_queue_at), not max_wait
        Nanos bound = kNever;  // while heading its queue: its bound in every line (see set_head_bound)
        std::optional<std::size_t> fair_group;  // AdmissionRequest::FairShare::group
        Nanos fair_start{0};                    // its start tag in that group
        std::vector<WaitingUse> uses;
        Queue* queue = nullptr;
    };

    struct Queue {
        const QueueKey* key = nullptr;
        std::list<Waiter> waiters;  // FIFO; list so a cancel anywhere is O(1) and addresses stay put
        std::size_t max_depth = 0;
        Nanos due{0};          // the head's key in `heads`, while indexed
        bool indexed = false;  // the head is in `heads` (not while a pass holds it)
    };

    // Start-time fair queueing between the callers of one fair-shared limit
    // (docs/priorities.md). A waiter's start tag is the later of the group's
    // virtual time and its caller's previous finish tag; its finish tag adds its
    // step (cost / weight, in time). The virtual time is the start tag of the
    // last waiter admitted, so a caller idle until now starts level with those
    // being served (work conserving: no credit, no debt). While nobody of the
    // group waits, the virtual time is the clock: tags stay comparable with the
    // other requests' arrival times, and a new busy period starts from now.
    struct FairGroup {
        Nanos vtime{0};
        std::size_t waiting = 0;
        std::unordered_map<std::uint64_t, Nanos> finish;  // per caller; pruned when it outgrows `waiting`
    };

    // A queue head, keyed by when it is next worth probing: no earlier than this
    // can it be admitted (kNever: only a release, cancel or feedback can help).
    struct Head {
        Nanos due{0};
        AdmissionOrder order;
        Queue* queue = nullptr;
        bool operator<(const Head& other) const {
            if (due != other.due) return due < other.due;
            return order < other.order;
        }
    };

    // A head taken out of `heads` for one pass, visited in admission order.
    struct Pending {
        AdmissionOrder order;
        Queue* queue = nullptr;
        bool operator<(const Pending& other) const { return order < other.order; }
    };

    // What the limits say about one request at one instant.
    struct Evaluation {
        bool admissible = true;  // every enforced limit allows, behind the units ahead (or lent)
        bool key_capacity = false;
        bool ahead_counted = false;           // some limit was probed with ahead > 0
        Nanos earliest{0};                    // latest of the enforced limits' earliest (ahead counted)
        Nanos bound{0};                       // the same over the time-based limits only (see set_head_bound)
        Nanos alone_earliest{0};              // latest earliest with nothing counted ahead
        Nanos wake{0};                        // when to look again if not admissible
        std::uint64_t behind = 0;             // uses (first 64) refused only for the units ahead
        std::optional<std::size_t> limiting;  // index into the uses: refusing (latest earliest) or tightest
        Decision limiting_decision;
        std::optional<std::size_t> tightest;  // among enforced uses, for admission headers
        Decision tightest_decision;
    };

    Impl(std::vector<std::unique_ptr<limit::Limiter>> limiters_in, AdmissionOptions options_in)
        : limiters(std::move(limiters_in)),
          options(options_in),
          activity(limiters.size()),
          arrivals(limiters.size()),
          successor(limiters.size()),
          retired(limiters.size(), false) {}

    bool enforced(std::size_t limit_index) const { return limiters[limit_index]->config().enforce; }

    static const LimitUse& use_of(const LimitUse& use) { return use; }
    static const LimitUse& use_of(const WaitingUse& use) { return use.use; }

    // Probes every enforced limit of `uses`; `ahead(i)` gives the units that
    // arrived earlier and wait on use i's (limit, key). Records nothing.
    template <class Uses, class Ahead>
    // `may_lend`: the request could go ahead of older ones (work conservation
    // is on and it heads its queue, or would); only then is it worth asking
    // whether its own limits have room with nothing ahead.
    Evaluation evaluate(const Uses& uses, Ahead&& ahead, const Instant& now, bool may_lend = false) {
        Evaluation ev;
        ev.earliest = now.mono;
        ev.bound = now.mono;
        ev.alone_earliest = now.mono;
        // The keys' slots are in different tables: start every load now, so that
        // across many keys the request waits for one cache miss, not one per limit.
        // (Shadow limits too: they are consumed on admission.)
        for (const auto& u : uses) {
            const LimitUse& use = use_of(u);
            limiters[use.limit_index]->prefetch(use.key);
        }
        std::optional<std::size_t> blocking;
        Decision blocking_decision;
        for (std::size_t i = 0; i < uses.size(); ++i) {
            const LimitUse& use = use_of(uses[i]);
            if (!enforced(use.limit_index)) continue;
            limit::Limiter& limiter = *limiters[use.limit_index];
            const std::int64_t units_ahead = ahead(i);
            Decision d = limiter.probe(use.key, use.cost, units_ahead, now);
            if (d.key_capacity) {
                ev.admissible = false;
                ev.key_capacity = true;
                ev.limiting = i;
                ev.limiting_decision = d;
                return ev;
            }
            // Where it is refused: when it could go with nothing ahead (the
            // refusal's own time, unless only the units ahead refuse it).
            Nanos alone_earliest = d.earliest;
            if (units_ahead > 0) {
                ev.ahead_counted = true;
                // consume() is promised a probe with ahead = 0 that allowed.
                if (d.allowed) {
                    const Decision alone = limiter.probe(use.key, use.cost, 0, now);
                    if (!alone.allowed) {
                        d = alone;
                        alone_earliest = alone.earliest;
                    }
                } else if (may_lend) {
                    // Refused behind older units: could it go if they let it?
                    const Decision alone = limiter.probe(use.key, use.cost, 0, now);
                    alone_earliest = alone.allowed ? now.mono : alone.earliest;
                    if (alone.key_capacity) alone_earliest = kNever;
                    if (i < 64) ev.behind |= std::uint64_t{1} << i;
                }
            }
            if (!d.allowed) {
                // Only a refusal moves these off `now`: an admission pays nothing for them.
                ev.admissible = false;
                ev.alone_earliest = std::max(ev.alone_earliest, alone_earliest);
                if (limiter.config().algorithm != config::Algorithm::concurrency)
                    ev.bound = std::max(ev.bound, d.earliest);
                if (!blocking || d.earliest > blocking_decision.earliest) {
                    blocking = i;
                    blocking_decision = d;
                }
            }
            ev.earliest = std::max(ev.earliest, d.allowed ? now.mono : d.earliest);
            if (!ev.tightest || tighter(d, use.cost, ev.tightest_decision, use_of(uses[*ev.tightest]).cost)) {
                ev.tightest = i;
                ev.tightest_decision = d;
            }
        }
        if (blocking) {
            ev.limiting = blocking;
            ev.limiting_decision = blocking_decision;
        } else if (ev.tightest) {
            ev.limiting = ev.tightest;
            ev.limiting_decision = ev.tightest_decision;
        }
        ev.wake = ev.earliest;
        return ev;
    }

    // Work conservation: a request refused only for the units of older waiters
    // (`behind`) may go now if that cannot delay any of them. `older_bound(i)`
    // is a lower bound of when the older waiters on use i's (limit, key) can
    // first be admitted (the least of their queue heads' bounds). On a
    // time-based limit, the request's cost taken now must leave room at that
    // moment for every older unit (room only grows with time, so then for each
    // older waiter at its own turn too). On a concurrency limit, a permit is
    // lent only while that moment is at least lend_horizon away: an exchange
    // shorter than that is over before any older waiter needs the permit.
    // Marks `ev` admissible (lent), or sets when to look again: once its own
    // limits have room, if lending would then be allowed, else when the strict
    // rule could admit it.
    template <class Uses, class Ahead, class OlderBound>
    void try_lend(const Uses& uses, Evaluation& ev, Ahead&& ahead, OlderBound&& older_bound,
                  const Instant& now) {
        if (ev.admissible || ev.key_capacity || ev.behind == 0 || uses.size() > 64) return;
        for (std::size_t i = 0; i < uses.size(); ++i) {
            if ((ev.behind >> i & 1) == 0) continue;
            const LimitUse& use = use_of(uses[i]);
            const Nanos older = older_bound(i);
            if (older == kNever) continue;  // no older waiter there can ever go by time
            if (older <= now.mono) return;  // one may go now: it goes first
            limit::Limiter& limiter = *limiters[use.limit_index];
            if (limiter.config().algorithm == config::Algorithm::concurrency) {
                if (older - now.mono < options.lend_horizon) return;
            } else if (!limiter.room_later(use.key, use.cost, ahead(i), older, now)) {
                return;
            }
        }
        if (ev.alone_earliest <= now.mono) {
            ev.admissible = true;
        } else {
            ev.wake = std::min(ev.earliest, ev.alone_earliest);
        }
    }

    // `may_lend`: every queue head's bound is current for the heads older than
    // `w` (false after a change that can bring heads forward, until re-probed).
    Evaluation evaluate_waiter(const Waiter& w, const Instant& now, bool may_lend) {
        const auto ahead = [&](std::size_t i) {
            const WaitingUse& wu = w.uses[i];
            return wu.line ? wu.line->ahead_of(wu.band, wu.position, w.order) : 0;
        };
        may_lend = may_lend && options.work_conserving;
        Evaluation ev = evaluate(w.uses, ahead, now, may_lend);
        if (may_lend) {
            try_lend(
                w.uses, ev, ahead,
                [&](std::size_t i) {
                    const WaitingUse& wu = w.uses[i];
                    return wu.line->min_bound_before(wu.band, wu.position, w.order);
                },
                now);
        }
        return ev;
    }

    // A waiting request that provably cannot be admitted by its deadline even
    // if everything ahead of it vanished (ahead = 0 gives a lower bound).
    bool doomed(const Waiter& w, const Evaluation& ev, const Instant& now) {
        if (ev.earliest != kNever && ev.earliest <= w.deadline) return false;
        Nanos earliest = ev.earliest;
        if (ev.ahead_counted) {
            earliest = now.mono;
            for (const WaitingUse& wu : w.uses) {
                if (!wu.line) continue;
                const Decision d = limiters[wu.use.limit_index]->probe(wu.use.key, wu.use.cost, 0, now);
                earliest = std::max(earliest, d.allowed ? now.mono : d.earliest);
            }
        }
        // kNever means "unpredictable" (a permit may come back), not "too late".
        return earliest != kNever && earliest > w.deadline;
    }

    // True if a shadow limit (enforce: false) among `uses` would have refused:
    // probed before it consumes (only shadow limits pay for that probe), and
    // counted on that limit's activity.
    template <class Uses>
    bool consume_all(const Uses& uses, const Instant& now) {
        bool shadow_would_refuse = false;
        for (const auto& u : uses) {
            const LimitUse& use = use_of(u);
            limit::Limiter& limiter = *limiters[use.limit_index];
            if (!limiter.config().enforce && !limiter.probe(use.key, use.cost, 0, now).allowed) {
                ++activity[use.limit_index].shadow_would_refuse;
                shadow_would_refuse = true;
            }
            limiter.consume(use.key, use.cost, now);
        }
        return shadow_would_refuse;
    }

    // The tightest limit as it stands after this admission, for rate-limit headers.
    template <class Uses>
    void fill_tightest(Admission& a, const Uses& uses, const Evaluation& ev, const Instant& now) {
        if (!ev.tightest) return;
        const LimitUse& use = use_of(uses[*ev.tightest]);
        Decision d = limiters[use.limit_index]->probe(use.key, 0, 0, now);
        d.allowed = true;
        d.key_capacity = false;
        d.earliest = now.mono;
        a.limiting_limit = use.limit_index;
        a.tightest = d;
    }

    // A refusal is the limiting limit's (none: a refusal no limit made, e.g. on drain).
    void count_refusal(const Admission& a, const Instant& now) {
        if (!a.limiting_limit || a.reason == Errc::shutting_down) return;
        LimitActivity& refusing = activity[*a.limiting_limit];
        ++refusing.refused;
        refusing.refused_last_minute.add(now.mono);
    }

    template <class Uses>
    static void fill_limiting(Admission& a, const Uses& uses, const Evaluation& ev) {
        if (!ev.limiting) return;
        a.limiting_limit = use_of(uses[*ev.limiting]).limit_index;
        a.tightest = ev.limiting_decision;
    }

    // A queue head's bound, in each line it waits on: no earlier than this can
    // it be admitted under the strict rule, as far as its time-based limits say
    // (concurrency is left out: a permit's return is not predictable, and lent
    // permits have their own rule). Younger requests read it to know how long
    // the capacity they would borrow stays unused. Nanos::min() for a head not
    // probed yet: it might go now, so nothing is lent past it. Waiters behind a
    // head keep kNever: their head, older, bounds them.
    void set_head_bound(Queue* q, Nanos bound) {
        Waiter& w = q->waiters.front();
        if (w.bound == bound) return;
        w.bound = bound;
        for (const WaitingUse& wu : w.uses) {
            if (wu.line) wu.band->set_bound(wu.position, bound);
        }
    }

    void index_head(Queue* q, Nanos due, Nanos bound) {
        q->due = due;
        q->indexed = true;
        heads.insert(Head{due, q->waiters.front().order, q});
        set_head_bound(q, bound);
    }

    void unindex_head(Queue* q) {
        if (!q->indexed) return;
        heads.erase(Head{q->due, q->waiters.front().order, q});
        q->indexed = false;
    }

    // Removes a waiter. Returns its queue when the waiter headed it and the
    // queue lives on: the new head is not indexed yet, the caller places it.
    Queue* remove(std::list<Waiter>::iterator it) {
        Waiter& w = *it;
        Queue* q = w.queue;
        for (WaitingUse& wu : w.uses) {
            --activity[wu.use.limit_index].waiting;
            arrivals[wu.use.limit_index].erase(wu.on_limit);
            if (!wu.line) continue;
            wu.key_arrivals->erase(wu.on_key);
            wu.line->total -= wu.use.cost;
            wu.band->erase(wu.position);
            if (--wu.line->requests == 0) lines.erase(LineKey{wu.use.limit_index, wu.use.key});
        }
        deadlines.erase({w.deadline, w.ticket});
        index.erase(w.ticket);
        if (w.fair_group) --fair_groups[*w.fair_group].waiting;
        const bool was_head = it == q->waiters.begin();
        if (was_head) unindex_head(q);
        q->waiters.erase(it);
        if (q->waiters.empty()) {
            --route_queues[q->key->route_index];
            queues.erase(queues.find(*q->key));
            return nullptr;
        }
        // The new head's bound is still kNever: a pass probes it before any
        // younger head reads it; outside a pass, index_head() marks it unknown.
        return was_head ? q : nullptr;
    }

    // Removes a waiter outside a pass; a new head is probed by the next pass.
    void remove_and_reindex(std::list<Waiter>::iterator it) {
        if (Queue* q = remove(it)) index_head(q, Nanos::min(), Nanos::min());
    }

    // Decides a head or any waiter; returns the queue whose head changed, as remove().
    Queue* decide_waiter(std::list<Waiter>::iterator it, const Evaluation& ev, Errc reason,
                         const Instant& now, std::vector<Admission>& out) {
        Admission a;
        a.ticket = it->ticket;
        a.at = now.mono;
        a.queue = QueueState{it->queue->waiters.size() - 1, it->queue->max_depth};
        if (reason == Errc::ok) {
            if (it->fair_group) {
                Nanos& vtime = fair_groups[*it->fair_group].vtime;
                vtime = std::max(vtime, it->fair_start);
            }
            a.shadow_would_refuse = consume_all(it->uses, now);
            a.outcome = Outcome::admitted;
            fill_tightest(a, it->uses, ev, now);
            for (const WaitingUse& wu : it->uses) ++activity[wu.use.limit_index].admitted;
        } else {
            a.outcome = Outcome::rejected;
            a.reason = reason;
            a.retry_after = retry_after(ev.earliest, now);
            fill_limiting(a, it->uses, ev);
            count_refusal(a, now);
            // Its units no longer count ahead of younger heads, which may go sooner.
            all_due = true;
        }
        out.push_back(std::move(a));
        return remove(it);
    }

    // What can be decided about a head at `now`: ok (admit), a refusal, or
    // nothing yet (nullopt).
    //
    // Past its deadline a waiter is refused even if its limits allow it now: a
    // late timer (a busy io thread) must not forward a request after the
    // max_wait its client was promised; at the deadline itself it may still go.
    static Errc timeout_reason(const Waiter& w) {
        return w.deadline_is_close ? Errc::shutting_down : Errc::admission_timeout;
    }

    std::optional<Errc> verdict(const Waiter& w, const Evaluation& ev, const Instant& now) {
        if (ev.key_capacity) return Errc::key_capacity;
        if (w.deadline < now.mono) return timeout_reason(w);
        if (ev.admissible) return Errc::ok;
        if (w.deadline == now.mono || doomed(w, ev, now)) return timeout_reason(w);
        return std::nullopt;
    }

    // Takes the heads due at `now` (all of them after a change that can bring
    // one forward) and visits them oldest first, admitting every head whose
    // limits all allow it behind the older units waiting on the same keys, and
    // refusing those that can no longer make their deadline; the others go back
    // into `heads` keyed by their new earliest.
    //
    // Oldest first matters: deciding a head only removes units counted as ahead
    // by younger heads, which are visited later (a newly exposed head is younger
    // than the one it replaces, so upper_bound finds it). A refusal marks every
    // head due again, hence the loop.
    void pass(const Instant& now, std::vector<Admission>& decided) {
        std::set<Pending> pending;
        do {
            if (all_due) {
                for (const Head& h : heads) {
                    pending.insert(Pending{h.order, h.queue});
                    h.queue->indexed = false;
                }
                heads.clear();
                all_due = false;
            } else {
                while (!heads.empty() && heads.begin()->due <= now.mono) {
                    const Head h = *heads.begin();
                    heads.erase(heads.begin());
                    h.queue->indexed = false;
                    pending.insert(Pending{h.order, h.queue});
                }
            }
            auto it = pending.begin();
            while (it != pending.end()) {
                const Pending head = *it;
                const auto waiter = head.queue->waiters.begin();
                // Older heads were visited first: their bounds are current,
                // unless a refusal in this round may have brought some forward.
                const Evaluation ev = evaluate_waiter(*waiter, now, !all_due);
                if (const auto reason = verdict(*waiter, ev, now)) {
                    if (Queue* q = decide_waiter(waiter, ev, *reason, now, decided))
                        pending.insert(Pending{q->waiters.front().order, q});
                } else {
                    index_head(head.queue, wake_time(ev.wake, now), ev.bound);
                }
                it = pending.upper_bound(head);
            }
            pending.clear();
        } while (all_due);
    }

    // next_wakeup() after a change that can bring a head forward: probes every
    // head without deciding anything. Returns now if one can be decided now;
    // otherwise re-keys them all by their new earliest.
    //
    // Oldest first, each head's bound updated before younger heads read it.
    Nanos reprobe_all(const Instant& now) {
        std::vector<Queue*> by_age;
        by_age.reserve(heads.size());
        for (const Head& h : heads) by_age.push_back(h.queue);
        std::sort(by_age.begin(), by_age.end(), [](const Queue* a, const Queue* b) {
            return a->waiters.front().order < b->waiters.front().order;
        });
        std::vector<std::pair<Queue*, Nanos>> keyed;
        keyed.reserve(by_age.size());
        for (Queue* q : by_age) {
            const Waiter& w = q->waiters.front();
            const Evaluation ev = evaluate_waiter(w, now, true);
            if (verdict(w, ev, now)) return now.mono;  // all_due stays: poll() probes them all again
            set_head_bound(q, ev.bound);
            keyed.emplace_back(q, wake_time(ev.wake, now));
        }
        heads.clear();
        for (const auto& [q, due] : keyed) {
            q->due = due;
            heads.insert(Head{due, q->waiters.front().order, q});
        }
        all_due = false;
        return first_due();
    }

    Queue& queue_for(QueueKey key) {
        const std::size_t route = key.route_index;
        const auto [it, inserted] = queues.emplace(std::move(key), Queue{});
        Queue& queue = it->second;
        if (inserted) {
            queue.key = &it->first;
            if (route_queues.size() <= route) route_queues.resize(route + 1);
            ++route_queues[route];
        }
        return queue;
    }

    // Appends a waiter to `queue` and to the lines of its keys (the caller
    // indexes a new head). Waiters are enqueued in arrival order.
    Waiter& enqueue(Queue& queue, std::size_t max_depth, TicketId ticket, AdmissionOrder order, Nanos arrived,
                    Nanos deadline, const std::vector<LimitUse>& uses,
                    std::optional<std::size_t> fair_group = {}, Nanos fair_start = Nanos{0}) {
        queue.max_depth = max_depth;
        Waiter& w = queue.waiters.emplace_back();
        w.fair_group = fair_group;
        w.fair_start = fair_start;
        if (fair_group) ++fair_groups[*fair_group].waiting;
        w.ticket = ticket;
        w.order = order;
        w.arrived = arrived;
        w.deadline = deadline;
        w.queue = &queue;
        w.uses.resize(uses.size());  // sized once: the positions below are handles into it
        for (std::size_t i = 0; i < uses.size(); ++i) {
            WaitingUse& wu = w.uses[i];
            wu.use = uses[i];
            ++activity[wu.use.limit_index].waiting;
            arrivals[wu.use.limit_index].push_back(wu.on_limit, arrived);
            if (!enforced(wu.use.limit_index)) continue;
            Line& line = lines[LineKey{wu.use.limit_index, wu.use.key}];
            wu.line = &line;
            const BandId& band = queue.key->band;
            wu.band = &line.band(BandId{band.handicap, band.caller, i < 64 ? band.yields >> i & 1 : 0});
            wu.band->push(wu.use.cost, &wu.position, order);
            line.total += wu.use.cost;
            ++line.requests;
            wu.key_arrivals = &line.arrivals;
            line.arrivals.push_back(wu.on_key, arrived);
        }
        index.emplace(w.ticket, std::prev(queue.waiters.end()));
        deadlines.emplace(w.deadline, w.ticket);
        return w;
    }

    // The live limit that stands for `slot`: itself, or the successor a reload gave it.
    std::size_t live(std::size_t slot) const {
        while (successor[slot]) slot = *successor[slot];
        return slot;
    }

    Nanos first_due() const { return heads.empty() ? kNever : heads.begin()->due; }

    Nanos first_deadline() const { return deadlines.empty() ? kNever : deadlines.begin()->first; }

    std::vector<std::unique_ptr<limit::Limiter>> limiters;
    AdmissionOptions options;
    std::vector<LimitActivity> activity;  // per limiter (after `limiters`: sized from it)
    std::vector<ArrivalList> arrivals;    // per limiter: who waits on it, oldest first
    // Per limiter: set when a reload retired it and another limit took over its
    // state (retire()); what still refers to it (an exchange admitted before)
    // reaches that one.
    std::vector<std::optional<std::size_t>> successor;
    std::vector<bool> retired;
    std::unordered_map<QueueKey, Queue, QueueKeyHash> queues;  // non-empty queues only
    std::unordered_map<LineKey, Line, LineKeyHash> lines;      // enforced (limit, key) with units waiting
    std::unordered_map<TicketId, std::list<Waiter>::iterator> index;
    std::unordered_map<std::size_t, FairGroup> fair_groups;  // by AdmissionRequest::FairShare::group
    std::vector<std::size_t> route_queues;  // non-empty queues per route: most submits find none
    std::set<Head> heads;                   // one per queue (outside a pass), by when it is due
    std::set<std::pair<Nanos, TicketId>> deadlines;
    std::uint64_t next_seq = 1;
    TicketId next_ticket = 1;
    // A change may have moved some head earlier (cancel, release, feedback, a
    // refusal): every head's `due` may be late, so all must be probed again.
    bool all_due = false;
    Nanos close_at = kNever;  // close_queue_at(): no waiter's deadline is later
};

Nanos fair_share_step(const config::LimitConfig& limit, std::int64_t cost, std::int64_t weight) {
    constexpr double kMostNs = 86'400e9;
    const double per_unit = limit.algorithm == config::Algorithm::concurrency
                                ? 1e9 / static_cast<double>(std::max<std::int64_t>(limit.limit, 1))
                                : static_cast<double>(limit.window.count()) /
                                      static_cast<double>(std::max<std::int64_t>(limit.limit, 1));
    const std::int64_t total = limit.fair_share ? limit.fair_share->total_weight : 1;
    const double step = per_unit * static_cast<double>(std::max<std::int64_t>(cost, 0)) *
                        static_cast<double>(total) / static_cast<double>(std::max<std::int64_t>(weight, 1));
    return Nanos{static_cast<std::int64_t>(std::min(step, kMostNs))};
}

AdmissionRequest make_admission_request(const config::Config& config, std::size_t route_index,
                                        const std::vector<limit::LimitUse>& uses,
                                        const limit::UseMarks& marks, std::size_t priority_class,
                                        Nanos max_wait) {
    const auto& route = config.routes[route_index];
    AdmissionRequest request{route_index, uses, max_wait, route.queue.max_depth};
    if (config.priorities.enabled())
        request.handicap = static_cast<std::int64_t>(priority_class) * config.priorities.aging;
    request.yields = marks.yields;
    if (marks.fair_use && *marks.fair_use < uses.size()) {
        const auto& use = uses[*marks.fair_use];
        request.fair_share = AdmissionRequest::FairShare{
            use.limit_index, marks.fair_caller,
            fair_share_step(config.limits[marks.fair_limit], use.cost, marks.fair_weight)};
    }
    return request;
}

AdmissionController::AdmissionController(std::vector<std::unique_ptr<limit::Limiter>> limiters,
                                         AdmissionOptions options)
    : impl_(std::make_unique<Impl>(std::move(limiters), options)) {}

AdmissionController::~AdmissionController() = default;

Admission AdmissionController::submit(AdmissionRequest request, const Instant& now) {
    Impl& m = *impl_;
    const auto& uses = request.uses;
    for ([[maybe_unused]] const LimitUse& use : uses) assert(use.limit_index < m.limiters.size());

    // Its band, and where it starts in the admission order (before its class's handicap).
    BandId band{request.handicap, 0, request.uses.size() <= 64 ? request.yields : 0};
    // Its band on the line of use i.
    const auto line_band = [&](std::size_t i) {
        return BandId{band.handicap, band.caller, band.yields >> i & 1};
    };
    Nanos start = now.mono;
    Nanos fair_finish{0};
    Impl::FairGroup* fair = nullptr;
    if (request.fair_share) [[unlikely]] {
        const AdmissionRequest::FairShare& share = *request.fair_share;
        band.caller = mix(share.caller ^ mix(share.group + 1)) | 1;  // never 0: that is "no fair share"
        fair = &m.fair_groups[share.group];
        if (fair->waiting == 0) {
            // A new busy period: nobody carries credit or debt into it.
            fair->vtime = now.mono;
            fair->finish.clear();
        }
        start = fair->vtime;
        if (const auto last = fair->finish.find(share.caller); last != fair->finish.end())
            start = std::max(start, last->second);
        fair_finish = saturating_add(start, share.step);
    }

    // Most requests find no queue on their route, and nothing waiting at all:
    // then there is no queue key to build and no line to look up.
    const auto make_key = [&] {
        QueueKey key{request.route_index, {}, band};
        key.lines.reserve(uses.size());
        for (const LimitUse& use : uses) key.lines.push_back(LineKey{use.limit_index, use.key});
        return key;
    };
    Impl::Queue* queue = nullptr;
    if (request.route_index < m.route_queues.size() && m.route_queues[request.route_index] > 0) {
        const auto found = m.queues.find(make_key());
        if (found != m.queues.end()) queue = &found->second;
    }
    const std::size_t depth = queue ? queue->waiters.size() : 0;

    // Every unit waiting on one of our keys arrived before us: it is ahead, even in another queue.
    const auto line_of = [&](std::size_t i) -> const Impl::Line* {
        if (m.lines.empty()) return nullptr;
        const auto line = m.lines.find(LineKey{uses[i].limit_index, uses[i].key});
        return line == m.lines.end() ? nullptr : &line->second;
    };
    // Its place in the admission order, were it to wait (the sequence it would take).
    const AdmissionOrder order{saturating_add(start, request.handicap), m.next_seq};
    const auto ahead = [&](std::size_t i) {
        const Impl::Line* line = line_of(i);
        return line ? line->ahead_of_newcomer(line_band(i), order) : std::int64_t{0};
    };
    const bool may_lend = depth == 0 && !m.all_due && m.options.work_conserving;
    Impl::Evaluation ev = m.evaluate(uses, ahead, now, may_lend);
    // A newcomer heading a new queue may go ahead of the waiters on its keys
    // (all older) on the same terms as a head, while their bounds are current.
    if (!ev.admissible && may_lend) {
        m.try_lend(
            uses, ev, ahead,
            [&](std::size_t i) {
                const Impl::Line* line = line_of(i);
                return line ? line->min_bound_for_newcomer(line_band(i), order) : kNever;
            },
            now);
    }

    Admission a;
    a.at = now.mono;
    a.queue = QueueState{depth, request.max_depth};
    const auto reject = [&](Errc reason) {
        a.outcome = Outcome::rejected;
        a.reason = reason;
        a.retry_after = reason == Errc::key_capacity ? Nanos{0} : retry_after(ev.earliest, now);
        Impl::fill_limiting(a, uses, ev);
        m.count_refusal(a, now);
        return a;
    };
    if (ev.key_capacity) return reject(Errc::key_capacity);
    if (depth == 0 && ev.admissible) {
        // Consuming here cannot delay any waiting head ordered before us: we were
        // admissible with all of their units counted ahead on every key we touch.
        // (Those ordered after us, a lower class, are behind us by design.)
        a.shadow_would_refuse = m.consume_all(uses, now);
        a.outcome = Outcome::admitted;
        m.fill_tightest(a, uses, ev, now);
        for (const LimitUse& use : uses) ++m.activity[use.limit_index].admitted;
        return a;
    }
    if (depth >= request.max_depth) return reject(Errc::queue_full);
    // Draining: no request waits past the queue's close; one that would is told so now.
    bool cut_to_close = false;
    if (m.close_at != kNever) {
        const Nanos left = std::max(Nanos{0}, m.close_at - now.mono);
        if (request.max_wait >= left) {
            request.max_wait = left;
            cut_to_close = true;
        }
    }
    const bool impossible = std::any_of(uses.begin(), uses.end(), [&](const LimitUse& use) {
        return m.enforced(use.limit_index) &&
               use.cost > config::request_capacity(m.limiters[use.limit_index]->config());
    });
    if (impossible || request.max_wait <= Nanos{0} ||
        (ev.earliest != kNever &&
         ev.earliest - now.mono > request.max_wait - scheduling_slack(request.max_wait))) {
        return reject(cut_to_close ? Errc::shutting_down : Errc::admission_timeout);
    }

    if (!queue) queue = &m.queue_for(make_key());
    ++m.next_seq;
    std::optional<std::size_t> fair_group;
    if (fair) {
        // Only a request that waits takes its turn: one admitted at once found
        // room that nobody ordered before it was waiting for.
        fair_group = request.fair_share->group;
        fair->finish[request.fair_share->caller] = fair_finish;
        if (fair->finish.size() > 2 * fair->waiting + 64) {
            // Callers whose last finish is not ahead of the virtual time start from it anyway.
            std::erase_if(fair->finish, [&](const auto& entry) { return entry.second <= fair->vtime; });
        }
    }
    Impl::Waiter& w = m.enqueue(*queue, request.max_depth, m.next_ticket++, order, now.mono,
                                saturating_add(now.mono, request.max_wait), uses, fair_group, start);
    w.deadline_is_close = cut_to_close;
    for (const LimitUse& use : uses) {
        ++m.activity[use.limit_index].queued;
        m.activity[use.limit_index].queued_last_minute.add(now.mono);
    }
    // A newcomer is behind everyone of its band on its keys; heads ordered after
    // it (a lower class) now have more units ahead, so their stored times stay
    // lower bounds. Heading a new queue, it was probed with every unit ordered
    // before it on its keys: its earliest is known.
    if (queue->waiters.size() == 1) m.index_head(queue, wake_time(ev.wake, now), ev.bound);

    a.outcome = Outcome::queued;
    a.ticket = w.ticket;
    a.queue.depth = queue->waiters.size();
    Impl::fill_limiting(a, uses, ev);
    return a;
}

std::vector<Admission> AdmissionController::poll(const Instant& now) {
    Impl& m = *impl_;
    std::vector<Admission> decided;
    m.pass(now, decided);
    // What is left past its deadline waits behind a head, so it cannot be
    // admitted now either, or heads its queue (not due, or exposed by the
    // sweep itself): a head whose deadline is exactly now may still go if its
    // limits allow it; one whose deadline has passed (a late poll) never does.
    bool swept = false;
    while (!m.deadlines.empty() && m.deadlines.begin()->first <= now.mono) {
        const auto it = m.index.at(m.deadlines.begin()->second);
        const Impl::Evaluation ev = m.evaluate_waiter(*it, now, !m.all_due);
        const bool head = it == it->queue->waiters.begin();
        const bool in_time = it->deadline == now.mono;  // never admitted after its deadline
        const Errc reason = head && in_time && ev.admissible ? Errc::ok : Impl::timeout_reason(*it);
        if (Impl::Queue* q = m.decide_waiter(it, ev, reason, now, decided))
            m.index_head(q, Nanos::min(), Nanos::min());
        swept = true;
    }
    // Their units no longer count ahead of younger heads, which may go now.
    if (swept) m.pass(now, decided);
    return decided;
}

Nanos AdmissionController::next_wakeup(const Instant& now) {
    Impl& m = *impl_;
    if (m.all_due) return std::min(m.reprobe_all(now), m.first_deadline());
    return std::min(m.first_due(), m.first_deadline());
}

std::vector<Admission> AdmissionController::reject_all(Errc reason, const Instant& now) {
    Impl& m = *impl_;
    std::vector<Admission> decided;
    decided.reserve(m.index.size());
    // The deadline index holds every waiter; refusing in arrival order keeps the
    // answers in the order the requests came (not required, but least surprising).
    std::vector<std::pair<AdmissionOrder, TicketId>> order;
    order.reserve(m.index.size());
    for (const auto& [ticket, it] : m.index) order.emplace_back(it->order, ticket);
    std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    for (const auto& [unused, ticket] : order) {
        // No probe: the refusal does not depend on the limits, so no Retry-After beyond the minimum.
        Impl::Evaluation none;
        none.earliest = now.mono;
        m.decide_waiter(m.index.at(ticket), none, reason, now, decided);
    }
    m.heads.clear();
    m.all_due = false;
    return decided;
}

bool AdmissionController::cancel(TicketId ticket, const Instant& /*now*/) {
    Impl& m = *impl_;
    const auto found = m.index.find(ticket);
    if (found == m.index.end()) return false;
    m.remove_and_reindex(found->second);
    m.all_due = true;  // its units no longer hold younger heads back
    return true;
}

void AdmissionController::release(const std::vector<limit::LimitUse>& uses, const Instant& now) {
    Impl& m = *impl_;
    for (const LimitUse& use : uses) {
        m.limiters[use.limit_index]->release(use.key, use.cost, now);
        // A successor that carried this limit's permits in flight (a concurrency
        // limit after a concurrency limit: LimitService::install) gets them back too.
        // Every limit on the way must be one, or the permits were not carried.
        std::size_t slot = use.limit_index;
        const auto is_concurrency = [&](std::size_t i) {
            return m.limiters[i]->config().algorithm == config::Algorithm::concurrency;
        };
        while (m.successor[slot] && is_concurrency(slot) && is_concurrency(*m.successor[slot]))
            slot = *m.successor[slot];
        if (slot != use.limit_index && !m.successor[slot]) m.limiters[slot]->release(use.key, use.cost, now);
    }
    if (!uses.empty()) m.all_due = true;
}

void AdmissionController::refund(const std::vector<limit::LimitUse>& uses, Nanos admitted_at,
                                 const Instant& now) {
    Impl& m = *impl_;
    for (const LimitUse& use : uses)
        m.limiters[m.live(use.limit_index)]->refund(use.key, use.cost, admitted_at, now);
    if (!uses.empty()) m.all_due = true;  // units given back may let a head go
}

void AdmissionController::charge(const std::vector<limit::LimitUse>& uses, const Instant& now) {
    Impl& m = *impl_;
    for (const LimitUse& use : uses) m.limiters[m.live(use.limit_index)]->charge(use.key, use.cost, now);
    // Heads' bounds were worked out before these units: probe them again (a later earliest).
    if (!uses.empty()) m.all_due = true;
}

void AdmissionController::pause_until(std::size_t limit_index, limit::KeyHash key, Nanos until,
                                      const Instant& now) {
    impl_->limiters[impl_->live(limit_index)]->pause_until(key, until, now);
    impl_->all_due = true;  // heads on this key may now be doomed
}

void AdmissionController::cap_remaining(std::size_t limit_index, limit::KeyHash key, std::int64_t remaining,
                                        Nanos reset_at, const Instant& now) {
    impl_->limiters[impl_->live(limit_index)]->cap_remaining(key, remaining, reset_at, now);
    impl_->all_due = true;
}

limit::Limiter& AdmissionController::feedback_target(std::size_t limit_index) {
    impl_->all_due = true;
    return *impl_->limiters[impl_->live(limit_index)];
}

std::size_t AdmissionController::add_limiter(std::unique_ptr<limit::Limiter> limiter) {
    Impl& m = *impl_;
    m.limiters.push_back(std::move(limiter));
    m.activity.emplace_back();
    m.arrivals.emplace_back();
    m.successor.emplace_back();
    m.retired.push_back(false);
    return m.limiters.size() - 1;
}

void AdmissionController::retire(const std::vector<Retirement>& retirements, const Instant& now) {
    Impl& m = *impl_;
    for (const Retirement& r : retirements) {
        assert(r.limit_index < m.limiters.size() && !m.retired[r.limit_index]);
        assert(!r.successor || (*r.successor < m.limiters.size() && !m.retired[*r.successor]));
        m.retired[r.limit_index] = true;
        m.successor[r.limit_index] = r.successor;
    }
    if (m.index.empty()) return;

    // Every waiter leaves and comes back in arrival order, with its ticket,
    // deadline and order, its uses of retired limits moved to their successors:
    // rebuilt in that order, every queue and line is FIFO again, whichever
    // queues the moved requests now share with others.
    struct Moved {
        TicketId ticket;
        AdmissionOrder order;
        Nanos arrived;
        Nanos deadline;
        bool deadline_is_close;
        std::size_t route_index;
        BandId band;
        std::size_t max_depth;
        std::vector<LimitUse> uses;
        std::optional<std::size_t> fair_group;
        Nanos fair_start;
    };
    std::vector<Moved> moved;
    moved.reserve(m.index.size());
    for (const auto& [ticket, it] : m.index) {
        Moved entry{it->ticket,
                    it->order,
                    it->arrived,
                    it->deadline,
                    it->deadline_is_close,
                    it->queue->key->route_index,
                    it->queue->key->band,
                    it->queue->max_depth,
                    {},
                    it->fair_group,
                    it->fair_start};
        for (const Impl::WaitingUse& wu : it->uses) {
            LimitUse use = wu.use;
            if (m.retired[use.limit_index]) {
                if (!m.successor[use.limit_index]) continue;  // the limit is gone: it holds nobody back
                use.limit_index = m.live(use.limit_index);
            }
            entry.uses.push_back(use);
        }
        moved.push_back(std::move(entry));
    }
    std::sort(moved.begin(), moved.end(), [](const Moved& a, const Moved& b) { return a.order < b.order; });
    while (!m.index.empty()) m.remove(m.index.begin()->second);
    m.heads.clear();
    for (Moved& entry : moved) {
        QueueKey key{entry.route_index, {}, entry.band};
        for (const LimitUse& use : entry.uses) key.lines.push_back(LineKey{use.limit_index, use.key});
        Impl::Queue& queue = m.queue_for(std::move(key));
        m.enqueue(queue, entry.max_depth, entry.ticket, entry.order, entry.arrived, entry.deadline,
                  entry.uses, entry.fair_group, entry.fair_start)
            .deadline_is_close = entry.deadline_is_close;
    }
    for (auto& [key, queue] : m.queues) m.index_head(&queue, Nanos::min(), Nanos::min());
    m.all_due = true;  // every head is probed again against the limits it now waits on
    (void)now;
}

std::vector<Admission> AdmissionController::close_queue_at(Nanos close_at, const Instant& now) {
    Impl& m = *impl_;
    m.close_at = std::min(m.close_at, close_at);
    std::vector<std::pair<AdmissionOrder, TicketId>> order;
    order.reserve(m.index.size());
    for (auto& [ticket, it] : m.index) {
        Impl::Waiter& w = *it;
        order.emplace_back(w.order, ticket);
        if (w.deadline <= m.close_at) continue;
        m.deadlines.erase({w.deadline, w.ticket});
        w.deadline = m.close_at;
        w.deadline_is_close = true;
        m.deadlines.emplace(w.deadline, w.ticket);
    }
    // Oldest first, each estimated behind the units still waiting ahead of it (as
    // at arrival): one that cannot go before the close is told now. Refusing an
    // older one only brings the younger ones' estimates forward.
    std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    std::vector<Admission> decided;
    for (const auto& [unused, ticket] : order) {
        const auto it = m.index.at(ticket);
        if (!it->deadline_is_close) continue;
        const Impl::Evaluation ev = m.evaluate_waiter(*it, now, false);
        if (ev.admissible || ev.earliest == kNever || ev.earliest <= it->deadline) continue;
        if (Impl::Queue* q = m.decide_waiter(it, ev, Errc::shutting_down, now, decided))
            m.index_head(q, Nanos::min(), Nanos::min());
    }
    m.all_due = true;
    return decided;
}

bool AdmissionController::retired(std::size_t limit_index) const {
    return impl_->retired[limit_index];
}

std::size_t AdmissionController::waiting() const {
    return impl_->index.size();
}

const LimitActivity& AdmissionController::activity(std::size_t limit_index) const {
    return impl_->activity[limit_index];
}

Nanos AdmissionController::oldest_waiting_since(std::size_t limit_index) const {
    return impl_->arrivals[limit_index].oldest_arrival();
}

std::optional<KeyWaiting> AdmissionController::waiting_on(std::size_t limit_index, limit::KeyHash key) const {
    const Impl& m = *impl_;
    if (!m.enforced(limit_index)) return std::nullopt;
    const auto found = m.lines.find(LineKey{limit_index, key});
    if (found == m.lines.end()) return KeyWaiting{};
    const Impl::Line& line = found->second;
    return KeyWaiting{line.requests, line.total, line.arrivals.oldest_arrival()};
}

std::size_t AdmissionController::queue_count() const {
    return impl_->queues.size();
}

const limit::Limiter& AdmissionController::limiter(std::size_t limit_index) const {
    return *impl_->limiters[limit_index];
}

std::size_t AdmissionController::limiter_count() const {
    return impl_->limiters.size();
}

}  // namespace sluice::queue
