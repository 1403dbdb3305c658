#pragma once
// A limiter's state as plain values, for state that must outlive the Limiter
// object holding it: a reload moves it to the new config's limiter in the same
// process, the state file carries it across a restart (state/), and the Redis
// backend (next) is checked against it.
//
// Identity: a limit's state belongs to its StableId (its name and a fingerprint
// of everything that decides how units are counted), never to its position in
// Config::limits. Two configs whose limit has the same StableId share one state
// exactly; a limit whose name is kept but whose parameters changed gets its used
// units carried (ImportMode::carry_used); a name that is gone is dropped.

#include <cstdint>
#include <string>
#include <vector>

#include "sluice/common/clock.hpp"
#include "sluice/config/config.hpp"
#include "sluice/limit/limiter.hpp"

namespace sluice::limit {

// The name plus a fingerprint of the algorithm, limit, window, margin, burst,
// calendar alignment and key sources (not enforce, cost, max_keys or feedback:
// they do not change what a counted unit means).
struct StableId {
    std::string name;
    std::uint64_t fingerprint = 0;
    bool operator==(const StableId&) const = default;
};
StableId stable_id(const config::LimitConfig& config);

// Units that still count against a key, admitted together at mono time `at`.
struct AdmittedLot {
    Nanos at{0};
    std::int64_t units = 0;
    bool operator==(const AdmittedLot&) const = default;
};

// One key's state. Times are mono Nanos of the process that exported it; whoever
// moves them to another process translates them first (state/restore).
struct KeyExport {
    KeyHash key = 0;
    // What the algorithm still counts for this key at export time, oldest first:
    // each lot dated no earlier than its units were really admitted (a bucketed
    // form dates a bucket at its latest instant), so replaying the lots never
    // frees a unit sooner than the exporter would have. Concurrency limits export
    // none (what is in flight ends with the process, or stays with its slot).
    std::vector<AdmittedLot> admitted;
    Nanos paused_until{0};  // vendor feedback: no admission before this (0: not paused)
    PauseCause pause_cause = PauseCause::unspecified;
    std::int64_t cap_remaining = -1;    // vendor's Remaining cap in force (-1: none) ...
    Nanos cap_reset{0};                 // ... until this
    std::int64_t deficit = 0;           // units the vendor counted that this limit did not ...
    Nanos deficit_until{0};             // ... until this
    LearnedLimitStatus learned;         // a learned lower limit (limit 0: none) ...
    std::int64_t configured_limit = 0;  // ... below this one, the exporter's (Decision::limit):
                                        // carry_used keeps `learned` only if it is the importer's too
                                        // (0: unknown, kept)
};

enum class ImportMode {
    // Same StableId, times trusted: each lot counts exactly as long as it did.
    exact,
    // Parameters changed, or the lots' times cannot be trusted (a clock jump):
    // every unit still counted is taken as consumed at `now`, so it counts for a
    // whole new window. Pauses and caps keep their end times; a learned limit is
    // dropped if the configured limit changed.
    carry_used,
};

}  // namespace sluice::limit
