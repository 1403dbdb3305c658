// Test-local limiters with exact, easily checked arithmetic: a sliding window
// that keeps every admission, a GCRA token bucket in rational time, a fixed
// window aligned to wall time, and a concurrency counter. They exist to test
// the controller's own logic independently of src/limit (and to cross-check
// the real limiters in the oracle test); they are not a second implementation
// to maintain: no eviction, no status beyond the minimum.
//
// `ahead` is read as "those units are taken first": allowed when the limit has
// room for ahead + cost now; earliest assumes the ahead units are consumed now.

#include <algorithm>
#include <deque>
#include <map>
#include <memory>

#include "sluice/limit/limiter.hpp"

namespace sluice::queue::testing {

namespace {

using limit::Decision;
using limit::KeyHash;
using limit::KeyStatus;
__extension__ using Int128 = __int128;

Nanos floor_div_window(Nanos t, Nanos w) {
    auto q = t.count() / w.count();
    if (t.count() % w.count() < 0) --q;
    return Nanos{q * w.count()};
}

// Shared by every algorithm: key tracking (max_keys), vendor pause and cap.
class ExactBase : public limit::Limiter {
public:
    explicit ExactBase(const config::LimitConfig& config) : Limiter(config) {}

    Decision probe(KeyHash key, std::int64_t cost, std::int64_t ahead, const Instant& now) override {
        Decision d;
        d.limit = capacity();
        if (!tracked(key) && keys_.size() >= config().max_keys) {
            d.key_capacity = true;
            d.earliest = kNever;
            return d;
        }
        const std::int64_t need = ahead + cost;
        d = algorithm_probe(key, cost, need, now);
        d.limit = capacity();
        if (const auto it = keys_.find(key); it != keys_.end()) {
            const Feedback& f = it->second;
            if (f.cap_until > now.mono) {
                d.remaining = std::min(d.remaining, f.cap_left);
                if (need > f.cap_left) {
                    d.allowed = false;
                    d.earliest = std::max(d.earliest, f.cap_until);
                }
            }
            if (f.paused_until > now.mono) {
                d.allowed = false;
                d.earliest = std::max(d.earliest, f.paused_until);
            }
        }
        if (cost > capacity()) {
            d.allowed = false;
            d.earliest = kNever;
        }
        if (d.allowed) d.earliest = now.mono;
        return d;
    }

    void consume(KeyHash key, std::int64_t cost, const Instant& now) override {
        Feedback& f = keys_[key];
        if (f.cap_until > now.mono) f.cap_left -= cost;
        algorithm_consume(key, cost, now);
    }

    void release(KeyHash key, std::int64_t cost, const Instant& now) override {
        algorithm_release(key, cost, now);
    }

    bool room_later(KeyHash key, std::int64_t cost, std::int64_t units, Nanos then,
                    const Instant& now) override {
        then = std::max(then, now.mono);
        if (const auto it = keys_.find(key); it != keys_.end()) {
            const Feedback& f = it->second;
            if (f.paused_until > then) return false;
            if (f.cap_until > then && cost + units > f.cap_left) return false;
        }
        return algorithm_room_later(key, cost, units, then, now);
    }

    using Limiter::pause_until;
    void pause_until(KeyHash key, Nanos until, const Instant&, sluice::limit::PauseReason) override {
        Feedback& f = keys_[key];
        f.paused_until = std::max(f.paused_until, until);
    }

    void cap_remaining(KeyHash key, std::int64_t remaining, Nanos reset_at, const Instant&) override {
        Feedback& f = keys_[key];
        f.cap_left = remaining;
        f.cap_until = reset_at;
    }

