// The traffic logs `sluice simulate` reads: sluice's access log, CSV and JSONL; bad lines are
// errors naming the file and line, or skipped (counted) within the allowance.

#include "sluice/simulate/traffic.hpp"

#include <sstream>
#include <string>

#include <catch2/catch.hpp>

#include "sluice/access_log/line_format.hpp"

#include "unit/simulate/simulate_support.hpp"

using namespace sluice;
using namespace sluice::simulate;
using namespace std::chrono_literals;

using sluice::simulate::test::kStart;

namespace {

TrafficLog read(const std::string& text, TrafficReadOptions options = {}) {
    std::istringstream in(text);
    return read_traffic(in, "traffic.log", options);
}

}  // namespace

TEST_CASE("traffic: RFC 3339 times and Unix seconds", "[simulate][traffic]") {
    CHECK(parse_rfc3339("2026-12-07T10:00:00Z") == kStart);
    CHECK(parse_rfc3339("2026-12-07T10:00:00.250Z") == kStart + 250ms);
    CHECK(parse_rfc3339("2026-12-07T11:00:00.5+01:00") == kStart + 500ms);
    CHECK(parse_rfc3339("2026-12-07T05:00:00-05:00") == kStart);
    CHECK_FALSE(parse_rfc3339("2026-12-07 10:00"));
    CHECK_FALSE(parse_rfc3339("2026-02-30T10:00:00Z"));
    CHECK_FALSE(parse_rfc3339("2026-12-07T10:00:00"));  // no zone: ambiguous
    CHECK_FALSE(parse_rfc3339("2026-12-07T10:00:00.Z"));
}

TEST_CASE("traffic: the format is guessed from the first line", "[simulate][traffic]") {
    CHECK(guess_traffic_format(R"({"time":"x","answered_by":"vendor"})") == TrafficFormat::access);
    CHECK(guess_traffic_format(R"({"timestamp":1})") == TrafficFormat::jsonl);
    CHECK(guess_traffic_format("timestamp,method,host,path") == TrafficFormat::csv);
}

TEST_CASE("traffic: sluice's access log, with what the daemon did", "[simulate][traffic]") {
    const auto log = read(
        R"({"time":"2026-12-07T10:00:00.125Z","route":"api","method":"GET","host":"api.example.com","path":"/v1/items","query":"page=2","status":429,"answered_by":"queue_full","queue_wait_seconds":0.000000,"upstream_seconds":null,"bytes_in":50,"bytes_out":10,"attempts":0,"delayed_by":["five"],"complete":true}
{"time":"2026-12-07T10:00:01.000Z","route":null,"method":null,"host":null,"path":null,"status":400,"answered_by":"malformed_request","queue_wait_seconds":0.000000,"upstream_seconds":null,"bytes_in":5,"bytes_out":10,"attempts":0,"delayed_by":[],"complete":true}

{"time":"2026-12-07T10:00:02.000Z","route":"api","method":"POST","host":"api.example.com","path":"/v1/items","status":201,"answered_by":"vendor","queue_wait_seconds":0.500000,"upstream_seconds":0.042000,"bytes_in":50,"bytes_out":10,"attempts":1,"delayed_by":["five"],"complete":true}
)");
    REQUIRE(log.error.empty());
    CHECK(log.format == TrafficFormat::access);
    CHECK_FALSE(log.carries_headers);
    CHECK(log.unreplayable == 1);
    REQUIRE(log.requests.size() == 2);
    const auto& first = log.requests[0];
    CHECK(first.at == kStart + 125ms);
    CHECK(first.method == "GET");
    CHECK(first.path == "/v1/items");
    CHECK(first.query == "page=2");
    CHECK(first.line == 1);
    CHECK_FALSE(first.upstream_time);
    REQUIRE(first.logged);
    CHECK(first.logged->status == 429);
    CHECK(first.logged->answered_by == "queue_full");
    const auto& second = log.requests[1];
    CHECK(second.line == 4);
    CHECK(second.upstream_time == 42ms);
    CHECK(second.logged->queue_wait == 500ms);
}

TEST_CASE("traffic: the access log's class is replayed as Sluice-Priority, its caller kept",
          "[simulate][traffic]") {
    const auto log = read(
        R"({"time":"2026-12-07T10:00:00.000Z","route":"api","priority":"batch","caller":"svc-a","method":"GET","host":"api.example.com","path":"/v1/items","status":200,"answered_by":"vendor","queue_wait_seconds":0.0,"upstream_seconds":0.01,"bytes_in":50,"bytes_out":10,"attempts":1,"delayed_by":[],"complete":true}
{"time":"2026-12-07T10:00:01.000Z","route":"api","priority":null,"caller":null,"method":"GET","host":"api.example.com","path":"/v1/items","status":200,"answered_by":"vendor","queue_wait_seconds":0.0,"upstream_seconds":0.01,"bytes_in":50,"bytes_out":10,"attempts":1,"delayed_by":[],"complete":true}
)");
    REQUIRE(log.error.empty());
    REQUIRE(log.requests.size() == 2);
    CHECK(find_header(log.requests[0], "Sluice-Priority") == std::string_view("batch"));
    CHECK(log.requests[0].caller == std::optional<std::string>("svc-a"));
    CHECK_FALSE(find_header(log.requests[1], "Sluice-Priority"));
    CHECK_FALSE(log.requests[1].caller);

    const auto bad = read(
        R"({"time":"2026-12-07T10:00:00.000Z","route":"api","caller":7,"method":"GET","host":"a","path":"/","answered_by":null})"
        "\n");
    CHECK(bad.error == "traffic.log:1: \"caller\" must be a string");
}

