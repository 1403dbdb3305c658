// GET /metrics's text (admin/metrics_page.hpp): a Runtime with known counters,
// serialized by the collector, checked line by line.

#include "sluice/admin/metrics_page.hpp"

#include <algorithm>
#include <memory>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "sluice/config/loader.hpp"
#include "sluice/limit/limiter.hpp"
#include "sluice/upstream/connection_executor.hpp"

using namespace sluice;
using namespace std::chrono_literals;

namespace {

constexpr const char* kYaml = R"(listeners:
  - name: main
    listen: "127.0.0.1:0"
upstreams:
  vendor:
    url: "http://127.0.0.1:9"
    feedback: {enabled: false}
limits:
  per_minute: {algorithm: sliding_window, limit: 10, window: 1m}
  per_key: {algorithm: sliding_window, limit: 5, window: 1m, key: [{header: X-Api-Key}]}
  dry_run: {algorithm: fixed_window, limit: 1, window: 1m, enforce: false}
  bucket: {algorithm: token_bucket, rate: 10/1h, burst: 4}
routes:
  - name: chat
    match: {path_prefix: /chat/}
    upstream: vendor
    limits: [per_minute, dry_run, bucket]
  - name: keyed.v1
    upstream: vendor
    limits: [per_key]
)";

// A Runtime as ProxyServer builds it, on a fake clock, with no listener.
struct RuntimeFixture {
    boost::asio::io_context ioc;
    FakeClock clock;
    std::shared_ptr<proxy::Runtime> runtime;

    RuntimeFixture() {
        auto config = config::load_config_string(kYaml);
        auto process = std::make_shared<proxy::ProcessState>();
        process->limits = std::make_shared<proxy::LimitService>(ioc, clock);
        runtime = std::make_shared<proxy::Runtime>(process, config, route::RouteTable(*config));
        const upstream::ConnectionExecutor executors(ioc, 1);
        for (const auto& u : config->upstreams)
            runtime->pools.push_back(std::make_shared<upstream::ConnectionPool>(executors, u));
        runtime->set_limit_slots(process->limits->install(runtime->limiter_configs()).slots);
        process->make_current(runtime, runtime->generation);
    }
    // The process state and its current runtime point at each other (ProxyServer breaks the cycle too).
    ~RuntimeFixture() { runtime->process->make_current(nullptr, 0); }

    queue::Admission submit(std::size_t route, std::vector<limit::LimitUse> uses) {
        return runtime->limits->submit(queue::AdmissionRequest{route, std::move(uses), 1s, 10},
                                       ioc.get_executor(), [] { return [](const queue::Admission&) {}; });
    }
};

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) out.push_back(line);
    return out;
}

bool has_line(const std::vector<std::string>& lines, const std::string& line) {
    return std::find(lines.begin(), lines.end(), line) != lines.end();
}

}  // namespace

