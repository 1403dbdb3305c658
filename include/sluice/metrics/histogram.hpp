#pragma once
// A fixed-bucket histogram for the request path: one relaxed atomic add per
// bucket hit and one for the sum, no lock, no allocation. The buckets are a
// compile-time list of upper bounds (nanoseconds, ascending); a value above the
// last bound falls into the +Inf bucket. The count is the sum of the buckets,
// computed when read, so a reader never sees a count that disagrees with them
// (the sum may trail by the observation under way: Prometheus accepts that).

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "sluice/common/clock.hpp"

namespace sluice::metrics {

// Admission wait: 1 ms to 5 min, the span of a route's max_wait.
inline constexpr std::array<std::int64_t, 17> kAdmissionWaitBounds{
    1'000'000,      2'500'000,      5'000'000,      10'000'000,      25'000'000,     50'000'000,
    100'000'000,    250'000'000,    500'000'000,    1'000'000'000,   2'500'000'000,  5'000'000'000,
    10'000'000'000, 30'000'000'000, 60'000'000'000, 120'000'000'000, 300'000'000'000};

// Upstream response time (request sent to response head read): 1 ms to 2 min,
// vendor APIs answer in milliseconds to tens of seconds (LLM completions).
inline constexpr std::array<std::int64_t, 16> kResponseTimeBounds{
    1'000'000,      2'500'000,      5'000'000,      10'000'000,     25'000'000,    50'000'000,
    100'000'000,    250'000'000,    500'000'000,    1'000'000'000,  2'500'000'000, 5'000'000'000,
    10'000'000'000, 30'000'000'000, 60'000'000'000, 120'000'000'000};

// What a scrape reads: per-bucket (not cumulative) counts, the +Inf bucket last.
struct HistogramSnapshot {
    std::vector<double> upper_bounds_seconds;  // one per finite bucket
    std::vector<std::uint64_t> counts;         // upper_bounds_seconds.size() + 1 (the last is +Inf)
    std::uint64_t count = 0;
    double sum_seconds = 0;
};

template <const auto& Bounds>
class FixedHistogram {
public:
    static constexpr std::size_t kBuckets = Bounds.size() + 1;

    // The bucket `value` falls into: the first bound >= value (le, as Prometheus counts).
    static constexpr std::size_t bucket_of(Nanos value) noexcept {
        const std::int64_t v = value.count();
        std::size_t i = 0;
        // At most 17 compares on values that mostly land in the first buckets: a
        // linear scan from the bottom stops early and predicts well.
        while (i < Bounds.size() && v > Bounds[i]) ++i;
        return i;
    }

    void observe(Nanos value) noexcept {
        if (value < Nanos::zero()) value = Nanos::zero();
        counts_[bucket_of(value)].fetch_add(1, std::memory_order_relaxed);
        sum_nanos_.fetch_add(static_cast<std::uint64_t>(value.count()), std::memory_order_relaxed);
    }

    HistogramSnapshot snapshot() const {
        HistogramSnapshot s;
        s.upper_bounds_seconds.reserve(Bounds.size());
        for (const auto bound : Bounds) s.upper_bounds_seconds.push_back(static_cast<double>(bound) / 1e9);
        s.counts.reserve(kBuckets);
        for (const auto& c : counts_) {
            s.counts.push_back(c.load(std::memory_order_relaxed));
            s.count += s.counts.back();
        }
        s.sum_seconds = static_cast<double>(sum_nanos_.load(std::memory_order_relaxed)) / 1e9;
        return s;
    }

private:
    std::array<std::atomic<std::uint64_t>, kBuckets> counts_{};
    std::atomic<std::uint64_t> sum_nanos_{0};
};

using AdmissionWaitHistogram = FixedHistogram<kAdmissionWaitBounds>;
using ResponseTimeHistogram = FixedHistogram<kResponseTimeBounds>;

}  // namespace sluice::metrics
