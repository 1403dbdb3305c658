// The per-second ring behind "queued / refused in the last minute" (/v1/limits):
// exact second edges, slot reuse after a minute, a long gap.

#include "sluice/queue/last_minute_counts.hpp"

#include <catch2/catch.hpp>

using namespace sluice;
using namespace sluice::queue;
using namespace std::chrono_literals;

TEST_CASE("last-minute counts hold an event for 60 whole seconds, then drop it", "[queue][last_minute]") {
    LastMinuteCounts counts;
    CHECK(counts.total(0s) == 0);
    counts.add(Nanos{100s} + 999ms);               // second 100
    counts.add(Nanos{100s}, 2);                    // second 100 too
    CHECK(counts.total(Nanos{99s} + 999ms) == 0);  // before it: not counted
    CHECK(counts.total(Nanos{100s}) == 3);
    CHECK(counts.total(Nanos{159s} + 999ms) == 3);  // seconds 100..159
    CHECK(counts.total(Nanos{160s}) == 0);          // seconds 101..160
}

TEST_CASE("last-minute counts sum the seconds of the window, each slot reused a minute on",
          "[queue][last_minute]") {
    LastMinuteCounts counts;
    for (int s = 0; s < 90; ++s) counts.add(Nanos{std::chrono::seconds(s)} + 500ms);  // one per second
    CHECK(counts.total(Nanos{89s}) == 60);                                            // seconds 30..89
    CHECK(counts.total(Nanos{100s}) == 49);                                           // seconds 41..89
    // Second 150 falls on second 30's slot: it starts again from 1.
    counts.add(Nanos{150s});
    CHECK(counts.total(Nanos{150s}) == 1);
    // A gap longer than the ring: nothing left from before.
    counts.add(Nanos{10'000s}, 5);
    CHECK(counts.total(Nanos{10'000s}) == 5);
    CHECK(counts.total(Nanos{10'059s}) == 5);
    CHECK(counts.total(Nanos{10'060s}) == 0);
}
