#pragma once
// The validated configuration: an immutable value built once by the loader
// (loader.hpp) and shared as std::shared_ptr<const Config>. Hot reload (roadmap)
// swaps whole snapshots atomically; nothing here is mutated after load.
//
// Every cross-reference (route -> upstream, route -> limits, route -> listener)
// has been checked by the loader and is also resolved to an index, so the
// request path never looks a name up.
//
// docs/configuration.md documents every key and its default; keep them in step.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "sluice/cost/body_cost.hpp"
#include "sluice/feedback/vendor_signals.hpp"

namespace sluice::config {

using Duration = std::chrono::nanoseconds;
using namespace std::chrono_literals;

// Where a YAML node was written, for error messages raised after parsing
// (e.g. by the route compiler): "file:line:column".
struct SourceLocation {
    std::string file;
    int line = 0;    // 1-based
    int column = 0;  // 1-based
};

struct Timeouts {
    Duration client_header = 10s;       // first byte to end of request header
    Duration client_body = 30s;         // each read of the request body (stall timeout)
    Duration client_body_total = 300s;  // the whole request body, from its first read to its end
    Duration client_idle = 60s;         // keep-alive: between the end of a response and the next request
    Duration client_write = 30s;        // each write to the client (stall timeout)
};

struct ForwardedHeaders {
    bool x_forwarded_for = false;    // append the client address (off: vendors need not see internal IPs)
    bool x_forwarded_proto = false;  // set to the client-side scheme ("http")
};

enum class RateLimitHeaderStyle {
    none,  // no rate-limit headers from sluice
    ietf,  // RateLimit + RateLimit-Policy (draft-ietf-httpapi-ratelimit-headers)
    x,     // X-RateLimit-Limit / -Remaining / -Reset (seconds until reset)
    both,
};

struct RateLimitHeaders {
    RateLimitHeaderStyle style = RateLimitHeaderStyle::both;  // on sluice's own 429s
    bool on_proxied =
        false;  // also add them to relayed vendor responses (off: the vendor's own headers pass untouched)
};

struct AdminConfig {
    bool enabled = true;
    std::string address = "127.0.0.1";  // loopback: the status page shows limit state
    std::uint16_t port = 9901;
    // A file holding the bearer token every admin endpoint but /healthz and /readyz
    // requires (read at start, never by --check, never logged); empty: no token.
    std::string token_file;
    // Or the name of an environment variable holding it (read at start, same checks); at
    // most one of the two. Never the token itself: a config file gets copied and printed.
    std::string token_env;
    std::size_t status_keys = 20;      // keys shown per limit on /status, the most constrained
    std::size_t limits_top_keys = 20;  // keys shown per limit on /v1/limits (and the page at /), by pressure
};

// The access log (docs/operations.md, "The access log"): one JSON line per request.
struct AccessLogConfig {
    bool enabled = true;
    std::string path = "stdout";  // "stdout", "stderr", or a file (appended to, created if missing)
    bool log_query = false;       // the query string, with the values of limits' query keys redacted
    // Lines waiting for the writer thread; a line that does not fit is dropped and counted.
    std::size_t buffer_bytes = 1 << 20;
};

// Limit counts kept across a restart (the state file, src/state): a daily quota 60 % used
// stays 60 % used when sluice comes back.
// Where limits keep their counts (docs/distributed.md): in this process (memory, the default),
// or in a Redis shared by every sluice that points at it (replicas spending one vendor quota).
enum class StateBackend { memory, redis };

// server.state.redis: how to reach the Redis that holds shared limits.
struct RedisConfig {
    std::string host = "127.0.0.1";  // address "host:port"
    std::uint16_t port = 6379;
    std::string unix_path;  // address "unix:/path": host and port unused
    int db = 0;
    std::string username;  // Redis 6 ACL user; empty: the default user
    // The password is never written in the config: a file holding it, or an environment
    // variable's name (read at start, like the admin token). Neither: no AUTH.
    std::string password_file;
    std::string password_env;
    bool tls = false;
    std::string tls_ca_file;      // PEM bundle; empty = the system store
    std::string tls_server_name;  // SNI and the name verified; empty = host
    bool tls_verify = true;
    std::string key_prefix = "sluice";  // every key is "{key_prefix}:...": one hash tag (Cluster-safe)
    Duration connect_timeout = 1s;
    Duration command_timeout = std::chrono::milliseconds(250);
    // How many sluice share this Redis: while it is unreachable, a limit with
    // on_redis_failure: local gives each of them limit / replicas (at least 1).
    unsigned replicas = 1;
    // Concurrency permits are leases of this length, renewed every lease/3 while the exchange
    // runs: a replica that dies gives its permits back within one lease.
    Duration lease = 10s;
};

struct StateConfig {
    StateBackend backend = StateBackend::memory;
    RedisConfig redis;  // backend: redis only
    bool enabled = true;
    // The folder holding state.bin. The loader resolves it: "sluice-state" in the config file's
    // folder by default, and a relative path is relative to that folder (not to the cwd).
    std::string dir;
    Duration save_interval = 1s;  // how often the limits' keys are saved (100ms to 1h)
    // Sliding windows and token buckets shorter than this are not saved (refilled before a
    // restart is over); fixed windows always are, concurrency limits never.
    Duration min_window = std::chrono::minutes(1);
};

struct ServerConfig {
    unsigned workers = 1;                      // io_context threads
    std::size_t max_header_bytes = 16 * 1024;  // request header limit -> 431
    // Request body limit -> 413 (bodies stream; this is a policy cap).
    std::uint64_t max_body_bytes = 1ull << 30;
    // A request body up to this size is read whole before the request takes quota or an upstream
    // connection (a slow client then holds neither); larger ones are streamed.
    std::size_t max_buffered_body_bytes = 64 * 1024;
    std::size_t max_client_connections = 10'000;
    Timeouts timeouts;
    ForwardedHeaders forwarded;
    RateLimitHeaders rate_limit_headers;
    AdminConfig admin;
    AccessLogConfig access_log;
    StateConfig state;
    // After SIGTERM: how long requests in flight and queued may take to finish (0 to 10 min).
    Duration drain_timeout = 10s;
};

struct ListenerConfig {
    std::string name;  // "default" when not given for the first listener, else "listener-N"
    std::string address = "127.0.0.1";
    std::uint16_t port = 8080;  // 0 = ephemeral (tests); the bound port is logged
    SourceLocation location;
};

struct TlsConfig {
    bool verify = true;       // certificate chain AND hostname; turning it off must be explicit
    std::string ca_file;      // PEM bundle; empty = the system CA store
    std::string server_name;  // SNI and the name verified; empty = the upstream host
};

// What sluice does with the vendor's own rate-limit signals (docs/feedback.md).
struct FeedbackSettings {
    bool enabled = true;               // read 429s, Retry-After and rate-limit headers and act on them
    bool pause_on_429 = true;          // a vendor 429 pauses the limit(s) it describes
    bool cap_from_remaining = true;    // a Remaining/Reset report caps the limit(s) it describes
    bool learn = true;                 // a vendor 429 lowers a learned limit kept across windows
    feedback::FeedbackConfig signals;  // reset_mode, body_field, limit_type_field, max_pause, ...
    Duration default_pause = 1s;       // pause after a 429 that says nothing about when to retry
};

struct UpstreamConfig {
    std::string name;
    std::string scheme;      // "http" or "https"
    std::string host;        // DNS name or IP literal (IPv6 without brackets)
    std::uint16_t port = 0;  // defaulted from the scheme (80/443) when the URL has none
    std::string base_path;   // "" or "/v1" (no trailing slash): prepended to forwarded paths
    TlsConfig tls;
    std::size_t max_connections = 64;       // open connections (busy + idle) to this upstream
    std::size_t max_idle_connections = 64;  // defaults to max_connections
    Duration idle_timeout = 60s;            // an idle pooled connection is closed after this
    Duration connect_timeout = 5s;          // DNS + TCP connect + TLS handshake
    Duration response_timeout = 30s;        // request sent -> response header received
    Duration body_timeout = 30s;            // each read of the response body (stall timeout)
    // Requests whose body is streamed (larger than server.max_buffered_body_bytes) hold a
    // connection for as long as the client takes to send it: at most this many at once, so slow
    // uploads cannot take the whole pool. Defaults to half of max_connections (at least 1).
    std::size_t max_streamed_bodies = 32;
    FeedbackSettings feedback;
    SourceLocation location;
};

struct QueueConfig {
    std::size_t max_depth = 1000;  // waiting requests per queue; beyond -> 429 queue_full at once
    Duration max_wait = 30s;       // a request that could not be admitted within this -> 429 at once
};

// vendor_gate is never written in YAML: it is the implicit per-upstream limit that
// vendor feedback pauses for routes without limits of their own (limit/vendor_gate.hpp).
enum class Algorithm { token_bucket, sliding_window, fixed_window, concurrency, vendor_gate };

// Key values mapped to the group they belong to (`group_by`), e.g. API keys to their vendor
// organization, so that a limit keyed by the group holds every key of one organization together
// (Close's organization limit) while another limit on the same header stays per key.
struct KeyGroups {
    // Lookup by a string_view of the request's value, without building a std::string.
    struct Hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
    };
    // What a value listed in no group is keyed as. `shared`: all such values share one bucket (safe:
    // a key whose organization is unknown cannot add a second organization's worth of traffic).
    // `own`: each is its own group (as if ungrouped).
    enum class Unmapped { shared, own };

