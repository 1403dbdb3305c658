// --check --print: the effective configuration as YAML that loads back to the same thing.

#include "sluice/config/config_printer.hpp"

#include <filesystem>
#include <fstream>
#include <string>

#include <catch2/catch.hpp>

#include "sluice/config/loader.hpp"

using namespace sluice::config;
using namespace std::chrono_literals;

namespace {

LoadOptions shipped() {
    LoadOptions options;
    options.presets_dir = SLUICE_SOURCE_DIR "/config/presets";
    return options;
}

// Without the comment lines (they name the source file and the presets, which a reload of the
// printout no longer has).
std::string body(const std::string& printed) {
    std::string out;
    std::size_t pos = 0;
    while (pos < printed.size()) {
        const auto end = printed.find('\n', pos);
        const auto line = printed.substr(pos, end == std::string::npos ? std::string::npos : end - pos + 1);
        if (!line.starts_with("#")) out += line;
        if (end == std::string::npos) break;
        pos = end + 1;
    }
    return out;
}

}  // namespace

TEST_CASE("print: load -> print -> load gives the same effective configuration", "[config][print]") {
    const std::vector<std::string> files{
        // The shipped example, every preset, and a file using most keys.
        SLUICE_SOURCE_DIR "/config/sluice.yaml",
    };
    std::vector<std::string> texts;
    for (const auto& file : files) {
        std::ifstream in(file);
        texts.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
    texts.push_back(R"(listeners:
  - {name: default, listen: "127.0.0.1:0"}
  - {name: v6, listen: "[::1]:0"}
vendors:
  convertr: {preset: convertr, listeners: [v6]}
  intercom: {preset: intercom, path_prefix: /intercom/, queue: {max_wait: 2s}}
  close: {preset: close, path_prefix: /close/, hosts: [api.close.com]}
  cc: {preset: constant-contact, path_prefix: /cc/, tier: partner}
  ample: {preset: amplemarket, path_prefix: /ample/, upstream: {url: "http://[::1]:9000/base"}}
limits:
  by-query: {algorithm: sliding_window, limit: 5, window: 1m30s, key: [method, {query: account}], cost: 2}
  by-param: {algorithm: token_bucket, rate: 10/1m, burst: 3, key: {path_param: id}, enforce: false}
  daily-ny: {algorithm: fixed_window, limit: 100, window: 1d, time_zone: America/New_York,
             feedback: {vendor_limit: 120, vendor_limit_type: day}}
  by-org: {algorithm: sliding_window, limit: 60, window: 1s,
           key: {header: Authorization, group_by: {groups: {acme: [], globex: []}, unmapped: own}}}
routes:
  - name: mine
    match: {path: "/x/{id}/**", methods: [get]}
    upstream: intercom
    limits: [by-query, by-param, daily-ny, by-org]
    retry: {non_idempotent: true, max_attempts: 2}
)");
    for (const auto& text : texts) {
        const auto first = load_config_string(text, "first.yaml", shipped());
        const auto printed = print_config(*first);
        INFO(printed);
        const auto second = load_config_string(printed, "second.yaml", shipped());
        CHECK(body(print_config(*second)) == body(printed));
        CHECK(second->routes.size() == first->routes.size());
        CHECK(second->limits.size() == first->limits.size());
        for (std::size_t i = 0; i < first->limits.size(); ++i) {
            const auto& a = first->limits[i];
            const auto& b = second->limits[i];
            CHECK(a.name == b.name);
            CHECK(a.algorithm == b.algorithm);
            CHECK(a.limit == b.limit);
            CHECK(a.window == b.window);
            CHECK(a.burst == b.burst);
            CHECK(a.margin == b.margin);
            CHECK(a.utc_offset == b.utc_offset);
            CHECK(a.time_zone == b.time_zone);
            CHECK(a.feedback.vendor_limit == b.feedback.vendor_limit);
            CHECK(a.feedback.vendor_limit_type == b.feedback.vendor_limit_type);
            CHECK(a.key.size() == b.key.size());
            for (std::size_t k = 0; k < a.key.size() && k < b.key.size(); ++k) {
                CHECK(static_cast<bool>(a.key[k].group_by) == static_cast<bool>(b.key[k].group_by));
                if (a.key[k].group_by && b.key[k].group_by)
                    CHECK(a.key[k].group_by->unmapped == b.key[k].group_by->unmapped);
            }
            CHECK(a.cost.header == b.cost.header);
            CHECK(a.cost.fixed == b.cost.fixed);
            CHECK(a.enforce == b.enforce);
        }
        for (std::size_t i = 0; i < first->routes.size(); ++i) {
            const auto& a = first->routes[i];
            const auto& b = second->routes[i];
            CHECK(a.name == b.name);
            CHECK(a.match.path == b.match.path);
            CHECK(a.match.path_prefix == b.match.path_prefix);
            CHECK(a.match.methods == b.match.methods);
            CHECK(a.match.hosts == b.match.hosts);
            CHECK(a.match.listeners == b.match.listeners);
            CHECK(a.strip_prefix == b.strip_prefix);
            CHECK(a.limits == b.limits);
            CHECK(a.queue.max_wait == b.queue.max_wait);
            CHECK(a.retry.max_attempts == b.retry.max_attempts);
        }
        for (std::size_t i = 0; i < first->upstreams.size(); ++i) {
            CHECK(first->upstreams[i].host == second->upstreams[i].host);
            CHECK(first->upstreams[i].port == second->upstreams[i].port);
            CHECK(first->upstreams[i].base_path == second->upstreams[i].base_path);
            CHECK(first->upstreams[i].feedback.signals.body_field ==
                  second->upstreams[i].feedback.signals.body_field);
            CHECK(first->upstreams[i].feedback.signals.limit_type_field ==
                  second->upstreams[i].feedback.signals.limit_type_field);
            CHECK(first->upstreams[i].feedback.pause_on_429 == second->upstreams[i].feedback.pause_on_429);
            CHECK(first->upstreams[i].feedback.cap_from_remaining ==
                  second->upstreams[i].feedback.cap_from_remaining);
            CHECK(first->upstreams[i].feedback.learn == second->upstreams[i].feedback.learn);
        }
    }
}

TEST_CASE("print: presets expanded, defaults written, vendors named", "[config][print]") {
    const auto config = load_config_string(
        "vendors:\n  intercom: {preset: intercom, path_prefix: /intercom/}\n", "user.yaml", shipped());
    const auto printed = print_config(*config);
    CHECK(printed.find("# vendors.intercom: preset intercom (") != std::string::npos);
    CHECK(printed.find(
              "  intercom.rolling:\n    algorithm: sliding_window\n    limit: 166\n    window: 10s\n    "
              "margin: 100ms\n") != std::string::npos);
    CHECK(
        printed.find("match: {path_prefix: /intercom/}\n    strip_prefix: true\n    upstream: intercom\n") !=
        std::string::npos);
    CHECK(printed.find("url: https://api.intercom.io:443\n") != std::string::npos);
    CHECK(printed.find("reset_mode: unix_seconds") != std::string::npos);
    CHECK(printed.find("client_body_total: 5m") != std::string::npos);  // a default, written out
}

TEST_CASE("print: the admin token file is named, never read", "[config][print]") {
    const auto file = std::filesystem::temp_directory_path() / ("sluice-token-" + std::to_string(::getpid()));
    std::ofstream(file) << "s3cr3t-admin-token\n";
    const auto config = load_config_string(
        "server:\n  admin: {token_file: " + file.string() + "}\nvendors:\n  i: {preset: intercom}\n",
        "user.yaml", shipped());
    const auto printed = print_config(*config);
    std::filesystem::remove(file);
    CHECK(printed.find("token_file: " + file.string()) != std::string::npos);
    CHECK(printed.find("s3cr3t") == std::string::npos);
}

TEST_CASE("print: durations in the largest exact unit", "[config][print]") {
    CHECK(format_duration(0s) == "0s");
    CHECK(format_duration(5min) == "5m");
    CHECK(format_duration(90s) == "90s");
    CHECK(format_duration(-5h) == "-5h");
    CHECK(format_duration(24h) == "1d");
    CHECK(format_duration(1500ms) == "1500ms");
    CHECK(format_duration(std::chrono::nanoseconds(66'666'666)) == "66666666ns");
}

TEST_CASE("print: grouped keys never show a key value", "[config][print]") {
    const auto config = load_config_string(R"(upstreams:
  api: {url: https://api.example.com}
limits:
  org: {algorithm: sliding_window, limit: 60, window: 1s,
        key: {header: Authorization, group_by: {groups: {acme: ["Basic c2VjcmV0LWtleQ=="]}}}}
routes:
  - {upstream: api, limits: [org]}
)",
                                           "t.yaml");
    const auto printed = print_config(*config);
    INFO(printed);
    CHECK(printed.find("c2VjcmV0LWtleQ") == std::string::npos);
    CHECK(printed.find("acme") != std::string::npos);
    CHECK(printed.find("unmapped: shared") != std::string::npos);
}

TEST_CASE("print: the access log and admin token_env load back; the variable is named, never read",
          "[config][print]") {
    const auto config = load_config_string(
        "server:\n  admin: {token_env: SLUICE_ADMIN_TOKEN}\n  access_log: {path: /var/log/a.jsonl, "
        "log_query: "
        "true, buffer_bytes: 2MiB}\nvendors:\n  i: {preset: intercom}\n",
        "user.yaml", shipped());
    const auto printed = print_config(*config);
    INFO(printed);
    CHECK(printed.find("token_env: SLUICE_ADMIN_TOKEN") != std::string::npos);
    CHECK(printed.find("access_log:\n    enabled: true\n    path: \"/var/log/a.jsonl\"\n    log_query: true\n"
                       "    buffer_bytes: 2097152\n") != std::string::npos);
    const auto again = load_config_string(printed, "printed.yaml", shipped());
    CHECK(again->server.admin.token_env == "SLUICE_ADMIN_TOKEN");
    CHECK(again->server.access_log.path == "/var/log/a.jsonl");
    CHECK(again->server.access_log.log_query);
    CHECK(again->server.access_log.buffer_bytes == 2 * 1024 * 1024);
}
