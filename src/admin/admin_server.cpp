#include "sluice/admin/admin_server.hpp"

#include <stdexcept>

#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include "sluice/common/log.hpp"

namespace sluice::admin {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

namespace {

constexpr std::size_t kStatusKeysPerLimit = 20;

class AdminSession : public std::enable_shared_from_this<AdminSession> {
public:
    AdminSession(tcp::socket socket, std::shared_ptr<proxy::Runtime> runtime)
        : stream_(std::move(socket)), runtime_(std::move(runtime)) {}

    void start() {
        net::dispatch(stream_.get_executor(),
                      beast::bind_front_handler(&AdminSession::do_read, shared_from_this()));
    }

private:
    void do_read() {
        request_ = {};
        parser_.emplace();
        parser_->header_limit(8 * 1024);
        parser_->body_limit(8 * 1024);
        stream_.expires_after(std::chrono::seconds(10));
        http::async_read(stream_, buffer_, *parser_,
                         beast::bind_front_handler(&AdminSession::on_read, shared_from_this()));
    }

    void on_read(beast::error_code ec, std::size_t) {
        if (ec) return close();
        const auto& req = parser_->get();
        response_ = {};
        response_.version(req.version());
        response_.set(http::field::server, "sluice-admin");
        response_.set(http::field::cache_control, "no-store");
        const std::string_view target = req.target();
        const auto path = target.substr(0, target.find('?'));
        if (req.method() != http::verb::get && req.method() != http::verb::head) {
            respond(http::status::method_not_allowed, "text/plain", "GET only\n");
        } else if (path == "/healthz") {
            respond(http::status::ok, "application/json", "{\"status\":\"ok\"}\n");
        } else if (path == "/readyz") {
            const bool draining = runtime_->draining.load();
            respond(draining ? http::status::service_unavailable : http::status::ok, "application/json",
                    draining ? "{\"status\":\"draining\"}\n" : "{\"status\":\"ready\"}\n");
        } else if (path == "/status") {
            respond(http::status::ok, "application/json", status_json(*runtime_));
        } else {
            respond(http::status::not_found, "application/json", "{\"error\":\"not_found\"}\n");
        }
        response_.keep_alive(req.keep_alive());
        response_.prepare_payload();
        stream_.expires_after(std::chrono::seconds(10));
        http::async_write(stream_, response_,
                          beast::bind_front_handler(&AdminSession::on_write, shared_from_this()));
    }

    void respond(http::status status, const char* type, std::string body) {
        response_.result(status);
        response_.set(http::field::content_type, type);
        response_.body() = std::move(body);
    }

    void on_write(beast::error_code ec, std::size_t) {
        if (ec || !response_.keep_alive()) return close();
        do_read();
    }

    void close() {
        beast::error_code ignored;
        stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
        stream_.socket().close(ignored);
    }

