#pragma once
// The decision script's tests run it on a real redis-server (support/redis_server.hpp), started
// once per test process, through one synchronous hiredis connection. Each test starts from an
// empty database (flush()).

#include <hiredis/hiredis.h>
#include <stdexcept>
#include <string>
#include <vector>

#include "sluice/redis/decision_script.hpp"

#include "support/redis_server.hpp"

namespace sluice::redis::script_test {

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

// The test process's one Redis (support/redis_server.hpp) and one synchronous connection to it:
// the differential tests run thousands of EVALSHAs, one connection each would cost more than them.
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
    }

private:
    ScriptRedis() {
        timeval timeout{5, 0};
        context_ = redisConnectWithTimeout(server_.host().c_str(), server_.port(), timeout);
        if (context_ == nullptr || context_->err != 0)
            throw std::runtime_error("cannot connect to the test redis-server at " + server_.address());
        redisSetTimeout(context_, timeout);
    }

    sluice::test::RedisServer server_;
    redisContext* context_ = nullptr;
};

}  // namespace sluice::redis::script_test
