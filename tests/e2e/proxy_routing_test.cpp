// Issue 2 acceptance: the three routing modes, Host rewriting, no_route, and
// what sluice does to headers on the way through.

#include <catch2/catch.hpp>

#include "support/http_client.hpp"
#include "support/mock_upstream.hpp"
#include "support/proxy_config.hpp"
#include "support/sluice_process.hpp"
#include "support/synthetic_checks.hpp"

using namespace sluice::test;

namespace {

std::string authority_of(const MockUpstream& upstream) {
    return "127.0.0.1:" + std::to_string(upstream.port());
}

// One GET and one POST (with a body) through `client`; checks what the upstream
// saw (method, path after routing, body, Host rewritten) and that its answer
// came back.
void check_get_and_post(HttpClient& client, const MockUpstream& upstream, const std::string& client_prefix,
                        const std::string& upstream_prefix, const Headers& headers = {}) {
    const auto before = upstream.request_count();

    const auto get = client.get(client_prefix + "things?q=1&r=two", headers);
    INFO("GET answer: " << get.status << " " << get.body);
    REQUIRE(get.status == 200);
    CHECK(header_or_absent(get, "Sluice-Error") == "<absent>");
    CHECK(get.json().value("target", "") == upstream_prefix + "things?q=1&r=two");

    const std::string body = R"({"lead":"x-1","score":42})";
    auto post_headers = headers;
    post_headers.emplace_back("Content-Type", "application/json");
    const auto post = client.request("POST", client_prefix + "leads", body, post_headers);
    INFO("POST answer: " << post.status << " " << post.body);
    REQUIRE(post.status == 200);
    CHECK(post.json().value("body", "") == body);

    const auto requests = upstream.requests();
    REQUIRE(requests.size() == before + 2);
    const auto& seen_get = requests[before];
    CHECK(seen_get.method == "GET");
    CHECK(seen_get.target == upstream_prefix + "things?q=1&r=two");
    CHECK(seen_get.body_bytes == 0);
    CHECK(seen_get.header("Host").value_or("<absent>") == authority_of(upstream));
    CHECK(count_header(seen_get.headers, "Host") == 1);

    const auto& seen_post = requests[before + 1];
    CHECK(seen_post.method == "POST");
    CHECK(seen_post.target == upstream_prefix + "leads");
    CHECK(seen_post.complete);
    CHECK(seen_post.body_prefix == body);
    CHECK(seen_post.body_bytes == body.size());
    CHECK(seen_post.header("Content-Type").value_or("<absent>") == "application/json");
    CHECK(seen_post.header("Host").value_or("<absent>") == authority_of(upstream));
}

}  // namespace

TEST_CASE("a dedicated listener forwards GET and POST to its upstream", "[e2e][proxy][routing]") {
    MockUpstream upstream;
    SluiceProcess sluice(ProxyConfig{upstream.url()}.yaml());
    HttpClient client(sluice.port("vendor"));
    check_get_and_post(client, upstream, "/v1/", "/v1/");
}

TEST_CASE("a path prefix route strips the prefix before forwarding", "[e2e][proxy][routing]") {
    MockUpstream upstream;
    SluiceProcess sluice(ProxyConfig{upstream.url()}.yaml());
    HttpClient client(sluice.port("main"));
    check_get_and_post(client, upstream, "/intercom/", "/");

    const auto nested = client.get("/intercom/contacts/search");
    REQUIRE(nested.status == 200);
    CHECK(upstream.requests().back().target == "/contacts/search");
}

TEST_CASE("a Host route forwards origin-form requests naming the vendor host", "[e2e][proxy][routing]") {
    MockUpstream upstream;
    SluiceProcess sluice(ProxyConfig{upstream.url()}.yaml());
    HttpClient client(sluice.port("main"));
    check_get_and_post(client, upstream, "/", "/", {{"Host", kVendorHost}});
}

TEST_CASE("a Host route forwards absolute-form requests as origin-form", "[e2e][proxy][routing]") {
    MockUpstream upstream;
    SluiceProcess sluice(ProxyConfig{upstream.url()}.yaml());
    HttpClient client(sluice.port("main"));
    check_get_and_post(client, upstream, std::string("http://") + kVendorHost + "/", "/",
                       {{"Host", kVendorHost}});
}

