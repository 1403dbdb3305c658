#include "sluice/proxy/shared_store.hpp"

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <unordered_map>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include "sluice/common/log.hpp"
#include "sluice/redis/decision_script.hpp"
#include "sluice/redis/redis_connection.hpp"

namespace sluice::proxy {

namespace net = boost::asio;

namespace {

std::string read_password(const config::RedisConfig& config) {
    if (!config.password_file.empty()) {
        std::ifstream in(config.password_file, std::ios::binary);
        if (!in)
            throw std::runtime_error("server.state.redis.password_file " + config.password_file +
                                     ": cannot be read");
        std::ostringstream text;
        text << in.rdbuf();
        auto password = text.str();
        while (!password.empty() && (password.back() == '\n' || password.back() == '\r')) password.pop_back();
        if (password.empty())
            throw std::runtime_error("server.state.redis.password_file " + config.password_file +
                                     " is empty");
        return password;
    }
    if (!config.password_env.empty()) {
        const char* value = std::getenv(config.password_env.c_str());
        if (value == nullptr || *value == '\0')
            throw std::runtime_error("server.state.redis.password_env: the environment variable " +
                                     config.password_env + " is not set");
        return value;
    }
    return {};
}

redis::RedisEndpoint endpoint_of(const config::RedisConfig& config) {
    redis::RedisEndpoint endpoint;
    endpoint.host = config.host;
    endpoint.port = config.port;
    endpoint.unix_path = config.unix_path;
    endpoint.db = config.db;
    endpoint.username = config.username;
    endpoint.password = read_password(config);
    endpoint.tls = config.tls;
    endpoint.tls_ca_file = config.tls_ca_file;
    endpoint.tls_server_name = config.tls_server_name;
    endpoint.tls_verify = config.tls_verify;
    endpoint.connect_timeout = config.connect_timeout;
    endpoint.command_timeout = config.command_timeout;
    return endpoint;
}

std::string random_id() {
    std::random_device device;
    std::uniform_int_distribution<std::uint64_t> draw;
    char text[17];
    std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(draw(device)));
    return text;
}

}  // namespace

// Leases of running exchanges, renewed by one timer.
struct SharedStore::Leases {
    explicit Leases(const net::any_io_executor& executor) : timer(executor) {}
    std::mutex mutex;
    std::unordered_map<std::uint64_t, std::vector<limit::LimitUse>> running;
    net::steady_timer timer;
};

SharedStore::SharedStore(const net::any_io_executor& executor, const config::RedisConfig& config,
                         const Clock& clock, LimitConfigOf limit_config)
    : executor_(net::make_strand(executor)),
      config_(config),
      clock_(clock),
      limit_config_(std::move(limit_config)),
      connection_(std::make_shared<redis::RedisConnection>(executor_, endpoint_of(config))),
      replica_id_(random_id()),
      leases_(std::make_unique<Leases>(executor_)) {}

SharedStore::~SharedStore() = default;

bool SharedStore::connected() const {
    return connection_->connected();
}

void SharedStore::start(AnswerHandler on_answer, StateHandler on_state) {
    on_answer_ = std::move(on_answer);
    on_state_ = std::move(on_state);
    connection_->on_state_change([weak = weak_from_this()](bool ready) {
        if (auto self = weak.lock()) self->on_connection_state(ready);
    });
    connection_->start();
    renew_leases();
}

void SharedStore::stop() {
    connection_->stop();
    net::post(executor_, [leases = leases_.get(), self = shared_from_this()] { leases->timer.cancel(); });
}

void SharedStore::on_connection_state(bool ready) {
    if (!ready) {
        log::warn("shared", "Redis connection lost: shared limits follow on_redis_failure until it is back");
        if (on_state_) on_state_(false);
        return;
    }
    check_epoch();
}

