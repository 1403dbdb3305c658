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
// the ring itself will admit). When n exceeds the limit, the units ahead go
// in waves: unit j of the log followed by the n to come can go only when unit
// j - limit has left, so the last one goes h = ceil(n / limit) windows after
// unit count + n - h * limit of the log (or h - 1 windows after a unit admitted
// now, when that index is not in the log). Exact for units going one by one as
// early as this limit allows; requests whose units go together, or that other
// limits hold back, can only go later: a lower bound, as the contract requires,
// and not the loose "now + D" that let a request queue behind five windows of
// waiters with a two-window max_wait, to be refused only at its deadline.

#include <algorithm>
#include <array>
#include <cstdint>
#include <limits>
#include <memory>

#include "sluice/limit/algorithms.hpp"
#include "sluice/limit/keyed_limiter.hpp"

namespace sluice::limit {
namespace {

using detail::floor_div;

class SlidingLogPolicy {
public:
    // One key's log: `size` unit timestamps, non-decreasing, in a ring of
    // `limit` slots on the heap (oldest at `start`). Across many keys the ring
    // is a second cache line behind the slot's pointer, a miss that waits for
    // the slot's, so the slot keeps the two ends of the log too:
    // - a copy of up to kCopy of the oldest units (what expire() compares with
    //   the cutoff): one 64-bit time and 32-bit offsets after it;
    // - the newest unit's time and up to kPending - 1 units before it (32-bit
    //   offsets back from it): the last `pending` units are kept here alone
    //   and written into the ring in one go (before anything reads them there).
    // On a full window (one unit leaves, one is appended per decision) the
    // ring is visited once per kCopy decisions: the copy is refilled and the
    // pending units written back together, to lines fetched at once. Every
    // time kept in the slot is exact (a unit that does not fit a 32-bit offset
    // is simply not copied, or the pending units are written out first), so
    // every count and earliest() is the same as the ring alone would give.
    // When the copy runs out and only pending units are left, the copy takes
    // them over and they never reach the ring: a unit is in the copy, pending,
    // or in the ring (and may be in the ring and the copy).
    static constexpr std::uint32_t kCopy = 3;
    static constexpr std::uint32_t kPending = 3;
    static_assert(kPending <= kCopy, "the copy must be able to take over every pending unit");
    struct State {
        // [0] overflow, [1] overflow_time, then the ring. Shadow mode (consume
        // past the limit) cannot fit in the ring: the oldest units are folded
        // into one lump counted as admitted at overflow_time, the newest of them
        // (so they are held longer, never shorter). Always older than or as old
        // as the ring's oldest unit. Read only while `overflowed`.
        std::unique_ptr<std::int64_t[]> block;
        std::int64_t front = 0;                   // copy element 0
        std::int64_t newest = 0;                  // the newest unit, while size > 0
        std::uint32_t after[kCopy - 1] = {};      // copy element j >= 1 is front + after[j - 1]
        std::uint32_t before[kPending - 1] = {};  // pending unit q >= 1 back is newest - before[q - 1]
        std::uint16_t start = 0;                  // ring slot of the oldest unit
        std::uint16_t size = 0;                   // units in the log
        std::uint8_t copy_from = 0;               // copy elements [copy_from, copy_end) are the
        std::uint8_t copy_end = 0;                // log's oldest copy_end - copy_from units
        std::uint8_t pending = 0;                 // the newest `pending` units are not in the ring yet
        bool overflowed = false;                  // block[0] and block[1] hold a lump
    };

    SlidingLogPolicy(std::int64_t limit, std::int64_t span) : limit_(limit), span_(span) {}

    std::int64_t capacity() const noexcept { return limit_; }
    State make_state() const {
        State s;
        s.block = std::make_unique<std::int64_t[]>(block_length());  // zeroed
        return s;
    }
    void reset(State& s) const noexcept {
        reset_log(s);
        s.overflowed = false;
    }

