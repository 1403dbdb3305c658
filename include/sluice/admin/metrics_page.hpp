#pragma once
// GET /metrics on the admin listener: sluice's metrics in the Prometheus text
// exposition format 0.0.4 (docs/operations.md, "Metrics", lists every family).
//
// RuntimeCollector is a prometheus::Collectable over a Runtime: at scrape time
// it reads the request path's atomic counters (metrics/proxy_metrics.hpp), the
// pools' gauges, the feedback counters, and each limit's state and activity
// (one short look under the admission lock, a few reads per limit: no key
// table is walked). prometheus-cpp's TextSerializer writes the text, HELP and
// TYPE lines and label escaping included. Label values are route, upstream and
// limit names from the config, outcome codes and status classes: never a key,
// a path or a query.

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "sluice/proxy/runtime.hpp"

namespace sluice::admin {

inline constexpr const char* kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

class RuntimeCollector final : public prometheus::Collectable {
public:
    explicit RuntimeCollector(proxy::Runtime& runtime) : runtime_(runtime) {}
    std::vector<prometheus::MetricFamily> Collect() const override;

private:
    proxy::Runtime& runtime_;
};

// The body of GET /metrics.
std::string render_metrics(proxy::Runtime& runtime);

// Adds the per-route outcomes ("routes") and the per-upstream responses (into
// each "upstreams" entry, matched by position) to the /status JSON.
void add_status_metrics(nlohmann::json& status, const proxy::Runtime& runtime);

}  // namespace sluice::admin
