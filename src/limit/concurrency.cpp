// Concurrency: at most `limit` units in flight per key. consume() takes units,
// release() returns them and never takes the count below zero, so a stray or
// duplicate release cannot create permits beyond the limit. Time plays no part:
// when full, the next admission waits for a release, which no clock can
// predict, hence earliest = kNever.

#include <algorithm>

#include "sluice/limit/algorithms.hpp"
#include "sluice/limit/keyed_limiter.hpp"

namespace sluice::limit {
namespace {

class ConcurrencyPolicy {
public:
    struct State {
        std::int64_t in_flight = 0;
    };

    explicit ConcurrencyPolicy(std::int64_t limit) : limit_(limit) {}

    std::int64_t capacity() const noexcept { return limit_; }
    State make_state() const { return State{}; }
    void reset(State& s) const noexcept { s.in_flight = 0; }

    PolicyView probe(State& s, std::int64_t units, const Instant& now) const {
        PolicyView v;
        v.allowed = s.in_flight + units <= limit_;
        v.earliest = v.allowed ? now.mono : kNever;
        v.remaining = limit_ - s.in_flight;
        v.reset = s.in_flight > 0 ? kNever : now.mono;
        return v;
    }

    // As if nothing in flight ever came back: the controller lends permits by
    // its own time-bounded rule, never on this answer alone.
    bool room_later(State& s, std::int64_t cost, std::int64_t units, Nanos, const Instant&) const {
        return s.in_flight + cost + units <= limit_;
    }

    void consume(State& s, std::int64_t cost, const Instant&) const { s.in_flight += cost; }

    void release(State& s, std::int64_t cost) const {
        s.in_flight = std::max<std::int64_t>(0, s.in_flight - cost);
    }

    // What is in flight ends with the process, or stays with its limiter
    // (release() returns it): nothing is exported, nothing given back.
    void export_lots(State&, const Instant&, std::vector<AdmittedLot>&) const {}
    void import_lot(State&, const AdmittedLot&, const Instant&) const {}
    void refund(State&, std::int64_t, Nanos, const Instant&) const {}

    Nanos fresh_at(const State& s, const Instant&) const { return s.in_flight == 0 ? Nanos::min() : kNever; }

    std::size_t heap_bytes() const noexcept { return 0; }

private:
    std::int64_t limit_;
};

}  // namespace

std::unique_ptr<Limiter> make_concurrency(const config::LimitConfig& config) {
    return std::make_unique<KeyedLimiter<ConcurrencyPolicy>>(
        config, ConcurrencyPolicy(std::max<std::int64_t>(config.limit, 0)));
}

}  // namespace sluice::limit
