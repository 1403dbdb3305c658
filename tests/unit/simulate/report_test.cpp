// What `sluice simulate` prints and writes: the summary's numbers, the JSON document, and an SVG
// that is well-formed XML.

#include "sluice/simulate/report.hpp"

#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "sluice/config/loader.hpp"

#include "unit/simulate/simulate_support.hpp"

using namespace sluice;
using namespace sluice::simulate;
using namespace std::chrono_literals;

using sluice::simulate::test::kStart;

namespace {

// A strict little check of XML well-formedness, enough for what format_svg writes: one root,
// every element closed in order, attributes quoted, no raw '<' or bare '&' in text or values.
// Returns "" or what is wrong.
std::string xml_problem(const std::string& xml) {
    std::vector<std::string> open;
    std::size_t i = 0;
    bool root_seen = false;
    if (xml.rfind("<?xml", 0) == 0) i = xml.find("?>") + 2;
    const auto check_text = [](std::string_view text) -> std::string {
        for (std::size_t k = 0; k < text.size(); ++k) {
            if (text[k] == '<') return "raw '<' in text";
            if (text[k] == '&') {
                const auto end = text.find(';', k);
                if (end == std::string_view::npos) return "bare '&'";
                const auto entity = text.substr(k, end - k + 1);
                if (entity != "&amp;" && entity != "&lt;" && entity != "&gt;" && entity != "&quot;" &&
                    entity != "&apos;")
                    return "unknown entity " + std::string(entity);
            }
        }
        return {};
    };
    while (i < xml.size()) {
        const auto lt = xml.find('<', i);
        if (lt == std::string::npos) {
            if (auto p = check_text(std::string_view(xml).substr(i)); !p.empty()) return p;
            break;
        }
        if (auto p = check_text(std::string_view(xml).substr(i, lt - i)); !p.empty()) return p;
        if (open.empty() && root_seen) return "content after the root element";
        std::size_t k = lt + 1;
        const bool closing = k < xml.size() && xml[k] == '/';
        if (closing) ++k;
        const auto name_end = xml.find_first_of(" \t\n/>", k);
        if (name_end == std::string::npos) return "unterminated tag";
        const auto name = xml.substr(k, name_end - k);
        if (name.empty()) return "empty tag name";
        k = name_end;
        // Attributes: name="value" pairs.
        while (k < xml.size() && xml[k] != '>' && xml[k] != '/') {
            if (xml[k] == ' ' || xml[k] == '\n' || xml[k] == '\t') {
                ++k;
                continue;
            }
            const auto eq = xml.find('=', k);
            if (eq == std::string::npos || xml[eq + 1] != '"') return "unquoted attribute in <" + name + ">";
            const auto close = xml.find('"', eq + 2);
            if (close == std::string::npos) return "unterminated attribute";
            if (auto p = check_text(std::string_view(xml).substr(eq + 2, close - eq - 2)); !p.empty())
                return p;
            k = close + 1;
        }
        if (k >= xml.size()) return "unterminated tag";
        const bool self_closing = xml[k] == '/';
        if (self_closing && (k + 1 >= xml.size() || xml[k + 1] != '>')) return "bad self-closing tag";
        i = xml.find('>', k) + 1;
        if (closing) {
            if (open.empty() || open.back() != name) return "</" + name + "> closes nothing open";
            open.pop_back();
        } else if (!self_closing) {
            if (open.empty()) root_seen = true;
            open.push_back(name);
        } else if (open.empty()) {
            root_seen = true;
        }
    }
    if (!open.empty()) return "<" + open.back() + "> never closed";
    if (!root_seen) return "no root element";
    return {};
}

SimulationResult run(TrafficLog& log) {
    const auto config = config::load_config_string(R"(
upstreams:
  vendor: {url: "http://127.0.0.1:9"}
limits:
  five: {algorithm: sliding_window, limit: 5, window: 1s}
routes:
  - {name: api, match: {path_prefix: /v1/}, upstream: vendor, limits: [five], queue: {max_wait: 3s, max_depth: 2}}
)");
    for (int i = 0; i < 8; ++i) {
        TrafficRequest request;
        request.at = kStart + std::chrono::milliseconds(i);
        request.method = "GET";
        request.host = "h";
        request.path = "/v1/x";
        request.line = static_cast<std::size_t>(i + 2);
        log.requests.push_back(request);
    }
    log.format = TrafficFormat::csv;
    log.carries_headers = true;
    return run_simulation(*config, log.requests, true);
}

}  // namespace

