#include "scenarios/load_clients.hpp"

#include <algorithm>
#include <memory>
#include <optional>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "scenarios/vendor_simulator.hpp"

namespace sluice::test::sim {

namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;

Clock::time_point at_ns(Nanos ns) {
    return Clock::time_point(std::chrono::nanoseconds(ns));
}

Nanos ns(std::chrono::milliseconds ms) {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(ms).count();
}

struct Run {
    const LoadPlan& plan;
    Nanos t0 = 0;
    Nanos t_end = 0;
    Nanos drain_end = 0;
    std::vector<Exchange> exchanges;  // one thread: no lock
};

class Client : public std::enable_shared_from_this<Client> {
public:
    Client(net::io_context& io, Run& run, int group, int id)
        : stream_(io), timer_(io), run_(run), group_(run.plan.groups[group]), group_index_(group), id_(id) {}

    void start(Nanos first) {
        next_ = first;
        do_wait();
    }

private:
    void do_wait() {
        if (next_ >= run_.t_end) {
            beast::error_code ignored;
            stream_.socket().close(ignored);
            return;
        }
        timer_.expires_at(at_ns(next_));
        timer_.async_wait(beast::bind_front_handler(&Client::on_timer, shared_from_this()));
    }

    void on_timer(beast::error_code ec) {
        if (ec) return;
        sent_ = steady_now();
        stream_.expires_at(at_ns(std::min(sent_ + ns(run_.plan.exchange_timeout), run_.drain_end)));
        if (connected_) return do_write();
        const tcp::endpoint to(net::ip::make_address("127.0.0.1"), group_.port);
        stream_.async_connect(to, beast::bind_front_handler(&Client::on_connect, shared_from_this()));
    }

    void on_connect(beast::error_code ec) {
        if (ec) return finish(0);
        connected_ = true;
        do_write();
    }

    void do_write() {
        req_ = {http::string_to_verb(group_.method), group_.target(id_, count_), 11};
        req_.set(http::field::host, "vendor.test");
        req_.set(kRequestIdHeader, group_.name + "-" + std::to_string(id_) + "-" + std::to_string(count_));
        if (group_.headers) {
            for (const auto& [name, value] : group_.headers(id_)) req_.set(name, value);
        }
        req_.prepare_payload();
        ++count_;
        http::async_write(stream_, req_, beast::bind_front_handler(&Client::on_write, shared_from_this()));
    }

    void on_write(beast::error_code ec, std::size_t) {
        if (ec) return finish(0);
        res_.emplace();
        res_->body_limit(1 << 20);
        http::async_read(stream_, buffer_, *res_,
                         beast::bind_front_handler(&Client::on_read, shared_from_this()));
    }

    void on_read(beast::error_code ec, std::size_t) {
        if (ec) return finish(0);
        finish(static_cast<int>(res_->get().result_int()));
    }

    void finish(int status) {
        const Nanos done = steady_now();
        Exchange e;
        e.group = group_index_;
        e.client = id_;
        e.sent = sent_;
        e.done = done;
        e.status = status == 0 && done >= run_.drain_end - 1'000'000 ? -1 : status;
        bool keep_alive = false;
        Nanos pause = 0;
        if (status != 0) {
            const auto& res = res_->get();
            keep_alive = res.keep_alive();
            e.from_vendor = res.find(kVendorMarkHeader) != res.end();
            if (const auto it = res.find("Sluice-Error"); it != res.end())
                e.sluice_error = std::string(it->value());
            if (status != 200) e.body = res.body().substr(0, 1024);
            if (status == 429 || status == 503) {
                pause = ns(run_.plan.pause_after_vendor_429);
                if (!e.from_vendor) {
                    // sluice's own answer: its Retry-After, capped (the run is short).
                    long seconds = 0;
                    if (const auto it = res.find(http::field::retry_after); it != res.end())
                        seconds = std::strtol(std::string(it->value()).c_str(), nullptr, 10);
                    pause = std::min(std::max<Nanos>(seconds * 1'000'000'000, pause),
                                     ns(run_.plan.max_retry_after_pause));
                }
            }
        }
        run_.exchanges.push_back(std::move(e));
        if (!keep_alive) {
            beast::error_code ignored;
            stream_.socket().close(ignored);  // the next send connects again
            buffer_.clear();
            connected_ = false;
        }
        if (status == 0 && done >= run_.drain_end - 1'000'000) return;  // the run is over
        next_ = std::max(done + pause, sent_ + ns(group_.pace));
        do_wait();
    }

    beast::tcp_stream stream_;
    net::steady_timer timer_;
    Run& run_;  // owned by run_load(), which outlives the io_context run
    const ClientGroup& group_;
    int group_index_;
    int id_;
    beast::flat_buffer buffer_;
    http::request<http::string_body> req_;
    std::optional<http::response_parser<http::string_body>> res_;
    bool connected_ = false;
    std::uint64_t count_ = 0;
    Nanos next_ = 0;
    Nanos sent_ = 0;
};

}  // namespace

LoadResult run_load(const LoadPlan& plan) {
    Run run{plan};
    run.exchanges.reserve(1 << 16);
    net::io_context io(1);
    run.t0 = steady_now() + 100'000'000;  // every client is set up before the first send
    run.t_end = run.t0 + ns(plan.duration);
    run.drain_end = run.t_end + ns(plan.drain);
    for (std::size_t g = 0; g < plan.groups.size(); ++g) {
        const auto& group = plan.groups[g];
        for (int i = 0; i < group.clients; ++i) {
            // Staggered over the first millisecond per client, so connects do not all collide.
            std::make_shared<Client>(io, run, static_cast<int>(g), i)->start(run.t0 + i * 1'000'000);
        }
    }
    io.run();
    return {run.t0, run.t_end, std::move(run.exchanges)};
}

}  // namespace sluice::test::sim
