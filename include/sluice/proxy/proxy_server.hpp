#pragma once
// The process's serving side: builds the Runtime for a config (routes, pools,
// limiters), binds every listener and the admin listener, accepts client
// connections into ClientSessions, and drains on stop().

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "sluice/common/clock.hpp"
#include "sluice/config/config.hpp"
#include "sluice/proxy/runtime.hpp"

namespace sluice::admin {
class AdminServer;
}

namespace sluice::proxy {

class Listener;
class MemoryReleaser;

class ProxyServer {
public:
    // Throws std::runtime_error naming the upstream for a TLS setup failure.
    ProxyServer(boost::asio::io_context& ioc, std::shared_ptr<const config::Config> config,
                const Clock& clock);
    ~ProxyServer();

    // Binds and starts accepting. Throws std::runtime_error naming the listener
    // and address when a bind fails (port in use, bad address).
    void start();

    // Drain: stops accepting client connections, marks the runtime draining
    // (responses go out with Connection: close), closes idle client and upstream
    // connections, answers queued requests 503 shutting_down. The admin
    // listener keeps answering (/readyz: 503) until stop_admin().
    void stop();
    void stop_admin();

    std::vector<std::pair<std::string, std::uint16_t>> listener_ports() const;
    std::uint16_t admin_port() const;
    const std::shared_ptr<Runtime>& runtime() const { return runtime_; }

private:
    boost::asio::io_context& ioc_;
    std::shared_ptr<Runtime> runtime_;
    std::vector<std::shared_ptr<Listener>> listeners_;
    std::shared_ptr<admin::AdminServer> admin_;
    std::shared_ptr<MemoryReleaser> memory_releaser_;
};

}  // namespace sluice::proxy
