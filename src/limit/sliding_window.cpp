// Sliding (rolling) window: at most `limit` units in ANY interval of length
// D = window + margin. Two representations of one key's history:
//
// - Exact log (limit <= kSlidingExactMaxUnits): one timestamp per admitted unit
//   in a ring of `limit` slots (a request of cost c writes c slots). The count
//   is exact and so is earliest(): the k-th oldest unit leaves at its time + D.
// - Bucket ring (larger limits): kSlidingBuckets counters over time buckets of
//   width g = ceil(D / (kSlidingBuckets - 1)), aligned to mono time, counted
//   conservatively.
//
// THE GUARANTEE. A unit admitted at s counts at time t iff t - D < s <= t.
// Every admission of c units at time a checks count(a) + c <= limit, where
// count(a) is never below the exact number of units admitted in (a - D, a].
// Then every interval (t - D, t] holds at most `limit` units: let a be the last
// admission in it; every unit in (t - D, t] was admitted in (t - D, a], which
// lies inside (a - D, a] because a <= t; so the interval holds at most
// count(a) + c <= limit units. (This needs admissions recorded in time order:
// an Instant older than the newest record is treated as the newest, which is
// conservative; the controller serialises calls on one monotonic clock.)
//
// Why the bucket ring never undercounts: bucket b holds units admitted in
// [b*g, (b+1)*g), so its newest possible unit is at (b+1)*g - 1 and is in the
// window until (b+1)*g - 1 + D. The ring counts the whole bucket until exactly
// then, i.e. until its newest possible unit has left: any unit still inside the
// window is in a bucket still counted. At most 256 buckets can be counted at
// once (floor(t/g) - floor((t-D+1)/g) <= ceil((D-1)/g) <= 255), so 256 slots
// suffice and a slot is only reused once its bucket has expired.
//
// What it costs: a unit is held at most g - 1 ns longer than exact, and
// g - 1 <= D/255, so a sender that always waits for room keeps at least
// D / (D + g - 1) >= 255/256 (99.6 %) of the exact throughput.
//
// earliest() for n = ahead + cost units: the moment the (count + n - limit)
// oldest counted units have left (exact for the log; for the ring, exactly when
// the ring itself will admit). When n exceeds what leaving units can free
// (n > limit), the units ahead are admitted no earlier than now and leave no
// earlier than now + D, so max(now + D, when the newest counted unit leaves) is
// a lower bound, as the contract requires.

#include <algorithm>
#include <memory>

#include "sluice/limit/algorithms.hpp"
#include "sluice/limit/keyed_limiter.hpp"

namespace sluice::limit {
namespace {

using detail::floor_div;

class SlidingLogPolicy {
public:
    struct State {
        std::unique_ptr<std::int64_t[]> times;  // ring of `limit` unit timestamps (mono ns), non-decreasing
        std::uint32_t start = 0;                // oldest
        std::uint32_t size = 0;
        // Shadow mode (consume past the limit) cannot fit in the ring: the oldest
        // units are folded into one lump counted as admitted at overflow_time,
        // the newest of them (so they are held longer, never shorter). Always
        // older than or as old as the ring's oldest unit.
        std::int64_t overflow = 0;
        std::int64_t overflow_time = 0;
    };

    SlidingLogPolicy(std::int64_t limit, std::int64_t span) : limit_(limit), span_(span) {}

    std::int64_t capacity() const noexcept { return limit_; }
    State make_state() const {
        State s;
        s.times =
            std::make_unique<std::int64_t[]>(static_cast<std::size_t>(std::max<std::int64_t>(limit_, 1)));
        return s;
    }
    void reset(State& s) const noexcept {
        s.start = 0;
        s.size = 0;
        s.overflow = 0;
    }

    PolicyView probe(State& s, std::int64_t units, const Instant& now) const {
        const std::int64_t t = now.mono.count();
        expire(s, t);
        const std::int64_t count = s.overflow + s.size;
        PolicyView v;
        v.allowed = count + units <= limit_;
        if (!v.allowed) {
            const std::int64_t k = count + units - limit_;  // units that must leave first
            std::int64_t leaves = 0;
            if (k <= s.overflow) {
                leaves = s.overflow_time + span_;
            } else if (k <= count) {
                leaves = at(s, static_cast<std::uint32_t>(k - s.overflow - 1)) + span_;
            } else {
                leaves = std::max(t, newest(s)) + span_;
            }
            v.earliest = Nanos{leaves};
        }
        v.remaining = limit_ - count;
        v.reset = count > 0 ? Nanos{newest(s) + span_} : now.mono;
        return v;
    }

