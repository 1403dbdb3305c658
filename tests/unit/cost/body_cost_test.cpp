#include "sluice/cost/body_cost.hpp"

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

namespace {

using sluice::cost::BodyCost;
using sluice::cost::BodyCostKind;
using sluice::cost::BodyCostProblem;
using sluice::cost::format_json_pointer;
using sluice::cost::kMaxBodyCostDepth;
using sluice::cost::parse_json_pointer;
using sluice::cost::read_body_cost;

BodyCost read(std::string_view body, BodyCostKind kind, std::string_view pointer) {
    const auto parsed = parse_json_pointer(pointer);
    REQUIRE(parsed.error.empty());
    return read_body_cost(body, kind, parsed.tokens);
}

BodyCost length(std::string_view body, std::string_view pointer) {
    return read(body, BodyCostKind::array_length, pointer);
}

BodyCost number(std::string_view body, std::string_view pointer) {
    return read(body, BodyCostKind::number, pointer);
}

}  // namespace

TEST_CASE("json pointer: RFC 6901 tokens and escapes", "[cost][pointer]") {
    CHECK(parse_json_pointer("").tokens.empty());
    CHECK(parse_json_pointer("").error.empty());
    CHECK(parse_json_pointer("/emails").tokens == std::vector<std::string>{"emails"});
    CHECK(parse_json_pointer("/a/0/b").tokens == std::vector<std::string>{"a", "0", "b"});
    CHECK(parse_json_pointer("/").tokens == std::vector<std::string>{""});
    // ~1 is '/', ~0 is '~', and ~01 is "~1" (unescaped once, left to right).
    CHECK(parse_json_pointer("/a~1b/c~0d/~01").tokens == std::vector<std::string>{"a/b", "c~d", "~1"});
    CHECK(format_json_pointer(parse_json_pointer("/a~1b/c~0d/~01").tokens) == "/a~1b/c~0d/~01");
    CHECK_THAT(parse_json_pointer("emails").error, Catch::Contains("starting with '/'"));
    CHECK_THAT(parse_json_pointer("/a~2").error, Catch::Contains("whose '~' is followed by 0"));
    CHECK_THAT(parse_json_pointer("/a~").error, Catch::Contains("whose '~' is followed by 0"));
    std::string deep;
    for (std::size_t i = 0; i <= kMaxBodyCostDepth; ++i) deep += "/x";
    CHECK_THAT(parse_json_pointer(deep).error, Catch::Contains("at most 64 levels"));
}

TEST_CASE("body cost: the length of an array", "[cost][body]") {
    CHECK(length(R"({"emails": ["a@x.io", "b@x.io", "c@x.io"]})", "/emails").units == 3);
    CHECK(length(R"({"emails": []})", "/emails").units == 0);
    CHECK(length(R"([1, 2, 3, 4])", "").units == 4);
    SECTION("only direct elements count: arrays of objects and of arrays") {
        const auto cost =
            length(R"({"emails": [{"e": [1, 2, 3]}, {"e": {"x": [4]}}, [5, 6], null]})", "/emails");
        REQUIRE(cost.ok());
        CHECK(cost.units == 4);
    }
    SECTION("nested paths, array indexes, values before and after the target") {
        const auto body =
            R"({"x": [1, 2], "batch": [{"emails": [1]}, {"emails": ["a", "b"], "more": [9, 9, 9]}], "emails": [0]})";
        CHECK(length(body, "/batch/1/emails").units == 2);
        CHECK(length(body, "/batch/0/emails").units == 1);
        CHECK(length(body, "/emails").units == 1);
        CHECK(length(body, "/batch").units == 2);
    }
    SECTION("names with '/' and '~' are reached through ~1 and ~0") {
        CHECK(length(R"({"a/b": [1, 2], "c~d": [1]})", "/a~1b").units == 2);
        CHECK(length(R"({"a/b": [1, 2], "c~d": [1]})", "/c~0d").units == 1);
    }
    SECTION("an index with a leading zero names nothing") {
        CHECK(length(R"({"a": [[1], [1, 2]]})", "/a/1").units == 2);
        CHECK(length(R"({"a": [[1], [1, 2]]})", "/a/01").problem == BodyCostProblem::missing);
        CHECK(length(R"({"a": [[1], [1, 2]]})", "/a/-").problem == BodyCostProblem::missing);
    }
}

