#include "sluice/queue/waiting_units.hpp"

#include <algorithm>
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

TEST_CASE("WaitingUnits gives the earliest bound among older entries, across removals and compaction",
          "[queue]") {
    struct Entry {
        sluice::Nanos bound;
        WaitingUnits::Position position;
    };
    std::mt19937_64 rng(11);
    WaitingUnits line;
    std::list<Entry> entries;
    for (int step = 0; step < 20'000; ++step) {
        const auto r = rng() % 100;
        if (entries.empty() || r < 45) {
            entries.push_back(Entry{sluice::kNever, 0});
            line.push(1, &entries.back().position);
        } else if (r < 70) {
            auto it = entries.begin();
            std::advance(it, static_cast<long>(rng() % entries.size()));
            it->bound =
                rng() % 5 == 0 ? sluice::kNever : sluice::Nanos{static_cast<std::int64_t>(rng() % 1000)};
            line.set_bound(it->position, it->bound);
        } else {
            auto it = entries.begin();
            if (rng() % 3 == 0) std::advance(it, static_cast<long>(rng() % entries.size()));
            line.erase(it->position);
            entries.erase(it);
        }
        if (step % 7 == 0 || entries.size() < 5) {
            sluice::Nanos before = sluice::kNever;
            for (const Entry& e : entries) {
                REQUIRE(line.min_bound_before(e.position) == before);
                before = std::min(before, e.bound);
            }
            REQUIRE(line.min_bound() == before);
        }
    }
}

TEST_CASE("WaitingUnits answers the first bound question from bounds set before it", "[queue]") {
    // Until asked, a bound is only stored (a line one queue waits on is never asked).
    WaitingUnits line;
    std::list<WaitingUnits::Position> positions;
    for (int i = 0; i < 100; ++i) {
        positions.push_back(0);
        line.push(1, &positions.back());
    }
    auto it = positions.begin();
    std::advance(it, 40);
    line.set_bound(*it, sluice::Nanos{70});
    line.set_bound(positions.front(), sluice::Nanos{90});
    line.erase(positions.front());
    positions.pop_front();
    CHECK(line.min_bound() == sluice::Nanos{70});
    CHECK(line.min_bound_before(*it) == sluice::kNever);
    CHECK(line.min_bound_before(positions.back()) == sluice::Nanos{70});
    line.set_bound(positions.back(), sluice::Nanos{5});  // now kept up to date at once
    CHECK(line.min_bound() == sluice::Nanos{5});
}

TEST_CASE("WaitingUnits counts the units and bounds ordered before any order, across removals and compaction",
          "[queue][priority]") {
    using sluice::Nanos;
    using sluice::queue::WaitOrder;
    struct Entry {
        std::int64_t units;
        WaitOrder order;
        Nanos bound;
        WaitingUnits::Position position;
    };
    std::mt19937_64 rng(11);
    WaitingUnits band;
    std::list<Entry> entries;  // in push order, which is their order
    std::int64_t at = 0;
    std::uint64_t seq = 0;
    for (int step = 0; step < 20'000; ++step) {
        if (entries.empty() || rng() % 100 < 52) {
            at += static_cast<std::int64_t>(rng() % 3);  // equal times happen: the sequence decides
            entries.push_back(Entry{static_cast<std::int64_t>(rng() % 4), WaitOrder{Nanos{at}, ++seq},
                                    Nanos{static_cast<std::int64_t>(rng() % 1000)}, 0});
            band.push(entries.back().units, &entries.back().position, entries.back().order);
            band.set_bound(entries.back().position, entries.back().bound);
        } else {
            auto it = entries.begin();
            if (rng() % 3 == 0) std::advance(it, static_cast<long>(rng() % entries.size()));
            band.erase(it->position);
            entries.erase(it);
        }
        if (step % 17 != 0) continue;
        // Another band's request at a random order: the units and least bound of those before it.
        const WaitOrder probe{Nanos{at - static_cast<std::int64_t>(rng() % 40)}, seq - rng() % 30};
        std::int64_t units = 0;
        Nanos least = sluice::kNever;
        for (const Entry& e : entries) {
            if (!(e.order < probe)) break;
            units += e.units;
            least = std::min(least, e.bound);
        }
        REQUIRE(band.before_order(probe) == units);
        REQUIRE(band.min_bound_before_order(probe) == least);
    }
}
