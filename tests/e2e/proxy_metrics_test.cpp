// Issue 12: GET /metrics. The real binary in front of a mock vendor gets known
// traffic (forwarded, queued then forwarded, synthetic 429s, no route, a vendor
// 429, a refused upstream connection); one scrape must then show each count
// exactly, and Prometheus's own Python parser (python3-prometheus-client) must
// read the scrape back to the same values.

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "support/admin_status.hpp"
#include "support/http_client.hpp"
#include "support/mock_upstream.hpp"
#include "support/proxy_config.hpp"
#include "support/sluice_process.hpp"

using namespace sluice::test;
using namespace std::chrono_literals;

namespace {

std::string metrics_yaml(const std::string& vendor_url, std::uint16_t dead_port) {
    return yaml_subst(R"(server:
  workers: {WORKERS}
  timeouts: {client_header: 2s, client_body: 5s, client_idle: 10s, client_write: 5s}
  admin:
    listen: "127.0.0.1:0"
listeners:
  - name: main
    listen: "127.0.0.1:0"
upstreams:
  vendor:
    url: "{URL}"
    connect_timeout: 1s
    response_timeout: 5s
  dead:
    url: "http://127.0.0.1:{DEAD}"
    connect_timeout: 1s
    feedback: {enabled: false}
limits:
  one_at_a_time: {algorithm: concurrency, limit: 1}
  dry_run: {algorithm: sliding_window, limit: 1, window: 1m, enforce: false}
queue: {max_depth: 1, max_wait: 10s}
routes:
  - name: api
    match: {path_prefix: /api/}
    upstream: vendor
    limits: [one_at_a_time, dry_run]
  - name: limited
    match: {path_prefix: /limited/}
    upstream: vendor
    retry: {on_vendor_429: false}
  - name: down
    match: {path_prefix: /down/}
    upstream: dead
)",
                      {{"WORKERS", std::to_string(e2e_workers())},
                       {"URL", vendor_url},
                       {"DEAD", std::to_string(dead_port)}});
}

struct Scrape {
    std::string text;
    std::string content_type;
    std::map<std::string, double> samples;  // "name{labels}" as written -> value

    double at(const std::string& sample) const {
        const auto it = samples.find(sample);
        INFO("sample: " << sample);
        REQUIRE(it != samples.end());
        return it->second;
    }
};

Scrape scrape(const SluiceProcess& sluice) {
    HttpClient admin(sluice.admin_port(), 5s);
    const auto response = admin.get("/metrics");
    REQUIRE(response.status == 200);
    Scrape out;
    out.text = response.body;
    out.content_type = response.header("Content-Type").value_or("");
    std::istringstream in(out.text);
    for (std::string line; std::getline(in, line);) {
        if (line.empty() || line[0] == '#') continue;
        const auto space = line.rfind(' ');
        REQUIRE(space != std::string::npos);
        out.samples[line.substr(0, space)] = std::stod(line.substr(space + 1));
    }
    return out;
}

// Runs Prometheus's Python parser over the scrape; every sample as "name{labels}" -> value.
std::map<std::string, double> parse_with_prometheus_client(const SluiceProcess& sluice,
                                                           const std::string& text) {
    const auto scrape_path = sluice.dir() + "/scrape.txt";
    const auto script_path = sluice.dir() + "/parse_scrape.py";
    const auto out_path = sluice.dir() + "/parsed.json";
    std::ofstream(scrape_path) << text;
    std::ofstream(script_path) << R"(import json, sys
from prometheus_client.parser import text_string_to_metric_families
samples = []
with open(sys.argv[1]) as f:
    for family in text_string_to_metric_families(f.read()):
        for s in family.samples:
            labels = ",".join('%s="%s"' % (k, v) for k, v in s.labels.items())
            samples.append([s.name + ("{" + labels + "}" if labels else ""), s.value])
with open(sys.argv[2], "w") as out:
    json.dump(samples, out)
)";
    // Debian's interpreter, where python3-prometheus-client installs (a python3 earlier on PATH,
    // such as a pyenv shim, would not see it).
    const auto command = "/usr/bin/python3 " + script_path + " " + scrape_path + " " + out_path + " 2>" +
                         sluice.dir() + "/parse_errors.txt";
    const int status = std::system(command.c_str());
    std::ifstream errors(sluice.dir() + "/parse_errors.txt");
    const std::string error_text((std::istreambuf_iterator<char>(errors)), std::istreambuf_iterator<char>());
    INFO("prometheus_client: " << error_text);
    REQUIRE(status == 0);
    std::ifstream parsed(out_path);
    const auto samples = nlohmann::json::parse(parsed);
    std::map<std::string, double> out;
    for (const auto& s : samples) out[s[0].get<std::string>()] = s[1].get<double>();
    return out;
}

}  // namespace

