#include "sluice/proxy/access_log.hpp"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdexcept>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "sluice/common/log.hpp"

namespace sluice::proxy {

namespace {

// How long the writer waits for bytes or for a writable descriptor before it looks at
// its stop flag again.
constexpr auto kPollInterval = std::chrono::milliseconds(100);

std::int64_t steady_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

// The query parameters that limits key on: their values are secrets (API keys) as
// often as not, so the log never writes them.
access_log::LineOptions line_options(const config::Config& config) {
    access_log::LineOptions options;
    options.log_query = config.server.access_log.log_query;
    for (const auto& limit : config.limits) {
        for (const auto& source : limit.key) {
            if (source.kind != config::KeySource::Kind::query) continue;
            auto& names = options.redacted_query_params;
            if (std::find(names.begin(), names.end(), source.name) == names.end())
                names.push_back(source.name);
        }
    }
    return options;
}

}  // namespace

AccessLog::AccessLog(const config::Config& config)
    : options_(line_options(config)),
      buffer_(config.server.access_log.buffer_bytes),
      path_(config.server.access_log.path) {
    if (path_ == "stdout") {
        fd_ = STDOUT_FILENO;
    } else if (path_ == "stderr") {
        fd_ = STDERR_FILENO;
    } else {
        fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
        if (fd_ < 0) {
            throw std::runtime_error("access_log path " + path_ +
                                     ": cannot be opened: " + std::strerror(errno));
        }
        owns_fd_ = true;
    }
    struct stat st {};
    if (::fstat(fd_, &st) != 0) {
        const auto why = std::string(std::strerror(errno));
        if (owns_fd_) ::close(fd_);
        throw std::runtime_error("access_log path " + path_ + ": " + why);
    }
    if (S_ISREG(st.st_mode)) {
        mode_ = Mode::plain;
    } else if (S_ISSOCK(st.st_mode)) {
        mode_ = Mode::socket;
    } else if (S_ISFIFO(st.st_mode)) {
        // A pipe shared with the parent (stdout under a supervisor): its flags belong to
        // everyone holding it, so O_NONBLOCK is set on a descriptor of our own, opened
        // anew on the same pipe. Where that fails, poll before each write instead.
        const auto self = "/proc/self/fd/" + std::to_string(fd_);
        const int own = ::open(self.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
        if (own >= 0) {
            if (owns_fd_) ::close(fd_);
            fd_ = own;
            owns_fd_ = true;
            mode_ = Mode::nonblocking;
        } else {
            mode_ = Mode::polled;
        }
    } else {
        mode_ = Mode::polled;
    }
    writer_ = std::thread([this] { run(); });
}

AccessLog::~AccessLog() {
    stop();
    if (owns_fd_) ::close(fd_);
}

void AccessLog::stop(std::chrono::milliseconds flush_timeout) {
    if (stopping_.exchange(true)) return;
    flush_deadline_ns_.store(steady_ns() + std::chrono::nanoseconds(flush_timeout).count());
    buffer_.wake();
    if (writer_.joinable()) writer_.join();
    // Whatever the writer could not write in time is lost: counted, so /status says so.
    buffer_.consume_lost(buffer_.pending().size());
}

void AccessLog::run() {
    // A reader that closed its end of the pipe would raise SIGPIPE on this thread and
    // end the process: blocked here, the write fails with EPIPE instead.
    sigset_t pipe_signal;
    sigemptyset(&pipe_signal);
    sigaddset(&pipe_signal, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_signal, nullptr);
    while (true) {
        const auto pending = buffer_.wait_pending(kPollInterval);
        if (stopping_.load()) {
            if (pending.size() == 0 || steady_ns() >= flush_deadline_ns_.load()) return;
        }
        if (pending.size() == 0) continue;
        const long written = write_some(pending);
        if (written > 0) {
            buffer_.consume_written(pending, static_cast<std::size_t>(written));
        } else if (written < 0) {
            buffer_.consume_lost(pending, pending.size());
        }
    }
}

long AccessLog::write_some(const access_log::LineBuffer::Pending& pending) {
    iovec pieces[2] = {{const_cast<char*>(pending.first.data()), pending.first.size()},
                       {const_cast<char*>(pending.second.data()), pending.second.size()}};
    const int count = pending.second.empty() ? 1 : 2;
    if (mode_ == Mode::polled) {
        // Writable means room for PIPE_BUF bytes at least: no more, or the write could block.
        pollfd ready{fd_, POLLOUT, 0};
        const int polled = ::poll(&ready, 1, static_cast<int>(kPollInterval.count()));
        if (polled == 0 || (polled < 0 && errno == EINTR)) return 0;
        if (ready.revents & (POLLERR | POLLHUP | POLLNVAL)) {
            errno = EPIPE;
        } else {
            pieces[0].iov_len = std::min<std::size_t>(pieces[0].iov_len, PIPE_BUF);
            const auto n = ::writev(fd_, pieces, 1);
            if (n >= 0) return n;
        }
    } else {
        ssize_t n = 0;
        if (mode_ == Mode::socket) {
            msghdr message{};
            message.msg_iov = pieces;
            message.msg_iovlen = static_cast<std::size_t>(count);
            n = ::sendmsg(fd_, &message, MSG_DONTWAIT | MSG_NOSIGNAL);
        } else {
            n = ::writev(fd_, pieces, count);
        }
        if (n >= 0) return n;
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
            pollfd ready{fd_, POLLOUT, 0};
            ::poll(&ready, 1, static_cast<int>(kPollInterval.count()));
            return 0;
        }
    }
    if (errno == EINTR || errno == EAGAIN) return 0;
    SLUICE_LOG_LIMITED(log::Level::error, "access_log",
                       "writing to " + path_ + " failed: " + std::strerror(errno) + "; those lines are lost");
    return -1;
}

}  // namespace sluice::proxy
