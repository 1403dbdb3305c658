#pragma once
// When to hand freed memory back to the operating system.
//
// Each client connection takes tens of KiB (its read buffer, header arena,
// parser), allocated below glibc's mmap threshold, so from the heap. When
// thousands of connections close, glibc keeps their memory in its free lists
// and returns only what lies at the very top of the heap: measured, sluice
// stayed at 70 MiB RSS after 3,000 idle connections had been cut, ten times
// its baseline, until the process ended. malloc_trim(0) gives back every free
// page, but it walks the heap under the arena locks, so it is called only when
// it can pay: after the open connection count has fallen to at most half of
// its peak since the last release, by at least `min_drop` connections.
//
// Pure: the I/O layer samples the count (proxy_server: once a second) and
// calls malloc_trim when observe() says so.

#include <algorithm>
#include <cstdint>

namespace sluice {

class MemoryReleasePolicy {
public:
    explicit MemoryReleasePolicy(std::int64_t min_drop = 64) : min_drop_(min_drop) {}

    // The open connection count now; true when freed memory should be released now.
    bool observe(std::int64_t open) {
        open = std::max<std::int64_t>(open, 0);
        peak_ = std::max(peak_, open);
        if (peak_ - open < min_drop_ || open * 2 > peak_) return false;
        peak_ = open;  // released: the next release needs a new peak to fall from
        return true;
    }

private:
    std::int64_t min_drop_;
    std::int64_t peak_ = 0;
};

}  // namespace sluice
