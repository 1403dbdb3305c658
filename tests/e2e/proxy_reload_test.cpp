// Hot reload (SIGHUP, POST /v1/reload) and what it must never do: grant a fresh
// quota, lose a request, or take a bad file. Also the quota given back for a
// request that never reached the vendor.

#include <atomic>
#include <chrono>
#include <fstream>
#include <signal.h>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "support/admin_status.hpp"
#include "support/http_client.hpp"
#include "support/mock_upstream.hpp"
#include "support/proxy_config.hpp"
#include "support/sluice_process.hpp"
#include "support/synthetic_checks.hpp"

using namespace sluice::test;
using namespace std::chrono_literals;
using json = nlohmann::json;

namespace {

// A route "api" through limit "calls" (sliding window, LIMIT per WINDOW); the
// admin listener and the state file's folder in the process's own temp dir.
std::string reload_yaml(const std::string& url, const std::string& limit, const std::string& window,
                        const std::string& extra_route = "") {
    return yaml_subst(R"(server:
  workers: {WORKERS}
  admin:
    listen: "127.0.0.1:0"
listeners:
  - name: main
    listen: "127.0.0.1:0"
upstreams:
  vendor:
    url: "{URL}"
    feedback: {enabled: false}
limits:
  calls: {algorithm: sliding_window, limit: {LIMIT}, window: {WINDOW}}
queue: {max_depth: 100, max_wait: 30s}
routes:
  - name: api
    match: {path_prefix: /api/}
    upstream: vendor
    limits: [calls]
{EXTRA})",
                      {{"WORKERS", std::to_string(e2e_workers())},
                       {"URL", url},
                       {"LIMIT", limit},
                       {"WINDOW", window},
                       {"EXTRA", extra_route}});
}

void rewrite(const SluiceProcess& sluice, const std::string& yaml) {
    const auto temp = sluice.config_path() + ".new";
    {
        std::ofstream out(temp, std::ios::trunc);
        out << yaml;
    }
    REQUIRE(std::rename(temp.c_str(), sluice.config_path().c_str()) == 0);
}

HttpResponse post_reload(const SluiceProcess& sluice) {
    HttpClient admin(sluice.admin_port(), 10s);
    return admin.request("POST", "/v1/reload");
}

// Sends GET `target` with Sluice-Max-Wait: 0 (no waiting: 200 or an immediate 429).
unsigned try_now(std::uint16_t port, const std::string& target) {
    HttpClient client(port, 5s);
    return client.get(target, {{"Sluice-Max-Wait", "0"}}).status;
}

double metric(const SluiceProcess& sluice, const std::string& sample) {
    HttpClient admin(sluice.admin_port(), 5s);
    const auto text = admin.get("/metrics").body;
    const auto at = text.find("\n" + sample + " ");
    if (at == std::string::npos) return -1;
    return std::stod(text.substr(at + sample.size() + 2));
}

}  // namespace

TEST_CASE("a reload keeps a limit's count, and a changed limit carries its used units into the new window",
          "[e2e][reload]") {
    MockUpstream upstream;
    SluiceProcess sluice(reload_yaml(upstream.url(), "5", "60s"));
    const auto port = sluice.port("main");
    for (int i = 0; i < 5; ++i) REQUIRE(try_now(port, "/api/a") == 200);
    REQUIRE(try_now(port, "/api/a") == 429);

    // Unchanged limit, another route added: the same limiter, still spent.
    rewrite(sluice,
            reload_yaml(upstream.url(), "5", "60s",
                        "  - name: other\n    match: {path_prefix: /other/}\n    upstream: vendor\n"));
    auto answer = post_reload(sluice);
    REQUIRE(answer.status == 200);
    auto body = answer.json();
    CHECK(body["result"] == "success");
    CHECK(body["generation"] == 2);
    CHECK(body["limits"]["kept"] == json::array({"calls", "upstream:vendor"}));
    CHECK(try_now(port, "/api/a") == 429);
    CHECK(try_now(port, "/other/x") == 200);

    // 5 -> 8 per minute: the 5 used count in the new limit's window, so 3 more, not 8.
    rewrite(sluice, reload_yaml(upstream.url(), "8", "60s"));
    answer = post_reload(sluice);
    REQUIRE(answer.status == 200);
    body = answer.json();
    CHECK(body["limits"]["carried"] == json::array({"calls"}));
    for (int i = 0; i < 3; ++i) CHECK(try_now(port, "/api/b") == 200);
    CHECK(try_now(port, "/api/b") == 429);
    CHECK(upstream.request_count() == 5 + 1 + 3);  // + the /other/ request
    CHECK(metric(sluice, R"(sluice_config_reloads_total{result="success"})") == 2);
    CHECK(metric(sluice, "sluice_config_generation") == 3);
}

