// Route patterns: the input is "<pattern>\n<path>[\n<prefix>]". validate_path_pattern must
// answer for any pattern; a pattern it accepts must compile (RouteTable must not throw on it)
// and matching any path must not crash; a match's upstream path starts with '/'.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "sluice/config/config.hpp"
#include "sluice/config/loader.hpp"
#include "sluice/route/route_table.hpp"

#include "fuzz/fuzz_check.hpp"

namespace {

std::string_view take_line(std::string_view& rest) {
    const auto end = rest.find('\n');
    const auto line = rest.substr(0, end);
    rest = end == std::string_view::npos ? std::string_view{} : rest.substr(end + 1);
    return line;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view rest(reinterpret_cast<const char*>(data), size);
    const auto pattern = take_line(rest);
    const auto path = take_line(rest);
    const auto prefix = take_line(rest);

    sluice::config::Config config;
    config.upstreams.emplace_back();
    config.upstreams.back().base_path = "/base";

    const bool valid = sluice::route::validate_path_pattern(pattern).empty();
    if (valid) {
        sluice::config::RouteConfig route;
        route.match.path = std::string(pattern);
        config.routes.push_back(route);
    }
    if (!prefix.empty() && prefix.front() == '/') {
        sluice::config::RouteConfig route;
        route.match.path_prefix = std::string(prefix);
        route.strip_prefix = true;
        config.routes.push_back(route);
    }
    try {
        const sluice::route::RouteTable table(config);
        sluice::route::RequestTarget target;
        target.host = "api.example.com";
        target.method = "GET";
        target.path = path;
        if (const auto match = table.match(target)) {
            SLUICE_FUZZ_CHECK(match->route_index < config.routes.size());
            SLUICE_FUZZ_CHECK(!match->upstream_path.empty() && match->upstream_path.front() == '/');
            for (const auto& [name, value] : match->params) SLUICE_FUZZ_CHECK(!value.empty());
        }
    } catch (const sluice::config::ConfigError& e) {
        // Only a pattern validate_path_pattern accepted could get here: the two must agree.
        SLUICE_FUZZ_CHECK(!"RouteTable refused what validate_path_pattern accepted");
    }
    return 0;
}
