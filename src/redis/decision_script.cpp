#include "sluice/redis/decision_script.hpp"

#include <algorithm>
#include <charconv>
#include <map>
#include <memory>
#include <utility>

#include "sluice/common/zoned_days.hpp"
#include "sluice/limit/algorithms.hpp"
#include "sluice/redis/decision_script_lua.hpp"  // generated from decision_script.lua (CMake)

namespace sluice::redis {
namespace {

constexpr std::size_t kFieldsPerUse = 9;  // decision_script.lua's FIELDS
constexpr std::int64_t kNanosPerMicro = 1000;
constexpr std::int64_t kMaxUnits = std::int64_t{1} << 56;  // limit::detail::kMaxUnits

std::int64_t floor_div(std::int64_t a, std::int64_t b) {
    const std::int64_t q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}
std::int64_t ceil_div(std::int64_t a, std::int64_t b) {
    return -floor_div(-a, b);
}

// Longer in Redis than in memory, never shorter: a window, margin, pause, cap or lease.
std::int64_t micros_up(Nanos d) {
    return ceil_div(d.count(), kNanosPerMicro);
}
std::int64_t micros_down(Nanos d) {
    return floor_div(d.count(), kNanosPerMicro);
}

std::int64_t clamp_units(std::int64_t units) {
    return std::clamp<std::int64_t>(units, 0, kMaxUnits);
}

char tag_of(const config::LimitConfig& limit) {
    switch (limit.algorithm) {
        case config::Algorithm::sliding_window:
            return limit.limit <= limit::kSlidingExactMaxUnits ? 's' : 'b';
        case config::Algorithm::token_bucket: return 't';
        case config::Algorithm::fixed_window: return 'f';
        case config::Algorithm::concurrency: return 'c';
        case config::Algorithm::vendor_gate: return 'g';
    }
    return 's';
}

std::string hash_tag(std::string_view prefix) {
    std::string tag = "{";
    tag += prefix;
    tag += "}:";
    return tag;
}

std::string hex(std::uint64_t value) {
    char buf[16];
    const auto end = std::to_chars(buf, buf + sizeof buf, value, 16).ptr;
    return std::string(buf, end);
}

// A zoned fixed window as periods of fixed length P shifted by an offset O that puts the
// period holding `wall_now` exactly where the zone puts it (local midnight). Cached per zone:
// ZonedDays reads the tz database and is not thread-safe, hence one cache per thread.
std::int64_t zoned_offset_ns(const config::LimitConfig& limit, std::int64_t days, std::int64_t period_ns,
                             Nanos wall_now) {
    thread_local std::map<std::pair<std::string, std::int64_t>, std::unique_ptr<ZonedDays>> zones;
    auto& zone = zones[{limit.time_zone, days}];
    if (!zone) zone = std::make_unique<ZonedDays>(limit.time_zone, days);
    const std::int64_t k = zone->period_of(wall_now.count());
    return k * period_ns - zone->start_of(k);
}

struct UseFields {
    char tag = 's';
    std::int64_t limit = 0, span = 1, burst = 0, margin = 0, offset = 0;
};

UseFields fields_of(const config::LimitConfig& limit, Nanos wall_now) {
    UseFields f;
    f.tag = tag_of(limit);
    f.limit = std::max<std::int64_t>(limit.limit, 0);
    const Nanos span = std::max(limit.window + limit.margin, Nanos{1});
    switch (limit.algorithm) {
        case config::Algorithm::sliding_window: f.span = micros_up(span); break;
        case config::Algorithm::token_bucket:
            f.limit = std::max<std::int64_t>(limit.limit, 1);
            f.span = micros_up(span);  // a longer period refills slower
            f.burst = limit.burst > 0 ? limit.burst : std::max<std::int64_t>(limit.limit, 0);
            break;
        case config::Algorithm::fixed_window: {
            // The period and its alignment must be the vendor's: configs give whole ms or more.
            const std::int64_t period_ns = std::max<std::int64_t>(limit.window.count(), 1);
            f.span = std::max<std::int64_t>(period_ns / kNanosPerMicro, 1);
            f.margin = micros_up(limit::fixed_window_effective_margin(limit));
            std::int64_t offset_ns = limit.utc_offset.count();
            if (!limit.time_zone.empty()) {
                const std::int64_t days = std::max<std::int64_t>(limit.window / std::chrono::hours(24), 1);
                offset_ns = zoned_offset_ns(limit, days, days * std::int64_t{86'400'000'000'000}, wall_now);
            }
            f.offset = floor_div(offset_ns, kNanosPerMicro);
            break;
        }
        case config::Algorithm::concurrency:
        case config::Algorithm::vendor_gate: break;
    }
    return f;
}

// ARGV[1..6]: op, clock override, uses, the op's two arguments, one spare.
ScriptCall header(std::string_view op, std::int64_t clock_override_us, std::size_t uses, std::string a,
                  std::string b) {
    ScriptCall call;
    call.args.reserve(6 + kFieldsPerUse * uses);
    call.args.emplace_back(op);
    call.args.push_back(std::to_string(clock_override_us));
    call.args.push_back(std::to_string(uses));
    call.args.push_back(std::move(a));
    call.args.push_back(std::move(b));
    call.args.emplace_back("");
    return call;
}

void seq_key(ScriptCall& call, std::string_view prefix, std::size_t uses) {
    call.keys.reserve(1 + 2 * uses);
    call.keys.push_back(hash_tag(prefix) + "seq");
}

void add_use(ScriptCall& call, std::string_view prefix, const SharedUse& use, Nanos wall_now,
             Nanos age = {}) {
    const UseFields f = fields_of(*use.limit, wall_now);
    std::string key = state_key(prefix, use);
    call.keys.push_back(key);
    call.keys.push_back(std::move(key) + ":o");  // the vendor overlay
    call.args.emplace_back(1, f.tag);
    call.args.push_back(std::to_string(f.limit));
    call.args.push_back(std::to_string(f.span));
    call.args.push_back(std::to_string(f.burst));
    call.args.push_back(std::to_string(f.margin));
    call.args.push_back(std::to_string(f.offset));
    call.args.push_back(std::to_string(clamp_units(use.cost)));
    call.args.emplace_back(use.limit->enforce ? "1" : "0");
    call.args.push_back(std::to_string(std::max<std::int64_t>(micros_down(age), 0)));
}

ScriptCall encode_uses(std::string_view op, std::string_view prefix, const std::vector<SharedUse>& uses,
                       std::string a, std::string b, Nanos wall_now, std::int64_t clock_override_us) {
    ScriptCall call = header(op, clock_override_us, uses.size(), std::move(a), std::move(b));
    seq_key(call, prefix, uses.size());
    for (const SharedUse& use : uses) add_use(call, prefix, use, wall_now);
    return call;
}

// A delay in us from the script; -1 = never.
Nanos delay_of(long long us) {
    if (us < 0) return kNever;
    if (us > kNever.count() / kNanosPerMicro) return kNever;
    return Nanos{us * kNanosPerMicro};
}

bool is_integer(const Reply& r) {
    return r.type == Reply::Type::integer;
}

}  // namespace

const Script& decision_script() {
    static const Script script{std::string(kDecisionScriptLua)};
    return script;
}

std::string state_key(std::string_view prefix, const SharedUse& use) {
    std::string key = hash_tag(prefix);
    key += "l:";
    key += use.limit->name;
    key += ':';
    key += tag_of(*use.limit);
    key += ':';
    key += hex(use.key);
    return key;
}

ScriptCall encode_acquire(std::string_view prefix, const std::vector<SharedUse>& uses,
                          std::string_view lease_id, Nanos lease, Nanos wall_now,
                          std::int64_t clock_override_us) {
    return encode_uses("acquire", prefix, uses, std::to_string(std::max<std::int64_t>(micros_up(lease), 1)),
                       std::string(lease_id), wall_now, clock_override_us);
}

ScriptCall encode_peek(std::string_view prefix, const std::vector<SharedUse>& uses, Nanos wall_now,
                       std::int64_t clock_override_us) {
    return encode_uses("peek", prefix, uses, "0", "", wall_now, clock_override_us);
}

ScriptCall encode_release(std::string_view prefix, const std::vector<SharedUse>& uses,
                          std::string_view lease_id) {
    return encode_uses("release", prefix, uses, "0", std::string(lease_id), Nanos{0}, 0);
}

ScriptCall encode_renew(std::string_view prefix, const std::vector<SharedUse>& uses,
                        std::string_view lease_id, Nanos lease, std::int64_t clock_override_us) {
    return encode_uses("renew", prefix, uses, std::to_string(std::max<std::int64_t>(micros_up(lease), 1)),
                       std::string(lease_id), Nanos{0}, clock_override_us);
}

ScriptCall encode_pause(std::string_view prefix, const SharedUse& use, Nanos delay, std::string_view cause,
                        std::int64_t clock_override_us) {
    return encode_uses("pause", prefix, {use}, std::to_string(micros_up(delay)), std::string(cause), Nanos{0},
                       clock_override_us);
}

ScriptCall encode_cap(std::string_view prefix, const SharedUse& use, std::int64_t remaining,
                      Nanos reset_delay, std::int64_t clock_override_us) {
    return encode_uses("cap", prefix, {use}, std::to_string(std::max<std::int64_t>(remaining, 0)),
                       std::to_string(micros_up(reset_delay)), Nanos{0}, clock_override_us);
}

ScriptCall encode_record(std::string_view prefix, const std::vector<RecordedLot>& lots, Nanos wall_now,
                         std::int64_t clock_override_us) {
    ScriptCall call = header("record", clock_override_us, lots.size(), "0", "");
    seq_key(call, prefix, lots.size());
    // A unit dated later is held longer: the age is rounded down.
    for (const RecordedLot& lot : lots) add_use(call, prefix, lot.use, wall_now, lot.age);
    return call;
}

ScriptCall encode_refund(std::string_view prefix, const std::vector<RecordedLot>& lots, Nanos date_slack,
                         Nanos wall_now, std::int64_t clock_override_us) {
    ScriptCall call = header("refund", clock_override_us, lots.size(),
                             std::to_string(std::max<std::int64_t>(micros_up(date_slack), 0)), "");
    seq_key(call, prefix, lots.size());
    // A unit dated earlier gives back less: the age is rounded up (add_use rounds down whole us).
    for (const RecordedLot& lot : lots)
        add_use(call, prefix, lot.use, wall_now, Nanos{micros_up(lot.age) * kNanosPerMicro});
    return call;
}

std::optional<AcquireResult> decode_decision(const Reply& reply, std::size_t uses, std::string& error) {
    if (reply.is_error()) {
        error = "decision script failed: " + reply.str;
        return std::nullopt;
    }
    if (reply.type != Reply::Type::array || reply.elements.size() != 2 + uses ||
        !is_integer(reply.elements[0]) || !is_integer(reply.elements[1])) {
        error = "decision script: unexpected reply shape";
        return std::nullopt;
    }
    AcquireResult result;
    result.allowed = reply.elements[0].integer == 1;
    const long long limiting = reply.elements[1].integer;
    if (limiting >= 0) {
        if (static_cast<unsigned long long>(limiting) >= uses) {
            error = "decision script: limiting use out of range";
            return std::nullopt;
        }
        result.limiting = static_cast<std::size_t>(limiting);
    }
    result.uses.reserve(uses);
    for (std::size_t i = 0; i < uses; ++i) {
        const Reply& u = reply.elements[2 + i];
        if (u.type != Reply::Type::array || u.elements.size() != 6 ||
            !std::all_of(u.elements.begin(), u.elements.end(), is_integer)) {
            error = "decision script: unexpected reply shape for use " + std::to_string(i);
            return std::nullopt;
        }
        UseDecision d;
        d.allowed = u.elements[0].integer == 1;
        d.predictable = u.elements[1].integer == 1;
        d.earliest_delay = d.allowed ? Nanos{0} : delay_of(u.elements[2].integer);
        d.limit = u.elements[3].integer;
        d.remaining = u.elements[4].integer;
        d.reset_delay = delay_of(u.elements[5].integer);
        result.uses.push_back(d);
    }
    return result;
}

}  // namespace sluice::redis
