// The randomized oracle test: thousands of random arrival patterns through the
// AdmissionController, each decision checked against an independent brute-force
// model that keeps every admission.
//
// The oracle checks
//  (1) safety: no limit is ever exceeded (sliding: every interval of length
//      window + margin; token bucket: the GCRA bound between any two admissions;
//      fixed: every aligned window; concurrency: in flight);
//  (2) refusals are justified: nothing is refused or queued that the policy
//      would admit now, and an admission_timeout at submit is only given when
//      the request could not have been admitted within max_wait behind the
//      units ahead of it (state frozen: the most favourable case);
//  (3) FIFO within each queue; across queues, whatever the strict rule admits
//      (room behind every older unit waiting on its keys) is admitted, and with
//      work conservation off nothing else is;
//  (4) every ticket is decided exactly once (or cancelled);
//  (5) no admission later than necessary: after each step no head is
//      admissible, and next_wakeup() is never later than the first moment a
//      head becomes admissible or a deadline passes;
//  (6) work conservation never costs an older waiter: a request admitted
//      although the strict rule refuses it heads its queue (or has none), its
//      own limits have room now, and for every older waiter sharing a limit
//      with it, the moment that waiter's time-based limits first let it go
//      (behind the units ahead of it) is no later after the admission than
//      before; and a concurrency permit the strict rule would keep is taken
//      only while every older waiter on that limit is held back by time for at
//      least lend_horizon (so it waits for a lent permit at most the lent
//      exchange's duration less the horizon). Checked at every such admission,
//      by brute force, with lend_horizon drawn per scenario.
//
// The policy the oracle holds the controller to: a request may go at t when it
// heads its queue and every enforced limit has room at t for its cost plus the
// units of all older waiting requests on the same (limit, key) (the strict
// rule), or when (6) allows it.

#include <array>
#include <map>
#include <random>
#include <set>

#include <catch2/catch.hpp>

#include "sluice/common/clock.hpp"
#include "sluice/limit/limiter.hpp"
#include "sluice/queue/admission_controller.hpp"
#include "sluice/queue/waiting_units.hpp"

namespace sluice::queue::testing {
std::unique_ptr<limit::Limiter> make_exact_limiter(const config::LimitConfig& config);
}  // namespace sluice::queue::testing

namespace {

using namespace std::chrono_literals;
using sluice::FakeClock;
using sluice::Instant;
using sluice::kNever;
using sluice::Nanos;
using sluice::config::Algorithm;
using sluice::config::LimitConfig;
using sluice::limit::KeyHash;
using sluice::limit::LimitUse;
using sluice::queue::Admission;
using sluice::queue::AdmissionController;
using sluice::queue::AdmissionOptions;
using sluice::queue::AdmissionRequest;
using sluice::queue::Outcome;
using sluice::queue::TicketId;
using sluice::queue::WaitOrder;
using Errc = sluice::Errc;
__extension__ using Int128 = __int128;

using Factory = std::unique_ptr<sluice::limit::Limiter> (*)(const LimitConfig&);
// Scenarios use at most 3 limits with keys 0..2: a (limit, key) is a small index.
constexpr std::size_t kMaxLimits = 3;
constexpr std::size_t kKeys = 3;
constexpr std::size_t kLines = kMaxLimits * kKeys;
std::size_t line_of(std::size_t limit, KeyHash key) {
    return limit * kKeys + static_cast<std::size_t>(key);
}
using Units = std::array<std::int64_t, kLines>;  // units per (limit, key)

Nanos floor_to(Nanos t, Nanos w) {
    auto q = t.count() / w.count();
    if (t.count() % w.count() < 0) --q;
    return Nanos{q * w.count()};
}

// ---------------------------------------------------------------------------
// The model of the limits: every admission kept, every question answered by
// brute force, with the state frozen between events.
class LimitModel {
public:
    LimitModel(std::vector<LimitConfig> limits, Nanos wall_offset)
        : limits_(std::move(limits)), wall_offset_(wall_offset) {}

    const LimitConfig& config(std::size_t l) const { return limits_[l]; }
    std::size_t size() const { return limits_.size(); }

    // Room at `t` for `need` units on (l, key)?
    bool room(std::size_t l, KeyHash key, std::int64_t need, Nanos t) const {
        const LimitConfig& c = limits_[l];
        const Line& line = lines_[line_of(l, key)];
        switch (c.algorithm) {
            case Algorithm::sliding_window: return sliding_count(c, line, t) + need <= c.limit;
            case Algorithm::fixed_window: return fixed_count(c, line, t) + need <= c.limit;
            case Algorithm::concurrency: return line.in_flight + need <= c.limit;
            // The oracle's scenarios never pause a gate: unpaused, it is always open.
            case Algorithm::vendor_gate: return true;
            case Algorithm::token_bucket: {
                // Tokens at t: min over suffixes j of burst - S_j + (t - t_j) * rate, and burst.
                if (need > burst(c)) return false;
                std::int64_t suffix = 0;
                for (auto it = line.log.rbegin(); it != line.log.rend(); ++it) {
                    suffix += it->second;
                    // burst - suffix + (t - t_j) * limit / period >= need
                    if (static_cast<Int128>(need - burst(c) + suffix) * period(c).count() >
                        static_cast<Int128>((t - it->first).count()) * c.limit) {
                        return false;
                    }
                }
                return true;
            }
        }
        return false;
    }

