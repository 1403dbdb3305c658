// YAML -> validated Config. Every value is read through a Node that knows where it
// was written (file:line:column) and how to name it ("upstream 'intercom' url"), so
// every error a user sees points at the offending text and says what would be accepted.
// All checks happen here, once: what leaves this file is consistent, and the
// request path never re-validates or looks a name up.

#include "sluice/config/loader.hpp"

#include <algorithm>
#include <arpa/inet.h>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/parser.h>
#include <yaml-cpp/yaml.h>

#include "sluice/common/excerpt.hpp"
#include "sluice/common/zoned_days.hpp"
#include "sluice/config/config_printer.hpp"
#include "sluice/config/vendor_policy.hpp"
#include "sluice/route/route_table.hpp"

namespace sluice::config {
namespace {

constexpr Duration kDay = std::chrono::hours(24);

constexpr std::string_view kDurationSyntax = "with a unit (ns, us, ms, s, m, h, d), e.g. 250ms, 10s, 1m30s";
constexpr std::string_view kSizeSyntax =
    "a size: an integer (bytes) or 16k/16KiB, 10m/10MiB, 1g/1GiB (powers of 1024)";
constexpr std::string_view kListenSyntax =
    "an IP address and port, e.g. \"127.0.0.1:8080\" or \"[::1]:8080\" (quoted; port 0 = any free port)";
constexpr std::string_view kNameSyntax = "a name of letters, digits, '.', '_' and '-'";

std::string join(const std::vector<std::string>& items) {
    std::string out;
    for (const auto& item : items) {
        if (!out.empty()) out += ", ";
        out += item;
    }
    return out;
}

// A value from the file as it appears in a message: quoted, escaped and capped
// (common/excerpt.hpp), so that a NUL does not cut the message short and a 10 MB value
// does not become a 10 MB message.
std::string echoed(std::string_view value) {
    return quoted_excerpt(value);
}

SourceLocation location_of(const std::string& file, const YAML::Mark& mark) {
    // yaml-cpp marks are 0-based; a node built without one (null mark) falls back to the top.
    if (mark.is_null() || mark.line < 0) return {file, 1, 1};
    return {file, mark.line + 1, mark.column + 1};
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
    std::vector<std::size_t> row(b.size() + 1);
    for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i) {
        std::size_t diagonal = row[0];
        row[0] = i;
        for (std::size_t j = 1; j <= b.size(); ++j) {
            const std::size_t above = row[j];
            row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
            diagonal = above;
        }
    }
    return row[b.size()];
}

// " (did you mean 'workers'?)" for a near miss, so a typo costs one glance.
std::string suggestion(std::string_view wrong, const std::vector<std::string>& candidates) {
    std::string best;
    std::size_t best_distance = 3;  // at most two edits away
    for (const auto& candidate : candidates) {
        const auto distance = edit_distance(wrong, candidate);
        if (distance < best_distance && distance < candidate.size()) {
            best = candidate;
            best_distance = distance;
        }
    }
    return best.empty() ? "" : " (did you mean " + echoed(best) + "?)";
}

bool valid_name(std::string_view name) {
    if (name.empty()) return false;
    return std::all_of(name.begin(), name.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
               c == '_' || c == '-';
    });
}

// POSIX's portable environment variable names: what a shell can export.
bool is_environment_name(std::string_view text) {
    if (text.empty() || (text[0] >= '0' && text[0] <= '9')) return false;
    return std::all_of(text.begin(), text.end(), [](char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
    });
}

// RFC 9110 section 5.6.2 token: what a method or a header name may be made of.
bool is_http_token(std::string_view text) {
    if (text.empty()) return false;
    return std::all_of(text.begin(), text.end(), [](char c) {
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
        return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
    });
}

bool has_space_or_control(std::string_view text) {
    return std::any_of(text.begin(), text.end(), [](char c) {
        const auto u = static_cast<unsigned char>(c);
        return u <= 0x20 || u == 0x7f;
    });
}

std::string to_lower(std::string text) {
    for (auto& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return text;
}

// The canonical text of an IP literal (so "::1" and "0::1" compare equal), or "" if not one.
std::string canonical_ip(const std::string& text, int* family = nullptr) {
    // inet_pton reads a C string: "127.0.0.1\0junk" would pass as 127.0.0.1.
    if (text.find('\0') != std::string::npos) return "";
    unsigned char buffer[16];
    char out[INET6_ADDRSTRLEN];
    for (const int af : {AF_INET, AF_INET6}) {
        if (inet_pton(af, text.c_str(), buffer) == 1 && inet_ntop(af, buffer, out, sizeof out) != nullptr) {
            if (family != nullptr) *family = af;
            return out;
        }
    }
    return "";
}

bool is_valid_dns_name(std::string_view host) {
    if (host.empty() || host.size() > 253) return false;
    return std::all_of(host.begin(), host.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
               c == '-' || c == '_';
    });
}

std::optional<std::uint16_t> parse_port(std::string_view text) {
    if (text.empty() || text.size() > 5) return std::nullopt;
    unsigned value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size() || value > 65535) return std::nullopt;
    return static_cast<std::uint16_t>(value);
}

// The `{name}` parameters of a (valid) path pattern.
std::vector<std::string> pattern_params(std::string_view pattern) {
    std::vector<std::string> names;
    std::size_t pos = 0;
    while ((pos = pattern.find('{', pos)) != std::string_view::npos) {
        const auto close = pattern.find('}', pos);
        if (close == std::string_view::npos) break;
        names.emplace_back(pattern.substr(pos + 1, close - pos - 1));
        pos = close + 1;
    }
    return names;
}

// Upper bounds of durations (docs/configuration.md, "Durations and sizes"). Generous for any
// real vendor, and small enough that no sum of a bound and a time point overflows 64-bit ns.
constexpr Duration kMaxWindow = std::chrono::hours(24 * 366);  // limit windows: a leap year
constexpr Duration kMaxMargin = std::chrono::hours(24);
constexpr Duration kMaxWait = std::chrono::hours(24);     // queue max_wait
constexpr Duration kMaxTimeout = std::chrono::hours(24);  // client and upstream timeouts
constexpr std::int64_t kMaxStatusKeys = 1000;             // keys per limit on /status
constexpr Duration kMaxPause = std::chrono::hours(24);    // feedback max_pause, default_pause
// The access log's buffer: room for a few long lines at least; at most what a sidecar
// should hold in memory for lines its reader is not taking.
constexpr std::uint64_t kMinAccessLogBufferBytes = 64ull * 1024;
constexpr std::uint64_t kMaxAccessLogBufferBytes = 256ull << 20;

// server.state and server.drain_timeout.
constexpr Duration kMinSaveInterval = std::chrono::milliseconds(100);  // a save costs a full export
constexpr Duration kMaxSaveInterval = std::chrono::hours(1);
constexpr Duration kMaxRedisTimeout = std::chrono::minutes(1);       // a command that takes longer is dead
constexpr Duration kMinRedisLease = std::chrono::milliseconds(300);  // renewed every lease/3: ~100 ms apart
constexpr Duration kMaxDrainTimeout = std::chrono::minutes(10);

constexpr std::uint64_t kMaxHeaderBytes = std::uint64_t{64} * 1024;
// A policy cap on streamed bodies: beyond 1 TiB a value is a typo, not a policy.
constexpr std::uint64_t kMaxBodyBytes = 1ull << 40;
// Buffered bodies are held in memory per connection: 16 MiB keeps 10,000 connections' worst case
// a deliberate choice, not an accident.
constexpr std::uint64_t kMaxBufferedBodyBytes = 16ull << 20;

// "366d", "1d", "10m": a bound as the user would write it.
std::string describe_bound(Duration bound) {
    return format_duration(bound);
}

// ---------------------------------------------------------------------------

enum class Sign { positive, non_negative, any };

// Where the nodes of an expanded preset came from. A `vendors:` entry merges the user's
// overrides into the preset's YAML tree, so one tree holds nodes of two files; yaml-cpp marks
// carry line and column but no file. Each node read from a preset is tagged
// "!sluice-origin/N" (a tag sluice itself never reads otherwise), and N indexes this table.
// Nodes sluice synthesizes (a route's mount prefix) have no mark: their origin gives the place
// to show instead. Set for the duration of one load (Loader::load), on the loading thread.
struct NodeOrigin {
    std::string file;
    std::optional<SourceLocation> fixed;  // for synthesized nodes: the place that asked for them
};
thread_local const std::vector<NodeOrigin>* t_node_origins = nullptr;
// The file being loaded: an untagged node is the user's, even under a preset's map (an override).
thread_local const std::string* t_config_file = nullptr;
constexpr std::string_view kOriginTag = "!sluice-origin/";

const NodeOrigin* origin_of(const YAML::Node& yaml) {
    if (t_node_origins == nullptr || !yaml.IsDefined()) return nullptr;
    const auto& tag = yaml.Tag();
    if (!std::string_view(tag).starts_with(kOriginTag)) return nullptr;
    std::size_t index = 0;
    const auto digits = std::string_view(tag).substr(kOriginTag.size());
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), index);
    if (ec != std::errc() || index >= t_node_origins->size()) return nullptr;
    return &(*t_node_origins)[index];
}

// One YAML value, where it was written, and its name in messages.
class Node {
public:
    Node(const std::string& file, const YAML::Node& yaml, YAML::Mark mark, std::string path)
        : file_(&file), yaml_(yaml), mark_(mark), path_(std::move(path)) {}

    const std::string& path() const { return path_; }
    SourceLocation where() const {
        if (const auto* origin = origin_of(yaml_)) {
            if (origin->fixed && (mark_.is_null() || mark_.line < 0)) return *origin->fixed;
            return location_of(origin->file, mark_);
        }
        return location_of(t_config_file != nullptr ? *t_config_file : *file_, mark_);
    }
    int line() const { return where().line; }

    // The same value under another name: "upstreams.intercom" reads better as "upstream 'intercom'".
    Node renamed(std::string path) const { return Node(*file_, yaml_, mark_, std::move(path)); }

    std::string child_path(std::string_view key) const {
        if (path_.empty()) return std::string(key);
        return path_ + (path_.back() == '\'' ? " " : ".") + std::string(key);
    }

    // Another YAML node under this one's name (a map's key, in errors about the map).
    Node at(const YAML::Node& yaml, YAML::Mark mark) const { return Node(*file_, yaml, mark, path_); }

    Node child(const YAML::Node& yaml, YAML::Mark mark, std::string_view key) const {
        return Node(*file_, yaml, mark, child_path(key));
    }

    [[noreturn]] void fail(const std::string& what, std::string_view expected) const {
        std::string message = path_.empty() ? what : path_ + ": " + what;
        if (!expected.empty()) message += "; expected " + std::string(expected);
        throw ConfigError(where(), message);
    }

    // For a reason that may already carry its own "; expected ..." (the route module's checks).
    [[noreturn]] void fail_reason(const std::string& what, std::string_view expected) const {
        if (what.find("; expected ") != std::string::npos) fail(what, "");
        fail(what, expected);
    }

    [[noreturn]] void fail_expected(std::string_view expected) const { fail("got " + describe(), expected); }

    std::string describe() const {
        if (is_null()) return "no value";
        if (yaml_.IsMap()) return "a map";
        if (yaml_.IsSequence()) return "a list";
        return echoed(yaml_.Scalar());
    }

    bool is_null() const { return !yaml_.IsDefined() || yaml_.IsNull(); }
    bool is_map() const { return yaml_.IsMap(); }
    bool is_list() const { return yaml_.IsSequence(); }
    bool is_scalar() const { return yaml_.IsScalar(); }

    std::string text(std::string_view expected) const {
        if (!is_scalar()) fail_expected(expected);
        return yaml_.Scalar();
    }

    std::string string(std::string_view expected = "a non-empty string") const {
        auto value = text(expected);
        if (value.empty()) fail_expected(expected);
        return value;
    }

    std::string name(std::string_view kind) const {
        const auto expected = std::string(kind) + " name: " + std::string(kNameSyntax);
        auto value = text(expected);
        if (!valid_name(value)) fail_expected(expected);
        return value;
    }

    std::int64_t integer(std::int64_t min,
                         std::int64_t max = std::numeric_limits<std::int64_t>::max()) const {
        std::string expected = "an integer";
        if (max != std::numeric_limits<std::int64_t>::max()) {
            expected += " from " + std::to_string(min) + " to " + std::to_string(max);
        } else if (min != std::numeric_limits<std::int64_t>::min()) {
            expected += " >= " + std::to_string(min);
        }
        const auto value_text = text(expected);
        std::int64_t value = 0;
        const char* first = value_text.data();
        const char* last = first + value_text.size();
        const auto [end, ec] = std::from_chars(first, last, value);
        if (value_text.empty() || ec != std::errc() || end != last) fail_expected(expected);
        if (value < min || value > max) fail(std::to_string(value) + " is out of range", expected);
        return value;
    }

    bool boolean() const {
        const auto value = text("true or false");
        if (value == "true" || value == "True" || value == "TRUE") return true;
        if (value == "false" || value == "False" || value == "FALSE") return false;
        fail_expected("true or false");
    }

    // `max` bounds every duration at load, so that adding one to a time point (now + max_wait,
    // window + margin) can never overflow on the request path, which then needs no checks.
    Duration duration(Sign sign, Duration max) const {
        const std::string expected = std::string(sign == Sign::positive       ? "a positive duration "
                                                 : sign == Sign::non_negative ? "a duration >= 0 "
                                                                              : "a duration ") +
                                     std::string(kDurationSyntax);
        const auto value_text = text(expected);
        const auto value = parse_duration(value_text, true);
        if (!value) {
            const auto quoted = echoed(value_text);
            if (!value_text.empty() && value_text.find_first_not_of("+-0123456789") == std::string::npos) {
                fail(quoted + " has no unit", expected);
            }
            if (value_text.find(' ') != std::string::npos) fail(quoted + " contains a space", expected);
            if (value_text.find('.') != std::string::npos) {
                fail(quoted + " has a fraction", expected + " (integers only: 1500ms rather than 1.5s)");
            }
            fail(quoted + " is not a duration", expected);
        }
        if (sign != Sign::any && *value < Duration::zero())
            fail(echoed(value_text) + " is negative", expected);
        if (sign == Sign::positive && *value == Duration::zero())
            fail(echoed(value_text) + " is zero", expected);
        if (*value > max || *value < -max) {
            fail(echoed(value_text) + " is longer than " + describe_bound(max),
                 expected + ", at most " + describe_bound(max));
        }
        return *value;
    }

    std::uint64_t size(std::uint64_t min, std::uint64_t max) const {
        const auto value_text = text(kSizeSyntax);
        const auto value = parse_size(value_text);
        if (!value) fail(echoed(value_text) + " is not a size", kSizeSyntax);
        if (*value < min || *value > max) {
            fail(echoed(value_text) + " is out of range",
                 "a size from " + std::to_string(min) + " to " + std::to_string(max) + " bytes");
        }
        return *value;
    }

