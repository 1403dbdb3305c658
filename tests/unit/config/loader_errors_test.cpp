// Invalid configurations: one test per kind of mistake, asserting the whole message
// (file:line:column, what was wrong, what is expected), since the message is the feature.

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <string>

#include <catch2/catch.hpp>

#include "sluice/config/loader.hpp"

using namespace sluice::config;

namespace {

// Completes a file whose earlier sections are under test.
const std::string kRest = "upstreams:\n  api: {url: https://api.example.com}\nroutes:\n  - upstream: api\n";

std::string error_of(const std::string& yaml) {
    try {
        load_config_string(yaml, "t.yaml");
    } catch (const ConfigError& e) {
        return e.what();
    }
    return "(no error)";
}

// A file whose line 4 is the limit definition `text` (indented under `limits:`).
std::string limit_error(const std::string& text) {
    return error_of("upstreams:\n  api: {url: https://api.example.com}\nlimits:\n  " + text +
                    "\nroutes:\n  - upstream: api\n");
}

// A file whose line 4 starts the one route, given as the lines after "  - name: r".
std::string route_error(const std::string& lines) {
    return error_of("upstreams:\n  api: {url: https://api.example.com}\nroutes:\n  - name: r\n" + lines);
}

// A file whose line 2 is the upstream definition `text`.
std::string upstream_error(const std::string& text) {
    return error_of("upstreams:\n  " + text + "\nroutes:\n  - upstream: api\n");
}

constexpr const char* kDurationExpected =
    "expected a positive duration with a unit (ns, us, ms, s, m, h, d), e.g. 250ms, 10s, 1m30s";
constexpr const char* kUrlExpected =
    "expected an http:// or https:// URL with a host, an optional port and an optional base path, e.g. "
    "https://api.example.com or http://127.0.0.1:9000/v1";
constexpr const char* kListenExpected =
    "expected an IP address and port, e.g. \"127.0.0.1:8080\" or \"[::1]:8080\" (quoted; port 0 = any free "
    "port)";

// error_of, but a load that has not returned after 10 s fails the whole test executable: a hang
// cannot be abandoned (the thread cannot be stopped, and the future's destructor would wait).
std::string bounded_error_of(const std::string& yaml) {
    auto result = std::async(std::launch::async, [yaml] { return error_of(yaml); });
    if (result.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
        std::fprintf(stderr, "load_config_string did not return within 10 s\n");
        std::_Exit(EXIT_FAILURE);
    }
    return result.get();
}

}  // namespace

// ---- the file itself ---------------------------------------------------------

TEST_CASE("error: YAML syntax", "[config][errors]") {
    CHECK(error_of("a: [1\n") ==
          "t.yaml:2:1: invalid YAML: end of sequence flow not found; expected well-formed YAML (check "
          "indentation, "
          "quoting and brackets)");
}

// Regression: yaml-cpp 0.7's LoadAll never gets past a ',' outside any [ ] or { } at the top
// level: it returned empty documents forever while memory grew (found by the config fuzzer,
// tests/fuzz/corpus/config/loadall-hang-top-level-comma.yaml), so sluice hung at start.
TEST_CASE("error: a ',' at the top level is refused, not loaded forever", "[config][errors][yaml]") {
    const std::string comma =
        "invalid YAML: ',' after the top-level value; expected one value (',' separates entries only inside "
        "[ ] or { })";
    CHECK(bounded_error_of("&a, []\n") == "t.yaml:1:3: " + comma);
    CHECK(bounded_error_of("&a,") == "t.yaml:1:3: " + comma);
    CHECK(bounded_error_of("!!map , x\n") == "t.yaml:1:7: " + comma);
    CHECK(bounded_error_of(", x\n") == "t.yaml:1:1: " + comma);
    CHECK(bounded_error_of("[a], b\n") == "t.yaml:1:4: " + comma);
    CHECK(bounded_error_of("--- {a: 1} , b\n") == "t.yaml:1:12: " + comma);
    CHECK(bounded_error_of("- a\n- b\n,\n") == "t.yaml:3:1: " + comma);
    // A ',' inside a value, or nested in a collection, was always fine or a plain syntax error.
    CHECK(bounded_error_of("a, b\n") ==
          "t.yaml:1:1: got 'a, b'; expected a map with keys server, listeners, "
          "upstreams, limits, queue, routes, vendors, presets_dir, priorities");
    CHECK(bounded_error_of("k: &a, []\n") ==
          "t.yaml:1:6: invalid YAML: end of map not found; expected well-formed YAML (check indentation, "
          "quoting and brackets)");
    // The fast path that spares most files a second parse walks down the last entries: an alias to
    // an enclosing collection must not send it round in circles (found by the config fuzzer).
    CHECK(bounded_error_of("&a [*a, *a]\n") ==
          "t.yaml:1:1: got a list; expected a map with keys server, listeners, upstreams, limits, queue, "
          "routes, vendors, presets_dir, priorities");
    CHECK(bounded_error_of("&a {x: *a}\n") ==
          "t.yaml:1:5: unknown key 'x'; expected one of server, listeners, "
          "upstreams, limits, queue, routes, vendors, presets_dir, priorities");
    // Whatever follows the last value that is not a closing bracket, a blank or a comment is read
    // by the exact check.
    CHECK(bounded_error_of(kRest + "# done\n...\n---\nx: 1\n") ==
          "t.yaml:8:1: a second YAML document; expected one document (no '---' separators between)");
    // A second document after the ',' case is still a second document.
    CHECK(bounded_error_of(kRest + "---\n&a, []\n") ==
          "t.yaml:6:1: a second YAML document; expected one document (no '---' separators between)");
}

