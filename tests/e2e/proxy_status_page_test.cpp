// GET /v1/limits and the live status page at / (docs/operations.md, "The status page"):
// known traffic, then the JSON's exact values, then the page as headless
// Chromium renders it (Debian's chromium, scripts/install-deps.sh), read back
// from the DOM through the page's stable ids and data-* attributes.

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "support/admin_status.hpp"
#include "support/http_client.hpp"
#include "support/mock_upstream.hpp"
#include "support/proxy_config.hpp"
#include "support/sluice_process.hpp"

using namespace sluice::test;
using nlohmann::json;

namespace {

// A value the page and /v1/limits must never show: keys are hashed.
constexpr const char* kSecretKey = "key-value-that-must-not-leak-7f3a";
constexpr const char* kAdminToken = "status-page-admin-token-0123456789";

// Limits at known levels: per-key (7 of 10 used: amber), tight (2 of 2 and 3
// refused: red), trickle (one request waiting), and the vendor gate of
// `refusing`, paused by the vendor's 429 with Retry-After: 60.
std::string demo_yaml(const MockUpstream& vendor, const MockUpstream& refusing,
                      const std::string& admin_extra) {
    return yaml_subst(R"(server:
  workers: {WORKERS}
  admin: {listen: "127.0.0.1:0"{ADMIN}}
listeners:
  - {name: main, listen: "127.0.0.1:0"}
upstreams:
  vendor: {url: "{URL}"}
  refusing: {url: "{REFUSING}"}
limits:
  per-key: {algorithm: sliding_window, limit: 10, window: 1h, key: {header: X-Key}}
  tight: {algorithm: fixed_window, limit: 2, window: 1h}
  trickle: {algorithm: sliding_window, limit: 1, window: 3s}
routes:
  - {name: tight, match: {path_prefix: /tight/}, upstream: vendor, limits: [tight], queue: {max_wait: 0s}}
  - {name: trickle, match: {path_prefix: /trickle/}, upstream: vendor, limits: [trickle], queue: {max_wait: 10s}}
  - {name: refusing, match: {path_prefix: /refusing/}, upstream: refusing}
  - {name: main, upstream: vendor, limits: [per-key]}
)",
                      {{"WORKERS", std::to_string(e2e_workers())},
                       {"URL", vendor.url()},
                       {"REFUSING", refusing.url()},
                       {"ADMIN", admin_extra}});
}

// The known traffic: 7 requests on one key of per-key, 5 on tight (2 admitted,
// 3 refused at once), one vendor 429 on the refusing upstream.
void send_known_traffic(const SluiceProcess& sluice) {
    HttpClient client(sluice.port("main"));
    for (int i = 0; i < 7; ++i) REQUIRE(client.get("/x", {{"X-Key", kSecretKey}}).status == 200);
    int refused = 0;
    for (int i = 0; i < 5; ++i) refused += client.get("/tight/x").status == 429 ? 1 : 0;
    REQUIRE(refused == 3);
    REQUIRE(client.get("/refusing/x").status == 429);
}

json find_limit(const json& limits, const std::string& name) {
    for (const auto& limit : limits["limits"])
        if (limit["name"] == name) return limit;
    FAIL("no limit " << name << " in /v1/limits");
    return {};
}

json get_limits(const SluiceProcess& sluice, const Headers& headers = {}) {
    HttpClient admin(sluice.admin_port(), std::chrono::seconds(5));
    const auto response = admin.get("/v1/limits", headers);
    REQUIRE(response.status == 200);
    CHECK(response.body.find(kSecretKey) == std::string::npos);
    return response.json();
}

