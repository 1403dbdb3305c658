// The state file's decoder (state/snapshot.hpp) and the restore plan over what it accepts.
// The input is tried twice: as a whole file, and as a payload wrapped in a correct header (so
// that the payload parser is reached without the fuzzer having to find a CRC). Properties:
// decode never crashes or throws; what it accepts encodes back to the very same bytes (so
// decode(encode(x)) == x); plan_restore on it, at any time, never dates a lot after now and
// keeps no pause that is over.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/state/restore.hpp"
#include "sluice/state/snapshot.hpp"

#include "fuzz/fuzz_check.hpp"

namespace {

using namespace sluice::state;

std::string with_header(std::string_view payload) {
    std::string bytes(kMagic);
    const auto put = [&](std::uint64_t v, int n) {
        for (int i = 0; i < n; ++i) bytes.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
    };
    put(kFormatVersion, 4);
    put(payload.size(), 8);
    put(crc32(payload), 4);
    bytes.append(payload);
    return bytes;
}

sluice::Nanos nanos_at(std::string_view bytes, std::size_t at) {
    std::int64_t v = 0;
    if (bytes.size() >= at + 8) std::memcpy(&v, bytes.data() + at, 8);
    return sluice::Nanos{v};
}

void check(std::string_view bytes) {
    const auto result = decode(bytes);
    SLUICE_FUZZ_CHECK(result.snapshot.has_value() == (result.error == DecodeError::none));
    if (!result.snapshot) {
        SLUICE_FUZZ_CHECK(!result.message.empty());
        return;
    }
    const auto& snapshot = *result.snapshot;
    const auto again = encode(snapshot);
    SLUICE_FUZZ_CHECK(again == bytes);
    const auto round_trip = decode(again);
    SLUICE_FUZZ_CHECK(round_trip.snapshot && *round_trip.snapshot == snapshot);

    // The current configuration: every saved name, with the saved algorithm and window.
    std::vector<sluice::config::LimitConfig> current;
    for (const auto& limit : snapshot.limits) {
        sluice::config::LimitConfig config;
        config.name = limit.id.name;
        config.algorithm = limit.algorithm;
        config.window = limit.window;
        current.push_back(std::move(config));
    }
    // "Now" from the payload's own bytes: arbitrary, overflowing, before or after the save.
    const sluice::Instant now{nanos_at(bytes, bytes.size() - 16), nanos_at(bytes, bytes.size() - 8)};
    for (const std::string_view boot : {std::string_view(snapshot.boot_id), std::string_view("other")}) {
        const auto plan = plan_restore(snapshot, current, now, boot);
        SLUICE_FUZZ_CHECK(plan.limits.size() + plan.dropped.size() == snapshot.limits.size());
        for (const auto& restore : plan.limits) {
            SLUICE_FUZZ_CHECK(restore.current_index < current.size());
            for (const auto& key : restore.keys) {
                for (const auto& lot : key.admitted) SLUICE_FUZZ_CHECK(lot.at <= now.mono);
                SLUICE_FUZZ_CHECK(key.paused_until == sluice::Nanos::zero() || key.paused_until > now.mono);
            }
        }
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    check(input);
    check(with_header(input));
    return 0;
}
