#pragma once
// `sluice health`: one HTTP GET to a running sluice's admin listener, for container
// health checks and Kubernetes exec probes (the runtime image has no curl, and a
// kubelet's httpGet probe cannot reach an admin listener kept on 127.0.0.1).
//
// Contract: one connection, one request (`Connection: close`), one status line read;
// healthy means status 200 and nothing else. The whole exchange (name lookup
// included) ends within `timeout`; nothing read is trusted beyond the status line,
// and at most kMaxStatusLineBytes of it are read. Blocking POSIX sockets and
// poll(): this is a short-lived CLI process, never the request path.

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace sluice::cli {

inline constexpr std::string_view kDefaultAdminAddress = "127.0.0.1:9901";
inline constexpr std::chrono::milliseconds kDefaultHealthTimeout{2000};
inline constexpr std::size_t kMaxStatusLineBytes = 1024;

// What to probe: the admin listener's host and port, and the path (/healthz for
// liveness, /readyz for readiness: it answers 503 while draining).
struct HealthTarget {
    std::string host;
    std::string port;
    std::string path = "/healthz";
    std::chrono::milliseconds timeout = kDefaultHealthTimeout;
};

struct HealthResult {
    bool healthy = false;
    int status = 0;     // the HTTP status received; 0 when none was
    std::string error;  // why no status was received (connect refused, timeout, ...)
};

// "HOST:PORT", "[V6]:PORT" or ":PORT" (host 127.0.0.1) into `target`'s host and port.
// Returns an error text (empty on success); `target` is unchanged on error.
std::string parse_admin_address(std::string_view text, HealthTarget& target);

// The status code of "HTTP/1.x NNN ..." (the first line of `head`), or nullopt
// when `head` does not start with a complete, well-formed status line.
std::optional<int> parse_status_line(std::string_view head);

// One GET; never throws.
HealthResult check_health(const HealthTarget& target);

}  // namespace sluice::cli