// Runs headless Chromium on `url` (60 s at most) and returns the DOM it dumps
// once the page's scripts have run for 3 s of virtual time (three refreshes).
std::string rendered_dom(const std::string& url) {
    std::string pattern = (std::filesystem::temp_directory_path() / "sluice-chromium-XXXXXX").string();
    if (!::mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
    const std::filesystem::path dir = pattern;
    const auto dom_file = dir / "dom.html";
    const std::string command =
        "timeout 60 chromium --headless --no-sandbox --disable-gpu --disable-quic "
        "--no-first-run --disable-background-networking --disable-component-update "
        "--disable-sync --user-data-dir='" +
        (dir / "profile").string() + "' --virtual-time-budget=3000 --dump-dom '" + url + "' > '" +
        dom_file.string() + "' 2> '" + (dir / "chromium.log").string() + "'";
    const int status = std::system(command.c_str());
    std::ifstream in(dom_file);
    std::stringstream dom;
    dom << in.rdbuf();
    std::ifstream log_in(dir / "chromium.log");
    std::stringstream log;
    log << log_in.rdbuf();
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
    INFO("chromium exit status " << status << "\n" << log.str().substr(0, 2000));
    REQUIRE(status == 0);  // 127: chromium is not installed (scripts/install-deps.sh installs it)
    return dom.str();
}

// The opening tag of the element with this id, or "".
std::string tag_with_id(const std::string& dom, const std::string& id) {
    const auto at = dom.find("id=\"" + id + "\"");
    if (at == std::string::npos) return {};
    const auto open = dom.rfind('<', at);
    return dom.substr(open, dom.find('>', at) - open + 1);
}

// An attribute's value in a tag, or nullopt.
std::optional<std::string> attribute(const std::string& tag, const std::string& name) {
    const std::regex re("\\s" + name + "=\"([^\"]*)\"");
    std::smatch m;
    if (!std::regex_search(tag, m, re)) return std::nullopt;
    return m[1].str();
}

// The row of one limit: from its <tr id="limit-NAME"> to its </tr>.
std::string limit_row(const std::string& dom, const std::string& name) {
    const auto at = dom.find("<tr id=\"limit-" + name + "\"");
    if (at == std::string::npos) return {};
    return dom.substr(at, dom.find("</tr>", at) - at);
}

// The text of the cell with data-field="FIELD" in a row.
std::string cell_text(const std::string& row, const std::string& field) {
    const std::regex re("data-field=\"" + field + "\"[^>]*>([^<]*)");
    std::smatch m;
    if (!std::regex_search(row, m, re)) return "(no " + field + ")";
    return m[1].str();
}

std::optional<std::string> cell_attribute(const std::string& row, const std::string& field,
                                          const std::string& name) {
    const auto at = row.find("data-field=\"" + field + "\"");
    if (at == std::string::npos) return std::nullopt;
    const auto open = row.rfind('<', at);
    return attribute(row.substr(open, row.find('>', at) - open + 1), name);
}

}  // namespace

TEST_CASE("/v1/limits gives each limit's parameters, activity and most pressed keys, exactly",
          "[e2e][status-page]") {
    MockUpstream vendor;
    MockUpstream refusing([](const RecordedRequest&) {
        return MockReply::fixed(429, "slow down", {{"Retry-After", "60"}});
    });
    SluiceProcess sluice(demo_yaml(vendor, refusing, ""));
    send_known_traffic(sluice);

    // One request waits on trickle (1 per 3 s) while the page is read.
    HttpClient trickle_client(sluice.port("main"));
    REQUIRE(trickle_client.get("/trickle/first").status == 200);
    std::atomic<unsigned> waited_status{0};
    std::thread waiter([&] {
        HttpClient client(sluice.port("main"));
        waited_status = client.get("/trickle/second").status;
    });
    REQUIRE(wait_until([&] { return find_limit(get_limits(sluice), "trickle")["waiting"] == 1; },
                       std::chrono::seconds(5)));
    const json limits = get_limits(sluice);
    waiter.join();
    CHECK(waited_status == 200);

    CHECK(limits["limits_top_keys"] == 20);
    CHECK(limits["generated_at_unix"].get<double>() > 1.7e9);
    // Every configured limit, then one vendor gate per upstream.
    REQUIRE(limits["limits"].size() == 5);

    const json per_key = find_limit(limits, "per-key");
    CHECK(per_key["algorithm"] == "sliding_window");
    CHECK(per_key["limit"] == 10);
    CHECK(per_key["window_seconds"] == 3600.0);
    CHECK(per_key["margin_seconds"] == 0.0);
    CHECK(per_key["key"] == "header X-Key");
    CHECK(per_key["enforce"] == true);
    CHECK(per_key["routes"] == json::array({"main"}));
    CHECK(per_key["admitted"] == 7);
    CHECK(per_key["queued"] == 0);
    CHECK(per_key["refused"] == 0);
    CHECK(per_key["refused_last_minute"] == 0);
    CHECK(per_key["waiting"] == 0);
    CHECK(per_key["oldest_wait_seconds"].is_null());
    CHECK(per_key["tracked_keys"] == 1);
    REQUIRE(per_key["keys"].size() == 1);
    const json& key = per_key["keys"][0];
    CHECK(key["key"].get<std::string>().rfind("k:", 0) == 0);
    CHECK(key["used"] == 7);
    CHECK(key["remaining"] == 3);
    CHECK(key["limit"] == 10);
    CHECK(key["reset_in"].get<double>() > 3500);
    CHECK(key["reset_in"].get<double>() <= 3600);
    CHECK(key["paused_for"].is_null());
    CHECK(key["waiting"] == 0);

    const json tight = find_limit(limits, "tight");
    CHECK(tight["algorithm"] == "fixed_window");
    CHECK(tight["key"] == "shared");
    CHECK(tight["admitted"] == 2);
    CHECK(tight["refused"] == 3);
    CHECK(tight["queued"] == 0);
    // Counted by sluice per second: the last minute holds all of it, read at once.
    CHECK(tight["refused_last_minute"] == 3);
    CHECK(tight["queued_last_minute"] == 0);
    REQUIRE(tight["keys"].size() == 1);
    CHECK(tight["keys"][0]["used"] == 2);
    CHECK(tight["keys"][0]["remaining"] == 0);

    const json trickle = find_limit(limits, "trickle");
    CHECK(trickle["admitted"] == 1);
    CHECK(trickle["queued"] == 1);
    CHECK(trickle["waiting"] == 1);
    CHECK(trickle["queued_last_minute"] == 1);
    CHECK(trickle["refused_last_minute"] == 0);
    // Generous bounds: the waiter arrived less than the window (3 s) before.
    CHECK(trickle["oldest_wait_seconds"].get<double>() >= 0.0);
    CHECK(trickle["oldest_wait_seconds"].get<double>() < 3.5);
    REQUIRE(trickle["keys"].size() == 1);
    CHECK(trickle["keys"][0]["waiting"] == 1);
    CHECK(trickle["keys"][0]["oldest_wait_seconds"].get<double>() < 3.5);

    const json gate = find_limit(limits, "upstream:refusing");
    CHECK(gate["algorithm"] == "vendor_gate");
    CHECK(gate["vendor_gate"] == true);
    CHECK(gate["limit"].is_null());
    CHECK(gate["routes"] == json::array({"refusing"}));
    REQUIRE(gate["keys"].size() == 1);
    const json& paused = gate["keys"][0];
    CHECK(paused["paused_for"].get<double>() > 30);
    CHECK(paused["paused_for"].get<double>() <= 60);
    CHECK(paused["pause_reason"]["cause"] == "vendor_refused");
    CHECK(paused["pause_reason"]["signal"] == "retry_after");
    CHECK(paused["used"].is_null());
    CHECK(find_limit(limits, "upstream:vendor")["keys"].empty());  // never paused: nothing tracked

    // /status stays as it was.
    const json status = admin_status(sluice);
    CHECK(status["limits"].size() == 5);
    CHECK(status["counters"]["rejected_by_limits"] == 3);
}

