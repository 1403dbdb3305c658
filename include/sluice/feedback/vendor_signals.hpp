#pragma once
// Listening to the vendor: what an upstream response says about its rate limits.
// Pure code, values in and values out: the I/O layer passes the status, a header
// lookup, the (bounded) body of a 429 and the current Instant, and gets back one
// VendorSignal to act on and to log. Nothing here throws or calls now().
//
// Sources read (docs/feedback.md has the per-vendor view):
//   Retry-After                      delay-seconds (a decimal is tolerated) or an HTTP-date
//   X-RateLimit-Limit/-Remaining/-Reset, also spelled x-rate-limit-* (Close)
//   RateLimit + RateLimit-Policy     draft-ietf-httpapi-ratelimit-headers, structured fields:
//                                    `RateLimit: "default";r=50;t=30`, `RateLimit-Policy:
//                                    "default";q=100;w=60`
//   RateLimit: limit=100, remaining=50, reset=5   and   RateLimit-Limit/-Remaining/-Reset (older drafts)
//   a JSON field of a 429 body at a configured dotted path (Close: error.rate_reset)
//
// Safety: a value that is malformed, negative, NaN or infinite is ignored; a delay
// longer than FeedbackConfig::max_pause is clamped to it. Either way a warning
// says which field, what it held and why, so a misbehaving vendor is visible in
// the logs and can never stall traffic for longer than max_pause.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/common/clock.hpp"

namespace sluice::feedback {

// How a reset value (X-RateLimit-Reset, the JSON body field) is read.
enum class ResetMode {
    automatic,      // YAML `auto`: above kUnixTimestampThreshold a Unix timestamp, else seconds from now
    delta_seconds,  // seconds from now, decimal allowed (Close)
    unix_seconds,   // a Unix timestamp in seconds (Intercom)
};

// 10^9 s is 2001-09-09 as a timestamp and 31.7 years as a delay: no vendor means
// either of those, so the two readings cannot be confused in practice.
inline constexpr double kUnixTimestampThreshold = 1e9;

// Per-upstream settings (wired from YAML by the config loader).
struct FeedbackConfig {
    ResetMode reset_mode = ResetMode::automatic;  // X-RateLimit-Reset (and x-rate-limit-reset)
    std::string body_field;                       // dotted path into a 429's JSON body; "" = bodies not read
    // Dotted path into a 429's JSON body to a string naming which of the vendor's
    // limits refused (Close: error.rate_limit_type, "key" or "org"); "" = not read.
    std::string limit_type_field;
    ResetMode body_field_mode = ResetMode::automatic;  // how the body field's number is read
    Nanos max_pause = std::chrono::minutes{5};         // no signal ever asks for a longer pause than this
};

// Where a reset or pause came from, in precedence order on a rate-limited response.
enum class SignalSource {
    none,
    body_field,   // the JSON body field (most precise: Close's rate_reset has sub-second precision)
    retry_after,  // Retry-After
    x_ratelimit,  // X-RateLimit-Reset / x-rate-limit-reset
    ietf,         // RateLimit `t`, RateLimit `reset=` or RateLimit-Reset
};

std::string_view signal_source_name(SignalSource source) noexcept;  // "body_field", "retry_after", ...

// Returns a response header's value by case-insensitive name (the first field
// line when repeated), or nullopt when absent.
using HeaderLookup = std::function<std::optional<std::string_view>(std::string_view name)>;

// Everything a response said, after parsing, sanity checks and the clamp.
// All durations are relative to the `now` passed in, non-negative and <= max_pause.
struct VendorSignal {
    // 429, or 503 with a usable Retry-After (a 503 without one is an outage, not a limit).
    bool rate_limited = false;

    // How long the vendor asks us to hold requests, from now; nullopt = no pause asked.
    // On a rate-limited response: the first present of body field > Retry-After >
    // X-RateLimit-Reset > IETF reset. Otherwise, when `remaining` is 0: reset_after
    // (the quota is spent until the reset, so the next request would be refused).
    // A rate-limited response without any of them leaves it nullopt: the caller
    // chooses its own backoff.
    std::optional<Nanos> pause;
    SignalSource pause_source = SignalSource::none;

    // Each source as read, for logs and metrics.
    std::optional<Nanos> retry_after;
    std::optional<Nanos> body_reset_after;  // only parsed on a 429 when body_field is set
    std::optional<Nanos> reset_after;       // X-RateLimit-Reset, else the IETF reset
    SignalSource reset_source = SignalSource::none;
    std::optional<std::int64_t> limit;      // X-RateLimit-Limit, else the IETF quota
    std::optional<std::int64_t> remaining;  // X-RateLimit-Remaining, else the IETF remaining
    std::string limit_type;  // the 429 body's limit_type_field ("key", "org"), at most 64 bytes; "" = none

    bool clamped = false;               // some delay exceeded max_pause and was cut to it
    std::vector<std::string> warnings;  // one line per value clamped or ignored, and why
};

// Reads every source above. `body` is the response body, or nullopt when the
// caller did not read it (see wants_body); a body that is not JSON, or lacks the
// field, leaves body_reset_after empty with a warning.
VendorSignal read_vendor_signals(unsigned status, const HeaderLookup& header,
                                 std::optional<std::string_view> body, const FeedbackConfig& config,
                                 Instant now);

// Whether read_vendor_signals would look at this response's body, so the I/O
// layer buffers (a bounded prefix of) it only then.
bool wants_body(unsigned status, const FeedbackConfig& config) noexcept;

// How much of a vendor's body is read for its JSON field: a longer body is decided on its
// headers alone (the client session; `sluice simulate` replays it the same way).
inline constexpr std::size_t kMaxVendorBodyBytes = std::size_t{64} * 1024;

// Retry-After (RFC 9110 10.2.3) as seconds from now: delay-seconds (a decimal is
// tolerated) or an HTTP-date (a date in the past gives 0). Not clamped; nullopt
// when malformed or negative.
std::optional<double> parse_retry_after(std::string_view value, Instant now);

// Checks a body_field path for the config loader: dot-separated non-empty names
// ("error.rate_reset"; a name of digits also indexes an array). Returns "" if valid.
std::string validate_body_field(std::string_view path);

}  // namespace sluice::feedback