    std::string source;  // the file it was read from, or "" when written inline
    std::unordered_map<std::string, std::string, Hash, std::equal_to<>> group_of;  // value -> group
    std::size_t group_count = 0;
    Unmapped unmapped = Unmapped::shared;
};

// What partitions a keyed limit. Several sources combine into one key.
struct KeySource {
    enum class Kind { header, query, path_param, method };
    Kind kind = Kind::header;
    std::string name;  // header name (case-insensitive), query parameter, or path parameter; empty for method
    // Non-null: the value is replaced by its group before it is hashed (not for `method`).
    std::shared_ptr<const KeyGroups> group_by;
};

// A cost read from the request's JSON body (docs/costs.md): the length of the array, or the
// integer, at an RFC 6901 pointer. The body must have been read whole, up to `max_bytes`.
struct BodyCostConfig {
    cost::BodyCostKind kind = cost::BodyCostKind::array_length;
    std::vector<std::string> pointer;  // the pointer's tokens, unescaped (empty: the whole body)
    std::size_t max_bytes = 0;         // 0: server.max_buffered_body_bytes; at most 16 MiB
};

struct CostConfig {
    std::string header;                  // empty: every request costs `fixed`
    std::int64_t fixed = 1;              // the cost, or the default when the header is absent
    std::int64_t max = 1'000'000'000;    // a request costing more is refused (cost_too_large)
    std::optional<BodyCostConfig> body;  // set: the cost is read from the body (no header then)
    // Set (one of the two): where the vendor's response gives the units actually charged, a
    // header or a value in its JSON body; the limit is corrected after the response (charged
    // more, or given back).
    std::string settle_header;
    std::optional<BodyCostConfig> settle_body;
    bool settles() const noexcept { return !settle_header.empty() || settle_body.has_value(); }
};

