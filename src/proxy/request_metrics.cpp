#include "sluice/proxy/request_metrics.hpp"

namespace sluice::proxy {

void record_synthetic_outcome(metrics::ProxyMetrics& metrics, metrics::ExchangeMarks& marks,
                              const SyntheticResponse& response) noexcept {
    // Every synthetic response is made by make_error_response() or
    // make_rejection_response(), which set the header; a response without one
    // (none today) would still count, as a client error.
    const auto it = response.find(kSluiceErrorHeader);
    const auto code = it == response.end() ? std::nullopt : metrics::errc_from_name(it->value());
    metrics.synthetic(marks, code.value_or(Errc::ok));
}

}  // namespace sluice::proxy
