// A simulated vendor with an exact rolling window, a load generator, and the report that compares
// what the vendor saw with what an exact rolling-window sender could have had. Used by
// tests/bench/vendor_bench.sh; not part of ctest. All traffic is on 127.0.0.1.
//
//   sluice_vendor_sim vendor --port P --limit 166 --window-ms 10000 [--count-rejected] --log FILE
//       HTTP/1.1 server. A request arriving at t (CLOCK_MONOTONIC, when its header has been read)
//       is answered 200 iff fewer than `limit` requests counted in (t - window, t]; else 429.
//       Counted: the accepted ones (default), or every arrival (--count-rejected, a vendor that
//       counts its 429s too). Every response carries "X-Vendor: sim", so a client can tell a
//       vendor's 429 relayed by the proxy from the proxy's own. Each arrival is logged as
//       "<mono ns> <status>"; the log is written when SIGTERM/SIGINT stops the server.
//   sluice_vendor_sim load --port P --clients 50 --duration-ms 35000 --pattern steady|bursty
//       [--pace-ms 100] [--burst-every-ms 2000 --bursts-on 4 --bursts-off 2] [--timeout-ms 40000]
//       --log FILE
//       Closed-loop clients, one keep-alive connection and at most one request in flight each.
//       steady: a client sends its next request as soon as the previous one is answered, but no
//       sooner than pace after its previous send (clients staggered over the first pace).
//       bursty: bursts every burst-every ms, `bursts-on` bursts then `bursts-off` skipped ones;
//       at each burst every idle client sends one request (a client still waiting for an answer
//       sends at the first burst after it). Nothing new is sent after the duration; requests
//       still in flight then are abandoned (recorded as such). Log lines:
//       "<client> <sent ns> <done ns> <status> <from vendor 0|1>", status 0 = error or timeout,
//       -1 = abandoned at the end; the first line is "# t0=<ns> t_end=<ns> ...".
//   sluice_vendor_sim report --vendor-log F --client-log F --limit 166 --window-ms 10000
//       [--model-latency-ms 1]
//       One line of key=value figures (see report()).
//
// Two ideals, both what an exact rolling-window sender (no margin, no delay) could have had sent
// and accepted by the end of the run:
// - ideal: given the same requests at the same times (the clients' send times under this
//   contestant), each may wait until the run ends, sent in order as early as the rule allows:
//   s_i = max(a_i, s_{i-1}, s_{i-limit} + window), ideal = #{i : s_i <= t_end}. It maximizes the
//   number sent by any time for those sends. But clients are closed-loop: a contestant that makes
//   them wait also makes them send less, and this ideal shrinks with it.
// - model_ideal: the same clients (the plan's schedule) in front of that exact sender, each answer
//   reaching its client --model-latency-ms (default 1) after the send; the same yardstick for every
//   contestant (closed_loop_ideal()). With 0 the model is knife-edge: when the burst period divides
//   the window, releases fall exactly on burst instants, which no real exchange can catch.

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <queue>
#include <sstream>
#include <string>
#include <time.h>
#include <vector>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;  // CLOCK_MONOTONIC on Linux: one timebase for both processes

std::int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}
Clock::time_point at_ns(std::int64_t ns) {
    return Clock::time_point(std::chrono::nanoseconds(ns));
}

// --name value options; flags (no value) map to "1".
std::map<std::string, std::string> parse_options(int argc, char** argv, int first) {
    std::map<std::string, std::string> options;
    for (int i = first; i < argc; ++i) {
        std::string name = argv[i];
        if (name.rfind("--", 0) != 0) {
            std::cerr << "unexpected argument " << name << "\n";
            std::exit(2);
        }
        name = name.substr(2);
        if (i + 1 < argc && std::string(argv[i + 1]).rfind("--", 0) != 0) {
            options[name] = argv[++i];
        } else {
            options[name] = "1";
        }
    }
    return options;
}
std::string option(const std::map<std::string, std::string>& options, const std::string& name,
                   const char* fallback = nullptr) {
    auto it = options.find(name);
    if (it != options.end()) return it->second;
    if (fallback == nullptr) {
        std::cerr << "missing --" << name << "\n";
        std::exit(2);
    }
    return fallback;
}
std::int64_t number(const std::map<std::string, std::string>& options, const std::string& name,
                    const char* fallback = nullptr) {
    return std::stoll(option(options, name, fallback));
}

// ---- the vendor ---------------------------------------------------------------------------------

