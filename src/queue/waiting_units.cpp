#include "sluice/queue/waiting_units.hpp"

#include <algorithm>

namespace sluice::queue {

namespace {

constexpr std::size_t lowbit(std::size_t i) {
    return i & (~i + 1);
}

}  // namespace

void WaitingUnits::push(std::int64_t units, Position* handle, WaitOrder order) {
    // Compact once holes outnumber live entries: amortised O(1) per push, and
    // memory proportional to what is waiting, not to what has passed through.
    if (slots_.size() >= 2 * live_ + 16) compact();
    const std::size_t i = slots_.size() + 1;  // 1-based Fenwick index of the new slot
    // tree_[i - 1] covers (i - lowbit(i), i]: the new slot plus a range that already exists.
    tree_.push_back(units + prefix(i - 1) - prefix(i - lowbit(i)));
    slots_.push_back(Slot{units, handle, kNever, order});
    // The new leaf is already kNever (never set, or cleared by erase); only a full tree grows.
    if (tracking_ && slots_.size() > leaves_) build_bounds();
    *handle = i - 1;
    ++live_;
    total_ += units;
}

void WaitingUnits::erase(Position position) {
    Slot& slot = slots_[position];
    add(position, -slot.units);
    total_ -= slot.units;
    if (slot.bound != kNever) set_bound(position, kNever);
    slot = Slot{0, nullptr, kNever, slot.order};
    if (--live_ == 0) {
        slots_.clear();
        tree_.clear();
        bounds_.clear();
        leaves_ = 0;
        tracking_ = false;
    }
}

std::int64_t WaitingUnits::before(Position position) const {
    return prefix(position);
}

std::size_t WaitingUnits::order_position(WaitOrder order) const {
    const auto found = std::lower_bound(slots_.begin(), slots_.end(), order,
                                        [](const Slot& slot, const WaitOrder& o) { return slot.order < o; });
    return static_cast<std::size_t>(found - slots_.begin());
}

std::int64_t WaitingUnits::before_order(WaitOrder order) const {
    if (live_ == 0) return 0;
    return prefix(order_position(order));
}

Nanos WaitingUnits::min_bound_before_order(WaitOrder order) const {
    if (live_ == 0) return kNever;
    return min_bound_before(order_position(order));
}

void WaitingUnits::set_bound(Position position, Nanos bound) {
    slots_[position].bound = bound;
    if (!tracking_) return;
    std::size_t node = leaves_ + position;
    bounds_[node] = bound;
    for (node /= 2; node > 0; node /= 2) {
        const Nanos m = std::min(bounds_[2 * node], bounds_[2 * node + 1]);
        if (bounds_[node] == m) break;  // nothing above changes either
        bounds_[node] = m;
    }
}

Nanos WaitingUnits::min_bound() const {
    if (slots_.empty()) return kNever;
    if (!tracking_) build_bounds();
    return bounds_[1];
}

Nanos WaitingUnits::min_bound_before(Position position) const {
    if (!tracking_) build_bounds();
    Nanos m = kNever;
    for (std::size_t lo = leaves_, hi = leaves_ + position; lo < hi; lo /= 2, hi /= 2) {
        if (lo & 1) m = std::min(m, bounds_[lo++]);
        if (hi & 1) m = std::min(m, bounds_[--hi]);
    }
    return m;
}

void WaitingUnits::build_bounds() const {
    tracking_ = true;
    leaves_ = 16;
    while (leaves_ < slots_.size()) leaves_ *= 2;
    bounds_.assign(2 * leaves_, kNever);
    for (std::size_t i = 0; i < slots_.size(); ++i) bounds_[leaves_ + i] = slots_[i].bound;
    for (std::size_t node = leaves_ - 1; node > 0; --node)
        bounds_[node] = std::min(bounds_[2 * node], bounds_[2 * node + 1]);
}

void WaitingUnits::add(Position position, std::int64_t delta) {
    for (std::size_t i = position + 1; i <= tree_.size(); i += lowbit(i)) tree_[i - 1] += delta;
}

std::int64_t WaitingUnits::prefix(std::size_t count) const {
    std::int64_t sum = 0;
    for (std::size_t i = count; i > 0; i -= lowbit(i)) sum += tree_[i - 1];
    return sum;
}

void WaitingUnits::compact() {
    std::size_t kept = 0;
    for (const Slot& slot : slots_) {
        if (slot.handle == nullptr) continue;
        *slot.handle = kept;
        slots_[kept++] = slot;
    }
    slots_.resize(kept);
    // Linear-time Fenwick build: each node pushes its sum to its parent.
    tree_.assign(kept, 0);
    for (std::size_t i = 1; i <= kept; ++i) {
        tree_[i - 1] += slots_[i - 1].units;
        const std::size_t parent = i + lowbit(i);
        if (parent <= kept) tree_[parent - 1] += tree_[i - 1];
    }
    if (tracking_) build_bounds();
}

}  // namespace sluice::queue