TEST_CASE("a reload keeps each kept route's and upstream's counters; a new route starts at 0",
          "[e2e][reload][metrics]") {
    MockUpstream upstream;
    SluiceProcess sluice(reload_yaml(upstream.url(), "100", "60s"));
    const auto port = sluice.port("main");
    for (int i = 0; i < 3; ++i) REQUIRE(try_now(port, "/api/a") == 200);
    REQUIRE(try_now(port, "/nowhere") == 404);
    const std::string forwarded = R"(sluice_requests_total{outcome="forwarded",route="api"})";
    const std::string waits = R"(sluice_admission_wait_seconds_count{route="api"})";
    const std::string responses = R"(sluice_upstream_responses_total{class="2xx",upstream="vendor"})";
    const std::string no_route = R"(sluice_requests_total{code="no_route",outcome="no_route"})";
    REQUIRE(metric(sluice, forwarded) == 3);

    // A route added (POST /v1/reload): "api" and "vendor" go on from 3, a counter
    // reset would read 0 (Prometheus would take it for a restart).
    rewrite(sluice,
            reload_yaml(upstream.url(), "100", "60s",
                        "  - name: other\n    match: {path_prefix: /other/}\n    upstream: vendor\n"));
    REQUIRE(post_reload(sluice).status == 200);
    CHECK(metric(sluice, forwarded) == 3);
    CHECK(metric(sluice, waits) == 3);
    CHECK(metric(sluice, responses) == 3);
    CHECK(metric(sluice, no_route) == 1);
    CHECK(metric(sluice, R"(sluice_requests_total{outcome="forwarded",route="other"})") == 0);

    // And again by SIGHUP, the route removed: "api" still counts on.
    REQUIRE(try_now(port, "/api/b") == 200);
    rewrite(sluice, reload_yaml(upstream.url(), "100", "60s"));
    ::kill(sluice.pid(), SIGHUP);
    REQUIRE(wait_until([&] { return metric(sluice, "sluice_config_generation") == 3; }, 5s));
    CHECK(metric(sluice, forwarded) == 4);
    CHECK(metric(sluice, responses) == 4);
    CHECK(metric(sluice, R"(sluice_requests_total{outcome="forwarded",route="other"})") == -1);  // gone
}

TEST_CASE("a bad file or a listener change changes nothing, and the reload says why", "[e2e][reload]") {
    MockUpstream upstream;
    SluiceProcess sluice(reload_yaml(upstream.url(), "5", "60s"));
    const auto port = sluice.port("main");
    REQUIRE(try_now(port, "/api/a") == 200);

    rewrite(sluice, "limits:\n  calls: {algorithm: sliding_window, limit: -3, window: 60s}\n");
    auto answer = post_reload(sluice);
    CHECK(answer.status == 422);
    CHECK(answer.json()["result"] == "failure");
    // file:line:col of the error
    CHECK(answer.json()["error"].get<std::string>().find(sluice.config_path() + ":") != std::string::npos);

    // SIGHUP with the same bad file: logged, nothing changed, still serving.
    ::kill(sluice.pid(), SIGHUP);
    REQUIRE(wait_until(
        [&] { return metric(sluice, R"(sluice_config_reloads_total{result="failure"})") == 2; }, 5s));
    CHECK(sluice.running());
    CHECK(sluice.stderr_text().find("invalid configuration, nothing changed") != std::string::npos);

    auto moved = reload_yaml(upstream.url(), "5", "60s");
    moved.replace(moved.find("name: main"), 10, "name: main2");
    rewrite(sluice, moved);
    answer = post_reload(sluice);
    CHECK(answer.status == 422);
    CHECK(answer.json()["error"].get<std::string>().find("listener") != std::string::npos);

    CHECK(metric(sluice, "sluice_config_last_load_success") == 0);
    CHECK(metric(sluice, "sluice_config_generation") == 1);
    // The limit is as it was: 4 more of 5.
    for (int i = 0; i < 4; ++i) CHECK(try_now(port, "/api/a") == 200);
    CHECK(try_now(port, "/api/a") == 429);
}

