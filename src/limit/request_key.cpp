#include "sluice/limit/request_key.hpp"

#include <algorithm>
#include <limits>
#include <string>

namespace sluice::limit {
namespace {

// A 64-bit hash over an unambiguous encoding of the key's parts, 8 bytes per
// step (an API key or bearer token can be hundreds of bytes; a byte-at-a-time
// FNV-1a costs ~1 ns per byte). Each step is a bijection of the state
// (xor the word, multiply by an odd constant, fold the high half down), so no
// input bit is lost, and the SplitMix64 finalizer spreads every bit over the
// result. The encoding is fixed and independent of the host (words are read
// little-endian), so a key is the same in every process and every build:
// state files and a shared backend depend on that, and a test pins a value.
//
//   string = length (one word), then its bytes in words of 8, the last one
//            zero-padded (unambiguous because the length came first)
//   key    = string(limit name), then per source: word(kind), string(name),
//            then word(kPresent) + string(value), or word(kAbsent); a grouped source
//            (group_by) writes word(kGroup) + string(group) for a listed value, or
//            word(kUnmapped) when unlisted values share one bucket
//   (a source without group_by hashes exactly as before groups existed)
class KeyHasher {
public:
    void bytes(std::string_view s) noexcept {
        word(s.size());
        const auto* p = reinterpret_cast<const unsigned char*>(s.data());
        std::size_t n = s.size();
        for (; n >= 8; p += 8, n -= 8) word(load_le(p, 8));
        if (n > 0) word(load_le(p, n));
    }
    void word(std::uint64_t w) noexcept {
        h_ = (h_ ^ w) * 0x9e3779b97f4a7c15ULL;
        h_ ^= h_ >> 32;
    }
    std::uint64_t finish() const noexcept {
        std::uint64_t z = h_;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
    }

private:
    static std::uint64_t load_le(const unsigned char* p, std::size_t n) noexcept {
        std::uint64_t w = 0;
        for (std::size_t i = 0; i < n; ++i) w |= static_cast<std::uint64_t>(p[i]) << (8 * i);
        return w;
    }

