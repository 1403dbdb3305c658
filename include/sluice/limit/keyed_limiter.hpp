#pragma once
// What every limiter algorithm shares, written once: the per-key state map, the
// max_keys bound with safe eviction, the vendor-feedback overlays (pause_until,
// cap_remaining), and the assembly of a Decision. An algorithm is a Policy that
// only knows one key's state; KeyedLimiter<Policy> is the Limiter built on it.
//
// Included by the algorithm sources (src/limit/*.cpp), which keep their policies
// private and hand out Limiters through the factories in algorithms.hpp.
//
// A Policy provides:
//   struct State;                                  one key's state (movable)
//   std::int64_t capacity() const;                 Decision::limit (limit, or burst)
//   State make_state() const;                      a fresh key (may allocate)
//   void reset(State&) const;                      back to fresh, without allocating
//   PolicyView probe(State&, std::int64_t units, const Instant&) const;
//       could `units` (ahead + cost) be admitted now? May normalise the state
//       (drop history that no longer counts) but records nothing.
//   bool room_later(State&, std::int64_t cost, std::int64_t units, Nanos then, const Instant&) const;
//       would `units` fit at `then` (>= now) after `cost` consumed now and
//       nothing else? Never optimistic. May normalise the state as probe().
//   void consume(State&, std::int64_t cost, const Instant&) const;
//   void release(State&, std::int64_t cost) const;  concurrency only; else a no-op
//   Nanos fresh_at(const State&, const Instant&) const;
//       the mono time from which the state is indistinguishable from make_state()
//       (<= now: forgettable now; kNever: only a release can make it so)
//   std::size_t heap_bytes() const;                heap owned by one State
//
// and, for state that outlives the limiter (limit_state.hpp; the key table,
// the overlays, max_keys and ImportMode are handled here, once):
//   void export_lots(State&, const Instant&, std::vector<AdmittedLot>&) const;
//       appends what the state still counts at `now`, oldest first, each lot
//       dated no earlier than its units were admitted (see AdmittedLot), so that
//       replaying the lots never frees a unit sooner. Normalises like probe().
//   void import_lot(State&, const AdmittedLot&, const Instant&) const;
//       counts `units` as admitted at mono `at` (lots come oldest first; a lot
//       older than what the state already holds may be counted as newer, never
//       as older). A lot that no longer counts at `now` changes nothing.
//   void refund(State&, std::int64_t cost, Nanos admitted_at, const Instant&) const;
//       takes back what is still counted of `cost` units consumed at
//       `admitted_at`, never leaving the state more permissive than if they had
//       never been consumed (when unsure, takes back less).

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "sluice/common/clock.hpp"
#include "sluice/config/config.hpp"
#include "sluice/limit/key_table.hpp"
#include "sluice/limit/limit_state.hpp"
#include "sluice/limit/limiter.hpp"

namespace sluice::limit {

namespace detail {

__extension__ using Int128 = __int128;

// Floor and ceiling division for a positive divisor (C++ division truncates
// toward zero, which is wrong for negative times and offsets).
constexpr std::int64_t floor_div(std::int64_t a, std::int64_t b) noexcept {
    const std::int64_t q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}
constexpr Int128 ceil_div(Int128 a, Int128 b) noexcept {
    const Int128 q = a / b;
    return (a % b != 0 && a > 0) ? q + 1 : q;
}

// A scaled time back to a mono Nanos; beyond what Nanos holds is "never".
constexpr Nanos to_nanos(Int128 ns) noexcept {
    if (ns >= static_cast<Int128>(kNever.count())) return kNever;
    if (ns <= static_cast<Int128>(Nanos::min().count())) return Nanos::min();
    return Nanos{static_cast<std::int64_t>(ns)};
}

// a + b for non-negative values, saturating: a queue of units must never wrap.
constexpr std::int64_t saturating_add(std::int64_t a, std::int64_t b) noexcept {
    return a > std::numeric_limits<std::int64_t>::max() - b ? std::numeric_limits<std::int64_t>::max()
                                                            : a + b;
}

// Heap bytes one allocation of `n` bytes really occupies with glibc malloc: the
// request plus an 8-byte header, rounded up to 16, at least 32.
constexpr std::size_t heap_footprint(std::size_t n) noexcept {
    const std::size_t chunk = (n + 8 + 15) / 16 * 16;
    return chunk < 32 ? 32 : chunk;
}

// Units larger than this are treated as this: keeps every sum of units and
// counts far from overflow; a request this large is refused anyway.
inline constexpr std::int64_t kMaxUnits = std::int64_t{1} << 56;

}  // namespace detail

// A policy's answer for one key, before vendor overlays.
struct PolicyView {
    bool allowed = false;
    Nanos earliest{0};           // when refused: the earliest mono time `units` fit (never late)
    std::int64_t remaining = 0;  // may be negative after shadow-mode overdraft; clamped later
    Nanos reset{0};
};

// A limit learned from the vendor's refusals, for one key: `base` at the last
// lowering, then one unit more per `probe_windows` windows without a lowering
// (computed lazily from the elapsed time, no timer), until the configured limit
// is reached and the learning is over. A lowering that follows a raise (the
// probe drew a 429: the vendor's limit is the level below) doubles
// probe_windows, up to kMaxProbeWindows, so a vendor that really is stricter is
// probed ever more rarely; one lowered by a passing second consumer climbs back
// by one unit per window. The refusals of one window (a burst comes back as
// several 429s) lower it at most to half of what was in force before them:
// a consumer that spent the vendor's whole window cannot teach "1".
struct LearnedLimit {
    static constexpr std::int64_t kMaxProbeWindows = 32;

