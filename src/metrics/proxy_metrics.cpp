#include "sluice/metrics/proxy_metrics.hpp"

#include <string_view>

namespace sluice::metrics {

Outcome outcome_of(Errc code) noexcept {
    switch (code) {
        case Errc::no_route: return Outcome::no_route;
        case Errc::queue_full:
        case Errc::admission_timeout:
        case Errc::key_capacity:
        case Errc::vendor_rate_limited: return Outcome::synthetic_429;
        case Errc::upstream_connect_failed:
        case Errc::upstream_tls_failed:
        case Errc::upstream_protocol_error:
        case Errc::upstream_closed:
        case Errc::upstream_timeout:
        case Errc::upstream_busy: return Outcome::upstream_error;
        case Errc::shutting_down:
        case Errc::shared_state_unavailable:
        case Errc::too_many_connections: return Outcome::unavailable;
        case Errc::ok:
        case Errc::malformed_request:
        case Errc::header_too_large:
        case Errc::body_too_large:
        case Errc::cost_unreadable:
        case Errc::cost_body_too_large:
        case Errc::cost_too_large:
        case Errc::unknown_priority:
        case Errc::method_not_allowed:
        case Errc::not_implemented:
        case Errc::request_timeout: return Outcome::client_error;
    }
    return Outcome::client_error;
}

std::string_view outcome_name(Outcome outcome) noexcept {
    switch (outcome) {
        case Outcome::forwarded: return "forwarded";
        case Outcome::queued_then_forwarded: return "queued_then_forwarded";
        case Outcome::no_route: return "no_route";
        case Outcome::client_error: return "client_error";
        case Outcome::synthetic_429: return "synthetic_429";
        case Outcome::upstream_error: return "upstream_error";
        case Outcome::unavailable: return "unavailable";
    }
    return "unknown";
}

std::optional<Errc> errc_from_name(std::string_view name) noexcept {
    for (std::size_t i = 0; i < kErrcCount; ++i) {
        const auto code = static_cast<Errc>(i);
        if (error_code_name(code) == name) return code;
    }
    return std::nullopt;
}

ProxyMetrics::ProxyMetrics(std::size_t route_count, std::size_t upstream_count)
    : route_count_(route_count), upstream_count_(upstream_count) {
    routes_.reserve(route_count + 1);
    for (std::size_t i = 0; i < route_count + 1; ++i) routes_.push_back(std::make_shared<RouteMetrics>());
    upstreams_.reserve(upstream_count);
    for (std::size_t i = 0; i < upstream_count; ++i)
        upstreams_.push_back(std::make_shared<UpstreamMetrics>());
}

ProxyMetrics::ProxyMetrics(std::vector<std::string> route_names, std::vector<std::string> upstream_names,
                           std::vector<std::string> class_names, const ProxyMetrics* carried_from)
    : route_count_(route_names.size()),
      upstream_count_(upstream_names.size()),
      route_names_(std::move(route_names)),
      upstream_names_(std::move(upstream_names)),
      class_names_(std::move(class_names)) {
    if (!carried_from) {
        routes_ = carry_by_name<RouteMetrics>(route_names_, {}, {});
        routes_.push_back(std::make_shared<RouteMetrics>());
        upstreams_ = carry_by_name<UpstreamMetrics>(upstream_names_, {}, {});
        classes_ = carry_by_name<ClassMetrics>(class_names_, {}, {});
        return;
    }
    routes_ = carry_by_name(route_names_, carried_from->route_names_, carried_from->routes_);
    routes_.push_back(carried_from->routes_[carried_from->route_count_]);
    upstreams_ = carry_by_name(upstream_names_, carried_from->upstream_names_, carried_from->upstreams_);
    classes_ = carry_by_name(class_names_, carried_from->class_names_, carried_from->classes_);
}

void ProxyMetrics::queued(ExchangeMarks& marks, Nanos now) noexcept {
    if (!marks.waiting) {
        slot(marks).waiting.fetch_add(1, std::memory_order_relaxed);
        if (auto* priority_class = class_slot(marks))
            priority_class->waiting.fetch_add(1, std::memory_order_relaxed);
    }
    marks.waiting = true;
    marks.was_queued = true;
    marks.waiting_since = now;
}

void ProxyMetrics::stop_waiting(ExchangeMarks& marks) noexcept {
    if (!marks.waiting) return;
    marks.waiting = false;
    slot(marks).waiting.fetch_sub(1, std::memory_order_relaxed);
    if (auto* priority_class = class_slot(marks))
        priority_class->waiting.fetch_sub(1, std::memory_order_relaxed);
}

void ProxyMetrics::admitted(ExchangeMarks& marks, Nanos now, bool shadow_would_refuse) noexcept {
    auto& route = slot(marks);
    const Nanos waited = marks.waiting ? now - marks.waiting_since : Nanos::zero();
    route.admission_wait.observe(waited);
    if (auto* priority_class = class_slot(marks)) priority_class->admission_wait.observe(waited);
    stop_waiting(marks);
    if (shadow_would_refuse) route.shadow_would_refuse.fetch_add(1, std::memory_order_relaxed);
}

void ProxyMetrics::upstream_responded(const ExchangeMarks& marks, unsigned status, Nanos now) noexcept {
    if (marks.upstream >= upstream_count_) return;
    auto& upstream = *upstreams_[marks.upstream];
    upstream.response_time.observe(now - marks.sent_at);
    const unsigned status_class = status / 100;
    if (status_class >= 1 && status_class <= 5)
        upstream.responses_by_class[status_class - 1].fetch_add(1, std::memory_order_relaxed);
    if (status == 429) upstream.responses_429.fetch_add(1, std::memory_order_relaxed);
}

void ProxyMetrics::relayed(ExchangeMarks& marks) noexcept {
    stop_waiting(marks);  // a vendor 429 kept while its retry waited, relayed when the retry was refused
    if (marks.answered) return;
    marks.answered = true;
    auto& route = slot(marks);
    (marks.was_queued ? route.queued_then_forwarded : route.forwarded)
        .fetch_add(1, std::memory_order_relaxed);
}

void ProxyMetrics::synthetic(ExchangeMarks& marks, Errc code) noexcept {
    stop_waiting(marks);  // refused after waiting
    auto& route = slot(marks);
    if (marks.answered) {
        // The vendor's head was relayed, but its body failed before anything reached
        // the client, which gets a 502 instead: that is the request's outcome.
        marks.answered = false;
        (marks.was_queued ? route.queued_then_forwarded : route.forwarded)
            .fetch_sub(1, std::memory_order_relaxed);
    }
    const auto index = static_cast<std::size_t>(code);
    if (index < kErrcCount) route.synthetic[index].fetch_add(1, std::memory_order_relaxed);
    if (outcome_of(code) == Outcome::synthetic_429) {
        if (auto* priority_class = class_slot(marks))
            priority_class->limit_refusals.fetch_add(1, std::memory_order_relaxed);
    }
}

void ProxyMetrics::failed_mid_body(const ExchangeMarks& marks) noexcept {
    if (marks.upstream < upstream_count_)
        upstreams_[marks.upstream]->failed_mid_body.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace sluice::metrics
