#include "sluice/limit/request_key.hpp"

#include <limits>
#include <map>
#include <set>
#include <string>

#include <catch2/catch.hpp>

#include "sluice/config/loader.hpp"

namespace {

using sluice::config::KeySource;
using sluice::config::LimitConfig;
using sluice::limit::cost_too_large_message;
using sluice::limit::key_label;
using sluice::limit::request_cost;
using sluice::limit::request_key;
using sluice::limit::RequestAttributes;
using sluice::route::PathParams;

LimitConfig keyed(std::vector<KeySource> key, std::string name = "close-key") {
    LimitConfig c;
    c.name = std::move(name);
    c.limit = 10;
    c.key = std::move(key);
    return c;
}

KeySource header(std::string name) {
    return {KeySource::Kind::header, std::move(name)};
}
KeySource query(std::string name) {
    return {KeySource::Kind::query, std::move(name)};
}
KeySource path_param(std::string name) {
    return {KeySource::Kind::path_param, std::move(name)};
}
KeySource method() {
    return {KeySource::Kind::method, ""};
}

// A request with the given headers (exact names: case folding is the caller's job).
struct FakeRequest {
    std::map<std::string, std::string, std::less<>> headers;
    std::string method = "GET";
    std::string query;
    PathParams params;

    RequestAttributes attributes() const {
        return RequestAttributes{method, query, &params,
                                 [this](std::string_view name) -> std::optional<std::string_view> {
                                     const auto it = headers.find(name);
                                     if (it == headers.end()) return std::nullopt;
                                     return std::string_view(it->second);
                                 }};
    }
};

}  // namespace

TEST_CASE("request_key: unkeyed limits use key 0", "[limit][key]") {
    LimitConfig c;
    c.name = "all";
    FakeRequest r;
    CHECK(request_key(c, r.attributes()) == 0);
}

TEST_CASE("request_key: deterministic, and pinned (state files and shared backends rely on it)",
          "[limit][key]") {
    FakeRequest r;
    r.headers["Authorization"] = "Basic abc";
    const auto config = keyed({header("Authorization")});
    const auto k = request_key(config, r.attributes());
    CHECK(k != 0);
    CHECK(k == request_key(config, r.attributes()));
    CHECK(k == 0x2765457879b6aa73ULL);
}

TEST_CASE("request_key: different values, names, kinds and limits give different keys", "[limit][key]") {
    std::set<std::uint64_t> keys;
    FakeRequest r;
    r.query = "account=1";
    r.params = {{"account", "1"}};
    r.headers["account"] = "1";
    keys.insert(request_key(keyed({header("account")}), r.attributes()));
    keys.insert(request_key(keyed({query("account")}), r.attributes()));
    keys.insert(request_key(keyed({path_param("account")}), r.attributes()));
    keys.insert(request_key(keyed({header("account")}, "other-limit"), r.attributes()));
    r.headers["account"] = "2";
    keys.insert(request_key(keyed({header("account")}), r.attributes()));
    r.headers["account"] = "";
    keys.insert(request_key(keyed({header("account")}), r.attributes()));  // empty is not absent
    r.headers.clear();
    keys.insert(request_key(keyed({header("account")}), r.attributes()));
    CHECK(keys.size() == 7);
}

TEST_CASE("request_key: requests lacking the source share one bucket", "[limit][key]") {
    FakeRequest a, b;
    a.headers["Other"] = "x";
    const auto config = keyed({header("X-Api-Key")});
    CHECK(request_key(config, a.attributes()) == request_key(config, b.attributes()));
    RequestAttributes no_lookup{"GET", "", nullptr, nullptr};
    CHECK(request_key(config, no_lookup) == request_key(config, b.attributes()));
}

TEST_CASE("request_key: multiple sources are all significant, in order", "[limit][key]") {
    FakeRequest r;
    r.headers["A"] = "1";
    r.headers["B"] = "2";
    const auto ab = request_key(keyed({header("A"), header("B")}), r.attributes());
    const auto ba = request_key(keyed({header("B"), header("A")}), r.attributes());
    CHECK(ab != ba);
    // ("1","2") vs ("12",""): length prefixes keep concatenations apart.
    FakeRequest s;
    s.headers["A"] = "12";
    s.headers["B"] = "";
    CHECK(request_key(keyed({header("A"), header("B")}), s.attributes()) != ab);
}

TEST_CASE("request_key: query parameters, first occurrence, raw", "[limit][key]") {
    const auto config = keyed({query("key")});
    const auto key_of = [&](std::string q) {
        FakeRequest r;
        r.query = std::move(q);
        return request_key(config, r.attributes());
    };
    CHECK(key_of("key=a") == key_of("x=1&key=a"));
    CHECK(key_of("key=a&key=b") == key_of("key=a"));
    CHECK(key_of("key=a") != key_of("key=b"));
    CHECK(key_of("key") == key_of("key="));  // present with an empty value
    CHECK(key_of("key") != key_of(""));      // absent
    CHECK(key_of("keyx=a") == key_of(""));
    CHECK(key_of("&&key=a&") == key_of("key=a"));
    CHECK(key_of("key=a%20b") != key_of("key=a b"));  // no percent-decoding
}

TEST_CASE("request_key: path parameters and method", "[limit][key]") {
    FakeRequest r;
    r.params = {{"publisher_id", "7"}, {"lead_id", "42"}};
    const auto by_publisher = keyed({path_param("publisher_id")});
    const auto k7 = request_key(by_publisher, r.attributes());
    r.params[1].second = "43";
    CHECK(request_key(by_publisher, r.attributes()) == k7);
    r.params[0].second = "8";
    CHECK(request_key(by_publisher, r.attributes()) != k7);

    const auto by_method = keyed({method()});
    FakeRequest get, post;
    post.method = "POST";
    CHECK(request_key(by_method, get.attributes()) != request_key(by_method, post.attributes()));
}

