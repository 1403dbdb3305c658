#include "sluice/proxy/http_headers.hpp"

#include <boost/beast/core/string.hpp>
#include <boost/beast/http/field.hpp>
#include <vector>

namespace sluice::proxy {

namespace http = boost::beast::http;

namespace {

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

}  // namespace

void strip_hop_by_hop(http::fields& fields) {
    std::vector<std::string> named;
    for (auto it = fields.find(http::field::connection); it != fields.end() && it->name() == http::field::connection;
         ++it) {
        std::string_view value = it->value();
        while (!value.empty()) {
            const auto comma = value.find(',');
            const auto token = trim(value.substr(0, comma));
            if (!token.empty()) named.emplace_back(token);
            if (comma == std::string_view::npos) break;
            value.remove_prefix(comma + 1);
        }
    }
    for (const auto& name : named) {
        // "Connection: close" names no field; never let a token strip framing.
        if (boost::beast::iequals(name, "transfer-encoding") || boost::beast::iequals(name, "content-length")) continue;
        fields.erase(name);
    }
    fields.erase(http::field::connection);
    fields.erase(http::field::keep_alive);
    fields.erase(http::field::proxy_connection);
    fields.erase(http::field::te);
    fields.erase(http::field::trailer);
    fields.erase(http::field::upgrade);
    fields.erase(http::field::proxy_authorization);
    fields.erase(http::field::proxy_authenticate);
}

void strip_sluice_fields(http::fields& fields) {
    std::vector<std::string> names;
    for (const auto& field : fields) {
        const auto name = field.name_string();
        if (name.size() >= 7 && boost::beast::iequals(name.substr(0, 7), "sluice-")) names.emplace_back(name);
    }
    for (const auto& name : names) fields.erase(name);
}

std::optional<std::string_view> find_field(const http::fields& fields, std::string_view name) {
    const auto it = fields.find(name);
    if (it == fields.end()) return std::nullopt;
    return std::string_view(it->value());
}

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
