#pragma once
// A mock vendor for the vendor-feedback tests: a MockUpstream handler that
// enforces a rate limit of its own, the way Convertr or Close do, and tells its
// clients about it in the header style of a chosen vendor.
//
// Contract:
// - A window per key (the value of `key_header`; one shared window when it is
//   empty). Rolling (Convertr): at most `limit` requests are accepted in any
//   interval of length `window`. Fixed (Intercom's 10 s periods): at most `limit`
//   per period, periods aligned to the vendor's construction. An accepted request
//   gets an echo (200); any other gets 429, which does not count.
// - "Reset" is when the vendor will accept again: rolling, when the oldest
//   accepted request leaves the window; fixed, when the period ends (and the
//   whole quota comes back). Every fixed-precision form of it is
//   rounded UP (delay-seconds, Unix timestamps, HTTP-dates, milliseconds), so a
//   client that obeys what it was told is never refused for coming back too early.
// - Consumers: a request with an `X-Consumer` header is counted under its value
//   (e.g. a second consumer of the quota hitting the vendor directly); one
//   without it is counted as "sluice".
// - Every answer is recorded (consumer, key, status, when, and for a 429 the
//   instant the vendor said to come back, per the precedence sluice documents:
//   body field, Retry-After, X-RateLimit-Reset / x-rate-limit-reset, IETF `t`).
// - Thread-safe: the handler runs on the MockUpstream's thread, the accessors on
//   the test's; the handler's state outlives the MockVendor if the upstream does.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "support/mock_upstream.hpp"

namespace sluice::test {

// Which fields the vendor sends. Rate headers and IETF fields go on every
// response; Retry-After and the body field only on 429s.
struct VendorStyle {
    enum class RateHeaders {
        none,
        close,     // x-rate-limit-limit / -remaining / -reset (decimal seconds until the reset)
        intercom,  // X-RateLimit-Limit / -Remaining / -Reset (a Unix timestamp, rounded up)
    };
    RateHeaders rate_headers = RateHeaders::none;
    bool ietf = false;              // RateLimit: "default";r=R;t=T and RateLimit-Policy: "default";q=L;w=W
    bool retry_after = false;       // on 429: Retry-After delay-seconds
    bool retry_after_date = false;  // on 429: Retry-After as an IMF-fixdate (instead of delay-seconds)
    // on 429: Retry-After as decimal seconds, millisecond precision ("0.347"): with windows
    // scaled down 10x, whole seconds would round 10x more than the vendor's own do.
    bool retry_after_decimal = false;
    bool body_rate_reset = false;  // on 429: {"error":{"message":...,"rate_reset":S,"rate_limit_type":"key"}}

    // Close as documented: x-rate-limit-* everywhere, Retry-After and the JSON body on 429s.
    static VendorStyle close_crm() {
        VendorStyle s;
        s.rate_headers = RateHeaders::close;
        s.retry_after = true;
        s.body_rate_reset = true;
        return s;
    }
};

inline constexpr const char* kConsumerHeader = "X-Consumer";
inline constexpr const char* kSluiceConsumer = "sluice";

class MockVendor {
public:
    using Clock = std::chrono::steady_clock;

    enum class Window { rolling, fixed };

    struct Options {
        std::int64_t limit = 20;
        std::chrono::milliseconds window{1000};
        Window kind = Window::rolling;
        std::string key_header;  // empty: one window shared by every request
        VendorStyle style;
        // Close's organization level: when > 0, a second window of this many, shared by
        // every key, applies on top of the per-key one. A request must fit both; the
        // rate headers describe whichever has fewer remaining, and a 429's body names
        // the one that refused ("key" or "org").
        std::int64_t org_limit = 0;
    };

    struct Answer {
        std::string consumer;  // X-Consumer, or "sluice"
        std::string key;       // the key_header value ("" when unkeyed)
        std::string method;
        std::string target;
        unsigned status = 0;
        Clock::time_point at;        // when the vendor answered
        Clock::time_point retry_at;  // when it said to come back (`at` if it said nothing)
        std::int64_t remaining = 0;  // what it reported as remaining
    };

    explicit MockVendor(Options options);
    ~MockVendor();
    MockVendor(const MockVendor&) = delete;
    MockVendor& operator=(const MockVendor&) = delete;

    // The handler to give a MockUpstream; it shares this vendor's state.
    MockUpstream::Handler handler() const;

    // Fixed windows: when the next period starts (to line a scenario up with it).
    Clock::time_point next_period_start() const;

    std::vector<Answer> answers() const;  // a snapshot, in answer order
    std::size_t count(std::string_view consumer, unsigned status) const;
    std::size_t count(std::string_view consumer) const;  // every status
    // Waits (bounded) until `consumer` has received `count` answers of `status`.
    bool wait_for(std::string_view consumer, unsigned status, std::size_t count,
                  std::chrono::milliseconds timeout) const;

    struct State;

private:
    std::shared_ptr<State> state_;
};

}  // namespace sluice::test
