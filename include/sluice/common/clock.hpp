#pragma once
// Time as pure code sees it. Nothing outside this header (and the I/O layer's
// SystemClock) calls now(): limiters, the admission controller and routing take
// an Instant, so tests drive them with a FakeClock and check exact edges.

#include <chrono>
#include <cstdint>

namespace sluice {

using Nanos = std::chrono::nanoseconds;

// One reading of both clocks taken at the same moment.
// `mono` orders events and measures windows (never jumps); `wall` is Unix time
// (UTC) and is used only where a window is aligned to the calendar (fixed
// windows, a vendor's Unix-timestamp reset).
struct Instant {
    Nanos mono{0};
    Nanos wall{0};
};

// A mono time that never arrives: "no admission time can be predicted"
// (e.g. a concurrency limit waits for a release, not for a moment).
inline constexpr Nanos kNever = Nanos::max();

class Clock {
public:
    virtual ~Clock() = default;
    virtual Instant now() const = 0;
};

// The real clocks. Only the I/O layer and main() construct one.
class SystemClock final : public Clock {
public:
    Instant now() const override {
        return Instant{
            std::chrono::duration_cast<Nanos>(std::chrono::steady_clock::now().time_since_epoch()),
            std::chrono::duration_cast<Nanos>(std::chrono::system_clock::now().time_since_epoch())};
    }
};

// Test clock: starts wherever it is set, moves only when told to. Both readings
// move together so calendar and monotonic arithmetic stay consistent.
class FakeClock final : public Clock {
public:
    explicit FakeClock(Instant start = Instant{Nanos{1'000'000'000}, Nanos{1'700'000'000'000'000'000}})
        : now_(start) {}
    Instant now() const override { return now_; }
    void set(Instant t) { now_ = t; }
    void advance(Nanos d) {
        now_.mono += d;
        now_.wall += d;
    }

private:
    Instant now_;
};

}  // namespace sluice