    // The first moment >= t with room for `need`, if nothing more is admitted; kNever if none.
    Nanos first_room(std::size_t l, KeyHash key, std::int64_t need, Nanos t) const {
        if (room(l, key, need, t)) return t;
        const LimitConfig& c = limits_[l];
        const Line& line = lines_[line_of(l, key)];
        switch (c.algorithm) {
            case Algorithm::concurrency: return kNever;
            case Algorithm::vendor_gate: return t;  // always open (room() said so already)
            case Algorithm::fixed_window: {
                if (need > c.limit) return kNever;
                const Nanos local = t + wall_offset_ + c.utc_offset;
                return t + (floor_to(local, c.window) + c.window - local);
            }
            case Algorithm::sliding_window: {
                if (need > c.limit) return kNever;
                // Room can only appear when an admission leaves the window.
                for (const auto& [at, cost] : line.log) {
                    const Nanos leaves = at + c.window + c.margin;
                    if (leaves > t && room(l, key, need, leaves)) return leaves;
                }
                return kNever;
            }
            case Algorithm::token_bucket: {
                if (need > burst(c)) return kNever;
                // Each suffix constraint gives a lower bound; the latest is the answer.
                Nanos first = t;
                std::int64_t suffix = 0;
                const auto& log = line.log;
                for (auto it = log.rbegin(); it != log.rend(); ++it) {
                    suffix += it->second;
                    const Int128 scaled = static_cast<Int128>(need - burst(c) + suffix) * period(c).count();
                    if (scaled <= 0) continue;
                    const Int128 wait = (scaled + c.limit - 1) / c.limit;
                    first = std::max(first, it->first + Nanos{static_cast<std::int64_t>(wait)});
                }
                return first;
            }
        }
        return kNever;
    }

    // Records an admission and checks (1) for every window that contains it.
    void admit(std::size_t l, KeyHash key, std::int64_t cost, Nanos t) {
        const LimitConfig& c = limits_[l];
        Line& line = lines_[line_of(l, key)];
        line.log.emplace_back(t, cost);
        line.in_flight += cost;
        if (!c.enforce) return;
        bool within = true;
        switch (c.algorithm) {
            case Algorithm::sliding_window: within = sliding_count(c, line, t) <= c.limit; break;
            case Algorithm::fixed_window: within = fixed_count(c, line, t) <= c.limit; break;
            case Algorithm::concurrency: within = line.in_flight <= c.limit; break;
            case Algorithm::vendor_gate: break;  // no count to exceed
            case Algorithm::token_bucket: {
                // Units admitted in [t_i, t] never exceed burst + (t - t_i) * rate.
                std::int64_t units = 0;
                for (auto it = line.log.rbegin(); it != line.log.rend() && within; ++it) {
                    units += it->second;
                    within = static_cast<Int128>(units - burst(c)) * period(c).count() <=
                             static_cast<Int128>((t - it->first).count()) * c.limit;
                }
                break;
            }
        }
        if (!within) {
            FAIL("limit " << l << " (algorithm " << static_cast<int>(c.algorithm) << ") key " << key
                          << " exceeded by the admission at " << t.count());
        }
    }

    void release(std::size_t l, KeyHash key, std::int64_t cost) { lines_[line_of(l, key)].in_flight -= cost; }

    // (1) again at the end, independently of the order of checks: every window of every line.
    void check_all() const {
        bool within = true;
        for (std::size_t index = 0; index < lines_.size(); ++index) {
            const Line& line = lines_[index];
            if (line.log.empty()) continue;
            const LimitConfig& c = limits_[index / kKeys];
            if (!c.enforce || c.algorithm == Algorithm::concurrency) continue;
            std::map<Nanos, std::int64_t> per_window;
            for (std::size_t j = 0; j < line.log.size(); ++j) {
                const auto [tj, cj] = line.log[j];
                if (c.algorithm == Algorithm::fixed_window) {
                    per_window[floor_to(tj + wall_offset_ + c.utc_offset, c.window)] += cj;
                    continue;
                }
                std::int64_t units = 0;
                for (std::size_t i = 0; i <= j; ++i) {
                    const auto [ti, ci] = line.log[j - i];
                    units += ci;
                    if (c.algorithm == Algorithm::sliding_window) {
                        if (ti + c.window + c.margin <= tj) break;
                        within &= units <= c.limit;
                    } else {
                        within &= static_cast<Int128>(units - burst(c)) * period(c).count() <=
                                  static_cast<Int128>((tj - ti).count()) * c.limit;
                    }
                }
            }
            for (const auto& [start, units] : per_window) within &= units <= c.limit;
        }
        REQUIRE(within);
    }

    static std::int64_t burst(const LimitConfig& c) { return c.burst > 0 ? c.burst : c.limit; }
    static Nanos period(const LimitConfig& c) { return c.window + c.margin; }

private:
    struct Line {
        std::vector<std::pair<Nanos, std::int64_t>> log;  // every admission, in time order
        std::int64_t in_flight = 0;
    };

    static std::int64_t sliding_count(const LimitConfig& c, const Line& line, Nanos t) {
        std::int64_t count = 0;
        for (auto it = line.log.rbegin(); it != line.log.rend() && it->first + c.window + c.margin > t;
             ++it) {
            count += it->second;
        }
        return count;
    }
    std::int64_t fixed_count(const LimitConfig& c, const Line& line, Nanos t) const {
        const Nanos start = floor_to(t + wall_offset_ + c.utc_offset, c.window);
        std::int64_t count = 0;
        for (auto it = line.log.rbegin(); it != line.log.rend(); ++it) {
            if (floor_to(it->first + wall_offset_ + c.utc_offset, c.window) != start) break;
            count += it->second;
        }
        return count;
    }

