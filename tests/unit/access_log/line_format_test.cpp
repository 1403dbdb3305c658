// The access log line (access_log/line_format.hpp): exact lines, JSON escaping of
// whatever a client sent, and the query only when asked for, with key values redacted.

#include "sluice/access_log/line_format.hpp"

#include <string>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

using sluice::access_log::append_json_string;
using sluice::access_log::append_line;
using sluice::access_log::append_redacted_query;
using sluice::access_log::append_rfc3339_ms;
using sluice::access_log::LineOptions;
using sluice::access_log::RequestRecord;
using namespace std::chrono_literals;

namespace {

std::string json_string(std::string_view text) {
    std::string out;
    append_json_string(text, out);
    return out;
}

std::string line_of(const RequestRecord& record, const LineOptions& options = {}) {
    std::string out;
    append_line(record, options, out);
    return out;
}

RequestRecord forwarded_get() {
    RequestRecord r;
    r.unix_ms = 1'796'599'263'123;  // 2026-12-06T23:21:03.123Z
    r.route = "contacts";
    r.method = "GET";
    r.host = "api.example.com";
    r.path = "/v1/contacts";
    r.query = "limit=10&api_key=sk-secret";
    r.status = 200;
    r.answered_by = "vendor";
    r.queue_wait = 250ms;
    r.upstream_time = 12'345'678ns;
    r.bytes_in = 97;
    r.bytes_out = 512;
    r.attempts = 1;
    r.add_delayed_by("per_key");
    r.complete = true;
    return r;
}

}  // namespace

TEST_CASE("a forwarded request is one exact JSON line", "[access-log]") {
    CHECK(line_of(forwarded_get()) ==
          "{\"time\":\"2026-12-06T23:21:03.123Z\",\"route\":\"contacts\",\"priority\":null,\"caller\":null,"
          "\"method\":\"GET\","
          "\"host\":\"api.example.com\",\"path\":\"/v1/contacts\",\"status\":200,\"answered_by\":\"vendor\","
          "\"queue_wait_seconds\":0.250000,\"upstream_seconds\":0.012346,\"bytes_in\":97,\"bytes_out\":512,"
          "\"attempts\":1,\"delayed_by\":[\"per_key\"],\"complete\":true}\n");
}

TEST_CASE("a request's priority class and fair-share caller are logged; an empty caller is not null",
          "[access-log][priorities]") {
    auto r = forwarded_get();
    r.priority = "batch";
    r.caller = "svc-\"a\"";
    r.has_caller = true;
    const auto line = nlohmann::json::parse(line_of(r));
    CHECK(line["priority"] == "batch");
    CHECK(line["caller"] == "svc-\"a\"");
    r.caller.clear();  // the caller header was absent: the fair share served the "" caller
    CHECK(nlohmann::json::parse(line_of(r))["caller"] == "");
    r.has_caller = false;
    r.priority = {};
    const auto plain = nlohmann::json::parse(line_of(r));
    CHECK(plain["priority"].is_null());
    CHECK(plain["caller"].is_null());
}

TEST_CASE("a request refused before routing has nulls where nothing is known", "[access-log]") {
    RequestRecord r;
    r.unix_ms = 0;
    r.status = 400;
    r.answered_by = "malformed_request";
    r.bytes_in = 20;
    r.bytes_out = 150;
    const auto line = line_of(r, LineOptions{true, {}});
    CHECK(
        line ==
        "{\"time\":\"1970-01-01T00:00:00.000Z\",\"route\":null,\"priority\":null,\"caller\":null,\"method\":"
        "null,\"host\":null,\"path\":null,"
        "\"query\":null,\"status\":400,\"answered_by\":\"malformed_request\",\"queue_wait_seconds\":0.000000,"
        "\"upstream_seconds\":null,\"bytes_in\":20,\"bytes_out\":150,\"attempts\":0,\"delayed_by\":[],"
        "\"complete\":false}\n");
    CHECK_NOTHROW(nlohmann::json::parse(line));
}

TEST_CASE("a client that left before any answer has no status and nobody who answered", "[access-log]") {
    auto r = forwarded_get();
    r.status = 0;
    r.answered_by.clear();
    r.upstream_time.reset();
    r.complete = false;
    const auto parsed = nlohmann::json::parse(line_of(r));
    CHECK(parsed["status"].is_null());
    CHECK(parsed["answered_by"].is_null());
    CHECK(parsed["upstream_seconds"].is_null());
    CHECK(parsed["complete"] == false);
}

TEST_CASE("the query is left out unless log_query is on", "[access-log]") {
    const auto without = line_of(forwarded_get());
    CHECK(without.find("query") == std::string::npos);
    CHECK(without.find("sk-secret") == std::string::npos);
    CHECK(without.find("limit=10") == std::string::npos);
    const auto with = nlohmann::json::parse(line_of(forwarded_get(), LineOptions{true, {"api_key"}}));
    CHECK(with["query"] == "limit=10&api_key=REDACTED");
}

