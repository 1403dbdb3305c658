#pragma once
// A fuzz target's property check: on failure, say which property and abort, so libFuzzer
// records the input as a crash (a plain assert would vanish in a release build).
#include <cstdio>
#include <cstdlib>

#define SLUICE_FUZZ_CHECK(condition)                                                                \
    do {                                                                                            \
        if (!(condition)) {                                                                         \
            std::fprintf(stderr, "%s:%d: property violated: %s\n", __FILE__, __LINE__, #condition); \
            std::abort();                                                                           \
        }                                                                                           \
    } while (0)
