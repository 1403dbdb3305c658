// A reload's metrics (ProxyMetrics' carrying constructor): a route or upstream
// that keeps its name keeps its counters, shared with the old config's.

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
    ProxyMetrics before({"api", "old"}, {"vendor", "gone"}, nullptr);
    forward_one(before, 0, 0);
    forward_one(before, 0, 0);
    forward_one(before, 1, 1);
    ExchangeMarks unrouted;
    ProxyMetrics::begin_request(unrouted);
    before.synthetic(unrouted, Errc::no_route);

    // Reordered, one route and one upstream gone, one of each new.
    ProxyMetrics after({"new", "api"}, {"other", "vendor"}, &before);
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
    ProxyMetrics before({"api"}, {"vendor"}, nullptr);
    ExchangeMarks marks;
    ProxyMetrics::begin_request(marks);
    ProxyMetrics::routed(marks, 0, 0);
    before.queued(marks, 10ms);
    ProxyMetrics after({"api"}, {"vendor"}, &before);
    CHECK(after.route(0).waiting == 1);
    before.admitted(marks, 30ms, false);  // the old runtime's session, admitted after the reload
    CHECK(after.route(0).waiting == 0);
    CHECK(after.route(0).admission_wait.snapshot().count == 1);
}
