// The shared stage (shared_stage.hpp): FIFO lines whose heads ask the store.
//
// Costs: a request admitted by the store at its first ask costs one map lookup
// (its line), one ask, one answer. A refused head costs nothing until its line is
// due again; the requests behind it are not touched until they head the line.

#include "sluice/queue/shared_stage.hpp"

#include <algorithm>
#include <utility>

namespace sluice::queue {

namespace {

// The share of a limit one replica may use on its own while the store cannot answer.
config::LimitConfig fallback_config(const config::LimitConfig& config, unsigned replicas) {
    config::LimitConfig share = config;
    const auto divide = [replicas](std::int64_t units) {
        return std::max<std::int64_t>(1, units / static_cast<std::int64_t>(std::max(1u, replicas)));
    };
    share.limit = divide(config.limit);
    if (config.burst > 0) share.burst = divide(config.burst);
    // A keyed fallback tracks as many keys as the local stage: enough for this replica's traffic.
    return share;
}

Nanos delay_until(Nanos at, const Instant& now) {
    if (at == kNever) return Nanos{0};
    return at > now.mono ? at - now.mono : Nanos{0};
}

}  // namespace

SharedStage::SharedStage(SharedStageOptions options, const Instant& now)
    : options_(options), connecting_until_(now.mono + options.connect_grace) {}

void SharedStage::add_limit(std::size_t slot, const config::LimitConfig& config) {
    if (slot >= fallback_.size()) {
        fallback_.resize(slot + 1);
        configs_.resize(slot + 1, nullptr);
    }
    if (fallback_[slot]) return;
    fallback_[slot] = limit::make_limiter(fallback_config(config, options_.replicas));
    configs_[slot] = &fallback_[slot]->config();
    if (config.algorithm != config::Algorithm::concurrency)
        guard_span_ = std::max(guard_span_, Nanos{config.window + config.margin});
}

void SharedStage::enter(TicketId ticket, std::vector<limit::LimitUse> uses, const Admission& local,
                        Nanos deadline, const Instant& now) {
    LineId id;
    id.reserve(uses.size());
    for (const auto& use : uses) id.emplace_back(use.limit_index, use.key);
    std::sort(id.begin(), id.end());
    auto [line_it, created] = lines_.try_emplace(id);
    Line& line = line_it->second;
    if (created) line.id = std::move(id);
    auto& entry = entries_[ticket];
    entry.ticket = ticket;
    entry.uses = std::move(uses);
    entry.local = local;
    entry.deadline = deadline;
    entry.line = &line;
    line.fifo.push_back(ticket);
    // An open line asks for every request at once; a blocked one only for its head.
    const bool asks_now = !line.blocked || (line.fifo.size() == 1 && line.asking == 0);
    if (deadline <= now.mono && asks_now) {
        entry.ask_once = true;
    } else {
        deadlines_.emplace(deadline, ticket);  // behind others with no time to wait: refused at the next poll
    }
    if (asks_now) schedule(line, now.mono);
}

void SharedStage::schedule(Line& line, Nanos due) {
    if (line.due != kNever) due_.erase({line.due, &line});
    line.due = due;
    if (due != kNever) due_.emplace(due, &line);
}

Nanos SharedStage::jitter(const Entry& entry, Nanos delay, const Instant& now) const {
    // Replicas refused together would otherwise all ask again at the same instant. A few ms at
    // most, whatever the wait: when a window's units free together, a replica whose line is busy
    // asks again at once after each admission, and a later ask would find them all taken.
    (void)delay;
    const Nanos span{std::chrono::milliseconds(2)};
    std::uint64_t x = entry.ticket ^ (static_cast<std::uint64_t>(now.mono.count()) * 0x9e3779b97f4a7c15ULL);
    x ^= x >> 31;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 29;
    const auto drawn = x % static_cast<std::uint64_t>(span.count() + 1);
    return Nanos{static_cast<Nanos::rep>(drawn / (1 + std::min<std::uint64_t>(entry.refusals, 63)))};
}

void SharedStage::answered(TicketId ticket, const StoreAnswer& answer, const Instant& now) {
    pending_answers_.push_back({ticket, answer});
    (void)now;
}

std::optional<SharedStage::LocalUnits> SharedStage::cancel(TicketId ticket) {
    const auto it = entries_.find(ticket);
    if (it == entries_.end()) return std::nullopt;
    if (it->second.asking) {
        // Its answer is on its way: a lease it brings is given back then (orphan_leases).
        orphaned_.emplace(ticket, it->second.uses);
    }
    LocalUnits units{ticket, it->second.uses, it->second.local.at};
    remove(ticket);
    return units;
}

void SharedStage::reject_all(Errc reason, const Instant& now, Step& step) {
    while (!entries_.empty()) {
        Entry& entry = entries_.begin()->second;
        if (entry.asking) orphaned_.emplace(entry.ticket, entry.uses);
        refuse(entry, reason, Nanos{0}, now, step);
    }
}

void SharedStage::remove(TicketId ticket) {
    const auto it = entries_.find(ticket);
    if (it == entries_.end()) return;
    Entry& entry = it->second;
    if (!entry.ask_once) deadlines_.erase({entry.deadline, ticket});
    Line& line = *entry.line;
    const bool was_head = !line.fifo.empty() && line.fifo.front() == ticket;
    if (entry.asking) --line.asking;  // its answer, if any, finds it gone (orphaned_)
    line.fifo.erase(std::find(line.fifo.begin(), line.fifo.end(), ticket));
    entries_.erase(it);
    if (line.fifo.empty()) {
        schedule(line, kNever);
        lines_.erase(line.id);
        return;
    }
    if (was_head) {
        line.waits_for_permit = false;
        schedule(line, Nanos{0});  // the next head acts at the next poll
    }
}

void SharedStage::set_available(bool up, const Instant& now) {
    const Mode next = up ? Mode::shared : Mode::fallback;
    if (mode_ == next) return;
    if (mode_ == Mode::fallback && up) guard_until_ = now.mono + guard_span_ + options_.return_guard;
    mode_ = next;
    // Every head acts again under the new mode (those asking get their answer first).
    for (auto& [id, line] : lines_) {
        if (!line.fifo.empty()) schedule(line, now.mono);
    }
}

void SharedStage::released(const std::vector<limit::LimitUse>& uses, const Instant& now) {
    bool permit = false;
    for (const auto& use : uses) {
        if (!shared(use.limit_index)) continue;
        auto& limiter = *fallback_[use.limit_index];
        if (limiter.config().algorithm != config::Algorithm::concurrency) continue;
        limiter.release(use.key, use.cost, now);
        permit = true;
    }
    if (!permit) return;
    for (auto& [id, line] : lines_) {
        if (line.waits_for_permit && line.asking == 0 && !line.fifo.empty()) {
            line.waits_for_permit = false;
            schedule(line, now.mono);
        }
    }
}

void SharedStage::admit(Entry& entry, const Instant& now, Step& step, bool via_store) {
    Admission admission = entry.local;
    admission.outcome = Outcome::admitted;
    admission.ticket = entry.ticket;
    // Its local units were consumed when the local stage admitted it: a refund must find them there.
    admission.at = entry.local.at;
    admission.lease = via_store ? entry.ticket : 0;
    for (const auto& use : entry.uses) {
        if (!shared(use.limit_index)) continue;
        // Every admission counts in the fallback's share, so that it is current when the store goes.
        fallback_[use.limit_index]->consume(use.key, use.cost, now);
        if (!via_store) {
            if (fallback_lots_.size() < options_.max_fallback_lots) {
                fallback_lots_.push_back({use, now.mono});
            } else {
                ++dropped_lots_;
            }
        }
    }
    if (!via_store) {
        ++fallback_admissions_;
        const bool open =
            std::any_of(entry.uses.begin(), entry.uses.end(), [this](const limit::LimitUse& use) {
                return shared(use.limit_index) &&
                       configs_[use.limit_index]->on_redis_failure == config::RedisFailurePolicy::allow;
            });
        if (open) ++fallback_open_;
    }
    if (via_store) step.admitted_leases.emplace_back(entry.ticket, entry.uses);
    step.decided.push_back(admission);
    remove(entry.ticket);
}

void SharedStage::refuse(Entry& entry, Errc reason, Nanos retry_after, const Instant& now, Step& step) {
    (void)now;
    Admission refusal = entry.local;
    refusal.outcome = Outcome::rejected;
    refusal.ticket = entry.ticket;
    refusal.at = now.mono;
    refusal.reason = reason;
    refusal.retry_after = retry_after;
    if (entry.last_limiting && *entry.last_limiting < entry.uses.size()) {
        refusal.limiting_limit = entry.uses[*entry.last_limiting].limit_index;
        refusal.tightest = entry.last_decision;
    }
    if (reason == Errc::shared_state_unavailable) ++denied_;
    step.refused_uses.push_back(LocalUnits{entry.ticket, entry.uses, entry.local.at});
    step.decided.push_back(refusal);
    remove(entry.ticket);
}

void SharedStage::act_fallback(Entry& entry, const Instant& now, Step& step) {
    Nanos earliest{0};
    bool waits_for_permit = false;
    for (std::size_t i = 0; i < entry.uses.size(); ++i) {
        const auto& use = entry.uses[i];
        if (!shared(use.limit_index)) continue;
        const auto& config = *configs_[use.limit_index];
        switch (config.on_redis_failure) {
            case config::RedisFailurePolicy::allow: continue;
            case config::RedisFailurePolicy::deny:
                entry.last_limiting = i;
                entry.last_decision = limit::Decision{};
                entry.last_decision.limit = config.limit;
                return refuse(entry, Errc::shared_state_unavailable, std::chrono::seconds(1), now, step);
            case config::RedisFailurePolicy::local: break;
        }
        if (!config.enforce) continue;
        const auto decision = fallback_[use.limit_index]->probe(use.key, use.cost, 0, now);
        if (decision.allowed) continue;
        if (decision.earliest == kNever) {
            waits_for_permit = true;
        } else {
            earliest = std::max(earliest, decision.earliest);
        }
        if (!entry.last_limiting || earliest == decision.earliest) {
            entry.last_limiting = i;
            entry.last_decision = decision;
        }
    }
    Line& line = *entry.line;
    if (earliest == Nanos{0} && !waits_for_permit) return admit(entry, now, step, false);
    if ((earliest != Nanos{0} && earliest > entry.deadline) || entry.deadline <= now.mono) {
        return refuse(entry, Errc::admission_timeout, delay_until(earliest, now), now, step);
    }
    line.waits_for_permit = waits_for_permit;
    // Time-bound waits look again when their limits allow; a permit wait also on a release, and
    // every permit_retry in case the store comes back meanwhile.
    Nanos due = earliest != Nanos{0} ? earliest : now.mono + options_.permit_retry;
    if (waits_for_permit) due = std::min(due, now.mono + options_.permit_retry);
    schedule(line, due);
}

Nanos SharedStage::guard_wait(Entry& entry, const Instant& now, bool& waits_for_permit) {
    Nanos earliest{0};
    for (const auto& use : entry.uses) {
        if (!shared(use.limit_index)) continue;
        const auto& config = *configs_[use.limit_index];
        if (config.on_redis_failure != config::RedisFailurePolicy::local || !config.enforce) continue;
        const auto decision = fallback_[use.limit_index]->probe(use.key, use.cost, 0, now);
        if (decision.allowed) continue;
        if (decision.earliest == kNever) {
            waits_for_permit = true;
        } else {
            earliest = std::max(earliest, decision.earliest);
        }
    }
    if (waits_for_permit && earliest == Nanos{0}) return now.mono + options_.permit_retry;
    return earliest;
}

void SharedStage::ask(Entry& entry, Step& step) {
    entry.asking = true;
    ++entry.line->asking;
    step.asks.push_back({entry.ticket, entry.uses});
}

void SharedStage::act(Line& line, const Instant& now, Step& step) {
    const LineId id = line.id;
    while (lines_.count(id) != 0 && !line.fifo.empty()) {
        Entry& head = entries_.at(line.fifo.front());
        switch (mode_) {
            case Mode::connecting: schedule(line, connecting_until_); return;
            case Mode::shared: {
                // Back from the fallback, one at a time within the share (guard_wait).
                const bool guarded = now.mono < guard_until_;
                if (line.blocked || guarded) {
                    if (line.asking > 0) return;  // its answer decides what comes next
                    if (guarded) {
                        bool waits_for_permit = false;
                        if (const auto wait = guard_wait(head, now, waits_for_permit); wait != Nanos{0}) {
                            if (wait > head.deadline || head.ask_once) {
                                head.last_earliest = wait;
                                refuse(head, Errc::admission_timeout, delay_until(wait, now), now, step);
                                continue;  // the next head, if any
                            }
                            line.waits_for_permit = waits_for_permit;
                            schedule(line, std::min(wait, guard_until_));
                            return;
                        }
                    }
                    ask(head, step);
                    return;
                }
                // Open: every request asks now, pipelined on the one connection (Redis runs them
                // in order, so the line stays FIFO while they are admitted).
                for (const auto ticket : line.fifo) {
                    if (line.asking >= kMaxAsking) break;
                    Entry& entry = entries_.at(ticket);
                    if (!entry.asking) ask(entry, step);
                }
                return;
            }
            case Mode::fallback: {
                if (line.asking > 0) return;  // answers still out come first
                const auto ticket = head.ticket;
                act_fallback(head, now, step);
                if (entries_.count(ticket) != 0) return;  // it waits (scheduled)
                break;                                    // admitted or refused: the next head acts
            }
        }
    }
}

void SharedStage::poll(const Instant& now, Step& step) {
    // Answers first: they free lines for the due pass below.
    auto answers = std::move(pending_answers_);
    pending_answers_.clear();
    for (auto& [ticket, answer] : answers) {
        if (const auto orphan = orphaned_.find(ticket); orphan != orphaned_.end()) {
            if (answer.kind == StoreAnswer::Kind::decided && answer.allowed) {
                // Admitted after the request had gone: the permits it took go back.
                step.orphan_leases.emplace_back(ticket, std::move(orphan->second));
            }
            orphaned_.erase(orphan);
            continue;
        }
        const auto it = entries_.find(ticket);
        if (it == entries_.end()) continue;
        Entry& entry = it->second;
        Line& line = *entry.line;
        entry.asking = false;
        --line.asking;
        if (answer.kind == StoreAnswer::Kind::unavailable) {
            if (mode_ == Mode::shared) set_available(false, now);
            schedule(line, now.mono);
            continue;
        }
        if (answer.allowed) {
            line.blocked = false;
            schedule(line, now.mono);       // open again: whoever has not asked asks now
            admit(entry, now, step, true);  // (may end the line)
            continue;
        }
        line.blocked = true;
        entry.last_earliest = answer.earliest;
        entry.last_limiting = answer.limiting;
        entry.last_decision = answer.decision;
        if (entry.ask_once || (answer.earliest != kNever && answer.earliest > entry.deadline)) {
            schedule(line, now.mono);  // the next head asks (may end the line)
            refuse(entry, Errc::admission_timeout, delay_until(answer.earliest, now), now, step);
            continue;
        }
        ++entry.refusals;
        if (answer.earliest == kNever) {
            line.waits_for_permit = true;
            schedule(line, now.mono + options_.permit_retry);
            continue;
        }
        schedule(line, answer.earliest + jitter(entry, delay_until(answer.earliest, now), now));
    }

    // Deadlines: refused at once, even while their ask is out (its answer then finds them gone).
    while (!deadlines_.empty() && deadlines_.begin()->first <= now.mono) {
        const auto ticket = deadlines_.begin()->second;
        Entry& entry = entries_.at(ticket);
        if (entry.asking) orphaned_.emplace(ticket, entry.uses);
        const auto retry = entry.last_earliest == kNever ? Nanos{0} : delay_until(entry.last_earliest, now);
        refuse(entry, Errc::admission_timeout, retry, now, step);
    }

    if (mode_ == Mode::connecting && now.mono >= connecting_until_) set_available(false, now);

    while (!due_.empty() && due_.begin()->first <= now.mono) {
        Line* line = due_.begin()->second;
        schedule(*line, kNever);
        act(*line, now, step);  // (lines end in remove(), when their last request goes)
    }
}

Nanos SharedStage::next_wakeup() const {
    Nanos next = kNever;
    if (!due_.empty()) next = due_.begin()->first;
    if (!deadlines_.empty()) next = std::min(next, deadlines_.begin()->first);
    if (mode_ == Mode::connecting && !entries_.empty()) next = std::min(next, connecting_until_);
    if (!pending_answers_.empty()) next = Nanos{0};
    return next;
}

std::vector<FallbackLot> SharedStage::take_fallback_lots() {
    return std::exchange(fallback_lots_, {});
}

std::vector<FallbackLot> SharedStage::recent_lots(const Instant& now) const {
    std::vector<FallbackLot> lots;
    std::vector<limit::KeyExport> keys;
    for (std::size_t slot = 0; slot < fallback_.size(); ++slot) {
        if (!fallback_[slot] || fallback_[slot]->config().algorithm == config::Algorithm::concurrency)
            continue;
        keys.clear();
        fallback_[slot]->export_keys(now, keys);
        for (const auto& key : keys) {
            for (const auto& lot : key.admitted)
                lots.push_back({limit::LimitUse{slot, key.key, lot.units}, lot.at});
        }
    }
    return lots;
}

}  // namespace sluice::queue
