// server.state.backend: redis, server.state.redis and a limit's on_redis_failure
// (docs/distributed.md): defaults, each accepted form, and each error message.

#include <string>

#include <catch2/catch.hpp>

#include "sluice/config/config_printer.hpp"
#include "sluice/config/loader.hpp"

using namespace sluice::config;
using namespace std::chrono_literals;

namespace {

const std::string kRest =
    "upstreams:\n  api: {url: https://api.example.com}\n"
    "limits:\n  vendor: {algorithm: sliding_window, limit: 10, window: 1s}\n"
    "routes:\n  - {upstream: api, limits: [vendor]}\n";

std::string error_of(const std::string& yaml) {
    try {
        load_config_string(yaml, "t.yaml");
    } catch (const ConfigError& e) {
        return e.what();
    }
    return "(no error)";
}

}  // namespace

TEST_CASE("server.state.backend: memory by default; redis with its defaults", "[config][loader][redis]") {
    const auto plain = load_config_string(kRest);
    CHECK(plain->server.state.backend == StateBackend::memory);
    CHECK(plain->limits[0].on_redis_failure == RedisFailurePolicy::local);

    const auto shared =
        load_config_string("server: {state: {backend: redis, redis: {address: 10.0.0.5:6380}}}\n" + kRest);
    const auto& redis = shared->server.state.redis;
    CHECK(shared->server.state.backend == StateBackend::redis);
    CHECK(redis.host == "10.0.0.5");
    CHECK(redis.port == 6380);
    CHECK(redis.unix_path.empty());
    CHECK(redis.db == 0);
    CHECK(redis.key_prefix == "sluice");
    CHECK(redis.connect_timeout == 1s);
    CHECK(redis.command_timeout == 250ms);
    CHECK(redis.replicas == 1);
    CHECK(redis.lease == 10s);
    CHECK_FALSE(redis.tls);
}

TEST_CASE("server.state.redis: every key", "[config][loader][redis]") {
    const auto config = load_config_string(
        "server:\n  state:\n    backend: redis\n    redis:\n      address: unix:/run/redis/redis.sock\n"
        "      db: 3\n      username: sluice\n      password_env: REDIS_PASSWORD\n"
        "      tls: {enabled: true, ca_file: /etc/ca.pem, server_name: redis.internal, verify: false}\n"
        "      key_prefix: vendor-a\n      connect_timeout: 2s\n      command_timeout: 100ms\n"
        "      replicas: 10\n      lease: 3s\n" +
        kRest);
    const auto& redis = config->server.state.redis;
    CHECK(redis.unix_path == "/run/redis/redis.sock");
    CHECK(redis.db == 3);
    CHECK(redis.username == "sluice");
    CHECK(redis.password_env == "REDIS_PASSWORD");
    CHECK(redis.tls);
    CHECK(redis.tls_ca_file == "/etc/ca.pem");
    CHECK(redis.tls_server_name == "redis.internal");
    CHECK_FALSE(redis.tls_verify);
    CHECK(redis.key_prefix == "vendor-a");
    CHECK(redis.connect_timeout == 2s);
    CHECK(redis.command_timeout == 100ms);
    CHECK(redis.replicas == 10);
    CHECK(redis.lease == 3s);
    // --check --print shows where the password comes from, never a password.
    const auto printed = print_config(*config);
    CHECK(printed.find("backend: redis") != std::string::npos);
    CHECK(printed.find("password_env: REDIS_PASSWORD") != std::string::npos);
    CHECK(printed.find("unix:/run/redis/redis.sock") != std::string::npos);
}

TEST_CASE("a limit's on_redis_failure: local, deny or allow", "[config][loader][redis]") {
    const auto config = load_config_string(
        "upstreams:\n  api: {url: https://api.example.com}\n"
        "limits:\n  a: {algorithm: sliding_window, limit: 10, window: 1s, on_redis_failure: deny}\n"
        "  b: {algorithm: concurrency, limit: 2, on_redis_failure: allow}\n"
        "  c: {algorithm: token_bucket, rate: 5/s, on_redis_failure: local}\n"
        "routes:\n  - {upstream: api, limits: [a, b, c]}\n");
    CHECK(config->find_limit("a")->on_redis_failure == RedisFailurePolicy::deny);
    CHECK(config->find_limit("b")->on_redis_failure == RedisFailurePolicy::allow);
    CHECK(config->find_limit("c")->on_redis_failure == RedisFailurePolicy::local);
    CHECK(print_config(*config).find("on_redis_failure: deny") != std::string::npos);
}

TEST_CASE("server.state.redis: errors name the key and what was expected", "[config][loader][redis]") {
    const auto with = [](const std::string& redis) {
        return error_of("server: {state: {backend: redis, redis: " + redis + "}}\n" + kRest);
    };
    CHECK_THAT(error_of("server: {state: {backend: redis}}\n" + kRest), Catch::Contains("redis"));
    CHECK_THAT(error_of("server: {state: {backend: etcd}}\n" + kRest), Catch::Contains("memory or redis"));
    CHECK_THAT(with("{port: 6379}"), Catch::Contains("unknown key 'port'"));
    CHECK_THAT(with("{address: 127.0.0.1}"), Catch::Contains("is not host:port"));
    CHECK_THAT(with("{address: '127.0.0.1:0'}"), Catch::Contains("is not a port"));
    CHECK_THAT(with("{address: 'unix:relative.sock'}"), Catch::Contains("absolute socket path"));
    // A password is never written in the config.
    CHECK_THAT(with("{address: '127.0.0.1:6379', password: hunter2}"),
               Catch::Contains("unknown key 'password'"));
    CHECK_THAT(with("{address: '127.0.0.1:6379', password_file: /a, password_env: B}"),
               Catch::Contains("password_file and password_env are both given"));
    CHECK_THAT(with("{address: '127.0.0.1:6379', password_env: 'not a name'}"),
               Catch::Contains("is not an environment variable name"));
    CHECK_THAT(with("{address: '127.0.0.1:6379', key_prefix: 'a{b}'}"),
               Catch::Contains("is not a key prefix"));
    CHECK_THAT(with("{address: '127.0.0.1:6379', replicas: 0}"), Catch::Contains("out of range"));
    CHECK_THAT(with("{address: '127.0.0.1:6379', lease: 100ms}"), Catch::Contains("is shorter than"));
    CHECK_THAT(
        error_of("upstreams:\n  api: {url: https://api.example.com}\n"
                 "limits:\n  a: {algorithm: sliding_window, limit: 10, window: 1s, on_redis_failure: open}\n"
                 "routes:\n  - {upstream: api, limits: [a]}\n"),
        Catch::Contains("local, deny or allow"));
}
