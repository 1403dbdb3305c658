#pragma once
// The access log's bounded buffer between the io threads and the writer thread.
//
// An io thread appends a whole line or, when the buffer has no room for it, drops it
// and counts the drop: it never waits for the writer, whatever the disk or pipe behind
// it does. The lock is held only to copy one line in (or to move the read position),
// never during a write to the file descriptor: the writer writes from the buffer's
// memory directly, which appenders do not touch until it is consumed.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string_view>

namespace sluice::access_log {

class LineBuffer {
public:
    explicit LineBuffer(std::size_t capacity_bytes);

    // The whole line, or nothing (counted in lines_dropped()). Never blocks on the writer.
    bool try_append(std::string_view line) noexcept;

    // What the writer may write next, oldest first: the unread bytes, in one or two
    // pieces (the ring wraps). Empty when nothing is buffered.
    struct Pending {
        std::string_view first;
        std::string_view second;
        std::uint64_t lines_through = 0;  // lines appended since the start, up to the end of `second`
        std::size_t size() const { return first.size() + second.size(); }
    };
    Pending pending() const;
    // What there is to write after `timeout`, or earlier once the buffer is half full or
    // wake() is called: the writer takes lines in batches, and an append wakes it (a
    // system call) only when a batch is due before the timeout.
    Pending wait_pending(std::chrono::milliseconds timeout);
    // Marks `bytes` from the start of pending() as done with: written (their lines
    // count in lines_written()) or lost to a write error (counted as dropped).
    // `from` is the pending() the bytes were taken from (when all of it was written, its
    // lines are known without looking at the bytes); without it, pending() now.
    void consume_written(const Pending& from, std::size_t bytes) noexcept;
    void consume_lost(const Pending& from, std::size_t bytes) noexcept;
    void consume_written(std::size_t bytes) noexcept { consume_written(pending(), bytes); }
    void consume_lost(std::size_t bytes) noexcept { consume_lost(pending(), bytes); }
    // Ends a wait_pending() under way (shutdown).
    void wake();

    std::size_t capacity() const { return capacity_; }
    std::uint64_t lines_written() const { return written_.load(std::memory_order_relaxed); }
    std::uint64_t lines_dropped() const { return dropped_.load(std::memory_order_relaxed); }

private:
    std::size_t consume(const Pending& from, std::size_t bytes) noexcept;  // returns the lines it ended
    Pending pending_locked() const;

    const std::size_t capacity_;
    std::unique_ptr<char[]> data_;
    mutable std::mutex mutex_;
    std::condition_variable ready_;
    std::uint64_t head_ = 0;  // bytes appended since the start (the write position is head_ % capacity_)
    std::uint64_t tail_ = 0;  // bytes consumed since the start
    std::uint64_t lines_appended_ = 0;
    std::uint64_t lines_consumed_ = 0;  // the writer's alone
    bool writer_waiting_ = false;
    bool woken_ = false;
    std::atomic<std::uint64_t> written_{0};
    std::atomic<std::uint64_t> dropped_{0};
};

}  // namespace sluice::access_log
