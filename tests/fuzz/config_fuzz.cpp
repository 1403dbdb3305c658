// The config loader on arbitrary YAML text: it may refuse anything, but only with a
// config::ConfigError (file:line:col and what was expected); any other exception escaping,
// a crash, a leak or UB is a finding.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "sluice/config/loader.hpp"

#include "fuzz/fuzz_check.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string yaml(reinterpret_cast<const char*>(data), size);
    try {
        auto config = sluice::config::load_config_string(yaml, "fuzz.yaml");
        SLUICE_FUZZ_CHECK(config != nullptr);
        SLUICE_FUZZ_CHECK(!config->listeners.empty());
        for (const auto& route : config->routes) {
            SLUICE_FUZZ_CHECK(route.upstream_index < config->upstreams.size());
            for (auto index : route.limit_indexes) SLUICE_FUZZ_CHECK(index < config->limits.size());
            for (auto index : route.listener_indexes) SLUICE_FUZZ_CHECK(index < config->listeners.size());
        }
    } catch (const sluice::config::ConfigError& e) {
        SLUICE_FUZZ_CHECK(e.what()[0] != '\0');
    } catch (const std::exception& e) {
        std::fprintf(stderr, "load_config_string let a non-ConfigError escape: %s\n", e.what());
        std::abort();
    } catch (...) {
        std::fprintf(stderr, "load_config_string let a non-std::exception escape\n");
        std::abort();
    }
    return 0;
}