    std::int64_t base = 0;  // 0: nothing learned
    Nanos lowered_at{0};
    std::int64_t probe_windows = 1;
    Nanos episode_until{0};             // refusals before this belong to the current episode
    std::int64_t floor = 0;             // no lower than this within the episode
    std::int64_t episode_refusals = 0;  // refusals read in the current episode

    bool active() const noexcept { return base > 0; }
    std::int64_t interval(Nanos window) const noexcept { return probe_windows * window.count(); }
    std::int64_t raises(Nanos now, Nanos window) const noexcept {
        const std::int64_t step = interval(window);
        return step <= 0 || now <= lowered_at ? 0 : (now - lowered_at).count() / step;
    }
    // The limit in force at `now`; `capacity` once it has climbed back.
    std::int64_t limit(Nanos now, std::int64_t capacity, Nanos window) const noexcept {
        if (!active()) return capacity;
        const std::int64_t r = raises(now, window);
        return r >= capacity - base ? capacity : base + r;
    }
    // When the limit is back at `capacity` (the learning has nothing left to hold).
    Nanos over_at(std::int64_t capacity, Nanos window) const noexcept {
        if (!active()) return Nanos::min();
        const detail::Int128 end = static_cast<detail::Int128>(lowered_at.count()) +
                                   static_cast<detail::Int128>(capacity - base) * interval(window);
        return detail::to_nanos(end);
    }
    Nanos raised_at(Nanos now, Nanos window) const noexcept {
        const std::int64_t r = raises(now, window);
        return r == 0 ? Nanos{0} : lowered_at + Nanos{r * interval(window)};
    }
};

// Vendor feedback layered on one key. Every part expires on its own, so a key
// whose overlays have expired is as forgettable as one that never had any.
struct VendorOverlay {
    Nanos paused_until{0};      // no admission before this (mono)
    PauseReason pause_reason;   // why (admin pages)
    Nanos cap_until{0};         // the cap holds before this (mono)
    std::int64_t cap_left = 0;  // units that may still be admitted while the cap holds
    Nanos deficit_until{0};     // the deficit counts before this (mono)
    std::int64_t deficit = 0;   // units the vendor counts that this limit does not (another consumer)
    LearnedLimit learned;

    bool paused(Nanos now) const noexcept { return paused_until > now; }
    bool capped(Nanos now) const noexcept { return cap_until > now; }
    bool in_deficit(Nanos now) const noexcept { return deficit > 0 && deficit_until > now; }
};

template <class Policy>
class KeyedLimiter final : public Limiter {
public:
    using State = typename Policy::State;

    KeyedLimiter(const config::LimitConfig& config, Policy policy)
        : Limiter(config),
          policy_(std::move(policy)),
          scratch_(policy_.make_state()),
          max_keys_(std::max<std::size_t>(config.max_keys, 1)) {}

    Decision probe(KeyHash key, std::int64_t cost, std::int64_t ahead, const Instant& now) override {
        cost = clamp_units(cost);
        const std::int64_t units = detail::saturating_add(clamp_units(ahead), cost);
        Entry* entry = find(key);
        if (entry == nullptr) {
            if (!has_room(now)) return key_capacity_decision(now);
            // An untracked key is a fresh one: evaluate a scratch fresh state rather
            // than inserting, so probing records nothing and allocates nothing.
            policy_.reset(scratch_);
            return finish(policy_.probe(scratch_, units, now), nullptr, cost, units, now);
        }
        const VendorOverlay* overlay = overlay_of(*entry);
        if (overlay == nullptr)
            return finish(policy_.probe(entry->value, units, now), nullptr, cost, units, now);
        return finish(probe_with_overlay(entry->value, *overlay, units, now), overlay, cost, units, now);
    }

