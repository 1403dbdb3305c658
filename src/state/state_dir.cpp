#include "sluice/state/state_dir.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace sluice::state {

namespace {

namespace fs = std::filesystem;

constexpr std::string_view kTempPrefix = ".state.bin.tmp-";
constexpr std::string_view kSetAsidePrefix = "state.bin.bad-";
constexpr std::string_view kReasonSuffix = ".why";

std::string errno_text(int error) {
    return std::strerror(error);
}

std::string failed(std::string_view what, const std::string& path, int error) {
    return std::string(what) + " '" + path + "': " + errno_text(error);
}

// Writes all of `bytes` to `fd`, retrying short writes and EINTR.
bool write_all(int fd, std::string_view bytes) {
    while (!bytes.empty()) {
        const auto n = ::write(fd, bytes.data(), bytes.size());
        if (n < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
}

// Creates `path` (O_EXCL: never someone else's file), writes and fsyncs it. Error text or nullopt.
std::optional<std::string> write_new_file(const std::string& path, std::string_view bytes) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) return failed("cannot create", path, errno);
    if (!write_all(fd, bytes)) {
        const int error = errno;
        ::close(fd);
        ::unlink(path.c_str());
        return failed("cannot write", path, error);
    }
    if (::fsync(fd) != 0) {
        const int error = errno;
        ::close(fd);
        ::unlink(path.c_str());
        return failed("cannot fsync", path, error);
    }
    if (::close(fd) != 0) {
        const int error = errno;
        ::unlink(path.c_str());
        return failed("cannot close", path, error);
    }
    return std::nullopt;
}

// A rename is durable once the folder holding it is synced.
std::optional<std::string> sync_dir(const std::string& dir) {
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return failed("cannot open the folder", dir, errno);
    const int result = ::fsync(fd);
    const int error = errno;
    ::close(fd);
    if (result != 0) return failed("cannot fsync the folder", dir, error);
    return std::nullopt;
}

// A set-aside file's order: its seconds, then the "-N" of a name taken twice in one second.
struct SetAsideName {
    std::string name;
    std::uint64_t seconds = 0;
    std::uint64_t sequence = 0;
    bool operator<(const SetAsideName& other) const {
        return seconds != other.seconds ? seconds < other.seconds : sequence < other.sequence;
    }
};

std::optional<SetAsideName> parse_set_aside(const std::string& name) {
    if (!name.starts_with(kSetAsidePrefix) || name.ends_with(kReasonSuffix)) return std::nullopt;
    SetAsideName parsed{name};
    std::string_view rest = std::string_view(name).substr(kSetAsidePrefix.size());
    std::uint64_t* field = &parsed.seconds;
    bool digits = false;
    for (const char c : rest) {
        if (c >= '0' && c <= '9') {
            *field = *field * 10 + static_cast<std::uint64_t>(c - '0');
            digits = true;
        } else if (c == '-' && field == &parsed.seconds && digits) {
            field = &parsed.sequence;
            digits = false;
        } else {
            return std::nullopt;
        }
    }
    if (!digits) return std::nullopt;
    return parsed;
}

}  // namespace

std::string StateDir::file_path() const {
    return (fs::path(dir_) / kFileName).string();
}

std::optional<std::string> StateDir::open(const std::string& dir) {
    if (dir.empty()) return "the state folder is not set";
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) return "cannot create the state folder '" + dir + "': " + ec.message();
    if (!fs::is_directory(dir, ec)) return "the state folder '" + dir + "' is not a folder";
    const auto probe =
        (fs::path(dir) / (std::string(kTempPrefix) + "probe-" + std::to_string(::getpid()))).string();
    ::unlink(probe.c_str());  // a probe left by a crash of this pid's predecessor
    if (auto error = write_new_file(probe, "probe")) return "the state folder is not writable: " + *error;
    ::unlink(probe.c_str());
    dir_ = dir;
    return std::nullopt;
}

std::optional<std::string> StateDir::write_atomically(std::string_view bytes) const {
    if (dir_.empty()) return "the state folder is not open";
    const auto temp = (fs::path(dir_) / (std::string(kTempPrefix) + std::to_string(::getpid()))).string();
    ::unlink(temp.c_str());  // one left by a failed write (only this process writes here)
    if (auto error = write_new_file(temp, bytes)) return error;
    const auto target = file_path();
    if (::rename(temp.c_str(), target.c_str()) != 0) {
        const int error = errno;
        ::unlink(temp.c_str());
        return failed("cannot rename the new state file to", target, error);
    }
    return sync_dir(dir_);
}

StateDir::ReadResult StateDir::read(std::uint64_t max_bytes) const {
    ReadResult result;
    const auto path = file_path();
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return result;
        result.status = ReadResult::Status::error;
        result.error = failed("cannot open", path, errno);
        return result;
    }
    struct stat info {};
    if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
        result.status = ReadResult::Status::error;
        result.error = "'" + path + "' is not a readable regular file";
        ::close(fd);
        return result;
    }
    if (static_cast<std::uint64_t>(info.st_size) > max_bytes) {
        result.status = ReadResult::Status::too_large;
        result.error = "'" + path + "' has " + std::to_string(info.st_size) + " bytes, more than the " +
                       std::to_string(max_bytes) + " a state file may have";
        ::close(fd);
        return result;
    }
    std::string bytes(static_cast<std::size_t>(info.st_size), '\0');
    std::size_t got = 0;
    while (got < bytes.size()) {
        const auto n = ::read(fd, bytes.data() + got, bytes.size() - got);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            result.status = ReadResult::Status::error;
            result.error = failed("cannot read", path, errno);
            ::close(fd);
            return result;
        }
        if (n == 0) break;  // shrank since fstat: what was read is what there is
        got += static_cast<std::size_t>(n);
    }
    ::close(fd);
    bytes.resize(got);
    result.status = ReadResult::Status::read;
    result.bytes = std::move(bytes);
    return result;
}

