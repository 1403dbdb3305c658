#include "scenarios/vendor_rules.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <climits>
#include <cstdio>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "sluice/config/config.hpp"
#include "sluice/route/route_table.hpp"

namespace sluice::test::sim {

namespace {

bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) ==
                      std::tolower(static_cast<unsigned char>(y));
           });
}

Nanos floor_div(Nanos a, Nanos b) {
    const Nanos q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

Nanos ceil_div(Nanos a, Nanos b) {
    return -floor_div(-a, b);
}

// Nanoseconds as decimal seconds with millisecond precision, rounded up (a client obeying it is
// never early): Close's x-rate-limit-reset and rate_reset.
std::string decimal_seconds(Nanos ns) {
    const Nanos ms = ns <= 0 ? 0 : ceil_div(ns, 1'000'000);
    char text[32];
    std::snprintf(text, sizeof text, "%lld.%03lld", static_cast<long long>(ms / 1000),
                  static_cast<long long>(ms % 1000));
    return text;
}

Nanos whole_seconds_up(Nanos ns) {
    return ns <= 0 ? 0 : ceil_div(ns, 1'000'000'000);
}

// A rule's match compiled with sluice's own route pattern compiler: one table of one route.
route::RouteTable compile_match(const Match& match, const std::string& rule) {
    config::Config config;
    config::RouteConfig route;
    route.name = rule;
    route.match.methods = match.methods;
    route.match.path = match.path;
    route.match.path_prefix = match.path_prefix;
    config.routes.push_back(route);
    return route::RouteTable(config);
}

bool matches(const std::optional<route::RouteTable>& table, const Request& request) {
    if (!table) return true;
    route::RequestTarget target;
    target.method = request.method;
    target.path = request.path;
    return table->match(target).has_value();
}

std::int64_t units_of(const Request& request, const std::string& header, std::int64_t max) {
    if (header.empty()) return 1;
    const auto text = find_field(request.headers, header);
    if (!text) return 1;
    std::int64_t value = 0;
    const auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), value);
    if (ec != std::errc{} || end != text->data() + text->size() || value < 0) return 1;
    return max > 0 ? std::min(value, max) : value;
}

}  // namespace

std::optional<std::string> find_field(const Fields& fields, std::string_view name) {
    for (const auto& [n, v] : fields) {
        if (iequals(n, name)) return v;
    }
    return std::nullopt;
}

std::vector<Rule> scaled(std::vector<Rule> rules, std::int64_t factor) {
    for (auto& rule : rules) {
        rule.window /= factor;
        rule.utc_offset /= factor;  // as sluice's --time-scale does
    }
    return rules;
}

struct VendorRules::State {
    struct Window {  // rolling: what each counter accepted in the last window
        std::deque<std::pair<Nanos, std::int64_t>> entries;
        std::int64_t used = 0;
    };
    struct Period {  // fixed: the current calendar period
        Nanos index = 0;
        std::int64_t used = 0;
    };
    struct RuleState {
        std::optional<route::RouteTable> matcher;
        std::map<std::string, Window> windows;
        std::map<std::string, Period> periods;
        std::map<std::string, std::int64_t> in_flight;
    };
    // How a matching rule stands for one arrival.
    struct Standing {
        std::size_t rule = 0;
        std::string partition;
        std::int64_t units = 1;
        bool room = true;
        std::int64_t remaining = 0;  // after this arrival, if accepted
        Nanos reset = 0;             // until the rule has room again (refused) / its window moves (accepted)
    };

    std::vector<Rule> rules;
    Options options;
    std::vector<RuleState> states;
    std::optional<route::RouteTable> credits_matcher;
    std::int64_t credits_spent = 0;
    std::vector<Arrival> log;
    std::size_t dropped = 0;
    std::uint64_t next_ticket = 1;
    std::map<std::uint64_t, std::vector<std::pair<std::size_t, std::string>>> holding;  // concurrency slots
    std::map<std::uint64_t, std::size_t> log_index;

    std::int64_t limit_of(std::size_t i) const {
        const auto it = options.enforced_limits.find(rules[i].name);
        return it != options.enforced_limits.end() ? it->second : rules[i].limit;
    }

    std::string partition_of(const Rule& rule, const Request& request) const {
        if (!rule.per) return "*";
        const auto key = find_field(request.headers, rule.per->header).value_or("(absent)");
        if (rule.per_group.empty()) return key;
        const auto group = options.key_groups.find(key);
        return group != options.key_groups.end() ? group->second : "(no " + rule.per_group + ")";
    }

