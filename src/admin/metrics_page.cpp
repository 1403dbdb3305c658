#include "sluice/admin/metrics_page.hpp"

#include <algorithm>
#include <cstdint>
#include <deque>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <prometheus/text_serializer.h>
#include <sstream>
#include <string_view>
#include <utility>

#include <nlohmann/json.hpp>

#include "sluice/cli/build_info.hpp"
#include "sluice/metrics/proxy_metrics.hpp"
#include "sluice/proxy/limit_state_file.hpp"
#include "sluice/proxy/shared_store.hpp"

namespace sluice::admin {

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;
using Labels = std::vector<ClientMetric::Label>;

double seconds_of(Nanos d) {
    return static_cast<double>(d.count()) / 1e9;
}

class Families {
public:
    MetricFamily& family(std::string name, std::string help, MetricType type) {
        families_.push_back(MetricFamily{std::move(name), std::move(help), type, {}});
        return families_.back();
    }

    static void counter(MetricFamily& f, Labels labels, double value) {
        ClientMetric m;
        m.label = std::move(labels);
        m.counter.value = value;
        f.metric.push_back(std::move(m));
    }
    // Counts as Prometheus writes them (a double: exact up to 2^53, far beyond any count here).
    static void counter(MetricFamily& f, Labels labels, std::uint64_t count) {
        counter(f, std::move(labels), static_cast<double>(count));
    }
    static void gauge(MetricFamily& f, Labels labels, double value) {
        ClientMetric m;
        m.label = std::move(labels);
        m.gauge.value = value;
        f.metric.push_back(std::move(m));
    }
    static void histogram(MetricFamily& f, Labels labels, const metrics::HistogramSnapshot& s) {
        ClientMetric m;
        m.label = std::move(labels);
        m.histogram.sample_count = s.count;
        m.histogram.sample_sum = s.sum_seconds;
        std::uint64_t cumulative = 0;
        for (std::size_t i = 0; i < s.upper_bounds_seconds.size(); ++i) {
            cumulative += s.counts[i];
            m.histogram.bucket.push_back({cumulative, s.upper_bounds_seconds[i]});
        }
        // The +Inf bucket: TextSerializer writes it from the last bucket it is given.
        m.histogram.bucket.push_back({s.count, std::numeric_limits<double>::infinity()});
        f.metric.push_back(std::move(m));
    }

