#include "sluice/queue/waiting_units.hpp"

#include <list>
#include <random>

#include <catch2/catch.hpp>

using sluice::queue::WaitingUnits;

TEST_CASE("WaitingUnits counts the units pushed before an entry, across removals and compaction", "[queue]") {
    // Entries live in a list so their handles keep their address, as in the controller.
    struct Entry {
        std::int64_t units;
        WaitingUnits::Position position;
    };
    std::mt19937_64 rng(7);
    WaitingUnits line;
    std::list<Entry> entries;  // in push order
    for (int step = 0; step < 20'000; ++step) {
        const bool push = entries.empty() || rng() % 100 < 52;
        if (push) {
            entries.push_back(Entry{static_cast<std::int64_t>(rng() % 4), 0});
            line.push(entries.back().units, &entries.back().position);
        } else {
            // Mostly the oldest (admissions), sometimes anywhere (cancels, deadlines).
            auto it = entries.begin();
            if (rng() % 3 == 0) std::advance(it, static_cast<long>(rng() % entries.size()));
            line.erase(it->position);
            entries.erase(it);
        }
        REQUIRE(line.size() == entries.size());
        if (step % 13 == 0 || entries.size() < 5) {
            std::int64_t before = 0;
            for (const Entry& e : entries) {
                REQUIRE(line.before(e.position) == before);
                before += e.units;
            }
            REQUIRE(line.total() == before);
        }
    }
}