TEST_CASE("traffic: CSV with header columns and quoted cells", "[simulate][traffic]") {
    const auto log = read(
        "timestamp,method,host,path,upstream_seconds,Authorization,X-Units\n"
        "2026-12-07T10:00:00Z,GET,api.example.com,/v1/a?x=1,0.2,\"Bearer a,b\",3\n"
        "1796637601.5,POST,api.example.com:8080,/v1/b,,,\n");
    REQUIRE(log.error.empty());
    CHECK(log.format == TrafficFormat::csv);
    CHECK(log.carries_headers);
    REQUIRE(log.requests.size() == 2);
    CHECK(log.requests[0].at == kStart);
    CHECK(log.requests[0].path == "/v1/a");
    CHECK(log.requests[0].query == "x=1");
    CHECK(log.requests[0].upstream_time == 200ms);
    CHECK(find_header(log.requests[0], "authorization") == std::string_view("Bearer a,b"));
    CHECK(find_header(log.requests[0], "x-units") == std::string_view("3"));
    CHECK(log.requests[1].at == kStart + 1500ms);
    CHECK_FALSE(log.requests[1].upstream_time);
    CHECK_FALSE(find_header(log.requests[1], "Authorization"));  // an empty cell: absent
}

TEST_CASE("traffic: JSONL with headers", "[simulate][traffic]") {
    const auto log = read(
        R"({"timestamp": 1796637600.25, "method": "GET", "host": "h", "path": "/x", "headers": {"Authorization": "k1"}, "upstream_seconds": 1}
)");
    REQUIRE(log.error.empty());
    CHECK(log.format == TrafficFormat::jsonl);
    REQUIRE(log.requests.size() == 1);
    CHECK(log.requests[0].at == kStart + 250ms);
    CHECK(find_header(log.requests[0], "AUTHORIZATION") == std::string_view("k1"));
    CHECK(log.requests[0].upstream_time == 1s);
}

TEST_CASE("traffic: a bad line is an error naming the file and line, unless skipping is allowed",
          "[simulate][traffic]") {
    const std::string text =
        "timestamp,method,host,path\n"
        "2026-12-07T10:00:00Z,GET,h,/a\n"
        "yesterday,GET,h,/b\n"
        "2026-12-07T10:00:01Z,GET,h,no-slash\n"
        "2026-12-07T10:00:02Z,GET,h,/c\n";
    const auto strict = read(text);
    CHECK(strict.error == "traffic.log:3: the timestamp 'yesterday' is neither RFC 3339 nor Unix seconds");

    TrafficReadOptions lenient;
    lenient.max_bad_lines = 2;
    const auto skipped = read(text, lenient);
    REQUIRE(skipped.error.empty());
    CHECK(skipped.requests.size() == 2);
    CHECK(skipped.skipped_bad_lines == 2);
    REQUIRE(skipped.skipped_examples.size() == 2);
    CHECK(skipped.skipped_examples[1] == "traffic.log:4: the path must start with '/'");

    lenient.max_bad_lines = 1;
    CHECK(read(text, lenient).error ==
          "traffic.log:4: the path must start with '/' (1 bad lines skipped before it, the most allowed)");

    CHECK(read("when,method\n1,GET\n").error ==
          "traffic.log:1: the header row lacks the column(s) timestamp host path (expected: "
          "timestamp,method,host,path[,query][,upstream_seconds][,HEADER...])");
    CHECK(read("{\"time\": \"2026-12-07T10:00:00Z\", \"answered_by\": null, \"method\": 7}\n").error ==
          "traffic.log:1: \"method\" must be a string");
    CHECK(read("{\"timestamp\": 1, \"method\": \"GET\", \"path\": \"/\"}\n{not json\n").error ==
          "traffic.log:2: not JSON");
}

TEST_CASE("traffic: the number of requests held is bounded", "[simulate][traffic]") {
    TrafficReadOptions options;
    options.max_requests = 2;
    const auto log = read("timestamp,method,host,path\n1,GET,h,/a\n2,GET,h,/b\n3,GET,h,/c\n", options);
    CHECK(log.error == "traffic.log:4: more than 2 requests: split the log and simulate it in parts");
}

TEST_CASE("traffic: a line the daemon's own writer formats reads back", "[simulate][traffic]") {
    // The access log's writer (access_log/line_format.hpp) and this reader must agree on every field
    // the simulation uses: a change to one that breaks the other fails here.
    access_log::RequestRecord record;
    record.unix_ms = 1'796'637'600'125;
    const std::string route = "api", method = "PUT", host = "api.example.com", path = "/v1/items/7";
    record.route = route;
    record.method = method;
    record.host = host;
    record.path = path;
    record.query = "page=2&api_key=secret";
    record.status = 429;
    record.answered_by = "admission_timeout";
    record.queue_wait = std::chrono::milliseconds(1500);
    record.upstream_time = std::chrono::microseconds(42'250);
    record.add_delayed_by("five");
    record.complete = true;
    access_log::LineOptions options;
    options.log_query = true;
    options.redacted_query_params = {"api_key"};
    std::string line;
    access_log::append_line(record, options, line);
    INFO(line);
    const auto log = read(line);
    REQUIRE(log.error.empty());
    CHECK(log.format == TrafficFormat::access);
    REQUIRE(log.requests.size() == 1);
    const auto& request = log.requests[0];
    CHECK(request.at == kStart + 125ms);
    CHECK(request.method == "PUT");
    CHECK(request.host == "api.example.com");
    CHECK(request.path == "/v1/items/7");
    CHECK(request.query == "page=2&api_key=REDACTED");
    CHECK(request.upstream_time == 42'250us);
    REQUIRE(request.logged);
    CHECK(request.logged->route == "api");
    CHECK(request.logged->status == 429);
    CHECK(request.logged->answered_by == "admission_timeout");
    CHECK(request.logged->queue_wait == 1500ms);
}
