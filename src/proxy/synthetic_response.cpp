#include "sluice/proxy/synthetic_response.hpp"

#include <algorithm>
#include <cmath>

#include <boost/beast/http/field.hpp>
#include <boost/beast/version.hpp>
#include <nlohmann/json.hpp>

namespace sluice::proxy {

namespace http = boost::beast::http;

namespace {

SyntheticResponse make_json_response(Errc code, const nlohmann::json& body, unsigned version,
                                     bool keep_alive) {
    SyntheticResponse res{static_cast<http::status>(error_http_status(code)), version};
    res.set(http::field::server, "sluice");
    res.set(http::field::content_type, "application/json");
    res.set(http::field::cache_control, "no-store");
    res.set(kSluiceErrorHeader, error_code_name(code));
    // Replace, not throw: a message may still carry bytes that are not UTF-8.
    res.body() = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    res.body().push_back('\n');
    res.keep_alive(keep_alive);
    res.prepare_payload();
    return res;
}

double seconds_of(Nanos d) {
    return static_cast<double>(d.count()) / 1e9;
}

std::string message_for(const queue::Admission& admission, const std::string& limit_name, Nanos retry_after) {
    char delay[32];
    std::snprintf(delay, sizeof delay, "%.3f", seconds_of(retry_after));
    switch (admission.reason) {
        case Errc::queue_full:
            return "the queue for this route is full (" + std::to_string(admission.queue.max_depth) +
                   " waiting); retry in " + delay + "s";
        case Errc::admission_timeout:
            return "limit '" + limit_name + "' cannot admit this request within its max wait; retry in " +
                   delay + "s";
        case Errc::key_capacity:
            return "limit '" + limit_name +
                   "' tracks its maximum number of keys and none can be forgotten yet";
        case Errc::vendor_rate_limited:
            return "the vendor paused limit '" + limit_name + "'; retry in " + delay + "s";
        case Errc::shared_state_unavailable:
            return "limit '" + limit_name +
                   "' is shared through Redis, which cannot answer, and its on_redis_failure is deny; retry "
                   "in " +
                   delay + "s";
        case Errc::shutting_down:
            return "sluice is shutting down; this request was not forwarded, retry it (on another instance)";
        default: return std::string(error_code_name(admission.reason));
    }
}

}  // namespace

std::string printable_excerpt(std::string_view text, std::size_t max_bytes, bool quoted) {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    const auto shown = text.substr(0, max_bytes);
    out.reserve(shown.size() + 2);
    if (quoted) out.push_back('"');
    for (const unsigned char c : shown) {
        if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') {
            out.append("\\x").push_back(kHex[c >> 4]);
            out.push_back(kHex[c & 0xf]);
        } else {
            out.push_back(static_cast<char>(c));
        }
    }
    if (quoted) out.push_back('"');
    if (shown.size() < text.size()) out.append("...(" + std::to_string(text.size()) + " bytes)");
    return out;
}

long long ceil_seconds(Nanos delay) {
    if (delay <= Nanos::zero()) return 0;
    const auto whole = std::chrono::duration_cast<std::chrono::seconds>(delay);
    return whole.count() + (whole < delay ? 1 : 0);
}

SyntheticResponse make_error_response(Errc code, const std::string& message, unsigned version,
                                      bool keep_alive) {
    return make_json_response(code, {{"error", error_code_name(code)}, {"message", message}}, version,
                              keep_alive);
}

SyntheticResponse make_rejection_response(const queue::Admission& admission, const config::LimitConfig* limit,
                                          config::RateLimitHeaderStyle style, const Instant& now,
                                          unsigned version, bool keep_alive) {
    const std::string limit_name = limit ? limit->name : std::string();
    const Nanos retry_after = std::max(admission.retry_after, Nanos::zero());
    nlohmann::json body = {
        {"error", error_code_name(admission.reason)},
        {"message", message_for(admission, limit_name, retry_after)},
        {"limit", limit ? nlohmann::json(limit_name) : nlohmann::json(nullptr)},
        {"retry_after", std::round(seconds_of(retry_after) * 1000.0) / 1000.0},
        {"queue", {{"depth", admission.queue.depth}, {"max_depth", admission.queue.max_depth}}},
    };
    auto res = make_json_response(admission.reason, body, version, keep_alive);
    // A client that retries after 0 s would only be refused again; 1 s is the
    // smallest honest whole-second answer when the precise delay is below it.
    res.set(http::field::retry_after, std::to_string(std::max<long long>(1, ceil_seconds(retry_after))));
    if (limit) add_rate_limit_headers(res.base(), style, *limit, admission.tightest, now);
    return res;
}

template <class Allocator>
void add_rate_limit_headers(http::basic_fields<Allocator>& fields, config::RateLimitHeaderStyle style,
                            const config::LimitConfig& limit, const limit::Decision& decision,
                            const Instant& now) {
    if (style == config::RateLimitHeaderStyle::none || limit.algorithm == config::Algorithm::vendor_gate)
        return;
    const long long reset = decision.reset == kNever ? 0 : ceil_seconds(decision.reset - now.mono);
    const long long remaining = std::max<std::int64_t>(0, decision.remaining);
    if (style == config::RateLimitHeaderStyle::x || style == config::RateLimitHeaderStyle::both) {
        fields.set("X-RateLimit-Limit", std::to_string(decision.limit));
        fields.set("X-RateLimit-Remaining", std::to_string(remaining));
        fields.set("X-RateLimit-Reset", std::to_string(reset));
    }
    if (style == config::RateLimitHeaderStyle::ietf || style == config::RateLimitHeaderStyle::both) {
        // draft-ietf-httpapi-ratelimit-headers: RateLimit-Policy: "name";q=quota;w=window,
        // RateLimit: "name";r=remaining;t=seconds-until-reset.
        std::string policy = "\"" + limit.name + "\";q=" + std::to_string(decision.limit);
        const auto window = std::chrono::duration_cast<std::chrono::seconds>(limit.window).count();
        if (window > 0) policy += ";w=" + std::to_string(window);
        fields.set("RateLimit-Policy", policy);
        fields.set("RateLimit",
                   "\"" + limit.name + "\";r=" + std::to_string(remaining) + ";t=" + std::to_string(reset));
    }
}

template void add_rate_limit_headers(http::fields&, config::RateLimitHeaderStyle, const config::LimitConfig&,
                                     const limit::Decision&, const Instant&);
template void add_rate_limit_headers(ArenaFields&, config::RateLimitHeaderStyle, const config::LimitConfig&,
                                     const limit::Decision&, const Instant&);

}  // namespace sluice::proxy
