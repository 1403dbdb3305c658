// The feedback reaction (feedback/reaction.hpp) without sockets: a signal and
// the request's limits in, actions out.

#include "sluice/feedback/reaction.hpp"

#include <vector>

#include <catch2/catch.hpp>

namespace {

using namespace std::chrono_literals;
using sluice::Instant;
using sluice::Nanos;
using sluice::config::Algorithm;
using sluice::config::FeedbackSettings;
using sluice::config::LimitConfig;
using sluice::feedback::FeedbackAction;
using sluice::feedback::LimitInUse;
using sluice::feedback::MatchRule;
using sluice::feedback::Reaction;
using sluice::feedback::ReactionInput;
using sluice::feedback::VendorSignal;
using Kind = FeedbackAction::Kind;

const Instant kNow{Nanos{10'000'000'000}, Nanos{1'700'000'000'000'000'000}};

LimitConfig window_limit(const char* name, std::int64_t limit, Nanos window = 1s) {
    LimitConfig c;
    c.name = name;
    c.algorithm = Algorithm::sliding_window;
    c.limit = limit;
    c.window = window;
    return c;
}

// Close: 20 per key, 60 per organisation, named "key" and "org" in its 429 bodies.
struct CloseLimits {
    LimitConfig key = window_limit("close-key", 20);
    LimitConfig org = window_limit("close-org", 60);
    CloseLimits() {
        key.feedback.vendor_limit_type = "key";
        org.feedback.vendor_limit_type = "org";
    }
};

Reaction run(const VendorSignal& signal, const std::vector<LimitInUse>& limits, unsigned status = 200,
             FeedbackSettings settings = {}, bool retry_eligible = false, Nanos deadline = Nanos{0}) {
    return sluice::feedback::react(
        ReactionInput{status, &signal, &settings, limits, retry_eligible, deadline, kNow});
}

std::vector<FeedbackAction> of_kind(const Reaction& r, Kind kind) {
    std::vector<FeedbackAction> out;
    for (const auto& a : r.actions)
        if (a.kind == kind) out.push_back(a);
    return out;
}

VendorSignal refusal(std::optional<Nanos> pause) {
    VendorSignal s;
    s.rate_limited = true;
    s.pause = pause;
    return s;
}

VendorSignal report(std::int64_t limit, std::int64_t remaining, Nanos reset) {
    VendorSignal s;
    s.limit = limit;
    s.remaining = remaining;
    s.reset_after = reset;
    return s;
}

}  // namespace

TEST_CASE("a signal is matched to the limit it describes", "[feedback][reaction]") {
    CloseLimits close;
    const std::vector<LimitInUse> uses{{&close.key, 1, 0, 5, 20}, {&close.org, 1, 0, 5, 60}};
    MatchRule rule{};

    SECTION("by the 429 body's limit type") {
        auto s = refusal(500ms);
        s.limit_type = "org";
        s.limit = 20;  // the headers describe another limit: the body's type wins
        CHECK(sluice::feedback::match_limits(s, uses, rule) == std::vector<bool>{false, true});
        CHECK(rule == MatchRule::limit_type);
    }
    SECTION("by the stated limit value") {
        CHECK(sluice::feedback::match_limits(report(20, 3, 1s), uses, rule) ==
              std::vector<bool>{true, false});
        CHECK(rule == MatchRule::limit_value);
        CHECK(sluice::feedback::match_limits(report(60, 3, 1s), uses, rule) ==
              std::vector<bool>{false, true});
    }
    SECTION("by a configured vendor_limit") {
        close.org.feedback.vendor_limit = 3600;  // a vendor stating its org limit per minute
        CHECK(sluice::feedback::match_limits(report(3600, 3, 1s), uses, rule) ==
              std::vector<bool>{false, true});
        CHECK(rule == MatchRule::limit_value);
    }
    SECTION("a type or value no limit has: every limit of the request") {
        auto s = refusal(500ms);
        s.limit_type = "endpoint";
        s.limit = 7;
        CHECK(sluice::feedback::match_limits(s, uses, rule) == std::vector<bool>{true, true});
        CHECK(rule == MatchRule::all_limits);
    }
}

TEST_CASE("a 429 pauses only the limit it names, for the time it gives", "[feedback][reaction]") {
    CloseLimits close;
    const std::vector<LimitInUse> uses{{&close.key, 1, 0, 20, 20}, {&close.org, 1, 0, 30, 60}};
    auto s = refusal(870ms);
    s.limit_type = "key";
    const auto r = run(s, uses, 429);
    const auto pauses = of_kind(r, Kind::pause);
    REQUIRE(pauses.size() == 1);
    CHECK(pauses[0].limit == 0);
    CHECK(pauses[0].until == kNow.mono + 870ms);
    CHECK(r.vendor_429);
    CHECK(r.paused);
    CHECK(r.relayed_429);  // not eligible for a retry
    CHECK(r.actions.back().kind == Kind::relay);
}

TEST_CASE("a 429 with no hint pauses every limit for default_pause", "[feedback][reaction]") {
    const auto a = window_limit("a", 100);
    const auto b = window_limit("b", 10'000, 24h);
    const std::vector<LimitInUse> uses{{&a, 1, 0, 50, 100}, {&b, 1, 0, 50, 10'000}};
    FeedbackSettings settings;
    settings.default_pause = 2s;
    const auto r = run(refusal(std::nullopt), uses, 429, settings);
    const auto pauses = of_kind(r, Kind::pause);
    REQUIRE(pauses.size() == 2);
    for (const auto& p : pauses) CHECK(p.until == kNow.mono + 2s);
    CHECK(r.matched_by == MatchRule::all_limits);
}

TEST_CASE("retry or relay: the pause must end before the request's deadline", "[feedback][reaction]") {
    const auto a = window_limit("a", 100);
    const std::vector<LimitInUse> uses{{&a, 1, 0, 10, 100}};
    SECTION("fits: retry at the end of the pause; the retry is not counted yet") {
        const auto r = run(refusal(300ms), uses, 429, {}, true, kNow.mono + 1s);
        REQUIRE(r.retry());
        CHECK(r.actions.back().until == kNow.mono + 300ms);
        CHECK_FALSE(r.relayed_429);
    }
    SECTION("does not fit: relayed") {
        const auto r = run(refusal(1500ms), uses, 429, {}, true, kNow.mono + 1s);
        CHECK_FALSE(r.retry());
        CHECK(r.relayed_429);
    }
    SECTION("pause_on_429 off: neither paused nor retried (nothing would hold the retry back)") {
        FeedbackSettings settings;
        settings.pause_on_429 = false;
        const auto r = run(refusal(300ms), uses, 429, settings, true, kNow.mono + 1s);
        CHECK(of_kind(r, Kind::pause).empty());
        CHECK_FALSE(r.retry());
        CHECK(r.vendor_429);
        CHECK(r.relayed_429);
    }
}

TEST_CASE("a Remaining report on the limit it matches counts only what someone else spent",
          "[feedback][reaction]") {
    const auto a = window_limit("intercom", 166, 10s);
    SECTION("no other consumer: the vendor's count is ours, no deficit (however many are in flight)") {
        // sluice counts 120 in its window, 20 of them admitted after this request;
        // the vendor saw the other 100: 66 remain.
        const std::vector<LimitInUse> uses{{&a, 1, 20, 120, 166}};
        const auto r = run(report(166, 66, 4s), uses);
        const auto d = of_kind(r, Kind::deficit);
        REQUIRE(d.size() == 1);
        CHECK(d[0].units == 0);
        CHECK_FALSE(r.capped);
        CHECK(of_kind(r, Kind::cap).empty());
        CHECK(of_kind(r, Kind::pause).empty());
    }
    SECTION("Remaining 0 from our own traffic pauses nothing: sluice's own window holds") {
        const std::vector<LimitInUse> uses{{&a, 1, 0, 166, 166}};
        const auto r = run(report(166, 0, 800ms), uses);
        CHECK(of_kind(r, Kind::pause).empty());
        CHECK(of_kind(r, Kind::deficit).at(0).units == 0);
        CHECK_FALSE(r.paused);
    }
    SECTION("another consumer spent 30: a deficit of 30 until the vendor's reset, no longer") {
        const std::vector<LimitInUse> uses{{&a, 1, 5, 50, 166}};
        // The vendor saw 45 of ours and 30 of someone else's: 166 - 75 = 91 remain.
        const auto r = run(report(166, 91, 4s), uses);
        const auto d = of_kind(r, Kind::deficit);
        REQUIRE(d.size() == 1);
        CHECK(d[0].units == 30);
        CHECK(d[0].until == kNow.mono + 4s);
        CHECK(r.capped);
        CHECK(of_kind(r, Kind::lower_limit).empty());  // not a stricter limit: a deficit
    }
    SECTION("the vendor's window spent on the quota configured: a deficit, nothing learned") {
        const std::vector<LimitInUse> uses{{&a, 1, 0, 120, 166}};
        const auto r = run(report(166, 0, 4s), uses);
        CHECK(of_kind(r, Kind::deficit).at(0).units == 46);
        CHECK(of_kind(r, Kind::lower_limit).empty());
    }
    SECTION("switched off: nothing") {
        FeedbackSettings settings;
        settings.cap_from_remaining = false;
        const std::vector<LimitInUse> uses{{&a, 1, 5, 50, 166}};
        const auto r = run(report(166, 0, 4s), uses, 200, settings);
        REQUIRE(r.actions.size() == 1);
        CHECK(r.actions[0].kind == Kind::relay);
    }
}

TEST_CASE("a Close key's Remaining leaves the organisation limit alone", "[feedback][reaction]") {
    CloseLimits close;
    // Key A: 18 counted, 4 of them admitted after this request; the vendor saw 14 and says 6 remain.
    const std::vector<LimitInUse> uses{{&close.key, 1, 4, 18, 20}, {&close.org, 1, 12, 50, 60}};
    const auto r = run(report(20, 6, 300ms), uses);
    const auto d = of_kind(r, Kind::deficit);
    REQUIRE(d.size() == 1);
    CHECK(d[0].limit == 0);
    CHECK(d[0].units == 0);
    for (const auto& a : r.actions) CHECK(a.limit == 0);
}

TEST_CASE("an unmatched Remaining caps every limit, less what each admitted after the request",
          "[feedback][reaction]") {
    const auto a = window_limit("a", 10);
    const auto b = window_limit("b", 100);
    const std::vector<LimitInUse> uses{{&a, 1, 2, 5, 10}, {&b, 1, 7, 30, 100}};
    VendorSignal s;
    s.remaining = 9;
    s.reset_after = 500ms;
    const auto r = run(s, uses);
    const auto caps = of_kind(r, Kind::cap);
    REQUIRE(caps.size() == 2);
    CHECK(caps[0].units == 7);
    CHECK(caps[1].units == 2);
    CHECK(caps[0].until == kNow.mono + 500ms);
    CHECK(r.capped);
    SECTION("and Remaining 0 pauses them until the reset, and the fullest learns what the vendor took") {
        s.remaining = 0;
        const auto z = run(s, uses);
        CHECK(of_kind(z, Kind::pause).size() == 2);
        CHECK(z.paused);
        CHECK(z.pause == 500ms);
        // a is the fullest (5 of 10): the vendor's window was spent after 3 of its units, this one
        // included (2 were admitted after it), so the next windows stop at 3 too.
        const auto lowered = of_kind(z, Kind::lower_limit);
        REQUIRE(lowered.size() == 1);
        CHECK(lowered[0].limit == 0);
        CHECK(lowered[0].units == 3);
        CHECK(z.lowered);
    }
    SECTION("Remaining 0 with the whole configured limit taken teaches nothing") {
        const std::vector<LimitInUse> full{{&a, 1, 0, 10, 10}, {&b, 1, 0, 30, 100}};
        s.remaining = 0;
        CHECK(of_kind(run(s, full), Kind::lower_limit).empty());
    }
    SECTION("Remaining 0 with learning off: paused, nothing learned") {
        FeedbackSettings settings;
        settings.learn = false;
        s.remaining = 0;
        const auto z = run(s, uses, 200, settings);
        CHECK(of_kind(z, Kind::pause).size() == 2);
        CHECK(of_kind(z, Kind::lower_limit).empty());
    }
    SECTION("a Remaining above 0 teaches nothing") {
        CHECK(of_kind(r, Kind::lower_limit).empty());
    }
}

TEST_CASE("learning: a spent window on a limit named by type but of another value", "[feedback][reaction]") {
    // The vendor says which limit (its type) and that its window is spent, and its stated limit
    // is not the configured one: the vendor's real limit is what it accepted of ours.
    auto key = window_limit("close-key", 20);
    key.feedback.vendor_limit_type = "key";
    const std::vector<LimitInUse> uses{{&key, 1, 1, 13, 20}};
    VendorSignal s;
    s.limit_type = "key";
    s.limit = 12;
    s.remaining = 0;
    s.reset_after = 300ms;
    const auto r = run(s, uses);
    const auto lowered = of_kind(r, Kind::lower_limit);
    REQUIRE(lowered.size() == 1);
    CHECK(lowered[0].units == 12);
}

TEST_CASE("learning: a 429 lowers the refusing limit to what the vendor accepted", "[feedback][reaction]") {
    const auto a = window_limit("stricter", 166);
    SECTION("the accepted count excludes the request and what was admitted after it") {
        // 166 counted: this one, 65 sent after it, so the vendor took 100 before refusing.
        const std::vector<LimitInUse> uses{{&a, 1, 65, 166, 166}};
        const auto r = run(refusal(1s), uses, 429);
        const auto lowered = of_kind(r, Kind::lower_limit);
        REQUIRE(lowered.size() == 1);
        CHECK(lowered[0].units == 100);
        CHECK(r.lowered);
    }
    SECTION(
        "a reading above the limit in force is passed on (the limiter averages), not counted as lowered") {
        const std::vector<LimitInUse> uses{{&a, 1, 0, 120, 100}};  // learned 100 already in force
        const auto r = run(refusal(1s), uses, 429);
        CHECK(of_kind(r, Kind::lower_limit).at(0).units == 119);
        CHECK_FALSE(r.lowered);
    }
    SECTION("nothing at or above the configured limit") {
        const std::vector<LimitInUse> uses{{&a, 1, 0, 170, 166}};
        CHECK(of_kind(run(refusal(1s), uses, 429), Kind::lower_limit).empty());
    }
    SECTION("switched off") {
        FeedbackSettings settings;
        settings.learn = false;
        const std::vector<LimitInUse> uses{{&a, 1, 65, 166, 166}};
        CHECK(of_kind(run(refusal(1s), uses, 429, settings), Kind::lower_limit).empty());
    }
    SECTION("at least 1") {
        const std::vector<LimitInUse> uses{{&a, 1, 0, 1, 166}};
        CHECK(of_kind(run(refusal(1s), uses, 429), Kind::lower_limit).at(0).units == 1);
    }
}

TEST_CASE("learning without a named limit lowers only the fullest one", "[feedback][reaction]") {
    // Constant Contact: 4 per second and 10,000 per day. A refusal with no hint is
    // taken to come from the limit nearest its own limit: not the day's at 50 %.
    const auto second = window_limit("cc-second", 4);
    auto day = window_limit("cc-day", 10'000, 24h);
    day.algorithm = Algorithm::fixed_window;
    const std::vector<LimitInUse> uses{{&second, 1, 0, 4, 4}, {&day, 1, 0, 5'000, 10'000}};
    const auto r = run(refusal(1s), uses, 429);
    const auto lowered = of_kind(r, Kind::lower_limit);
    REQUIRE(lowered.size() == 1);
    CHECK(lowered[0].limit == 0);
    CHECK(lowered[0].units == 3);
    CHECK(of_kind(r, Kind::pause).size() == 2);  // the pause still holds both
}

TEST_CASE("learning: a vendor stating a lower limit than the only one configured", "[feedback][reaction]") {
    const auto a = window_limit("a", 166, 10s);
    const std::vector<LimitInUse> uses{{&a, 1, 0, 10, 166}};
    const auto r = run(report(100, 90, 5s), uses);
    const auto lowered = of_kind(r, Kind::lower_limit);
    REQUIRE(lowered.size() == 1);
    CHECK(lowered[0].units == 100);
}

TEST_CASE("concurrency limits and vendor gates are never learned", "[feedback][reaction]") {
    LimitConfig conc;
    conc.name = "conc";
    conc.algorithm = Algorithm::concurrency;
    conc.limit = 10;
    const std::vector<LimitInUse> uses{{&conc, 1, 0, 9, 10}};
    const auto r = run(refusal(1s), uses, 429);
    CHECK(of_kind(r, Kind::lower_limit).empty());
    CHECK(of_kind(r, Kind::pause).size() == 1);
}

TEST_CASE("a 429 stating the vendor's remaining count teaches nothing", "[feedback][reaction]") {
    // Close's 429s carry x-rate-limit-remaining: the refusal is explained by the
    // vendor's count (someone else's share included), not by a stricter limit.
    const auto a = window_limit("close-key", 20);
    const std::vector<LimitInUse> uses{{&a, 1, 0, 5, 20}};
    auto s = refusal(400ms);
    s.limit = 20;
    s.remaining = 0;
    s.reset_after = 400ms;
    const auto r = run(s, uses, 429);
    CHECK(of_kind(r, Kind::lower_limit).empty());
    CHECK(of_kind(r, Kind::pause).size() == 1);
}
