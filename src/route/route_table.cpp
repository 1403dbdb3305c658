#include "sluice/route/route_table.hpp"

#include <algorithm>

#include "sluice/common/excerpt.hpp"
#include "sluice/config/loader.hpp"

namespace sluice::route {
namespace {

char ascii_lower(char c) noexcept {
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

// `pattern` must already be lower case (it is, from compilation); host names
// are case-insensitive (RFC 9110 4.2.3) and are compared without a copy.
bool iequals_lower(std::string_view text, std::string_view lower_pattern) noexcept {
    if (text.size() != lower_pattern.size()) return false;
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (ascii_lower(text[i]) != lower_pattern[i]) return false;
    }
    return true;
}

std::string to_lower(std::string_view s) {
    std::string out(s);
    for (char& c : out) c = ascii_lower(c);
    return out;
}

// "example.com." and "example.com" name the same host (a fully qualified name).
std::string_view without_trailing_dot(std::string_view host) noexcept {
    if (!host.empty() && host.back() == '.') host.remove_suffix(1);
    return host;
}

bool is_param_name_char(char c) noexcept {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

// One compiled pattern segment. Everything a match needs is decided here, once,
// so that matching a request is comparisons only.
struct SegmentMatcher {
    enum class Kind {
        literal,  // exact text (possibly empty: the last segment of a pattern with a trailing '/')
        glob,     // contains '*': `pieces` are the literal runs between the stars (>= 2, may be empty)
        any,      // `*` alone: one whole non-empty segment
        capture,  // `{name}`: one whole non-empty segment, captured
    };
    Kind kind = Kind::literal;
    std::string text;                 // literal: the text; capture: the parameter name
    std::vector<std::string> pieces;  // glob only
    std::size_t min_size = 0;         // glob: total length of the pieces

    bool matches(std::string_view segment) const noexcept {
        switch (kind) {
            case Kind::literal: return segment == text;
            case Kind::any:
            case Kind::capture: return !segment.empty();
            case Kind::glob: return glob_matches(segment);
        }
        return false;
    }

    // Stars only (no '?' or classes): anchoring the first and last piece and
    // finding each middle piece at its leftmost position is exact, no backtracking.
    bool glob_matches(std::string_view segment) const noexcept {
        if (segment.size() < min_size) return false;
        const std::string& first = pieces.front();
        const std::string& last = pieces.back();
        if (segment.substr(0, first.size()) != first) return false;
        if (segment.substr(segment.size() - last.size()) != last) return false;
        std::string_view middle = segment.substr(first.size(), segment.size() - first.size() - last.size());
        for (std::size_t i = 1; i + 1 < pieces.size(); ++i) {
            const auto at = middle.find(pieces[i]);
            if (at == std::string_view::npos) return false;
            middle.remove_prefix(at + pieces[i].size());
        }
        return true;
    }
};

struct CompiledPattern {
    std::vector<SegmentMatcher> segments;  // without the final `**`
    bool rest = false;                     // ended in `/**`
};

// Parses and checks one segment (the text between two '/'). Returns "" or the problem.
std::string compile_segment(std::string_view seg, bool is_last, std::vector<std::string>& param_names,
                            SegmentMatcher& out) {
    if (seg == "**") {
        if (!is_last) return "'**' must be the last segment";
        return "";  // the caller records it as `rest`
    }
    if (seg.find("**") != std::string_view::npos) {
        return "'**' must be a whole segment (a final '/**'), found " + quoted_excerpt(seg);
    }
    // Braces: at most one pair, not nested, and then it must be the whole segment.
    int depth = 0;
    int pairs = 0;
    for (std::size_t i = 0; i < seg.size(); ++i) {
        if (seg[i] == '{') {
            if (depth > 0) return "nested '{' in " + quoted_excerpt(seg);
            depth = 1;
        } else if (seg[i] == '}') {
            if (depth == 0) return "unbalanced '}' in " + quoted_excerpt(seg);
            if (seg[i - 1] == '{') return "empty parameter name '{}' in " + quoted_excerpt(seg);
            depth = 0;
            ++pairs;
        }
    }
    if (depth > 0) return "unbalanced '{' in " + quoted_excerpt(seg);
    if (pairs > 0) {
        if (pairs > 1 || seg.front() != '{' || seg.back() != '}') {
            return "a parameter must be a whole segment ('/{name}/'), found " + quoted_excerpt(seg);
        }
        const auto name = seg.substr(1, seg.size() - 2);
        if (!std::all_of(name.begin(), name.end(), is_param_name_char)) {
            return "invalid parameter name " + quoted_excerpt(name) +
                   "; expected letters, digits, '_' and '-'";
        }
        if (std::find(param_names.begin(), param_names.end(), name) != param_names.end()) {
            return "parameter " + quoted_excerpt("{" + std::string(name) + "}") + " appears twice";
        }
        param_names.emplace_back(name);
        out.kind = SegmentMatcher::Kind::capture;
        out.text = std::string(name);
        return "";
    }
    if (seg == "*") {
        out.kind = SegmentMatcher::Kind::any;
        return "";
    }
    if (seg.find('*') != std::string_view::npos) {
        out.kind = SegmentMatcher::Kind::glob;
        std::size_t start = 0;
        while (true) {
            const auto star = seg.find('*', start);
            out.pieces.emplace_back(
                seg.substr(start, star == std::string_view::npos ? seg.npos : star - start));
            out.min_size += out.pieces.back().size();
            if (star == std::string_view::npos) break;
            start = star + 1;
        }
        return "";
    }
    out.kind = SegmentMatcher::Kind::literal;
    out.text = std::string(seg);
    return "";
}

std::string compile_pattern(std::string_view pattern, CompiledPattern& out) {
    if (pattern.empty() || pattern.front() != '/') return "a path pattern must start with '/'";
    for (const unsigned char c : pattern) {
        if (c == '?' || c == '#') {
            return std::string("'") + static_cast<char>(c) +
                   "' in a path pattern: the query string and fragment are never matched";
        }
        if (c <= 0x20 || c == 0x7f) return "spaces and control characters are not allowed in a path pattern";
    }
    std::vector<std::string> param_names;
    std::size_t pos = 0;  // at a '/'
    while (pos < pattern.size()) {
        const auto start = pos + 1;
        auto end = pattern.find('/', start);
        if (end == std::string_view::npos) end = pattern.size();
        const auto seg = pattern.substr(start, end - start);
        const bool is_last = end == pattern.size();
        // A trailing '/' is a real, empty last segment; an empty one elsewhere is a typo.
        if (seg.empty() && !is_last) return "empty segment ('//')";
        if (seg == "**" && is_last) {
            out.rest = true;
        } else {
            SegmentMatcher matcher;
            auto error = compile_segment(seg, is_last, param_names, matcher);
            if (!error.empty()) return error;
            out.segments.push_back(std::move(matcher));
        }
        pos = end;
    }
    return "";
}

// Calls on_segment(index, text) for the first `count` segments of `path`.
// Returns the position after them (at a '/' or the end), or npos when the
// path runs out first or does not start with '/'. Never allocates.
template <typename OnSegment>
std::size_t walk_segments(std::string_view path, std::size_t count, OnSegment&& on_segment) {
    std::size_t pos = 0;
    for (std::size_t i = 0; i < count; ++i) {
        if (pos >= path.size() || path[pos] != '/') return std::string_view::npos;
        const auto start = pos + 1;
        auto end = path.find('/', start);
        if (end == std::string_view::npos) end = path.size();
        if (!on_segment(i, path.substr(start, end - start))) return std::string_view::npos;
        pos = end;
    }
    return pos;
}

bool prefix_matches(std::string_view path, std::string_view prefix) noexcept {
    if (!path.starts_with(prefix)) return false;
    // A prefix ending in '/' already ends on a boundary; otherwise the next character
    // must be one, so `/intercom` does not capture `/intercomx`.
    return prefix.back() == '/' || path.size() == prefix.size() || path[prefix.size()] == '/';
}

}  // namespace

struct RouteTable::CompiledRoute {
    std::vector<std::size_t> listener_indexes;   // empty = any
    std::vector<std::string> exact_hosts;        // lower case, no trailing dot
    std::vector<std::string> wildcard_suffixes;  // ".example.com" for "*.example.com"
    bool any_host = true;
    std::vector<std::string> methods;  // empty = any; exact (methods are case-sensitive, RFC 9110 9.1)
    std::string path_prefix;           // "" = no prefix criterion
    std::optional<CompiledPattern> pattern;
    bool strip_prefix = false;
    std::string base_path;

