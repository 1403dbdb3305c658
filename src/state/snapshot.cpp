#include "sluice/state/snapshot.hpp"

#include <array>
#include <cstring>

namespace sluice::state {

namespace {

// The smallest encoding of each record: a count is checked against the bytes left before
// anything is reserved for it, so a count cannot make decode() allocate more than the file holds.
constexpr std::size_t kLotBytes = 8 + 8;
constexpr std::size_t kMinKeyBytes = 8 + 4 + 8 + 1 + 8 + 8 + 8 + 8 + 4 * 8;
constexpr std::size_t kMinLimitBytes = 4 + 8 + 1 + 8 + 8 + 4;

constexpr auto kCrcTable = [] {
    std::array<std::uint32_t, 256> table{};
    for (std::uint32_t i = 0; i < 256; ++i) {
        std::uint32_t c = i;
        for (int bit = 0; bit < 8; ++bit) c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        table[i] = c;
    }
    return table;
}();

class Writer {
public:
    void u8(std::uint8_t v) { out_.push_back(static_cast<char>(v)); }
    void u32(std::uint32_t v) {
        for (int i = 0; i < 4; ++i) u8(static_cast<std::uint8_t>(v >> (8 * i)));
    }
    void u64(std::uint64_t v) {
        for (int i = 0; i < 8; ++i) u8(static_cast<std::uint8_t>(v >> (8 * i)));
    }
    void i64(std::int64_t v) { u64(static_cast<std::uint64_t>(v)); }
    void nanos(Nanos v) { i64(v.count()); }
    void text(std::string_view s) {
        u32(static_cast<std::uint32_t>(s.size()));
        out_.append(s);
    }
    std::string& bytes() { return out_; }

private:
    std::string out_;
};

// Reads the payload; the first failure sticks (later reads return zeros) and carries the
// place it happened, so the decoder reads straight through and checks once per record.
class Reader {
public:
    explicit Reader(std::string_view bytes) : bytes_(bytes) {}

    bool failed() const { return !error_.empty(); }
    const std::string& error() const { return error_; }
    std::size_t left() const { return bytes_.size() - offset_; }

    void fail(const std::string& where, const std::string& what) {
        if (failed()) return;
        error_ =
            (where.empty() ? "" : where + ": ") + what + " (payload offset " + std::to_string(offset_) + ")";
    }

    std::uint64_t unsigned_bytes(int n, const std::string& where, std::string_view field) {
        if (failed()) return 0;
        if (left() < static_cast<std::size_t>(n)) {
            fail(where, std::string(field) + " runs past the end of the payload");
            return 0;
        }
        std::uint64_t v = 0;
        for (int i = 0; i < n; ++i)
            v |= std::uint64_t{static_cast<unsigned char>(bytes_[offset_ + i])} << (8 * i);
        offset_ += static_cast<std::size_t>(n);
        return v;
    }
    std::uint8_t u8(const std::string& where, std::string_view field) {
        return static_cast<std::uint8_t>(unsigned_bytes(1, where, field));
    }
    std::uint32_t u32(const std::string& where, std::string_view field) {
        return static_cast<std::uint32_t>(unsigned_bytes(4, where, field));
    }
    std::uint64_t u64(const std::string& where, std::string_view field) {
        return unsigned_bytes(8, where, field);
    }
    std::int64_t i64(const std::string& where, std::string_view field) {
        return static_cast<std::int64_t>(u64(where, field));
    }
    Nanos nanos(const std::string& where, std::string_view field) { return Nanos{i64(where, field)}; }

    std::string text(const std::string& where, std::string_view field, std::size_t max) {
        const auto length = u32(where, std::string(field) + " length");
        if (failed()) return {};
        if (length > max) {
            fail(where, std::string(field) + " length " + std::to_string(length) + " exceeds the bound " +
                            std::to_string(max));
            return {};
        }
        if (length > left()) {
            fail(where, std::string(field) + " of " + std::to_string(length) +
                            " bytes runs past the end of the payload");
            return {};
        }
        std::string s(bytes_.substr(offset_, length));
        offset_ += length;
        return s;
    }

