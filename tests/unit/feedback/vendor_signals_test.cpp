#include "sluice/feedback/vendor_signals.hpp"

#include <map>
#include <string>

#include <catch2/catch.hpp>

namespace {

using namespace std::chrono_literals;
using sluice::Instant;
using sluice::Nanos;
using sluice::feedback::FeedbackConfig;
using sluice::feedback::HeaderLookup;
using sluice::feedback::read_vendor_signals;
using sluice::feedback::ResetMode;
using sluice::feedback::SignalSource;
using sluice::feedback::VendorSignal;

// wall = 2023-11-14T22:13:20Z
const Instant kNow{Nanos{5s}, Nanos{1'700'000'000s}};

std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

// Response headers as the I/O layer would expose them: case-insensitive names.
class Headers {
public:
    Headers(std::initializer_list<std::pair<std::string, std::string>> fields) {
        for (const auto& [name, value] : fields) fields_[lower(name)] = value;
    }
    HeaderLookup lookup() const {
        return [this](std::string_view name) -> std::optional<std::string_view> {
            const auto it = fields_.find(lower(name));
            if (it == fields_.end()) return std::nullopt;
            return std::string_view(it->second);
        };
    }

private:
    std::map<std::string, std::string> fields_;
};

VendorSignal read(unsigned status, const Headers& headers, const FeedbackConfig& config = {},
                  std::optional<std::string_view> body = std::nullopt) {
    return read_vendor_signals(status, headers.lookup(), body, config, kNow);
}

bool has_warning(const VendorSignal& s, std::string_view text) {
    for (const auto& w : s.warnings) {
        if (w.find(text) != std::string::npos) return true;
    }
    return false;
}

std::string all_warnings(const VendorSignal& s) {
    std::string out;
    for (const auto& w : s.warnings) out += w + "\n";
    return out;
}

}  // namespace

// ---------------------------------------------------------------- status codes

TEST_CASE("a plain success says nothing", "[feedback]") {
    const auto s = read(200, {});
    CHECK_FALSE(s.rate_limited);
    CHECK_FALSE(s.pause);
    CHECK(s.pause_source == SignalSource::none);
    CHECK_FALSE(s.retry_after);
    CHECK_FALSE(s.limit);
    CHECK_FALSE(s.remaining);
    CHECK_FALSE(s.reset_after);
    CHECK_FALSE(s.clamped);
    CHECK(s.warnings.empty());
}

TEST_CASE("a null header lookup is tolerated", "[feedback]") {
    const auto s = read_vendor_signals(429, HeaderLookup{}, std::nullopt, {}, kNow);
    CHECK(s.rate_limited);
    CHECK_FALSE(s.pause);
}

TEST_CASE("429 is rate-limited, with or without a hint", "[feedback]") {
    const auto bare = read(429, {});
    CHECK(bare.rate_limited);
    CHECK_FALSE(bare.pause);  // the caller picks its own backoff
    CHECK(bare.warnings.empty());

    const auto hinted = read(429, {{"Retry-After", "7"}});
    CHECK(hinted.rate_limited);
    CHECK(hinted.pause == 7s);
    CHECK(hinted.pause_source == SignalSource::retry_after);
}

TEST_CASE("503 is rate-limited only with a usable Retry-After", "[feedback]") {
    CHECK_FALSE(read(503, {}).rate_limited);
    CHECK_FALSE(read(503, {{"X-RateLimit-Remaining", "0"}, {"X-RateLimit-Reset", "5"}}).rate_limited);
    const auto garbage = read(503, {{"Retry-After", "soon"}});
    CHECK_FALSE(garbage.rate_limited);
    CHECK_FALSE(garbage.pause);
    const auto s = read(503, {{"Retry-After", "120"}});
    CHECK(s.rate_limited);
    CHECK(s.pause == 120s);
    CHECK(s.pause_source == SignalSource::retry_after);
}

TEST_CASE("Retry-After on other statuses is recorded but pauses nothing", "[feedback]") {
    const auto s = read(301, {{"Retry-After", "30"}});
    CHECK_FALSE(s.rate_limited);
    CHECK(s.retry_after == 30s);
    CHECK_FALSE(s.pause);
}

// ---------------------------------------------------------------- Retry-After

TEST_CASE("Retry-After as delay-seconds", "[feedback][retry-after]") {
    CHECK(read(429, {{"Retry-After", "0"}}).pause == 0s);
    CHECK(read(429, {{"Retry-After", "1"}}).pause == 1s);
    CHECK(read(429, {{"Retry-After", " 30 "}}).pause == 30s);
    CHECK(read(429, {{"Retry-After", "0030"}}).pause == 30s);
    CHECK(read(429, {{"Retry-After", "300"}}).pause == 300s);  // exactly max_pause: not clamped
    CHECK_FALSE(read(429, {{"Retry-After", "300"}}).clamped);
}

TEST_CASE("Retry-After tolerates a decimal", "[feedback][retry-after]") {
    CHECK(read(429, {{"Retry-After", "1.5"}}).pause == 1500ms);
    CHECK(read(429, {{"Retry-After", "0.87"}}).pause == 870ms);
    CHECK(read(429, {{"Retry-After", "2.000000001"}}).pause == 2'000'000'001ns);
}

TEST_CASE("Retry-After as an HTTP-date in all three forms", "[feedback][retry-after]") {
    // now = Tue, 14 Nov 2023 22:13:20 GMT
    CHECK(read(429, {{"Retry-After", "Tue, 14 Nov 2023 22:14:20 GMT"}}).pause == 60s);
    CHECK(read(429, {{"Retry-After", "Tuesday, 14-Nov-23 22:13:50 GMT"}}).pause == 30s);
    CHECK(read(429, {{"Retry-After", "Tue Nov 14 22:13:25 2023"}}).pause == 5s);
}

TEST_CASE("Retry-After dates are relative to the wall clock, fraction included", "[feedback][retry-after]") {
    const Instant now{Nanos{5s}, Nanos{1'700'000'000s} + 250ms};
    const auto s = read_vendor_signals(
        429, Headers{{"Retry-After", "Tue, 14 Nov 2023 22:13:21 GMT"}}.lookup(), std::nullopt, {}, now);
    CHECK(s.pause == 750ms);
}

TEST_CASE("Retry-After dates in the past mean now", "[feedback][retry-after]") {
    const auto s = read(429, {{"Retry-After", "Sun, 06 Nov 1994 08:49:37 GMT"}});
    CHECK(s.pause == 0s);
    CHECK(s.warnings.empty());
    CHECK(read(429, {{"Retry-After", "Tue, 14 Nov 2023 22:13:20 GMT"}}).pause == 0s);
}

// Regression: seconds_until multiplied the date's Unix seconds by 1e9 in int64, which overflows
// before 1678: UB (UBSan aborts), and in a plain build a wrapped value, e.g. year 1500 came out
// as ~60 years ahead and paused for max_pause.
TEST_CASE("Retry-After dates centuries in the past mean now, without overflow",
          "[feedback][retry-after][overflow]") {
    for (const char* past :
         {"Sat, 01 Jan 1500 00:00:00 GMT", "Mon, 14 Nov 1294 22:13:20 GMT", "Sat, 01 Jan 0000 00:00:00 GMT",
          "Fri, 31 Dec 1677 23:59:59 GMT", "Sun Jan  1 00:00:00 1600"}) {
        INFO(past);
        const auto s = read(429, {{"Retry-After", past}});
        CHECK(s.pause == 0s);
        CHECK_FALSE(s.clamped);
        CHECK(s.warnings.empty());
        CHECK(sluice::feedback::parse_retry_after(past, kNow) == 0.0);
    }
    // The same dates against a wall clock at the far ends of Nanos (1677 and 2262).
    const Instant early{Nanos{5s}, Nanos::min() + 1s};
    const Instant late{Nanos{5s}, Nanos::max() - 1s};
    CHECK(sluice::feedback::parse_retry_after("Sat, 01 Jan 0000 00:00:00 GMT", early) == 0.0);
    CHECK(sluice::feedback::parse_retry_after("Sat, 01 Jan 0000 00:00:00 GMT", late) == 0.0);
    const auto far_ahead = sluice::feedback::parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", early);
    REQUIRE(far_ahead);
    CHECK(*far_ahead > 2.5e11);  // absurd, but positive: to_delay clamps it to max_pause
}

TEST_CASE("malformed Retry-After is ignored with a warning", "[feedback][retry-after]") {
    for (const char* bad : {"", "soon", "1e3", "0x10", "nan", "NaN", "inf", "Infinity", "5s", "1,5", "1.",
                            ".5", "+5", "120, 120", "Tue, 14 Nov 2023 22:14:20", "\x01\x02"}) {
        INFO(bad);
        const auto s = read(429, {{"Retry-After", bad}});
        CHECK_FALSE(s.retry_after);
        CHECK_FALSE(s.pause);
        REQUIRE(s.warnings.size() == 1);
        CHECK(has_warning(s, "neither delay-seconds nor an HTTP-date; ignored"));
    }
    const auto s = read(429, {{"Retry-After", "soon"}});
    CHECK(s.warnings[0] == R"(Retry-After "soon": neither delay-seconds nor an HTTP-date; ignored)");
}

TEST_CASE("negative Retry-After is ignored with a warning", "[feedback][retry-after]") {
    const auto s = read(429, {{"Retry-After", "-5"}});
    CHECK_FALSE(s.retry_after);
    CHECK_FALSE(s.pause);
    REQUIRE(s.warnings.size() == 1);
    CHECK(s.warnings[0] == R"(Retry-After "-5": negative; ignored)");
}

TEST_CASE("huge Retry-After is clamped to max_pause", "[feedback][retry-after][clamp]") {
    const auto s = read(429, {{"Retry-After", "86400"}});
    CHECK(s.pause == 5min);
    CHECK(s.clamped);
    REQUIRE(s.warnings.size() == 1);
    CHECK(s.warnings[0] ==
          R"(Retry-After "86400": 86400s from now is longer than max_pause (300s); clamped)");

    for (const char* absurd :
         {"300.000000001", "99999999999999999999999999", "9223372036854775808",
          "Fri, 31 Dec 9999 23:59:59 GMT",
          "1000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
          "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
          "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
          "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000"}) {
        INFO(absurd);
        const auto a = read(429, {{"Retry-After", absurd}});
        CHECK(a.pause == 5min);
        CHECK(a.clamped);
        CHECK(has_warning(a, "is longer than max_pause (300s); clamped"));
    }
}

TEST_CASE("the clamp is configurable", "[feedback][clamp]") {
    FeedbackConfig config;
    config.max_pause = 2s;
    const auto s = read(429, {{"Retry-After", "3"}}, config);
    CHECK(s.pause == 2s);
    CHECK(s.clamped);
    CHECK(s.warnings[0] == R"(Retry-After "3": 3s from now is longer than max_pause (2s); clamped)");

    config.max_pause = 0s;
    CHECK(read(429, {{"Retry-After", "1"}}, config).pause == 0s);
    config.max_pause = -1s;  // nonsense in, still never negative out
    CHECK(read(429, {{"Retry-After", "1"}}, config).pause == 0s);
}

// ---------------------------------------------------------------- X-RateLimit-*

TEST_CASE("X-RateLimit-* counts", "[feedback][x]") {
    const auto s = read(200, {{"X-RateLimit-Limit", "166"}, {"X-RateLimit-Remaining", "42"}});
    CHECK(s.limit == 166);
    CHECK(s.remaining == 42);
    CHECK_FALSE(s.pause);
    CHECK(s.warnings.empty());
}

TEST_CASE("x-rate-limit-* (Close's spelling) and any letter case", "[feedback][x]") {
    const auto s = read(
        200, {{"x-rate-limit-limit", "20"}, {"X-RATE-LIMIT-REMAINING", "19"}, {"x-rate-limit-reset", "0.5"}});
    CHECK(s.limit == 20);
    CHECK(s.remaining == 19);
    CHECK(s.reset_after == 500ms);
    CHECK(s.reset_source == SignalSource::x_ratelimit);
}

TEST_CASE("X-RateLimit-Reset modes", "[feedback][x][reset]") {
    FeedbackConfig config;
    SECTION("automatic: small values are seconds from now") {
        CHECK(read(200, {{"X-RateLimit-Reset", "5"}}, config).reset_after == 5s);
        CHECK(read(200, {{"X-RateLimit-Reset", "0.87"}}, config).reset_after == 870ms);
        CHECK(read(200, {{"X-RateLimit-Reset", "0"}}, config).reset_after == 0s);
    }
    SECTION("automatic: values above 10^9 are Unix timestamps") {
        CHECK(read(200, {{"X-RateLimit-Reset", "1700000010"}}, config).reset_after == 10s);
        CHECK(read(200, {{"X-RateLimit-Reset", "1700000000.25"}}, config).reset_after == 250ms);
        CHECK(read(200, {{"X-RateLimit-Reset", "1699999990"}}, config).reset_after == 0s);  // past
        const auto exact = read(200, {{"X-RateLimit-Reset", "1000000000"}}, config);  // not above: a delay
        CHECK(exact.reset_after == 5min);
        CHECK(exact.clamped);
    }
    SECTION("delta_seconds reads even a large value as a delay") {
        config.reset_mode = ResetMode::delta_seconds;
        const auto s = read(200, {{"X-RateLimit-Reset", "1700000010"}}, config);
        CHECK(s.reset_after == 5min);
        CHECK(s.clamped);
    }
    SECTION("unix_seconds reads even a small value as a timestamp") {
        config.reset_mode = ResetMode::unix_seconds;
        CHECK(read(200, {{"X-RateLimit-Reset", "1700000030"}}, config).reset_after == 30s);
        const auto s = read(200, {{"X-RateLimit-Reset", "5"}}, config);  // 1970: long past
        CHECK(s.reset_after == 0s);
        CHECK(s.warnings.empty());
    }
    SECTION("a timestamp far ahead is clamped") {
        const auto s = read(200, {{"X-RateLimit-Reset", "1700086400"}}, config);
        CHECK(s.reset_after == 5min);
        CHECK(s.clamped);
        CHECK(s.warnings[0] ==
              R"(X-RateLimit-Reset "1700086400": 86400s from now is longer than max_pause (300s); clamped)");
    }
}

TEST_CASE("malformed X-RateLimit-* values are ignored with warnings", "[feedback][x]") {
    const auto s = read(
        429, {{"X-RateLimit-Limit", "lots"}, {"X-RateLimit-Remaining", "-1"}, {"X-RateLimit-Reset", "NaN"}});
    CHECK_FALSE(s.limit);
    CHECK_FALSE(s.remaining);
    CHECK_FALSE(s.reset_after);
    CHECK_FALSE(s.pause);
    REQUIRE(s.warnings.size() == 3);
    CHECK(s.warnings[0] == R"(X-RateLimit-Limit "lots": not an integer; ignored)");
    CHECK(s.warnings[1] == R"(X-RateLimit-Remaining "-1": negative; ignored)");
    CHECK(s.warnings[2] == R"(X-RateLimit-Reset "NaN": not a number of seconds; ignored)");

    const auto more = read(200, {{"X-RateLimit-Limit", "99999999999999999999"},
                                 {"X-RateLimit-Remaining", "1.5"},
                                 {"X-RateLimit-Reset", "-3"}});
    CHECK(more.warnings.size() == 3);
    CHECK(has_warning(more, R"(X-RateLimit-Limit "99999999999999999999": out of range; ignored)"));
    CHECK(has_warning(more, R"(X-RateLimit-Remaining "1.5": not an integer; ignored)"));
    CHECK(has_warning(more, R"(X-RateLimit-Reset "-3": negative; ignored)"));
}

TEST_CASE("a count list reads its first member", "[feedback][x]") {
    CHECK(read(200, {{"X-RateLimit-Limit", "100, 100;w=60"}}).limit == 100);
    CHECK(read(200, {{"X-RateLimit-Limit", " 10 "}}).limit == 10);
}

TEST_CASE("remaining 0 on a success pauses until the reset", "[feedback][x]") {
    const auto s = read(200, {{"X-RateLimit-Remaining", "0"}, {"X-RateLimit-Reset", "2.5"}});
    CHECK_FALSE(s.rate_limited);
    CHECK(s.pause == 2500ms);
    CHECK(s.pause_source == SignalSource::x_ratelimit);
    CHECK_FALSE(read(200, {{"X-RateLimit-Remaining", "1"}, {"X-RateLimit-Reset", "2.5"}}).pause);
    CHECK_FALSE(read(200, {{"X-RateLimit-Remaining", "0"}}).pause);  // nothing to wait for
}

// ---------------------------------------------------------------- IETF

TEST_CASE("RateLimit and RateLimit-Policy (current draft)", "[feedback][ietf]") {
    const auto s =
        read(200, {{"RateLimit", R"("default";r=50;t=30)"}, {"RateLimit-Policy", R"("default";q=100;w=60)"}});
    CHECK(s.limit == 100);
    CHECK(s.remaining == 50);
    CHECK(s.reset_after == 30s);
    CHECK(s.reset_source == SignalSource::ietf);
    CHECK_FALSE(s.pause);
    CHECK(s.warnings.empty());
}

TEST_CASE("several IETF policies: the binding one is reported", "[feedback][ietf]") {
    const Headers exhausted{
        {"RateLimit", R"("burst";r=10;t=1, "daily";r=0;t=3600, "hourly";r=0;t=60)"},
        {"RateLimit-Policy", R"("burst";q=20;w=1, "hourly";q=500;w=3600, "daily";q=5000;w=86400)"}};
    const auto s = read(200, exhausted);
    CHECK(s.remaining == 0);
    CHECK(s.limit == 5000);
    CHECK(s.reset_after == 5min);  // 3600s, clamped
    CHECK(s.clamped);
    CHECK(s.pause == 5min);
    CHECK(s.pause_source == SignalSource::ietf);

    const auto closest = read(200, {{"RateLimit", R"("burst";r=3;t=1, "daily";r=400;t=3600)"},
                                    {"RateLimit-Policy", R"("burst";q=20;w=1, "daily";q=5000;w=86400)"}});
    CHECK(closest.remaining == 3);
    CHECK(closest.limit == 20);
    CHECK(closest.reset_after == 1s);
}

TEST_CASE("RateLimit without a policy field, and a single policy without RateLimit", "[feedback][ietf]") {
    const auto s = read(200, {{"RateLimit", R"("default";r=5;t=2)"}});
    CHECK_FALSE(s.limit);
    CHECK(s.remaining == 5);
    CHECK(s.reset_after == 2s);
    CHECK(read(200, {{"RateLimit-Policy", R"("default";q=100;w=60)"}}).limit == 100);
    CHECK_FALSE(read(200, {{"RateLimit-Policy", R"("a";q=100;w=60, "b";q=10;w=1)"}}).limit);
    // A policy name that RateLimit does not use leaves the quota unknown rather than guessed.
    CHECK_FALSE(read(200, {{"RateLimit", R"("x";r=1)"}, {"RateLimit-Policy", R"("a";q=1, "b";q=2)"}}).limit);
    // A token as the policy name is read too.
    CHECK(read(200, {{"RateLimit", "default;r=1;t=1"}, {"RateLimit-Policy", "default;q=9"}}).limit == 9);
}

TEST_CASE("RateLimit-Policy in draft -07's form (a bare quota)", "[feedback][ietf]") {
    CHECK(read(200, {{"RateLimit-Policy", "100;w=60"}}).limit == 100);
}

TEST_CASE("RateLimit as a dictionary (draft -07)", "[feedback][ietf]") {
    const auto s = read(200, {{"RateLimit", "limit=100, remaining=50, reset=5"}});
    CHECK(s.limit == 100);
    CHECK(s.remaining == 50);
    CHECK(s.reset_after == 5s);
    CHECK(s.reset_source == SignalSource::ietf);
    CHECK(s.warnings.empty());
}

TEST_CASE("RateLimit-Limit / -Remaining / -Reset (older drafts)", "[feedback][ietf]") {
    const auto s =
        read(200, {{"RateLimit-Limit", "100"}, {"RateLimit-Remaining", "0"}, {"RateLimit-Reset", "12"}});
    CHECK(s.limit == 100);
    CHECK(s.remaining == 0);
    CHECK(s.reset_after == 12s);
    CHECK(s.pause == 12s);
    CHECK(s.pause_source == SignalSource::ietf);
    // The quota-policy list some drafts allowed in RateLimit-Limit.
    CHECK(read(200, {{"RateLimit-Limit", "10, 10;w=1, 50;w=60"}}).limit == 10);
    // A Unix timestamp where a delay is expected (seen in the wild) is read as one.
    CHECK(read(200, {{"RateLimit-Reset", "1700000020"}}).reset_after == 20s);
}

TEST_CASE("malformed IETF fields are ignored with warnings", "[feedback][ietf]") {
    const auto s =
        read(429, {{"RateLimit", "limit=100, remaining=50,"}, {"RateLimit-Policy", "\"unterminated"}});
    CHECK_FALSE(s.limit);
    CHECK_FALSE(s.remaining);
    CHECK_FALSE(s.pause);
    REQUIRE(s.warnings.size() == 2);
    CHECK(s.warnings[0] ==
          R"(RateLimit "limit=100, remaining=50,": not a structured field list or dictionary; ignored)");
    CHECK(s.warnings[1] == R"(RateLimit-Policy "?unterminated": not a structured field list; ignored)");

    const auto neg = read(429, {{"RateLimit", R"("default";r=-1;t=-2)"}});
    CHECK_FALSE(neg.remaining);
    CHECK_FALSE(neg.reset_after);
    CHECK(has_warning(neg, "'r' is not a non-negative integer; ignored"));
    CHECK(has_warning(neg, "'t' is not a non-negative number of seconds; ignored"));

    CHECK(has_warning(read(200, {{"RateLimit", R"("default")"}}),
                      "no policy with an 'r' or 't' parameter; ignored"));
    CHECK(has_warning(read(200, {{"RateLimit", "foo=1"}}), "no limit, remaining or reset; ignored"));
    CHECK(has_warning(read(200, {{"RateLimit", R"("d";r="x")"}}), "'r' is not a non-negative integer"));
    CHECK(has_warning(read(200, {{"RateLimit", "limit=-1, remaining=?1, reset=-1"}}),
                      "'limit' is not a non-negative integer"));
    CHECK(has_warning(read(200, {{"RateLimit", "limit=-1, remaining=?1, reset=-1"}}),
                      "'remaining' is not a non-negative integer"));
    CHECK(has_warning(read(200, {{"RateLimit", "limit=-1, remaining=?1, reset=-1"}}),
                      "'reset' is not a non-negative number of seconds"));
}

TEST_CASE("X-RateLimit-* wins over the IETF fields, which fill the gaps", "[feedback][ietf][x]") {
    const auto s = read(200, {{"X-RateLimit-Limit", "20"},
                              {"RateLimit", R"("default";r=7;t=9)"},
                              {"RateLimit-Policy", R"("default";q=100)"},
                              {"X-RateLimit-Reset", "3"}});
    CHECK(s.limit == 20);
    CHECK(s.remaining == 7);
    CHECK(s.reset_after == 3s);
    CHECK(s.reset_source == SignalSource::x_ratelimit);

    // A malformed X- reset falls back to the IETF one.
    const auto fallback = read(429, {{"X-RateLimit-Reset", "later"}, {"RateLimit", R"("default";r=0;t=9)"}});
    CHECK(fallback.reset_after == 9s);
    CHECK(fallback.pause == 9s);
    CHECK(fallback.pause_source == SignalSource::ietf);
    CHECK(fallback.warnings.size() == 1);
}

// ---------------------------------------------------------------- JSON body

TEST_CASE("the JSON body field on a 429", "[feedback][body]") {
    FeedbackConfig config;
    config.body_field = "error.rate_reset";
    const auto s = read(429, {}, config, R"({"error": {"message": "slow down", "rate_reset": 0.87}})");
    CHECK(s.body_reset_after == 870ms);
    CHECK(s.pause == 870ms);
    CHECK(s.pause_source == SignalSource::body_field);
    CHECK(s.warnings.empty());

    CHECK(read(429, {}, config, R"({"error": {"rate_reset": 2}})").pause == 2s);
    CHECK(read(429, {}, config, R"({"error": {"rate_reset": "1.25"}})").pause == 1250ms);  // a quoted number
    config.body_field = "errors.0.retry_in";
    CHECK(read(429, {}, config, R"({"errors": [{"retry_in": 4}]})").pause == 4s);
    config.body_field = "errors.99999999999999999999999.retry_in";  // an index past size_t: no such element
    const auto huge_index = read(429, {}, config, R"({"errors": [{"retry_in": 4}]})");
    CHECK_FALSE(huge_index.pause);
    CHECK(has_warning(huge_index, "no field errors.99999999999999999999999.retry_in; ignored"));
    config.body_field = "reset_at";
    CHECK(read(429, {}, config, R"({"reset_at": 1700000006})").pause == 6s);  // automatic: a timestamp
    config.body_field_mode = ResetMode::delta_seconds;
    CHECK(read(429, {}, config, R"({"reset_at": 1700000006})").pause == 5min);
}

TEST_CASE("the body is read only on a 429 with a configured field", "[feedback][body]") {
    FeedbackConfig config;
    const std::string_view body = R"({"error": {"rate_reset": 0.87}})";
    CHECK_FALSE(sluice::feedback::wants_body(429, config));
    CHECK_FALSE(read(429, {}, config, body).body_reset_after);
    config.body_field = "error.rate_reset";
    CHECK(sluice::feedback::wants_body(429, config));
    CHECK_FALSE(sluice::feedback::wants_body(200, config));
    CHECK_FALSE(sluice::feedback::wants_body(503, config));
    CHECK_FALSE(read(200, {}, config, body).body_reset_after);
    CHECK_FALSE(read(503, {{"Retry-After", "1"}}, config, body).body_reset_after);
    CHECK(read(429, {}, config, std::nullopt).warnings.empty());  // not read by the caller
    CHECK(read(429, {}, config, "").warnings.empty());
}

TEST_CASE("bad bodies give no value and a warning", "[feedback][body]") {
    FeedbackConfig config;
    config.body_field = "error.rate_reset";
    struct Case {
        const char* body;
        const char* warning;
    };
    for (const auto& c : {
             Case{"<html>Too Many Requests</html>",
                  R"(body "<html>Too Many Requests</html>": not JSON; error.rate_reset ignored)"},
             Case{R"({"error": {"rate_reset": 0.87})", "not JSON"},  // truncated by the caller's bound
             Case{R"({"error": {"rate_reset": NaN}})", "not JSON"},
             Case{R"({"error": {"rate_reset": Infinity}})", "not JSON"},
             Case{R"({"error": {"rate_reset": 1e999}})", "not JSON"},  // out of a double's range
             Case{R"({"error": {}})", "no field error.rate_reset; ignored"},
             Case{R"({"error": "rate_reset"})", "no field error.rate_reset; ignored"},
             Case{R"([1, 2])", "no field error.rate_reset; ignored"},
             Case{R"({"error": {"rate_reset": null}})", R"(error.rate_reset "null": not a number; ignored)"},
             Case{R"({"error": {"rate_reset": {"s": 1}}})", "not a number; ignored"},
             Case{R"({"error": {"rate_reset": "soon"}})",
                  R"(error.rate_reset "soon": not a number of seconds; ignored)"},
             Case{R"({"error": {"rate_reset": -0.5}})", R"(error.rate_reset "-0.5": negative; ignored)"},
         }) {
        INFO(c.body);
        const auto s = read(429, {}, config, c.body);
        CHECK_FALSE(s.body_reset_after);
        CHECK_FALSE(s.pause);
        CHECK(s.rate_limited);
        REQUIRE(s.warnings.size() == 1);
        CHECK(has_warning(s, c.warning));
    }
}

TEST_CASE("a huge body value is clamped", "[feedback][body][clamp]") {
    FeedbackConfig config;
    config.body_field = "error.rate_reset";
    const auto s = read(429, {}, config, R"({"error": {"rate_reset": 1e300}})");
    CHECK(s.pause == 5min);
    CHECK(s.clamped);
    CHECK(has_warning(s, "error.rate_reset \"1e+300\": "));
}

TEST_CASE("validate_body_field", "[feedback][body]") {
    using sluice::feedback::validate_body_field;
    CHECK(validate_body_field("error.rate_reset").empty());
    CHECK(validate_body_field("retry_after").empty());
    CHECK(validate_body_field("errors.0.wait").empty());
    CHECK(validate_body_field("") == "empty path; expected dot-separated names such as error.rate_reset");
    CHECK(validate_body_field("error..x") ==
          "empty name in 'error..x'; expected names separated by single dots");
    CHECK_FALSE(validate_body_field(".x").empty());
    CHECK_FALSE(validate_body_field("x.").empty());
}

// ---------------------------------------------------------------- precedence

TEST_CASE("precedence on a 429: body > Retry-After > X-RateLimit-Reset > RateLimit t",
          "[feedback][precedence]") {
    FeedbackConfig config;
    config.body_field = "error.rate_reset";
    const std::string_view body = R"({"error": {"rate_reset": 0.4}})";
    const Headers all{{"Retry-After", "2"}, {"X-RateLimit-Reset", "3"}, {"RateLimit", R"("d";r=0;t=4)"}};
    const Headers no_retry{{"X-RateLimit-Reset", "3"}, {"RateLimit", R"("d";r=0;t=4)"}};
    const Headers ietf_only{{"RateLimit", R"("d";r=0;t=4)"}};

    auto s = read(429, all, config, body);
    CHECK((s.pause == 400ms && s.pause_source == SignalSource::body_field));
    // Every source is still reported for the logs.
    CHECK(s.retry_after == 2s);
    CHECK(s.reset_after == 3s);
    CHECK(s.body_reset_after == 400ms);

    s = read(429, all, config, std::nullopt);
    CHECK((s.pause == 2s && s.pause_source == SignalSource::retry_after));
    s = read(429, no_retry, config, std::nullopt);
    CHECK((s.pause == 3s && s.pause_source == SignalSource::x_ratelimit));
    s = read(429, ietf_only, config, std::nullopt);
    CHECK((s.pause == 4s && s.pause_source == SignalSource::ietf));

    // A broken higher source falls through to the next one.
    s = read(429, all, config, "not json");
    CHECK((s.pause == 2s && s.pause_source == SignalSource::retry_after));
    s = read(429, {{"Retry-After", "never"}, {"X-RateLimit-Reset", "3"}});
    CHECK((s.pause == 3s && s.pause_source == SignalSource::x_ratelimit));
}

TEST_CASE("conflicting values: precedence decides, even when a lower source is longer",
          "[feedback][precedence]") {
    const auto s = read(429, {{"Retry-After", "1"}, {"X-RateLimit-Reset", "60"}});
    CHECK(s.pause == 1s);
    CHECK(s.reset_after == 60s);
    const auto shorter = read(429, {{"Retry-After", "60"}, {"X-RateLimit-Reset", "1"}});
    CHECK(shorter.pause == 60s);
    CHECK(s.warnings.empty());
}

// ---------------------------------------------------------------- vendors (/work/shared/vendors.md)

TEST_CASE("Close: a 429 with its full header set and body", "[feedback][vendor]") {
    FeedbackConfig config;
    config.reset_mode = ResetMode::delta_seconds;
    config.body_field = "error.rate_reset";
    const Headers headers{{"x-rate-limit-limit", "20"},
                          {"x-rate-limit-remaining", "0"},
                          {"x-rate-limit-reset", "0.87"},
                          {"retry-after", "1"},  // the reset rounded up
                          {"content-type", "application/json"}};
    const std::string_view body =
        R"({"error": {"message": "API call count exceeded for this 1 second window", "rate_reset": 0.87,)"
        R"( "rate_limit_type": "key", "rate_endpoint_group": "e7a4bd39"}})";
    const auto s = read(429, headers, config, body);
    CHECK(s.rate_limited);
    CHECK(s.limit == 20);
    CHECK(s.remaining == 0);
    CHECK(s.reset_after == 870ms);
    CHECK(s.retry_after == 1s);
    CHECK(s.body_reset_after == 870ms);
    CHECK(s.pause == 870ms);
    CHECK(s.pause_source == SignalSource::body_field);
    INFO(all_warnings(s));
    CHECK(s.warnings.empty());
}

TEST_CASE("Close: a success with room left pauses nothing; one with none left pauses to the reset",
          "[feedback][vendor]") {
    FeedbackConfig config;
    config.reset_mode = ResetMode::delta_seconds;
    config.body_field = "error.rate_reset";
    const auto room = read(
        200, {{"x-rate-limit-limit", "20"}, {"x-rate-limit-remaining", "12"}, {"x-rate-limit-reset", "0.31"}},
        config);
    CHECK_FALSE(room.rate_limited);
    CHECK(room.remaining == 12);
    CHECK_FALSE(room.pause);
    const auto spent = read(
        200, {{"x-rate-limit-limit", "20"}, {"x-rate-limit-remaining", "0"}, {"x-rate-limit-reset", "0.31"}},
        config);
    CHECK(spent.pause == 310ms);
    CHECK(spent.pause_source == SignalSource::x_ratelimit);
}

TEST_CASE("Intercom: X-RateLimit-Reset is a Unix timestamp", "[feedback][vendor]") {
    FeedbackConfig config;
    config.reset_mode = ResetMode::unix_seconds;
    const Headers limited{
        {"X-RateLimit-Limit", "166"}, {"X-RateLimit-Remaining", "0"}, {"X-RateLimit-Reset", "1700000007"}};
    const auto s = read(429, limited, config);
    CHECK(s.rate_limited);
    CHECK(s.limit == 166);
    CHECK(s.remaining == 0);
    CHECK(s.reset_after == 7s);
    CHECK(s.pause == 7s);
    CHECK(s.pause_source == SignalSource::x_ratelimit);
    CHECK(s.warnings.empty());

    // The same headers read with the default (automatic) mode.
    CHECK(read(429, limited).pause == 7s);

    const auto ok = read(
        200,
        {{"X-RateLimit-Limit", "166"}, {"X-RateLimit-Remaining", "120"}, {"X-RateLimit-Reset", "1700000004"}},
        config);
    CHECK_FALSE(ok.pause);
    CHECK(ok.reset_after == 4s);
}

TEST_CASE("vendors without rate-limit headers: a bare 429", "[feedback][vendor]") {
    // Constant Contact, Amplemarket and Convertr document limits but no headers:
    // a 429 is rate-limited with no pause hint unless a Retry-After comes along.
    const auto s =
        read(429, {{"Content-Type", "application/json"}}, {}, R"({"error_key": "too_many_requests"})");
    CHECK(s.rate_limited);
    CHECK_FALSE(s.pause);
    CHECK(s.warnings.empty());
}

TEST_CASE("warnings quote vendor values safely", "[feedback]") {
    const std::string long_value(200, '9');
    const auto s =
        read(200, {{"X-RateLimit-Limit", long_value}, {"X-RateLimit-Remaining", "1\r\nX-Evil: 1"}});
    REQUIRE(s.warnings.size() == 2);
    CHECK(s.warnings[0] == "X-RateLimit-Limit \"" + std::string(64, '9') + "...\": out of range; ignored");
    CHECK(s.warnings[1] == R"(X-RateLimit-Remaining "1??X-Evil: 1": not an integer; ignored)");
}

TEST_CASE("parse_retry_after and signal_source_name", "[feedback]") {
    using sluice::feedback::parse_retry_after;
    CHECK(parse_retry_after("12", kNow) == 12.0);
    CHECK(parse_retry_after("Tue, 14 Nov 2023 22:13:30 GMT", kNow) == 10.0);
    CHECK_FALSE(parse_retry_after("-1", kNow));
    CHECK_FALSE(parse_retry_after("x", kNow));
    CHECK(sluice::feedback::signal_source_name(SignalSource::body_field) == "body_field");
    CHECK(sluice::feedback::signal_source_name(SignalSource::ietf) == "ietf");
}
