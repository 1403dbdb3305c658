// The access log (docs/operations.md, "The access log"): one JSON line per request on every
// path, no secret in any line (nor in /status or /metrics), a blocked stdout that
// never slows requests, the flush at shutdown; and the admin token from the environment.

#include <algorithm>
#include <chrono>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>
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

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> lines;
    std::size_t at = 0;
    while (at < text.size()) {
        const auto end = text.find('\n', at);
        if (end == std::string::npos) break;  // a line not yet whole
        lines.push_back(text.substr(at, end - at));
        at = end + 1;
    }
    return lines;
}

// The writer thread writes shortly after each request: wait (bounded) for `count` lines.
std::vector<json> wait_for_lines(const std::string& path, std::size_t count,
                                 std::chrono::milliseconds timeout = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::vector<std::string> lines;
    while (true) {
        lines = lines_of(read_text(path));
        if (lines.size() >= count || std::chrono::steady_clock::now() >= deadline) break;
        std::this_thread::sleep_for(20ms);
    }
    std::vector<json> parsed;
    for (const auto& line : lines) {
        INFO(line);
        parsed.push_back(json::parse(line));  // throws (fails the test) on a line that is not JSON
    }
    return parsed;
}

// The line's fields that do not depend on timing, for exact comparison.
json stable_fields(json line) {
    for (const char* key : {"time", "queue_wait_seconds", "upstream_seconds", "bytes_out"}) line.erase(key);
    return line;
}

// /status's access_log counters once `written` has reached `count` (the writer counts a
// line just after its write returns: a moment after the line can be read), or at the timeout.
json wait_for_written(std::uint16_t admin_port, std::uint64_t count,
                      std::chrono::milliseconds timeout = 10s) {
    HttpClient admin(admin_port);
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (true) {
        auto counts = admin.get("/status").json()["access_log"];
        if (counts["written"].get<std::uint64_t>() >= count || std::chrono::steady_clock::now() >= deadline)
            return counts;
        std::this_thread::sleep_for(20ms);
    }
}

const std::regex kRfc3339Ms(R"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z)");

}  // namespace