    std::size_t key_count() const override { return keys_.size(); }
    void evict_idle(const Instant&) override {}
    std::vector<KeyStatus> status(const Instant&, std::size_t) const override { return {}; }
    std::size_t bytes_per_key() const override { return 0; }

protected:
    virtual std::int64_t capacity() const { return config().limit; }
    virtual Decision algorithm_probe(KeyHash key, std::int64_t cost, std::int64_t need,
                                     const Instant& now) = 0;
    virtual void algorithm_consume(KeyHash key, std::int64_t cost, const Instant& now) = 0;
    virtual void algorithm_release(KeyHash, std::int64_t, const Instant&) {}
    // `units` fit at `then` after `cost` consumed now, nothing else admitted.
    virtual bool algorithm_room_later(KeyHash key, std::int64_t cost, std::int64_t units, Nanos then,
                                      const Instant& now) = 0;

private:
    struct Feedback {
        Nanos paused_until{0};
        Nanos cap_until{0};
        std::int64_t cap_left = 0;
    };
    bool tracked(KeyHash key) const { return keys_.count(key) != 0; }
    std::map<KeyHash, Feedback> keys_;
};

class ExactSlidingWindow final : public ExactBase {
public:
    explicit ExactSlidingWindow(const config::LimitConfig& config) : ExactBase(config) {}

protected:
    Decision algorithm_probe(KeyHash key, std::int64_t cost, std::int64_t need, const Instant& now) override {
        auto& log = expire(key, now);
        std::int64_t count = 0;
        for (const auto& [t, c] : log) count += c;
        Decision d;
        d.remaining = std::max<std::int64_t>(config().limit - count, 0);
        d.reset = log.empty() ? now.mono : log.back().first + span();
        d.allowed = count + need <= config().limit;
        d.earliest = now.mono;
        if (d.allowed) return d;
        // Ahead units are taken now and leave at now + span; only `cost` must fit after that.
        const std::int64_t room_needed = need <= config().limit ? need : cost;
        std::int64_t left = count;
        for (const auto& [t, c] : log) {
            left -= c;
            const Nanos at = t + span();
            if (left + room_needed <= config().limit) {
                d.earliest = need <= config().limit ? at : std::max(at, now.mono + span());
                return d;
            }
        }
        d.earliest = now.mono + span();
        return d;
    }

    void algorithm_consume(KeyHash key, std::int64_t cost, const Instant& now) override {
        expire(key, now).emplace_back(now.mono, cost);
    }

    bool algorithm_room_later(KeyHash key, std::int64_t cost, std::int64_t units, Nanos then,
                              const Instant& now) override {
        std::int64_t count = now.mono + span() > then ? cost : 0;
        for (const auto& [t, c] : expire(key, now)) {
            if (t + span() > then) count += c;
        }
        return count + units <= config().limit;
    }

private:
    Nanos span() const { return config().window + config().margin; }
    std::deque<std::pair<Nanos, std::int64_t>>& expire(KeyHash key, const Instant& now) {
        auto& log = logs_[key];
        while (!log.empty() && log.front().first + span() <= now.mono) log.pop_front();
        return log;
    }
    std::map<KeyHash, std::deque<std::pair<Nanos, std::int64_t>>> logs_;
};

// GCRA in time scaled by `limit` (one token = `period` scaled units), so every
// quantity is an integer and the earliest admission is exact to the nanosecond.
class ExactTokenBucket final : public ExactBase {
public:
    explicit ExactTokenBucket(const config::LimitConfig& config) : ExactBase(config) {}

protected:
    std::int64_t capacity() const override { return config().burst > 0 ? config().burst : config().limit; }

    Decision algorithm_probe(KeyHash key, std::int64_t, std::int64_t need, const Instant& now) override {
        const Int128 s = scaled(now.mono);
        const Int128 tat = std::max(tats_[key], s);
        const Int128 debt = tat - s;  // scaled units until the bucket is full again
        Decision d;
        d.remaining = static_cast<std::int64_t>(capacity() - (debt + period() - 1) / period());
        d.reset = Nanos{static_cast<std::int64_t>((tat + limit() - 1) / limit())};
        d.allowed = tat + (need - capacity()) * period() <= s;
        // For need > burst this is the pace at which the ahead units drain: a lower bound.
        const Int128 at = tat + (need - capacity()) * period();
        d.earliest = d.allowed ? now.mono : Nanos{static_cast<std::int64_t>((at + limit() - 1) / limit())};
        return d;
    }

    void algorithm_consume(KeyHash key, std::int64_t cost, const Instant& now) override {
        Int128& tat = tats_[key];
        tat = std::max(tat, scaled(now.mono)) + static_cast<Int128>(cost) * period();
    }