    std::vector<LimitConfig> limits_;
    Nanos wall_offset_;
    std::array<Line, kLines> lines_;
};

// ---------------------------------------------------------------------------
// A random scenario.
struct RouteSpec {
    std::vector<std::size_t> limits;
    Nanos max_wait{0};
    std::size_t max_depth = 0;
};

struct Arrival {
    Nanos at{0};
    AdmissionRequest request;
    Nanos cancel_after = kNever;  // relative to arrival, if it gets queued
    Nanos exchange{0};            // how long an admitted exchange holds concurrency permits
};

struct Scenario {
    std::vector<LimitConfig> limits;
    std::vector<RouteSpec> routes;
    std::vector<Arrival> arrivals;
    Instant start;
    std::uint64_t driver_seed = 0;  // the driver's own choices (late polls, extra next_wakeup calls)
};

template <class T>
const T& pick(std::mt19937_64& rng, const std::vector<T>& v) {
    return v[rng() % v.size()];
}

std::int64_t between(std::mt19937_64& rng, std::int64_t lo, std::int64_t hi) {
    return lo + static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(hi - lo + 1));
}

Scenario make_scenario(std::mt19937_64& rng, bool with_concurrency) {
    Scenario s;
    s.start = Instant{1s, Nanos{1'700'000'000'000'000'000} + Nanos{between(rng, 0, 999) * 1'000'000}};
    const auto limit_count = static_cast<std::size_t>(between(rng, 1, 3));
    std::vector<bool> keyed;
    for (std::size_t i = 0; i < limit_count; ++i) {
        LimitConfig c;
        c.name = "limit-" + std::to_string(i);
        c.limit = between(rng, 2, 20);
        const auto kind = rng() % (with_concurrency ? 10 : 9);
        if (kind < 3) {
            c.algorithm = Algorithm::sliding_window;
            c.window = pick(rng, std::vector<Nanos>{100ms, 250ms, 1s});
            c.margin = pick(rng, std::vector<Nanos>{0ms, 0ms, 10ms});
        } else if (kind < 6) {
            c.algorithm = Algorithm::token_bucket;
            c.window = pick(rng, std::vector<Nanos>{200ms, 1s});
            c.burst = rng() % 3 == 0 ? 0 : between(rng, 1, c.limit);
        } else if (kind < 9) {
            c.algorithm = Algorithm::fixed_window;
            c.window = pick(rng, std::vector<Nanos>{100ms, 500ms, 1s});
        } else {
            c.algorithm = Algorithm::concurrency;
            c.limit = between(rng, 1, 4);
        }
        c.enforce = rng() % 10 != 0;
        keyed.push_back(rng() % 2 == 0);
        if (keyed.back()) c.key.push_back({sluice::config::KeySource::Kind::header, "x-key"});
        s.limits.push_back(c);
    }
    const auto route_count = static_cast<std::size_t>(between(rng, 1, 3));
    for (std::size_t r = 0; r < route_count; ++r) {
        RouteSpec route;
        for (std::size_t l = 0; l < limit_count; ++l) {
            if (rng() % 3 != 0) route.limits.push_back(l);
        }
        if (route.limits.empty()) route.limits.push_back(static_cast<std::size_t>(rng() % limit_count));
        route.max_wait = pick(rng, std::vector<Nanos>{0ms, 20ms, 100ms, 400ms, 1s, 3s});
        route.max_depth = pick(rng, std::vector<std::size_t>{0, 1, 2, 5, 20, 1000});
        s.routes.push_back(route);
    }
    s.driver_seed = rng();
    const Nanos mean_gap = pick(rng, std::vector<Nanos>{2ms, 10ms, 40ms, 100ms});
    const auto count = between(rng, 20, 120);
    Nanos t = s.start.mono;
    for (std::int64_t i = 0; i < count; ++i) {
        if (rng() % 4 != 0) {  // else: same instant as the previous one (a burst)
            std::exponential_distribution<double> gap(1.0 / static_cast<double>(mean_gap.count()));
            t += Nanos{static_cast<std::int64_t>(gap(rng))};
        }
        Arrival a;
        a.at = t;
        a.request.route_index = static_cast<std::size_t>(rng() % route_count);
        const RouteSpec& route = s.routes[a.request.route_index];
        const std::int64_t cost = between(rng, 1, 3);
        for (std::size_t l : route.limits) {
            const KeyHash key = keyed[l] ? static_cast<KeyHash>(between(rng, 1, 2)) : 0;
            a.request.uses.push_back(LimitUse{l, key, rng() % 5 == 0 ? between(rng, 1, 3) : cost});
        }
        a.request.max_wait = route.max_wait;
        if (rng() % 5 == 0) a.request.max_wait = Nanos{between(rng, 0, route.max_wait.count())};
        a.request.max_depth = route.max_depth;
        if (rng() % 10 == 0) a.cancel_after = Nanos{between(rng, 0, a.request.max_wait.count() + 50'000'000)};
        a.exchange = Nanos{between(rng, 1'000'000, 300'000'000)};
        s.arrivals.push_back(a);
    }
    return s;
}

// ---------------------------------------------------------------------------
// The oracle's view of who waits, and the policy checks.
struct Waiting {
    TicketId ticket = 0;
    std::vector<LimitUse> uses;
    std::uint64_t queue = 0;  // route, (limit, key) list and band: the queue's identity
    Nanos deadline{0};
    WaitOrder order;                  // its place in the admission order
    std::optional<Nanos> fair_start;  // its start tag, if it belongs to the fair-shared group
    // Its band (class handicap, caller + 1 or 0) and where it yields (AdmissionRequest::yields).
    Nanos handicap{0};
    std::uint64_t caller = 0;
    std::uint64_t yields = 0;
};