    // The vendor overlays hold at `then` as they would for an admission then: a
    // pause still running refuses; a cap still holding must cover `cost` spent
    // now and `units` then.
    bool room_later(KeyHash key, std::int64_t cost, std::int64_t units, Nanos then,
                    const Instant& now) override {
        cost = clamp_units(cost);
        units = clamp_units(units);
        then = std::max(then, now.mono);
        Entry* entry = find(key);
        if (entry == nullptr) {
            policy_.reset(scratch_);
            return policy_.room_later(scratch_, cost, units, then, now);
        }
        if (const VendorOverlay* o = overlay_of(*entry)) {
            if (o->paused_until > then) return false;
            if (o->capped(then) && detail::saturating_add(cost, units) > o->cap_left) return false;
        }
        return policy_.room_later(entry->value, cost, units, then, now);
    }

    void consume(KeyHash key, std::int64_t cost, const Instant& now) override {
        cost = clamp_units(cost);
        Entry* entry = find(key);
        if (entry == nullptr) {
            // The protocol probes (which makes room) before consuming an enforced
            // limit, so a full table here means a shadow limit: its count is only
            // reported, and dropping it beats growing without bound. An enforced
            // limit's admission is always recorded, even past max_keys.
            if (!has_room(now) && !config().enforce) return;
            entry = insert(key);
            policy_.consume(entry->value, cost, now);
            note_fresh_at(*entry, now);
            return;
        }
        policy_.consume(entry->value, cost, now);
        if (entry->flag) {
            VendorOverlay& o = overlays_.at(key);
            if (o.capped(now.mono)) o.cap_left = std::max<std::int64_t>(0, o.cap_left - cost);
        }
    }

    void release(KeyHash key, std::int64_t cost, const Instant& now) override {
        Entry* entry = find(key);
        if (entry == nullptr) return;
        policy_.release(entry->value, clamp_units(cost));
        note_fresh_at(*entry, now);
    }

    void prefetch(KeyHash key) const noexcept override { entries_.prefetch(key); }

    using Limiter::pause_until;
    void pause_until(KeyHash key, Nanos until, const Instant& now, PauseReason reason) override {
        if (until <= now.mono) return;
        Entry* entry = find_or_insert(key, now);
        if (entry == nullptr)
            return;  // no room: the key cannot be admitted anyway until some key is forgotten
        VendorOverlay& o = overlay_for(*entry);
        if (until > o.paused_until) {
            o.paused_until = until;
            o.pause_reason = reason;
        }
    }

    // Within one vendor window (a reset no later than the current cap's) the
    // tighter report wins, so an out-of-order, older response cannot raise the
    // cap; a report with a later reset describes a newer vendor window and
    // replaces the cap. Either way it only ever lowers what the algorithm allows.
    void cap_remaining(KeyHash key, std::int64_t remaining, Nanos reset_at, const Instant& now) override {
        if (reset_at <= now.mono) return;
        remaining = std::max<std::int64_t>(remaining, 0);
        Entry* entry = find_or_insert(key, now);
        if (entry == nullptr) return;
        VendorOverlay& o = overlay_for(*entry);
        if (o.capped(now.mono) && reset_at <= o.cap_until) {
            o.cap_left = std::min(o.cap_left, remaining);
        } else {
            o.cap_left = remaining;
            o.cap_until = reset_at;
        }
    }

    void set_deficit(KeyHash key, std::int64_t units, Nanos until, const Instant& now) override {
        Entry* entry = find(key);
        if (units <= 0 || until <= now.mono) {
            // Nothing the vendor counts beyond this limit's own: an earlier deficit is over.
            if (entry != nullptr && entry->flag) overlays_.at(key).deficit = 0;
            return;
        }
        if (entry == nullptr) entry = find_or_insert(key, now);
        if (entry == nullptr) return;
        VendorOverlay& o = overlay_for(*entry);
        o.deficit = std::min(units, detail::kMaxUnits);
        o.deficit_until = until;
    }

