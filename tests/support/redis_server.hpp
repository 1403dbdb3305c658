#pragma once
// A real Redis (Debian's redis-server) for tests of the shared limits.
//
// RedisServer picks a free TCP port on 127.0.0.1 (Redis cannot bind port 0: a
// socket is bound to port 0 to learn a free one, closed, and Redis is started
// on it; a lost race is retried with another port), runs redis-server in a
// fresh temporary directory without persistence (--save "" --appendonly no),
// and waits (bounded) until it answers PING. The constructor throws with
// Redis's log when it cannot start. kill() is a crash (SIGKILL), stop() a
// clean shutdown (SIGTERM, SIGKILL after the grace period), restart() starts
// an empty Redis again on the SAME port (and unix socket). The destructor
// stops it and removes the directory: nothing is left running. The child is
// also SIGKILLed by the kernel if the thread that started it dies
// (PR_SET_PDEATHSIG), so a crashed test leaves no Redis behind: start and
// restart it from the test's main thread.
//
// command() is a synchronous client (hiredis's blocking API, tests only) for
// setting up and inspecting what the code under test stored.

#include <chrono>
#include <cstdint>
#include <string>
#include <sys/types.h>
#include <vector>

namespace sluice::test {

class RedisServer {
public:
    struct Options {
        std::string requirepass;   // non-empty: --requirepass (command() then AUTHs with it)
        bool unix_socket = false;  // also listen on DIR/redis.sock (unix_path())
        // Both set: also TLS on tls_port() with this certificate (clients are not asked for one).
        std::string tls_cert_file;
        std::string tls_key_file;
        std::vector<std::string> extra_args;  // appended to the command line, e.g. {"--maxclients", "5"}
        std::chrono::milliseconds ready_timeout{5'000};
    };

    // What command() read, copied out of hiredis's reply.
    struct Reply {
        enum class Type { string, array, integer, nil, status, error, other };
        Type type = Type::nil;
        std::string str;  // string, status, error
        long long integer = 0;
        std::vector<Reply> elements;
        bool is_error() const { return type == Type::error; }
        // str for strings, statuses and errors; the number for integers; "(nil)"; "(array)".
        std::string text() const;
    };

    RedisServer();
    explicit RedisServer(Options options);
    ~RedisServer();
    RedisServer(const RedisServer&) = delete;
    RedisServer& operator=(const RedisServer&) = delete;

    std::uint16_t port() const { return port_; }          // plain TCP, always
    std::uint16_t tls_port() const { return tls_port_; }  // 0 unless options.tls_cert_file
    std::string host() const { return "127.0.0.1"; }
    std::string address() const { return "127.0.0.1:" + std::to_string(port_); }  // config's `address:`
    const std::string& unix_path() const { return unix_path_; }  // empty unless options.unix_socket
    pid_t pid() const { return pid_; }
    const std::string& dir() const { return dir_; }
    bool running();

    // SIGKILL (a crash), and wait for it. No-op when it is not running.
    void kill();
    // SIGTERM, wait up to `grace`, then SIGKILL. No-op when it is not running.
    void stop(std::chrono::milliseconds grace = std::chrono::seconds(5));
    // Stops it if running, then starts an empty Redis on the same port (and unix socket) and waits for
    // PING. Throws as the constructor does.
    void restart();

    // Runs one command on a new connection (AUTH first when requirepass is set; bounded by 5 s).
    // Throws std::runtime_error when Redis cannot be reached; an error reply is returned as a Reply.
    Reply command(const std::vector<std::string>& argv) const;

    std::string log_text() const;

private:
    void start_with_retries(bool same_port);
    bool start_once(std::string& why);
    bool reap(bool block);

    Options options_;
    std::string dir_;
    std::string log_path_;
    std::string unix_path_;
    std::uint16_t port_ = 0;
    std::uint16_t tls_port_ = 0;
    pid_t pid_ = -1;
};

}  // namespace sluice::test
