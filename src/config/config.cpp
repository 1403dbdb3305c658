#include "sluice/config/config.hpp"

namespace sluice::config {

// Linear scans on purpose: these serve the loader and the admin page, never the
// request path (routes carry resolved indexes), and configs hold a handful of entries.

const UpstreamConfig* Config::find_upstream(std::string_view name) const {
    for (const auto& upstream : upstreams) {
        if (upstream.name == name) return &upstream;
    }
    return nullptr;
}

const LimitConfig* Config::find_limit(std::string_view name) const {
    for (const auto& limit : limits) {
        if (limit.name == name) return &limit;
    }
    return nullptr;
}

// On the request path: a handful of classes, and a few weights (a linear scan beats a hash there).
std::optional<std::size_t> PriorityConfig::find(std::string_view name) const {
    for (std::size_t i = 0; i < classes.size(); ++i) {
        if (classes[i] == name) return i;
    }
    return std::nullopt;
}

std::int64_t FairShareConfig::weight_of(std::string_view caller) const noexcept {
    for (const auto& [name, weight] : weights) {
        if (name == caller) return weight;
    }
    return default_weight;
}

std::optional<std::size_t> request_class(const Config& config, const RouteConfig& route,
                                         std::optional<std::string_view> asked) {
    const auto& priorities = config.priorities;
    if (!priorities.enabled()) return 0;
    if (asked) return priorities.find(*asked);
    return route.priority.value_or(priorities.default_class);
}

}  // namespace sluice::config
