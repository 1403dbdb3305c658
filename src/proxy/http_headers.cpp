#include "sluice/proxy/http_headers.hpp"

#include <iterator>
#include <vector>

#include <boost/beast/core/string.hpp>
#include <boost/beast/http/field.hpp>

namespace sluice::proxy {

namespace http = boost::beast::http;

namespace {

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

bool is_hop_by_hop(http::field name) {
    switch (name) {
        case http::field::connection:
        case http::field::keep_alive:
        case http::field::proxy_connection:
        case http::field::te:
        case http::field::trailer:
        case http::field::upgrade:
        case http::field::proxy_authorization:
        case http::field::proxy_authenticate: return true;
        default: return false;
    }
}

}  // namespace

template <class Allocator>
void strip_hop_by_hop(http::basic_fields<Allocator>& fields) {
    // One pass to find them (most messages carry one Connection field or none),
    // a second only when there is something to remove: this runs twice per request.
    std::vector<std::string> named;
    bool found = false;
    for (const auto& field : fields) {
        if (!is_hop_by_hop(field.name())) continue;
        found = true;
        if (field.name() != http::field::connection) continue;
        std::string_view value = field.value();
        while (!value.empty()) {
            const auto comma = value.find(',');
            const auto token = trim(value.substr(0, comma));
            // "close" and "keep-alive" name no field of their own to remove (Keep-Alive
            // goes anyway); never let a token strip framing.
            if (!token.empty() && !boost::beast::iequals(token, "close") &&
                !boost::beast::iequals(token, "keep-alive") &&
                !boost::beast::iequals(token, "transfer-encoding") &&
                !boost::beast::iequals(token, "content-length")) {
                named.emplace_back(token);
            }
            if (comma == std::string_view::npos) break;
            value.remove_prefix(comma + 1);
        }
    }
    if (!found) return;
    for (auto it = fields.begin(); it != fields.end();) {
        it = is_hop_by_hop(it->name()) ? fields.erase(it) : std::next(it);
    }
    for (const auto& name : named) fields.erase(name);
}

template <class Allocator>
void strip_sluice_fields(http::basic_fields<Allocator>& fields) {
    std::vector<std::string> names;
    for (const auto& field : fields) {
        const auto name = field.name_string();
        if (name.size() >= 7 && boost::beast::iequals(name.substr(0, 7), "sluice-")) names.emplace_back(name);
    }
    for (const auto& name : names) fields.erase(name);
}

template <class Allocator>
std::optional<std::string_view> find_field(const http::basic_fields<Allocator>& fields,
                                           std::string_view name) {
    const auto it = fields.find(name);
    if (it == fields.end()) return std::nullopt;
    return std::string_view(it->value());
}

#define SLUICE_HTTP_HEADERS_INSTANTIATE(Alloc)                     \
    template void strip_hop_by_hop(http::basic_fields<Alloc>&);    \
    template void strip_sluice_fields(http::basic_fields<Alloc>&); \
    template std::optional<std::string_view> find_field(const http::basic_fields<Alloc>&, std::string_view);
SLUICE_HTTP_HEADERS_INSTANTIATE(std::allocator<char>)
SLUICE_HTTP_HEADERS_INSTANTIATE(ArenaAllocator<char>)
#undef SLUICE_HTTP_HEADERS_INSTANTIATE

std::string authority_for(std::string_view scheme, std::string_view host, unsigned port) {
    std::string out;
    const bool ipv6 = host.find(':') != std::string_view::npos;
    if (ipv6) out.push_back('[');
    out.append(host);
    if (ipv6) out.push_back(']');
    const bool default_port = (scheme == "http" && port == 80) || (scheme == "https" && port == 443);
    if (!default_port) out.append(":").append(std::to_string(port));
    return out;
}

}  // namespace sluice::proxy
