#include "sluice/admin/admin_server.hpp"

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <stdexcept>

#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include "sluice/admin/limits_view.hpp"
#include "sluice/admin/metrics_page.hpp"
#include "sluice/admin/status_page_html.hpp"
#include "sluice/admin/stepped_page.hpp"
#include "sluice/common/crash_barrier.hpp"
#include "sluice/common/failpoint.hpp"
#include "sluice/common/log.hpp"
#include "sluice/proxy/limit_state_file.hpp"
#include "sluice/proxy/shared_store.hpp"

namespace sluice::admin {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

namespace {

// The pause after a failed accept (EMFILE) or a contained exception in the accept loop.
constexpr auto kAcceptPause = std::chrono::milliseconds(100);

// The body of GET /status, built in bounded steps (stepped_page.hpp): begin()
// takes everything but the limits' keys, then each advance() walks a bounded
// number of key slots of one limit under the lock.
class StatusPage final : public SteppedPage {
public:
    explicit StatusPage(std::size_t keys_per_limit) : keep_(keys_per_limit), walk_(keys_per_limit) {}

    void begin(proxy::Runtime& runtime) override {
        const auto& counters = runtime.counters;
        out_["draining"] = runtime.draining.load();
        const auto& reloads = runtime.process->reloads;
        out_["config"] = {
            {"generation", runtime.generation},
            {"reloads", {{"succeeded", reloads.succeeded.load()}, {"failed", reloads.failed.load()}}},
            {"last_load_success", !reloads.last_failed.load()}};
        if (const auto& state_file = runtime.process->state_file) {
            const auto c = state_file->counters();
            out_["state_file"] = {{"saves", c.saves},
                                  {"save_failures", c.save_failures},
                                  {"set_aside", c.set_aside},
                                  {"restored_keys", c.restored_keys},
                                  {"last_save_unix", static_cast<double>(c.last_save_wall.count()) / 1e9},
                                  {"last_error", c.last_error}};
        } else {
            out_["state_file"] = nullptr;
        }
        if (const auto shared = runtime.process->limits->shared_status()) {
            const auto& redis = runtime.config->server.state.redis;
            nlohmann::json commands = nlohmann::json::object();
            for (std::size_t op = 0; op < shared->commands.size(); ++op)
                commands[proxy::SharedStoreCounters::kOpNames[op]] = shared->commands[op];
            out_["shared"] = {
                {"backend", "redis"},
                {"address", redis.unix_path.empty() ? redis.host + ":" + std::to_string(redis.port)
                                                    : "unix:" + redis.unix_path},
                {"connected", shared->connected},
                {"mode", shared->fallback ? "fallback" : "shared"},
                {"waiting", shared->waiting},
                {"return_guard_left_s", static_cast<double>(shared->return_guard_left.count()) / 1e9},
                {"commands", commands},
                {"errors",
                 {{"not_connected", shared->errors[0]},
                  {"timed_out", shared->errors[1]},
                  {"error", shared->errors[2]}}},
                {"switches",
                 {{"to_shared", shared->switches_shared}, {"to_fallback", shared->switches_fallback}}},
                {"data_lost", shared->data_lost},
                {"merged_admissions", shared->merged_lots},
                {"fallback_admissions", shared->fallback_admissions},
                {"fallback_admissions_open", shared->fallback_open},
                {"denied", shared->denied}};
        } else {
            out_["shared"] = {{"backend", "memory"}};
        }
        out_["counters"] = {
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
            {"session_exceptions", counters.session_exceptions.load()},
            {"listener_exceptions", counters.listener_exceptions.load()},
            {"admin_exceptions", counters.admin_exceptions.load()},
            {"loop_exceptions", counters.loop_exceptions.load()},
            {"admin_unauthorized", counters.admin_unauthorized.load()},
        };
        json upstreams = json::array();
        for (const auto& pool : runtime.pools) {
            upstreams.push_back({{"name", pool->config().name},
                                 {"open_connections", pool->open_connections()},
                                 {"idle_connections", pool->idle_connections()},
                                 {"connections_opened", pool->connections_opened()},
                                 {"streamed_bodies", pool->streamed_bodies()}});
        }
        out_["upstreams"] = std::move(upstreams);
        json feedback = json::object();
        const auto& routes = runtime.config->routes;
        for (std::size_t i = 0; i < routes.size() && i < runtime.feedback.size(); ++i) {
            const auto& c = *runtime.feedback[i];
            feedback[routes[i].name] = {
                {"vendor_429", c.vendor_429.load()}, {"paused", c.paused.load()},
                {"capped", c.capped.load()},         {"lowered", c.lowered.load()},
                {"retried", c.retried.load()},       {"relayed_429", c.relayed_429.load()},
                {"clamped", c.clamped.load()}};
        }
        out_["feedback"] = std::move(feedback);
        // Lines that reached the log's destination, and lines lost (buffer full, write errors).
        const auto* access_log = runtime.access_log;
        out_["access_log"] = {{"enabled", access_log != nullptr},
                              {"written", access_log ? access_log->lines_written() : 0},
                              {"dropped", access_log ? access_log->lines_dropped() : 0}};
        runtime.limits->inspect([&](queue::AdmissionController& controller, const Instant&) {
            out_["queue"] = {{"waiting", controller.waiting()}};
            walk_.set_limits(runtime.limit_slots);
            return 0;
        });
        out_["status_keys_per_limit"] = keep_;
        add_status_metrics(out_, runtime);
    }