TEST_CASE("request_cost: fixed, header, invalid, saturated", "[limit][cost]") {
    LimitConfig c;
    c.name = "validations";
    c.limit = 15'000;
    CHECK(request_cost(c, FakeRequest{}.attributes()) == 1);
    c.cost.fixed = 3;
    CHECK(request_cost(c, FakeRequest{}.attributes()) == 3);

    c.cost.header = "X-Units";
    c.cost.fixed = 1;
    c.cost.max = 100'000;
    const auto cost_of = [&](std::optional<std::string> value) {
        FakeRequest r;
        if (value) r.headers["X-Units"] = *value;
        return request_cost(c, r.attributes());
    };
    CHECK(cost_of(std::nullopt) == 1);
    CHECK(cost_of("250") == 250);
    CHECK(cost_of("0") == 0);
    CHECK(cost_of(" 42\t") == 42);
    CHECK(cost_of("100000") == 100'000);
    // Never clamped: cost_too_large_message refuses what is above cost.max or the limit.
    CHECK(cost_of("100001") == 100'001);
    CHECK(cost_of("99999999999999999999999999") == std::numeric_limits<std::int64_t>::max());
    CHECK(cost_of("-5") == 1);
    CHECK(cost_of("+5") == 1);
    CHECK(cost_of("2.5") == 1);
    CHECK(cost_of("12abc") == 1);
    CHECK(cost_of("") == 1);
    c.cost.max = std::numeric_limits<std::int64_t>::max();
    CHECK(cost_of("99999999999999999999999999") == std::numeric_limits<std::int64_t>::max());
    CHECK(cost_of("9223372036854775807") == std::numeric_limits<std::int64_t>::max());
}

TEST_CASE("key_label: k: and 12 hex digits", "[limit][key]") {
    CHECK(key_label(0x3f9a0123456789abULL) == "k:3f9a01234567");
    CHECK(key_label(0) == "k:000000000000");
    CHECK(key_label(~0ULL).size() == 14);
}

TEST_CASE("cost_too_large_message: above cost.max or what the limit can ever admit, never for a shadow limit",
          "[limit][cost]") {
    LimitConfig c;
    c.name = "validations";
    c.limit = 15'000;
    c.cost.max = 100'000;
    CHECK(cost_too_large_message(c, 0).empty());
    CHECK(cost_too_large_message(c, 15'000).empty());
    CHECK(cost_too_large_message(c, 15'001) ==
          "this request costs 15001 units, more than limit 'validations' can ever admit (limit 15000); split "
          "it "
          "into smaller requests");
    c.cost.max = 500;
    CHECK(cost_too_large_message(c, 500).empty());
    CHECK(
        cost_too_large_message(c, 501) ==
        "this request costs 501 units, more than limit 'validations' can ever admit (cost.max 500); split it "
        "into smaller requests");
    c.algorithm = sluice::config::Algorithm::token_bucket;
    c.cost.max = 1'000'000;
    c.burst = 40;
    CHECK(cost_too_large_message(c, 40).empty());
    CHECK(cost_too_large_message(c, 41).find("(burst 40)") != std::string::npos);
    c.enforce = false;  // a shadow limit only counts: it refuses nothing
    CHECK(cost_too_large_message(c, 41).empty());
}

TEST_CASE("route_cost_reading: what a route's limits read beyond the head, worked out once per route",
          "[limit][cost]") {
    sluice::config::LoadOptions options;
    const auto config = sluice::config::load_config_string(R"(
server: {max_buffered_body_bytes: 8k}
upstreams:
  vendor: {url: "http://127.0.0.1:9"}
limits:
  plain: {algorithm: sliding_window, limit: 10, window: 1s}
  emails:
    algorithm: sliding_window
    limit: 100000
    window: 1h
    cost: {body: {array_length: /emails, max_bytes: 1m}}
  credits:
    algorithm: sliding_window
    limit: 1000
    window: 1h
    cost: {default: 5, settle: {body: {number: /usage, max_bytes: 16k}}}
  tokens:
    algorithm: sliding_window
    limit: 1000
    window: 1h
    cost: {default: 1, settle: {header: X-Tokens}}
routes:
  - {name: plain, match: {path_prefix: /plain/}, upstream: vendor, limits: [plain]}
  - {name: validate, match: {path_prefix: /validate/}, upstream: vendor, limits: [plain, emails, credits]}
  - {name: tokens, match: {path_prefix: /tokens/}, upstream: vendor, limits: [tokens]}
)",
                                                           "costs.yaml", options);
    const auto plain = sluice::limit::route_cost_reading(*config, config->routes[0]);
    CHECK_FALSE(plain.body_costs);
    CHECK_FALSE(plain.settles);
    CHECK(plain.held_body_max == 8 * 1024);
    CHECK(plain.settle_body_max == 0);
    const auto validate = sluice::limit::route_cost_reading(*config, config->routes[1]);
    CHECK(validate.body_costs);
    CHECK(validate.settles);
    CHECK(validate.held_body_max == 1024 * 1024);
    CHECK(validate.settle_body_max == 16 * 1024);
    const auto tokens = sluice::limit::route_cost_reading(*config, config->routes[2]);
    CHECK_FALSE(tokens.body_costs);
    CHECK(tokens.settles);
    CHECK(tokens.settle_body_max == 0);  // settled from a header: no body is read
}
