#include "sluice/simulate/simulator.hpp"

#include <algorithm>
#include <cmath>
#include <deque>
#include <functional>
#include <numeric>
#include <queue>
#include <stdexcept>
#include <unordered_map>

#include "sluice/config/loader.hpp"
#include "sluice/config/vendor_check.hpp"
#include "sluice/feedback/admission_tally.hpp"
#include "sluice/feedback/vendor_signals.hpp"
#include "sluice/limit/limiter.hpp"
#include "sluice/limit/request_key.hpp"
#include "sluice/limit/vendor_gate.hpp"
#include "sluice/queue/admission_controller.hpp"
#include "sluice/queue/vendor_reaction.hpp"
#include "sluice/route/request_target.hpp"
#include "sluice/route/route_table.hpp"

namespace sluice::simulate {

namespace {

// The header a client shortens its wait with (client_session.cpp reads the same one).
constexpr std::string_view kMaxWaitHeader = "Sluice-Max-Wait";
constexpr std::string_view kPriorityHeader = "Sluice-Priority";
// A poll at `now` that decided nothing while next_wakeup() still says `now` would spin: the
// daemon's timer would fire again a moment later, so the simulated clock moves on by this.
constexpr Nanos kTimerGranularity{1'000};

bool iequals_prefix(std::string_view name, std::string_view prefix) {
    if (name.size() < prefix.size()) return false;
    for (std::size_t i = 0; i < prefix.size(); ++i) {
        const auto a = static_cast<unsigned char>(name[i]);
        const auto b = static_cast<unsigned char>(prefix[i]);
        if (std::tolower(a) != std::tolower(b)) return false;
    }
    return true;
}

bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && iequals_prefix(a, b);
}

// Whether the daemon would read this answer for feedback (ClientSession::on_upstream_header:
// a 429 or 503, or a Retry-After or rate-limit header, with the upstream's feedback on).
bool carries_feedback(const LoggedResponse& response) {
    if (response.status == 429 || response.status == 503) return true;
    return std::any_of(response.headers.begin(), response.headers.end(), [](const auto& header) {
        const std::string_view name = header.first;
        return (name.size() == 11 && iequals_prefix(name, "retry-after")) ||
               iequals_prefix(name, "ratelimit") || iequals_prefix(name, "x-ratelimit") ||
               iequals_prefix(name, "x-rate-limit");
    });
}

// RFC 9110 9.2.2, as the daemon's retry after a vendor 429 checks it.
bool is_idempotent(std::string_view method) {
    for (const std::string_view safe : {"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})
        if (method == safe) return true;
    return false;
}

Instant instant(Nanos at) {
    return Instant{at, at};
}

void count_code(std::vector<std::pair<std::string, std::uint64_t>>& counts, std::string_view code) {
    for (auto& [name, count] : counts) {
        if (name == code) {
            ++count;
            return;
        }
    }
    counts.emplace_back(std::string(code), 1);
}

DelayPercentiles percentiles(std::vector<Nanos>& delays) {
    DelayPercentiles out;
    if (delays.empty()) return out;
    std::sort(delays.begin(), delays.end());
    // Nearest rank: the smallest delay at least p of the requests did not exceed.
    const auto rank = [&](double p) {
        const auto n = delays.size();
        auto index = static_cast<std::size_t>(std::ceil(p * static_cast<double>(n)));
        return delays[std::min(n, std::max<std::size_t>(index, 1)) - 1];
    };
    out.p50 = rank(0.50);
    out.p90 = rank(0.90);
    out.p99 = rank(0.99);
    out.max = delays.back();
    return out;
}

// Whether a limit reads a header the traffic may not carry (a key source or a cost header).
bool reads_headers(const config::LimitConfig& limit) {
    if (!limit.cost.header.empty()) return true;
    return std::any_of(limit.key.begin(), limit.key.end(), [](const config::KeySource& source) {
        return source.kind == config::KeySource::Kind::header;
    });
}

// The host as routing sees it: without a port (IPv6 literals keep their brackets' content).
std::string_view host_without_port(std::string_view host) {
    if (!host.empty() && host.front() == '[') {
        const auto close = host.find(']');
        return close == std::string_view::npos ? host : host.substr(1, close - 1);
    }
    const auto colon = host.rfind(':');
    if (colon != std::string_view::npos && host.find(':') == colon) return host.substr(0, colon);
    return host;
}

// One rule of a vendor's policy, counted over the forwarded requests.
struct RuleCounter {
    const config::VendorRule* rule = nullptr;
    Nanos window{0};
    std::vector<bool> covers_route;  // by route index: the static check's coverage
    route::RouteTable matcher;       // the rule's methods and path, with sluice's own matcher
    bool matches_everything = true;
    VendorRuleReport report;
    // Rolling: per key, the admissions still in the window. Fixed: per key, (period, units).
    struct Rolling {
        std::deque<std::pair<Nanos, std::int64_t>> lots;
        std::int64_t units = 0;  // the sum of `lots`
    };
    std::unordered_map<std::string, Rolling> rolling;
    std::unordered_map<std::string, std::pair<std::int64_t, std::int64_t>> fixed;
    // Concurrency: per key, the ends of the exchanges in flight.
    std::unordered_map<std::string, std::priority_queue<Nanos, std::vector<Nanos>, std::greater<>>> in_flight;

    RuleCounter(const config::VendorRule& r, Nanos w, route::RouteTable table)
        : rule(&r), window(w), matcher(std::move(table)), matches_everything(r.match.matches_everything()) {}

    void observe(std::int64_t value, Nanos at) {
        if (value > report.peak) {
            report.peak = value;
            report.peak_at = at;
        }
        if (value > report.limit && !report.exceeded) {
            report.exceeded = true;
            report.first_exceeded_at = at;
        }
    }

    void forwarded(const TrafficRequest& request, std::string_view vendor_path, Nanos at, Nanos end) {
        if (!matches_everything) {
            const route::RequestTarget target{0, {}, request.method, vendor_path};
            if (!matcher.match(target)) return;
        }
        ++report.requests;
        std::string key;
        if (!rule->per_header.empty()) {
            if (const auto value = find_header(request, rule->per_header)) key = *value;
        }
        std::int64_t units = 1;
        if (rule->counts_units) {
            units = rule->cost.default_units;
            if (const auto value = find_header(request, rule->cost.header)) {
                if (const auto parsed = limit::parse_unit_count(*value)) units = *parsed;
            }
            if (rule->cost.max > 0) units = std::min(units, rule->cost.max);
        }
        switch (rule->kind) {
            case config::PolicyRuleKind::rolling: {
                auto& window_of_key = rolling[key];
                auto& lots = window_of_key.lots;
                // The vendor counts (t - W, t]: what was admitted at or before t - W is out.
                while (!lots.empty() && lots.front().first <= at - window) {
                    window_of_key.units -= lots.front().second;
                    lots.pop_front();
                }
                lots.emplace_back(at, units);
                window_of_key.units += units;
                observe(window_of_key.units, at);
                break;
            }
            case config::PolicyRuleKind::fixed: {
                const auto shifted = at + rule->utc_offset;
                const std::int64_t period = window.count() > 0 ? shifted.count() / window.count() : 0;
                auto& [current, sum] = fixed[key];
                if (current != period) {
                    current = period;
                    sum = 0;
                }
                sum += units;
                observe(sum, at);
                break;
            }
            case config::PolicyRuleKind::concurrency: {
                auto& ends = in_flight[key];
                while (!ends.empty() && ends.top() <= at) ends.pop();
                ends.push(end);
                observe(static_cast<std::int64_t>(ends.size()), at);
                break;
            }
        }
    }
};

// The vendor check's counters for every rule of the instance's tier, or an error.
std::string build_rule_counters(const config::Config& config, const std::string& instance,
                                bool carries_headers, VendorReport& report,
                                std::vector<RuleCounter>& counters) {
    config::VendorCheck check;
    try {
        check = config::check_vendor(config, instance);
    } catch (const std::invalid_argument& e) {
        return std::string("--vendor: ") + e.what();
    }
    report.instance = check.instance;
    report.vendor = check.policy ? check.policy->vendor : std::string();
    report.tier = check.tier;
    counters.reserve(check.rules.size());
    for (const auto& verdict : check.rules) {
        const auto& rule = *verdict.rule;
        config::Config matcher_config;
        config::RouteConfig matcher_route;
        matcher_route.match.methods = rule.match.methods;
        matcher_route.match.path = rule.match.path;
        matcher_route.match.path_prefix = rule.match.path_prefix;
        matcher_config.routes.push_back(matcher_route);
        RuleCounter counter(rule, verdict.window, route::RouteTable(matcher_config));
        counter.covers_route.assign(config.routes.size(), false);
        for (const auto& name : verdict.routes) {
            for (std::size_t i = 0; i < config.routes.size(); ++i)
                if (config.routes[i].name == name) counter.covers_route[i] = true;
        }
        counter.report.name = rule.name;
        counter.report.kind = rule.kind;
        counter.report.limit = rule.limit;
        counter.report.window = verdict.window;
        if ((!rule.per_header.empty() || rule.counts_units) && !carries_headers)
            counter.report.notes.push_back(
                "the traffic carries no headers: every request counted as one key" +
                std::string(rule.counts_units ? ", at its default units" : ""));
        if (!rule.per_group.empty())
            counter.report.notes.push_back("per_group: " + rule.per_group +
                                           " is counted as one window for every key (an overestimate)");
        if (rule.kind == config::PolicyRuleKind::fixed && !rule.time_zone.empty())
            counter.report.notes.push_back("time_zone " + rule.time_zone +
                                           ": periods counted from UTC midnight plus utc_offset");
        counters.push_back(std::move(counter));
    }
    return {};
}

struct LimitTrack {
    std::vector<Nanos> delays;
    limit::KeyHash last_key = 0;  // the key sampled at each bucket's start
    bool used = false;
};

// A request as submitted to the controller: what its admission, and a retry after a vendor
// 429, need.
struct Submitted {
    std::size_t request = 0;  // into the traffic
    std::size_t route = 0;
    std::vector<limit::LimitUse> uses;
    limit::UseMarks use_marks;
    std::size_t priority_class = 0;
    std::string vendor_path;
    Nanos deadline{0};   // arrival + max wait (ClientSession's deadline_)
    bool retry = false;  // the second send after a vendor 429: its admission replaces the first's
};

// Where an admitted request's delay was counted (all delays, then each use's track), so that
// the admission of its retry replaces it rather than counting the request twice.
struct DelaySlots {
    std::size_t all = 0;
    std::vector<std::size_t> tracks;
};

struct Exchange {
    Nanos end{0};
    std::uint64_t order = 0;  // ties end in admission order
    std::vector<limit::LimitUse> uses;
    bool holds_permits = false;  // concurrency permits go back at `end`
    // The vendor's logged answer is read at `end` (its upstream's feedback on): the request it
    // answers, and each use's admission tally when it was admitted (AdmissionTally::add).
    std::optional<Submitted> feedback;
    std::vector<std::uint64_t> tally_marks;
    DelaySlots slots;
    bool operator>(const Exchange& other) const {
        return end != other.end ? end > other.end : order > other.order;
    }
};

}  // namespace

std::string_view verdict_name(Verdict verdict) noexcept {
    switch (verdict) {
        case Verdict::at_once: return "at_once";
        case Verdict::delayed: return "delayed";
        case Verdict::refused: return "refused";
        case Verdict::not_routed: return "not_routed";
    }
    return "not_routed";
}

bool VendorReport::kept() const {
    return std::none_of(rules.begin(), rules.end(),
                        [](const VendorRuleReport& rule) { return rule.exceeded; });
}

SimulationResult run_simulation(const config::Config& config, const std::vector<TrafficRequest>& traffic,
                                bool carries_headers, const SimulationOptions& options) {
    SimulationResult result;
    std::vector<RuleCounter> rules;
    if (!options.vendor.empty()) {
        VendorReport vendor;
        if (auto error = build_rule_counters(config, options.vendor, carries_headers, vendor, rules);
            !error.empty()) {
            result.error = std::move(error);
            return result;
        }
        result.vendor = std::move(vendor);
    }
    const route::RouteTable routes(config);

    // The daemon's slots at start (LimitService::install): Config::limits in order, then one
    // vendor gate per upstream (proxy::Runtime::limiter_configs).
    std::vector<config::LimitConfig> limit_configs = config.limits;
    for (const auto& upstream : config.upstreams)
        limit_configs.push_back(limit::vendor_gate_config(upstream.name));
    std::vector<std::unique_ptr<limit::Limiter>> limiters;
    // Read-only views of the controller's limiters (feedback_view is a probe that records
    // nothing); the controller owns them and never replaces one (no reload here).
    std::vector<limit::Limiter*> observed;
    for (const auto& limit : limit_configs) {
        limiters.push_back(limit::make_limiter(limit));
        observed.push_back(limiters.back().get());
    }
    queue::AdmissionController controller(std::move(limiters));
    const auto gate_slot = [&](std::size_t upstream_index) { return config.limits.size() + upstream_index; };

    for (const auto& route : config.routes) result.route_names.push_back(route.name);
    result.limits.resize(limit_configs.size());
    std::vector<LimitTrack> tracks(limit_configs.size());
    for (std::size_t i = 0; i < limit_configs.size(); ++i) {
        auto& report = result.limits[i];
        const auto& limit = limit_configs[i];
        report.name = limit.name;
        report.algorithm = limit.algorithm;
        report.limit = limit.limit;
        report.capacity = config::request_capacity(limit);
        report.window = limit.window;
        report.enforce = limit.enforce;
        report.vendor_gate = i >= config.limits.size();
        report.needs_missing_headers = !carries_headers && !report.vendor_gate && reads_headers(limit);
    }

    std::vector<std::size_t> order(traffic.size());
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::stable_sort(order.begin(), order.end(),
                     [&](std::size_t a, std::size_t b) { return traffic[a].at < traffic[b].at; });
    result.outcomes.resize(traffic.size());
    result.requests = traffic.size();
    if (!traffic.empty()) {
        result.first_arrival = traffic[order.front()].at;
        const auto span = traffic[order.back()].at - result.first_arrival;
        const auto points = static_cast<std::int64_t>(std::max<std::size_t>(options.plot_points, 1));
        result.bucket = std::max<Nanos>(std::chrono::milliseconds(1), (span + Nanos(points - 1)) / points);
    }
    // The series' length is bounded: a queue draining long after the last arrival lands in the last bucket.
    const std::size_t max_points = std::max<std::size_t>(options.plot_points, 1) * 2;
    std::size_t current_bucket = 0;
    bool series_started = false;
    const auto bucket_of = [&](Nanos at) {
        const auto index =
            static_cast<std::size_t>(std::max<std::int64_t>(0, (at - result.first_arrival) / result.bucket));
        return std::min(index, max_points - 1);
    };
    const auto point = [&](std::size_t limit_index, Nanos at) -> SeriesPoint& {
        auto& series = result.limits[limit_index].series;
        const auto bucket = bucket_of(at);
        while (series.size() <= bucket) {
            SeriesPoint fresh;
            fresh.at = result.first_arrival + result.bucket * static_cast<std::int64_t>(series.size());
            series.push_back(fresh);
        }
        return series[bucket];
    };
    // At each bucket's start (those no event falls in included), what every used limit counts
    // for the key it last admitted, and what waits on it: a window stays full after its
    // admissions, and a queue stays as long as nothing happens, and the series shows both.
    const auto enter_bucket = [&](Nanos now) {
        const auto bucket = bucket_of(now);
        if (series_started && bucket == current_bucket) return;
        const auto first = series_started ? current_bucket + 1 : bucket;
        series_started = true;
        current_bucket = bucket;
        for (auto b = first; b <= bucket; ++b) {
            const auto start = result.first_arrival + result.bucket * static_cast<std::int64_t>(b);
            for (std::size_t i = 0; i < observed.size(); ++i) {
                if (!tracks[i].used) continue;
                auto& p = point(i, std::max(start, result.first_arrival));
                const auto view =
                    observed[i]->feedback_view(tracks[i].last_key, instant(std::min(start, now)));
                p.usage = std::max(p.usage, view.counted);
                p.waiting = std::max(p.waiting, controller.activity(i).waiting);
            }
        }
    };
    const auto observe_queues = [&](Nanos now) {
        for (std::size_t i = 0; i < observed.size(); ++i) {
            if (!tracks[i].used) continue;
            const auto waiting = controller.activity(i).waiting;
            auto& report = result.limits[i];
            if (waiting > report.longest_queue) {
                report.longest_queue = waiting;
                report.longest_queue_at = now;
            }
            auto& p = point(i, now);
            p.waiting = std::max(p.waiting, waiting);
        }
    };

    // The upstreams of the --vendor instance: what reaches them is what its rules count.
    std::vector<bool> to_vendor(config.upstreams.size(), false);
    for (const auto& vendor : config.vendors) {
        if (!result.vendor || vendor.name != result.vendor->instance) continue;
        for (const auto upstream : vendor.upstream_indexes) to_vendor[upstream] = true;
    }
    std::unordered_map<queue::TicketId, Submitted> waiting;
    std::priority_queue<Exchange, std::vector<Exchange>, std::greater<>> exchanges;
    std::uint64_t exchange_order = 0;
    std::vector<Nanos> all_delays;
    // Vendor feedback (docs/feedback.md, "In flight"): what each limit admitted per key, the
    // daemon's own tally (LimitService::tally), kept for upstreams with feedback on.
    feedback::AdmissionTally tally(limit_configs.size());
    std::unordered_map<std::size_t, DelaySlots> retried_slots;  // by request, while its retry waits

    // What the session does with a decision (apply_admission): answer, or forward and hold.
    const auto decided = [&](const Submitted& submitted, const queue::Admission& admission, bool was_queued) {
        const auto request_index = submitted.request;
        const auto& uses = submitted.uses;
        auto& outcome = result.outcomes[request_index];
        const auto& request = traffic[request_index];
        if (admission.outcome == queue::Outcome::rejected) {
            // A retry refused (its pause outlasting the deadline, the queue full): the client gets
            // the vendor's 429, and the first admission's outcome stands.
            if (submitted.retry) {
                retried_slots.erase(request_index);
                return;
            }
            if (admission.limiting_limit) outcome.limit = admission.limiting_limit;
            outcome.verdict = Verdict::refused;
            outcome.reason = admission.reason;
            outcome.delay = was_queued ? admission.at - request.at : Nanos(0);
            const auto code = error_code_name(admission.reason);
            count_code(result.refused, code);
            if (admission.limiting_limit) count_code(result.limits[*admission.limiting_limit].refused, code);
            return;
        }
        if (admission.limiting_limit) outcome.limit = admission.limiting_limit;
        DelaySlots slots;
        const auto replaced = retried_slots.find(request_index);
        const bool replaces = submitted.retry && replaced != retried_slots.end();
        if (replaces) {
            // The retry's admission is the request's outcome: the first one is uncounted.
            slots = std::move(replaced->second);
            retried_slots.erase(replaced);
            const bool was_delayed = outcome.verdict == Verdict::delayed;
            --(was_delayed ? result.delayed : result.at_once);
            for (const auto& use : uses)
                --(was_delayed ? result.limits[use.limit_index].delayed
                               : result.limits[use.limit_index].at_once);
        }
        outcome.delay = admission.at - request.at;
        outcome.verdict =
            (was_queued || submitted.retry) && outcome.delay > Nanos(0) ? Verdict::delayed : Verdict::at_once;
        ++(outcome.verdict == Verdict::delayed ? result.delayed : result.at_once);
        if (replaces) {
            all_delays[slots.all] = outcome.delay;
        } else {
            slots.all = all_delays.size();
            all_delays.push_back(outcome.delay);
        }
        bool holds_permits = false;
        for (std::size_t u = 0; u < uses.size(); ++u) {
            const auto& use = uses[u];
            auto& report = result.limits[use.limit_index];
            ++(outcome.verdict == Verdict::delayed ? report.delayed : report.at_once);
            auto& delays = tracks[use.limit_index].delays;
            if (replaces && u < slots.tracks.size()) {
                delays[slots.tracks[u]] = outcome.delay;
            } else {
                slots.tracks.push_back(delays.size());
                delays.push_back(outcome.delay);
            }
            tracks[use.limit_index].last_key = use.key;
            const auto view = observed[use.limit_index]->feedback_view(use.key, instant(admission.at));
            if (view.counted > report.peak_usage) {
                report.peak_usage = view.counted;
                report.peak_at = admission.at;
            }
            auto& p = point(use.limit_index, admission.at);
            p.usage = std::max(p.usage, view.counted);
            ++p.admitted;
            holds_permits =
                holds_permits || limit_configs[use.limit_index].algorithm == config::Algorithm::concurrency;
        }
        const auto end = admission.at + request.upstream_time.value_or(options.upstream_time);
        Exchange exchange{end, exchange_order++, uses, holds_permits, std::nullopt, {}, {}};
        const auto& upstream = config.upstreams[config.routes[submitted.route].upstream_index];
        if (upstream.feedback.enabled) {
            // ClientSession::apply_admission: every admission is tallied while feedback is on.
            for (const auto& use : uses)
                exchange.tally_marks.push_back(tally.add(use.limit_index, use.key, use.cost));
            // The logged answer is the first send's: a retry's own answer is not in the log.
            if (!submitted.retry && request.response && carries_feedback(*request.response)) {
                exchange.feedback = submitted;
                exchange.slots = std::move(slots);
            }
        }
        // Only concurrency permits go back when the exchange ends (ClientSession::apply_admission).
        if (holds_permits || exchange.feedback) exchanges.push(std::move(exchange));
        if (!rules.empty() && outcome.route && to_vendor[config.routes[*outcome.route].upstream_index]) {
            for (auto& rule : rules)
                if (rule.covers_route[*outcome.route])
                    rule.forwarded(request, submitted.vendor_path, admission.at, end);
        }
    };
    const auto poll = [&](Nanos now) {
        bool any = false;
        for (const auto& admission : controller.poll(instant(now))) {
            auto it = waiting.find(admission.ticket);
            if (it == waiting.end()) continue;
            decided(it->second, admission, true);
            waiting.erase(it);
            any = true;
        }
        observe_queues(now);
        return any;
    };

    const auto submit = [&](Submitted submitted, Nanos max_wait, Nanos now) {
        const auto admission = controller.submit(
            queue::make_admission_request(config, submitted.route, submitted.uses, submitted.use_marks,
                                          submitted.priority_class, max_wait),
            instant(now));
        if (admission.outcome == queue::Outcome::queued) {
            if (admission.limiting_limit && !submitted.retry)
                result.outcomes[submitted.request].limit = admission.limiting_limit;
            waiting.emplace(admission.ticket, std::move(submitted));
        } else {
            decided(submitted, admission, false);
        }
        observe_queues(now);
    };
    // ClientSession::on_vendor_response at the logged answer's time: its signals read, the
    // limits reacted on (queue::react_to_vendor, as LimitService::react). Returns true when
    // the request is sent again (retry.on_vendor_429): its permits went back, and its retry
    // waits in the queue like any request.
    const auto replay_feedback = [&](Exchange& exchange, Nanos now) {
        const auto& submitted = *exchange.feedback;
        const auto& request = traffic[submitted.request];
        const auto& response = *request.response;
        const auto& route_config = config.routes[submitted.route];
        const auto& settings = config.upstreams[route_config.upstream_index].feedback;
        const bool reads_body = response.body && request.method != "HEAD" &&
                                feedback::wants_body(response.status, settings.signals);
        const auto signal = feedback::read_vendor_signals(
            response.status,
            [&response](std::string_view name) -> std::optional<std::string_view> {
                for (const auto& [header, value] : response.headers)
                    if (header.size() == name.size() && iequals_prefix(header, name)) return value;
                return std::nullopt;
            },
            reads_body ? std::optional<std::string_view>(*response.body) : std::nullopt, settings.signals,
            instant(now));
        std::vector<std::int64_t> admitted_after(submitted.uses.size(), 0);
        for (std::size_t i = 0; i < submitted.uses.size() && i < exchange.tally_marks.size(); ++i)
            admitted_after[i] =
                tally.since(submitted.uses[i].limit_index, submitted.uses[i].key, exchange.tally_marks[i]);
        // ClientSession::may_retry: this is the first send, and the log keeps the whole request.
        const auto& retry = route_config.retry;
        const bool retry_eligible = retry.on_vendor_429 && retry.max_attempts > 1 &&
                                    (is_idempotent(request.method) || retry.non_idempotent);
        const auto reaction = queue::react_to_vendor(controller, submitted.uses, admitted_after, signal,
                                                     settings, response.status, retry_eligible,
                                                     submitted.deadline, instant(now), nullptr);
        ++result.vendor_answers;
        if (reaction.paused) ++result.vendor_paused;
        if (reaction.capped) ++result.vendor_capped;
        if (queue::changes_limits(reaction)) poll(now);
        if (!reaction.retry()) return false;
        ++result.vendor_retried;
        // ClientSession::retry_after_vendor_refusal: concurrency permits back, then the queue.
        if (exchange.holds_permits) controller.release(exchange.uses, instant(now));
        retried_slots[submitted.request] = std::move(exchange.slots);
        auto again = submitted;
        again.retry = true;
        submit(std::move(again), std::max(Nanos::zero(), submitted.deadline - now), now);
        return true;
    };

    std::vector<limit::LimitUse> uses;
    limit::UseMarks marks;
    std::size_t next_arrival = 0;
    Nanos now = result.first_arrival;
    Nanos spin_guard_at = kNever;  // a poll at this time decided nothing
    while (true) {
        const Nanos arrival_at = next_arrival < order.size() ? traffic[order[next_arrival]].at : kNever;
        const Nanos release_at = exchanges.empty() ? kNever : exchanges.top().end;
        Nanos wake_at = controller.waiting() > 0 ? controller.next_wakeup(instant(now)) : kNever;
        if (wake_at != kNever && wake_at <= now && spin_guard_at == now) wake_at = now + kTimerGranularity;
        const Nanos at = std::max(now, std::min({arrival_at, release_at, wake_at}));
        if (at == kNever) break;
        now = at;
        enter_bucket(now);
        if (release_at <= now) {
            // LimitService::release: the permits go back, then the queue is polled.
            while (!exchanges.empty() && exchanges.top().end <= now) {
                auto exchange = exchanges.top();
                exchanges.pop();
                if (exchange.feedback && replay_feedback(exchange, now)) continue;  // sent again
                if (exchange.holds_permits) controller.release(exchange.uses, instant(now));
            }
            poll(now);
            spin_guard_at = kNever;
            continue;
        }
        if (wake_at <= now) {
            spin_guard_at = poll(now) ? kNever : now;
            continue;
        }
        // An arrival: ClientSession::handle_request's order (route, uses, max wait), then submit.
        const auto request_index = order[next_arrival++];
        const auto& request = traffic[request_index];
        auto& outcome = result.outcomes[request_index];
        outcome.arrival = request.at;
        // Dot segments removed as the session does (nullopt: the path is already normal).
        const auto normalized = route::normalize_path(request.path);
        const route::RequestTarget target{
            options.listener_index, host_without_port(request.host), request.method,
            normalized ? std::string_view(*normalized) : std::string_view(request.path)};
        const auto match = routes.match(target);
        if (!match) {
            outcome.verdict = Verdict::not_routed;
            outcome.reason = Errc::no_route;
            ++result.not_routed;
            continue;
        }
        outcome.route = match->route_index;
        const auto& route_config = config.routes[match->route_index];
        // A caller from the access log stands in for the fair share's caller header (never
        // logged) or for the listener the request came in on. A route has one fair share at most.
        std::string_view logged_caller_header;
        if (request.caller) {
            for (const auto limit_index : route_config.limit_indexes) {
                const auto& fair = config.limits[limit_index].fair_share;
                if (fair && fair->caller == config::FairShareConfig::Caller::header)
                    logged_caller_header = fair->header;
            }
        }
        limit::RequestAttributes attributes{
            request.method, request.query, &match->params,
            [&](std::string_view name) -> std::optional<std::string_view> {
                if (!logged_caller_header.empty() && iequals(name, logged_caller_header))
                    return std::string_view(*request.caller);
                return find_header(request, name);
            }};
        // Its priority class (docs/priorities.md): the daemon answers 400 to a class it does not know.
        const auto priority_class =
            config::request_class(config, route_config, find_header(request, kPriorityHeader));
        if (!priority_class) {
            outcome.verdict = Verdict::refused;
            outcome.reason = Errc::unknown_priority;
            count_code(result.refused, error_code_name(Errc::unknown_priority));
            continue;
        }
        limit::collect_limit_uses(
            config, route_config, attributes, *priority_class,
            request.caller ? std::string_view(*request.caller)
                           : std::string_view(config.listeners[options.listener_index].name),
            [](std::size_t limit_index) { return limit_index; }, gate_slot(route_config.upstream_index), uses,
            marks);
        if (!limit::header_cost_refusal(config, marks).empty()) {
            // The daemon answers 422 at once, counted on no limit and never forwarded.
            outcome.verdict = Verdict::refused;
            outcome.reason = Errc::cost_too_large;
            count_code(result.refused, error_code_name(Errc::cost_too_large));
            continue;
        }
        Nanos max_wait = route_config.queue.max_wait;
        if (const auto asked = find_header(request, kMaxWaitHeader)) {
            const auto parsed = config::parse_max_wait_header(*asked);
            if (!parsed) {
                // The daemon answers 400 without counting it on any limit.
                outcome.verdict = Verdict::refused;
                outcome.reason = Errc::malformed_request;
                count_code(result.refused, error_code_name(Errc::malformed_request));
                continue;
            }
            max_wait = std::min(max_wait, *parsed);
        }
        for (const auto& use : uses) {
            ++result.limits[use.limit_index].requests;
            tracks[use.limit_index].used = true;
        }
        submit(Submitted{request_index, match->route_index, uses, marks, *priority_class,
                         match->upstream_path, now + max_wait, false},
               max_wait, now);
        spin_guard_at = kNever;
    }
    result.last_event = now;

    result.delays = percentiles(all_delays);
    for (std::size_t i = 0; i < result.limits.size(); ++i) {
        result.limits[i].delays = percentiles(tracks[i].delays);
        if (result.limits[i].needs_missing_headers) ++result.limits_needing_missing_headers;
    }
    if (result.vendor)
        for (auto& rule : rules) result.vendor->rules.push_back(std::move(rule.report));
    return result;
}

}  // namespace sluice::simulate