    // One bounded step. True once every limit has been scanned.
    bool advance(proxy::Runtime& runtime) override {
        const auto walked =
            walk_.step(*runtime.limits, [](const queue::AdmissionController&, WalkedLimit&) {});
        if (!walked) return walk_.done();
        const Nanos now = walked->at.mono;
        // A limiter's config is an immutable copy: read outside the lock.
        const auto& cfg = walked->limiter->config();
        json entries = json::array();
        for (const auto& key : walked->keys) {
            json entry = {
                {"key", limit::key_label(key.key)},
                {"remaining", key.remaining},
                // null: no time can tell (a concurrency limit waits for a release)
                {"reset_in", key.reset == kNever ? json(nullptr) : json(seconds_between(now, key.reset))}};
            if (key.paused_until > now) entry["paused_for"] = seconds_between(now, key.paused_until);
            if (key.learned.limit > 0) {
                // A limit learned from the vendor's refusals (docs/feedback.md): times as seconds ago.
                json learned = {{"limit", key.learned.limit},
                                {"lowered_ago", seconds_between(key.learned.lowered_at, now)},
                                {"probe_windows", key.learned.probe_windows}};
                learned["raised_ago"] = key.learned.raised_at > Nanos::zero()
                                            ? json(seconds_between(key.learned.raised_at, now))
                                            : json(nullptr);
                entry["learned"] = std::move(learned);
            }
            entries.push_back(std::move(entry));
        }
        limits_.push_back(
            {{"name", cfg.name},
             {"algorithm", algorithm_name(cfg.algorithm)},
             {"limit", cfg.algorithm == config::Algorithm::vendor_gate ? json(nullptr) : json(cfg.limit)},
             {"enforce", cfg.enforce},
             {"tracked_keys", walked->tracked_keys},
             {"keys", std::move(entries)}});
        return walk_.done();
    }

    std::string finish() override {
        out_["limits"] = std::move(limits_);
        // Names and labels are ASCII today; replace, never throw, if that changes.
        return out_.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
    }

private:
    using json = nlohmann::json;
    std::size_t keep_;
    json out_;
    json limits_ = json::array();
    LimitKeyWalk walk_;
};

log::RateLimitedSite g_admin_exception_log;
log::RateLimitedSite g_admin_accept_exception_log;

class AdminSession : public std::enable_shared_from_this<AdminSession> {
public:
    AdminSession(tcp::socket socket, std::shared_ptr<proxy::Runtime> runtime,
                 std::shared_ptr<const std::string> token,
                 std::shared_ptr<const AdminServer::ReloadHook> reload)
        : stream_(std::move(socket)),
          runtime_(std::move(runtime)),
          token_(std::move(token)),
          reload_(std::move(reload)) {}

    void start();

private:
    // The crash barrier: every handler runs through step(); an exception closes
    // this admin connection and is counted (admin_exceptions), nothing more.
    template <class Member>
    auto step(Member member) {
        return [self = shared_from_this(), member](auto&&... args) {
            const bool ok = run_contained(self->runtime_->counters.admin_exceptions, g_admin_exception_log,
                                          "admin", "an admin request",
                                          [&] { ((*self).*member)(std::forward<decltype(args)>(args)...); });
            if (!ok) self->close();
        };
    }

    void do_read() {
        parser_.emplace();
        parser_->header_limit(8 * 1024);
        parser_->body_limit(8 * 1024);
        stream_.expires_after(std::chrono::seconds(10));
        http::async_read(stream_, buffer_, *parser_, step(&AdminSession::on_read));
    }

