// The request path's metrics storage (metrics/): bucket edges, sum and count,
// and what each record_*() call counts.

#include "sluice/metrics/histogram.hpp"

#include <catch2/catch.hpp>

#include "sluice/metrics/proxy_metrics.hpp"

using namespace sluice;
using namespace sluice::metrics;
using namespace std::chrono_literals;

TEST_CASE("a histogram bucket holds values up to and including its bound", "[metrics][histogram]") {
    using H = AdmissionWaitHistogram;
    CHECK(H::kBuckets == kAdmissionWaitBounds.size() + 1);
    CHECK(H::bucket_of(Nanos::zero()) == 0);
    CHECK(H::bucket_of(1ms) == 0);  // le="0.001" includes 1 ms exactly
    CHECK(H::bucket_of(1ms + 1ns) == 1);
    CHECK(H::bucket_of(2500us) == 1);
    CHECK(H::bucket_of(2500us + 1ns) == 2);
    CHECK(H::bucket_of(1s) == 9);
    CHECK(H::bucket_of(300s) == kAdmissionWaitBounds.size() - 1);    // the last finite bucket: 5 min
    CHECK(H::bucket_of(300s + 1ns) == kAdmissionWaitBounds.size());  // +Inf
    CHECK(H::bucket_of(24h) == kAdmissionWaitBounds.size());
    CHECK(ResponseTimeHistogram::bucket_of(120s) == kResponseTimeBounds.size() - 1);
    CHECK(ResponseTimeHistogram::bucket_of(120s + 1ns) == kResponseTimeBounds.size());
}

TEST_CASE("a histogram's snapshot gives per-bucket counts, their sum as the count, and the sum in seconds",
          "[metrics][histogram]") {
    AdmissionWaitHistogram h;
    h.observe(Nanos::zero());
    h.observe(1ms);
    h.observe(7ms);   // le=0.01
    h.observe(2s);    // le=2.5
    h.observe(400s);  // +Inf
    h.observe(-5ms);  // a clock step backwards: counted as 0
    const auto s = h.snapshot();
    REQUIRE(s.upper_bounds_seconds.size() == kAdmissionWaitBounds.size());
    REQUIRE(s.counts.size() == kAdmissionWaitBounds.size() + 1);
    CHECK(s.upper_bounds_seconds.front() == Approx(0.001));
    CHECK(s.upper_bounds_seconds.back() == Approx(300.0));
    CHECK(s.counts[0] == 3);
    CHECK(s.counts[3] == 1);
    CHECK(s.counts[10] == 1);
    CHECK(s.counts.back() == 1);
    CHECK(s.count == 6);
    CHECK(s.sum_seconds == Approx(0.001 + 0.007 + 2 + 400));
}

TEST_CASE("every error code maps to one outcome and back from its name", "[metrics][outcome]") {
    CHECK(outcome_of(Errc::no_route) == Outcome::no_route);
    CHECK(outcome_of(Errc::queue_full) == Outcome::synthetic_429);
    CHECK(outcome_of(Errc::admission_timeout) == Outcome::synthetic_429);
    CHECK(outcome_of(Errc::key_capacity) == Outcome::synthetic_429);
    CHECK(outcome_of(Errc::vendor_rate_limited) == Outcome::synthetic_429);
    CHECK(outcome_of(Errc::upstream_connect_failed) == Outcome::upstream_error);
    CHECK(outcome_of(Errc::upstream_busy) == Outcome::upstream_error);
    CHECK(outcome_of(Errc::malformed_request) == Outcome::client_error);
    CHECK(outcome_of(Errc::request_timeout) == Outcome::client_error);
    CHECK(outcome_of(Errc::shutting_down) == Outcome::unavailable);
    for (std::size_t i = 0; i < kErrcCount; ++i) {
        const auto code = static_cast<Errc>(i);
        INFO(error_code_name(code));
        // Every code has its own name (a new Errc past request_timeout would fail here: kErrcCount).
        CHECK(error_code_name(code) != "unknown");
        REQUIRE(errc_from_name(error_code_name(code)).has_value());
        CHECK(*errc_from_name(error_code_name(code)) == code);
        // Every status a synthetic response carries matches its outcome.
        const auto status = error_http_status(code);
        if (outcome_of(code) == Outcome::synthetic_429) CHECK(status == 429);
        if (outcome_of(code) == Outcome::upstream_error) CHECK(status >= 502);
    }
    CHECK_FALSE(errc_from_name("no_such_code").has_value());
    CHECK(error_code_name(static_cast<Errc>(kErrcCount)) == "unknown");
}

