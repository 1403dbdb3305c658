#pragma once
// GET /v1/limits: every limit (the configured ones, then each upstream's vendor
// gate) with its algorithm, its parameters, what it did (admitted, queued,
// refused, waiting now, the oldest waiter's age) and its most pressed keys
// (fewest units remaining first, then the longest vendor pause; at most
// server.admin.limits_top_keys per limit, tracked_keys gives the total): used,
// remaining, reset, a vendor pause and why, the requests waiting on the key and
// the oldest one's age. Keys are hashed labels (limit::key_label), never values;
// a key source is described by its kind and name only. docs/operations.md
// ("/v1/limits") lists every field. Built in bounded steps like /status (stepped_page.hpp).

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sluice/admin/stepped_page.hpp"

namespace sluice::admin {

class LimitsView final : public SteppedPage {
public:
    explicit LimitsView(std::size_t top_keys) : walk_(top_keys) {}

    void begin(proxy::Runtime& runtime) override;
    bool advance(proxy::Runtime& runtime) override;
    std::string finish() override;

private:
    // What the page reads of one limit in begin(), at one instant.
    struct LimitTotals {
        queue::LimitActivity activity;
        Nanos oldest_since = kNever;
        std::uint64_t queued_last_minute = 0;
        std::uint64_t refused_last_minute = 0;
    };

    nlohmann::json out_;
    nlohmann::json limits_ = nlohmann::json::array();
    std::vector<LimitTotals> totals_;
    Instant begun_;
    LimitKeyWalk walk_;
    // The queue of each key kept, read under the lock when its limit's walk ends.
    std::vector<std::optional<queue::KeyWaiting>> key_waiting_;
};

// "header X-Api-Key + path_param account" (kinds and names, never values);
// "shared" for an unkeyed limit.
std::string describe_key_sources(const std::vector<config::KeySource>& sources);

}  // namespace sluice::admin
