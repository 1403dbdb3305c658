#include "sluice/proxy/proxy_server.hpp"

#include <algorithm>
#include <stdexcept>

#include <boost/asio/ip/tcp.hpp>

#include "sluice/admin/admin_server.hpp"
#include "sluice/common/log.hpp"
#include "sluice/proxy/client_session.hpp"

namespace sluice::proxy {

namespace net = boost::asio;
using tcp = net::ip::tcp;

// Accepts connections on one configured listener.
class Listener : public std::enable_shared_from_this<Listener> {
public:
    Listener(upstream::ConnectionExecutor executors, std::shared_ptr<Runtime> runtime, std::size_t index)
        : executors_(executors), acceptor_(executors.make()), runtime_(std::move(runtime)), index_(index) {}

    void bind() {
        const auto& cfg = runtime_->config->listeners[index_];
        boost::system::error_code ec;
        const auto address = net::ip::make_address(cfg.address, ec);
        if (ec) throw std::runtime_error("listener '" + cfg.name + "': bad address '" + cfg.address + "'");
        const tcp::endpoint endpoint(address, cfg.port);
        const auto where = "listener '" + cfg.name + "' on " + cfg.address + ":" + std::to_string(cfg.port);
        acceptor_.open(endpoint.protocol(), ec);
        if (!ec) acceptor_.set_option(net::socket_base::reuse_address(true), ec);
        if (!ec) acceptor_.bind(endpoint, ec);
        if (!ec) acceptor_.listen(net::socket_base::max_listen_connections, ec);
        if (ec) throw std::runtime_error(where + ": " + ec.message());
        port_ = acceptor_.local_endpoint().port();
        log::info("proxy", "listener '" + cfg.name + "' on " + cfg.address + ":" + std::to_string(port_));
    }

    void start() { do_accept(); }

    void stop() {
        net::post(acceptor_.get_executor(), [self = shared_from_this()] {
            boost::system::error_code ignored;
            self->acceptor_.close(ignored);
        });
    }

    std::uint16_t port() const { return port_; }
    const std::string& name() const { return runtime_->config->listeners[index_].name; }

private:
    void do_accept() {
        acceptor_.async_accept(executors_.make(),
                               [self = shared_from_this()](boost::system::error_code ec, tcp::socket socket) {
                                   self->on_accept(ec, std::move(socket));
                               });
    }

    void on_accept(boost::system::error_code ec, tcp::socket socket) {
        if (ec == net::error::operation_aborted || !acceptor_.is_open()) return;
        if (ec) {
            // EMFILE and friends: log and keep accepting; the next attempt may succeed.
            log::warn("proxy", "accept failed: " + ec.message());
        } else if (runtime_->counters.open_client_connections.load(std::memory_order_relaxed) >=
                   static_cast<std::int64_t>(runtime_->config->server.max_client_connections)) {
            boost::system::error_code ignored;
            socket.close(ignored);  // over the connection bound: shed instead of growing
            log::warn("proxy", "max_client_connections reached; connection refused");
        } else {
            std::make_shared<ClientSession>(std::move(socket), runtime_, index_)->start();
        }
        do_accept();
    }

    upstream::ConnectionExecutor executors_;
    tcp::acceptor acceptor_;
    std::shared_ptr<Runtime> runtime_;
    std::size_t index_;
    std::uint16_t port_ = 0;
};

ProxyServer::ProxyServer(net::io_context& ioc, std::shared_ptr<const config::Config> config,
                         const Clock& clock)
    : ioc_(ioc) {
    route::RouteTable table(*config);
    const upstream::ConnectionExecutor executors(ioc, std::max(1u, config->server.workers));
    runtime_ = std::make_shared<Runtime>(config, std::move(table));
    for (const auto& upstream : config->upstreams) {
        runtime_->pools.push_back(std::make_shared<upstream::ConnectionPool>(executors, upstream));
    }
    std::vector<std::unique_ptr<limit::Limiter>> limiters;
    for (const auto& limit : config->limits) limiters.push_back(limit::make_limiter(limit));
    for (const auto& gate : runtime_->vendor_gates) limiters.push_back(limit::make_limiter(gate));
    runtime_->limits = std::make_shared<LimitService>(ioc, clock, std::move(limiters));
    for (std::size_t i = 0; i < config->listeners.size(); ++i) {
        listeners_.push_back(std::make_shared<Listener>(executors, runtime_, i));
    }
    if (config->server.admin.enabled) admin_ = std::make_shared<admin::AdminServer>(ioc, runtime_);
}

ProxyServer::~ProxyServer() = default;

void ProxyServer::start() {
    for (auto& listener : listeners_) listener->bind();
    if (admin_) admin_->bind();
    for (auto& pool : runtime_->pools) pool->start();
    for (auto& listener : listeners_) listener->start();
    if (admin_) admin_->start();
}

void ProxyServer::stop() {
    runtime_->draining.store(true);
    for (auto& listener : listeners_) listener->stop();
    if (admin_) admin_->stop();
    for (auto& pool : runtime_->pools) pool->stop();
    runtime_->limits->stop();
}

std::vector<std::pair<std::string, std::uint16_t>> ProxyServer::listener_ports() const {
    std::vector<std::pair<std::string, std::uint16_t>> out;
    for (const auto& listener : listeners_) out.emplace_back(listener->name(), listener->port());
    return out;
}

std::uint16_t ProxyServer::admin_port() const {
    return admin_ ? admin_->port() : 0;
}

}  // namespace sluice::proxy
