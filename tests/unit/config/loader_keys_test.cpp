// Limit keys mapped to groups (group_by) and calendar days in a time zone (time_zone): what loads,
// and the whole message of each mistake.

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "sluice/config/loader.hpp"

using namespace sluice::config;

namespace {

std::string error_of(const std::string& yaml, const std::string& file = "t.yaml") {
    try {
        load_config_string(yaml, file);
    } catch (const ConfigError& e) {
        return e.what();
    }
    return "(no error)";
}

// A file whose line 4 is the limit definition `text`.
std::string with_limit(const std::string& text) {
    return "upstreams:\n  api: {url: https://api.example.com}\nlimits:\n  " + text +
           "\nroutes:\n  - {upstream: api, limits: [x]}\n";
}

// A scratch directory for a configuration and its group file, removed at the end.
struct ScratchDir {
    std::filesystem::path path;
    ScratchDir() {
        path = std::filesystem::temp_directory_path() / ("sluice-keys-" + std::to_string(::getpid()));
        std::filesystem::create_directories(path);
    }
    ~ScratchDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    std::string write(const std::string& name, const std::string& text) const {
        const auto file = path / name;
        std::ofstream(file) << text;
        return file.string();
    }
};

}  // namespace

TEST_CASE("group_by: inline groups and a file next to the configuration", "[config][keys]") {
    const auto config = load_config_string(
        with_limit("x: {algorithm: sliding_window, limit: 60, window: 1s, key: {header: Authorization, "
                   "group_by: {groups: {acme: [k1, k2], globex: k3}, unmapped: own}}}"),
        "<string>");
    const auto& source = config->limits.at(0).key.at(0);
    REQUIRE(source.group_by);
    CHECK(source.group_by->group_of.at("k1") == "acme");
    CHECK(source.group_by->group_of.at("k2") == "acme");
    CHECK(source.group_by->group_of.at("k3") == "globex");
    CHECK(source.group_by->group_count == 2);
    CHECK(source.group_by->unmapped == KeyGroups::Unmapped::own);

    ScratchDir dir;
    dir.write("orgs.yaml",
              "# API keys by organization\nacme:\n  - \"Basic a1\"\n  - \"Basic a2\"\nglobex: []\n");
    const auto file =
        dir.write("sluice.yaml",
                  "upstreams:\n  close: {url: https://api.close.com}\nlimits:\n"
                  "  key: {algorithm: sliding_window, limit: 20, window: 1s, key: {header: Authorization}}\n"
                  "  org: {algorithm: sliding_window, limit: 60, window: 1s,\n"
                  "        key: {header: Authorization, group_by: {file: orgs.yaml}}}\n"
                  "  org-2: {algorithm: sliding_window, limit: 600, window: 1m,\n"
                  "        key: {header: Authorization, group_by: {file: orgs.yaml}}}\n"
                  "routes:\n  - {upstream: close, limits: [key, org, org-2]}\n");
    const auto loaded = load_config_file(file);
    CHECK_FALSE(loaded->limits.at(0).key.at(0).group_by);
    const auto& groups = loaded->limits.at(1).key.at(0).group_by;
    REQUIRE(groups);
    CHECK(groups->group_of.size() == 2);
    CHECK(groups->group_of.at("Basic a1") == "acme");
    CHECK(groups->unmapped == KeyGroups::Unmapped::shared);
    CHECK(groups->source == (dir.path / "orgs.yaml").string());
    // Read once, shared by both limits.
    CHECK(loaded->limits.at(2).key.at(0).group_by == groups);
}