    // A list; where `scalar_ok`, one scalar stands for a one-item list ("methods: GET").
    // No value counts as an empty list.
    std::vector<Node> items(std::string_view expected, bool scalar_ok = false) const {
        std::vector<Node> out;
        if (is_null()) return out;
        if (is_scalar() && scalar_ok) {
            out.push_back(*this);
            return out;
        }
        if (!is_list()) fail_expected(expected);
        std::size_t index = 0;
        for (const auto& item : yaml_) {
            ++index;
            out.emplace_back(*file_, item, item.Mark(), path_ + "[" + std::to_string(index) + "]");
        }
        return out;
    }

    const YAML::Node& yaml() const { return yaml_; }

private:
    const std::string* file_;
    YAML::Node yaml_;
    YAML::Mark mark_;
    std::string path_;
};

struct Entry {
    std::string key;
    Node key_node;
    Node value;
};

// A YAML map read once: keys checked against what is allowed, duplicates refused
// (yaml-cpp keeps both copies of a repeated key, and silently using one would hide a mistake).
class Map {
public:
    // `allowed` empty: any key (a map from names to definitions, e.g. `upstreams`).
    Map(const Node& node, std::vector<std::string> allowed, std::string_view noun = "key") : node_(node) {
        const auto expected = allowed.empty() ? std::string("a map") : "a map with keys " + join(allowed);
        if (node.is_null()) return;
        if (!node.is_map()) node.fail_expected(expected);
        for (auto it = node.yaml().begin(); it != node.yaml().end(); ++it) {
            // Errors about the key itself name the map it is in ("unknown key 'x' in server").
            const Node key_at = node.at(it->first, it->first.Mark());
            if (!it->first.IsScalar()) key_at.fail_expected("a plain key");
            const std::string key = it->first.Scalar();
            // A key with no value has no mark of its own worth showing: point at the key.
            const auto value_mark = it->second.IsNull() ? it->first.Mark() : it->second.Mark();
            Node value = node.child(it->second, value_mark, key);
            if (!allowed.empty() && std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
                key_at.fail("unknown key " + echoed(key) + suggestion(key, allowed),
                            "one of " + join(allowed));
            }
            // Indexed, not scanned: a map from names (upstreams, limits) may hold thousands of entries.
            const auto [first, inserted] = index_.try_emplace(key, entries_.size());
            if (!inserted) {
                key_at.fail("duplicate " + std::string(noun) + " " + echoed(key) + " (first at line " +
                                std::to_string(entries_[first->second].key_node.line()) + ")",
                            "each " + std::string(noun) + " once");
            }
            entries_.push_back({key, key_at, std::move(value)});
        }
    }

    const Node& node() const { return node_; }
    const std::vector<Entry>& entries() const { return entries_; }

    const Entry* find(std::string_view key) const {
        const auto found = index_.find(std::string(key));
        return found == index_.end() ? nullptr : &entries_[found->second];
    }

    std::optional<Node> get(std::string_view key) const {
        if (const auto* entry = find(key)) return entry->value;
        return std::nullopt;
    }

    Node require(std::string_view key, std::string_view expected) const {
        if (const auto* entry = find(key)) return entry->value;
        node_.fail("missing " + echoed(key), expected);
    }

private:
    Node node_;
    std::vector<Entry> entries_;
    std::unordered_map<std::string, std::size_t> index_;  // key -> position in entries_
};

struct Endpoint {
    std::string address;  // canonical IP literal, IPv6 without brackets
    std::uint16_t port = 0;
    int family = 0;
};

// A socket sluice will bind, for the conflict check: `node` is absent for a default.
struct Binding {
    Endpoint endpoint;
    std::optional<Node> node;
    std::string owner;  // "listener 'default'", "the admin listener"
};

Endpoint parse_listen(const Node& node) {
    const auto text = node.text(kListenSyntax);
    std::string host;
    std::string port_text;
    if (!text.empty() && text.front() == '[') {
        const auto close = text.find(']');
        if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') {
            node.fail(echoed(text) + " is not host:port", kListenSyntax);
        }
        host = text.substr(1, close - 1);
        port_text = text.substr(close + 2);
    } else {
        const auto colon = text.rfind(':');
        if (colon == std::string::npos) node.fail(echoed(text) + " has no port", kListenSyntax);
        host = text.substr(0, colon);
        port_text = text.substr(colon + 1);
        if (host.find(':') != std::string::npos) {
            node.fail(echoed(text) + ": an IPv6 address needs brackets", kListenSyntax);
        }
    }
    Endpoint endpoint;
    // Only IP literals: binding happens before any DNS would be wanted, and a name like
    // "localhost" may resolve to several addresses.
    endpoint.address = canonical_ip(host, &endpoint.family);
    if (endpoint.address.empty()) node.fail(echoed(host) + " is not an IP address", kListenSyntax);
    const auto port = parse_port(port_text);
    if (!port) node.fail(echoed(port_text) + " is not a port (0-65535)", kListenSyntax);
    endpoint.port = *port;
    return endpoint;
}

bool is_wildcard(const Endpoint& endpoint) {
    return endpoint.address == "0.0.0.0" || endpoint.address == "::";
}

// ---------------------------------------------------------------------------

const std::vector<std::string> kTopKeys{"server", "listeners", "upstreams",   "limits",    "queue",
                                        "routes", "vendors",   "presets_dir", "priorities"};
const std::vector<std::string> kVendorKeys{"preset",   "path_prefix", "listeners", "hosts", "tier",
                                           "upstream", "upstreams",   "limits",    "queue", "retry"};
const std::vector<std::string> kPresetKeys{"upstream", "upstreams", "limits",
                                           "routes",   "tiers",     "vendor_policy"};
const std::vector<std::string> kPresetRouteKeys{"name", "match", "upstream", "limits", "queue", "retry"};
const std::vector<std::string> kPresetMatchKeys{"methods", "path"};
const std::vector<std::string> kPresetTierKeys{"limits"};
const std::vector<std::string> kServerKeys{"workers",
                                           "max_header_bytes",
                                           "max_body_bytes",
                                           "max_buffered_body_bytes",
                                           "max_client_connections",
                                           "timeouts",
                                           "forwarded",
                                           "rate_limit_headers",
                                           "admin",
                                           "access_log",
                                           "state",
                                           "drain_timeout"};
const std::vector<std::string> kTimeoutKeys{"client_header", "client_body", "client_body_total",
                                            "client_idle", "client_write"};
const std::vector<std::string> kForwardedKeys{"x_forwarded_for", "x_forwarded_proto"};
const std::vector<std::string> kRateLimitHeaderKeys{"style", "on_proxied"};
const std::vector<std::string> kAdminKeys{"enabled",   "listen",      "token_file",
                                          "token_env", "status_keys", "limits_top_keys"};
const std::vector<std::string> kAccessLogKeys{"enabled", "path", "log_query", "buffer_bytes"};
const std::vector<std::string> kStateKeys{"backend", "redis",         "enabled",
                                          "dir",     "save_interval", "min_window"};
const std::vector<std::string> kRedisKeys{"address",         "db",       "username",   "password_file",
                                          "password_env",    "tls",      "key_prefix", "connect_timeout",
                                          "command_timeout", "replicas", "lease"};
const std::vector<std::string> kRedisTlsKeys{"enabled", "ca_file", "server_name", "verify"};
const std::vector<std::string> kListenerKeys{"name", "listen"};
const std::vector<std::string> kUpstreamKeys{"url",
                                             "tls",
                                             "max_connections",
                                             "max_idle_connections",
                                             "max_streamed_bodies",
                                             "idle_timeout",
                                             "connect_timeout",
                                             "response_timeout",
                                             "body_timeout",
                                             "feedback"};
const std::vector<std::string> kFeedbackKeys{
    "enabled",    "pause_on_429",    "cap_from_remaining", "learn",     "reset_mode",
    "body_field", "body_field_mode", "limit_type_field",   "max_pause", "default_pause"};
const std::vector<std::string> kLimitFeedbackKeys{"vendor_limit", "vendor_limit_type"};
const std::vector<std::string> kRetryKeys{"on_vendor_429", "non_idempotent", "max_attempts"};
const std::vector<std::string> kTlsKeys{"verify", "ca_file", "server_name"};
const std::vector<std::string> kLimitKeys{
    "algorithm", "limit", "window",  "rate",     "burst",    "utc_offset",       "time_zone", "margin",
    "key",       "cost",  "enforce", "max_keys", "feedback", "on_redis_failure", "classes",   "fair_share"};
const std::vector<std::string> kPrioritiesKeys{"classes", "default", "aging"};
const std::vector<std::string> kClassShareKeys{"max_share", "reserve"};
const std::vector<std::string> kFairShareKeys{"caller", "weights", "default_weight"};
const std::vector<std::string> kKeySourceKeys{"header", "query", "path_param", "group_by"};
const std::vector<std::string> kGroupByKeys{"file", "groups", "unmapped"};
const std::vector<std::string> kCostKeys{"header", "default", "max", "body", "settle"};
const std::vector<std::string> kBodyCostKeys{"array_length", "number", "max_bytes"};
const std::vector<std::string> kSettleKeys{"header", "body"};
const std::vector<std::string> kQueueKeys{"max_depth", "max_wait"};
const std::vector<std::string> kRouteKeys{"name",   "match", "strip_prefix", "upstream",
                                          "limits", "queue", "retry",        "priority"};
const std::vector<std::string> kMatchKeys{"listener", "host", "methods", "path_prefix", "path"};

// Indexed by config::Algorithm: keep the order of the enum.
const std::vector<std::string> kAlgorithmNames{"token_bucket", "sliding_window", "fixed_window",
                                               "concurrency"};

// Which limit keys each algorithm uses, and why a misplaced one is refused (rather than
// ignored: a `window` on a concurrency limit means the author expected something that
// will not happen).
std::vector<std::string> limit_keys_for(Algorithm algorithm) {
    std::vector<std::string> keys{"algorithm", "limit"};
    switch (algorithm) {
        case Algorithm::token_bucket: keys.insert(keys.end(), {"rate", "window", "burst", "margin"}); break;
        case Algorithm::sliding_window: keys.insert(keys.end(), {"window", "margin"}); break;
        case Algorithm::fixed_window:
            keys.insert(keys.end(), {"window", "utc_offset", "time_zone", "margin"});
            break;
        case Algorithm::concurrency:
        case Algorithm::vendor_gate: break;  // not selectable in YAML (not in kAlgorithmNames)
    }
    keys.insert(keys.end(), {"key", "cost", "enforce", "max_keys", "feedback", "on_redis_failure", "classes",
                             "fair_share"});
    return keys;
}

std::string why_not_applicable(std::string_view key, Algorithm algorithm) {
    if (algorithm == Algorithm::concurrency && (key == "window" || key == "margin")) {
        return "a concurrency limit caps requests in flight and has no time window";
    }
    if (key == "rate") return "rate is the token_bucket shorthand for limit/window";
    if (key == "burst") return "burst is the bucket size of a token_bucket";
    if (key == "utc_offset") return "utc_offset shifts the calendar periods of a fixed_window";
    if (key == "time_zone") return "time_zone sets the calendar day of a fixed_window";
    return "it is not used by this algorithm";
}

// ---------------------------------------------------------------------------

// Whether `text` provably holds `document` and nothing after it: what follows the start of the
// document's last node (in text order) is that node's own text, the brackets closing the flow
// collections around it, blanks and comments. A fast, conservative check (no second scan of the
// file); anything it does not recognise (a block scalar, an anchor, a trailing ',', '---', a
// multi-line plain scalar) is left to check_single_document.
bool ends_after_last_node(const YAML::Node& document, std::string_view text) {
    // Another encoding or a byte order mark: marks may not be byte offsets.
    if (text.size() >= 2 &&
        (text[0] == '\0' || text[1] == '\0' || static_cast<unsigned char>(text[0]) >= 0xfe ||
         static_cast<unsigned char>(text[0]) == 0xef)) {
        return false;
    }
    // Down the last entry of each collection, collecting the closing bracket of each flow one.
    // YAML::Node's operator= writes through to the node it refers to: reset() rebinds.
    YAML::Node node;
    node.reset(document);
    std::string closers;  // innermost last
    while (node.IsDefined() && (node.IsMap() || node.IsSequence()) && node.size() > 0) {
        const YAML::Node& parent = node;
        YAML::Node last;
        if (parent.IsSequence()) {
            last.reset(parent[parent.size() - 1]);
        } else {
            for (const auto& entry : parent) last.reset(entry.second);
        }
        // A child starts after its parent; an alias to an enclosing node (`&a [*a]`) does not.
        if (!last.IsDefined() || last.Mark().pos <= parent.Mark().pos) return false;
        if (parent.Style() == YAML::EmitterStyle::Flow) closers += parent.IsSequence() ? ']' : '}';
        node.reset(last);
    }
    const auto mark = node.Mark();
    if (mark.is_null() || mark.pos < 0 || static_cast<std::size_t>(mark.pos) > text.size()) return false;
    std::string_view rest = text.substr(static_cast<std::size_t>(mark.pos));
    const bool in_flow = !closers.empty();
    // The last node itself: an empty flow collection, a quoted or a one-line plain scalar.
    if (node.IsMap() || node.IsSequence()) {
        if (node.Style() != YAML::EmitterStyle::Flow) return false;
        closers += node.IsSequence() ? ']' : '}';
        if (rest.empty() || rest.front() != (node.IsSequence() ? '[' : '{')) return false;
        rest.remove_prefix(1);
    } else if (node.IsScalar() && !rest.empty() && (rest.front() == '"' || rest.front() == '\'')) {
        const char quote = rest.front();
        std::size_t i = 1;
        while (true) {
            if (i >= rest.size()) return false;
            if (quote == '"' && rest[i] == '\\') {
                i += 2;
                continue;
            }
            if (rest[i] == quote) {
                if (quote == '\'' && i + 1 < rest.size() && rest[i + 1] == '\'') {  // '' is a quote
                    i += 2;
                    continue;
                }
                break;
            }
            ++i;
        }
        rest.remove_prefix(i + 1);
    } else if (node.IsScalar()) {
        if (rest.empty() ||
            std::string_view("&!*|>%@`#,[]{}'\" \t\r\n").find(rest.front()) != std::string_view::npos) {
            return false;
        }
        std::size_t i = 0;
        while (i < rest.size()) {
            const char c = rest[i];
            if (c == '\n' || c == '\r') break;
            if (in_flow && std::string_view(",[]{}").find(c) != std::string_view::npos) break;
            if ((c == ' ' || c == '\t') && i + 1 < rest.size() && rest[i + 1] == '#') break;
            if (c == ':' && (i + 1 == rest.size() || rest[i + 1] == ' ' || rest[i + 1] == '\t' ||
                             rest[i + 1] == '\n' || rest[i + 1] == '\r')) {
                break;
            }
            ++i;
        }
        rest.remove_prefix(i);
    } else {
        return false;  // a null: its mark is wherever the parser stood
    }
    // Then only the closing brackets, in order, blanks and comments.
    std::size_t expected = closers.size();
    bool after_blank = true;
    while (!rest.empty()) {
        const char c = rest.front();
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
            after_blank = true;
            rest.remove_prefix(1);
        } else if (c == '#' && after_blank) {
            const auto end = rest.find('\n');
            rest.remove_prefix(end == std::string_view::npos ? rest.size() : end);
        } else if (expected > 0 && c == closers[expected - 1]) {
            --expected;
            after_blank = false;
            rest.remove_prefix(1);
        } else {
            return false;
        }
    }
    return expected == 0;
}