    void lower_learned(KeyHash key, std::int64_t limit, const Instant& now) override {
        const Nanos window = probe_window();
        if (window <= Nanos::zero()) return;  // nothing to count windows by (concurrency, vendor gate)
        limit = std::max<std::int64_t>(limit, 1);
        const std::int64_t capacity = policy_.capacity();
        if (limit >= capacity) return;
        Entry* entry = find_or_insert(key, now);
        if (entry == nullptr) return;
        VendorOverlay& o = overlay_for(*entry);
        LearnedLimit& l = o.learned;
        const std::int64_t in_force = l.limit(now.mono, capacity, window);
        if (now.mono >= l.episode_until) {
            // The first refusal of an episode (the 429s of one window: a burst
            // comes back as several).
            l.episode_until = now.mono + window;
            l.floor = std::max<std::int64_t>(in_force / 2, 1);
            l.episode_refusals = 0;
            if (l.active() && in_force < capacity && in_force > l.base) {
                // Refused after a raise: the probe found the vendor's limit; probe more rarely.
                l.probe_windows = std::min(l.probe_windows * 2, LearnedLimit::kMaxProbeWindows);
            } else if (!l.active() || in_force >= capacity) {
                l.probe_windows = 1;
            }
        }
        // Each refusal reads what the vendor accepted before it (what sluice
        // admitted before it); requests overtaking each other on the way make
        // some readings low, never lower than the episode's floor.
        ++l.episode_refusals;
        const std::int64_t learned = std::max(limit, l.floor);
        if (learned >= in_force) return;
        l.base = learned;
        l.lowered_at = now.mono;
        ++lowerings_;
        last_lowered_key_ = key;
        last_lowered_at_ = now.mono;
    }

    LearnedSummary learned_summary(const Instant& now) const override {
        LearnedSummary out{lowerings_, {}};
        const auto it = overlays_.find(last_lowered_key_);
        if (it == overlays_.end() || !it->second.learned.active()) return out;
        out.latest = learned_status(it->second.learned, now);
        return out;
    }

    FeedbackView feedback_view(KeyHash key, const Instant& now) override {
        const std::int64_t capacity = policy_.capacity();
        Entry* entry = find(key);
        if (entry == nullptr) return FeedbackView{0, capacity};
        const PolicyView view = policy_.probe(entry->value, 0, now);
        const VendorOverlay* o = overlay_of(*entry);
        return FeedbackView{std::max<std::int64_t>(0, capacity - view.remaining),
                            o ? o->learned.limit(now.mono, capacity, probe_window()) : capacity};
    }

    std::size_t key_count() const override { return entries_.size(); }

    void evict_idle(const Instant& now) override {
        Nanos next = kNever;
        std::vector<KeyHash> idle;
        entries_.for_each_slot([&](const Entry& entry) {
            const Nanos fresh = fresh_at(entry, now);
            if (fresh <= now.mono) {
                idle.push_back(entry.key);
            } else {
                next = std::min(next, fresh);
            }
        });
        for (const KeyHash key : idle) {
            overlays_.erase(key);
            entries_.erase(key);
        }
        next_scan_at_ = next;
        cached_entry_ = nullptr;
    }

    void status_step(const Instant& now, StatusScan& scan, std::size_t max_slots) const override {
        const auto [next, examined] =
            entries_.for_each_slot_from(scan.next_slot, max_slots, [&](Entry& entry) {
                const VendorOverlay* o = overlay_of(entry);
                const Decision d = o ? finish(probe_with_overlay(entry.value, *o, 0, now), o, 0, 0, now)
                                     : finish(policy_.probe(entry.value, 0, now), nullptr, 0, 0, now);
                const bool paused = o && o->paused(now.mono);
                KeyStatus status{entry.key, d.remaining,
                                 d.reset,   paused ? o->paused_until : Nanos{0},
                                 {},        paused ? o->pause_reason : PauseReason{}};
                if (o && o->learned.active()) status.learned = learned_status(o->learned, now);
                scan.offer(status);
            });
        scan.advance(next, examined, next >= entries_.capacity());
    }

    // The table's slots shared out over the keys (at its 3/4 fill limit while
    // empty: a table is between 3/8 and 3/4 full once it holds keys), and the
    // heap the state owns (rings). Vendor overlays, for the few keys with
    // feedback, are not counted.
    std::size_t bytes_per_key() const override {
        const std::size_t keys = entries_.size();
        std::size_t bytes = keys > 0 ? (entries_.capacity() * Map::slot_bytes() + keys - 1) / keys
                                     : (Map::slot_bytes() * 4 + 2) / 3;
        if (const std::size_t heap = policy_.heap_bytes(); heap > 0) bytes += detail::heap_footprint(heap);
        return bytes;
    }