TEST_CASE("error: unreadable file", "[config][errors]") {
    try {
        load_config_file("/nonexistent/sluice.yaml");
        FAIL("no error");
    } catch (const ConfigError& e) {
        CHECK(std::string(e.what()) ==
              "/nonexistent/sluice.yaml:1:1: cannot read the file: No such file or directory; expected a "
              "readable "
              "YAML file (pass it with --config)");
    }
}

TEST_CASE("error: empty file, second document, not a map", "[config][errors]") {
    const std::string empty =
        "t.yaml:1:1: the configuration is empty; expected a map with at least 'upstreams' and 'routes'";
    CHECK(error_of("") == empty);
    CHECK(error_of("# only a comment\n") == empty);
    CHECK(error_of(kRest + "---\n" + kRest) ==
          "t.yaml:6:1: a second YAML document; expected one document (no '---' separators between)");
    CHECK(error_of("- a\n- b\n") ==
          "t.yaml:1:1: got a list; expected a map with keys server, listeners, upstreams, limits, queue, "
          "routes, vendors, presets_dir, priorities");
}

TEST_CASE("error: unknown key", "[config][errors]") {
    CHECK(error_of("server:\n  wokers: 2\n" + kRest) ==
          "t.yaml:2:3: server: unknown key 'wokers' (did you mean 'workers'?); expected one of workers, "
          "max_header_bytes, max_body_bytes, max_buffered_body_bytes, max_client_connections, timeouts, "
          "forwarded, "
          "rate_limit_headers, admin, access_log, state, drain_timeout");
    CHECK(error_of(kRest + "routs: []\n") ==
          "t.yaml:5:1: unknown key 'routs' (did you mean 'routes'?); expected one of server, listeners, "
          "upstreams, "
          "limits, queue, routes, vendors, presets_dir, priorities");
    CHECK(
        error_of(
            "upstreams:\n  api: {url: https://api.example.com}\nroutes:\n  - name: r\n    upstrem: api\n") ==
        "t.yaml:5:5: routes[1]: unknown key 'upstrem' (did you mean 'upstream'?); expected one of name, "
        "match, "
        "strip_prefix, upstream, limits, queue, retry, priority");
    CHECK(limit_error("x: {algorithm: sliding_window, limit: 5, window: 1s, windw: 2s}") ==
          "t.yaml:4:56: limit 'x': unknown key 'windw' (did you mean 'window'?); expected one of algorithm, "
          "limit, "
          "window, rate, burst, utc_offset, time_zone, margin, key, cost, enforce, max_keys, feedback, "
          "on_redis_failure, classes, fair_share");
    CHECK(upstream_error("api: {url: https://a.example.com, tls: {verfy: false}}") ==
          "t.yaml:2:43: upstream 'api' tls: unknown key 'verfy' (did you mean 'verify'?); expected one of "
          "verify, "
          "ca_file, server_name");
}

TEST_CASE("error: duplicate key in a map", "[config][errors]") {
    CHECK(error_of("server:\n  workers: 2\n  workers: 3\n" + kRest) ==
          "t.yaml:3:3: server: duplicate key 'workers' (first at line 2); expected each key once");
}

TEST_CASE("error: wrong type", "[config][errors]") {
    CHECK(error_of("server:\n  workers: {a: 1}\n" + kRest) ==
          "t.yaml:2:12: server.workers: got a map; expected an integer from 1 to 64");
    CHECK(error_of("server: 5\n" + kRest) ==
          "t.yaml:1:9: server: got '5'; expected a map with keys workers, max_header_bytes, max_body_bytes, "
          "max_buffered_body_bytes, max_client_connections, timeouts, forwarded, rate_limit_headers, admin, "
          "access_log, state, drain_timeout");
    CHECK(error_of("server:\n  forwarded: {x_forwarded_for: yes}\n" + kRest) ==
          "t.yaml:2:32: server.forwarded.x_forwarded_for: got 'yes'; expected true or false");
    CHECK(error_of("upstreams: [api]\nroutes:\n  - upstream: api\n") ==
          "t.yaml:1:12: upstreams: got a list; expected a map");
    CHECK(
        error_of("upstreams:\n  api: {url: https://api.example.com}\nroutes: {upstream: api}\n") ==
        "t.yaml:3:9: routes: got a map; expected a list of routes, e.g. [{match: {path_prefix: /intercom/}, "
        "upstream: intercom}]");
}

// ---- durations and sizes -------------------------------------------------------

TEST_CASE("error: bad duration", "[config][errors]") {
    CHECK(error_of("server:\n  timeouts: {client_header: 10 s}\n" + kRest) ==
          std::string("t.yaml:2:29: server.timeouts.client_header: '10 s' contains a space; ") +
              kDurationExpected);
    CHECK(error_of("server:\n  timeouts: {client_header: 10}\n" + kRest) ==
          std::string("t.yaml:2:29: server.timeouts.client_header: '10' has no unit; ") + kDurationExpected);
    CHECK(error_of("server:\n  timeouts: {client_header: -1s}\n" + kRest) ==
          std::string("t.yaml:2:29: server.timeouts.client_header: '-1s' is negative; ") + kDurationExpected);
    CHECK(error_of("server:\n  timeouts:\n    client_header:\n" + kRest) ==
          std::string("t.yaml:3:5: server.timeouts.client_header: got no value; ") + kDurationExpected);
    CHECK(limit_error("x: {algorithm: sliding_window, limit: 5, window: 1.5s}") ==
          std::string("t.yaml:4:52: limit 'x' window: '1.5s' has a fraction; ") + kDurationExpected +
              " (integers only: 1500ms rather than 1.5s)");
    CHECK(limit_error("x: {algorithm: sliding_window, limit: 5, window: 10sec}") ==
          std::string("t.yaml:4:52: limit 'x' window: '10sec' is not a duration; ") + kDurationExpected);
}