// The request the units ahead are counted for: its band and where it yields.
struct Who {
    Nanos handicap{0};
    std::uint64_t caller = 0;
    const std::vector<LimitUse>* uses = nullptr;
    std::uint64_t yields = 0;
};
Who who(const AdmissionRequest& r) {
    return Who{r.handicap, r.fair_share ? r.fair_share->caller + 1 : 0, &r.uses, r.yields};
}
Who who(const Waiting& w) {
    return Who{w.handicap, w.caller, &w.uses, w.yields};
}

struct Stats {
    std::size_t scenarios = 0, submitted = 0, admitted_at_once = 0, queued = 0, admitted_later = 0,
                queue_full = 0, timeout_at_once = 0, timeout_later = 0, cancelled = 0, wakeups = 0,
                idle_wakeups = 0, lent = 0, lent_permits = 0;
};

std::uint64_t queue_identity(const AdmissionRequest& r) {
    // Fixed width: the route, then one nibble per use slot (0 = unused), then the band.
    std::uint64_t id = r.route_index;
    for (std::size_t i = 0; i < kMaxLimits; ++i) {
        id = id * 16 + (i < r.uses.size() ? line_of(r.uses[i].limit_index, r.uses[i].key) + 1 : 0);
    }
    id = id * 1'000'003 + static_cast<std::uint64_t>(r.handicap.count() / 1'000'000);
    id = id * 16 + (r.fair_share ? r.fair_share->caller + 1 : 0);
    id = id * 16 + r.yields;
    return id;
}

class Oracle {
public:
    Oracle(const Scenario& s) : model_(s.limits, s.start.wall - s.start.mono) {}

    LimitModel& model() { return model_; }
    const std::vector<Waiting>& waiting() const { return waiting_; }

    // A newcomer's place in the admission order (brute force: the fair-share
    // group's start tags kept by hand, as docs/priorities.md states the rule).
    struct Newcomer {
        WaitOrder order;
        std::optional<Nanos> fair_start;
        Nanos fair_finish{0};
    };
    Newcomer place_newcomer(const AdmissionRequest& r, Nanos t) {
        Newcomer n;
        Nanos start = t;
        if (r.fair_share) {
            const bool group_waits = std::any_of(waiting_.begin(), waiting_.end(),
                                                 [](const Waiting& w) { return w.fair_start.has_value(); });
            if (!group_waits) {
                vtime_ = t;
                finish_.clear();
            }
            start = std::max(vtime_, finish_[r.fair_share->caller]);
            n.fair_start = start;
            n.fair_finish = start + r.fair_share->step;
        }
        n.order = WaitOrder{start + r.handicap, seq_ + 1};
        return n;
    }
    // The newcomer waits: its sequence taken, its caller's finish tag moved.
    void took_place(const AdmissionRequest& r, const Newcomer& n) {
        ++seq_;
        if (r.fair_share) finish_[r.fair_share->caller] = n.fair_finish;
    }

    // For a newcomer: the waiting units on its keys ordered before it (and counted for it).
    Units units_before(WaitOrder order, const Who& target) const {
        Units units{};
        for (const auto& w : waiting_) {
            if (order < w.order) break;
            add_units(units, w, target);
        }
        return units;
    }
    // The units counted ahead of the waiter at `index`, or of `target` behind the first `count`.
    Units ahead_of_index(std::size_t index) const { return units_of_first(index, who(waiting_[index])); }
    Units units_of_first(std::size_t count, const Who& target) const {
        Units units{};
        for (std::size_t j = 0; j < count && j < waiting_.size(); ++j) add_units(units, waiting_[j], target);
        return units;
    }
    std::size_t count_before(WaitOrder order) const {
        return static_cast<std::size_t>(std::count_if(waiting_.begin(), waiting_.end(),
                                                      [&](const Waiting& w) { return w.order < order; }));
    }

    bool admissible(const std::vector<LimitUse>& uses, const Units& ahead, Nanos t) const {
        for (const auto& u : uses) {
            if (!model_.config(u.limit_index).enforce) continue;
            if (!model_.room(u.limit_index, u.key, ahead_of(ahead, u) + u.cost, t)) return false;
        }
        return true;
    }

    // With `time_only`, concurrency limits are left out: the moment the
    // request's time-based limits first let it go behind the units ahead.
    Nanos first_admissible(const std::vector<LimitUse>& uses, const Units& ahead, Nanos t,
                           bool time_only = false) const {
        Nanos first = t;
        for (const auto& u : uses) {
            if (!model_.config(u.limit_index).enforce) continue;
            if (time_only && model_.config(u.limit_index).algorithm == Algorithm::concurrency) continue;
            first = std::max(first, model_.first_room(u.limit_index, u.key, ahead_of(ahead, u) + u.cost, t));
        }
        return first;
    }

    std::size_t depth(std::uint64_t queue) const {
        return static_cast<std::size_t>(std::count_if(waiting_.begin(), waiting_.end(),
                                                      [&](const Waiting& w) { return w.queue == queue; }));
    }

    // Position of a ticket, the units ahead of it on its keys, and whether it heads its queue.
    struct Place {
        std::size_t index = 0;
        bool head = true;
        Units ahead{};
    };
    std::optional<Place> find(TicketId ticket) const {
        Place p;
        for (std::size_t i = 0; i < waiting_.size(); ++i) {
            if (waiting_[i].ticket == ticket) {
                p.index = i;
                for (std::size_t j = 0; j < i; ++j) {
                    if (waiting_[j].queue == waiting_[i].queue) p.head = false;
                }
                p.ahead = ahead_of_index(i);
                return p;
            }
        }
        return std::nullopt;
    }

    // For each of the first `count` waiters, the units of the waiters before it.
    std::vector<Units> ahead_of_each(std::size_t count) const {
        std::vector<Units> each;
        for (std::size_t i = 0; i < count && i < waiting_.size(); ++i) each.push_back(ahead_of_index(i));
        return each;
    }

