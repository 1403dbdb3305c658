// Failpoints (common/failpoint.hpp): parsing SLUICE_FAILPOINTS and what hit() does.

#include "sluice/common/failpoint.hpp"

#include <chrono>
#include <cstdio>
#include <stdexcept>

#include <catch2/catch.hpp>

namespace failpoint = sluice::failpoint;
using failpoint::Point;

TEST_CASE("an unarmed failpoint does nothing", "[failpoint]") {
    REQUIRE(failpoint::configure("") == "");
    CHECK_NOTHROW(failpoint::hit(Point::session_handle_request));
    CHECK_NOTHROW(failpoint::hit(Point::admin_handle_request));
}

TEST_CASE("an armed failpoint throws naming itself; the others stay quiet", "[failpoint]") {
    REQUIRE(failpoint::configure("session.handle_request:throw") == "");
    CHECK_THROWS_WITH(failpoint::hit(Point::session_handle_request), "failpoint session.handle_request");
    CHECK_NOTHROW(failpoint::hit(Point::admin_handle_request));
    REQUIRE(failpoint::configure(" admin.handle_request:throw , listener.accept:throw") == "");
    CHECK_NOTHROW(failpoint::hit(Point::session_handle_request));  // re-configuring disarms
    CHECK_THROWS_AS(failpoint::hit(Point::admin_handle_request), std::runtime_error);
    CHECK_THROWS_AS(failpoint::hit(Point::listener_accept), std::runtime_error);
    REQUIRE(failpoint::configure("") == "");
    CHECK_NOTHROW(failpoint::hit(Point::listener_accept));
}

TEST_CASE("a bad SLUICE_FAILPOINTS is an error, and arms nothing", "[failpoint]") {
    REQUIRE(failpoint::configure("") == "");
    CHECK(failpoint::configure("session.handle_requets:throw") ==
          "unknown failpoint 'session.handle_requets:throw'; expected one of session.handle_request, "
          "admin.handle_request, listener.accept");
    CHECK(failpoint::configure("session.handle_request") ==
          "failpoint 'session.handle_request': expected NAME:throw or NAME:throw:N");
    CHECK(failpoint::configure("session.handle_request:abort") ==
          "failpoint 'session.handle_request:abort': expected NAME:throw or NAME:throw:N");
    CHECK(failpoint::configure("session.handle_request:throw:0") ==
          "failpoint 'session.handle_request:throw:0': expected NAME:throw or NAME:throw:N");
    CHECK(failpoint::configure("session.handle_request:throw:x") ==
          "failpoint 'session.handle_request:throw:x': expected NAME:throw or NAME:throw:N");
    CHECK_NOTHROW(failpoint::hit(Point::session_handle_request));
}

TEST_CASE("throw:N fires at the first N hits only", "[failpoint]") {
    REQUIRE(failpoint::configure("admin.handle_request:throw:2") == "");
    CHECK_THROWS(failpoint::hit(Point::admin_handle_request));
    CHECK_THROWS(failpoint::hit(Point::admin_handle_request));
    CHECK_NOTHROW(failpoint::hit(Point::admin_handle_request));
    CHECK_NOTHROW(failpoint::hit(Point::admin_handle_request));
    REQUIRE(failpoint::configure("") == "");
}

// The cost of an unarmed point on the request path (docs/security.md). Hidden: run with
//   build/tests/sluice_common_tests "[.failpoint-bench]"
TEST_CASE("an unarmed failpoint costs one relaxed load", "[.failpoint-bench]") {
    REQUIRE(failpoint::configure("") == "");
    constexpr int kHits = 100'000'000;
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < kHits; ++i) {
        failpoint::hit(Point::session_handle_request);
        asm volatile("" ::: "memory");  // keeps the loop, and the load, in each iteration
    }
    const auto ns =
        std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start).count();
    std::printf("unarmed failpoint::hit(): %.2f ns per call (%d calls)\n", ns / kHits, kHits);
}
