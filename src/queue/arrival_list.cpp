#include "sluice/queue/arrival_list.hpp"

#include <utility>

namespace sluice::queue {

ArrivalList::ArrivalList(ArrivalList&& other) noexcept
    : head_(std::exchange(other.head_, nullptr)),
      tail_(std::exchange(other.tail_, nullptr)),
      size_(std::exchange(other.size_, 0)) {}

void ArrivalList::push_back(Link& link, Nanos arrived) noexcept {
    link.arrived = arrived;
    link.prev = tail_;
    link.next = nullptr;
    link.linked = true;
    if (tail_) {
        tail_->next = &link;
    } else {
        head_ = &link;
    }
    tail_ = &link;
    ++size_;
}

void ArrivalList::erase(Link& link) noexcept {
    if (!link.linked) return;
    if (link.prev) {
        link.prev->next = link.next;
    } else {
        head_ = link.next;
    }
    if (link.next) {
        link.next->prev = link.prev;
    } else {
        tail_ = link.prev;
    }
    link = Link{};
    --size_;
}

}  // namespace sluice::queue
