#include "sluice/access_log/line_buffer.hpp"

#include <algorithm>
#include <cstring>

namespace sluice::access_log {

namespace {

// memchr jumps from line end to line end (vectorised in glibc): a few instructions per
// line, where a byte-by-byte count took about eight per byte.
std::size_t count_lines(std::string_view text) {
    std::size_t lines = 0;
    const char* at = text.data();
    const char* const end = text.data() + text.size();
    while (at < end) {
        const auto* newline =
            static_cast<const char*>(std::memchr(at, '\n', static_cast<std::size_t>(end - at)));
        if (newline == nullptr) break;
        ++lines;
        at = newline + 1;
    }
    return lines;
}

}  // namespace

LineBuffer::LineBuffer(std::size_t capacity_bytes)
    : capacity_(std::max<std::size_t>(capacity_bytes, 1)), data_(std::make_unique<char[]>(capacity_)) {}

bool LineBuffer::try_append(std::string_view line) noexcept {
    bool wake_writer = false;
    {
        const std::lock_guard<std::mutex> lock(mutex_);
        if (line.size() > capacity_ - static_cast<std::size_t>(head_ - tail_)) {
            dropped_.fetch_add(1, std::memory_order_relaxed);
            return false;
        }
        const auto at = static_cast<std::size_t>(head_ % capacity_);
        const auto first = std::min(line.size(), capacity_ - at);
        std::memcpy(data_.get() + at, line.data(), first);
        std::memcpy(data_.get(), line.data() + first, line.size() - first);
        head_ += line.size();
        ++lines_appended_;
        // The writer wakes on its own every interval and takes all there is; it is woken
        // early only once the buffer is half full, so a line costs no system call.
        if (writer_waiting_ && head_ - tail_ >= capacity_ / 2) {
            wake_writer = true;
            writer_waiting_ = false;
        }
    }
    if (wake_writer) ready_.notify_one();
    return true;
}

LineBuffer::Pending LineBuffer::pending_locked() const {
    const auto used = static_cast<std::size_t>(head_ - tail_);
    const auto at = static_cast<std::size_t>(tail_ % capacity_);
    const auto first = std::min(used, capacity_ - at);
    return {std::string_view(data_.get() + at, first), std::string_view(data_.get(), used - first),
            lines_appended_};
}

LineBuffer::Pending LineBuffer::pending() const {
    const std::lock_guard<std::mutex> lock(mutex_);
    return pending_locked();
}

LineBuffer::Pending LineBuffer::wait_pending(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (head_ - tail_ < capacity_ / 2 && !woken_) {
        writer_waiting_ = true;
        ready_.wait_for(lock, timeout, [this] { return head_ - tail_ >= capacity_ / 2 || woken_; });
        writer_waiting_ = false;
    }
    woken_ = false;
    return pending_locked();
}

std::size_t LineBuffer::consume(const Pending& from, std::size_t bytes) noexcept {
    // Only the writer thread consumes, and appenders never touch unconsumed bytes: the
    // lines are counted outside the lock. Usually all that was pending was written, and
    // its lines are known; after a partial write the line ends in the written bytes are
    // counted (a line holds no '\n' but its last byte).
    bytes = std::min(bytes, from.size());
    std::size_t lines = 0;
    if (bytes == from.size()) {
        lines = static_cast<std::size_t>(from.lines_through - lines_consumed_);
    } else {
        const auto in_first = std::min(bytes, from.first.size());
        lines = count_lines(from.first.substr(0, in_first)) +
                count_lines(from.second.substr(0, bytes - in_first));
    }
    lines_consumed_ += lines;
    const std::lock_guard<std::mutex> lock(mutex_);
    tail_ += bytes;
    return lines;
}

void LineBuffer::consume_written(const Pending& from, std::size_t bytes) noexcept {
    written_.fetch_add(consume(from, bytes), std::memory_order_relaxed);
}

void LineBuffer::consume_lost(const Pending& from, std::size_t bytes) noexcept {
    dropped_.fetch_add(consume(from, bytes), std::memory_order_relaxed);
}

void LineBuffer::wake() {
    {
        const std::lock_guard<std::mutex> lock(mutex_);
        woken_ = true;
    }
    ready_.notify_one();
}

}  // namespace sluice::access_log