    void on_read(beast::error_code ec, std::size_t) {
        if (ec) return close();
        failpoint::hit(failpoint::Point::admin_handle_request);
        runtime_ = runtime_->process->current();  // each request sees the config in force (reloads)
        const auto& req = parser_->get();
        response_ = {};
        response_.version(req.version());
        response_.set(http::field::server, "sluice-admin");
        response_.set(http::field::cache_control, "no-store");
        response_.keep_alive(req.keep_alive());
        const std::string_view target = req.target();
        const auto path = target.substr(0, target.find('?'));
        // Orchestrators probe health without credentials, and a browser opens the
        // status page (static: no data in it; it asks for the token and sends it on
        // its own requests, never in a URL); everything else, unknown paths
        // included (no probing for what exists), needs the token when one is set.
        const bool open = path == "/healthz" || path == "/readyz" || path == "/";
        if (!open && token_ && !authorized(req)) {
            runtime_->counters.admin_unauthorized.fetch_add(1, std::memory_order_relaxed);
            response_.set(http::field::www_authenticate, "Bearer realm=\"sluice-admin\"");
            respond(http::status::unauthorized, "application/json", "{\"error\":\"unauthorized\"}\n");
        } else if (path == "/v1/reload" && reload_) {
            if (req.method() != http::verb::post) {
                response_.set(http::field::allow, "POST");
                respond(http::status::method_not_allowed, "text/plain", "POST only\n");
            } else {
                auto answer = (*reload_)();
                respond(answer.ok ? http::status::ok : http::status::unprocessable_entity, "application/json",
                        std::move(answer.body));
            }
        } else if (req.method() != http::verb::get && req.method() != http::verb::head) {
            respond(http::status::method_not_allowed, "text/plain", "GET only\n");
        } else if (path == "/healthz") {
            respond(http::status::ok, "application/json", "{\"status\":\"ok\"}\n");
        } else if (path == "/readyz") {
            const bool draining = runtime_->draining.load();
            respond(draining ? http::status::service_unavailable : http::status::ok, "application/json",
                    draining ? "{\"status\":\"draining\"}\n" : "{\"status\":\"ready\"}\n");
        } else if (path == "/metrics") {
            respond(http::status::ok, kMetricsContentType, render_metrics(*runtime_));
        } else if (path == "/status") {
            return start_page(std::make_unique<StatusPage>(runtime_->config->server.admin.status_keys));
        } else if (path == "/v1/limits") {
            return start_page(std::make_unique<LimitsView>(runtime_->config->server.admin.limits_top_keys));
        } else if (path == "/") {
            respond(http::status::ok, "text/html; charset=utf-8", std::string(kStatusPageHtml));
        } else {
            respond(http::status::not_found, "application/json", "{\"error\":\"not_found\"}\n");
        }
        write();
    }

    bool authorized(const http::request<http::string_body>& req) const {
        // Two Authorization fields are not one credential: refused.
        if (req.count(http::field::authorization) != 1) return false;
        return bearer_token_matches(req[http::field::authorization], *token_);
    }

    void start_page(std::unique_ptr<SteppedPage> page) {
        page_ = std::move(page);
        page_->begin(*runtime_);
        net::post(stream_.get_executor(), step(&AdminSession::on_page_step));
    }

    void on_page_step() {
        if (!page_->advance(*runtime_))
            return net::post(stream_.get_executor(), step(&AdminSession::on_page_step));
        respond(http::status::ok, "application/json", page_->finish());
        page_.reset();
        write();
    }

    void respond(http::status status, const char* type, std::string body) {
        response_.result(status);
        response_.set(http::field::content_type, type);
        response_.body() = std::move(body);
    }

    void write() {
        response_.prepare_payload();
        stream_.expires_after(std::chrono::seconds(10));
        http::async_write(stream_, response_, step(&AdminSession::on_write));
    }

    void on_write(beast::error_code ec, std::size_t) {
        if (ec || !response_.keep_alive()) return close();
        do_read();
    }

    void close() noexcept {
        beast::error_code ignored;
        stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
        stream_.socket().close(ignored);
    }

