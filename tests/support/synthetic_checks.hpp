#pragma once
// Assertions shared by the e2e tests for responses sluice makes itself:
// `Sluice-Error: <code>` and a JSON body {"error":"<code>","message":"..."}.

#include <string>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "support/http_client.hpp"

namespace sluice::test {

// The value of a header, or "<absent>", so Catch can print the comparison.
inline std::string header_or_absent(const HttpResponse& response, std::string_view name) {
    return response.header(name).value_or("<absent>");
}

inline void check_synthetic(const HttpResponse& response, unsigned status, const std::string& code) {
    INFO("response " << response.status << " body: " << response.body);
    CHECK(response.status == status);
    CHECK(header_or_absent(response, "Sluice-Error") == code);
    const auto body = nlohmann::json::parse(response.body, nullptr, false);
    REQUIRE_FALSE(body.is_discarded());
    REQUIRE(body.is_object());
    CHECK(body.value("error", "") == code);
    CHECK_FALSE(body.value("message", "").empty());
}

}  // namespace sluice::test
