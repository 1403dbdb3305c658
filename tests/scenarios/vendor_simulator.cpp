#include "scenarios/vendor_simulator.hpp"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace sluice::test::sim {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

Nanos steady_now() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

Nanos unix_now() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

struct VendorSimulator::Shared {
    Shared(std::vector<Rule> rules, Options options) : engine(std::move(rules), std::move(options)) {}
    mutable std::mutex mutex;
    VendorRules engine;
    std::chrono::microseconds service_time{0};
};

namespace {

constexpr std::uint32_t kMessageLimit = 1024 * 1024;
constexpr auto kIoTimeout = std::chrono::seconds(30);

class Session : public std::enable_shared_from_this<Session> {
public:
    Session(tcp::socket socket, std::shared_ptr<VendorSimulator::Shared> shared)
        : stream_(std::move(socket)), timer_(stream_.get_executor()), shared_(std::move(shared)) {}

    void start() { do_read(); }

private:
    void do_read() {
        parser_.emplace();
        parser_->header_limit(kMessageLimit);
        parser_->body_limit(kMessageLimit);
        stream_.expires_after(kIoTimeout);
        http::async_read(stream_, buffer_, *parser_,
                         beast::bind_front_handler(&Session::on_read, shared_from_this()));
    }

    void on_read(beast::error_code ec, std::size_t) {
        if (ec) return;  // closed, timed out or malformed: drop the connection
        const auto& req = parser_->get();
        Request request;
        request.method = std::string(req.method_string());
        const std::string_view target = req.target();
        request.path = std::string(target.substr(0, target.find('?')));
        for (const auto& field : req) request.headers.emplace_back(field.name_string(), field.value());
        Reply reply;
        {
            const std::lock_guard<std::mutex> lock(shared_->mutex);
            std::tie(ticket_, reply) = shared_->engine.arrive(request, steady_now(), unix_now());
        }
        res_ = {static_cast<http::status>(reply.status), req.version()};
        for (const auto& [name, value] : reply.headers) res_.insert(name, value);
        res_.body() = std::move(reply.body);
        res_.keep_alive(req.keep_alive());
        res_.prepare_payload();
        if (shared_->service_time.count() > 0) {
            timer_.expires_after(shared_->service_time);
            timer_.async_wait(beast::bind_front_handler(&Session::on_served, shared_from_this()));
        } else {
            do_write();
        }
    }

    void on_served(beast::error_code ec) {
        if (ec) return finish();
        do_write();
    }

    void do_write() {
        stream_.expires_after(kIoTimeout);
        http::async_write(stream_, res_, beast::bind_front_handler(&Session::on_write, shared_from_this()));
    }

    void on_write(beast::error_code ec, std::size_t) {
        finish();
        if (ec) return;
        if (!res_.keep_alive()) {
            stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
            return;
        }
        do_read();
    }

    // The answer is out (or abandoned): its concurrency slots are free.
    void finish() {
        const std::lock_guard<std::mutex> lock(shared_->mutex);
        shared_->engine.finish(ticket_, steady_now());
    }

    beast::tcp_stream stream_;
    net::steady_timer timer_;
    std::shared_ptr<VendorSimulator::Shared> shared_;
    beast::flat_buffer buffer_;
    std::optional<http::request_parser<http::string_body>> parser_;
    http::response<http::string_body> res_;
    std::uint64_t ticket_ = 0;
};

void do_accept(tcp::acceptor& acceptor, const std::shared_ptr<VendorSimulator::Shared>& shared) {
    acceptor.async_accept([&acceptor, shared](beast::error_code ec, tcp::socket socket) {
        if (ec == net::error::operation_aborted) return;
        if (!ec) std::make_shared<Session>(std::move(socket), shared)->start();
        do_accept(acceptor, shared);
    });
}

}  // namespace

VendorSimulator::VendorSimulator(std::vector<Rule> rules, Options options,
                                 std::chrono::microseconds service_time)
    : shared_(std::make_shared<Shared>(std::move(rules), std::move(options))) {
    shared_->service_time = service_time;
    unix_minus_steady_ = unix_now() - steady_now();
    auto io = std::make_shared<net::io_context>(1);
    auto acceptor = std::make_shared<tcp::acceptor>(*io);
    const tcp::endpoint endpoint(net::ip::make_address("127.0.0.1"), 0);
    acceptor->open(endpoint.protocol());
    acceptor->set_option(net::socket_base::reuse_address(true));
    acceptor->bind(endpoint);
    acceptor->listen(1024);
    port_ = acceptor->local_endpoint().port();
    do_accept(*acceptor, shared_);
    stop_ = [io] { io->stop(); };
    thread_ = std::thread([io, acceptor] { io->run(); });
}

VendorSimulator::~VendorSimulator() {
    stop();
}

void VendorSimulator::stop() {
    if (stopped_) return;
    stopped_ = true;
    stop_();
    thread_.join();
}

void VendorSimulator::with_rules(const std::function<void(const VendorRules&)>& read) const {
    const std::lock_guard<std::mutex> lock(shared_->mutex);
    read(shared_->engine);
}

const VendorRules& VendorSimulator::rules() const {
    return shared_->engine;
}

}  // namespace sluice::test::sim
