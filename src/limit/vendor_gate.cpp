// The vendor gate's policy admits everything and keeps no state: only the
// vendor overlays that KeyedLimiter layers on every limit (pause_until,
// cap_remaining) ever refuse, so a gate never holds traffic back on its own.

#include "sluice/limit/vendor_gate.hpp"

#include "sluice/limit/keyed_limiter.hpp"

namespace sluice::limit {
namespace {

class VendorGatePolicy {
public:
    struct State {};

    std::int64_t capacity() const noexcept { return detail::kMaxUnits; }
    State make_state() const { return State{}; }
    void reset(State&) const noexcept {}

    PolicyView probe(State&, std::int64_t, const Instant& now) const {
        PolicyView v;
        v.allowed = true;
        v.earliest = now.mono;
        v.remaining = detail::kMaxUnits;
        v.reset = now.mono;
        return v;
    }

    bool room_later(State&, std::int64_t, std::int64_t, Nanos, const Instant&) const { return true; }
    void consume(State&, std::int64_t, const Instant&) const {}
    void release(State&, std::int64_t) const {}
    // No count of its own: only the overlays are exported (by KeyedLimiter).
    void export_lots(State&, const Instant&, std::vector<AdmittedLot>&) const {}
    void import_lot(State&, const AdmittedLot&, const Instant&) const {}
    void refund(State&, std::int64_t, Nanos, const Instant&) const {}
    Nanos fresh_at(const State&, const Instant&) const { return Nanos::min(); }
    std::size_t heap_bytes() const noexcept { return 0; }
};

}  // namespace

config::LimitConfig vendor_gate_config(const std::string& upstream_name) {
    config::LimitConfig config;
    config.name = "upstream:" + upstream_name;
    config.algorithm = config::Algorithm::vendor_gate;
    config.limit = detail::kMaxUnits;  // no quota of its own: any cost fits
    config.max_keys = 1;
    return config;
}

std::unique_ptr<Limiter> make_vendor_gate(const config::LimitConfig& config) {
    return std::make_unique<KeyedLimiter<VendorGatePolicy>>(config, VendorGatePolicy{});
}

}  // namespace sluice::limit