TEST_CASE("error: bad size", "[config][errors]") {
    CHECK(
        error_of("server:\n  max_header_bytes: 16kb\n" + kRest) ==
        "t.yaml:2:21: server.max_header_bytes: '16kb' is not a size; expected a size: an integer (bytes) or "
        "16k/16KiB, 10m/10MiB, 1g/1GiB (powers of 1024)");
    CHECK(error_of("server:\n  max_header_bytes: 0\n" + kRest) ==
          "t.yaml:2:21: server.max_header_bytes: '0' is out of range; expected a size from 1 to 65536 "
          "bytes");
}

// ---- server ------------------------------------------------------------------------

TEST_CASE("error: workers outside 1..64", "[config][errors]") {
    CHECK(error_of("server:\n  workers: 0\n" + kRest) ==
          "t.yaml:2:12: server.workers: 0 is out of range; expected an integer from 1 to 64");
    CHECK(error_of("server:\n  workers: 65\n" + kRest) ==
          "t.yaml:2:12: server.workers: 65 is out of range; expected an integer from 1 to 64");
}

TEST_CASE("error: unknown rate-limit header style", "[config][errors]") {
    CHECK(error_of("server:\n  rate_limit_headers: {style: all}\n" + kRest) ==
          "t.yaml:2:31: server.rate_limit_headers.style: unknown style 'all'; expected one of none, ietf, x, "
          "both");
}

// ---- listeners ---------------------------------------------------------------------

TEST_CASE("error: bad listen address", "[config][errors]") {
    CHECK(error_of("server:\n  admin: {listen: localhost:9901}\n" + kRest) ==
          std::string("t.yaml:2:19: server.admin.listen: 'localhost' is not an IP address; ") +
              kListenExpected);
    CHECK(error_of("listeners:\n  - listen: \"127.0.0.1\"\n" + kRest) ==
          std::string("t.yaml:2:13: listeners[1].listen: '127.0.0.1' has no port; ") + kListenExpected);
    CHECK(error_of("listeners:\n  - listen: \"::1:80\"\n" + kRest) ==
          std::string("t.yaml:2:13: listeners[1].listen: '::1:80': an IPv6 address needs brackets; ") +
              kListenExpected);
    CHECK(error_of("listeners:\n  - listen: \"127.0.0.1:70000\"\n" + kRest) ==
          std::string("t.yaml:2:13: listeners[1].listen: '70000' is not a port (0-65535); ") +
              kListenExpected);
    CHECK(error_of("listeners:\n  - name: a\n" + kRest) ==
          std::string("t.yaml:2:5: listeners[1]: missing 'listen'; ") + kListenExpected);
}

TEST_CASE("error: no listeners in an explicit list", "[config][errors]") {
    CHECK(error_of("listeners: []\n" + kRest) ==
          "t.yaml:1:12: listeners: no listeners; expected at least one listener (or leave 'listeners' out "
          "for one "
          "on 127.0.0.1:8080)");
}

TEST_CASE("error: duplicate listener name", "[config][errors]") {
    CHECK(error_of("listeners:\n  - name: a\n    listen: \"127.0.0.1:8080\"\n  - name: a\n    listen: "
                   "\"127.0.0.1:8081\"\n" +
                   kRest) ==
          "t.yaml:4:11: listeners[2].name: duplicate listener name 'a' (first at line 2); expected unique "
          "listener "
          "names");
    // A name given by position can collide with an explicit one.
    CHECK(error_of("listeners:\n  - name: listener-3\n    listen: \"127.0.0.1:8080\"\n  - listen: "
                   "\"127.0.0.1:8081\"\n  - listen: \"127.0.0.1:8082\"\n" +
                   kRest) ==
          "t.yaml:5:5: listeners[3]: duplicate listener name 'listener-3' (first at line 2); this listener "
          "has no "
          "name and got it by position; expected unique listener names");
}

TEST_CASE("error: invalid names", "[config][errors]") {
    CHECK(error_of("listeners:\n  - name: a b\n    listen: \"127.0.0.1:8080\"\n" + kRest) ==
          "t.yaml:2:11: listeners[1].name: got 'a b'; expected a listener name: a name of letters, digits, "
          "'.', '_' "
          "and '-'");
    CHECK(upstream_error("\"my api\": {url: https://api.example.com}") ==
          "t.yaml:2:3: upstreams: got 'my api'; expected an upstream name: a name of letters, digits, '.', "
          "'_' and "
          "'-'");
}