// The vendor's rule, exact: a request at t is accepted iff fewer than limit counted requests lie in
// (t - window, t]. Arrivals must come in time order (one thread, timestamps taken in order).
class RollingWindowRule {
public:
    RollingWindowRule(std::int64_t limit, std::int64_t window_ns, bool count_rejected)
        : limit_(limit), window_ns_(window_ns), count_rejected_(count_rejected) {}

    bool admit(std::int64_t t) {
        while (!counted_.empty() && counted_.front() <= t - window_ns_) counted_.pop_front();
        const bool ok = static_cast<std::int64_t>(counted_.size()) < limit_;
        if (ok || count_rejected_) counted_.push_back(t);
        return ok;
    }

private:
    std::int64_t limit_;
    std::int64_t window_ns_;
    bool count_rejected_;
    std::deque<std::int64_t> counted_;
};

struct Arrival {
    std::int64_t t;
    int status;
};

struct VendorState {
    RollingWindowRule rule;
    std::vector<Arrival> log;
};

class VendorSession : public std::enable_shared_from_this<VendorSession> {
public:
    VendorSession(tcp::socket socket, VendorState& state) : stream_(std::move(socket)), state_(state) {}

    void start() { do_read(); }

private:
    void do_read() {
        req_ = {};
        stream_.expires_after(std::chrono::seconds(120));
        http::async_read(stream_, buffer_, req_,
                         beast::bind_front_handler(&VendorSession::on_read, shared_from_this()));
    }

    void on_read(beast::error_code ec, std::size_t) {
        if (ec) return;  // closed, timed out or malformed: drop the connection
        const std::int64_t t = now_ns();
        const bool ok = state_.rule.admit(t);
        state_.log.push_back({t, ok ? 200 : 429});
        res_ = {ok ? http::status::ok : http::status::too_many_requests, req_.version()};
        res_.set("X-Vendor", "sim");
        res_.set(http::field::content_type, "text/plain");
        res_.body() = ok ? "ok\n" : "rate limited\n";
        res_.keep_alive(req_.keep_alive());
        res_.prepare_payload();
        stream_.expires_after(std::chrono::seconds(30));
        http::async_write(stream_, res_,
                          beast::bind_front_handler(&VendorSession::on_write, shared_from_this()));
    }

    void on_write(beast::error_code ec, std::size_t) {
        if (ec) return;
        if (!res_.keep_alive()) {
            stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
            return;
        }
        do_read();
    }

    beast::tcp_stream stream_;
    VendorState& state_;  // owned by run_vendor(), which outlives every session (one io_context run)
    beast::flat_buffer buffer_;
    http::request<http::string_body> req_;
    http::response<http::string_body> res_;
};

void do_accept(tcp::acceptor& acceptor, VendorState& state) {
    acceptor.async_accept([&acceptor, &state](beast::error_code ec, tcp::socket socket) {
        if (ec == asio::error::operation_aborted) return;
        if (!ec) std::make_shared<VendorSession>(std::move(socket), state)->start();
        do_accept(acceptor, state);
    });
}

int run_vendor(const std::map<std::string, std::string>& options) {
    const auto port = static_cast<unsigned short>(number(options, "port"));
    const std::string log_path = option(options, "log");
    VendorState state{
        RollingWindowRule(number(options, "limit", "166"), number(options, "window-ms", "10000") * 1'000'000,
                          option(options, "count-rejected", "0") == "1"),
        {}};
    state.log.reserve(1 << 20);
    asio::io_context io;
    tcp::acceptor acceptor(io);
    const tcp::endpoint endpoint(asio::ip::make_address("127.0.0.1"), port);
    acceptor.open(endpoint.protocol());
    acceptor.set_option(asio::socket_base::reuse_address(true));
    acceptor.bind(endpoint);
    acceptor.listen(4096);
    do_accept(acceptor, state);
    asio::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&io](beast::error_code, int) { io.stop(); });
    io.run();
    std::ofstream out(log_path);
    for (const Arrival& a : state.log) out << a.t << ' ' << a.status << '\n';
    return out ? 0 : 1;
}

// ---- the load -----------------------------------------------------------------------------------

struct LoadPlan {
    tcp::endpoint target;
    std::string path;
    bool bursty = false;
    std::int64_t t0 = 0;
    std::int64_t t_end = 0;
    std::int64_t pace_ns = 0;
    std::int64_t burst_every_ns = 0;
    std::int64_t bursts_on = 0;
    std::int64_t bursts_off = 0;
    std::int64_t timeout_ns = 0;
    int clients = 1;
};

