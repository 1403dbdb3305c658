// cost.body and cost.settle (docs/costs.md): what the loader accepts, what it refuses and how
// it says so, and that the printed configuration loads back to the same costs.

#include <string>

#include <catch2/catch.hpp>

#include "sluice/config/config_printer.hpp"
#include "sluice/config/loader.hpp"

using namespace sluice::config;

namespace {

std::string config_with(const std::string& limit) {
    return "upstreams:\n  api: {url: https://api.example.com}\nlimits:\n  " + limit +
           "\nroutes:\n  - upstream: api\n    limits: [x]\n";
}

std::string error_of(const std::string& limit) {
    try {
        load_config_string(config_with(limit), "t.yaml");
    } catch (const ConfigError& e) {
        return e.what();
    }
    return "(no error)";
}

}  // namespace

TEST_CASE("cost.body: an array's length or a number at a JSON Pointer", "[config][cost]") {
    const auto config = load_config_string(
        config_with("x: {algorithm: sliding_window, limit: 15000, window: 1h,\n"
                    "      cost: {body: {array_length: /a~1b/emails, max_bytes: 1048576}, settle: {header: "
                    "X-Units}}}\n"
                    "  y: {algorithm: token_bucket, rate: 10/1s, cost: {body: {number: /count}}}"),
        "t.yaml");
    const auto& x = config->limits[0];
    REQUIRE(x.cost.body);
    CHECK(x.cost.body->kind == sluice::cost::BodyCostKind::array_length);
    CHECK(x.cost.body->pointer == std::vector<std::string>{"a/b", "emails"});
    CHECK(x.cost.body->max_bytes == 1'048'576);
    CHECK(x.cost.header.empty());
    CHECK(x.cost.settle_header == "X-Units");
    const auto& y = config->limits[1];
    REQUIRE(y.cost.body);
    CHECK(y.cost.body->kind == sluice::cost::BodyCostKind::number);
    CHECK(y.cost.body->pointer == std::vector<std::string>{"count"});
    CHECK(y.cost.body->max_bytes == 0);  // the server's max_buffered_body_bytes
    CHECK(y.cost.settle_header.empty());

    SECTION("the printed configuration loads back to the same costs") {
        const auto printed = print_config(*config);
        INFO(printed);
        CHECK_THAT(printed, Catch::Contains("body: {array_length: \"/a~1b/emails\", max_bytes: 1048576}"));
        CHECK_THAT(printed, Catch::Contains("settle: {header: X-Units}"));
        const auto again = load_config_string(printed, "printed.yaml");
        REQUIRE(again->limits[0].cost.body);
        CHECK(again->limits[0].cost.body->pointer == x.cost.body->pointer);
        CHECK(again->limits[0].cost.body->max_bytes == 1'048'576);
        CHECK(again->limits[0].cost.settle_header == "X-Units");
        REQUIRE(again->limits[1].cost.body);
        CHECK(again->limits[1].cost.body->kind == sluice::cost::BodyCostKind::number);
        const auto body = [](const std::string& text) { return text.substr(text.find("\nserver:")); };
        CHECK(body(print_config(*again)) == body(printed));
    }
}

TEST_CASE("cost.settle alone: a fixed cost corrected from the response", "[config][cost]") {
    const auto config = load_config_string(
        config_with(
            "x: {algorithm: sliding_window, limit: 100, window: 1m, cost: {default: 5, settle: {header: "
            "X-Credits-Charged}}}"),
        "t.yaml");
    CHECK(config->limits[0].cost.fixed == 5);
    CHECK(config->limits[0].cost.header.empty());
    CHECK(config->limits[0].cost.settle_header == "X-Credits-Charged");
}