    PolicyView probe(State& s, std::int64_t units, const Instant& now) const {
        const std::int64_t t = now.mono.count();
        expire(s, t);
        const std::int64_t lump = overflow(s);
        const std::int64_t count = lump + s.size;
        PolicyView v;
        v.allowed = count + units <= limit_;
        if (!v.allowed) {
            // Units go as early as the window allows, unit by unit: the j-th unit
            // of the log followed by the `units` to come is admitted when the
            // (j - limit)-th has left, so the last one is admitted `hops` windows
            // after the `first`-th unit counted now (1-based), or, when that
            // index is not in the log, `hops - 1` windows after a unit that
            // fits now. Exact when units <= limit; beyond, a lower bound (a
            // request's units go together, which can only be later).
            const std::int64_t hops = (units + limit_ - 1) / std::max<std::int64_t>(limit_, 1);
            const std::int64_t first = count + units - hops * limit_;
            std::int64_t base = 0;
            std::int64_t windows = hops;
            if (first <= 0) {
                base = std::max(t, newest(s));
                windows = hops - 1;
            } else if (first <= lump) {
                base = s.block[1];
            } else {
                base = at(s, static_cast<std::uint32_t>(first - lump - 1));
            }
            v.earliest = limit_ == 0 ? kNever
                                     : detail::to_nanos(static_cast<detail::Int128>(base) +
                                                        static_cast<detail::Int128>(windows) * span_);
        }
        v.remaining = limit_ - count;
        v.reset = count > 0 ? Nanos{newest(s) + span_} : now.mono;
        return v;
    }