TEST_CASE("/v1/limits lists limits_top_keys keys, the most pressed first, and the total",
          "[e2e][status-page]") {
    MockUpstream vendor;
    MockUpstream refusing;
    SluiceProcess sluice(demo_yaml(vendor, refusing, ", limits_top_keys: 2"));
    HttpClient client(sluice.port("main"));
    // Key kN has sent N requests: k4 is the most pressed, then k3.
    for (int key = 1; key <= 4; ++key)
        for (int i = 0; i < key; ++i)
            REQUIRE(client.get("/x", {{"X-Key", "k" + std::to_string(key)}}).status == 200);
    const json per_key = find_limit(get_limits(sluice), "per-key");
    CHECK(per_key["tracked_keys"] == 4);
    REQUIRE(per_key["keys"].size() == 2);
    CHECK(per_key["keys"][0]["used"] == 4);
    CHECK(per_key["keys"][1]["used"] == 3);
}

TEST_CASE("the status page shows each limit's use, refusals and vendor pause as sent, in a real browser",
          "[e2e][status-page]") {
    MockUpstream vendor;
    MockUpstream refusing([](const RecordedRequest&) {
        return MockReply::fixed(429, "slow down", {{"Retry-After", "60"}});
    });
    SluiceProcess sluice(demo_yaml(vendor, refusing, ""));
    send_known_traffic(sluice);
    const std::string dom = rendered_dom("http://127.0.0.1:" + std::to_string(sluice.admin_port()) + "/");
    INFO(dom.substr(0, 4000));

    // The page read sluice more than once (it refreshes every second).
    const auto body = tag_with_id(dom, "state");
    CHECK(attribute(body, "data-state") == "ok");
    const std::regex readings("data-readings=\"([0-9]+)\"");
    std::smatch m;
    REQUIRE(std::regex_search(dom, m, readings));
    CHECK(std::stoi(m[1].str()) >= 2);

    // per-key: 7 of 10 used, amber (70 % or more).
    const auto per_key = limit_row(dom, "per-key");
    REQUIRE_FALSE(per_key.empty());
    CHECK(attribute(per_key, "data-used") == "7");
    CHECK(attribute(per_key, "data-quota") == "10");
    CHECK(attribute(per_key, "data-level") == "amber");
    CHECK(cell_text(per_key, "usage") == "7 / 10 (70 %)");
    CHECK(cell_text(per_key, "waiting") == "0");
    CHECK(cell_attribute(per_key, "totals", "data-admitted") == "7");
    CHECK(cell_attribute(per_key, "totals", "data-refused") == "0");
    CHECK(cell_text(per_key, "keys") == "1");

    // tight: 2 of 2 used and 3 refused, red. The refusals came before the page
    // opened: its last-minute columns are sluice's own counts, not its readings'.
    const auto tight = limit_row(dom, "tight");
    REQUIRE_FALSE(tight.empty());
    CHECK(attribute(tight, "data-used") == "2");
    CHECK(attribute(tight, "data-quota") == "2");
    CHECK(attribute(tight, "data-level") == "red");
    CHECK(cell_attribute(tight, "totals", "data-admitted") == "2");
    CHECK(cell_attribute(tight, "totals", "data-refused") == "3");
    CHECK(cell_text(tight, "totals") == "2 / 3");
    CHECK(cell_text(tight, "refused-minute") == "3");
    CHECK(cell_text(tight, "waited-minute") == "0");
    CHECK(cell_text(per_key, "refused-minute") == "0");

    // An idle limit is green; the refusing upstream's gate is paused by its 429, with a countdown.
    CHECK(attribute(limit_row(dom, "trickle"), "data-level") == "green");
    const auto gate = limit_row(dom, "upstream:refusing");
    REQUIRE_FALSE(gate.empty());
    CHECK(attribute(gate, "data-level") == "red");
    const auto paused_for = cell_attribute(gate, "pause", "data-paused-for");
    REQUIRE(paused_for);
    CHECK(std::stoi(*paused_for) > 30);
    CHECK(std::stoi(*paused_for) <= 60);
    CHECK(gate.find("vendor refused (retry_after)") != std::string::npos);
    CHECK(cell_attribute(limit_row(dom, "upstream:vendor"), "pause", "data-paused-for") == "0");

    // One row per upstream, with the responses the known traffic drew: vendor
    // answered 7 (per-key) + 2 (tight) with 200, refusing one 429.
    const std::map<std::string, std::map<std::string, std::string>> responses = {
        {"vendor", {{"2xx", "9"}, {"3xx", "0"}, {"4xx", "0"}, {"5xx", "0"}, {"429", "0"}}},
        {"refusing", {{"2xx", "0"}, {"3xx", "0"}, {"4xx", "1"}, {"5xx", "0"}, {"429", "1"}}},
    };
    for (const auto& [name, counts] : responses) {
        const auto at = dom.find("<tr id=\"upstream-" + name + "\"");
        REQUIRE(at != std::string::npos);
        const auto row = dom.substr(at, dom.find("</tr>", at) - at);
        for (const auto& [field, count] : counts) {
            INFO(name << " " << field);
            CHECK(cell_text(row, field) == count);
        }
    }
    CHECK(dom.find(kSecretKey) == std::string::npos);
}