TEST_CASE("redaction matches a limit's query parameter however the client spells it", "[access-log]") {
    const std::vector<std::string> keys{"api_key", "token"};
    auto redact = [&](std::string_view query) {
        std::string out;
        append_redacted_query(query, keys, out);
        return out;
    };
    CHECK(redact("api_key=s1") == "api_key=REDACTED");
    CHECK(redact("API_KEY=s1&x=1") == "API_KEY=REDACTED&x=1");
    CHECK(redact("api%5Fkey=s1") == "api%5Fkey=REDACTED");
    CHECK(redact("api%5fKey=s1&token=t&token=u") == "api%5fKey=REDACTED&token=REDACTED&token=REDACTED");
    CHECK(redact("x=1&&api_key=") == "x=1&&api_key=REDACTED");
    CHECK(redact("api_key") == "api_key");  // no value, nothing to hide
    CHECK(redact("api_keys=1&my_api_key=2") == "api_keys=1&my_api_key=2");
    CHECK(redact("") == "");
    CHECK(redact("a=1&b=2") == "a=1&b=2");
}

TEST_CASE("control bytes, quotes and backslashes are escaped", "[access-log]") {
    CHECK(json_string("a\"b\\c") == "\"a\\\"b\\\\c\"");
    CHECK(json_string("\n\r\t") == "\"\\n\\r\\t\"");
    CHECK(json_string(std::string_view("\x00\x01\x1f\x7f", 4)) == "\"\\u0000\\u0001\\u001f\\u007f\"");
    CHECK(json_string("/plain/path-1_2.3~") == "\"/plain/path-1_2.3~\"");
}

TEST_CASE("valid UTF-8 passes through; invalid bytes become U+FFFD", "[access-log]") {
    CHECK(json_string("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80") ==
          "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
    CHECK(json_string("\xff") == "\"\\ufffd\"");
    CHECK(json_string("a\xc3") == "\"a\\ufffd\"");                                 // cut short
    CHECK(json_string("\xc0\xaf") == "\"\\ufffd\\ufffd\"");                        // overlong '/'
    CHECK(json_string("\xe0\x80\xaf") == "\"\\ufffd\\ufffd\\ufffd\"");             // overlong, 3 bytes
    CHECK(json_string("\xed\xa0\x80") == "\"\\ufffd\\ufffd\\ufffd\"");             // a surrogate
    CHECK(json_string("\xf4\x90\x80\x80") == "\"\\ufffd\\ufffd\\ufffd\\ufffd\"");  // above U+10FFFF
    CHECK(json_string("\x80x") == "\"\\ufffdx\"");
}

TEST_CASE("a line with every kind of hostile byte parses as JSON and keeps the text", "[access-log]") {
    auto r = forwarded_get();
    const std::string path("/a\"b\\c\n\x01\xff\xc3\xa9", 11);
    r.path = path;
    r.host = "h\x7fst";
    r.query = "q=\"\\\n&api_key=\xff";
    const auto line = line_of(r, LineOptions{true, {"api_key"}});
    CHECK(line.back() == '\n');
    CHECK(std::count(line.begin(), line.end(), '\n') == 1);
    const auto parsed = nlohmann::json::parse(line);
    CHECK(parsed["path"] == "/a\"b\\c\n\x01\xef\xbf\xbd\xc3\xa9");
    CHECK(parsed["host"] == "h\x7fst");
    CHECK(parsed["query"] == "q=\"\\\n&api_key=REDACTED");
}

TEST_CASE("times are RFC 3339 UTC with milliseconds", "[access-log]") {
    auto at = [](std::int64_t ms) {
        std::string out;
        append_rfc3339_ms(ms, out);
        return out;
    };
    CHECK(at(0) == "1970-01-01T00:00:00.000Z");
    CHECK(at(1'796'599'263'123) == "2026-12-06T23:21:03.123Z");
    CHECK(at(951'782'399'999) == "2000-02-28T23:59:59.999Z");
    CHECK(at(951'782'400'000) == "2000-02-29T00:00:00.000Z");
}

TEST_CASE("delayed_by names each limit once and at most four", "[access-log]") {
    RequestRecord r;
    for (const char* name : {"a", "b", "a", "c", "d", "e"}) r.add_delayed_by(name);
    CHECK(r.delayed_by_count == 4);
    const auto parsed = nlohmann::json::parse(line_of(r));
    CHECK(parsed["delayed_by"] == nlohmann::json::array({"a", "b", "c", "d"}));
}

TEST_CASE("escaping is the same at every position of a long string (the 8-byte fast path)", "[access-log]") {
    // Each special byte at each offset of a 20-byte plain string: the word-at-a-time path
    // must hand every one of them to the byte-by-byte escaping.
    const std::vector<std::pair<std::string, std::string>> specials = {
        {"\"", "\\\""},      {"\\", "\\\\"},      {"\n", "\\n"},       {std::string(1, '\0'), "\\u0000"},
        {"\x1f", "\\u001f"}, {"\x7f", "\\u007f"}, {"\x80", "\\ufffd"}, {"\xc3\xa9", "\xc3\xa9"},
        {" ", " "},          {"~", "~"},          {"\xff", "\\ufffd"}};
    for (const auto& [raw, escaped] : specials) {
        for (std::size_t at = 0; at <= 20; ++at) {
            std::string text(20, 'a');
            text.insert(at, raw);
            std::string expected(20, 'a');
            expected.insert(at, escaped);
            INFO("byte " << nlohmann::json(escaped).dump() << " at " << at);
            CHECK(json_string(text) == "\"" + expected + "\"");
        }
    }
}
