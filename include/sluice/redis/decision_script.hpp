#pragma once
// The C++ side of the shared limits' decision script (src/redis/decision_script.lua): every
// operation on a limit shared through Redis is one EVALSHA of that script, and this header
// builds its KEYS and ARGV and reads its answer. Pure code: no I/O, no clock (the caller passes
// its wall time, needed only for a time zone's UTC offset; the script reads Redis's TIME).
//
// The script applies the in-memory limiters' semantics (src/limit/*.cpp) in microseconds.
// Durations going in are rounded so that Redis never admits earlier than memory would (windows,
// margins, pauses, caps and leases rounded up, ages of recorded units rounded down and of refunded
// ones up); delays coming out are whole microseconds, already rounded up by the script.
//
// Key layout: {<prefix>}:l:<limit name>:<tag>:<key hash hex> (state) and the same plus ":o"
// (vendor pause and cap), {<prefix>}:seq; tag is s (sliding log), b (sliding buckets),
// t (token bucket), f (fixed window), c (concurrency) or g (vendor gate).

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/common/clock.hpp"
#include "sluice/config/config.hpp"
#include "sluice/limit/limiter.hpp"
#include "sluice/redis/redis_connection.hpp"  // Reply, Script

namespace sluice::redis {

// One limit a request uses: the limit's config (must outlive the call), the key, the cost.
struct SharedUse {
    const config::LimitConfig* limit = nullptr;
    limit::KeyHash key = 0;
    std::int64_t cost = 1;
};

// What to send: EVALSHA decision_script().sha1, keys.size(), keys..., args...
struct ScriptCall {
    std::vector<std::string> keys;
    std::vector<std::string> args;
};

// One use's answer; delays are from the Redis TIME the script read. kNever (Nanos::max())
// stands for "never" in earliest_delay and reset_delay: add with saturation.
struct UseDecision {
    bool allowed = false;
    bool predictable = true;  // false: no time is known (concurrency waits for a release); earliest_delay
                              // is a hint: when enough leases expire if none is renewed
    Nanos earliest_delay{0};  // 0 when allowed
    std::int64_t limit = 0, remaining = 0;  // as limit::Decision
    Nanos reset_delay{0};
};

// The request's answer: allowed iff every enforced use allowed (then all uses were consumed);
// `limiting` is the refusing enforced use whose earliest is latest, else the tightest enforced use
// (as the admission controller picks the limit the rate-limit headers describe).
struct AcquireResult {
    bool allowed = false;
    std::optional<std::size_t> limiting;
    std::vector<UseDecision> uses;
};

// The Lua source, embedded at build time, and its SHA1.
const Script& decision_script();

// All-or-nothing: decides every use, then consumes all of them only if every enforced one allows
// (shadow uses, enforce: false, are counted on admission and never refuse). Concurrency uses
// take `cost` permits held by `lease_id` for `lease` (renew them before it runs out).
// `wall_now` gives a zoned fixed window's current UTC offset. clock_override_us != 0 replaces
// Redis TIME (Unix microseconds; tests only).
ScriptCall encode_acquire(std::string_view prefix, const std::vector<SharedUse>& uses,
                          std::string_view lease_id, Nanos lease, Nanos wall_now,
                          std::int64_t clock_override_us = 0);
// The same decisions, nothing consumed (admin pages).
ScriptCall encode_peek(std::string_view prefix, const std::vector<SharedUse>& uses, Nanos wall_now,
                       std::int64_t clock_override_us = 0);
// Returns the concurrency permits of `lease_id` (the same uses and costs as its acquire).
ScriptCall encode_release(std::string_view prefix, const std::vector<SharedUse>& uses,
                          std::string_view lease_id);
// Extends the concurrency permits of `lease_id` to `lease` from now (a released or expired one stays so).
ScriptCall encode_renew(std::string_view prefix, const std::vector<SharedUse>& uses,
                        std::string_view lease_id, Nanos lease, std::int64_t clock_override_us = 0);
// Vendor feedback, for every replica: no admission on (limit, key) for `delay` (never shortens a
// pause in force). `cause` is kept for the admin pages (limit::pause_cause_name).
ScriptCall encode_pause(std::string_view prefix, const SharedUse& use, Nanos delay, std::string_view cause,
                        std::int64_t clock_override_us = 0);
// Vendor feedback: only `remaining` units until `reset_delay` from now (as Limiter::cap_remaining).
ScriptCall encode_cap(std::string_view prefix, const SharedUse& use, std::int64_t remaining,
                      Nanos reset_delay, std::int64_t clock_override_us = 0);

// use.cost units admitted `age` ago. Recorded (encode_record): the merge after a fallback,
// counted, never checked against the limit (concurrency and vendor gates record nothing).
// Refunded (encode_refund): given back.
struct RecordedLot {
    SharedUse use;
    Nanos age{0};
};
// `wall_now` is needed only by fixed windows in a time_zone (their current UTC offset); without it
// (0) such a window is aligned by the zone's offset of 1970-01-01: pass it.
ScriptCall encode_record(std::string_view prefix, const std::vector<RecordedLot>& lots,
                         Nanos wall_now = Nanos{0}, std::int64_t clock_override_us = 0);

// Gives back units of admissions that never reached the vendor, or that the vendor charged
// less (cost.settle): each lot is use.cost units admitted `age` ago, taken back as the in-memory
// refund does (limit::Limiter::refund, docs/limits.md): only what still counts, never below zero,
// never leaving the limit more permissive than had they not been admitted; when unsure, less.
// The store cannot tell one request's units from another's, so a sliding window takes the
// oldest units counted since the admission (the request's own or older ones) and a fixed window
// only the windows every unit of it counted in. For those, the admission is dated `age +
// date_slack` ago: the age is measured from the local admission, and the units were written in
// Redis after it by the ask's trip there; the refund's own trip may be longer by up to the slack
// (an earlier date only gives back less). A token bucket's refill since the admission counts over
// the age plus the slack too (more refill counted, fewer tokens back). The age and slack are
// rounded up. Concurrency and vendor gates give nothing back here (release does).
// Answers the number of lots that gave anything back.
ScriptCall encode_refund(std::string_view prefix, const std::vector<RecordedLot>& lots, Nanos date_slack,
                         Nanos wall_now = Nanos{0}, std::int64_t clock_override_us = 0);

// Reads an acquire or peek answer for `uses` uses; nullopt with `error` set when the reply is an
// error or not of the script's shape.
std::optional<AcquireResult> decode_decision(const Reply& reply, std::size_t uses, std::string& error);

// The state key of one use (tests and admin pages): {<prefix>}:l:<name>:<tag>:<key hex>.
std::string state_key(std::string_view prefix, const SharedUse& use);

}  // namespace sluice::redis
