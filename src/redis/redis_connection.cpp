#include "sluice/redis/redis_connection.hpp"

#include <openssl/sha.h>

namespace sluice::redis {
namespace {

class RedisCategory final : public boost::system::error_category {
public:
    const char* name() const noexcept override { return "sluice.redis"; }
    std::string message(int value) const override {
        switch (static_cast<error>(value)) {
            case error::not_connected: return "not connected to redis";
            case error::timed_out: return "redis command timed out";
            case error::protocol: return "redis protocol error";
            case error::server: return "redis error reply";
            case error::too_many_pending: return "too many redis commands outstanding";
        }
        return "unknown redis error";
    }
};

std::string sha1_hex(const std::string& text) {
    unsigned char digest[SHA_DIGEST_LENGTH];
    ::SHA1(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest);
    static constexpr char kHex[] = "0123456789abcdef";
    std::string hex;
    hex.reserve(2 * SHA_DIGEST_LENGTH);
    for (unsigned char byte : digest) {
        hex.push_back(kHex[byte >> 4]);
        hex.push_back(kHex[byte & 0xf]);
    }
    return hex;
}

}  // namespace

const boost::system::error_category& redis_category() noexcept {
    static const RedisCategory category;
    return category;
}

boost::system::error_code make_error_code(error e) noexcept {
    return {static_cast<int>(e), redis_category()};
}

Script::Script(std::string lua) : source(std::move(lua)), sha1(sha1_hex(source)) {}

}  // namespace sluice::redis