// Counts documents and remembers where the second one's first node is, for
// check_single_document; builds nothing.
class DocumentCounter final : public YAML::EventHandler {
public:
    std::size_t documents = 0;
    std::optional<YAML::Mark> start;       // where the latest document began ('---' or its node)
    std::optional<YAML::Mark> first_node;  // the latest document's first node

    void OnDocumentStart(const YAML::Mark& mark) override {
        ++documents;
        start = mark;
        first_node.reset();
    }
    void OnDocumentEnd() override {}
    void OnNull(const YAML::Mark& mark, YAML::anchor_t) override { node(mark); }
    void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override { node(mark); }
    void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t, const std::string&) override {
        node(mark);
    }
    void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                         YAML::EmitterStyle::value) override {
        node(mark);
    }
    void OnSequenceEnd() override {}
    void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                    YAML::EmitterStyle::value) override {
        node(mark);
    }
    void OnMapEnd() override {}

private:
    void node(const YAML::Mark& mark) {
        if (!first_node) first_node = mark;
    }
};

// Tags every node of a preset's tree (keys too) with its origin (see NodeOrigin). Returns false
// for a tree deeper than any preset needs: an alias to an enclosing node (`&a [*a]`) makes the
// tree infinite, and walking it would never end.
bool tag_origin(YAML::Node node, const std::string& tag, int depth = 0) {
    if (depth > 32) return false;
    node.SetTag(tag);
    if (node.IsMap()) {
        for (auto it = node.begin(); it != node.end(); ++it) {
            YAML::Node key = it->first;
            key.SetTag(tag);
            if (!tag_origin(it->second, tag, depth + 1)) return false;
        }
    } else if (node.IsSequence()) {
        for (auto item : node) {
            if (!tag_origin(item, tag, depth + 1)) return false;
        }
    }
    return true;
}

// The value under `key` in a map node, as the node stored in the map (assigning to it changes
// the map), or an undefined node.
YAML::Node map_value(YAML::Node map, std::string_view key) {
    if (!map.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
    for (auto it = map.begin(); it != map.end(); ++it) {
        if (it->first.IsScalar() && it->first.Scalar() == key) return it->second;
    }
    return YAML::Node(YAML::NodeType::Undefined);
}

void erase_key(YAML::Node map, std::string_view key) {
    if (map.IsMap()) map.remove(std::string(key));
}

// The merge rule of `vendors:` (docs/configuration.md): the override's keys are merged into
// `base` in place; where both values are maps they merge the same way, key by key; anything
// else (a scalar, a list, a map over a scalar) replaces the preset's value whole. The
// override's nodes keep their marks, so an error in one points at the user's file.
void merge_into(YAML::Node base, const YAML::Node& override_node) {
    for (auto it = override_node.begin(); it != override_node.end(); ++it) {
        YAML::Node existing = map_value(base, it->first.Scalar());
        if (existing.IsDefined() && existing.IsMap() && it->second.IsMap()) {
            merge_into(existing, it->second);
        } else if (existing.IsDefined()) {
            existing = it->second;  // set_ref: the map now holds the override's node
        } else {
            base.force_insert(it->first, it->second);
        }
    }
}

std::string read_text_file(const std::string& path, const SourceLocation& asked_at, const std::string& what) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        throw ConfigError(asked_at, "cannot read " + what + " " + echoed(path) + ": " + std::strerror(errno) +
                                        "; expected a readable YAML file");
    }
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

// The folder of a config file ("" for "<string>" and bare names: the current directory).
std::filesystem::path folder_of(const std::string& config_file) {
    if (config_file.empty() || config_file.front() == '<') return {};
    return std::filesystem::path(config_file).parent_path();
}

// A `vendors:` entry after expansion: the preset's definitions with the overrides merged in,
// named after the instance, ready for the ordinary readers (read_upstream, read_limit,
// read_route), so they are validated exactly like hand-written ones.
struct ExpandedVendor {
    VendorInstance instance;
    Node entry_node;      // the instance's key under `vendors:` (the user's file)
    std::string context;  // appended to errors from its definitions: both files
    std::vector<Entry> upstreams;
    std::vector<Entry> limits;
    std::vector<Node> routes;
};

#ifndef SLUICE_PRESETS_DIR
#define SLUICE_PRESETS_DIR "/usr/local/share/sluice/presets"
#endif

class Loader {
public:
    Loader(std::string file, LoadOptions options) : file_(std::move(file)), options_(std::move(options)) {}

    std::shared_ptr<const Config> load(const std::string& yaml_text) {
        // Node::where() reads the origins of preset nodes from here during this load.
        struct OriginScope {
            OriginScope(const std::vector<NodeOrigin>* origins, const std::string* file)
                : previous(t_node_origins), previous_file(t_config_file) {
                t_node_origins = origins;
                t_config_file = file;
            }
            ~OriginScope() {
                t_node_origins = previous;
                t_config_file = previous_file;
            }
            const std::vector<NodeOrigin>* previous;
            const std::string* previous_file;
        } scope(&origins_, &file_);
        return load_document(yaml_text);
    }

private:
    std::shared_ptr<const Config> load_document(const std::string& yaml_text) {
        YAML::Node document;
        try {
            document = YAML::Load(yaml_text);  // the first document only, whatever follows it
            if (!ends_after_last_node(document, yaml_text)) check_single_document(yaml_text);
        } catch (const YAML::Exception& e) {
            throw ConfigError(location_of(file_, e.mark),
                              "invalid YAML: " + e.msg +
                                  "; expected well-formed YAML (check indentation, quoting and brackets)");
        }
        if (document.IsNull()) {
            throw ConfigError(
                {file_, 1, 1},
                "the configuration is empty; expected a map with at least 'upstreams' and 'routes'");
        }
        const Node root(file_, document, document.Mark(), "");
        if (!root.is_map()) root.fail_expected("a map with keys " + join(kTopKeys));
        const Map top(root, kTopKeys);

        config_->source_file = file_;
        read_server(top.get("server"));
        resolve_state_dir();
        read_listeners(top.get("listeners"));
        if (const auto v = top.get("priorities"); v && !v->is_null()) read_priorities(*v);
        if (const auto v = top.get("vendors")) expand_vendors(*v, top.get("presets_dir"));
        read_upstreams(top);
        read_limits(top.get("limits"));
        read_vendor_limits();
        derive_class_limits();
        if (const auto queue = top.get("queue")) config_->queue_defaults = read_queue(*queue, QueueConfig{});
        read_routes(top);
        apply_time_scale();
        return config_;
    }

    // A file holds one YAML document. When ends_after_last_node cannot tell, this checks it with
    // yaml-cpp's Parser, one document at a time and stopping at the second, instead of
    // YAML::LoadAll: yaml-cpp 0.7 cannot consume a ',' at the top level, outside any [ ] or { }
    // (`&a, []`, `[a], b`, `- a\n,`): each call returns one more empty document without moving
    // past it, so LoadAll loops forever while its vector of documents grows, and sluice would
    // hang at start. Here that ',' begins the second document and is reported where it stands.
    void check_single_document(const std::string& yaml_text) const {
        std::istringstream in(yaml_text);
        YAML::Parser parser(in);
        DocumentCounter counter;
        while (counter.documents < 2 && parser.HandleNextDocument(counter)) {
        }
        if (counter.documents < 2) return;
        const YAML::Mark at = counter.first_node.value_or(counter.start.value_or(YAML::Mark::null_mark()));
        const auto begins = [&](const YAML::Mark& mark) -> std::string_view {
            if (mark.pos < 0 || static_cast<std::size_t>(mark.pos) >= yaml_text.size()) return {};
            return std::string_view(yaml_text).substr(static_cast<std::size_t>(mark.pos));
        };
        if (!begins(counter.start.value_or(YAML::Mark::null_mark())).starts_with(",")) {
            throw ConfigError(location_of(file_, at),
                              "a second YAML document; expected one document (no '---' separators between)");
        }
        throw ConfigError(location_of(file_, at),
                          "invalid YAML: ',' after the top-level value; expected one value (',' separates "
                          "entries only inside [ ] or { })");
    }

    // ---- vendors (presets) -----------------------------------------------------
    // An error in a preset's definition names the user's `vendors:` entry too, and an error in
    // an override names the preset's definition: the message says where both are.
    template <typename Read>
    void with_context(const ExpandedVendor& vendor, const Node& definition, Read&& read) {
        try {
            read();
        } catch (const ConfigError& e) {
            const auto& where = e.where();
            const std::string prefix =
                where.file + ":" + std::to_string(where.line) + ":" + std::to_string(where.column) + ": ";
            std::string message = e.what();
            if (message.starts_with(prefix)) message.erase(0, prefix.size());
            const auto defined = definition.where();
            throw ConfigError(where, message + " (" + vendor.context + "; the preset's definition is at " +
                                         defined.file + ":" + std::to_string(defined.line) + ":" +
                                         std::to_string(defined.column) + ")");
        }
    }

    std::string origin_tag(NodeOrigin origin) {
        origins_.push_back(std::move(origin));
        return std::string(kOriginTag) + std::to_string(origins_.size() - 1);
    }

    const std::string& keep_file_name(std::string name) {
        return preset_files_.emplace_back(std::move(name));
    }

    void expand_vendors(const Node& node, const std::optional<Node>& presets_dir) {
        std::string presets_dir_key;
        if (presets_dir) presets_dir_key = presets_dir->string("a folder holding presets (NAME.yaml)");
        const auto search = preset_search_path(file_, presets_dir_key, options_);
        const Map vendors(node, {}, "vendor instance");
        for (const auto& entry : vendors.entries()) expanded_.push_back(expand_vendor(entry, search));
    }

    ExpandedVendor expand_vendor(const Entry& entry, const std::vector<std::string>& search) {
        const auto instance_name = entry.key_node.name("a vendor instance");
        const Node node = entry.value.renamed("vendor " + echoed(instance_name));
        const Map fields(node, kVendorKeys);
        const auto preset_node = fields.require("preset", "the preset to use, e.g. preset: intercom");
        const auto preset_name = preset_node.name("a preset");

        // Where the preset is: the first folder of the search path holding NAME.yaml.
        std::string preset_path;
        for (const auto& folder : search) {
            std::error_code ec;
            const auto candidate = std::filesystem::path(folder) / (preset_name + ".yaml");
            if (std::filesystem::is_regular_file(candidate, ec)) {
                preset_path = candidate.string();
                break;
            }
        }
        if (preset_path.empty()) {
            const auto names = available_presets(search);
            preset_node.fail(
                "unknown preset " + echoed(preset_name) + suggestion(preset_name, names),
                (names.empty() ? std::string("a preset file NAME.yaml") : "one of " + join(names)) + " in " +
                    join(search));
        }
        const auto& preset_file = keep_file_name(preset_path);
        const auto text = read_text_file(preset_file, preset_node.where(), "preset");
        YAML::Node document;
        try {
            document = YAML::Load(text);
        } catch (const YAML::Exception& e) {
            throw ConfigError(location_of(preset_file, e.mark), "invalid YAML in preset " +
                                                                    echoed(preset_name) + ": " + e.msg +
                                                                    "; expected well-formed YAML");
        }
        if (!tag_origin(document, origin_tag({preset_file, std::nullopt}))) {
            throw ConfigError({preset_file, 1, 1}, "preset " + echoed(preset_name) +
                                                       " is nested more than 32 levels deep (an alias to an "
                                                       "enclosing node?); expected a preset as documented");
        }
        preset_documents_.push_back(document);

        ExpandedVendor vendor{VendorInstance{}, entry.key_node, "", {}, {}, {}};
        const auto at = entry.key_node.where();
        vendor.context = "vendors." + instance_name + " at " + at.file + ":" + std::to_string(at.line) + ":" +
                         std::to_string(at.column) + " uses preset " + echoed(preset_name) + " from " +
                         preset_file;
        auto& instance = vendor.instance;
        instance.name = instance_name;
        instance.preset = preset_name;
        instance.preset_file = preset_file;
        instance.location = entry.key_node.where();

        const Node root(preset_file, document, document.Mark(), "preset " + echoed(preset_name));
        if (!root.is_map()) root.fail_expected("a preset: a map with keys " + join(kPresetKeys));
        const Map preset(root, kPresetKeys);

        // The policy first: the tier names are its.
        if (preset.get("vendor_policy")) {
            instance.policy = std::make_shared<VendorPolicy>(parse_vendor_policy(text, preset_file));
        }
        std::vector<std::string> tier_names;
        if (instance.policy) tier_names = instance.policy->tiers;
        const auto preset_tiers = preset.get("tiers");
        if (preset_tiers) {
            const Map tiers(*preset_tiers, {}, "tier");
            for (const auto& tier : tiers.entries()) {
                if (std::find(tier_names.begin(), tier_names.end(), tier.key) == tier_names.end()) {
                    tier.key_node.fail("tier " + echoed(tier.key) + " is not in vendor_policy.tiers",
                                       tier_names.empty() ? std::string("a vendor_policy with tiers: [...]")
                                                          : "one of " + join(tier_names));
                }
            }
        }
        if (const auto v = fields.get("tier")) {
            instance.tier = v->name("a tier");
            if (std::find(tier_names.begin(), tier_names.end(), instance.tier) == tier_names.end()) {
                v->fail("unknown tier " + echoed(instance.tier) + " for preset " + echoed(preset_name) +
                            suggestion(instance.tier, tier_names),
                        tier_names.empty() ? std::string("no tier (this preset has none)")
                                           : "one of " + join(tier_names));
            }
        } else if (!tier_names.empty()) {
            instance.tier = tier_names.front();
        }

        with_context(vendor, preset.node(), [&] {
            expand_upstreams(vendor, preset, fields);
            expand_limits(vendor, preset, fields, preset_tiers);
            expand_routes(vendor, preset, fields);
        });
        return vendor;
    }