TEST_CASE("curl -x (a real proxy client) reaches the vendor through absolute-form",
          "[e2e][proxy][routing][curl]") {
    MockUpstream upstream;
    SluiceProcess sluice(ProxyConfig{upstream.url()}.yaml());
    const std::string proxy = "http://127.0.0.1:" + std::to_string(sluice.port("main"));

    const auto get = run_curl({"-x", proxy, std::string("http://") + kVendorHost + "/v2/items?page=3"});
    INFO("curl stderr: " << get.err);
    REQUIRE(get.exit_code == 0);
    CHECK(nlohmann::json::parse(get.out).value("target", "") == "/v2/items?page=3");

    const auto post = run_curl({"-x", proxy, "--data-binary", "name=value&x=1", "-H",
                                "Content-Type: application/x-www-form-urlencoded", "-o", "/dev/null", "-w",
                                "%{http_code}", std::string("http://") + kVendorHost + "/v2/items"});
    INFO("curl stderr: " << post.err);
    REQUIRE(post.exit_code == 0);
    CHECK(post.out == "200");

    const auto requests = upstream.requests();
    REQUIRE(requests.size() == 2);
    CHECK(requests[0].method == "GET");
    CHECK(requests[0].target == "/v2/items?page=3");
    CHECK(requests[0].header("Host").value_or("<absent>") == authority_of(upstream));
    CHECK(requests[1].method == "POST");
    CHECK(requests[1].target == "/v2/items");
    CHECK(requests[1].body_prefix == "name=value&x=1");
    CHECK(requests[1].header("Host").value_or("<absent>") == authority_of(upstream));
    for (const auto& request : requests) CHECK_FALSE(request.has_header("Proxy-Connection"));
}

TEST_CASE("the upstream sees Host rewritten to its own authority", "[e2e][proxy][routing][headers]") {
    MockUpstream upstream;
    SluiceProcess sluice(ProxyConfig{upstream.url()}.yaml());
    HttpClient client(sluice.port("vendor"));
    REQUIRE(client.get("/x", {{"Host", "client-chosen.example:1234"}}).status == 200);
    const auto requests = upstream.requests();
    REQUIRE(requests.size() == 1);
    CHECK(count_header(requests[0].headers, "Host") == 1);
    CHECK(requests[0].header("Host").value_or("<absent>") == authority_of(upstream));
}

TEST_CASE("requests matching no route get 404 no_route and are never forwarded", "[e2e][proxy][routing]") {
    MockUpstream upstream;
    SluiceProcess sluice(ProxyConfig{upstream.url()}.yaml());
    HttpClient client(sluice.port("main"));

    SECTION("unknown host and path") {
        check_synthetic(client.get("/nothing/here", {{"Host", "unknown.example"}}), 404, "no_route");
    }
    SECTION("a path that only resembles the prefix") {
        check_synthetic(client.get("/intercomx/a"), 404, "no_route");
    }
    SECTION("absolute-form naming another host") {
        check_synthetic(client.get("http://other.example/x", {{"Host", "other.example"}}), 404, "no_route");
    }
    SECTION("curl -x to an unknown host") {
        const auto result = run_curl({"-x", "http://127.0.0.1:" + std::to_string(sluice.port("main")), "-D",
                                      "-", "-o", "/dev/null", "http://unknown.example/x"});
        INFO("curl stderr: " << result.err);
        REQUIRE(result.exit_code == 0);
        CHECK(result.out.rfind("HTTP/1.1 404", 0) == 0);
        CHECK(result.out.find("Sluice-Error: no_route") != std::string::npos);
    }
    CHECK(upstream.request_count() == 0);
    CHECK(upstream.connections_accepted() == 0);
}

TEST_CASE("after a 404 for a POST with a body, the client connection still works", "[e2e][proxy][routing]") {
    MockUpstream upstream;
    SluiceProcess sluice(ProxyConfig{upstream.url()}.yaml());
    HttpClient client(sluice.port("main"));
    check_synthetic(client.request("POST", "/nothing", std::string(3000, 'b')), 404, "no_route");
    const auto next = client.get("/intercom/after");
    INFO(next.body);
    CHECK(next.status == 200);
    const auto requests = upstream.requests();
    REQUIRE(requests.size() == 1);
    CHECK(requests[0].target == "/after");
}

