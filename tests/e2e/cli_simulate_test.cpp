// `sluice simulate` against the daemon it simulates (docs/simulate.md): the real sluice runs
// traffic through a binding limit and logs it; `sluice simulate` replays that access log with
// the same config, and every request's simulated outcome must be what the daemon did.

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "support/http_client.hpp"
#include "support/mock_upstream.hpp"
#include "support/proxy_config.hpp"
#include "support/sluice_process.hpp"

using namespace sluice::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

std::string read_text(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

std::size_t count_lines(const std::string& text) {
    return static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n'));
}

// What the daemon did, by the access log's line: at once (forwarded, never queued), delayed
// (forwarded after waiting), or refused with the sluice error code it answered with.
std::string daemon_outcome(const json& line) {
    const auto answered_by = line["answered_by"].get<std::string>();
    if (answered_by != "vendor") return "refused:" + answered_by;
    return line["queue_wait_seconds"].get<double>() > 0 ? "delayed" : "at_once";
}

std::string simulated_outcome(const json& request) {
    const auto outcome = request["outcome"].get<std::string>();
    return outcome == "refused" ? "refused:" + request["code"].get<std::string>() : outcome;
}

}  // namespace

TEST_CASE("sluice simulate replays the daemon's access log to the same decisions", "[e2e][simulate]") {
    MockUpstream upstream([](const RecordedRequest&) { return MockReply::fixed(200, "ok"); });
    // 5 per second on both routes: /wait/ queues 2 at most for up to 3 s, /quick/ waits 200 ms at most.
    const auto yaml = yaml_subst(R"(server:
  workers: {WORKERS}
  admin: {listen: "127.0.0.1:0"}
listeners:
  - {name: main, listen: "127.0.0.1:0"}
upstreams:
  vendor: {url: "{URL}"}
limits:
  five: {algorithm: sliding_window, limit: 5, window: 1s}
routes:
  - {name: wait, match: {path_prefix: /wait/}, upstream: vendor, limits: [five], queue: {max_wait: 3s, max_depth: 2}}
  - {name: quick, match: {path_prefix: /quick/}, upstream: vendor, limits: [five], queue: {max_wait: 200ms}}
)",
                                 {{"WORKERS", std::to_string(e2e_workers())}, {"URL", upstream.url()}});
    SluiceProcess sluice(yaml);
    const auto log_path = sluice.dir() + "/stdout.log";
    const auto port = sluice.port("main");

    // Eight requests 20 ms apart: five go at once, two wait about a second (the queue's bound),
    // the eighth finds the queue full. At 200 ms one on /quick/ cannot go within its 200 ms
    // (admission_timeout); at 1.3 s the window has room again for one at once.
    std::vector<std::pair<std::chrono::milliseconds, std::string>> plan;
    for (int i = 0; i < 8; ++i)
        plan.emplace_back(std::chrono::milliseconds(20 * i), "/wait/" + std::to_string(i));
    plan.emplace_back(200ms, "/quick/late");
    plan.emplace_back(1300ms, "/wait/again");
    const auto start = std::chrono::steady_clock::now();
    std::vector<std::thread> clients;
    std::vector<unsigned> statuses(plan.size(), 0);
    for (std::size_t i = 0; i < plan.size(); ++i) {
        std::this_thread::sleep_until(start + plan[i].first);
        clients.emplace_back([&, i] {
            HttpClient client(port);
            statuses[i] = client.get(plan[i].second, {{"Host", "api.example.com"}}).status;
        });
    }
    for (auto& client : clients) client.join();
    const auto run_time = std::chrono::steady_clock::now() - start;
    CHECK(run_time < 3s);
    CHECK(std::count(statuses.begin(), statuses.end(), 200u) == 8);
    CHECK(std::count(statuses.begin(), statuses.end(), 429u) == 2);

    // The writer thread writes each line shortly after its request ends.
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (count_lines(read_text(log_path)) < plan.size() && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(20ms);
    const auto log_text = read_text(log_path);
    REQUIRE(count_lines(log_text) == plan.size());
    // The log under test is kept next to the config (the daemon's folder, removed with it).
    const auto traffic_path = sluice.dir() + "/traffic.log";
    std::ofstream(traffic_path) << log_text;
    const auto json_path = sluice.dir() + "/simulated.json";
    const auto simulated = run_sluice_command({"simulate", "--config", sluice.config_path(), "--traffic",
                                               traffic_path, "--json", json_path, "--per-request"});
    INFO(log_text << simulated.stdout_text << simulated.stderr_text);
    REQUIRE(simulated.exit_code == 0);
    CHECK(simulated.stdout_text.find("10 requests from " + traffic_path + " (access)") != std::string::npos);
    CHECK(simulated.stdout_text.find("forwarded at once 6, delayed 2, refused 2 (") != std::string::npos);
    // The command's own comparison with the log (report.hpp, compare_with_log) says the same.
    CHECK(simulated.stdout_text.find("against the log: the same outcome for 10 of 10 requests") !=
          std::string::npos);

    const auto report = json::parse(read_text(json_path));
    const auto& requests = report["requests"];
    REQUIRE(requests.size() == plan.size());
    std::vector<json> logged;
    std::istringstream lines(log_text);
    for (std::string line; std::getline(lines, line);) logged.push_back(json::parse(line));
    std::size_t delayed = 0;
    for (const auto& request : requests) {
        const auto& line = logged.at(request["line"].get<std::size_t>() - 1);
        INFO(line.dump() << "\nsimulated: " << request.dump());
        CHECK(simulated_outcome(request) == daemon_outcome(line));
        if (request["outcome"] == "delayed") {
            ++delayed;
            // Within 30 ms: the log's times are in milliseconds (1 ms each way); the daemon's
            // timer fires a little after the exact moment and its wait is measured from after the
            // head was read and routed, where the simulation's clock is exact; a loaded CI machine
            // adds a few ms of scheduling to the daemon's side.
            const double simulated_wait = request["delay_seconds"].get<double>();
            const double logged_wait = line["queue_wait_seconds"].get<double>();
            CHECK(std::abs(simulated_wait - logged_wait) <= 0.030);
            CHECK(simulated_wait == Approx(0.9).margin(0.05));  // when the first five leave the window
        }
    }
    CHECK(delayed == 2);
    CHECK(report["totals"]["refused"]["queue_full"] == 1);
    CHECK(report["totals"]["refused"]["admission_timeout"] == 1);
    CHECK(report["limits"][0]["peak_usage"] == 5);
}