// `{prefix}:epoch` is set once by the first sluice to connect; a value other than the one this
// replica saw before means Redis restarted without its data (docs/distributed.md, "Persistence").
void SharedStore::check_epoch() {
    const auto key = "{" + config_.key_prefix + "}:epoch";
    connection_->command({"SET", key, random_id(), "NX"},
                         [](boost::system::error_code, const redis::Reply&) {});
    connection_->command({"GET", key}, [weak = weak_from_this()](boost::system::error_code ec,
                                                                 const redis::Reply& reply) {
        auto self = weak.lock();
        if (!self) return;
        if (ec || reply.type != redis::Reply::Type::string) {
            ++self->counters_.errors[SharedStoreCounters::error];
            return;  // the connection is dropped and comes back: checked again then
        }
        self->lost_data_ = !self->epoch_.empty() && self->epoch_ != reply.str;
        if (self->lost_data_) {
            ++self->counters_.data_lost;
            log::warn(
                "shared",
                "Redis lost its data (epoch changed): this replica's recent admissions are recorded again");
        }
        self->epoch_ = reply.str;
        log::info("shared",
                  "Redis connected at " + (self->config_.unix_path.empty()
                                               ? self->config_.host + ":" + std::to_string(self->config_.port)
                                               : "unix:" + self->config_.unix_path));
        if (self->on_state_) self->on_state_(true);
    });
}

std::string SharedStore::lease_id(std::uint64_t lease) const {
    return replica_id_ + ":" + std::to_string(lease);
}

namespace {

std::vector<redis::SharedUse> shared_uses(const std::vector<limit::LimitUse>& uses,
                                          const SharedStore::LimitConfigOf& config_of,
                                          bool concurrency_only) {
    std::vector<redis::SharedUse> out;
    out.reserve(uses.size());
    for (const auto& use : uses) {
        const auto& config = config_of(use.limit_index);
        if (concurrency_only && config.algorithm != config::Algorithm::concurrency) continue;
        out.push_back(redis::SharedUse{&config, use.key, use.cost});
    }
    return out;
}

// `now + delay`, where the script's "never" (kNever) and anything past it stay kNever.
Nanos after(const Instant& now, Nanos delay) {
    if (delay >= kNever - now.mono) return kNever;
    return now.mono + delay;
}

queue::StoreAnswer answer_of(const redis::AcquireResult& result, const std::vector<redis::SharedUse>& shared,
                             const Instant& now) {
    queue::StoreAnswer answer;
    answer.kind = queue::StoreAnswer::Kind::decided;
    answer.allowed = result.allowed;
    answer.limiting = result.limiting;
    if (!result.allowed) {
        Nanos latest{0};
        bool predictable = true;
        for (std::size_t i = 0; i < result.uses.size(); ++i) {
            const auto& use = result.uses[i];
            // A shadow limit (enforce: false) reports its own refusal but holds nobody back.
            if (use.allowed || (i < shared.size() && !shared[i].limit->enforce)) continue;
            if (!use.predictable) predictable = false;
            latest = std::max(latest, use.earliest_delay);
        }
        answer.earliest = predictable ? after(now, latest) : kNever;
    }
    if (result.limiting && *result.limiting < result.uses.size()) {
        const auto& use = result.uses[*result.limiting];
        answer.decision.allowed = use.allowed;
        answer.decision.limit = use.limit;
        answer.decision.remaining = use.remaining;
        answer.decision.reset = after(now, use.reset_delay);
        answer.decision.earliest =
            use.allowed ? now.mono : (use.predictable ? after(now, use.earliest_delay) : kNever);
    }
    return answer;
}

}  // namespace