TEST_CASE("each request becomes one exact JSON line on stdout, whatever answered it", "[e2e][access-log]") {
    MockUpstream upstream([](const RecordedRequest& request) {
        return request.method == "POST" ? MockReply::fixed(201, "created") : MockReply::fixed(200, "hello");
    });
    const auto yaml = yaml_subst(R"(server:
  workers: {WORKERS}
  admin: {listen: "127.0.0.1:0"}
listeners:
  - {name: main, listen: "127.0.0.1:0"}
upstreams:
  vendor: {url: "{URL}"}
  gone: {url: "http://127.0.0.1:{CLOSED}", connect_timeout: 2s}
limits:
  once: {algorithm: fixed_window, limit: 1, window: 1h}
routes:
  - {name: items, match: {path_prefix: /v1/}, upstream: vendor}
  - {name: tight, match: {path_prefix: /tight/}, upstream: vendor, limits: [once], queue: {max_wait: 0s}}
  - {name: broken, match: {path_prefix: /broken/}, upstream: gone}
)",
                                 {{"WORKERS", std::to_string(e2e_workers())},
                                  {"URL", upstream.url()},
                                  {"CLOSED", std::to_string(closed_port())}});
    SluiceProcess sluice(yaml);
    const auto log_path = sluice.dir() + "/stdout.log";
    HttpClient client(sluice.port("main"));

    const std::string get = "GET /v1/items?page=2 HTTP/1.1\r\nHost: api.example.com\r\n\r\n";
    client.write_raw(get);
    REQUIRE(client.read_response().status == 200);
    const std::string post =
        "POST /v1/items HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 5\r\n\r\nhello";
    client.write_raw(post);
    REQUIRE(client.read_response().status == 201);
    REQUIRE(client.get("/elsewhere").status == 404);
    REQUIRE(client.get("/tight/a").status == 200);
    REQUIRE(client.get("/tight/b").status == 429);
    REQUIRE(client.get("/broken/x").status == 502);
    HttpClient garbage(sluice.port("main"));
    const std::string malformed = "NOT HTTP AT ALL\r\n\r\n";
    garbage.write_raw(malformed);
    REQUIRE(garbage.read_response().status == 400);

    auto lines = wait_for_lines(log_path, 7);
    REQUIRE(lines.size() == 7);
    // One connection's lines come in its order; the malformed request's, on a connection of
    // its own, may come before the last of them (another io thread): it goes last here.
    const auto malformed_line =
        std::find_if(lines.begin(), lines.end(), [](const json& line) { return line["method"].is_null(); });
    REQUIRE(malformed_line != lines.end());
    std::rotate(malformed_line, malformed_line + 1, lines.end());
    for (const auto& line : lines) {
        INFO(line.dump());
        CHECK(std::regex_match(line["time"].get<std::string>(), kRfc3339Ms));
        CHECK(line["queue_wait_seconds"].get<double>() >= 0.0);
        CHECK(line["bytes_out"].get<std::uint64_t>() > 0);
        CHECK(line.size() == 16);  // no field beyond the documented ones (query is off)
    }
    CHECK(
        stable_fields(lines[0]) ==
        json::parse(R"({"route":"items","priority":null,"caller":null,"method":"GET","host":"api.example.com",
        "path":"/v1/items","status":200,"answered_by":"vendor","bytes_in":)" +
                    std::to_string(get.size()) + R"(,"attempts":1,"delayed_by":[],"complete":true})"));
    CHECK(lines[0]["upstream_seconds"].get<double>() >= 0.0);
    CHECK(stable_fields(lines[1]) ==
          json::parse(
              R"({"route":"items","priority":null,"caller":null,"method":"POST","host":"api.example.com",
        "path":"/v1/items","status":201,"answered_by":"vendor","bytes_in":)" +
              std::to_string(post.size()) + R"(,"attempts":1,"delayed_by":[],"complete":true})"));
    CHECK(stable_fields(lines[2]) ==
          json::parse(R"({"route":null,"priority":null,"caller":null,"method":"GET","host":"127.0.0.1",
        "path":"/elsewhere","status":404,"answered_by":"no_route","bytes_in":)" +
                      std::to_string(lines[2]["bytes_in"].get<std::uint64_t>()) +
                      R"(,"attempts":0,"delayed_by":[],"complete":true})"));
    CHECK(lines[2]["upstream_seconds"].is_null());
    CHECK(lines[3]["route"] == "tight");
    CHECK(lines[3]["status"] == 200);
    CHECK(lines[3]["delayed_by"] == json::array());
    CHECK(stable_fields(lines[4]) ==
          json::parse(R"({"route":"tight","priority":null,"caller":null,"method":"GET","host":"127.0.0.1",
        "path":"/tight/b","status":429,"answered_by":"admission_timeout","bytes_in":)" +
                      std::to_string(lines[4]["bytes_in"].get<std::uint64_t>()) +
                      R"(,"attempts":0,"delayed_by":["once"],"complete":true})"));
    CHECK(lines[4]["upstream_seconds"].is_null());
    CHECK(lines[5]["route"] == "broken");
    CHECK(lines[5]["status"] == 502);
    CHECK(lines[5]["answered_by"] == "upstream_connect_failed");
    CHECK(lines[5]["attempts"] == 1);
    CHECK(lines[5]["upstream_seconds"].is_number());
    CHECK(stable_fields(lines[6]) ==
          json::parse(R"({"route":null,"priority":null,"caller":null,"method":null,"host":null,"path":null,
        "status":400,"answered_by":"malformed_request","bytes_in":)" +
                      std::to_string(lines[6]["bytes_in"].get<std::uint64_t>()) +
                      R"(,"attempts":0,"delayed_by":[],"complete":true})"));
    CHECK(lines[6]["bytes_in"].get<std::uint64_t>() <= malformed.size());

    CHECK(wait_for_written(sluice.admin_port(), 7) ==
          json({{"enabled", true}, {"written", 7}, {"dropped", 0}}));
}

