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

// Where a waiting request stands in the admission order (admission_controller.hpp):
// its order time (arrival, moved later by its class's handicap and its caller's
// fair-share tag), then its arrival sequence. A total order, fixed at arrival.
struct WaitOrder {
    Nanos at{0};
    std::uint64_t seq = 0;
    bool operator<(const WaitOrder& other) const { return at != other.at ? at < other.at : seq < other.seq; }
    bool operator==(const WaitOrder&) const = default;
};

// Several WaitingUnits make one line when requests of different classes (or
// callers) wait on one key: each holds the requests of one band, pushed in
// WaitOrder, so "units ordered before X" in another band is a binary search on
// the orders and a prefix sum, O(log n).
class WaitingUnits {
public:
    using Position = std::size_t;

    // Appends `units` behind everything present; writes its position to *handle.
    // `order` must not be less than any order pushed before (while non-empty).
    void push(std::int64_t units, Position* handle, WaitOrder order = {});

    // Units of the entries present whose order is less than `order`.
    std::int64_t before_order(WaitOrder order) const;
    // The earliest bound among the entries present whose order is less than `order`.
    Nanos min_bound_before_order(WaitOrder order) const;

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
        WaitOrder order;  // kept when erased: the slots stay sorted for order_position()
    };

    std::size_t order_position(WaitOrder order) const;  // first slot whose order is not less

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