    Standing stand(std::size_t i, const Request& request, Nanos at, Nanos unix_at) {
        const Rule& rule = rules[i];
        auto& state = states[i];
        Standing s;
        s.rule = i;
        s.partition = partition_of(rule, request);
        s.units = rule.cost ? units_of(request, rule.cost->header, rule.cost->max) : 1;
        const std::int64_t limit = limit_of(i);
        const Nanos window = rule.window.count();
        switch (rule.kind) {
            case Rule::Kind::rolling: {
                auto& w = state.windows[s.partition];
                while (!w.entries.empty() && w.entries.front().first <= at - window) {
                    w.used -= w.entries.front().second;
                    w.entries.pop_front();
                }
                s.room = w.used + s.units <= limit;
                s.remaining = limit - w.used - (s.room ? s.units : 0);
                if (s.room) {
                    s.reset = w.entries.empty() ? window : w.entries.front().first + window - at;
                } else {
                    // The earliest instant at which enough has left the window for this request.
                    s.reset = window;
                    std::int64_t freed = 0;
                    for (const auto& [t, units] : w.entries) {
                        freed += units;
                        if (w.used - freed + s.units <= limit) {
                            s.reset = t + window - at;
                            break;
                        }
                    }
                }
                break;
            }
            case Rule::Kind::fixed: {
                const Nanos offset = rule.utc_offset.count();
                const Nanos index = floor_div(unix_at + offset, window);  // as sluice's fixed_window
                auto& p = state.periods[s.partition];
                if (p.index != index) p = {index, 0};
                s.room = p.used + s.units <= limit;
                s.remaining = limit - p.used - (s.room ? s.units : 0);
                s.reset = (index + 1) * window - offset - unix_at;
                break;
            }
            case Rule::Kind::concurrency: {
                const auto busy = state.in_flight[s.partition];
                s.room = busy + 1 <= limit;
                s.remaining = limit - busy - (s.room ? 1 : 0);
                s.reset = 0;
                break;
            }
        }
        return s;
    }

    void count(const Standing& s, Nanos at, Nanos unix_at, std::uint64_t ticket) {
        const Rule& rule = rules[s.rule];
        auto& state = states[s.rule];
        switch (rule.kind) {
            case Rule::Kind::rolling: {
                auto& w = state.windows[s.partition];
                w.entries.emplace_back(at, s.units);
                w.used += s.units;
                break;
            }
            case Rule::Kind::fixed: state.periods[s.partition].used += s.units; break;
            case Rule::Kind::concurrency:
                ++state.in_flight[s.partition];
                holding[ticket].emplace_back(s.rule, s.partition);
                break;
        }
        (void)unix_at;
    }

    Reply answer(const std::vector<Standing>& standings, bool accepted, const Standing* refusal,
                 Nanos unix_at) {
        Reply reply;
        reply.headers.emplace_back(kVendorMarkHeader, "sim");
        // The limit a header describes: the refusing one; else the time-based one closest to being hit.
        const Standing* described = refusal;
        if (!described) {
            for (const auto& s : standings) {
                if (rules[s.rule].kind == Rule::Kind::concurrency) continue;
                if (!described || s.remaining < described->remaining ||
                    (s.remaining == described->remaining && s.reset > described->reset))
                    described = &s;
            }
        }
        if (described && rules[described->rule].kind != Rule::Kind::concurrency) {
            const auto limit = std::to_string(limit_of(described->rule));
            const auto remaining = std::to_string(std::max<std::int64_t>(0, described->remaining));
            if (options.style == Style::intercom) {
                const Nanos reset_at = whole_seconds_up(unix_at + described->reset);
                reply.headers.emplace_back("X-RateLimit-Limit", limit);
                reply.headers.emplace_back("X-RateLimit-Remaining", remaining);
                reply.headers.emplace_back("X-RateLimit-Reset", std::to_string(reset_at));
            } else if (options.style == Style::close) {
                reply.headers.emplace_back("x-rate-limit-limit", limit);
                reply.headers.emplace_back("x-rate-limit-remaining", remaining);
                reply.headers.emplace_back("x-rate-limit-reset", decimal_seconds(described->reset));
            }
        }
        if (accepted) {
            reply.status = 200;
            reply.headers.emplace_back("Content-Type", "application/json");
            reply.body = R"({"ok":true})";
            return reply;
        }
        reply.status = 429;
        const Nanos reset = refusal ? refusal->reset : 0;
        const auto retry_after = std::to_string(std::max<Nanos>(1, whole_seconds_up(reset)));
        switch (options.style) {
            case Style::close: {
                const Rule& rule = rules[refusal->rule];
                nlohmann::json body;
                body["error"]["message"] = "API rate limit exceeded";
                body["error"]["rate_reset"] = nlohmann::json::parse(decimal_seconds(reset));
                body["error"]["rate_limit_type"] = rule.per && rule.per_group.empty() ? "key" : "org";
                body["error"]["rate_endpoint_group"] = rule.name;
                reply.headers.emplace_back("retry-after", retry_after);
                reply.headers.emplace_back("Content-Type", "application/json");
                reply.body = body.dump();
                break;
            }
            case Style::intercom:
                reply.headers.emplace_back("Content-Type", "application/json");
                reply.body =
                    R"({"type":"error.list","errors":[{"code":"rate_limit_exceeded","message":"Exceeded rate limit"}]})";
                break;
            case Style::bare:
                if (options.retry_after) reply.headers.emplace_back("Retry-After", retry_after);
                reply.body = "Too Many Requests";
                break;
        }
        return reply;
    }
};