TEST_CASE("a request that waited names the limit that delayed it and how long it waited",
          "[e2e][access-log]") {
    MockUpstream upstream;
    const auto yaml = yaml_subst(R"(server:
  workers: {WORKERS}
  admin: {listen: "127.0.0.1:0"}
listeners:
  - {name: main, listen: "127.0.0.1:0"}
upstreams:
  vendor: {url: "{URL}"}
limits:
  slow: {algorithm: token_bucket, rate: 1/300ms, burst: 1}
routes:
  - {name: paced, upstream: vendor, limits: [slow], queue: {max_wait: 10s}}
)",
                                 {{"WORKERS", std::to_string(e2e_workers())}, {"URL", upstream.url()}});
    SluiceProcess sluice(yaml);
    HttpClient client(sluice.port("main"));
    REQUIRE(client.get("/first").status == 200);
    REQUIRE(client.get("/second").status == 200);  // waits for the next token
    const auto lines = wait_for_lines(sluice.dir() + "/stdout.log", 2);
    REQUIRE(lines.size() == 2);
    CHECK(lines[0]["delayed_by"] == json::array());
    CHECK(lines[1]["delayed_by"] == json::array({"slow"}));
    // The bucket refills one token per 300 ms: the second waited for most of it (bounds
    // generous for a loaded machine: the lower one is the limit's own guarantee).
    CHECK(lines[1]["queue_wait_seconds"].get<double>() >= 0.1);
    CHECK(lines[1]["queue_wait_seconds"].get<double>() < 5.0);
    CHECK(lines[1]["status"] == 200);
}

TEST_CASE("no secret a client sends reaches the access log, stderr, /status, /metrics or /v1/limits",
          "[e2e][access-log][security]") {
    MockUpstream upstream;
    const auto yaml = yaml_subst(R"(server:
  workers: {WORKERS}
  admin: {listen: "127.0.0.1:0"}
  access_log: {log_query: true}
listeners:
  - {name: main, listen: "127.0.0.1:0"}
upstreams:
  vendor: {url: "{URL}"}
limits:
  by-header: {algorithm: sliding_window, limit: 1000, window: 1h, key: {header: X-Api-Key}}
  by-query: {algorithm: sliding_window, limit: 1000, window: 1h, key: {query: api_key}}
  by-auth: {algorithm: sliding_window, limit: 1000, window: 1h, key: {header: Authorization}}
routes:
  - {name: api, upstream: vendor, limits: [by-header, by-query, by-auth]}
)",
                                 {{"WORKERS", std::to_string(e2e_workers())}, {"URL", upstream.url()}});
    SluiceProcess sluice(yaml);
    const std::vector<std::string> secrets = {"SECRETauthorization1", "SECRETcookie2", "SECRETproxyauth3",
                                              "SECRETkeyheader4",     "SECRETquery5",  "SECRETquerycase6",
                                              "SECRETqueryenc7"};
    HttpClient client(sluice.port("main"));
    const Headers headers = {{"Authorization", "Bearer " + secrets[0]},
                             {"Cookie", "session=" + secrets[1]},
                             {"Proxy-Authorization", "Basic " + secrets[2]},
                             {"X-Api-Key", secrets[3]}};
    REQUIRE(client.get("/v1/a?page=1&api_key=" + secrets[4], headers).status == 200);
    REQUIRE(client.get("/v1/b?API_KEY=" + secrets[5] + "&page=2", headers).status == 200);
    REQUIRE(client.get("/v1/c?api%5Fkey=" + secrets[6], headers).status == 200);
    // Refused before routing, and a malformed one: their lines carry no secret either.
    client.write_raw("GET /v1/d?api_key=" + secrets[4] +
                     " HTTP/1.1\r\nHost: a\r\nHost: b\r\nAuthorization: " + secrets[0] + "\r\n\r\n");
    REQUIRE(client.read_response().status == 400);

    const auto lines = wait_for_lines(sluice.dir() + "/stdout.log", 4);
    REQUIRE(lines.size() == 4);
    CHECK(lines[0]["query"] == "page=1&api_key=REDACTED");
    CHECK(lines[1]["query"] == "API_KEY=REDACTED&page=2");
    CHECK(lines[2]["query"] == "api%5Fkey=REDACTED");

    HttpClient admin(sluice.admin_port());
    const auto status = admin.get("/status");
    REQUIRE(status.status == 200);
    const auto metrics = admin.get("/metrics");
    std::vector<std::pair<std::string, std::string>> places = {
        {"stdout (the access log)", read_text(sluice.dir() + "/stdout.log")},
        {"stderr", sluice.stderr_text()},
        {"/status", status.body}};
    REQUIRE(metrics.status == 200);
    places.emplace_back("/metrics", metrics.body);
    const auto limits = admin.get("/v1/limits");
    REQUIRE(limits.status == 200);
    places.emplace_back("/v1/limits", limits.body);
    for (const auto& [where, text] : places) {
        for (const auto& secret : secrets) {
            INFO(where << " must not contain " << secret);
            CHECK(text.find(secret) == std::string::npos);
        }
    }
}