TEST_CASE("with an admin token the page loads without it, asks for it, and its data stays behind it",
          "[e2e][status-page][security]") {
    std::string pattern = (std::filesystem::temp_directory_path() / "sluice-token-XXXXXX").string();
    REQUIRE(::mkdtemp(pattern.data()));
    const std::string token_path = pattern + "/admin-token";
    std::ofstream(token_path) << kAdminToken << "\n";
    MockUpstream vendor;
    MockUpstream refusing;
    {
        SluiceProcess sluice(demo_yaml(vendor, refusing, ", token_file: \"" + token_path + "\""));
        HttpClient admin(sluice.admin_port(), std::chrono::seconds(5));
        const auto page = admin.get("/");
        CHECK(page.status == 200);
        CHECK(page.header("Content-Type").value_or("") == "text/html; charset=utf-8");
        CHECK(page.body.find(kAdminToken) == std::string::npos);
        CHECK(admin.get("/v1/limits").status == 401);
        CHECK(
            get_limits(sluice, {{"Authorization", std::string("Bearer ") + kAdminToken}})["limits"].size() ==
            5);
        // In the browser: no data, the token form instead.
        const std::string dom = rendered_dom("http://127.0.0.1:" + std::to_string(sluice.admin_port()) + "/");
        CHECK(attribute(tag_with_id(dom, "state"), "data-state") == "error");
        CHECK(dom.find("token needed") != std::string::npos);
        CHECK(dom.find("<tr id=\"limit-") == std::string::npos);
    }
    std::error_code ignored;
    std::filesystem::remove_all(pattern, ignored);
}