    void export_keys(const Instant& now, std::vector<KeyExport>& out) const override {
        entries_.for_each_slot([&](Entry& entry) {
            KeyExport key_export;
            key_export.key = entry.key;
            key_export.configured_limit = policy_.capacity();
            policy_.export_lots(entry.value, now, key_export.admitted);
            bool matters = !key_export.admitted.empty();
            if (const VendorOverlay* o = overlay_of(entry))
                matters = export_overlay(*o, now, key_export) || matters;
            if (matters) out.push_back(std::move(key_export));
        });
    }

    std::size_t import_keys(const std::vector<KeyExport>& keys, ImportMode mode,
                            const Instant& now) override {
        // Keys already tracked are merged and need no room; new ones compete for
        // what max_keys leaves, the most used first (stable: input order breaks ties).
        std::vector<const KeyExport*> added;
        for (const KeyExport& key_export : keys) {
            if (Entry* entry = find(key_export.key)) {
                merge(*entry, key_export, mode, now);
            } else {
                added.push_back(&key_export);
            }
        }
        if (entries_.size() + added.size() > max_keys_) evict_idle(now);
        const std::size_t room = max_keys_ > entries_.size() ? max_keys_ - entries_.size() : 0;
        std::size_t dropped = 0;
        if (added.size() > room) {
            // Ranked by what each would count now (a key whose lots have all
            // expired, with no overlay in force, would be forgotten at once: it
            // takes no room and is not dropped).
            std::vector<std::pair<std::int64_t, const KeyExport*>> ranked;
            ranked.reserve(added.size());
            for (const KeyExport* key_export : added) {
                const std::int64_t counted = counted_after_import(*key_export, mode, now);
                if (counted > 0 || overlay_in_force(*key_export, now))
                    ranked.emplace_back(counted, key_export);
            }
            std::stable_sort(ranked.begin(), ranked.end(),
                             [](const auto& a, const auto& b) { return a.first > b.first; });
            dropped = ranked.size() > room ? ranked.size() - room : 0;
            ranked.resize(ranked.size() - dropped);
            added.clear();
            for (const auto& [counted, key_export] : ranked) added.push_back(key_export);
        }
        for (const KeyExport* key_export : added) {
            Entry* entry = find(key_export->key);  // a key listed twice is merged the second time
            if (entry == nullptr) entry = insert(key_export->key);
            merge(*entry, *key_export, mode, now);
        }
        return dropped;
    }

    void refund(KeyHash key, std::int64_t cost, Nanos admitted_at, const Instant& now) override {
        Entry* entry = find(key);
        if (entry == nullptr) return;  // forgotten: nothing of it counts any more
        policy_.refund(entry->value, clamp_units(cost), admitted_at, now);
        note_fresh_at(*entry, now);
    }

    void charge(KeyHash key, std::int64_t units, const Instant& now) override {
        const auto algorithm = config().algorithm;
        if (units <= 0 || algorithm == config::Algorithm::concurrency ||
            algorithm == config::Algorithm::vendor_gate)
            return;
        // The algorithms' consume() already counts past the limit (shadow mode does): the log
        // folds its oldest units into a lump held longer, the ring and the windows just count,
        // and the bucket's TAT moves past `now + burst` (debt). An enforced limit records it
        // even past max_keys, as an admission would.
        consume(key, units, now);
        if (const Entry* entry = find(key)) note_fresh_at(*entry, now);
    }

    const Policy& policy() const noexcept { return policy_; }

private:
    // A slot: the key, its state inline, and a flag for "has a vendor overlay".
    // Overlays live apart: few keys ever get feedback, and keeping them out of
    // the slot keeps a token bucket's slot at 32 bytes.
    using Map = detail::KeyTable<State>;
    using Entry = typename Map::Slot;

    // A learned limit as the admin pages and metrics show it: nothing (limit 0)
    // once it has climbed back to the configured limit.
    LearnedLimitStatus learned_status(const LearnedLimit& l, const Instant& now) const {
        const Nanos window = probe_window();
        const std::int64_t in_force = l.limit(now.mono, policy_.capacity(), window);
        if (in_force >= policy_.capacity()) return {};
        return LearnedLimitStatus{in_force, l.lowered_at, l.raised_at(now.mono, window), l.probe_windows};
    }

    const VendorOverlay* overlay_of(const Entry& entry) const {
        return entry.flag ? &overlays_.at(entry.key) : nullptr;
    }
    VendorOverlay& overlay_for(Entry& entry) {
        entry.flag = true;
        return overlays_[entry.key];
    }

