#include "sluice/common/error.hpp"

#include <string>

namespace sluice {
namespace {

class SluiceCategory final : public std::error_category {
public:
    const char* name() const noexcept override { return "sluice"; }
    std::string message(int ev) const override { return std::string(error_code_name(static_cast<Errc>(ev))); }
};

}  // namespace

const std::error_category& sluice_category() noexcept {
    static const SluiceCategory category;
    return category;
}

std::error_code make_error_code(Errc e) noexcept {
    return {static_cast<int>(e), sluice_category()};
}

std::string_view error_code_name(Errc e) noexcept {
    switch (e) {
        case Errc::ok: return "ok";
        case Errc::no_route: return "no_route";
        case Errc::malformed_request: return "malformed_request";
        case Errc::header_too_large: return "header_too_large";
        case Errc::body_too_large: return "body_too_large";
        case Errc::method_not_allowed: return "method_not_allowed";
        case Errc::upstream_connect_failed: return "upstream_connect_failed";
        case Errc::upstream_tls_failed: return "upstream_tls_failed";
        case Errc::upstream_protocol_error: return "upstream_protocol_error";
        case Errc::upstream_closed: return "upstream_closed";
        case Errc::upstream_timeout: return "upstream_timeout";
        case Errc::upstream_busy: return "upstream_busy";
        case Errc::queue_full: return "queue_full";
        case Errc::admission_timeout: return "admission_timeout";
        case Errc::key_capacity: return "key_capacity";
        case Errc::vendor_rate_limited: return "vendor_rate_limited";
        case Errc::shutting_down: return "shutting_down";
        case Errc::not_implemented: return "not_implemented";
        case Errc::too_many_connections: return "too_many_connections";
        case Errc::request_timeout: return "request_timeout";
        case Errc::shared_state_unavailable: return "shared_state_unavailable";
        case Errc::cost_unreadable: return "cost_unreadable";
        case Errc::cost_body_too_large: return "cost_body_too_large";
        case Errc::cost_too_large: return "cost_too_large";
        case Errc::unknown_priority: return "unknown_priority";
    }
    return "unknown";
}

unsigned error_http_status(Errc e) noexcept {
    switch (e) {
        case Errc::ok: return 200;
        case Errc::no_route: return 404;
        case Errc::malformed_request:
        case Errc::cost_unreadable:
        case Errc::unknown_priority: return 400;
        case Errc::header_too_large: return 431;
        case Errc::body_too_large:
        case Errc::cost_body_too_large: return 413;
        case Errc::cost_too_large: return 422;
        case Errc::method_not_allowed: return 405;
        case Errc::request_timeout: return 408;
        case Errc::upstream_connect_failed:
        case Errc::upstream_tls_failed:
        case Errc::upstream_protocol_error:
        case Errc::upstream_closed: return 502;
        case Errc::upstream_timeout: return 504;
        case Errc::not_implemented: return 501;
        case Errc::upstream_busy:
        case Errc::shared_state_unavailable:
        case Errc::shutting_down:
        case Errc::too_many_connections: return 503;
        case Errc::queue_full:
        case Errc::admission_timeout:
        case Errc::key_capacity:
        case Errc::vendor_rate_limited: return 429;
    }
    return 500;
}

}  // namespace sluice