TEST_CASE("error: a body cost that cannot be read", "[config][errors][cost]") {
    CHECK(error_of("x: {limit: 5, window: 1s, cost: {body: {array_length: emails}}}") ==
          "t.yaml:4:57: limit 'x' cost.body.array_length: not a JSON Pointer: 'emails'; expected a JSON "
          "Pointer "
          "(RFC 6901): empty, or starting with '/', e.g. /emails");
    CHECK(error_of("x: {limit: 5, window: 1s, cost: {body: {number: /a~2}}}") ==
          "t.yaml:4:51: limit 'x' cost.body.number: not a JSON Pointer: '/a~2'; expected a JSON Pointer (RFC "
          "6901) whose '~' is followed by 0 (for '~') or 1 (for '/')");
    CHECK(error_of("x: {limit: 5, window: 1s, cost: {body: {array_length: /a, number: /b}}}") ==
          "t.yaml:4:69: limit 'x' cost.body.number: a body cost is an array's length or a number, not both; "
          "expected one of array_length, number");
    CHECK(error_of("x: {limit: 5, window: 1s, cost: {body: {max_bytes: 10}}}") ==
          "t.yaml:4:42: limit 'x' cost.body: no value to read; expected array_length: /POINTER (an array's "
          "length) or number: /POINTER (a non-negative integer)");
    CHECK(
        error_of("x: {limit: 5, window: 1s, cost: {body: {number: /n, max_bytes: 0}}}") ==
        "t.yaml:4:66: limit 'x' cost.body.max_bytes: '0' is out of range; expected a size from 1 to 16777216 "
        "bytes");
    CHECK(error_of("x: {limit: 5, window: 1s, cost: {body: {number: /n, max_bytes: 32MiB}}}") ==
          "t.yaml:4:66: limit 'x' cost.body.max_bytes: '32MiB' is out of range; expected a size from 1 to "
          "16777216 bytes");
    CHECK(error_of("x: {limit: 5, window: 1s, cost: {header: X-Units, body: {number: /n}}}") ==
          "t.yaml:4:44: limit 'x' cost.header: a cost is read from a header or from the body, not both; "
          "expected only one of header, body");
    CHECK(error_of("x: {limit: 5, window: 1s, cost: {body: {number: /n, pointer: /n}}}") ==
          "t.yaml:4:55: limit 'x' cost.body: unknown key 'pointer'; expected one of array_length, number, "
          "max_bytes");
    CHECK(
        error_of("x: {limit: 5, window: 1s, cost: {body: {number: /n}, default: 1}}") ==
        "t.yaml:4:65: limit 'x' cost.default: a body cost has no default: a body without the cost is refused "
        "(cost_unreadable); expected no default with body");
    CHECK(error_of("x: {limit: 5, window: 1s, cost: {settle: {header: 'X Units'}}}") ==
          "t.yaml:4:53: limit 'x' cost.settle.header: got 'X Units'; expected a header name (an HTTP token)");
}

TEST_CASE("cost.settle.body: the units charged read from the response's JSON body", "[config][cost]") {
    const auto config = load_config_string(
        config_with(
            "x: {algorithm: sliding_window, limit: 1000, window: 1m,\n"
            "      cost: {header: X-Units, settle: {body: {number: /usage/credits, max_bytes: 4096}}}}\n"
            "  y: {limit: 10, window: 1s, cost: {default: 2, settle: {body: {array_length: /charged}}}}"),
        "t.yaml");
    const auto& x = config->limits[0];
    REQUIRE(x.cost.settle_body);
    CHECK(x.cost.settle_body->kind == sluice::cost::BodyCostKind::number);
    CHECK(x.cost.settle_body->pointer == std::vector<std::string>{"usage", "credits"});
    CHECK(x.cost.settle_body->max_bytes == 4096);
    CHECK(x.cost.settle_header.empty());
    CHECK(x.cost.settles());
    const auto& y = config->limits[1];
    REQUIRE(y.cost.settle_body);
    CHECK(y.cost.settle_body->kind == sluice::cost::BodyCostKind::array_length);
    CHECK(y.cost.settle_body->max_bytes == 0);  // the server's max_buffered_body_bytes
    CHECK(y.cost.fixed == 2);

    const auto printed = print_config(*config);
    INFO(printed);
    CHECK_THAT(printed, Catch::Contains("settle: {body: {number: \"/usage/credits\", max_bytes: 4096}}"));
    const auto again = load_config_string(printed, "printed.yaml");
    REQUIRE(again->limits[0].cost.settle_body);
    CHECK(again->limits[0].cost.settle_body->pointer == x.cost.settle_body->pointer);
    CHECK(again->limits[0].cost.settle_body->max_bytes == 4096);
    REQUIRE(again->limits[1].cost.settle_body);
    CHECK(again->limits[1].cost.settle_body->kind == sluice::cost::BodyCostKind::array_length);
}

TEST_CASE("error: a settle with nothing to read, or two sources", "[config][errors][cost]") {
    CHECK(
        error_of("x: {limit: 5, window: 1s, cost: {settle: {}}}") ==
        "t.yaml:4:44: limit 'x' cost.settle: nothing to settle from; expected header: NAME (the response "
        "header giving the units charged) or body: {number: /POINTER} (a value of the response's JSON body)");
    CHECK(error_of("x: {limit: 5, window: 1s, cost: {settle: {header: X-U, body: {number: /n}}}}") ==
          "t.yaml:4:64: limit 'x' cost.settle.body: a cost is settled from a header or from the body, not "
          "both; expected only one of header, body");
    CHECK(error_of("x: {limit: 5, window: 1s, cost: {settle: {body: {number: n}}}}") ==
          "t.yaml:4:60: limit 'x' cost.settle.body.number: not a JSON Pointer: 'n'; expected a JSON Pointer "
          "(RFC 6901): empty, or starting with '/', e.g. /emails");
    CHECK(error_of("x: {limit: 5, window: 1s, cost: {settle: {json: /n}}}") ==
          "t.yaml:4:45: limit 'x' cost.settle: unknown key 'json'; expected one of header, body");
}