    static std::int64_t clamp_units(std::int64_t units) noexcept {
        return std::clamp<std::int64_t>(units, 0, detail::kMaxUnits);
    }

    // A one-entry cache in front of the table: an unkeyed limit, and bursts of
    // one key, skip the lookup. Slots move only on insert (which re-points the
    // cache at the inserted key) and erase (which clears it).
    Entry* find(KeyHash key) {
        if (cached_entry_ != nullptr && cached_key_ == key) return cached_entry_;
        Entry* entry = entries_.find_slot(key);
        if (entry == nullptr) return nullptr;
        cached_key_ = key;
        cached_entry_ = entry;
        return cached_entry_;
    }

    Entry* insert(KeyHash key) {
        cached_key_ = key;
        cached_entry_ = entries_.insert_slot(key, policy_.make_state());
        return cached_entry_;
    }

    Entry* find_or_insert(KeyHash key, const Instant& now) {
        if (Entry* entry = find(key)) return entry;
        if (!has_room(now)) return nullptr;
        Entry* entry = insert(key);
        note_fresh_at(*entry, now);
        return entry;
    }

    // What a fresh key would count at `now` once `key_export` is imported into
    // it (evaluated on the scratch state: nothing is recorded).
    std::int64_t counted_after_import(const KeyExport& key_export, ImportMode mode, const Instant& now) {
        policy_.reset(scratch_);
        import_lots(scratch_, key_export, mode, now);
        if (policy_.fresh_at(scratch_, now) <= now.mono) return 0;
        return std::max<std::int64_t>(policy_.capacity() - policy_.probe(scratch_, 0, now).remaining, 1);
    }

    // The lots into `state` as the mode says: at their own times, or all at `now`.
    void import_lots(State& state, const KeyExport& in, ImportMode mode, const Instant& now) const {
        if (mode == ImportMode::exact) {
            for (const AdmittedLot& lot : in.admitted) {
                if (lot.units > 0)
                    policy_.import_lot(state, AdmittedLot{lot.at, clamp_units(lot.units)}, now);
            }
        } else if (const std::int64_t units = units_of(in); units > 0) {
            policy_.import_lot(state, AdmittedLot{now.mono, units}, now);
        }
    }

    // Whether an export carries a pause, cap, deficit or learned limit still in force at `now`.
    bool overlay_in_force(const KeyExport& in, const Instant& now) const noexcept {
        return in.paused_until > now.mono || (in.cap_remaining >= 0 && in.cap_reset > now.mono) ||
               (in.deficit > 0 && in.deficit_until > now.mono) || in.learned.limit > 0;
    }

    // Units an export's lots hold in all (what carry_used counts).
    static std::int64_t units_of(const KeyExport& key_export) noexcept {
        std::int64_t units = 0;
        for (const AdmittedLot& lot : key_export.admitted)
            units = detail::saturating_add(units, clamp_units(lot.units));
        return units;
    }

    // The overlays still in force at `now` into `out`; false if none is.
    bool export_overlay(const VendorOverlay& o, const Instant& now, KeyExport& out) const {
        bool any = false;
        if (o.paused(now.mono)) {
            out.paused_until = o.paused_until;
            out.pause_cause = o.pause_reason.cause;
            any = true;
        }
        if (o.capped(now.mono)) {
            out.cap_remaining = o.cap_left;
            out.cap_reset = o.cap_until;
            any = true;
        }
        if (o.in_deficit(now.mono)) {
            out.deficit = o.deficit;
            out.deficit_until = o.deficit_until;
            any = true;
        }
        const Nanos window = probe_window();
        if (o.learned.active() && window > Nanos::zero()) {
            const std::int64_t in_force = o.learned.limit(now.mono, policy_.capacity(), window);
            if (in_force < policy_.capacity()) {
                out.learned =
                    LearnedLimitStatus{in_force, o.learned.lowered_at, o.learned.raised_at(now.mono, window),
                                       o.learned.probe_windows};
                any = true;
            }
        }
        return any;
    }

