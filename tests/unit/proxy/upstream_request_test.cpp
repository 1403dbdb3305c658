// intake_request and rewrite_for_upstream: what a client's head becomes before it reaches a vendor.
#include "sluice/proxy/upstream_request.hpp"

#include <string>

#include <boost/beast/http/message.hpp>
#include <catch2/catch.hpp>

#include "sluice/config/loader.hpp"
#include "sluice/proxy/relay_writer.hpp"

namespace http = boost::beast::http;
using namespace sluice::proxy;
using sluice::Errc;

namespace {

const sluice::config::Config& config() {
    static const auto c = sluice::config::load_config_string(R"(
upstreams:
  api: {url: "http://api.example.com/v1"}
routes:
  - {match: {path_prefix: /strip/, methods: [GET, POST]}, strip_prefix: true, upstream: api}
  - {match: {path: "/items/{id}", methods: [GET]}, upstream: api}
)",
                                                             "t.yaml");
    return *c;
}

const sluice::route::RouteTable& routes() {
    static const sluice::route::RouteTable table(config());
    return table;
}

http::request_header<> head(http::verb method, std::string_view target,
                            std::initializer_list<std::pair<std::string, std::string>> fields,
                            unsigned version = 11) {
    http::request_header<> h;
    h.method(method);
    h.target(target);
    h.version(version);
    for (const auto& [name, value] : fields) h.insert(name, value);
    return h;
}

std::string serialized(const http::request_header<>& h, bool chunked) {
    RelayWriter writer;
    writer.start_request(h, chunked, !chunked);
    std::string out;
    for (const auto& b : writer.next(nullptr, 0, true))
        out.append(static_cast<const char*>(b.data()), b.size());
    return out;
}

}  // namespace

TEST_CASE("intake: a routed request, dot-segments removed before matching", "[proxy][intake]") {
    const auto h = head(http::verb::get, "/strip/a/../b/%2e/c?x=1", {{"Host", "h.example"}});
    const auto intake = intake_request(h, routes(), 0);
    REQUIRE_FALSE(intake.refusal);
    REQUIRE(intake.match);
    CHECK(intake.host == "h.example");
    CHECK(intake.path == "/strip/b/c");
    CHECK(intake.query == "x=1");
    CHECK(intake.match->upstream_path == "/v1/b/c");
}

TEST_CASE("intake: refusals, in handle_request's order, and which keep the connection", "[proxy][intake]") {
    auto refusal = [](const http::request_header<>& h) { return intake_request(h, routes(), 0).refusal; };

    const auto connect = refusal(head(http::verb::connect, "h:443", {{"Host", "h:443"}}));
    REQUIRE(connect);
    CHECK(connect->code == Errc::method_not_allowed);
    CHECK_FALSE(connect->keep_alive_allowed);

    const auto smuggle =
        refusal(head(http::verb::post, "/strip/x",
                     {{"Host", "h"}, {"Content-Length", "4"}, {"Transfer-Encoding", "chunked"}}));
    REQUIRE(smuggle);
    CHECK(smuggle->code == Errc::malformed_request);
    CHECK_FALSE(smuggle->keep_alive_allowed);

    const auto ftp = refusal(head(http::verb::get, "ftp://h/strip/x", {{"Host", "h"}}));
    REQUIRE(ftp);
    CHECK(ftp->message == "absolute-form targets must use http://, got \"ftp\"://");

    const auto asterisk = refusal(head(http::verb::options, "*", {{"Host", "h"}}));
    REQUIRE(asterisk);
    CHECK(asterisk->message == "unsupported request target \"*\"");

    const auto none = refusal(head(http::verb::delete_, "/strip/x", {{"Host", "h"}}));
    REQUIRE(none);
    CHECK(none->code == Errc::no_route);
    CHECK(none->message == "no route for \"DELETE\" h/strip/x");  // as ClientSession::describe_request
    CHECK(none->keep_alive_allowed);
}

TEST_CASE("rewrite: framing from the parse, hop-by-hop and Sluice-* gone, target and Host set",
          "[proxy][rewrite]") {
    auto h = head(http::verb::post, "/strip/x?q=1",
                  {{"Host", "client.local"},
                   {"Connection", "keep-alive, X-Secret"},
                   {"X-Secret", "1"},
                   {"Sluice-Max-Wait", "2"},
                   {"Content-Length", "5, 5"},
                   {"X-Forwarded-For", "10.0.0.1"}},
                  10);
    const auto intake = intake_request(h, routes(), 0);
    REQUIRE(intake.match);
    const UpstreamHeadOptions options{"api.example.com", true, true, "127.0.0.2"};
    const auto rewrite =
        rewrite_for_upstream(h, *intake.match, intake.query, ParsedFraming{false, 5, false}, options);
    CHECK_FALSE(rewrite.refusal);
    CHECK_FALSE(rewrite.expect_continue);
    CHECK(serialized(h, false) ==
          "POST /v1/x?q=1 HTTP/1.1\r\nContent-Length: 5\r\nHost: api.example.com\r\n"
          "X-Forwarded-For: 10.0.0.1, 127.0.0.2\r\nX-Forwarded-Proto: http\r\n\r\n");
}

TEST_CASE("rewrite: a chunked body is sent chunked, whatever the client's fields said", "[proxy][rewrite]") {
    auto h = head(http::verb::post, "/strip/y",
                  {{"Host", "h"}, {"Transfer-Encoding", "chunked"}, {"TE", "trailers"}});
    const auto intake = intake_request(h, routes(), 0);
    REQUIRE(intake.match);
    const auto rewrite = rewrite_for_upstream(h, *intake.match, intake.query,
                                              ParsedFraming{true, std::nullopt, false}, {"api.example.com"});
    CHECK_FALSE(rewrite.refusal);
    CHECK(serialized(h, true).starts_with(
        "POST /v1/y HTTP/1.1\r\nTransfer-Encoding: chunked\r\nHost: api.example.com\r\n\r\n"));
}

TEST_CASE("rewrite: Expect", "[proxy][rewrite]") {
    auto h = head(http::verb::post, "/strip/z",
                  {{"Host", "h"}, {"Expect", "100-Continue"}, {"Content-Length", "3"}});
    const auto intake = intake_request(h, routes(), 0);
    REQUIRE(intake.match);
    const auto waits = rewrite_for_upstream(h, *intake.match, "", ParsedFraming{false, 3, false}, {"a"});
    CHECK(waits.expect_continue);
    CHECK(h.find(http::field::expect) == h.end());  // sluice sends the 100 itself

    auto odd = head(http::verb::post, "/strip/z", {{"Host", "h"}, {"Expect", "something\x01"}});
    const auto refused = rewrite_for_upstream(odd, *intake.match, "", ParsedFraming{false, 0, true}, {"a"});
    REQUIRE(refused.refusal);
    CHECK(refused.refusal->code == Errc::malformed_request);
    CHECK(refused.refusal->message == "unsupported Expect: \"something\\x01\"");
}
