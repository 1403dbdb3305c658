// sluice: an egress rate-limiting proxy. See README.md and docs/.
//
//   sluice --config FILE [--ready-file PATH] [--log-level debug|info|warn|error]
//          [--presets-dir DIR] [--time-scale N]
//   sluice --check --config FILE [--print] [--vendor NAME|all]...   (or: sluice check FILE ...)
//   sluice health [--admin HOST:PORT] [--path PATH] [--timeout SECONDS]
//   sluice simulate --config FILE --traffic LOG [--format access|csv|jsonl] [--json OUT] [--plot OUT.svg]
//          [--vendor NAME] [--per-request] [--upstream-time SECONDS] [--skip-bad-lines N]
//   sluice --version | --help

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <stdexcept>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <nlohmann/json.hpp>

#include "sluice/admin/admin_server.hpp"
#include "sluice/cli/build_info.hpp"
#include "sluice/cli/health_check.hpp"
#include "sluice/common/crash_barrier.hpp"
#include "sluice/common/failpoint.hpp"
#include "sluice/common/log.hpp"
#include "sluice/config/config_printer.hpp"
#include "sluice/config/loader.hpp"
#include "sluice/config/vendor_check.hpp"
#include "sluice/config/vendor_policy.hpp"
#include "sluice/proxy/limit_state_file.hpp"
#include "sluice/proxy/proxy_server.hpp"
#include "sluice/simulate/report.hpp"
#include "sluice/simulate/simulator.hpp"
#include "sluice/simulate/traffic.hpp"