    // Adds one export to a tracked key (fresh or not): the lots counted as the
    // mode says, each overlay merged to the stricter of the two. A key left
    // indistinguishable from fresh is forgotten at once.
    void merge(Entry& entry, const KeyExport& in, ImportMode mode, const Instant& now) {
        import_lots(entry.value, in, mode, now);
        if (in.paused_until > now.mono) {
            VendorOverlay& o = overlay_for(entry);
            if (in.paused_until > o.paused_until) {
                o.paused_until = in.paused_until;
                o.pause_reason = PauseReason{in.pause_cause, "restored"};
            }
        }
        if (in.cap_remaining >= 0 && in.cap_reset > now.mono) {
            VendorOverlay& o = overlay_for(entry);
            if (o.capped(now.mono)) {
                o.cap_left = std::min(o.cap_left, in.cap_remaining);
                o.cap_until = std::max(o.cap_until, in.cap_reset);
            } else {
                o.cap_left = in.cap_remaining;
                o.cap_until = in.cap_reset;
            }
        }
        if (in.deficit > 0 && in.deficit_until > now.mono) {
            VendorOverlay& o = overlay_for(entry);
            if (o.in_deficit(now.mono)) {
                o.deficit = std::max(o.deficit, std::min(in.deficit, detail::kMaxUnits));
                o.deficit_until = std::max(o.deficit_until, in.deficit_until);
            } else {
                o.deficit = std::min(in.deficit, detail::kMaxUnits);
                o.deficit_until = in.deficit_until;
            }
        }
        import_learned(entry, in, mode, now);
        if (fresh_at(entry, now) <= now.mono) {
            forget(entry.key);
        } else {
            note_fresh_at(entry, now);
        }
    }

    // A learned limit as exported (its limit in force, the last lowering and
    // raise) back into the lazily raised form: the same base and lowering time
    // when the raises since fit this limit's window exactly, else the limit in
    // force from the last raise on (the same limit from then on). The episode
    // (refusals of one window) is not kept: the next refusal starts a new one.
    void import_learned(Entry& entry, const KeyExport& in, ImportMode mode, const Instant& now) {
        const LearnedLimitStatus& l = in.learned;
        const Nanos window = probe_window();
        const std::int64_t capacity = policy_.capacity();
        if (l.limit <= 0 || l.limit >= capacity || window <= Nanos::zero()) return;
        // An unknown configured limit (0: an exporter that did not say) keeps it: the stricter choice.
        if (mode == ImportMode::carry_used && in.configured_limit != 0 && in.configured_limit != capacity)
            return;
        LearnedLimit learned;
        learned.probe_windows = std::clamp<std::int64_t>(l.probe_windows, 1, LearnedLimit::kMaxProbeWindows);
        learned.base = l.limit;
        learned.lowered_at = l.lowered_at;
        if (l.raised_at != Nanos{0}) {
            const std::int64_t interval = learned.interval(window);
            const std::int64_t since = (l.raised_at - l.lowered_at).count();
            if (since > 0 && since % interval == 0 && since / interval < l.limit) {
                learned.base = l.limit - since / interval;
            } else {
                learned.lowered_at = l.raised_at;
            }
        }
        if (learned.limit(now.mono, capacity, window) >= capacity) return;  // climbed back already
        VendorOverlay& o = overlay_for(entry);
        if (o.learned.active() &&
            o.learned.limit(now.mono, capacity, window) <= learned.limit(now.mono, capacity, window))
            return;  // the tracked one is stricter
        o.learned = learned;
        if (learned.lowered_at >= last_lowered_at_) {
            last_lowered_key_ = entry.key;
            last_lowered_at_ = learned.lowered_at;
        }
    }

    void forget(KeyHash key) {
        overlays_.erase(key);
        entries_.erase(key);
        cached_entry_ = nullptr;
    }

    // Room for one more key, forgetting fresh-equivalent keys if the table is
    // full. next_scan_at_ is a lower bound of every key's fresh_at, so a full
    // table of busy keys refuses new keys without rescanning on every request.
    bool has_room(const Instant& now) {
        if (entries_.size() < max_keys_) return true;
        if (now.mono < next_scan_at_) return false;
        evict_idle(now);
        return entries_.size() < max_keys_;
    }

    Nanos fresh_at(const Entry& entry, const Instant& now) const {
        const Nanos fresh = policy_.fresh_at(entry.value, now);
        const VendorOverlay* o = overlay_of(entry);
        if (o == nullptr) return fresh;
        return std::max({fresh, o->paused_until, o->cap_until,
                         o->deficit > 0 ? o->deficit_until : Nanos::min(),
                         o->learned.over_at(policy_.capacity(), probe_window())});
    }

    // The length of one window of this limit, by which a learned limit is raised
    // (0 when the algorithm has none: a learned limit is then not kept).
    Nanos probe_window() const noexcept {
        const auto& c = config();
        if (c.algorithm == config::Algorithm::concurrency || c.algorithm == config::Algorithm::vendor_gate)
            return Nanos::zero();
        return c.window + c.margin;
    }

