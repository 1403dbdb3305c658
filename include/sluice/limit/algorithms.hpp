#pragma once
// The four algorithms behind make_limiter(), one factory each, and the few
// parameters of theirs that callers may want to reason about (docs/limits.md
// explains each algorithm, its guarantee and its memory per key).
//
// Every factory takes a LimitConfig as validated by the config loader. Values
// the loader would refuse (limit < 0, window <= 0) are clamped to the nearest
// meaningful one rather than trusted, so arithmetic stays defined.

#include <cstdint>
#include <memory>

#include "sluice/common/clock.hpp"
#include "sluice/config/config.hpp"
#include "sluice/limit/limiter.hpp"

namespace sluice::limit {

// Token bucket (GCRA): `limit` tokens per `window + margin`, bucket of `burst`
// (default `limit`); exact rational arithmetic, no drift.
std::unique_ptr<Limiter> make_token_bucket(const config::LimitConfig& config);

// Sliding (rolling) window: at most `limit` units in any interval of length
// `window + margin`; never over-admits.
std::unique_ptr<Limiter> make_sliding_window(const config::LimitConfig& config);

// Fixed window aligned to the UTC calendar (+ utc_offset), counting units
// within `margin` of a boundary in both windows it separates.
std::unique_ptr<Limiter> make_fixed_window(const config::LimitConfig& config);

// At most `limit` units in flight (consume takes, release returns).
std::unique_ptr<Limiter> make_concurrency(const config::LimitConfig& config);

// A sliding window of at most this many units keeps one timestamp per admitted
// unit: exact, and earliest() is exact.
inline constexpr std::int64_t kSlidingExactMaxUnits = 256;

// Above that, a ring of this many time buckets per key, counted conservatively
// (docs/limits.md has the proof that it never over-admits).
inline constexpr std::int64_t kSlidingBuckets = 256;

// How much longer than the exact window a sliding window may hold a unit:
// 0 for the exact (timestamp) form, else the bucket width minus 1 ns, which is
// at most (window + margin) / 255. The throughput kept for a sender that always
// waits for room is window / (window + granularity) >= 255/256 of exact.
Nanos sliding_window_granularity(const config::LimitConfig& config);

// The margin a fixed window really applies: the configured one, at most one
// window (a longer margin would make every unit count in more than three windows).
Nanos fixed_window_effective_margin(const config::LimitConfig& config);

}  // namespace sluice::limit
