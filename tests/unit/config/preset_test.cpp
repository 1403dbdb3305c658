// `vendors:` entries: a preset expanded under an instance name, the merge rule of overrides,
// tiers, where presets are found, and errors that name both the user's file and the preset's.

#include <filesystem>
#include <fstream>
#include <string>

#include <catch2/catch.hpp>

#include "sluice/config/loader.hpp"
#include "sluice/config/vendor_policy.hpp"
#include "sluice/route/route_table.hpp"

using namespace sluice::config;
using namespace std::chrono_literals;

namespace {

const std::string kShipped = SLUICE_SOURCE_DIR "/config/presets";

LoadOptions shipped() {
    LoadOptions options;
    options.presets_dir = kShipped;
    return options;
}

std::shared_ptr<const Config> load(const std::string& yaml, const LoadOptions& options = shipped()) {
    return load_config_string(yaml, "user.yaml", options);
}

std::string error_of(const std::string& yaml, const LoadOptions& options = shipped()) {
    try {
        load(yaml, options);
    } catch (const ConfigError& e) {
        return e.what();
    }
    return "(no error)";
}

// A folder of test presets, removed at the end of the test.
struct PresetFolder {
    std::filesystem::path path;
    PresetFolder() {
        path = std::filesystem::temp_directory_path() /
               ("sluice-presets-" + std::to_string(::getpid()) + "-" + std::to_string(counter()++));
        std::filesystem::create_directories(path);
    }
    ~PresetFolder() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    static int& counter() {
        static int n = 0;
        return n;
    }
    std::string write(const std::string& name, const std::string& text) const {
        const auto file = path / (name + ".yaml");
        std::ofstream(file) << text;
        return file.string();
    }
    LoadOptions options() const {
        LoadOptions o;
        o.presets_dir = path.string();
        return o;
    }
};

const std::string kTinyPreset = R"(upstream:
  url: https://api.tiny.example
  feedback: {reset_mode: unix_seconds, max_pause: 1m}
limits:
  rolling: {algorithm: sliding_window, limit: 100, window: 10s, margin: 100ms}
  concurrent: {algorithm: concurrency, limit: 4}
routes:
  - name: search
    match: {methods: [GET], path: "/search/{id}"}
    limits: [rolling, concurrent]
    queue: {max_depth: 10}
  - name: all
    limits: [rolling]
)";

const LimitConfig& limit(const Config& config, const std::string& name) {
    const auto* found = config.find_limit(name);
    REQUIRE(found != nullptr);
    return *found;
}

}  // namespace

TEST_CASE("preset: expanded under the instance name, mounted under path_prefix", "[config][preset]") {
    PresetFolder folder;
    folder.write("tiny", kTinyPreset);
    const auto config =
        load("vendors:\n  tiny-eu:\n    preset: tiny\n    path_prefix: /tiny/\n", folder.options());
    REQUIRE(config->upstreams.size() == 1);
    CHECK(config->upstreams[0].name == "tiny-eu");
    CHECK(config->upstreams[0].host == "api.tiny.example");
    CHECK(config->upstreams[0].feedback.signals.max_pause == 1min);
    REQUIRE(config->limits.size() == 2);
    CHECK(config->limits[0].name == "tiny-eu.rolling");
    CHECK(config->limits[1].name == "tiny-eu.concurrent");
    REQUIRE(config->routes.size() == 2);
    const auto& search = config->routes[0];
    CHECK(search.name == "tiny-eu.search");
    CHECK(search.upstream == "tiny-eu");
    CHECK(search.limits == std::vector<std::string>{"tiny-eu.rolling", "tiny-eu.concurrent"});
    CHECK(search.match.path_prefix == "/tiny/");
    CHECK(search.match.path == "/search/{id}");
    CHECK(search.strip_prefix);
    CHECK(search.queue.max_depth == 10);
    CHECK(config->routes[1].match.path.empty());
    REQUIRE(config->vendors.size() == 1);
    CHECK(config->vendors[0].name == "tiny-eu");
    CHECK(config->vendors[0].preset == "tiny");
    CHECK(config->vendors[0].policy == nullptr);
    CHECK(config->vendors[0].upstream_indexes == std::vector<std::size_t>{0});
    // The limit's location is the preset's line, the upstream's the user's vendors entry.
    CHECK(config->limits[0].location.file == (folder.path / "tiny.yaml").string());
    CHECK(config->limits[0].location.line == 5);
    CHECK(config->upstreams[0].location.file == "user.yaml");
}

