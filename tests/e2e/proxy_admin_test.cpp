// The process contract: admin endpoints, graceful SIGTERM, `sluice --check`.

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <stdexcept>
#include <vector>

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

// ---------------------------------------------------------------- the admin token (docs/security.md)

namespace {

// A token file in its own temporary directory, removed with the object.
struct TokenFile {
    std::string dir;
    std::string path;
    explicit TokenFile(const std::string& content) {
        std::string pattern = (std::filesystem::temp_directory_path() / "sluice-token-XXXXXX").string();
        if (!::mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
        dir = pattern;
        path = dir + "/admin-token";
        std::ofstream(path) << content;
    }
    ~TokenFile() {
        std::error_code ignored;
        std::filesystem::remove_all(dir, ignored);
    }
};

constexpr const char* kAdminToken = "s3cr3t-admin-token-0123456789abcdef";

}  // namespace

TEST_CASE("the admin listener says where it listens, and that no token is required",
          "[e2e][admin][security]") {
    // The default address (127.0.0.1:9901) is checked by tests/unit/config/loader_test.cpp
    // ("a minimal file gets every default"); 9901 itself is not bound here, as another
    // process on the machine may hold it.
    MockUpstream upstream;
    SluiceProcess sluice(ProxyConfig{upstream.url()}.yaml());
    const auto log = sluice.stderr_text();
    CHECK(log.find("admin: listening on 127.0.0.1:" + std::to_string(sluice.admin_port()) + "\n") !=
          std::string::npos);
    CHECK(log.find("not on loopback") == std::string::npos);
    HttpClient admin(sluice.admin_port());
    CHECK(admin.get("/status").status == 200);  // no token configured: open (on loopback)
}

TEST_CASE("with admin.token_file, every admin endpoint but the probes needs the bearer token",
          "[e2e][admin][security]") {
    TokenFile token(std::string(kAdminToken) + "\n");
    MockUpstream upstream;
    ProxyConfig config{upstream.url()};
    config.admin = {"token_file: \"" + token.path + "\""};
    SluiceProcess sluice(config.yaml(), {{"--log-level", "debug"}});
    HttpClient admin(sluice.admin_port(), std::chrono::seconds(5));
    const std::string bearer = std::string("Bearer ") + kAdminToken;

    // The probes an orchestrator sends carry no credentials.
    CHECK(admin.get("/healthz").status == 200);
    CHECK(admin.get("/readyz").status == 200);

    SECTION("no token, a wrong one, a prefix, another scheme: 401, nothing echoed") {
        const std::vector<Headers> refused = {
            {},
            {{"Authorization", "Bearer wrong-token-wrong-token-wrong"}},
            {{"Authorization", bearer + "x"}},
            {{"Authorization", bearer.substr(0, bearer.size() - 1)}},
            {{"Authorization", std::string("Basic ") + kAdminToken}},
            {{"Authorization", kAdminToken}},
            {{"Authorization", bearer}, {"Authorization", bearer}},  // two credentials are none
        };
        for (const auto& headers : refused) {
            for (const char* path : {"/status", "/v1/limits", "/metrics", "/nonexistent"}) {
                const auto res = admin.get(path, headers);
                INFO(path << " " << (headers.empty() ? "(none)" : headers.front().second));
                CHECK(res.status == 401);
                CHECK(res.header("WWW-Authenticate").value_or("") == "Bearer realm=\"sluice-admin\"");
                CHECK(res.body.find(kAdminToken) == std::string::npos);
                CHECK(res.body.find("counters") == std::string::npos);
            }
        }
    }
    SECTION("the right token: served; the scheme is case-insensitive") {
        const auto status = admin.get("/status", {{"Authorization", bearer}});
        REQUIRE(status.status == 200);
        CHECK(status.json()["counters"]["admin_unauthorized"] == 0);
        CHECK(admin.get("/status", {{"Authorization", std::string("bearer ") + kAdminToken}}).status == 200);
        CHECK(admin.get("/nonexistent", {{"Authorization", bearer}}).status == 404);
        admin.get("/status");  // one refusal, counted
        CHECK(admin.get("/status", {{"Authorization", bearer}}).json()["counters"]["admin_unauthorized"] ==
              1);
    }
    CHECK(sluice.stderr_text().find(kAdminToken) == std::string::npos);
    CHECK(sluice.stderr_text().find("token required") != std::string::npos);
}

TEST_CASE("an unusable admin token file stops sluice at start, naming the file and not its content",
          "[e2e][admin][security]") {
    MockUpstream upstream;
    SECTION("too short") {
        TokenFile token("short-secret");
        ProxyConfig config{upstream.url()};
        config.admin = {"token_file: \"" + token.path + "\""};
        try {
            SluiceProcess sluice(config.yaml());
            FAIL("sluice started with a 12-character token");
        } catch (const std::runtime_error& e) {
            const std::string what = e.what();
            CHECK(what.find(token.path) != std::string::npos);
            CHECK(what.find("16 to 4096 visible ASCII characters") != std::string::npos);
            CHECK(what.find("short-secret") == std::string::npos);
        }
    }
    SECTION("missing") {
        ProxyConfig config{upstream.url()};
        config.admin = {"token_file: /nonexistent/sluice-admin-token"};
        CHECK_THROWS_WITH(
            SluiceProcess(config.yaml()),
            Catch::Contains("admin token_file /nonexistent/sluice-admin-token: cannot be read"));
    }
}

TEST_CASE("/status lists status_keys keys per limit, the most constrained first, and the total",
          "[e2e][admin][status]") {
    MockUpstream upstream;
    const auto yaml = yaml_subst(R"(server:
  workers: {WORKERS}
  admin: {listen: "127.0.0.1:0", status_keys: 2}
listeners:
  - {name: main, listen: "127.0.0.1:0"}
upstreams:
  vendor: {url: "{URL}"}
limits:
  per-key: {algorithm: sliding_window, limit: 10, window: 1h, key: {header: X-Key}}
routes:
  - {upstream: vendor, limits: [per-key]}
)",
                                 {{"WORKERS", std::to_string(e2e_workers())}, {"URL", upstream.url()}});
    SluiceProcess sluice(yaml);
    HttpClient client(sluice.port("main"));
    // Key kN has sent N requests: k5 is the most constrained, then k4.
    for (int key = 1; key <= 5; ++key) {
        for (int i = 0; i < key; ++i)
            REQUIRE(client.get("/x", {{"X-Key", "k" + std::to_string(key)}}).status == 200);
    }
    HttpClient admin(sluice.admin_port());
    const auto status = admin.get("/status").json();
    CHECK(status["status_keys_per_limit"] == 2);
    const auto& limit = status["limits"][0];
    CHECK(limit["name"] == "per-key");
    CHECK(limit["tracked_keys"] == 5);
    REQUIRE(limit["keys"].size() == 2);
    CHECK(limit["keys"][0]["remaining"] == 5);
    CHECK(limit["keys"][1]["remaining"] == 6);
    CHECK(status["counters"]["session_exceptions"] == 0);
}
