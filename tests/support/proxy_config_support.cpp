#include <cstdlib>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "support/proxy_config.hpp"
#include "support/sluice_process.hpp"

namespace sluice::test {

unsigned e2e_workers() {
    const char* text = std::getenv("SLUICE_E2E_WORKERS");
    if (!text || !*text) return 2;
    const long value = std::strtol(text, nullptr, 10);
    return value >= 1 && value <= 64 ? static_cast<unsigned>(value) : 2;
}

std::uint16_t closed_port() {
    boost::asio::io_context ioc;
    boost::asio::ip::tcp::acceptor acceptor(ioc, {boost::asio::ip::make_address("127.0.0.1"), 0});
    return acceptor.local_endpoint().port();
}

std::string ProxyConfig::yaml() const {
    std::string tls_block;
    if (!tls.empty()) {
        tls_block = "    tls:\n";
        for (const auto& line : tls) tls_block += "      " + line + "\n";
    }
    std::string admin_block;
    for (const auto& line : admin) admin_block += "    " + line + "\n";
    return yaml_subst(R"(server:
  workers: {WORKERS}
  max_header_bytes: {MAX_HEADER}
  max_body_bytes: {MAX_BODY}
  timeouts:
    client_header: {CLIENT_HEADER}
    client_body: 5s
    client_idle: {CLIENT_IDLE}
    client_write: 5s
  admin:
    listen: "127.0.0.1:0"
{ADMIN}listeners:
  - name: main
    listen: "127.0.0.1:0"
  - name: vendor
    listen: "127.0.0.1:0"
upstreams:
  vendor:
    url: "{URL}"
{TLS}    connect_timeout: {CONNECT}
    response_timeout: {RESPONSE}
    body_timeout: {BODY}
routes:
  - name: dedicated
    match:
      listener: vendor
    upstream: vendor
  - name: intercom
    match:
      listener: main
      path_prefix: /intercom/
    strip_prefix: true
    upstream: vendor
  - name: by-host
    match:
      listener: main
      host: {VENDOR_HOST}
    upstream: vendor
)",
                      {{"WORKERS", std::to_string(workers)},
                       {"MAX_HEADER", std::to_string(max_header_bytes)},
                       {"MAX_BODY", std::to_string(max_body_bytes)},
                       {"CLIENT_HEADER", client_header_timeout},
                       {"CLIENT_IDLE", client_idle_timeout},
                       {"URL", upstream_url},
                       {"TLS", tls_block},
                       {"ADMIN", admin_block},
                       {"CONNECT", connect_timeout},
                       {"RESPONSE", response_timeout},
                       {"BODY", body_timeout},
                       {"VENDOR_HOST", kVendorHost}});
}

}  // namespace sluice::test
