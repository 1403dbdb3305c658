// Valid configurations: what the loader builds from them, defaults included.

#include "sluice/config/loader.hpp"

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include <catch2/catch.hpp>

using namespace sluice::config;
using namespace std::chrono_literals;

namespace {

// The schema example of docs/configuration.md, with every key set away from its default.
const char* const kFullExample = R"(
server:
  workers: 4
  max_header_bytes: 32k
  max_body_bytes: 10MiB
  max_client_connections: 500
  timeouts: {client_header: 5s, client_body: 20s, client_idle: 1m30s, client_write: 250ms}
  forwarded: {x_forwarded_for: true, x_forwarded_proto: true}
  rate_limit_headers: {style: ietf, on_proxied: true}
  admin: {enabled: false, listen: "127.0.0.1:9902"}
listeners:
  - name: public
    listen: "127.0.0.1:8080"
  - listen: "[::1]:8081"
  - listen: "0.0.0.0:0"
upstreams:
  intercom:
    url: https://API.intercom.io
    tls: {verify: false, ca_file: /path/ca.pem, server_name: other.example}
    max_connections: 32
    max_idle_connections: 8
    idle_timeout: 2m
    connect_timeout: 3s
    response_timeout: 45s
    body_timeout: 15s
  mock:
    url: http://127.0.0.1:9000/v1/
  v6:
    url: "https://[::1]:8443"
limits:
  intercom-rolling: {algorithm: sliding_window, limit: 166, window: 10s, margin: 50ms}
  cc-rate:   {algorithm: token_bucket, rate: 4/1s, burst: 4, key: {header: Authorization}}
  cc-daily:  {algorithm: fixed_window, limit: 10000, window: 1d, utc_offset: -5h, key: [{header: Authorization}, method]}
  convertr-concurrent: {algorithm: concurrency, limit: 10}
  amplemarket-units: {algorithm: sliding_window, limit: 15000, window: 1h, cost: {header: X-Units, default: 1, max: 100000}}
  shadow: {limit: 5, window: 1s, enforce: false, max_keys: 10, cost: 2, key: [{query: api_key}, {path_param: publisher_id}]}
queue: {max_depth: 50, max_wait: 10s}
routes:
  - name: intercom
    match:
      listener: [public, default]
      host: [api.intercom.io, "*.intercom.io"]
      methods: [get, POST]
      path_prefix: /intercom/
    strip_prefix: true
    upstream: intercom
    limits: [intercom-rolling, cc-rate, cc-daily]
    queue: {max_depth: 100}
  - match:
      listener: listener-3
      methods: GET
      path: /api/v2.*/publisher/{publisher_id}/lead-result/{lead_id}
    upstream: mock
    limits: [amplemarket-units, convertr-concurrent, shadow]
    queue: {max_wait: 0s}
  - upstream: v6
)";

std::string source_path(const std::string& relative) {
    // tests/unit/config/ -> the repository root
    return (std::filesystem::path(__FILE__).parent_path() / "../../.." / relative)
        .lexically_normal()
        .string();
}

}  // namespace