TEST_CASE("hop-by-hop and Sluice- request headers are not forwarded", "[e2e][proxy][headers]") {
    MockUpstream upstream;
    SluiceProcess sluice(ProxyConfig{upstream.url()}.yaml());
    HttpClient client(sluice.port("vendor"));
    const auto response = client.get("/h", {{"Connection", "keep-alive, X-Per-Hop"},
                                            {"X-Per-Hop", "secret"},
                                            {"Keep-Alive", "timeout=5"},
                                            {"Proxy-Connection", "keep-alive"},
                                            {"TE", "trailers"},
                                            {"Trailer", "X-Checksum"},
                                            {"Upgrade", "example/1"},
                                            {"Proxy-Authorization", "Basic dXNlcjpwYXNz"},
                                            {"Sluice-Max-Wait", "5s"},
                                            {"sluice-priority", "high"},
                                            {"Authorization", "Bearer vendor-token"},
                                            {"X-End-To-End", "kept"}});
    REQUIRE(response.status == 200);
    const auto requests = upstream.requests();
    REQUIRE(requests.size() == 1);
    const auto& seen = requests[0];
    for (const char* name : {"X-Per-Hop", "Keep-Alive", "Proxy-Connection", "TE", "Trailer", "Upgrade",
                             "Proxy-Authorization", "Sluice-Max-Wait", "Sluice-Priority"}) {
        INFO("header " << name << " = " << seen.header(name).value_or("<absent>"));
        CHECK_FALSE(seen.has_header(name));
    }
    // Connection may be re-added for sluice's own upstream connection, never with the client's tokens.
    CHECK(seen.header("Connection").value_or("").find("X-Per-Hop") == std::string::npos);
    CHECK(seen.header("Authorization").value_or("<absent>") == "Bearer vendor-token");
    CHECK(seen.header("X-End-To-End").value_or("<absent>") == "kept");
}

TEST_CASE("the vendor's status, headers and body are relayed without its hop-by-hop headers",
          "[e2e][proxy][headers]") {
    MockUpstream upstream([](const RecordedRequest&) {
        return MockReply::fixed(418, "short and stout",
                                {{"X-Vendor", "v1"},
                                 {"Connection", "X-Resp-Per-Hop"},
                                 {"X-Resp-Per-Hop", "1"},
                                 {"Keep-Alive", "timeout=99"},
                                 {"Content-Type", "text/plain"}});
    });
    SluiceProcess sluice(ProxyConfig{upstream.url()}.yaml());
    HttpClient client(sluice.port("vendor"));
    const auto response = client.get("/teapot");
    CHECK(response.status == 418);
    CHECK(response.body == "short and stout");
    CHECK(header_or_absent(response, "X-Vendor") == "v1");
    CHECK(header_or_absent(response, "Content-Type") == "text/plain");
    CHECK(header_or_absent(response, "Sluice-Error") == "<absent>");
    CHECK_FALSE(response.has_header("X-Resp-Per-Hop"));
    CHECK_FALSE(response.has_header("Keep-Alive"));
}

TEST_CASE("HEAD is relayed without a body and the connection stays usable", "[e2e][proxy][routing]") {
    MockUpstream upstream([](const RecordedRequest& request) {
        return request.method == "HEAD" ? MockReply::fixed(200, "0123456789") : MockReply::echo();
    });
    SluiceProcess sluice(ProxyConfig{upstream.url()}.yaml());
    HttpClient client(sluice.port("vendor"));
    const auto head = client.request("HEAD", "/resource");
    CHECK(head.status == 200);
    CHECK(header_or_absent(head, "Content-Length") == "10");
    CHECK(head.body.empty());
    // Had sluice sent (or waited for) a body after the HEAD answer, this would be misread.
    const auto next = client.get("/next");
    CHECK(next.status == 200);
    CHECK(next.json().value("target", "") == "/next");
    CHECK(client.connects() == 1);
}
