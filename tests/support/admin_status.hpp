#pragma once
// Small helpers the e2e tests share: sluice's /status as JSON, and a bounded wait for a condition.

#include <chrono>
#include <functional>
#include <thread>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "support/http_client.hpp"
#include "support/sluice_process.hpp"

namespace sluice::test {

// GET /status on the admin listener (5 s at most); the test fails unless it answers 200.
inline nlohmann::json admin_status(const SluiceProcess& sluice) {
    HttpClient admin(sluice.admin_port(), std::chrono::seconds(5));
    const auto response = admin.get("/status");
    REQUIRE(response.status == 200);
    return response.json();
}

// Polls `done` every 10 ms until it holds or `timeout` has passed; its last answer.
inline bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
        if (done()) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return done();
}

}  // namespace sluice::test