TEST_CASE("error: duplicate listen address", "[config][errors]") {
    CHECK(error_of("listeners:\n  - name: a\n    listen: \"127.0.0.1:8080\"\n  - name: b\n    listen: "
                   "\"127.0.0.1:8080\"\n" +
                   kRest) ==
          "t.yaml:5:13: listeners[2].listen: address 127.0.0.1:8080 is also used by listener 'a' (line 3); "
          "expected "
          "a different address or port for each listener and the admin listener");
    // A wildcard address takes the port on every address of its family.
    CHECK(error_of("listeners:\n  - name: a\n    listen: \"127.0.0.1:8080\"\n  - name: b\n    listen: "
                   "\"0.0.0.0:8080\"\n" +
                   kRest) ==
          "t.yaml:5:13: listeners[2].listen: address 0.0.0.0:8080 is also used by listener 'a' (line 3); "
          "expected a "
          "different address or port for each listener and the admin listener");
    CHECK(error_of("server:\n  admin: {listen: \"127.0.0.1:8080\"}\n" + kRest) ==
          "t.yaml:2:19: server.admin.listen: address 127.0.0.1:8080 is also used by the default listener "
          "(127.0.0.1:8080, as 'listeners' is not given); expected a different address or port for each "
          "listener "
          "and the admin listener");
    CHECK(error_of("listeners:\n  - name: a\n    listen: \"127.0.0.1:9901\"\n" + kRest) ==
          "t.yaml:3:13: listeners[1].listen: address 127.0.0.1:9901 is also used by the admin listener "
          "(default "
          "127.0.0.1:9901); expected a different address or port for each listener and the admin listener");
}

// ---- upstreams ---------------------------------------------------------------------

TEST_CASE("error: no upstreams", "[config][errors]") {
    CHECK(error_of("routes:\n  - upstream: api\n") ==
          "t.yaml:1:1: missing 'upstreams'; expected an 'upstreams' map with at least one upstream (or a "
          "'vendors' entry)");
    CHECK(error_of("upstreams: {}\nroutes:\n  - upstream: api\n") ==
          "t.yaml:1:12: upstreams: no upstreams; expected at least one upstream, e.g. upstreams: {intercom: "
          "{url: "
          "https://api.intercom.io}}");
}

TEST_CASE("error: duplicate upstream name", "[config][errors]") {
    CHECK(error_of("upstreams:\n  api: {url: https://api.example.com}\n  api: {url: "
                   "https://x.example.com}\nroutes:\n "
                   " - upstream: api\n") ==
          "t.yaml:3:3: upstreams: duplicate upstream name 'api' (first at line 2); expected each upstream "
          "name once");
}

TEST_CASE("error: bad URL or scheme", "[config][errors]") {
    CHECK(upstream_error("api: {url: ftp://api.example.com}") ==
          std::string(
              "t.yaml:2:14: upstream 'api' url: url 'ftp://api.example.com': unsupported scheme 'ftp'; ") +
              kUrlExpected);
    CHECK(upstream_error("api: {url: api.example.com}") ==
          std::string("t.yaml:2:14: upstream 'api' url: url 'api.example.com': no scheme; ") + kUrlExpected);
    CHECK(upstream_error("api: {url: \"https://api.example.com/v1?x=1\"}") ==
          std::string(
              "t.yaml:2:14: upstream 'api' url: url 'https://api.example.com/v1?x=1': a query or fragment "
              "is not allowed; ") +
              kUrlExpected);
    CHECK(
        upstream_error("api: {url: \"https://api.example.com:99999\"}") ==
        std::string(
            "t.yaml:2:14: upstream 'api' url: url 'https://api.example.com:99999': invalid port '99999'; ") +
            kUrlExpected);
    CHECK(upstream_error("api: {url: \"https://\"}") ==
          std::string("t.yaml:2:14: upstream 'api' url: url 'https://': no host; ") + kUrlExpected);
    CHECK(upstream_error("api: {url: \"http://user:pw@h.example.com/\"}") ==
          std::string(
              "t.yaml:2:14: upstream 'api' url: url 'http://user:pw@h.example.com/': credentials in the URL "
              "are not supported (send them as request headers); ") +
              kUrlExpected);
    CHECK(upstream_error("api: {max_connections: 4}") ==
          "t.yaml:2:8: upstream 'api': missing 'url'; expected the vendor's base URL, e.g. url: "
          "https://api.intercom.io");
}

TEST_CASE("error: tls on an http upstream", "[config][errors]") {
    CHECK(upstream_error("api: {url: http://api.example.com, tls: {verify: false}}") ==
          "t.yaml:2:38: upstream 'api': tls settings on an http upstream; expected an https:// url, or no "
          "'tls' "
          "(plain http does not use TLS)");
}

TEST_CASE("error: more idle connections than connections", "[config][errors]") {
    CHECK(
        upstream_error("api: {url: https://a.example.com, max_connections: 4, max_idle_connections: 8}") ==
        "t.yaml:2:79: upstream 'api' max_idle_connections: max_idle_connections 8 exceeds max_connections 4; "
        "expected at most max_connections (idle connections count towards it)");
}

// ---- limits --------------------------------------------------------------------------

TEST_CASE("error: unknown algorithm", "[config][errors]") {
    CHECK(limit_error("x: {algorithm: leaky_bucket, limit: 1}") ==
          "t.yaml:4:18: limit 'x' algorithm: unknown algorithm 'leaky_bucket'; expected one of token_bucket, "
          "sliding_window, fixed_window, concurrency");
}

TEST_CASE("error: duplicate limit name", "[config][errors]") {
    CHECK(limit_error("x: {limit: 5, window: 1s}\n  x: {limit: 5, window: 1s}") ==
          "t.yaml:5:3: limits: duplicate limit name 'x' (first at line 4); expected each limit name once");
}

TEST_CASE("error: limit <= 0", "[config][errors]") {
    CHECK(limit_error("x: {algorithm: sliding_window, limit: 0, window: 1s}") ==
          "t.yaml:4:41: limit 'x' limit: 0 is out of range; expected an integer >= 1");
    CHECK(limit_error("x: {algorithm: concurrency, limit: -3}") ==
          "t.yaml:4:38: limit 'x' limit: -3 is out of range; expected an integer >= 1");
    CHECK(limit_error("x: {algorithm: concurrency}") ==
          "t.yaml:4:6: limit 'x': missing 'limit'; expected the most requests in flight, e.g. limit: 10");
}