namespace {

namespace net = boost::asio;

// The end of a drain kept for answering what still waits when the queue
// closes: min(this, drain_timeout / 10) before the process exits.
constexpr auto kQueueCloseLead = std::chrono::seconds(1);

// Exit 3: sluice could not start serving (a listener cannot bind, TLS setup, the state folder
// cannot be written). 0, 1 and 2 are in usage(): a clean exit, an invalid config, a usage error.
constexpr int kExitCannotStart = 3;

struct Options {
    std::string config_path = "config/sluice.yaml";
    std::string ready_file;
    bool check_only = false;
    bool print = false;                // --check --print: the effective configuration as YAML
    std::vector<std::string> vendors;  // --vendor: instances to check against their vendor's policy
    sluice::config::LoadOptions load;  // --time-scale, --presets-dir
    sluice::log::Level level = sluice::log::Level::info;
};

// --help prints to stdout and exits 0; a usage error prints why and the usage to stderr, exit 2.
[[noreturn]] void usage(const char* why) {
    std::FILE* out = why ? stderr : stdout;
    if (why) std::fprintf(stderr, "sluice: %s\n", why);
    std::fprintf(
        out,
        "usage: sluice --config FILE [--ready-file PATH] [--log-level debug|info|warn|error]\n"
        "              [--presets-dir DIR] [--time-scale N]\n"
        "       sluice --check --config FILE [--print] [--vendor NAME|all]...   (or: sluice check FILE ...)\n"
        "       sluice health [--admin HOST:PORT] [--path PATH] [--timeout SECONDS]\n"
        "       sluice simulate --config FILE --traffic LOG [--format access|csv|jsonl] [--json OUT]\n"
        "              [--plot OUT.svg] [--vendor NAME] [--per-request] [--upstream-time SECONDS]\n"
        "              [--skip-bad-lines N] [--presets-dir DIR] [--time-scale N]\n"
        "       sluice --version | --help\n"
        "  --print        print the effective configuration (presets expanded, defaults filled) as YAML\n"
        "  --vendor NAME  check a vendors: instance against its vendor's published limits (exit 1 if "
        "exceeded)\n"
        "  --time-scale N divide every limit window by N (tests and demos only)\n"
        "  health         GET PATH (default /healthz) on a running sluice's admin listener (default\n"
        "                 127.0.0.1:9901) within SECONDS (default 2): exit 0 on 200, else 1\n"
        "  simulate       replay recorded traffic (sluice's access log, or CSV/JSONL with headers) through\n"
        "                 the config's routes, limits and queues on a simulated clock (docs/simulate.md):\n"
        "                 a summary per limit on stdout; --json OUT the same as JSON (--per-request: every\n"
        "                 request's outcome too), --plot OUT.svg usage and queue depth over time,\n"
        "                 --vendor NAME the forwarded traffic against that vendors: instance's published\n"
        "                 rules (exit 1 if exceeded), --upstream-time how long the vendor holds a request\n"
        "                 the log gives no time for (default 0.1), --skip-bad-lines N skip up to N bad\n"
        "                 lines (default 0: the first is an error naming the file and line)\n"
        "exit status: 0 clean exit (also after a drain), 1 invalid configuration (or --check --vendor\n"
        "  over a vendor's limit; simulate: a bad traffic log, or --vendor over a published rule), 2 usage\n"
        "  error, 3 could not start (a listener cannot bind, TLS setup, state dir not writable)\n");
    std::exit(why ? 2 : 0);
}

// `sluice health ...`: for container health checks and exec probes (no curl in the image,
// and the admin listener stays on loopback where a kubelet's httpGet cannot reach it).
[[noreturn]] void health(const std::vector<std::string>& args) {
    sluice::cli::HealthTarget target;
    sluice::cli::parse_admin_address(sluice::cli::kDefaultAdminAddress, target);
    for (std::size_t i = 1; i < args.size(); ++i) {
        const auto& arg = args[i];
        auto value = [&]() -> const std::string& {
            if (i + 1 >= args.size()) usage(("health: " + arg + " needs a value").c_str());
            return args[++i];
        };
        if (arg == "--admin") {
            if (const auto error = sluice::cli::parse_admin_address(value(), target); !error.empty())
                usage(("health --admin: " + error).c_str());
        } else if (arg == "--path") {
            const auto& path = value();
            if (path.empty() || path.front() != '/' || path.find_first_of(" \r\n") != std::string::npos)
                usage(("health --path: expected a path starting with '/', got '" + path + "'").c_str());
            target.path = path;
        } else if (arg == "--timeout") {
            const auto& text = value();
            char* end = nullptr;
            const double seconds = std::strtod(text.c_str(), &end);
            if (end == text.c_str() || *end != '\0' || !(seconds > 0) || seconds > 3600)
                usage(("health --timeout needs seconds > 0 (at most 3600), got '" + text + "'").c_str());
            target.timeout = std::chrono::milliseconds(static_cast<long>(seconds * 1000));
        } else if (arg == "--help" || arg == "-h") {
            usage(nullptr);
        } else {
            usage(("health: unknown argument '" + arg + "'").c_str());
        }
    }
    const auto result = sluice::cli::check_health(target);
    const auto where = target.host + ":" + target.port + target.path;
    if (result.status != 0) {
        std::fprintf(result.healthy ? stdout : stderr, "sluice health: %s: %d\n", where.c_str(),
                     result.status);
    } else {
        std::fprintf(stderr, "sluice health: %s: %s\n", where.c_str(), result.error.c_str());
    }
    std::exit(result.healthy ? 0 : 1);
}

// `sluice simulate ...`: recorded traffic through the config's own routes, limiters and
// admission queue on a simulated clock (src/simulate, docs/simulate.md). Exit 0, or 1 for an
// invalid config, an unreadable or bad traffic log, or (--vendor) a published rule exceeded.
[[noreturn]] void simulate(const std::vector<std::string>& args) {
    std::string config_path, traffic_path, json_path, plot_path;
    sluice::config::LoadOptions load;
    sluice::simulate::TrafficReadOptions read;
    sluice::simulate::SimulationOptions run;
    bool per_request = false;
    for (std::size_t i = 1; i < args.size(); ++i) {
        const auto& arg = args[i];
        auto value = [&]() -> const std::string& {
            if (i + 1 >= args.size()) usage(("simulate: " + arg + " needs a value").c_str());
            return args[++i];
        };
        if (arg == "--config" || arg == "-c") {
            config_path = value();
        } else if (arg == "--traffic") {
            traffic_path = value();
        } else if (arg == "--format") {
            const auto& name = value();
            read.format = sluice::simulate::parse_traffic_format(name);
            if (!read.format)
                usage(("simulate --format: expected access, csv or jsonl, got '" + name + "'").c_str());
        } else if (arg == "--json") {
            json_path = value();
        } else if (arg == "--plot") {
            plot_path = value();
        } else if (arg == "--vendor") {
            run.vendor = value();
        } else if (arg == "--per-request") {
            per_request = true;
        } else if (arg == "--upstream-time") {
            const auto& text = value();
            const auto parsed = sluice::config::parse_max_wait_header(text);
            if (!parsed)
                usage(("simulate --upstream-time needs seconds or a duration, got '" + text + "'").c_str());
            run.upstream_time = *parsed;
        } else if (arg == "--skip-bad-lines") {
            const auto& text = value();
            char* end = nullptr;
            const auto count = std::strtoull(text.c_str(), &end, 10);
            if (end == text.c_str() || *end != '\0' || text.front() == '-')
                usage(("simulate --skip-bad-lines needs a count, got '" + text + "'").c_str());
            read.max_bad_lines = count;
        } else if (arg == "--presets-dir") {
            load.presets_dir = value();
        } else if (arg == "--time-scale") {
            const auto& text = value();
            char* end = nullptr;
            const double scale = std::strtod(text.c_str(), &end);
            if (end == text.c_str() || *end != '\0' || !(scale > 0) || scale > 1e9)
                usage(("simulate --time-scale needs a number > 0, got '" + text + "'").c_str());
            load.time_scale = scale;
        } else if (arg == "--help" || arg == "-h") {
            usage(nullptr);
        } else {
            usage(("simulate: unknown argument '" + arg + "'").c_str());
        }
    }
    if (config_path.empty() || traffic_path.empty()) usage("simulate needs --config FILE and --traffic LOG");
    std::shared_ptr<const sluice::config::Config> config;
    try {
        config = sluice::config::load_config_file(config_path, load);
    } catch (const sluice::config::ConfigError& e) {
        std::fprintf(stderr, "sluice simulate: invalid configuration: %s\n", e.what());
        std::exit(1);
    }
    std::ifstream in(traffic_path, std::ios::binary);
    if (!in) {
        std::fprintf(stderr, "sluice simulate: cannot read %s: %s\n", traffic_path.c_str(),
                     std::strerror(errno));
        std::exit(1);
    }
    const auto log = sluice::simulate::read_traffic(in, traffic_path, read);
    if (!log.error.empty()) {
        std::fprintf(stderr, "sluice simulate: %s\n", log.error.c_str());
        std::exit(1);
    }
    const auto started = std::chrono::steady_clock::now();
    const auto result = sluice::simulate::run_simulation(*config, log.requests, log.carries_headers, run);
    const double run_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    if (!result.error.empty()) {
        std::fprintf(stderr, "sluice simulate: %s\n", result.error.c_str());
        std::exit(2);
    }
    std::fputs(sluice::simulate::format_summary(traffic_path, log, result, run_seconds).c_str(), stdout);
    const auto write = [](const std::string& path, const std::string& text) {
        std::ofstream out(path, std::ios::binary | std::ios::trunc);
        out << text;
        out.close();
        if (!out) {
            std::fprintf(stderr, "sluice simulate: cannot write %s\n", path.c_str());
            std::exit(1);
        }
    };
    if (!json_path.empty()) write(json_path, sluice::simulate::format_json(log, result, per_request));
    if (!plot_path.empty())
        write(plot_path, sluice::simulate::format_svg(
                             result, "sluice simulate: " + config_path + " on " + traffic_path));
    std::exit(result.vendor && !result.vendor->kept() ? 1 : 0);
}

Options parse_options(int argc, char** argv) {
    Options options;
    std::vector<std::string> args(argv + 1, argv + argc);
    if (!args.empty() && args.front() == "health") health(args);
    if (!args.empty() && args.front() == "simulate") simulate(args);
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
        } else if (arg == "--print") {
            options.print = true;
        } else if (arg == "--vendor") {
            options.vendors.push_back(value());
        } else if (arg == "--presets-dir") {
            options.load.presets_dir = value();
        } else if (arg == "--time-scale") {
            const auto& text = value();
            char* end = nullptr;
            const double scale = std::strtod(text.c_str(), &end);
            if (end == text.c_str() || *end != '\0' || !(scale > 0) || scale > 1e9)
                usage(("--time-scale needs a number > 0, got '" + text + "'").c_str());
            options.load.time_scale = scale;
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
        } else if (arg == "--version") {
            std::printf("%s\n", sluice::cli::version_line().c_str());
            std::exit(0);
        } else {
            usage(("unknown argument '" + arg + "'").c_str());
        }
    }
    if ((options.print || !options.vendors.empty()) && !options.check_only)
        usage("--print and --vendor go with --check");
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

