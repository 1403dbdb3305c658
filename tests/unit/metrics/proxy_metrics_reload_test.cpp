// A reload's metrics (ProxyMetrics' carrying constructor): a route, upstream or priority
// class that keeps its name keeps its counters, shared with the old config's. And what a
// request's class adds to its class's block.

#include <catch2/catch.hpp>

#include "sluice/metrics/proxy_metrics.hpp"

using namespace sluice;
using namespace sluice::metrics;
using namespace std::chrono_literals;

namespace {

void forward_one(ProxyMetrics& m, std::size_t route, std::size_t upstream) {
    ExchangeMarks marks;
    ProxyMetrics::begin_request(marks);
    ProxyMetrics::routed(marks, route, upstream);
    m.admitted(marks, Nanos::zero(), false);
    ProxyMetrics::sent(marks, 1ms);
    m.upstream_responded(marks, 200, 3ms);
    m.relayed(marks);
}

}  // namespace

TEST_CASE("a reload carries each kept route's and upstream's counters by name; new ones start at 0",
          "[metrics][reload]") {
    ProxyMetrics before({"api", "old"}, {"vendor", "gone"}, {}, nullptr);
    forward_one(before, 0, 0);
    forward_one(before, 0, 0);
    forward_one(before, 1, 1);
    ExchangeMarks unrouted;
    ProxyMetrics::begin_request(unrouted);
    before.synthetic(unrouted, Errc::no_route);

    // Reordered, one route and one upstream gone, one of each new.
    ProxyMetrics after({"new", "api"}, {"other", "vendor"}, {}, &before);
    CHECK(after.route_count() == 2);
    CHECK(after.route(1).forwarded == 2);
    CHECK(after.route(1).admission_wait.snapshot().count == 2);
    CHECK(after.route(0).forwarded == 0);
    CHECK(after.upstream(1).responses_by_class[1] == 2);
    CHECK(after.upstream(1).response_time.snapshot().count == 2);
    CHECK(after.upstream(0).responses_by_class[1] == 0);
    CHECK(after.unrouted().synthetic[static_cast<std::size_t>(Errc::no_route)] == 1);

    // Shared, not copied: what the old config's requests still add shows in the new one.
    forward_one(before, 0, 0);
    CHECK(after.route(1).forwarded == 3);
    forward_one(after, 1, 1);
    CHECK(before.route(0).forwarded == 4);
}

TEST_CASE("a request queued under the old config leaves the waiting gauge the new config shows",
          "[metrics][reload]") {
    ProxyMetrics before({"api"}, {"vendor"}, {}, nullptr);
    ExchangeMarks marks;
    ProxyMetrics::begin_request(marks);
    ProxyMetrics::routed(marks, 0, 0);
    before.queued(marks, 10ms);
    ProxyMetrics after({"api"}, {"vendor"}, {}, &before);
    CHECK(after.route(0).waiting == 1);
    before.admitted(marks, 30ms, false);  // the old runtime's session, admitted after the reload
    CHECK(after.route(0).waiting == 0);
    CHECK(after.route(0).admission_wait.snapshot().count == 1);
}

TEST_CASE("a request's priority class gets its wait, its place in the queue and its refusals",
          "[metrics][priorities]") {
    ProxyMetrics m({"api"}, {"vendor"}, {"interactive", "batch"}, nullptr);
    REQUIRE(m.class_count() == 2);
    ExchangeMarks batch;
    ProxyMetrics::begin_request(batch);
    ProxyMetrics::routed(batch, 0, 0);
    ProxyMetrics::classed(batch, 1);
    m.queued(batch, 10ms);
    CHECK(m.priority_class(1).waiting == 1);
    CHECK(m.priority_class(0).waiting == 0);
    m.admitted(batch, 250ms, false);
    CHECK(m.priority_class(1).waiting == 0);
    const auto waited = m.priority_class(1).admission_wait.snapshot();
    CHECK(waited.count == 1);
    CHECK(waited.sum_seconds == Approx(0.24));
    CHECK(m.priority_class(0).admission_wait.snapshot().count == 0);

    ExchangeMarks interactive;
    ProxyMetrics::begin_request(interactive);
    ProxyMetrics::routed(interactive, 0, 0);
    ProxyMetrics::classed(interactive, 0);
    m.queued(interactive, 10ms);
    m.synthetic(interactive, Errc::admission_timeout);  // a limit's 429 counts on the class
    CHECK(m.priority_class(0).limit_refusals == 1);
    CHECK(m.priority_class(0).waiting == 0);
    m.synthetic(interactive, Errc::upstream_closed);  // a vendor's failure does not
    CHECK(m.priority_class(0).limit_refusals == 1);

    // Without priorities a request has no class, and nothing is counted for one.
    ProxyMetrics plain({"api"}, {"vendor"}, {}, nullptr);
    ExchangeMarks unclassed;
    ProxyMetrics::begin_request(unclassed);
    ProxyMetrics::routed(unclassed, 0, 0);
    plain.queued(unclassed, 0ms);
    plain.admitted(unclassed, 5ms, false);
    CHECK(plain.class_count() == 0);
    CHECK(plain.route(0).admission_wait.snapshot().count == 1);

    // A reload that keeps "batch" (now first) keeps its block; "bulk" starts at 0.
    ProxyMetrics after({"api"}, {"vendor"}, {"batch", "bulk"}, &m);
    CHECK(after.priority_class(0).admission_wait.snapshot().count == 1);
    CHECK(after.priority_class(1).admission_wait.snapshot().count == 0);
}