TEST_CASE("error: window missing or not positive", "[config][errors]") {
    CHECK(limit_error("x: {algorithm: sliding_window, limit: 5}") ==
          "t.yaml:4:6: limit 'x': missing 'window'; expected the window length, e.g. window: 10s");
    CHECK(limit_error("x: {algorithm: fixed_window, limit: 5}") ==
          "t.yaml:4:6: limit 'x': missing 'window'; expected the window length, e.g. window: 10s");
    CHECK(limit_error("x: {algorithm: token_bucket, limit: 4}") ==
          "t.yaml:4:6: limit 'x': missing 'window'; expected the period in which `limit` tokens are added, "
          "e.g. "
          "window: 1s");
    CHECK(limit_error("x: {algorithm: sliding_window, limit: 5, window: 0s}") ==
          std::string("t.yaml:4:52: limit 'x' window: '0s' is zero; ") + kDurationExpected);
    CHECK(limit_error("x: {algorithm: token_bucket, rate: 4/0s}") ==
          "t.yaml:4:38: limit 'x' rate: rate '4/0s': '0s' is not a positive duration; expected N/duration, "
          "e.g. "
          "rate: 4/1s or rate: 100/1m");
}

TEST_CASE("error: a key the algorithm does not use", "[config][errors]") {
    CHECK(limit_error("x: {algorithm: concurrency, limit: 5, window: 1s}") ==
          "t.yaml:4:41: limit 'x': 'window' does not apply to a concurrency limit (a concurrency limit caps "
          "requests "
          "in flight and has no time window); expected only algorithm, limit, key, cost, enforce, max_keys, "
          "feedback, on_redis_failure, classes, fair_share for "
          "concurrency");
    CHECK(limit_error("x: {algorithm: concurrency, limit: 5, margin: 1s}") ==
          "t.yaml:4:41: limit 'x': 'margin' does not apply to a concurrency limit (a concurrency limit caps "
          "requests "
          "in flight and has no time window); expected only algorithm, limit, key, cost, enforce, max_keys, "
          "feedback, on_redis_failure, classes, fair_share for "
          "concurrency");
    CHECK(limit_error("x: {algorithm: sliding_window, limit: 5, window: 1s, burst: 3}") ==
          "t.yaml:4:56: limit 'x': 'burst' does not apply to a sliding_window limit (burst is the bucket "
          "size of a "
          "token_bucket); expected only algorithm, limit, window, margin, key, cost, enforce, max_keys, "
          "feedback, on_redis_failure, classes, fair_share for "
          "sliding_window");
    CHECK(
        limit_error("x: {algorithm: fixed_window, limit: 5, window: 1s, rate: 5/1s}") ==
        "t.yaml:4:54: limit 'x': 'rate' does not apply to a fixed_window limit (rate is the token_bucket "
        "shorthand for limit/window); expected only algorithm, limit, window, utc_offset, time_zone, margin, "
        "key, cost, enforce, max_keys, feedback, on_redis_failure, classes, fair_share for fixed_window");
}

TEST_CASE("error: utc_offset out of range or on a non-fixed algorithm", "[config][errors]") {
    CHECK(limit_error("x: {algorithm: sliding_window, limit: 5, window: 1s, utc_offset: 1h}") ==
          "t.yaml:4:56: limit 'x': 'utc_offset' does not apply to a sliding_window limit (utc_offset shifts "
          "the "
          "calendar periods of a fixed_window); expected only algorithm, limit, window, margin, key, cost, "
          "enforce, "
          "max_keys, feedback, on_redis_failure, classes, fair_share for sliding_window");
    CHECK(
        limit_error("x: {algorithm: fixed_window, limit: 5, window: 1d, utc_offset: 24h}") ==
        "t.yaml:4:66: limit 'x' utc_offset: utc_offset 24h is a whole day or more away from UTC; expected a "
        "duration strictly between -24h and 24h, e.g. -5h");
    CHECK(
        limit_error("x: {algorithm: fixed_window, limit: 5, window: 1d, utc_offset: -25h}") ==
        "t.yaml:4:66: limit 'x' utc_offset: utc_offset -25h is a whole day or more away from UTC; expected a "
        "duration strictly between -24h and 24h, e.g. -5h");
}

TEST_CASE("error: fixed window not aligned to the calendar day", "[config][errors]") {
    CHECK(limit_error("x: {algorithm: fixed_window, limit: 5, window: 7h}") ==
          "t.yaml:4:50: limit 'x' window: fixed_window window 7h neither divides a day evenly nor is a whole "
          "number "
          "of days (periods are aligned to the calendar day); expected a window such as 1s, 1m, 5m, 1h, 6h, "
          "1d or "
          "7d");
    CHECK(
        limit_error("x: {algorithm: fixed_window, limit: 5, window: 1d1h}") ==
        "t.yaml:4:50: limit 'x' window: fixed_window window 1d1h neither divides a day evenly nor is a whole "
        "number of days (periods are aligned to the calendar day); expected a window such as 1s, 1m, 5m, 1h, "
        "6h, "
        "1d or 7d");
}