    beast::tcp_stream stream_;
    beast::flat_buffer buffer_{16 * 1024};
    std::shared_ptr<proxy::Runtime> runtime_;
    std::optional<http::request_parser<http::string_body>> parser_;
    http::request<http::string_body> request_;
    http::response<http::string_body> response_;
};

const char* algorithm_name(config::Algorithm a) {
    switch (a) {
        case config::Algorithm::token_bucket: return "token_bucket";
        case config::Algorithm::sliding_window: return "sliding_window";
        case config::Algorithm::fixed_window: return "fixed_window";
        case config::Algorithm::concurrency: return "concurrency";
        case config::Algorithm::vendor_gate: return "vendor_gate";
    }
    return "?";
}

}  // namespace

std::string status_json(proxy::Runtime& runtime) {
    using nlohmann::json;
    const auto& counters = runtime.counters;
    json out;
    out["draining"] = runtime.draining.load();
    out["counters"] = {
        {"requests", counters.requests.load()},
        {"forwarded", counters.forwarded.load()},
        {"rejected_by_limits", counters.rejected_by_limits.load()},
        {"no_route", counters.no_route.load()},
        {"upstream_errors", counters.upstream_errors.load()},
        {"client_errors", counters.client_errors.load()},
        {"open_client_connections", counters.open_client_connections.load()},
        {"accept_failures", counters.accept_failures.load()},
        {"refused_client_connections", counters.refused_client_connections.load()},
        {"abandoned_by_client", counters.abandoned_by_client.load()},
        {"body_timeouts", counters.body_timeouts.load()},
        {"streamed_body_refusals", counters.streamed_body_refusals.load()},
    };
    json upstreams = json::array();
    for (const auto& pool : runtime.pools) {
        upstreams.push_back({{"name", pool->config().name},
                             {"open_connections", pool->open_connections()},
                             {"idle_connections", pool->idle_connections()},
                             {"connections_opened", pool->connections_opened()},
                             {"streamed_bodies", pool->streamed_bodies()}});
    }
    out["upstreams"] = std::move(upstreams);
    json feedback = json::object();
    const auto& routes = runtime.config->routes;
    for (std::size_t i = 0; i < routes.size() && i < runtime.feedback.size(); ++i) {
        const auto& c = runtime.feedback[i];
        feedback[routes[i].name] = {{"vendor_429", c.vendor_429.load()},   {"paused", c.paused.load()},
                                    {"capped", c.capped.load()},           {"retried", c.retried.load()},
                                    {"relayed_429", c.relayed_429.load()}, {"clamped", c.clamped.load()}};
    }
    out["feedback"] = std::move(feedback);
    runtime.limits->inspect([&](queue::AdmissionController& controller, const Instant& now) {
        out["queue"] = {{"waiting", controller.waiting()}};
        json limits = json::array();
        for (std::size_t i = 0; i < controller.limiter_count(); ++i) {
            const auto& limiter = controller.limiter(i);
            const auto& cfg = limiter.config();
            json keys = json::array();
            for (const auto& key : limiter.status(now, kStatusKeysPerLimit)) {
                json entry = {
                    {"key", limit::key_label(key.key)},
                    {"remaining", key.remaining},
                    // null: no time can tell (a concurrency limit waits for a release)
                    {"reset_in", key.reset == kNever
                                     ? json(nullptr)
                                     : json(std::max<double>(
                                           0.0, static_cast<double>((key.reset - now.mono).count()) / 1e9))}};
                if (key.paused_until > now.mono) {
                    entry["paused_for"] = static_cast<double>((key.paused_until - now.mono).count()) / 1e9;
                }
                keys.push_back(std::move(entry));
            }
            limits.push_back(
                {{"name", cfg.name},
                 {"algorithm", algorithm_name(cfg.algorithm)},
                 {"limit", cfg.algorithm == config::Algorithm::vendor_gate ? json(nullptr) : json(cfg.limit)},
                 {"enforce", cfg.enforce},
                 {"tracked_keys", limiter.key_count()},
                 {"keys", std::move(keys)}});
        }
        out["limits"] = std::move(limits);
        return 0;
    });
    return out.dump(2) + "\n";
}

AdminServer::AdminServer(net::io_context& ioc, std::shared_ptr<proxy::Runtime> runtime)
    : ioc_(ioc), acceptor_(net::make_strand(ioc)), runtime_(std::move(runtime)) {}

void AdminServer::bind() {
    const auto& cfg = runtime_->config->server.admin;
    const auto where = "admin listener on " + cfg.address + ":" + std::to_string(cfg.port);
    boost::system::error_code ec;
    const auto address = net::ip::make_address(cfg.address, ec);
    if (ec) throw std::runtime_error(where + ": bad address");
    const tcp::endpoint endpoint(address, cfg.port);
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) acceptor_.set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(endpoint, ec);
    if (!ec) acceptor_.listen(net::socket_base::max_listen_connections, ec);
    if (ec) throw std::runtime_error(where + ": " + ec.message());
    port_ = acceptor_.local_endpoint().port();
    log::info("admin", "listening on " + cfg.address + ":" + std::to_string(port_));
}

void AdminServer::start() {
    do_accept();
}

void AdminServer::stop() {
    net::post(acceptor_.get_executor(), [self = shared_from_this()] {
        boost::system::error_code ignored;
        self->acceptor_.close(ignored);
    });
}

void AdminServer::do_accept() {
    acceptor_.async_accept(net::make_strand(ioc_),
                           [self = shared_from_this()](boost::system::error_code ec, tcp::socket socket) {
                               if (ec == net::error::operation_aborted || !self->acceptor_.is_open()) return;
                               if (!ec)
                                   std::make_shared<AdminSession>(std::move(socket), self->runtime_)->start();
                               self->do_accept();
                           });
}

}  // namespace sluice::admin
