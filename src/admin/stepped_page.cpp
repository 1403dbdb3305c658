#include "sluice/admin/stepped_page.hpp"

#include <algorithm>

namespace sluice::admin {

const char* algorithm_name(config::Algorithm algorithm) noexcept {
    switch (algorithm) {
        case config::Algorithm::token_bucket: return "token_bucket";
        case config::Algorithm::sliding_window: return "sliding_window";
        case config::Algorithm::fixed_window: return "fixed_window";
        case config::Algorithm::concurrency: return "concurrency";
        case config::Algorithm::vendor_gate: return "vendor_gate";
    }
    return "?";
}

double seconds_between(Nanos from, Nanos to) noexcept {
    return std::max<double>(0.0, static_cast<double>((to - from).count()) / 1e9);
}

}  // namespace sluice::admin
