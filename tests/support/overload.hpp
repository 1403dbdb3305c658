#pragma once
// Tools for the overload tests (tests/e2e/proxy_overload_test.cpp): many clients
// at once from one test thread, connections that misbehave on purpose, and what
// a process holds (RSS, open fds) read from /proc.
//
// - LoadClients: N keep-alive connections on one io_context and one thread,
//   each sending GETs back to back until a deadline (after a 429, a pause
//   first, as a client honouring Retry-After would, though shorter); every
//   exchange is recorded with its status, Sluice-Error and latency. Each
//   exchange is bounded (a timeout), so a proxy that hangs fails the test.
// - HeldSockets: plain sockets opened to a port and then left idle, trickled
//   (slowloris: one byte of a request header at a time) or used to send a
//   request whose response is never read (slow readers). A watcher thread
//   notes when the server closes each one (or first sends anything).

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <sys/types.h>
#include <thread>
#include <vector>

namespace sluice::test {

using SteadyClock = std::chrono::steady_clock;

// /proc/PID/status VmRSS in bytes, and the entries of /proc/PID/fd (0 if gone).
std::uint64_t process_rss_bytes(pid_t pid);
std::size_t process_open_fds(pid_t pid);

// Raises this process's soft RLIMIT_NOFILE to `want` (at most the hard limit);
// returns the soft limit in force afterwards. Children spawned afterwards
// (SluiceProcess uses posix_spawn) inherit it.
std::uint64_t raise_fd_limit(std::uint64_t want);

// True when sluice (process `pid`) runs with a sanitizer runtime (ASan, TSan).
bool sanitized_process(pid_t pid);

// True when latency and memory bounds cannot be asserted honestly: this test
// binary was built with ASan or TSan (so is the sluice under test, by
// scripts/ci-checks.sh), sluice itself is sanitized (SLUICE_E2E_BINARY pointing
// to a sanitized build), or SLUICE_E2E_NO_LATENCY=1.
bool latency_unreliable(pid_t pid);

// p in [0, 1] of `values` (copied and sorted); 0 for none.
double percentile(std::vector<double> values, double p);

struct Exchange {
    unsigned status = 0;   // 0: the exchange failed (error or timeout)
    std::string error;     // Sluice-Error, if any
    double started_s = 0;  // since LoadClients::run began
    double ms = 0;         // request written -> response read
};

class LoadClients {
public:
    struct Options {
        std::uint16_t port = 0;
        std::size_t clients = 500;
        std::string target = "/";
        std::chrono::milliseconds duration{10'000};
        std::chrono::milliseconds pause_after_429{200};  // each client's pause, plus up to 100 % jitter
        std::chrono::milliseconds exchange_timeout{10'000};
    };
    explicit LoadClients(Options options) : options_(std::move(options)) {}

    // Runs every client to its end (blocking); returns every exchange.
    std::vector<Exchange> run();

    std::size_t connects() const { return connects_; }

private:
    Options options_;
    std::size_t connects_ = 0;
};

class HeldSockets {
public:
    // idle: connects and sends nothing. idle_after_request: one request, its
    // response read, then nothing (keep-alive idle). slowloris: a request header
    // one byte per trickle. slow_reader: a request for a large response that is
    // never read.
    enum class Kind { idle, idle_after_request, slowloris, slow_reader };
    struct Held {
        int fd = -1;
        Kind kind = Kind::idle;
        SteadyClock::time_point opened;
        SteadyClock::time_point first_byte_sent;  // slowloris: when trickling began
        std::size_t sent = 0;                     // slowloris: header bytes sent so far
        bool closed = false;                      // the server closed it (EOF, reset, or a reply then EOF)
        SteadyClock::time_point closed_at;
        std::uint64_t bytes_received = 0;
        std::uint16_t local_port = 0;  // to find sluice's side in /proc/net/tcp
        bool cut = false;              // slow reader: the server's side left ESTABLISHED
        SteadyClock::time_point cut_at;
        std::uint64_t send_queue = 0;            // slow reader: the server's send queue, last seen
        SteadyClock::time_point last_progress;   // slow reader: when that queue last changed
        SteadyClock::time_point first_reply_at;  // idle_after_request: when its response began
    };

    explicit HeldSockets(std::uint16_t port) : port_(port) {}
    ~HeldSockets();
    HeldSockets(const HeldSockets&) = delete;
    HeldSockets& operator=(const HeldSockets&) = delete;

    // Opens `count` connections of a kind (connect() is synchronous; throws on failure).
    // A slow reader has a small receive buffer and has sent `request` at once.
    void open(Kind kind, std::size_t count, const std::string& request = {});

    // Starts the thread that trickles slowloris bytes every `trickle` and notes
    // closes of every kind. A slow reader never reads, so its close cannot be
    // seen on its socket: it counts as closed when the server's side of the
    // connection (/proc/net/tcp, local port = the server's) leaves ESTABLISHED.
    void start(std::chrono::milliseconds trickle);

    // Reads what slow readers were sent (until EOF), to count the bytes.
    void drain_slow_readers();

    // Waits (bounded) until the server has cut every slow reader; the delays
    // from the last progress of the server's writes (its send queue, sampled
    // every 50 ms) to the cut, of those cut.
    bool wait_cut(std::chrono::milliseconds timeout);
    std::vector<double> cut_delays();

    // Waits (bounded) until every connection of `kind` is closed.
    bool wait_closed(Kind kind, std::chrono::milliseconds timeout);
    std::size_t open_count(Kind kind);

    // Seconds to the close from the connect, or for idle_after_request from its response.
    std::vector<double> close_delays(Kind kind);
    std::uint64_t bytes_received(Kind kind);

    void close_all();

private:
    void add(Kind kind, const std::vector<int>& fds, const std::vector<SteadyClock::time_point>& opened,
             const std::string& request);
    void watch();

    std::uint16_t port_;
    std::string slowloris_request_ =
        "GET /slowloris HTTP/1.1\r\nHost: slow.test\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    std::chrono::milliseconds trickle_{100};
    std::mutex mutex_;
    std::vector<Held> held_;
    bool drain_readers_ = false;
    std::atomic<bool> stop_{false};
    std::thread watcher_;
};

}  // namespace sluice::test
