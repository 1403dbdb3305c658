#include "sluice/feedback/http_date.hpp"

#include <catch2/catch.hpp>

namespace {

using sluice::Nanos;
using sluice::feedback::parse_http_date;

// 2023-11-14T22:13:20Z
constexpr Nanos kNow{1'700'000'000'000'000'000};
constexpr std::int64_t kRfcExample = 784'111'777;  // Sun, 06 Nov 1994 08:49:37 GMT (RFC 9110 5.6.7)

}  // namespace

TEST_CASE("the three HTTP-date forms of RFC 9110 5.6.7 give the same instant", "[feedback][date]") {
    CHECK(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT", kNow) == kRfcExample);
    CHECK(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT", kNow) == kRfcExample);
    CHECK(parse_http_date("Sun Nov  6 08:49:37 1994", kNow) == kRfcExample);
}

TEST_CASE("IMF-fixdate", "[feedback][date]") {
    CHECK(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT", kNow) == 0);
    CHECK(parse_http_date("Tue, 14 Nov 2023 22:13:20 GMT", kNow) == 1'700'000'000);
    CHECK(parse_http_date("Thu, 29 Feb 2024 12:00:00 GMT", kNow) == 1'709'208'000);
    CHECK(parse_http_date("Fri, 31 Dec 2100 23:59:59 GMT", kNow) == 4'133'980'799);
    CHECK(parse_http_date("  Tue, 14 Nov 2023 22:13:20 GMT  ", kNow) == 1'700'000'000);  // OWS around
    CHECK(parse_http_date("tue, 14 NOV 2023 22:13:20 gmt", kNow) == 1'700'000'000);      // case is lenient
    CHECK(parse_http_date("Mon, 14 Nov 2023 22:13:20 GMT", kNow) == 1'700'000'000);  // weekday not checked
    CHECK(parse_http_date("Sat, 31 Dec 2016 23:59:60 GMT", kNow) == 1'483'228'800);  // leap second
}

TEST_CASE("RFC 850 two-digit years resolve to at most 50 years ahead", "[feedback][date]") {
    // now = 2023: 73 -> 2073 (50 years ahead, allowed), 74 -> 1974.
    CHECK(parse_http_date("Sunday, 01-Jan-73 00:00:00 GMT", kNow) == 3'250'454'400);
    CHECK(parse_http_date("Tuesday, 01-Jan-74 00:00:00 GMT", kNow) == 126'230'400);
    CHECK(parse_http_date("Wednesday, 15-Nov-23 00:00:00 GMT", kNow) == 1'700'006'400);
    CHECK(parse_http_date("Saturday, 01-Jan-00 00:00:00 GMT", kNow) == 946'684'800);
    CHECK_FALSE(parse_http_date("Sun, 06-Nov-94 08:49:37 GMT", kNow));  // needs the long day name
    CHECK_FALSE(parse_http_date("Sunday, 06-Nov-1994 08:49:37 GMT", kNow));
}

TEST_CASE("asctime", "[feedback][date]") {
    CHECK(parse_http_date("Sun Nov 16 08:49:37 1994", kNow) == kRfcExample + 10 * 86400);
    CHECK(parse_http_date("Tue Nov 14 22:13:20 2023", kNow) == 1'700'000'000);
    CHECK_FALSE(
        parse_http_date("Sun Nov 6 08:49:37 1994", kNow));  // one space: the day is SP DIGIT or 2DIGIT
    CHECK_FALSE(parse_http_date("Sun Nov  6 08:49:37 1994 GMT", kNow));
}

TEST_CASE("malformed HTTP-dates are rejected", "[feedback][date]") {
    for (const char* bad : {
             "",
             "120",
             "Sun, 06 Nov 1994 08:49:37",        // no GMT
             "Sun, 06 Nov 1994 08:49:37 UTC",    // only GMT is allowed
             "Sun, 06 Nov 1994 08:49:37 +0000",  // RFC 5322 offset form
             "Sun, 6 Nov 1994 08:49:37 GMT",     // 2DIGIT day
             "Sun, 06 Nov 94 08:49:37 GMT",      // 4DIGIT year
             "Sun, 31 Feb 1994 08:49:37 GMT",    // no such day
             "Sun, 00 Nov 1994 08:49:37 GMT",
             "Sun, 06 Nov 1994 24:00:00 GMT",
             "Sun, 06 Nov 1994 08:60:00 GMT",
             "Sun, 06 Nov 1994 08:49:61 GMT",
             "Sun, 06 Foo 1994 08:49:37 GMT",
             "Xyz, 06 Nov 1994 08:49:37 GMT",
             "Sun, 06 Nov 1994 08:49:37 GMT extra",
             "Sun,06 Nov 1994 08:49:37 GMT",
             "2023-11-14T22:13:20Z",
         }) {
        INFO(bad);
        CHECK_FALSE(parse_http_date(bad, kNow));
    }
}
