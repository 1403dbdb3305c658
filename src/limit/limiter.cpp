#include "sluice/limit/limiter.hpp"

#include "sluice/limit/algorithms.hpp"
#include "sluice/limit/vendor_gate.hpp"

namespace sluice::limit {

std::unique_ptr<Limiter> make_limiter(const config::LimitConfig& config) {
    switch (config.algorithm) {
        case config::Algorithm::token_bucket: return make_token_bucket(config);
        case config::Algorithm::sliding_window: return make_sliding_window(config);
        case config::Algorithm::fixed_window: return make_fixed_window(config);
        case config::Algorithm::concurrency: return make_concurrency(config);
        case config::Algorithm::vendor_gate: return make_vendor_gate(config);
    }
    return make_sliding_window(config);  // unreachable: every enumerator is handled above
}

}  // namespace sluice::limit