// After begin_drain(): exit once no client connection is left, or at the deadline.
void drain_then_stop(net::io_context& ioc, sluice::proxy::ProxyServer& server,
                     std::chrono::steady_clock::time_point deadline) {
    auto timer = std::make_shared<net::steady_timer>(ioc, std::chrono::milliseconds(50));
    timer->async_wait([&ioc, &server, deadline, timer](boost::system::error_code) {
        const auto open = server.process()->counters.open_client_connections.load();
        if (open <= 0 || std::chrono::steady_clock::now() >= deadline) {
            if (open > 0) sluice::log::warn("main", std::to_string(open) + " connections cut at shutdown");
            server.stop_admin();  // last: /readyz answered 503 throughout the drain
            ioc.stop();
            return;
        }
        drain_then_stop(ioc, server, deadline);
    });
}

// SIGHUP and POST /v1/reload: read and validate the file, then put it in force
// (ProxyServer::reload). A bad file changes nothing; the answer says why.
sluice::admin::ReloadAnswer reload_config(const Options& options, sluice::proxy::ProxyServer& server) {
    nlohmann::json body;
    std::shared_ptr<const sluice::config::Config> config;
    try {
        config = sluice::config::load_config_file(options.config_path, options.load);
    } catch (const sluice::config::ConfigError& e) {
        auto& reloads = server.process()->reloads;
        reloads.failed.fetch_add(1, std::memory_order_relaxed);
        reloads.last_failed.store(true);
        sluice::log::error("reload", std::string("invalid configuration, nothing changed: ") + e.what());
        body = {{"result", "failure"}, {"error", std::string("invalid configuration: ") + e.what()}};
        return {false, body.dump() + "\n"};
    }
    const auto reloaded = server.reload(config);
    if (!reloaded.ok) {
        sluice::log::error("reload", "refused, nothing changed: " + reloaded.error);
        body = {{"result", "failure"}, {"error", reloaded.error}};
        return {false, body.dump() + "\n"};
    }
    const auto& l = reloaded.limits;
    sluice::log::info("reload", options.config_path + " in force (generation " +
                                    std::to_string(reloaded.generation) +
                                    "): " + std::to_string(l.kept.size()) + " limits kept, " +
                                    std::to_string(l.carried.size()) + " changed (counts carried), " +
                                    std::to_string(l.added.size()) + " added, " +
                                    std::to_string(l.removed.size()) + " removed");
    body = {
        {"result", "success"},
        {"generation", reloaded.generation},
        {"limits", {{"kept", l.kept}, {"carried", l.carried}, {"added", l.added}, {"removed", l.removed}}}};
    return {true, body.dump() + "\n"};
}