void SharedStore::ask(const queue::StoreAsk& ask) {
    const auto now = clock_.now();
    const auto uses = shared_uses(ask.uses, limit_config_, false);
    auto call =
        redis::encode_acquire(config_.key_prefix, uses, lease_id(ask.ticket), config_.lease, now.wall);
    ++counters_.commands[SharedStoreCounters::acquire];
    connection_->eval_script(
        redis::decision_script(), std::move(call.keys), std::move(call.args),
        [weak = weak_from_this(), ticket = ask.ticket, uses](boost::system::error_code ec,
                                                             const redis::Reply& reply) {
            auto self = weak.lock();
            if (!self) return;
            queue::StoreAnswer answer;
            answer.kind = queue::StoreAnswer::Kind::unavailable;
            if (!ec) {
                std::string error;
                if (const auto result = redis::decode_decision(reply, uses.size(), error)) {
                    answer = answer_of(*result, uses, self->clock_.now());
                } else {
                    log::warn("shared", "a decision from Redis could not be read: " + error);
                }
            }
            if (answer.kind == queue::StoreAnswer::Kind::unavailable) {
                const auto reason = ec == redis::error::not_connected ? SharedStoreCounters::not_connected
                                    : ec == redis::error::timed_out   ? SharedStoreCounters::timed_out
                                                                      : SharedStoreCounters::error;
                ++self->counters_.errors[reason];
            }
            if (self->on_answer_) self->on_answer_(ticket, answer);
        });
}

void SharedStore::release(std::uint64_t lease, const std::vector<limit::LimitUse>& uses) {
    {
        const std::lock_guard<std::mutex> lock(leases_->mutex);
        leases_->running.erase(lease);
    }
    const auto shared = shared_uses(uses, limit_config_, true);
    if (shared.empty()) return;
    auto call = redis::encode_release(config_.key_prefix, shared, lease_id(lease));
    // Lost when Redis is down: the lease then expires by itself.
    send_unanswered(SharedStoreCounters::release, std::move(call));
}

void SharedStore::track_lease(std::uint64_t lease, const std::vector<limit::LimitUse>& uses) {
    std::vector<limit::LimitUse> concurrency;
    for (const auto& use : uses) {
        if (limit_config_(use.limit_index).algorithm == config::Algorithm::concurrency)
            concurrency.push_back(use);
    }
    if (concurrency.empty()) return;
    const std::lock_guard<std::mutex> lock(leases_->mutex);
    leases_->running.emplace(lease, std::move(concurrency));
}

void SharedStore::renew_leases() {
    std::vector<std::pair<std::uint64_t, std::vector<limit::LimitUse>>> running;
    {
        const std::lock_guard<std::mutex> lock(leases_->mutex);
        running.assign(leases_->running.begin(), leases_->running.end());
    }
    for (const auto& [lease, uses] : running) {
        auto call = redis::encode_renew(config_.key_prefix, shared_uses(uses, limit_config_, true),
                                        lease_id(lease), config_.lease);
        send_unanswered(SharedStoreCounters::renew, std::move(call));
    }
    leases_->timer.expires_after(
        std::chrono::duration_cast<std::chrono::steady_clock::duration>(config_.lease / 3));
    leases_->timer.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
        if (ec) return;
        if (auto self = weak.lock()) self->renew_leases();
    });
}

void SharedStore::pause(const limit::LimitUse& use, Nanos until, std::string_view cause) {
    const auto now = clock_.now();
    if (until <= now.mono) return;
    const auto& config = limit_config_(use.limit_index);
    auto call = redis::encode_pause(config_.key_prefix, redis::SharedUse{&config, use.key, use.cost},
                                    until - now.mono, cause);
    send_unanswered(SharedStoreCounters::pause, std::move(call));
}

void SharedStore::cap(const limit::LimitUse& use, std::int64_t remaining, Nanos reset_at) {
    const auto now = clock_.now();
    if (reset_at <= now.mono) return;
    const auto& config = limit_config_(use.limit_index);
    auto call = redis::encode_cap(config_.key_prefix, redis::SharedUse{&config, use.key, use.cost}, remaining,
                                  reset_at - now.mono);
    send_unanswered(SharedStoreCounters::cap, std::move(call));
}

