#include "sluice/route/request_target.hpp"

#include <vector>

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

// Also refuses every byte >= 0x7f: a request-target is US-ASCII, anything else
// must arrive percent-encoded.
bool has_control_or_space(std::string_view s) {
    for (const unsigned char c : s) {
        if (c <= 0x20 || c >= 0x7f) return true;
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
        if (authority.find('@') != std::string_view::npos)
            return std::nullopt;  // userinfo is deprecated (RFC 9110 4.2.4)
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

namespace {

bool is_dot_escape(std::string_view s, std::size_t i) {
    return i + 2 < s.size() && s[i] == '%' && s[i + 1] == '2' && (s[i + 2] == 'e' || s[i + 2] == 'E');
}

// "." or ".." once %2E is decoded.
int dot_segment_kind(std::string_view segment) {
    std::size_t dots = 0;
    for (std::size_t i = 0; i < segment.size();) {
        if (segment[i] == '.') {
            ++i;
        } else if (is_dot_escape(segment, i)) {
            i += 3;
        } else {
            return 0;
        }
        if (++dots > 2) return 0;
    }
    return static_cast<int>(dots);
}

}  // namespace

std::optional<std::string> normalize_path(std::string_view path) {
    // Fast check: a segment that is "." or ".." (plain or escaped) is the only
    // thing remove_dot_segments changes in an absolute path.
    bool dotted = false;
    for (std::size_t start = 0; start < path.size() && !dotted;) {
        const auto slash = path.find('/', start);
        const auto end = slash == std::string_view::npos ? path.size() : slash;
        if (end > start && dot_segment_kind(path.substr(start, end - start)) != 0) dotted = true;
        start = end + 1;
    }
    if (!dotted) return std::nullopt;

    // The segments after the leading '/', with "." dropped and ".." popping
    // the one before it (never above the root). A dot segment at the end
    // leaves a trailing '/' (RFC 3986 5.2.4 steps B and C: "/a/b/.." is "/a/").
    std::vector<std::string_view> segments;
    bool trailing_slash = false;
    std::string_view rest = path.substr(path.empty() || path.front() != '/' ? 0 : 1);
    while (true) {
        const auto slash = rest.find('/');
        const auto segment = rest.substr(0, slash);
        const bool last = slash == std::string_view::npos;
        switch (dot_segment_kind(segment)) {
            case 1: trailing_slash = last; break;
            case 2:
                if (!segments.empty()) segments.pop_back();
                trailing_slash = last;
                break;
            default:
                segments.push_back(segment);
                trailing_slash = false;
                break;
        }
        if (last) break;
        rest.remove_prefix(slash + 1);
    }
    std::string out;
    out.reserve(path.size());
    for (const auto segment : segments) out.append("/").append(segment);
    if (trailing_slash || out.empty()) out.push_back('/');
    return out;
}

}  // namespace sluice::route
