// The security posture (docs/security.md), end to end: secrets a client sends
// never come back out of sluice (logs, the admin API, error bodies), and only
// configured upstreams are ever contacted, whatever the target or Host says.

#include <chrono>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "support/http_client.hpp"
#include "support/mock_upstream.hpp"
#include "support/proxy_config.hpp"
#include "support/sluice_process.hpp"

using namespace sluice::test;
using namespace std::chrono_literals;

namespace {

// Sends one raw request on a fresh connection; 0 when the connection closed without an answer.
HttpResponse send_raw(std::uint16_t port, const std::string& request) {
    HttpClient client(port, 5s);
    client.write_raw(request);
    try {
        return client.read_response();
    } catch (const std::runtime_error&) {
        return HttpResponse{};
    }
}

// ---------------------------------------------------------------- secrets

const std::string kAuthSecret = "AUTHSECRET-7f3a9c";
const std::string kCookieSecret = "COOKIESECRET-51b2e0";
const std::string kApiKeySecret = "APIKEYSECRET-c4d8a1";
const std::string kQuerySecret = "QUERYSECRET-9e6f02";
const std::string kProxyAuthSecret = "PROXYAUTHSECRET-08d7b3";
const std::vector<std::string> kSecrets = {kAuthSecret, kCookieSecret, kApiKeySecret, kQuerySecret,
                                           kProxyAuthSecret};

std::string secret_headers() {
    return "Authorization: Bearer " + kAuthSecret + "\r\nCookie: session=" + kCookieSecret +
           "\r\nX-Api-Key: " + kApiKeySecret + "\r\nProxy-Authorization: Basic " + kProxyAuthSecret + "\r\n";
}

std::string secrets_yaml(std::uint16_t upstream_port) {
    return yaml_subst(R"(server:
  workers: {WORKERS}
  timeouts: {client_header: 2s, client_body: 2s, client_idle: 5s, client_write: 5s}
  admin: {listen: "127.0.0.1:0"}
listeners:
  - {name: main, listen: "127.0.0.1:0"}
upstreams:
  vendor:
    url: "http://127.0.0.1:{UP}/base"
    connect_timeout: 1s
    response_timeout: 1s
    body_timeout: 2s
limits:
  per-key: {algorithm: sliding_window, limit: 3, window: 1h, key: {header: X-Api-Key}}
  per-query: {algorithm: sliding_window, limit: 1000, window: 1h, key: {query: api_key}}
  per-auth: {algorithm: token_bucket, rate: 1000/1s, key: [{header: Authorization}, {header: Cookie}]}
queue: {max_depth: 0, max_wait: 0s}
routes:
  - name: vendor
    match: {path_prefix: /v/}
    strip_prefix: true
    upstream: vendor
    limits: [per-key, per-query, per-auth]
)",
                      {{"WORKERS", std::to_string(e2e_workers())}, {"UP", std::to_string(upstream_port)}});
}

}  // namespace

TEST_CASE("secrets never appear in logs, the admin API or sluice's own responses",
          "[e2e][security][secrets]") {
    MockUpstream upstream([](const RecordedRequest& r) {
        if (r.target.find("/close") != std::string::npos) return MockReply::close_without_answer();
        if (r.target.find("/slow") != std::string::npos) return MockReply::fixed(200, "late").with_delay(2s);
        return MockReply::fixed(200, "ok");
    });
    SluiceProcess sluice(secrets_yaml(upstream.port()), {{"--log-level", "debug"}});
    const auto port = sluice.port("main");
    const std::string query = "?api_key=" + kQuerySecret;

    struct Case {
        const char* what;
        std::string request;
        unsigned status;
    };
    const std::vector<Case> cases = {
        {"routed", "GET /v/ok" + query + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + secret_headers() + "\r\n", 200},
        {"upstream closes",
         "GET /v/close" + query + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + secret_headers() + "\r\n", 502},
        {"upstream timeout",
         "GET /v/slow" + query + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + secret_headers() + "\r\n", 504},
        {"rejected by the limit",
         "GET /v/ok" + query + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + secret_headers() + "\r\n", 429},
        {"no route", "GET /nowhere" + query + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + secret_headers() + "\r\n",
         404},
        {"malformed framing",
         "GET /v/ok" + query + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + secret_headers() +
             "Content-Length: x\r\n\r\n",
         400},
        {"authority-form target",
         "GET 127.0.0.1:80" + query + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + secret_headers() + "\r\n", 400},
        {"asterisk target", "OPTIONS * HTTP/1.1\r\nHost: 127.0.0.1\r\n" + secret_headers() + "\r\n", 400},
        {"a backslash in the target",
         "GET /v/a\\b" + query + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + secret_headers() + "\r\n", 400},
        {"absolute-form with userinfo",
         "GET http://" + kApiKeySecret + "@127.0.0.1/v/ok" + query + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
         400},
        {"two Host fields",
         "GET /v/ok" + query + " HTTP/1.1\r\nHost: a\r\nHost: b\r\n" + secret_headers() + "\r\n", 400},
        {"bad Expect",
         "POST /v/ok" + query + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + secret_headers() +
             "Expect: x-bogus\r\nContent-Length: 1\r\n\r\nx",
         400},
    };
    std::vector<std::string> outputs;
    for (const auto& c : cases) {
        const auto res = send_raw(port, c.request);
        INFO(c.what << ": " << res.status << " " << res.body);
        CHECK(res.status == c.status);
        std::string headers;
        for (const auto& [name, value] : res.headers) headers += name + ": " + value + "\n";
        outputs.push_back(std::string(c.what) + " response:\n" + headers + res.body);
    }
    // The vendor did get what it needs: the key headers, not the proxy credential.
    REQUIRE(upstream.request_count() >= 3);
    const auto first = upstream.requests().front();
    CHECK(first.header("X-Api-Key").value_or("") == kApiKeySecret);
    CHECK(first.target == "/base/ok" + query);
    CHECK_FALSE(first.has_header("Proxy-Authorization"));

    HttpClient admin(sluice.admin_port(), 5s);
    for (const char* path : {"/status", "/healthz", "/readyz", "/metrics", "/nonexistent"}) {
        const auto res = admin.get(path);
        outputs.push_back(std::string("admin ") + path + ":\n" + res.body);
    }
    outputs.push_back("stderr:\n" + sluice.stderr_text());
    // The debug log did describe these requests (so the grep below searched something).
    CHECK(sluice.stderr_text().find("no route for \"GET\" 127.0.0.1/nowhere") != std::string::npos);
    for (const auto& output : outputs) {
        for (const auto& secret : kSecrets) {
            INFO(output);
            CHECK(output.find(secret) == std::string::npos);
        }
    }
}