TEST_CASE("the full example parses to the expected values", "[config][loader]") {
    const auto config = load_config_string(kFullExample, "full.yaml");
    CHECK(config->source_file == "full.yaml");

    const auto& server = config->server;
    CHECK(server.workers == 4);
    CHECK(server.max_header_bytes == 32 * 1024);
    CHECK(server.max_body_bytes == 10 * 1024 * 1024);
    CHECK(server.max_client_connections == 500);
    CHECK(server.timeouts.client_header == 5s);
    CHECK(server.timeouts.client_body == 20s);
    CHECK(server.timeouts.client_idle == 90s);
    CHECK(server.timeouts.client_write == 250ms);
    CHECK(server.forwarded.x_forwarded_for);
    CHECK(server.forwarded.x_forwarded_proto);
    CHECK(server.rate_limit_headers.style == RateLimitHeaderStyle::ietf);
    CHECK(server.rate_limit_headers.on_proxied);
    CHECK_FALSE(server.admin.enabled);
    CHECK(server.admin.address == "127.0.0.1");
    CHECK(server.admin.port == 9902);

    REQUIRE(config->listeners.size() == 3);
    CHECK(config->listeners[0].name == "public");
    CHECK(config->listeners[0].address == "127.0.0.1");
    CHECK(config->listeners[0].port == 8080);
    CHECK(config->listeners[0].location.line == 12);
    CHECK(config->listeners[0].location.column == 5);
    // The first unnamed listener is "default", later ones are named by position.
    CHECK(config->listeners[1].name == "default");
    CHECK(config->listeners[1].address == "::1");
    CHECK(config->listeners[1].port == 8081);
    CHECK(config->listeners[2].name == "listener-3");
    CHECK(config->listeners[2].address == "0.0.0.0");
    CHECK(config->listeners[2].port == 0);

    REQUIRE(config->upstreams.size() == 3);
    const auto& intercom = config->upstreams[0];
    CHECK(intercom.name == "intercom");
    CHECK(intercom.scheme == "https");
    CHECK(intercom.host == "api.intercom.io");
    CHECK(intercom.port == 443);
    CHECK(intercom.base_path.empty());
    CHECK_FALSE(intercom.tls.verify);
    CHECK(intercom.tls.ca_file == "/path/ca.pem");
    CHECK(intercom.tls.server_name == "other.example");
    CHECK(intercom.max_connections == 32);
    CHECK(intercom.max_idle_connections == 8);
    CHECK(intercom.idle_timeout == 2min);
    CHECK(intercom.connect_timeout == 3s);
    CHECK(intercom.response_timeout == 45s);
    CHECK(intercom.body_timeout == 15s);
    CHECK(intercom.location.line == 17);
    CHECK(intercom.location.column == 3);
    const auto& mock = config->upstreams[1];
    CHECK(mock.scheme == "http");
    CHECK(mock.host == "127.0.0.1");
    CHECK(mock.port == 9000);
    CHECK(mock.base_path == "/v1");  // trailing slash removed
    CHECK(mock.tls.verify);
    const auto& v6 = config->upstreams[2];
    CHECK(v6.host == "::1");
    CHECK(v6.port == 8443);

    REQUIRE(config->limits.size() == 6);
    const auto& rolling = config->limits[0];
    CHECK(rolling.name == "intercom-rolling");
    CHECK(rolling.algorithm == Algorithm::sliding_window);
    CHECK(rolling.limit == 166);
    CHECK(rolling.window == 10s);
    CHECK(rolling.margin == 50ms);
    CHECK(rolling.key.empty());
    CHECK(rolling.cost.header.empty());
    CHECK(rolling.cost.fixed == 1);
    CHECK(rolling.enforce);
    CHECK(rolling.max_keys == 10'000);
    CHECK(rolling.location.line == 31);
    CHECK(rolling.location.column == 3);

    const auto& rate = config->limits[1];
    CHECK(rate.algorithm == Algorithm::token_bucket);
    CHECK(rate.limit == 4);
    CHECK(rate.window == 1s);
    CHECK(rate.burst == 4);
    REQUIRE(rate.key.size() == 1);
    CHECK(rate.key[0].kind == KeySource::Kind::header);
    CHECK(rate.key[0].name == "Authorization");

    const auto& daily = config->limits[2];
    CHECK(daily.algorithm == Algorithm::fixed_window);
    CHECK(daily.limit == 10'000);
    CHECK(daily.window == 24h);
    CHECK(daily.utc_offset == -5h);
    REQUIRE(daily.key.size() == 2);
    CHECK(daily.key[0].kind == KeySource::Kind::header);
    CHECK(daily.key[1].kind == KeySource::Kind::method);
    CHECK(daily.key[1].name.empty());

    const auto& concurrent = config->limits[3];
    CHECK(concurrent.algorithm == Algorithm::concurrency);
    CHECK(concurrent.limit == 10);
    CHECK(concurrent.window == 0s);

    const auto& units = config->limits[4];
    CHECK(units.cost.header == "X-Units");
    CHECK(units.cost.fixed == 1);
    CHECK(units.cost.max == 100'000);  // above the limit is allowed: the limit then refuses first

    const auto& shadow = config->limits[5];
    CHECK(shadow.algorithm == Algorithm::sliding_window);  // the default algorithm
    CHECK_FALSE(shadow.enforce);
    CHECK(shadow.max_keys == 10);
    CHECK(shadow.cost.header.empty());
    CHECK(shadow.cost.fixed == 2);
    REQUIRE(shadow.key.size() == 2);
    CHECK(shadow.key[0].kind == KeySource::Kind::query);
    CHECK(shadow.key[0].name == "api_key");
    CHECK(shadow.key[1].kind == KeySource::Kind::path_param);
    CHECK(shadow.key[1].name == "publisher_id");

    CHECK(config->queue_defaults.max_depth == 50);
    CHECK(config->queue_defaults.max_wait == 10s);

    REQUIRE(config->routes.size() == 3);
    const auto& first = config->routes[0];
    CHECK(first.name == "intercom");
    CHECK(first.match.listeners == std::vector<std::string>{"public", "default"});
    CHECK(first.listener_indexes == std::vector<std::size_t>{0, 1});
    CHECK(first.match.hosts == std::vector<std::string>{"api.intercom.io", "*.intercom.io"});
    CHECK(first.match.methods == std::vector<std::string>{"GET", "POST"});
    CHECK(first.match.path_prefix == "/intercom/");
    CHECK(first.match.path.empty());
    CHECK(first.strip_prefix);
    CHECK(first.upstream == "intercom");
    CHECK(first.upstream_index == 0);
    CHECK(first.limits == std::vector<std::string>{"intercom-rolling", "cc-rate", "cc-daily"});
    CHECK(first.limit_indexes == std::vector<std::size_t>{0, 1, 2});
    CHECK(first.queue.max_depth == 100);  // overridden
    CHECK(first.queue.max_wait == 10s);   // from the top-level defaults
    CHECK(first.location.line == 39);
    CHECK(first.location.column == 5);

    const auto& second = config->routes[1];
    CHECK(second.name == "route-2");
    CHECK(second.listener_indexes == std::vector<std::size_t>{2});
    CHECK(second.match.methods == std::vector<std::string>{"GET"});
    CHECK(second.match.path == "/api/v2.*/publisher/{publisher_id}/lead-result/{lead_id}");
    CHECK_FALSE(second.strip_prefix);
    CHECK(second.upstream_index == 1);
    CHECK(second.limit_indexes == std::vector<std::size_t>{4, 3, 5});
    CHECK(second.queue.max_depth == 50);
    CHECK(second.queue.max_wait == 0s);

    const auto& third = config->routes[2];
    CHECK(third.name == "route-3");
    CHECK(third.match.listeners.empty());
    CHECK(third.listener_indexes.empty());
    CHECK(third.match.hosts.empty());
    CHECK(third.match.methods.empty());
    CHECK(third.upstream_index == 2);
    CHECK(third.limits.empty());
}

TEST_CASE("a minimal file gets every default", "[config][loader]") {
    const auto config = load_config_string(R"(
upstreams:
  api: {url: http://api.example.com}
routes:
  - upstream: api
)");
    CHECK(config->source_file == "<string>");
    CHECK(config->server.workers == 1);
    CHECK(config->server.max_header_bytes == 16 * 1024);
    CHECK(config->server.max_body_bytes == 1ull << 30);
    CHECK(config->server.max_client_connections == 10'000);
    CHECK(config->server.timeouts.client_header == 10s);
    CHECK(config->server.timeouts.client_body == 30s);
    CHECK(config->server.timeouts.client_idle == 60s);
    CHECK(config->server.timeouts.client_write == 30s);
    CHECK_FALSE(config->server.forwarded.x_forwarded_for);
    CHECK_FALSE(config->server.forwarded.x_forwarded_proto);
    CHECK(config->server.rate_limit_headers.style == RateLimitHeaderStyle::both);
    CHECK_FALSE(config->server.rate_limit_headers.on_proxied);
    CHECK(config->server.admin.enabled);
    CHECK(config->server.admin.address == "127.0.0.1");
    CHECK(config->server.admin.port == 9901);

    REQUIRE(config->listeners.size() == 1);
    CHECK(config->listeners[0].name == "default");
    CHECK(config->listeners[0].address == "127.0.0.1");
    CHECK(config->listeners[0].port == 8080);

    REQUIRE(config->upstreams.size() == 1);
    const auto& api = config->upstreams[0];
    CHECK(api.scheme == "http");
    CHECK(api.port == 80);
    CHECK(api.tls.verify);
    CHECK(api.tls.ca_file.empty());
    CHECK(api.tls.server_name.empty());
    CHECK(api.max_connections == 64);
    CHECK(api.max_idle_connections == 64);  // defaults to max_connections
    CHECK(api.idle_timeout == 60s);
    CHECK(api.connect_timeout == 5s);
    CHECK(api.response_timeout == 30s);
    CHECK(api.body_timeout == 30s);

    CHECK(config->limits.empty());
    CHECK(config->queue_defaults.max_depth == 1000);
    CHECK(config->queue_defaults.max_wait == 30s);
    REQUIRE(config->routes.size() == 1);
    CHECK(config->routes[0].name == "route-1");
    CHECK(config->routes[0].queue.max_depth == 1000);
    CHECK(config->routes[0].queue.max_wait == 30s);
    CHECK_FALSE(config->routes[0].strip_prefix);
}

TEST_CASE("limit defaults: token bucket burst, cost and keys", "[config][loader]") {
    const auto config = load_config_string(R"(
upstreams:
  api: {url: https://api.example.com}
limits:
  per-second: {algorithm: token_bucket, limit: 20, window: 1s}
  per-minute: {algorithm: token_bucket, rate: 100/m, margin: 10ms}
  weekly: {algorithm: fixed_window, limit: 7, window: 7d}
  quarter-hour: {algorithm: fixed_window, limit: 7, window: 15m}
  free: {limit: 1, window: 1s, cost: 0}
routes:
  - upstream: api
    limits: per-second
)");
    REQUIRE(config->limits.size() == 5);
    CHECK(config->limits[0].burst == 20);  // burst defaults to limit
    CHECK(config->limits[1].limit == 100);
    CHECK(config->limits[1].window == 1min);
    CHECK(config->limits[1].burst == 100);
    CHECK(config->limits[1].margin == 10ms);
    CHECK(config->limits[2].window == 7 * 24h);
    CHECK(config->limits[2].utc_offset == 0s);
    CHECK(config->limits[3].window == 15min);
    CHECK(config->limits[4].cost.fixed == 0);
    CHECK(config->limits[4].cost.max == 1'000'000'000);
    CHECK(config->routes[0].limits == std::vector<std::string>{"per-second"});
}

TEST_CASE("an explicitly named default listener leaves the unnamed ones to their position",
          "[config][loader]") {
    const auto config = load_config_string(R"(
listeners:
  - listen: "127.0.0.1:8080"
  - name: default
    listen: "127.0.0.1:8081"
upstreams:
  api: {url: https://api.example.com}
routes:
  - upstream: api
    match: {listener: default}
)");
    REQUIRE(config->listeners.size() == 2);
    CHECK(config->listeners[0].name == "listener-1");
    CHECK(config->listeners[1].name == "default");
    CHECK(config->routes[0].listener_indexes == std::vector<std::size_t>{1});
}

TEST_CASE("port 0 may repeat and a disabled admin listener does not conflict", "[config][loader]") {
    const auto config = load_config_string(R"(
server:
  admin: {enabled: false, listen: "127.0.0.1:8080"}
listeners:
  - {name: a, listen: "127.0.0.1:0"}
  - {name: b, listen: "127.0.0.1:0"}
  - {name: c, listen: "127.0.0.1:8080"}
upstreams:
  api: {url: https://api.example.com}
routes:
  - upstream: api
)");
    CHECK(config->listeners.size() == 3);
}

TEST_CASE("empty optional sections are allowed", "[config][loader]") {
    const auto config = load_config_string(R"(
server:
limits:
upstreams:
  api: {url: https://api.example.com}
routes:
  - upstream: api
    match:
    limits: []
)");
    CHECK(config->server.workers == 1);
    CHECK(config->limits.empty());
    CHECK(config->routes[0].limits.empty());
}

TEST_CASE("find_upstream and find_limit look names up", "[config][loader]") {
    const auto config = load_config_string(kFullExample);
    REQUIRE(config->find_upstream("mock") != nullptr);
    CHECK(config->find_upstream("mock")->port == 9000);
    CHECK(config->find_upstream("nope") == nullptr);
    REQUIRE(config->find_limit("cc-daily") != nullptr);
    CHECK(config->find_limit("cc-daily")->algorithm == Algorithm::fixed_window);
    CHECK(config->find_limit("nope") == nullptr);
}

TEST_CASE("config/sluice.yaml loads", "[config][loader]") {
    const auto path = source_path("config/sluice.yaml");
    const auto config = load_config_file(path);
    CHECK(config->source_file == path);
    REQUIRE(config->listeners.size() == 2);
    CHECK(config->listeners[0].port == 8080);
    CHECK(config->server.admin.port == 9901);
    const auto* intercom = config->find_limit("intercom-rolling");
    REQUIRE(intercom != nullptr);
    CHECK(intercom->limit == 166);
    CHECK(intercom->window == 10s);
    REQUIRE_FALSE(config->routes.empty());
    CHECK(config->routes[0].match.path_prefix == "/intercom/");
    CHECK(config->routes[0].strip_prefix);
}

TEST_CASE("load_config_file reads a file and names it in errors", "[config][loader]") {
    const auto dir = std::filesystem::temp_directory_path();
    const auto path = (dir / "sluice_config_test_bad.yaml").string();
    {
        std::ofstream out(path);
        out << "upstreams:\n  api: {url: https://api.example.com}\nroutes:\n  - upstream: api\n    limits: "
               "[x]\n";
    }
    try {
        load_config_file(path);
        FAIL("no error");
    } catch (const ConfigError& e) {
        CHECK(std::string(e.what()) == path +
                                           ":5:14: route 'route-1' limits[1]: unknown limit 'x'; expected a "
                                           "limit defined under 'limits' "
                                           "(there are none)");
        CHECK(e.where().file == path);
        CHECK(e.where().line == 5);
        CHECK(e.where().column == 14);
    }
    std::filesystem::remove(path);
}

TEST_CASE("the whole-file example in docs/configuration.md loads", "[config][loader]") {
    std::ifstream in(source_path("docs/configuration.md"));
    REQUIRE(in);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const auto section = text.find("## A whole file");
    REQUIRE(section != std::string::npos);
    const auto begin = text.find("```yaml\n", section);
    REQUIRE(begin != std::string::npos);
    const auto end = text.find("```", begin + 8);
    REQUIRE(end != std::string::npos);
    const auto config = load_config_string(text.substr(begin + 8, end - begin - 8), "configuration.md");
    CHECK(config->limits.size() == 5);
    CHECK(config->routes.size() == 1);
}

TEST_CASE("admin token_file and status_keys", "[config][loader][admin]") {
    const std::string rest =
        "upstreams:\n  api: {url: https://api.example.com}\nroutes:\n  - upstream: api\n";
    const auto defaults = load_config_string(rest, "t.yaml");
    CHECK(defaults->server.admin.token_file.empty());  // no token unless asked for
    CHECK(defaults->server.admin.status_keys == 20);
    const auto set = load_config_string(
        "server:\n  admin: {token_file: /run/secrets/admin, status_keys: 5}\n" + rest, "t.yaml");
    CHECK(set->server.admin.token_file == "/run/secrets/admin");
    CHECK(set->server.admin.status_keys == 5);
    CHECK_THROWS_WITH(
        load_config_string("server:\n  admin: {status_keys: 1001}\n" + rest, "t.yaml"),
        "t.yaml:2:24: server.admin.status_keys: 1001 is out of range; expected an integer from 0 "
        "to 1000");
}

TEST_CASE("admin limits_top_keys: 20 by default, 0 to 1000", "[config][loader][admin]") {
    const std::string rest =
        "upstreams:\n  api: {url: https://api.example.com}\nroutes:\n  - upstream: api\n";
    CHECK(load_config_string(rest, "t.yaml")->server.admin.limits_top_keys == 20);
    CHECK(load_config_string("server:\n  admin: {limits_top_keys: 3}\n" + rest, "t.yaml")
              ->server.admin.limits_top_keys == 3);
    CHECK_THROWS_WITH(load_config_string("server:\n  admin: {limits_top_keys: 1001}\n" + rest, "t.yaml"),
                      "t.yaml:2:28: server.admin.limits_top_keys: 1001 is out of range; expected an integer "
                      "from 0 to 1000");
}

TEST_CASE("admin token_env: a variable's name, not together with token_file", "[config][loader][admin]") {
    const std::string rest =
        "upstreams:\n  api: {url: https://api.example.com}\nroutes:\n  - upstream: api\n";
    CHECK(load_config_string(rest, "t.yaml")->server.admin.token_env.empty());
    const auto set =
        load_config_string("server:\n  admin: {token_env: SLUICE_ADMIN_TOKEN}\n" + rest, "t.yaml");
    CHECK(set->server.admin.token_env == "SLUICE_ADMIN_TOKEN");
    CHECK(set->server.admin.token_file.empty());
    CHECK_THROWS_WITH(
        load_config_string("server:\n  admin: {token_env: 1BAD-NAME}\n" + rest, "t.yaml"),
        "t.yaml:2:22: server.admin.token_env: '1BAD-NAME' is not an environment variable name; expected the "
        "name of an environment variable holding the admin token (letters, digits, '_')");
    CHECK_THROWS_WITH(
        load_config_string("server:\n  admin: {token_env: TOKEN, token_file: /run/secrets/admin}\n" + rest,
                           "t.yaml"),
        "t.yaml:2:22: server.admin.token_env: token_file and token_env are both given; expected one of them: "
        "the token is read from a file or from an environment variable");
    // The token itself has no key: it never sits in the YAML.
    CHECK_THROWS_WITH(load_config_string("server:\n  admin: {token: abcdefabcdefabcdef}\n" + rest, "t.yaml"),
                      Catch::Contains("token"));
}

TEST_CASE("server.access_log: on to stdout by default; path, log_query and buffer_bytes",
          "[config][loader][access-log]") {
    const std::string rest =
        "upstreams:\n  api: {url: https://api.example.com}\nroutes:\n  - upstream: api\n";
    const auto defaults = load_config_string(rest, "t.yaml");
    CHECK(defaults->server.access_log.enabled);
    CHECK(defaults->server.access_log.path == "stdout");
    CHECK_FALSE(defaults->server.access_log.log_query);
    CHECK(defaults->server.access_log.buffer_bytes == 1024 * 1024);
    const auto set = load_config_string(
        "server:\n  access_log: {enabled: false, path: /var/log/sluice.jsonl, log_query: true, "
        "buffer_bytes: 4MiB}\n" +
            rest,
        "t.yaml");
    CHECK_FALSE(set->server.access_log.enabled);
    CHECK(set->server.access_log.path == "/var/log/sluice.jsonl");
    CHECK(set->server.access_log.log_query);
    CHECK(set->server.access_log.buffer_bytes == 4 * 1024 * 1024);
    CHECK_THROWS_WITH(load_config_string("server:\n  access_log: {buffer_bytes: 1KiB}\n" + rest, "t.yaml"),
                      "t.yaml:2:30: server.access_log.buffer_bytes: '1KiB' is out of range; expected a size "
                      "from 65536 to 268435456 bytes");
    CHECK_THROWS_WITH(
        load_config_string("server:\n  access_log: {path: \"\"}\n" + rest, "t.yaml"),
        "t.yaml:2:22: server.access_log.path: got ''; expected stdout, stderr, or the path of a "
        "file to append to");
    CHECK_THROWS_WITH(load_config_string("server:\n  access_log: {format: text}\n" + rest, "t.yaml"),
                      Catch::Contains("format"));
}
