#pragma once
// Closed-loop clients for the scenario suite: groups of clients on one thread and io_context,
// each with one keep-alive connection and at most one request in flight, sending again as soon
// as it is answered (no sooner than its pace). After a 429 a client pauses, as a polite client
// would: sluice's own 429 for its Retry-After (capped), the vendor's for a short fixed pause.
//
// Every request carries X-Scenario-Id (group-client-n), so the vendor can tell a request that
// reached it twice. Nothing new is sent after the run's duration; answers still awaited then
// get `drain` more, after which they are abandoned (recorded as such, status -1). Each exchange is
// bounded by `exchange_timeout`; 127.0.0.1 only.

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "scenarios/vendor_rules.hpp"

namespace sluice::test::sim {

struct ClientGroup {
    std::string name;
    int clients = 1;
    std::uint16_t port = 0;  // sluice's listener, or the vendor itself for a second consumer
    std::string method = "GET";
    std::function<std::string(int client, std::uint64_t n)> target;  // n: the client's request number
    std::function<Fields(int client)> headers;                       // e.g. the API key; may be empty
    std::chrono::milliseconds pace{0};  // at most one send per pace per client (0: when answered)
};

struct Exchange {
    int group = 0;
    int client = 0;
    Nanos sent = 0;  // steady
    Nanos done = 0;
    int status = 0;            // HTTP status; 0 error or timeout; -1 abandoned at the end of the run
    bool from_vendor = false;  // carries the vendor's mark (X-Vendor), relayed by sluice or direct
    std::string sluice_error;  // Sluice-Error of a synthetic answer
    std::string body;          // of an answer other than 200 (first 1 KiB)
};

struct LoadPlan {
    std::vector<ClientGroup> groups;
    std::chrono::milliseconds duration{10'000};
    std::chrono::milliseconds drain{1'500};
    std::chrono::milliseconds exchange_timeout{60'000};
    std::chrono::milliseconds pause_after_vendor_429{20};
    std::chrono::milliseconds max_retry_after_pause{1'000};
};

struct LoadResult {
    Nanos t0 = 0;     // the first send (steady)
    Nanos t_end = 0;  // nothing sent from here on
    std::vector<Exchange> exchanges;
};

// Runs every client to its end (blocking).
LoadResult run_load(const LoadPlan& plan);

}  // namespace sluice::test::sim
