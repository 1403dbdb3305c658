#pragma once
// The state file's I/O side (state/ holds the format and the restore rules):
// restores the limits' counts at start, before any listener opens; saves them
// every server.state.save_interval and once more at shutdown, last. The export
// runs under the admission lock on an io thread (a copy of the saved keys);
// the file is written on the StateWriter's own thread, never on an io thread.
// After a SIGKILL, what was admitted since the last save is not in the file:
// at most one save_interval of admissions (docs/deployment.md).

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "sluice/config/config.hpp"
#include "sluice/state/state_dir.hpp"

namespace sluice::proxy {

struct ProcessState;

class LimitStateFile : public std::enable_shared_from_this<LimitStateFile> {
public:
    LimitStateFile(boost::asio::io_context& ioc, std::shared_ptr<ProcessState> process,
                   config::StateConfig config);
    ~LimitStateFile();

    // Opens (creates) the folder and checks it can be written: the error text, if not.
    std::optional<std::string> open();
    // Reads state.bin and imports what it holds into the current runtime's limits
    // (a file that cannot be decoded is set aside). Logs what it did.
    void restore();
    // Saves every save_interval from now on.
    void start();
    // Stops the periodic save, saves once more and waits for the write.
    void save_and_stop();

    struct Counters {
        std::uint64_t saves = 0;
        std::uint64_t save_failures = 0;
        std::uint64_t set_aside = 0;      // files set aside at start (0 or 1)
        std::uint64_t restored_keys = 0;  // keys imported at start
        Nanos last_save_wall{0};
        std::size_t last_save_bytes = 0;
        std::string last_error;
    };
    Counters counters() const;

private:
    void schedule();
    void save();

    std::shared_ptr<ProcessState> process_;
    config::StateConfig config_;
    boost::asio::steady_timer timer_;
    state::StateDir dir_;
    std::string boot_id_;
    std::unique_ptr<state::StateWriter> writer_;
    std::atomic<std::uint64_t> set_aside_{0};
    std::atomic<std::uint64_t> restored_keys_{0};
    bool stopped_ = false;
};

}  // namespace sluice::proxy