StateDir::SetAsideResult StateDir::set_aside(std::string_view reason, Nanos wall_now) const {
    SetAsideResult result;
    if (dir_.empty()) {
        result.error = "the state folder is not open";
        return result;
    }
    const auto seconds =
        std::max<std::int64_t>(0, std::chrono::duration_cast<std::chrono::seconds>(wall_now).count());
    const auto base = std::string(kSetAsidePrefix) + std::to_string(seconds);
    std::string name = base;
    std::error_code ec;
    for (int n = 1; fs::exists(fs::path(dir_) / name, ec); ++n) name = base + "-" + std::to_string(n);
    const auto target = (fs::path(dir_) / name).string();
    const auto source = file_path();
    if (::rename(source.c_str(), target.c_str()) != 0) {
        result.error = failed("cannot rename", source, errno) + " to '" + target + "'";
        return result;
    }
    result.path = target;
    // The reason is a courtesy: the file is set aside whether or not it can be written.
    std::string why(reason);
    why += '\n';
    const auto why_path = target + std::string(kReasonSuffix);
    ::unlink(why_path.c_str());
    (void)write_new_file(why_path, why);

    std::vector<SetAsideName> set_aside;
    for (fs::directory_iterator it(dir_, ec), end; !ec && it != end; it.increment(ec)) {
        if (auto parsed = parse_set_aside(it->path().filename().string()))
            set_aside.push_back(std::move(*parsed));
    }
    std::sort(set_aside.begin(), set_aside.end());
    for (std::size_t i = 0; i + kMaxSetAside < set_aside.size(); ++i) {
        const auto old = (fs::path(dir_) / set_aside[i].name).string();
        ::unlink(old.c_str());
        ::unlink((old + std::string(kReasonSuffix)).c_str());
    }
    (void)sync_dir(dir_);
    return result;
}

StartupState read_state_at_start(const StateDir& dir, Nanos wall_now) {
    StartupState state;
    const auto read = dir.read(kMaxFileBytes);
    std::string problem;
    switch (read.status) {
        case StateDir::ReadResult::Status::absent: state.message = "no state file"; return state;
        case StateDir::ReadResult::Status::error:
            // The folder's fault (permissions, I/O), not the file's: it may be fine, so it stays.
            state.message = read.error;
            return state;
        case StateDir::ReadResult::Status::too_large: problem = "too large: " + read.error; break;
        case StateDir::ReadResult::Status::read: {
            auto decoded = decode(read.bytes);
            if (decoded.snapshot) {
                state.message = "read " + std::to_string(decoded.snapshot->limits.size()) + " limits from '" +
                                dir.file_path() + "'";
                state.snapshot = std::move(decoded.snapshot);
                return state;
            }
            problem = std::string(decode_error_name(decoded.error)) + ": " + decoded.message;
            break;
        }
    }
    const auto moved = dir.set_aside(problem, wall_now);
    state.set_aside = moved.error.empty();
    state.message = state.set_aside ? "state.bin set aside as " + moved.path + ": " + problem
                                    : problem + " (and it could not be set aside: " + moved.error + ")";
    return state;
}

std::string read_boot_id(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return {};
    char buffer[kMaxBootIdBytes + 1];
    const auto n = ::read(fd, buffer, sizeof buffer);
    ::close(fd);
    if (n <= 0) return {};
    std::string id(buffer, static_cast<std::size_t>(n));
    while (!id.empty() && (id.back() == '\n' || id.back() == ' ')) id.pop_back();
    if (id.size() > kMaxBootIdBytes) return {};  // not a boot id
    return id;
}

// ---------------------------------------------------------------------------

StateWriter::StateWriter(Sink sink) : sink_(std::move(sink)), thread_([this] { run(); }) {}

StateWriter::StateWriter(const StateDir& dir)
    : StateWriter([&dir](std::string_view bytes) { return dir.write_atomically(bytes); }) {}

StateWriter::~StateWriter() {
    {
        const std::lock_guard lock(mutex_);
        stop_ = true;
    }
    wake_.notify_one();
    thread_.join();
}

void StateWriter::submit(std::string bytes, Nanos saved_wall) {
    {
        const std::lock_guard lock(mutex_);
        if (pending_) ++counters_.replaced;
        pending_ = std::move(bytes);
        pending_wall_ = saved_wall;
        pending_seq_ = ++submitted_;
    }
    wake_.notify_one();
}

void StateWriter::flush() {
    std::unique_lock lock(mutex_);
    const auto target = submitted_;
    written_.wait(lock, [&] { return done_ >= target; });
}

StateWriter::Counters StateWriter::counters() const {
    const std::lock_guard lock(mutex_);
    return counters_;
}

void StateWriter::run() {
    std::unique_lock lock(mutex_);
    for (;;) {
        wake_.wait(lock, [&] { return pending_.has_value() || stop_; });
        if (!pending_) return;  // stopping with nothing left to write
        auto bytes = std::move(*pending_);
        pending_.reset();
        const auto wall = pending_wall_;
        const auto seq = pending_seq_;
        lock.unlock();
        const auto error = sink_(bytes);
        lock.lock();
        if (error) {
            ++counters_.failures;
            counters_.last_error = *error;
        } else {
            ++counters_.writes;
            counters_.last_written_wall = wall;
            counters_.bytes_last = bytes.size();
        }
        done_ = seq;
        written_.notify_all();
    }
}

}  // namespace sluice::state
