#pragma once
// Everything a client session needs for one config snapshot: the config, the
// compiled routes, one connection pool per upstream, and the limit service.
// Immutable after construction except for the pools' and limits' internal
// (synchronised) state, so sessions on any thread share it through a
// shared_ptr; a reload (roadmap) builds a new Runtime and swaps the pointer.

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "sluice/config/config.hpp"
#include "sluice/proxy/limit_service.hpp"
#include "sluice/route/route_table.hpp"
#include "sluice/upstream/connection_pool.hpp"

namespace sluice::proxy {

struct ProxyCounters {
    std::atomic<std::uint64_t> requests{0};
    std::atomic<std::uint64_t> forwarded{0};
    std::atomic<std::uint64_t> rejected_by_limits{0};
    std::atomic<std::uint64_t> no_route{0};
    std::atomic<std::uint64_t> upstream_errors{0};
    std::atomic<std::uint64_t> client_errors{0};
    std::atomic<std::int64_t> open_client_connections{0};
};

struct Runtime {
    std::shared_ptr<const config::Config> config;
    route::RouteTable routes;
    std::vector<std::shared_ptr<upstream::ConnectionPool>> pools;  // index = Config::upstreams index
    std::shared_ptr<LimitService> limits;
    ProxyCounters counters;
    std::atomic<bool> draining{false};

    Runtime(std::shared_ptr<const config::Config> cfg, route::RouteTable table) noexcept
        : config(std::move(cfg)), routes(std::move(table)) {}
};

}  // namespace sluice::proxy