    // `upstream:` (one, named after the instance) or `upstreams:` (several, "<instance>.<name>").
    void expand_upstreams(ExpandedVendor& vendor, const Map& preset, const Map& fields) {
        const auto& name = vendor.instance.name;
        const auto single = preset.get("upstream");
        const auto several = preset.get("upstreams");
        if (single.has_value() == several.has_value()) {
            preset.node().fail(single ? "both 'upstream' and 'upstreams'" : "no upstream",
                               "either upstream: {url: ...} or upstreams: {NAME: {url: ...}, ...}");
        }
        if (single) {
            if (const auto* wrong = fields.find("upstreams")) {
                wrong->key_node.fail("the preset has one upstream",
                                     "upstream: {url: ...} to override it (the preset is at " +
                                         describe(single->where()) + ")");
            }
            if (const auto v = fields.get("upstream")) merge_map(*single, *v, "upstream");
            vendor.upstreams.push_back({name, vendor.entry_node, *single});
            return;
        }
        const Map locals(*several, {}, "upstream name");
        std::vector<std::string> names;
        for (const auto& e : locals.entries()) names.push_back(e.key_node.name("an upstream"));
        if (const auto* wrong = fields.find("upstream")) {
            wrong->key_node.fail("the preset has several upstreams",
                                 "upstreams: {NAME: {...}} with NAME one of " + join(names));
        }
        if (const auto v = fields.get("upstreams")) {
            const Map overrides(*v, {}, "upstream name");
            for (const auto& o : overrides.entries()) {
                const auto* target = locals.find(o.key);
                if (target == nullptr) {
                    o.key_node.fail("the preset has no upstream " + echoed(o.key) + suggestion(o.key, names),
                                    "one of " + join(names) + " (the preset's upstreams are at " +
                                        describe(several->where()) + ")");
                }
                merge_map(target->value, o.value, "upstream " + echoed(o.key));
            }
        }
        for (const auto& e : locals.entries())
            vendor.upstreams.push_back({name + "." + e.key, e.key_node, e.value});
    }

    void expand_limits(ExpandedVendor& vendor, const Map& preset, const Map& fields,
                       const std::optional<Node>& preset_tiers) {
        const auto given = preset.get("limits");
        const Map locals(given.value_or(preset.node().renamed("limits")), {}, "limit name");
        std::vector<std::string> names;
        for (const auto& e : locals.entries()) names.push_back(e.key_node.name("a limit"));
        const auto apply = [&](const Node& overrides, const std::string& where_defined) {
            const Map overrides_map(overrides, {}, "limit name");
            for (const auto& o : overrides_map.entries()) {
                const auto* target = locals.find(o.key);
                if (target == nullptr) {
                    o.key_node.fail("the preset has no limit " + echoed(o.key) + suggestion(o.key, names),
                                    names.empty()
                                        ? std::string("no limit overrides (the preset has no limits)")
                                        : "one of " + join(names) + " (" + where_defined + ")");
                }
                // `rate:` and `limit`+`window` are two spellings of one thing: an override in one
                // replaces the other (otherwise the merged limit would have both).
                if (o.value.is_map() && target->value.is_map()) {
                    if (map_value(o.value.yaml(), "rate").IsDefined()) {
                        erase_key(target->value.yaml(), "limit");
                        erase_key(target->value.yaml(), "window");
                    } else if (map_value(o.value.yaml(), "limit").IsDefined() ||
                               map_value(o.value.yaml(), "window").IsDefined()) {
                        if (map_value(target->value.yaml(), "rate").IsDefined()) {
                            o.key_node.fail("the preset writes this limit as rate: N/duration (at " +
                                                describe(target->value.where()) + ")",
                                            "an override with rate: N/duration");
                        }
                    }
                }
                merge_map(target->value, o.value, "limit " + echoed(o.key));
            }
        };
        const auto where_defined = "the preset's limits are at " + describe(locals.node().where());
        // The tier's numbers first, then the user's overrides over both.
        if (preset_tiers && !vendor.instance.tier.empty()) {
            const Map tiers(*preset_tiers, {}, "tier");
            if (const auto tier = tiers.get(vendor.instance.tier)) {
                const Map tier_fields(*tier, kPresetTierKeys);
                if (const auto v = tier_fields.get("limits")) apply(*v, where_defined);
            }
        }
        if (const auto v = fields.get("limits")) apply(*v, where_defined);
        for (const auto& e : locals.entries()) {
            vendor.limits.push_back({vendor.instance.name + "." + e.key, e.key_node, e.value});
        }
        local_limits_ = std::move(names);
    }

    void expand_routes(ExpandedVendor& vendor, const Map& preset, const Map& fields) {
        const auto& instance = vendor.instance.name;
        const auto routes_node = preset.require("routes", "the preset's routes, e.g. routes: [{name: all}]");
        const auto items = routes_node.items("a list of routes");
        if (items.empty()) routes_node.fail("no routes", "at least one route");
        const auto single_upstream = preset.get("upstream").has_value();
        std::vector<std::string> upstream_names;
        if (!single_upstream) {
            const Map upstreams(*preset.get("upstreams"), {}, "upstream name");
            for (const auto& e : upstreams.entries()) upstream_names.push_back(e.key);
        }
        // What the instance adds to every route's match, from the user's file.
        const auto path_prefix = fields.get("path_prefix");
        const auto listeners = fields.get("listeners");
        const auto hosts = fields.get("hosts");
        for (const auto& item : items) {
            const Map route(item, kPresetRouteKeys);
            const auto name = route.require("name", "a route name, unique in the preset").name("a route");
            YAML::Node yaml = item.yaml();
            yaml["name"] = instance + "." + name;  // in place: keeps the preset's mark and tag
            // A synthesized node (a match the preset did not write) points at this route.
            const auto synthesized_tag = origin_tag({file_, item.where()});
            const auto upstream = route.get("upstream");
            if (single_upstream) {
                if (upstream) upstream->fail("the preset has one upstream", "no 'upstream' on its routes");
                YAML::Node value(instance);
                value.SetTag(synthesized_tag);
                yaml.force_insert(YAML::Node("upstream"), value);
            } else {
                if (!upstream) item.fail("missing 'upstream'", "one of " + join(upstream_names));
                const auto local = upstream->text("an upstream name");
                if (std::find(upstream_names.begin(), upstream_names.end(), local) == upstream_names.end()) {
                    upstream->fail("unknown upstream " + echoed(local) + suggestion(local, upstream_names),
                                   "one of " + join(upstream_names));
                }
                map_value(yaml, "upstream") = instance + "." + local;
            }
            if (const auto limits = route.get("limits")) {
                for (const auto& limit_item : limits->items("a list of the preset's limit names", true)) {
                    const auto local = limit_item.text("a limit name");
                    if (std::find(local_limits_.begin(), local_limits_.end(), local) == local_limits_.end()) {
                        limit_item.fail("unknown limit " + echoed(local) + suggestion(local, local_limits_),
                                        "one of the preset's limits: " + join(local_limits_));
                    }
                    YAML::Node scalar = limit_item.yaml();
                    scalar = instance + "." + local;
                }
            }
            YAML::Node match = map_value(yaml, "match");
            if (match.IsDefined() && !match.IsNull()) {
                const Map check_keys(
                    route.get("match")->renamed("route " + echoed(instance + "." + name) + " match"),
                    kPresetMatchKeys);
            } else {
                YAML::Node fresh(YAML::NodeType::Map);
                fresh.SetTag(synthesized_tag);
                if (match.IsDefined()) yaml.remove("match");
                yaml.force_insert(YAML::Node("match"), fresh);
                match.reset(fresh);
            }
            if (path_prefix) {
                match.force_insert(YAML::Node("path_prefix"), path_prefix->yaml());
                YAML::Node strip(true);
                strip.SetTag(synthesized_tag);
                yaml.force_insert(YAML::Node("strip_prefix"), strip);
            }
            if (listeners) match.force_insert(YAML::Node("listener"), listeners->yaml());
            if (hosts) match.force_insert(YAML::Node("host"), hosts->yaml());
            for (const auto* key : {"queue", "retry"}) {
                const auto override_node = fields.get(key);
                if (!override_node) continue;
                if (const auto existing = route.get(key)) {
                    merge_map(*existing, *override_node, key);
                } else {
                    if (!override_node->is_map()) override_node->fail_expected("a map");
                    yaml.force_insert(YAML::Node(key), override_node->yaml());
                }
            }
            vendor.routes.push_back(Node(file_, yaml, item.yaml().Mark(), "routes"));
        }
    }

    static void merge_map(const Node& base, const Node& override_node, const std::string& what) {
        if (!override_node.is_map())
            override_node.fail_expected("a map of keys to override in the preset's " + what);
        if (!base.is_map()) base.fail_expected("a map");
        // Keys checked by the reader afterwards; duplicates refused here, as everywhere.
        Map checked(override_node, {});
        merge_into(base.yaml(), override_node.yaml());
    }

    static std::string describe(const SourceLocation& where) {
        return where.file + ":" + std::to_string(where.line) + ":" + std::to_string(where.column);
    }

    // ---- server -------------------------------------------------------------
    void read_server(const std::optional<Node>& node) {
        auto& server = config_->server;
        if (!node) return;
        const Map map(*node, kServerKeys);
        if (const auto v = map.get("workers")) server.workers = static_cast<unsigned>(v->integer(1, 64));
        // Beast's basic_fields throws std::length_error for a field value over 65,535 bytes, which
        // a larger header limit would let a client send; 64 KiB is the header limit that keeps
        // every field within that.
        if (const auto v = map.get("max_header_bytes")) server.max_header_bytes = v->size(1, kMaxHeaderBytes);
        if (const auto v = map.get("max_body_bytes")) server.max_body_bytes = v->size(0, kMaxBodyBytes);
        if (const auto v = map.get("max_buffered_body_bytes"))
            server.max_buffered_body_bytes = v->size(0, kMaxBufferedBodyBytes);
        if (const auto v = map.get("max_client_connections")) {
            server.max_client_connections = static_cast<std::size_t>(v->integer(1, 1'000'000));
        }
        if (const auto v = map.get("timeouts")) {
            const Map timeouts(*v, kTimeoutKeys);
            auto& t = server.timeouts;
            if (const auto d = timeouts.get("client_header"))
                t.client_header = d->duration(Sign::positive, kMaxTimeout);
            if (const auto d = timeouts.get("client_body"))
                t.client_body = d->duration(Sign::positive, kMaxTimeout);
            if (const auto d = timeouts.get("client_body_total"))
                t.client_body_total = d->duration(Sign::positive, kMaxTimeout);
            if (const auto d = timeouts.get("client_idle"))
                t.client_idle = d->duration(Sign::positive, kMaxTimeout);
            if (const auto d = timeouts.get("client_write"))
                t.client_write = d->duration(Sign::positive, kMaxTimeout);
        }
        if (const auto v = map.get("forwarded")) {
            const Map forwarded(*v, kForwardedKeys);
            if (const auto b = forwarded.get("x_forwarded_for"))
                server.forwarded.x_forwarded_for = b->boolean();
            if (const auto b = forwarded.get("x_forwarded_proto"))
                server.forwarded.x_forwarded_proto = b->boolean();
        }
        if (const auto v = map.get("rate_limit_headers")) {
            const Map headers(*v, kRateLimitHeaderKeys);
            if (const auto s = headers.get("style")) {
                constexpr std::string_view expected = "one of none, ietf, x, both";
                const auto style = s->text(expected);
                if (style == "none") {
                    server.rate_limit_headers.style = RateLimitHeaderStyle::none;
                } else if (style == "ietf") {
                    server.rate_limit_headers.style = RateLimitHeaderStyle::ietf;
                } else if (style == "x") {
                    server.rate_limit_headers.style = RateLimitHeaderStyle::x;
                } else if (style == "both") {
                    server.rate_limit_headers.style = RateLimitHeaderStyle::both;
                } else {
                    s->fail("unknown style " + echoed(style), expected);
                }
            }
            if (const auto b = headers.get("on_proxied")) server.rate_limit_headers.on_proxied = b->boolean();
        }
        if (const auto v = map.get("admin")) {
            const Map admin(*v, kAdminKeys);
            if (const auto b = admin.get("enabled")) server.admin.enabled = b->boolean();
            if (const auto l = admin.get("listen")) {
                const auto endpoint = parse_listen(*l);
                server.admin.address = endpoint.address;
                server.admin.port = endpoint.port;
                admin_listen_ = *l;
            }
            if (const auto f = admin.get("token_file")) {
                server.admin.token_file = f->string("a path to a file holding the admin token");
            }
            if (const auto e = admin.get("token_env")) {
                constexpr std::string_view expected =
                    "the name of an environment variable holding the admin token (letters, digits, '_')";
                server.admin.token_env = e->string(expected);
                if (!is_environment_name(server.admin.token_env)) {
                    e->fail(echoed(server.admin.token_env) + " is not an environment variable name",
                            expected);
                }
                if (!server.admin.token_file.empty()) {
                    e->fail("token_file and token_env are both given",
                            "one of them: the token is read from a file or from an environment variable");
                }
            }
            if (const auto n = admin.get("status_keys"))
                server.admin.status_keys = static_cast<std::size_t>(n->integer(0, kMaxStatusKeys));
            if (const auto n = admin.get("limits_top_keys"))
                server.admin.limits_top_keys = static_cast<std::size_t>(n->integer(0, kMaxStatusKeys));
        }
        if (const auto v = map.get("access_log")) {
            const Map log(*v, kAccessLogKeys);
            auto& access_log = server.access_log;
            if (const auto b = log.get("enabled")) access_log.enabled = b->boolean();
            if (const auto p = log.get("path"))
                access_log.path = p->string("stdout, stderr, or the path of a file to append to");
            if (const auto b = log.get("log_query")) access_log.log_query = b->boolean();
            if (const auto n = log.get("buffer_bytes"))
                access_log.buffer_bytes = n->size(kMinAccessLogBufferBytes, kMaxAccessLogBufferBytes);
        }
        if (const auto v = map.get("state")) {
            const Map state_map(*v, kStateKeys);
            auto& state = server.state;
            if (const auto b = state_map.get("enabled")) state.enabled = b->boolean();
            if (const auto d = state_map.get("dir"))
                state.dir =
                    d->string("the path of a folder for the state file (relative to the config file's)");
            if (const auto d = state_map.get("save_interval")) {
                state.save_interval = d->duration(Sign::positive, kMaxSaveInterval);
                if (state.save_interval < kMinSaveInterval) {
                    d->fail(echoed(d->text("")) + " is shorter than " + describe_bound(kMinSaveInterval),
                            "a duration from " + describe_bound(kMinSaveInterval) + " to " +
                                describe_bound(kMaxSaveInterval));
                }
            }
            if (const auto d = state_map.get("min_window"))
                state.min_window = d->duration(Sign::non_negative, kMaxWindow);
            if (const auto b = state_map.get("backend")) {
                const auto name = b->text("memory or redis");
                if (name == "memory") {
                    state.backend = StateBackend::memory;
                } else if (name == "redis") {
                    state.backend = StateBackend::redis;
                } else {
                    b->fail_expected("memory or redis");
                }
            }
            if (const auto r = state_map.get("redis")) {
                state.redis = read_redis(*r);
            } else if (state.backend == StateBackend::redis) {
                state_map.require("redis", "server.state.redis: {address: host:port, ...} (backend: redis)");
            }
        }
        if (const auto d = map.get("drain_timeout"))
            server.drain_timeout = d->duration(Sign::non_negative, kMaxDrainTimeout);
    }

