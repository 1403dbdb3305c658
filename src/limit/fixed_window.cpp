// Fixed windows aligned to the calendar: window k is [k*P - O, (k+1)*P - O) in
// Unix time (UTC), P = window and O = utc_offset, so a 1d window with
// utc_offset -5h runs from 05:00 UTC to 05:00 UTC. Being a function of wall
// time alone, the boundaries are the same after a restart and match a vendor
// that counts per calendar day.
//
// The margin M (at most one window) guards the boundaries against the skew
// between our clock and the vendor's: a unit admitted at wall time s counts in
// every window whose span widened by M on both sides contains s, i.e. windows
// idx(s - M) .. idx(s + M). Whatever the vendor's boundary, if it is within M of
// ours, each vendor window lies inside one of our widened windows, and each of
// those holds at most `limit` units, so the vendor never sees more than `limit`
// in one window. In particular, once a window is used up, nothing is admitted
// until M after the next boundary (the previous window's count is still in
// effect), and units admitted within M before a boundary also count against the
// next window. The cost is the units admitted within M of a boundary, counted
// twice.
//
// earliest() is exact: with k the last window (among those s counts in) that
// cannot take the units, the first moment s no longer counts in it is
// boundary(k+1) + M. Mono time is derived as now.mono + (that - now.wall).
// For more units than the current window has room for (units ahead), each
// later window takes at most `limit` of them: the last one goes no earlier
// than the start of window now + ceil(spill / limit). The later of the two
// moments is a lower bound (exact without a margin).
//
// With a time_zone, windows are whole local days instead (common/zoned_days.hpp):
// window k starts at local midnight of day k * days, so P varies (23 h, 25 h) and
// every use of k * P - O above goes through start_of(k); the rest is unchanged.

#include <algorithm>
#include <array>

#include "sluice/common/zoned_days.hpp"
#include "sluice/limit/algorithms.hpp"
#include "sluice/limit/keyed_limiter.hpp"

namespace sluice::limit {
namespace {

using detail::floor_div;

class FixedWindowPolicy {
public:
    static constexpr std::int64_t kSlots = 4;  // a unit counts in at most 3 windows (M <= P)
    static constexpr std::int64_t kFar = std::numeric_limits<std::int64_t>::min() / 4;

    struct State {
        std::int64_t base =
            kFar;  // the oldest window held; window k is slot k % kSlots, k in [base, base + kSlots)
        std::array<std::int64_t, kSlots> counts{};
    };

    FixedWindowPolicy(std::int64_t limit, std::int64_t period, std::int64_t offset, std::int64_t margin,
                      std::shared_ptr<const ZonedDays> zone)
        : limit_(limit), period_(period), offset_(offset), margin_(margin), zone_(std::move(zone)) {}

    std::int64_t capacity() const noexcept { return limit_; }
    State make_state() const { return State{}; }
    void reset(State& s) const noexcept { s = State{}; }

    PolicyView probe(State& s, std::int64_t units, const Instant& now) const {
        const std::int64_t w = wall(now);
        const std::int64_t lo = window_of(w - margin_);
        const std::int64_t hi = window_of(w + margin_);
        shift(s, lo);
        std::int64_t fullest = 0;
        std::int64_t blocking = kFar;  // last window that cannot take `units`
        std::int64_t used = kFar;      // last window holding anything
        for (std::int64_t k = lo; k <= hi; ++k) {
            const std::int64_t c = s.counts[slot(k)];
            fullest = std::max(fullest, c);
            if (c > 0) used = k;
            if (c + units > limit_) blocking = k;
        }
        PolicyView v;
        v.allowed = blocking == kFar;
        if (!v.allowed) {
            v.earliest = released(blocking, w, now);
            // More units than the current window has room for: units admitted
            // during window k count in window k at least, so each window from
            // the next one on takes at most `limit` of them, and the last one
            // goes no earlier than the start of the window that takes it (a
            // lower bound; the margin only delays it further).
            const std::int64_t k_now = window_of(w);
            const std::int64_t spill = units - std::max<std::int64_t>(limit_ - s.counts[slot(k_now)], 0);
            if (limit_ <= 0) {
                v.earliest = kNever;
            } else if (spill > 0) {
                const std::int64_t windows = (spill + limit_ - 1) / limit_;
                const detail::Int128 start = start_of(static_cast<detail::Int128>(k_now) + windows);
                v.earliest = std::max(v.earliest, detail::to_nanos(now.mono.count() + (start - w)));
            }
        }
        v.remaining = limit_ - fullest;
        v.reset = used == kFar ? now.mono : released(used, w, now);
        return v;
    }

