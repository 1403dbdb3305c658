#include <arpa/inet.h>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <hiredis/hiredis.h>
#include <memory>
#include <netinet/in.h>
#include <sstream>
#include <stdexcept>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include "support/redis_server.hpp"

namespace sluice::test {
namespace {

constexpr int kPortAttempts = 8;
constexpr std::size_t kLogTail = 8 * 1024;

std::string make_temp_dir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "sluice-redis-XXXXXX").string();
    if (!::mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed for " + pattern);
    return pattern;
}

std::string read_file(const std::string& path) {
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

std::string tail(std::string text) {
    if (text.size() > kLogTail) text = "[...]\n" + text.substr(text.size() - kLogTail);
    return text;
}

// A port nobody listens on right now: bound to learn it, then released for Redis (which
// cannot bind port 0 itself). Another process may take it in between: the caller retries.
std::uint16_t free_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = 0;
    socklen_t length = sizeof address;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
        const int saved = errno;
        ::close(fd);
        throw std::runtime_error(std::string("bind 127.0.0.1:0: ") + std::strerror(saved));
    }
    ::close(fd);
    return ntohs(address.sin_port);
}

struct ContextFree {
    void operator()(redisContext* context) const { redisFree(context); }
};
using ContextPtr = std::unique_ptr<redisContext, ContextFree>;

struct ReplyFree {
    void operator()(redisReply* reply) const { freeReplyObject(reply); }
};
using ReplyPtr = std::unique_ptr<redisReply, ReplyFree>;

RedisServer::Reply copy_reply(const redisReply& reply) {
    RedisServer::Reply out;
    switch (reply.type) {
        case REDIS_REPLY_STRING: out.type = RedisServer::Reply::Type::string; break;
        case REDIS_REPLY_ARRAY: out.type = RedisServer::Reply::Type::array; break;
        case REDIS_REPLY_INTEGER: out.type = RedisServer::Reply::Type::integer; break;
        case REDIS_REPLY_NIL: out.type = RedisServer::Reply::Type::nil; break;
        case REDIS_REPLY_STATUS: out.type = RedisServer::Reply::Type::status; break;
        case REDIS_REPLY_ERROR: out.type = RedisServer::Reply::Type::error; break;
        default: out.type = RedisServer::Reply::Type::other; break;
    }
    if (reply.str) out.str.assign(reply.str, reply.len);
    out.integer = reply.integer;
    for (std::size_t i = 0; i < reply.elements; ++i) out.elements.push_back(copy_reply(*reply.element[i]));
    return out;
}

ContextPtr connect_to(std::uint16_t port, std::chrono::milliseconds timeout) {
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
    tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
    ContextPtr context(redisConnectWithTimeout("127.0.0.1", port, tv));
    if (!context || context->err) return nullptr;
    redisSetTimeout(context.get(), tv);
    return context;
}

// Nullptr when the connection failed (context->err is then set).
ReplyPtr run(redisContext* context, const std::vector<std::string>& argv) {
    std::vector<const char*> args;
    std::vector<std::size_t> lengths;
    for (const auto& arg : argv) {
        args.push_back(arg.data());
        lengths.push_back(arg.size());
    }
    return ReplyPtr(static_cast<redisReply*>(
        redisCommandArgv(context, static_cast<int>(args.size()), args.data(), lengths.data())));
}

}  // namespace

std::string RedisServer::Reply::text() const {
    switch (type) {
        case Type::integer: return std::to_string(integer);
        case Type::nil: return "(nil)";
        case Type::array: return "(array)";
        default: return str;
    }
}

RedisServer::RedisServer() : RedisServer(Options{}) {}

RedisServer::RedisServer(Options options) : options_(std::move(options)) {
    dir_ = make_temp_dir();
    log_path_ = dir_ + "/redis.log";
    if (options_.unix_socket) unix_path_ = dir_ + "/redis.sock";
    try {
        start_with_retries(false);
    } catch (...) {
        stop(std::chrono::seconds(1));
        std::error_code ignored;
        std::filesystem::remove_all(dir_, ignored);
        throw;
    }
}

RedisServer::~RedisServer() {
    stop();
    if (!std::getenv("SLUICE_E2E_KEEP")) {
        std::error_code ignored;
        std::filesystem::remove_all(dir_, ignored);
    }
}

bool RedisServer::running() {
    return pid_ > 0 && !reap(false);
}

bool RedisServer::reap(bool block) {
    if (pid_ <= 0) return true;
    int status = 0;
    const pid_t rc = ::waitpid(pid_, &status, block ? 0 : WNOHANG);
    if (rc != pid_ && !(rc < 0 && errno == ECHILD)) return false;
    pid_ = -1;
    return true;
}

void RedisServer::kill() {
    if (pid_ <= 0 || reap(false)) return;
    ::kill(pid_, SIGKILL);
    reap(true);
}