    void consume(State& s, std::int64_t cost, const Instant& now) const {
        const std::int64_t t = now.mono.count();
        expire(s, t);
        if (cost <= 0) return;
        const std::int64_t when = (s.size + s.overflow > 0) ? std::max(t, newest(s)) : t;
        const auto cap = static_cast<std::uint32_t>(limit_);
        const std::int64_t excess = static_cast<std::int64_t>(s.size) + cost - limit_;
        if (excess > 0) {  // only in shadow mode: fold the oldest units into the lump
            const auto from_ring = static_cast<std::uint32_t>(std::min<std::int64_t>(excess, s.size));
            if (from_ring > 0) {
                s.overflow_time = std::max(s.overflow_time, at(s, from_ring - 1));
                s.start = wrap(s.start + from_ring);
                s.size -= from_ring;
                s.overflow += from_ring;
            }
            const std::int64_t from_new = excess - from_ring;
            if (from_new > 0) {
                s.overflow += from_new;
                s.overflow_time = when;
                cost -= from_new;
            }
        }
        for (std::int64_t i = 0; i < cost && s.size < cap; ++i) {
            s.times[wrap(s.start + s.size)] = when;
            ++s.size;
        }
    }

    void release(State&, std::int64_t) const noexcept {}

    Nanos fresh_at(const State& s, const Instant&) const {
        if (s.size + s.overflow == 0) return Nanos::min();
        return Nanos{newest(s) + span_};
    }

    std::size_t heap_bytes() const noexcept {
        return static_cast<std::size_t>(std::max<std::int64_t>(limit_, 1)) * sizeof(std::int64_t);
    }

private:
    std::uint32_t wrap(std::uint32_t i) const noexcept {
        const auto cap = static_cast<std::uint32_t>(limit_);
        return i >= cap ? i - cap : i;
    }
    std::int64_t at(const State& s, std::uint32_t i) const noexcept { return s.times[wrap(s.start + i)]; }
    std::int64_t newest(const State& s) const noexcept {
        return s.size > 0 ? at(s, s.size - 1) : s.overflow_time;
    }

    // Drops units no longer in the window at t (admitted at or before t - D).
    void expire(State& s, std::int64_t t) const noexcept {
        const std::int64_t cutoff = t - span_;
        if (s.overflow > 0 && s.overflow_time <= cutoff) s.overflow = 0;
        if (s.size == 0) return;
        if (at(s, s.size - 1) <= cutoff) {  // everything left: common after an idle spell
            s.start = 0;
            s.size = 0;
            return;
        }
        while (s.times[s.start] <= cutoff) {
            s.start = wrap(s.start + 1);
            --s.size;
        }
    }

    std::int64_t limit_;  // <= kSlidingExactMaxUnits
    std::int64_t span_;   // D = window + margin, ns
};

class SlidingBucketPolicy {
public:
    static constexpr std::int64_t kSlots = kSlidingBuckets;
    static constexpr std::int64_t kMask = kSlots - 1;
    static_assert((kSlots & kMask) == 0, "the bucket count must be a power of two");
    static constexpr std::int64_t kFar = std::numeric_limits<std::int64_t>::min() / 4;  // "before any time"

    // The newest bucket's count is kept inline (in the key's table slot), not
    // in the ring: a key's units mostly land in the bucket of its previous
    // ones, so a typical decision (probe, then consume into the head bucket)
    // reads and writes the slot alone, and the ring, a second cache line
    // behind a pointer, is touched only when the head moves on or a bucket
    // expires (about once per bucket width per key).
    struct State {
        std::unique_ptr<std::int64_t[]> counts;  // kSlots counters; bucket b < head lives in slot b & kMask
        // Every bucket below `tail` has expired and its slot is zero; `head` is
        // the newest bucket written, whose ring slot is zero too (its count is
        // head_count). While total > 0, head - tail < kSlots and the tail
        // bucket is not empty (so earliest() for the next unit to leave needs
        // no walk over empty buckets).
        std::int64_t tail = kFar;
        std::int64_t head = kFar;
        std::int64_t head_count = 0;  // units in bucket `head`, while head >= tail
        std::int64_t total = 0;       // sum of all slots, plus head_count
    };

    SlidingBucketPolicy(std::int64_t limit, std::int64_t span)
        : limit_(limit), span_(span), width_((span + kSlots - 2) / (kSlots - 1)) {}

    std::int64_t capacity() const noexcept { return limit_; }
    Nanos granularity() const noexcept { return Nanos{width_ - 1}; }
    State make_state() const {
        State s;
        s.counts = std::make_unique<std::int64_t[]>(static_cast<std::size_t>(kSlots));  // zeroed
        return s;
    }
    void reset(State& s) const noexcept {
        if (s.total != 0) std::fill_n(s.counts.get(), kSlots, 0);
        s.total = 0;
        s.head_count = 0;
        s.tail = kFar;
        s.head = kFar;
    }