TEST_CASE("preset: overrides merge maps key by key and replace scalars", "[config][preset]") {
    PresetFolder folder;
    folder.write("tiny", kTinyPreset);
    const auto config = load(R"(listeners:
  - {name: default, listen: "127.0.0.1:0"}
  - {name: side, listen: "127.0.0.1:0"}
vendors:
  tiny:
    preset: tiny
    listeners: [side]
    hosts: [api.tiny.example]
    upstream:
      url: http://127.0.0.1:9000/v2
      feedback: {max_pause: 2m}
    limits:
      rolling: {limit: 50}
    queue: {max_wait: 2s}
    retry: {on_vendor_429: false}
)",
                             folder.options());
    const auto& upstream = config->upstreams[0];
    CHECK(upstream.scheme == "http");
    CHECK(upstream.base_path == "/v2");
    // feedback merged: max_pause replaced, reset_mode kept from the preset.
    CHECK(upstream.feedback.signals.max_pause == 2min);
    CHECK(upstream.feedback.signals.reset_mode == sluice::feedback::ResetMode::unix_seconds);
    const auto& rolling = limit(*config, "tiny.rolling");
    CHECK(rolling.limit == 50);
    CHECK(rolling.window == 10s);  // kept
    CHECK(rolling.margin == 100ms);
    for (const auto& route : config->routes) {
        CHECK(route.match.listeners == std::vector<std::string>{"side"});
        CHECK(route.match.hosts == std::vector<std::string>{"api.tiny.example"});
        CHECK(route.match.path_prefix.empty());
        CHECK_FALSE(route.strip_prefix);
        CHECK(route.queue.max_wait == 2s);
        CHECK_FALSE(route.retry.on_vendor_429);
    }
    CHECK(config->routes[0].queue.max_depth == 10);  // the preset's, merged with the override
}

TEST_CASE("preset: the file's own routes come first and may use the preset's names", "[config][preset]") {
    PresetFolder folder;
    folder.write("tiny", kTinyPreset);
    const auto config = load(R"(vendors:
  tiny: {preset: tiny, path_prefix: /tiny}
limits:
  slow: {algorithm: sliding_window, limit: 1, window: 1s}
routes:
  - name: slow-export
    match: {path_prefix: /tiny/export}
    strip_prefix: true
    upstream: tiny
    limits: [slow, tiny.rolling]
)",
                             folder.options());
    REQUIRE(config->routes.size() == 3);
    CHECK(config->routes[0].name == "slow-export");
    CHECK(config->routes[1].name == "tiny.search");
}

TEST_CASE("preset: a tier's numbers apply, then the user's", "[config][preset]") {
    const auto standard = load("vendors:\n  cc: {preset: constant-contact}\n");
    CHECK(standard->vendors[0].tier == "standard");
    CHECK(limit(*standard, "cc.rate").limit == 4);
    CHECK(limit(*standard, "cc.daily").limit == 10000);
    CHECK(limit(*standard, "cc.daily").time_zone == "America/New_York");
    const auto partner = load("vendors:\n  cc: {preset: constant-contact, tier: partner}\n");
    CHECK(partner->vendors[0].tier == "partner");
    CHECK(limit(*partner, "cc.rate").limit == 10);
    CHECK(limit(*partner, "cc.rate").window == 1s);
    CHECK(limit(*partner, "cc.rate").burst == 1);
    CHECK(limit(*partner, "cc.daily").limit == 250000);
    const auto own = load(
        "vendors:\n  cc:\n    preset: constant-contact\n    tier: partner\n    limits: "
        "{daily: {limit: 200000}, rate: {rate: 8/1s}}\n");
    CHECK(limit(*own, "cc.daily").limit == 200000);
    CHECK(limit(*own, "cc.rate").limit == 8);
    // Two upstreams, named after the instance.
    REQUIRE(standard->upstreams.size() == 2);
    CHECK(standard->upstreams[0].name == "cc.api");
    CHECK(standard->upstreams[0].base_path == "/v3");
    CHECK(standard->upstreams[1].name == "cc.auth");
}

