#pragma once
// The I/O side of shared limits (docs/distributed.md): one pipelined Redis
// connection (redis/redis_connection.hpp) and the decision script
// (redis/decision_script.hpp). It turns the shared stage's asks into EVALSHA
// calls and their replies into StoreAnswers in this process's mono time, and
// carries the side effects that need no answer: lease release and renewal,
// vendor pauses and caps, charges and refunds, and the merge of fallback admissions.
//
// Never blocks and never calls back synchronously: every answer arrives on the
// connection's strand, through the handler given to ask().

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/any_io_executor.hpp>

#include "sluice/common/clock.hpp"
#include "sluice/config/config.hpp"
#include "sluice/queue/shared_stage.hpp"
#include "sluice/redis/decision_script.hpp"

namespace sluice::redis {
class RedisConnection;
}

namespace sluice::proxy {

// What every sluice sharing the Redis counts (metrics and /status).
struct SharedStoreCounters {
    // Script calls sent, by op (kOpNames): acquire is one per decision asked.
    static constexpr std::array<const char*, 7> kOpNames{"acquire", "release", "renew", "pause",
                                                         "cap",     "record",  "refund"};
    enum Op : std::size_t { acquire, release, renew, pause, cap, record, refund };
    std::array<std::atomic<std::uint64_t>, kOpNames.size()> commands{};
    // Decisions that got no usable answer, by reason (kErrorNames).
    static constexpr std::array<const char*, 3> kErrorNames{"not_connected", "timed_out", "error"};
    enum ErrorReason : std::size_t { not_connected, timed_out, error };
    std::array<std::atomic<std::uint64_t>, kErrorNames.size()> errors{};
    std::atomic<std::uint64_t> switches_shared{0};  // back to shared state
    std::atomic<std::uint64_t> switches_fallback{0};
    std::atomic<std::uint64_t> data_lost{0};    // reconnects that found the epoch changed
    std::atomic<std::uint64_t> merged_lots{0};  // fallback admissions recorded on the way back
};

class SharedStore : public std::enable_shared_from_this<SharedStore> {
public:
    using LimitConfigOf = std::function<const config::LimitConfig&(std::size_t slot)>;
    using AnswerHandler = std::function<void(queue::TicketId, const queue::StoreAnswer&)>;
    // up: the store answers again, its counts merged (lost_data: it had lost them). Not up: lost.
    using StateHandler = std::function<void(bool up)>;

    // Reads the password (file or environment) now: throws std::runtime_error naming what is
    // missing (at start, like the admin token).
    SharedStore(const boost::asio::any_io_executor& executor, const config::RedisConfig& config,
                const Clock& clock, LimitConfigOf limit_config);
    ~SharedStore();

    void start(AnswerHandler on_answer, StateHandler on_state);
    void stop();

    // One atomic decision over every use (all-or-nothing); the answer comes to on_answer.
    void ask(const queue::StoreAsk& ask);
    // Gives back the concurrency permits of `lease` (uses: the request's, any algorithm).
    void release(std::uint64_t lease, const std::vector<limit::LimitUse>& uses);
    // Leases of exchanges still running: renewed every lease/3 (a timer of its own).
    void track_lease(std::uint64_t lease, const std::vector<limit::LimitUse>& uses);
    // Vendor feedback, for every replica.
    void pause(const limit::LimitUse& use, Nanos until, std::string_view cause);
    void cap(const limit::LimitUse& use, std::int64_t remaining, Nanos reset_at);
    // Units the vendor charged beyond what was admitted (cost.settle, docs/costs.md): counted in
    // the store at now, even past the limit, as the local limiters count them. Lost when Redis
    // cannot take them (the local count still has them).
    void charge(const std::vector<limit::LimitUse>& extra);
    // Units of an admission made through the store at mono `admitted_at` go back in it: the
    // request never reached the vendor, or the vendor charged less (cost.settle). Taken back as
    // the script's refund does (redis::encode_refund: only what still counts, when unsure less),
    // the admission dated by its age now (so that the two clocks need not agree), less
    // command_timeout (its units were written in Redis after the local admission, by an ask
    // whose trip may have been shorter than this refund's). Fire-and-forget:
    // lost when Redis cannot take it (the units then stay counted there: safe). Concurrency
    // limits give back by release.
    void refund(const std::vector<limit::LimitUse>& uses, Nanos admitted_at);
    // Before the stage trusts the store again: these admissions (made without it) are counted in it.
    // `done(ok)` comes on the strand; on failure the caller stays in fallback and tries again later.
    void record(const std::vector<queue::FallbackLot>& lots, std::function<void(bool ok)> done);
    // The epoch seen at the last connect changed: Redis lost its data (set by the connect check).
    bool lost_data() const { return lost_data_; }

    bool connected() const;
    SharedStoreCounters& counters() { return counters_; }
    const config::RedisConfig& config() const { return config_; }
    std::string replica_id() const { return replica_id_; }

private:
    struct Leases;
    void on_connection_state(bool ready);
    void check_epoch();
    void renew_leases();
    // `uses` as lots of `age` for the units-counting algorithms (not concurrency, not vendor gates).
    std::vector<redis::RecordedLot> counted_lots(const std::vector<limit::LimitUse>& uses, Nanos age) const;
    // A script call whose answer nobody waits for: lost when Redis cannot take it.
    void send_unanswered(SharedStoreCounters::Op op, redis::ScriptCall call);
    std::string lease_id(std::uint64_t lease) const;

    boost::asio::any_io_executor executor_;
    config::RedisConfig config_;
    const Clock& clock_;
    LimitConfigOf limit_config_;
    std::shared_ptr<redis::RedisConnection> connection_;
    AnswerHandler on_answer_;
    StateHandler on_state_;
    std::string replica_id_;  // random per process: lease ids and the epoch
    std::string epoch_;       // the epoch this replica last saw ("" before the first connect)
    bool lost_data_ = false;
    std::unique_ptr<Leases> leases_;
    SharedStoreCounters counters_;
};

}  // namespace sluice::proxy
