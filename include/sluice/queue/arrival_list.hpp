#pragma once
// The requests waiting on one limit, or on one (limit, key), in arrival order,
// so that "how long has the oldest of them waited?" is answered in O(1) under
// the admission lock (the admin pages ask it for every limit and every key
// they show). An intrusive doubly linked list: each link lives in the waiting
// request's own record, which must not move while linked, so joining and
// leaving are O(1) and allocate nothing, whatever order requests leave in
// (admitted, refused at their deadline, cancelled). Requests join in arrival
// order (the controller is called with a monotonic clock), so the front is the
// oldest.

#include <cstddef>

#include "sluice/common/clock.hpp"

namespace sluice::queue {

class ArrivalList {
public:
    // Owned by the waiting request; linked into at most one list at a time.
    struct Link {
        Link* prev = nullptr;
        Link* next = nullptr;
        Nanos arrived{0};
        bool linked = false;
    };

    ArrivalList() = default;
    ArrivalList(const ArrivalList&) = delete;             // the links point at the list's ends, not at it,
    ArrivalList& operator=(const ArrivalList&) = delete;  // but a copy would share them
    ArrivalList(ArrivalList&& other) noexcept;
    ArrivalList& operator=(ArrivalList&&) = delete;

    // Appends `link`, which arrived at `arrived` (no earlier than any linked one).
    void push_back(Link& link, Nanos arrived) noexcept;
    // Unlinks `link`; a link that is not linked is left alone.
    void erase(Link& link) noexcept;

    // When the oldest linked request arrived; kNever when none is linked.
    Nanos oldest_arrival() const noexcept { return head_ ? head_->arrived : kNever; }
    std::size_t size() const noexcept { return size_; }
    bool empty() const noexcept { return size_ == 0; }

private:
    Link* head_ = nullptr;
    Link* tail_ = nullptr;
    std::size_t size_ = 0;
};

}  // namespace sluice::queue