TEST_CASE("error: token bucket with both rate and limit/window, or burst < 1", "[config][errors]") {
    CHECK(limit_error("x: {algorithm: token_bucket, rate: 4/1s, limit: 4}") ==
          "t.yaml:4:44: limit 'x': both 'rate' and 'limit' are given; expected either rate (e.g. rate: 4/1s) "
          "or "
          "limit and window");
    CHECK(limit_error("x: {algorithm: token_bucket, rate: 4/1s, window: 1s}") ==
          "t.yaml:4:44: limit 'x': both 'rate' and 'window' are given; expected either rate (e.g. rate: "
          "4/1s) or "
          "limit and window");
    CHECK(limit_error("x: {algorithm: token_bucket, rate: 4/1s, burst: 0}") ==
          "t.yaml:4:51: limit 'x' burst: 0 is out of range; expected an integer >= 1");
    CHECK(limit_error("x: {algorithm: token_bucket, rate: 4}") ==
          "t.yaml:4:38: limit 'x' rate: rate '4' has no '/'; expected N/duration, e.g. rate: 4/1s or rate: "
          "100/1m");
}

TEST_CASE("error: negative cost, or a cost that can never be admitted", "[config][errors]") {
    CHECK(limit_error("x: {algorithm: sliding_window, limit: 5, window: 1s, cost: -1}") ==
          "t.yaml:4:62: limit 'x' cost: -1 is out of range; expected an integer >= 0");
    CHECK(limit_error("x: {algorithm: sliding_window, limit: 5, window: 1s, cost: 6}") ==
          "t.yaml:4:62: limit 'x' cost: cost 6 exceeds the sliding_window limit 5, so such a request could "
          "never be "
          "admitted; expected a cost of at most 5");
    CHECK(limit_error("x: {algorithm: token_bucket, rate: 10/1s, burst: 2, cost: 3}") ==
          "t.yaml:4:61: limit 'x' cost: cost 3 exceeds the token_bucket burst 2, so such a request could "
          "never be "
          "admitted; expected a cost of at most 2");
    CHECK(limit_error(
              "x: {algorithm: sliding_window, limit: 5, window: 1s, cost: {header: X-Units, default: 9}}") ==
          "t.yaml:4:89: limit 'x' cost.default: default cost 9 exceeds the sliding_window limit 5, so such a "
          "request "
          "could never be admitted; expected a cost of at most 5");
    CHECK(limit_error(
              "x: {algorithm: sliding_window, limit: 5, window: 1s, cost: {header: X-Units, max: -1}}") ==
          "t.yaml:4:85: limit 'x' cost.max: -1 is out of range; expected an integer >= 0");
    CHECK(limit_error("x: {algorithm: sliding_window, limit: 5, window: 1s, cost: {default: 1}}") ==
          "t.yaml:4:62: limit 'x' cost: missing 'header'; expected the header carrying the cost (or body: "
          "{array_length: /POINTER}, or a plain integer for a fixed cost)");
}

TEST_CASE("error: max_keys < 1", "[config][errors]") {
    CHECK(limit_error("x: {algorithm: sliding_window, limit: 5, window: 1s, max_keys: 0}") ==
          "t.yaml:4:66: limit 'x' max_keys: 0 is out of range; expected an integer >= 1");
}

TEST_CASE("error: bad key source", "[config][errors]") {
    CHECK(limit_error("x: {limit: 5, window: 1s, key: {cookie: a}}") ==
          "t.yaml:4:35: limit 'x' key: unknown key 'cookie'; expected one of header, query, path_param, "
          "group_by");
    CHECK(limit_error("x: {limit: 5, window: 1s, key: [method, path]}") ==
          "t.yaml:4:43: limit 'x' key[2]: unknown key source 'path'; expected method, {header: NAME}, "
          "{query: NAME}, "
          "{path_param: NAME} (each optionally with group_by), or a list of these");
    CHECK(limit_error("x: {limit: 5, window: 1s, key: {header: a, query: b}}") ==
          "t.yaml:4:34: limit 'x' key: a key source needs exactly one of header, query, path_param; expected "
          "method, "
          "{header: NAME}, {query: NAME}, {path_param: NAME} (each optionally with group_by), or a list of "
          "these");
    CHECK(limit_error("x: {limit: 5, window: 1s, key: {header: \"X Key\"}}") ==
          "t.yaml:4:43: limit 'x' key.header: got 'X Key'; expected a header name (an HTTP token)");
}

TEST_CASE("error: a path_param key on a route that does not capture it", "[config][errors]") {
    CHECK(error_of(
              "upstreams:\n  api: {url: https://api.example.com}\nlimits:\n  x: {limit: 5, window: 1s, key: "
              "{path_param: id}}\nroutes:\n  - upstream: api\n    match: {path: \"/a/{other}\"}\n    limits: "
              "[x]\n") ==
          "t.yaml:8:14: route 'route-1' limits[1]: limit 'x' is keyed by path_param 'id', which this route's "
          "match.path does not capture; expected a match.path with {id}, or a limit keyed otherwise");
}

// ---- queue ---------------------------------------------------------------------------

TEST_CASE("error: max_depth < 0 or max_wait < 0", "[config][errors]") {
    CHECK(route_error("    upstream: api\n    queue: {max_depth: -1}\n") ==
          "t.yaml:6:24: route 'r' queue.max_depth: -1 is out of range; expected an integer >= 0");
    CHECK(route_error("    upstream: api\n    queue: {max_wait: -1s}\n") ==
          "t.yaml:6:23: route 'r' queue.max_wait: '-1s' is negative; expected a duration >= 0 with a unit "
          "(ns, us, "
          "ms, s, m, h, d), e.g. 250ms, 10s, 1m30s");
    CHECK(error_of("queue: {max_wait: -5s}\n" + kRest) ==
          "t.yaml:1:19: queue.max_wait: '-5s' is negative; expected a duration >= 0 with a unit (ns, us, ms, "
          "s, m, "
          "h, d), e.g. 250ms, 10s, 1m30s");
}

