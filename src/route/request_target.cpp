#include "sluice/route/request_target.hpp"

namespace sluice::route {
namespace {

// Splits "host[:port]" or "[v6]:port" (an authority without userinfo).
bool split_authority(std::string_view authority, std::string_view& host, std::string_view& port) {
    if (authority.empty()) return false;
    if (authority.front() == '[') {
        const auto close = authority.find(']');
        if (close == std::string_view::npos) return false;
        host = authority.substr(1, close - 1);
        const auto rest = authority.substr(close + 1);
        if (!rest.empty()) {
            if (rest.front() != ':') return false;
            port = rest.substr(1);
        }
    } else {
        const auto colon = authority.rfind(':');
        host = authority.substr(0, colon);
        if (colon != std::string_view::npos) port = authority.substr(colon + 1);
    }
    for (const char c : port) {
        if (c < '0' || c > '9') return false;
    }
    return !host.empty() || !port.empty();
}

bool has_control_or_space(std::string_view s) {
    for (const unsigned char c : s) {
        if (c <= 0x20 || c == 0x7f) return true;
    }
    return false;
}

void split_path_query(std::string_view rest, ParsedTarget& out) {
    const auto fragment = rest.find('#');  // never sent by conforming clients; drop it rather than forward it
    if (fragment != std::string_view::npos) rest = rest.substr(0, fragment);
    const auto q = rest.find('?');
    out.path = rest.substr(0, q);
    out.query = q == std::string_view::npos ? std::string_view{} : rest.substr(q + 1);
}

}  // namespace

std::optional<ParsedTarget> parse_request_target(std::string_view target, std::string_view host_header) {
    if (target.empty() || has_control_or_space(target)) return std::nullopt;
    ParsedTarget out;
    if (target == "*") {
        out.form = ParsedTarget::Form::asterisk;
        return out;
    }
    if (target.front() == '/') {
        out.form = ParsedTarget::Form::origin;
        split_path_query(target, out);
        std::string_view host;
        std::string_view port;
        if (!host_header.empty() && split_authority(host_header, host, port)) {
            out.host = host;
            out.port = port;
        }
        return out;
    }
    const auto scheme_end = target.find("://");
    if (scheme_end != std::string_view::npos) {
        out.form = ParsedTarget::Form::absolute;
        out.scheme = target.substr(0, scheme_end);
        auto rest = target.substr(scheme_end + 3);
        const auto authority_end = rest.find_first_of("/?#");
        auto authority = rest.substr(0, authority_end);
        if (authority.find('@') != std::string_view::npos) return std::nullopt;  // userinfo is deprecated (RFC 9110 4.2.4)
        if (!split_authority(authority, out.host, out.port) || out.host.empty()) return std::nullopt;
        rest = authority_end == std::string_view::npos ? std::string_view{} : rest.substr(authority_end);
        split_path_query(rest, out);
        if (out.path.empty()) out.path = "/";
        return out;
    }
    // authority-form: only meaningful for CONNECT, which the caller refuses.
    out.form = ParsedTarget::Form::authority;
    if (!split_authority(target, out.host, out.port) || out.host.empty()) return std::nullopt;
    return out;
}

}  // namespace sluice::route
