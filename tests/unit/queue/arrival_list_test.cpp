#include "sluice/queue/arrival_list.hpp"

#include <iterator>
#include <list>
#include <random>

#include <catch2/catch.hpp>

using namespace std::chrono_literals;
using sluice::kNever;
using sluice::Nanos;
using sluice::queue::ArrivalList;

TEST_CASE("ArrivalList gives the oldest linked arrival whatever order entries leave in",
          "[queue][arrivals]") {
    // Links live in a std::list so they keep their address, as in the controller's waiters.
    struct Entry {
        Nanos arrived;
        ArrivalList::Link link;
    };
    std::mt19937_64 rng(11);
    ArrivalList list;
    std::list<Entry> entries;  // in arrival order: the model
    Nanos now{0};
    CHECK(list.oldest_arrival() == kNever);
    for (int step = 0; step < 20'000; ++step) {
        const bool push = entries.empty() || rng() % 100 < 50;
        if (push) {
            now += Nanos{static_cast<std::int64_t>(rng() % 3)};  // equal arrivals happen
            entries.push_back(Entry{now, {}});
            list.push_back(entries.back().link, now);
        } else {
            // Mostly the oldest (admissions), often anywhere (cancels, deadlines, other queues).
            auto it = entries.begin();
            if (rng() % 2 == 0) std::advance(it, static_cast<long>(rng() % entries.size()));
            list.erase(it->link);
            CHECK_FALSE(it->link.linked);
            entries.erase(it);
        }
        REQUIRE(list.size() == entries.size());
        REQUIRE(list.oldest_arrival() == (entries.empty() ? kNever : entries.front().arrived));
    }
}

TEST_CASE("ArrivalList leaves an unlinked link alone and empties to kNever", "[queue][arrivals]") {
    ArrivalList list;
    ArrivalList::Link first;
    ArrivalList::Link second;
    ArrivalList::Link stranger;
    list.push_back(first, Nanos{5s});
    list.push_back(second, Nanos{7s});
    list.erase(stranger);  // never linked: nothing changes
    CHECK(list.size() == 2);
    CHECK(list.oldest_arrival() == Nanos{5s});
    list.erase(first);
    list.erase(first);  // twice: the second is a no-op
    CHECK(list.size() == 1);
    CHECK(list.oldest_arrival() == Nanos{7s});
    list.erase(second);
    CHECK(list.empty());
    CHECK(list.oldest_arrival() == kNever);
    // Usable again once empty.
    list.push_back(second, Nanos{9s});
    CHECK(list.oldest_arrival() == Nanos{9s});
}
