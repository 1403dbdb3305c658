#pragma once
// A real redis-server for the decision script's tests, started once per test process on a free
// loopback port (no persistence), and a synchronous hiredis connection to it. Each test starts
// from an empty database (flush()).
//
// TODO(integration): switch to helper A's tests/support/redis_server.hpp once it is merged.

#include <chrono>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdexcept>
#include <string>
#include <sys/socket.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include "sluice/redis/decision_script.hpp"

namespace sluice::redis::test {

inline Reply copy_reply(const redisReply* r) {
    Reply out;
    if (r == nullptr) {
        out.type = Reply::Type::error;
        out.str = "no reply";
        return out;
    }
    switch (r->type) {
        case REDIS_REPLY_STRING: out.type = Reply::Type::string; break;
        case REDIS_REPLY_ARRAY: out.type = Reply::Type::array; break;
        case REDIS_REPLY_INTEGER: out.type = Reply::Type::integer; break;
        case REDIS_REPLY_NIL: out.type = Reply::Type::nil; break;
        case REDIS_REPLY_STATUS: out.type = Reply::Type::status; break;
        case REDIS_REPLY_ERROR: out.type = Reply::Type::error; break;
        default: out.type = Reply::Type::other; break;
    }
    if (r->str != nullptr) out.str.assign(r->str, r->len);
    out.integer = r->integer;
    for (std::size_t i = 0; i < r->elements; ++i) out.elements.push_back(copy_reply(r->element[i]));
    return out;
}

class ScriptRedis {
public:
    static ScriptRedis& instance() {
        static ScriptRedis redis;
        return redis;
    }

    Reply command(const std::vector<std::string>& argv) {
        std::vector<const char*> args;
        std::vector<std::size_t> lengths;
        for (const auto& a : argv) {
            args.push_back(a.data());
            lengths.push_back(a.size());
        }
        auto* r = static_cast<redisReply*>(
            redisCommandArgv(context_, static_cast<int>(args.size()), args.data(), lengths.data()));
        Reply out = copy_reply(r);
        if (r != nullptr) freeReplyObject(r);
        return out;
    }

    // EVALSHA, loading the script on NOSCRIPT (as RedisConnection::eval_script does).
    Reply eval(const ScriptCall& call) {
        const Script& script = decision_script();
        std::vector<std::string> argv{"EVALSHA", script.sha1, std::to_string(call.keys.size())};
        argv.insert(argv.end(), call.keys.begin(), call.keys.end());
        argv.insert(argv.end(), call.args.begin(), call.args.end());
        Reply r = command(argv);
        if (r.is_error() && r.str.rfind("NOSCRIPT", 0) == 0) {
            command({"SCRIPT", "LOAD", script.source});
            r = command(argv);
        }
        return r;
    }

    void flush() { command({"FLUSHALL"}); }

    ~ScriptRedis() {
        if (context_ != nullptr) redisFree(context_);
        if (pid_ > 0) {
            ::kill(pid_, SIGTERM);
            ::waitpid(pid_, nullptr, 0);
        }
    }

private:
    ScriptRedis() {
        const int port = free_port();
        pid_ = ::fork();
        if (pid_ == 0) {
            const std::string p = std::to_string(port);
            if (const int null = ::open("/dev/null", O_WRONLY); null >= 0) ::dup2(null, STDOUT_FILENO);
            ::execlp("redis-server", "redis-server", "--port", p.c_str(), "--bind", "127.0.0.1", "--save", "",
                     "--appendonly", "no", "--loglevel", "warning", static_cast<char*>(nullptr));
            ::_exit(127);
        }
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (std::chrono::steady_clock::now() < deadline) {
            context_ = redisConnect("127.0.0.1", port);
            if (context_ != nullptr && context_->err == 0) return;
            if (context_ != nullptr) redisFree(context_);
            context_ = nullptr;
            std::this_thread::sleep_for(std::chrono::milliseconds(20));  // waiting for the server to listen
        }
        throw std::runtime_error("redis-server did not start on port " + std::to_string(port));
    }

    static int free_port() {
        const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
        socklen_t len = sizeof addr;
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
        ::close(fd);
        return ntohs(addr.sin_port);
    }

    pid_t pid_ = -1;
    redisContext* context_ = nullptr;
};

}  // namespace sluice::redis::test
