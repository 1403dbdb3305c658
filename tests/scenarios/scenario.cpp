#include "scenarios/scenario.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string_view>
#include <time.h>

#include <catch2/catch.hpp>

#include "scenarios/vendor_simulator.hpp"
#if SLUICE_SCENARIOS_FROM_PRESETS
#include "sluice/config/vendor_policy.hpp"
#endif
#include "support/sluice_process.hpp"

namespace sluice::test::sim {

namespace {

std::string ns_duration(std::chrono::nanoseconds d) {
    return std::to_string(d.count()) + "ns";
}

// A YAML flow sequence of plain scalars: [GET, POST].
std::string flow_list(const std::vector<std::string>& items) {
    std::string out = "[";
    for (std::size_t i = 0; i < items.size(); ++i) out += (i ? ", " : "") + items[i];
    return out + "]";
}

const Rule& find_rule(const std::vector<Rule>& rules, const std::string& name) {
    for (const auto& rule : rules) {
        if (rule.name == name) return rule;
    }
    throw std::invalid_argument("no rule named " + name);
}

// The `key:` of a limit per group of keys (Close: per organization), as a user with keys of
// several groups writes it: the rule's header, its values mapped to the vendor's groups. Empty
// when every key is in one group (an unkeyed limit is then the same thing).
std::string group_by_key(const Rule& rule, const Scenario& scenario) {
    std::map<std::string, std::vector<std::string>> groups;
    for (const auto& [value, group] : scenario.vendor.key_groups) groups[group].push_back(value);
    if (groups.size() <= 1 || !rule.per) return {};
    std::ostringstream out;
    out << "{header: " << rule.per->header << ", group_by: {groups: {";
    const char* sep = "";
    for (const auto& [group, values] : groups) {
        out << sep << "\"" << group << "\": [";
        for (std::size_t i = 0; i < values.size(); ++i) out << (i ? ", " : "") << "\"" << values[i] << "\"";
        out << "]";
        sep = ", ";
    }
    out << "}}}";
    return out.str();
}

// A rule as a sluice limit (lines under `limits:`).
std::string limit_yaml(const Rule& rule, const Scenario& scenario) {
    std::ostringstream out;
    out << "  " << rule.name << ":\n";
    switch (rule.kind) {
        case Rule::Kind::rolling:
            out << "    algorithm: sliding_window\n    window: " << ns_duration(rule.window) << "\n";
            break;
        case Rule::Kind::fixed:
            out << "    algorithm: fixed_window\n    window: " << ns_duration(rule.window) << "\n";
            if (rule.utc_offset.count() != 0)
                out << "    utc_offset: " << ns_duration(rule.utc_offset) << "\n";
            break;
        case Rule::Kind::concurrency: out << "    algorithm: concurrency\n"; break;
    }
    out << "    limit: " << rule.limit << "\n";
    if (rule.kind != Rule::Kind::concurrency && scenario.margin.count() > 0)
        out << "    margin: " << ns_duration(scenario.margin) << "\n";
    if (rule.per && rule.per_group.empty()) {
        out << "    key: {header: " << rule.per->header << "}\n";
    } else if (!rule.per_group.empty()) {
        // Kept account-wide while every key belongs to one group; per group otherwise.
        const auto key = group_by_key(rule, scenario);
        if (!key.empty()) out << "    key: " << key << "\n";
    }
    if (rule.cost) {
        out << "    cost: {header: " << rule.cost->header;
        if (rule.cost->max > 0) out << ", max: " << rule.cost->max;
        out << "}\n";
    }
    return out.str();
}

}  // namespace

const RuleReport& ScenarioResult::rule(const std::string& wanted) const {
    for (const auto& r : rules) {
        if (r.name == wanted) return r;
    }
    throw std::invalid_argument("no rule named " + wanted);
}

namespace {

#if SLUICE_SCENARIOS_FROM_PRESETS
// A zone's offset from UTC now (IANA name, from the system's tz database): GCC 12 has no
// std::chrono::zoned_time. Called while setting a scenario up, before any thread starts.
std::chrono::nanoseconds utc_offset_now(const std::string& zone) {
    const char* before = std::getenv("TZ");
    const std::string saved = before ? before : "";
    setenv("TZ", zone.c_str(), 1);
    tzset();
    const std::time_t now = std::time(nullptr);
    std::tm local{};
    localtime_r(&now, &local);
    const long offset = local.tm_gmtoff;
    if (before) {
        setenv("TZ", saved.c_str(), 1);
    } else {
        unsetenv("TZ");
    }
    tzset();
    return std::chrono::seconds(offset);
}
#endif

// The preset's entry under `vendors:`: the simulator as its upstream(s), the scenario's queue.
std::string vendor_entry_yaml(const Scenario& scenario, const std::string& vendor_url) {
    const char* feedback = std::getenv("SLUICE_SCENARIO_FEEDBACK");
    const bool deaf = feedback && std::string_view(feedback) == "off";
    const auto upstream = [&](const std::string& path) {
        return std::string("{url: \"") + vendor_url + path + "\", connect_timeout: 1s, response_timeout: 5s" +
               (deaf ? ", feedback: {enabled: false}" : "") + "}";
    };
    std::ostringstream out;
    out << "vendors:\n  " << scenario.preset << ":\n    preset: " << scenario.preset << "\n";
    out << "    listeners: [main]\n";
    if (scenario.upstreams.size() == 1 && scenario.upstreams.front().first.empty()) {
        out << "    upstream: " << upstream(scenario.upstreams.front().second) << "\n";
    } else {
        out << "    upstreams:\n";
        for (const auto& [name, path] : scenario.upstreams)
            out << "      " << name << ": " << upstream(path) << "\n";
    }
    out << "    queue: {max_depth: " << scenario.max_depth << ", max_wait: " << scenario.max_wait.count()
        << "ms}\n";
    // The preset's per-group limits are unkeyed (one organization); keys of several groups
    // override them with a group_by key, as docs/configuration.md shows.
    std::string overrides;
    for (const auto& rule : scenario.rules) {
        if (rule.per_group.empty()) continue;
        const auto key = group_by_key(rule, scenario);
        if (!key.empty()) overrides += "      " + rule.name + ": {key: " + key + "}\n";
    }
    if (!overrides.empty()) out << "    limits:\n" << overrides;
    return out.str();
}

}  // namespace

#if SLUICE_SCENARIOS_FROM_PRESETS
std::vector<Rule> preset_rules(const std::string& preset) {
    const auto policy =
        config::load_vendor_policy(std::string(SLUICE_SOURCE_DIR) + "/config/presets/" + preset + ".yaml");
    std::vector<Rule> rules;
    for (const auto* published : policy.rules_for_tier("")) {
        Rule rule;
        rule.name = published->name;
        switch (published->kind) {
            case config::PolicyRuleKind::rolling: rule.kind = Rule::Kind::rolling; break;
            case config::PolicyRuleKind::fixed: rule.kind = Rule::Kind::fixed; break;
            case config::PolicyRuleKind::concurrency: rule.kind = Rule::Kind::concurrency; break;
        }
        rule.limit = published->limit;
        rule.window = published->window;
        rule.utc_offset =
            published->time_zone.empty() ? published->utc_offset : utc_offset_now(published->time_zone);
        if (!published->match.matches_everything())
            rule.match = Match{published->match.methods, published->match.path, published->match.path_prefix};
        if (!published->per_header.empty()) rule.per = Per{published->per_header};
        rule.per_group = published->per_group;
        if (published->counts_units) rule.cost = Cost{published->cost.header, published->cost.max};
        rules.push_back(std::move(rule));
    }
    return rules;
}
#endif

std::string sluice_yaml(const Scenario& scenario, const std::string& vendor_url) {
    std::ostringstream out;
    out << "server:\n  admin:\n    listen: \"127.0.0.1:0\"\n";
    out << "listeners:\n  - name: main\n    listen: \"127.0.0.1:0\"\n";
    if (!scenario.preset.empty()) return out.str() + vendor_entry_yaml(scenario, vendor_url);
    const auto rules = scaled(scenario.rules, scenario.time_scale);
    out << "upstreams:\n  vendor:\n    url: \"" << vendor_url << "\"\n";
    out << "    connect_timeout: 1s\n    response_timeout: 5s\n";
    // SLUICE_SCENARIO_FEEDBACK=off: the same scenario with sluice deaf to the vendor's signals
    // (the control run that tells what listening costs or gains).
    const char* feedback = std::getenv("SLUICE_SCENARIO_FEEDBACK");
    if (feedback && std::string_view(feedback) == "off") {
        out << "    feedback:\n      enabled: false\n";
    } else if (!scenario.feedback.empty()) {
        out << "    feedback:\n";
        for (const auto& line : scenario.feedback) out << "      " << line << "\n";
    }
    out << "limits:\n";
    for (const auto& rule : rules) out << limit_yaml(rule, scenario);
    out << "queue:\n  max_depth: " << scenario.max_depth << "\n  max_wait: " << scenario.max_wait.count()
        << "ms\n";
    out << "routes:\n";
    for (const auto& route : scenario.routes) {
        out << "  - name: " << route.name << "\n    match:\n      listener: main\n";
        if (route.match) {
            if (!route.match->methods.empty())
                out << "      methods: " << flow_list(route.match->methods) << "\n";
            if (!route.match->path.empty()) out << "      path: \"" << route.match->path << "\"\n";
            if (!route.match->path_prefix.empty())
                out << "      path_prefix: \"" << route.match->path_prefix << "\"\n";
        }
        out << "    upstream: vendor\n";
        for (const auto& name : route.rules) (void)find_rule(rules, name);
        if (!route.rules.empty()) out << "    limits: " << flow_list(route.rules) << "\n";
        if (!scenario.retry.empty()) {
            out << "    retry:\n";
            for (const auto& line : scenario.retry) out << "      " << line << "\n";
        }
    }
    return out.str();
}

ScenarioResult run_scenario(const Scenario& scenario) {
    VendorSimulator vendor(scaled(scenario.rules, scenario.time_scale), scenario.vendor,
                           scenario.service_time);
    const auto yaml = sluice_yaml(scenario, vendor.url());
    SluiceProcess::Options options;
    // A preset's windows are scaled by sluice itself, as a user's demo would.
    if (!scenario.preset.empty()) options.extra_args = {"--time-scale", std::to_string(scenario.time_scale)};
    SluiceProcess sluice(yaml, options);
    LoadPlan plan;
    plan.duration = scenario.duration;
    for (const auto& consumer : scenario.consumers) {
        plan.groups.push_back(consumer.group);
        plan.groups.back().port = consumer.direct ? vendor.port() : sluice.port("main");
    }
    ScenarioResult result;
    result.name = scenario.name;
    result.load = run_load(plan);
    sluice.stop();
    vendor.stop();

    const auto& log = vendor.rules().log();
    result.arrivals = log.size();
    result.dropped = vendor.rules().dropped();
    const Nanos first = log.empty() ? result.load.t0 : log.front().at;
    result.measured_from = first + std::chrono::nanoseconds(scenario.measure_after).count();
    result.rules =
        analyze(vendor.rules(), result.measured_from, result.load.t_end, vendor.unix_minus_steady());
    std::map<std::string, std::size_t> ids;
    std::set<std::string> credit_ids;
    for (const auto& a : log) {
        ++ids[a.request_id];
        if (a.refused_by == "credits") {
            ++result.credits_refused;
            credit_ids.insert(a.request_id);
        } else if (!a.refused_by.empty()) {
            if (a.consumer == "sluice") {
                ++result.vendor_429_to_sluice;
                if (a.at >= result.measured_from) ++result.vendor_429_to_sluice_late;
            } else {
                ++result.vendor_429_direct;
            }
        }
    }
    for (const auto& [id, count] : ids) {
        if (count > 1) {
            ++result.sent_twice;
            if (credit_ids.count(id)) ++result.credits_sent_twice;
        }
    }
    for (const auto& e : result.load.exchanges) {
        if (scenario.consumers[e.group].direct) continue;
        ++result.requests;
        if (e.status == 200) {
            ++result.ok;
        } else if (e.status == 0) {
            ++result.errors;
        } else if (e.status == -1) {
            ++result.abandoned;
            result.longest_abandoned_wait_s =
                std::max(result.longest_abandoned_wait_s, static_cast<double>(e.done - e.sent) / 1e9);
        } else if (e.from_vendor) {
            ++result.vendor_answers;
        } else if (!e.sluice_error.empty()) {
            ++result.synthetic[e.sluice_error];
        } else {
            ++result.unmarked;
        }
    }
    return result;
}

std::string summary(const Scenario& scenario, const ScenarioResult& r) {
    std::ostringstream out;
    char text[256];
    out << "scenario " << scenario.name << " x" << scenario.time_scale << ":";
    for (const auto& rule : r.rules) {
        std::snprintf(text, sizeof text, " %s sent %lld/%lld accepted %lld", rule.name.c_str(),
                      static_cast<long long>(rule.max_arrivals), static_cast<long long>(rule.limit),
                      static_cast<long long>(rule.max_in_window));
        out << text;
        if (rule.allowed > 0) {
            std::snprintf(text, sizeof text, " util %.1f%% (%lld/%lld)", 100.0 * rule.utilization(),
                          static_cast<long long>(rule.accepted), static_cast<long long>(rule.allowed));
            out << text;
        }
        out << " |";
    }
    out << " vendor 429 " << r.vendor_429_to_sluice << " (late " << r.vendor_429_to_sluice_late << ")";
    if (r.vendor_429_direct) out << " direct 429 " << r.vendor_429_direct;
    if (r.credits_refused) out << " credits refused " << r.credits_refused;
    out << " | requests " << r.requests << " ok " << r.ok << " vendor-other " << r.vendor_answers;
    for (const auto& [code, count] : r.synthetic) out << " " << code << " " << count;
    out << " errors " << r.errors << " abandoned " << r.abandoned << " sent-twice " << r.sent_twice;
    return out.str();
}

void check_scenario(const Scenario& scenario, const ScenarioResult& r, const Targets& targets) {
    const auto line = summary(scenario, r);
    std::cout << line << std::endl;
    INFO(line);
    CHECK(r.dropped == 0);
    CHECK(r.arrivals > 0);
    CHECK(r.vendor_429_to_sluice <= targets.max_vendor_429);
    CHECK(r.vendor_429_to_sluice_late <= targets.max_vendor_429_late);
    for (const auto& rule : r.rules) {
        INFO("rule " << rule.name);
        // The vendor enforces its limit, so what it accepted never exceeds it; what sluice sent
        // (every arrival, refused ones too) is the real test.
        CHECK(rule.max_in_window <= rule.limit);
        if (targets.sent_within_limits) CHECK(rule.max_arrivals <= rule.limit);
    }
    for (const auto& name : scenario.binding) {
        const auto& rule = r.rule(name);
        INFO("binding rule " << name << ": " << rule.accepted << " of " << rule.allowed);
        REQUIRE(rule.allowed > 0);  // the run covered at least one whole window of it
        CHECK(rule.utilization() >= targets.min_utilization);
    }
    // Every request answered: by the vendor (relayed), or by sluice with a Sluice-Error that a
    // queue bound explains. Only those still queued when the load stopped may be unanswered,
    // and none of them had waited longer than a request may.
    CHECK(r.errors == 0);
    CHECK(r.unmarked == 0);
    for (const auto& [code, count] : r.synthetic) {
        INFO("sluice answered " << count << " x " << code);
        CHECK(targets.allowed_synthetic.count(code) == 1);
    }
    std::size_t clients = 0;
    for (const auto& c : scenario.consumers)
        clients += c.direct ? 0 : static_cast<std::size_t>(c.group.clients);
    CHECK(r.abandoned <= clients);
    CHECK(r.longest_abandoned_wait_s <= std::chrono::duration<double>(scenario.max_wait).count() + 2.0);
}

}  // namespace sluice::test::sim
