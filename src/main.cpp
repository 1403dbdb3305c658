// sluice: an egress rate-limiting proxy. See README.md and docs/.
//
//   sluice --config FILE [--ready-file PATH] [--log-level debug|info|warn|error]
//   sluice --check --config FILE        (or: sluice check FILE)

#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <nlohmann/json.hpp>

#include "sluice/common/log.hpp"
#include "sluice/config/loader.hpp"
#include "sluice/proxy/proxy_server.hpp"

namespace {

namespace net = boost::asio;

// How long in-flight exchanges get to finish after SIGTERM before the process exits.
constexpr auto kDrainGrace = std::chrono::seconds(5);

struct Options {
    std::string config_path = "config/sluice.yaml";
    std::string ready_file;
    bool check_only = false;
    sluice::log::Level level = sluice::log::Level::info;
};

[[noreturn]] void usage(const char* why) {
    if (why) std::fprintf(stderr, "sluice: %s\n", why);
    std::fprintf(stderr,
                 "usage: sluice --config FILE [--ready-file PATH] [--log-level debug|info|warn|error]\n"
                 "       sluice --check --config FILE   (or: sluice check FILE)\n");
    std::exit(2);
}

Options parse_options(int argc, char** argv) {
    Options options;
    std::vector<std::string> args(argv + 1, argv + argc);
    for (std::size_t i = 0; i < args.size(); ++i) {
        const auto& arg = args[i];
        auto value = [&]() -> const std::string& {
            if (i + 1 >= args.size()) usage((arg + " needs a value").c_str());
            return args[++i];
        };
        if (arg == "--config" || arg == "-c") {
            options.config_path = value();
        } else if (arg == "--check" || (i == 0 && arg == "check")) {
            options.check_only = true;
            if (arg == "check" && i + 1 < args.size() && args[i + 1].rfind("-", 0) != 0)
                options.config_path = value();
        } else if (arg == "--ready-file") {
            options.ready_file = value();
        } else if (arg == "--log-level") {
            const auto& level = value();
            if (level == "debug")
                options.level = sluice::log::Level::debug;
            else if (level == "info")
                options.level = sluice::log::Level::info;
            else if (level == "warn")
                options.level = sluice::log::Level::warn;
            else if (level == "error")
                options.level = sluice::log::Level::error;
            else
                usage(("unknown log level '" + level + "'").c_str());
        } else if (arg == "--help" || arg == "-h") {
            usage(nullptr);
        } else {
            usage(("unknown argument '" + arg + "'").c_str());
        }
    }
    return options;
}

void write_ready_file(const std::string& path, const sluice::proxy::ProxyServer& server) {
    nlohmann::json ready;
    ready["pid"] = ::getpid();
    ready["listeners"] = nlohmann::json::object();
    for (const auto& [name, port] : server.listener_ports()) ready["listeners"][name] = port;
    ready["admin"] = server.admin_port();
    const auto temp = path + ".tmp";
    {
        std::ofstream out(temp, std::ios::trunc);
        out << ready.dump() << "\n";
        if (!out) throw std::runtime_error("cannot write ready file " + temp);
    }
    if (std::rename(temp.c_str(), path.c_str()) != 0) {
        throw std::runtime_error("cannot rename ready file to " + path + ": " + std::strerror(errno));
    }
}

// After stop(): exit once no client connection is left, or after the grace period.
void drain_then_stop(net::io_context& ioc, sluice::proxy::ProxyServer& server,
                     std::chrono::steady_clock::time_point deadline) {
    auto timer = std::make_shared<net::steady_timer>(ioc, std::chrono::milliseconds(50));
    timer->async_wait([&ioc, &server, deadline, timer](boost::system::error_code) {
        const auto open = server.runtime()->counters.open_client_connections.load();
        if (open <= 0 || std::chrono::steady_clock::now() >= deadline) {
            if (open > 0) sluice::log::warn("main", std::to_string(open) + " connections cut at shutdown");
            server.stop_admin();  // last: /readyz answered 503 throughout the drain
            ioc.stop();
            return;
        }
        drain_then_stop(ioc, server, deadline);
    });
}

}  // namespace

int main(int argc, char** argv) {
    const Options options = parse_options(argc, argv);
    sluice::log::set_level(options.level);

    std::shared_ptr<const sluice::config::Config> config;
    try {
        config = sluice::config::load_config_file(options.config_path);
    } catch (const sluice::config::ConfigError& e) {
        std::fprintf(stderr, "sluice: invalid configuration: %s\n", e.what());
        return 1;
    }
    if (options.check_only) {
        std::printf("%s: OK (%zu listeners, %zu upstreams, %zu limits, %zu routes)\n",
                    options.config_path.c_str(), config->listeners.size(), config->upstreams.size(),
                    config->limits.size(), config->routes.size());
        return 0;
    }

    try {
        const unsigned workers = std::max(1u, config->server.workers);
        // One worker: only this thread touches sockets, so the reactor's per-socket
        // locks can go (the scheduler keeps its lock: the resolver's thread posts to it).
        net::io_context ioc(workers == 1 ? BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO : static_cast<int>(workers));
        sluice::SystemClock clock;
        sluice::proxy::ProxyServer server(ioc, config, clock);
        server.start();
        if (!options.ready_file.empty()) write_ready_file(options.ready_file, server);
        sluice::log::info("main", "sluice ready: " + std::to_string(config->routes.size()) + " routes, " +
                                      std::to_string(workers) + " worker(s)");

        // SIGHUP's default action kills the process: a sidecar's supervisor sending it
        // to ask for a reload must not take the proxy down.
        net::signal_set hangups(ioc, SIGHUP);
        std::function<void(boost::system::error_code, int)> on_hangup = [&](boost::system::error_code ec,
                                                                            int) {
            if (ec) return;
            sluice::log::warn("main", "SIGHUP: configuration reload is not supported yet; ignored");
            hangups.async_wait(on_hangup);
        };
        hangups.async_wait(on_hangup);

        net::signal_set signals(ioc, SIGINT, SIGTERM);
        signals.async_wait([&](boost::system::error_code ec, int signal) {
            if (ec) return;
            sluice::log::info("main", std::string("signal ") + std::to_string(signal) + ": draining");
            server.stop();
            drain_then_stop(ioc, server, std::chrono::steady_clock::now() + kDrainGrace);
        });

        std::vector<std::thread> threads;
        for (unsigned i = 1; i < workers; ++i) threads.emplace_back([&ioc] { ioc.run(); });
        ioc.run();
        for (auto& t : threads) t.join();
        sluice::log::info("main", "stopped");
    } catch (const std::exception& e) {
        std::fprintf(stderr, "sluice: %s\n", e.what());
        return 1;
    }
    return 0;
}