// ---- routes --------------------------------------------------------------------------

TEST_CASE("error: no routes", "[config][errors]") {
    CHECK(error_of("upstreams:\n  api: {url: https://api.example.com}\n") ==
          "t.yaml:1:1: missing 'routes'; expected a 'routes' list with at least one route (or a 'vendors' "
          "entry)");
    CHECK(error_of("upstreams:\n  api: {url: https://api.example.com}\nroutes: []\n") ==
          "t.yaml:3:9: routes: no routes; expected at least one route");
}

TEST_CASE("error: duplicate route name", "[config][errors]") {
    CHECK(route_error("    upstream: api\n  - name: r\n    upstream: api\n") ==
          "t.yaml:6:11: routes[2].name: duplicate route name 'r' (first at line 4); expected unique route "
          "names");
}

TEST_CASE("error: unknown upstream reference", "[config][errors]") {
    CHECK(
        route_error("    upstream: apj\n") ==
        "t.yaml:5:15: route 'r' upstream: unknown upstream 'apj' (did you mean 'api'?); expected one of api");
    CHECK(route_error("    match: {path_prefix: /a/}\n") ==
          "t.yaml:4:5: route 'r': missing 'upstream'; expected the name of the upstream to forward to");
}

TEST_CASE("error: unknown limit reference", "[config][errors]") {
    CHECK(route_error("    upstream: api\n    limits: [nope]\n") ==
          "t.yaml:6:14: route 'r' limits[1]: unknown limit 'nope'; expected a limit defined under 'limits' "
          "(there "
          "are none)");
    CHECK(error_of(
              "upstreams:\n  api: {url: https://api.example.com}\nlimits:\n  a: {limit: 1, window: 1s}\n  b: "
              "{limit: 1, window: 1s}\nroutes:\n  - name: r\n    upstream: api\n    limits: [a, c]\n") ==
          "t.yaml:9:17: route 'r' limits[2]: unknown limit 'c'; expected one of a, b");
}

TEST_CASE("error: duplicate limit in a route", "[config][errors]") {
    CHECK(error_of("upstreams:\n  api: {url: https://api.example.com}\nlimits:\n  a: {limit: 1, window: "
                   "1s}\nroutes:\n "
                   " - name: r\n    upstream: api\n    limits: [a, a]\n") ==
          "t.yaml:8:17: route 'r' limits[2]: limit 'a' is listed twice; expected each limit once (a request "
          "counts "
          "once per limit)");
}

TEST_CASE("error: unknown listener reference", "[config][errors]") {
    CHECK(route_error("    match: {listener: public}\n    upstream: api\n") ==
          "t.yaml:5:23: route 'r' match.listener: unknown listener 'public'; expected one of default");
}

TEST_CASE("error: strip_prefix without path_prefix", "[config][errors]") {
    CHECK(route_error("    strip_prefix: true\n    upstream: api\n") ==
          "t.yaml:5:5: route 'r': strip_prefix without match.path_prefix; expected a match.path_prefix to "
          "strip");
}

TEST_CASE("error: both path_prefix and path", "[config][errors]") {
    CHECK(route_error("    match: {path_prefix: /a/, path: /b}\n    upstream: api\n") ==
          "t.yaml:5:31: route 'r' match: both 'path_prefix' and 'path' are given; expected at most one of "
          "path_prefix and path, or strip_prefix: true (the path then matches what follows the prefix)");
}

TEST_CASE("error: invalid path pattern or prefix", "[config][errors]") {
    const std::string expected =
        "expected a path pattern starting with '/', e.g. "
        "/api/v2.*/publisher/{publisher_id}/lead-result/{lead_id}";
    CHECK(
        route_error("    match: {path: \"/a/**/b\"}\n    upstream: api\n") ==
        "t.yaml:5:19: route 'r' match.path: invalid path pattern '/a/**/b': '**' must be the last segment; " +
            expected);
    CHECK(route_error("    match: {path: \"/a/{}\"}\n    upstream: api\n") ==
          "t.yaml:5:19: route 'r' match.path: invalid path pattern '/a/{}': empty parameter name '{}' in "
          "'{}'; " +
              expected);
    CHECK(route_error("    match: {path: a/b}\n    upstream: api\n") ==
          "t.yaml:5:19: route 'r' match.path: 'a/b' does not start with '/'; " + expected);
    CHECK(route_error("    match: {path_prefix: intercom}\n    upstream: api\n") ==
          "t.yaml:5:26: route 'r' match.path_prefix: 'intercom' does not start with '/'; expected a path "
          "prefix "
          "starting with '/', e.g. /intercom/");
}

TEST_CASE("error: bad method or host", "[config][errors]") {
    CHECK(route_error("    match: {methods: [GET, \"BAD METHOD\"]}\n    upstream: api\n") ==
          "t.yaml:5:28: route 'r' match.methods[2]: 'BAD METHOD' is not an HTTP method; expected an HTTP "
          "method such "
          "as GET, or a list of them");
    CHECK(route_error("    match: {host: \"a.*.com\"}\n    upstream: api\n") ==
          "t.yaml:5:19: route 'r' match.host: invalid wildcard host 'a.*.com'; expected '*.' followed by a "
          "domain "
          "(*.example.com)");
}

