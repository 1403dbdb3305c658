#pragma once
// The state file on disk: plain POSIX file I/O, blocking. Called from the state writer's
// thread (StateWriter) and at start before any listener opens; never from an io thread.

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "sluice/common/clock.hpp"
#include "sluice/state/snapshot.hpp"

namespace sluice::state {

// One folder holding `state.bin`, replaced whole on every save (a reader sees the old file
// or the new one, never a mix, even across a power cut), and at most kMaxSetAside
// unreadable files set aside for a human to look at.
class StateDir {
public:
    static constexpr std::string_view kFileName = "state.bin";
    static constexpr std::size_t kMaxSetAside = 3;

    // Creates the folder (and its parents) if missing and checks that a file can be created and
    // written in it. Returns the error text, or nullopt when usable.
    std::optional<std::string> open(const std::string& dir);

    const std::string& path() const noexcept { return dir_; }
    std::string file_path() const;

    // Writes `bytes` to a temporary file in the folder, fsyncs it, renames it over state.bin
    // and fsyncs the folder. On failure the temporary file is removed and state.bin is
    // untouched. Returns the error text, or nullopt when written.
    std::optional<std::string> write_atomically(std::string_view bytes) const;

    struct ReadResult {
        enum class Status {
            absent,     // no state.bin
            read,       // `bytes` holds it
            too_large,  // larger than max_bytes: not read (`error` says how large)
            error,      // cannot be opened or read (`error`)
        };
        Status status = Status::absent;
        std::string bytes;
        std::string error;
    };
    // Reads state.bin whole.
    ReadResult read(std::uint64_t max_bytes = kMaxFileBytes) const;

    struct SetAsideResult {
        std::string path;   // where state.bin went (empty on failure)
        std::string error;  // empty on success
    };
    // Renames state.bin to `state.bin.bad-<unix seconds of wall_now>` (with "-N" added if that
    // name is taken), then deletes the oldest set-aside files beyond kMaxSetAside. `reason` is
    // kept beside it in `<that name>.why`, for whoever finds the file.
    SetAsideResult set_aside(std::string_view reason, Nanos wall_now) const;

private:
    std::string dir_;
};

// What start finds in the state folder, before any listener opens.
struct StartupState {
    std::optional<StateSnapshot> snapshot;  // set when state.bin was read and decoded
    // For the log: "no state file", "read 3 limits saved at ...", or why nothing was restored
    // ("state.bin set aside as .../state.bin.bad-1700000000: checksum: ...").
    std::string message;
    bool set_aside = false;  // state.bin could not be decoded and was renamed
};
// Reads and decodes state.bin; one that cannot be decoded (or is larger than kMaxFileBytes) is
// set aside (StateDir::set_aside) with the decoder's message as the reason. A read that fails
// for another reason (permissions, I/O) leaves the file where it is.
StartupState read_state_at_start(const StateDir& dir, Nanos wall_now);

// The host's boot id (/proc/sys/kernel/random/boot_id, Linux), "" when it cannot be read:
// equal ids mean the same CLOCK_MONOTONIC (restore.hpp). `path` is for tests.
std::string read_boot_id(const std::string& path = "/proc/sys/kernel/random/boot_id");

// Writes snapshots on a thread of its own, so that neither the admission path nor a timer
// waits for a disk. At most one snapshot waits to be written: a newer one replaces an
// unwritten older one (each snapshot holds the whole state, so only the latest matters).
class StateWriter {
public:
    // Writes the bytes; returns the error text, or nullopt when written.
    using Sink = std::function<std::optional<std::string>(std::string_view bytes)>;

    explicit StateWriter(Sink sink);
    explicit StateWriter(const StateDir& dir);  // writes with dir.write_atomically (`dir` must outlive it)
    ~StateWriter();                             // writes what is pending, then stops the thread
    StateWriter(const StateWriter&) = delete;
    StateWriter& operator=(const StateWriter&) = delete;

    // Queues `bytes` for writing; `saved_wall` is the wall time it describes (last_written_wall).
    void submit(std::string bytes, Nanos saved_wall);

    // Blocks until every snapshot submitted before the call is written (or replaced by a newer
    // one that is written) or its write failed. For shutdown, after the last submit.
    void flush();

    struct Counters {
        std::uint64_t writes = 0;    // successful writes
        std::uint64_t failures = 0;  // failed writes
        std::uint64_t replaced = 0;  // snapshots replaced by a newer one before being written
        std::string last_error;      // of the latest failure ("" if none yet)
        Nanos last_written_wall{0};  // saved_wall of the latest snapshot written (0: none yet)
        std::size_t bytes_last = 0;  // size of the latest snapshot written
    };
    Counters counters() const;  // from any thread

private:
    void run();

    Sink sink_;
    mutable std::mutex mutex_;
    std::condition_variable wake_;     // the writer: something is pending, or stop
    std::condition_variable written_;  // flush(): done_ moved
    std::optional<std::string> pending_;
    Nanos pending_wall_{0};
    std::uint64_t submitted_ = 0;  // sequence number of the latest submit
    std::uint64_t pending_seq_ = 0;
    std::uint64_t done_ = 0;  // every submit up to this one is written or failed
    bool stop_ = false;
    Counters counters_;
    std::thread thread_;  // last: started once everything above is constructed
};

}  // namespace sluice::state
