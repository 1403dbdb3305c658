#pragma once
// How many units each limit has admitted, per key, as a running total: the
// vendor's Remaining counts what reached it before the request it answers, so
// what sluice admitted on the same limit and key AFTER that request (the
// difference of two readings) is what the vendor has not counted yet
// (docs/feedback.md, "In flight"). Counting per limit and key, not per
// upstream, keeps one key's traffic out of another key's report.
//
// Lock-free and bounded: per limit a fixed array of counters indexed by the
// key's hash. Two keys sharing a counter each see the other's admissions too,
// which can only make a report look older (more units subtracted): the cap is
// then conservative, never generous. Totals only grow; unsigned wrap-around
// cancels in the difference.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace sluice::feedback {

class AdmissionTally {
public:
    static constexpr std::size_t kCountersPerLimit = 256;

    explicit AdmissionTally(std::size_t limits)
        : limits_(limits),
          counters_(std::make_unique<std::atomic<std::uint64_t>[]>(limits * kCountersPerLimit)) {}

    // Records `units` admitted on (limit, key); returns the total after them.
    std::uint64_t add(std::size_t limit, std::uint64_t key, std::int64_t units) noexcept {
        const auto n = static_cast<std::uint64_t>(units > 0 ? units : 0);
        return counter(limit, key).fetch_add(n, std::memory_order_relaxed) + n;
    }

    std::uint64_t total(std::size_t limit, std::uint64_t key) const noexcept {
        return counter(limit, key).load(std::memory_order_relaxed);
    }

    // Units admitted on (limit, key) since add() returned `mark`.
    std::int64_t since(std::size_t limit, std::uint64_t key, std::uint64_t mark) const noexcept {
        return static_cast<std::int64_t>(total(limit, key) - mark);
    }

    std::size_t limits() const noexcept { return limits_; }

private:
    std::atomic<std::uint64_t>& counter(std::size_t limit, std::uint64_t key) const noexcept {
        // Key hashes are already mixed; fold the high half in for keys that differ only there.
        const auto slot = static_cast<std::size_t>((key ^ (key >> 32)) & (kCountersPerLimit - 1));
        return counters_[limit * kCountersPerLimit + slot];
    }

    std::size_t limits_;
    std::unique_ptr<std::atomic<std::uint64_t>[]> counters_;
};

}  // namespace sluice::feedback
