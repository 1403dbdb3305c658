#include "sluice/common/crash_barrier.hpp"

#include <string>

#include "sluice/common/excerpt.hpp"

namespace sluice {

void note_contained_exception(std::atomic<std::uint64_t>& counter, log::RateLimitedSite& site,
                              std::string_view component, std::string_view where, const char* what) noexcept {
    counter.fetch_add(1, std::memory_order_relaxed);
    try {
        // The text may carry bytes a client sent: escaped and capped like any echo.
        log::write_limited(site, log::Level::error, component, [&] {
            return std::string(where) + " failed and was contained: " + quoted_excerpt(what, 128);
        });
    } catch (...) {
        // Out of memory while logging: the count above is all that can be kept.
    }
}

}  // namespace sluice
