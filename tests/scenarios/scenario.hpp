#pragma once
// One vendor scenario: the vendor's published rules enforced by the simulator, a real sluice
// process configured to keep them, and closed-loop clients pushing more than the vendor allows.
// Every window is divided by the scenario's time scale, in the simulator and in sluice alike.
//
// sluice_yaml() is the one place a scenario's sluice configuration is written. A scenario names a
// preset (config/presets/<name>.yaml): sluice loads it through a `vendors:` entry whose only
// overrides are the upstream URL (the simulator) and the queue, with `--time-scale`; the
// simulator enforces the same preset's vendor_policy, so the suite proves the shipped presets.
// Without a preset, the rules become sluice limits field by field (rolling -> sliding_window,
// fixed -> fixed_window, concurrency -> concurrency; per -> key; cost -> cost), routed as the
// scenario's routes say.
//
// run_scenario() returns what the vendor and the clients saw; check_scenario() asserts the
// suite's targets on it (Catch2) and summary() is the one line a CI log shows.

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "scenarios/load_clients.hpp"
#include "scenarios/vendor_rules.hpp"

namespace sluice::test::sim {

// A sluice route: what it matches, and the vendor rules (by name) it keeps.
struct SluiceRoute {
    std::string name;
    std::optional<Match> match;
    std::vector<std::string> rules;
};

struct Consumer {
    ClientGroup group;    // its port is filled in by run_scenario()
    bool direct = false;  // sends to the vendor itself (a second consumer of the quota), not through sluice
};

// Once the tree has presets with their published policy (config/presets/*.yaml, vendor_policy.hpp)
// the scenarios load them; until then each scenario's rules and routes are written by hand.
#if __has_include("sluice/config/vendor_policy.hpp")
#define SLUICE_SCENARIOS_FROM_PRESETS 1
// The published rules of a preset's vendor_policy (default tier), as simulator rules; a fixed
// rule's time_zone becomes the zone's UTC offset now.
std::vector<Rule> preset_rules(const std::string& preset);
#else
#define SLUICE_SCENARIOS_FROM_PRESETS 0
#endif

struct Scenario {
    std::string name;
    std::string preset;       // sluice loads this preset; empty: `routes` and the rules below
    std::vector<Rule> rules;  // as the vendor publishes them (unscaled); preset_rules(preset) with a preset
    // With a preset: the preset's upstreams (by name; "" for a preset's single `upstream`), each
    // pointed at the simulator with this path after its URL.
    std::vector<std::pair<std::string, std::string>> upstreams{{"", ""}};
    Options vendor;  // how the simulated vendor answers; stricter limits, key groups, credits
    std::int64_t time_scale = 1;
    std::chrono::microseconds service_time{500};  // how long the vendor takes to answer

    // sluice's side, without a preset.
    std::vector<SluiceRoute> routes;
    std::vector<std::string> feedback;                               // lines under upstreams.vendor.feedback
    std::vector<std::string> retry;                                  // lines under each route's retry
    std::chrono::nanoseconds margin{std::chrono::milliseconds(20)};  // on every time-based limit
    std::size_t max_depth = 1000;
    std::chrono::milliseconds max_wait{30'000};

    // The load and what is measured.
    std::vector<Consumer> consumers;
    std::chrono::milliseconds duration{10'000};
    // Utilization is measured from the vendor's first arrival + this, to the end of the load.
    std::chrono::milliseconds measure_after{1'000};
    std::vector<std::string> binding;  // the rules whose utilization is asserted
};

std::string sluice_yaml(const Scenario& scenario, const std::string& vendor_url);

struct ScenarioResult {
    std::string name;
    std::vector<RuleReport> rules;
    LoadResult load;
    Nanos measured_from = 0;  // steady
    // At the vendor.
    std::size_t arrivals = 0;
    std::size_t vendor_429_to_sluice = 0;
    std::size_t vendor_429_to_sluice_late = 0;  // after the first `measure_after`
    std::size_t vendor_429_direct = 0;
    std::size_t credits_refused = 0;
    std::size_t sent_twice = 0;          // request ids that reached the vendor more than once
    std::size_t credits_sent_twice = 0;  // ... among those the credits refused
    std::size_t dropped = 0;             // arrivals the simulator could not record
    // At sluice's clients.
    std::size_t requests = 0;
    std::size_t ok = 0;
    std::size_t vendor_answers = 0;                // other than 200, from the vendor
    std::size_t errors = 0;                        // no answer (connection error or timeout) before the end
    std::size_t abandoned = 0;                     // still waiting when the run ended
    double longest_abandoned_wait_s = 0;           // how long the longest of those had waited
    std::map<std::string, std::size_t> synthetic;  // sluice's own answers by Sluice-Error
    std::size_t unmarked = 0;                      // neither the vendor's nor with a Sluice-Error

    const RuleReport& rule(const std::string& name) const;
};

ScenarioResult run_scenario(const Scenario& scenario);

// "scenario convertr x30: convertr-all max 3000/3000 util 97.1% | ... | vendor 429 0 | requests ..."
std::string summary(const Scenario& scenario, const ScenarioResult& result);

// What the suite asserts, and the bounds a scenario may relax (stated in its test).
struct Targets {
    std::size_t max_vendor_429 = 0;       // to sluice, the whole run
    std::size_t max_vendor_429_late = 0;  // to sluice, after measure_after
    double min_utilization = 0.95;        // of each binding rule
    bool sent_within_limits = true;       // no rule saw more arrivals in a window than it allows
    std::set<std::string> allowed_synthetic{"queue_full", "admission_timeout"};
};

void check_scenario(const Scenario& scenario, const ScenarioResult& result, const Targets& targets);

}  // namespace sluice::test::sim