TEST_CASE("body cost: a number", "[cost][body]") {
    CHECK(number(R"({"count": 250})", "/count").units == 250);
    CHECK(number(R"({"count": 0})", "/count").units == 0);
    CHECK(number(R"({"n": {"count": 7}})", "/n/count").units == 7);
    CHECK(number("12", "").units == 12);
    SECTION("huge integers saturate (then refused as above the limit), never wrap") {
        constexpr auto kTop = std::numeric_limits<std::int64_t>::max();
        CHECK(number(R"({"count": 9223372036854775807})", "/count").units == kTop);
        CHECK(number(R"({"count": 18446744073709551615})", "/count").units == kTop);
        CHECK(number(R"({"count": 123456789012345678901234567890})", "/count").units == kTop);
    }
    SECTION("not a non-negative integer: the wrong type") {
        for (const auto* body :
             {R"({"count": -1})", R"({"count": 2.5})", R"({"count": 1e3})", R"({"count": "5"})",
              R"({"count": null})", R"({"count": true})", R"({"count": [1]})", R"({"count": {"n": 1}})"}) {
            INFO(body);
            const auto cost = number(body, "/count");
            CHECK(cost.problem == BodyCostProblem::wrong_type);
            CHECK_THAT(cost.message, Catch::Contains("at '/count'; expected a non-negative integer"));
        }
    }
}

TEST_CASE("body cost: missing, wrong type, ambiguous", "[cost][body]") {
    const auto missing = length(R"({"email": ["a"]})", "/emails");
    CHECK(missing.problem == BodyCostProblem::missing);
    CHECK(missing.message == "the request body has no value at '/emails'");
    CHECK(length(R"({"emails": ["a"]})", "/emails/0/x").problem == BodyCostProblem::missing);
    CHECK(length(R"([["a"]])", "/emails").problem == BodyCostProblem::missing);
    const auto object = length(R"({"emails": {"a": 1}})", "/emails");
    CHECK(object.problem == BodyCostProblem::wrong_type);
    CHECK(object.message == "the request body has an object at '/emails'; expected an array");
    CHECK(length(R"({"emails": "a,b"})", "/emails").problem == BodyCostProblem::wrong_type);
    CHECK(length(R"({"emails": 3})", "/emails").problem == BodyCostProblem::wrong_type);
    // A duplicate name is not resolved by guessing which one the vendor reads.
    CHECK(length(R"({"emails": [1], "emails": [1, 2]})", "/emails").problem == BodyCostProblem::ambiguous);
    CHECK(number(R"({"n": 1, "n": 1})", "/n").problem == BodyCostProblem::ambiguous);
}

TEST_CASE("body cost: not JSON", "[cost][body]") {
    for (const std::string& body :
         {std::string(""), std::string("  \r\n"), std::string("emails=a,b"),
          std::string(R"({"emails": [1, 2)"), std::string(R"({"emails": [1]} x)"),
          std::string(R"({"emails": [1]}{"emails": [2]})"), std::string("{\"emails\": [\"\xff\xfe\"]}"),
          std::string("{\"e\": [\"\xc3\x28\"]}"), std::string("\0\0\0", 3),
          std::string(R"({"emails": [1] /* c */})")}) {
        INFO(body);
        CHECK(length(body, "/emails").problem == BodyCostProblem::not_json);
    }
    CHECK(length("", "/emails").message == "the request body is empty; expected JSON");
    CHECK_THAT(length("{\"emails\": x}", "/emails").message,
               Catch::Contains("not valid JSON (error at byte"));
}

TEST_CASE("body cost: nesting is bounded", "[cost][body]") {
    const auto nested = [](std::size_t depth) { return std::string(depth, '[') + std::string(depth, ']'); };
    CHECK(length(nested(kMaxBodyCostDepth), "").units == 1);
    const auto deep = length(nested(kMaxBodyCostDepth + 1), "");
    CHECK(deep.problem == BodyCostProblem::too_deep);
    CHECK(deep.message == "the request body nests deeper than 64 levels");
    // Far deeper than any stack could recurse: refused at the bound, in bounded memory.
    CHECK(length("{\"emails\": [1], \"x\": " + nested(1'000'000) + "}", "/emails").problem ==
          BodyCostProblem::too_deep);
    CHECK(length(std::string(1'000'000, '['), "/emails").problem == BodyCostProblem::too_deep);
}

TEST_CASE("body cost: a large array is counted without a document", "[cost][body]") {
    std::string body = R"({"emails": [)";
    for (int i = 0; i < 100'000; ++i) body += i == 0 ? R"("a@x.io")" : R"(,"a@x.io")";
    body += "]}";
    CHECK(length(body, "/emails").units == 100'000);
}
