#pragma once
// The request path's side of metrics/proxy_metrics.hpp: the clock readings and
// the synthetic response's error code that the session hands to it.

#include <chrono>

#include "sluice/common/clock.hpp"
#include "sluice/metrics/proxy_metrics.hpp"
#include "sluice/proxy/synthetic_response.hpp"

namespace sluice::proxy {

// The steady clock as the metrics take it (a vDSO read, no system call).
inline Nanos steady_nanos() noexcept {
    return std::chrono::duration_cast<Nanos>(std::chrono::steady_clock::now().time_since_epoch());
}

// Counts a response sluice wrote itself under the code it carries (Sluice-Error).
void record_synthetic_outcome(metrics::ProxyMetrics& metrics, metrics::ExchangeMarks& marks,
                              const SyntheticResponse& response) noexcept;

}  // namespace sluice::proxy
