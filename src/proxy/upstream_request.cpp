#include "sluice/proxy/upstream_request.hpp"

#include <boost/beast/core/string.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/beast/http/fields.hpp>

#include "sluice/proxy/http_headers.hpp"
#include "sluice/proxy/message_framing.hpp"
#include "sluice/proxy/synthetic_response.hpp"
#include "sluice/route/request_target.hpp"

namespace sluice::proxy {

namespace http = boost::beast::http;

template <class Fields>
RequestIntake intake_request(const http::header<true, Fields>& head, const route::RouteTable& routes,
                             std::size_t listener_index) {
    RequestIntake intake;
    auto refuse = [&](Errc code, std::string message) {
        intake.refusal = IntakeRefusal{code, std::move(message), false};
        return std::move(intake);
    };
    if (head.method() == http::verb::connect) {
        return refuse(Errc::method_not_allowed,
                      "CONNECT tunnels are not supported; send plain HTTP to sluice");
    }
    // Framing and Host are settled before anything else reads the head: a request with two
    // readings is never routed, counted or forwarded (RFC 9112 6.3, 3.2).
    if (const auto refusal = check_request_head(head, head.version())) {
        return refuse(refusal->code, std::string(refusal->message));
    }
    const auto host_header = find_field(head, "Host").value_or(std::string_view{});
    const auto target = route::parse_request_target(head.target(), host_header);
    if (!target || target->form == route::ParsedTarget::Form::authority ||
        target->form == route::ParsedTarget::Form::asterisk) {
        return refuse(Errc::malformed_request,
                      "unsupported request target " + printable_excerpt(head.target()));
    }
    if (target->form == route::ParsedTarget::Form::absolute &&
        !boost::beast::iequals(target->scheme, "http")) {
        // sluice speaks plain HTTP to its clients; forwarding an "ftp://" or "https://" target
        // as http would pretend to honour a scheme it does not.
        return refuse(Errc::malformed_request, "absolute-form targets must use http://, got " +
                                                   printable_excerpt(target->scheme) + "://");
    }
    intake.host.assign(target->host);
    intake.query.assign(target->query);
    // Routed, limited and forwarded as the vendor will read it once it removes dot-segments
    // itself: "/v1/../admin" is "/admin" here too.
    if (auto normal = route::normalize_path(target->path)) {
        intake.path = std::move(*normal);
    } else {
        intake.path.assign(target->path);
    }
    const auto method = head.method_string();
    intake.match = routes.match(route::RequestTarget{listener_index, intake.host, method, intake.path});
    if (!intake.match) {
        intake.refusal = IntakeRefusal{Errc::no_route,
                                       "no route for " + printable_excerpt(method, 32) + " " +
                                           printable_excerpt(intake.host + intake.path, 256, false),
                                       true};
    }
    return intake;
}

template <class Fields>
UpstreamRewrite rewrite_for_upstream(http::header<true, Fields>& head, const route::RouteMatchResult& match,
                                     std::string_view query, const ParsedFraming& framing,
                                     const UpstreamHeadOptions& options) {
    UpstreamRewrite result;
    if (const auto expect = find_field(head, "Expect")) {
        if (!boost::beast::iequals(*expect, "100-continue")) {
            result.refusal =
                IntakeRefusal{Errc::malformed_request, "unsupported Expect: " + printable_excerpt(*expect)};
            return result;
        }
        // sluice answers 100 itself once the request is admitted and an upstream connection
        // is ready; the vendor then sees an ordinary request.
        result.expect_continue = !framing.body_done;
        head.erase(http::field::expect);
    }
    std::string new_target = match.upstream_path;
    if (!query.empty()) new_target.append("?").append(query);
    strip_hop_by_hop(head);
    strip_sluice_fields(head);
    // The vendor reads the body exactly as sluice did: framing written from the parse, never
    // the client's fields (message_framing.hpp).
    set_forwarded_framing(head, framing.chunked, framing.content_length);
    head.target(new_target);
    head.version(11);
    head.set(http::field::host, options.authority);
    if (options.x_forwarded_for && !options.client_address.empty()) {
        const auto prior = find_field(head, "X-Forwarded-For");
        head.set("X-Forwarded-For", prior ? std::string(*prior) + ", " + std::string(options.client_address)
                                          : std::string(options.client_address));
    }
    if (options.x_forwarded_proto) head.set("X-Forwarded-Proto", "http");
    return result;
}

#define SLUICE_UPSTREAM_REQUEST_INSTANTIATE(Fields)                                                    \
    template RequestIntake intake_request(const http::header<true, Fields>&, const route::RouteTable&, \
                                          std::size_t);                                                \
    template UpstreamRewrite rewrite_for_upstream(http::header<true, Fields>&,                         \
                                                  const route::RouteMatchResult&, std::string_view,    \
                                                  const ParsedFraming&, const UpstreamHeadOptions&);
SLUICE_UPSTREAM_REQUEST_INSTANTIATE(http::fields)
SLUICE_UPSTREAM_REQUEST_INSTANTIATE(ArenaFields)
#undef SLUICE_UPSTREAM_REQUEST_INSTANTIATE

}  // namespace sluice::proxy