TEST_CASE(
    "a stdout pipe nobody reads neither slows requests nor stops shutdown; lines are dropped and counted",
    "[e2e][access-log]") {
    // The test holds the read end open and never reads: the pipe's 64 KiB fill, then the
    // 64 KiB buffer, and every later line is dropped.
    const auto fifo =
        std::filesystem::temp_directory_path() / ("sluice-access-log-fifo-" + std::to_string(::getpid()));
    std::filesystem::remove(fifo);
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    const int reader = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    REQUIRE(reader >= 0);
    MockUpstream upstream;
    ProxyConfig config{upstream.url()};
    auto yaml = config.yaml();
    const auto server = yaml.find("server:\n");
    REQUIRE(server != std::string::npos);
    yaml.insert(server + 8, "  access_log: {buffer_bytes: 64KiB}\n");
    SluiceProcess::Options options;
    options.stdout_path = fifo.string();
    {
        SluiceProcess sluice(yaml, options);
        HttpClient client(sluice.port("vendor"));
        constexpr int kRequests = 1000;  // lines of ~250 bytes: about twice what pipe and buffer hold
        const auto began = std::chrono::steady_clock::now();
        auto slowest = std::chrono::steady_clock::duration::zero();
        for (int i = 0; i < kRequests; ++i) {
            const auto sent = std::chrono::steady_clock::now();
            REQUIRE(client.get("/padding-to-make-the-line-longer/" + std::to_string(i)).status == 200);
            slowest = std::max(slowest, std::chrono::steady_clock::now() - sent);
        }
        const auto took = std::chrono::steady_clock::now() - began;
        INFO(kRequests << " requests took " << std::chrono::duration<double>(took).count()
                       << " s, the slowest " << std::chrono::duration<double>(slowest).count() << " s");
        // A writer that blocked the io thread would stop every request at the first full
        // pipe; bounds for a loaded machine under a sanitizer.
        CHECK(slowest < 3s);
        HttpClient admin(sluice.admin_port());
        const auto counts = admin.get("/status").json()["access_log"];
        INFO(counts.dump());
        CHECK(counts["dropped"].get<std::uint64_t>() > 0);
        CHECK(counts["written"].get<std::uint64_t>() + counts["dropped"].get<std::uint64_t>() <= kRequests);
        CHECK(counts["written"].get<std::uint64_t>() < kRequests);
        // /metrics exports the same counters (the writer may have written a few more since).
        const auto metrics = admin.get("/metrics").body;
        CHECK(metrics.find("\nsluice_access_log_lines_dropped_total " +
                           std::to_string(counts["dropped"].get<std::uint64_t>())) != std::string::npos);
        CHECK(metrics.find("\nsluice_access_log_lines_written_total ") != std::string::npos);
        // Shutdown gives up on the pipe after the flush timeout (2 s) instead of hanging.
        const auto stopped_at = std::chrono::steady_clock::now();
        const auto exit = sluice.stop(std::chrono::seconds(15));
        CHECK(exit.exited);
        CHECK(exit.code == 0);
        CHECK_FALSE(exit.needed_sigkill);
        CHECK(std::chrono::steady_clock::now() - stopped_at < 12s);
    }
    ::close(reader);
    std::filesystem::remove(fifo);
}

TEST_CASE("lines still buffered at SIGTERM are written before sluice exits", "[e2e][access-log]") {
    MockUpstream upstream;
    SluiceProcess sluice(ProxyConfig{upstream.url()}.yaml());
    HttpClient client(sluice.port("vendor"));
    for (int i = 0; i < 50; ++i) REQUIRE(client.get("/x/" + std::to_string(i)).status == 200);
    client.close();
    const auto exit = sluice.stop(std::chrono::seconds(10));
    CHECK(exit.code == 0);
    const auto lines = lines_of(read_text(sluice.dir() + "/stdout.log"));
    CHECK(lines.size() == 50);
    for (std::size_t i = 0; i < lines.size(); ++i)
        CHECK(json::parse(lines[i])["path"] == "/x/" + std::to_string(i));
}