    // A count of records of at least `min_bytes` each: within `max`, and no more than the bytes left can
    // hold.
    std::uint32_t count(const std::string& where, std::string_view field, std::uint64_t max,
                        std::size_t min_bytes) {
        const auto n = u32(where, field);
        if (failed()) return 0;
        if (n > max) {
            fail(where,
                 std::string(field) + " " + std::to_string(n) + " exceeds the bound " + std::to_string(max));
            return 0;
        }
        if (n > left() / min_bytes) {
            fail(where, std::string(field) + " " + std::to_string(n) + " needs at least " +
                            std::to_string(static_cast<std::uint64_t>(n) * min_bytes) + " bytes, but " +
                            std::to_string(left()) + " are left");
            return 0;
        }
        return n;
    }

private:
    std::string_view bytes_;
    std::size_t offset_ = 0;
    std::string error_;
};

void write_key(Writer& w, const limit::KeyExport& key) {
    w.u64(key.key);
    w.u32(static_cast<std::uint32_t>(key.admitted.size()));
    for (const auto& lot : key.admitted) {
        w.nanos(lot.at);
        w.i64(lot.units);
    }
    w.nanos(key.paused_until);
    w.u8(static_cast<std::uint8_t>(key.pause_cause));
    w.i64(key.cap_remaining);
    w.nanos(key.cap_reset);
    w.i64(key.deficit);
    w.nanos(key.deficit_until);
    w.i64(key.learned.limit);
    w.nanos(key.learned.lowered_at);
    w.nanos(key.learned.raised_at);
    w.i64(key.learned.probe_windows);
}

std::string limit_place(std::size_t index, std::string_view name) {
    return "limit " + std::to_string(index + 1) + (name.empty() ? "" : " ('" + std::string(name) + "')");
}

void read_key(Reader& r, const std::string& where, limit::KeyExport& key) {
    key.key = r.u64(where, "key hash");
    const auto lots = r.count(where, "lot count", kMaxLotsPerKey, kLotBytes);
    key.admitted.reserve(lots);
    for (std::uint32_t i = 0; i < lots && !r.failed(); ++i) {
        limit::AdmittedLot lot;
        lot.at = r.nanos(where, "lot time");
        lot.units = r.i64(where, "lot units");
        if (lot.units < 0)
            r.fail(where, "lot " + std::to_string(i + 1) + " has " + std::to_string(lot.units) + " units");
        key.admitted.push_back(lot);
    }
    key.paused_until = r.nanos(where, "pause end");
    const auto cause = r.u8(where, "pause cause");
    if (cause > static_cast<std::uint8_t>(limit::PauseCause::quota_spent))
        r.fail(where, "unknown pause cause " + std::to_string(cause));
    key.pause_cause = static_cast<limit::PauseCause>(cause);
    key.cap_remaining = r.i64(where, "cap");
    key.cap_reset = r.nanos(where, "cap reset");
    key.deficit = r.i64(where, "deficit");
    key.deficit_until = r.nanos(where, "deficit end");
    key.learned.limit = r.i64(where, "learned limit");
    key.learned.lowered_at = r.nanos(where, "learned lowering time");
    key.learned.raised_at = r.nanos(where, "learned raise time");
    key.learned.probe_windows = r.i64(where, "learned probe windows");
}

bool same_key(const limit::KeyExport& a, const limit::KeyExport& b) {
    return a.key == b.key && a.admitted == b.admitted && a.paused_until == b.paused_until &&
           a.pause_cause == b.pause_cause && a.cap_remaining == b.cap_remaining &&
           a.cap_reset == b.cap_reset && a.deficit == b.deficit && a.deficit_until == b.deficit_until &&
           a.learned.limit == b.learned.limit && a.learned.lowered_at == b.learned.lowered_at &&
           a.learned.raised_at == b.learned.raised_at && a.learned.probe_windows == b.learned.probe_windows;
}

std::uint32_t read_u32(std::string_view bytes, std::size_t at) {
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= std::uint32_t{static_cast<unsigned char>(bytes[at + i])} << (8 * i);
    return v;
}

std::uint64_t read_u64(std::string_view bytes, std::size_t at) {
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= std::uint64_t{static_cast<unsigned char>(bytes[at + i])} << (8 * i);
    return v;
}

DecodeResult failure(DecodeError error, std::string message) {
    return DecodeResult{std::nullopt, error, std::move(message)};
}

}  // namespace

bool operator==(const LimitSnapshot& a, const LimitSnapshot& b) {
    if (!(a.id == b.id) || a.algorithm != b.algorithm || a.window != b.window || a.margin != b.margin ||
        a.keys.size() != b.keys.size())
        return false;
    for (std::size_t i = 0; i < a.keys.size(); ++i) {
        if (!same_key(a.keys[i], b.keys[i])) return false;
    }
    return true;
}

bool operator==(const StateSnapshot& a, const StateSnapshot& b) {
    return a.version == b.version && a.saved_at.mono == b.saved_at.mono &&
           a.saved_at.wall == b.saved_at.wall && a.boot_id == b.boot_id && a.limits == b.limits;
}

LimitSnapshot limit_snapshot(const config::LimitConfig& config, std::vector<limit::KeyExport> keys) {
    return LimitSnapshot{limit::stable_id(config), config.algorithm, config.window, config.margin,
                         std::move(keys)};
}

std::uint32_t crc32(std::string_view bytes) noexcept {
    std::uint32_t c = 0xFFFFFFFFu;
    for (const char byte : bytes) c = kCrcTable[(c ^ static_cast<unsigned char>(byte)) & 0xFFu] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

std::string_view decode_error_name(DecodeError error) noexcept {
    switch (error) {
        case DecodeError::none: return "none";
        case DecodeError::bad_magic: return "bad_magic";
        case DecodeError::future_version: return "future_version";
        case DecodeError::truncated: return "truncated";
        case DecodeError::checksum: return "checksum";
        case DecodeError::malformed: return "malformed";
    }
    return "unknown";
}

std::string encode(const StateSnapshot& snapshot) {
    Writer payload;
    payload.nanos(snapshot.saved_at.mono);
    payload.nanos(snapshot.saved_at.wall);
    payload.text(snapshot.boot_id);
    payload.u32(static_cast<std::uint32_t>(snapshot.limits.size()));
    for (const auto& limit : snapshot.limits) {
        payload.text(limit.id.name);
        payload.u64(limit.id.fingerprint);
        payload.u8(static_cast<std::uint8_t>(limit.algorithm));
        payload.nanos(limit.window);
        payload.nanos(limit.margin);
        payload.u32(static_cast<std::uint32_t>(limit.keys.size()));
        for (const auto& key : limit.keys) write_key(payload, key);
    }
    Writer file;
    file.bytes().append(kMagic);
    file.u32(kFormatVersion);
    file.u64(payload.bytes().size());
    file.u32(crc32(payload.bytes()));
    file.bytes().append(payload.bytes());
    return std::move(file.bytes());
}

DecodeResult decode(std::string_view bytes) {
    // The header, field by field: the first one that is wrong names the problem.
    const auto magic_bytes = std::min(bytes.size(), kMagic.size());
    if (bytes.substr(0, magic_bytes) != kMagic.substr(0, magic_bytes))
        return failure(DecodeError::bad_magic,
                       "not a sluice state file (its first bytes are not \"SLUICEST\")");
    if (bytes.size() < kHeaderBytes) {
        return failure(DecodeError::truncated, "the file ends within its " + std::to_string(kHeaderBytes) +
                                                   "-byte header, at byte " + std::to_string(bytes.size()));
    }
    const auto version = read_u32(bytes, 8);
    if (version > kFormatVersion) {
        return failure(DecodeError::future_version, "format version " + std::to_string(version) +
                                                        " is newer than this sluice reads (" +
                                                        std::to_string(kFormatVersion) + ")");
    }
    if (version == 0) return failure(DecodeError::malformed, "format version 0 does not exist");
    const auto payload_length = read_u64(bytes, 12);
    if (payload_length > kMaxFileBytes - kHeaderBytes) {
        return failure(DecodeError::malformed, "payload length " + std::to_string(payload_length) +
                                                   " exceeds the bound of " + std::to_string(kMaxFileBytes) +
                                                   " bytes per file");
    }
    const auto available = bytes.size() - kHeaderBytes;
    if (available < payload_length) {
        return failure(DecodeError::truncated, "the payload has " + std::to_string(available) + " of its " +
                                                   std::to_string(payload_length) + " bytes");
    }
    if (available > payload_length) {
        return failure(DecodeError::malformed, std::to_string(available - payload_length) +
                                                   " bytes follow the payload's " +
                                                   std::to_string(payload_length) + " bytes");
    }
    const auto payload = bytes.substr(kHeaderBytes);
    const auto expected_crc = read_u32(bytes, 20);
    if (const auto actual = crc32(payload); actual != expected_crc) {
        return failure(DecodeError::checksum, "the payload's CRC-32 is " + std::to_string(actual) +
                                                  ", the header says " + std::to_string(expected_crc));
    }

    Reader r(payload);
    StateSnapshot snapshot;
    snapshot.version = version;
    snapshot.saved_at.mono = r.nanos("", "save time (mono)");
    snapshot.saved_at.wall = r.nanos("", "save time (wall)");
    snapshot.boot_id = r.text("", "boot id", kMaxBootIdBytes);
    const auto limits = r.count("", "limit count", kMaxLimits, kMinLimitBytes);
    snapshot.limits.reserve(limits);
    for (std::uint32_t i = 0; i < limits && !r.failed(); ++i) {
        LimitSnapshot limit;
        limit.id.name = r.text(limit_place(i, ""), "name", kMaxNameBytes);
        const auto where = limit_place(i, limit.id.name);
        limit.id.fingerprint = r.u64(where, "fingerprint");
        const auto algorithm = r.u8(where, "algorithm");
        if (algorithm > static_cast<std::uint8_t>(config::Algorithm::vendor_gate))
            r.fail(where, "unknown algorithm " + std::to_string(algorithm));
        limit.algorithm = static_cast<config::Algorithm>(algorithm);
        limit.window = r.nanos(where, "window");
        limit.margin = r.nanos(where, "margin");
        if (limit.window < Nanos::zero() || limit.margin < Nanos::zero())
            r.fail(where, "a negative window or margin");
        const auto keys = r.count(where, "key count", kMaxKeysPerLimit, kMinKeyBytes);
        limit.keys.reserve(keys);
        for (std::uint32_t k = 0; k < keys && !r.failed(); ++k) {
            limit.keys.emplace_back();
            read_key(r, where + ", key " + std::to_string(k + 1), limit.keys.back());
        }
        snapshot.limits.push_back(std::move(limit));
    }
    if (!r.failed() && r.left() > 0)
        r.fail("", std::to_string(r.left()) + " bytes are left after the last limit");
    if (r.failed()) return failure(DecodeError::malformed, r.error());
    return DecodeResult{std::move(snapshot), DecodeError::none, {}};
}

}  // namespace sluice::state
