#pragma once
// The vendor gate: a limit nobody configures. Every upstream has one, used by
// the routes that declare no limits of their own, so that the vendor's own
// signals (a 429, Remaining: 0) can still hold traffic back: left alone it
// admits everything; vendor feedback pauses or caps it like any other limit.

#include <memory>
#include <string>

#include "sluice/config/config.hpp"
#include "sluice/limit/limiter.hpp"

namespace sluice::limit {

// The LimitConfig of upstream `upstream_name`'s gate: named "upstream:NAME",
// algorithm vendor_gate, unkeyed.
config::LimitConfig vendor_gate_config(const std::string& upstream_name);

std::unique_ptr<Limiter> make_vendor_gate(const config::LimitConfig& config);

}  // namespace sluice::limit