// Which of the vendor's limits this limit is (docs/feedback.md, "Which limit a signal
// describes"): a vendor signal is applied to the limits it names, and only to them.
struct LimitFeedback {
    // The X-RateLimit-Limit (or IETF quota) value the vendor sends for this limit;
    // unset: this limit's own `limit`.
    std::optional<std::int64_t> vendor_limit;
    // The value of the upstream's limit_type_field (Close: error.rate_limit_type, "key"
    // or "org") that names this limit; empty: matched by value only.
    std::string vendor_limit_type;
};

// What a shared limit (server.state.backend: redis) does while Redis cannot answer.
enum class RedisFailurePolicy : std::uint8_t {
    local,  // limit / replicas per replica, in memory, until Redis answers again (the default)
    deny,   // fail closed: 503 shared_state_unavailable at once
    allow,  // fail open: only the limits held in this process apply (never a default)
};

// Priority classes (docs/priorities.md, the top-level `priorities`). Absent: every request is of
// one class and waits in arrival order, as without this section.
struct PriorityConfig {
    std::vector<std::string> classes;  // highest first; empty: no classes
    std::size_t default_class = 0;  // index into classes: a request that names none, on a route without one
    // A waiting request competes as if it had arrived (class index * aging) later: a lower class
    // is overtaken only by higher-class requests that arrive within that much of it.
    Duration aging = std::chrono::seconds(2);
    bool enabled() const noexcept { return !classes.empty(); }
    // The class named `name`, if any.
    std::optional<std::size_t> find(std::string_view name) const;
};