TEST_CASE("report: the checker itself refuses what is not well-formed", "[simulate][report]") {
    CHECK(xml_problem("<a><b/></a>").empty());
    CHECK_FALSE(xml_problem("<a><b></a>").empty());
    CHECK_FALSE(xml_problem("<a x=\"1 & 2\"/>").empty());
    CHECK_FALSE(xml_problem("<a>1 < 2</a>").empty());
    CHECK_FALSE(xml_problem("<a/><b/>").empty());
}

TEST_CASE("report: the SVG is a well-formed standalone document with a panel per limit",
          "[simulate][report]") {
    TrafficLog log;
    const auto result = run(log);
    const auto svg = format_svg(result, "a <title> & more");
    INFO(svg);
    CHECK(xml_problem(svg).empty());
    CHECK(svg.find("<svg xmlns=\"http://www.w3.org/2000/svg\"") != std::string::npos);
    CHECK(svg.find("five (sliding_window, 5 per 1.000 s)") != std::string::npos);
    CHECK(svg.find("a &lt;title&gt; &amp; more") != std::string::npos);
    CHECK(svg.find("<polyline") != std::string::npos);
    CHECK(svg.find("stroke-dasharray") != std::string::npos);  // the limit's line
}

TEST_CASE("report: the summary and the JSON carry the numbers", "[simulate][report]") {
    TrafficLog log;
    const auto result = run(log);
    const auto summary = format_summary("t.csv", log, result);
    INFO(summary);
    CHECK(summary.find("sluice simulate: 8 requests from t.csv (csv)") == 0);
    CHECK(summary.find("forwarded at once 5, delayed 2, refused 1 (queue_full 1), not routed 0") !=
          std::string::npos);
    CHECK(summary.find("peak usage 5 of 5 (100 %) at 2026-12-07T10:00:00.004Z") != std::string::npos);
    CHECK(summary.find("longest queue 2") != std::string::npos);

    const auto json = nlohmann::json::parse(format_json(log, result, true));
    CHECK(json["totals"]["at_once"] == 5);
    CHECK(json["totals"]["refused"]["queue_full"] == 1);
    CHECK(json["limits"][0]["peak_usage"] == 5);
    CHECK(json["limits"][0]["delay_seconds"]["max"].get<double>() == Approx(0.995));
    REQUIRE(json["requests"].size() == 8);
    CHECK(json["requests"][7]["outcome"] == "refused");
    CHECK(json["requests"][7]["code"] == "queue_full");
    CHECK(json["requests"][7]["line"] == 9);
    CHECK(json["requests"][5]["outcome"] == "delayed");
    CHECK(json["requests"][5]["route"] == "api");
    CHECK(nlohmann::json::parse(format_json(log, result, false)).count("requests") == 0);
}

TEST_CASE("report: an access log's own outcomes against the simulation's, request by request",
          "[simulate][report]") {
    TrafficLog log;
    const auto result = run(log);  // 5 at once, 2 delayed, the 8th queue_full
    const auto logged = [](std::string answered_by, Nanos wait) {
        LoggedOutcome outcome;
        outcome.status = answered_by == "vendor" ? 200 : 429;
        outcome.answered_by = std::move(answered_by);
        outcome.queue_wait = wait;
        return outcome;
    };
    for (std::size_t i = 0; i < 5; ++i) log.requests[i].logged = logged("vendor", 0ns);
    log.requests[5].logged = logged("vendor", 990ms);
    log.requests[6].logged = logged("vendor", 0ns);  // the daemon did otherwise
    log.requests[7].logged = logged("queue_full", 0ns);
    log.requests[4].logged->answered_by.clear();  // no answer reached the client: not compared
    log.format = TrafficFormat::access;

    const auto comparison = compare_with_log(log, result);
    CHECK(comparison.compared == 7);
    CHECK(comparison.same == 6);
    CHECK(comparison.differences == std::vector<std::string>{"line 8: logged at_once, simulated delayed"});
    const auto summary = format_summary("access.log", log, result);
    CHECK(summary.find(
              "  against the log: the same outcome for 6 of 7 requests (at once, delayed, refused with "
              "the same code)\n    line 8: logged at_once, simulated delayed\n") != std::string::npos);
    const auto json = nlohmann::json::parse(format_json(log, result, true));
    CHECK(json["against_log"]["same"] == 6);
    CHECK(json["requests"][7]["logged"]["outcome"] == "refused:queue_full");
    CHECK(json["requests"][4]["logged"]["outcome"].is_null());
}
