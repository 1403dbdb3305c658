#pragma once
// Limiter algorithms: pure code, no I/O, time passed in (an Instant), state
// computed lazily from elapsed time on each call (no timer per bucket).
//
// One Limiter object is one configured limit (config::LimitConfig) and holds the
// state of every key of that limit. Keys are 64-bit hashes (key.hpp): a raw
// header value never reaches a limiter.
//
// The admission controller (queue/admission_controller.hpp) uses the two-phase
// protocol probe() -> consume(): it probes every limit a request needs and
// consumes from all of them only if all allow, so a request takes permits from
// all its limits or from none. Limiter objects are not thread-safe; the
// controller serialises access.
//
// This is also the seam for other backends (Redis, roadmap): a backend
// implements the same contract over shared state.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/common/clock.hpp"
#include "sluice/config/config.hpp"

namespace sluice::limit {

using KeyHash = std::uint64_t;  // 0 is the key of an unkeyed limit

struct KeyExport;       // limit_state.hpp: one key's state as plain values
enum class ImportMode;  // limit_state.hpp: how imported state is trusted

// A limiter's answer, a value from which the 429, Retry-After, the RateLimit
// headers and metrics are all derived.
struct Decision {
    bool allowed = false;        // `cost` could be consumed now (behind `ahead`)
    bool key_capacity = false;   // refused because max_keys keys are tracked and none may be forgotten
    Nanos earliest{0};           // mono time at which it could be admitted (== now when allowed);
                                 // kNever when not predictable (concurrency waits for a release)
    std::int64_t limit = 0;      // the configured limit (units per window, burst, or max in flight)
    std::int64_t remaining = 0;  // units available now, before this request
    Nanos reset{0};  // mono time at which `remaining` is back to `limit` if nothing more is admitted
};

// A limit learned from the vendor's refusals (docs/feedback.md, "Learning a
// stricter vendor"): lower than the configured limit, raised again by one unit
// per clean probe interval until it is back at the configured limit.
struct LearnedLimitStatus {
    std::int64_t limit = 0;  // the limit in force now; 0 = nothing learned (the configured limit holds)
    Nanos lowered_at{0};     // mono: the last lowering
    Nanos raised_at{0};      // mono: the last +1 since then (0 = not raised since)
    std::int64_t probe_windows = 0;  // windows per +1 (doubles when a raise draws a 429)
};

// Learning on a limit over all its keys, for the metrics (bounded: no key
// table walked): the lowerings so far, and the key lowered last as it stands.
struct LearnedSummary {
    std::uint64_t lowerings = 0;  // learned limits lowered (any key) since this limiter began
    LearnedLimitStatus latest;    // the key lowered last (limit 0: back at the configured limit)
};

// What vendor feedback needs to know of one key (Limiter::feedback_view).
struct FeedbackView {
    std::int64_t counted = 0;  // units the algorithm counts now (in the window; in flight for concurrency)
    std::int64_t limit = 0;    // the limit in force: the configured one, or a learned lower one
};

// Why vendor feedback paused a key, kept with the pause for the admin pages.
enum class PauseCause : std::uint8_t {
    unspecified,     // the caller gave no reason
    vendor_refused,  // the vendor refused (429, or 503 with Retry-After): held as long as it asked
    quota_spent,     // a response said 0 remaining: held until the reset it gave
};
std::string_view pause_cause_name(PauseCause cause) noexcept;  // "vendor_refused", ...

struct PauseReason {
    PauseCause cause = PauseCause::unspecified;
    // Where the pause's length came from ("retry_after", "x_ratelimit", "default_pause", ...):
    // a string with static storage (a literal), so keeping it costs nothing.
    std::string_view signal;
    bool operator==(const PauseReason&) const = default;
};

// Admin/metrics view of one key.
struct KeyStatus {
    KeyHash key = 0;
    std::int64_t remaining = 0;
    Nanos reset{0};
    Nanos paused_until{0};  // vendor feedback: no admission before this (0 = not paused)
    LearnedLimitStatus learned;
    PauseReason pause_reason;  // why, while paused_until is set
};

// Most constrained first: the fewest units remaining, then the longest vendor
// pause, then the latest reset; ties broken by key so the order is total.
bool more_constrained(const KeyStatus& a, const KeyStatus& b) noexcept;

// An inspection of a limiter's keys done in bounded steps (Limiter::status_step),
// so that an admin page never holds the admission lock, or the io thread, for a
// walk over every key: each step examines a bounded number of slots and the
// caller may release the lock between steps. Keeps the `keep` most constrained
// keys seen (a bounded heap: memory does not grow with the key count). Keys
// admitted or forgotten between steps may be missed, or seen again and counted
// once: the result is a view of a table that keeps changing, as any page is.
class StatusScan {
public:
    explicit StatusScan(std::size_t keep) : keep_(keep) {}