// A class's share of one limit (a limit's `classes`), in percent of its `limit`.
struct ClassShare {
    std::size_t class_index = 0;        // into PriorityConfig::classes
    std::optional<unsigned> max_share;  // 1..99: the class's requests take at most this much
    std::optional<unsigned> reserve;    // 1..99: the other classes together take at most 100 - this
};

// Fair sharing of one limit between callers (a limit's `fair_share`, docs/priorities.md).
struct FairShareConfig {
    enum class Caller { header, listener };
    Caller caller = Caller::header;
    std::string header;  // Caller::header: the request header naming the caller
    // Weights by caller name (a header value, or a listener name), file order.
    std::vector<std::pair<std::string, std::int64_t>> weights;
    std::int64_t default_weight = 1;  // a caller not listed (or no header)
    std::int64_t total_weight = 1;    // the listed weights and default_weight, summed
    std::int64_t weight_of(std::string_view caller) const noexcept;
};

struct LimitConfig {
    std::string name;
    Algorithm algorithm = Algorithm::sliding_window;
    // sliding_window / fixed_window: admissions (cost units) per window.
    // token_bucket: tokens added per `window` (the rate is limit/window).
    // concurrency: requests in flight.
    std::int64_t limit = 0;
    Duration window{
        0};  // sliding: rolling length; fixed: period aligned to the UTC clock; token: rate period
    std::int64_t burst = 0;  // token_bucket only: bucket size (defaults to limit)
    Duration utc_offset{0};  // fixed_window only: where the period starts, e.g. -5h for a US-Eastern day
    // fixed_window of whole days only: periods start at local midnight in this IANA zone (e.g.
    // America/New_York), following its daylight saving changes; "" = utc_offset applies.
    std::string time_zone;
    Duration margin{0};  // widens the window (sliding/fixed) or slows the refill (token) to absorb jitter
    std::vector<KeySource> key;  // empty: one shared bucket
    CostConfig cost;
    bool enforce = true;            // false = shadow mode: counted and reported, never delays or refuses
    std::size_t max_keys = 10'000;  // keyed limits: tracked keys at most
    LimitFeedback feedback;
    RedisFailurePolicy on_redis_failure = RedisFailurePolicy::local;
    std::vector<ClassShare> class_shares;       // `classes`: caps and reserves (needs `priorities`)
    std::optional<FairShareConfig> fair_share;  // `fair_share`
    // Set by the loader for each cap and reserve: ordinary limits (same algorithm, window, key and
    // cost, a share of `limit`) named "<limit>/class:<class>" (a cap) or "<limit>/reserve:<class>"
    // (the room the other classes share), that only the classes in `counted_classes` consume.
    // They follow the file's limits in Config::limits; a parent lists them in `derived`.
    std::optional<std::size_t> derived_from;
    std::uint64_t counted_classes = 0;  // bit i: class i (derived limits only)
    std::vector<std::size_t> derived;   // indexes into Config::limits
    SourceLocation location;
};

// The most units one request can ever take from `limit`, and one key holds at most: a token
// bucket's burst, any other limit's `limit`. A larger cost can never be admitted.
inline std::int64_t request_capacity(const LimitConfig& limit) noexcept {
    return limit.algorithm == Algorithm::token_bucket && limit.burst > 0 ? limit.burst : limit.limit;
}