    bool algorithm_room_later(KeyHash key, std::int64_t cost, std::int64_t units, Nanos then,
                              const Instant& now) override {
        const auto it = tats_.find(key);
        const Int128 tat = std::max(it == tats_.end() ? Int128{0} : it->second, scaled(now.mono)) +
                           static_cast<Int128>(cost) * period();
        const Int128 at = scaled(then);
        return std::max(tat, at) + (units - capacity()) * period() <= at;
    }

private:
    Int128 limit() const { return config().limit; }
    Int128 period() const { return (config().window + config().margin).count(); }
    Int128 scaled(Nanos t) const { return static_cast<Int128>(t.count()) * limit(); }
    std::map<KeyHash, Int128> tats_;
};

class ExactFixedWindow final : public ExactBase {
public:
    explicit ExactFixedWindow(const config::LimitConfig& config) : ExactBase(config) {}

protected:
    Decision algorithm_probe(KeyHash key, std::int64_t, std::int64_t need, const Instant& now) override {
        const Nanos start = window_start(now);
        const auto& w = windows_[key];
        const std::int64_t count = w.first == start ? w.second : 0;
        const Nanos next = now.mono + (start + config().window - local(now));
        Decision d;
        d.remaining = std::max<std::int64_t>(config().limit - count, 0);
        d.reset = count == 0 ? now.mono : next;
        d.allowed = count + need <= config().limit;
        d.earliest = d.allowed ? now.mono : next;
        return d;
    }

    void algorithm_consume(KeyHash key, std::int64_t cost, const Instant& now) override {
        auto& w = windows_[key];
        const Nanos start = window_start(now);
        if (w.first != start) w = {start, 0};
        w.second += cost;
    }

    bool algorithm_room_later(KeyHash key, std::int64_t cost, std::int64_t units, Nanos then,
                              const Instant& now) override {
        // Far ahead, no window counted now matters: three windows on is as good.
        const Nanos ahead = std::min(then - now.mono, 3 * config().window);
        const Instant later{now.mono + ahead, now.wall + ahead};
        const Nanos start = window_start(later);
        const auto it = windows_.find(key);
        std::int64_t count = it != windows_.end() && it->second.first == start ? it->second.second : 0;
        if (window_start(now) == start) count += cost;
        return count + units <= config().limit;
    }

private:
    Nanos local(const Instant& now) const { return now.wall + config().utc_offset; }
    Nanos window_start(const Instant& now) const { return floor_div_window(local(now), config().window); }
    std::map<KeyHash, std::pair<Nanos, std::int64_t>> windows_;
};

class ExactConcurrency final : public ExactBase {
public:
    explicit ExactConcurrency(const config::LimitConfig& config) : ExactBase(config) {}

protected:
    Decision algorithm_probe(KeyHash key, std::int64_t, std::int64_t need, const Instant& now) override {
        const std::int64_t in_flight = in_flight_[key];
        Decision d;
        d.remaining = std::max<std::int64_t>(config().limit - in_flight, 0);
        d.reset = now.mono;
        d.allowed = in_flight + need <= config().limit;
        d.earliest = d.allowed ? now.mono : kNever;
        return d;
    }
    void algorithm_consume(KeyHash key, std::int64_t cost, const Instant&) override {
        in_flight_[key] += cost;
    }
    bool algorithm_room_later(KeyHash key, std::int64_t cost, std::int64_t units, Nanos,
                              const Instant&) override {
        const auto it = in_flight_.find(key);
        return (it == in_flight_.end() ? 0 : it->second) + cost + units <= config().limit;
    }
    void algorithm_release(KeyHash key, std::int64_t cost, const Instant&) override {
        in_flight_[key] -= cost;
    }

private:
    std::map<KeyHash, std::int64_t> in_flight_;
};

}  // namespace

std::unique_ptr<limit::Limiter> make_exact_limiter(const config::LimitConfig& config) {
    switch (config.algorithm) {
        case config::Algorithm::sliding_window: return std::make_unique<ExactSlidingWindow>(config);
        case config::Algorithm::token_bucket: return std::make_unique<ExactTokenBucket>(config);
        case config::Algorithm::fixed_window: return std::make_unique<ExactFixedWindow>(config);
        case config::Algorithm::concurrency: return std::make_unique<ExactConcurrency>(config);
        case config::Algorithm::vendor_gate: return nullptr;  // no exact model: the oracle has no gates
    }
    return nullptr;
}

}  // namespace sluice::queue::testing