struct Record {
    int client;
    std::int64_t sent;
    std::int64_t done;
    int status;  // HTTP status; 0 error or timeout; -1 abandoned at the end of the run
    bool from_vendor;
};

// When a client of the plan sends next: steady, `pace` after its previous send but not before its
// previous answer; bursty, at the first scheduled burst at or after its previous answer.
std::int64_t first_send(const LoadPlan& plan, int client) {
    return plan.bursty ? plan.t0 : plan.t0 + plan.pace_ns * client / plan.clients;
}
std::int64_t next_send(const LoadPlan& plan, std::int64_t sent, std::int64_t done) {
    if (!plan.bursty) return std::max(done, sent + plan.pace_ns);
    std::int64_t k = (done - plan.t0 + plan.burst_every_ns - 1) / plan.burst_every_ns;
    if (k < 0) k = 0;
    while (k % (plan.bursts_on + plan.bursts_off) >= plan.bursts_on) ++k;
    return plan.t0 + k * plan.burst_every_ns;
}

class LoadClient : public std::enable_shared_from_this<LoadClient> {
public:
    LoadClient(asio::io_context& io, const LoadPlan& plan, int id, std::vector<Record>& records)
        : stream_(io), timer_(io), plan_(plan), id_(id), records_(records) {}

    void start() {
        next_ = first_send(plan_, id_);  // steady: staggered over the first pace
        do_wait();
    }

private:
    void do_wait() {
        if (next_ >= plan_.t_end) {
            beast::error_code ec;
            stream_.socket().close(ec);
            return;
        }
        timer_.expires_at(at_ns(next_));
        timer_.async_wait(beast::bind_front_handler(&LoadClient::on_timer, shared_from_this()));
    }

    void on_timer(beast::error_code ec) {
        if (ec) return;
        sent_ = now_ns();
        // Every operation of this request ends by its timeout or the end of the run, whichever first.
        stream_.expires_at(at_ns(std::min(sent_ + plan_.timeout_ns, plan_.t_end)));
        if (connected_) return do_write();
        stream_.async_connect(plan_.target,
                              beast::bind_front_handler(&LoadClient::on_connect, shared_from_this()));
    }

    void on_connect(beast::error_code ec) {
        if (ec) return finish(0, false);
        connected_ = true;
        do_write();
    }

    void do_write() {
        req_ = {http::verb::get, plan_.path, 11};
        req_.set(http::field::host, "vendor.test");
        req_.set(http::field::user_agent, "sluice-vendor-bench");
        http::async_write(stream_, req_,
                          beast::bind_front_handler(&LoadClient::on_write, shared_from_this()));
    }

    void on_write(beast::error_code ec, std::size_t) {
        if (ec) return finish(0, false);
        res_.emplace();
        res_->body_limit(1 << 20);
        http::async_read(stream_, buffer_, *res_,
                         beast::bind_front_handler(&LoadClient::on_read, shared_from_this()));
    }

    void on_read(beast::error_code ec, std::size_t) {
        if (ec) return finish(0, false);
        const auto& res = res_->get();
        const bool keep = res.keep_alive();
        finish(static_cast<int>(res.result_int()), res.find("X-Vendor") != res.end(), keep);
    }

    void finish(int status, bool from_vendor, bool keep_alive = false) {
        const std::int64_t done = now_ns();
        if (status == 0 && done >= plan_.t_end) status = -1;
        records_.push_back({id_, sent_, done, status, from_vendor});
        if (!keep_alive) {
            beast::error_code ignored;
            stream_.socket().close(ignored);  // the next send connects again
            buffer_.clear();
            connected_ = false;
        }
        next_ = next_send(plan_, sent_, done);
        do_wait();
    }

    beast::tcp_stream stream_;
    asio::steady_timer timer_;
    const LoadPlan& plan_;  // owned by run_load(), which outlives the io_context run
    int id_;
    std::vector<Record>& records_;  // likewise; one thread, so no lock
    beast::flat_buffer buffer_;
    http::request<http::empty_body> req_;
    std::optional<http::response_parser<http::string_body>> res_;
    bool connected_ = false;
    std::int64_t next_ = 0;
    std::int64_t sent_ = 0;
};