    // Whether `target` counts the use `i` of `w` ahead of it: unless `w` yields there to
    // another band (docs/priorities.md, a capped class).
    static bool counted(const Waiting& w, std::size_t i, const Who& target) {
        if ((w.yields >> i & 1) == 0) return true;
        const auto& u = w.uses[i];
        for (std::size_t k = 0; k < target.uses->size(); ++k) {
            const auto& x = (*target.uses)[k];
            if (x.limit_index != u.limit_index || x.key != u.key) continue;
            return w.handicap == target.handicap && w.caller == target.caller &&
                   (target.yields >> k & 1) != 0;
        }
        return true;  // not on a line of the target's: nothing to count either way
    }

    // `o`'s uses that `target` cannot take from without counting them (the lending check's scope).
    static std::vector<LimitUse> uses_counted_by(const Waiting& o, const Who& target) {
        std::vector<LimitUse> uses;
        for (std::size_t i = 0; i < o.uses.size(); ++i) {
            if (counted(o, i, target)) uses.push_back(o.uses[i]);
        }
        return uses;
    }

    bool shares_enforced_line(const Who& target, const Waiting& o) const {
        for (const auto& x : *target.uses) {
            if (!model_.config(x.limit_index).enforce) continue;
            for (std::size_t i = 0; i < o.uses.size(); ++i) {
                const auto& y = o.uses[i];
                if (x.limit_index == y.limit_index && x.key == y.key && counted(o, i, target)) return true;
            }
        }
        return false;
    }

    void enqueue(Waiting w) {
        const auto at = std::upper_bound(waiting_.begin(), waiting_.end(), w.order,
                                         [](const WaitOrder& o, const Waiting& x) { return o < x.order; });
        waiting_.insert(at, std::move(w));
    }
    void remove(std::size_t index, bool admitted = false) {
        const Waiting& w = waiting_[index];
        if (admitted && w.fair_start) vtime_ = std::max(vtime_, *w.fair_start);
        waiting_.erase(waiting_.begin() + static_cast<std::ptrdiff_t>(index));
    }

    void admit(const std::vector<LimitUse>& uses, Nanos t) {
        for (const auto& u : uses) model_.admit(u.limit_index, u.key, u.cost, t);
    }

    // The first moment >= t at which something can be decided if nothing else
    // happens: a head becomes admissible or a deadline comes. With `settled`
    // (after a poll at t) nothing may be decidable at t itself (5).
    Nanos first_decidable(Nanos t, bool settled) const {
        Nanos first = kNever;
        std::set<std::uint64_t> seen;
        for (std::size_t i = 0; i < waiting_.size(); ++i) {
            const Waiting& w = waiting_[i];
            if (settled && w.deadline <= t) {
                FAIL("ticket " << w.ticket << " is still waiting past its deadline at " << t.count());
            }
            first = std::min(first, w.deadline);
            if (seen.insert(w.queue).second) {
                const Nanos head_first = first_admissible(w.uses, ahead_of_index(i), t);
                if (settled && head_first <= t) {
                    FAIL("ticket " << w.ticket << " heads its queue and is admissible at " << t.count());
                }
                first = std::min(first, head_first);
            }
        }
        return first;
    }

private:
    void add_units(Units& units, const Waiting& w, const Who& target) const {
        for (std::size_t i = 0; i < w.uses.size(); ++i) {
            const auto& u = w.uses[i];
            if (model_.config(u.limit_index).enforce && counted(w, i, target))
                units[line_of(u.limit_index, u.key)] += u.cost;
        }
    }
    static std::int64_t ahead_of(const Units& ahead, const LimitUse& u) {
        return ahead[line_of(u.limit_index, u.key)];
    }

    LimitModel model_;
    std::vector<Waiting> waiting_;           // in admission order
    std::uint64_t seq_ = 0;                  // the sequence of the last request that waited
    Nanos vtime_{0};                         // the fair-shared group's virtual time
    std::map<std::uint64_t, Nanos> finish_;  // its callers' last finish tags
};

// Runs one scenario: the clock jumps to the next arrival, cancel, release or
// next_wakeup(), whichever comes first, and every answer is checked.
class ScenarioRun {
public:
    ScenarioRun(const Scenario& s, Factory factory, Stats& stats, AdmissionOptions options)
        : s_(s),
          stats_(stats),
          options_(options),
          controller_(build(s, factory, options)),
          oracle_(s),
          clock_(s.start),
          driver_(s.driver_seed) {}

    void run() {
        ++stats_.scenarios;
        while (true) {
            const Nanos wake = controller_.next_wakeup(clock_.now());
            // Sometimes the timer fires late; what arrives meanwhile meets an unpolled controller.
            if (wake != late_wake_) {
                late_wake_ = wake;
                lateness_ = driver_() % 4 == 0 ? Nanos{between(driver_, 1, 5'000'000)} : 0ns;
            }
            const Nanos fire = wake == kNever ? kNever : wake + lateness_;
            Nanos t = fire;
            if (next_arrival_ < s_.arrivals.size()) t = std::min(t, s_.arrivals[next_arrival_].at);
            if (!cancels_.empty()) t = std::min(t, cancels_.begin()->first);
            if (!releases_.empty()) t = std::min(t, releases_.begin()->first);
            if (t == kNever) break;
            REQUIRE(t >= now());
            clock_.advance(t - now());
            const bool cancel_or_release = (!cancels_.empty() && cancels_.begin()->first == t) ||
                                           (!releases_.empty() && releases_.begin()->first == t);
            if (t < fire && !cancel_or_release) {
                // Only arrivals: the I/O layer submits without polling. Unless the
                // timer is overdue, nothing was decidable and nothing is now.
                submit_arrivals(t);
                if (driver_() % 3 == 0) {
                    const Nanos next = controller_.next_wakeup(clock_.now());
                    REQUIRE(next <= oracle_.first_decidable(t, t < wake));
                    if (t < wake) REQUIRE(next > t);
                }
                continue;
            }
            step(t, t == fire && !arrival_due(t) && !cancel_or_release);
        }
        REQUIRE(oracle_.waiting().empty());
        REQUIRE(controller_.waiting() == 0);
        REQUIRE(controller_.queue_count() == 0);
        for (const auto& [ticket, times] : decided_) REQUIRE(times == 1);
        for (const auto& [ticket, arrival] : queued_) REQUIRE(decided_.count(ticket) == 1);  // (4)
        oracle_.model().check_all();                                                         // (1)
    }

private:
    static AdmissionController build(const Scenario& s, Factory factory, AdmissionOptions options) {
        std::vector<std::unique_ptr<sluice::limit::Limiter>> limiters;
        for (const auto& c : s.limits) limiters.push_back(factory(c));
        return AdmissionController(std::move(limiters), options);
    }

