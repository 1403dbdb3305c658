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

}  // namespace sluice::config