    // server.state.redis (docs/distributed.md). The password itself is never in the file.
    static RedisConfig read_redis(const Node& node) {
        const Map map(node, kRedisKeys);
        RedisConfig redis;
        constexpr std::string_view kAddressSyntax =
            "host:port (e.g. 127.0.0.1:6379) or unix:/path/to/redis.sock";
        const auto address_node = map.require("address", kAddressSyntax);
        const auto address = address_node.string(kAddressSyntax);
        if (address.rfind("unix:", 0) == 0) {
            redis.unix_path = address.substr(5);
            if (redis.unix_path.empty() || redis.unix_path.front() != '/')
                address_node.fail(echoed(address) + " has no absolute socket path", kAddressSyntax);
        } else {
            const auto colon = address.rfind(':');
            if (colon == std::string::npos || colon == 0)
                address_node.fail(echoed(address) + " is not host:port", kAddressSyntax);
            redis.host = address.substr(0, colon);
            if (redis.host.front() == '[' && redis.host.back() == ']')
                redis.host = redis.host.substr(1, redis.host.size() - 2);
            const auto port = parse_port(address.substr(colon + 1));
            if (!port || *port == 0)
                address_node.fail(echoed(address.substr(colon + 1)) + " is not a port (1-65535)",
                                  kAddressSyntax);
            redis.port = *port;
        }
        if (const auto n = map.get("db")) redis.db = static_cast<int>(n->integer(0, 65535));
        if (const auto u = map.get("username")) redis.username = u->text("a Redis ACL user name");
        if (const auto f = map.get("password_file"))
            redis.password_file = f->string("a path to a file holding the Redis password");
        if (const auto e = map.get("password_env")) {
            constexpr std::string_view expected =
                "the name of an environment variable holding the Redis password (letters, digits, '_')";
            redis.password_env = e->string(expected);
            if (!is_environment_name(redis.password_env))
                e->fail(echoed(redis.password_env) + " is not an environment variable name", expected);
            if (!redis.password_file.empty())
                e->fail("password_file and password_env are both given",
                        "one of them: the password is read from a file or from an environment variable");
        }
        if (const auto t = map.get("tls")) {
            const Map tls(*t, kRedisTlsKeys);
            if (const auto b = tls.get("enabled")) redis.tls = b->boolean();
            if (const auto f = tls.get("ca_file")) redis.tls_ca_file = f->string("a PEM CA bundle's path");
            if (const auto n = tls.get("server_name")) redis.tls_server_name = n->string("a host name");
            if (const auto b = tls.get("verify")) redis.tls_verify = b->boolean();
        }
        if (const auto p = map.get("key_prefix")) {
            constexpr std::string_view expected =
                "letters, digits, '_', '-', '.' or ':' (no braces: it is the hash tag)";
            redis.key_prefix = p->string(expected);
            const bool valid = std::all_of(redis.key_prefix.begin(), redis.key_prefix.end(), [](char c) {
                return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.' ||
                       c == ':';
            });
            if (!valid || redis.key_prefix.size() > 64)
                p->fail(echoed(redis.key_prefix) + " is not a key prefix", expected);
        }
        if (const auto d = map.get("connect_timeout"))
            redis.connect_timeout = d->duration(Sign::positive, kMaxRedisTimeout);
        if (const auto d = map.get("command_timeout"))
            redis.command_timeout = d->duration(Sign::positive, kMaxRedisTimeout);
        if (const auto n = map.get("replicas")) redis.replicas = static_cast<unsigned>(n->integer(1, 10'000));
        if (const auto d = map.get("lease")) {
            redis.lease = d->duration(Sign::positive, kMaxWindow);
            if (redis.lease < kMinRedisLease)
                d->fail(echoed(d->text("")) + " is shorter than " + describe_bound(kMinRedisLease),
                        "a duration of at least " + describe_bound(kMinRedisLease));
        }
        return redis;
    }

    // server.state.dir: "sluice-state" in the config file's folder unless given; a relative one is
    // relative to that folder, so the state follows the file, whatever the cwd of the process.
    void resolve_state_dir() {
        auto& dir = config_->server.state.dir;
        const std::filesystem::path given(dir.empty() ? "sluice-state" : dir);
        dir = given.is_absolute() ? given.string() : (folder_of(file_) / given).string();
    }

    // ---- listeners ----------------------------------------------------------
    void read_listeners(const std::optional<Node>& node) {
        if (!node) {
            ListenerConfig listener;
            listener.name = "default";
            listener.location = {file_, 1, 1};
            Endpoint endpoint{listener.address, listener.port, AF_INET};
            config_->listeners.push_back(std::move(listener));
            check_listen_conflicts({{endpoint, std::nullopt,
                                     "the default listener (127.0.0.1:8080, as 'listeners' is not given)"}});
            return;
        }
        const auto items =
            node->items("a list of listeners, e.g. [{name: default, listen: \"127.0.0.1:8080\"}]");
        if (items.empty()) {
            node->fail("no listeners",
                       "at least one listener (or leave 'listeners' out for one on 127.0.0.1:8080)");
        }
        // Names first: an unnamed listener takes "default" only if no listener claims it
        // explicitly, so naming a second listener "default" never collides with the first.
        struct Parsed {
            Map map;
            std::optional<Node> name_node;
        };
        std::vector<Parsed> parsed;
        bool default_taken = false;
        for (const auto& item : items) {
            Map map(item, kListenerKeys);
            auto name_node = map.get("name");
            if (name_node && name_node->name("a listener") == "default") default_taken = true;
            parsed.push_back({std::move(map), std::move(name_node)});
        }
        std::vector<Binding> bindings;
        for (std::size_t i = 0; i < parsed.size(); ++i) {
            const auto& [map, name_node] = parsed[i];
            ListenerConfig listener;
            listener.location = map.node().where();
            bool assigned = false;
            if (name_node) {
                listener.name = name_node->name("a listener");
            } else if (!default_taken) {
                listener.name = "default";
                default_taken = true;
                assigned = true;
            } else {
                listener.name = "listener-" + std::to_string(i + 1);
                assigned = true;
            }
            const Node at = name_node ? *name_node : map.node();
            for (const auto& other : config_->listeners) {
                if (other.name == listener.name) {
                    at.fail("duplicate listener name " + echoed(listener.name) + " (first at line " +
                                std::to_string(other.location.line) + ")" +
                                (assigned ? "; this listener has no name and got it by position" : ""),
                            "unique listener names");
                }
            }
            const auto listen = map.require("listen", kListenSyntax);
            const auto endpoint = parse_listen(listen);
            listener.address = endpoint.address;
            listener.port = endpoint.port;
            bindings.push_back({endpoint, listen, "listener " + echoed(listener.name)});
            config_->listeners.push_back(std::move(listener));
        }
        check_listen_conflicts(std::move(bindings));
    }

    // Two sockets on one address:port would fail at bind with a less helpful message; port 0
    // picks a free port each time, so it never conflicts.
    void check_listen_conflicts(std::vector<Binding> bindings) {
        const auto& admin = config_->server.admin;
        if (admin.enabled) {
            int family = 0;
            canonical_ip(admin.address, &family);
            bindings.push_back(
                {{admin.address, admin.port, family},
                 admin_listen_,
                 admin_listen_ ? "the admin listener" : "the admin listener (default 127.0.0.1:9901)"});
        }
        for (std::size_t i = 0; i < bindings.size(); ++i) {
            for (std::size_t j = 0; j < i; ++j) {
                const auto& a = bindings[j];
                const auto& b = bindings[i];
                const auto& ea = a.endpoint;
                const auto& eb = b.endpoint;
                if (ea.port == 0 || ea.port != eb.port || ea.family != eb.family) continue;
                if (ea.address != eb.address && !is_wildcard(ea) && !is_wildcard(eb)) continue;
                // Point at the later one that was written down (a default has no place in the file).
                const auto& at = b.node ? b : a;
                const auto& other = b.node ? a : b;
                const auto other_where =
                    other.node ? " (line " + std::to_string(other.node->line()) + ")" : std::string();
                at.node->fail("address " + eb.address + ":" + std::to_string(eb.port) + " is also used by " +
                                  other.owner + other_where,
                              "a different address or port for each listener and the admin listener");
            }
        }
    }

    // ---- upstreams ----------------------------------------------------------
    void read_upstreams(const Map& top) {
        // With `vendors:`, the presets bring upstreams and a file needs none of its own.
        const auto given = top.get("upstreams");
        if (!given && expanded_.empty()) {
            top.require("upstreams", "an 'upstreams' map with at least one upstream (or a 'vendors' entry)");
        }
        if (given) {
            const auto& node = *given;
            const Map upstreams(node, {}, "upstream name");
            if (upstreams.entries().empty() && expanded_.empty()) {
                node.fail(
                    "no upstreams",
                    "at least one upstream, e.g. upstreams: {intercom: {url: https://api.intercom.io}}");
            }
            for (const auto& entry : upstreams.entries()) {
                entry.key_node.name("an upstream");
                upstream_indexes_.emplace(entry.key, config_->upstreams.size());
                config_->upstreams.push_back(read_upstream(entry));
            }
        }
        for (auto& vendor : expanded_) {
            for (const auto& entry : vendor.upstreams) {
                if (const auto found = upstream_indexes_.find(entry.key); found != upstream_indexes_.end()) {
                    vendor.entry_node.fail(
                        "the preset's upstream " + echoed(entry.key) +
                            " is also defined under 'upstreams' (line " +
                            std::to_string(config_->upstreams[found->second].location.line) + ")",
                        "one definition per upstream name (rename the vendor instance)");
                }
                upstream_indexes_.emplace(entry.key, config_->upstreams.size());
                vendor.instance.upstream_indexes.push_back(config_->upstreams.size());
                with_context(vendor, entry.value,
                             [&] { config_->upstreams.push_back(read_upstream(entry)); });
            }
        }
    }

    void read_vendor_limits() {
        for (auto& vendor : expanded_) {
            for (const auto& entry : vendor.limits) {
                if (const auto found = limit_indexes_.find(entry.key); found != limit_indexes_.end()) {
                    vendor.entry_node.fail(
                        "the preset's limit " + echoed(entry.key) + " is also defined under 'limits' (line " +
                            std::to_string(config_->limits[found->second].location.line) + ")",
                        "one definition per limit name");
                }
                limit_indexes_.emplace(entry.key, config_->limits.size());
                with_context(vendor, entry.key_node, [&] { config_->limits.push_back(read_limit(entry)); });
            }
        }
    }

    // --time-scale: every window shrinks by the same factor, so a preset's rules keep their
    // proportions at N times the speed. After validation: the scaled windows need not tile a day.
    void apply_time_scale() {
        config_->time_scale = options_.time_scale;
        if (options_.time_scale == 1.0) return;
        const auto scaled = [&](Duration d) {
            const auto ns = static_cast<double>(d.count()) / options_.time_scale;
            return Duration(static_cast<Duration::rep>(ns));
        };
        config_->priorities.aging = std::max(scaled(config_->priorities.aging), Duration(1));
        for (auto& limit : config_->limits) {
            if (limit.algorithm == Algorithm::concurrency) continue;
            limit.window = std::max(scaled(limit.window), Duration(1));
            limit.margin = scaled(limit.margin);
            limit.utc_offset = scaled(limit.utc_offset);
            // A zone's local days cannot shrink: scaled periods are aligned to UTC instead.
            limit.time_zone.clear();
        }
    }

    UpstreamConfig read_upstream(const Entry& entry) {
        UpstreamConfig upstream;
        upstream.name = entry.key;
        upstream.location = entry.key_node.where();
        const Node node = entry.value.renamed("upstream " + echoed(entry.key));
        const Map map(node, kUpstreamKeys);
        const auto url = map.require("url", "the vendor's base URL, e.g. url: https://api.intercom.io");
        parse_url(url, upstream);
        if (const auto v = map.get("tls")) {
            if (upstream.scheme != "https") {
                map.find("tls")->key_node.fail("tls settings on an http upstream",
                                               "an https:// url, or no 'tls' (plain http does not use TLS)");
            }
            const Map tls(*v, kTlsKeys);
            if (const auto b = tls.get("verify")) upstream.tls.verify = b->boolean();
            if (const auto s = tls.get("ca_file")) upstream.tls.ca_file = s->string("the path of a PEM file");
            if (const auto s = tls.get("server_name")) {
                constexpr std::string_view expected = "a DNS name for SNI and certificate verification";
                upstream.tls.server_name = s->string(expected);
                if (!is_valid_dns_name(upstream.tls.server_name)) s->fail_expected(expected);
            }
        }
        if (const auto v = map.get("max_connections")) upstream.max_connections = v->integer(1, 100'000);
        // Unset: as many idle as open connections may be kept. A smaller idle cap
        // makes a busy pool close and reopen connections (TLS handshakes) under load.
        upstream.max_idle_connections = upstream.max_connections;
        if (const auto v = map.get("max_idle_connections"))
            upstream.max_idle_connections = v->integer(0, 100'000);
        upstream.max_streamed_bodies = std::max<std::size_t>(1, upstream.max_connections / 2);
        if (const auto v = map.get("max_streamed_bodies")) {
            upstream.max_streamed_bodies = v->integer(1, 100'000);
            if (upstream.max_streamed_bodies > upstream.max_connections) {
                v->fail("max_streamed_bodies " + std::to_string(upstream.max_streamed_bodies) +
                            " exceeds max_connections " + std::to_string(upstream.max_connections),
                        "at most max_connections (each streamed body holds a connection)");
            }
        }
        if (upstream.max_idle_connections > upstream.max_connections) {
            const auto at = map.get("max_idle_connections").value_or(map.node());
            at.fail("max_idle_connections " + std::to_string(upstream.max_idle_connections) +
                        " exceeds max_connections " + std::to_string(upstream.max_connections),
                    "at most max_connections (idle connections count towards it)");
        }
        if (const auto v = map.get("idle_timeout"))
            upstream.idle_timeout = v->duration(Sign::positive, kMaxTimeout);
        if (const auto v = map.get("connect_timeout"))
            upstream.connect_timeout = v->duration(Sign::positive, kMaxTimeout);
        if (const auto v = map.get("response_timeout"))
            upstream.response_timeout = v->duration(Sign::positive, kMaxTimeout);
        if (const auto v = map.get("body_timeout"))
            upstream.body_timeout = v->duration(Sign::positive, kMaxTimeout);
        if (const auto v = map.get("feedback")) upstream.feedback = read_feedback(*v);
        return upstream;
    }

    static feedback::ResetMode read_reset_mode(const Node& node) {
        constexpr std::string_view expected = "one of auto, delta_seconds, unix_seconds";
        const auto mode = node.text(expected);
        if (mode == "auto") return feedback::ResetMode::automatic;
        if (mode == "delta_seconds") return feedback::ResetMode::delta_seconds;
        if (mode == "unix_seconds") return feedback::ResetMode::unix_seconds;
        node.fail("unknown reset mode " + echoed(mode), expected);
    }

    static FeedbackSettings read_feedback(const Node& node) {
        FeedbackSettings settings;
        const Map map(node, kFeedbackKeys);
        if (const auto b = map.get("enabled")) settings.enabled = b->boolean();
        if (const auto b = map.get("pause_on_429")) settings.pause_on_429 = b->boolean();
        if (const auto b = map.get("cap_from_remaining")) settings.cap_from_remaining = b->boolean();
        if (const auto b = map.get("learn")) settings.learn = b->boolean();
        if (const auto v = map.get("limit_type_field")) {
            constexpr std::string_view expected = "a dotted JSON path, e.g. error.rate_limit_type";
            settings.signals.limit_type_field = v->text(expected);
            if (const auto why = feedback::validate_body_field(settings.signals.limit_type_field);
                !why.empty())
                v->fail_reason("bad limit_type_field: " + why, expected);
        }
        if (const auto v = map.get("reset_mode")) settings.signals.reset_mode = read_reset_mode(*v);
        if (const auto v = map.get("body_field")) {
            constexpr std::string_view expected = "a dotted JSON path, e.g. error.rate_reset";
            settings.signals.body_field = v->text(expected);
            if (const auto why = feedback::validate_body_field(settings.signals.body_field); !why.empty())
                v->fail_reason("bad body_field: " + why, expected);
        }
        if (const auto v = map.get("body_field_mode")) settings.signals.body_field_mode = read_reset_mode(*v);
        if (const auto v = map.get("max_pause"))
            settings.signals.max_pause = v->duration(Sign::positive, kMaxPause);
        if (const auto v = map.get("default_pause"))
            settings.default_pause = v->duration(Sign::positive, kMaxPause);
        if (settings.default_pause > settings.signals.max_pause) {
            map.get("default_pause")
                .value_or(map.node())
                .fail("default_pause exceeds max_pause", "a default_pause no longer than max_pause");
        }
        return settings;
    }

    static void parse_url(const Node& node, UpstreamConfig& upstream) {
        constexpr std::string_view expected =
            "an http:// or https:// URL with a host, an optional port and an optional base path, e.g. "
            "https://api.example.com or http://127.0.0.1:9000/v1";
        const auto url = node.string(expected);
        const auto fail = [&](const std::string& what) { url_error(node, url, what, expected); };
        const auto scheme_end = url.find("://");
        if (scheme_end == std::string::npos) fail("no scheme");
        upstream.scheme = to_lower(url.substr(0, scheme_end));
        if (upstream.scheme != "http" && upstream.scheme != "https")
            fail("unsupported scheme " + echoed(upstream.scheme));
        if (has_space_or_control(url)) fail("spaces and control characters are not allowed");
        if (url.find_first_of("?#") != std::string::npos) fail("a query or fragment is not allowed");
        const auto rest = url.substr(scheme_end + 3);
        const auto path_start = rest.find('/');
        const auto authority = rest.substr(0, path_start);
        if (authority.find('@') != std::string::npos) {
            fail("credentials in the URL are not supported (send them as request headers)");
        }
        std::string host;
        std::string port_text;
        if (!authority.empty() && authority.front() == '[') {
            const auto close = authority.find(']');
            if (close == std::string::npos) fail("unbalanced '[' in the host");
            host = authority.substr(1, close - 1);
            const auto after = authority.substr(close + 1);
            if (!after.empty()) {
                if (after.front() != ':') fail("unexpected text after ']'");
                port_text = after.substr(1);
            }
            int family = 0;
            if (canonical_ip(host, &family).empty() || family != AF_INET6)
                fail(echoed(host) + " is not an IPv6 address");
        } else {
            const auto colon = authority.find(':');
            host = authority.substr(0, colon);
            if (colon != std::string::npos) port_text = authority.substr(colon + 1);
            if (host.empty()) fail("no host");
            if (!is_valid_dns_name(host)) fail("invalid host " + echoed(host));
            host = to_lower(host);
        }
        upstream.host = host;
        if (colon_given(authority)) {
            const auto port = parse_port(port_text);
            if (!port || *port == 0) fail("invalid port " + echoed(port_text));
            upstream.port = *port;
        } else {
            upstream.port = upstream.scheme == "https" ? 443 : 80;
        }
        std::string base_path = path_start == std::string::npos ? "" : rest.substr(path_start);
        // "/v1/" and "/v1" are one base: the forwarded path brings its own leading '/'.
        while (!base_path.empty() && base_path.back() == '/') base_path.pop_back();
        upstream.base_path = base_path;
    }

    [[noreturn]] static void url_error(const Node& node, const std::string& url, const std::string& what,
                                       std::string_view expected) {
        node.fail("url " + echoed(url) + ": " + what, expected);
    }

    // Whether an authority carries a port (a ':' outside IPv6 brackets).
    static bool colon_given(const std::string& authority) {
        const auto close = authority.rfind(']');
        const auto colon = authority.rfind(':');
        return colon != std::string::npos && (close == std::string::npos || colon > close);
    }

    // ---- limits -------------------------------------------------------------
    void read_limits(const std::optional<Node>& node) {
        if (!node) return;
        const Map limits(*node, {}, "limit name");
        for (const auto& entry : limits.entries()) {
            entry.key_node.name("a limit");
            limit_indexes_.emplace(entry.key, config_->limits.size());
            config_->limits.push_back(read_limit(entry));
        }
    }

    LimitConfig read_limit(const Entry& entry) {
        LimitConfig limit;
        limit.name = entry.key;
        limit.location = entry.key_node.where();
        const Node node = entry.value.renamed("limit " + echoed(entry.key));
        const Map map(node, kLimitKeys);

        if (const auto v = map.get("algorithm")) {
            const auto expected = "one of " + join(kAlgorithmNames);
            const auto name = v->text(expected);
            const auto found = std::find(kAlgorithmNames.begin(), kAlgorithmNames.end(), name);
            if (found == kAlgorithmNames.end()) {
                v->fail("unknown algorithm " + echoed(name) + suggestion(name, kAlgorithmNames), expected);
            }
            limit.algorithm = static_cast<Algorithm>(found - kAlgorithmNames.begin());
        }
        const auto& algorithm_name = kAlgorithmNames[static_cast<std::size_t>(limit.algorithm)];
        const auto applicable = limit_keys_for(limit.algorithm);
        for (const auto& e : map.entries()) {
            if (std::find(applicable.begin(), applicable.end(), e.key) == applicable.end()) {
                e.key_node.fail(echoed(e.key) + " does not apply to a " + algorithm_name + " limit (" +
                                    why_not_applicable(e.key, limit.algorithm) + ")",
                                "only " + join(applicable) + " for " + algorithm_name);
            }
        }

        const bool uses_window = limit.algorithm != Algorithm::concurrency;
        if (const auto rate = map.get("rate")) {
            for (const auto* other : {"limit", "window"}) {
                if (const auto* e = map.find(other)) {
                    e->key_node.fail("both 'rate' and " + echoed(other) + " are given",
                                     "either rate (e.g. rate: 4/1s) or limit and window");
                }
            }
            read_rate(*rate, limit);
        } else {
            const auto what = limit.algorithm == Algorithm::concurrency
                                  ? "the most requests in flight, e.g. limit: 10"
                              : limit.algorithm == Algorithm::token_bucket
                                  ? "limit and window (tokens per window), or rate: N/duration"
                                  : "the admissions per window, e.g. limit: 166";
            limit.limit = map.require("limit", what).integer(1);
            if (uses_window) {
                const auto why = limit.algorithm == Algorithm::token_bucket
                                     ? "the period in which `limit` tokens are added, e.g. window: 1s"
                                     : "the window length, e.g. window: 10s";
                limit.window = map.require("window", why).duration(Sign::positive, kMaxWindow);
            }
        }
        if (limit.algorithm == Algorithm::token_bucket) {
            limit.burst = limit.limit;
            if (const auto v = map.get("burst")) limit.burst = v->integer(1);
        }
        if (const auto v = map.get("utc_offset")) {
            limit.utc_offset = v->duration(Sign::any, kMaxWindow);
            if (limit.utc_offset <= -kDay || limit.utc_offset >= kDay) {
                v->fail("utc_offset " + v->text("") + " is a whole day or more away from UTC",
                        "a duration strictly between -24h and 24h, e.g. -5h");
            }
        }
        if (const auto v = map.get("margin")) limit.margin = v->duration(Sign::non_negative, kMaxMargin);
        if (limit.algorithm == Algorithm::fixed_window)
            check_calendar_window(map.require("window", ""), limit.window);
        // `time_zone: null` is no zone: an override can take a preset's zone away.
        if (const auto v = map.get("time_zone"); v && !v->is_null()) {
            if (const auto* offset = map.find("utc_offset")) {
                offset->key_node.fail(
                    "both 'utc_offset' and 'time_zone' are given",
                    "either a fixed utc_offset or a time_zone that follows daylight saving");
            }
            if (limit.window % kDay != Duration::zero()) {
                v->fail("time_zone needs a window of whole days (got window " +
                            map.require("window", "").text("") + ")",
                        "window: 1d (or 7d, ...); shorter windows keep their UTC alignment, use utc_offset");
            }
            limit.time_zone = v->string("an IANA time zone name, e.g. America/New_York");
            if (const auto error = check_time_zone(limit.time_zone); !error.empty())
                v->fail(error, "an IANA time zone name from the system's tz database, e.g. America/New_York");
        }

        if (const auto v = map.get("key")) limit.key = read_key(*v);
        if (const auto v = map.get("cost")) read_cost(*v, limit, algorithm_name);
        if (const auto v = map.get("enforce")) limit.enforce = v->boolean();
        if (const auto v = map.get("max_keys")) limit.max_keys = v->integer(1);
        if (const auto v = map.get("feedback")) limit.feedback = read_limit_feedback(*v);
        if (const auto v = map.get("classes")) limit.class_shares = read_class_shares(*v);
        if (const auto v = map.get("fair_share")) limit.fair_share = read_fair_share(*v);
        if (const auto v = map.get("on_redis_failure")) {
            constexpr std::string_view expected = "local, deny or allow";
            const auto policy = v->text(expected);
            if (policy == "local") {
                limit.on_redis_failure = RedisFailurePolicy::local;
            } else if (policy == "deny") {
                limit.on_redis_failure = RedisFailurePolicy::deny;
            } else if (policy == "allow") {
                limit.on_redis_failure = RedisFailurePolicy::allow;
            } else {
                v->fail_expected(expected);
            }
        }
        return limit;
    }

    // ---- priorities (docs/priorities.md) -----------------------------------------
    void read_priorities(const Node& node) {
        auto& priorities = config_->priorities;
        const Map map(node, kPrioritiesKeys);
        constexpr std::string_view expected =
            "a list of class names, highest first, e.g. classes: [interactive, default, batch]";
        const auto classes = map.require("classes", expected);
        const auto items = classes.items(expected);
        if (items.empty()) classes.fail("no classes", expected);
        if (items.size() > 16) classes.fail(std::to_string(items.size()) + " classes", "at most 16 classes");
        for (const auto& item : items) {
            const auto name = item.name("a class");
            if (priorities.find(name)) item.fail("duplicate class " + echoed(name), "each class once");
            priorities.classes.push_back(name);
        }
        priorities.default_class = priorities.classes.size() / 2;  // the middle one, e.g. `default` of three
        if (const auto v = map.get("default")) priorities.default_class = class_index(*v);
        if (const auto v = map.get("aging")) priorities.aging = v->duration(Sign::positive, kMaxWait);
    }

    // A class name, resolved against `priorities.classes`.
    std::size_t class_index(const Node& node) const {
        const auto& classes = config_->priorities.classes;
        if (classes.empty()) {
            node.fail("a class, but there is no top-level 'priorities' section",
                      "priorities: {classes: [...]} naming the classes first");
        }
        const auto expected = "one of " + join(classes);
        const auto name = node.text(expected);
        const auto found = config_->priorities.find(name);
        if (!found) node.fail("unknown class " + echoed(name) + suggestion(name, classes), expected);
        return *found;
    }

    // "70%": a share of a limit, strictly between none and all of it.
    static unsigned percentage(const Node& node) {
        constexpr std::string_view expected = "a percentage from 1% to 99%, e.g. 70%";
        const auto text = node.text(expected);
        unsigned value = 0;
        const char* first = text.data();
        const char* last = first + text.size();
        const auto [end, ec] = std::from_chars(first, last, value);
        if (text.empty() || ec != std::errc() || end + 1 != last || *end != '%') {
            node.fail(echoed(text) + " is not a percentage", expected);
        }
        if (value < 1 || value > 99) node.fail(echoed(text) + " is out of range", expected);
        return value;
    }

    std::vector<ClassShare> read_class_shares(const Node& node) const {
        const Map classes(node, {}, "class");
        std::vector<ClassShare> shares;
        unsigned reserved = 0;
        for (const auto& entry : classes.entries()) {
            ClassShare share;
            share.class_index = class_index(entry.key_node);
            const Node value = entry.value.renamed(node.child_path(entry.key));
            const Map map(value, kClassShareKeys);
            if (map.entries().empty()) value.fail("no share", "max_share, reserve, or both");
            if (const auto v = map.get("max_share")) share.max_share = percentage(*v);
            if (const auto v = map.get("reserve")) {
                share.reserve = percentage(*v);
                reserved += *share.reserve;
                if (reserved > 99) {
                    v->fail("the reserves add up to " + std::to_string(reserved) + "%",
                            "reserves that together leave some room (at most 99%)");
                }
            }
            if (share.max_share && share.reserve && *share.reserve > *share.max_share) {
                value.fail("reserve " + std::to_string(*share.reserve) + "% is more than max_share " +
                               std::to_string(*share.max_share) + "%",
                           "a reserve no larger than the class's cap");
            }
            shares.push_back(share);
        }
        return shares;
    }

    FairShareConfig read_fair_share(const Node& node) const {
        FairShareConfig fair;
        const Map map(node, kFairShareKeys);
        constexpr std::string_view expected = "listener, or {header: NAME} (e.g. {header: X-Caller})";
        const auto caller = map.require("caller", expected);
        if (caller.is_scalar()) {
            if (caller.text(expected) != "listener")
                caller.fail("unknown caller " + echoed(caller.text("")), expected);
            fair.caller = FairShareConfig::Caller::listener;
        } else {
            const Map header(caller, {"header"});
            const auto name = header.require("header", expected);
            fair.caller = FairShareConfig::Caller::header;
            fair.header = name.text("a header name");
            if (!is_http_token(fair.header)) name.fail_expected("a header name (an HTTP token)");
        }
        constexpr std::int64_t kMaxWeight = 1000;
        if (const auto v = map.get("weights")) {
            const Map weights(*v, {}, "caller");
            std::vector<std::string> listeners;
            for (const auto& l : config_->listeners) listeners.push_back(l.name);
            for (const auto& entry : weights.entries()) {
                if (fair.caller == FairShareConfig::Caller::listener &&
                    std::find(listeners.begin(), listeners.end(), entry.key) == listeners.end()) {
                    entry.key_node.fail(
                        "unknown listener " + echoed(entry.key) + suggestion(entry.key, listeners),
                        "one of " + join(listeners));
                }
                fair.weights.emplace_back(entry.key, entry.value.integer(1, kMaxWeight));
            }
        }
        if (const auto v = map.get("default_weight")) fair.default_weight = v->integer(1, kMaxWeight);
        fair.total_weight = fair.default_weight;
        for (const auto& [name, weight] : fair.weights) fair.total_weight += weight;
        return fair;
    }

    // Each cap and reserve becomes an ordinary limit (config.hpp, LimitConfig::derived_from), so
    // the all-or-nothing admission holds them with every guarantee the limiters give, and the
    // state file, Redis, metrics and reloads treat them as they treat any limit.
    void derive_class_limits() {
        const std::size_t file_limits = config_->limits.size();
        const auto& classes = config_->priorities.classes;
        const std::uint64_t all = (std::uint64_t{1} << classes.size()) - 1;
        for (std::size_t parent = 0; parent < file_limits; ++parent) {
            for (const ClassShare share : config_->limits[parent].class_shares) {
                const auto& name = classes[share.class_index];
                const std::uint64_t own = std::uint64_t{1} << share.class_index;
                if (share.max_share) derive(parent, "/class:" + name, *share.max_share, own, "max_share");
                if (share.reserve)
                    derive(parent, "/reserve:" + name, 100 - *share.reserve, all & ~own, "reserve");
            }
        }
    }

    void derive(std::size_t parent_index, const std::string& suffix, unsigned percent, std::uint64_t counted,
                std::string_view what) {
        LimitConfig limit = config_->limits[parent_index];
        const auto scaled = [&](std::int64_t units) {
            return units * static_cast<std::int64_t>(percent) / 100;
        };
        const auto fail_small = [&](std::int64_t units, std::string_view of) {
            throw ConfigError(limit.location, "limit " + echoed(limit.name) +
                                                  " classes: " + std::string(what) + " gives " +
                                                  suffix.substr(1) + " " + std::to_string(percent) + "% of " +
                                                  std::string(of) + " " + std::to_string(units) +
                                                  ", less than one unit; expected a larger limit or share");
        };
        if (scaled(limit.limit) < 1) fail_small(limit.limit, "limit");
        limit.limit = scaled(limit.limit);
        if (limit.algorithm == Algorithm::token_bucket) {
            if (scaled(limit.burst) < 1) fail_small(limit.burst, "burst");
            limit.burst = scaled(limit.burst);
        }
        limit.name += suffix;
        limit.class_shares.clear();
        limit.fair_share.reset();
        limit.derived.clear();
        // Vendor signals describe the vendor's limit, the parent: a derived share matches none.
        limit.feedback = LimitFeedback{};
        limit.derived_from = parent_index;
        limit.counted_classes = counted;
        config_->limits[parent_index].derived.push_back(config_->limits.size());
        config_->limits.push_back(std::move(limit));
    }

    // Which of the vendor's limits this one is (docs/feedback.md, "Which limit a signal describes").
    static LimitFeedback read_limit_feedback(const Node& node) {
        LimitFeedback feedback;
        const Map map(node, kLimitFeedbackKeys);
        if (const auto v = map.get("vendor_limit")) feedback.vendor_limit = v->integer(1);
        if (const auto v = map.get("vendor_limit_type")) {
            constexpr std::string_view expected = "the name the vendor gives this limit, e.g. key or org";
            feedback.vendor_limit_type = v->text(expected);
            if (feedback.vendor_limit_type.empty() || feedback.vendor_limit_type.size() > 64)
                v->fail("vendor_limit_type must be 1 to 64 characters", expected);
        }
        return feedback;
    }

    static void read_rate(const Node& node, LimitConfig& limit) {
        constexpr std::string_view expected = "N/duration, e.g. rate: 4/1s or rate: 100/1m";
        const auto text = node.text(expected);
        const auto slash = text.find('/');
        if (slash == std::string::npos) node.fail("rate " + echoed(text) + " has no '/'", expected);
        const auto count_text = text.substr(0, slash);
        auto period_text = text.substr(slash + 1);
        // "4/s" reads naturally as "4 per second".
        if (!period_text.empty() && std::isalpha(static_cast<unsigned char>(period_text.front()))) {
            period_text.insert(0, "1");
        }
        std::int64_t count = 0;
        const auto [end, ec] =
            std::from_chars(count_text.data(), count_text.data() + count_text.size(), count);
        if (count_text.empty() || ec != std::errc() || end != count_text.data() + count_text.size()) {
            node.fail("rate " + echoed(text) + ": " + echoed(count_text) + " is not an integer", expected);
        }
        if (count < 1) node.fail("rate " + echoed(text) + ": the count must be at least 1", expected);
        const auto period = parse_duration(period_text);
        if (!period || *period <= Duration::zero()) {
            node.fail("rate " + echoed(text) + ": " + echoed(text.substr(slash + 1)) +
                          " is not a positive duration",
                      expected);
        }
        if (*period > kMaxWindow) {
            node.fail("rate " + echoed(text) + ": " + echoed(text.substr(slash + 1)) + " is longer than " +
                          describe_bound(kMaxWindow),
                      std::string(expected) + ", with a period of at most " + describe_bound(kMaxWindow));
        }
        limit.limit = count;
        limit.window = *period;
    }

    // A fixed window's periods are aligned to UTC midnight (+ utc_offset) so that, like the
    // vendor's daily quota, they restart at the same instants after a sidecar restart; that
    // only works when the periods tile a day exactly.
    static void check_calendar_window(const Node& node, Duration window) {
        if (kDay % window == Duration::zero() || window % kDay == Duration::zero()) return;
        node.fail("fixed_window window " + node.text("") +
                      " neither divides a day evenly nor is a whole number of days (periods are aligned to "
                      "the calendar day)",
                  "a window such as 1s, 1m, 5m, 1h, 6h, 1d or 7d");
    }

    std::vector<KeySource> read_key(const Node& node) {
        constexpr std::string_view expected =
            "method, {header: NAME}, {query: NAME}, {path_param: NAME} (each optionally with group_by), or a "
            "list of these";
        std::vector<KeySource> key;
        const auto items = node.is_list() ? node.items(expected) : std::vector<Node>{node};
        for (const auto& item : items) {
            KeySource source;
            if (item.is_scalar()) {
                if (item.text(expected) != "method")
                    item.fail("unknown key source " + echoed(item.text("")), expected);
                source.kind = KeySource::Kind::method;
            } else {
                const Map map(item, kKeySourceKeys);
                const auto sources = map.entries().size() - (map.find("group_by") ? 1 : 0);
                if (sources != 1)
                    item.fail("a key source needs exactly one of header, query, path_param", expected);
                const auto& entry = *std::find_if(map.entries().begin(), map.entries().end(),
                                                  [](const Entry& e) { return e.key != "group_by"; });
                if (entry.key == "header") {
                    source.kind = KeySource::Kind::header;
                    source.name = entry.value.text("a header name");
                    if (!is_http_token(source.name))
                        entry.value.fail_expected("a header name (an HTTP token)");
                } else if (entry.key == "query") {
                    source.kind = KeySource::Kind::query;
                    source.name = entry.value.string("a query parameter name");
                } else {
                    source.kind = KeySource::Kind::path_param;
                    source.name = entry.value.text("a path parameter name");
                    if (!valid_name(source.name) || source.name.find('.') != std::string::npos) {
                        entry.value.fail_expected("a path parameter name of letters, digits, '_' and '-'");
                    }
                }
                if (const auto v = map.get("group_by")) source.group_by = read_group_by(*v);
            }
            key.push_back(std::move(source));
        }
        return key;
    }

    // `group_by: {file: orgs.yaml}` or `group_by: {groups: {acme: [k1, k2]}}`, plus
    // `unmapped: shared | own`. A file is read relative to the configuration's directory, once
    // however many limits name it.
    std::shared_ptr<const KeyGroups> read_group_by(const Node& node) {
        constexpr std::string_view expected =
            "{file: PATH} or {groups: {GROUP: [VALUE, ...]}}, optionally with unmapped: shared | own";
        if (!node.is_map()) node.fail_expected(expected);
        const Map map(node, kGroupByKeys);
        const auto* file = map.find("file");
        const auto* inline_groups = map.find("groups");
        if ((file != nullptr) == (inline_groups != nullptr))
            node.fail("group_by needs exactly one of file, groups", expected);
        auto unmapped = KeyGroups::Unmapped::shared;
        if (const auto v = map.get("unmapped")) {
            const auto text = v->text("shared or own");
            if (text == "own") {
                unmapped = KeyGroups::Unmapped::own;
            } else if (text != "shared") {
                v->fail("unknown unmapped policy " + echoed(text), "shared or own");
            }
        }
        std::shared_ptr<KeyGroups> groups;
        if (inline_groups) {
            groups = std::make_shared<KeyGroups>();
            read_groups(inline_groups->value, *groups);
        } else {
            const auto path = resolve_relative(file->value.string("a file path"));
            auto& cached =
                group_files_[path.string() + (unmapped == KeyGroups::Unmapped::own ? "\n1" : "\n0")];
            if (!cached) cached = load_group_file(file->value, path);
            return cached;
        }
        groups->unmapped = unmapped;
        return groups;
    }

    std::filesystem::path resolve_relative(const std::string& name) const {
        std::filesystem::path path(name);
        if (path.is_relative() && file_ != "<string>")
            path = std::filesystem::path(file_).parent_path() / path;
        return path;
    }

    std::shared_ptr<KeyGroups> load_group_file(const Node& at, const std::filesystem::path& path) {
        constexpr std::uintmax_t kMaxGroupFileBytes = 64u << 20;
        const std::string expected = "a readable YAML file mapping group names to lists of key values";
        std::error_code ec;
        if (!std::filesystem::is_regular_file(path, ec))
            at.fail("group file " + echoed(path.string()) + " does not exist or is not a regular file",
                    expected);
        if (std::filesystem::file_size(path, ec) > kMaxGroupFileBytes)
            at.fail("group file " + echoed(path.string()) + " is larger than 64 MiB", expected);
        std::ifstream in(path, std::ios::binary);
        std::ostringstream text;
        if (in) text << in.rdbuf();
        if (!in || in.bad()) at.fail("cannot read group file " + echoed(path.string()), expected);
        // Node keeps a pointer to its file's name: keep the name alive as long as the loader.
        const std::string& name = group_file_names_.emplace_back(path.string());
        YAML::Node document;
        try {
            document = YAML::Load(text.str());
        } catch (const YAML::Exception& e) {
            throw ConfigError(location_of(name, e.mark), "invalid YAML: " + e.msg + "; expected " + expected);
        }
        auto groups = std::make_shared<KeyGroups>();
        groups->source = path.string();
        // Untagged nodes are placed in the file being loaded (Node::where): here, the group file.
        struct FileScope {
            explicit FileScope(const std::string* file) : previous(t_config_file) { t_config_file = file; }
            ~FileScope() { t_config_file = previous; }
            const std::string* previous;
        } scope(&name);
        read_groups(Node(name, document, document.Mark(), "group file"), *groups);
        return groups;
    }

    static void read_groups(const Node& node, KeyGroups& groups) {
        constexpr std::string_view expected = "a map from group names to lists of key values";
        if (node.is_null()) return;  // no groups: every value is unmapped
        if (!node.is_map()) node.fail_expected(expected);
        const Map map(node, {}, "group");
        std::unordered_map<std::string, int> first_line;  // value -> line it was listed on
        for (const auto& entry : map.entries()) {
            if (entry.key.empty()) entry.key_node.fail("a group name is empty", expected);
            ++groups.group_count;
            for (const auto& item : entry.value.items("a list of key values", true)) {
                auto value = item.text("a key value (a string)");
                const auto [seen, inserted] = first_line.try_emplace(value, item.line());
                // Values are API keys: an error names where, never what.
                if (!inserted) {
                    item.fail(
                        "this key value is listed twice (first at line " + std::to_string(seen->second) + ")",
                        "each value in one group only");
                }
                groups.group_of.emplace(std::move(value), entry.key);
            }
        }
    }

    static void read_cost(const Node& node, LimitConfig& limit, const std::string& algorithm_name) {
        auto& cost = limit.cost;
        // A token bucket admits at most `burst` at once; the others at most `limit`.
        const auto capacity = limit.algorithm == Algorithm::token_bucket ? limit.burst : limit.limit;
        const auto capacity_name = limit.algorithm == Algorithm::token_bucket ? "burst" : "limit";
        const auto check_capacity = [&](const Node& at, std::int64_t value, const std::string& what) {
            if (value > capacity) {
                at.fail(what + " " + std::to_string(value) + " exceeds the " + algorithm_name + " " +
                            capacity_name + " " + std::to_string(capacity) +
                            ", so such a request could never be admitted",
                        "a cost of at most " + std::to_string(capacity));
            }
        };
        if (node.is_scalar()) {
            cost.fixed = node.integer(0);
            check_capacity(node, cost.fixed, "cost");
            return;
        }
        if (!node.is_map())
            node.fail_expected(
                "an integer (a fixed cost), {header: NAME, default: N, max: N} or {body: {array_length: "
                "/POINTER}}");
        const Map map(node, kCostKeys);
        const auto body = map.get("body");
        const auto settle = map.get("settle");
        if (body) {
            if (const auto header = map.get("header"))
                header->fail("a cost is read from a header or from the body, not both",
                             "only one of header, body");
            cost.body = read_body_cost(*body);
        } else if (const auto header = map.get("header"); header || !settle) {
            const auto required = header
                                      ? *header
                                      : map.require("header",
                                                    "the header carrying the cost (or body: {array_length: "
                                                    "/POINTER}, or a plain integer for a fixed cost)");
            cost.header = required.text("a header name");
            if (!is_http_token(cost.header)) required.fail_expected("a header name (an HTTP token)");
        }
        if (settle) {
            const Map settle_map(*settle, kSettleKeys);
            constexpr std::string_view kSettleSources =
                "header: NAME (the response header giving the units charged) or body: {number: /POINTER} (a "
                "value of the response's JSON body)";
            const auto settle_body = settle_map.get("body");
            if (const auto header = settle_map.get("header")) {
                if (settle_body)
                    settle_body->fail("a cost is settled from a header or from the body, not both",
                                      "only one of header, body");
                cost.settle_header = header->text("a header name");
                if (!is_http_token(cost.settle_header))
                    header->fail_expected("a header name (an HTTP token)");
            } else if (settle_body) {
                cost.settle_body = read_body_cost(*settle_body);
            } else {
                settle->fail("nothing to settle from", kSettleSources);
            }
        }
        if (const auto v = map.get("default")) {
            if (body)
                v->fail("a body cost has no default: a body without the cost is refused (cost_unreadable)",
                        "no default with body");
            cost.fixed = v->integer(0);
            check_capacity(*v, cost.fixed, "default cost");
        }
        if (const auto v = map.get("max")) cost.max = v->integer(0);
    }

    // body: {array_length: /POINTER} or {number: /POINTER}, and max_bytes (docs/costs.md).
    static BodyCostConfig read_body_cost(const Node& node) {
        const Map map(node, kBodyCostKeys);
        const auto length = map.get("array_length");
        const auto number = map.get("number");
        if (length && number)
            number->fail("a body cost is an array's length or a number, not both",
                         "one of array_length, number");
        if (!length && !number)
            node.fail(
                "no value to read",
                "array_length: /POINTER (an array's length) or number: /POINTER (a non-negative integer)");
        BodyCostConfig body;
        body.kind = length ? cost::BodyCostKind::array_length : cost::BodyCostKind::number;
        const Node& at = length ? *length : *number;
        auto pointer = cost::parse_json_pointer(at.text("a JSON Pointer (RFC 6901), e.g. /emails"));
        if (!pointer.error.empty()) at.fail("not a JSON Pointer: " + echoed(at.text("")), pointer.error);
        body.pointer = std::move(pointer.tokens);
        if (const auto v = map.get("max_bytes")) body.max_bytes = v->size(1, kMaxBufferedBodyBytes);
        return body;
    }

    // ---- queue --------------------------------------------------------------
    static QueueConfig read_queue(const Node& node, QueueConfig queue) {
        const Map map(node, kQueueKeys);
        if (const auto v = map.get("max_depth")) queue.max_depth = static_cast<std::size_t>(v->integer(0));
        if (const auto v = map.get("max_wait")) queue.max_wait = v->duration(Sign::non_negative, kMaxWait);
        return queue;
    }

    // ---- routes -------------------------------------------------------------
    void read_routes(const Map& top) {
        const auto given = top.get("routes");
        if (!given && expanded_.empty()) {
            top.require("routes", "a 'routes' list with at least one route (or a 'vendors' entry)");
        }
        if (given) {
            const auto items = given->items(
                "a list of routes, e.g. [{match: {path_prefix: /intercom/}, upstream: intercom}]");
            if (items.empty() && expanded_.empty()) given->fail("no routes", "at least one route");
            for (std::size_t i = 0; i < items.size(); ++i) config_->routes.push_back(read_route(items[i], i));
        }
        // The vendors' routes follow the file's own: a route written by hand for one endpoint
        // (e.g. a stricter limit) is matched before the preset's catch-all.
        for (auto& vendor : expanded_) {
            for (const auto& item : vendor.routes) {
                with_context(vendor, item,
                             [&] { config_->routes.push_back(read_route(item, config_->routes.size())); });
            }
            config_->vendors.push_back(std::move(vendor.instance));
        }
    }

    RouteConfig read_route(const Node& item, std::size_t index) {
        RouteConfig route;
        route.location = item.where();
        const Map map(item, kRouteKeys);
        const auto name_node = map.get("name");
        route.name = name_node ? name_node->name("a route") : "route-" + std::to_string(index + 1);
        // Indexed, not scanned: comparing each route with every earlier one made loading
        // quadratic (40,000 routes took 5.7 s).
        if (const auto [first, inserted] = route_lines_.try_emplace(route.name, route.location.line);
            !inserted) {
            (name_node ? *name_node : item)
                .fail("duplicate route name " + echoed(route.name) + " (first at line " +
                          std::to_string(first->second) + ")",
                      "unique route names");
        }
        // Read again under the route's name: "route 'intercom' upstream" is easier to find
        // than "routes[3].upstream".
        const Node node = item.renamed("route " + echoed(route.name));
        const Map fields(node, kRouteKeys);

        const auto strip = fields.get("strip_prefix");
        if (const auto v = fields.get("match")) read_match(*v, route, strip && strip->boolean());
        if (strip) {
            const auto& v = strip;
            route.strip_prefix = v->boolean();
            if (route.strip_prefix && route.match.path_prefix.empty()) {
                fields.find("strip_prefix")
                    ->key_node.fail("strip_prefix without match.path_prefix", "a match.path_prefix to strip");
            }
        }

        const auto upstream = fields.require("upstream", "the name of the upstream to forward to");
        route.upstream = upstream.text("an upstream name");
        const auto found_upstream = upstream_indexes_.find(route.upstream);
        if (found_upstream == upstream_indexes_.end()) {
            std::vector<std::string> names;
            for (const auto& u : config_->upstreams) names.push_back(u.name);
            upstream.fail("unknown upstream " + echoed(route.upstream) + suggestion(route.upstream, names),
                          "one of " + join(names));
        }
        route.upstream_index = found_upstream->second;

        if (const auto v = fields.get("limits")) read_route_limits(*v, route);
        route.queue = config_->queue_defaults;
        if (const auto v = fields.get("queue")) route.queue = read_queue(*v, config_->queue_defaults);
        if (const auto v = fields.get("retry")) route.retry = read_retry(*v);
        if (const auto v = fields.get("priority")) route.priority = class_index(*v);
        // One fair-shared limit per route: a request has one place among its callers.
        const LimitConfig* fair = nullptr;
        for (const auto index : route.limit_indexes) {
            const LimitConfig& limit = config_->limits[index];
            if (!limit.fair_share) continue;
            if (fair) {
                fields.require("limits", "")
                    .fail("two fair-shared limits, " + echoed(fair->name) + " and " + echoed(limit.name),
                          "at most one limit with fair_share per route");
            }
            fair = &limit;
        }
        return route;
    }

    static RetryConfig read_retry(const Node& node) {
        RetryConfig retry;
        const Map map(node, kRetryKeys);
        if (const auto b = map.get("on_vendor_429")) retry.on_vendor_429 = b->boolean();
        if (const auto b = map.get("non_idempotent")) retry.non_idempotent = b->boolean();
        if (const auto v = map.get("max_attempts"))
            retry.max_attempts = static_cast<unsigned>(v->integer(1, 10));
        return retry;
    }

    // `strips`: the route has strip_prefix: true, so a `path` may go with the path_prefix (it then
    // matches what follows the prefix: how a preset's routes are mounted under `path_prefix`).
    void read_match(const Node& node, RouteConfig& route, bool strips) {
        auto& match = route.match;
        const Map map(node, kMatchKeys);
        if (const auto v = map.get("listener")) {
            std::vector<std::string> names;
            for (const auto& l : config_->listeners) names.push_back(l.name);
            for (const auto& item : v->items("a listener name or a list of them", true)) {
                const auto name = item.text("a listener name");
                const auto found = std::find(names.begin(), names.end(), name);
                if (found == names.end()) {
                    item.fail("unknown listener " + echoed(name) + suggestion(name, names),
                              "one of " + join(names));
                }
                match.listeners.push_back(name);
                route.listener_indexes.push_back(static_cast<std::size_t>(found - names.begin()));
            }
        }
        if (const auto v = map.get("host")) {
            constexpr std::string_view expected =
                "a host such as api.example.com or *.example.com, or a list of them";
            for (const auto& item : v->items(expected, true)) {
                const auto host = item.text(expected);
                if (const auto error = route::validate_host_pattern(host); !error.empty()) {
                    item.fail_reason(error, expected);
                }
                match.hosts.push_back(host);
            }
        }
        if (const auto v = map.get("methods")) {
            constexpr std::string_view expected = "an HTTP method such as GET, or a list of them";
            for (const auto& item : v->items(expected, true)) {
                auto method = item.text(expected);
                if (!is_http_token(method)) item.fail(echoed(method) + " is not an HTTP method", expected);
                // Methods are case-sensitive on the wire (RFC 9110 9.1), but a lower-case
                // "get" in a config is a typo for GET, never a custom method.
                for (auto& c : method) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
                match.methods.push_back(method);
            }
        }
        if (const auto v = map.get("path_prefix")) {
            constexpr std::string_view expected = "a path prefix starting with '/', e.g. /intercom/";
            match.path_prefix = v->string(expected);
            if (match.path_prefix.front() != '/')
                v->fail(echoed(match.path_prefix) + " does not start with '/'", expected);
            if (has_space_or_control(match.path_prefix) ||
                match.path_prefix.find_first_of("?#") != std::string::npos) {
                v->fail(echoed(match.path_prefix) + " contains a space, control character, '?' or '#'",
                        expected);
            }
        }
        if (const auto v = map.get("path")) {
            constexpr std::string_view expected =
                "a path pattern starting with '/', e.g. "
                "/api/v2.*/publisher/{publisher_id}/lead-result/{lead_id}";
            if (map.get("path_prefix") && !strips) {
                map.find("path")->key_node.fail("both 'path_prefix' and 'path' are given",
                                                "at most one of path_prefix and path, or strip_prefix: true "
                                                "(the path then matches what follows the prefix)");
            }
            match.path = v->string(expected);
            if (match.path.front() != '/') v->fail(echoed(match.path) + " does not start with '/'", expected);
            if (const auto error = route::validate_path_pattern(match.path); !error.empty()) {
                v->fail_reason("invalid path pattern " + echoed(match.path) + ": " + error, expected);
            }
        }
    }

    void read_route_limits(const Node& node, RouteConfig& route) {
        const auto params = pattern_params(route.match.path);
        for (const auto& item : node.items("a list of limit names, e.g. limits: [intercom-rolling]", true)) {
            const auto name = item.text("a limit name");
            const auto found = limit_indexes_.find(name);
            if (found == limit_indexes_.end()) {
                std::vector<std::string> names;
                for (const auto& l : config_->limits) names.push_back(l.name);
                item.fail("unknown limit " + echoed(name) + suggestion(name, names),
                          names.empty() ? std::string("a limit defined under 'limits' (there are none)")
                                        : "one of " + join(names));
            }
            if (std::find(route.limits.begin(), route.limits.end(), name) != route.limits.end()) {
                item.fail("limit " + echoed(name) + " is listed twice",
                          "each limit once (a request counts once per limit)");
            }
            // A path parameter can only key a limit when this route's pattern captures it;
            // otherwise every request would share the "absent" key without anyone noticing.
            const auto& limit = config_->limits[found->second];
            for (const auto& source : limit.key) {
                if (source.kind != KeySource::Kind::path_param) continue;
                if (std::find(params.begin(), params.end(), source.name) == params.end()) {
                    item.fail("limit " + echoed(name) + " is keyed by path_param " + echoed(source.name) +
                                  ", which this route's match.path does not capture",
                              "a match.path with {" + source.name + "}, or a limit keyed otherwise");
                }
            }
            route.limits.push_back(name);
            route.limit_indexes.push_back(found->second);
        }
    }

    std::string file_;
    LoadOptions options_;
    std::shared_ptr<Config> config_ = std::make_shared<Config>();
    std::optional<Node> admin_listen_;
    std::vector<NodeOrigin> origins_;           // see NodeOrigin; indexed by the tag's number
    std::deque<std::string> preset_files_;      // Nodes point at these names: stable addresses
    std::vector<YAML::Node> preset_documents_;  // the expanded presets, alive while their Nodes are read
    std::vector<ExpandedVendor> expanded_;
    std::vector<std::string> local_limits_;  // the preset being expanded: its limit names
    // Name -> index, so that resolving a route's references costs the same with 10 or
    // 100,000 definitions.
    std::unordered_map<std::string, std::size_t> upstream_indexes_;
    std::unordered_map<std::string, std::size_t> limit_indexes_;
    std::unordered_map<std::string, int> route_lines_;               // route name -> line of its definition
    std::map<std::string, std::shared_ptr<KeyGroups>> group_files_;  // path + unmapped -> its groups
    std::deque<std::string> group_file_names_;  // stable addresses: Nodes point at their file's name
};

}  // namespace

std::shared_ptr<const Config> load_config_string(const std::string& yaml, const std::string& source_name,
                                                 const LoadOptions& options) {
    if (!(options.time_scale > 0) || options.time_scale > 1e9) {
        throw ConfigError({source_name, 1, 1}, "time scale " + std::to_string(options.time_scale) +
                                                   " is out of range; expected a number > 0 (e.g. 30)");
    }
    return Loader(source_name, options).load(yaml);
}

std::vector<std::string> preset_search_path(const std::string& config_file,
                                            const std::string& presets_dir_key, const LoadOptions& options) {
    std::vector<std::string> out;
    const auto add = [&](const std::filesystem::path& folder) {
        auto text = folder.empty() ? std::string(".") : folder.lexically_normal().string();
        if (std::find(out.begin(), out.end(), text) == out.end()) out.push_back(std::move(text));
    };
    const auto base = folder_of(config_file);
    if (!options.presets_dir.empty()) add(options.presets_dir);
    if (!presets_dir_key.empty()) {
        const std::filesystem::path given(presets_dir_key);
        add(given.is_absolute() ? given : base / given);
    }
    add(base / "presets");
    add(SLUICE_PRESETS_DIR);
    return out;
}

std::vector<std::string> available_presets(const std::vector<std::string>& search_path) {
    std::vector<std::string> names;
    for (const auto& folder : search_path) {
        std::error_code ec;
        for (auto it = std::filesystem::directory_iterator(folder, ec);
             !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
            const auto& path = it->path();
            if (path.extension() == ".yaml") names.push_back(path.stem().string());
        }
    }
    std::sort(names.begin(), names.end());
    names.erase(std::unique(names.begin(), names.end()), names.end());
    return names;
}

std::shared_ptr<const Config> load_config_file(const std::string& path, const LoadOptions& options) {
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) {
        throw ConfigError({path, 1, 1},
                          "cannot read the file: it is a directory; expected a readable YAML file");
    }
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        throw ConfigError({path, 1, 1}, std::string("cannot read the file: ") + std::strerror(errno) +
                                            "; expected a readable YAML file (pass it with --config)");
    }
    std::ostringstream text;
    text << in.rdbuf();
    if (in.bad()) {
        throw ConfigError({path, 1, 1}, "error while reading the file; expected a readable YAML file");
    }
    return load_config_string(text.str(), path, options);
}

}  // namespace sluice::config