// --check: the file is valid; with --print, the effective configuration on stdout (as YAML that
// loads back, so the summary goes to stderr); with --vendor, each instance's policy check.
int check(const Options& options, const sluice::config::Config& config) {
    const auto summary = options.config_path + ": OK (" + std::to_string(config.listeners.size()) +
                         " listeners, " + std::to_string(config.upstreams.size()) + " upstreams, " +
                         std::to_string(config.limits.size()) + " limits, " +
                         std::to_string(config.routes.size()) + " routes)\n";
    std::FILE* reports = options.print ? stderr : stdout;
    if (options.print) {
        std::fputs(sluice::config::print_config(config).c_str(), stdout);
    }
    std::fputs(summary.c_str(), reports);
    std::vector<std::string> names = options.vendors;
    if (names.size() == 1 && names.front() == "all") {
        names.clear();
        for (const auto& vendor : config.vendors) {
            if (vendor.policy) names.push_back(vendor.name);
        }
    }
    bool kept = true;
    for (const auto& name : names) {
        try {
            const auto result = sluice::config::check_vendor(config, name);
            std::fputs(sluice::config::format_vendor_check(result).c_str(), reports);
            kept = kept && result.kept();
        } catch (const std::invalid_argument& e) {
            std::fprintf(stderr, "sluice: --vendor: %s\n", e.what());
            return 2;
        }
    }
    return kept ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
    const Options options = parse_options(argc, argv);
    sluice::log::set_level(options.level);
    // Read once, before any thread starts: tests break chosen code paths on purpose.
    if (const auto error = sluice::failpoint::configure_from_environment(); !error.empty()) {
        std::fprintf(stderr, "sluice: SLUICE_FAILPOINTS: %s\n", error.c_str());
        return 2;
    }

    std::shared_ptr<const sluice::config::Config> config;
    try {
        config = sluice::config::load_config_file(options.config_path, options.load);
    } catch (const sluice::config::ConfigError& e) {
        std::fprintf(stderr, "sluice: invalid configuration: %s\n", e.what());
        return 1;
    }
    if (options.check_only) return check(options, *config);
    if (options.load.time_scale != 1.0) {
        sluice::log::warn("main", "--time-scale " + std::to_string(options.load.time_scale) +
                                      ": every limit window is divided by it; for tests and demos only, the "
                                      "vendors' own windows do not shrink");
    }

    try {
        const unsigned workers = std::max(1u, config->server.workers);
        // One worker: only this thread touches sockets, so the reactor's per-socket
        // locks can go (the scheduler keeps its lock: the resolver's thread posts to it).
        net::io_context ioc(workers == 1 ? BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO : static_cast<int>(workers));
        sluice::SystemClock clock;
        sluice::proxy::ProxyServer server(ioc, config, clock);
        // The saved counts are in the limits before any listener opens.
        std::shared_ptr<sluice::proxy::LimitStateFile> state_file;
        // Shared limits live in Redis (docs/distributed.md): no state file holds them.
        if (config->server.state.enabled &&
            config->server.state.backend == sluice::config::StateBackend::memory) {
            state_file =
                std::make_shared<sluice::proxy::LimitStateFile>(ioc, server.process(), config->server.state);
            if (const auto error = state_file->open()) {
                std::fprintf(stderr,
                             "sluice: server.state.dir: %s (set server.state.enabled: false to run without a "
                             "state file: a restart then forgets every count)\n",
                             error->c_str());
                return kExitCannotStart;
            }
            state_file->restore();
            server.process()->state_file = state_file;
        }
        server.start();
        if (state_file) state_file->start();
        if (!options.ready_file.empty()) write_ready_file(options.ready_file, server);
        sluice::log::info("main", "sluice ready: " + std::to_string(config->routes.size()) + " routes, " +
                                      std::to_string(workers) + " worker(s)");

        server.set_reload_hook([&options, &server] { return reload_config(options, server); });
        // SIGHUP: reload (its default action would kill the process).
        net::signal_set hangups(ioc, SIGHUP);
        std::function<void(boost::system::error_code, int)> on_hangup = [&](boost::system::error_code ec,
                                                                            int) {
            if (ec) return;
            sluice::log::info("main", "SIGHUP: reloading " + options.config_path);
            reload_config(options, server);
            hangups.async_wait(on_hangup);
        };
        hangups.async_wait(on_hangup);

        // SIGTERM/SIGINT: drain for server.drain_timeout; a second one exits at once
        // (the state file is still written, below).
        net::signal_set signals(ioc, SIGINT, SIGTERM);
        net::steady_timer queue_close_timer(ioc);
        std::function<void(boost::system::error_code, int)> on_signal = [&](boost::system::error_code ec,
                                                                            int signal) {
            if (ec) return;
            if (server.process()->draining.load()) {
                sluice::log::warn("main", std::string("signal ") + std::to_string(signal) +
                                              " again: exiting now, without waiting for the drain");
                server.stop_admin();
                ioc.stop();
                return;
            }
            const auto drain = server.runtime()->config->server.drain_timeout;
            const auto now = std::chrono::steady_clock::now();
            const auto deadline = now + drain;
            const auto queue_close =
                deadline - std::min<std::chrono::nanoseconds>(kQueueCloseLead, drain / 10);
            sluice::log::info("main",
                              std::string("signal ") + std::to_string(signal) + ": draining for up to " +
                                  std::to_string(std::chrono::duration<double>(drain).count()) + " s");
            server.begin_drain(std::chrono::duration_cast<sluice::Nanos>(queue_close.time_since_epoch()));
            queue_close_timer.expires_at(queue_close);
            queue_close_timer.async_wait([&server](boost::system::error_code wait_ec) {
                if (!wait_ec) server.end_drain();
            });
            drain_then_stop(ioc, server, deadline);
            signals.async_wait(on_signal);
        };
        signals.async_wait(on_signal);

        // The last barrier: a handler without one of its own (a pool's or the limit
        // service's timer, a signal) that throws unwinds out of run(). Asio allows
        // calling run() again at once; the exception is counted and logged at a
        // bounded rate instead of ending the process (or, with several workers,
        // std::terminate from a thread).
        auto& loop_exceptions = server.process()->counters.loop_exceptions;
        auto run = [&ioc, &loop_exceptions] {
            static sluice::log::RateLimitedSite site;
            while (!sluice::run_contained(loop_exceptions, site, "main", "an io_context handler",
                                          [&ioc] { ioc.run(); })) {
            }
        };
        std::vector<std::thread> threads;
        for (unsigned i = 1; i < workers; ++i) threads.emplace_back(run);
        run();
        for (auto& t : threads) t.join();
        // Every exchange has ended and logged its line: what is buffered goes out now.
        if (const auto& access_log = server.process()->access_log) access_log->stop();
        // Last: nothing is admitted any more, so the file holds every count.
        if (state_file) state_file->save_and_stop();
        sluice::log::info("main", "stopped");
    } catch (const std::exception& e) {
        // A listener that cannot bind, TLS setup, the access log's file: nothing was served.
        std::fprintf(stderr, "sluice: %s\n", e.what());
        return kExitCannotStart;
    }
    return 0;
}