VendorRules::VendorRules(std::vector<Rule> rules, Options options) : state_(std::make_unique<State>()) {
    state_->rules = std::move(rules);
    state_->options = std::move(options);
    for (const auto& rule : state_->rules) {
        if (rule.limit < 1) throw std::invalid_argument("rule " + rule.name + ": limit must be at least 1");
        if (rule.kind != Rule::Kind::concurrency && rule.window.count() <= 0)
            throw std::invalid_argument("rule " + rule.name + ": a window is required");
        if (!rule.per_group.empty() && !rule.per)
            throw std::invalid_argument("rule " + rule.name +
                                        ": per_group groups the `per` key, which is absent");
        State::RuleState state;
        if (rule.match) state.matcher.emplace(compile_match(*rule.match, rule.name));
        state_->states.push_back(std::move(state));
    }
    if (state_->options.credits && state_->options.credits->match)
        state_->credits_matcher.emplace(compile_match(*state_->options.credits->match, "credits"));
    state_->log.reserve(std::min<std::size_t>(state_->options.max_log, 1 << 16));
}

VendorRules::~VendorRules() = default;
VendorRules::VendorRules(VendorRules&&) noexcept = default;
VendorRules& VendorRules::operator=(VendorRules&&) noexcept = default;

std::pair<std::uint64_t, Reply> VendorRules::arrive(const Request& request, Nanos at, Nanos unix_at) {
    auto& st = *state_;
    const std::uint64_t ticket = st.next_ticket++;
    Arrival arrival;
    arrival.ticket = ticket;
    arrival.at = at;
    arrival.unix_at = unix_at;
    arrival.consumer = find_field(request.headers, kConsumerHeader).value_or("sluice");
    arrival.request_id = find_field(request.headers, kRequestIdHeader).value_or("");
    arrival.method = request.method;
    arrival.path = request.path;
    arrival.partitions.assign(st.rules.size(), "");
    arrival.costs.assign(st.rules.size(), 0);

    std::vector<State::Standing> standings;
    for (std::size_t i = 0; i < st.rules.size(); ++i) {
        if (matches(st.states[i].matcher, request)) standings.push_back(st.stand(i, request, at, unix_at));
    }
    const State::Standing* refusal = nullptr;
    for (const auto& s : standings) {
        if (!s.room && (!refusal || s.reset > refusal->reset)) refusal = &s;
    }
    Reply reply;
    std::int64_t credit_units = 0;
    const auto& credits = st.options.credits;
    const bool credited = credits && matches(st.credits_matcher, request);
    if (credited) credit_units = units_of(request, credits->cost_header, 0);
    if (credited && st.credits_spent + credit_units > credits->units) {
        reply.status = credits->status;
        reply.headers.emplace_back(kVendorMarkHeader, "sim");
        reply.headers.emplace_back("Content-Type", "application/json");
        reply.body = credits->body;
        arrival.refused_by = "credits";
    } else {
        const bool accepted = refusal == nullptr;
        if (accepted || st.options.count_refused) {
            for (const auto& s : standings) {
                if (accepted || st.rules[s.rule].kind != Rule::Kind::concurrency)
                    st.count(s, at, unix_at, ticket);
            }
        }
        if (accepted && credited) st.credits_spent += credit_units;
        reply = st.answer(standings, accepted, refusal, unix_at);
        if (!accepted) arrival.refused_by = st.rules[refusal->rule].name;
    }
    for (const auto& s : standings) {
        if (arrival.key.empty() && st.rules[s.rule].per)
            arrival.key = find_field(request.headers, st.rules[s.rule].per->header).value_or("");
        arrival.partitions[s.rule] = s.partition;
        arrival.costs[s.rule] = s.units;
    }
    arrival.status = reply.status;
    if (st.log.size() < st.options.max_log) {
        st.log_index[ticket] = st.log.size();
        st.log.push_back(std::move(arrival));
    } else {
        ++st.dropped;
    }
    return {ticket, std::move(reply)};
}

void VendorRules::finish(std::uint64_t ticket, Nanos at) {
    auto& st = *state_;
    if (const auto it = st.holding.find(ticket); it != st.holding.end()) {
        for (const auto& [rule, partition] : it->second) --st.states[rule].in_flight[partition];
        st.holding.erase(it);
    }
    if (const auto it = st.log_index.find(ticket); it != st.log_index.end()) {
        st.log[it->second].done = at;
        st.log_index.erase(it);
    }
}

