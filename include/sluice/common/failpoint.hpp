#pragma once
// Failpoints: named places in the code where a test can make sluice fail on
// purpose, to prove that a failure there stays contained (the crash barriers of
// docs/security.md). They are armed once, at start, from the environment:
//
//   SLUICE_FAILPOINTS=session.handle_request:throw,admin.handle_request:throw:1
//
// `throw` fires at every hit; `throw:N` at the first N hits only (so that a test
// can break one admin request and still read /status afterwards).
//
// A point is a fixed name from the list below, so a typo in the variable is an
// error at start instead of a test that silently proves nothing. When no point
// is armed (always, in production) `hit()` costs one relaxed load of a bool per
// call: no lock, no string, no branch taken.

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace sluice::failpoint {

enum class Point : std::uint8_t {
    session_handle_request,  // ClientSession::handle_request, once a request head is parsed
    admin_handle_request,    // the admin listener, once a request head is parsed
    listener_accept,         // a client listener, after each accepted connection
};
inline constexpr std::size_t kPointCount = 3;

// The name in SLUICE_FAILPOINTS ("session.handle_request").
std::string_view point_name(Point point) noexcept;

namespace detail {
inline std::array<std::atomic<bool>, kPointCount> armed{};
// Throws unless the point's count of hits ran out (it is then disarmed).
void fail(Point point);
}  // namespace detail

// Throws std::runtime_error("failpoint <name>") when `point` is armed.
inline void hit(Point point) {
    if (detail::armed[static_cast<std::size_t>(point)].load(std::memory_order_relaxed)) [[unlikely]] {
        detail::fail(point);
    }
}

// Arms the points listed in `spec` ("name:throw[:N][,...]"; empty: none) and
// disarms the others. Returns "" or what is wrong with `spec`, naming the known points.
// Not meant to race with hit(): main() calls it before any thread starts.
std::string configure(std::string_view spec);

// configure() with $SLUICE_FAILPOINTS (unset: nothing armed). Called once by main().
std::string configure_from_environment();

}  // namespace sluice::failpoint
