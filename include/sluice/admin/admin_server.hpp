#pragma once
// The admin listener (default 127.0.0.1:9901), separate from client traffic:
//   GET /healthz  200 while the process runs
//   GET /readyz   200 once listening, 503 while draining
//   GET /status   JSON: counters, upstream pools, and each limit's state (keys
//                 as hashes, never raw values), the queue size
//   GET /v1/limits JSON: every limit, its parameters and activity, its most
//                 pressed keys with their queues and vendor pauses (limits_view.hpp)
//   GET /         the live status page: static HTML that reads the two above
//                 every second (src/admin/status_page.html)
//   GET /metrics  Prometheus text format 0.0.4 (admin/metrics_page.hpp)
//   POST /v1/reload  re-reads the config file and puts it in force (docs/deployment.md);
//                 200 with what changed, or 422 with the error (nothing changed)
// Small bodies only (string_body, bounded request size).
//
// With server.admin.token_file or token_env set, every endpoint but /healthz and /readyz (the
// probes an orchestrator sends without credentials) and the page at / (static,
// no data: it asks the user for the token) needs `Authorization: Bearer <token>`,
// compared in constant time; anything else gets 401. The token is never logged
// or echoed.
//
// Every handler runs behind a crash barrier (common/crash_barrier.hpp): an
// exception closes that one admin connection and is counted in
// counters.admin_exceptions. /status and /v1/limits are built in steps posted to the io_context,
// each holding the admission lock for a bounded number of key slots, so a page
// over 100,000 keys neither stalls admissions nor the io thread.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include "sluice/proxy/runtime.hpp"

namespace sluice::admin {

// POST /v1/reload's answer.
struct ReloadAnswer {
    bool ok = false;
    std::string body;  // JSON
};

class AdminServer : public std::enable_shared_from_this<AdminServer> {
public:
    AdminServer(boost::asio::io_context& ioc, std::shared_ptr<proxy::Runtime> runtime);

    // What POST /v1/reload runs (main's reload: read, validate, ProxyServer::reload).
    using ReloadHook = std::function<ReloadAnswer()>;
    void set_reload_hook(ReloadHook hook) { reload_ = std::make_shared<const ReloadHook>(std::move(hook)); }
    // Reads the token file (if any) and binds. Throws std::runtime_error naming the
    // address or the token file (never its content) on failure.
    void bind();
    void start();
    void stop();
    std::uint16_t port() const { return port_; }

private:
    void do_accept();
    void on_accept(boost::system::error_code ec, boost::asio::ip::tcp::socket socket);
    boost::asio::io_context& ioc_;
    boost::asio::ip::tcp::acceptor acceptor_;
    boost::asio::steady_timer pause_timer_;  // after a failed accept
    std::shared_ptr<proxy::Runtime> runtime_;
    std::shared_ptr<const std::string> token_;  // null: no token required
    std::shared_ptr<const ReloadHook> reload_;  // null: POST /v1/reload answers 404
    std::uint16_t port_ = 0;
};

// Whether an Authorization field value is "Bearer <token>" (scheme case-insensitive,
// RFC 9110 11.1) for exactly `token`. The comparison takes the same time whatever
// the presented value shares with the token (it depends on the token's length only).
bool bearer_token_matches(std::string_view authorization, std::string_view token) noexcept;

// Reads and checks an admin token file: 16 to 4096 visible ASCII characters
// (a trailing newline is ignored). Throws std::runtime_error naming the file.
std::string read_token_file(const std::string& path);
// The same, from an environment variable (server.admin.token_env); unset is an error too.
std::string read_token_env(const std::string& name);

}  // namespace sluice::admin