    // Every window an admission at `then` would count in must hold its units,
    // `cost` admitted now where it counts, and `units`. Wall time at `then` is
    // derived from mono as in released(); beyond the windows the state holds,
    // nothing is counted, so a far `then` is clamped to that.
    bool room_later(State& s, std::int64_t cost, std::int64_t units, Nanos then, const Instant& now) const {
        const std::int64_t w = wall(now);
        const std::int64_t lo = window_of(w - margin_);
        const std::int64_t hi = window_of(w + margin_);
        shift(s, lo);
        const std::int64_t ahead =
            std::min<std::int64_t>((then - now.mono).count(), (kSlots + 1) * period_ + 2 * margin_);
        const std::int64_t w_then = w + std::max<std::int64_t>(ahead, 0);
        for (std::int64_t k = window_of(w_then - margin_); k <= window_of(w_then + margin_); ++k) {
            std::int64_t c = (k >= s.base && k < s.base + kSlots) ? s.counts[slot(k)] : 0;
            if (k >= lo && k <= hi) c += cost;
            if (c + units > limit_) return false;
        }
        return true;
    }

    void consume(State& s, std::int64_t cost, const Instant& now) const {
        const std::int64_t w = wall(now);
        const std::int64_t lo = window_of(w - margin_);
        const std::int64_t hi = window_of(w + margin_);
        shift(s, lo);
        for (std::int64_t k = lo; k <= hi; ++k) s.counts[slot(k)] += cost;
    }

    void release(State&, std::int64_t) const noexcept {}

    // The windows' counts as lots whose replay gives them back: a lot dated at
    // wall x counts in windows idx(x - M) .. idx(x + M). Window by window, the
    // units it shares with the next one go in one lot at their boundary (they
    // count in both, as a unit admitted within M of it did), the rest in one
    // lot at start + M. With 2M < P each lot counts exactly where intended and
    // the counts come back exactly; with a wider margin a lot may count in one
    // window more (conservative). Lots may be dated after `now` (a unit counted
    // in the next window only): no earlier than any unit they stand for.
    void export_lots(State& s, const Instant& now, std::vector<AdmittedLot>& out) const {
        const std::int64_t w = wall(now);
        const std::int64_t lo = window_of(w - margin_);
        const std::int64_t hi = std::min(window_of(w + margin_), lo + kSlots - 1);
        shift(s, lo);
        std::array<std::int64_t, kSlots> need{};
        for (std::int64_t k = lo; k <= hi; ++k) need[static_cast<std::size_t>(k - lo)] = s.counts[slot(k)];
        const auto emit = [&](detail::Int128 x, std::int64_t units) {
            if (units <= 0) return;
            const std::int64_t at = clamp_wall(x);
            for (std::int64_t k = std::max(window_of(at - margin_), lo);
                 k <= std::min(window_of(at + margin_), hi); ++k)
                need[static_cast<std::size_t>(k - lo)] -= units;
            out.push_back(AdmittedLot{
                detail::to_nanos(now.mono.count() + (static_cast<detail::Int128>(at) - w)), units});
        };
        for (std::int64_t k = lo; k <= hi; ++k) {
            const std::int64_t n = need[static_cast<std::size_t>(k - lo)];
            if (n <= 0) continue;
            const std::int64_t shared =
                (k < hi && margin_ > 0)
                    ? std::clamp<std::int64_t>(need[static_cast<std::size_t>(k + 1 - lo)], 0, n)
                    : 0;
            // Dated in the middle of the span whose units count in window k alone, not
            // at its edge: a lot moved to another process, whose wall - mono offset
            // differs by the jitter between two clock readings (or an NTP slew since),
            // must still land in k. A date after `now` is fine: only its window matters.
            const detail::Int128 alone_from = start_of(k) + margin_;
            const detail::Int128 alone_to =
                start_of(static_cast<detail::Int128>(k) + 1) - margin_;  // exclusive
            emit(alone_to > alone_from ? alone_from + (alone_to - 1 - alone_from) / 2 : alone_from,
                 n - shared);
            emit(start_of(static_cast<detail::Int128>(k) + 1), shared);
        }
    }

