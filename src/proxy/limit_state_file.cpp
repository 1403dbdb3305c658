#include "sluice/proxy/limit_state_file.hpp"

#include <algorithm>

#include <boost/asio/strand.hpp>

#include "sluice/common/log.hpp"
#include "sluice/proxy/runtime.hpp"
#include "sluice/state/restore.hpp"
#include "sluice/state/snapshot.hpp"

namespace sluice::proxy {

namespace net = boost::asio;

namespace {

Nanos wall_now() {
    return std::chrono::duration_cast<Nanos>(std::chrono::system_clock::now().time_since_epoch());
}

}  // namespace

LimitStateFile::LimitStateFile(net::io_context& ioc, std::shared_ptr<ProcessState> process,
                               config::StateConfig config)
    : process_(std::move(process)),
      config_(std::move(config)),
      timer_(net::make_strand(ioc)),
      boot_id_(state::read_boot_id()) {}

LimitStateFile::~LimitStateFile() = default;

std::optional<std::string> LimitStateFile::open() {
    if (auto error = dir_.open(config_.dir)) return error;
    writer_ = std::make_unique<state::StateWriter>(dir_);
    return std::nullopt;
}

void LimitStateFile::restore() {
    auto found = state::read_state_at_start(dir_, wall_now());
    if (found.set_aside) {
        set_aside_.fetch_add(1, std::memory_order_relaxed);
        log::error("state", found.message + "; starting without saved counts");
    } else {
        log::info("state", found.message);
    }
    if (!found.snapshot) return;
    const auto runtime = process_->current();
    const auto now = process_->limits->clock().now();
    const auto plan = state::plan_restore(*found.snapshot, runtime->config->limits, now, boot_id_);
    // Not one saved limit is in this config: the file is another configuration's (a shared or
    // reused folder), not this one's history. Kept aside for whoever looks, never trusted.
    const auto known = [&](const state::LimitSnapshot& saved) {
        for (const auto& limit : runtime->config->limits)
            if (limit.name == saved.id.name) return true;
        return false;
    };
    if (!found.snapshot->limits.empty() &&
        std::none_of(found.snapshot->limits.begin(), found.snapshot->limits.end(), known)) {
        const auto why = "written for another configuration: none of its " +
                         std::to_string(found.snapshot->limits.size()) + " limits is in this one";
        const auto moved = dir_.set_aside(why, wall_now());
        set_aside_.fetch_add(1, std::memory_order_relaxed);
        log::error("state", dir_.file_path() + " " + why + "; set aside as " +
                                (moved.error.empty() ? moved.path : "(not renamed: " + moved.error + ")") +
                                "; starting without saved counts");
        return;
    }
    std::uint64_t keys = 0;
    for (const auto& limit : plan.limits) {
        const auto& name = runtime->config->limits[limit.current_index].name;
        const auto dropped =
            process_->limits->import_keys(runtime->limit_slot(limit.current_index), limit.keys, limit.mode);
        keys += limit.keys.size() - dropped;
        log::info("state",
                  "limit '" + name + "': restored " + std::to_string(limit.keys.size() - dropped) +
                      " key(s)" +
                      (limit.mode == limit::ImportMode::carry_used
                           ? " (carried: its parameters changed, or the clocks cannot be trusted)"
                           : "") +
                      (dropped > 0 ? ", " + std::to_string(dropped) + " over max_keys dropped" : ""));
    }
    for (const auto& why : plan.dropped) log::info("state", "not restored: " + why);
    if (plan.clocks_disagree)
        log::warn("state",
                  "the wall clock moved differently from the monotonic clock since the save: calendar "
                  "windows were carried into their current period, never refilled");
    restored_keys_.store(keys, std::memory_order_relaxed);
}

void LimitStateFile::start() {
    schedule();
}

void LimitStateFile::schedule() {
    timer_.expires_after(config_.save_interval);
    timer_.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
        if (ec) return;
        if (auto self = weak.lock()) {
            if (self->stopped_) return;
            self->save();
            self->schedule();
        }
    });
}

void LimitStateFile::save() {
    if (!writer_) return;
    const auto runtime = process_->current();
    state::StateSnapshot snapshot;
    snapshot.version = state::kFormatVersion;
    snapshot.boot_id = boot_id_;
    // The configured limits come first in limit_slots; the vendor gates after them are not saved.
    snapshot.limits = process_->limits->snapshot_for_state(runtime->config->limits, runtime->limit_slots,
                                                           config_.min_window, snapshot.saved_at);
    writer_->submit(state::encode(snapshot), snapshot.saved_at.wall);
}

void LimitStateFile::save_and_stop() {
    stopped_ = true;
    timer_.cancel();
    if (!writer_) return;
    save();
    writer_->flush();
    const auto c = writer_->counters();
    if (c.failures > 0 && c.last_written_wall == Nanos{0})
        log::error("state", "the state file could not be written at shutdown: " + c.last_error);
}

LimitStateFile::Counters LimitStateFile::counters() const {
    Counters out;
    out.set_aside = set_aside_.load(std::memory_order_relaxed);
    out.restored_keys = restored_keys_.load(std::memory_order_relaxed);
    if (!writer_) return out;
    const auto c = writer_->counters();
    out.saves = c.writes;
    out.save_failures = c.failures;
    out.last_save_wall = c.last_written_wall;
    out.last_save_bytes = c.bytes_last;
    out.last_error = c.last_error;
    return out;
}

}  // namespace sluice::proxy
