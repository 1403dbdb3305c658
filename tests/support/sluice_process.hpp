#pragma once
// Runs the real sluice binary (SLUICE_BINARY, or $SLUICE_E2E_BINARY when set)
// for an end-to-end test.
//
// SluiceProcess writes the YAML into a fresh temporary directory, spawns
// `sluice --config DIR/sluice.yaml --ready-file DIR/ready.json`, and waits (at
// most `ready_timeout`) for the ready file, which sluice writes atomically once
// every listener is bound: {"pid":N,"listeners":{"name":PORT,...},"admin":PORT}.
// If sluice exits first or never gets ready, the constructor throws with its
// stderr. stdout/stderr go to files in the directory; stderr is printed when an
// assertion fails while the process is alive, or when a test unwinds through
// its destructor. stop() sends SIGTERM, waits, and SIGKILLs after the grace
// period; the destructor stops and removes the directory.

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <utility>
#include <vector>

namespace sluice::test {

// Replaces every "{KEY}" in `text` with its value: yaml_subst(yaml, {{"UP", std::to_string(port)}}).
std::string yaml_subst(std::string text,
                       std::initializer_list<std::pair<std::string_view, std::string>> values);

class SluiceProcess {
public:
    struct Options {
        std::vector<std::string> extra_args;   // e.g. {"--log-level", "debug"}
        std::vector<std::string> environment;  // added to the test's own, e.g. {"SLUICE_FAILPOINTS=..."}
        std::chrono::milliseconds ready_timeout{10'000};
        // Where sluice's stdout goes (e.g. a FIFO the test holds open and never reads);
        // empty: DIR/stdout.log.
        std::string stdout_path;
    };

    explicit SluiceProcess(const std::string& yaml);
    SluiceProcess(const std::string& yaml, Options options);
    ~SluiceProcess();
    SluiceProcess(const SluiceProcess&) = delete;
    SluiceProcess& operator=(const SluiceProcess&) = delete;

    // The bound port of a listener (throws std::out_of_range naming it when absent).
    std::uint16_t port(const std::string& listener) const;
    std::uint16_t admin_port() const { return admin_port_; }
    const std::map<std::string, std::uint16_t>& listener_ports() const { return ports_; }
    pid_t pid() const { return pid_; }
    const std::string& dir() const { return dir_; }
    const std::string& config_path() const { return config_path_; }

    // From /proc/PID/status, in bytes (0 if the process is gone).
    std::uint64_t peak_rss_bytes() const;     // VmHWM
    std::uint64_t current_rss_bytes() const;  // VmRSS

    std::string stderr_text() const;
    bool running();

    struct ExitStatus {
        bool exited = false;  // exited normally (else killed by a signal)
        int code = -1;        // exit code when exited
        int signal = 0;       // terminating signal otherwise
        bool needed_sigkill = false;
    };
    // SIGTERM, wait up to `grace`, then SIGKILL. Idempotent: returns the first result.
    ExitStatus stop(std::chrono::milliseconds grace = std::chrono::seconds(5));

    // Prints the stderr tail to std::cerr once (used on test failure).
    void dump_stderr(const char* why);

private:
    void spawn(const Options& options);
    void wait_ready(std::chrono::milliseconds timeout);
    bool reap(bool block);

    std::string dir_;
    std::string config_path_;
    std::string ready_path_;
    std::string stderr_path_;
    pid_t pid_ = -1;
    bool reaped_ = false;
    ExitStatus exit_status_;
    bool dumped_ = false;
    std::map<std::string, std::uint16_t> ports_;
    std::uint16_t admin_port_ = 0;
};

struct CheckResult {
    int exit_code = -1;  // -1 if sluice did not exit normally
    std::string stdout_text;
    std::string stderr_text;
    std::string config_path;  // where the YAML was written (its name appears in error messages)
};

// Writes `yaml` to a temporary `file_name` and runs `sluice --check --config FILE [extra_args...]`
// (bounded: 10 s).
CheckResult run_sluice_check(const std::string& yaml, const std::string& file_name = "sluice.yaml",
                             const std::vector<std::string>& extra_args = {});

// Runs `sluice ARGS...` (bounded: 10 s) and collects its exit code and output.
CheckResult run_sluice_command(const std::vector<std::string>& args);

// What became of an attempt to start sluice that is expected to fail.
struct StartAttempt {
    bool became_ready = false;  // it wrote its ready file (it was then stopped: SIGTERM, SIGKILL after 5 s)
    int exit_code = -1;         // its exit code when it exited by itself before that; -1 otherwise
    std::string stderr_text;
};

// Writes `yaml` to a temporary sluice.yaml and runs `sluice --config FILE --ready-file R
// [extra_args...]` until it exits or gets ready (bounded: `timeout`, then SIGKILL).
// For startup failures, which SluiceProcess reports only as an exception.
StartAttempt try_start_sluice(const std::string& yaml, const std::vector<std::string>& extra_args = {},
                              std::chrono::milliseconds timeout = std::chrono::seconds(10));

}  // namespace sluice::test
