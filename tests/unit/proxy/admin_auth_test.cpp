// The admin token check (admin/admin_server.hpp): what counts as presenting it.

#include <cstdlib>
#include <stdexcept>
#include <string>

#include <catch2/catch.hpp>

#include "sluice/admin/admin_server.hpp"

using sluice::admin::bearer_token_matches;

TEST_CASE("bearer_token_matches accepts exactly the token", "[admin][token]") {
    const std::string token = "0123456789abcdef-token";
    CHECK(bearer_token_matches("Bearer " + token, token));
    CHECK(bearer_token_matches("bearer " + token, token));  // the scheme is case-insensitive
    CHECK(bearer_token_matches("BEARER  " + token + " ", token));
    CHECK_FALSE(bearer_token_matches("Bearer " + token + "x", token));
    CHECK_FALSE(bearer_token_matches("Bearer " + token.substr(1), token));
    CHECK_FALSE(bearer_token_matches("Bearer " + token.substr(0, token.size() - 1), token));
    CHECK_FALSE(bearer_token_matches("Bearer", token));
    CHECK_FALSE(bearer_token_matches("Bearer ", token));
    CHECK_FALSE(bearer_token_matches("Bearer" + token, token));
    CHECK_FALSE(bearer_token_matches("Basic " + token, token));
    CHECK_FALSE(bearer_token_matches(token, token));
    CHECK_FALSE(bearer_token_matches("", token));
    // A presented value sharing the token's first bytes, then a NUL: not a match.
    CHECK_FALSE(
        bearer_token_matches("Bearer " + token.substr(0, 4) + std::string(1, '\0') + token.substr(5), token));
}

TEST_CASE("read_token_env: the token from a variable, checked like a token file's, never echoed",
          "[admin][token]") {
    using sluice::admin::read_token_env;
    constexpr const char* kName = "SLUICE_UNIT_ADMIN_TOKEN";
    ::unsetenv(kName);
    CHECK_THROWS_WITH(read_token_env(kName),
                      "admin token_env SLUICE_UNIT_ADMIN_TOKEN: the environment variable is not set");
    ::setenv(kName, "0123456789abcdef-token\n", 1);
    CHECK(read_token_env(kName) == "0123456789abcdef-token");  // a trailing newline is not part of it
    for (const char* bad : {"", "short-secret", "has a space in it, long enough", "tab\tinside-0123456789"}) {
        ::setenv(kName, bad, 1);
        INFO(bad);
        try {
            read_token_env(kName);
            FAIL("accepted");
        } catch (const std::runtime_error& e) {
            const std::string what = e.what();
            CHECK(what ==
                  "admin token_env SLUICE_UNIT_ADMIN_TOKEN: expected one line of 16 to 4096 visible ASCII "
                  "characters (no spaces)");
        }
    }
    ::setenv(kName, std::string(5000, 'x').c_str(), 1);
    CHECK_THROWS_WITH(read_token_env(kName), Catch::Contains("expected one line of 16 to 4096"));
    ::unsetenv(kName);
}