    std::vector<MetricFamily> take() {
        return {std::make_move_iterator(families_.begin()), std::make_move_iterator(families_.end())};
    }

private:
    std::deque<MetricFamily> families_;  // a deque: family() hands out references that must stay valid
};

// The codes whose responses a routed request can get from sluice (per route,
// reported even at zero so that rate() and alerts see the series from the start).
constexpr Errc kRoutedCodes[] = {Errc::malformed_request,
                                 Errc::header_too_large,
                                 Errc::body_too_large,
                                 Errc::cost_unreadable,
                                 Errc::cost_body_too_large,
                                 Errc::cost_too_large,
                                 Errc::method_not_allowed,
                                 Errc::not_implemented,
                                 Errc::request_timeout,
                                 Errc::queue_full,
                                 Errc::admission_timeout,
                                 Errc::key_capacity,
                                 Errc::vendor_rate_limited,
                                 Errc::upstream_connect_failed,
                                 Errc::upstream_tls_failed,
                                 Errc::upstream_protocol_error,
                                 Errc::upstream_closed,
                                 Errc::upstream_timeout,
                                 Errc::upstream_busy,
                                 Errc::shutting_down,
                                 Errc::shared_state_unavailable,
                                 Errc::unknown_priority};

std::uint64_t load(const std::atomic<std::uint64_t>& a) {
    return a.load(std::memory_order_relaxed);
}

void add_requests(Families& out, const proxy::Runtime& runtime) {
    const auto& m = runtime.metrics;
    const auto& routes = runtime.config->routes;
    auto& requests =
        out.family("sluice_requests_total",
                   "Requests by route and outcome (each request counted once, when its answer is "
                   "decided); code: sluice's error code for the responses it wrote itself",
                   MetricType::Counter);
    auto& shadow = out.family("sluice_shadow_would_refuse_total",
                              "Admitted requests that a shadow limit (enforce: false) would have refused "
                              "(also counted in sluice_requests_total under their outcome)",
                              MetricType::Counter);
    auto& waiting = out.family("sluice_route_waiting_requests",
                               "Requests of the route waiting in the admission queue now", MetricType::Gauge);
    auto& max_depth = out.family("sluice_route_queue_max_depth",
                                 "The route's queue bound (queue.max_depth, per queue: per route and key)",
                                 MetricType::Gauge);
    auto& wait = out.family("sluice_admission_wait_seconds",
                            "Time from arrival at the limits to admission, per admitted request (0 when "
                            "admitted at once; a retry after a vendor 429 is admitted again)",
                            MetricType::Histogram);
    for (std::size_t r = 0; r < m.route_count() && r < routes.size(); ++r) {
        const auto& rm = m.route(r);
        const std::string& name = routes[r].name;
        Families::counter(requests, {{"outcome", "forwarded"}, {"route", name}}, load(rm.forwarded));
        Families::counter(requests, {{"outcome", "queued_then_forwarded"}, {"route", name}},
                          load(rm.queued_then_forwarded));
        for (const Errc code : kRoutedCodes) {
            Families::counter(requests,
                              {{"code", std::string(error_code_name(code))},
                               {"outcome", std::string(metrics::outcome_name(metrics::outcome_of(code)))},
                               {"route", name}},
                              load(rm.synthetic[static_cast<std::size_t>(code)]));
        }
        Families::counter(shadow, {{"route", name}}, load(rm.shadow_would_refuse));
        Families::gauge(
            waiting, {{"route", name}},
            static_cast<double>(std::max<std::int64_t>(0, rm.waiting.load(std::memory_order_relaxed))));
        Families::gauge(max_depth, {{"route", name}}, static_cast<double>(routes[r].queue.max_depth));
        Families::histogram(wait, {{"route", name}}, rm.admission_wait.snapshot());
    }
    // Before a route was known: no_route always, the rest when it happened.
    const auto& unrouted = m.unrouted();
    for (std::size_t i = 0; i < metrics::kErrcCount; ++i) {
        const auto code = static_cast<Errc>(i);
        const auto value = load(unrouted.synthetic[i]);
        if (code != Errc::no_route && value == 0) continue;
        Families::counter(requests,
                          {{"code", std::string(error_code_name(code))},
                           {"outcome", std::string(metrics::outcome_name(metrics::outcome_of(code)))}},
                          value);
    }
}

// Per priority class (docs/priorities.md), only when the config has classes: whether the
// interactive class really goes first shows here, next to the batch class's waits.
void add_priority_classes(Families& out, const proxy::Runtime& runtime) {
    const auto& m = runtime.metrics;
    const auto& classes = runtime.config->priorities.classes;
    if (classes.empty()) return;
    auto& wait = out.family("sluice_class_admission_wait_seconds",
                            "Time from arrival at the limits to admission, per admitted request of the "
                            "priority class (0 when admitted at once)",
                            MetricType::Histogram);
    auto& waiting =
        out.family("sluice_class_waiting_requests",
                   "Requests of the priority class waiting in the admission queue now", MetricType::Gauge);
    auto& refusals = out.family("sluice_class_refusals_total",
                                "Requests of the priority class refused with a synthetic 429 (queue_full, "
                                "admission_timeout, key_capacity, vendor_rate_limited)",
                                MetricType::Counter);
    for (std::size_t c = 0; c < m.class_count() && c < classes.size(); ++c) {
        const auto& cm = m.priority_class(c);
        const std::string& name = classes[c];
        Families::histogram(wait, {{"class", name}}, cm.admission_wait.snapshot());
        Families::gauge(
            waiting, {{"class", name}},
            static_cast<double>(std::max<std::int64_t>(0, cm.waiting.load(std::memory_order_relaxed))));
        Families::counter(refusals, {{"class", name}}, load(cm.limit_refusals));
    }
}

void add_upstreams(Families& out, const proxy::Runtime& runtime) {
    const auto& m = runtime.metrics;
    auto& responses = out.family("sluice_upstream_responses_total",
                                 "Final responses from the upstream by status class (before any retry)",
                                 MetricType::Counter);
    auto& r429 = out.family("sluice_upstream_429_responses_total", "429 responses from the upstream",
                            MetricType::Counter);
    auto& mid_body = out.family("sluice_upstream_failed_mid_body_total",
                                "Upstream responses that failed after their head reached the client (the "
                                "client connection was cut)",
                                MetricType::Counter);
    auto& time = out.family("sluice_upstream_response_seconds",
                            "Time from sending the request to reading the upstream's response head",
                            MetricType::Histogram);
    auto& open = out.family("sluice_pool_open_connections",
                            "Connections to the upstream: idle, lent or being opened", MetricType::Gauge);
    auto& idle = out.family("sluice_pool_idle_connections", "Idle pooled connections", MetricType::Gauge);
    auto& busy = out.family("sluice_pool_busy_connections", "Connections lent to a request or being opened",
                            MetricType::Gauge);
    auto& opened =
        out.family("sluice_pool_connections_opened_total", "Connections opened", MetricType::Counter);
    auto& connect_failures =
        out.family("sluice_pool_connect_failures_total",
                   "Connection attempts that failed in DNS, TCP connect, or ran out of connect_timeout",
                   MetricType::Counter);
    auto& tls_failures = out.family(
        "sluice_pool_tls_failures_total",
        "Connection attempts whose TLS handshake or certificate verification failed", MetricType::Counter);
    auto& streamed = out.family("sluice_pool_streamed_bodies",
                                "Requests streaming their body to the upstream now (max_streamed_bodies)",
                                MetricType::Gauge);
    for (std::size_t u = 0; u < runtime.pools.size(); ++u) {
        const auto& pool = *runtime.pools[u];
        const std::string& name = pool.config().name;
        if (u < m.upstream_count()) {
            const auto& um = m.upstream(u);
            static constexpr const char* kClasses[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
            for (std::size_t c = 0; c < 5; ++c)
                Families::counter(responses, {{"class", kClasses[c]}, {"upstream", name}},
                                  load(um.responses_by_class[c]));
            Families::counter(r429, {{"upstream", name}}, load(um.responses_429));
            Families::counter(mid_body, {{"upstream", name}}, load(um.failed_mid_body));
            Families::histogram(time, {{"upstream", name}}, um.response_time.snapshot());
        }
        const auto open_now = pool.open_connections();
        const auto idle_now = pool.idle_connections();
        Families::gauge(open, {{"upstream", name}}, static_cast<double>(open_now));
        Families::gauge(idle, {{"upstream", name}}, static_cast<double>(idle_now));
        // Two reads under the pool's lock each, not one: clamp a transient mismatch.
        Families::gauge(busy, {{"upstream", name}},
                        static_cast<double>(open_now - std::min(idle_now, open_now)));
        Families::counter(opened, {{"upstream", name}}, static_cast<double>(pool.connections_opened()));
        Families::counter(connect_failures, {{"upstream", name}},
                          static_cast<double>(pool.connect_failures()));
        Families::counter(tls_failures, {{"upstream", name}}, static_cast<double>(pool.tls_failures()));
        Families::gauge(streamed, {{"upstream", name}}, static_cast<double>(pool.streamed_bodies()));
    }
}

void add_limits(Families& out, proxy::Runtime& runtime) {
    auto& configured = out.family("sluice_limit_configured",
                                  "The configured limit: units per window, burst, or requests in flight "
                                  "(vendor gates have none)",
                                  MetricType::Gauge);
    auto& used = out.family(
        "sluice_limit_used_units",
        "Units counted now against an unkeyed limit (in the window, or in flight; at most the limit, "
        "a shadow limit's overdraft included)",
        MetricType::Gauge);
    auto& keys = out.family("sluice_limit_tracked_keys", "Keys a keyed limit tracks now", MetricType::Gauge);
    auto& waiting =
        out.family("sluice_limit_waiting_requests", "Requests waiting on the limit now", MetricType::Gauge);
    auto& admitted =
        out.family("sluice_limit_admitted_total", "Requests the limit admitted (at once or after waiting)",
                   MetricType::Counter);
    auto& queued = out.family("sluice_limit_queued_total", "Requests that had to wait on the limit",
                              MetricType::Counter);
    auto& refusals = out.family("sluice_limit_refusals_total",
                                "Requests the limit refused (queue_full, admission_timeout, key_capacity)",
                                MetricType::Counter);
    auto& shadow = out.family("sluice_limit_shadow_would_refuse_total",
                              "Shadow limits (enforce: false): admissions the limit would have refused",
                              MetricType::Counter);
    auto& learned =
        out.family("sluice_limit_learned_units",
                   "The learned limit in force (below the configured one) of the key whose learned "
                   "limit was lowered last; absent when it has climbed back",
                   MetricType::Gauge);
    auto& lowerings = out.family("sluice_limit_learned_lowerings_total",
                                 "Learned limits lowered on the limit (any key) after the vendor showed it "
                                 "stricter than configured (a bare 429, or Remaining 0 early)",
                                 MetricType::Counter);
    auto& lowered_at = out.family("sluice_limit_learned_lowered_timestamp_seconds",
                                  "When the learned limit of sluice_limit_learned_units was last lowered",
                                  MetricType::Gauge);
    auto& raised_at = out.family("sluice_limit_learned_raised_timestamp_seconds",
                                 "When the learned limit of sluice_limit_learned_units was last raised by "
                                 "a probe (absent when not raised since its lowering)",
                                 MetricType::Gauge);
    runtime.limits->inspect([&](queue::AdmissionController& controller, const Instant& now) {
        // A few reads per limit, no key table walked: the lock is held for microseconds.
        const auto wall_of = [&now](Nanos mono) { return seconds_of(now.wall - (now.mono - mono)); };
        for (const std::size_t slot : runtime.limit_slots) {
            const auto& limiter = controller.limiter(slot);
            const auto& cfg = limiter.config();
            const auto& activity = controller.activity(slot);
            const Labels labels{{"limit", cfg.name}};
            const bool gate = cfg.algorithm == config::Algorithm::vendor_gate;
            if (!gate) Families::gauge(configured, labels, static_cast<double>(cfg.limit));
            if (cfg.key.empty()) {
                if (!gate) {
                    // One key at most: status() looks at that one slot. A token bucket's
                    // remaining is its tokens: used is what its burst is short of.
                    const std::int64_t capacity = config::request_capacity(cfg);
                    const auto status = limiter.status(now, 1);
                    const std::int64_t remaining = status.empty() ? capacity : status.front().remaining;
                    Families::gauge(used, labels,
                                    static_cast<double>(std::max<std::int64_t>(0, capacity - remaining)));
                }
            } else {
                Families::gauge(keys, labels, static_cast<double>(limiter.key_count()));
            }
            Families::gauge(waiting, labels, static_cast<double>(activity.waiting));
            Families::counter(admitted, labels, static_cast<double>(activity.admitted));
            Families::counter(queued, labels, static_cast<double>(activity.queued));
            Families::counter(refusals, labels, static_cast<double>(activity.refused));
            if (!cfg.enforce)
                Families::counter(shadow, labels, static_cast<double>(activity.shadow_would_refuse));
            if (cfg.algorithm == config::Algorithm::sliding_window ||
                cfg.algorithm == config::Algorithm::fixed_window) {  // the only ones learned
                const auto summary = limiter.learned_summary(now);
                Families::counter(lowerings, labels, static_cast<double>(summary.lowerings));
                if (summary.latest.limit > 0) {
                    Families::gauge(learned, labels, static_cast<double>(summary.latest.limit));
                    Families::gauge(lowered_at, labels, wall_of(summary.latest.lowered_at));
                    if (summary.latest.raised_at != Nanos{0})
                        Families::gauge(raised_at, labels, wall_of(summary.latest.raised_at));
                }
            }
        }
        return 0;
    });
}

void add_feedback(Families& out, const proxy::Runtime& runtime) {
    const auto& routes = runtime.config->routes;
    struct Counter {
        const char* name;
        const char* help;
        std::atomic<std::uint64_t> proxy::RouteFeedbackCounters::*member;
    };
    static constexpr Counter kCounters[] = {
        {"sluice_feedback_vendor_429_total", "429s (and 503s with Retry-After) from the vendor",
         &proxy::RouteFeedbackCounters::vendor_429},
        {"sluice_feedback_pauses_total", "Pauses applied after a vendor signal (a 429, or Remaining: 0)",
         &proxy::RouteFeedbackCounters::paused},
        {"sluice_feedback_retries_total", "Requests sent again after a vendor 429",
         &proxy::RouteFeedbackCounters::retried},
        {"sluice_feedback_caps_total", "Allowances lowered to the vendor's reported remaining",
         &proxy::RouteFeedbackCounters::capped},
        {"sluice_feedback_clamps_total", "Vendor signals cut to max_pause or ignored as malformed",
         &proxy::RouteFeedbackCounters::clamped},
        {"sluice_feedback_lowered_total",
         "Learned limits lowered after a vendor 429 or an early Remaining: 0",
         &proxy::RouteFeedbackCounters::lowered},
        {"sluice_feedback_relayed_429_total", "Vendor 429s passed back to the client",
         &proxy::RouteFeedbackCounters::relayed_429},
    };
    for (const auto& c : kCounters) {
        auto& f = out.family(c.name, c.help, MetricType::Counter);
        for (std::size_t r = 0; r < routes.size() && r < runtime.feedback.size(); ++r)
            Families::counter(f, {{"route", routes[r].name}}, load((*runtime.feedback[r]).*c.member));
    }
    auto& paused =
        out.family("sluice_feedback_paused_seconds_total",
                   "The pauses' lengths added up, as applied (after max_pause)", MetricType::Counter);
    for (std::size_t r = 0; r < routes.size() && r < runtime.feedback.size(); ++r)
        Families::counter(
            paused, {{"route", routes[r].name}},
            seconds_of(Nanos(static_cast<std::int64_t>(load(runtime.feedback[r]->paused_nanos)))));
}

void add_process(Families& out, const proxy::Runtime& runtime) {
    const auto& c = runtime.counters;
    Families::gauge(
        out.family("sluice_client_connections_open", "Open client connections", MetricType::Gauge), {},
        static_cast<double>(c.open_client_connections.load(std::memory_order_relaxed)));
    Families::counter(out.family("sluice_client_connections_refused_total",
                                 "Client connections refused over server.max_client_connections (503)",
                                 MetricType::Counter),
                      {}, load(c.refused_client_connections));
    Families::counter(out.family("sluice_requests_abandoned_total",
                                 "Requests whose client left after admission, before the response began",
                                 MetricType::Counter),
                      {}, load(c.abandoned_by_client));
    if (runtime.access_log) {
        // Present only when the access log is on (server.access_log).
        Families::counter(out.family("sluice_access_log_lines_written_total", "Access log lines written",
                                     MetricType::Counter),
                          {}, static_cast<double>(runtime.access_log->lines_written()));
        Families::counter(out.family("sluice_access_log_lines_dropped_total",
                                     "Access log lines dropped: the bounded buffer was full (a slow disk or "
                                     "pipe) or a write failed",
                                     MetricType::Counter),
                          {}, static_cast<double>(runtime.access_log->lines_dropped()));
    }
    Families::gauge(out.family("sluice_process_start_time_seconds",
                               "Start time of the process (Unix seconds)", MetricType::Gauge),
                    {}, seconds_of(runtime.started_wall));
    Families::gauge(out.family("sluice_build_info", "Always 1: the running build's version and git commit",
                               MetricType::Gauge),
                    {{"commit", std::string(cli::git_commit())}, {"version", std::string(cli::version())}},
                    1);
    Families::gauge(out.family("sluice_config_generation",
                               "Configs put in force since start, the first included", MetricType::Gauge),
                    {}, static_cast<double>(runtime.generation));
    const auto& reloads = runtime.process->reloads;
    Families::gauge(out.family("sluice_config_last_load_success",
                               "1 if the last config load (or reload) succeeded", MetricType::Gauge),
                    {}, reloads.last_failed.load() ? 0 : 1);
    Families::gauge(out.family("sluice_config_last_load_timestamp_seconds",
                               "When the config in force was loaded (Unix seconds)", MetricType::Gauge),
                    {}, seconds_of(runtime.loaded_wall));
    if (const auto& state_file = runtime.process->state_file) {
        const auto c = state_file->counters();
        Families::counter(
            out.family("sluice_state_saves_total", "State file writes that succeeded", MetricType::Counter),
            {}, static_cast<double>(c.saves));
        Families::counter(out.family("sluice_state_save_failures_total", "State file writes that failed",
                                     MetricType::Counter),
                          {}, static_cast<double>(c.save_failures));
        Families::counter(out.family("sluice_state_file_set_aside_total",
                                     "State files found at start that could not be used and were set aside",
                                     MetricType::Counter),
                          {}, static_cast<double>(c.set_aside));
        Families::gauge(out.family("sluice_state_restored_keys",
                                   "Limit keys restored from the state file at start", MetricType::Gauge),
                        {}, static_cast<double>(c.restored_keys));
        Families::gauge(
            out.family("sluice_state_last_save_timestamp_seconds",
                       "When the state file was last written (Unix seconds; 0: not yet)", MetricType::Gauge),
            {}, seconds_of(c.last_save_wall));
    }
    if (const auto shared = runtime.process->limits->shared_status()) {
        Families::gauge(
            out.family("sluice_shared_state_up",
                       "1 while shared limits are decided in Redis, 0 while on_redis_failure applies",
                       MetricType::Gauge),
            {}, shared->fallback ? 0.0 : 1.0);
        auto& switches = out.family("sluice_shared_state_switches_total",
                                    "Switches between Redis (shared) and on_redis_failure (fallback)",
                                    MetricType::Counter);
        Families::counter(switches, {{"to", "shared"}}, shared->switches_shared);
        Families::counter(switches, {{"to", "fallback"}}, shared->switches_fallback);
        auto& commands = out.family("sluice_shared_commands_total", "Script calls sent to Redis, by op",
                                    MetricType::Counter);
        for (std::size_t op = 0; op < shared->commands.size(); ++op)
            Families::counter(commands, {{"op", proxy::SharedStoreCounters::kOpNames[op]}},
                              shared->commands[op]);
        auto& errors = out.family("sluice_shared_command_errors_total",
                                  "Decisions Redis did not answer, by reason", MetricType::Counter);
        for (std::size_t r = 0; r < shared->errors.size(); ++r)
            Families::counter(errors, {{"reason", proxy::SharedStoreCounters::kErrorNames[r]}},
                              shared->errors[r]);
        auto& fallback = out.family("sluice_shared_fallback_admissions_total",
                                    "Requests admitted while Redis could not answer, by on_redis_failure "
                                    "(allow: a limit checked nothing)",
                                    MetricType::Counter);
        Families::counter(fallback, {{"policy", "local"}},
                          shared->fallback_admissions - shared->fallback_open);
        Families::counter(fallback, {{"policy", "allow"}}, shared->fallback_open);
        Families::counter(out.family("sluice_shared_denied_total",
                                     "Requests refused shared_state_unavailable (on_redis_failure: deny)",
                                     MetricType::Counter),
                          {}, shared->denied);
        Families::counter(out.family("sluice_shared_data_lost_total",
                                     "Reconnects that found Redis had lost its data (its epoch changed)",
                                     MetricType::Counter),
                          {}, shared->data_lost);
        Families::gauge(
            out.family("sluice_shared_waiting_requests",
                       "Requests admitted locally and waiting for Redis's decision", MetricType::Gauge),
            {}, static_cast<double>(shared->waiting));
    }
    auto& reload_results =
        out.family("sluice_config_reloads_total", "Reloads asked for (SIGHUP, POST /v1/reload), by result",
                   MetricType::Counter);
    Families::counter(reload_results, {{"result", "success"}}, static_cast<double>(reloads.succeeded.load()));
    Families::counter(reload_results, {{"result", "failure"}}, static_cast<double>(reloads.failed.load()));
}

}  // namespace

std::vector<MetricFamily> RuntimeCollector::Collect() const {
    Families out;
    add_requests(out, runtime_);
    add_priority_classes(out, runtime_);
    add_upstreams(out, runtime_);
    add_limits(out, runtime_);
    add_feedback(out, runtime_);
    add_process(out, runtime_);
    return out.take();
}

std::string render_metrics(proxy::Runtime& runtime) {
    const RuntimeCollector collector(runtime);
    std::ostringstream text;
    prometheus::TextSerializer().Serialize(text, collector.Collect());
    return std::move(text).str();
}

void add_status_metrics(nlohmann::json& status, const proxy::Runtime& runtime) {
    const auto& m = runtime.metrics;
    const auto& routes = runtime.config->routes;
    auto sum_of = [](const metrics::RouteMetrics& rm, metrics::Outcome outcome) {
        std::uint64_t total = 0;
        for (std::size_t i = 0; i < metrics::kErrcCount; ++i)
            if (metrics::outcome_of(static_cast<Errc>(i)) == outcome) total += load(rm.synthetic[i]);
        return total;
    };
    nlohmann::json by_route = nlohmann::json::object();
    for (std::size_t r = 0; r < m.route_count() && r < routes.size(); ++r) {
        const auto& rm = m.route(r);
        by_route[routes[r].name] = {{"forwarded", load(rm.forwarded)},
                                    {"queued_then_forwarded", load(rm.queued_then_forwarded)},
                                    {"synthetic_429", sum_of(rm, metrics::Outcome::synthetic_429)},
                                    {"upstream_errors", sum_of(rm, metrics::Outcome::upstream_error)},
                                    {"client_errors", sum_of(rm, metrics::Outcome::client_error)},
                                    {"shadow_would_refuse", load(rm.shadow_would_refuse)}};
    }
    status["routes"] = std::move(by_route);
    auto& upstreams = status["upstreams"];
    if (!upstreams.is_array()) return;
    for (std::size_t u = 0; u < upstreams.size() && u < m.upstream_count(); ++u) {
        const auto& um = m.upstream(u);
        upstreams[u]["responses"] = {{"1xx", load(um.responses_by_class[0])},
                                     {"2xx", load(um.responses_by_class[1])},
                                     {"3xx", load(um.responses_by_class[2])},
                                     {"4xx", load(um.responses_by_class[3])},
                                     {"5xx", load(um.responses_by_class[4])}};
        upstreams[u]["responses_429"] = load(um.responses_429);
    }
}

}  // namespace sluice::admin
