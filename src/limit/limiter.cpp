#include "sluice/limit/limiter.hpp"

#include <algorithm>
#include <limits>

#include "sluice/limit/algorithms.hpp"
#include "sluice/limit/limit_state.hpp"
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

std::size_t Limiter::import_keys(const std::vector<KeyExport>& keys, ImportMode, const Instant&) {
    return keys.size();
}

std::string_view pause_cause_name(PauseCause cause) noexcept {
    switch (cause) {
        case PauseCause::unspecified: return "unspecified";
        case PauseCause::vendor_refused: return "vendor_refused";
        case PauseCause::quota_spent: return "quota_spent";
    }
    return "unspecified";
}

bool more_constrained(const KeyStatus& a, const KeyStatus& b) noexcept {
    if (a.remaining != b.remaining) return a.remaining < b.remaining;
    if (a.paused_until != b.paused_until) return a.paused_until > b.paused_until;
    if (a.reset != b.reset) return a.reset > b.reset;
    return a.key < b.key;
}

void StatusScan::offer(const KeyStatus& status) {
    if (keep_ == 0) return;
    // Full, and no more constrained than the least constrained kept: the usual
    // case once the heap has filled, decided without searching it.
    if (heap_.size() == keep_ && !more_constrained(status, heap_.front())) return;
    // The table may have moved this key between two steps (growth, an erase's
    // backward shift): it is kept once, with its latest reading.
    const auto same =
        std::find_if(heap_.begin(), heap_.end(), [&](const KeyStatus& k) { return k.key == status.key; });
    if (same != heap_.end()) {
        *same = status;
        std::make_heap(heap_.begin(), heap_.end(), more_constrained);
        return;
    }
    if (heap_.size() == keep_) {
        std::pop_heap(heap_.begin(), heap_.end(), more_constrained);
        heap_.back() = status;
    } else {
        heap_.push_back(status);
    }
    std::push_heap(heap_.begin(), heap_.end(), more_constrained);
}

std::vector<KeyStatus> StatusScan::take() {
    std::sort_heap(heap_.begin(), heap_.end(), more_constrained);
    done_ = true;
    return std::move(heap_);
}

void Limiter::status_step(const Instant& now, StatusScan& scan, std::size_t) const {
    for (const auto& key : status(now, scan.keep())) scan.offer(key);
    scan.advance(0, key_count(), true);
}

std::vector<KeyStatus> Limiter::status(const Instant& now, std::size_t max_keys) const {
    StatusScan scan(max_keys);
    while (!scan.done()) status_step(now, scan, std::numeric_limits<std::size_t>::max());
    return scan.take();
}

}  // namespace sluice::limit
