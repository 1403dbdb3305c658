// `sluice health`'s pure parts (cli/health_check.hpp): the --admin address and the status line
// that decides healthy or not. The GET itself is run against the real binary by tests/deploy.

#include "sluice/cli/health_check.hpp"

#include <catch2/catch.hpp>

#include "sluice/cli/build_info.hpp"

using sluice::cli::HealthTarget;
using sluice::cli::parse_admin_address;
using sluice::cli::parse_status_line;

TEST_CASE("health --admin takes HOST:PORT, [V6]:PORT and :PORT", "[health]") {
    HealthTarget target;
    CHECK(parse_admin_address("127.0.0.1:9901", target).empty());
    CHECK(target.host == "127.0.0.1");
    CHECK(target.port == "9901");
    CHECK(parse_admin_address("[::1]:65535", target).empty());
    CHECK(target.host == "::1");
    CHECK(target.port == "65535");
    CHECK(parse_admin_address(":1", target).empty());
    CHECK(target.host == "127.0.0.1");
    CHECK(target.port == "1");
    CHECK(parse_admin_address("localhost:9901", target).empty());
    CHECK(target.host == "localhost");
}

TEST_CASE("a bad health --admin is an error naming it, and leaves the target unchanged", "[health]") {
    HealthTarget target;
    REQUIRE(parse_admin_address("10.0.0.1:9901", target).empty());
    CHECK(parse_admin_address("9901", target) == "expected HOST:PORT, got '9901'");
    CHECK(parse_admin_address("host:", target) == "expected a port 1-65535 after ':', got 'host:'");
    CHECK(parse_admin_address("host:0", target) == "expected a port 1-65535 after ':', got 'host:0'");
    CHECK(parse_admin_address("host:65536", target) == "expected a port 1-65535 after ':', got 'host:65536'");
    CHECK(parse_admin_address("host:123456", target) ==
          "expected a port 1-65535 after ':', got 'host:123456'");
    CHECK(parse_admin_address("host:-1", target) == "expected a port 1-65535 after ':', got 'host:-1'");
    CHECK(parse_admin_address("::1:9901", target) ==
          "an IPv6 address goes in brackets ([::1]:9901), got '::1:9901'");
    CHECK(target.host == "10.0.0.1");
    CHECK(target.port == "9901");
}

TEST_CASE("the status line gives the status, and anything else gives none", "[health]") {
    CHECK(parse_status_line("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n") == 200);
    CHECK(parse_status_line("HTTP/1.0 503 Service Unavailable\r\n") == 503);
    CHECK(parse_status_line("HTTP/1.1 204\r\n") == 204);  // the reason phrase is optional
    CHECK(parse_status_line("HTTP/1.1 200 OK\n") == 200);
    CHECK_FALSE(parse_status_line(""));
    CHECK_FALSE(parse_status_line("HTTP/1.1 200 OK"));  // incomplete: no end of line yet
    CHECK_FALSE(parse_status_line("HTTP/2 200\r\n"));
    CHECK_FALSE(parse_status_line("HTTP/1.1 20 OK\r\n"));
    CHECK_FALSE(parse_status_line("HTTP/1.1 2000 OK\r\n"));
    CHECK_FALSE(parse_status_line("HTTP/1.1  200 OK\r\n"));
    CHECK_FALSE(parse_status_line("SSH-2.0-OpenSSH\r\n"));
}

TEST_CASE("the --version line names the version and the commit", "[version]") {
    const auto line = sluice::cli::version_line();
    CHECK(line == "sluice " + std::string(sluice::cli::version()) + " (commit " +
                      std::string(sluice::cli::git_commit()) + ")");
    CHECK(sluice::cli::version() != "unknown");  // CMake defines it on build_info.cpp
    CHECK_FALSE(sluice::cli::git_commit().empty());
}
