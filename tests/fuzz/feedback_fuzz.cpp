// The vendor feedback parsers (src/feedback): nothing may throw or crash on any input, and what
// they return stays in the documented ranges (include/sluice/feedback/vendor_signals.hpp):
// every duration of a VendorSignal in [0, max_pause], a pause only with its source, counts
// non-negative, Retry-After finite and non-negative.
//
// Input: byte 0 picks the status, byte 1 the FeedbackConfig, byte 2 the wall clock; then one
// line per header of kHeaders (an empty line = absent); what follows is the body. The whole
// input is also fed to each parser alone.
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "sluice/feedback/http_date.hpp"
#include "sluice/feedback/structured_field.hpp"
#include "sluice/feedback/vendor_signals.hpp"

#include "fuzz/fuzz_check.hpp"

namespace fb = sluice::feedback;
using namespace std::chrono_literals;

namespace {

constexpr std::array<std::string_view, 12> kHeaders = {
    "retry-after",        "x-ratelimit-limit",      "x-ratelimit-remaining", "x-ratelimit-reset",
    "x-rate-limit-limit", "x-rate-limit-remaining", "x-rate-limit-reset",    "ratelimit",
    "ratelimit-policy",   "ratelimit-limit",        "ratelimit-remaining",   "ratelimit-reset"};

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
        if (lower(a[i]) != lower(b[i])) return false;
    }
    return true;
}

void check_in_range(const std::optional<sluice::Nanos>& d, sluice::Nanos max_pause) {
    if (d) SLUICE_FUZZ_CHECK(*d >= 0ns && *d <= max_pause);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view all(reinterpret_cast<const char*>(data), size);
    const sluice::Instant now{1'000s, sluice::Nanos{1'700'000'000'000'000'000}};

    // Each parser alone, on the whole input.
    (void)fb::parse_http_date(all, now.wall);
    (void)fb::parse_http_date(all, sluice::Nanos{0});
    if (const auto seconds = fb::parse_retry_after(all, now)) {
        SLUICE_FUZZ_CHECK(std::isfinite(*seconds) && *seconds >= 0);
    }
    (void)fb::sf::parse_list(all);
    (void)fb::sf::parse_dictionary(all);
    (void)fb::validate_body_field(all);

    if (size < 3) return 0;
    static constexpr std::array<unsigned, 8> kStatuses = {429, 503, 200, 204, 500, 301, 418, 599};
    const unsigned status = kStatuses[data[0] % kStatuses.size()];

    fb::FeedbackConfig config;
    const std::uint8_t c = data[1];
    config.reset_mode = static_cast<fb::ResetMode>(c % 3);
    config.body_field_mode = static_cast<fb::ResetMode>((c / 3) % 3);
    static constexpr std::array<const char*, 4> kFields = {"", "error.rate_reset", "errors.0.retry_in",
                                                           "reset"};
    config.body_field = kFields[(c / 9) % kFields.size()];
    static constexpr std::array<sluice::Nanos, 3> kMaxPause = {sluice::Nanos{5min}, sluice::Nanos{1s},
                                                               sluice::Nanos{0}};
    config.max_pause = kMaxPause[(c / 36) % kMaxPause.size()];

    // Wall clocks up to 2261: Nanos since 1970 end in 2262.
    static constexpr std::array<std::int64_t, 4> kWall = {1'700'000'000, 0, 4'102'444'800, 9'200'000'000};
    const sluice::Instant at{now.mono, sluice::Nanos{std::chrono::seconds{kWall[data[2] % kWall.size()]}}};

    std::array<std::optional<std::string_view>, kHeaders.size()> values;
    std::string_view rest = all.substr(3);
    for (auto& value : values) {
        if (rest.empty()) break;
        const auto end = rest.find('\n');
        const auto line = rest.substr(0, end);
        rest = end == std::string_view::npos ? std::string_view{} : rest.substr(end + 1);
        if (!line.empty()) value = line;
    }
    const fb::HeaderLookup lookup = [&](std::string_view name) -> std::optional<std::string_view> {
        for (std::size_t i = 0; i < kHeaders.size(); ++i) {
            if (iequals(kHeaders[i], name)) return values[i];
        }
        return std::nullopt;
    };
    const std::optional<std::string_view> body =
        fb::wants_body(status, config) ? std::optional<std::string_view>(rest) : std::nullopt;

    const auto signal = fb::read_vendor_signals(status, lookup, body, config, at);
    check_in_range(signal.pause, config.max_pause);
    check_in_range(signal.retry_after, config.max_pause);
    check_in_range(signal.body_reset_after, config.max_pause);
    check_in_range(signal.reset_after, config.max_pause);
    SLUICE_FUZZ_CHECK(signal.pause.has_value() == (signal.pause_source != fb::SignalSource::none));
    SLUICE_FUZZ_CHECK(signal.reset_after.has_value() == (signal.reset_source != fb::SignalSource::none));
    if (signal.limit) SLUICE_FUZZ_CHECK(*signal.limit >= 0);
    if (signal.remaining) SLUICE_FUZZ_CHECK(*signal.remaining >= 0);
    (void)fb::signal_source_name(signal.pause_source);
    return 0;
}