    bool host_matches(std::string_view host) const noexcept {
        if (any_host) return true;
        host = without_trailing_dot(host);
        if (host.empty()) return false;
        for (const auto& exact : exact_hosts) {
            if (iequals_lower(host, exact)) return true;
        }
        for (const auto& suffix : wildcard_suffixes) {
            // Strictly longer than the suffix: "*.example.com" names subdomains, not the apex.
            if (host.size() > suffix.size() &&
                iequals_lower(host.substr(host.size() - suffix.size()), suffix)) {
                return true;
            }
        }
        return false;
    }

    // What a `path` pattern is matched against: the whole path, or, on a route that strips its
    // path_prefix (a preset mounted under a prefix), what is left after it, so the pattern is
    // the vendor's own path. Always starts with '/'.
    std::string_view pattern_subject(std::string_view path) const noexcept {
        if (!strip_prefix || path_prefix.empty()) return path;
        // "/intercom/" from "/intercom/x" leaves "/x" (keep the '/'); "/intercom" from "/intercom"
        // leaves "", which the vendor sees as "/".
        const auto keep = path_prefix.back() == '/' ? path_prefix.size() - 1 : path_prefix.size();
        const auto rest = path.substr(keep);
        return rest.empty() ? std::string_view("/") : rest;
    }

    bool path_matches(std::string_view path) const noexcept {
        if (!path_prefix.empty() && !prefix_matches(path, path_prefix)) return false;
        if (!pattern) return true;
        path = pattern_subject(path);
        const auto& segs = pattern->segments;
        const auto end = walk_segments(
            path, segs.size(), [&](std::size_t i, std::string_view seg) { return segs[i].matches(seg); });
        if (end == std::string_view::npos) return false;
        // walk_segments stops at a '/' or at the end, so what remains is whole segments.
        return pattern->rest || end == path.size();
    }

