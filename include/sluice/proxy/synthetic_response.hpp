#pragma once
// Responses sluice writes itself. Every one carries `Sluice-Error: <code>` so a
// client can tell it from the vendor's, and a JSON body with a stable shape:
//   {"error":"<code>","message":"<human text>", ...details}
// The 429s add Retry-After (whole seconds, rounded up: RFC 9110 10.2.3), the
// precise delay as a decimal, which limit refused, the queue state, and the
// rate-limit headers of the configured style, all derived from the decision.

#include <string>
#include <string_view>

#include <boost/beast/http/fields.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include "sluice/common/clock.hpp"
#include "sluice/common/error.hpp"
#include "sluice/config/config.hpp"
#include "sluice/proxy/header_arena.hpp"
#include "sluice/queue/admission_controller.hpp"

namespace sluice::proxy {

using SyntheticResponse = boost::beast::http::response<boost::beast::http::string_body>;

inline constexpr const char* kSluiceErrorHeader = "Sluice-Error";

SyntheticResponse make_error_response(Errc code, const std::string& message, unsigned version,
                                      bool keep_alive);

// The 429 for a refused admission (queue_full, admission_timeout, key_capacity).
// `limit` is the limit that refused (nullptr when none did, e.g. a full queue).
SyntheticResponse make_rejection_response(const queue::Admission& admission, const config::LimitConfig* limit,
                                          config::RateLimitHeaderStyle style, const Instant& now,
                                          unsigned version, bool keep_alive);

// Adds the rate-limit headers describing `decision` of `limit` (style from the config).
// A vendor gate has no quota of its own to describe: nothing is added for it.
template <class Allocator>
void add_rate_limit_headers(boost::beast::http::basic_fields<Allocator>& fields,
                            config::RateLimitHeaderStyle style, const config::LimitConfig& limit,
                            const limit::Decision& decision, const Instant& now);
extern template void add_rate_limit_headers(boost::beast::http::fields&, config::RateLimitHeaderStyle,
                                            const config::LimitConfig&, const limit::Decision&,
                                            const Instant&);
extern template void add_rate_limit_headers(ArenaFields&, config::RateLimitHeaderStyle,
                                            const config::LimitConfig&, const limit::Decision&,
                                            const Instant&);

// Text a peer sent, made safe to echo in a message or a log line: at most
// `max_bytes` of it, every byte outside printable ASCII (and the quote and
// backslash) as \xNN, then "...(N bytes)" when cut; in double quotes unless
// `quoted` is false. Echoing raw bytes once put invalid UTF-8 into a JSON body
// (and the serializer threw) and let one header fill a log with 64 KiB.
std::string printable_excerpt(std::string_view text, std::size_t max_bytes = 128, bool quoted = true);

// Whole seconds for Retry-After / reset headers: rounded up, never negative.
long long ceil_seconds(Nanos delay);

}  // namespace sluice::proxy
