#pragma once
// The state file's content and its binary codec: limit counts that survive a restart
// (server.state in docs/configuration.md). Pure code: bytes in, bytes out; StateDir
// (state_dir.hpp) puts them on disk, restore.hpp moves their times to the new process.
//
// A file is
//     "SLUICEST" | u32 format version | u64 payload length | u32 CRC-32 of the payload | payload
// and the payload holds little-endian fixed-width fields, strings as a u32 length and their
// bytes. Every length and count is bounded before anything is allocated for it, so a damaged
// or hostile file costs at most its own size to reject, and decode() never throws: it says what
// is wrong and where ("limit 3 ('daily'): key count 4294967295 exceeds ..."). Key hashes are
// written as the limiter holds them (64-bit hashes: a header value is never stored).

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/common/clock.hpp"
#include "sluice/config/config.hpp"
#include "sluice/limit/limit_state.hpp"

namespace sluice::state {

inline constexpr std::uint32_t kFormatVersion = 1;
inline constexpr std::string_view kMagic = "SLUICEST";
// magic, version, payload length, CRC-32.
inline constexpr std::size_t kHeaderBytes = 8 + 4 + 8 + 4;

// Bounds a decoder enforces (and an encoder's caller must respect: encode() writes what it is
// given, and decode() would reject a file that exceeds them).
inline constexpr std::size_t kMaxNameBytes = 4096;
inline constexpr std::size_t kMaxBootIdBytes = 128;
inline constexpr std::uint64_t kMaxLimits = 100'000;
inline constexpr std::uint64_t kMaxKeysPerLimit = 10'000'000;
inline constexpr std::uint64_t kMaxLotsPerKey = 1'000'000;
inline constexpr std::uint64_t kMaxFileBytes = std::uint64_t{1} << 30;

// One limit's exported keys, under the identity they were counted by.
struct LimitSnapshot {
    limit::StableId id;
    config::Algorithm algorithm = config::Algorithm::sliding_window;
    Nanos window{0};  // the configured window when saved (sliding lots older than it count no more)
    Nanos margin{0};  // ... widened by this margin
    std::vector<limit::KeyExport> keys;
};

// A limit's snapshot as its configuration names it (stable_id, algorithm, window, margin).
LimitSnapshot limit_snapshot(const config::LimitConfig& config, std::vector<limit::KeyExport> keys);

// What one save wrote: the limits' keys with times in the saving process's mono timeline,
// and the moment (both clocks) and boot they belong to, from which restore.hpp translates them.
struct StateSnapshot {
    std::uint32_t version = kFormatVersion;
    Instant saved_at;
    std::string boot_id;  // the host's boot id (/proc/sys/kernel/random/boot_id), "" if unknown
    std::vector<LimitSnapshot> limits;
};

// Field-by-field equality (tests and the fuzz target's round trip).
bool operator==(const LimitSnapshot& a, const LimitSnapshot& b);
bool operator==(const StateSnapshot& a, const StateSnapshot& b);

// The bytes of a file holding `snapshot` (its `version` field is ignored: kFormatVersion is written).
std::string encode(const StateSnapshot& snapshot);

enum class DecodeError {
    none,
    bad_magic,       // not a sluice state file
    future_version,  // written by a newer sluice
    truncated,       // ends before its header or payload does
    checksum,        // the payload's CRC-32 does not match
    malformed,       // well-framed, but a length, count or value is out of bounds or inconsistent
};
std::string_view decode_error_name(DecodeError error) noexcept;  // "bad_magic", ...

struct DecodeResult {
    std::optional<StateSnapshot> snapshot;  // set iff error == none
    DecodeError error = DecodeError::none;
    std::string message;  // what is wrong and where, for the log; empty when decoded
};

// Never throws (short of std::bad_alloc within the bounds above). Bytes after the payload
// are malformed: a file holds exactly one snapshot.
DecodeResult decode(std::string_view bytes);

// CRC-32 (IEEE 802.3, reflected, as zlib's crc32()), over `bytes`.
std::uint32_t crc32(std::string_view bytes) noexcept;

}  // namespace sluice::state