    // The policy's view with the units a learned limit and a deficit hold back
    // counted as admitted: `extra` units more make the policy itself compute
    // when `units` fit under the lower limit (exact, wave by wave). The result's
    // remaining is the learned limit's; its limit is reported through finish().
    PolicyView probe_with_overlay(State& state, const VendorOverlay& o, std::int64_t units,
                                  const Instant& now) const {
        const std::int64_t capacity = policy_.capacity();
        const std::int64_t learned_extra = capacity - o.learned.limit(now.mono, capacity, probe_window());
        const std::int64_t deficit = o.in_deficit(now.mono) ? o.deficit : 0;
        const std::int64_t extra = learned_extra + deficit;
        if (extra <= 0) return policy_.probe(state, units, now);
        PolicyView view = policy_.probe(state, detail::saturating_add(units, extra), now);
        if (!view.allowed && deficit > 0) {
            // The deficit ends at deficit_until: from then on only the learned limit holds.
            const PolicyView after = policy_.probe(state, detail::saturating_add(units, learned_extra), now);
            const Nanos without = after.allowed ? now.mono : after.earliest;
            view.earliest = std::min(view.earliest, std::max(without, o.deficit_until));
        }
        if (!view.allowed && learned_extra > 0) {
            // The learned limit goes up by one at the next raise, which may be enough.
            const Nanos next_raise =
                o.learned.lowered_at +
                Nanos{(o.learned.raises(now.mono, probe_window()) + 1) * o.learned.interval(probe_window())};
            view.earliest = std::min(view.earliest, std::max(next_raise, now.mono));
        }
        view.remaining -= extra;
        return view;
    }

    // Keeps next_scan_at_ a lower bound after a key's fresh_at may have moved earlier.
    void note_fresh_at(const Entry& entry, const Instant& now) {
        next_scan_at_ = std::min(next_scan_at_, std::max(fresh_at(entry, now), now.mono));
    }

    Decision key_capacity_decision(const Instant& now) const {
        Decision d;
        d.allowed = false;
        d.key_capacity = true;
        d.earliest = kNever;
        d.limit = policy_.capacity();
        d.remaining = 0;
        d.reset = now.mono;
        return d;
    }

    // The policy's view, narrowed by the vendor overlays (which only ever refuse
    // more, never less), as a Decision.
    Decision finish(const PolicyView& view, const VendorOverlay* overlay, std::int64_t cost,
                    std::int64_t units, const Instant& now) const {
        Decision d;
        d.limit = policy_.capacity();
        if (overlay != nullptr && overlay->learned.active())
            d.limit = overlay->learned.limit(now.mono, d.limit, probe_window());
        d.allowed = view.allowed;
        d.earliest = view.allowed ? now.mono : std::max(view.earliest, now.mono);
        d.remaining = std::max<std::int64_t>(view.remaining, 0);
        d.reset = std::max(view.reset, now.mono);
        if (overlay != nullptr) {
            if (overlay->paused(now.mono)) {
                d.allowed = false;
                d.earliest = std::max(d.earliest, overlay->paused_until);
                d.remaining = 0;
                d.reset = std::max(d.reset, overlay->paused_until);
            }
            if (overlay->capped(now.mono)) {
                if (overlay->cap_left < d.remaining) {
                    d.remaining = overlay->cap_left;
                    d.reset = std::max(d.reset, overlay->cap_until);
                }
                if (units > overlay->cap_left) {
                    d.allowed = false;
                    d.earliest = std::max(d.earliest, overlay->cap_until);
                }
            }
        }
        if (cost > policy_.capacity()) {  // can never fit, whatever the state (a learned limit climbs back)
            d.allowed = false;
            d.earliest = kNever;
        }
        return d;
    }

    Policy policy_;
    mutable Map entries_;  // mutable: status() lets policies drop expired history (logically const)
    std::unordered_map<KeyHash, VendorOverlay> overlays_;  // keys whose slot has `flag` set
    State scratch_;                                        // a fresh state for probing untracked keys
    std::size_t max_keys_;
    Nanos next_scan_at_ = Nanos::min();
    KeyHash cached_key_ = 0;
    Entry* cached_entry_ = nullptr;
    std::uint64_t lowerings_ = 0;  // learned limits lowered, any key (learned_summary)
    KeyHash last_lowered_key_ = 0;
    Nanos last_lowered_at_ = Nanos::min();
};

}  // namespace sluice::limit
