#pragma once
// The process's serving side: builds the Runtime for a config (routes, pools,
// limiters), binds every listener and the admin listener, accepts client
// connections into ClientSessions, and drains on stop().

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "sluice/common/clock.hpp"
#include "sluice/config/config.hpp"
#include "sluice/proxy/runtime.hpp"
#include "sluice/upstream/connection_executor.hpp"

namespace sluice::admin {
class AdminServer;
struct ReloadAnswer;
}  // namespace sluice::admin

namespace sluice::proxy {

class Listener;
class MemoryReleaser;

class ProxyServer {
public:
    // Throws std::runtime_error naming the upstream for a TLS setup failure.
    ProxyServer(boost::asio::io_context& ioc, std::shared_ptr<const config::Config> config,
                const Clock& clock);
    ~ProxyServer();

    // Binds and starts accepting. Throws std::runtime_error naming the listener
    // and address when a bind fails (port in use, bad address).
    void start();

    // Drain: stops accepting client connections, marks the runtime draining
    // (responses go out with Connection: close), closes idle client and upstream
    // connections, answers queued requests 503 shutting_down. The admin
    // listener keeps answering (/readyz: 503) until stop_admin().
    void stop();
    void stop_admin();

    // SIGTERM's drain in two steps. begin_drain: /readyz answers 503, the
    // listeners stop accepting, idle keep-alive connections close, responses
    // go out with Connection: close; queued requests that can be admitted
    // before `queue_close` (mono) still go out, the others get 503
    // shutting_down at once. end_drain, at queue_close: whatever still waits
    // gets its 503, and upstream pools stop. stop() is both at once.
    void begin_drain(Nanos queue_close);
    void end_drain();

    // Hot reload: builds a Runtime for `config` on this process's state and
    // makes it current. New connections and the next request of every open
    // connection use it; exchanges in flight finish on what they began with;
    // queued requests stay queued, moved to the new limits; counts carry over
    // (LimitService::install). Upstream pools whose connection settings are
    // unchanged are kept. Refused (nothing changed) when the config changes
    // what only a restart can (listeners, admin listener, workers, access log),
    // or while draining. Thread-safe.
    struct Reloaded {
        bool ok = false;
        std::string error;             // !ok: why nothing changed
        std::uint64_t generation = 0;  // ok: the new config's
        LimitService::Installed limits;
    };
    Reloaded reload(std::shared_ptr<const config::Config> config);

    // POST /v1/reload on the admin listener runs this (no admin listener: ignored).
    void set_reload_hook(std::function<admin::ReloadAnswer()> hook);

    std::vector<std::pair<std::string, std::uint16_t>> listener_ports() const;
    std::uint16_t admin_port() const;
    // The runtime in force (the last reload's).
    std::shared_ptr<Runtime> runtime() const { return process_->current(); }
    const std::shared_ptr<ProcessState>& process() const { return process_; }

private:
    std::shared_ptr<Runtime> build_runtime(std::shared_ptr<const config::Config> config,
                                           const Runtime* previous, std::string& error);

    boost::asio::io_context& ioc_;
    upstream::ConnectionExecutor executors_;
    std::shared_ptr<ProcessState> process_;
    std::mutex reload_mutex_;
    std::shared_ptr<Runtime> runtime_;  // the current one (under reload_mutex_ once started)
    LimitService::Installed last_install_;
    std::vector<std::shared_ptr<Listener>> listeners_;
    std::shared_ptr<admin::AdminServer> admin_;
    std::shared_ptr<MemoryReleaser> memory_releaser_;
};

}  // namespace sluice::proxy