    // Counted in every window still held that an admission at the lot's wall
    // time (derived from mono as in released()) counts in.
    void import_lot(State& s, const AdmittedLot& lot, const Instant& now) const {
        const std::int64_t w = wall(now);
        const std::int64_t lo = window_of(w - margin_);
        shift(s, lo);
        if (lot.units <= 0) return;
        const std::int64_t x = clamp_wall(static_cast<detail::Int128>(w) + (lot.at - now.mono).count());
        const std::int64_t last = std::min(window_of(x + margin_), s.base + kSlots - 1);
        for (std::int64_t k = std::max(window_of(x - margin_), lo); k <= last; ++k)
            s.counts[slot(k)] = detail::saturating_add(s.counts[slot(k)], lot.units);
    }

    // Takes the units out of the windows they were counted in that are still
    // held (at most what each holds). Their wall time is derived from mono, so
    // nothing is given back for an admission made while the wall clock was
    // held back or before it stepped: its windows cannot be known.
    void refund(State& s, std::int64_t cost, Nanos admitted_at, const Instant& now) const {
        const std::int64_t w = wall(now);
        if (cost <= 0 || admitted_at.count() <= stepped_at_) return;
        const std::int64_t lo = window_of(w - margin_);
        shift(s, lo);
        const std::int64_t x = clamp_wall(static_cast<detail::Int128>(w) + (admitted_at - now.mono).count());
        const std::int64_t last = std::min(window_of(x + margin_), s.base + kSlots - 1);
        for (std::int64_t k = std::max(window_of(x - margin_), lo); k <= last; ++k)
            s.counts[slot(k)] -= std::min(cost, s.counts[slot(k)]);
    }

    Nanos fresh_at(const State& s, const Instant& now) const {
        const std::int64_t w = std::max(now.wall.count(), wall_high_);
        const std::int64_t lo = std::max(s.base, window_of(w - margin_));
        std::int64_t used = kFar;
        for (std::int64_t k = lo; k < s.base + kSlots; ++k) {
            if (s.counts[slot(k)] > 0) used = k;
        }
        return used == kFar ? Nanos::min() : released(used, w, now);
    }

    std::size_t heap_bytes() const noexcept { return 0; }

private:
    static std::size_t slot(std::int64_t k) noexcept { return static_cast<std::size_t>(k & (kSlots - 1)); }

    std::int64_t window_of(std::int64_t wall) const {
        return zone_ ? zone_->period_of(wall) : floor_div(wall + offset_, period_);
    }

    // Where window k starts (Unix ns). Int128: k may be far beyond any real window.
    detail::Int128 start_of(detail::Int128 k) const {
        if (zone_) {
            // Windows beyond a few thousand years are "never" anyway; keep the zone's
            // arithmetic in range.
            constexpr detail::Int128 kFarDays = std::int64_t{1} << 40;
            if (k > kFarDays) return static_cast<detail::Int128>(kNever.count());
            return zone_->start_of(static_cast<std::int64_t>(k));
        }
        return k * period_ - offset_;
    }

