#include "sluice/common/failpoint.hpp"

#include <charconv>
#include <cstdlib>
#include <stdexcept>

#include "sluice/common/excerpt.hpp"

namespace sluice::failpoint {
namespace {

constexpr std::array<std::string_view, kPointCount> kNames{
    "session.handle_request",
    "admin.handle_request",
    "listener.accept",
};

std::string known_points() {
    std::string out;
    for (const auto name : kNames) {
        if (!out.empty()) out += ", ";
        out += name;
    }
    return out;
}

// Hits left before a `throw:N` point goes quiet; 0 for a plain `throw` (every hit).
std::array<std::atomic<std::uint64_t>, kPointCount> g_limited{};
std::array<std::atomic<std::uint64_t>, kPointCount> g_left{};

std::string_view trim(std::string_view text) {
    while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
    while (!text.empty() && text.back() == ' ') text.remove_suffix(1);
    return text;
}

}  // namespace

std::string_view point_name(Point point) noexcept {
    return kNames[static_cast<std::size_t>(point)];
}

void detail::fail(Point point) {
    const auto i = static_cast<std::size_t>(point);
    if (g_limited[i].load(std::memory_order_relaxed) != 0) {
        auto left = g_left[i].load(std::memory_order_relaxed);
        do {
            if (left == 0) {
                armed[i].store(false, std::memory_order_relaxed);
                return;
            }
        } while (!g_left[i].compare_exchange_weak(left, left - 1, std::memory_order_relaxed));
        if (left == 1) armed[i].store(false, std::memory_order_relaxed);
    }
    throw std::runtime_error("failpoint " + std::string(point_name(point)));
}

std::string configure(std::string_view spec) {
    std::array<bool, kPointCount> wanted{};
    std::array<std::uint64_t, kPointCount> counts{};  // 0: every hit
    while (!spec.empty()) {
        const auto comma = spec.find(',');
        const auto item = trim(spec.substr(0, comma));
        spec = comma == std::string_view::npos ? std::string_view{} : spec.substr(comma + 1);
        if (item.empty()) continue;
        const auto colon = item.find(':');
        const auto name = item.substr(0, colon);
        auto action = colon == std::string_view::npos ? std::string_view{} : item.substr(colon + 1);
        std::uint64_t count = 0;
        if (const auto count_colon = action.find(':'); count_colon != std::string_view::npos) {
            const auto digits = action.substr(count_colon + 1);
            const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), count);
            if (ec != std::errc() || end != digits.data() + digits.size() || count == 0)
                action = {};
            else
                action = action.substr(0, count_colon);
        }
        if (action != "throw")
            return "failpoint " + quoted_excerpt(item) + ": expected NAME:throw or NAME:throw:N";
        std::size_t index = kPointCount;
        for (std::size_t i = 0; i < kPointCount; ++i) {
            if (kNames[i] == name) index = i;
        }
        if (index == kPointCount)
            return "unknown failpoint " + quoted_excerpt(item) + "; expected one of " + known_points();
        wanted[index] = true;
        counts[index] = count;
    }
    for (std::size_t i = 0; i < kPointCount; ++i) {
        g_limited[i].store(counts[i], std::memory_order_relaxed);
        g_left[i].store(counts[i], std::memory_order_relaxed);
        detail::armed[i].store(wanted[i], std::memory_order_relaxed);
    }
    return "";
}

std::string configure_from_environment() {
    const char* spec = std::getenv("SLUICE_FAILPOINTS");
    return configure(spec ? std::string_view(spec) : std::string_view{});
}

}  // namespace sluice::failpoint
