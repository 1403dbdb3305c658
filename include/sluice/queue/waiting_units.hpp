#pragma once
// The units waiting on one (limit, key), in arrival order. The admission
// controller asks "how many units, promised to requests that arrived earlier,
// are still waiting on this key?" for every queue head it considers; answering
// that by walking the waiters would make 10,000 waiting requests cost 10,000
// steps per decision. A Fenwick tree over arrival positions answers it in
// O(log n), and appends and removals are O(log n) too.
//
// Positions are handles owned by the caller: WaitingUnits keeps a pointer to
// each handle and rewrites it when it compacts (renumbers the survivors once
// removals have left as many holes as live entries), so memory stays O(live)
// however long an old entry waits while younger ones come and go. A handle must
// therefore stay at the same address while its entry is present.

#include <cstddef>
#include <cstdint>
#include <vector>

namespace sluice::queue {

class WaitingUnits {
public:
    using Position = std::size_t;

    // Appends `units` behind everything present; writes its position to *handle.
    void push(std::int64_t units, Position* handle);

    // Removes the entry at `position` (a value a handle currently holds).
    void erase(Position position);

    // Units of the entries present that were pushed before `position`.
    std::int64_t before(Position position) const;

    std::int64_t total() const noexcept { return total_; }
    std::size_t size() const noexcept { return live_; }
    bool empty() const noexcept { return live_ == 0; }

private:
    struct Slot {
        std::int64_t units = 0;
        Position* handle = nullptr;  // null once erased
    };

    void add(Position position, std::int64_t delta);
    std::int64_t prefix(std::size_t count) const;  // sum of slots [0, count)
    void compact();

    std::vector<Slot> slots_;
    std::vector<std::int64_t> tree_;  // Fenwick tree, tree_[i - 1] covers slots (i - lowbit(i), i]
    std::size_t live_ = 0;
    std::int64_t total_ = 0;
};

}  // namespace sluice::queue
