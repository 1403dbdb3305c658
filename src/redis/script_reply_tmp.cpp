// TEMPORARY: see include/sluice/redis/script_reply_tmp.hpp.
#include "sluice/redis/script_reply_tmp.hpp"

#include <openssl/sha.h>

namespace sluice::redis {

Script::Script(std::string lua) : source(std::move(lua)) {
    unsigned char digest[SHA_DIGEST_LENGTH];
    SHA1(reinterpret_cast<const unsigned char*>(source.data()), source.size(), digest);
    static constexpr char kHex[] = "0123456789abcdef";
    for (unsigned char byte : digest) {
        sha1 += kHex[byte >> 4];
        sha1 += kHex[byte & 15];
    }
}

}  // namespace sluice::redis
