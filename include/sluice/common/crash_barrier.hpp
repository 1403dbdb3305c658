#pragma once
// A crash barrier for an entry point that runs on the io threads outside a client
// session (the listeners' accept loops, the admin listener, main's run loop):
// nothing there should throw, but if third-party code does anyway, that one
// operation ends, the exception is counted and logged at a bounded rate, and
// io_context::run() keeps serving everyone else. Client sessions have their own
// barrier (ClientSession::step), which also closes the session.

#include <atomic>
#include <cstdint>
#include <exception>
#include <string_view>

#include "sluice/common/log.hpp"

namespace sluice {

// Counts and logs (through `site`) an exception caught at `where`. Never throws.
void note_contained_exception(std::atomic<std::uint64_t>& counter, log::RateLimitedSite& site,
                              std::string_view component, std::string_view where, const char* what) noexcept;

// Runs body(); returns false when an exception escaped it (then counted and logged).
template <class Body>
bool run_contained(std::atomic<std::uint64_t>& counter, log::RateLimitedSite& site,
                   std::string_view component, std::string_view where, Body&& body) noexcept {
    try {
        body();
        return true;
    } catch (const std::exception& e) {
        note_contained_exception(counter, site, component, where, e.what());
    } catch (...) {
        note_contained_exception(counter, site, component, where, "an exception of unknown type");
    }
    return false;
}

}  // namespace sluice