    // The units still counted at `then` are the log's suffix newer than
    // then - D (a binary search: the log is in time order), the lump if its
    // time is, and `cost` recorded now (at the newest time, as consume() would).
    bool room_later(State& s, std::int64_t cost, std::int64_t units, Nanos then, const Instant& now) const {
        const std::int64_t t = now.mono.count();
        expire(s, t);
        const std::int64_t cutoff = then.count() - span_;
        std::int64_t count = (s.overflowed && s.block[1] > cutoff) ? s.block[0] : 0;
        std::uint32_t lo = 0;
        std::uint32_t hi = s.size;
        while (lo < hi) {
            const std::uint32_t mid = lo + (hi - lo) / 2;
            if (at(s, mid) > cutoff) {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        count += s.size - lo;
        const std::int64_t when = (s.size > 0 || s.overflowed) ? std::max(t, newest(s)) : t;
        if (when > cutoff) count += cost;
        return count + units <= limit_;
    }

    void consume(State& s, std::int64_t cost, const Instant& now) const {
        const std::int64_t t = now.mono.count();
        expire(s, t);
        if (cost <= 0) return;
        record(s, cost, (s.size > 0 || s.overflowed) ? std::max(t, newest(s)) : t);
    }

    void release(State&, std::int64_t) const noexcept {}

    // One lot per distinct time (units admitted together share one), the lump first.
    void export_lots(State& s, const Instant& now, std::vector<AdmittedLot>& out) const {
        expire(s, now.mono.count());
        if (s.overflowed && s.block[0] > 0) out.push_back(AdmittedLot{Nanos{s.block[1]}, s.block[0]});
        for (std::uint32_t i = 0; i < s.size; ++i) {
            const std::int64_t when = at(s, i);
            if (!out.empty() && i > 0 && out.back().at.count() == when) {
                ++out.back().units;
            } else {
                out.push_back(AdmittedLot{Nanos{when}, 1});
            }
        }
    }

    // Recorded at the lot's own time, or at the newest time already held if
    // that is later (the log stays in time order; later is conservative).
    void import_lot(State& s, const AdmittedLot& lot, const Instant& now) const {
        const std::int64_t t = now.mono.count();
        expire(s, t);
        if (lot.units <= 0 || lot.at.count() <= t - span_) return;
        record(s, lot.units,
               (s.size > 0 || s.overflowed) ? std::max(lot.at.count(), newest(s)) : lot.at.count());
    }

    // Removes up to `cost` units logged at exactly `admitted_at` (the time
    // consume() gave them, unless an older Instant was moved up to the newest:
    // then they are not found and nothing is given back). Units folded into
    // the shadow-mode lump are not given back. The log is rebuilt: at most
    // kSlidingExactMaxUnits times, and a refund is rare.
    void refund(State& s, std::int64_t cost, Nanos admitted_at, const Instant& now) const {
        const std::int64_t t = now.mono.count();
        expire(s, t);
        const std::int64_t a = admitted_at.count();
        if (cost <= 0 || a <= t - span_ || s.size == 0) return;
        std::array<std::int64_t, kSlidingExactMaxUnits> units{};
        const std::uint32_t n = s.size;
        std::int64_t found = 0;
        for (std::uint32_t i = 0; i < n; ++i) {
            units[i] = at(s, i);
            if (units[i] == a) ++found;
        }
        std::int64_t remove = std::min(cost, found);
        if (remove == 0) return;
        reset_log(s);
        for (std::uint32_t i = 0; i < n; ++i) {
            if (units[i] == a && remove > 0) {
                --remove;
                continue;
            }
            append(s, units[i]);
        }
    }

    Nanos fresh_at(const State& s, const Instant&) const {
        if (s.size == 0 && overflow(s) == 0) return Nanos::min();
        return Nanos{newest(s) + span_};
    }

    std::size_t heap_bytes() const noexcept { return block_length() * sizeof(std::int64_t); }

private:
    // Records `cost` units at `when` (no older than anything held); past the
    // ring, the oldest are folded into the lump.
    void record(State& s, std::int64_t cost, std::int64_t when) const {
        const auto cap = static_cast<std::uint32_t>(limit_);
        const std::int64_t excess = static_cast<std::int64_t>(s.size) + cost - limit_;
        if (excess > 0) {  // only in shadow mode: fold the oldest units into the lump
            flush(s);
            if (!s.overflowed) {
                s.block[0] = 0;
                s.overflowed = true;
            }
            const auto from_ring = static_cast<std::uint32_t>(std::min<std::int64_t>(excess, s.size));
            if (from_ring > 0) {
                s.block[1] = std::max(s.block[1], at(s, from_ring - 1));
                drop_oldest(s, from_ring);
                s.block[0] += from_ring;
            }
            const std::int64_t from_new = excess - from_ring;
            if (from_new > 0) {
                s.block[0] += from_new;
                s.block[1] = when;
                cost -= from_new;
            }
        }
        for (std::int64_t i = 0; i < cost && s.size < cap; ++i) append(s, when);
    }

    static constexpr auto kMaxOffset = static_cast<std::uint64_t>(std::numeric_limits<std::uint32_t>::max());

    std::size_t block_length() const noexcept {
        return static_cast<std::size_t>(std::max<std::int64_t>(limit_, 1)) + 2;
    }
    std::uint32_t wrap(std::uint32_t i) const noexcept {
        const auto cap = static_cast<std::uint32_t>(limit_);
        return i >= cap ? i - cap : i;
    }
    static std::int64_t* ring(const State& s) noexcept { return s.block.get() + 2; }
    static std::int64_t overflow(const State& s) noexcept { return s.overflowed ? s.block[0] : 0; }
    static std::int64_t copied(const State& s, std::uint32_t j) noexcept {
        return j == 0 ? s.front : s.front + static_cast<std::int64_t>(s.after[j - 1]);
    }
    // The pending unit q back from the newest (q < pending).
    static std::int64_t pending_unit(const State& s, std::uint32_t q) noexcept {
        return q == 0 ? s.newest : s.newest - static_cast<std::int64_t>(s.before[q - 1]);
    }
    // The i-th oldest unit of the log (i < size).
    std::int64_t at(const State& s, std::uint32_t i) const noexcept {
        if (const std::uint32_t j = s.copy_from + i; j < s.copy_end) return copied(s, j);
        if (const std::uint32_t q = s.size - 1 - i; q < s.pending) return pending_unit(s, q);
        return ring(s)[wrap(s.start + i)];
    }
    std::int64_t newest(const State& s) const noexcept { return s.size > 0 ? s.newest : s.block[1]; }

    // Writes the pending units into the ring.
    void flush(State& s) const noexcept {
        std::int64_t* r = ring(s);
        for (std::uint32_t q = 0; q < s.pending; ++q) r[wrap(s.start + s.size - 1 - q)] = pending_unit(s, q);
        s.pending = 0;
    }

    // Appends a unit at `when` (>= newest; size < limit).
    void append(State& s, std::int64_t when) const noexcept {
        if (s.pending > 0) {
            const auto d = static_cast<std::uint64_t>(when - s.newest);
            const std::uint64_t oldest_back = s.pending > 1 ? s.before[s.pending - 2] : 0;
            if (s.pending == kPending || d + oldest_back > kMaxOffset) {
                flush(s);
            } else {
                for (std::uint32_t q = s.pending - 1; q >= 1; --q)
                    s.before[q] = static_cast<std::uint32_t>(s.before[q - 1] + d);
                s.before[0] = static_cast<std::uint32_t>(d);
            }
        }
        s.newest = when;
        ++s.pending;
        ++s.size;
    }

    // The oldest unit (size > 0). When the copy has run out, refills it from the
    // pending units if they are all that is left, else from the ring, writing
    // the pending units first (both ends' lines fetched together).
    std::int64_t oldest(State& s) const noexcept {
        if (s.copy_from == s.copy_end && s.size == s.pending) {
            // Every unit left is pending (a key with few units in its window):
            // the copy takes them over, and they need never reach the ring
            // (copied units leave before the ring is read again).
            const std::uint32_t n = s.pending;
            s.front = pending_unit(s, n - 1);
            for (std::uint32_t j = 1; j < n; ++j)
                s.after[j - 1] = static_cast<std::uint32_t>(pending_unit(s, n - 1 - j) - s.front);
            s.copy_from = 0;
            s.copy_end = static_cast<std::uint8_t>(n);
            s.pending = 0;
        } else if (s.copy_from == s.copy_end) {
            std::int64_t* r = ring(s);
            if (s.pending > 0) {
                __builtin_prefetch(&r[wrap(s.start + s.size - s.pending)], 1);
                __builtin_prefetch(&r[wrap(s.start + s.size - 1)], 1);
            }
            flush(s);
            s.front = r[s.start];
            std::uint32_t n = 1;
            for (; n < kCopy && n < s.size; ++n) {
                const auto d = static_cast<std::uint64_t>(r[wrap(s.start + n)] - s.front);
                if (d > kMaxOffset) break;
                s.after[n - 1] = static_cast<std::uint32_t>(d);
            }
            s.copy_from = 0;
            s.copy_end = static_cast<std::uint8_t>(n);
        }
        return copied(s, s.copy_from);
    }

    // Forgets the n oldest units (copied or in the ring, not pending).
    void drop_oldest(State& s, std::uint32_t n) const noexcept {
        s.start = static_cast<std::uint16_t>(wrap(s.start + n));
        s.size = static_cast<std::uint16_t>(s.size - n);
        const std::uint32_t left = s.copy_end - s.copy_from;
        s.copy_from = static_cast<std::uint8_t>(n < left ? s.copy_from + n : s.copy_end);
    }

    // Drops units no longer in the window at t (admitted at or before t - D).
    void expire(State& s, std::int64_t t) const noexcept {
        const std::int64_t cutoff = t - span_;
        if (s.overflowed && s.block[1] <= cutoff) s.overflowed = false;
        if (s.size == 0) return;
        if (s.newest <= cutoff) {  // everything left: common after an idle spell
            reset_log(s);
            return;
        }
        // Ends before the log empties: the newest unit is still in the window.
        // (oldest() writes the pending units out before the copy reaches them.)
        while (oldest(s) <= cutoff) drop_oldest(s, 1);
    }
    static void reset_log(State& s) noexcept {
        s.start = 0;
        s.size = 0;
        s.copy_from = 0;
        s.copy_end = 0;
        s.pending = 0;
    }

    std::int64_t limit_;  // <= kSlidingExactMaxUnits
    std::int64_t span_;   // D = window + margin, ns
};
static_assert(sizeof(SlidingLogPolicy::State) <= 48, "the log's state must leave its slot at 64 bytes");
static_assert(detail::KeyTable<SlidingLogPolicy::State>::slot_bytes() == 64);
static_assert(kSlidingExactMaxUnits <= std::numeric_limits<std::uint16_t>::max());

class SlidingBucketPolicy {
public:
    static constexpr std::int64_t kSlots = kSlidingBuckets;
    static constexpr std::int64_t kMask = kSlots - 1;
    static_assert((kSlots & kMask) == 0, "the bucket count must be a power of two");
    static constexpr std::int64_t kFar = std::numeric_limits<std::int64_t>::min() / 4;  // "before any time"
    static constexpr std::int64_t kExactWaves = 1024;  // waves of units ahead followed bucket by bucket

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
            // As for the log: the last of `units` goes `hops - 1` waves after
            // the `first`-th counted unit (1-based) leaves, or `hops - 2` waves
            // after a unit admitted now leaves, when that index is not counted
            // now. A unit admitted at a is counted until its bucket expires, so
            // each wave is followed bucket by bucket: exact for the ring itself
            // when units go one by one as early as it allows (a lower bound
            // otherwise).
            if (limit_ == 0) {
                v.earliest = kNever;
            } else {
                const std::int64_t hops = (units + limit_ - 1) / limit_;
                const std::int64_t first = s.total + units - hops * limit_;
                std::int64_t leaves = 0;
                std::int64_t waves = hops - 1;
                if (first >= 1) {
                    // The head bucket holds the rest (first <= total): no need to read it.
                    std::int64_t freed = 0;
                    std::int64_t b = s.tail;
                    for (; b < s.head; ++b) {
                        freed += s.counts[b & kMask];
                        if (freed >= first) break;
                    }
                    leaves = expiry(b);
                } else {
                    leaves = expiry(std::max(floor_div(t, width_), s.head));
                    waves = hops - 2;
                }
                // Wave by wave while it stays cheap; beyond, whole windows (a lower bound).
                const std::int64_t exact = std::min<std::int64_t>(waves, kExactWaves);
                for (std::int64_t i = 0; i < exact && leaves < kNever.count() / 2; ++i)
                    leaves = expiry(floor_div(leaves, width_));
                v.earliest = detail::to_nanos(static_cast<detail::Int128>(leaves) +
                                              static_cast<detail::Int128>(waves - exact) * span_);
            }
        }
        v.remaining = limit_ - s.total;
        v.reset = s.total > 0 ? Nanos{expiry(s.head)} : now.mono;
        return v;
    }

