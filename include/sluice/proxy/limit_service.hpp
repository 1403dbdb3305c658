#pragma once
// The I/O side of admission: the pure AdmissionController behind one mutex,
// plus the single timer that wakes it exactly at next_wakeup(). Sessions on any
// io thread submit requests; a queued request's decision is posted back to the
// executor the session gave (its strand).
//
// Why one mutex and not one strand per limit: a request may need several
// limits at once and must take all or none, so the decision has to see them
// together; the critical section is a few hundred nanoseconds of pure code,
// and with workers: 1 (the default) it is never contended.

#include <array>
#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "sluice/common/clock.hpp"
#include "sluice/feedback/admission_tally.hpp"
#include "sluice/feedback/reaction.hpp"
#include "sluice/limit/limit_state.hpp"
#include "sluice/queue/admission_controller.hpp"
#include "sluice/queue/shared_stage.hpp"
#include "sluice/state/snapshot.hpp"

namespace sluice::proxy {

class SharedStore;  // shared_store.hpp

class LimitService : public std::enable_shared_from_this<LimitService> {
public:
    using DecisionHandler = std::function<void(const queue::Admission&)>;

    LimitService(boost::asio::io_context& ioc, const Clock& clock);
    ~LimitService();

    // server.state.backend: redis (docs/distributed.md): every limit installed from now on is
    // shared through Redis; requests the local queue admits then pass the shared stage
    // (queue/shared_stage.hpp) before they are admitted. Call once, before the first install().
    // Throws std::runtime_error when the password cannot be read.
    void share_through_redis(const config::RedisConfig& redis);
    bool shared() const noexcept { return stage_ != nullptr; }
    // The shared stage's state, for /status and /metrics (nullopt: limits are not shared).
    struct SharedStatus {
        bool connected = false;
        bool fallback = false;
        std::size_t waiting = 0;
        Nanos return_guard_left{0};               // back from the fallback, the share still applies this long
        std::array<std::uint64_t, 7> commands{};  // by op: SharedStoreCounters::kOpNames
        std::array<std::uint64_t, 3> errors{};    // by reason: SharedStoreCounters::kErrorNames
        std::uint64_t fallback_open = 0;
        std::uint64_t switches_shared = 0, switches_fallback = 0, data_lost = 0, merged_lots = 0,
                      fallback_admissions = 0, denied = 0, dropped_lots = 0;
    };
    std::optional<SharedStatus> shared_status();

    // What install() did, for the log and a reload's answer (names of limits).
    struct Installed {
        std::vector<std::size_t> slots;    // where each given limit lives, in the order given
        std::vector<std::string> kept;     // same StableId and settings: the same limiter, untouched
        std::vector<std::string> carried;  // changed: a new limiter holding the old one's counts
        std::vector<std::string> added;
        std::vector<std::string> removed;
        std::string error;  // not empty: nothing was changed
    };

    // Makes `limits` (a config's limits, then its vendor gates) the live ones,
    // by name: a limit whose StableId and settings are unchanged keeps its
    // limiter; one whose parameters changed gets a new limiter that imports the
    // old one's keys (ImportMode::carry_used; exact when only enforce, max_keys
    // or feedback changed), so no reload grants a fresh quota; a limit no longer
    // named is retired. Waiting requests move to the new limiters
    // (AdmissionController::retire). The first call, at start, adds them all.
    Installed install(const std::vector<config::LimitConfig>& limits);

    // The state file (proxy/limit_state_file): under the lock, each given limit's
    // keys worth saving (state/restore.hpp), as of `at` (filled in). configs[i]
    // lives in slots[i]; slots beyond configs are ignored.
    std::vector<state::LimitSnapshot> snapshot_for_state(const std::vector<config::LimitConfig>& configs,
                                                         const std::vector<std::size_t>& slots,
                                                         Nanos min_window, Instant& at);
    // Imports restored keys into a slot's limiter; returns the keys dropped (max_keys).
    std::size_t import_keys(std::size_t slot, const std::vector<limit::KeyExport>& keys,
                            limit::ImportMode mode);

    // The config a slot's limiter was made with (any slot ever installed).
    const config::LimitConfig& slot_config(std::size_t slot) const { return *slot_configs_[slot]; }

    // Admitted or rejected now (returned), or queued: then the handler is made
    // (make_handler(), a DecisionHandler) and posted to `executor` exactly once,
    // unless cancel() removed it first. An admission decided at once, the usual
    // case, makes no handler at all.
    template <class MakeHandler>
    queue::Admission submit(queue::AdmissionRequest request, const boost::asio::any_io_executor& executor,
                            MakeHandler&& make_handler) {
        if (stage_) return submit_shared(std::move(request), executor, DecisionHandler(make_handler()));
        const std::lock_guard<std::mutex> lock(mutex_);
        const auto now = clock_.now();
        auto admission = controller_.submit(std::move(request), now);
        if (admission.outcome == queue::Outcome::queued && stopped_) {
            // Draining: no timer will wake this queue any more, so waiting would be in vain.
            controller_.cancel(admission.ticket, now);
            queue::Admission refusal;
            refusal.outcome = queue::Outcome::rejected;
            refusal.reason = Errc::shutting_down;
            refusal.queue = admission.queue;
            return refusal;
        }
        if (admission.outcome == queue::Outcome::queued) {
            waiters_.emplace(admission.ticket, Waiter{executor, DecisionHandler(make_handler())});
            arm_timer_locked(now);
        }
        return admission;
    }

    // The client left while queued. False if the decision is already on its way
    // (the session must then release what an admission took).
    bool cancel(queue::TicketId ticket);