// ---------------------------------------------------------------- SSRF

TEST_CASE("only configured upstreams are ever contacted", "[e2e][security][ssrf]") {
    MockUpstream upstream;  // configured, base path /base
    MockUpstream other;     // what an attacker would like sluice to reach
    SluiceProcess sluice(ProxyConfig{upstream.url() + "/base"}.yaml());
    const std::string o = "127.0.0.1:" + std::to_string(other.port());
    const std::string host = "Host: " + o + "\r\n";

    struct Case {
        const char* what;
        std::string request;
        unsigned main_status;    // on listener "main" (prefix and host routes)
        unsigned vendor_status;  // on listener "vendor" (everything goes to the upstream)
    };
    const std::vector<Case> cases = {
        {"absolute-form naming the other host", "GET http://" + o + "/x HTTP/1.1\r\n" + host + "\r\n", 404,
         200},
        {"a Host header naming it", "GET /x HTTP/1.1\r\n" + host + "\r\n", 404, 200},
        {"a network-path reference", "GET //" + o + "/x HTTP/1.1\r\n" + host + "\r\n", 404, 200},
        {"userinfo", "GET http://a@" + o + "/ HTTP/1.1\r\n" + host + "\r\n", 400, 400},
        {"the routed host as userinfo", "GET http://api.vendor.test@" + o + "/ HTTP/1.1\r\n" + host + "\r\n",
         400, 400},
        // Beast may refuse the '#' (400) or sluice drops the fragment and routes on the
        // authority before it: either way, nothing reaches the other host (0: any status).
        {"a fragment hiding the host", "GET http://" + o + "#@api.vendor.test/ HTTP/1.1\r\n" + host + "\r\n",
         0, 0},
        {"percent-encoded dots", "GET /intercom/%2e%2e/%2E%2E/" + o + "/x HTTP/1.1\r\n" + host + "\r\n", 404,
         200},
        {"dot-segments after a routed prefix", "GET /intercom/../../" + o + "/x HTTP/1.1\r\n" + host + "\r\n",
         404, 200},
        {"backslashes", "GET /intercom/..\\..\\x HTTP/1.1\r\n" + host + "\r\n", 400, 400},
        {"a backslash authority", "GET http:\\\\" + o + "/ HTTP/1.1\r\n" + host + "\r\n", 400, 400},
        {"the routed host with the other port",
         "GET http://api.vendor.test:" + std::to_string(other.port()) + "/x HTTP/1.1\r\n" + host + "\r\n",
         200, 200},
        {"CONNECT to it", "CONNECT " + o + " HTTP/1.1\r\n" + host + "\r\n", 405, 405},
        {"an https absolute-form", "GET https://" + o + "/ HTTP/1.1\r\n" + host + "\r\n", 400, 400},
    };
    for (const auto& c : cases) {
        INFO(c.what);
        const auto on_main = send_raw(sluice.port("main"), c.request).status;
        const auto on_vendor = send_raw(sluice.port("vendor"), c.request).status;
        if (c.main_status != 0) CHECK(on_main == c.main_status);
        if (c.vendor_status != 0) CHECK(on_vendor == c.vendor_status);
    }
    CHECK(other.connections_accepted() == 0);
    CHECK(other.request_count() == 0);
    // What reached the configured upstream stayed under its base path.
    for (const auto& r : upstream.requests()) {
        INFO(r.target);
        CHECK(r.target.rfind("/base/", 0) == 0);
        CHECK(r.target.find("/..") == std::string::npos);
        CHECK(r.header("Host").value_or("") == "127.0.0.1:" + std::to_string(upstream.port()));
    }
}

// ---------------------------------------------------------------- log floods

TEST_CASE("a vendor sending a malformed rate-limit header on every response does not flood the log",
          "[e2e][security][logs]") {
    MockUpstream upstream([](const RecordedRequest&) {
        return MockReply::fixed(200, "ok").with_header("Retry-After", "soon");
    });
    SluiceProcess sluice(ProxyConfig{upstream.url()}.yaml());
    HttpClient client(sluice.port("vendor"));
    constexpr int kRequests = 40;
    for (int i = 0; i < kRequests; ++i) REQUIRE(client.get("/x").status == 200);
    const auto log = sluice.stderr_text();
    std::size_t warnings = 0;
    for (auto at = log.find("warn feedback:"); at != std::string::npos;
         at = log.find("warn feedback:", at + 1))
        ++warnings;
    INFO(log);
    CHECK(warnings >= 1);  // the first is said
    CHECK(warnings <= 3);  // then at most one a second
}
