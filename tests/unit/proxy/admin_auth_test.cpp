// The admin token check (admin/admin_server.hpp): what counts as presenting it.

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