    // The admitted exchange ended (any reason): concurrency permits go back (`lease`:
    // Admission::lease, the shared store's permits).
    void release(const std::vector<limit::LimitUse>& uses, std::uint64_t lease = 0);

    // The admitted request never reached the vendor: its units go back (docs/limits.md). `lease`
    // is Admission::lease: not 0, the admission went through the shared store, and its units go
    // back there too (SharedStore::refund); 0 (no store, or admitted by the fallback, whose
    // lots are merged later): only here.
    void refund(const std::vector<limit::LimitUse>& uses, Nanos admitted_at, std::uint64_t lease);

    // A cost settled from the vendor's response (docs/costs.md), under the lock: `more` are
    // units charged beyond what was admitted (Limiter::charge, at now), `less` are units given
    // back of an admission at `admitted_at` (Limiter::refund); waiters are woken. Each use's
    // `cost` is the difference. With shared limits, `more` is also counted in the shared store
    // (SharedStore::charge), and `less` given back there when the admission went through it
    // (`lease` not 0, as refund()).
    void settle(const std::vector<limit::LimitUse>& more, const std::vector<limit::LimitUse>& less,
                Nanos admitted_at, std::uint64_t lease);

    // Vendor feedback (feedback/reaction.hpp), under the lock: reads each limit's
    // count and limit in force for the request's key, runs the pure reaction on
    // them and carries out its limit actions (pause, cap, deficit, lower a
    // learned limit); the retry or relay is the caller's. `admitted_after[i]` is
    // what uses[i]'s limit admitted for its key after the request.
    feedback::Reaction react(const std::vector<limit::LimitUse>& uses,
                             const std::vector<std::int64_t>& admitted_after,
                             const feedback::VendorSignal& signal, const config::FeedbackSettings& settings,
                             unsigned status, bool retry_eligible, Nanos deadline);

    // Running totals of units admitted per limit and key (admission_tally.hpp).
    feedback::AdmissionTally& tally() noexcept { return tally_; }

    void pause_until(std::size_t limit_index, limit::KeyHash key, Nanos until);
    void cap_remaining(std::size_t limit_index, limit::KeyHash key, std::int64_t remaining, Nanos reset_at);

    // Runs `f(controller, now)` under the lock (admin status pages).
    template <class F>
    auto inspect(F&& f) {
        const std::lock_guard<std::mutex> lock(mutex_);
        return f(controller_, clock_.now());
    }

    const Clock& clock() const { return clock_; }
    // Drain: the timer stops, every queued request is answered shutting_down
    // (posted to its session like any decision), and later submits that would
    // queue are refused shutting_down at once.
    void stop();
    // The drain's first part: queued requests that can be admitted before
    // `close_at` (mono) still go; the others, and later ones that would wait
    // past it, are answered shutting_down at once (AdmissionController::close_queue_at).
    // stop() at close_at answers whatever still waits.
    void close_queue_at(Nanos close_at);

private:
    struct Waiter {
        boost::asio::any_io_executor executor;
        DecisionHandler handler;
        // Shared limits only: what the shared stage needs once the local queue admits it.
        std::vector<limit::LimitUse> uses;
        Nanos deadline{0};
    };
    // What a locked section decided, carried out once the lock is released.
    struct Ready {
        std::vector<std::pair<Waiter, queue::Admission>> decided;
        queue::SharedStage::Step shared;  // asks to send, leases to give back (shared limits only)
        void emplace_back(Waiter waiter, const queue::Admission& admission) {
            decided.emplace_back(std::move(waiter), admission);
        }
    };

    // Both run under mutex_: poll the controller, collect decided waiters, re-arm the timer.
    void poll_locked(const Instant& now, Ready& ready);
    void arm_timer_locked(const Instant& now);
    void dispatch(Ready& ready);
    void on_timer();

    // Shared limits (share_through_redis).
    queue::Admission submit_shared(queue::AdmissionRequest request,
                                   const boost::asio::any_io_executor& executor, DecisionHandler handler);
    // Under mutex_: a request the local queue admitted enters the shared stage.
    void enter_shared_locked(queue::TicketId ticket, std::vector<limit::LimitUse> uses,
                             const queue::Admission& local, Nanos deadline, const Instant& now);
    void on_store_answer(queue::TicketId ticket, const queue::StoreAnswer& answer);
    void on_store_state(bool up);
    void merge_then_share(bool lost_data);
    // An error reply (or a failed merge) on a connection that stays up: try shared state again later.
    void recheck_store_later();

    const Clock& clock_;
    std::mutex mutex_;
    queue::AdmissionController controller_;
    std::unordered_map<queue::TicketId, Waiter> waiters_;
    boost::asio::steady_timer timer_;
    Nanos armed_for_ = kNever;
    bool stopped_ = false;
    feedback::AdmissionTally tally_;
    // Install bookkeeping, under mutex_ (slot_configs_ is read without it: an
    // entry is written once, before any request can name its slot).
    std::unordered_map<std::string, std::size_t> live_by_name_;
    std::vector<limit::StableId> slot_ids_;
    std::unique_ptr<std::unique_ptr<const config::LimitConfig>[]> slot_configs_;
    // Shared limits: null unless share_through_redis() was called.
    std::shared_ptr<SharedStore> store_;
    std::unique_ptr<queue::SharedStage> stage_;
    boost::asio::io_context* ioc_ = nullptr;
    std::unique_ptr<boost::asio::steady_timer> recheck_timer_;  // recheck_store_later
    std::atomic<bool> recheck_armed_{false};
    queue::TicketId next_shared_ticket_ = queue::TicketId{1} << 62;  // apart from the controller's tickets
};

}  // namespace sluice::proxy
