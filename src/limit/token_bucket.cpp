// Token bucket as a GCRA (generic cell rate algorithm): one number per key, the
// theoretical arrival time (TAT) at which the bucket is full again. It holds
// the same information as "tokens at time t" but needs no refill step, and is
// kept in units of 1/limit ns, so that one token is exactly `period` units and
// every operation is exact integer arithmetic: no rounding drift, however many
// decisions are made. (The rate `limit / period` tokens per ns is rarely a
// whole number of ns per token: 3 per second is 333,333,333.33 ns.)
//
// With t the time scaled the same way (mono ns * limit):
//   tokens(t)        = burst - max(0, TAT - t) / period
//   admit n at t iff   max(TAT, t) + (n - burst) * period <= t
//   consume c at t:    TAT = max(TAT, t) + c * period
// so the earliest time n units fit is (max(TAT, t) + (n - burst) * period) / limit,
// rounded up to the next ns: exact for n <= burst. For n > burst (units ahead
// plus cost beyond one bucket) it is a lower bound, which the contract allows.

#include <algorithm>

#include "sluice/limit/algorithms.hpp"
#include "sluice/limit/keyed_limiter.hpp"

namespace sluice::limit {
namespace {

using detail::Int128;

class TokenBucketPolicy {
public:
    // The TAT as two 64-bit halves rather than an __int128 member, whose 16-byte
    // alignment would pad every map node.
    struct State {
        std::uint64_t tat_lo = 0;
        std::int64_t tat_hi = 0;  // 0 (long past) = a full bucket

        Int128 tat() const noexcept { return static_cast<Int128>(tat_hi) * (Int128{1} << 64) + tat_lo; }
        void set_tat(Int128 v) noexcept {
            tat_lo = static_cast<std::uint64_t>(v);
            tat_hi = static_cast<std::int64_t>(v >> 64);
        }
    };

    TokenBucketPolicy(std::int64_t rate, std::int64_t period, std::int64_t burst)
        : rate_(rate), period_(period), burst_(burst) {}

    std::int64_t capacity() const noexcept { return burst_; }
    State make_state() const { return State{}; }
    void reset(State& s) const noexcept { s = State{}; }

    PolicyView probe(State& s, std::int64_t units, const Instant& now) const {
        const Int128 t = scaled(now.mono);
        const Int128 tat = s.tat();
        const Int128 from = std::max(tat, t) + static_cast<Int128>(units - burst_) * period_;
        PolicyView v;
        v.allowed = from <= t;
        v.earliest = v.allowed ? now.mono : detail::to_nanos(detail::ceil_div(from, rate_));
        if (tat > t) {
            // Whole tokens present: burst minus the debt rounded up to whole tokens.
            const Int128 owed = detail::ceil_div(tat - t, period_);
            v.remaining = owed >= burst_ ? 0 : burst_ - static_cast<std::int64_t>(owed);
            v.reset = detail::to_nanos(detail::ceil_div(tat, rate_));
        } else {
            v.remaining = burst_;
            v.reset = now.mono;
        }
        return v;
    }

    // GCRA after `cost` taken now: the TAT moves on by cost * period; then the
    // admission test at `then` (time only refills, so this is exact).
    bool room_later(State& s, std::int64_t cost, std::int64_t units, Nanos then, const Instant& now) const {
        const Int128 tat = std::max(s.tat(), scaled(now.mono)) + static_cast<Int128>(cost) * period_;
        const Int128 at = scaled(then);
        return std::max(tat, at) + static_cast<Int128>(units - burst_) * period_ <= at;
    }

    void consume(State& s, std::int64_t cost, const Instant& now) const {
        const Int128 t = scaled(now.mono);
        const Int128 tat = std::max(s.tat(), t) + static_cast<Int128>(cost) * period_;
        // Shadow mode may overdraw without end; a debt beyond this is already
        // "nothing for ages" and must not creep towards overflow.
        s.set_tat(std::min(tat, t + static_cast<Int128>(detail::kMaxUnits) * period_));
    }

    void release(State&, std::int64_t) const noexcept {}

    // The debt as one lot: the units not yet refilled (burst - remaining),
    // dated so that replaying them gives the same TAT, or one less than a
    // scaled ns later (a lot's time is whole ns; the TAT is in 1/limit ns):
    // exact whenever limit divides the period in ns, never more permissive.
    void export_lots(State& s, const Instant& now, std::vector<AdmittedLot>& out) const {
        const Int128 t = scaled(now.mono);
        const Int128 tat = s.tat();
        if (tat <= t) return;
        const Int128 units = detail::ceil_div(tat - t, period_);
        const Int128 at = detail::ceil_div(tat - units * period_, rate_);
        out.push_back(AdmittedLot{detail::to_nanos(at), static_cast<std::int64_t>(units)});
    }

    // The GCRA step at the lot's time: the result is never below either TAT.
    void import_lot(State& s, const AdmittedLot& lot, const Instant& now) const {
        const Int128 t = scaled(now.mono);
        const Int128 tat = std::max(s.tat(), scaled(lot.at)) + static_cast<Int128>(lot.units) * period_;
        s.set_tat(std::min(tat, t + static_cast<Int128>(detail::kMaxUnits) * period_));
    }

    // The TAT moves back by the refund's tokens less what has refilled since
    // the admission: a later admission may have found the bucket full without
    // this one (its tokens had refilled), and only the elapsed time bounds what
    // that absorbed. Exact when refunded at once; the bucket never goes past full.
    void refund(State& s, std::int64_t cost, Nanos admitted_at, const Instant& now) const {
        const Int128 t = scaled(now.mono);
        const Int128 elapsed = std::max<Int128>(t - scaled(admitted_at), 0);
        const Int128 back = static_cast<Int128>(cost) * period_ - elapsed;
        if (back <= 0) return;
        const Int128 tat = s.tat();
        s.set_tat(std::max(tat - back, std::min(tat, t)));
    }

    Nanos fresh_at(const State& s, const Instant&) const {
        const Int128 tat = s.tat();
        return tat <= 0 ? Nanos::min() : detail::to_nanos(detail::ceil_div(tat, rate_));
    }

    std::size_t heap_bytes() const noexcept { return 0; }

private:
    Int128 scaled(Nanos t) const noexcept { return static_cast<Int128>(t.count()) * rate_; }

    std::int64_t rate_;    // tokens added per period (LimitConfig::limit)
    std::int64_t period_;  // ns: window + margin (the margin slows the refill)
    std::int64_t burst_;   // bucket size
};

}  // namespace

std::unique_ptr<Limiter> make_token_bucket(const config::LimitConfig& config) {
    const std::int64_t rate = std::max<std::int64_t>(config.limit, 1);
    const std::int64_t period = std::max<std::int64_t>((config.window + config.margin).count(), 1);
    const std::int64_t burst = config.burst > 0 ? config.burst : std::max<std::int64_t>(config.limit, 0);
    return std::make_unique<KeyedLimiter<TokenBucketPolicy>>(config, TokenBucketPolicy(rate, period, burst));
}

}  // namespace sluice::limit
