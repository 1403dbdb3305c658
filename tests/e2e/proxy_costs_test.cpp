// Costs in units of work (docs/costs.md, issue 15): a limit counts the length of a JSON array
// in the request body, refuses a cost it can never admit or cannot read with a clear 4xx
// (never forwarded, never counted), and is corrected by the units the vendor says it charged.

#include <map>
#include <mutex>
#include <string>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "support/http_client.hpp"
#include "support/mock_upstream.hpp"
#include "support/proxy_config.hpp"
#include "support/sluice_process.hpp"
#include "support/synthetic_checks.hpp"

using namespace sluice::test;
using namespace std::chrono_literals;

namespace {

// A vendor that bills by units: each request costs its number of emails, unless the test
// asks it (X-Test-Charge) to say another number in X-Credits-Charged. It adds up, per
// account, what it charged.
class UnitsVendor {
public:
    UnitsVendor()
        : upstream_([this](const RecordedRequest& request) {
              const auto body = nlohmann::json::parse(request.body_prefix, nullptr, false);
              const std::size_t emails =
                  body.is_object() && body.contains("emails") ? body["emails"].size() : std::size_t{0};
              const auto charge = request.header("X-Test-Charge")
                                      .value_or(request.header("X-Units").value_or(std::to_string(emails)));
              {
                  const std::lock_guard<std::mutex> lock(mutex_);
                  units_[request.header("X-Account").value_or("")] += std::stoll("0" + charge.substr(0, 6));
              }
              // The charge also in the body (cost.settle.body), padded when asked (X-Test-Pad).
              const bool digits =
                  !charge.empty() && charge.find_first_not_of("0123456789") == std::string::npos;
              const auto pad = std::stoul("0" + request.header("X-Test-Pad").value_or("0"));
              const auto reply_body =
                  "{\"validated\": " + std::to_string(emails) +
                  ", \"usage\": {\"credits\": " + (digits ? charge : "\"" + charge + "\"") + "}}" +
                  std::string(pad, ' ');
              Headers headers{{"Content-Type", "application/json"}, {"X-Credits-Charged", charge}};
              if (const auto encoding = request.header("X-Test-Encoding"))
                  headers.emplace_back("Content-Encoding", *encoding);
              return MockReply::fixed(200, reply_body, headers);
          }) {}

    std::string url() const { return upstream_.url(); }
    std::size_t requests() const { return upstream_.request_count(); }
    long long units(const std::string& account) {
        const std::lock_guard<std::mutex> lock(mutex_);
        return units_[account];
    }

private:
    std::mutex mutex_;
    std::map<std::string, long long> units_;
    MockUpstream upstream_;  // last: stopped first, before what its handler uses
};

std::string emails(int count) {
    nlohmann::json body{{"emails", nlohmann::json::array()}};
    for (int i = 0; i < count; ++i) body["emails"].push_back("user" + std::to_string(i) + "@example.com");
    return body.dump();
}

std::string yaml(const std::string& url) {
    return yaml_subst(R"(server:
  workers: {WORKERS}
  admin:
    listen: "127.0.0.1:0"
listeners:
  - name: main
    listen: "127.0.0.1:0"
upstreams:
  vendor:
    url: "{URL}"
    feedback: {enabled: false}
limits:
  validations:
    algorithm: sliding_window
    limit: 10
    window: 1h
    key: {header: X-Account}
    cost: {body: {array_length: /emails, max_bytes: 400}, settle: {header: X-Credits-Charged}}
queue: {max_depth: 10, max_wait: 0s}
routes:
  - name: validate
    upstream: vendor
    limits: [validations]
)",
                      {{"WORKERS", std::to_string(e2e_workers())}, {"URL", url}});
}

HttpResponse validate(HttpClient& client, const std::string& account, const std::string& body,
                      const std::string& charge = {}) {
    Headers headers{{"X-Account", account}, {"Content-Type", "application/json"}};
    if (!charge.empty()) headers.emplace_back("X-Test-Charge", charge);
    return client.request("POST", "/v1/validate", body, headers);
}

}  // namespace