    // The mono time at which wall time reaches the end of window k plus the
    // margin: from then on no admission counts in window k.
    Nanos released(std::int64_t k, std::int64_t w, const Instant& now) const {
        const detail::Int128 end = start_of(static_cast<detail::Int128>(k) + 1) + margin_;
        return detail::to_nanos(now.mono.count() + (end - w));
    }

    // Windows below `lo` can no longer receive units nor block any: forget them.
    static void shift(State& s, std::int64_t lo) noexcept {
        if (lo <= s.base) return;
        if (lo - s.base >= kSlots) {
            s.counts.fill(0);
        } else {
            for (std::int64_t k = s.base; k < lo; ++k) s.counts[slot(k)] = 0;
        }
        s.base = lo;
    }

    // Wall time as this limiter sees it: never earlier than it has seen before,
    // so a wall clock stepped back (NTP) cannot reopen a window already spent.
    // Each key's `base` was set from a wall time no later than this.
    //
    // It also notes when wall and mono last stopped moving together (the wall
    // held back, or stepped), since which refund() cannot map mono to windows.
    std::int64_t wall(const Instant& now) const noexcept {
        const std::int64_t offset = now.wall.count() - now.mono.count();
        if (now.wall.count() < wall_high_ ||
            (clock_offset_known_ && (offset > clock_offset_ + kStepNs || offset < clock_offset_ - kStepNs)))
            stepped_at_ = now.mono.count();
        clock_offset_ = offset;
        clock_offset_known_ = true;
        wall_high_ = std::max(wall_high_, now.wall.count());
        return wall_high_;
    }

    // A wall time far beyond any real one, kept where window_of() +- margin stays defined.
    static std::int64_t clamp_wall(detail::Int128 x) noexcept {
        constexpr detail::Int128 kFarWall = std::int64_t{1} << 62;
        return static_cast<std::int64_t>(std::clamp<detail::Int128>(x, -kFarWall, kFarWall));
    }

    // A change of wall - mono larger than this between two calls is a clock step
    // (steady and system clocks read together drift by far less).
    static constexpr std::int64_t kStepNs = 1'000'000;

    std::int64_t limit_;
    std::int64_t period_;                    // P, ns
    std::int64_t offset_;                    // O = utc_offset, ns
    std::int64_t margin_;                    // M, ns, <= P
    std::shared_ptr<const ZonedDays> zone_;  // null: windows of period_ shifted by offset_
    mutable std::int64_t wall_high_ = std::numeric_limits<std::int64_t>::min();
    mutable std::int64_t clock_offset_ = 0;  // wall - mono at the last call
    mutable bool clock_offset_known_ = false;
    mutable std::int64_t stepped_at_ = std::numeric_limits<std::int64_t>::min();  // mono
};

}  // namespace

Nanos fixed_window_effective_margin(const config::LimitConfig& config) {
    const Nanos period = std::max(config.window, Nanos{1});
    return std::clamp(config.margin, Nanos{0}, period);
}

std::unique_ptr<Limiter> make_fixed_window(const config::LimitConfig& config) {
    const std::int64_t period = std::max<std::int64_t>(config.window.count(), 1);
    std::shared_ptr<const ZonedDays> zone;
    if (!config.time_zone.empty()) {
        // The loader accepts a time_zone only with a window of whole days.
        zone = std::make_shared<const ZonedDays>(
            config.time_zone, std::max<std::int64_t>(config.window / std::chrono::hours(24), 1));
    }
    return std::make_unique<KeyedLimiter<FixedWindowPolicy>>(
        config, FixedWindowPolicy(std::max<std::int64_t>(config.limit, 0), period, config.utc_offset.count(),
                                  fixed_window_effective_margin(config).count(), std::move(zone)));
}

}  // namespace sluice::limit
