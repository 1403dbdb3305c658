#pragma once
// TEMPORARY: minimal copies of the spec's Reply and Script (docs: /work/briefs/redis-spec.md) until
// helper A's include/sluice/redis/redis_connection.hpp lands; decision_script.hpp then includes that.

#include <cstdint>
#include <string>
#include <vector>

namespace sluice::redis {

struct Reply {
    enum class Type : std::uint8_t { string, array, integer, nil, status, error, double_, other };
    Type type = Type::nil;
    std::string str;
    long long integer = 0;
    std::vector<Reply> elements;
    bool is_error() const { return type == Type::error; }
};

struct Script {
    std::string source;
    std::string sha1;
    explicit Script(std::string lua);
};

}  // namespace sluice::redis
