// The `feedback` settings of an upstream and the `retry` settings of a route:
// defaults, every key read, and one test per kind of mistake.

#include <string>

#include <catch2/catch.hpp>

#include "sluice/config/loader.hpp"

using namespace sluice::config;
using namespace std::chrono_literals;

namespace {

std::shared_ptr<const Config> load(const std::string& yaml) {
    return load_config_string(yaml, "t.yaml");
}

std::string error_of(const std::string& yaml) {
    try {
        load_config_string(yaml, "t.yaml");
    } catch (const ConfigError& e) {
        return e.what();
    }
    return "(no error)";
}

std::string with_feedback(const std::string& feedback) {
    return "upstreams:\n  api:\n    url: https://api.example.com\n    feedback: " + feedback +
           "\nroutes:\n  - upstream: api\n";
}

std::string with_retry(const std::string& retry) {
    return "upstreams:\n  api: {url: https://api.example.com}\nroutes:\n  - upstream: api\n    retry: " +
           retry + "\n";
}

}  // namespace

TEST_CASE("feedback and retry defaults", "[config][feedback]") {
    const auto config =
        load("upstreams:\n  api: {url: https://api.example.com}\nroutes:\n  - upstream: api\n");
    const auto& fb = config->upstreams[0].feedback;
    CHECK(fb.enabled);
    CHECK(fb.signals.reset_mode == sluice::feedback::ResetMode::automatic);
    CHECK(fb.signals.body_field.empty());
    CHECK(fb.signals.body_field_mode == sluice::feedback::ResetMode::automatic);
    CHECK(fb.signals.max_pause == 5min);
    CHECK(fb.default_pause == 1s);
    const auto& retry = config->routes[0].retry;
    CHECK(retry.on_vendor_429);
    CHECK_FALSE(retry.non_idempotent);
    CHECK(retry.max_attempts == 3);
}

TEST_CASE("feedback and retry keys are read", "[config][feedback]") {
    const auto config = load(
        "upstreams:\n"
        "  close:\n"
        "    url: https://api.close.com\n"
        "    feedback:\n"
        "      enabled: true\n"
        "      reset_mode: delta_seconds\n"
        "      body_field: error.rate_reset\n"
        "      body_field_mode: unix_seconds\n"
        "      max_pause: 90s\n"
        "      default_pause: 250ms\n"
        "  quiet: {url: https://quiet.example.com, feedback: {enabled: false, reset_mode: unix_seconds}}\n"
        "routes:\n"
        "  - upstream: close\n"
        "    retry: {on_vendor_429: false, non_idempotent: true, max_attempts: 5}\n");
    const auto& fb = config->upstreams[0].feedback;
    CHECK(fb.enabled);
    CHECK(fb.signals.reset_mode == sluice::feedback::ResetMode::delta_seconds);
    CHECK(fb.signals.body_field == "error.rate_reset");
    CHECK(fb.signals.body_field_mode == sluice::feedback::ResetMode::unix_seconds);
    CHECK(fb.signals.max_pause == 90s);
    CHECK(fb.default_pause == 250ms);
    CHECK_FALSE(config->upstreams[1].feedback.enabled);
    CHECK(config->upstreams[1].feedback.signals.reset_mode == sluice::feedback::ResetMode::unix_seconds);
    const auto& retry = config->routes[0].retry;
    CHECK_FALSE(retry.on_vendor_429);
    CHECK(retry.non_idempotent);
    CHECK(retry.max_attempts == 5);
}

TEST_CASE("error: bad feedback settings", "[config][errors][feedback]") {
    CHECK(
        error_of(with_feedback("{reset_mode: epoch}")) ==
        "t.yaml:4:28: upstream 'api' feedback.reset_mode: unknown reset mode 'epoch'; expected one of auto, "
        "delta_seconds, unix_seconds");
    CHECK(error_of(with_feedback("{body_field: error..rate_reset}")) ==
          "t.yaml:4:28: upstream 'api' feedback.body_field: bad body_field: empty name in "
          "'error..rate_reset'; expected names separated by single dots");
    CHECK(error_of(with_feedback("{max_pause: 0s}")) ==
          "t.yaml:4:27: upstream 'api' feedback.max_pause: '0s' is zero; expected a positive duration with a "
          "unit (ns, us, ms, s, m, h, d), e.g. 250ms, 10s, 1m30s");
    CHECK(error_of(with_feedback("{max_pause: 1s, default_pause: 2s}")) ==
          "t.yaml:4:46: upstream 'api' feedback.default_pause: default_pause exceeds max_pause; expected a "
          "default_pause no longer than max_pause");
    CHECK(error_of(with_feedback("{enable: true}")) ==
          "t.yaml:4:16: upstream 'api' feedback: unknown key 'enable' (did you mean 'enabled'?); expected "
          "one of "
          "enabled, pause_on_429, cap_from_remaining, learn, reset_mode, body_field, body_field_mode, "
          "limit_type_field, max_pause, default_pause");
}