int run_load(const std::map<std::string, std::string>& options) {
    LoadPlan plan;
    plan.target = tcp::endpoint(asio::ip::make_address("127.0.0.1"),
                                static_cast<unsigned short>(number(options, "port")));
    plan.path = option(options, "path", "/api/contacts");
    const std::string pattern = option(options, "pattern", "steady");
    if (pattern != "steady" && pattern != "bursty") {
        std::cerr << "pattern must be steady or bursty\n";
        return 2;
    }
    plan.bursty = pattern == "bursty";
    plan.pace_ns = number(options, "pace-ms", "100") * 1'000'000;
    plan.burst_every_ns = number(options, "burst-every-ms", "2000") * 1'000'000;
    plan.bursts_on = number(options, "bursts-on", "4");
    plan.bursts_off = number(options, "bursts-off", "2");
    plan.timeout_ns = number(options, "timeout-ms", "40000") * 1'000'000;
    const int clients = static_cast<int>(number(options, "clients", "50"));
    plan.clients = clients;
    const std::int64_t duration_ns = number(options, "duration-ms", "35000") * 1'000'000;
    if (clients < 1 || duration_ns <= 0 || plan.pace_ns <= 0 || plan.burst_every_ns <= 0 ||
        plan.bursts_on < 1 || plan.bursts_off < 0) {
        std::cerr << "bad load options\n";
        return 2;
    }
    std::vector<Record> records;
    records.reserve(1 << 20);
    asio::io_context io;
    plan.t0 = now_ns() + 200'000'000;  // every client is set up before the first send
    plan.t_end = plan.t0 + duration_ns;
    for (int i = 0; i < clients; ++i) std::make_shared<LoadClient>(io, plan, i, records)->start();
    io.run();
    std::ofstream out(option(options, "log"));
    out << "# t0=" << plan.t0 << " t_end=" << plan.t_end << " clients=" << clients
        << " bursty=" << plan.bursty << " pace_ns=" << plan.pace_ns
        << " burst_every_ns=" << plan.burst_every_ns << " bursts_on=" << plan.bursts_on
        << " bursts_off=" << plan.bursts_off << '\n';
    for (const Record& r : records)
        out << r.client << ' ' << r.sent << ' ' << r.done << ' ' << r.status << ' ' << (r.from_vendor ? 1 : 0)
            << '\n';
    return out ? 0 : 1;
}

// ---- the report ---------------------------------------------------------------------------------

// The most times in any interval (t - window, t], times sorted.
std::size_t max_in_window(const std::vector<std::int64_t>& times, std::int64_t window_ns) {
    std::size_t best = 0;
    std::size_t first = 0;
    for (std::size_t last = 0; last < times.size(); ++last) {
        while (times[first] <= times[last] - window_ns) ++first;
        best = std::max(best, last - first + 1);
    }
    return best;
}

// The same clients in front of an exact rolling-window sender (no margin): every request waits in
// order and goes as early as the rule allows; its answer reaches the client latency_ns later.
// Independent of the contestant, so it is the yardstick shared by all of them.
std::int64_t closed_loop_ideal(const LoadPlan& plan, std::int64_t limit, std::int64_t window_ns,
                               std::int64_t latency_ns) {
    using Event = std::pair<std::int64_t, int>;  // send time, client
    std::priority_queue<Event, std::vector<Event>, std::greater<>> sends;
    for (int c = 0; c < plan.clients; ++c) sends.push({first_send(plan, c), c});
    std::vector<std::int64_t> admitted;
    while (!sends.empty()) {
        const auto [a, c] = sends.top();
        sends.pop();
        if (a >= plan.t_end) continue;  // the run is over: nothing more is sent
        std::int64_t s = a;
        if (!admitted.empty()) s = std::max(s, admitted.back());
        if (admitted.size() >= static_cast<std::size_t>(limit))
            s = std::max(s, admitted[admitted.size() - limit] + window_ns);
        if (s > plan.t_end) continue;  // it would not have gone out in time; its client is done
        admitted.push_back(s);
        sends.push({next_send(plan, a, s + latency_ns), c});
    }
    return static_cast<std::int64_t>(admitted.size());
}

double percentile(std::vector<double> v, double p) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    const auto i = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
    return v[std::min(i, v.size() - 1)];
}