TEST_CASE("a request counts once, under the outcome its answer had", "[metrics][outcome]") {
    ProxyMetrics m(2, 1);
    ExchangeMarks marks;

    // Admitted at once and relayed.
    ProxyMetrics::begin_request(marks);
    ProxyMetrics::routed(marks, 1, 0);
    m.admitted(marks, Nanos::zero(), false);
    ProxyMetrics::sent(marks, 10ms);
    m.upstream_responded(marks, 200, 35ms);
    m.relayed(marks);
    m.relayed(marks);  // a second relay of the same request (a kept 429) counts nothing more
    CHECK(m.route(1).forwarded == 1);
    CHECK(m.route(0).forwarded == 0);
    CHECK(m.upstream(0).responses_by_class[1] == 1);
    auto rt = m.upstream(0).response_time.snapshot();
    CHECK(rt.count == 1);
    CHECK(rt.sum_seconds == Approx(0.025));

    // Queued, then refused after waiting: a 429, and the waiting gauge goes back.
    ProxyMetrics::begin_request(marks);
    ProxyMetrics::routed(marks, 1, 0);
    m.queued(marks, 100ms);
    CHECK(m.route(1).waiting == 1);
    m.synthetic(marks, Errc::admission_timeout);
    CHECK(m.route(1).waiting == 0);
    CHECK(m.route(1).synthetic[static_cast<std::size_t>(Errc::admission_timeout)] == 1);

    // Queued, admitted 250 ms later, the vendor answers 429 (relayed).
    ProxyMetrics::begin_request(marks);
    ProxyMetrics::routed(marks, 1, 0);
    m.queued(marks, 1s);
    m.admitted(marks, 1250ms, true);
    CHECK(m.route(1).waiting == 0);
    ProxyMetrics::sent(marks, 1300ms);
    m.upstream_responded(marks, 429, 1400ms);
    m.relayed(marks);
    CHECK(m.route(1).queued_then_forwarded == 1);
    CHECK(m.route(1).forwarded == 1);
    CHECK(m.route(1).shadow_would_refuse == 1);
    CHECK(m.upstream(0).responses_429 == 1);
    CHECK(m.upstream(0).responses_by_class[3] == 1);
    const auto wait = m.route(1).admission_wait.snapshot();
    CHECK(wait.count == 2);
    CHECK(wait.counts[0] == 1);  // admitted at once
    CHECK(wait.counts[7] == 1);  // le=0.25
    CHECK(wait.sum_seconds == Approx(0.25));

    // The vendor's head was relayed but its body failed before anything reached the
    // client, which gets a 502: an upstream error, no longer a forwarded request.
    ProxyMetrics::begin_request(marks);
    ProxyMetrics::routed(marks, 0, 0);
    m.admitted(marks, Nanos::zero(), false);
    m.relayed(marks);
    CHECK(m.route(0).forwarded == 1);
    m.synthetic(marks, Errc::upstream_protocol_error);
    CHECK(m.route(0).forwarded == 0);
    CHECK(m.route(0).synthetic[static_cast<std::size_t>(Errc::upstream_protocol_error)] == 1);

    // Before any route: the unrouted slot.
    ProxyMetrics::begin_request(marks);
    m.synthetic(marks, Errc::no_route);
    CHECK(m.unrouted().synthetic[static_cast<std::size_t>(Errc::no_route)] == 1);
    CHECK(m.route(0).synthetic[static_cast<std::size_t>(Errc::no_route)] == 0);

    // The client left while queued: the session's end takes it off the gauge.
    ProxyMetrics::begin_request(marks);
    ProxyMetrics::routed(marks, 0, 0);
    m.queued(marks, 2s);
    CHECK(m.route(0).waiting == 1);
    m.session_ended(marks);
    m.session_ended(marks);
    CHECK(m.route(0).waiting == 0);
}

TEST_CASE("each route's counters sit on cache lines of their own", "[metrics]") {
    CHECK(alignof(RouteMetrics) == kCacheLine);
    CHECK(sizeof(RouteMetrics) % kCacheLine == 0);
    CHECK(alignof(UpstreamMetrics) == kCacheLine);
    ProxyMetrics m(3, 2);
    const auto a = reinterpret_cast<std::uintptr_t>(&m.route(0));
    const auto b = reinterpret_cast<std::uintptr_t>(&m.route(1));
    CHECK(a % kCacheLine == 0);
    CHECK((a > b ? a - b : b - a) >= kCacheLine);  // each block is its own allocation
}