    bool done() const noexcept { return done_; }
    std::size_t keep() const noexcept { return keep_; }
    std::size_t slots_examined() const noexcept { return slots_examined_; }
    // The keys kept, most constrained first. Ends the scan.
    std::vector<KeyStatus> take();

    // For Limiter implementations: the scan's position, and one key seen.
    std::size_t next_slot = 0;
    void offer(const KeyStatus& status);
    void advance(std::size_t next, std::size_t examined, bool done) noexcept {
        next_slot = next;
        slots_examined_ += examined;
        done_ = done;
    }

private:
    std::size_t keep_;
    std::vector<KeyStatus> heap_;  // a max-heap by more_constrained: the least constrained kept on top
    std::size_t slots_examined_ = 0;
    bool done_ = false;
};

class Limiter {
public:
    virtual ~Limiter() = default;

    const config::LimitConfig& config() const noexcept { return config_; }

    // Could `cost` units be admitted at `now` if `ahead` units, promised to
    // requests queued earlier, were admitted first? Does not record anything.
    // `earliest` must never be later than the true earliest admission time (an
    // early estimate only makes a request wait and be re-probed; a late one would
    // refuse a request that waiting could have served). For ahead > 0 the
    // estimate may be optimistic. A cost larger than the limit can never be
    // admitted: allowed=false, earliest=kNever.
    virtual Decision probe(KeyHash key, std::int64_t cost, std::int64_t ahead, const Instant& now) = 0;

    // Records an admission of `cost` units at `now` (the moment the request is
    // forwarded). Called only after probe(key, cost, 0, now) allowed it, or for a
    // shadow-mode limit (enforce: false), where it may push the count past the limit.
    virtual void consume(KeyHash key, std::int64_t cost, const Instant& now) = 0;

    // The exchange that consumed `cost` ended (any reason). Returns concurrency
    // permits; a no-op for rate algorithms, whose admissions stay counted.
    virtual void release(KeyHash key, std::int64_t cost, const Instant& now) = 0;

    // Would `units` units fit at mono time `then` (>= now) if `cost` units were
    // consumed now and nothing else were admitted in between? Records nothing.
    // The admission controller asks it before letting a younger request go
    // ahead of older waiters that cannot be admitted before `then`: if the
    // answer is yes, the younger one's admission now cannot delay them. Must
    // never be optimistic (say false when unsure). Concurrency limits answer as
    // if nothing in flight ever returned (the controller lends permits by its
    // own, time-bounded rule). The default, for a limiter that cannot tell,
    // is false: nothing is ever lent from it.
    virtual bool room_later(KeyHash /*key*/, std::int64_t /*cost*/, std::int64_t /*units*/, Nanos /*then*/,
                            const Instant& /*now*/) {
        return false;
    }

    // A hint that probe() or consume() on `key` follows soon: the in-memory
    // limiters start loading the key's slot, so that a request using several
    // limits waits for their cache misses once, in parallel, not one after the
    // other. Changes no state and no answer; a backend may ignore it.
    virtual void prefetch(KeyHash /*key*/) const noexcept {}

    // Vendor feedback (feedback/): the vendor said "no more until `until`" (mono).
    // probe() refuses with earliest >= until before then. A pause never shortens
    // one in force; the reason kept is the one of the pause that ends last.
    virtual void pause_until(KeyHash key, Nanos until, const Instant& now, PauseReason reason) = 0;
    void pause_until(KeyHash key, Nanos until, const Instant& now) { pause_until(key, until, now, {}); }

    // Vendor feedback: the vendor reports only `remaining` units left until
    // `reset_at` (mono). Lowers the allowance for that span, never raises it above
    // what the algorithm itself allows.
    virtual void cap_remaining(KeyHash key, std::int64_t remaining, Nanos reset_at, const Instant& now) = 0;