TEST_CASE(
    "20 reloads, good and bad, under load through a binding limit: no request lost, the vendor never over",
    "[e2e][reload]") {
    MockUpstream upstream;
    // 20 per second; the good files alternate the margin so that each is a changed limit (carried).
    const auto good = [&](int i) { return reload_yaml(upstream.url(), "20", i % 4 == 0 ? "1s" : "1050ms"); };
    SluiceProcess sluice(good(0));
    const auto port = sluice.port("main");

    std::atomic<bool> stop{false};
    std::atomic<int> ok{0};
    std::atomic<int> failed{0};
    std::vector<std::thread> clients;
    for (int c = 0; c < 8; ++c) {
        clients.emplace_back([&, c] {
            HttpClient client(port, 10s);
            for (int n = 0; !stop.load(); ++n) {
                try {
                    const auto status =
                        client.get("/api/" + std::to_string(c) + "/" + std::to_string(n)).status;
                    (status == 200 ? ok : failed).fetch_add(1);
                } catch (const std::exception&) {
                    failed.fetch_add(1);
                    return;
                }
            }
        });
    }
    int good_answers = 0;
    int bad_answers = 0;
    for (int i = 1; i <= 20; ++i) {
        std::this_thread::sleep_for(150ms);
        const bool bad = i % 2 == 0;
        rewrite(sluice, bad ? std::string("routes: [oops") : good(i));
        const auto answer = post_reload(sluice);
        (answer.status == 200 ? good_answers : bad_answers) += 1;
    }
    std::this_thread::sleep_for(300ms);
    stop = true;
    for (auto& t : clients) t.join();

    CHECK(good_answers == 10);
    CHECK(bad_answers == 10);
    CHECK(failed == 0);
    CHECK(ok > 40);
    // Never more than 20 in any second at the vendor, across every reload.
    const auto seen = upstream.requests();
    CHECK(static_cast<int>(seen.size()) == ok.load());
    int violations = 0;
    for (std::size_t i = 0; i + 20 < seen.size(); ++i) {
        if (seen[i + 20].arrival - seen[i].arrival < 1000ms) ++violations;
    }
    CHECK(violations == 0);
}

TEST_CASE("a request that could not reach the vendor gives its unit back", "[e2e][reload][refund]") {
    const auto dead = closed_port();
    SluiceProcess sluice(reload_yaml("http://127.0.0.1:" + std::to_string(dead), "1", "60s"));
    const auto port = sluice.port("main");
    // Without the refund the second request would find the minute's one unit spent (429).
    for (int i = 0; i < 3; ++i) {
        HttpClient client(port, 5s);
        const auto response = client.get("/api/x", {{"Sluice-Max-Wait", "0"}});
        check_synthetic(response, 502, "upstream_connect_failed");
    }
}

TEST_CASE(
    "an exchange in flight across a reload finishes on the old upstream; the next request goes to the new "
    "one",
    "[e2e][reload]") {
    MockUpstream old_vendor([](const RecordedRequest& request) {
        if (request.target == "/api/slow") return MockReply::fixed(200, "old").with_delay(1500ms);
        return MockReply::fixed(200, "old");
    });
    MockUpstream new_vendor([](const RecordedRequest&) { return MockReply::fixed(200, "new"); });
    SluiceProcess sluice(reload_yaml(old_vendor.url(), "100", "1s"));
    const auto port = sluice.port("main");

    HttpClient kept_alive(port, 5s);  // a connection opened before the reload
    REQUIRE(kept_alive.get("/api/first").body == "old");
    std::string slow_body;
    std::thread slow([&] {
        HttpClient client(port, 5s);
        slow_body = client.get("/api/slow").body;
    });
    REQUIRE(old_vendor.wait_for_requests(2, 5s));

    rewrite(sluice, reload_yaml(new_vendor.url(), "100", "1s"));
    REQUIRE(post_reload(sluice).status == 200);
    CHECK(kept_alive.get("/api/second").body == "new");  // the same connection, the new config
    HttpClient fresh(port, 5s);
    CHECK(fresh.get("/api/third").body == "new");
    slow.join();
    CHECK(slow_body == "old");
    CHECK(old_vendor.request_count() == 2);
    CHECK(new_vendor.request_count() == 2);
}
