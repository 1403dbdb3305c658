// How the controller keeps waiting requests cheap:
// - one FIFO std::list per queue (route + its (limit, key) list) and a ticket
//   index into it, so a cancel anywhere is O(1);
// - one WaitingUnits (Fenwick tree) per enforced (limit, key) with units
//   waiting, so "units that arrived before this request on this key" is
//   O(log n): it is the `ahead` of every probe, for newcomers and heads alike;
// - the queue heads in a std::set ordered by AdmissionOrder, and the deadlines
//   in a std::set, so poll() visits only heads (O(queues)) and the next
//   deadline is O(1);
// - next_wakeup() answers from a value every change keeps exact, and re-probes
//   the heads only after a change that can bring one forward.
// A waiting request is never touched until it heads its queue or its deadline
// comes; each admission or refusal costs O(uses * log n).

#include "sluice/queue/admission_controller.hpp"

#include <algorithm>
#include <cassert>
#include <list>
#include <set>
#include <unordered_map>
#include <utility>

#include "sluice/queue/waiting_units.hpp"

namespace sluice::queue {

namespace {

using limit::Decision;
using limit::KeyHash;
using limit::LimitUse;

// The order in which waiting requests compete for shared capacity. Today it is
// the arrival sequence alone; priority classes would become a leading member
// (and the units counted "ahead" would then be those of requests ordered before).
struct AdmissionOrder {
    std::uint64_t seq = 0;
    bool operator<(const AdmissionOrder& other) const { return seq < other.seq; }
};

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
struct QueueKey {
    std::size_t route_index = 0;
    std::vector<LineKey> lines;
    bool operator==(const QueueKey&) const = default;
};

struct QueueKeyHash {
    std::size_t operator()(const QueueKey& k) const noexcept {
        std::size_t h = mix(k.route_index);
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

// The most units one request could ever take from this limit: a larger cost
// can never be admitted, so waiting for it would be in vain.
std::int64_t capacity(const config::LimitConfig& limit) {
    if (limit.algorithm == config::Algorithm::token_bucket && limit.burst > 0) return limit.burst;
    return limit.limit;
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

    // One use of a waiting request. The position is a WaitingUnits handle, so a
    // WaitingUse must not move while queued (the vector is sized once).
    struct WaitingUse {
        LimitUse use;
        WaitingUnits* line = nullptr;  // null for shadow limits: they hold nobody back
        WaitingUnits::Position position = 0;
    };

    struct Waiter {
        TicketId ticket = 0;
        AdmissionOrder order;
        Nanos deadline{0};
        std::vector<WaitingUse> uses;
        Queue* queue = nullptr;
    };

    struct Queue {
        const QueueKey* key = nullptr;
        std::list<Waiter> waiters;  // FIFO; list so a cancel anywhere is O(1) and addresses stay put
        std::size_t max_depth = 0;
    };

    struct Head {
        AdmissionOrder order;
        Queue* queue = nullptr;
        bool operator<(const Head& other) const { return order < other.order; }
    };

    // What the limits say about one request at one instant.
    struct Evaluation {
        bool admissible = true;  // every enforced limit allows, behind the units ahead
        bool key_capacity = false;
        bool ahead_counted = false;           // some limit was probed with ahead > 0
        Nanos earliest{0};                    // latest of the enforced limits' earliest (ahead counted)
        std::optional<std::size_t> limiting;  // index into the uses: refusing (latest earliest) or tightest
        Decision limiting_decision;
        std::optional<std::size_t> tightest;  // among enforced uses, for admission headers
        Decision tightest_decision;
    };

    explicit Impl(std::vector<std::unique_ptr<limit::Limiter>> limiters_in)
        : limiters(std::move(limiters_in)) {}

    bool enforced(std::size_t limit_index) const { return limiters[limit_index]->config().enforce; }

    static const LimitUse& use_of(const LimitUse& use) { return use; }
    static const LimitUse& use_of(const WaitingUse& use) { return use.use; }

    // Probes every enforced limit of `uses`; `ahead(i)` gives the units that
    // arrived earlier and wait on use i's (limit, key). Records nothing.
    template <class Uses, class Ahead>
    Evaluation evaluate(const Uses& uses, Ahead&& ahead, const Instant& now) {
        Evaluation ev;
        ev.earliest = now.mono;
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
            if (units_ahead > 0) {
                ev.ahead_counted = true;
                // consume() is promised a probe with ahead = 0 that allowed.
                if (d.allowed) {
                    const Decision alone = limiter.probe(use.key, use.cost, 0, now);
                    if (!alone.allowed) d = alone;
                }
            }
            if (!d.allowed) {
                ev.admissible = false;
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
        return ev;
    }

    Evaluation evaluate_waiter(const Waiter& w, const Instant& now) {
        return evaluate(
            w.uses,
            [&](std::size_t i) { return w.uses[i].line ? w.uses[i].line->before(w.uses[i].position) : 0; },
            now);
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

    template <class Uses>
    void consume_all(const Uses& uses, const Instant& now) {
        for (const auto& u : uses) {
            const LimitUse& use = use_of(u);
            limiters[use.limit_index]->consume(use.key, use.cost, now);
        }
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

    template <class Uses>
    static void fill_limiting(Admission& a, const Uses& uses, const Evaluation& ev) {
        if (!ev.limiting) return;
        a.limiting_limit = use_of(uses[*ev.limiting]).limit_index;
        a.tightest = ev.limiting_decision;
    }

    void remove(std::list<Waiter>::iterator it) {
        Waiter& w = *it;
        Queue* q = w.queue;
        for (const WaitingUse& wu : w.uses) {
            if (!wu.line) continue;
            wu.line->erase(wu.position);
            if (wu.line->empty()) lines.erase(LineKey{wu.use.limit_index, wu.use.key});
        }
        deadlines.erase({w.deadline, w.ticket});
        index.erase(w.ticket);
        const bool was_head = it == q->waiters.begin();
        if (was_head) heads.erase(Head{w.order, q});
        q->waiters.erase(it);
        if (q->waiters.empty()) {
            queues.erase(queues.find(*q->key));
        } else if (was_head) {
            heads.insert(Head{q->waiters.front().order, q});
        }
    }

    Admission decide_waiter(std::list<Waiter>::iterator it, const Evaluation& ev, Errc reason,
                            const Instant& now) {
        Admission a;
        a.ticket = it->ticket;
        a.queue = QueueState{it->queue->waiters.size() - 1, it->queue->max_depth};
        if (reason == Errc::ok) {
            consume_all(it->uses, now);
            a.outcome = Outcome::admitted;
            fill_tightest(a, it->uses, ev, now);
        } else {
            a.outcome = Outcome::rejected;
            a.reason = reason;
            a.retry_after = retry_after(ev.earliest, now);
            fill_limiting(a, it->uses, ev);
        }
        remove(it);
        return a;
    }

    // Visits the queue heads oldest first, admitting every head whose limits all
    // allow it behind the older units waiting on the same keys, and refusing the
    // heads that can no longer make their deadline. Returns the earliest moment a
    // remaining head may become admissible. With `decided` null nothing changes:
    // it returns now as soon as some head could be decided now.
    //
    // One pass in order suffices: deciding a head only removes units counted as
    // ahead by younger heads, which are visited later (a newly exposed head is
    // younger than the one it replaces, so upper_bound finds it).
    Nanos pass(const Instant& now, std::vector<Admission>* decided) {
        Nanos wake = kNever;
        auto it = heads.begin();
        while (it != heads.end()) {
            const Head head = *it;
            const auto waiter = head.queue->waiters.begin();
            const Evaluation ev = evaluate_waiter(*waiter, now);
            Errc reason = Errc::ok;
            bool decidable = true;
            if (ev.key_capacity) {
                reason = Errc::key_capacity;
            } else if (!ev.admissible) {
                if (waiter->deadline <= now.mono || doomed(*waiter, ev, now)) {
                    reason = Errc::admission_timeout;
                } else {
                    decidable = false;
                }
            }
            if (decidable) {
                if (!decided) return now.mono;
                decided->push_back(decide_waiter(waiter, ev, reason, now));
            } else {
                wake = std::min(wake, wake_time(ev.earliest, now));
            }
            it = heads.upper_bound(head);
        }
        return wake;
    }

    Nanos first_deadline() const { return deadlines.empty() ? kNever : deadlines.begin()->first; }

    std::vector<std::unique_ptr<limit::Limiter>> limiters;
    std::unordered_map<QueueKey, Queue, QueueKeyHash> queues;      // non-empty queues only
    std::unordered_map<LineKey, WaitingUnits, LineKeyHash> lines;  // enforced (limit, key) with units waiting
    std::unordered_map<TicketId, std::list<Waiter>::iterator> index;
    std::set<Head> heads;  // one per queue, in admission order
    std::set<std::pair<Nanos, TicketId>> deadlines;
    std::uint64_t next_seq = 1;
    TicketId next_ticket = 1;
    // next_wakeup()'s answer, kept exact by every change; `wake_dirty` when a
    // change may have moved a head earlier (cancel, release, feedback) and the
    // heads must be probed again.
    Nanos wake = kNever;
    bool wake_dirty = false;
};

AdmissionController::AdmissionController(std::vector<std::unique_ptr<limit::Limiter>> limiters)
    : impl_(std::make_unique<Impl>(std::move(limiters))) {}

AdmissionController::~AdmissionController() = default;

Admission AdmissionController::submit(AdmissionRequest request, const Instant& now) {
    Impl& m = *impl_;
    const auto& uses = request.uses;
    for ([[maybe_unused]] const LimitUse& use : uses) assert(use.limit_index < m.limiters.size());

    QueueKey key{request.route_index, {}};
    key.lines.reserve(uses.size());
    for (const LimitUse& use : uses) key.lines.push_back(LineKey{use.limit_index, use.key});
    const auto found = m.queues.find(key);
    Impl::Queue* queue = found == m.queues.end() ? nullptr : &found->second;
    const std::size_t depth = queue ? queue->waiters.size() : 0;

    // Every unit waiting on one of our keys arrived before us: it is ahead, even in another queue.
    const Impl::Evaluation ev = m.evaluate(
        uses,
        [&](std::size_t i) {
            const auto line = m.lines.find(LineKey{uses[i].limit_index, uses[i].key});
            return line == m.lines.end() ? std::int64_t{0} : line->second.total();
        },
        now);

    Admission a;
    a.queue = QueueState{depth, request.max_depth};
    const auto reject = [&](Errc reason) {
        a.outcome = Outcome::rejected;
        a.reason = reason;
        a.retry_after = reason == Errc::key_capacity ? Nanos{0} : retry_after(ev.earliest, now);
        Impl::fill_limiting(a, uses, ev);
        return a;
    };
    if (ev.key_capacity) return reject(Errc::key_capacity);
    if (depth == 0 && ev.admissible) {
        // Consuming here cannot delay any waiting head: we were admissible with
        // all of their units counted ahead on every key we touch.
        m.consume_all(uses, now);
        a.outcome = Outcome::admitted;
        m.fill_tightest(a, uses, ev, now);
        return a;
    }
    if (depth >= request.max_depth) return reject(Errc::queue_full);
    const bool impossible = std::any_of(uses.begin(), uses.end(), [&](const LimitUse& use) {
        return m.enforced(use.limit_index) && use.cost > capacity(m.limiters[use.limit_index]->config());
    });
    if (impossible || request.max_wait <= Nanos{0} ||
        (ev.earliest != kNever && ev.earliest - now.mono > request.max_wait)) {
        return reject(Errc::admission_timeout);
    }

    if (!queue) {
        const auto [it, inserted] = m.queues.emplace(std::move(key), Impl::Queue{});
        queue = &it->second;
        queue->key = &it->first;
    }
    queue->max_depth = request.max_depth;
    const bool new_head = queue->waiters.empty();
    Impl::Waiter& w = queue->waiters.emplace_back();
    w.ticket = m.next_ticket++;
    w.order = AdmissionOrder{m.next_seq++};
    w.deadline = saturating_add(now.mono, request.max_wait);
    w.queue = queue;
    w.uses.resize(uses.size());  // sized once: the positions below are handles into it
    for (std::size_t i = 0; i < uses.size(); ++i) {
        Impl::WaitingUse& wu = w.uses[i];
        wu.use = uses[i];
        if (!m.enforced(wu.use.limit_index)) continue;
        wu.line = &m.lines[LineKey{wu.use.limit_index, wu.use.key}];
        wu.line->push(wu.use.cost, &wu.position);
    }
    m.index.emplace(w.ticket, std::prev(queue->waiters.end()));
    m.deadlines.emplace(w.deadline, w.ticket);
    if (new_head) m.heads.insert(Impl::Head{w.order, queue});
    // A newcomer is behind everyone on its keys, so no other head moves; only its
    // own deadline and, if it heads a new queue, its own earliest are new.
    if (!m.wake_dirty) {
        m.wake = std::min(m.wake, w.deadline);
        if (new_head) m.wake = std::min(m.wake, wake_time(ev.earliest, now));
    }

    a.outcome = Outcome::queued;
    a.ticket = w.ticket;
    a.queue.depth = queue->waiters.size();
    Impl::fill_limiting(a, uses, ev);
    return a;
}

std::vector<Admission> AdmissionController::poll(const Instant& now) {
    Impl& m = *impl_;
    std::vector<Admission> decided;
    Nanos wake = m.pass(now, &decided);
    // Heads past their deadline were decided in the pass; what is left past it
    // waits behind a head, so it cannot be admitted now either.
    bool swept = false;
    while (!m.deadlines.empty() && m.deadlines.begin()->first <= now.mono) {
        const auto it = m.index.at(m.deadlines.begin()->second);
        const Impl::Evaluation ev = m.evaluate_waiter(*it, now);
        decided.push_back(m.decide_waiter(it, ev, Errc::admission_timeout, now));
        swept = true;
    }
    // Their units no longer count ahead of younger heads, which may go now.
    if (swept) wake = m.pass(now, &decided);
    m.wake = std::min(wake, m.first_deadline());
    m.wake_dirty = false;
    return decided;
}

Nanos AdmissionController::next_wakeup(const Instant& now) {
    Impl& m = *impl_;
    if (m.wake_dirty) {
        m.wake = std::min(m.pass(now, nullptr), m.first_deadline());
        m.wake_dirty = false;
    }
    return m.wake;
}

bool AdmissionController::cancel(TicketId ticket, const Instant& /*now*/) {
    Impl& m = *impl_;
    const auto found = m.index.find(ticket);
    if (found == m.index.end()) return false;
    m.remove(found->second);
    m.wake_dirty = true;  // its units no longer hold younger heads back
    return true;
}

void AdmissionController::release(const std::vector<limit::LimitUse>& uses, const Instant& now) {
    Impl& m = *impl_;
    for (const LimitUse& use : uses) m.limiters[use.limit_index]->release(use.key, use.cost, now);
    if (!uses.empty()) m.wake_dirty = true;
}

void AdmissionController::pause_until(std::size_t limit_index, limit::KeyHash key, Nanos until,
                                      const Instant& now) {
    impl_->limiters[limit_index]->pause_until(key, until, now);
    impl_->wake_dirty = true;  // heads on this key may now be doomed
}

void AdmissionController::cap_remaining(std::size_t limit_index, limit::KeyHash key, std::int64_t remaining,
                                        Nanos reset_at, const Instant& now) {
    impl_->limiters[limit_index]->cap_remaining(key, remaining, reset_at, now);
    impl_->wake_dirty = true;
}

std::size_t AdmissionController::waiting() const {
    return impl_->index.size();
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