    // A request about to be admitted at t although the strict rule refuses it:
    // it goes ahead of the first `older` waiters. Checks that this is allowed
    // (6) and returns what (6) checks once it is recorded.
    struct Lending {
        std::vector<std::size_t> older;                 // indexes of the older waiters sharing a line with it
        std::vector<std::vector<LimitUse>> older_uses;  // their uses it counts (not where they yield to it)
        std::vector<std::vector<LimitUse>> yielded;     // their uses where they yield to it
        std::vector<Nanos> time_earliest;               // their time-based earliest before it went
    };
    Lending check_lending(const Who& target, std::size_t older, Nanos t) {
        const auto& uses = *target.uses;
        REQUIRE(options_.work_conserving);
        // Its own limits have room now, nothing counted ahead.
        REQUIRE(oracle_.admissible(uses, Units{}, t));
        const auto ahead = oracle_.ahead_of_each(older);
        Lending lending;
        for (std::size_t j = 0; j < older; ++j) {
            const Waiting& o = oracle_.waiting()[j];
            if (!oracle_.shares_enforced_line(target, o)) continue;
            lending.older.push_back(j);
            lending.older_uses.push_back(Oracle::uses_counted_by(o, target));
            std::vector<LimitUse> yielded;
            for (const auto& u : o.uses) {
                const auto& counted = lending.older_uses.back();
                if (std::none_of(counted.begin(), counted.end(), [&](const LimitUse& x) {
                        return x.limit_index == u.limit_index && x.key == u.key;
                    }))
                    yielded.push_back(u);
            }
            lending.yielded.push_back(std::move(yielded));
            lending.time_earliest.push_back(oracle_.first_admissible(o.uses, ahead[j], t, true));
        }
        // A concurrency permit the strict rule keeps for older waiters is lent
        // only while each of them is held back by time for lend_horizon more.
        const Units all_older = oracle_.units_of_first(older, target);
        for (const auto& u : uses) {
            const LimitConfig& c = s_.limits[u.limit_index];
            if (!c.enforce || c.algorithm != Algorithm::concurrency) continue;
            if (oracle_.admissible({u}, all_older, t)) continue;  // the strict rule lets it have this one
            for (std::size_t k = 0; k < lending.older.size(); ++k) {
                const auto& counted_uses = lending.older_uses[k];
                const bool on_line = std::any_of(
                    counted_uses.begin(), counted_uses.end(),
                    [&](const LimitUse& x) { return x.limit_index == u.limit_index && x.key == u.key; });
                if (on_line) REQUIRE(lending.time_earliest[k] >= t + options_.lend_horizon);
            }
            ++stats_.lent_permits;
        }
        ++stats_.lent;
        return lending;
    }

    // (6) after the lent admission is recorded: no older waiter's time-based
    // earliest moved later.
    void check_lent(const Lending& lending, Nanos t) {
        const auto ahead = oracle_.ahead_of_each(oracle_.waiting().size());
        for (std::size_t k = 0; k < lending.older.size(); ++k) {
            const Waiting& o = oracle_.waiting()[lending.older[k]];
            INFO("older ticket " << o.ticket);
            // Where it yields to the lent request it may be delayed (docs/priorities.md); nowhere else.
            const auto& yielded = lending.yielded[k];
            const Nanos by_yielded =
                yielded.empty() ? lending.time_earliest[k]
                                : oracle_.first_admissible(yielded, ahead[lending.older[k]], t, true);
            REQUIRE(oracle_.first_admissible(o.uses, ahead[lending.older[k]], t, true) <=
                    std::max(lending.time_earliest[k], by_yielded));
        }
    }

    Nanos now() const { return clock_.now().mono; }
    bool arrival_due(Nanos t) const {
        return next_arrival_ < s_.arrivals.size() && s_.arrivals[next_arrival_].at == t;
    }

