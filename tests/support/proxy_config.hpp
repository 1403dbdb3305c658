#pragma once
// The YAML most proxy tests start from: one upstream reached three ways, all on
// 127.0.0.1 with ephemeral ports and short timeouts (so a failing test fails fast).
//
//   listener "vendor"  -> route "dedicated": everything on it goes to the upstream
//   listener "main"    -> route "intercom":  path prefix /intercom/, stripped
//                      -> route "by-host":   Host (or absolute-form authority) api.vendor.test
//
// Anything else on "main" matches no route.

#include <cstdint>
#include <string>
#include <vector>

namespace sluice::test {

// io threads for sluice in the e2e tests: 2 (every connection on its own strand), or what
// SLUICE_E2E_WORKERS says; ctest runs the suite both ways, since with 1 thread (sluice's
// default) connections run without strands.
unsigned e2e_workers();

// A port on 127.0.0.1 that nothing listens on (bound to get it from the kernel, then
// released): connecting to it is refused.
std::uint16_t closed_port();

struct ProxyConfig {
    std::string upstream_url;        // e.g. MockUpstream::url(), with an optional base path
    std::vector<std::string> tls;    // lines under upstreams.vendor.tls, e.g. "ca_file: /x.pem"
    std::vector<std::string> admin;  // more lines under server.admin, e.g. "token_file: /x"
    unsigned workers = e2e_workers();
    std::uint64_t max_header_bytes = 16 * 1024;
    std::uint64_t max_body_bytes = 64ull * 1024 * 1024;
    std::string client_header_timeout = "2s";
    std::string client_idle_timeout = "10s";
    std::string connect_timeout = "1s";
    std::string response_timeout = "3s";
    std::string body_timeout = "5s";

    std::string yaml() const;
};

inline constexpr const char* kVendorHost = "api.vendor.test";

}  // namespace sluice::test
