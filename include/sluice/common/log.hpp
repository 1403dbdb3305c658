#pragma once
// Minimal structured logging to stderr: one line per event, "level component: message".
// A process-wide level is the only shared state, set once by main(); writes are
// serialised so lines from several io threads never interleave.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace sluice::log {

enum class Level { debug = 0, info = 1, warn = 2, error = 3 };

void set_level(Level level) noexcept;
bool enabled(Level level) noexcept;
void write(Level level, std::string_view component, std::string_view message);

inline void debug(std::string_view c, std::string_view m) {
    if (enabled(Level::debug)) write(Level::debug, c, m);
}
inline void info(std::string_view c, std::string_view m) {
    if (enabled(Level::info)) write(Level::info, c, m);
}
inline void warn(std::string_view c, std::string_view m) {
    if (enabled(Level::warn)) write(Level::warn, c, m);
}
inline void error(std::string_view c, std::string_view m) {
    if (enabled(Level::error)) write(Level::error, c, m);
}

// One place in the code whose log line a client or a vendor can trigger at will
// (a malformed header on every response, an upstream that is down): at most one
// line per `interval` is written, and that line says how many were suppressed
// since the previous one. Lock-free, so sessions on any io thread share a site.
// Time is passed in (monotonic nanoseconds), so the policy is unit-tested with a
// fake clock; SLUICE_LOG_LIMITED below supplies the steady clock.
class RateLimitedSite {
public:
    explicit constexpr RateLimitedSite(std::chrono::nanoseconds interval = std::chrono::seconds(1)) noexcept
        : interval_(interval.count()) {}

    // True when a line may be written at `now`; `suppressed` then holds how many
    // were refused since the last one admitted (and that count starts over).
    bool admit(std::chrono::nanoseconds now, std::uint64_t& suppressed) noexcept {
        auto due = next_.load(std::memory_order_relaxed);
        if (now.count() >= due &&
            next_.compare_exchange_strong(due, now.count() + interval_, std::memory_order_relaxed)) {
            suppressed = suppressed_.exchange(0, std::memory_order_relaxed);
            return true;
        }
        suppressed_.fetch_add(1, std::memory_order_relaxed);
        return false;
    }

private:
    const std::int64_t interval_;
    std::atomic<std::int64_t> next_{0};  // steady-clock ns from which the next line may go
    std::atomic<std::uint64_t> suppressed_{0};
};

// Writes make_message() through `site` at `level`: nothing is formatted for a
// line that is disabled or suppressed.
template <class MakeMessage>
void write_limited(RateLimitedSite& site, Level level, std::string_view component,
                   MakeMessage&& make_message) {
    if (!enabled(level)) return;
    std::uint64_t suppressed = 0;
    const auto now = std::chrono::steady_clock::now().time_since_epoch();
    if (!site.admit(std::chrono::duration_cast<std::chrono::nanoseconds>(now), suppressed)) return;
    std::string message = make_message();
    if (suppressed > 0) message += " (" + std::to_string(suppressed) + " similar suppressed)";
    write(level, component, message);
}

}  // namespace sluice::log

// A rate-limited log line, one site per expansion (at most one line a second from
// it): SLUICE_LOG_LIMITED(log::Level::warn, "feedback", "route '" + name + "': " + why);
// The message expression is evaluated only when the line is written.
#define SLUICE_LOG_LIMITED(level, component, ...)                                                \
    do {                                                                                         \
        static ::sluice::log::RateLimitedSite sluice_log_site_;                                  \
        ::sluice::log::write_limited(sluice_log_site_, level, component,                         \
                                     [&]() -> std::string { return std::string(__VA_ARGS__); }); \
    } while (false)