int run_report(const std::map<std::string, std::string>& options) {
    const std::int64_t limit = number(options, "limit", "166");
    const std::int64_t window_ns = number(options, "window-ms", "10000") * 1'000'000;
    std::ifstream clients_in(option(options, "client-log"));
    std::string header;
    std::getline(clients_in, header);
    std::int64_t t0 = 0;
    std::int64_t t_end = 0;
    LoadPlan plan;
    int bursty = 0;
    if (std::sscanf(header.c_str(),
                    "# t0=%ld t_end=%ld clients=%d bursty=%d pace_ns=%ld burst_every_ns=%ld bursts_on=%ld "
                    "bursts_off=%ld",
                    &t0, &t_end, &plan.clients, &bursty, &plan.pace_ns, &plan.burst_every_ns, &plan.bursts_on,
                    &plan.bursts_off) != 8) {
        std::cerr << "client log has no header\n";
        return 1;
    }
    plan.t0 = t0;
    plan.t_end = t_end;
    plan.bursty = bursty != 0;
    const std::int64_t model =
        closed_loop_ideal(plan, limit, window_ns, number(options, "model-latency-ms", "1") * 1'000'000);
    std::vector<std::int64_t> sends;
    std::int64_t ok = 0, proxy_429 = 0, vendor_429_relayed = 0, other = 0, errors = 0, abandoned = 0;
    std::vector<double> ok_latency_ms;
    Record r{};
    int from_vendor = 0;
    while (clients_in >> r.client >> r.sent >> r.done >> r.status >> from_vendor) {
        sends.push_back(r.sent);
        if (r.status == 200) {
            ++ok;
            ok_latency_ms.push_back(static_cast<double>(r.done - r.sent) / 1e6);
        } else if (r.status == 429) {
            ++(from_vendor ? vendor_429_relayed : proxy_429);
        } else if (r.status == 0) {
            ++errors;
        } else if (r.status == -1) {
            ++abandoned;
        } else {
            ++other;
        }
    }
    std::ifstream vendor_in(option(options, "vendor-log"));
    std::vector<std::int64_t> arrivals;
    std::vector<std::int64_t> accepted;
    std::int64_t vendor_429 = 0, accepted_in_span = 0;
    std::int64_t t = 0;
    int status = 0;
    while (vendor_in >> t >> status) {
        arrivals.push_back(t);
        if (status == 200) {
            accepted.push_back(t);
            if (t <= t_end) ++accepted_in_span;
        } else {
            ++vendor_429;
        }
    }
    // The greedy exact sender over the same send times (see the header comment).
    std::sort(sends.begin(), sends.end());
    std::vector<std::int64_t> s(sends.size());
    std::int64_t ideal = 0;
    for (std::size_t i = 0; i < sends.size(); ++i) {
        s[i] = sends[i];
        if (i > 0) s[i] = std::max(s[i], s[i - 1]);
        if (i >= static_cast<std::size_t>(limit)) s[i] = std::max(s[i], s[i - limit] + window_ns);
        if (s[i] <= t_end) ++ideal;
    }
    std::printf(
        "sent=%zu vendor_arrivals=%zu vendor_accepted=%zu accepted_in_span=%ld vendor_429=%ld "
        "max_accepted_in_window=%zu "
        "max_arrivals_in_window=%zu ideal=%ld ratio=%.4f model_ideal=%ld model_ratio=%.4f client_ok=%ld "
        "proxy_429=%ld vendor_429_relayed=%ld "
        "client_other=%ld client_errors=%ld abandoned=%ld ok_p50_ms=%.1f ok_p99_ms=%.1f ok_max_ms=%.1f\n",
        sends.size(), arrivals.size(), accepted.size(), accepted_in_span, vendor_429,
        max_in_window(accepted, window_ns), max_in_window(arrivals, window_ns), ideal,
        ideal > 0 ? static_cast<double>(accepted_in_span) / static_cast<double>(ideal) : 0.0, model,
        model > 0 ? static_cast<double>(accepted_in_span) / static_cast<double>(model) : 0.0, ok, proxy_429,
        vendor_429_relayed, other, errors, abandoned, percentile(ok_latency_ms, 0.5),
        percentile(ok_latency_ms, 0.99), percentile(ok_latency_ms, 1.0));
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::cerr << "usage: sluice_vendor_sim vendor|load|report --option value ...\n";
        return 2;
    }
    const std::string mode = argv[1];
    const auto options = parse_options(argc, argv, 2);
    try {
        if (mode == "vendor") return run_vendor(options);
        if (mode == "load") return run_load(options);
        if (mode == "report") return run_report(options);
    } catch (const std::exception& e) {
        std::cerr << "sluice_vendor_sim " << mode << ": " << e.what() << "\n";
        return 1;
    }
    std::cerr << "unknown mode " << mode << "\n";
    return 2;
}