// Whether a request of class `class_index` consumes `limit`: every class consumes an ordinary
// limit; a derived one (a class's cap, or the room a reserve leaves) only the classes it counts.
inline bool counts_class(const LimitConfig& limit, std::size_t class_index) noexcept {
    return !limit.derived_from || (limit.counted_classes >> class_index & 1) != 0;
}

struct RouteMatch {
    std::vector<std::string> listeners;  // listener names; empty = every listener
    std::vector<std::string> hosts;      // "api.example.com" or "*.example.com"; empty = any host
    std::vector<std::string> methods;    // upper case; empty = any method
    std::string path_prefix;             // at most one of path_prefix / path
    std::string
        path;  // pattern: /api/v2.*/publisher/{publisher_id}/lead-result/{lead_id}, trailing /** = rest
};

// What happens to a request the vendor answered 429.
struct RetryConfig {
    bool on_vendor_429 = true;    // retry it after the vendor's pause, within the request's max_wait
    bool non_idempotent = false;  // also POST/PATCH (off: their 429 goes back to the client unchanged)
    unsigned max_attempts = 3;    // sends of one request in all, the first included
};

struct RouteConfig {
    std::string name;  // "route-N" (1-based) when not given
    RouteMatch match;
    bool strip_prefix = false;  // remove match.path_prefix before forwarding
    std::string upstream;
    std::size_t upstream_index = 0;  // index into Config::upstreams
    std::vector<std::string> limits;
    std::vector<std::size_t> limit_indexes;     // into Config::limits, same order
    std::vector<std::size_t> listener_indexes;  // into Config::listeners, same order as match.listeners
    QueueConfig queue;  // the top-level `queue` defaults with this route's overrides applied
    RetryConfig retry;
    std::optional<std::size_t>
        priority;  // `priority`: the route's default class (into PriorityConfig::classes)
    SourceLocation location;
};

struct VendorPolicy;  // vendor_policy.hpp

// A `vendors:` entry: a preset expanded under an instance name (docs/configuration.md,
// "vendors"). Its upstreams, limits and routes are ordinary entries of Config (named
// "<instance>" or "<instance>.<name>"); this records where they came from, for
// `sluice check --vendor` and --check --print.
struct VendorInstance {
    std::string name;                            // the instance name (the key under `vendors:`)
    std::string preset;                          // the preset's name
    std::string preset_file;                     // the file it was read from
    std::string tier;                            // the tier chosen ("" = the policy's default)
    std::vector<std::size_t> upstream_indexes;   // into Config::upstreams
    std::shared_ptr<const VendorPolicy> policy;  // the preset's vendor_policy; null if it has none
    SourceLocation location;                     // of the `vendors:` entry
};

struct Config {
    std::string source_file;  // the file it was loaded from ("<string>" for tests)
    // Every limit window, margin, utc_offset and fixed-window period was divided by this at load
    // (LoadOptions::time_scale, --time-scale): for tests and demos only.
    double time_scale = 1.0;
    ServerConfig server;
    std::vector<ListenerConfig> listeners;  // at least one (default 127.0.0.1:8080)
    std::vector<UpstreamConfig> upstreams;  // file order
    std::vector<LimitConfig> limits;        // file order
    QueueConfig queue_defaults;
    std::vector<RouteConfig> routes;      // file order = match priority (first match wins)
    std::vector<VendorInstance> vendors;  // `vendors:` order; their routes follow the file's own
    PriorityConfig priorities;

    const UpstreamConfig* find_upstream(std::string_view name) const;
    const LimitConfig* find_limit(std::string_view name) const;
};

// The request's priority class (docs/priorities.md): the class `asked` names (the client's
// Sluice-Priority), else the route's, else the default class; 0 without `priorities` (the header
// then means nothing). nullopt: `asked` names no class (the daemon answers 400 unknown_priority).
std::optional<std::size_t> request_class(const Config& config, const RouteConfig& route,
                                         std::optional<std::string_view> asked);

}  // namespace sluice::config