TEST_CASE("the metrics page writes known counters as Prometheus text, line by line", "[admin][metrics]") {
    RuntimeFixture f;
    auto& m = f.runtime->metrics;
    metrics::ExchangeMarks marks;
    // Route 0 ("chat"): two forwarded, one queued then forwarded, one queue_full.
    for (int i = 0; i < 2; ++i) {
        metrics::ProxyMetrics::begin_request(marks);
        metrics::ProxyMetrics::routed(marks, 0, 0);
        m.admitted(marks, Nanos::zero(), i == 1);
        metrics::ProxyMetrics::sent(marks, 0ms);
        m.upstream_responded(marks, 200, 30ms);
        m.relayed(marks);
    }
    metrics::ProxyMetrics::begin_request(marks);
    metrics::ProxyMetrics::routed(marks, 0, 0);
    m.queued(marks, 1s);
    m.admitted(marks, 3s, false);
    metrics::ProxyMetrics::sent(marks, 3s);
    m.upstream_responded(marks, 429, 3s + 2ms);
    m.relayed(marks);
    metrics::ProxyMetrics::begin_request(marks);
    metrics::ProxyMetrics::routed(marks, 0, 0);
    m.synthetic(marks, Errc::queue_full);
    metrics::ProxyMetrics::begin_request(marks);
    m.synthetic(marks, Errc::no_route);
    m.synthetic(marks, Errc::malformed_request);
    f.runtime->feedback[0]->paused.fetch_add(2);
    f.runtime->feedback[0]->paused_nanos.fetch_add(1'500'000'000);
    f.runtime->counters.open_client_connections.fetch_add(3);
    // Three admissions on per_minute (and the shadow dry_run, which would refuse two),
    // two keys on per_key.
    for (int i = 0; i < 3; ++i)
        REQUIRE(f.submit(0, {{0, 0, 1}, {2, 0, 1}, {3, 0, 1}}).outcome == queue::Outcome::admitted);
    REQUIRE(f.submit(1, {{1, 11, 1}}).outcome == queue::Outcome::admitted);
    REQUIRE(f.submit(1, {{1, 12, 1}}).outcome == queue::Outcome::admitted);

    const auto text = admin::render_metrics(*f.runtime);
    INFO(text);
    const auto lines = lines_of(text);
    const std::vector<std::string> expected = {
        "# HELP sluice_requests_total Requests by route and outcome (each request counted once, when its "
        "answer is decided); code: sluice's error code for the responses it wrote itself",
        "# TYPE sluice_requests_total counter",
        R"(sluice_requests_total{outcome="forwarded",route="chat"} 2)",
        R"(sluice_requests_total{outcome="queued_then_forwarded",route="chat"} 1)",
        R"(sluice_requests_total{code="queue_full",outcome="synthetic_429",route="chat"} 1)",
        R"(sluice_requests_total{code="admission_timeout",outcome="synthetic_429",route="chat"} 0)",
        R"(sluice_requests_total{code="upstream_connect_failed",outcome="upstream_error",route="chat"} 0)",
        R"(sluice_requests_total{outcome="forwarded",route="keyed.v1"} 0)",
        R"(sluice_requests_total{code="no_route",outcome="no_route"} 1)",
        R"(sluice_requests_total{code="malformed_request",outcome="client_error"} 1)",
        "# TYPE sluice_shadow_would_refuse_total counter",
        R"(sluice_shadow_would_refuse_total{route="chat"} 1)",
        "# TYPE sluice_admission_wait_seconds histogram",
        R"(sluice_admission_wait_seconds_count{route="chat"} 3)",
        R"(sluice_admission_wait_seconds_sum{route="chat"} 2)",
        R"(sluice_admission_wait_seconds_bucket{route="chat",le="0.001"} 2)",
        R"(sluice_admission_wait_seconds_bucket{route="chat",le="1"} 2)",
        R"(sluice_admission_wait_seconds_bucket{route="chat",le="2.5"} 3)",
        R"(sluice_admission_wait_seconds_bucket{route="chat",le="300"} 3)",
        R"(sluice_admission_wait_seconds_bucket{route="chat",le="+Inf"} 3)",
        R"(sluice_route_queue_max_depth{route="chat"} 1000)",
        R"(sluice_route_waiting_requests{route="chat"} 0)",
        R"(sluice_upstream_responses_total{class="2xx",upstream="vendor"} 2)",
        R"(sluice_upstream_responses_total{class="4xx",upstream="vendor"} 1)",
        R"(sluice_upstream_responses_total{class="5xx",upstream="vendor"} 0)",
        R"(sluice_upstream_429_responses_total{upstream="vendor"} 1)",
        R"(sluice_upstream_response_seconds_count{upstream="vendor"} 3)",
        R"(sluice_upstream_response_seconds_bucket{upstream="vendor",le="0.0025"} 1)",
        R"(sluice_upstream_response_seconds_bucket{upstream="vendor",le="0.05"} 3)",
        R"(sluice_pool_open_connections{upstream="vendor"} 0)",
        R"(sluice_pool_connect_failures_total{upstream="vendor"} 0)",
        R"(sluice_pool_tls_failures_total{upstream="vendor"} 0)",
        "# TYPE sluice_limit_configured gauge",
        R"(sluice_limit_configured{limit="per_minute"} 10)",
        R"(sluice_limit_configured{limit="per_key"} 5)",
        R"(sluice_limit_used_units{limit="per_minute"} 3)",
        // A shadow limit counts past its limit; the gauge stops at the limit.
        R"(sluice_limit_used_units{limit="dry_run"} 1)",
        R"(sluice_limit_tracked_keys{limit="per_key"} 2)",
        // A token bucket: 3 of its burst of 4 taken (10 per hour refill nothing in between).
        R"(sluice_limit_configured{limit="bucket"} 10)",
        R"(sluice_limit_used_units{limit="bucket"} 3)",
        R"(sluice_limit_waiting_requests{limit="per_minute"} 0)",
        R"(sluice_limit_waiting_requests{limit="upstream:vendor"} 0)",
        R"(sluice_limit_admitted_total{limit="per_minute"} 3)",
        R"(sluice_limit_admitted_total{limit="per_key"} 2)",
        R"(sluice_limit_refusals_total{limit="per_minute"} 0)",
        R"(sluice_limit_shadow_would_refuse_total{limit="dry_run"} 2)",
        R"(sluice_feedback_pauses_total{route="chat"} 2)",
        R"(sluice_feedback_paused_seconds_total{route="chat"} 1.5)",
        "# TYPE sluice_client_connections_open gauge",
        "sluice_client_connections_open 3",
        "sluice_config_generation 1",
        "sluice_config_last_load_success 1",
    };
    for (const auto& line : expected) {
        INFO("expected line: " << line);
        CHECK(has_line(lines, line));
    }
    // Vendor gates have no configured limit and no units of their own.
    CHECK_FALSE(has_line(lines, R"(sluice_limit_configured{limit="upstream:vendor"} 0)"));
    CHECK(text.find(R"(sluice_limit_used_units{limit="upstream:vendor"})") == std::string::npos);
    CHECK(text.find(R"(sluice_limit_used_units{limit="per_key"})") == std::string::npos);
    // Every family has its HELP and TYPE, and every name its prefix.
    std::size_t help = 0;
    std::size_t type = 0;
    for (const auto& line : lines) {
        if (line.rfind("# HELP ", 0) == 0) ++help;
        if (line.rfind("# TYPE ", 0) == 0) ++type;
        if (line.empty() || line[0] == '#') continue;
        INFO(line);
        CHECK(line.rfind("sluice_", 0) == 0);
    }
    CHECK(help == type);
    CHECK(help >= 40);
    // Counters end in _total.
    const std::regex counter_type(R"(# TYPE (\S+) counter)");
    for (const auto& line : lines) {
        std::smatch match;
        if (!std::regex_match(line, match, counter_type)) continue;
        INFO(line);
        CHECK(match[1].str().size() > 6);
        CHECK(match[1].str().substr(match[1].str().size() - 6) == "_total");
    }
    CHECK(std::regex_search(
        text,
        std::regex(R"re(sluice_build_info\{commit="(?:[0-9a-f]+|unknown)",version="\d+\.\d+\.\d+"\} 1)re")));
    CHECK(std::regex_search(text, std::regex(R"(sluice_process_start_time_seconds \d{10})")));
}

TEST_CASE("the status JSON gets the per-route outcomes and the per-upstream responses", "[admin][metrics]") {
    RuntimeFixture f;
    auto& m = f.runtime->metrics;
    metrics::ExchangeMarks marks;
    metrics::ProxyMetrics::begin_request(marks);
    metrics::ProxyMetrics::routed(marks, 0, 0);
    m.admitted(marks, Nanos::zero(), false);
    m.upstream_responded(marks, 503, 0ms);
    m.relayed(marks);
    metrics::ProxyMetrics::begin_request(marks);
    metrics::ProxyMetrics::routed(marks, 0, 0);
    m.synthetic(marks, Errc::admission_timeout);
    metrics::ProxyMetrics::begin_request(marks);
    metrics::ProxyMetrics::routed(marks, 0, 0);
    m.synthetic(marks, Errc::upstream_timeout);
    nlohmann::json status = {{"upstreams", nlohmann::json::array({{{"name", "vendor"}}})}};
    admin::add_status_metrics(status, *f.runtime);
    const auto& chat = status["routes"]["chat"];
    CHECK(chat["forwarded"] == 1);
    CHECK(chat["queued_then_forwarded"] == 0);
    CHECK(chat["synthetic_429"] == 1);
    CHECK(chat["upstream_errors"] == 1);
    const auto& vendor = status["upstreams"][0];
    CHECK(vendor["name"] == "vendor");
    CHECK(vendor["responses"]["5xx"] == 1);
    CHECK(vendor["responses"]["2xx"] == 0);
    CHECK(vendor["responses_429"] == 0);
}

TEST_CASE("the metrics page shows a learned limit: its units, its lowerings and when", "[admin][metrics]") {
    RuntimeFixture f;
    for (int i = 0; i < 7; ++i) REQUIRE(f.submit(0, {{0, 0, 1}}).outcome == queue::Outcome::admitted);
    const auto before = lines_of(admin::render_metrics(*f.runtime));
    CHECK(has_line(before, R"(sluice_limit_learned_lowerings_total{limit="per_minute"} 0)"));
    for (const auto& line : before) CHECK(line.rfind("sluice_limit_learned_units{", 0) != 0);

    // A bare 429 on the last of the seven: the vendor took 6 before refusing.
    feedback::VendorSignal refusal;
    refusal.rate_limited = true;
    refusal.pause = 1s;
    const config::FeedbackSettings settings;  // learning on by default
    f.runtime->limits->react({{0, 0, 1}}, {0}, refusal, settings, 429, false, Nanos{0});
    f.clock.advance(2s);

    const auto text = admin::render_metrics(*f.runtime);
    INFO(text);
    const auto lines = lines_of(text);
    CHECK(has_line(lines, R"(sluice_limit_learned_units{limit="per_minute"} 6)"));
    CHECK(has_line(lines, R"(sluice_limit_learned_lowerings_total{limit="per_minute"} 1)"));
    CHECK(has_line(lines, R"(sluice_limit_learned_lowerings_total{limit="per_key"} 0)"));
    // Only windows are learned: no series for the token bucket.
    CHECK(text.find(R"(sluice_limit_learned_lowerings_total{limit="bucket"})") == std::string::npos);
    // Lowered 2 s ago on the wall clock; not raised yet (a raise takes a clean 1 min window).
    const std::string prefix = R"(sluice_limit_learned_lowered_timestamp_seconds{limit="per_minute"} )";
    const auto line = std::find_if(lines.begin(), lines.end(),
                                   [&](const std::string& l) { return l.rfind(prefix, 0) == 0; });
    REQUIRE(line != lines.end());
    const double expected = std::chrono::duration<double>(f.clock.now().wall - 2s).count();
    CHECK(std::stod(line->substr(prefix.size())) == Approx(expected).margin(1e-3));
    CHECK(text.find("sluice_limit_learned_raised_timestamp_seconds{") == std::string::npos);
}

TEST_CASE("a reload's runtime carries each kept route's feedback and request counters by name",
          "[admin][metrics][reload]") {
    RuntimeFixture f;
    f.runtime->feedback[1]->paused.fetch_add(3);  // keyed.v1
    metrics::ExchangeMarks marks;
    metrics::ProxyMetrics::begin_request(marks);
    metrics::ProxyMetrics::routed(marks, 1, 0);
    f.runtime->metrics.admitted(marks, Nanos::zero(), false);
    f.runtime->metrics.relayed(marks);

    // keyed.v1 kept (now first), chat gone, batch new.
    auto config = config::load_config_string(R"(listeners:
  - name: main
    listen: "127.0.0.1:0"
upstreams:
  vendor:
    url: "http://127.0.0.1:9"
routes:
  - name: keyed.v1
    match: {path_prefix: /v1/}
    upstream: vendor
  - name: batch
    upstream: vendor
)");
    const proxy::Runtime next(f.runtime->process, config, route::RouteTable(*config), f.runtime.get());
    REQUIRE(next.feedback.size() == 2);
    CHECK(next.feedback[0] == f.runtime->feedback[1]);
    CHECK(next.feedback[0]->paused == 3);
    CHECK(next.feedback[1]->paused == 0);
    CHECK(next.metrics.route(0).forwarded == 1);
    CHECK(next.metrics.route(1).forwarded == 0);
}
