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
    // Limits are added at run time (a reload) and never renumbered: one block
    // of counters per limit, found through a table that never moves, so that
    // readers on other threads need no lock. A limit's block is made (add_limit)
    // before any request can name that limit.
    static constexpr std::size_t kMaxLimits = std::size_t{1} << 16;

    explicit AdmissionTally(std::size_t limits = 0)
        : blocks_(std::make_unique<std::unique_ptr<std::atomic<std::uint64_t>[]>[]>(kMaxLimits)) {
        for (std::size_t i = 0; i < limits; ++i) add_limit();
    }

    // Makes the next limit's counters; false when kMaxLimits are in use.
    bool add_limit() {
        if (limits_ >= kMaxLimits) return false;
        blocks_[limits_] = std::make_unique<std::atomic<std::uint64_t>[]>(kCountersPerLimit);
        ++limits_;
        return true;
    }

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
        return blocks_[limit][slot];
    }

    std::size_t limits_ = 0;  // written under the admission lock only, before the new limits are published
    std::unique_ptr<std::unique_ptr<std::atomic<std::uint64_t>[]>[]> blocks_;
};

}  // namespace sluice::feedback
