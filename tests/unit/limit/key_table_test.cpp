// The flat per-key table (key_table.hpp) against std::map as an oracle:
// inserts through several growths, erases that shift probe runs back (keys
// chosen to collide, and keys spread out), and lookups of absent keys.

#include "sluice/limit/key_table.hpp"

#include <cstdint>
#include <map>
#include <random>

#include <catch2/catch.hpp>

namespace {

using Table = sluice::limit::detail::KeyTable<std::int64_t>;

void check_same(Table& table, const std::map<std::uint64_t, std::int64_t>& oracle) {
    REQUIRE(table.size() == oracle.size());
    for (const auto& [key, value] : oracle) {
        const std::int64_t* found = table.find(key);
        REQUIRE(found != nullptr);
        REQUIRE(*found == value);
    }
    std::size_t visited = 0;
    table.for_each([&](std::uint64_t key, std::int64_t value) {
        ++visited;
        REQUIRE(oracle.at(key) == value);
    });
    REQUIRE(visited == oracle.size());
    REQUIRE(table.capacity() * 3 >= table.size() * 4);  // never more than 3/4 full
}

}  // namespace

TEST_CASE("key table: agrees with std::map through growth and backward-shift erases", "[limit][keys]") {
    for (const bool colliding : {false, true}) {
        std::mt19937_64 rng(colliding ? 7 : 11);
        // Colliding keys differ only in their top bits, which Fibonacci hashing
        // spreads; keys 0..63 are the small ones an unkeyed limit and tests use.
        const auto key_of = [&](std::uint64_t i) { return colliding ? i : rng(); };
        Table table;
        std::map<std::uint64_t, std::int64_t> oracle;
        REQUIRE(table.find(0) == nullptr);
        table.erase(0);  // erasing from an empty table is a no-op
        std::vector<std::uint64_t> keys;
        for (std::uint64_t i = 0; i < 2'000; ++i) keys.push_back(key_of(i % 64 == 0 ? i / 64 : i * 977));
        for (int round = 0; round < 20'000; ++round) {
            const std::uint64_t key = keys[rng() % keys.size()];
            if (rng() % 3 == 0) {
                table.erase(key);
                oracle.erase(key);
                REQUIRE(table.find(key) == nullptr);
            } else if (std::int64_t* found = table.find(key)) {
                REQUIRE(oracle.count(key) == 1);
                *found += 1;
                oracle[key] += 1;
            } else {
                REQUIRE(oracle.count(key) == 0);
                REQUIRE(*table.insert(key, round) == round);
                oracle[key] = round;
            }
            if (round % 1'000 == 0) check_same(table, oracle);
        }
        check_same(table, oracle);
        for (const auto& [key, value] : std::map(oracle)) {
            table.erase(key);
            oracle.erase(key);
        }
        REQUIRE(table.size() == 0);
        for (const std::uint64_t key : keys) REQUIRE(table.find(key) == nullptr);
    }
}

TEST_CASE("key table: 100,000 keys through growth, prefetch changes nothing", "[limit][keys]") {
    Table table;
    table.prefetch(42);  // an empty table has no slot to load: a no-op
    std::map<std::uint64_t, std::int64_t> oracle;
    std::mt19937_64 rng(3);
    for (std::int64_t i = 0; i < 100'000; ++i) {
        const std::uint64_t key = i % 1'000 == 0 ? static_cast<std::uint64_t>(i) : rng();
        table.prefetch(key);
        if (table.find(key) == nullptr) {
            table.insert(key, i);
            oracle[key] = i;
        }
    }
    check_same(table, oracle);
    REQUIRE(table.capacity() == 262'144);  // grown past 3/4 of 131,072, no further
}
