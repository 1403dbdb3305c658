#pragma once
// Limiter algorithms: pure code, no I/O, time passed in (an Instant), state
// computed lazily from elapsed time on each call (no timer per bucket).
//
// One Limiter object is one configured limit (config::LimitConfig) and holds the
// state of every key of that limit. Keys are 64-bit hashes (key.hpp): a raw
// header value never reaches a limiter.
//
// The admission controller (queue/admission_controller.hpp) uses the two-phase
// protocol probe() -> consume(): it probes every limit a request needs and
// consumes from all of them only if all allow, so a request takes permits from
// all its limits or from none. Limiter objects are not thread-safe; the
// controller serialises access.
//
// This is also the seam for other backends (Redis, roadmap): a backend
// implements the same contract over shared state.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "sluice/common/clock.hpp"
#include "sluice/config/config.hpp"

namespace sluice::limit {

using KeyHash = std::uint64_t;  // 0 is the key of an unkeyed limit

// A limiter's answer, a value from which the 429, Retry-After, the RateLimit
// headers and metrics are all derived.
struct Decision {
    bool allowed = false;        // `cost` could be consumed now (behind `ahead`)
    bool key_capacity = false;   // refused because max_keys keys are tracked and none may be forgotten
    Nanos earliest{0};           // mono time at which it could be admitted (== now when allowed);
                                 // kNever when not predictable (concurrency waits for a release)
    std::int64_t limit = 0;      // the configured limit (units per window, burst, or max in flight)
    std::int64_t remaining = 0;  // units available now, before this request
    Nanos reset{0};  // mono time at which `remaining` is back to `limit` if nothing more is admitted
};

// Admin/metrics view of one key.
struct KeyStatus {
    KeyHash key = 0;
    std::int64_t remaining = 0;
    Nanos reset{0};
    Nanos paused_until{0};  // vendor feedback: no admission before this (0 = not paused)
};

class Limiter {
public:
    virtual ~Limiter() = default;

    const config::LimitConfig& config() const noexcept { return config_; }

    // Could `cost` units be admitted at `now` if `ahead` units, promised to
    // requests queued earlier, were admitted first? Does not record anything.
    // `earliest` must never be later than the true earliest admission time (an
    // early estimate only makes a request wait and be re-probed; a late one would
    // refuse a request that waiting could have served). For ahead > 0 the
    // estimate may be optimistic. A cost larger than the limit can never be
    // admitted: allowed=false, earliest=kNever.
    virtual Decision probe(KeyHash key, std::int64_t cost, std::int64_t ahead, const Instant& now) = 0;

    // Records an admission of `cost` units at `now` (the moment the request is
    // forwarded). Called only after probe(key, cost, 0, now) allowed it, or for a
    // shadow-mode limit (enforce: false), where it may push the count past the limit.
    virtual void consume(KeyHash key, std::int64_t cost, const Instant& now) = 0;

    // The exchange that consumed `cost` ended (any reason). Returns concurrency
    // permits; a no-op for rate algorithms, whose admissions stay counted.
    virtual void release(KeyHash key, std::int64_t cost, const Instant& now) = 0;

    // A hint that probe() or consume() on `key` follows soon: the in-memory
    // limiters start loading the key's slot, so that a request using several
    // limits waits for their cache misses once, in parallel, not one after the
    // other. Changes no state and no answer; a backend may ignore it.
    virtual void prefetch(KeyHash /*key*/) const noexcept {}

    // Vendor feedback (feedback/): the vendor said "no more until `until`" (mono).
    // probe() refuses with earliest >= until before then.
    virtual void pause_until(KeyHash key, Nanos until, const Instant& now) = 0;

    // Vendor feedback: the vendor reports only `remaining` units left until
    // `reset_at` (mono). Lowers the allowance for that span, never raises it above
    // what the algorithm itself allows.
    virtual void cap_remaining(KeyHash key, std::int64_t remaining, Nanos reset_at, const Instant& now) = 0;

    virtual std::size_t key_count() const = 0;

    // Forgets keys whose state is indistinguishable from a fresh key at `now`
    // (nothing counted in any window that still matters, nothing in flight,
    // no pause): forgetting them cannot let traffic exceed the limit.
    virtual void evict_idle(const Instant& now) = 0;

    // Up to `max_keys` keys, most constrained first.
    virtual std::vector<KeyStatus> status(const Instant& now, std::size_t max_keys) const = 0;

    // Bytes of state per tracked key (for the benchmark's memory report).
    virtual std::size_t bytes_per_key() const = 0;

protected:
    explicit Limiter(config::LimitConfig config) : config_(std::move(config)) {}

private:
    config::LimitConfig config_;
};

// Builds the limiter for a validated LimitConfig.
std::unique_ptr<Limiter> make_limiter(const config::LimitConfig& config);

}  // namespace sluice::limit
