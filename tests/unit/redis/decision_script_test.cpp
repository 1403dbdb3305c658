// The decision script against a real Redis, with the clock override: each algorithm's exact
// edges (the unit past the limit refused until exactly the right microsecond), all-or-nothing
// across limits, shadow limits, vendor pause and cap, leases, record, refund, and key expiry.

#include "sluice/redis/decision_script.hpp"

#include <chrono>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "unit/redis/script_redis.hpp"

using namespace std::chrono_literals;

namespace sluice::redis {
namespace {

using script_test::ScriptRedis;

constexpr std::int64_t kT0 = 1'700'000'000'000'000;  // Unix us (2023-11-14 22:13:20 UTC)
constexpr std::string_view kPrefix = "t";

config::LimitConfig make(config::Algorithm algorithm, std::string name, std::int64_t limit, Nanos window) {
    config::LimitConfig c;
    c.name = std::move(name);
    c.algorithm = algorithm;
    c.limit = limit;
    c.window = window;
    return c;
}

struct Harness {
    ScriptRedis& redis = ScriptRedis::instance();
    Harness() { redis.flush(); }

    AcquireResult run(const ScriptCall& call, std::size_t uses) {
        std::string error;
        const auto result = decode_decision(redis.eval(call), uses, error);
        INFO(error);
        REQUIRE(result);
        return *result;
    }
    AcquireResult acquire(const std::vector<SharedUse>& uses, std::int64_t at_us,
                          std::string_view lease_id = "r1:1", Nanos lease = 10s) {
        return run(encode_acquire(kPrefix, uses, lease_id, lease, Nanos{at_us * 1000}, at_us), uses.size());
    }
    AcquireResult peek(const std::vector<SharedUse>& uses, std::int64_t at_us) {
        return run(encode_peek(kPrefix, uses, Nanos{at_us * 1000}, at_us), uses.size());
    }
    UseDecision one(const config::LimitConfig& limit, std::int64_t at_us, std::int64_t cost = 1) {
        return acquire({SharedUse{&limit, 7, cost}}, at_us).uses.at(0);
    }
    long long integer(const ScriptCall& call) {
        const Reply r = redis.eval(call);
        INFO(r.str);
        REQUIRE(r.type == Reply::Type::integer);
        return r.integer;
    }
    long long pttl(const std::string& key) { return redis.command({"PTTL", key}).integer; }
};

}  // namespace

TEST_CASE("sliding log: the unit past the limit waits until the oldest leaves, to the microsecond") {
    Harness h;
    const auto limit = make(config::Algorithm::sliding_window, "log", 3, 1s);
    CHECK(h.one(limit, kT0).allowed);
    CHECK(h.one(limit, kT0 + 100).allowed);
    const UseDecision third = h.one(limit, kT0 + 200);
    CHECK(third.allowed);
    CHECK(third.remaining == 1);  // before this request
    CHECK(third.limit == 3);
    const UseDecision refused = h.one(limit, kT0 + 300);
    CHECK_FALSE(refused.allowed);
    CHECK(refused.predictable);
    CHECK(refused.earliest_delay == Nanos{(1'000'000 - 300) * 1000});
    CHECK(refused.remaining == 0);
    CHECK(refused.reset_delay == Nanos{(1'000'200 - 300) * 1000});
    CHECK_FALSE(h.one(limit, kT0 + 999'999).allowed);
    CHECK(h.one(limit, kT0 + 1'000'000).allowed);
    // Two units need the two oldest gone: the second oldest leaves at +1 000 100.
    const UseDecision two = h.one(limit, kT0 + 1'000'000, 2);
    CHECK_FALSE(two.allowed);
    CHECK(two.earliest_delay == Nanos{200'000});
    // A cost above the limit never fits.
    const UseDecision never = h.one(limit, kT0 + 1'000'000, 4);
    CHECK_FALSE(never.allowed);
    CHECK(never.earliest_delay == kNever);
}

TEST_CASE("sliding buckets: a bucket counts until its newest possible unit has left") {
    Harness h;
    // D = 255 ms: g = 1 ms; the bucket of kT0 + 500 is [kT0, kT0 + 1 ms), whose newest possible unit
    // (memory counts in ns: kT0 + 999.999 us) leaves at kT0 + 255.999999 ms: counted until kT0 + 256 000 us.
    const auto limit = make(config::Algorithm::sliding_window, "ring", 1000, 255ms);
    CHECK(h.one(limit, kT0 + 500, 1000).allowed);
    const UseDecision refused = h.one(limit, kT0 + 600);
    CHECK_FALSE(refused.allowed);
    CHECK(refused.earliest_delay == Nanos{(256'000 - 600) * 1000});
    CHECK(refused.reset_delay == Nanos{(256'000 - 600) * 1000});
    CHECK_FALSE(h.one(limit, kT0 + 255'999).allowed);
    CHECK(h.one(limit, kT0 + 256'000).allowed);
}

TEST_CASE("token bucket: burst, then one token per period / limit") {
    Harness h;
    auto limit = make(config::Algorithm::token_bucket, "tb", 10, 1s);
    limit.burst = 5;
    for (int i = 0; i < 5; ++i) CHECK(h.one(limit, kT0).allowed);
    const UseDecision refused = h.one(limit, kT0);
    CHECK_FALSE(refused.allowed);
    CHECK(refused.limit == 5);
    CHECK(refused.remaining == 0);
    CHECK(refused.earliest_delay == 100ms);
    CHECK(refused.reset_delay == 500ms);
    CHECK_FALSE(h.one(limit, kT0 + 99'999).allowed);
    CHECK(h.one(limit, kT0 + 100'000).allowed);
    // A third of a token: 3 per second is 333 333.33 us per token, rounded up.
    auto thirds = make(config::Algorithm::token_bucket, "tb3", 3, 1s);
    thirds.burst = 1;
    CHECK(h.one(thirds, kT0).allowed);
    CHECK(h.one(thirds, kT0).earliest_delay == Nanos{333'334'000});
    CHECK_FALSE(h.one(thirds, kT0 + 333'333).allowed);
    CHECK(h.one(thirds, kT0 + 333'334).allowed);
}

TEST_CASE("fixed window: aligned by utc_offset, the margin counts near a boundary in both windows") {
    Harness h;
    auto limit = make(config::Algorithm::fixed_window, "fw", 2, 24h);
    limit.utc_offset = -5h;  // windows from 05:00 UTC
    const std::int64_t day = 86'400'000'000;
    const std::int64_t boundary =
        kT0 / day * day + 5 * 3'600'000'000LL + (kT0 % day >= 5 * 3'600'000'000LL ? day : 0);
    CHECK(h.one(limit, boundary - 1'000'000, 2).allowed);
    const UseDecision refused = h.one(limit, boundary - 1'000'000);
    CHECK_FALSE(refused.allowed);
    CHECK(refused.earliest_delay == 1s);
    CHECK_FALSE(h.one(limit, boundary - 1).allowed);
    CHECK(h.one(limit, boundary).allowed);

    auto margined = make(config::Algorithm::fixed_window, "fwm", 2, 24h);
    margined.utc_offset = -5h;
    margined.margin = 1s;
    // Admitted 0.5 s before the boundary: counts in the next window too.
    CHECK(h.one(margined, boundary - 500'000, 2).allowed);
    const UseDecision held = h.one(margined, boundary + 10);
    CHECK_FALSE(held.allowed);
    // Both windows hold the 2 units: the next one's count holds until its own end + M.
    CHECK(held.earliest_delay == 24h + 1s - 10us);
    CHECK(held.remaining == 0);
    // Admitted 1.5 s before the boundary: counts in the first window only, which holds until +M.
    auto early = margined;
    early.name = "fwe";
    CHECK(h.one(early, boundary - 1'500'000, 2).allowed);
    const UseDecision until_margin = h.one(early, boundary + 10);
    CHECK_FALSE(until_margin.allowed);
    CHECK(until_margin.earliest_delay == 1s - 10us);
    CHECK_FALSE(h.one(early, boundary + 999'999).allowed);
    CHECK(h.one(early, boundary + 1'000'000).allowed);
}

TEST_CASE("fixed window in a time zone: the zone's offset at wall_now places local midnight") {
    Harness h;
    auto limit = make(config::Algorithm::fixed_window, "ny", 1, 24h);
    limit.time_zone = "America/New_York";
    const auto at = [&](std::int64_t us) {
        return h.acquire({SharedUse{&limit, 1, 1}}, us, "l", 10s).uses.at(0);
    };
    // 2024-01-15 05:00 UTC is midnight in New York (EST, UTC-5).
    const std::int64_t winter = 1'705'294'800'000'000;
    CHECK(at(winter - 10).allowed);
    const UseDecision refused = at(winter - 5);
    CHECK_FALSE(refused.allowed);
    CHECK(refused.earliest_delay == 5us);
    CHECK(at(winter).allowed);
    // 2024-07-15 04:00 UTC is midnight there (EDT, UTC-4).
    const std::int64_t summer = 1'721'016'000'000'000;
    CHECK(at(summer - 10).allowed);
    CHECK(at(summer - 5).earliest_delay == 5us);
    CHECK(at(summer).allowed);
}

TEST_CASE("concurrency: leases held, released, renewed, and expired leases give permits back") {
    Harness h;
    const auto limit = make(config::Algorithm::concurrency, "conc", 2, 0s);
    const std::vector<SharedUse> use{SharedUse{&limit, 9, 1}};
    CHECK(h.acquire(use, kT0, "a", 10s).allowed);
    CHECK(h.acquire(use, kT0 + 1'000'000, "b", 10s).allowed);
    const AcquireResult refused = h.acquire(use, kT0 + 2'000'000, "c", 10s);
    CHECK_FALSE(refused.allowed);
    CHECK_FALSE(refused.uses[0].predictable);
    CHECK(refused.uses[0].earliest_delay == 8s);  // lease a expires at +10 s
    CHECK(refused.uses[0].reset_delay == kNever);
    // Release a: c fits.
    CHECK(h.integer(encode_release(kPrefix, use, "a")) == 1);
    CHECK(h.acquire(use, kT0 + 2'000'000, "c", 10s).allowed);
    CHECK_FALSE(h.acquire(use, kT0 + 2'000'001, "d", 10s).allowed);
    // Renew b at +5 s to +15 s; c (to +12 s) is not renewed.
    CHECK(h.integer(encode_renew(kPrefix, use, "b", 10s, kT0 + 5'000'000)) == 1);
    CHECK_FALSE(h.acquire(use, kT0 + 11'999'999, "d", 10s).allowed);
    CHECK(h.acquire(use, kT0 + 12'000'000, "d", 10s).allowed);  // c expired
    CHECK_FALSE(h.acquire(use, kT0 + 14'999'999, "e", 10s).allowed);
    CHECK(h.acquire(use, kT0 + 15'000'000, "e", 10s).allowed);  // b expired
    // A released lease cannot be renewed back into existence.
    CHECK(h.integer(encode_release(kPrefix, use, "e")) == 1);
    CHECK(h.integer(encode_renew(kPrefix, use, "e", 10s, kT0 + 15'000'001)) == 1);
    CHECK(h.peek(use, kT0 + 15'000'002).uses[0].remaining == 1);  // d only
}

TEST_CASE("all-or-nothing: a request over two limits where one refuses consumes from neither") {
    Harness h;
    const auto wide = make(config::Algorithm::sliding_window, "wide", 5, 1s);
    const auto narrow = make(config::Algorithm::token_bucket, "narrow", 1, 1s);
    const std::vector<SharedUse> both{SharedUse{&wide, 1, 1}, SharedUse{&narrow, 1, 1}};
    const AcquireResult first = h.acquire(both, kT0);
    CHECK(first.allowed);
    REQUIRE(first.limiting);
    CHECK(*first.limiting == 1);  // the tightest: narrow has nothing left after it
    const AcquireResult second = h.acquire(both, kT0 + 10);
    CHECK_FALSE(second.allowed);
    REQUIRE(second.limiting);
    CHECK(*second.limiting == 1);
    CHECK(second.uses[0].allowed);
    CHECK_FALSE(second.uses[1].allowed);
    for (int i = 0; i < 3; ++i) CHECK_FALSE(h.acquire(both, kT0 + 20 + i).allowed);
    CHECK(h.peek({SharedUse{&wide, 1, 1}}, kT0 + 100).uses[0].remaining == 4);  // only the first counted
    // A refused request writes nothing at all, not even to keys it would have created.
    const auto fresh = make(config::Algorithm::sliding_window, "fresh", 5, 1s);
    const SharedUse fresh_use{&fresh, 1, 1};
    CHECK_FALSE(h.acquire({fresh_use, SharedUse{&narrow, 1, 1}}, kT0 + 200).allowed);
    CHECK(h.redis.command({"EXISTS", state_key(kPrefix, fresh_use)}).integer == 0);
}

TEST_CASE("peek decides every algorithm and writes nothing") {
    Harness h;
    const auto log = make(config::Algorithm::sliding_window, "p-log", 3, 1s);
    const auto ring = make(config::Algorithm::sliding_window, "p-ring", 1000, 1s);
    const auto token = make(config::Algorithm::token_bucket, "p-tb", 10, 1s);
    const auto fixed = make(config::Algorithm::fixed_window, "p-fw", 10, 1h);
    const auto conc = make(config::Algorithm::concurrency, "p-c", 10, 0s);
    const std::vector<SharedUse> uses{SharedUse{&log, 1, 1}, SharedUse{&ring, 1, 1}, SharedUse{&token, 1, 1},
                                      SharedUse{&fixed, 1, 1}, SharedUse{&conc, 1, 1}};
    const AcquireResult peeked = h.peek(uses, kT0);
    CHECK(peeked.allowed);
    for (const UseDecision& d : peeked.uses) CHECK(d.remaining == d.limit);
    CHECK(h.redis.command({"DBSIZE"}).integer == 0);
}

TEST_CASE("shadow limits are counted on admission and never refuse") {
    Harness h;
    const auto enforced = make(config::Algorithm::sliding_window, "enf", 10, 1s);
    auto shadow = make(config::Algorithm::sliding_window, "shadow", 1, 1s);
    shadow.enforce = false;
    const std::vector<SharedUse> both{SharedUse{&enforced, 1, 1}, SharedUse{&shadow, 1, 1}};
    CHECK(h.acquire(both, kT0).allowed);
    const AcquireResult over = h.acquire(both, kT0 + 1);
    CHECK(over.allowed);
    CHECK_FALSE(over.uses[1].allowed);  // reported as the shadow limit would have refused
    REQUIRE(over.limiting);
    CHECK(*over.limiting == 0);  // shadow limits are never the limiting one
    CHECK(h.peek({SharedUse{&shadow, 1, 1}}, kT0 + 2).uses[0].remaining == 0);
    // Past its limit, a log keeps `limit` units and folds the oldest into a lump (bounded, as in memory).
    const std::string key = state_key(kPrefix, SharedUse{&shadow, 1, 1});
    CHECK(h.acquire(both, kT0 + 3).allowed);
    CHECK(h.redis.command({"ZCARD", key}).integer == 1);
    CHECK(h.redis.command({"HGET", key + ":o", "lump_units"}).str == "2");
    CHECK(h.redis.command({"HGET", key + ":o", "lump_at"}).str == std::to_string(kT0 + 1));
    const UseDecision counted = h.peek({SharedUse{&shadow, 1, 1}}, kT0 + 4).uses[0];
    CHECK(counted.remaining == 0);
    CHECK(counted.earliest_delay == Nanos{(1'000'000 + 3 - 4) * 1000});  // the newest unit leaves last
    CHECK(h.pttl(key + ":o") > 1'900);  // the lump lives as long as it counts
}

TEST_CASE("vendor pause and cap are shared per (limit, key)") {
    Harness h;
    const auto limit = make(config::Algorithm::sliding_window, "vendor", 100, 10s);
    const SharedUse use{&limit, 7, 1};
    CHECK(h.integer(encode_pause(kPrefix, use, 2s, "vendor_refused", kT0)) == 1);
    CHECK(h.integer(encode_pause(kPrefix, use, 1s, "vendor_refused", kT0)) == 0);  // never shortened
    const UseDecision paused = h.one(limit, kT0 + 500'000);
    CHECK_FALSE(paused.allowed);
    CHECK(paused.earliest_delay == 1500ms);
    CHECK(paused.remaining == 0);
    CHECK_FALSE(h.one(limit, kT0 + 1'999'999).allowed);
    CHECK(h.one(limit, kT0 + 2'000'000).allowed);
    // Another key of the same limit is not paused.
    CHECK(h.acquire({SharedUse{&limit, 4, 1}}, kT0 + 1).allowed);

    CHECK(h.integer(encode_cap(kPrefix, use, 2, 5s, kT0 + 3'000'000)) == 1);
    CHECK(h.integer(encode_cap(kPrefix, use, 50, 4s, kT0 + 3'000'000)) ==
          1);  // same vendor window: not raised
    const UseDecision capped = h.one(limit, kT0 + 3'000'000);
    CHECK(capped.allowed);
    CHECK(capped.remaining == 2);
    CHECK(h.one(limit, kT0 + 3'000'001).allowed);
    const UseDecision spent = h.one(limit, kT0 + 3'000'002);
    CHECK_FALSE(spent.allowed);
    CHECK(spent.earliest_delay == Nanos{(5'000'000LL - 2) * 1000});
    CHECK(h.one(limit, kT0 + 8'000'000).allowed);
}

TEST_CASE("record counts units admitted elsewhere at their age, never checked") {
    Harness h;
    const auto limit = make(config::Algorithm::sliding_window, "rec", 3, 1s);
    const SharedUse use{&limit, 7, 3};
    CHECK(h.integer(encode_record(kPrefix, {RecordedLot{use, 200ms}}, Nanos{kT0 * 1000}, kT0)) == 1);
    const UseDecision refused = h.one(limit, kT0);
    CHECK_FALSE(refused.allowed);
    CHECK(refused.earliest_delay == 800ms);
    CHECK(h.one(limit, kT0 + 800'000).allowed);
    // Recording past the limit is allowed (counts only add).
    CHECK(h.integer(encode_record(kPrefix, {RecordedLot{SharedUse{&limit, 7, 5}, 0ns}}, Nanos{kT0 * 1000},
                                  kT0 + 800'000)) == 1);
    CHECK(h.peek({use}, kT0 + 800'001).uses[0].remaining == 0);
    // Units older than the window are not recorded.
    auto token = make(config::Algorithm::token_bucket, "rec-tb", 2, 1s);
    const SharedUse tb{&token, 7, 2};
    h.integer(encode_record(kPrefix, {RecordedLot{tb, 250ms}}, Nanos{kT0 * 1000}, kT0));
    const UseDecision t = h.one(token, kT0);  // 2 tokens taken 250 ms ago: half of one back
    CHECK_FALSE(t.allowed);
    CHECK(t.earliest_delay == 250ms);
}

TEST_CASE("record into a bucket ring and a fixed window counts where the units were admitted") {
    Harness h;
    // g = 1 ms: units admitted 10.5 ms before kT0 + 500 (at kT0 - 10 000) are in bucket [kT0 - 10 ms, kT0 - 9
    // ms), counted until kT0 - 9 000 + 255 000.
    const auto ring = make(config::Algorithm::sliding_window, "rec-ring", 1000, 255ms);
    const SharedUse r{&ring, 7, 1000};
    CHECK(h.integer(encode_record(kPrefix, {RecordedLot{r, 10'500us}}, Nanos{kT0 * 1000}, kT0 + 500)) == 1);
    const UseDecision held = h.one(ring, kT0 + 500);
    CHECK_FALSE(held.allowed);
    CHECK(held.earliest_delay == Nanos{(246'000 - 500) * 1000});
    CHECK(h.one(ring, kT0 + 246'000).allowed);

    // A fixed window: 2 units admitted 1 s before a boundary fill the window they were admitted in.
    auto fixed = make(config::Algorithm::fixed_window, "rec-fw", 2, 10s);
    const std::int64_t boundary = (kT0 / 10'000'000 + 1) * 10'000'000;
    const SharedUse f{&fixed, 7, 2};
    CHECK(h.integer(encode_record(kPrefix, {RecordedLot{f, 1s}}, Nanos{kT0 * 1000}, boundary - 500'000)) ==
          1);
    const UseDecision full = h.one(fixed, boundary - 400'000);
    CHECK_FALSE(full.allowed);
    CHECK(full.earliest_delay == 400ms);
    CHECK(h.one(fixed, boundary).allowed);
    // Concurrency records nothing (leases are not merged).
    const auto conc = make(config::Algorithm::concurrency, "rec-c", 1, 0s);
    h.integer(encode_record(kPrefix, {RecordedLot{SharedUse{&conc, 7, 5}, 0ns}}, Nanos{kT0 * 1000}, kT0));
    CHECK(h.one(conc, kT0).allowed);
}

TEST_CASE("every written key expires once nothing in it counts") {
    Harness h;
    const auto log = make(config::Algorithm::sliding_window, "e-log", 3, 10s);
    const auto ring = make(config::Algorithm::sliding_window, "e-ring", 1000, 10s);
    const auto token = make(config::Algorithm::token_bucket, "e-tb", 10, 10s);
    auto fixed = make(config::Algorithm::fixed_window, "e-fw", 10, 1h);
    const auto conc = make(config::Algorithm::concurrency, "e-c", 10, 0s);
    const std::vector<SharedUse> uses{SharedUse{&log, 1, 1}, SharedUse{&ring, 1, 1}, SharedUse{&token, 1, 1},
                                      SharedUse{&fixed, 1, 1}, SharedUse{&conc, 1, 1}};
    CHECK(h.acquire(uses, kT0, "l", 30s).allowed);
    CHECK(h.integer(encode_pause(kPrefix, uses[0], 20s, "quota_spent", kT0)) == 1);
    const auto ttl = [&](const SharedUse& use, std::string suffix = "") {
        return h.pttl(state_key(kPrefix, use) + suffix);
    };
    // PTTL runs on Redis's own clock: a few ms may have passed since the PEXPIRE.
    const auto near = [](long long actual, long long expected) {
        return actual <= expected && actual > expected - 100;
    };
    CHECK(near(ttl(uses[0]), 11'000));
    CHECK(ttl(uses[1]) > 11'000 - 100);  // the window, then up to a bucket's width (40 ms)
    CHECK(ttl(uses[1]) <= 11'000 + 40);
    CHECK(near(ttl(uses[2]), 2'001));  // one token's debt
    CHECK(near(ttl(uses[3]), 3'600'000LL - (kT0 / 1000 % 3'600'000) + 1'000));
    CHECK(near(ttl(uses[4]), 31'000));
    CHECK(near(ttl(uses[0], ":o"), 21'000));
    CHECK(h.redis.command({"TTL", std::string("{t}:seq")}).integer == -1);  // the one global counter
}

TEST_CASE("decode_decision refuses errors and replies of another shape") {
    std::string error;
    Reply failed;
    failed.type = Reply::Type::error;
    failed.str = "ERR boom";
    CHECK_FALSE(decode_decision(failed, 1, error));
    CHECK(error.find("ERR boom") != std::string::npos);
    Reply wrong;
    wrong.type = Reply::Type::array;
    wrong.elements.resize(2);
    CHECK_FALSE(decode_decision(wrong, 1, error));
    // A malformed call is an error reply, never a decision.
    const auto limit = make(config::Algorithm::sliding_window, "bad", 3, 1s);
    ScriptCall bad = encode_peek(kPrefix, {SharedUse{&limit, 1, 1}}, Nanos{0}, kT0);
    bad.args[6] = "x";
    CHECK_FALSE(decode_decision(ScriptRedis::instance().eval(bad), 1, error));
    CHECK(error.find("malformed") != std::string::npos);
    CHECK(decision_script().sha1.size() == 40);
    CHECK(decision_script().source.find("redis.call('TIME')") != std::string::npos);
}

namespace {

// Units admitted one by one at `at_us` on key 7 until the first refusal (bounded).
std::int64_t admitted_until_refused(Harness& h, const config::LimitConfig& limit, std::int64_t at_us) {
    std::int64_t admitted = 0;
    while (admitted < 2'000 && h.one(limit, at_us).allowed) ++admitted;
    return admitted;
}

// Gives back `units` on key 7 of an admission made at `admitted_us`, at `now_us`: the lots that
// gave anything back.
long long refund(Harness& h, const config::LimitConfig& limit, std::int64_t units, std::int64_t admitted_us,
                 std::int64_t now_us, Nanos slack = 0ns) {
    const RecordedLot lot{SharedUse{&limit, 7, units}, Nanos{(now_us - admitted_us) * 1000}};
    return h.integer(encode_refund(kPrefix, {lot}, slack, Nanos{now_us * 1000}, now_us));
}

// The three promises of a refund, for an algorithm whose `capacity` units fit at once at kT0 and
// where an admission at kT0 no longer counts at `passed_us` (nor at any time after it):
// - k given back at the admission's time: exactly k more fit, no more;
// - given back once the admission's window has passed: nothing more fits (the units counted
//   since are not taken instead);
// - more given back than was admitted: never below zero, the limit still holds.
void check_refund(const config::LimitConfig& limit, std::int64_t capacity, std::int64_t passed_us) {
    SECTION("k given back at the admission's time: exactly k more are admitted") {
        Harness h;
        CHECK(admitted_until_refused(h, limit, kT0) == capacity);
        CHECK(refund(h, limit, 2, kT0, kT0) == 1);
        CHECK(admitted_until_refused(h, limit, kT0) == 2);
    }
    SECTION("given back once its window has passed: nothing") {
        Harness h;
        CHECK(h.one(limit, kT0).allowed);
        CHECK(admitted_until_refused(h, limit, passed_us) == capacity);
        CHECK(refund(h, limit, 1, kT0, passed_us) == 0);
        CHECK(admitted_until_refused(h, limit, passed_us) == 0);
    }
    SECTION("more given back than was admitted: never below zero") {
        Harness h;
        CHECK(h.one(limit, kT0, 2).allowed);
        CHECK(refund(h, limit, capacity + 5, kT0, kT0) == 1);
        CHECK(admitted_until_refused(h, limit, kT0) == capacity);
    }
}

}  // namespace

TEST_CASE("refund, sliding log: the units go back while in the window, never below zero") {
    check_refund(make(config::Algorithm::sliding_window, "rf-log", 5, 1s), 5, kT0 + 1'000'000);
}

TEST_CASE("refund, sliding log: the oldest units since the admission go, so none is held shorter") {
    Harness h;
    const auto limit = make(config::Algorithm::sliding_window, "rf-log2", 4, 1s);
    for (std::int64_t i = 0; i < 4; ++i) CHECK(h.one(limit, kT0 + i * 100).allowed);
    // Admitted at +150 (logged later, at +200 here): the unit at +200 goes, not the one at +300,
    // which would leave the window later than the request's own.
    CHECK(refund(h, limit, 1, kT0 + 150, kT0 + 500) == 1);
    CHECK(admitted_until_refused(h, limit, kT0 + 500) == 1);
    const UseDecision refused = h.one(limit, kT0 + 600);
    CHECK_FALSE(refused.allowed);
    CHECK(refused.earliest_delay == Nanos{(1'000'000 - 600) * 1000});  // the unit at +0 leaves first
    // Once +0, +100 (and +200) have left, +300 and +500 still count: two fit, not three.
    CHECK(admitted_until_refused(h, limit, kT0 + 1'000'200) == 2);
    const std::string key = state_key(kPrefix, SharedUse{&limit, 7, 1});
    CHECK(h.redis.command({"ZCARD", key}).integer == 4);
    // Admitted after the newest unit: nothing of it is logged, nothing goes.
    CHECK(refund(h, limit, 1, kT0 + 1'000'201, kT0 + 1'000'300) == 0);
    // Past the limit (a charge; +300 has left by then), the two oldest units are folded into a
    // lump dated +1 000 200. A request admitted at or before that may be in it, and the units
    // logged after it newer than its own: nothing goes.
    CHECK(h.integer(encode_record(kPrefix, {RecordedLot{SharedUse{&limit, 7, 3}, 0ns}}, Nanos{kT0 * 1000},
                                  kT0 + 1'000'400)) == 1);
    CHECK(refund(h, limit, 1, kT0 + 1'000'200, kT0 + 1'000'500) == 0);
    CHECK(h.redis.command({"ZCARD", key}).integer == 4);
    // Admitted after the lump's date: its units are in the log (the 3 at +1 000 400 go, not the
    // older one at +1 000 200), and the lump is not given back.
    CHECK(refund(h, limit, 10, kT0 + 1'000'201, kT0 + 1'000'500) == 1);
    CHECK(h.redis.command({"ZCARD", key}).integer == 1);
    CHECK(h.peek({SharedUse{&limit, 7, 1}}, kT0 + 1'000'500).uses[0].remaining == 1);  // 2 lumped, 1 logged
}

TEST_CASE(
    "refund with a date slack: the windows date the admission that much earlier, a token bucket counts its "
    "refill over it") {
    Harness h;
    const auto limit = make(config::Algorithm::sliding_window, "rf-slack", 4, 1s);
    const std::string key = state_key(kPrefix, SharedUse{&limit, 7, 1});
    const auto scores = [&] {
        std::vector<long long> at;
        const Reply r = h.redis.command({"ZRANGE", key, "0", "-1", "WITHSCORES"});
        for (std::size_t i = 1; i < r.elements.size(); i += 2)
            at.push_back(std::stoll(r.elements[i].str) - kT0);
        return at;
    };
    for (std::int64_t i = 0; i < 4; ++i) CHECK(h.one(limit, kT0 + i * 100).allowed);
    // Admitted at +250, dated 100 us earlier: the unit at +200 goes (the one at +300 without the slack).
    CHECK(refund(h, limit, 1, kT0 + 250, kT0 + 500, 100us) == 1);
    CHECK(scores() == std::vector<long long>{0, 100, 300});
    CHECK(refund(h, limit, 1, kT0 + 250, kT0 + 500) == 1);
    CHECK(scores() == std::vector<long long>{0, 100});

    // The token bucket's refill since the admission counts over the slack too: of two tokens
    // refunded at once with 100 ms of slack at 10 per second, one refilled meanwhile; one comes
    // back. With the whole second as slack, both had refilled: nothing comes back.
    auto token = make(config::Algorithm::token_bucket, "rf-slack-tb", 10, 1s);
    token.burst = 5;
    CHECK(admitted_until_refused(h, token, kT0) == 5);
    CHECK(refund(h, token, 2, kT0, kT0, 100ms) == 1);
    CHECK(admitted_until_refused(h, token, kT0) == 1);
    CHECK(refund(h, token, 2, kT0, kT0, 1s) == 0);
    CHECK(admitted_until_refused(h, token, kT0) == 0);
}

TEST_CASE("refund, sliding buckets: from the admission's bucket on, oldest first, never below zero") {
    // D = 255 ms: g = 1 ms; a bucket of kT0 counts until its end + D.
    const auto limit = make(config::Algorithm::sliding_window, "rf-ring", 300, 255ms);
    const std::int64_t g = 1'000;
    check_refund(limit, 300, (kT0 / g + 1) * g + 255'000);

    Harness h;
    CHECK(h.one(limit, kT0, 100).allowed);
    CHECK(h.one(limit, kT0 + 5'000, 200).allowed);
    // Admitted in the second bucket: the first keeps its 100; 150 leave the second.
    CHECK(refund(h, limit, 150, kT0 + 5'000, kT0 + 6'000) == 1);
    CHECK(admitted_until_refused(h, limit, kT0 + 6'000) == 150);
    // Once the first bucket has expired, its 100 free room; the second's 50 and the 150 still count.
    CHECK(admitted_until_refused(h, limit, kT0 + 256'000) == 100);
    // No bucket goes below zero.
    const Reply counts = h.redis.command({"HVALS", state_key(kPrefix, SharedUse{&limit, 7, 1})});
    for (const auto& c : counts.elements) CHECK(std::stoll(c.str) >= 0);
}

TEST_CASE("refund, token bucket: tokens back less what refilled since the admission") {
    auto limit = make(config::Algorithm::token_bucket, "rf-tb", 10, 1s);
    limit.burst = 5;
    // One token per 100 ms: an admission at kT0 has refilled by kT0 + 100 ms.
    check_refund(limit, 5, kT0 + 500'000);

    Harness h;
    CHECK(admitted_until_refused(h, limit, kT0) == 5);
    // Two tokens back 150 ms after the admission: 1.5 tokens have refilled since, so half a token
    // comes back: two fit (1.5 + 0.5), not three.
    CHECK(refund(h, limit, 2, kT0, kT0 + 150'000) == 1);
    CHECK(admitted_until_refused(h, limit, kT0 + 150'000) == 2);
    CHECK(h.one(limit, kT0 + 150'000).earliest_delay == 100ms);
    // All that is owed given back: the key goes; a full bucket has nothing to give back.
    CHECK(refund(h, limit, 5, kT0 + 150'000, kT0 + 150'000) == 1);
    CHECK(h.redis.command({"EXISTS", state_key(kPrefix, SharedUse{&limit, 7, 1})}).integer == 0);
    CHECK(refund(h, limit, 1, kT0 + 150'000, kT0 + 150'000) == 0);
}

TEST_CASE("refund, fixed window: from the windows still held that the admission counted in") {
    auto limit = make(config::Algorithm::fixed_window, "rf-fw", 4, 10s);
    const std::int64_t boundary = (kT0 / 10'000'000 + 1) * 10'000'000;
    check_refund(limit, 4, boundary);

    // With a margin, an admission 0.5 s before a boundary counted in both windows: given back in
    // both while both are held, then only in the one still held.
    Harness h;
    auto margined = make(config::Algorithm::fixed_window, "rf-fwm", 4, 10s);
    margined.margin = 1s;
    CHECK(h.one(margined, boundary - 500'000, 4).allowed);
    CHECK(refund(h, margined, 1, boundary - 500'000, boundary - 400'000) == 1);
    CHECK(admitted_until_refused(h, margined, boundary - 400'000) == 1);
    CHECK(refund(h, margined, 2, boundary - 400'000, boundary + 1'500'000) == 1);
    CHECK(admitted_until_refused(h, margined, boundary + 1'500'000) == 2);
}

TEST_CASE("refund gives nothing back for concurrency and vendor gates") {
    Harness h;
    const auto conc = make(config::Algorithm::concurrency, "rf-c", 1, 0s);
    CHECK(h.one(conc, kT0).allowed);
    CHECK(refund(h, conc, 1, kT0, kT0) == 0);
    CHECK_FALSE(h.one(conc, kT0).allowed);
}

}  // namespace sluice::redis
