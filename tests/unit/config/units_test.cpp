#include <catch2/catch.hpp>

#include "sluice/config/loader.hpp"

using sluice::config::Duration;
using sluice::config::parse_duration;
using sluice::config::parse_max_wait_header;
using sluice::config::parse_size;
using namespace std::chrono_literals;

TEST_CASE("parse_duration reads every unit", "[config][duration]") {
    CHECK(parse_duration("20ns") == Duration(20ns));
    CHECK(parse_duration("1500us") == Duration(1500us));
    CHECK(parse_duration("250ms") == Duration(250ms));
    CHECK(parse_duration("10s") == Duration(10s));
    CHECK(parse_duration("5m") == Duration(5min));
    CHECK(parse_duration("1h") == Duration(1h));
    CHECK(parse_duration("1d") == Duration(24h));
    CHECK(parse_duration("0s") == Duration(0));
}

TEST_CASE("parse_duration reads compounds", "[config][duration]") {
    CHECK(parse_duration("1m30s") == Duration(90s));
    CHECK(parse_duration("1h30m") == Duration(90min));
    CHECK(parse_duration("1s500ms") == Duration(1500ms));
    CHECK(parse_duration("1d12h") == Duration(36h));
}

TEST_CASE("parse_duration requires a unit and rejects malformed text", "[config][duration]") {
    CHECK_FALSE(parse_duration("10"));
    CHECK_FALSE(parse_duration("0"));
    CHECK_FALSE(parse_duration("10 s"));
    CHECK_FALSE(parse_duration(" 10s"));
    CHECK_FALSE(parse_duration("10sec"));
    CHECK_FALSE(parse_duration("1.5s"));
    CHECK_FALSE(parse_duration("s"));
    CHECK_FALSE(parse_duration(""));
    CHECK_FALSE(parse_duration("-"));
    CHECK_FALSE(parse_duration("1m30"));
    CHECK_FALSE(parse_duration("10S"));
}

TEST_CASE("parse_duration allows a sign only where asked", "[config][duration]") {
    CHECK_FALSE(parse_duration("-1s"));
    CHECK(parse_duration("-5h", true) == Duration(-5h));
    CHECK(parse_duration("-1h30m", true) == Duration(-90min));
    CHECK(parse_duration("+5h", true) == Duration(5h));
}

TEST_CASE("parse_duration refuses values that overflow", "[config][duration]") {
    CHECK(parse_duration("106751d") == Duration(106751 * 24h));  // about 292 years fit
    CHECK_FALSE(parse_duration("106752d"));
    CHECK_FALSE(parse_duration("99999999999999999999ns"));
    CHECK_FALSE(parse_duration("106751d106751d"));
}

TEST_CASE("parse_size reads bytes and powers of 1024", "[config][size]") {
    CHECK(parse_size("16384") == 16384u);
    CHECK(parse_size("0") == 0u);
    CHECK(parse_size("16k") == 16u * 1024);
    CHECK(parse_size("16K") == 16u * 1024);
    CHECK(parse_size("16KiB") == 16u * 1024);
    CHECK(parse_size("10m") == 10u * 1024 * 1024);
    CHECK(parse_size("10MiB") == 10u * 1024 * 1024);
    CHECK(parse_size("1g") == 1ull << 30);
    CHECK(parse_size("1GiB") == 1ull << 30);
}

TEST_CASE("parse_size rejects malformed text", "[config][size]") {
    CHECK_FALSE(parse_size(""));
    CHECK_FALSE(parse_size("k"));
    CHECK_FALSE(parse_size("16 k"));
    CHECK_FALSE(parse_size("16kb"));
    CHECK_FALSE(parse_size("1.5m"));
    CHECK_FALSE(parse_size("-1"));
    CHECK_FALSE(parse_size("16t"));
    CHECK_FALSE(parse_size("99999999999999999999"));
    CHECK_FALSE(parse_size("17179869184g"));  // 2^34 GiB overflows 64 bits
}

TEST_CASE("Sluice-Max-Wait: seconds or a duration, never negative", "[config][units]") {
    CHECK(parse_max_wait_header("0") == Duration(0));
    CHECK(parse_max_wait_header("2.5") == std::chrono::milliseconds(2500));
    CHECK(parse_max_wait_header("250ms") == std::chrono::milliseconds(250));
    CHECK(parse_max_wait_header("1e9") == std::chrono::seconds(1'000'000'000));
    CHECK(parse_max_wait_header("1e12") == std::chrono::seconds(1'000'000'000));  // clamped
    CHECK_FALSE(parse_max_wait_header("-1"));
    CHECK_FALSE(parse_max_wait_header("soon"));
    CHECK_FALSE(parse_max_wait_header("2.5 s"));
    CHECK_FALSE(parse_max_wait_header("nan"));
    CHECK_FALSE(parse_max_wait_header(""));
}
