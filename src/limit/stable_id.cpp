#include <cstring>

#include "sluice/limit/limit_state.hpp"

namespace sluice::limit {

namespace {

// FNV-1a, 64-bit: a fingerprint compared for equality, written to the state
// file, and so fixed forever (std::hash is not guaranteed to be).
class Fingerprint {
public:
    void add(std::string_view bytes) {
        add_int(bytes.size());
        for (const char c : bytes) mix(static_cast<unsigned char>(c));
    }
    void add_int(std::uint64_t v) {
        for (int i = 0; i < 8; ++i) mix(static_cast<unsigned char>(v >> (8 * i)));
    }
    std::uint64_t value() const { return h_; }

private:
    void mix(unsigned char byte) {
        h_ ^= byte;
        h_ *= 0x100000001b3ULL;
    }
    std::uint64_t h_ = 0xcbf29ce484222325ULL;
};

}  // namespace

StableId stable_id(const config::LimitConfig& config) {
    Fingerprint f;
    f.add_int(1);  // the fingerprint's own version: bump it when what is hashed changes
    f.add_int(static_cast<std::uint64_t>(config.algorithm));
    f.add_int(static_cast<std::uint64_t>(config.limit));
    f.add_int(static_cast<std::uint64_t>(config.window.count()));
    f.add_int(static_cast<std::uint64_t>(config.margin.count()));
    f.add_int(static_cast<std::uint64_t>(config.burst));
    f.add_int(static_cast<std::uint64_t>(config.utc_offset.count()));
    f.add(config.time_zone);
    f.add_int(config.key.size());
    for (const auto& source : config.key) {
        f.add_int(static_cast<std::uint64_t>(source.kind));
        f.add(source.name);
        if (!source.group_by) {
            f.add_int(0);
            continue;
        }
        // The groups decide which values share a key: a changed mapping is a changed limit.
        f.add_int(1 + static_cast<std::uint64_t>(source.group_by->unmapped));
        std::uint64_t groups = 0;  // order-independent: the map's iteration order is not stable
        for (const auto& [value, group] : source.group_by->group_of) {
            Fingerprint pair;
            pair.add(value);
            pair.add(group);
            groups += pair.value();
        }
        f.add_int(source.group_by->group_of.size());
        f.add_int(groups);
    }
    return StableId{config.name, f.value()};
}

}  // namespace sluice::limit