std::vector<redis::RecordedLot> SharedStore::counted_lots(const std::vector<limit::LimitUse>& uses,
                                                          Nanos age) const {
    std::vector<redis::RecordedLot> lots;
    for (const auto& use : uses) {
        const auto& config = limit_config_(use.limit_index);
        // A concurrency limit counts requests in flight (leases), a vendor gate nothing.
        if (config.algorithm == config::Algorithm::concurrency ||
            config.algorithm == config::Algorithm::vendor_gate || use.cost <= 0)
            continue;
        lots.push_back(redis::RecordedLot{redis::SharedUse{&config, use.key, use.cost}, age});
    }
    return lots;
}

void SharedStore::send_unanswered(SharedStoreCounters::Op op, redis::ScriptCall call) {
    ++counters_.commands[op];
    connection_->eval_script(redis::decision_script(), std::move(call.keys), std::move(call.args),
                             [](boost::system::error_code, const redis::Reply&) {});
}

void SharedStore::charge(const std::vector<limit::LimitUse>& extra) {
    const auto recorded = counted_lots(extra, Nanos{0});
    if (recorded.empty()) return;
    send_unanswered(SharedStoreCounters::record,
                    redis::encode_record(config_.key_prefix, recorded, clock_.now().wall));
}

void SharedStore::refund(const std::vector<limit::LimitUse>& uses, Nanos admitted_at) {
    const auto now = clock_.now();
    const auto refunded = counted_lots(uses, now.mono > admitted_at ? now.mono - admitted_at : Nanos{0});
    if (refunded.empty()) return;
    // The ask that wrote the units and this refund each took up to command_timeout to reach
    // Redis (a slower one drops the connection): dated that much earlier, the admission is no
    // later than its units there.
    send_unanswered(SharedStoreCounters::refund,
                    redis::encode_refund(config_.key_prefix, refunded, config_.command_timeout, now.wall));
}

void SharedStore::record(const std::vector<queue::FallbackLot>& lots, std::function<void(bool ok)> done) {
    const auto now = clock_.now();
    std::vector<redis::RecordedLot> recorded;
    recorded.reserve(lots.size());
    for (const auto& lot : lots) {
        const auto& config = limit_config_(lot.use.limit_index);
        if (config.algorithm == config::Algorithm::concurrency) continue;  // leases: nothing to merge
        recorded.push_back(redis::RecordedLot{redis::SharedUse{&config, lot.use.key, lot.use.cost},
                                              now.mono > lot.at ? now.mono - lot.at : Nanos{0}});
    }
    if (recorded.empty()) {
        net::post(executor_, [done = std::move(done)] { done(true); });
        return;
    }
    // In batches, so that no script runs long enough to stall Redis for the other replicas.
    constexpr std::size_t kBatch = 512;
    auto remaining = std::make_shared<std::size_t>((recorded.size() + kBatch - 1) / kBatch);
    auto ok = std::make_shared<bool>(true);
    auto finish = std::make_shared<std::function<void(bool)>>(std::move(done));
    for (std::size_t first = 0; first < recorded.size(); first += kBatch) {
        const std::vector<redis::RecordedLot> batch(
            recorded.begin() + static_cast<std::ptrdiff_t>(first),
            recorded.begin() + static_cast<std::ptrdiff_t>(std::min(recorded.size(), first + kBatch)));
        auto call = redis::encode_record(config_.key_prefix, batch, now.wall);
        ++counters_.commands[SharedStoreCounters::record];
        connection_->eval_script(redis::decision_script(), std::move(call.keys), std::move(call.args),
                                 [self = shared_from_this(), remaining, ok, finish, count = batch.size()](
                                     boost::system::error_code ec, const redis::Reply& reply) {
                                     if (ec || reply.is_error()) {
                                         *ok = false;
                                     } else {
                                         self->counters_.merged_lots += count;
                                     }
                                     if (--*remaining == 0) (*finish)(*ok);
                                 });
    }
}

}  // namespace sluice::proxy