// ---- bounds ----------------------------------------------------------------------------

TEST_CASE("error: durations beyond their bound", "[config][errors][bounds]") {
    // INT64_MAX ns once loaded as a window, and `now + window` overflowed in the limiter.
    CHECK(limit_error("x: {algorithm: sliding_window, limit: 1, window: 9223372036854775807ns}") ==
          std::string("t.yaml:4:52: limit 'x' window: '9223372036854775807ns' is longer than 366d; ") +
              kDurationExpected + ", at most 366d");
    CHECK(limit_error("x: {algorithm: sliding_window, limit: 1, window: 1s, margin: 2d}") ==
          "t.yaml:4:64: limit 'x' margin: '2d' is longer than 1d; expected a duration >= 0 with a unit (ns, "
          "us, ms, s, m, h, d), e.g. 250ms, 10s, 1m30s, at most 1d");
    CHECK(limit_error("x: {algorithm: token_bucket, rate: 4/367d}") ==
          "t.yaml:4:38: limit 'x' rate: rate '4/367d': '367d' is longer than 366d; expected N/duration, "
          "e.g. rate: 4/1s or rate: 100/1m, with a period of at most 366d");
    CHECK(error_of("queue: {max_wait: 25h}\n" + kRest) ==
          "t.yaml:1:19: queue.max_wait: '25h' is longer than 1d; expected a duration >= 0 with a unit (ns, "
          "us, ms, s, m, h, d), e.g. 250ms, 10s, 1m30s, at most 1d");
    CHECK(error_of("server:\n  timeouts: {client_idle: 1d1ns}\n" + kRest) ==
          std::string("t.yaml:2:27: server.timeouts.client_idle: '1d1ns' is longer than 1d; ") +
              kDurationExpected + ", at most 1d");
    CHECK(upstream_error("api: {url: https://a.example.com, connect_timeout: 106751d}") ==
          std::string("t.yaml:2:54: upstream 'api' connect_timeout: '106751d' is longer than 1d; ") +
              kDurationExpected + ", at most 1d");
    CHECK(upstream_error("api: {url: https://a.example.com, feedback: {max_pause: 2d}}") ==
          std::string("t.yaml:2:59: upstream 'api' feedback.max_pause: '2d' is longer than 1d; ") +
              kDurationExpected + ", at most 1d");
    // At the bound itself: accepted.
    CHECK(limit_error("x: {algorithm: sliding_window, limit: 1, window: 366d, margin: 1d}") == "(no error)");
    CHECK(error_of("queue: {max_wait: 1d}\n" + kRest) == "(no error)");
}

TEST_CASE("error: sizes beyond their bound", "[config][errors][bounds]") {
    // Beast throws std::length_error for a field value over 65,535 bytes.
    CHECK(error_of("server:\n  max_header_bytes: 65537\n" + kRest) ==
          "t.yaml:2:21: server.max_header_bytes: '65537' is out of range; expected a size from 1 to 65536 "
          "bytes");
    CHECK(error_of("server:\n  max_header_bytes: 4g\n" + kRest) ==
          "t.yaml:2:21: server.max_header_bytes: '4g' is out of range; expected a size from 1 to 65536 "
          "bytes");
    CHECK(error_of("server:\n  max_header_bytes: 64k\n" + kRest) == "(no error)");
    CHECK(error_of("server:\n  max_body_bytes: 1025g\n" + kRest) ==
          "t.yaml:2:19: server.max_body_bytes: '1025g' is out of range; expected a size from 0 to "
          "1099511627776 bytes");
}

// ---- echoed values -------------------------------------------------------------------

TEST_CASE("error: echoed values are escaped and capped", "[config][errors][echo]") {
    // A NUL (YAML "\0") is shown, not passed on: it would cut the message short where printed.
    CHECK(error_of("server:\n  rate_limit_headers: {style: \"a\\0b\\tc\"}\n" + kRest) ==
          std::string("t.yaml:2:31: server.rate_limit_headers.style: unknown style 'a\\x00b\\x09c'; expected "
                      "one of none, ietf, x, both"));
    CHECK(error_of("server:\n  admin: {listen: \"127.0.0.1\\0x:9901\"}\n" + kRest) ==
          std::string("t.yaml:2:19: server.admin.listen: '127.0.0.1\\x00x' is not an IP address; ") +
              kListenExpected);
    // A 10 MB value was echoed whole, twice; now 64 characters of it and its length.
    const std::string huge(10'000'000, 'a');
    const auto message = limit_error("x: {algorithm: sliding_window, limit: 1, window: " + huge + "}");
    CHECK(message == "t.yaml:4:52: limit 'x' window: '" + std::string(64, 'a') +
                         "'... (10000000 bytes) is not a "
                         "duration; " +
                         kDurationExpected);
    CHECK(message.size() < 400);
}

TEST_CASE("error: route pattern messages echo the pattern once, capped", "[config][errors][echo]") {
    // The route layer's reason used to quote the offending segment whole after the
    // loader's capped quote of the pattern: a 10 MB pattern made a 10 MB message.
    const std::string huge(10'000'000, 'a');
    const auto message = route_error("    upstream: api\n    match: {path: \"/x/" + huge + "**\"}\n");
    CHECK(message.size() < 600);
    CHECK(message.find("(10000005 bytes)") != std::string::npos);
    const auto host = route_error("    upstream: api\n    match: {host: \"a\\0b " + huge + "\"}\n");
    CHECK(host.size() < 600);
    CHECK(host.find("a\\x00b") != std::string::npos);
}