TEST_CASE("a body cost counts units: at most the limit reaches the vendor, and refusals are clear",
          "[e2e][costs]") {
    UnitsVendor vendor;
    SluiceProcess sluice(yaml(vendor.url()));
    HttpClient client(sluice.port("main"), 3s);

    CHECK(validate(client, "a", emails(4)).status == 200);
    CHECK(validate(client, "a", emails(4)).status == 200);
    // 8 of 10 units spent: 4 more do not fit now (max_wait 0), 2 do.
    check_synthetic(validate(client, "a", emails(4)), 429, "admission_timeout");
    CHECK(validate(client, "a", emails(2)).status == 200);
    CHECK(vendor.units("a") == 10);

    // Never admissible, unreadable, or too large to read: 4xx at once, nothing forwarded.
    const auto forwarded = vendor.requests();
    const auto too_many = validate(client, "b", emails(11));
    check_synthetic(too_many, 422, "cost_too_large");
    CHECK_THAT(too_many.body,
               Catch::Contains("costs 11 units, more than limit 'validations' can ever admit"));
    check_synthetic(validate(client, "b", "emails=a@x.io"), 400, "cost_unreadable");
    const auto missing = validate(client, "b", R"({"email": ["a@x.io"]})");
    check_synthetic(missing, 400, "cost_unreadable");
    CHECK_THAT(missing.body, Catch::Contains("no value at '/emails'"));
    check_synthetic(validate(client, "b", R"({"emails": "a@x.io"})"), 400, "cost_unreadable");
    check_synthetic(validate(client, "b", emails(6) + std::string(400, ' ')), 413, "cost_body_too_large");
    {
        // Too large to be held at all: refused from its header, the body never read.
        HttpClient big(sluice.port("main"), 3s);
        big.write_raw(
            "POST /v1/validate HTTP/1.1\r\nHost: a.test\r\nX-Account: b\r\nContent-Length: 70000\r\n\r\n");
        const auto response = big.read_response();
        check_synthetic(response, 413, "cost_body_too_large");
        CHECK_FALSE(response.keep_alive);
    }
    CHECK(vendor.requests() == forwarded);
    // Nothing of them was counted: b's whole quota is there.
    CHECK(validate(client, "b", emails(10)).status == 200);
    CHECK(vendor.units("b") == 10);
}

TEST_CASE("a cost settled from the response corrects the limit both ways", "[e2e][costs]") {
    UnitsVendor vendor;
    SluiceProcess sluice(yaml(vendor.url()));
    HttpClient client(sluice.port("main"), 3s);

    SECTION("charged less: the units go back, and the next request goes at once") {
        CHECK(validate(client, "a", emails(8), "2").status == 200);  // 8 admitted, 2 charged
        CHECK(validate(client, "a", emails(8)).status == 200);       // fits only because 6 came back
        check_synthetic(validate(client, "a", emails(1)), 429, "admission_timeout");
        CHECK(vendor.units("a") == 10);
    }
    SECTION("charged more: the extra units are counted") {
        CHECK(validate(client, "a", emails(1), "9").status == 200);  // 1 admitted, 9 charged
        check_synthetic(validate(client, "a", emails(2)), 429, "admission_timeout");
        CHECK(validate(client, "a", emails(1)).status == 200);
        CHECK(vendor.units("a") == 10);
    }
    SECTION("a malformed charge corrects nothing") {
        CHECK(validate(client, "a", emails(5), "five").status == 200);
        CHECK(validate(client, "a", emails(5)).status == 200);
        check_synthetic(validate(client, "a", emails(1)), 429, "admission_timeout");
    }
}

TEST_CASE("a header cost is never clamped, and a cost is settled from the response's JSON body",
          "[e2e][costs]") {
    UnitsVendor vendor;
    auto config = yaml(vendor.url());
    const std::string body_cost =
        "cost: {body: {array_length: /emails, max_bytes: 400}, settle: {header: X-Credits-Charged}}";
    config.replace(
        config.find(body_cost), body_cost.size(),
        "cost: {header: X-Units, max: 8, settle: {body: {number: /usage/credits, max_bytes: 256}}}");
    SluiceProcess sluice(config);
    HttpClient client(sluice.port("main"), 3s);
    const auto send = [&](const std::string& account, const std::string& units, Headers extra = {}) {
        extra.emplace_back("X-Account", account);
        extra.emplace_back("X-Units", units);
        return client.request("POST", "/v1/validate", "{}", extra);
    };

    // Above the limit or cost.max: 422 at once, nothing forwarded or counted (once clamped to max).
    const auto too_many = send("a", "11");
    check_synthetic(too_many, 422, "cost_too_large");
    CHECK_THAT(too_many.body,
               Catch::Contains("costs 11 units, more than limit 'validations' can ever admit (cost.max 8)"));
    check_synthetic(send("a", "9"), 422, "cost_too_large");
    CHECK(vendor.requests() == 0);

    // 8 admitted, the body says 2 were charged: 6 come back, so 8 more fit, then nothing.
    const auto settled = send("a", "8", {{"X-Test-Charge", "2"}});
    CHECK(settled.status == 200);
    CHECK_THAT(settled.body, Catch::Contains("\"credits\": 2"));
    CHECK(send("a", "8").status == 200);
    check_synthetic(send("a", "1"), 429, "admission_timeout");
    CHECK(vendor.units("a") == 10);

    // A body over settle.body.max_bytes, or compressed, is not read: the admitted 4 stand (with
    // 1 settled, 6 + 1 more would fit), and the client gets the whole body.
    for (const auto& [account, extra] : std::vector<std::pair<std::string, Headers>>{
             {"b", {{"X-Test-Charge", "1"}, {"X-Test-Pad", "300"}}},
             {"c", {{"X-Test-Charge", "1"}, {"X-Test-Encoding", "gzip"}}}}) {
        INFO(account);
        const auto response = send(account, "4", extra);
        CHECK(response.status == 200);
        CHECK(response.body.size() == (account == "b" ? 300U : 0U) + 41U);
        CHECK(send(account, "6").status == 200);
        check_synthetic(send(account, "1"), 429, "admission_timeout");
    }
}