    PolicyView probe(State& s, std::int64_t units, const Instant& now) const {
        const std::int64_t t = now.mono.count();
        advance(s, t);
        PolicyView v;
        v.allowed = s.total + units <= limit_;
        if (!v.allowed) {
            const std::int64_t k = s.total + units - limit_;
            if (k <= s.total) {
                // The head bucket holds the rest (k <= total): no need to read it.
                std::int64_t freed = 0;
                std::int64_t b = s.tail;
                for (; b < s.head; ++b) {
                    freed += s.counts[b & kMask];
                    if (freed >= k) break;
                }
                v.earliest = Nanos{expiry(b)};
            } else {
                v.earliest = Nanos{std::max(t + span_, s.total > 0 ? expiry(s.head) : t)};
            }
        }
        v.remaining = limit_ - s.total;
        v.reset = s.total > 0 ? Nanos{expiry(s.head)} : now.mono;
        return v;
    }

    void consume(State& s, std::int64_t cost, const Instant& now) const {
        const std::int64_t t = now.mono.count();
        advance(s, t);
        if (cost <= 0) return;
        // A time older than what was already recorded goes into the newest
        // bucket (held longer: conservative), and never below tail (whose slots
        // the ring no longer tracks).
        const std::int64_t b = std::max({floor_div(t, width_), s.head, s.tail});
        if (b != s.head) {
            // The head moves on: its count goes into the ring (nothing to write
            // if it expired: advance() zeroed it).
            if (s.head_count != 0) s.counts[s.head & kMask] = s.head_count;
            s.head = b;
            s.head_count = 0;
        }
        s.head_count += cost;
        s.total += cost;
    }

    void release(State&, std::int64_t) const noexcept {}

    Nanos fresh_at(const State& s, const Instant&) const {
        return s.total > 0 ? Nanos{expiry(s.head)} : Nanos::min();
    }

    std::size_t heap_bytes() const noexcept {
        return static_cast<std::size_t>(kSlots) * sizeof(std::int64_t);
    }

private:
    // The first time at which bucket b no longer counts: its newest possible
    // unit, (b+1)*g - 1, has left the window.
    std::int64_t expiry(std::int64_t b) const noexcept { return (b + 1) * width_ - 1 + span_; }

    // Expires the buckets no longer counted at t: those with expiry(b) <= t,
    // i.e. b < floor((t - D + 1) / g).
    void advance(State& s, std::int64_t t) const noexcept {
        const std::int64_t oldest = floor_div(t - span_ + 1, width_);
        if (oldest <= s.tail) return;
        if (s.total > 0) {
            const std::int64_t last = std::min(oldest - 1, s.head - 1);
            for (std::int64_t b = s.tail; b <= last; ++b) {
                s.total -= s.counts[b & kMask];
                s.counts[b & kMask] = 0;
            }
            if (s.head < oldest) {  // the head bucket expires too: the window is empty
                s.total -= s.head_count;
                s.head_count = 0;
            }
        }
        s.tail = oldest;
        // Empty buckets at the tail stay empty (new units go to head or later):
        // step over them once, amortised O(1) per bucket. The head's ring slot
        // reads zero, but while total > 0 and tail reached head, head_count > 0.
        if (s.total > 0) {
            while (s.tail < s.head && s.counts[s.tail & kMask] == 0) ++s.tail;
        }
    }

    std::int64_t limit_;
    std::int64_t span_;   // D = window + margin, ns
    std::int64_t width_;  // g = ceil(D / (kSlots - 1)), ns
};

std::int64_t span_of(const config::LimitConfig& config) {
    return std::max<std::int64_t>((config.window + config.margin).count(), 1);
}

}  // namespace

std::unique_ptr<Limiter> make_sliding_window(const config::LimitConfig& config) {
    const std::int64_t limit = std::max<std::int64_t>(config.limit, 0);
    if (limit <= kSlidingExactMaxUnits) {
        return std::make_unique<KeyedLimiter<SlidingLogPolicy>>(config,
                                                                SlidingLogPolicy(limit, span_of(config)));
    }
    return std::make_unique<KeyedLimiter<SlidingBucketPolicy>>(config,
                                                               SlidingBucketPolicy(limit, span_of(config)));
}

Nanos sliding_window_granularity(const config::LimitConfig& config) {
    if (config.limit <= kSlidingExactMaxUnits) return Nanos{0};
    return SlidingBucketPolicy(config.limit, span_of(config)).granularity();
}

}  // namespace sluice::limit