    bool matches(const RequestTarget& target) const noexcept {
        if (!listener_indexes.empty() && std::find(listener_indexes.begin(), listener_indexes.end(),
                                                   target.listener_index) == listener_indexes.end()) {
            return false;
        }
        if (!methods.empty() && std::find(methods.begin(), methods.end(), target.method) == methods.end()) {
            return false;
        }
        return host_matches(target.host) && path_matches(target.path);
    }

    PathParams capture(std::string_view path) const {
        PathParams params;
        if (!pattern) return params;
        path = pattern_subject(path);
        const auto& segs = pattern->segments;
        walk_segments(path, segs.size(), [&](std::size_t i, std::string_view seg) {
            if (segs[i].kind == SegmentMatcher::Kind::capture) params.emplace_back(segs[i].text, seg);
            return true;
        });
        return params;
    }

    std::string upstream_path(std::string_view path) const {
        std::string_view rest = path;
        if (strip_prefix && !path_prefix.empty()) rest.remove_prefix(path_prefix.size());
        std::string out;
        out.reserve(base_path.size() + 1 + rest.size());
        out += base_path;
        // Stripping "/intercom/" from "/intercom/x" leaves "x", and "/intercom" from
        // "/intercom" leaves "": the upstream still needs an origin-form path.
        if (rest.empty() || rest.front() != '/') out += '/';
        out += rest;
        return out;
    }
};

std::optional<std::string_view> find_param(const PathParams& params, std::string_view name) {
    for (const auto& [key, value] : params) {
        if (key == name) return std::string_view(value);
    }
    return std::nullopt;
}

std::string validate_path_pattern(std::string_view pattern) {
    CompiledPattern unused;
    return compile_pattern(pattern, unused);
}

std::string validate_host_pattern(std::string_view host) {
    if (host.empty()) return "empty host";
    for (const unsigned char c : host) {
        if (c <= 0x20 || c == 0x7f || c == '/' || c == '@' || c == '[' || c == ']') {
            return "invalid character in host " + quoted_excerpt(host);
        }
    }
    const auto star = host.find('*');
    if (star == std::string_view::npos) return "";
    if (star != 0 || host.size() < 3 || host[1] != '.' || host.find('*', 1) != std::string_view::npos ||
        host[2] == '.') {
        return "invalid wildcard host " + quoted_excerpt(host) +
               "; expected '*.' followed by a domain (*.example.com)";
    }
    return "";
}

RouteTable::RouteTable(const config::Config& config) {
    routes_.reserve(config.routes.size());
    for (const auto& route : config.routes) {
        auto fail = [&](const std::string& what) {
            throw config::ConfigError(route.location, "route " + quoted_excerpt(route.name) + ": " + what);
        };
        CompiledRoute compiled;
        compiled.listener_indexes = route.listener_indexes;
        for (const auto& host : route.match.hosts) {
            if (auto error = validate_host_pattern(host); !error.empty()) fail(error);
            compiled.any_host = false;
            const auto lower = to_lower(without_trailing_dot(host));
            if (lower.starts_with("*.")) {
                compiled.wildcard_suffixes.push_back(lower.substr(1));
            } else {
                compiled.exact_hosts.push_back(lower);
            }
        }
        compiled.methods = route.match.methods;
        if (!route.match.path_prefix.empty()) {
            if (route.match.path_prefix.front() != '/') {
                fail("path_prefix " + quoted_excerpt(route.match.path_prefix) + " must start with '/'");
            }
            compiled.path_prefix = route.match.path_prefix;
        }
        if (!route.match.path.empty()) {
            CompiledPattern pattern;
            if (auto error = compile_pattern(route.match.path, pattern); !error.empty()) {
                fail("invalid path pattern " + quoted_excerpt(route.match.path) + ": " + error);
            }
            compiled.pattern = std::move(pattern);
        }
        compiled.strip_prefix = route.strip_prefix;
        // The loader guarantees the index; a hand-built config without upstreams
        // (tests) forwards the path unchanged rather than reading out of bounds.
        if (route.upstream_index < config.upstreams.size()) {
            compiled.base_path = config.upstreams[route.upstream_index].base_path;
        }
        routes_.push_back(std::move(compiled));
    }
}

RouteTable::~RouteTable() = default;
RouteTable::RouteTable(RouteTable&&) noexcept = default;
RouteTable& RouteTable::operator=(RouteTable&&) noexcept = default;

std::size_t RouteTable::size() const noexcept {
    return routes_.size();
}

std::optional<RouteMatchResult> RouteTable::match(const RequestTarget& target) const {
    for (std::size_t i = 0; i < routes_.size(); ++i) {
        const auto& route = routes_[i];
        if (!route.matches(target)) continue;
        RouteMatchResult result;
        result.route_index = i;
        result.params = route.capture(target.path);
        result.upstream_path = route.upstream_path(target.path);
        return result;
    }
    return std::nullopt;
}

}  // namespace sluice::route
