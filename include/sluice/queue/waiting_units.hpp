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
//
// Each entry may also carry a bound, a mono time (kNever unless set): the
// controller sets it on queue heads to the earliest moment the head could be
// admitted, and asks "what is the earliest bound among the entries that arrived
// before this one?" to decide whether a younger request may go first. A
// segment tree over the same positions answers in O(log n). It is built on the
// first question only: a line that only one queue waits on (one route's
// backlog) is never asked, and there setting a bound is one store. Once asked,
// it is kept up to date until the line empties.

#include <cstddef>
#include <cstdint>
#include <vector>

#include "sluice/common/clock.hpp"

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

    // Sets the bound of the entry at `position`; kNever clears it.
    void set_bound(Position position, Nanos bound);
    // The earliest bound among the entries pushed before `position` (kNever if none).
    Nanos min_bound_before(Position position) const;
    // The earliest bound of all entries present.
    Nanos min_bound() const;

    std::int64_t total() const noexcept { return total_; }
    std::size_t size() const noexcept { return live_; }
    bool empty() const noexcept { return live_ == 0; }

private:
    struct Slot {
        std::int64_t units = 0;
        Position* handle = nullptr;  // null once erased
        Nanos bound = kNever;
    };

    void add(Position position, std::int64_t delta);
    std::int64_t prefix(std::size_t count) const;  // sum of slots [0, count)
    void compact();
    void build_bounds() const;  // sizes the segment tree for slots_ and fills it from the slots

    std::vector<Slot> slots_;
    std::vector<std::int64_t> tree_;  // Fenwick tree, tree_[i - 1] covers slots (i - lowbit(i), i]
    // Segment tree (while `tracking_`): node n covers 2n, 2n+1; leaves at leaves_ + position.
    mutable std::vector<Nanos> bounds_;
    mutable std::size_t leaves_ = 0;  // a power of two, >= slots_.size()
    mutable bool tracking_ = false;   // asked for a bound since the line was last empty
    std::size_t live_ = 0;
    std::int64_t total_ = 0;
};

}  // namespace sluice::queue