TEST_CASE("preset: every shipped preset loads on its own", "[config][preset]") {
    for (const auto* name : {"convertr", "intercom", "close", "constant-contact", "amplemarket"}) {
        INFO(name);
        const auto config = load(std::string("vendors:\n  v: {preset: ") + name + ", path_prefix: /v/}\n");
        CHECK(!config->routes.empty());
        REQUIRE(config->vendors.size() == 1);
        REQUIRE(config->vendors[0].policy != nullptr);
        CHECK(!config->vendors[0].policy->rules.empty());
    }
}

TEST_CASE("preset: errors name the user's file and the preset's", "[config][preset]") {
    PresetFolder folder;
    const auto preset_file = folder.write("tiny", kTinyPreset);
    const auto options = folder.options();

    // A bad override value: the user's line, and where the preset defines the limit.
    CHECK(
        error_of("vendors:\n  tiny:\n    preset: tiny\n    limits: {rolling: {window: 10}}\n", options) ==
        "user.yaml:4:32: limit 'tiny.rolling' window: '10' has no unit; expected a positive duration with a "
        "unit (ns, us, ms, s, m, h, d), e.g. 250ms, 10s, 1m30s (vendors.tiny at user.yaml:2:3 uses preset "
        "'tiny' from " +
            preset_file + "; the preset's definition is at " + preset_file + ":5:3)");

    // An override the preset's definition does not allow: the preset's line, and the user's entry.
    CHECK(
        error_of("vendors:\n  tiny:\n    preset: tiny\n    limits: {concurrent: {window: 1s}}\n", options) ==
        "user.yaml:4:27: limit 'tiny.concurrent': 'window' does not apply to a concurrency limit (a "
        "concurrency limit caps requests in flight and has no time window); expected only algorithm, limit, "
        "key, cost, enforce, max_keys, feedback, on_redis_failure, classes, fair_share for concurrency "
        "(vendors.tiny at "
        "user.yaml:2:3 uses preset "
        "'tiny' "
        "from " +
            preset_file + "; the preset's definition is at " + preset_file + ":6:3)");

    // A limit the preset does not have.
    CHECK(error_of("vendors:\n  tiny:\n    preset: tiny\n    limits: {roling: {limit: 1}}\n", options) ==
          "user.yaml:4:14: vendor 'tiny' limits: the preset has no limit 'roling' (did you mean 'rolling'?); "
          "expected one of rolling, concurrent (the preset's limits are at " +
              preset_file + ":5:3) (vendors.tiny at user.yaml:2:3 uses preset 'tiny' from " + preset_file +
              "; the preset's definition is at " + preset_file + ":1:1)");

    // An unknown preset lists the available ones.
    const auto unknown = error_of("vendors:\n  x: {preset: tinny}\n", options);
    CHECK(unknown.starts_with(
        "user.yaml:2:15: vendor 'x' preset: unknown preset 'tinny' (did you mean 'tiny'?); "
        "expected one of "));
    CHECK(unknown.find("tiny") != std::string::npos);
    CHECK(unknown.find("amplemarket") != std::string::npos);  // the shipped ones are on the path too

    // An unknown tier lists the preset's.
    CHECK(error_of("vendors:\n  cc: {preset: constant-contact, tier: gold}\n") ==
          "user.yaml:2:40: vendor 'cc' tier: unknown tier 'gold' for preset 'constant-contact'; expected one "
          "of standard, partner");

    // An error inside the preset itself names the preset's line and the user's entry.
    folder.write("broken",
                 "upstream: {url: https://x.example}\nlimits:\n  a: {algorithm: sliding_window, "
                 "limit: 1, window: 1s}\nroutes:\n  - name: all\n    limits: [b]\n");
    const auto broken = (folder.path / "broken.yaml").string();
    CHECK(error_of("vendors:\n  b: {preset: broken}\n", options) ==
          broken +
              ":6:14: preset 'broken' routes[1].limits[1]: unknown limit 'b'; expected one of the preset's "
              "limits: a "
              "(vendors.b at user.yaml:2:3 uses preset 'broken' from " +
              broken + "; the preset's definition is at " + broken + ":1:1)");

    // A name clash with the file's own definitions.
    CHECK(error_of("vendors:\n  tiny: {preset: tiny}\nupstreams:\n  tiny: {url: https://x.example}\n",
                   options) ==
          "user.yaml:2:3: vendors: the preset's upstream 'tiny' is also defined under 'upstreams' (line 4); "
          "expected "
          "one "
          "definition per upstream name (rename the vendor instance)");
}