    void step(Nanos t, bool only_wakeup) {
        bool changed = false;
        while (!releases_.empty() && releases_.begin()->first == t) {
            for (const auto& u : releases_.begin()->second)
                oracle_.model().release(u.limit_index, u.key, u.cost);
            controller_.release(releases_.begin()->second, clock_.now());
            releases_.erase(releases_.begin());
            changed = true;
        }
        while (!cancels_.empty() && cancels_.begin()->first == t) {
            const TicketId ticket = cancels_.begin()->second;
            cancels_.erase(cancels_.begin());
            const auto place = oracle_.find(ticket);
            REQUIRE(controller_.cancel(ticket, clock_.now()) == place.has_value());
            if (place) {
                oracle_.remove(place->index);
                ++decided_[ticket];
                ++stats_.cancelled;
                changed = true;
            }
        }
        // A release or a cancel can bring a head forward: next_wakeup() must show it at once.
        if (changed && driver_() % 2 == 0) {
            REQUIRE(controller_.next_wakeup(clock_.now()) <= oracle_.first_decidable(t, false));
        }
        // Sometimes the timer is late: requests arriving now are submitted before the poll.
        const bool late_poll = driver_() % 4 == 0;
        if (late_poll) submit_arrivals(t);
        const auto decisions = controller_.poll(clock_.now());
        if (only_wakeup) {
            ++stats_.wakeups;
            if (decisions.empty()) ++stats_.idle_wakeups;
        }
        for (const Admission& a : decisions) check_decision(a, t);
        if (!late_poll) submit_arrivals(t);

        const Nanos settled = oracle_.first_decidable(t, true);
        const Nanos next = controller_.next_wakeup(clock_.now());
        INFO("at " << t.count() << " next_wakeup " << next.count() << " oracle " << settled.count());
        REQUIRE(next > t);         // no busy polling
        REQUIRE(next <= settled);  // (5) never late
        REQUIRE(controller_.waiting() == oracle_.waiting().size());
    }

    void check_decision(const Admission& a, Nanos t) {
        INFO("poll at " << t.count() << " decided ticket " << a.ticket);
        REQUIRE(++decided_[a.ticket] == 1);  // (4)
        const auto place = oracle_.find(a.ticket);
        REQUIRE(place.has_value());
        const Waiting w = oracle_.waiting()[place->index];
        REQUIRE(a.queue.depth == oracle_.depth(w.queue) - 1);
        if (a.outcome == Outcome::admitted) {
            REQUIRE(place->head);      // (3) FIFO in its queue
            REQUIRE(t <= w.deadline);  // never after its deadline
            // (3) behind older units, or (6) ahead of them without delaying them.
            std::optional<Lending> lending;
            if (!oracle_.admissible(w.uses, place->ahead, t))
                lending = check_lending(who(w), place->index, t);
            oracle_.remove(place->index, true);
            admitted(w.uses, queued_.at(a.ticket));
            if (lending) check_lent(*lending, t);
            ++stats_.admitted_later;
        } else {
            REQUIRE(a.outcome == Outcome::rejected);
            REQUIRE(a.reason == Errc::admission_timeout);
            // Never admitted after its deadline, even when a late poll finds it admissible.
            REQUIRE_FALSE((place->head && w.deadline >= t && oracle_.admissible(w.uses, place->ahead, t)));
            // Its deadline passed, or even alone it could not make it in time.
            if (w.deadline > t) REQUIRE(oracle_.first_admissible(w.uses, Units{}, t) > w.deadline);
            oracle_.remove(place->index);
            ++stats_.timeout_later;
        }
    }

    void submit_arrivals(Nanos t) {
        while (arrival_due(t)) {
            const Arrival& arrival = s_.arrivals[next_arrival_++];
            const auto identity = queue_identity(arrival.request);
            const std::size_t depth = oracle_.depth(identity);
            const auto newcomer = oracle_.place_newcomer(arrival.request, t);
            const auto ahead = oracle_.units_before(newcomer.order, who(arrival.request));
            const bool admissible_now = depth == 0 && oracle_.admissible(arrival.request.uses, ahead, t);
            const Nanos first = oracle_.first_admissible(arrival.request.uses, ahead, t);
            const Admission a = controller_.submit(arrival.request, clock_.now());
            ++stats_.submitted;
            INFO("submit at " << t.count() << " depth " << depth << " max_wait "
                              << arrival.request.max_wait.count());
            // (2), (3): what the strict rule admits is admitted; with work
            // conservation a newcomer heading a new queue may go ahead (6).
            if (options_.work_conserving) {
                if (admissible_now) REQUIRE(a.outcome == Outcome::admitted);
            } else {
                REQUIRE((a.outcome == Outcome::admitted) == admissible_now);
            }
            switch (a.outcome) {
                case Outcome::admitted: {
                    std::optional<Lending> lending;
                    if (!admissible_now) {
                        REQUIRE(depth == 0);
                        lending =
                            check_lending(who(arrival.request), oracle_.count_before(newcomer.order), t);
                    }
                    admitted(arrival.request.uses, arrival);
                    if (lending) check_lent(*lending, t);
                    ++stats_.admitted_at_once;
                    break;
                }
                case Outcome::queued:
                    REQUIRE(depth < arrival.request.max_depth);
                    REQUIRE(arrival.request.max_wait > 0ns);
                    REQUIRE(a.queue.depth == depth + 1);
                    REQUIRE(decided_.count(a.ticket) == 0);
                    oracle_.took_place(arrival.request, newcomer);
                    oracle_.enqueue(
                        Waiting{a.ticket, arrival.request.uses, identity, t + arrival.request.max_wait,
                                newcomer.order, newcomer.fair_start, arrival.request.handicap,
                                arrival.request.fair_share ? arrival.request.fair_share->caller + 1 : 0,
                                arrival.request.yields});
                    queued_.emplace(a.ticket, arrival);
                    if (arrival.cancel_after != kNever) cancels_.emplace(t + arrival.cancel_after, a.ticket);
                    ++stats_.queued;
                    break;
                case Outcome::rejected:
                    if (a.reason == Errc::queue_full) {
                        REQUIRE(depth >= arrival.request.max_depth);
                        ++stats_.queue_full;
                    } else {
                        REQUIRE(a.reason == Errc::admission_timeout);
                        REQUIRE(depth < arrival.request.max_depth);
                        // (2) even in the most favourable case it could not go within max_wait.
                        // (Less the scheduling slack: a timer a few ms late must not miss the deadline.)
                        if (arrival.request.max_wait > 0ns && first != kNever) {
                            REQUIRE(first - t > arrival.request.max_wait - sluice::queue::scheduling_slack(
                                                                               arrival.request.max_wait));
                        }
                        ++stats_.timeout_at_once;
                    }
                    break;
            }
        }
    }

