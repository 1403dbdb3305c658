#pragma once
// The access log's writer: one JSON line per request (access_log/line_format.hpp) to
// stdout, stderr or a file (server.access_log, docs/operations.md, "The access log").
//
// The io threads never wait on the log: a session formats its line into its own reused
// string and append()s it to a bounded LineBuffer, which takes the whole line or drops
// it and counts the drop. One writer thread drains the buffer to the file descriptor,
// and only it ever blocks: on a slow disk, or on a pipe nobody reads, lines pile up in
// the buffer and then are dropped, while requests go on at full speed. A pipe or a
// socket is written without blocking (the writer polls), so stop() can give up on a
// reader that never comes back: at shutdown the writer flushes what is buffered for at
// most `flush_timeout`, and counts the rest as dropped.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "sluice/access_log/line_buffer.hpp"
#include "sluice/access_log/line_format.hpp"
#include "sluice/config/config.hpp"

namespace sluice::proxy {

class AccessLog {
public:
    // Opens the destination and starts the writer thread. Throws std::runtime_error
    // naming the path when a file cannot be opened (a start error, like the listeners).
    explicit AccessLog(const config::Config& config);
    ~AccessLog();  // stop()
    AccessLog(const AccessLog&) = delete;
    AccessLog& operator=(const AccessLog&) = delete;

    // From any io thread: the whole line (ending in '\n') or, when the buffer is full, nothing.
    void append(std::string_view line) noexcept { buffer_.try_append(line); }

    // Writes what is buffered (for at most `flush_timeout`; the rest counts as dropped)
    // and ends the writer thread. Lines appended after it are never written. Idempotent.
    void stop(std::chrono::milliseconds flush_timeout = std::chrono::seconds(2));

    const access_log::LineOptions& options() const { return options_; }
    std::uint64_t lines_written() const { return buffer_.lines_written(); }
    std::uint64_t lines_dropped() const { return buffer_.lines_dropped(); }

private:
    // How the descriptor is written without blocking the writer past a deadline.
    enum class Mode {
        plain,        // a regular file: written directly (a slow disk only delays the writer)
        nonblocking,  // our own non-blocking descriptor (a reopened pipe): EAGAIN, then poll
        socket,       // send(MSG_DONTWAIT)
        polled,       // anything else (a terminal, a pipe we could not reopen): poll, then PIPE_BUF at most
    };
    void run();
    // Writes some of `pending`; returns the bytes written, 0 when the descriptor took
    // nothing within the poll interval, or -1 after an error (logged, the bytes lost).
    long write_some(const access_log::LineBuffer::Pending& pending);

    access_log::LineOptions options_;
    access_log::LineBuffer buffer_;
    std::string path_;
    int fd_ = -1;
    bool owns_fd_ = false;
    Mode mode_ = Mode::plain;
    std::atomic<bool> stopping_{false};
    std::atomic<std::int64_t> flush_deadline_ns_{0};  // steady clock; set by stop()
    std::thread writer_;
};

}  // namespace sluice::proxy
