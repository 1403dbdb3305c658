#include "sluice/route/request_target.hpp"

#include <catch2/catch.hpp>

using sluice::route::parse_request_target;
using Form = sluice::route::ParsedTarget::Form;

TEST_CASE("origin-form takes the host from the Host header", "[request_target]") {
    const auto t = parse_request_target("/api/v1/lead/?limit=10", "api.close.com:443");
    REQUIRE(t);
    CHECK(t->form == Form::origin);
    CHECK(t->host == "api.close.com");
    CHECK(t->port == "443");
    CHECK(t->path == "/api/v1/lead/");
    CHECK(t->query == "limit=10");
}

TEST_CASE("absolute-form (HTTP_PROXY clients) takes the host from the URI", "[request_target]") {
    const auto t = parse_request_target("http://api.intercom.io/contacts?x=1", "ignored.example");
    REQUIRE(t);
    CHECK(t->form == Form::absolute);
    CHECK(t->scheme == "http");
    CHECK(t->host == "api.intercom.io");
    CHECK(t->port.empty());
    CHECK(t->path == "/contacts");
    CHECK(t->query == "x=1");
}

TEST_CASE("absolute-form without a path means /", "[request_target]") {
    const auto t = parse_request_target("http://vendor.test:8080", "");
    REQUIRE(t);
    CHECK(t->host == "vendor.test");
    CHECK(t->port == "8080");
    CHECK(t->path == "/");
    CHECK(t->query.empty());
}

TEST_CASE("IPv6 literals lose their brackets", "[request_target]") {
    const auto t = parse_request_target("http://[::1]:9000/x", "");
    REQUIRE(t);
    CHECK(t->host == "::1");
    CHECK(t->port == "9000");
    const auto o = parse_request_target("/x", "[::1]:9000");
    REQUIRE(o);
    CHECK(o->host == "::1");
}

TEST_CASE("a fragment is never part of the path or query", "[request_target]") {
    const auto t = parse_request_target("/a?b=1#frag", "h");
    REQUIRE(t);
    CHECK(t->path == "/a");
    CHECK(t->query == "b=1");
}

TEST_CASE("authority-form and asterisk-form are recognised", "[request_target]") {
    const auto c = parse_request_target("api.vendor.test:443", "");
    REQUIRE(c);
    CHECK(c->form == Form::authority);
    CHECK(c->host == "api.vendor.test");
    const auto a = parse_request_target("*", "");
    REQUIRE(a);
    CHECK(a->form == Form::asterisk);
}

TEST_CASE("malformed targets are refused", "[request_target]") {
    CHECK_FALSE(parse_request_target("", "h"));
    CHECK_FALSE(parse_request_target("/a b", "h"));
    CHECK_FALSE(parse_request_target("http:///nohost", ""));
    CHECK_FALSE(parse_request_target("http://user@host/x", ""));
    CHECK_FALSE(parse_request_target("http://host:80x/", ""));
    CHECK_FALSE(parse_request_target(std::string_view("/a\x01", 3), "h"));
}

TEST_CASE("an unparsable Host header leaves the host empty (no host route can match)", "[request_target]") {
    const auto t = parse_request_target("/x", "[::1");
    REQUIRE(t);
    CHECK(t->host.empty());
}

TEST_CASE("a raw byte outside US-ASCII in the target is refused (RFC 9112 3.2)", "[request_target]") {
    CHECK_FALSE(parse_request_target("/\xff", "h"));
    CHECK_FALSE(parse_request_target("/caf\xc3\xa9", "h"));
    CHECK_FALSE(parse_request_target("/a\x7f", "h"));
    CHECK(parse_request_target("/caf%C3%A9", "h"));
}

TEST_CASE("dot-segments are removed as RFC 3986 5.2.4 says", "[request_target]") {
    using sluice::route::normalize_path;
    CHECK_FALSE(normalize_path("/api/v1/lead/"));  // already normal: nothing allocated
    CHECK_FALSE(normalize_path("/a/.b/..c/...d/e."));
    CHECK(normalize_path("/up/../../etc/passwd") == "/etc/passwd");
    CHECK(normalize_path("/a/./b") == "/a/b");
    CHECK(normalize_path("/a/b/..") == "/a/");
    CHECK(normalize_path("/a/b/.") == "/a/b/");
    CHECK(normalize_path("/..") == "/");
    CHECK(normalize_path("/.") == "/");
    CHECK(normalize_path("/a//../b") == "/a/b");
    CHECK(normalize_path("/a/b/../c/") == "/a/c/");
}

TEST_CASE("percent-encoded dots count as dots when removing dot-segments", "[request_target]") {
    using sluice::route::normalize_path;
    CHECK(normalize_path("/v1/%2e%2e/admin") == "/admin");
    CHECK(normalize_path("/v1/%2E./admin") == "/admin");
    CHECK(normalize_path("/v1/.%2E/admin") == "/admin");
    CHECK(normalize_path("/v1/%2e/admin") == "/v1/admin");
    CHECK_FALSE(normalize_path("/v1/%2e%2e%2e/admin"));  // three dots: an ordinary segment
    CHECK_FALSE(normalize_path("/v1/%2f../admin"));      // not a dot segment (an escaped slash)
}
