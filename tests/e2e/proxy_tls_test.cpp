// Issue 2 acceptance: HTTPS upstreams. Verification covers the chain AND the
// host name (tls.verify defaults to on); turning it off must be explicit.

#include <catch2/catch.hpp>

#include "support/http_client.hpp"
#include "support/mock_upstream.hpp"
#include "support/proxy_config.hpp"
#include "support/sluice_process.hpp"
#include "support/synthetic_checks.hpp"
#include "support/test_certs.hpp"

using namespace sluice::test;

namespace {

MockUpstream::Options tls_upstream(const CertPair& cert) {
    return {nullptr, cert};
}

}  // namespace

TEST_CASE("an HTTPS upstream whose certificate chains to tls.ca_file works", "[e2e][proxy][tls]") {
    const auto& certs = test_certs();
    MockUpstream upstream(tls_upstream(certs.server));
    ProxyConfig config{upstream.url() + "/base"};
    config.tls = {"ca_file: \"" + certs.ca_cert + "\""};
    SluiceProcess sluice(config.yaml());
    HttpClient client(sluice.port("vendor"));

    const auto get = client.get("/x?y=1");
    INFO(get.body);
    REQUIRE(get.status == 200);
    const auto post = client.request("POST", "/items", "tls body");
    REQUIRE(post.status == 200);

    const auto requests = upstream.requests();
    REQUIRE(requests.size() == 2);
    CHECK(requests[0].target == "/base/x?y=1");
    CHECK(requests[0].header("Host").value_or("<absent>") == "localhost:" + std::to_string(upstream.port()));
    CHECK(requests[1].target == "/base/items");
    CHECK(requests[1].body_prefix == "tls body");
}

TEST_CASE("a certificate for another host name gets 502 upstream_tls_failed", "[e2e][proxy][tls]") {
    const auto& certs = test_certs();
    MockUpstream upstream(tls_upstream(certs.wrong_host));
    ProxyConfig config{upstream.url()};
    config.tls = {"ca_file: \"" + certs.ca_cert + "\""};
    SluiceProcess sluice(config.yaml());
    HttpClient client(sluice.port("vendor"));
    check_synthetic(client.get("/x"), 502, "upstream_tls_failed");
    CHECK(upstream.request_count() == 0);
}

TEST_CASE("tls.server_name sets the name that is verified", "[e2e][proxy][tls]") {
    const auto& certs = test_certs();
    MockUpstream upstream(tls_upstream(certs.wrong_host));
    ProxyConfig config{upstream.url()};
    config.tls = {"ca_file: \"" + certs.ca_cert + "\"", "server_name: wrong.example"};
    SluiceProcess sluice(config.yaml());
    HttpClient client(sluice.port("vendor"));
    const auto response = client.get("/x");
    INFO(response.body);
    CHECK(response.status == 200);
    CHECK(upstream.request_count() == 1);
}

TEST_CASE("a certificate not signed by a trusted CA gets 502 upstream_tls_failed", "[e2e][proxy][tls]") {
    const auto& certs = test_certs();
    MockUpstream upstream(tls_upstream(certs.self_signed));

    SECTION("with tls.ca_file") {
        ProxyConfig config{upstream.url()};
        config.tls = {"ca_file: \"" + certs.ca_cert + "\""};
        SluiceProcess sluice(config.yaml());
        HttpClient client(sluice.port("vendor"));
        check_synthetic(client.get("/x"), 502, "upstream_tls_failed");
    }
    SECTION("with the system CA store") {
        SluiceProcess sluice(ProxyConfig{upstream.url()}.yaml());
        HttpClient client(sluice.port("vendor"));
        check_synthetic(client.get("/x"), 502, "upstream_tls_failed");
    }
    CHECK(upstream.request_count() == 0);
}

TEST_CASE("tls.verify false accepts an untrusted certificate", "[e2e][proxy][tls]") {
    const auto& certs = test_certs();
    MockUpstream upstream(tls_upstream(certs.self_signed));
    ProxyConfig config{upstream.url()};
    config.tls = {"verify: false"};
    SluiceProcess sluice(config.yaml());
    HttpClient client(sluice.port("vendor"));
    const auto response = client.request("POST", "/insecure", "body");
    INFO(response.body);
    CHECK(response.status == 200);
    const auto requests = upstream.requests();
    REQUIRE(requests.size() == 1);
    CHECK(requests[0].body_prefix == "body");
}

TEST_CASE("tls.verify false is logged at start with a warning naming the upstream",
          "[e2e][proxy][tls][security]") {
    const auto& certs = test_certs();
    MockUpstream upstream(tls_upstream(certs.self_signed));
    ProxyConfig config{upstream.url()};
    SECTION("verification off: one warning, before any request") {
        config.tls = {"verify: false"};
        SluiceProcess sluice(config.yaml());
        const auto log = sluice.stderr_text();
        const std::string expected =
            "warn upstream: upstream 'vendor' (localhost:" + std::to_string(upstream.port()) +
            "): TLS verification is OFF (tls.verify: false)";
        CHECK(log.find(expected) != std::string::npos);
        CHECK(log.find(expected) == log.rfind(expected));  // once, not per connection
    }
    SECTION("verification on (the default): no such line") {
        config.tls = {"ca_file: \"" + certs.ca_cert + "\""};
        SluiceProcess sluice(config.yaml());
        CHECK(sluice.stderr_text().find("TLS verification is OFF") == std::string::npos);
    }
}
