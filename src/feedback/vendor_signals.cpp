#include "sluice/feedback/vendor_signals.hpp"

#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <initializer_list>
#include <limits>

#include <nlohmann/json.hpp>

#include "sluice/feedback/http_date.hpp"
#include "sluice/feedback/structured_field.hpp"

namespace sluice::feedback {
namespace {

std::string_view trim(std::string_view s) noexcept {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

bool all_digits(std::string_view s) noexcept {
    if (s.empty()) return false;
    for (const char c : s) {
        if (c < '0' || c > '9') return false;
    }
    return true;
}

// The value as it may appear in a log line: vendor-controlled, so bounded and
// stripped of anything that could forge a line or a terminal escape.
std::string quoted(std::string_view raw) {
    constexpr std::size_t kMax = 64;
    std::string out = "\"";
    for (std::size_t i = 0; i < raw.size() && i < kMax; ++i) {
        const auto c = static_cast<unsigned char>(raw[i]);
        out += (c < 0x20 || c >= 0x7f || c == '"') ? '?' : static_cast<char>(c);
    }
    if (raw.size() > kMax) out += "...";
    out += '"';
    return out;
}

std::string seconds_text(double seconds) {
    char buf[48];
    std::snprintf(buf, sizeof buf, "%.10gs", seconds);
    return buf;
}

struct Number {
    enum class Status { ok, negative, malformed };
    Status status = Status::malformed;
    double value = 0;  // ok only; +inf when the digits overflow a double (clamped later, never trusted)
};

// `1*DIGIT [ "." 1*DIGIT ]`, optionally negative (reported as such). Written out
// instead of strtod so that "nan", "inf", "1e9", "0x10" and " 5 s" are malformed.
Number parse_number(std::string_view text) {
    text = trim(text);
    Number n;
    bool negative = false;
    if (!text.empty() && text.front() == '-') {
        negative = true;
        text.remove_prefix(1);
    }
    const auto dot = text.find('.');
    const auto whole = text.substr(0, dot);
    if (!all_digits(whole)) return n;
    if (dot != std::string_view::npos && !all_digits(text.substr(dot + 1))) return n;
    const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), n.value);
    if (ec == std::errc::result_out_of_range) {
        n.value = std::numeric_limits<double>::infinity();
    } else if (ec != std::errc{} || ptr != text.data() + text.size()) {
        return n;
    }
    n.status = negative ? Number::Status::negative : Number::Status::ok;
    return n;
}

// Seconds from `wall` until a Unix time; 0 when it is past. The difference is taken
// in integer nanoseconds: as doubles, two timestamps near 1.7e9 s lose the
// sub-microsecond part and a 750 ms delay would come out as 749.99987 ms.
// A vendor controls `unix_seconds` (an HTTP-date can say year 0000, -6.2e10 s), and
// nanoseconds overflow int64 beyond +-292 years from 1970: anything more than a second
// before `wall` is past (0) before any integer arithmetic, and the rest saturates.
double seconds_until(double unix_seconds, Nanos wall) {
    constexpr double kMaxWholeSeconds = 9e9;  // |seconds| * 1e9 stays below 2^63 (years 1685..2255)
    const double wall_seconds = std::chrono::duration<double>(wall).count();
    if (!(unix_seconds > wall_seconds - 1.0)) return 0.0;         // NaN is not a time either
    if (!(unix_seconds < kMaxWholeSeconds)) return unix_seconds;  // absurd either way; the clamp handles it
    if (!(unix_seconds > -kMaxWholeSeconds)) return 0.0;          // only a wall clock before 1685 gets here
    const double whole = std::floor(unix_seconds);
    const std::int64_t target = static_cast<std::int64_t>(whole) * 1'000'000'000 +
                                std::llround((unix_seconds - whole) * 1e9);  // |target| < 9.000000001e18
    std::int64_t ns = 0;
    if (__builtin_sub_overflow(target, wall.count(), &ns)) return unix_seconds - wall_seconds;
    return ns <= 0 ? 0.0 : static_cast<double>(ns) / 1e9;
}

// Seconds from now for a reset value, per the mode (a Unix timestamp in the past is 0).
double reset_seconds(double value, ResetMode mode, Instant now) {
    const bool unix_time =
        mode == ResetMode::unix_seconds || (mode == ResetMode::automatic && value > kUnixTimestampThreshold);
    return unix_time ? seconds_until(value, now.wall) : value;
}

// For warnings only. dump() throws on invalid UTF-8 unless told otherwise; the
// parser already rejects it, but the request path must not depend on that.
std::string dump(const nlohmann::json& value) {
    return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// Collects results and warnings; the one place where a number becomes a pause.
class Reader {
public:
    Reader(const HeaderLookup& header, const FeedbackConfig& config, Instant now, VendorSignal& out)
        : header_(header), config_(config), now_(now), out_(out) {}

    // The first of `names` present: {name, value}.
    std::optional<std::pair<std::string_view, std::string_view>> lookup(
        std::initializer_list<std::string_view> names) const {
        if (!header_) return std::nullopt;
        for (const auto name : names) {
            if (auto value = header_(name)) return std::pair{name, *value};
        }
        return std::nullopt;
    }

    void warn(std::string_view field, std::string_view raw, std::string_view why) {
        out_.warnings.push_back(std::string(field) + " " + quoted(raw) + ": " + std::string(why));
    }

    // Never beyond max_pause, never negative, never from a non-finite value.
    std::optional<Nanos> to_delay(double seconds, std::string_view field, std::string_view raw) {
        if (std::isnan(seconds) || seconds < 0) {
            warn(field, raw, "not a non-negative number; ignored");
            return std::nullopt;
        }
        const Nanos max = std::max(config_.max_pause, Nanos{0});
        const double ns = seconds * 1e9;
        // max.count() as a double rounds up to 2^63 near Nanos::max(), where llround would
        // overflow: such a delay is clamped like any other over the limit.
        if (!(ns <= static_cast<double>(max.count())) || !(ns < 0x1p63)) {  // also catches +inf
            out_.clamped = true;
            warn(field, raw,
                 (std::isinf(seconds) ? std::string("absurdly large") : seconds_text(seconds) + " from now") +
                     " is longer than max_pause (" +
                     seconds_text(std::chrono::duration<double>(max).count()) + "); clamped");
            return max;
        }
        return Nanos{std::llround(ns)};
    }

    // A decimal number of seconds or a reset value, read per `mode`.
    std::optional<Nanos> delay_field(std::string_view field, std::string_view raw, ResetMode mode) {
        const auto n = parse_number(raw);
        if (n.status == Number::Status::negative) {
            warn(field, raw, "negative; ignored");
            return std::nullopt;
        }
        if (n.status != Number::Status::ok) {
            warn(field, raw, "not a number of seconds; ignored");
            return std::nullopt;
        }
        return to_delay(reset_seconds(n.value, mode, now_), field, raw);
    }

    // A count (limit, remaining): a non-negative integer. Tolerates a list such as
    // "100, 100;w=60" (older drafts allowed it in RateLimit-Limit) by reading its first member.
    std::optional<std::int64_t> count_field(std::string_view field, std::string_view raw) {
        auto text = raw.substr(0, raw.find(','));
        text = trim(text.substr(0, text.find(';')));
        if (!text.empty() && text.front() == '-' && all_digits(text.substr(1))) {
            warn(field, raw, "negative; ignored");
            return std::nullopt;
        }
        std::int64_t value = 0;
        const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
        if (!all_digits(text) || ec != std::errc{} || ptr != text.data() + text.size()) {
            warn(field, raw,
                 ec == std::errc::result_out_of_range ? "out of range; ignored" : "not an integer; ignored");
            return std::nullopt;
        }
        return value;
    }

    // A structured-field parameter holding a count (r, q): a non-negative Integer.
    std::optional<std::int64_t> sf_count(const sf::Parameters& params, std::string_view key,
                                         std::string_view field, std::string_view raw) {
        const auto* item = sf::find_param(params, key);
        if (!item) return std::nullopt;
        if (item->type != sf::BareItem::Type::integer || item->integer < 0) {
            warn(field, raw, "'" + std::string(key) + "' is not a non-negative integer; ignored");
            return std::nullopt;
        }
        return item->integer;
    }

    // A structured-field parameter holding seconds (t): a non-negative Integer (a Decimal is tolerated).
    std::optional<Nanos> sf_seconds(const sf::Parameters& params, std::string_view key,
                                    std::string_view field, std::string_view raw) {
        const auto* item = sf::find_param(params, key);
        if (!item) return std::nullopt;
        if (!item->is_number() || item->number() < 0) {
            warn(field, raw, "'" + std::string(key) + "' is not a non-negative number of seconds; ignored");
            return std::nullopt;
        }
        return to_delay(item->number(), field, raw);
    }

    void retry_after() {
        const auto found = lookup({"Retry-After"});
        if (!found) return;
        const auto [field, raw] = *found;
        if (parse_number(raw).status == Number::Status::negative) {
            warn(field, raw, "negative; ignored");
            return;
        }
        const auto seconds = parse_retry_after(raw, now_);
        if (!seconds) {
            warn(field, raw, "neither delay-seconds nor an HTTP-date; ignored");
            return;
        }
        out_.retry_after = to_delay(*seconds, field, raw);
    }

    void x_ratelimit() {
        // Close spells them x-rate-limit-*; lookups are case-insensitive, so only the hyphen differs.
        if (const auto found = lookup({"X-RateLimit-Limit", "X-Rate-Limit-Limit"})) {
            out_.limit = count_field(found->first, found->second);
        }
        if (const auto found = lookup({"X-RateLimit-Remaining", "X-Rate-Limit-Remaining"})) {
            out_.remaining = count_field(found->first, found->second);
        }
        if (const auto found = lookup({"X-RateLimit-Reset", "X-Rate-Limit-Reset"})) {
            out_.reset_after = delay_field(found->first, found->second, config_.reset_mode);
            if (out_.reset_after) out_.reset_source = SignalSource::x_ratelimit;
        }
    }

    // The IETF fields fill only what the X- fields did not give.
    void ietf() {
        std::optional<std::int64_t> limit;
        std::optional<std::int64_t> remaining;
        std::optional<Nanos> reset;
        std::string binding_policy;
        bool have_binding = false;

        if (const auto found = lookup({"RateLimit"})) {
            const auto [field, raw] = *found;
            if (auto list = sf::parse_list(raw)) {
                // Current draft: one item per policy, `"name";r=<remaining>;t=<seconds to reset>`.
                // The binding policy is the one that blocks longest (r=0 with the largest t),
                // else the one closest to running out.
                struct Policy {
                    std::string name;
                    std::optional<std::int64_t> r;
                    std::optional<Nanos> t;
                };
                std::optional<Policy> best;
                for (const auto& member : *list) {
                    if (member.is_inner_list) continue;
                    Policy p{member.item.text, sf_count(member.params, "r", field, raw),
                             sf_seconds(member.params, "t", field, raw)};
                    if (!p.r && !p.t) continue;
                    auto rank = [](const Policy& x) {
                        // Smaller r first (an unknown r counts as not exhausted), then longer t.
                        return std::pair{x.r.value_or(std::numeric_limits<std::int64_t>::max()),
                                         -x.t.value_or(Nanos{0}).count()};
                    };
                    if (!best || rank(p) < rank(*best)) best = std::move(p);
                }
                if (best) {
                    have_binding = true;
                    binding_policy = best->name;
                    remaining = best->r;
                    reset = best->t;
                } else {
                    warn(field, raw, "no policy with an 'r' or 't' parameter; ignored");
                }
            } else if (auto dict = sf::parse_dictionary(raw)) {
                // Draft -07 and earlier: `limit=100, remaining=50, reset=5`.
                bool any = false;
                for (const auto& [key, member] : *dict) {
                    if (member.is_inner_list) continue;
                    const auto& item = member.item;
                    if (key == "limit" || key == "remaining") {
                        any = true;
                        if (item.type != sf::BareItem::Type::integer || item.integer < 0) {
                            warn(field, raw, "'" + key + "' is not a non-negative integer; ignored");
                        } else {
                            (key == "limit" ? limit : remaining) = item.integer;
                        }
                    } else if (key == "reset") {
                        any = true;
                        if (!item.is_number() || item.number() < 0) {
                            warn(field, raw, "'reset' is not a non-negative number of seconds; ignored");
                        } else {
                            reset = to_delay(reset_seconds(item.number(), ResetMode::automatic, now_), field,
                                             raw);
                        }
                    }
                }
                if (!any) warn(field, raw, "no limit, remaining or reset; ignored");
            } else {
                warn(field, raw, "not a structured field list or dictionary; ignored");
            }
        }

        if (const auto found = lookup({"RateLimit-Policy"})) {
            const auto [field, raw] = *found;
            if (auto list = sf::parse_list(raw)) {
                // `"name";q=<quota>;w=<window>`, or draft -07's bare quota `100;w=60`.
                std::optional<std::int64_t> only_quota;
                std::size_t policies = 0;
                for (const auto& member : *list) {
                    if (member.is_inner_list) continue;
                    ++policies;
                    std::optional<std::int64_t> quota;
                    if (member.item.type == sf::BareItem::Type::integer && member.item.integer >= 0) {
                        quota = member.item.integer;
                    } else {
                        quota = sf_count(member.params, "q", field, raw);
                    }
                    if (have_binding && member.item.text == binding_policy && quota && !limit) limit = quota;
                    only_quota = quota;
                }
                if (!limit && policies == 1) limit = only_quota;
            } else {
                warn(field, raw, "not a structured field list; ignored");
            }
        }

        // The oldest drafts: three separate fields.
        if (!limit) {
            if (const auto found = lookup({"RateLimit-Limit"}))
                limit = count_field(found->first, found->second);
        }
        if (!remaining) {
            if (const auto found = lookup({"RateLimit-Remaining"})) {
                remaining = count_field(found->first, found->second);
            }
        }
        if (!reset) {
            if (const auto found = lookup({"RateLimit-Reset"})) {
                reset = delay_field(found->first, found->second, ResetMode::automatic);
            }
        }

        if (!out_.limit) out_.limit = limit;
        if (!out_.remaining) out_.remaining = remaining;
        if (!out_.reset_after && reset) {
            out_.reset_after = reset;
            out_.reset_source = SignalSource::ietf;
        }
    }

    // The JSON body of a 429: parsed once for both configured fields.
    void body(std::string_view body) {
        const auto json =
            nlohmann::json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
        if (json.is_discarded()) {
            warn("body", body, "not JSON; " + describe_fields() + " ignored");
            return;
        }
        if (!config_.body_field.empty()) body_field(json, body);
        if (!config_.limit_type_field.empty()) limit_type_field(json, body);
    }

private:
    std::string describe_fields() const {
        if (config_.body_field.empty()) return config_.limit_type_field;
        if (config_.limit_type_field.empty()) return config_.body_field;
        return config_.body_field + " and " + config_.limit_type_field;
    }

    static const nlohmann::json* find_path(const nlohmann::json& json, std::string_view path) {
        const nlohmann::json* node = &json;
        std::string_view rest = path;
        while (node) {
            const auto dot = rest.find('.');
            const auto name = rest.substr(0, dot);
            if (node->is_object()) {
                const auto it = node->find(name);
                node = it == node->end() ? nullptr : &*it;
            } else if (node->is_array() && all_digits(name)) {
                std::size_t index = 0;
                const auto parsed = std::from_chars(name.data(), name.data() + name.size(), index);
                node = parsed.ec == std::errc{} && index < node->size() ? &(*node)[index] : nullptr;
            } else {
                node = nullptr;
            }
            if (dot == std::string_view::npos) break;
            rest.remove_prefix(dot + 1);
        }
        return node;
    }

    void body_field(const nlohmann::json& json, std::string_view body) {
        const auto& path = config_.body_field;
        const nlohmann::json* node = find_path(json, path);
        if (!node) {
            warn("body", body, "no field " + path + "; ignored");
            return;
        }
        if (node->is_number()) {
            const double value = node->get<double>();
            if (value < 0) {
                warn(path, dump(*node), "negative; ignored");
                return;
            }
            const auto dumped = dump(*node);
            out_.body_reset_after =
                to_delay(reset_seconds(value, config_.body_field_mode, now_), path, dumped);
        } else if (node->is_string()) {
            // Some APIs quote numbers; read it as a header value would be read.
            const auto& text = node->get_ref<const std::string&>();
            out_.body_reset_after = delay_field(path, text, config_.body_field_mode);
        } else {
            warn(path, dump(*node), "not a number; ignored");
        }
    }

    // A short name ("key", "org"): compared with the limits' vendor_limit_type, so
    // anything longer than a name, or not a string, is ignored.
    void limit_type_field(const nlohmann::json& json, std::string_view body) {
        const auto& path = config_.limit_type_field;
        const nlohmann::json* node = find_path(json, path);
        if (!node) {
            warn("body", body, "no field " + path + "; ignored");
            return;
        }
        if (!node->is_string() || node->get_ref<const std::string&>().size() > kMaxLimitType) {
            warn(path, dump(*node), "not a limit type name (a string of at most 64 bytes); ignored");
            return;
        }
        out_.limit_type = node->get<std::string>();
    }

    static constexpr std::size_t kMaxLimitType = 64;

    const HeaderLookup& header_;
    const FeedbackConfig& config_;
    Instant now_;
    VendorSignal& out_;
};

}  // namespace

std::string_view signal_source_name(SignalSource source) noexcept {
    switch (source) {
        case SignalSource::none: return "none";
        case SignalSource::body_field: return "body_field";
        case SignalSource::retry_after: return "retry_after";
        case SignalSource::x_ratelimit: return "x_ratelimit";
        case SignalSource::ietf: return "ietf";
    }
    return "none";
}

std::optional<double> parse_retry_after(std::string_view value, Instant now) {
    const auto n = parse_number(value);
    if (n.status == Number::Status::ok) return n.value;
    if (n.status == Number::Status::negative) return std::nullopt;
    const auto date = parse_http_date(value, now.wall);
    if (!date) return std::nullopt;
    return seconds_until(static_cast<double>(*date), now.wall);
}

bool wants_body(unsigned status, const FeedbackConfig& config) noexcept {
    return status == 429 && (!config.body_field.empty() || !config.limit_type_field.empty());
}

std::string validate_body_field(std::string_view path) {
    if (path.empty()) return "empty path; expected dot-separated names such as error.rate_reset";
    std::size_t start = 0;
    while (true) {
        const auto dot = path.find('.', start);
        const auto name = path.substr(start, dot == std::string_view::npos ? path.npos : dot - start);
        if (name.empty())
            return "empty name in '" + std::string(path) + "'; expected names separated by single dots";
        if (dot == std::string_view::npos) return "";
        start = dot + 1;
    }
}

VendorSignal read_vendor_signals(unsigned status, const HeaderLookup& header,
                                 std::optional<std::string_view> body, const FeedbackConfig& config,
                                 Instant now) {
    VendorSignal out;
    Reader reader(header, config, now, out);
    reader.retry_after();
    reader.x_ratelimit();
    reader.ietf();
    if (body && !body->empty() && wants_body(status, config)) reader.body(*body);

    // RFC 9110 15.6.4: a 503 may be an outage; only a Retry-After makes it a request to slow down.
    out.rate_limited = status == 429 || (status == 503 && out.retry_after);

    auto choose = [&](const std::optional<Nanos>& value, SignalSource source) {
        if (out.pause || !value) return;
        out.pause = value;
        out.pause_source = source;
    };
    if (out.rate_limited) {
        // Most precise first: Close's rate_reset is the exact remainder of the window,
        // its retry-after the same value rounded up, the reset headers describe the
        // limit closest to being hit, which may not be the one that refused us.
        choose(out.body_reset_after, SignalSource::body_field);
        choose(out.retry_after, SignalSource::retry_after);
        choose(out.reset_after, out.reset_source);
    } else if (out.remaining == 0) {
        choose(out.reset_after, out.reset_source);
    }
    return out;
}

}  // namespace sluice::feedback