TEST_CASE("error: bad retry settings", "[config][errors][feedback]") {
    CHECK(error_of(with_retry("{max_attempts: 0}")) ==
          "t.yaml:5:27: route 'route-1' retry.max_attempts: 0 is out of range; expected an integer from 1 to "
          "10");
    CHECK(error_of(with_retry("{non_idempotent: maybe}")) ==
          "t.yaml:5:29: route 'route-1' retry.non_idempotent: got 'maybe'; expected true or false");
    CHECK(error_of(with_retry("{on_429: true}")) ==
          "t.yaml:5:13: route 'route-1' retry: unknown key 'on_429'; expected one of on_vendor_429, "
          "non_idempotent, max_attempts");
}

TEST_CASE("issue 11: the switches, the limit type field and each limit's vendor match are read",
          "[config][feedback]") {
    const auto defaults = load(with_feedback("{}"));
    CHECK(defaults->upstreams[0].feedback.pause_on_429);
    CHECK(defaults->upstreams[0].feedback.cap_from_remaining);
    CHECK(defaults->upstreams[0].feedback.learn);
    CHECK(defaults->upstreams[0].feedback.signals.limit_type_field.empty());

    const auto config = load(
        "upstreams:\n"
        "  close:\n"
        "    url: https://api.close.com\n"
        "    feedback:\n"
        "      pause_on_429: false\n"
        "      cap_from_remaining: false\n"
        "      learn: false\n"
        "      limit_type_field: error.rate_limit_type\n"
        "limits:\n"
        "  key-level:\n"
        "    limit: 20\n"
        "    window: 1s\n"
        "    feedback: {vendor_limit: 1200, vendor_limit_type: key}\n"
        "  org-level:\n"
        "    limit: 60\n"
        "    window: 1s\n"
        "routes:\n"
        "  - upstream: close\n"
        "    limits: [key-level, org-level]\n");
    const auto& fb = config->upstreams[0].feedback;
    CHECK_FALSE(fb.pause_on_429);
    CHECK_FALSE(fb.cap_from_remaining);
    CHECK_FALSE(fb.learn);
    CHECK(fb.signals.limit_type_field == "error.rate_limit_type");
    CHECK(config->limits[0].feedback.vendor_limit == 1200);
    CHECK(config->limits[0].feedback.vendor_limit_type == "key");
    CHECK_FALSE(config->limits[1].feedback.vendor_limit);
    CHECK(config->limits[1].feedback.vendor_limit_type.empty());
}

TEST_CASE("issue 11: mistakes in the new feedback keys", "[config][feedback]") {
    CHECK_THAT(error_of(with_feedback("{limit_type_field: error..type}")),
               Catch::Contains("bad limit_type_field"));
    CHECK_THAT(error_of(with_feedback("{learn: maybe}")), Catch::Contains("learn"));
    const std::string limit_with =
        "upstreams:\n  api: {url: https://api.example.com}\nlimits:\n  l:\n    limit: 5\n"
        "    window: 1s\n    feedback: ";
    const std::string route = "\nroutes:\n  - upstream: api\n    limits: [l]\n";
    CHECK_THAT(error_of(limit_with + "{vendor_limit: 0}" + route), Catch::Contains("vendor_limit"));
    CHECK_THAT(error_of(limit_with + "{vendor_limit_type: ''}" + route),
               Catch::Contains("vendor_limit_type"));
    CHECK_THAT(error_of(limit_with + "{match: 5}" + route), Catch::Contains("match"));
}
