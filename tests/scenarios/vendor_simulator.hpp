#pragma once
// The simulated vendor of the scenario suite: an HTTP/1.1 server on 127.0.0.1 (ephemeral port,
// its own thread and io_context) that answers every request as VendorRules decides, after an
// optional service time (a real vendor takes a while to answer, which is what makes a
// concurrency limit bind). Everything it decided is in rules() once stop() has returned (or
// under with_rules() while it runs).
//
// Every exchange is bounded: 1 MiB of header and body at most, 30 s per read or write.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "scenarios/vendor_rules.hpp"

namespace sluice::test::sim {

// CLOCK_MONOTONIC and CLOCK_REALTIME now, in nanoseconds.
Nanos steady_now();
Nanos unix_now();

class VendorSimulator {
public:
    VendorSimulator(std::vector<Rule> rules, Options options,
                    std::chrono::microseconds service_time = std::chrono::microseconds(0));
    ~VendorSimulator();
    VendorSimulator(const VendorSimulator&) = delete;
    VendorSimulator& operator=(const VendorSimulator&) = delete;

    std::uint16_t port() const { return port_; }
    std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
    // Unix time minus steady time, taken at start (for calendar periods in reports).
    Nanos unix_minus_steady() const { return unix_minus_steady_; }

    // Stops serving and joins the thread (idempotent); exchanges under way are abandoned.
    void stop();

    // The engine, under the simulator's lock (while it runs) or after stop().
    void with_rules(const std::function<void(const VendorRules&)>& read) const;
    const VendorRules& rules() const;  // only after stop()

    struct Shared;

private:
    std::shared_ptr<Shared> shared_;
    std::function<void()> stop_;  // stops the server's io_context
    std::thread thread_;
    std::uint16_t port_ = 0;
    Nanos unix_minus_steady_ = 0;
    bool stopped_ = false;
};

}  // namespace sluice::test::sim