    std::uint64_t h_ = 0xcbf29ce484222325ULL;
};

constexpr std::uint64_t kAbsent = 0;
constexpr std::uint64_t kPresent = 1;
constexpr std::uint64_t kGroup = 2;
constexpr std::uint64_t kUnmapped = 3;

// The first `name` parameter of a raw query string ("a=1&b=&c"): its raw value,
// "" when written without '='. No percent-decoding: `a%20b=1` is the parameter
// "a%20b", and values are compared and hashed exactly as sent, so clients must
// encode a key the same way each time to share its bucket.
std::optional<std::string_view> find_query_param(std::string_view query, std::string_view name) {
    while (!query.empty()) {
        const auto amp = query.find('&');
        const std::string_view part = query.substr(0, amp);
        query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
        const auto eq = part.find('=');
        const std::string_view key = part.substr(0, eq);
        if (key == name && !part.empty()) {
            return eq == std::string_view::npos ? std::string_view{} : part.substr(eq + 1);
        }
    }
    return std::nullopt;
}

std::optional<std::string_view> source_value(const config::KeySource& source,
                                             const RequestAttributes& request) {
    switch (source.kind) {
        case config::KeySource::Kind::header:
            return request.header ? request.header(source.name) : std::nullopt;
        case config::KeySource::Kind::query: return find_query_param(request.query, source.name);
        case config::KeySource::Kind::path_param:
            return request.path_params ? route::find_param(*request.path_params, source.name) : std::nullopt;
        case config::KeySource::Kind::method: return request.method;
    }
    return std::nullopt;
}

constexpr bool is_ows(char c) noexcept {
    return c == ' ' || c == '\t';
}

}  // namespace

KeyHash request_key(const config::LimitConfig& limit, const RequestAttributes& request) {
    if (limit.key.empty()) return 0;
    KeyHasher h;
    h.bytes(limit.name);
    for (const auto& source : limit.key) {
        h.word(static_cast<std::uint64_t>(source.kind));
        h.bytes(source.name);
        if (const auto value = source_value(source, request)) {
            if (const auto* groups = source.group_by.get()) {
                if (const auto found = groups->group_of.find(*value); found != groups->group_of.end()) {
                    h.word(kGroup);
                    h.bytes(found->second);
                } else if (groups->unmapped == config::KeyGroups::Unmapped::shared) {
                    h.word(kUnmapped);
                } else {
                    h.word(kPresent);
                    h.bytes(*value);
                }
            } else {
                h.word(kPresent);
                h.bytes(*value);
            }
        } else {
            h.word(kAbsent);
        }
    }
    const KeyHash key = h.finish();
    // 0 means "unkeyed"; a keyed limit must never land there by accident.
    return key == 0 ? 0x9e3779b97f4a7c15ULL : key;
}

std::int64_t request_cost(const config::LimitConfig& limit, const RequestAttributes& request) {
    const auto& cost = limit.cost;
    if (cost.header.empty() || !request.header) return cost.fixed;
    const auto value = request.header(cost.header);
    if (!value) return cost.fixed;
    const auto units = parse_unit_count(*value);
    if (!units) return cost.fixed;  // absent, empty or not a non-negative integer ("-1", "2.5", "1e3")
    return *units;
}

std::string cost_too_large_message(const config::LimitConfig& limit, std::int64_t units) {
    const auto capacity = config::request_capacity(limit);
    if (!limit.enforce || (units <= limit.cost.max && units <= capacity)) return {};
    const bool bucket = limit.algorithm == config::Algorithm::token_bucket;
    return "this request costs " + std::to_string(units) + " units, more than limit '" + limit.name +
           "' can ever admit (" +
           (units > limit.cost.max ? "cost.max " + std::to_string(limit.cost.max)
                                   : std::string(bucket ? "burst " : "limit ") + std::to_string(capacity)) +
           "); split it into smaller requests";
}

std::string header_cost_refusal(const config::Config& config, const UseMarks& marks) {
    if (!marks.too_costly) return {};
    return cost_too_large_message(config.limits[*marks.too_costly], marks.too_costly_units);
}

std::optional<std::int64_t> parse_unit_count(std::string_view v) noexcept {
    while (!v.empty() && is_ows(v.front())) v.remove_prefix(1);
    while (!v.empty() && is_ows(v.back())) v.remove_suffix(1);
    if (v.empty()) return std::nullopt;
    constexpr std::int64_t kTop = std::numeric_limits<std::int64_t>::max();
    std::int64_t n = 0;
    for (const char c : v) {
        if (c < '0' || c > '9') return std::nullopt;
        const int digit = c - '0';
        n = n > (kTop - digit) / 10 ? kTop : n * 10 + digit;
    }
    return n;
}

std::size_t body_cost_max_bytes(const config::LimitConfig& limit, std::size_t max_buffered_body_bytes) {
    return limit.cost.body ? body_rule_max_bytes(*limit.cost.body, max_buffered_body_bytes)
                           : max_buffered_body_bytes;
}

RouteCostReading route_cost_reading(const config::Config& config, const config::RouteConfig& route) {
    RouteCostReading reading;
    const auto buffered = config.server.max_buffered_body_bytes;
    reading.held_body_max = buffered;
    for (const auto limit_index : route.limit_indexes) {
        const auto& limit = config.limits[limit_index];
        if (limit.cost.settles()) reading.settles = true;
        if (const auto& settle_body = limit.cost.settle_body)
            reading.settle_body_max =
                std::max(reading.settle_body_max, body_rule_max_bytes(*settle_body, buffered));
        if (limit.cost.body) {
            reading.body_costs = true;
            reading.held_body_max = std::max(reading.held_body_max, body_cost_max_bytes(limit, buffered));
        }
    }
    return reading;
}

BodyRequestCost body_request_cost(const config::LimitConfig& limit, std::string_view body,
                                  std::size_t max_buffered_body_bytes) noexcept {
    BodyRequestCost result;
    try {
        const auto& rule = *limit.cost.body;
        const auto max_bytes = body_cost_max_bytes(limit, max_buffered_body_bytes);
        if (body.size() > max_bytes) {
            result.error = Errc::cost_body_too_large;
            result.message = "limit '" + limit.name + "' reads its cost from request bodies of at most " +
                             std::to_string(max_bytes) + " bytes (cost.body.max_bytes); this one has " +
                             std::to_string(body.size());
            return result;
        }
        const auto read = cost::read_body_cost(body, rule.kind, rule.pointer);
        if (!read.ok()) {
            result.error = Errc::cost_unreadable;
            result.message = "limit '" + limit.name + "' cannot read this request's cost: " + read.message;
            return result;
        }
        if (auto refusal = cost_too_large_message(limit, read.units); !refusal.empty()) {
            result.error = Errc::cost_too_large;
            result.message = std::move(refusal);
            return result;
        }
        result.cost = read.units;
    } catch (...) {  // std::bad_alloc building a message: refuse rather than pass
        result.error = Errc::cost_unreadable;
        result.message.clear();
    }
    return result;
}

std::string key_label(KeyHash key) {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string label = "k:";
    for (int shift = 60; shift >= 16; shift -= 4) label += kHex[(key >> shift) & 0xf];
    return label;
}

}  // namespace sluice::limit
