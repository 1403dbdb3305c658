// log::RateLimitedSite: the policy behind SLUICE_LOG_LIMITED, driven by a fake clock.

#include <chrono>
#include <cstdint>

#include <catch2/catch.hpp>

#include "sluice/common/clock.hpp"
#include "sluice/common/log.hpp"

using sluice::FakeClock;
using sluice::log::RateLimitedSite;
using namespace std::chrono_literals;

TEST_CASE("a site admits one line per interval and counts the rest", "[log][rate_limited]") {
    FakeClock clock;
    RateLimitedSite site(1s);
    std::uint64_t suppressed = 99;
    REQUIRE(site.admit(clock.now().mono, suppressed));
    CHECK(suppressed == 0);
    // A vendor sending the same malformed header on every response: 1,000 lines in 999 ms.
    for (int i = 0; i < 1000; ++i) {
        clock.advance(999us);
        CHECK_FALSE(site.admit(clock.now().mono, suppressed));
    }
    clock.advance(1ms);  // exactly one interval after the first line
    REQUIRE(site.admit(clock.now().mono, suppressed));
    CHECK(suppressed == 1000);
    // The count starts over after it was reported.
    clock.advance(999ms);
    CHECK_FALSE(site.admit(clock.now().mono, suppressed));
    clock.advance(1ms);
    REQUIRE(site.admit(clock.now().mono, suppressed));
    CHECK(suppressed == 1);
}

TEST_CASE("a quiet site writes every line", "[log][rate_limited]") {
    FakeClock clock;
    RateLimitedSite site(1s);
    std::uint64_t suppressed = 0;
    for (int i = 0; i < 5; ++i) {
        REQUIRE(site.admit(clock.now().mono, suppressed));
        CHECK(suppressed == 0);
        clock.advance(1s);
    }
}

TEST_CASE("sites are independent", "[log][rate_limited]") {
    FakeClock clock;
    RateLimitedSite a(1s);
    RateLimitedSite b(1s);
    std::uint64_t suppressed = 0;
    CHECK(a.admit(clock.now().mono, suppressed));
    CHECK_FALSE(a.admit(clock.now().mono, suppressed));
    CHECK(b.admit(clock.now().mono, suppressed));  // a's flood does not silence b
}

TEST_CASE("SLUICE_LOG_LIMITED formats nothing for a suppressed or disabled line", "[log][rate_limited]") {
    sluice::log::set_level(sluice::log::Level::error);  // nothing below error is written by this test
    int formatted = 0;
    auto message = [&] {
        ++formatted;
        return std::string("x");
    };
    for (int i = 0; i < 100; ++i) SLUICE_LOG_LIMITED(sluice::log::Level::warn, "test", message());
    CHECK(formatted == 0);  // disabled level: not even formatted
    sluice::log::set_level(sluice::log::Level::info);
}
