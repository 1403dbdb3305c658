#include "sluice/proxy/limit_service.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>

#include "sluice/common/log.hpp"
#include "sluice/proxy/shared_store.hpp"
#include "sluice/queue/vendor_reaction.hpp"
#include "sluice/state/restore.hpp"

namespace sluice::proxy {

namespace net = boost::asio;

LimitService::LimitService(net::io_context& ioc, const Clock& clock)
    : clock_(clock),
      controller_({}),
      timer_(net::make_strand(ioc)),
      slot_configs_(std::make_unique<std::unique_ptr<const config::LimitConfig>[]>(
          feedback::AdmissionTally::kMaxLimits)),
      ioc_(&ioc) {}

LimitService::~LimitService() {
    if (store_) store_->stop();
}

void LimitService::share_through_redis(const config::RedisConfig& redis) {
    queue::SharedStageOptions options;
    options.replicas = redis.replicas;
    options.connect_grace = redis.connect_timeout;
    // The connection's reconnect backoff is capped at 5 s (redis::RedisEndpoint::reconnect_max).
    options.return_guard = std::chrono::seconds(5) + redis.connect_timeout;
    store_ = std::make_shared<SharedStore>(
        ioc_->get_executor(), redis, clock_,
        [this](std::size_t slot) -> const config::LimitConfig& { return *slot_configs_[slot]; });
    {
        const std::lock_guard<std::mutex> lock(mutex_);
        stage_ = std::make_unique<queue::SharedStage>(options, clock_.now());
    }
    recheck_timer_ = std::make_unique<net::steady_timer>(net::make_strand(*ioc_));
    std::weak_ptr<LimitService> weak = weak_from_this();
    store_->start(
        [weak](queue::TicketId ticket, const queue::StoreAnswer& answer) {
            if (auto self = weak.lock()) self->on_store_answer(ticket, answer);
        },
        [weak](bool up) {
            if (auto self = weak.lock()) self->on_store_state(up);
        });
}

queue::Admission LimitService::submit_shared(queue::AdmissionRequest request,
                                             const net::any_io_executor& executor, DecisionHandler handler) {
    Ready ready;
    queue::Admission result;
    {
        const std::lock_guard<std::mutex> lock(mutex_);
        const auto now = clock_.now();
        auto uses = request.uses;
        const Nanos deadline = now.mono + request.max_wait;
        auto admission = controller_.submit(std::move(request), now);
        if (admission.outcome != queue::Outcome::rejected && stopped_) {
            // Draining: nothing will be admitted any more.
            if (admission.outcome == queue::Outcome::queued) {
                controller_.cancel(admission.ticket, now);
            } else {
                controller_.refund(uses, admission.at, now);
                controller_.release(uses, now);
            }
            result.outcome = queue::Outcome::rejected;
            result.reason = Errc::shutting_down;
            result.queue = admission.queue;
            return result;
        }
        result = admission;
        if (admission.outcome == queue::Outcome::queued) {
            waiters_.emplace(admission.ticket,
                             Waiter{executor, std::move(handler), std::move(uses), deadline});
            arm_timer_locked(now);
            return result;
        }
        if (admission.outcome == queue::Outcome::rejected || uses.empty()) return result;
        // Admitted by the local queue: the shared stage decides. The session waits as if queued.
        const auto ticket = next_shared_ticket_++;
        waiters_.emplace(ticket, Waiter{executor, std::move(handler), {}, deadline});
        enter_shared_locked(ticket, std::move(uses), admission, deadline, now);
        result.outcome = queue::Outcome::queued;
        result.ticket = ticket;
        poll_locked(now, ready);
    }
    dispatch(ready);
    return result;
}

void LimitService::enter_shared_locked(queue::TicketId ticket, std::vector<limit::LimitUse> uses,
                                       const queue::Admission& local, Nanos deadline, const Instant& now) {
    stage_->enter(ticket, std::move(uses), local, deadline, now);
}

void LimitService::on_store_answer(queue::TicketId ticket, const queue::StoreAnswer& answer) {
    if (answer.kind == queue::StoreAnswer::Kind::unavailable && store_->connected()) recheck_store_later();
    Ready ready;
    {
        const std::lock_guard<std::mutex> lock(mutex_);
        const auto now = clock_.now();
        stage_->answered(ticket, answer, now);
        poll_locked(now, ready);
    }
    dispatch(ready);
}

void LimitService::on_store_state(bool up) {
    if (up) return merge_then_share(store_->lost_data());
    Ready ready;
    {
        const std::lock_guard<std::mutex> lock(mutex_);
        const auto now = clock_.now();
        if (!stage_->in_fallback()) ++store_->counters().switches_fallback;
        stage_->set_available(false, now);
        poll_locked(now, ready);
    }
    dispatch(ready);
}

// Back to shared state: what this replica admitted without Redis is counted in it first, so
// that coming back never grants a fresh window. Admissions made while that is under way are
// recorded in the next round; the stage trusts Redis once a round finds nothing new.
void LimitService::merge_then_share(bool lost_data) {
    std::vector<queue::FallbackLot> lots;
    {
        const std::lock_guard<std::mutex> lock(mutex_);
        const auto now = clock_.now();
        lots = stage_->take_fallback_lots();
        if (lost_data) lots = stage_->recent_lots(now);  // the fallback's lots are among them
    }
    if (lots.empty()) {
        Ready ready;
        {
            const std::lock_guard<std::mutex> lock(mutex_);
            const auto now = clock_.now();
            if (!stage_->available()) {
                ++store_->counters().switches_shared;
                log::info("shared", store_->counters().switches_shared == 1
                                        ? "limits are shared through Redis"
                                        : "limits are shared through Redis again");
            }
            stage_->set_available(true, now);
            poll_locked(now, ready);
        }
        dispatch(ready);
        return;
    }
    std::weak_ptr<LimitService> weak = weak_from_this();
    store_->record(lots, [weak](bool ok) {
        auto self = weak.lock();
        if (!self) return;
        if (!ok) {
            // The connection is dropped and comes back (on_store_state again), or the next round tries.
            log::warn("shared", "recording fallback admissions in Redis failed; staying on the fallback");
            self->recheck_store_later();
            return;
        }
        self->merge_then_share(false);
    });
}

void LimitService::recheck_store_later() {
    // A reconnect re-checks by itself (on_store_state); an error on a live connection does not.
    if (recheck_armed_.exchange(true)) return;
    recheck_timer_->expires_after(std::chrono::seconds(1));
    recheck_timer_->async_wait([weak = weak_from_this()](boost::system::error_code ec) {
        auto self = weak.lock();
        if (!self || ec) return;
        self->recheck_armed_ = false;
        bool fallback = false;
        {
            const std::lock_guard<std::mutex> lock(self->mutex_);
            fallback = self->stage_->in_fallback();
        }
        if (fallback && self->store_->connected()) self->merge_then_share(false);
    });
}

std::optional<LimitService::SharedStatus> LimitService::shared_status() {
    if (!store_) return std::nullopt;
    SharedStatus status;
    {
        const std::lock_guard<std::mutex> lock(mutex_);
        status.fallback = !stage_->available();
        status.waiting = stage_->waiting();
        status.return_guard_left = stage_->return_guard_left(clock_.now());
        status.fallback_admissions = stage_->fallback_admissions();
        status.fallback_open = stage_->fallback_allowed_open();
        status.denied = stage_->denied();
        status.dropped_lots = stage_->dropped_fallback_lots();
    }
    auto& counters = store_->counters();
    status.connected = store_->connected();
    for (std::size_t op = 0; op < status.commands.size(); ++op)
        status.commands[op] = counters.commands[op].load();
    for (std::size_t r = 0; r < status.errors.size(); ++r) status.errors[r] = counters.errors[r].load();
    status.switches_shared = counters.switches_shared.load();
    status.switches_fallback = counters.switches_fallback.load();
    status.data_lost = counters.data_lost.load();
    status.merged_lots = counters.merged_lots.load();
    return status;
}

namespace {

// What the limiter object reads from its config besides what its StableId
// covers: a change there needs a new limiter, but every count stays exact.
bool same_limiter_settings(const config::LimitConfig& a, const config::LimitConfig& b) {
    return a.enforce == b.enforce && a.max_keys == b.max_keys &&
           a.feedback.vendor_limit == b.feedback.vendor_limit &&
           a.feedback.vendor_limit_type == b.feedback.vendor_limit_type;
}

}  // namespace

namespace {

// Permits in flight are no state of the exchange's own (export_keys leaves them
// out: they end with the process), but across a reload those exchanges go on:
// the successor of a concurrency limit counts them, and their releases reach it
// (AdmissionController::release), so a changed limit never admits past itself.
void carry_in_flight(const limit::Limiter& old, limit::Limiter& successor, const Instant& now) {
    if (old.config().algorithm != config::Algorithm::concurrency ||
        successor.config().algorithm != config::Algorithm::concurrency)
        return;
    for (const auto& key : old.status(now, old.key_count())) {
        const std::int64_t in_flight = old.config().limit - key.remaining;
        if (in_flight > 0) successor.consume(key.key, in_flight, now);
    }
}

}  // namespace

LimitService::Installed LimitService::install(const std::vector<config::LimitConfig>& limits) {
    Installed result;
    Ready ready;
    {
        const std::lock_guard<std::mutex> lock(mutex_);
        const auto now = clock_.now();
        std::size_t new_slots = 0;
        for (const auto& limit : limits) {
            const auto live = live_by_name_.find(limit.name);
            if (live == live_by_name_.end() || !(slot_ids_[live->second] == limit::stable_id(limit)) ||
                !same_limiter_settings(*slot_configs_[live->second], limit))
                ++new_slots;
        }
        if (controller_.limiter_count() + new_slots > feedback::AdmissionTally::kMaxLimits) {
            result.error = "too many limit changes since sluice started (" +
                           std::to_string(feedback::AdmissionTally::kMaxLimits) +
                           " limits in all): restart sluice to apply this configuration";
            return result;
        }
        std::unordered_map<std::string, std::size_t> now_live;
        std::vector<queue::AdmissionController::Retirement> retirements;
        std::vector<limit::KeyExport> keys;
        for (const auto& limit : limits) {
            const auto id = limit::stable_id(limit);
            const auto live = live_by_name_.find(limit.name);
            const bool same_id = live != live_by_name_.end() && slot_ids_[live->second] == id;
            if (same_id && same_limiter_settings(*slot_configs_[live->second], limit)) {
                result.slots.push_back(live->second);
                result.kept.push_back(limit.name);
                now_live.emplace(limit.name, live->second);
                continue;
            }
            const auto slot = controller_.add_limiter(limit::make_limiter(limit));
            tally_.add_limit();
            slot_ids_.push_back(id);
            slot_configs_[slot] = std::make_unique<const config::LimitConfig>(limit);
            if (stage_) stage_->add_limit(slot, *slot_configs_[slot]);
            if (live != live_by_name_.end()) {
                // The old limiter's counts move to the new one: a reload never grants a fresh quota.
                const auto& old = controller_.limiter(live->second);
                auto& successor = controller_.feedback_target(slot);
                keys.clear();
                old.export_keys(now, keys);
                successor.import_keys(
                    keys, same_id ? limit::ImportMode::exact : limit::ImportMode::carry_used, now);
                carry_in_flight(old, successor, now);
                retirements.push_back({live->second, slot});
                result.carried.push_back(limit.name);
            } else {
                result.added.push_back(limit.name);
            }
            result.slots.push_back(slot);
            now_live.emplace(limit.name, slot);
        }
        for (const auto& [name, slot] : live_by_name_) {
            if (now_live.count(name) == 0) {
                retirements.push_back({slot, std::nullopt});
                result.removed.push_back(name);
            }
        }
        if (!retirements.empty()) controller_.retire(retirements, now);
        live_by_name_ = std::move(now_live);
        poll_locked(now, ready);
    }
    dispatch(ready);
    return result;
}

bool LimitService::cancel(queue::TicketId ticket) {
    Ready ready;
    bool cancelled = false;
    {
        const std::lock_guard<std::mutex> lock(mutex_);
        const auto now = clock_.now();
        if (waiters_.erase(ticket) > 0) {
            cancelled = controller_.cancel(ticket, now);
            if (!cancelled && stage_) {
                if (auto units = stage_->cancel(ticket)) {
                    // Admitted locally, waiting for the shared store: its local units go back.
                    controller_.refund(units->uses, units->admitted_at, now);
                    controller_.release(units->uses, now);
                    stage_->released(units->uses, now);
                    cancelled = true;
                }
            }
            // The head may have been blocking others behind it (shared limits).
            poll_locked(now, ready);
        }
    }
    dispatch(ready);
    return cancelled;
}

void LimitService::release(const std::vector<limit::LimitUse>& uses, std::uint64_t lease) {
    if (uses.empty()) return;
    Ready ready;
    {
        const std::lock_guard<std::mutex> lock(mutex_);
        const auto now = clock_.now();
        controller_.release(uses, now);
        if (stage_) stage_->released(uses, now);
        poll_locked(now, ready);
    }
    if (store_ && lease != 0) store_->release(lease, uses);
    dispatch(ready);
}

void LimitService::refund(const std::vector<limit::LimitUse>& uses, Nanos admitted_at, std::uint64_t lease) {
    if (uses.empty()) return;
    Ready ready;
    {
        const std::lock_guard<std::mutex> lock(mutex_);
        const auto now = clock_.now();
        controller_.refund(uses, admitted_at, now);
        poll_locked(now, ready);
    }
    // The other replicas get the units back too. Only an admission the store made holds units
    // there: one the fallback made is not in the store yet (its lot is merged later, counting
    // it), and a refund there would take another request's units.
    if (store_ && lease != 0) store_->refund(uses, admitted_at);
    dispatch(ready);
}

void LimitService::settle(const std::vector<limit::LimitUse>& more, const std::vector<limit::LimitUse>& less,
                          Nanos admitted_at, std::uint64_t lease) {
    if (more.empty() && less.empty()) return;
    Ready ready;
    {
        const std::lock_guard<std::mutex> lock(mutex_);
        const auto now = clock_.now();
        controller_.charge(more, now);
        controller_.refund(less, admitted_at, now);
        poll_locked(now, ready);
    }
    // The other replicas must see what the vendor charged beyond the admission, and get back
    // what it charged less (only from an admission the store made: as refund()).
    if (store_ && !more.empty()) store_->charge(more);
    if (store_ && lease != 0 && !less.empty()) store_->refund(less, admitted_at);
    dispatch(ready);
}

void LimitService::pause_until(std::size_t limit_index, limit::KeyHash key, Nanos until) {
    Ready ready;
    {
        const std::lock_guard<std::mutex> lock(mutex_);
        const auto now = clock_.now();
        controller_.pause_until(limit_index, key, until, now);
        poll_locked(now, ready);
    }
    if (store_) store_->pause(limit::LimitUse{limit_index, key, 1}, until, "unspecified");
    dispatch(ready);
}

feedback::Reaction LimitService::react(const std::vector<limit::LimitUse>& uses,
                                       const std::vector<std::int64_t>& admitted_after,
                                       const feedback::VendorSignal& signal,
                                       const config::FeedbackSettings& settings, unsigned status,
                                       bool retry_eligible, Nanos deadline) {
    Ready ready;
    feedback::Reaction reaction;
    // Pauses and caps go to every replica too (shared limits): sent once the lock is released.
    std::vector<queue::SharedFeedbackAction> for_store;
    {
        const std::lock_guard<std::mutex> lock(mutex_);
        const auto now = clock_.now();
        reaction = queue::react_to_vendor(controller_, uses, admitted_after, signal, settings, status,
                                          retry_eligible, deadline, now, store_ ? &for_store : nullptr);
        if (queue::changes_limits(reaction)) poll_locked(now, ready);
    }
    for (const auto& [use, action] : for_store) {
        if (action.kind == feedback::FeedbackAction::Kind::pause) {
            store_->pause(use, action.until, limit::pause_cause_name(queue::pause_reason_of(signal).cause));
        } else {
            store_->cap(use, action.units, action.until);
        }
    }
    dispatch(ready);
    return reaction;
}

void LimitService::cap_remaining(std::size_t limit_index, limit::KeyHash key, std::int64_t remaining,
                                 Nanos reset_at) {
    Ready ready;
    {
        const std::lock_guard<std::mutex> lock(mutex_);
        const auto now = clock_.now();
        controller_.cap_remaining(limit_index, key, remaining, reset_at, now);
        poll_locked(now, ready);
    }
    if (store_) store_->cap(limit::LimitUse{limit_index, key, 1}, remaining, reset_at);
    dispatch(ready);
}

void LimitService::stop() {
    Ready ready;
    {
        const std::lock_guard<std::mutex> lock(mutex_);
        stopped_ = true;
        timer_.cancel();
        // Nothing will wake the queue again: answer every waiting request now,
        // through the decision path, so each session writes its 503 and lets go.
        for (auto& refusal : controller_.reject_all(Errc::shutting_down, clock_.now())) {
            auto it = waiters_.find(refusal.ticket);
            if (it == waiters_.end()) continue;
            ready.emplace_back(std::move(it->second), refusal);  // Admission is trivially copyable
            waiters_.erase(it);
        }
        if (stage_) {
            queue::SharedStage::Step step;
            stage_->reject_all(Errc::shutting_down, clock_.now(), step);
            for (const auto& refusal : step.decided) {
                auto it = waiters_.find(refusal.ticket);
                if (it == waiters_.end()) continue;
                ready.emplace_back(std::move(it->second), refusal);
                waiters_.erase(it);
            }
            ready.shared.orphan_leases = std::move(step.orphan_leases);
        }
    }
    dispatch(ready);
}

std::vector<state::LimitSnapshot> LimitService::snapshot_for_state(
    const std::vector<config::LimitConfig>& configs, const std::vector<std::size_t>& slots, Nanos min_window,
    Instant& at) {
    std::vector<state::LimitSnapshot> out;
    const std::lock_guard<std::mutex> lock(mutex_);
    at = clock_.now();
    std::vector<limit::KeyExport> keys;
    for (std::size_t i = 0; i < configs.size() && i < slots.size(); ++i) {
        keys.clear();
        controller_.limiter(slots[i]).export_keys(at, keys);
        state::keep_worth_saving(configs[i], min_window, at, keys);
        if (!keys.empty()) out.push_back(state::limit_snapshot(configs[i], std::move(keys)));
    }
    return out;
}

std::size_t LimitService::import_keys(std::size_t slot, const std::vector<limit::KeyExport>& keys,
                                      limit::ImportMode mode) {
    Ready ready;
    std::size_t dropped = 0;
    {
        const std::lock_guard<std::mutex> lock(mutex_);
        const auto now = clock_.now();
        dropped = controller_.feedback_target(slot).import_keys(keys, mode, now);
        poll_locked(now, ready);
    }
    dispatch(ready);
    return dropped;
}

void LimitService::close_queue_at(Nanos close_at) {
    Ready ready;
    {
        const std::lock_guard<std::mutex> lock(mutex_);
        const auto now = clock_.now();
        for (auto& refusal : controller_.close_queue_at(close_at, now)) {
            auto it = waiters_.find(refusal.ticket);
            if (it == waiters_.end()) continue;
            ready.emplace_back(std::move(it->second), refusal);
            waiters_.erase(it);
        }
        poll_locked(now, ready);
    }
    dispatch(ready);
}

void LimitService::poll_locked(const Instant& now, Ready& ready) {
    // A refusal in the shared stage gives local units back, which may admit more locally: rounds
    // until none does (each round that loops refused at least one request, so it ends).
    for (bool again = true; again;) {
        again = false;
        for (auto& admission : controller_.poll(now)) {
            auto it = waiters_.find(admission.ticket);
            if (it == waiters_.end()) continue;  // cancelled concurrently; the controller already dropped it
            if (stage_ && admission.outcome == queue::Outcome::admitted && !it->second.uses.empty()) {
                enter_shared_locked(admission.ticket, std::move(it->second.uses), admission,
                                    it->second.deadline, now);
                it->second.uses.clear();
                continue;  // its waiter waits on for the shared stage's decision
            }
            ready.emplace_back(std::move(it->second), std::move(admission));
            waiters_.erase(it);
        }
        if (!stage_) break;
        queue::SharedStage::Step step;
        stage_->poll(now, step);
        for (const auto& decided : step.decided) {
            auto it = waiters_.find(decided.ticket);
            if (it == waiters_.end()) continue;
            ready.emplace_back(std::move(it->second), decided);
            waiters_.erase(it);
        }
        for (const auto& units : step.refused_uses) {
            controller_.refund(units.uses, units.admitted_at, now);
            controller_.release(units.uses, now);
            stage_->released(units.uses, now);
            again = true;
        }
        auto& out = ready.shared;
        std::move(step.asks.begin(), step.asks.end(), std::back_inserter(out.asks));
        std::move(step.orphan_leases.begin(), step.orphan_leases.end(),
                  std::back_inserter(out.orphan_leases));
        std::move(step.admitted_leases.begin(), step.admitted_leases.end(),
                  std::back_inserter(out.admitted_leases));
    }
    arm_timer_locked(now);
}

void LimitService::arm_timer_locked(const Instant& now) {
    if (stopped_) return;
    Nanos next = controller_.next_wakeup(now);
    if (stage_) next = std::min(next, stage_->next_wakeup());
    if (next == armed_for_) return;
    armed_for_ = next;
    if (next == kNever) {
        timer_.cancel();
        return;
    }
    // Mono time is steady_clock's epoch (SystemClock), so the deadline converts directly.
    timer_.expires_at(std::chrono::steady_clock::time_point(
        std::chrono::duration_cast<std::chrono::steady_clock::duration>(next)));
    timer_.async_wait([weak = weak_from_this(), next](boost::system::error_code ec) {
        if (ec) return;
        if (auto self = weak.lock()) {
            (void)next;
            self->on_timer();
        }
    });
}

void LimitService::on_timer() {
    Ready ready;
    {
        const std::lock_guard<std::mutex> lock(mutex_);
        armed_for_ = kNever;  // this wait is spent; poll re-arms for whatever is next
        poll_locked(clock_.now(), ready);
    }
    dispatch(ready);
}

void LimitService::dispatch(Ready& ready) {
    if (store_) {
        // Leases first: an exchange admitted now may end before the next renewal.
        for (const auto& [lease, uses] : ready.shared.admitted_leases) store_->track_lease(lease, uses);
        for (const auto& ask : ready.shared.asks) store_->ask(ask);
        for (const auto& [lease, uses] : ready.shared.orphan_leases) store_->release(lease, uses);
    }
    for (auto& [waiter, admission] : ready.decided) {
        net::post(waiter.executor, [handler = std::move(waiter.handler), admission = std::move(admission)]() {
            handler(admission);
        });
    }
}

}  // namespace sluice::proxy
