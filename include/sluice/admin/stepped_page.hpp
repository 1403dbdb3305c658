#pragma once
// Admin pages that read the limits' keys are built in bounded steps, so that a
// page over 100,000 keys neither holds the admission lock nor the io thread for
// the whole walk: begin() takes what one short look under the lock can, each
// advance() does one bounded step under the lock, and the admin session posts
// every step separately (admin_server.cpp), so admissions run in between.
// /status (StatusPage) and /v1/limits (LimitsView) are two such pages; the key
// walk they share is LimitKeyWalk.

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "sluice/common/clock.hpp"
#include "sluice/limit/limiter.hpp"
#include "sluice/proxy/runtime.hpp"
#include "sluice/queue/admission_controller.hpp"

namespace sluice::admin {

class SteppedPage {
public:
    virtual ~SteppedPage() = default;
    // Everything but the per-key walk (one short look under the admission lock).
    virtual void begin(proxy::Runtime& runtime) = 0;
    // One bounded step. True once the page is complete.
    virtual bool advance(proxy::Runtime& runtime) = 0;
    // The body (JSON). Called once, after advance() returned true.
    virtual std::string finish() = 0;
};

// One limiter whose key walk is complete.
struct WalkedLimit {
    std::size_t index = 0;  // the runtime's limiter index (Runtime::limiter_configs() order)
    std::size_t slot = 0;   // where it lives in the LimitService (Runtime::limit_slots[index])
    const limit::Limiter* limiter = nullptr;
    std::vector<limit::KeyStatus> keys;  // the `keep` most constrained, most constrained first
    std::size_t tracked_keys = 0;
    Instant at;  // when the walk's last step ran
};

// Walks every limiter's keys, one limiter after the other, examining at most
// kSlotsPerStep key slots per step under the admission lock, and keeping the
// `keep` most constrained keys of each (limit::StatusScan).
class LimitKeyWalk {
public:
    // Measured (tests/unit/limit/status_scan_test.cpp, "[.status-bench]"): 1,024
    // slots take well under 100 us; the whole walk over 100,000 keys takes milliseconds.
    static constexpr std::size_t kSlotsPerStep = 1024;

    explicit LimitKeyWalk(std::size_t keep) : keep_(keep) {}

    std::size_t keep() const noexcept { return keep_; }
    // The limiters to walk: a runtime's limit_slots.
    void set_limits(std::vector<std::size_t> slots) noexcept { slots_ = std::move(slots); }
    bool done() const noexcept { return limit_ >= slots_.size(); }

    // One step. When it completes a limiter's walk, `under_lock(controller,
    // walked)` runs before the lock is released (to read what else the page needs
    // of those keys, e.g. their queues) and the limiter is returned, to be turned
    // into the page's text outside the lock.
    template <class UnderLock>
    std::optional<WalkedLimit> step(proxy::LimitService& limits, UnderLock&& under_lock) {
        if (done()) return std::nullopt;
        if (!scan_) scan_.emplace(keep_);
        std::optional<WalkedLimit> walked;
        limits.inspect([&](queue::AdmissionController& controller, const Instant& at) {
            const limit::Limiter& limiter = controller.limiter(slots_[limit_]);
            limiter.status_step(at, *scan_, kSlotsPerStep);
            if (scan_->done()) {
                walked.emplace(
                    WalkedLimit{limit_, slots_[limit_], &limiter, scan_->take(), limiter.key_count(), at});
                under_lock(static_cast<const queue::AdmissionController&>(controller), *walked);
            }
            return 0;
        });
        if (walked) {
            scan_.reset();
            ++limit_;
        }
        return walked;
    }

private:
    std::size_t keep_;
    std::size_t limit_ = 0;
    std::vector<std::size_t> slots_;
    std::optional<limit::StatusScan> scan_;
};

const char* algorithm_name(config::Algorithm algorithm) noexcept;

// Seconds from `from` to `to` (mono), never negative.
double seconds_between(Nanos from, Nanos to) noexcept;

}  // namespace sluice::admin
