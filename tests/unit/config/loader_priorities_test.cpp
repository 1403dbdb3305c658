// priorities, a route's priority, and a limit's classes and fair_share (docs/priorities.md):
// what they load to (caps and reserves as derived limits) and every mistake's message.

#include <string>

#include <catch2/catch.hpp>

#include "sluice/config/config_printer.hpp"
#include "sluice/config/loader.hpp"

using namespace sluice::config;
using namespace std::chrono_literals;

namespace {

std::string error_of(const std::string& yaml) {
    try {
        load_config_string(yaml, "t.yaml");
    } catch (const ConfigError& e) {
        return e.what();
    }
    return "(no error)";
}

// Line 1 is `priorities`; line 5 is the limit `intercom`'s extra keys (a flow map's body).
std::string with_limit_keys(const std::string& priorities, const std::string& keys,
                            const std::string& route_extra = "") {
    return "priorities: " + priorities +
           "\nupstreams:\n  api: {url: https://api.example.com}\nlimits:\n"
           "  intercom: {algorithm: sliding_window, limit: 100, window: 10s" +
           (keys.empty() ? "" : ", " + keys) + "}\nroutes:\n  - upstream: api\n    limits: [intercom]\n" +
           route_extra;
}

constexpr const char* kClasses = "{classes: [interactive, default, batch]}";

}  // namespace

TEST_CASE("priorities: classes, default and aging load; absent, nothing changes", "[config][priorities]") {
    const auto none = load_config_string(with_limit_keys("null", ""), "t.yaml");
    CHECK_FALSE(none->priorities.enabled());
    CHECK(none->limits.size() == 1);

    const auto config = load_config_string(
        with_limit_keys("{classes: [interactive, default, batch], default: batch, aging: 500ms}", "",
                        "    priority: interactive\n"),
        "t.yaml");
    REQUIRE(config->priorities.enabled());
    CHECK(config->priorities.classes == std::vector<std::string>{"interactive", "default", "batch"});
    CHECK(config->priorities.default_class == 2);
    CHECK(config->priorities.aging == 500ms);
    CHECK(config->priorities.find("batch") == 2u);
    CHECK_FALSE(config->priorities.find("bulk"));
    CHECK(config->routes[0].priority == 0u);

    // Without `default`, the middle class; without `aging`, 2 s.
    const auto defaults = load_config_string(with_limit_keys(kClasses, ""), "t.yaml");
    CHECK(defaults->priorities.default_class == 1);
    CHECK(defaults->priorities.aging == 2s);
    CHECK_FALSE(defaults->routes[0].priority);
}

TEST_CASE("priorities: a cap and a reserve become derived limits counting their classes",
          "[config][priorities]") {
    const auto config = load_config_string(
        with_limit_keys(kClasses, "classes: {batch: {max_share: 70%}, interactive: {reserve: 20%}}"),
        "t.yaml");
    REQUIRE(config->limits.size() == 3);
    const LimitConfig& intercom = config->limits[0];
    CHECK(intercom.derived == std::vector<std::size_t>{1, 2});
    const LimitConfig& cap = config->limits[1];
    CHECK(cap.name == "intercom/class:batch");
    CHECK(cap.limit == 70);
    CHECK(cap.window == 10s);
    CHECK(cap.derived_from == 0u);
    CHECK(cap.counted_classes == 0b100);  // batch only
    const LimitConfig& reserve = config->limits[2];
    CHECK(reserve.name == "intercom/reserve:interactive");
    CHECK(reserve.limit == 80);
    CHECK(reserve.counted_classes == 0b110);  // every class but interactive
    // Routes name the parent only; the printed file derives them again.
    CHECK(config->routes[0].limit_indexes == std::vector<std::size_t>{0});
    const auto printed = print_config(*config);
    CHECK(printed.find("intercom/") == std::string::npos);
    const auto again = load_config_string(printed, "printed.yaml");
    REQUIRE(again->limits.size() == 3);
    CHECK(again->limits[1].name == "intercom/class:batch");
    CHECK(again->limits[2].limit == 80);
    CHECK(again->priorities.classes == config->priorities.classes);
}

TEST_CASE("priorities: a token bucket's cap scales its rate and its burst", "[config][priorities]") {
    const auto config = load_config_string(
        "priorities: {classes: [interactive, batch]}\nupstreams:\n  api: {url: https://api.example.com}\n"
        "limits:\n  tb: {algorithm: token_bucket, rate: 10/1s, burst: 20, classes: {batch: {max_share: "
        "50%}}}\n"
        "routes:\n  - upstream: api\n    limits: [tb]\n",
        "t.yaml");
    REQUIRE(config->limits.size() == 2);
    CHECK(config->limits[1].limit == 5);
    CHECK(config->limits[1].burst == 10);
}

TEST_CASE("priorities: fair_share loads", "[config][priorities]") {
    const auto config = load_config_string(
        with_limit_keys("null", "fair_share: {caller: {header: X-Caller}, weights: {svc-a: 2, svc-b: 1}}"),
        "t.yaml");
    const auto& fair = config->limits[0].fair_share;
    REQUIRE(fair);
    CHECK(fair->caller == FairShareConfig::Caller::header);
    CHECK(fair->header == "X-Caller");
    CHECK(fair->weight_of("svc-a") == 2);
    CHECK(fair->weight_of("svc-c") == 1);
    CHECK(fair->total_weight == 4);
    const auto again = load_config_string(print_config(*config), "printed.yaml");
    REQUIRE(again->limits[0].fair_share);
    CHECK(again->limits[0].fair_share->total_weight == 4);

    const auto by_listener = load_config_string(
        "listeners:\n  - {name: a, listen: \"127.0.0.1:0\"}\n  - {name: b, listen: \"127.0.0.1:0\"}\n"
        "upstreams:\n  api: {url: https://api.example.com}\nlimits:\n"
        "  c: {algorithm: concurrency, limit: 4, fair_share: {caller: listener, weights: {a: 3}, "
        "default_weight: "
        "2}}\nroutes:\n  - upstream: api\n    limits: [c]\n",
        "t.yaml");
    CHECK(by_listener->limits[0].fair_share->caller == FairShareConfig::Caller::listener);
    CHECK(by_listener->limits[0].fair_share->total_weight == 5);
}