TEST_CASE("a scrape of /metrics counts each kind of request exactly and parses with prometheus_client",
          "[e2e][metrics]") {
    MockUpstream vendor([](const RecordedRequest& request) {
        if (request.target.rfind("/api/slow", 0) == 0) return MockReply::echo().with_delay(2000ms);
        if (request.target.rfind("/limited/", 0) == 0)
            return MockReply::fixed(429, "{\"error\":\"slow down\"}", {{"Retry-After", "1"}});
        return MockReply::echo();
    });
    SluiceProcess sluice(metrics_yaml(vendor.url(), closed_port()));
    const auto port = sluice.port("main");

    // Three forwarded at once, one after the other on one connection.
    {
        HttpClient client(port);
        for (int i = 0; i < 3; ++i) REQUIRE(client.get("/api/fast").status == 200);
    }
    // A slow one (2 s) holds the only permit; the next one waits in the queue (depth 1),
    // and two more find the queue full.
    // Catch2's assertions are not thread-safe: the threads keep their statuses, checked after join().
    std::atomic<unsigned> slow_status{0};
    std::atomic<unsigned> queued_status{0};
    std::thread slow([port, &slow_status] {
        HttpClient client(port);
        slow_status = client.get("/api/slow").status;
    });
    REQUIRE(vendor.wait_for_requests(4, 5s));
    std::thread queued([port, &queued_status] {
        HttpClient client(port);
        queued_status = client.get("/api/queued").status;
    });
    REQUIRE(wait_until(
        [&] { return scrape(sluice).at(R"(sluice_route_waiting_requests{route="api"})") == 1; }, 3s));
    {
        HttpClient client(port);
        for (int i = 0; i < 2; ++i) {
            const auto refused = client.get("/api/refused-q7");
            CHECK(refused.status == 429);
            CHECK(refused.header("Sluice-Error") == "queue_full");
        }
    }
    slow.join();
    queued.join();
    CHECK(slow_status == 200);
    CHECK(queued_status == 200);
    {
        HttpClient client(port);
        CHECK(client.get("/nowhere").status == 404);    // no route
        CHECK(client.get("/limited/x").status == 429);  // the vendor's own 429, relayed
        const auto down = client.get("/down/x");        // connection refused
        CHECK(down.status == 502);
        CHECK(down.header("Sluice-Error") == "upstream_connect_failed");
    }
    REQUIRE(wait_until([&] { return scrape(sluice).at("sluice_client_connections_open") == 0; }, 3s));

    const auto s = scrape(sluice);
    INFO(s.text);
    CHECK(s.content_type == "text/plain; version=0.0.4; charset=utf-8");
    // Outcomes, per route.
    CHECK(s.at(R"(sluice_requests_total{outcome="forwarded",route="api"})") == 4);
    CHECK(s.at(R"(sluice_requests_total{outcome="queued_then_forwarded",route="api"})") == 1);
    CHECK(s.at(R"(sluice_requests_total{code="queue_full",outcome="synthetic_429",route="api"})") == 2);
    CHECK(s.at(R"(sluice_requests_total{code="admission_timeout",outcome="synthetic_429",route="api"})") ==
          0);
    CHECK(s.at(R"(sluice_requests_total{outcome="forwarded",route="limited"})") == 1);
    CHECK(
        s.at(
            R"(sluice_requests_total{code="upstream_connect_failed",outcome="upstream_error",route="down"})") ==
        1);
    CHECK(s.at(R"(sluice_requests_total{outcome="forwarded",route="down"})") == 0);
    CHECK(s.at(R"(sluice_requests_total{code="no_route",outcome="no_route"})") == 1);
    // Five admissions through a shadow limit of 1 per minute: four it would have refused.
    CHECK(s.at(R"(sluice_shadow_would_refuse_total{route="api"})") == 4);
    CHECK(s.at(R"(sluice_limit_shadow_would_refuse_total{limit="dry_run"})") == 4);
    CHECK(s.at(R"(sluice_route_waiting_requests{route="api"})") == 0);
    CHECK(s.at(R"(sluice_route_queue_max_depth{route="api"})") == 1);
    // Admission waits: five admitted on api, one after waiting for the slow one (up to 2 s).
    CHECK(s.at(R"(sluice_admission_wait_seconds_count{route="api"})") == 5);
    CHECK(s.at(R"(sluice_admission_wait_seconds_bucket{route="api",le="0.001"})") == 4);
    CHECK(s.at(R"(sluice_admission_wait_seconds_bucket{route="api",le="+Inf"})") == 5);
    CHECK(s.at(R"(sluice_admission_wait_seconds_sum{route="api"})") > 0.3);
    CHECK(s.at(R"(sluice_admission_wait_seconds_sum{route="api"})") < 10);
    CHECK(s.at(R"(sluice_admission_wait_seconds_count{route="limited"})") == 1);
    CHECK(s.at(R"(sluice_admission_wait_seconds_count{route="down"})") == 1);
    // The vendor's answers: five 2xx and one 429; the dead upstream answered nothing.
    CHECK(s.at(R"(sluice_upstream_responses_total{class="2xx",upstream="vendor"})") == 5);
    CHECK(s.at(R"(sluice_upstream_responses_total{class="4xx",upstream="vendor"})") == 1);
    CHECK(s.at(R"(sluice_upstream_responses_total{class="5xx",upstream="vendor"})") == 0);
    CHECK(s.at(R"(sluice_upstream_429_responses_total{upstream="vendor"})") == 1);
    CHECK(s.at(R"(sluice_upstream_responses_total{class="2xx",upstream="dead"})") == 0);
    CHECK(s.at(R"(sluice_upstream_response_seconds_count{upstream="vendor"})") == 6);
    CHECK(s.at(R"(sluice_upstream_response_seconds_bucket{upstream="vendor",le="0.5"})") <= 5);
    CHECK(s.at(R"(sluice_upstream_response_seconds_sum{upstream="vendor"})") >= 2.0);
    CHECK(s.at(R"(sluice_upstream_response_seconds_count{upstream="dead"})") == 0);
    // Pools.
    CHECK(s.at(R"(sluice_pool_connect_failures_total{upstream="dead"})") == 1);
    CHECK(s.at(R"(sluice_pool_connect_failures_total{upstream="vendor"})") == 0);
    CHECK(s.at(R"(sluice_pool_tls_failures_total{upstream="dead"})") == 0);
    CHECK(s.at(R"(sluice_pool_open_connections{upstream="dead"})") == 0);
    CHECK(s.at(R"(sluice_pool_busy_connections{upstream="vendor"})") == 0);
    CHECK(s.at(R"(sluice_pool_connections_opened_total{upstream="vendor"})") >= 1);
    // Limits.
    CHECK(s.at(R"(sluice_limit_configured{limit="one_at_a_time"})") == 1);
    CHECK(s.at(R"(sluice_limit_used_units{limit="one_at_a_time"})") == 0);
    CHECK(s.at(R"(sluice_limit_admitted_total{limit="one_at_a_time"})") == 5);
    CHECK(s.at(R"(sluice_limit_queued_total{limit="one_at_a_time"})") == 1);
    CHECK(s.at(R"(sluice_limit_waiting_requests{limit="one_at_a_time"})") == 0);
    CHECK(s.at(R"(sluice_limit_used_units{limit="dry_run"})") == 1);
    // Vendor feedback: the 429 with Retry-After: 1 paused the route's vendor gate for 1 s.
    CHECK(s.at(R"(sluice_feedback_vendor_429_total{route="limited"})") == 1);
    CHECK(s.at(R"(sluice_feedback_pauses_total{route="limited"})") == 1);
    CHECK(s.at(R"(sluice_feedback_paused_seconds_total{route="limited"})") == Approx(1.0).margin(0.01));
    CHECK(s.at(R"(sluice_feedback_relayed_429_total{route="limited"})") == 1);
    CHECK(s.at(R"(sluice_feedback_retries_total{route="limited"})") == 0);
    CHECK(s.at(R"(sluice_feedback_pauses_total{route="api"})") == 0);
    // Process.
    CHECK(s.at("sluice_config_generation") == 1);
    // The access log is on by default (stdout): nothing dropped on a quiet run.
    CHECK(s.at("sluice_access_log_lines_dropped_total") == 0);
    CHECK(s.at("sluice_config_last_load_success") == 1);
    CHECK(s.at("sluice_process_start_time_seconds") > 1.7e9);
    CHECK(s.text.find("sluice_build_info{commit=\"") != std::string::npos);
    // Nothing a client sent is a label: no path, no query.
    CHECK(s.text.find("/api/") == std::string::npos);
    CHECK(s.text.find("refused-q7") == std::string::npos);
    CHECK(s.text.find("nowhere") == std::string::npos);

    // The same scrape, read by Prometheus's own parser: the same samples, the same values.
    const auto parsed = parse_with_prometheus_client(sluice, s.text);
    CHECK(parsed.size() == s.samples.size());
    for (const auto& [sample, value] : s.samples) {
        INFO("sample: " << sample);
        const auto it = parsed.find(sample);
        REQUIRE(it != parsed.end());
        CHECK(it->second == Approx(value));
    }

    // /status carries the same counts.
    const auto status = admin_status(sluice);
    CHECK(status["routes"]["api"]["forwarded"] == 4);
    CHECK(status["routes"]["api"]["queued_then_forwarded"] == 1);
    CHECK(status["routes"]["api"]["synthetic_429"] == 2);
    CHECK(status["routes"]["down"]["upstream_errors"] == 1);
    for (const auto& upstream : status["upstreams"]) {
        if (upstream["name"] != "vendor") continue;
        CHECK(upstream["responses"]["2xx"] == 5);
        CHECK(upstream["responses"]["4xx"] == 1);
        CHECK(upstream["responses_429"] == 1);
    }
}

TEST_CASE("with admin.token_file, /metrics answers only with the bearer token", "[e2e][metrics][security]") {
    const std::string token = "metrics-scrape-token-0123456789";
    const auto dir =
        std::filesystem::temp_directory_path() / ("sluice-metrics-token-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    const auto token_path = (dir / "token").string();
    std::ofstream(token_path) << token << "\n";
    MockUpstream upstream;
    ProxyConfig config{upstream.url()};
    config.admin = {"token_file: \"" + token_path + "\""};
    SluiceProcess sluice(config.yaml());
    HttpClient admin(sluice.admin_port(), 5s);
    const auto refused = admin.get("/metrics");
    CHECK(refused.status == 401);
    CHECK(refused.body.find("sluice_") == std::string::npos);
    const auto wrong = admin.get("/metrics", {{"Authorization", "Bearer " + token + "x"}});
    CHECK(wrong.status == 401);
    const auto scraped = admin.get("/metrics", {{"Authorization", "Bearer " + token}});
    CHECK(scraped.status == 200);
    CHECK(scraped.body.find("# TYPE sluice_requests_total counter") != std::string::npos);
    // The token is no label value and is nowhere in the scrape.
    CHECK(scraped.body.find(token) == std::string::npos);
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
}
