#pragma once
// HTTP-date (RFC 9110 5.6.7), as found in Retry-After. Pure code.

#include <cstdint>
#include <optional>
#include <string_view>

#include "sluice/common/clock.hpp"

namespace sluice::feedback {

// Parses the three forms a recipient must accept and returns Unix seconds (UTC):
//   IMF-fixdate  "Sun, 06 Nov 1994 08:49:37 GMT"   (the one senders must use)
//   RFC 850      "Sunday, 06-Nov-94 08:49:37 GMT"  (obsolete)
//   asctime      "Sun Nov  6 08:49:37 1994"        (obsolete)
// `now_wall` (Unix time) resolves RFC 850's two-digit year: a year that would be
// more than 50 years in the future is the most recent past year with those digits.
// Day and month names and "GMT" are matched case-insensitively and the weekday
// is not checked against the date (both lenient: the date is what matters);
// ranges are checked (Feb 30 is rejected, second 60 is a leap second).
// Returns nullopt for anything else.
std::optional<std::int64_t> parse_http_date(std::string_view text, Nanos now_wall);

}  // namespace sluice::feedback