TEST_CASE("preset: presets/ next to the config file is searched", "[config][preset]") {
    PresetFolder folder;
    std::filesystem::create_directories(folder.path / "presets");
    std::ofstream(folder.path / "presets" / "mine.yaml") << kTinyPreset;
    const auto config_file = (folder.path / "sluice.yaml").string();
    std::ofstream(config_file) << "vendors:\n  m: {preset: mine}\n";
    const auto config = load_config_file(config_file);
    CHECK(config->vendors[0].preset_file == (folder.path / "presets" / "mine.yaml").string());
    // presets_dir: relative to the file.
    std::filesystem::rename(folder.path / "presets", folder.path / "elsewhere");
    std::ofstream(config_file) << "presets_dir: elsewhere\nvendors:\n  m: {preset: mine}\n";
    CHECK(load_config_file(config_file)->vendors[0].preset_file ==
          (folder.path / "elsewhere" / "mine.yaml").string());
}

TEST_CASE("time scale divides every window, margin and offset", "[config][preset]") {
    LoadOptions options = shipped();
    options.time_scale = 30;
    const auto config =
        load("vendors:\n  convertr: {preset: convertr}\n  cc: {preset: constant-contact}\n", options);
    CHECK(config->time_scale == 30);
    CHECK(limit(*config, "convertr.all").window == 10s);
    CHECK(limit(*config, "convertr.all").margin == std::chrono::nanoseconds(2s) / 30);
    CHECK(limit(*config, "convertr.concurrent").limit == 9);
    CHECK(limit(*config, "cc.daily").window == 48min);
    // A zone's local days cannot shrink: the scaled days are aligned to UTC.
    CHECK(limit(*config, "cc.daily").time_zone.empty());
    CHECK(limit(*config, "cc.daily").utc_offset == 0min);
    options.time_scale = 0;
    CHECK(error_of("vendors:\n  i: {preset: intercom}\n", options) ==
          "user.yaml:1:1: time scale 0.000000 is out of range; expected a number > 0 (e.g. 30)");
}

TEST_CASE("preset: routes mounted under a prefix match the vendor's paths", "[config][preset]") {
    const auto config = load(R"(vendors:
  convertr: {preset: convertr, path_prefix: /convertr/}
  cc: {preset: constant-contact, path_prefix: /cc}
)");
    const sluice::route::RouteTable table(*config);
    const auto route_of = [&](std::string_view method, std::string_view path) {
        const auto found = table.match({0, "", method, path});
        REQUIRE(found.has_value());
        return std::make_pair(config->routes[found->route_index].name, *found);
    };
    {
        const auto [name, result] = route_of("GET", "/convertr/api/v2.1/publisher/7/lead-result/42");
        CHECK(name == "convertr.lead-result");
        CHECK(result.upstream_path == "/api/v2.1/publisher/7/lead-result/42");
        CHECK(sluice::route::find_param(result.params, "publisher_id") ==
              std::optional<std::string_view>("7"));
    }
    CHECK(route_of("POST", "/convertr/api/v2.3/login").first == "convertr.login");
    CHECK(route_of("GET", "/convertr/api/v2.3/login").first == "convertr.other");  // login is POST only
    // The pattern matches what follows the prefix, not the whole path.
    CHECK(route_of("POST", "/convertr/x/api/v2.3/login").first == "convertr.other");
    {
        const auto [name, result] = route_of("POST", "/cc/oauth2/default/v1/token");
        CHECK(name == "cc.token");
        CHECK(result.upstream_path == "/oauth2/default/v1/token");
    }
    {
        const auto [name, result] = route_of("GET", "/cc/contacts");
        CHECK(name == "cc.api");
        CHECK(result.upstream_path == "/v3/contacts");  // the api upstream's base path
    }
    CHECK_FALSE(table.match({0, "", "GET", "/elsewhere"}).has_value());
}

TEST_CASE("preset: a preset whose aliases make it infinite is refused, not walked forever",
          "[config][preset]") {
    PresetFolder folder;
    const auto file = folder.write("loop", "upstream: {url: https://x.example}\nlimits: &a {x: *a}\n");
    CHECK(error_of("vendors:\n  l: {preset: loop}\n", folder.options()) ==
          file +
              ":1:1: preset 'loop' is nested more than 32 levels deep (an alias to an enclosing node?); "
              "expected a "
              "preset as documented");
}