    // A bucket still counts at `then` iff its expiry is later, i.e. from bucket
    // `first` on; `cost` recorded now lands in the bucket consume() would pick.
    // At most kSlots buckets are summed: this is asked only when a request may
    // go ahead of older waiters, never on the common path.
    bool room_later(State& s, std::int64_t cost, std::int64_t units, Nanos then, const Instant& now) const {
        const std::int64_t t = now.mono.count();
        advance(s, t);
        const std::int64_t first = floor_div(then.count() - span_ + 1, width_);
        // Whichever side of `first` has fewer buckets is summed: at most kSlots / 2.
        std::int64_t count = 0;
        if (s.total > 0 && s.head >= first) {
            if (first <= s.tail) {
                count = s.total;
            } else if (first - s.tail <= s.head - first) {
                count = s.total;
                for (std::int64_t b = s.tail; b < first; ++b) count -= s.counts[b & kMask];
            } else {
                count = s.head_count;
                for (std::int64_t b = first; b < s.head; ++b) count += s.counts[b & kMask];
            }
        }
        if (std::max({floor_div(t, width_), s.head, s.tail}) >= first) count += cost;
        return count + units <= limit_;
    }

    void consume(State& s, std::int64_t cost, const Instant& now) const {
        const std::int64_t t = now.mono.count();
        advance(s, t);
        if (cost <= 0) return;
        record(s, cost, t);
    }

