// The process contract: admin endpoints, graceful SIGTERM, `sluice --check`.

#include <algorithm>
#include <regex>

#include <catch2/catch.hpp>

#include "support/http_client.hpp"
#include "support/mock_upstream.hpp"
#include "support/proxy_config.hpp"
#include "support/sluice_process.hpp"

using namespace sluice::test;

TEST_CASE("the admin listener answers /healthz and /readyz", "[e2e][admin]") {
    MockUpstream upstream;
    SluiceProcess sluice(ProxyConfig{upstream.url()}.yaml());
    REQUIRE(sluice.admin_port() != 0);
    HttpClient admin(sluice.admin_port());
    CHECK(admin.get("/healthz").status == 200);
    CHECK(admin.get("/readyz").status == 200);
    CHECK(upstream.request_count() == 0);
}

TEST_CASE("the ready file names every listener with a distinct bound port", "[e2e][admin]") {
    MockUpstream upstream;
    SluiceProcess sluice(ProxyConfig{upstream.url()}.yaml());
    REQUIRE(sluice.listener_ports().size() == 2);
    CHECK(sluice.port("main") != 0);
    CHECK(sluice.port("vendor") != 0);
    CHECK(sluice.port("main") != sluice.port("vendor"));
    CHECK(sluice.admin_port() != sluice.port("main"));
}

TEST_CASE("SIGTERM stops sluice gracefully with exit code 0", "[e2e][admin]") {
    MockUpstream upstream;
    SluiceProcess sluice(ProxyConfig{upstream.url()}.yaml());
    HttpClient client(sluice.port("vendor"));
    REQUIRE(client.get("/x").status == 200);
    client.close();
    const auto status = sluice.stop(std::chrono::seconds(5));
    CHECK_FALSE(status.needed_sigkill);
    CHECK(status.exited);
    CHECK(status.code == 0);
}

TEST_CASE("sluice --check accepts a valid configuration", "[e2e][check]") {
    const auto result = run_sluice_check(ProxyConfig{"http://127.0.0.1:9"}.yaml());
    INFO("stdout: " << result.stdout_text << "\nstderr: " << result.stderr_text);
    CHECK(result.exit_code == 0);
}

TEST_CASE("sluice --check rejects a bad configuration naming file:line:col", "[e2e][check]") {
    std::string yaml;
    std::string location;  // a regex for "line:col"
    SECTION("an unknown top-level key") {
        yaml = "listners:\n  - name: main\n    listen: \"127.0.0.1:0\"\n";
        location = "1:1";
    }
    SECTION("a route naming an upstream that does not exist") {
        yaml = ProxyConfig{"http://127.0.0.1:9"}.yaml() +
               "  - name: broken\n"  // appended to routes:
               "    match:\n"
               "      path_prefix: /broken/\n"
               "    upstream: nowhere\n";
        // The line of `upstream: nowhere`.
        const auto lines = std::count(yaml.begin(), yaml.end(), '\n');
        location = std::to_string(lines) + ":[0-9]+";
    }
    SECTION("a duration without a unit") {
        yaml = "upstreams:\n  vendor:\n    url: \"http://127.0.0.1:9\"\n    connect_timeout: 5\n";
        location = "4:[0-9]+";
    }
    SECTION("a YAML syntax error") {
        yaml = "listeners:\n  - name: main\n    listen: [\"127.0.0.1:0\"\n";
        location = "[0-9]+:[0-9]+";
    }
    const auto result = run_sluice_check(yaml, "bad-config.yaml");
    INFO("stdout: " << result.stdout_text << "\nstderr: " << result.stderr_text);
    CHECK(result.exit_code != 0);
    CHECK(result.exit_code != -1);
    const std::regex expected(
        std::regex_replace(result.config_path, std::regex(R"([.^$|()\[\]{}*+?\\])"), R"(\$&)") + ":" +
        location + ": ");
    CHECK(std::regex_search(result.stderr_text, expected));
}