const std::vector<Rule>& VendorRules::rules() const {
    return state_->rules;
}
const Options& VendorRules::options() const {
    return state_->options;
}
std::int64_t VendorRules::enforced_limit(std::size_t rule) const {
    return state_->limit_of(rule);
}
const std::vector<Arrival>& VendorRules::log() const {
    return state_->log;
}
std::size_t VendorRules::dropped() const {
    return state_->dropped;
}

std::int64_t max_in_rolling_window(const std::vector<std::pair<Nanos, std::int64_t>>& sorted, Nanos window) {
    std::int64_t best = 0;
    std::int64_t sum = 0;
    std::size_t first = 0;
    for (const auto& [t, units] : sorted) {
        sum += units;
        while (sorted[first].first <= t - window) sum -= sorted[first++].second;
        best = std::max(best, sum);
    }
    return best;
}

namespace {

// What one counter of a rule saw: (steady time, Unix time, units, answered).
struct Counted {
    Nanos at, unix_at;
    std::int64_t units;
    Nanos done;
};

// The most units in any window (rolling), in any period (fixed) or in flight (concurrency).
std::int64_t most_at_once(const Rule& rule, std::vector<Counted> counted) {
    std::sort(counted.begin(), counted.end(), [](const Counted& x, const Counted& y) { return x.at < y.at; });
    const Nanos window = rule.window.count();
    std::int64_t best = 0;
    switch (rule.kind) {
        case Rule::Kind::rolling: {
            std::vector<std::pair<Nanos, std::int64_t>> times;
            for (const auto& c : counted) times.emplace_back(c.at, c.units);
            return max_in_rolling_window(times, window);
        }
        case Rule::Kind::fixed: {
            std::map<Nanos, std::int64_t> per_period;
            for (const auto& c : counted)
                per_period[floor_div(c.unix_at + rule.utc_offset.count(), window)] += c.units;
            for (const auto& [index, units] : per_period) best = std::max(best, units);
            return best;
        }
        case Rule::Kind::concurrency: {
            // +1 at arrival, -1 when answered; a slot freed at t may be taken at t.
            std::vector<std::pair<Nanos, int>> events;
            for (const auto& c : counted) {
                events.emplace_back(c.at, +1);
                events.emplace_back(c.done > 0 ? c.done : INT64_MAX, -1);
            }
            std::sort(events.begin(), events.end());
            std::int64_t busy = 0;
            for (const auto& [t, delta] : events) {
                busy += delta;
                best = std::max(best, busy);
            }
            return best;
        }
    }
    return best;
}

}  // namespace

std::vector<RuleReport> analyze(const VendorRules& vendor, Nanos from, Nanos to, Nanos unix_minus_steady) {
    std::vector<RuleReport> reports;
    const auto& rules = vendor.rules();
    for (std::size_t i = 0; i < rules.size(); ++i) {
        const Rule& rule = rules[i];
        RuleReport report;
        report.name = rule.name;
        report.kind = rule.kind;
        report.limit = vendor.enforced_limit(i);
        report.published = rule.limit;
        const Nanos window = rule.window.count();
        std::map<std::string, std::vector<Counted>> accepted;
        std::map<std::string, std::vector<Counted>> arrived;
        for (const auto& a : vendor.log()) {
            if (a.partitions[i].empty()) continue;
            const Counted c{a.at, a.unix_at, a.costs[i], a.done};
            arrived[a.partitions[i]].push_back(c);
            if (a.refused_by.empty()) accepted[a.partitions[i]].push_back(c);
        }
        report.partitions = accepted.size();
        for (const auto& [partition, counted] : arrived)
            report.max_arrivals = std::max(report.max_arrivals, most_at_once(rule, counted));
        for (const auto& [partition, counted] : accepted) {
            report.max_in_window = std::max(report.max_in_window, most_at_once(rule, counted));
            if (rule.kind == Rule::Kind::rolling) {
                const Nanos k = (to - from) / window;
                for (const auto& c : counted) {
                    if (c.at >= from && c.at < from + k * window) report.accepted += c.units;
                }
                report.allowed += k * report.limit;
            } else if (rule.kind == Rule::Kind::fixed) {
                const Nanos offset = rule.utc_offset.count();
                const Nanos first = ceil_div(from + unix_minus_steady + offset, window);
                const Nanos last = floor_div(to + unix_minus_steady + offset, window);  // exclusive
                for (const auto& c : counted) {
                    const Nanos p = floor_div(c.unix_at + offset, window);
                    if (p >= first && p < last) report.accepted += c.units;
                }
                if (last > first) report.allowed += (last - first) * report.limit;
            }
        }
        reports.push_back(std::move(report));
    }
    return reports;
}

}  // namespace sluice::test::sim