    void release(State&, std::int64_t) const noexcept {}

    // One lot per bucket, dated at the bucket's latest instant (no unit in it
    // was admitted later), or at `now` for the bucket now filling: replayed into
    // the same ring, each lot lands in the bucket it came from.
    void export_lots(State& s, const Instant& now, std::vector<AdmittedLot>& out) const {
        const std::int64_t t = now.mono.count();
        advance(s, t);
        if (s.total <= 0) return;
        const auto lot = [&](std::int64_t b, std::int64_t units) {
            if (units <= 0) return;
            std::int64_t when = (b + 1) * width_ - 1;
            if (when > t && b * width_ <= t) when = t;
            out.push_back(AdmittedLot{Nanos{when}, units});
        };
        for (std::int64_t b = s.tail; b < s.head; ++b) lot(b, s.counts[b & kMask]);
        lot(s.head, s.head_count);
    }

    void import_lot(State& s, const AdmittedLot& lot, const Instant& now) const {
        const std::int64_t t = now.mono.count();
        advance(s, t);
        if (lot.units <= 0 || expiry(floor_div(lot.at.count(), width_)) <= t) return;
        record(s, lot.units, lot.at.count());
    }

    // Takes the units out of the bucket of `admitted_at`, at most what it
    // holds. Had they gone to a later bucket (an older Instant moved up), the
    // ones taken out instead leave no later than they would: the count at any
    // time is never below what it would be without the admission.
    void refund(State& s, std::int64_t cost, Nanos admitted_at, const Instant& now) const {
        advance(s, now.mono.count());
        const std::int64_t b = floor_div(admitted_at.count(), width_);
        if (cost <= 0 || s.total <= 0 || b < s.tail || b > s.head) return;
        std::int64_t& held = b == s.head ? s.head_count : s.counts[b & kMask];
        const std::int64_t taken = std::min(cost, held);
        held -= taken;
        s.total -= taken;
        while (s.total > 0 && s.tail < s.head && s.counts[s.tail & kMask] == 0) ++s.tail;
    }

    Nanos fresh_at(const State& s, const Instant&) const {
        return s.total > 0 ? Nanos{expiry(s.head)} : Nanos::min();
    }

    std::size_t heap_bytes() const noexcept {
        return static_cast<std::size_t>(kSlots) * sizeof(std::int64_t);
    }

private:
    // Records `cost` units admitted at `t` (advance()d already).
    void record(State& s, std::int64_t cost, std::int64_t t) const {
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
