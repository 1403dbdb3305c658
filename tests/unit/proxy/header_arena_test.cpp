// HeaderArena: the session's memory for parsed heads. It must hand out memory
// from its block, fall back to the heap when full, and start over only when
// nothing it handed out is alive.
#include "sluice/proxy/header_arena.hpp"

#include <cstdint>
#include <iterator>
#include <string>

#include <catch2/catch.hpp>

#include "sluice/proxy/http_headers.hpp"

using sluice::proxy::ArenaAllocator;
using sluice::proxy::ArenaFields;
using sluice::proxy::HeaderArena;

TEST_CASE("the arena starts over only when its last allocation is freed", "[proxy][header_arena]") {
    HeaderArena arena;
    ArenaAllocator<char> alloc(&arena);
    char* a = alloc.allocate(100);
    char* b = alloc.allocate(100);
    CHECK(arena.owns(a));
    CHECK(arena.owns(b));
    CHECK(b >= a + 100);  // no overlap
    CHECK(arena.live() == 2);
    alloc.deallocate(a, 100);
    CHECK(arena.used() > 0);  // b still lives: nothing is reused yet
    char* c = alloc.allocate(10);
    CHECK(c >= b + 100);
    alloc.deallocate(b, 100);
    alloc.deallocate(c, 10);
    CHECK(arena.live() == 0);
    CHECK(arena.used() == 0);
    CHECK(alloc.allocate(1) == a);  // from the start again
}

TEST_CASE("what does not fit in the arena comes from the heap and goes back to it", "[proxy][header_arena]") {
    HeaderArena arena;
    ArenaAllocator<char> alloc(&arena);
    char* big = alloc.allocate(HeaderArena::kBlockSize + 1);
    CHECK_FALSE(arena.owns(big));
    CHECK(arena.live() == 0);
    big[HeaderArena::kBlockSize] = 'x';  // usable (ASan would catch a short block)
    alloc.deallocate(big, HeaderArena::kBlockSize + 1);

    ArenaAllocator<long double> wide(&arena);  // rebinding keeps the arena and aligns
    long double* d = wide.allocate(3);
    CHECK(reinterpret_cast<std::uintptr_t>(d) % alignof(long double) == 0);
    wide.deallocate(d, 3);
}

TEST_CASE("Beast's fields in an arena hold heads larger than its block", "[proxy][header_arena]") {
    HeaderArena arena;
    {
        ArenaFields fields{ArenaAllocator<char>(&arena)};
        for (int i = 0; i < 200; ++i) fields.insert("X-Field-" + std::to_string(i), std::string(40, 'v'));
        fields.set(boost::beast::http::field::connection, "close, X-Field-7");
        CHECK(sluice::proxy::find_field(fields, "x-field-199") == std::string(40, 'v'));
        sluice::proxy::strip_hop_by_hop(fields);
        CHECK_FALSE(sluice::proxy::find_field(fields, "X-Field-7"));
        CHECK_FALSE(sluice::proxy::find_field(fields, "Connection"));
        CHECK(std::distance(fields.begin(), fields.end()) == 199);
        CHECK(arena.used() > HeaderArena::kBlockSize / 2);  // the first fields went to the arena
    }
    CHECK(arena.live() == 0);  // every node given back
    CHECK(arena.used() == 0);
}
