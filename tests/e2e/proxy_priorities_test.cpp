// Priority classes through the real sluice binary (docs/priorities.md): a request sent with
// `Sluice-Priority: interactive` overtakes a batch backlog, the header never reaches the
// vendor, and a class that does not exist is a 400 naming the classes. One short case
// (about a second): the ordering rules themselves are measured on the controller
// (tests/unit/queue/priority_test.cpp).

#include <algorithm>
#include <chrono>
#include <fstream>
#include <map>
#include <memory>
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
using Clock = std::chrono::steady_clock;

namespace {

// One limit of 1 per 250 ms; the route's requests are batch unless they say otherwise.
std::string priorities_yaml(const MockUpstream& upstream) {
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
priorities:
  classes: [interactive, default, batch]
  aging: 10s
limits:
  one: {algorithm: sliding_window, limit: 1, window: 250ms}
  shared:
    algorithm: sliding_window
    limit: 100
    window: 1s
    fair_share: {caller: {header: X-Caller}, weights: {svc-a: 2}}
queue: {max_depth: 100, max_wait: 10s}
routes:
  - name: fair
    match: {path_prefix: /fair/}
    upstream: vendor
    limits: [shared]
  - name: r
    upstream: vendor
    limits: [one]
    priority: batch
)",
                      {{"WORKERS", std::to_string(e2e_workers())}, {"URL", upstream.url()}});
}

std::size_t waiting(const SluiceProcess& sluice) {
    return admin_status(sluice)["queue"]["waiting"].get<std::size_t>();
}

// The access log's lines (stdout) once there are `count` of them, or after 10 s.
std::vector<nlohmann::json> access_lines(const SluiceProcess& sluice, std::size_t count) {
    const auto until = Clock::now() + 10s;
    std::vector<nlohmann::json> lines;
    while (true) {
        lines.clear();
        std::ifstream in(sluice.dir() + "/stdout.log");
        for (std::string line; std::getline(in, line);) {
            if (!line.empty()) lines.push_back(nlohmann::json::parse(line));
        }
        if (lines.size() >= count || Clock::now() >= until) return lines;
        std::this_thread::sleep_for(20ms);
    }
}

bool wait_for_waiting(const SluiceProcess& sluice, std::size_t count) {
    const auto until = Clock::now() + 3s;
    while (Clock::now() < until) {
        if (waiting(sluice) >= count) return true;
        std::this_thread::sleep_for(2ms);
    }
    return false;
}

}  // namespace

TEST_CASE("Sluice-Priority: interactive overtakes a batch backlog and is not forwarded",
          "[e2e][priorities]") {
    MockUpstream upstream;
    SluiceProcess sluice(priorities_yaml(upstream));
    HttpClient first(sluice.port("main"));
    REQUIRE(first.get("/x", {{"X-Id", "first"}}).status == 200);  // the window is now taken

    // A class that does not exist: refused at once, naming the classes; never forwarded.
    HttpClient wrong(sluice.port("main"));
    const auto refused = wrong.get("/x", {{"X-Id", "wrong"}, {"Sluice-Priority", "urgent"}});
    check_synthetic(refused, 400, "unknown_priority");
    CHECK(refused.body.find("interactive, default, batch") != std::string::npos);

    std::vector<std::unique_ptr<HttpClient>> batch;
    for (int i = 0; i < 3; ++i) {
        batch.push_back(std::make_unique<HttpClient>(sluice.port("main")));
        batch.back()->write_raw("GET /x HTTP/1.1\r\nHost: client.test\r\nX-Id: b" + std::to_string(i) +
                                "\r\n\r\n");
    }
    REQUIRE(wait_for_waiting(sluice, 3));
    HttpClient interactive(sluice.port("main"));
    interactive.write_raw(
        "GET /x HTTP/1.1\r\nHost: client.test\r\nX-Id: i\r\nSluice-Priority: interactive\r\n\r\n");
    CHECK(interactive.read_response().status == 200);
    for (auto& client : batch) CHECK(client->read_response().status == 200);

    auto requests = upstream.requests();
    std::stable_sort(
        requests.begin(), requests.end(),
        [](const RecordedRequest& a, const RecordedRequest& b) { return a.arrival < b.arrival; });
    std::vector<std::string> ids;
    for (const auto& r : requests) {
        ids.push_back(r.header("X-Id").value_or("?"));
        CHECK_FALSE(r.header("Sluice-Priority").has_value());
    }
    // The batch backlog arrived first, yet the interactive request was the next to go.
    CHECK(ids == std::vector<std::string>{"first", "i", "b0", "b1", "b2"});

    // A fair-shared limit's caller, from its header.
    HttpClient fair(sluice.port("main"));
    REQUIRE(fair.get("/fair/x", {{"X-Caller", "svc-a"}, {"Sluice-Priority", "interactive"}}).status == 200);

    // What an operator sees. The access log names each request's class and caller (the unknown
    // class was refused before it had one)...
    const auto lines = access_lines(sluice, 7);
    REQUIRE(lines.size() == 7);
    std::map<std::string, int> requests_of;
    for (const auto& line : lines) {
        INFO(line.dump());
        if (line["path"] == "/fair/x") {
            CHECK(line["caller"] == "svc-a");
            CHECK(line["priority"] == "interactive");
            continue;
        }
        CHECK(line["caller"].is_null());  // route r has no fair-shared limit
        if (line["status"] == 400) {
            CHECK(line["priority"].is_null());
            continue;
        }
        requests_of[line["priority"].get<std::string>()] += 1;
    }
    CHECK(requests_of == std::map<std::string, int>{{"batch", 4}, {"interactive", 1}});

    // ... and /metrics has each class's admissions and waits: the batch requests waited behind
    // the interactive one, which waited for one slot at most.
    HttpClient admin(sluice.admin_port());
    const auto metrics = admin.get("/metrics").body;
    INFO(metrics);
    const auto sample = [&](const std::string& name) {
        const auto at = metrics.find("\n" + name + " ");
        REQUIRE(at != std::string::npos);
        return std::stod(metrics.substr(at + name.size() + 2));
    };
    CHECK(sample(R"(sluice_class_admission_wait_seconds_count{class="batch"})") == 4);
    CHECK(sample(R"(sluice_class_admission_wait_seconds_count{class="interactive"})") == 2);
    CHECK(sample(R"(sluice_class_admission_wait_seconds_count{class="default"})") == 0);
    CHECK(sample(R"(sluice_class_admission_wait_seconds_sum{class="batch"})") >
          sample(R"(sluice_class_admission_wait_seconds_sum{class="interactive"})"));
    CHECK(sample(R"(sluice_class_waiting_requests{class="batch"})") == 0);
    CHECK(sample(R"(sluice_class_refusals_total{class="batch"})") == 0);
}
