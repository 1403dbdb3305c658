#include "sluice/admin/limits_view.hpp"

#include <algorithm>

#include "sluice/limit/request_key.hpp"

namespace sluice::admin {

namespace {

using json = nlohmann::json;

double unix_seconds(Nanos wall) {
    return static_cast<double>(wall.count()) / 1e9;
}

// Units one key of this limit holds at most: the bucket for a token bucket
// with a burst, else the limit (0 for a vendor gate, which has no quota).
std::int64_t capacity_of(const config::LimitConfig& cfg) {
    if (cfg.algorithm == config::Algorithm::vendor_gate) return 0;
    return config::request_capacity(cfg);
}

// The Unix time of mono time `when`, or null when it is not in the future.
json unix_time_of(Nanos when, const Instant& at) {
    if (when == kNever || when <= at.mono) return nullptr;
    return unix_seconds(at.wall + (when - at.mono));
}

// The routes whose requests this limiter counts: the routes naming a configured
// limit, or, for an upstream's vendor gate, the routes to that upstream with no limits.
json routes_of(const proxy::Runtime& runtime, std::size_t index) {
    const auto& config = *runtime.config;
    json names = json::array();
    const bool gate = index >= config.limits.size();
    // A class's cap or reserve (docs/priorities.md) counts requests of its parent's routes.
    if (!gate && config.limits[index].derived_from) index = *config.limits[index].derived_from;
    for (const auto& route : config.routes) {
        const bool uses =
            gate ? route.limit_indexes.empty() && route.upstream_index == index - config.limits.size()
                 : std::find(route.limit_indexes.begin(), route.limit_indexes.end(), index) !=
                       route.limit_indexes.end();
        if (uses) names.push_back(route.name);
    }
    return names;
}

json key_entry(const limit::KeyStatus& key, const config::LimitConfig& cfg,
               const std::optional<queue::KeyWaiting>& waiting, const Instant& at) {
    const Nanos now = at.mono;
    const bool gate = cfg.algorithm == config::Algorithm::vendor_gate;
    const std::int64_t quota = key.learned.limit > 0 ? key.learned.limit : capacity_of(cfg);
    const std::int64_t remaining = std::max<std::int64_t>(key.remaining, 0);
    const bool paused = key.paused_until > now;
    json entry = {
        {"key", limit::key_label(key.key)},
        // The units not available now: counted by the algorithm, or held back by a vendor cap.
        {"used", gate ? json(nullptr) : json(std::max<std::int64_t>(quota - remaining, 0))},
        {"remaining", gate ? json(nullptr) : json(remaining)},
        {"limit", gate ? json(nullptr) : json(quota)},
        // null: no time can tell (a concurrency limit waits for a release)
        {"reset_in", key.reset == kNever ? json(nullptr) : json(seconds_between(now, key.reset))},
        {"reset_at_unix", unix_time_of(key.reset, at)},
        {"paused_for", paused ? json(seconds_between(now, key.paused_until)) : json(nullptr)},
        {"paused_until_unix", unix_time_of(key.paused_until, at)},
        {"pause_reason",
         paused ? json{{"cause", limit::pause_cause_name(key.pause_reason.cause)},
                       {"signal",
                        key.pause_reason.signal.empty() ? json(nullptr) : json(key.pause_reason.signal)}}
                : json(nullptr)},
        // null: a shadow limit keeps no per-key queue (its requests wait on other limits)
        {"waiting", waiting ? json(waiting->requests) : json(nullptr)},
        {"oldest_wait_seconds", waiting && waiting->oldest_since != kNever
                                    ? json(seconds_between(waiting->oldest_since, now))
                                    : json(nullptr)},
    };
    if (key.learned.limit > 0) {
        entry["learned"] = {{"limit", key.learned.limit},
                            {"lowered_ago", seconds_between(key.learned.lowered_at, now)},
                            // null: not raised since the last lowering
                            {"raised_ago", key.learned.raised_at == Nanos{0}
                                               ? json(nullptr)
                                               : json(seconds_between(key.learned.raised_at, now))},
                            {"probe_windows", key.learned.probe_windows}};
    }
    return entry;
}

}  // namespace

std::string describe_key_sources(const std::vector<config::KeySource>& sources) {
    if (sources.empty()) return "shared";
    std::string text;
    for (const auto& source : sources) {
        if (!text.empty()) text += " + ";
        switch (source.kind) {
            case config::KeySource::Kind::header: text += "header " + source.name; break;
            case config::KeySource::Kind::query: text += "query " + source.name; break;
            case config::KeySource::Kind::path_param: text += "path_param " + source.name; break;
            case config::KeySource::Kind::method: text += "method"; break;
        }
        if (source.group_by) text += " (grouped)";
    }
    return text;
}

void LimitsView::begin(proxy::Runtime& runtime) {
    runtime.limits->inspect([&](queue::AdmissionController& controller, const Instant& at) {
        begun_ = at;
        out_["queue"] = {{"waiting", controller.waiting()}};
        const std::size_t count = runtime.limit_slots.size();
        walk_.set_limits(runtime.limit_slots);
        totals_.resize(count);
        for (std::size_t i = 0; i < count; ++i) {
            const std::size_t slot = runtime.limit_slots[i];
            const auto& activity = controller.activity(slot);
            totals_[i] = LimitTotals{activity, controller.oldest_waiting_since(slot),
                                     activity.queued_last_minute.total(at.mono),
                                     activity.refused_last_minute.total(at.mono)};
        }
        return 0;
    });
    out_["generated_at_unix"] = unix_seconds(begun_.wall);
    out_["limits_top_keys"] = walk_.keep();
}

bool LimitsView::advance(proxy::Runtime& runtime) {
    const auto walked =
        walk_.step(*runtime.limits, [&](const queue::AdmissionController& controller, WalkedLimit& limit) {
            key_waiting_.clear();
            for (const auto& key : limit.keys)
                key_waiting_.push_back(controller.waiting_on(limit.slot, key.key));
            // An unkeyed limit with no state still has its one key (below): its queue too.
            if (limit.keys.empty() && limit.limiter->config().key.empty())
                key_waiting_.push_back(controller.waiting_on(limit.slot, 0));
        });
    if (!walked) return walk_.done();
    // A limiter's config is an immutable copy: read outside the lock.
    const config::LimitConfig& cfg = walked->limiter->config();
    const bool gate = cfg.algorithm == config::Algorithm::vendor_gate;
    const bool windowed = !gate && cfg.algorithm != config::Algorithm::concurrency;
    const LimitTotals& totals = totals_[walked->index];
    json keys = json::array();
    for (std::size_t k = 0; k < walked->keys.size(); ++k)
        keys.push_back(key_entry(walked->keys[k], cfg, key_waiting_[k], walked->at));
    // An unkeyed limit that tracks no state is as fresh as a new one: show its one
    // key with nothing used, so every quota has a reading.
    if (cfg.key.empty() && !gate && walked->keys.empty() && walk_.keep() > 0) {
        limit::KeyStatus fresh;
        fresh.remaining = capacity_of(cfg);
        fresh.reset = walked->at.mono;
        keys.push_back(key_entry(fresh, cfg, key_waiting_.front(), walked->at));
    }
    json limit = {
        {"name", cfg.name},
        {"algorithm", algorithm_name(cfg.algorithm)},
        {"vendor_gate", gate},
        {"limit", gate ? json(nullptr) : json(cfg.limit)},
        {"capacity", gate ? json(nullptr) : json(capacity_of(cfg))},
        {"window_seconds", windowed ? json(seconds_between(Nanos{0}, cfg.window)) : json(nullptr)},
        {"burst", cfg.algorithm == config::Algorithm::token_bucket ? json(capacity_of(cfg)) : json(nullptr)},
        {"margin_seconds", windowed ? json(seconds_between(Nanos{0}, cfg.margin)) : json(nullptr)},
        {"key", describe_key_sources(cfg.key)},
        {"enforce", cfg.enforce},
        {"routes", routes_of(runtime, walked->index)},
        {"admitted", totals.activity.admitted},
        {"queued", totals.activity.queued},
        {"refused", totals.activity.refused},
        {"waiting", totals.activity.waiting},
        // The last 60 s, counted by the second (the status page's "last minute").
        {"queued_last_minute", totals.queued_last_minute},
        {"refused_last_minute", totals.refused_last_minute},
        {"oldest_wait_seconds", totals.oldest_since == kNever
                                    ? json(nullptr)
                                    : json(seconds_between(totals.oldest_since, begun_.mono))},
        {"tracked_keys", walked->tracked_keys},
        {"keys", std::move(keys)},
    };
    limits_.push_back(std::move(limit));
    return walk_.done();
}

std::string LimitsView::finish() {
    out_["limits"] = std::move(limits_);
    // Names and labels are ASCII today; replace, never throw, if that changes.
    return out_.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

}  // namespace sluice::admin
