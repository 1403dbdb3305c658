#pragma once
// What the `sluice simulate` tests share: the traffic's start time and a config loaded as the
// command loads it (with the shipped presets).

#include <memory>
#include <string>

#include "sluice/common/clock.hpp"
#include "sluice/config/loader.hpp"

namespace sluice::simulate::test {

// 2026-12-07T10:00:00Z: a whole second, so delays read exactly.
inline constexpr Nanos kStart{1'796'637'600'000'000'000};

inline std::shared_ptr<const config::Config> load(const std::string& yaml) {
    config::LoadOptions options;
    options.presets_dir = SLUICE_SOURCE_DIR "/config/presets";
    return config::load_config_string(yaml, "sim.yaml", options);
}

}  // namespace sluice::simulate::test
