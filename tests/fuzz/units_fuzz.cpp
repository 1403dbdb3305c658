// Durations and sizes (config/units.cpp). Besides never crashing: a duration is non-negative
// unless negatives are allowed, a value printed back in its smallest unit parses to itself,
// and a size printed as a bare number parses to itself.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "sluice/config/loader.hpp"

#include "fuzz/fuzz_check.hpp"

using sluice::config::parse_duration;
using sluice::config::parse_size;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);

    for (bool allow_negative : {false, true}) {
        const auto duration = parse_duration(text, allow_negative);
        if (!duration) continue;
        const auto nanos = duration->count();
        if (!allow_negative) SLUICE_FUZZ_CHECK(nanos >= 0);
        const auto again = parse_duration(std::to_string(nanos) + "ns", true);
        SLUICE_FUZZ_CHECK(again && *again == *duration);
        // What parses without a sign parses the same when negatives are allowed.
        if (!allow_negative) SLUICE_FUZZ_CHECK(parse_duration(text, true) == duration);
    }

    if (const auto bytes = parse_size(text)) {
        const auto again = parse_size(std::to_string(*bytes));
        SLUICE_FUZZ_CHECK(again && *again == *bytes);
    }
    return 0;
}
