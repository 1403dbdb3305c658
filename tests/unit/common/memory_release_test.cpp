#include "sluice/common/memory_release.hpp"

#include <catch2/catch.hpp>

using sluice::MemoryReleasePolicy;

TEST_CASE("memory is released once connections have fallen to half their peak, by at least min_drop",
          "[common][memory]") {
    MemoryReleasePolicy policy(64);
    CHECK_FALSE(policy.observe(0));
    CHECK_FALSE(policy.observe(3000));  // a peak: nothing to release yet
    CHECK_FALSE(policy.observe(1501));  // above half the peak
    CHECK(policy.observe(1500));        // half: released
    CHECK_FALSE(policy.observe(1500));  // not again without a new peak to fall from
    CHECK_FALSE(policy.observe(800));   // 1500 -> 800: above half of the new reference
    CHECK(policy.observe(0));           // everything closed: released
    CHECK_FALSE(policy.observe(0));
}

TEST_CASE("small swings never release memory", "[common][memory]") {
    MemoryReleasePolicy policy(64);
    for (int i = 0; i < 100; ++i) {
        CHECK_FALSE(policy.observe(100));
        CHECK_FALSE(policy.observe(40));  // a drop of 60 < 64
    }
    CHECK(policy.observe(36));        // 100 -> 36: 64 fewer, below half
    CHECK_FALSE(policy.observe(-5));  // a count never goes negative; nothing left to fall from
}