TEST_CASE("priorities: errors", "[config][priorities]") {
    CHECK(error_of(with_limit_keys("{classes: [interactive, batch], default: bulk}", "")) ==
          "t.yaml:1:54: priorities.default: unknown class 'bulk'; expected one of interactive, batch");
    CHECK(error_of(with_limit_keys("{classes: [a, a]}", "")) ==
          "t.yaml:1:27: priorities.classes[2]: duplicate class 'a'; expected each class once");
    CHECK(error_of(with_limit_keys("{classes: []}", "")) ==
          "t.yaml:1:23: priorities.classes: no classes; expected a list of class names, highest first, e.g. "
          "classes: [interactive, default, batch]");
    CHECK(error_of(with_limit_keys("{classes: [a], agin: 1s}", "")) ==
          "t.yaml:1:28: priorities: unknown key 'agin' (did you mean 'aging'?); expected one of classes, "
          "default, aging");
    CHECK(error_of(with_limit_keys("{classes: [a], aging: 0s}", "")).find("priorities.aging: '0s' is zero") !=
          std::string::npos);
    // A route's class.
    CHECK(error_of(with_limit_keys(kClasses, "", "    priority: interactiv\n")) ==
          "t.yaml:9:15: route 'route-1' priority: unknown class 'interactiv' (did you mean 'interactive'?); "
          "expected one of interactive, default, batch");
    CHECK(error_of(with_limit_keys("null", "", "    priority: batch\n")) ==
          "t.yaml:9:15: route 'route-1' priority: a class, but there is no top-level 'priorities' section; "
          "expected priorities: {classes: [...]} naming the classes first");
    // A limit's classes.
    CHECK(
        error_of(with_limit_keys(kClasses, "classes: {batchh: {max_share: 70%}}")) ==
        "t.yaml:5:76: limit 'intercom' classes: unknown class 'batchh' (did you mean 'batch'?); expected one "
        "of interactive, default, batch");
    CHECK(error_of(with_limit_keys(kClasses, "classes: {batch: {max_share: 100%}}")) ==
          "t.yaml:5:95: limit 'intercom' classes.batch.max_share: '100%' is out of range; expected a "
          "percentage from 1% to 99%, e.g. 70%");
    CHECK(error_of(with_limit_keys(kClasses, "classes: {batch: {max_share: 70}}")) ==
          "t.yaml:5:95: limit 'intercom' classes.batch.max_share: '70' is not a percentage; expected a "
          "percentage from 1% to 99%, e.g. 70%");
    CHECK(error_of(with_limit_keys(kClasses, "classes: {batch: {max_shar: 70%}}")) ==
          "t.yaml:5:84: limit 'intercom' classes.batch: unknown key 'max_shar' (did you mean 'max_share'?); "
          "expected one of max_share, reserve");
    CHECK(error_of(
              with_limit_keys(kClasses, "classes: {interactive: {reserve: 60%}, default: {reserve: 50%}}")) ==
          "t.yaml:5:124: limit 'intercom' classes.default.reserve: the reserves add up to 110%; expected "
          "reserves that together leave some room (at most 99%)");
    CHECK(error_of(with_limit_keys(kClasses, "classes: {batch: {max_share: 10%, reserve: 20%}}")) ==
          "t.yaml:5:83: limit 'intercom' classes.batch: reserve 20% is more than max_share 10%; expected a "
          "reserve no larger than the class's cap");
    CHECK(error_of(with_limit_keys("null", "classes: {batch: {max_share: 70%}}")) ==
          "t.yaml:5:76: limit 'intercom' classes: a class, but there is no top-level 'priorities' section; "
          "expected priorities: {classes: [...]} naming the classes first");
    CHECK(
        error_of("priorities: {classes: [a, b]}\nupstreams:\n  api: {url: https://api.example.com}\nlimits:\n"
                 "  one: {algorithm: concurrency, limit: 1, classes: {b: {max_share: 50%}}}\nroutes:\n"
                 "  - upstream: api\n") ==
        "t.yaml:5:3: limit 'one' classes: max_share gives class:b 50% of limit 1, less than one unit; "
        "expected a larger limit or share");
    // fair_share.
    CHECK(error_of(with_limit_keys("null", "fair_share: {caller: client}")) ==
          "t.yaml:5:87: limit 'intercom' fair_share.caller: unknown caller 'client'; expected listener, or "
          "{header: NAME} (e.g. {header: X-Caller})");
    CHECK(error_of(with_limit_keys("null", "fair_share: {caller: listener, weights: {nope: 2}}")) ==
          "t.yaml:5:107: limit 'intercom' fair_share.weights: unknown listener 'nope'; expected one of "
          "default");
    CHECK(
        error_of(with_limit_keys("null", "fair_share: {caller: {header: X-Caller}, weights: {a: 0}}")) ==
        "t.yaml:5:120: limit 'intercom' fair_share.weights.a: 0 is out of range; expected an integer from 1 "
        "to 1000");
    CHECK(error_of(with_limit_keys("null", "fair_share: {caller: listener, wieghts: {}}")) ==
          "t.yaml:5:97: limit 'intercom' fair_share: unknown key 'wieghts' (did you mean 'weights'?); "
          "expected one of caller, weights, default_weight");
}
