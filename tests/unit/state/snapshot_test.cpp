// The state file's codec: every field round trips, and every damaged file is refused with
// the error that names its damage, never a crash.
#include "sluice/state/snapshot.hpp"

#include <fstream>
#include <iterator>
#include <string>

#include <catch2/catch.hpp>

namespace {

using namespace std::chrono_literals;
using sluice::Instant;
using sluice::Nanos;
using sluice::config::Algorithm;
using sluice::limit::AdmittedLot;
using sluice::limit::KeyExport;
using sluice::limit::PauseCause;
using namespace sluice::state;

KeyExport full_key(std::uint64_t hash, int lots) {
    KeyExport key;
    key.key = hash;
    for (int i = 0; i < lots; ++i) key.admitted.push_back(AdmittedLot{Nanos{1'000 + i * 7}, 1 + i});
    key.paused_until = 5s;
    key.pause_cause = PauseCause::quota_spent;
    key.cap_remaining = 17;
    key.cap_reset = 6s;
    key.deficit = 3;
    key.deficit_until = 7s;
    key.learned.limit = 40;
    key.learned.lowered_at = 2s;
    key.learned.raised_at = 3s;
    key.learned.probe_windows = 4;
    return key;
}

StateSnapshot sample(int limits, int keys, int lots) {
    StateSnapshot s;
    s.saved_at = Instant{Nanos{123'456'789}, Nanos{1'700'000'000'123'456'789}};
    s.boot_id = "6f1c0b7e-1e0d-4a7e-9a57-2d3b6f0e9c11";
    for (int l = 0; l < limits; ++l) {
        LimitSnapshot limit;
        limit.id = {"limit-" + std::to_string(l), 0xfedcba9876543210ull + static_cast<std::uint64_t>(l)};
        limit.algorithm = static_cast<Algorithm>(l % 5);
        limit.window = std::chrono::minutes(l + 1);
        limit.margin = std::chrono::milliseconds(l);
        for (int k = 0; k < keys; ++k) limit.keys.push_back(full_key(~std::uint64_t{0} - k, lots));
        s.limits.push_back(std::move(limit));
    }
    return s;
}

// Rewrites the header's CRC after the payload was edited, so that the payload parser is what answers.
void fix_crc(std::string& bytes) {
    const auto crc = crc32(std::string_view(bytes).substr(kHeaderBytes));
    for (int i = 0; i < 4; ++i) bytes[20 + i] = static_cast<char>((crc >> (8 * i)) & 0xFF);
}

void put_u32(std::string& bytes, std::size_t at, std::uint32_t v) {
    for (int i = 0; i < 4; ++i) bytes[at + i] = static_cast<char>((v >> (8 * i)) & 0xFF);
}

}  // namespace

TEST_CASE("state codec: crc32 is the IEEE CRC-32 (zlib's)", "[state][codec]") {
    CHECK(crc32("") == 0u);
    CHECK(crc32("123456789") == 0xCBF43926u);
    CHECK(crc32("The quick brown fox jumps over the lazy dog") == 0x414FA339u);
}

TEST_CASE("state codec: every field of many limits, keys and lots round trips", "[state][codec]") {
    const auto snapshot = sample(7, 50, 9);
    const auto bytes = encode(snapshot);
    CHECK(bytes.substr(0, 8) == "SLUICEST");
    const auto decoded = decode(bytes);
    REQUIRE(decoded.error == DecodeError::none);
    REQUIRE(decoded.message.empty());
    REQUIRE(decoded.snapshot);
    CHECK(*decoded.snapshot == snapshot);
    CHECK(decoded.snapshot->limits[6].keys[49].admitted[8] == AdmittedLot{Nanos{1'056}, 9});
    CHECK(decoded.snapshot->limits[3].algorithm == Algorithm::concurrency);
    CHECK(decoded.snapshot->limits[2].keys[0].pause_cause == PauseCause::quota_spent);
    CHECK(encode(*decoded.snapshot) == bytes);  // one encoding per snapshot

    // And the empty snapshot, and extreme values.
    StateSnapshot empty;
    CHECK(*decode(encode(empty)).snapshot == empty);
    auto extreme = sample(1, 1, 1);
    extreme.saved_at = Instant{Nanos::min(), Nanos::max()};
    extreme.limits[0].keys[0].admitted[0] = AdmittedLot{Nanos::min(), std::int64_t{1} << 62};
    extreme.limits[0].keys[0].cap_remaining = -1;
    CHECK(*decode(encode(extreme)).snapshot == extreme);
}

TEST_CASE("state codec: equality sees every field", "[state][codec]") {
    const auto base = sample(1, 1, 2);
    auto other = base;
    CHECK(other == base);
    other.limits[0].keys[0].learned.probe_windows = 5;
    CHECK_FALSE(other == base);
    other = base;
    other.limits[0].keys[0].deficit_until = 8s;
    CHECK_FALSE(other == base);
    other = base;
    other.limits[0].margin = 1ms;
    CHECK_FALSE(other == base);
    other = base;
    other.boot_id = "x";
    CHECK_FALSE(other == base);
}

TEST_CASE("state codec: a file cut at any byte is refused as truncated", "[state][codec]") {
    const auto bytes = encode(sample(2, 2, 2));
    for (std::size_t cut = 0; cut < bytes.size(); ++cut) {
        INFO("cut at " << cut);
        const auto result = decode(std::string_view(bytes).substr(0, cut));
        CHECK_FALSE(result.snapshot);
        CHECK(result.error == DecodeError::truncated);
        CHECK_FALSE(result.message.empty());
    }
}

TEST_CASE("state codec: any flipped byte is refused", "[state][codec]") {
    const auto bytes = encode(sample(2, 2, 2));
    for (std::size_t at = 0; at < bytes.size(); ++at) {
        INFO("byte " << at);
        auto damaged = bytes;
        damaged[at] = static_cast<char>(damaged[at] ^ 0x5A);
        const auto result = decode(damaged);
        CHECK_FALSE(result.snapshot);
        if (at < 8) {
            CHECK(result.error == DecodeError::bad_magic);
        } else if (at < 12) {
            CHECK((result.error == DecodeError::future_version || result.error == DecodeError::malformed));
        } else if (at < 20) {
            // The payload length: longer than the file, shorter (bytes follow), or beyond the bound.
            CHECK((result.error == DecodeError::truncated || result.error == DecodeError::malformed));
        } else {
            CHECK(result.error == DecodeError::checksum);
        }
    }
}

TEST_CASE("state codec: magic, version and trailing bytes", "[state][codec]") {
    auto bytes = encode(sample(1, 1, 1));
    SECTION("another file") {
        const auto result = decode("PK\x03\x04 a zip file, not a state file, of some length");
        CHECK(result.error == DecodeError::bad_magic);
        CHECK(result.message == "not a sluice state file (its first bytes are not \"SLUICEST\")");
    }
    SECTION("a future version") {
        put_u32(bytes, 8, 2);
        const auto result = decode(bytes);
        CHECK(result.error == DecodeError::future_version);
        CHECK(result.message == "format version 2 is newer than this sluice reads (1)");
    }
    SECTION("version 0") {
        put_u32(bytes, 8, 0);
        CHECK(decode(bytes).error == DecodeError::malformed);
    }
    SECTION("bytes after the payload") {
        bytes += "xx";
        const auto result = decode(bytes);
        CHECK(result.error == DecodeError::malformed);
        CHECK(result.message.starts_with("2 bytes follow the payload's "));
    }
    SECTION("a payload length beyond 1 GiB") {
        for (int i = 0; i < 8; ++i) bytes[12 + i] = static_cast<char>(0xFF);
        const auto result = decode(bytes);
        CHECK(result.error == DecodeError::malformed);
        CHECK(result.message.starts_with("payload length 18446744073709551615 exceeds the bound"));
    }
    SECTION("a wrong checksum") {
        bytes[20] = static_cast<char>(bytes[20] ^ 1);
        const auto result = decode(bytes);
        CHECK(result.error == DecodeError::checksum);
        CHECK(result.message.starts_with("the payload's CRC-32 is "));
    }
}

TEST_CASE("state codec: absurd counts and values in a well-framed payload are malformed", "[state][codec]") {
    // Payload layout of sample(2, 1, 1) with a 36-byte boot id:
    //   0 mono, 8 wall, 16 boot id length, 20 boot id, 56 limit count,
    //   60 limit 1: name length, 64 "limit-0", 71 fingerprint, 79 algorithm, 80 window, 88 margin, 96 key
    //   count, 100 key hash, 108 lot count, 112 lot, 128 pause end, 136 cause ...
    const auto original = encode(sample(2, 1, 1));
    auto payload_at = [](std::size_t offset) { return kHeaderBytes + offset; };
    auto damaged_with = [&](std::size_t offset, std::uint32_t value) {
        auto bytes = original;
        put_u32(bytes, payload_at(offset), value);
        fix_crc(bytes);
        return decode(bytes);
    };
    SECTION("a limit count beyond the bound") {
        const auto result = damaged_with(56, 100'001);
        CHECK(result.error == DecodeError::malformed);
        CHECK(result.message == "limit count 100001 exceeds the bound 100000 (payload offset 60)");
    }
    SECTION("a limit count the file cannot hold") {
        const auto result = damaged_with(56, 99'999);
        CHECK(result.error == DecodeError::malformed);
        CHECK(result.message.find("limit count 99999 needs at least") != std::string::npos);
    }
    SECTION("a key count beyond the bound, named by limit") {
        const auto result = damaged_with(96, 4'294'967'295u);
        CHECK(result.error == DecodeError::malformed);
        CHECK(result.message ==
              "limit 1 ('limit-0'): key count 4294967295 exceeds the bound 10000000 (payload offset 100)");
    }
    SECTION("a lot count beyond the bound, named by limit and key") {
        const auto result = damaged_with(108, 1'000'001);
        CHECK(result.message ==
              "limit 1 ('limit-0'), key 1: lot count 1000001 exceeds the bound 1000000 (payload offset 112)");
    }
    SECTION("a name longer than 4096 bytes") {
        const auto result = damaged_with(60, 4097);
        CHECK(result.message == "limit 1: name length 4097 exceeds the bound 4096 (payload offset 64)");
    }
    SECTION("a boot id longer than 128 bytes") {
        const auto result = damaged_with(16, 129);
        CHECK(result.message == "boot id length 129 exceeds the bound 128 (payload offset 20)");
    }
    SECTION("an unknown algorithm") {
        auto bytes = original;
        bytes[payload_at(79)] = 9;
        fix_crc(bytes);
        const auto result = decode(bytes);
        CHECK(result.error == DecodeError::malformed);
        CHECK(result.message == "limit 1 ('limit-0'): unknown algorithm 9 (payload offset 80)");
    }
    SECTION("an unknown pause cause") {
        auto bytes = original;
        bytes[payload_at(136)] = 3;
        fix_crc(bytes);
        CHECK(decode(bytes).message ==
              "limit 1 ('limit-0'), key 1: unknown pause cause 3 (payload offset 137)");
    }
    SECTION("any byte of the payload changed (with a checksum to match) decodes or is malformed") {
        for (std::size_t at = kHeaderBytes; at < original.size(); ++at) {
            auto bytes = original;
            bytes[at] = static_cast<char>(bytes[at] ^ 0xA5);
            fix_crc(bytes);
            const auto result = decode(bytes);
            INFO("byte " << at << ": " << result.message);
            CHECK((result.error == DecodeError::none || result.error == DecodeError::malformed));
            if (result.snapshot) CHECK(encode(*result.snapshot) == bytes);
        }
    }
}

TEST_CASE("state codec: the fuzz target's seed file is a valid state file", "[state][codec]") {
    std::ifstream in(SLUICE_SOURCE_DIR "/tests/fuzz/corpus/state/valid_file", std::ios::binary);
    REQUIRE(in);
    const std::string bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    const auto result = decode(bytes);
    INFO(result.message);
    REQUIRE(result.snapshot);
    CHECK(result.snapshot->boot_id == "boot-a");
    REQUIRE(result.snapshot->limits.size() == 2);
    CHECK(result.snapshot->limits[1].id.name == "hourly");
    CHECK(result.snapshot->limits[1].keys[0].admitted.size() == 2);
    CHECK(encode(*result.snapshot) == bytes);
}

TEST_CASE("state codec: limit_snapshot names a limit as its configuration does", "[state][codec]") {
    sluice::config::LimitConfig config;
    config.name = "daily";
    config.algorithm = Algorithm::fixed_window;
    config.limit = 1000;
    config.window = 24h;
    config.margin = 2s;
    const auto limit = limit_snapshot(config, {full_key(1, 1)});
    CHECK(limit.id == sluice::limit::stable_id(config));
    CHECK(limit.algorithm == Algorithm::fixed_window);
    CHECK(limit.window == 24h);
    CHECK(limit.margin == 2s);
    REQUIRE(limit.keys.size() == 1);
    CHECK(limit.keys[0].key == 1);
}