    // Vendor feedback on a limit that describes the vendor's own (same limit,
    // same window): the vendor has counted `units` more in its current window
    // than this limit has (another consumer of the quota), until `until` (mono).
    // They count as admitted until then; a later report replaces the earlier.
    // Unlike cap_remaining, units this limit frees itself stay free. Default: ignored.
    virtual void set_deficit(KeyHash /*key*/, std::int64_t /*units*/, Nanos /*until*/,
                             const Instant& /*now*/) {}

    // Vendor feedback: the vendor refused at `limit` units per window; the key's
    // limit is lowered to it (never raised) and probed back up (keyed_limiter.hpp).
    // Default: ignored.
    virtual void lower_learned(KeyHash /*key*/, std::int64_t /*limit*/, const Instant& /*now*/) {}

    // See LearnedSummary. Default: nothing learned.
    virtual LearnedSummary learned_summary(const Instant& /*now*/) const { return {}; }

    // Counted units and the limit in force for `key`. Default: nothing counted, the configured limit.
    virtual FeedbackView feedback_view(KeyHash /*key*/, const Instant& /*now*/) {
        return FeedbackView{0, config_.limit};
    }

    virtual std::size_t key_count() const = 0;

    // Forgets keys whose state is indistinguishable from a fresh key at `now`
    // (nothing counted in any window that still matters, nothing in flight,
    // no pause): forgetting them cannot let traffic exceed the limit.
    virtual void evict_idle(const Instant& now) = 0;

    // Up to `max_keys` keys, most constrained first: a whole scan in one call
    // (its cost grows with key_count(); the admin page uses status_step). The
    // default runs status_step() to the end.
    virtual std::vector<KeyStatus> status(const Instant& now, std::size_t max_keys) const;

    // One step of `scan`: examines at most `max_slots` more slots of the key table.
    // The default (for a limiter with no table of its own, e.g. a wrapper) does the
    // whole status() in one step. A limiter overrides at least one of the two.
    virtual void status_step(const Instant& now, StatusScan& scan, std::size_t max_slots) const;

    // State that outlives this object (limit_state.hpp): a reload moves it to the
    // new config's limiter, the state file carries it across a restart.
    //
    // Appends every key with anything that still matters at `now` (units counted,
    // a pause, a cap, a deficit, a learned limit); keys indistinguishable from
    // fresh are skipped. Changes nothing observable (may normalise like probe()).
    // The default, for a limiter with no state of its own, appends nothing.
    virtual void export_keys(const Instant& /*now*/, std::vector<KeyExport>& /*out*/) const {}

    // Loads exported keys (ImportMode says how far their times are trusted). A
    // key already tracked is merged conservatively: the result counts at least
    // what either counted, and keeps the stricter overlay. Respects max_keys:
    // when more new keys come than fit, those counting the most units at `now`
    // are kept. Returns how many keys were dropped. The default keeps none
    // (returns keys.size()).
    virtual std::size_t import_keys(const std::vector<KeyExport>& keys, ImportMode mode, const Instant& now);

    // A request admitted at mono `admitted_at` for `cost` never reached the
    // vendor (connect refused, DNS or TLS failure): gives back what of its units
    // still counts, never leaving the key more permissive than if that admission
    // had never happened (when unsure, less is given back). Concurrency: a no-op
    // (release() returns permits). Vendor pauses, caps and deficits are untouched.
    // The default gives nothing back.
    virtual void refund(KeyHash /*key*/, std::int64_t /*cost*/, Nanos /*admitted_at*/,
                        const Instant& /*now*/) {}

    // The vendor charged `units` more than the request was admitted for (a cost settled from
    // the response, docs/costs.md): counts them as admitted at `now`, even past the limit (a
    // window counts over it until they leave; a token bucket goes into debt), so that later
    // admissions wait for them exactly as if they had been admitted. Never refused: the work
    // is done. Concurrency limits and vendor gates count requests, not work: a no-op.
    virtual void charge(KeyHash /*key*/, std::int64_t /*units*/, const Instant& /*now*/) {}

    // Bytes of state per tracked key (for the benchmark's memory report).
    virtual std::size_t bytes_per_key() const = 0;

protected:
    explicit Limiter(config::LimitConfig config) : config_(std::move(config)) {}

private:
    config::LimitConfig config_;
};

// Builds the limiter for a validated LimitConfig.
std::unique_ptr<Limiter> make_limiter(const config::LimitConfig& config);

}  // namespace sluice::limit
