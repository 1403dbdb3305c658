#pragma once
// The admin listener (default 127.0.0.1:9901), separate from client traffic:
//   GET /healthz  200 while the process runs
//   GET /readyz   200 once listening, 503 while draining
//   GET /status   JSON: counters, upstream pools, and each limit's state (keys
//                 as hashes, never raw values), the queue size
// Small bodies only (string_body, bounded request size).

#include <cstdint>
#include <memory>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "sluice/proxy/runtime.hpp"

namespace sluice::admin {

class AdminServer : public std::enable_shared_from_this<AdminServer> {
public:
    AdminServer(boost::asio::io_context& ioc, std::shared_ptr<proxy::Runtime> runtime);
    void bind();  // throws std::runtime_error naming the address on failure
    void start();
    void stop();
    std::uint16_t port() const { return port_; }

private:
    void do_accept();
    boost::asio::io_context& ioc_;
    boost::asio::ip::tcp::acceptor acceptor_;
    std::shared_ptr<proxy::Runtime> runtime_;
    std::uint16_t port_ = 0;
};

// The body of GET /status (exposed for tests of its shape).
std::string status_json(proxy::Runtime& runtime);

}  // namespace sluice::admin
