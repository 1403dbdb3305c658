// server.state (the state file) and server.drain_timeout: defaults, the folder's resolution
// against the config file's folder, and each error message.

#include <string>

#include <catch2/catch.hpp>

#include "sluice/config/config_printer.hpp"
#include "sluice/config/loader.hpp"

using namespace sluice::config;
using namespace std::chrono_literals;

namespace {

const std::string kRest = "upstreams:\n  api: {url: https://api.example.com}\nroutes:\n  - upstream: api\n";

std::string error_of(const std::string& yaml) {
    try {
        load_config_string(yaml, "t.yaml");
    } catch (const ConfigError& e) {
        return e.what();
    }
    return "(no error)";
}

}  // namespace

TEST_CASE("server.state: on, every second, windows of 1m and more; drain 10s", "[config][loader][state]") {
    const auto config = load_config_string(kRest);
    const auto& state = config->server.state;
    CHECK(state.enabled);
    CHECK(state.dir == "sluice-state");  // "<string>": the current folder
    CHECK(state.save_interval == 1s);
    CHECK(state.min_window == 1min);
    CHECK(config->server.drain_timeout == 10s);

    const auto set = load_config_string(
        "server:\n  state: {enabled: false, dir: /var/lib/sluice, save_interval: 250ms, min_window: 0s}\n"
        "  drain_timeout: 0s\n" +
        kRest);
    CHECK_FALSE(set->server.state.enabled);
    CHECK(set->server.state.dir == "/var/lib/sluice");
    CHECK(set->server.state.save_interval == 250ms);
    CHECK(set->server.state.min_window == 0s);
    CHECK(set->server.drain_timeout == 0s);
    CHECK(load_config_string("server: {drain_timeout: 10m, state: {save_interval: 1h}}\n" + kRest)
              ->server.drain_timeout == 10min);
}

TEST_CASE("server.state.dir: the default and a relative dir are in the config file's folder",
          "[config][loader][state]") {
    CHECK(load_config_string(kRest, "/etc/sluice/sluice.yaml")->server.state.dir ==
          "/etc/sluice/sluice-state");
    CHECK(load_config_string(kRest, "conf/sluice.yaml")->server.state.dir == "conf/sluice-state");
    CHECK(load_config_string(kRest, "sluice.yaml")->server.state.dir == "sluice-state");
    const std::string relative = "server: {state: {dir: state/here}}\n" + kRest;
    CHECK(load_config_string(relative, "/etc/sluice/sluice.yaml")->server.state.dir ==
          "/etc/sluice/state/here");
    CHECK(load_config_string(relative)->server.state.dir == "state/here");
    const std::string absolute = "server: {state: {dir: /var/lib/sluice}}\n" + kRest;
    CHECK(load_config_string(absolute, "/etc/sluice/sluice.yaml")->server.state.dir == "/var/lib/sluice");
}

TEST_CASE("server.state and drain_timeout: errors name the key, the place and what is allowed",
          "[config][loader][state]") {
    CHECK(error_of("server:\n  state: {save_interval: 50ms}\n" + kRest) ==
          "t.yaml:2:26: server.state.save_interval: '50ms' is shorter than 100ms; expected a duration from "
          "100ms to 1h");
    CHECK(
        error_of("server:\n  state: {save_interval: 61m}\n" + kRest) ==
        "t.yaml:2:26: server.state.save_interval: '61m' is longer than 1h; expected a positive duration with "
        "a unit (ns, us, ms, s, m, h, d), e.g. 250ms, 10s, 1m30s, at most 1h");
    CHECK(error_of("server:\n  state: {save_interval: 0s}\n" + kRest) ==
          "t.yaml:2:26: server.state.save_interval: '0s' is zero; expected a positive duration with a unit "
          "(ns, us, ms, s, m, h, d), e.g. 250ms, 10s, 1m30s");
    CHECK(
        error_of("server:\n  state: {min_window: -1s}\n" + kRest) ==
        "t.yaml:2:23: server.state.min_window: '-1s' is negative; expected a duration >= 0 with a unit (ns, "
        "us, ms, s, m, h, d), e.g. 250ms, 10s, 1m30s");
    CHECK(error_of("server:\n  state: {dir: \"\"}\n" + kRest) ==
          "t.yaml:2:16: server.state.dir: got ''; expected the path of a folder for the state file (relative "
          "to the config file's)");
    CHECK(error_of("server:\n  state: {enabled: maybe}\n" + kRest) ==
          "t.yaml:2:20: server.state.enabled: got 'maybe'; expected true or false");
    CHECK(error_of("server:\n  drain_timeout: 11m\n" + kRest) ==
          "t.yaml:2:18: server.drain_timeout: '11m' is longer than 10m; expected a duration >= 0 with a unit "
          "(ns, us, ms, s, m, h, d), e.g. 250ms, 10s, 1m30s, at most 10m");
    CHECK_THAT(error_of("server:\n  state: {path: x}\n" + kRest),
               Catch::StartsWith("t.yaml:2:") && Catch::Contains("path") && Catch::Contains("save_interval"));
}

TEST_CASE("server.state and drain_timeout are printed and load back", "[config][print][state]") {
    const auto config = load_config_string(
        "server:\n  state: {enabled: false, dir: /var/lib/sluice, save_interval: 250ms, min_window: 5m}\n"
        "  drain_timeout: 30s\n" +
        kRest);
    const auto printed = print_config(*config);
    CHECK_THAT(
        printed,
        Catch::Contains("  state:\n    backend: memory\n    enabled: false\n    dir: \"/var/lib/sluice\"\n"
                        "    save_interval: 250ms\n    min_window: 5m\n  drain_timeout: 30s\n"));
    const auto again = load_config_string(printed);
    CHECK_FALSE(again->server.state.enabled);
    CHECK(again->server.state.dir == "/var/lib/sluice");
    CHECK(again->server.state.save_interval == 250ms);
    CHECK(again->server.state.min_window == 5min);
    CHECK(again->server.drain_timeout == 30s);
}