TEST_CASE("the access log goes to a file when given a path, and nowhere when off", "[e2e][access-log]") {
    MockUpstream upstream;
    ProxyConfig config{upstream.url()};
    const auto file = std::filesystem::temp_directory_path() /
                      ("sluice-access-log-" + std::to_string(::getpid()) + ".jsonl");
    std::filesystem::remove(file);
    for (const bool enabled : {true, false}) {
        auto yaml = config.yaml();
        yaml.insert(yaml.find("server:\n") + 8,
                    "  access_log: {enabled: " + std::string(enabled ? "true" : "false") + ", path: \"" +
                        file.string() + "\"}\n");
        SluiceProcess sluice(yaml);
        HttpClient client(sluice.port("vendor"));
        REQUIRE(client.get("/to-the-file").status == 200);
        HttpClient admin(sluice.admin_port());
        if (enabled) {
            const auto lines = wait_for_lines(file.string(), 1);
            REQUIRE(lines.size() == 1);
            CHECK(lines[0]["path"] == "/to-the-file");
            CHECK(wait_for_written(sluice.admin_port(), 1)["written"] == 1);
        } else {
            CHECK(admin.get("/status").json()["access_log"] ==
                  json({{"enabled", false}, {"written", 0}, {"dropped", 0}}));
            sluice.stop();
            CHECK(lines_of(read_text(file.string())).size() == 1);  // the first run's line only
        }
        CHECK(read_text(sluice.dir() + "/stdout.log").empty());
    }
    std::filesystem::remove(file);
}

TEST_CASE("an access log file that cannot be opened stops sluice at start, naming it", "[e2e][access-log]") {
    MockUpstream upstream;
    auto yaml = ProxyConfig{upstream.url()}.yaml();
    yaml.insert(yaml.find("server:\n") + 8, "  access_log: {path: /nonexistent-dir/access.log}\n");
    CHECK_THROWS_WITH(SluiceProcess(yaml),
                      Catch::Contains("access_log path /nonexistent-dir/access.log: cannot be opened"));
}

TEST_CASE("admin.token_env: the token comes from the environment; an unset variable stops sluice at start",
          "[e2e][access-log][admin][security]") {
    constexpr const char* kToken = "env-token-0123456789abcdef";
    MockUpstream upstream;
    ProxyConfig config{upstream.url()};
    config.admin = {"token_env: SLUICE_E2E_ADMIN_TOKEN"};
    SECTION("set: every admin endpoint but the probes needs it") {
        SluiceProcess::Options options;
        options.environment = {std::string("SLUICE_E2E_ADMIN_TOKEN=") + kToken};
        SluiceProcess sluice(config.yaml(), options);
        HttpClient admin(sluice.admin_port());
        CHECK(admin.get("/healthz").status == 200);
        CHECK(admin.get("/status").status == 401);
        CHECK(admin.get("/status", {{"Authorization", "Bearer wrong-token-0123456789"}}).status == 401);
        CHECK(admin.get("/status", {{"Authorization", std::string("Bearer ") + kToken}}).status == 200);
        CHECK(sluice.stderr_text().find(kToken) == std::string::npos);
    }
    SECTION("unset: a start error naming the variable") {
        CHECK_THROWS_WITH(
            SluiceProcess(config.yaml()),
            Catch::Contains("admin token_env SLUICE_E2E_ADMIN_TOKEN: the environment variable is not set"));
    }
    SECTION("too short: a start error that does not echo it") {
        SluiceProcess::Options options;
        options.environment = {"SLUICE_E2E_ADMIN_TOKEN=short-secret"};
        try {
            SluiceProcess sluice(config.yaml(), options);
            FAIL("sluice started with a 12-character token");
        } catch (const std::runtime_error& e) {
            const std::string what = e.what();
            CHECK(what.find("admin token_env SLUICE_E2E_ADMIN_TOKEN: expected one line of 16 to 4096") !=
                  std::string::npos);
            CHECK(what.find("short-secret") == std::string::npos);
        }
    }
}
