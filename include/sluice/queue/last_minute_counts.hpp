#pragma once
// A count of events over the last minute, kept per second in a fixed ring of 60
// slots: what the status page shows as "in the last minute" (queued and refused
// per limit, /v1/limits), readable by a page opened a moment ago. Pure and
// bounded: time is passed in (mono), nothing grows, and a slot older than a
// minute is reused by the second that next falls on it. Not thread-safe: the
// admission controller updates and reads it under its caller's lock.

#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>

#include "sluice/common/clock.hpp"

namespace sluice::queue {

class LastMinuteCounts {
public:
    static constexpr std::size_t kSeconds = 60;

    // `count` events happened at mono time `now`.
    void add(Nanos now, std::uint64_t count = 1) noexcept {
        const std::int64_t second = second_of(now);
        Slot& slot = slots_[index_of(second)];
        if (slot.second != second) slot = Slot{second, 0};
        slot.count += count;
    }

    // The events of the 60 whole seconds ending with the one `now` falls in (the
    // current second included, so a minute-old event drops out within a second).
    std::uint64_t total(Nanos now) const noexcept {
        const std::int64_t second = second_of(now);
        std::uint64_t sum = 0;
        for (const Slot& slot : slots_) {
            if (slot.second <= second && slot.second > second - static_cast<std::int64_t>(kSeconds))
                sum += slot.count;
        }
        return sum;
    }

private:
    struct Slot {
        std::int64_t second = kEmpty;
        std::uint64_t count = 0;
    };
    // Never a real second: an empty slot counts for no window.
    static constexpr std::int64_t kEmpty = std::numeric_limits<std::int64_t>::min();

    static std::int64_t second_of(Nanos mono) noexcept {
        // Floor, also for a (test) clock before its epoch.
        const std::int64_t ns = mono.count();
        const std::int64_t s = ns / 1'000'000'000;
        return ns < 0 && s * 1'000'000'000 != ns ? s - 1 : s;
    }
    static std::size_t index_of(std::int64_t second) noexcept {
        const std::int64_t r = second % static_cast<std::int64_t>(kSeconds);
        return static_cast<std::size_t>(r < 0 ? r + static_cast<std::int64_t>(kSeconds) : r);
    }

    std::array<Slot, kSeconds> slots_{};
};

}  // namespace sluice::queue