    void admitted(const std::vector<LimitUse>& uses, const Arrival& arrival) {
        oracle_.admit(uses, now());
        bool holds_permits = false;
        for (const auto& u : uses)
            holds_permits |= s_.limits[u.limit_index].algorithm == Algorithm::concurrency;
        if (holds_permits) releases_.emplace(now() + arrival.exchange, uses);
    }

    const Scenario& s_;
    Stats& stats_;
    AdmissionOptions options_;
    AdmissionController controller_;
    Oracle oracle_;
    FakeClock clock_;
    std::mt19937_64 driver_;
    Nanos late_wake_ = kNever;
    Nanos lateness_{0};
    std::size_t next_arrival_ = 0;
    std::multimap<Nanos, TicketId> cancels_;
    std::multimap<Nanos, std::vector<LimitUse>> releases_;
    std::map<TicketId, int> decided_;  // ticket -> times decided or cancelled (4)
    std::map<TicketId, Arrival> queued_;
};

// Priority classes and callers (docs/priorities.md): each arrival gets a class
// handicap, and on some routes a caller of the fair-shared limit 0 with a weight.
// Drawn from their own generator, so the scenarios are otherwise the same.
void add_classes_and_callers(Scenario& s, std::mt19937_64& rng) {
    std::vector<bool> fair_route(s.routes.size());
    for (std::size_t r = 0; r < s.routes.size(); ++r) {
        const auto& limits = s.routes[r].limits;
        fair_route[r] = rng() % 2 == 0 && std::find(limits.begin(), limits.end(), 0) != limits.end();
    }
    for (Arrival& a : s.arrivals) {
        a.request.handicap = pick(rng, std::vector<Nanos>{0ms, 0ms, 30ms, 150ms, 1s});
        // Sometimes it yields on some of its lines (a capped class).
        if (rng() % 4 == 0) a.request.yields = rng() % (std::uint64_t{1} << a.request.uses.size());
        if (!fair_route[a.request.route_index]) continue;
        const std::uint64_t caller = rng() % 3;
        const std::int64_t weight = caller == 0 ? 3 : static_cast<std::int64_t>(caller);
        a.request.fair_share =
            AdmissionRequest::FairShare{0, caller, Nanos{between(rng, 1, 40) * 1'000'000 / weight}};
    }
}

void run_oracle(Factory factory, std::uint64_t seed, int scenarios, bool work_conserving = true,
                bool classes = false) {
    std::mt19937_64 rng(seed);
    std::mt19937_64 horizons(seed + 1);  // apart, so the scenarios are the same in both modes
    std::mt19937_64 bands(seed + 2);
    Stats stats;
    for (int i = 0; i < scenarios; ++i) {
        Scenario s = make_scenario(rng, true);
        if (classes) add_classes_and_callers(s, bands);
        AdmissionOptions options;
        options.work_conserving = work_conserving;
        options.lend_horizon = pick(horizons, std::vector<Nanos>{0ms, 20ms, 100ms, 500ms});
        INFO("scenario " << i << " of seed " << seed << ", lend_horizon " << options.lend_horizon.count());
        ScenarioRun(s, factory, stats, options).run();
    }
    if (work_conserving) {
        CHECK(stats.lent > 0);
        CHECK(stats.lent_permits > 0);
    }
    // The patterns must actually exercise every path.
    CHECK(stats.admitted_at_once > 0);
    CHECK(stats.admitted_later > 0);
    CHECK(stats.queue_full > 0);
    CHECK(stats.timeout_at_once > 0);
    CHECK(stats.timeout_later > 0);
    CHECK(stats.cancelled > 0);
    WARN("submitted " << stats.submitted << ", admitted at once " << stats.admitted_at_once << ", queued "
                      << stats.queued << ", admitted later " << stats.admitted_later << ", queue_full "
                      << stats.queue_full << ", timeout at once " << stats.timeout_at_once
                      << ", timeout later " << stats.timeout_later << ", cancelled " << stats.cancelled
                      << ", wake-ups " << stats.wakeups << " (" << stats.idle_wakeups << " idle), lent "
                      << stats.lent << " (" << stats.lent_permits << " concurrency permits)");
}

}  // namespace

TEST_CASE("oracle: random arrivals against the real limiters", "[queue][oracle]") {
    run_oracle(&sluice::limit::make_limiter, 20240601, 2000);
}

// The same patterns over the test's reference limiters: a failure here and not
// above (or the reverse) points at the limiters rather than the controller.
TEST_CASE("oracle: random arrivals against exact reference limiters", "[queue][oracle]") {
    run_oracle(&sluice::queue::testing::make_exact_limiter, 20240602, 600);
}

// work_conserving off: the strict rule, exactly (3) as it was.
TEST_CASE("oracle: the strict rule alone", "[queue][oracle]") {
    run_oracle(&sluice::limit::make_limiter, 20240603, 500, false);
}

// Classes and callers: the order is no longer the arrival order, every check
// above holds in the admission order (docs/priorities.md), and the limits are
// never exceeded.
TEST_CASE("oracle: random classes and fair-shared callers", "[queue][oracle][priority]") {
    run_oracle(&sluice::limit::make_limiter, 20240604, 1500, true, true);
}

TEST_CASE("oracle: classes and callers under the strict rule alone", "[queue][oracle][priority]") {
    run_oracle(&sluice::limit::make_limiter, 20240605, 400, false, true);
}
