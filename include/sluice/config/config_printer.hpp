#pragma once
// `sluice --check --print`: the effective configuration as YAML that sluice loads back to the
// same Config. Presets are expanded (a `vendors:` entry becomes the upstreams, limits and routes
// it stands for, named after the instance), every default is written out, durations in the
// largest exact unit.
//
// Secrets: a Config holds none by design. Credentials in upstream URLs are refused at load;
// header VALUES are never configured (only header names: the key and cost headers); the admin
// token lives in a file whose path is printed and whose contents are never read here. So the
// printout is safe to paste into an issue. (docs/configuration.md, "Printing the effective
// configuration".)

#include <string>

#include "sluice/config/config.hpp"

namespace sluice::config {

std::string print_config(const Config& config);

// "5m", "250ms", "-5h", "1d", "0s": the largest unit that divides the duration exactly.
std::string format_duration(Duration duration);

}  // namespace sluice::config