TEST_CASE("group_by: mistakes name the file and line, never a key value", "[config][keys][errors]") {
    CHECK(error_of(with_limit("x: {algorithm: sliding_window, limit: 5, window: 1s, key: {group_by: "
                              "{groups: {a: [k]}}}}")) ==
          "t.yaml:4:61: limit 'x' key: a key source needs exactly one of header, query, path_param; expected "
          "method, {header: NAME}, {query: NAME}, {path_param: NAME} (each optionally with group_by), or a "
          "list of these");
    CHECK(error_of(with_limit("x: {algorithm: sliding_window, limit: 5, window: 1s, key: {header: A, "
                              "group_by: {file: a.yaml, groups: {}}}}")) ==
          "t.yaml:4:83: limit 'x' key.group_by: group_by needs exactly one of file, groups; expected {file: "
          "PATH} or {groups: {GROUP: [VALUE, ...]}}, optionally with unmapped: shared | own");
    CHECK(error_of(with_limit("x: {algorithm: sliding_window, limit: 5, window: 1s, key: {header: A, "
                              "group_by: {groups: {a: [k]}, unmapped: drop}}}")) ==
          "t.yaml:4:112: limit 'x' key.group_by.unmapped: unknown unmapped policy 'drop'; expected shared or "
          "own");
    CHECK(
        error_of(with_limit("x: {algorithm: sliding_window, limit: 5, window: 1s, key: {header: A, "
                            "group_by: {groups: {a: [\"secret-1\"], b: [x, \"secret-1\"]}}}}")) ==
        "t.yaml:4:117: limit 'x' key.group_by.groups.b[2]: this key value is listed twice (first at line 4); "
        "expected each value in one group only");

    ScratchDir dir;
    const auto missing = dir.write(
        "missing.yaml", with_limit("x: {algorithm: sliding_window, limit: 5, window: 1s, key: {header: A, "
                                   "group_by: {file: nowhere.yaml}}}"));
    std::string message;
    try {
        load_config_file(missing);
    } catch (const ConfigError& e) {
        message = e.what();
    }
    CHECK(message == missing + ":4:90: limit 'x' key.group_by.file: group file '" +
                         (dir.path / "nowhere.yaml").string() +
                         "' does not exist or is not a regular file; expected a readable YAML file mapping "
                         "group names to lists of key values");

    dir.write("bad.yaml", "acme:\n  - \"Basic a1\"\nglobex:\n  - \"Basic a1\"\n");
    const auto dup = dir.write(
        "dup.yaml", with_limit("x: {algorithm: sliding_window, limit: 5, window: 1s, key: {header: A, "
                               "group_by: {file: bad.yaml}}}"));
    try {
        load_config_file(dup);
    } catch (const ConfigError& e) {
        message = e.what();
    }
    CHECK(message == (dir.path / "bad.yaml").string() +
                         ":4:5: group file.globex[1]: this key value is listed twice (first at line 2); "
                         "expected each value in one group only");
    CHECK(message.find("Basic a1") == std::string::npos);
}

TEST_CASE("time_zone: a fixed window of whole days in an IANA zone", "[config][keys][zone]") {
    const auto config = load_config_string(
        with_limit("x: {algorithm: fixed_window, limit: 10000, window: 1d, time_zone: America/New_York}"),
        "t");
    CHECK(config->limits.at(0).time_zone == "America/New_York");
    CHECK(config->limits.at(0).utc_offset == Duration::zero());
}

TEST_CASE("time_zone: mistakes", "[config][keys][zone][errors]") {
    CHECK(error_of(with_limit("x: {algorithm: fixed_window, limit: 5, window: 1d, time_zone: Mars/Olympus}"))
              .rfind("t.yaml:4:65: limit 'x' time_zone: time_zone 'Mars/Olympus': ", 0) == 0);
    CHECK(
        error_of(with_limit("x: {algorithm: fixed_window, limit: 5, window: 1h, time_zone: UTC}")) ==
        "t.yaml:4:65: limit 'x' time_zone: time_zone needs a window of whole days (got window 1h); expected "
        "window: 1d (or 7d, ...); shorter windows keep their UTC alignment, use utc_offset");
    CHECK(
        error_of(with_limit("x: {algorithm: fixed_window, limit: 5, window: 1d, utc_offset: -5h, time_zone: "
                            "America/New_York}")) ==
        "t.yaml:4:54: limit 'x': both 'utc_offset' and 'time_zone' are given; expected either a fixed "
        "utc_offset or a time_zone that follows daylight saving");
    CHECK(error_of(with_limit("x: {algorithm: sliding_window, limit: 5, window: 1d, time_zone: UTC}")) ==
          "t.yaml:4:56: limit 'x': 'time_zone' does not apply to a sliding_window limit (time_zone sets the "
          "calendar day of a fixed_window); expected only algorithm, limit, window, margin, key, cost, "
          "enforce, max_keys, feedback, on_redis_failure, classes, fair_share for sliding_window");
    CHECK(error_of(with_limit("x: {algorithm: fixed_window, limit: 5, window: 1d, time_zone: \"a b\"}")) ==
          "t.yaml:4:65: limit 'x' time_zone: time_zone 'a b' is not an IANA zone name; expected an IANA time "
          "zone name from the system's tz database, e.g. America/New_York");
}