void RedisServer::stop(std::chrono::milliseconds grace) {
    if (pid_ <= 0 || reap(false)) return;
    ::kill(pid_, SIGTERM);
    const auto deadline = std::chrono::steady_clock::now() + grace;
    while (std::chrono::steady_clock::now() < deadline) {
        if (reap(false)) return;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    kill();
}

void RedisServer::restart() {
    stop();
    start_with_retries(true);
}

std::string RedisServer::log_text() const {
    return read_file(log_path_);
}

void RedisServer::start_with_retries(bool same_port) {
    std::string why;
    for (int attempt = 0; attempt < kPortAttempts; ++attempt) {
        if (!same_port) {
            port_ = free_port();
            if (!options_.tls_cert_file.empty()) {
                do tls_port_ = free_port();
                while (tls_port_ == port_);
            }
        }
        if (start_once(why)) return;
        // The same port may still be held for a moment by whoever raced us for it.
        if (same_port) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    throw std::runtime_error("redis-server did not start (" + why + "); its log:\n" + tail(log_text()));
}

// Starts redis-server on port_ and waits for PING. False (with `why`) when the port was taken, so
// the caller may try again; throws for anything else.
bool RedisServer::start_once(std::string& why) {
    if (!unix_path_.empty()) ::unlink(unix_path_.c_str());
    const char* binary = std::getenv("SLUICE_REDIS_SERVER");
    std::vector<std::string> args = {binary && *binary ? binary : "redis-server", "--port",
                                     std::to_string(port_), "--bind", "127.0.0.1", "--dir", dir_, "--save",
                                     "", "--appendonly", "no", "--daemonize", "no", "--logfile", "",
                                     // DEBUG SLEEP makes a slow command for the timeout tests.
                                     "--enable-debug-command", "local"};
    if (!options_.requirepass.empty()) args.insert(args.end(), {"--requirepass", options_.requirepass});
    if (!unix_path_.empty()) args.insert(args.end(), {"--unixsocket", unix_path_, "--unixsocketperm", "700"});
    if (tls_port_ != 0) {
        args.insert(args.end(),
                    {"--tls-port", std::to_string(tls_port_), "--tls-cert-file", options_.tls_cert_file,
                     "--tls-key-file", options_.tls_key_file, "--tls-auth-clients", "no"});
    }
    args.insert(args.end(), options_.extra_args.begin(), options_.extra_args.end());
    std::vector<char*> argv;
    for (auto& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);

    std::error_code size_error;
    const auto log_before = std::filesystem::file_size(log_path_, size_error);
    const int log_fd = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log_fd < 0) throw std::runtime_error("cannot open " + log_path_ + ": " + std::strerror(errno));
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) {
        ::close(log_fd);
        throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
    }
    if (pid == 0) {
        // Only async-signal-safe calls between fork and exec.
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::getppid() != parent) ::_exit(127);
        const int null_fd = ::open("/dev/null", O_RDONLY);
        if (null_fd >= 0) ::dup2(null_fd, 0);
        ::dup2(log_fd, 1);
        ::dup2(log_fd, 2);
        ::execvp(argv[0], argv.data());
        ::_exit(127);
    }
    ::close(log_fd);
    pid_ = pid;

    const auto deadline = std::chrono::steady_clock::now() + options_.ready_timeout;
    while (std::chrono::steady_clock::now() < deadline) {
        if (reap(false)) {
            const auto log = log_text();
            // Only this attempt's lines: the log is appended to across restarts.
            if (log.find("Address already in use", size_error ? 0 : log_before) != std::string::npos) {
                why = "port " + std::to_string(port_) + " (or the TLS port) already in use";
                return false;
            }
            throw std::runtime_error("redis-server exited before answering PING (port " +
                                     std::to_string(port_) + "); its log:\n" + tail(log));
        }
        if (auto context = connect_to(port_, std::chrono::milliseconds(200))) {
            auto reply = run(context.get(), {"PING"});
            // NOAUTH (requirepass) also proves it is serving; LOADING does not.
            if (reply &&
                (reply->type == REDIS_REPLY_STATUS ||
                 (reply->type == REDIS_REPLY_ERROR && std::strncmp(reply->str, "LOADING", 7) != 0))) {
                return true;
            }
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    why = "no PING answer within " + std::to_string(options_.ready_timeout.count()) + " ms";
    kill();
    throw std::runtime_error("redis-server (port " + std::to_string(port_) + "): " + why + "; its log:\n" +
                             tail(log_text()));
}

RedisServer::Reply RedisServer::command(const std::vector<std::string>& argv) const {
    auto context = connect_to(port_, std::chrono::seconds(5));
    if (!context) {
        throw std::runtime_error("cannot connect to redis on port " + std::to_string(port_));
    }
    if (!options_.requirepass.empty()) {
        auto auth = run(context.get(), {"AUTH", options_.requirepass});
        if (!auth || auth->type == REDIS_REPLY_ERROR) {
            throw std::runtime_error("AUTH failed on port " + std::to_string(port_) + ": " +
                                     (auth ? std::string(auth->str, auth->len) : context->errstr));
        }
    }
    auto reply = run(context.get(), argv);
    if (!reply) {
        throw std::runtime_error("redis command " + (argv.empty() ? std::string() : argv[0]) + " on port " +
                                 std::to_string(port_) + " failed: " + context->errstr);
    }
    return copy_reply(*reply);
}

}  // namespace sluice::test