    beast::tcp_stream stream_;
    beast::flat_buffer buffer_{16 * 1024};
    std::shared_ptr<proxy::Runtime> runtime_;
    std::shared_ptr<const std::string> token_;
    std::shared_ptr<const AdminServer::ReloadHook> reload_;
    std::optional<http::request_parser<http::string_body>> parser_;
    http::response<http::string_body> response_;
    std::unique_ptr<SteppedPage> page_;  // the page being built (/status, /v1/limits)
};

void AdminSession::start() {
    net::dispatch(stream_.get_executor(), step(&AdminSession::do_read));
}

}  // namespace

bool bearer_token_matches(std::string_view authorization, std::string_view token) noexcept {
    constexpr std::string_view kScheme = "bearer";
    if (authorization.size() <= kScheme.size() ||
        !beast::iequals(authorization.substr(0, kScheme.size()), kScheme) ||
        authorization[kScheme.size()] != ' ') {
        return false;
    }
    auto presented = authorization.substr(kScheme.size() + 1);
    while (!presented.empty() && presented.front() == ' ') presented.remove_prefix(1);
    while (!presented.empty() && (presented.back() == ' ' || presented.back() == '\t'))
        presented.remove_suffix(1);
    // Every byte of the token is compared whatever the presented value is, so the
    // time taken tells nothing about how much of a guess was right.
    unsigned char diff = presented.size() == token.size() ? 0 : 1;
    for (std::size_t i = 0; i < token.size(); ++i) {
        const char offered = i < presented.size() ? presented[i] : '\0';
        diff |= static_cast<unsigned char>(offered ^ token[i]);
    }
    return diff == 0;
}

namespace {

// The same rules wherever the token comes from; `where` names the source, never the content.
std::string checked_token(std::string token, const std::string& where) {
    while (!token.empty() && (token.back() == '\n' || token.back() == '\r')) token.pop_back();
    const bool visible = std::all_of(token.begin(), token.end(), [](char c) { return c > 0x20 && c < 0x7f; });
    // The message never quotes the content: it is (or is close to) a secret.
    if (token.size() < 16 || token.size() > 4096 || !visible) {
        throw std::runtime_error(where +
                                 ": expected one line of 16 to 4096 visible ASCII characters (no spaces)");
    }
    return token;
}

}  // namespace

std::string read_token_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("admin token_file " + path + ": cannot be read");
    // Bounded read: a token is short, whatever the file is.
    char chunk[4097];
    in.read(chunk, sizeof chunk);
    return checked_token(std::string(chunk, static_cast<std::size_t>(in.gcount())),
                         "admin token_file " + path);
}

std::string read_token_env(const std::string& name) {
    const char* value = std::getenv(name.c_str());
    if (value == nullptr) {
        throw std::runtime_error("admin token_env " + name + ": the environment variable is not set");
    }
    const std::string_view text(value);
    if (text.size() > 4097) {
        throw std::runtime_error("admin token_env " + name +
                                 ": expected one line of 16 to 4096 visible ASCII characters (no spaces)");
    }
    return checked_token(std::string(text), "admin token_env " + name);
}

AdminServer::AdminServer(net::io_context& ioc, std::shared_ptr<proxy::Runtime> runtime)
    : ioc_(ioc),
      acceptor_(net::make_strand(ioc)),
      pause_timer_(acceptor_.get_executor()),
      runtime_(std::move(runtime)) {}

void AdminServer::bind() {
    const auto& cfg = runtime_->config->server.admin;
    if (!cfg.token_file.empty())
        token_ = std::make_shared<const std::string>(read_token_file(cfg.token_file));
    if (!cfg.token_env.empty()) token_ = std::make_shared<const std::string>(read_token_env(cfg.token_env));
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
    log::info("admin", "listening on " + cfg.address + ":" + std::to_string(port_) +
                           (token_ ? " (token required but for /healthz, /readyz and the page at /)" : ""));
    if (!address.is_loopback() && !token_) {
        // The status page shows limit state and traffic counters: off loopback it
        // is readable by anyone who can reach the port.
        log::warn(
            "admin",
            "the admin listener is not on loopback and has no token_file or token_env: /status is open to "
            "anyone who can reach " +
                cfg.address + ":" + std::to_string(port_));
    }
}

void AdminServer::start() {
    do_accept();
}

void AdminServer::stop() {
    net::post(acceptor_.get_executor(), [self = shared_from_this()] {
        boost::system::error_code ignored;
        self->acceptor_.close(ignored);
        self->pause_timer_.cancel();
    });
}

void AdminServer::do_accept() {
    acceptor_.async_accept(net::make_strand(ioc_),
                           [self = shared_from_this()](boost::system::error_code ec, tcp::socket socket) {
                               self->on_accept(ec, std::move(socket));
                           });
}

void AdminServer::on_accept(boost::system::error_code ec, tcp::socket socket) {
    if (ec == net::error::operation_aborted || !acceptor_.is_open()) return;
    bool accept_next = true;
    const bool ok = run_contained(
        runtime_->counters.admin_exceptions, g_admin_accept_exception_log, "admin", "the admin accept loop",
        [&] {
            if (!ec) {
                std::make_shared<AdminSession>(std::move(socket), runtime_, token_, reload_)->start();
            } else {
                accept_next = false;
            }
        });
    if (ok && accept_next) return do_accept();
    // A failed accept (EMFILE) fails again at once, and so may whatever threw:
    // pause instead of spinning. Admin traffic is a probe now and then.
    pause_timer_.expires_after(kAcceptPause);
    pause_timer_.async_wait([weak = weak_from_this()](boost::system::error_code wait_ec) {
        if (wait_ec) return;
        if (auto self = weak.lock(); self && self->acceptor_.is_open()) self->do_accept();
    });
}

}  // namespace sluice::admin
