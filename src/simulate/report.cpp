#include "sluice/simulate/report.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <initializer_list>
#include <string_view>

#include <nlohmann/json.hpp>

#include "sluice/access_log/line_format.hpp"

namespace sluice::simulate {

namespace {

using nlohmann::json;

std::string time_text(Nanos unix_time) {
    std::string out;
    access_log::append_rfc3339_ms(std::chrono::duration_cast<std::chrono::milliseconds>(unix_time).count(),
                                  out);
    return out;
}

double seconds(Nanos d) {
    return std::chrono::duration<double>(d).count();
}

std::string fixed(double value, int decimals) {
    char text[64];
    std::snprintf(text, sizeof text, "%.*f", decimals, value);
    return text;
}

std::string algorithm_name(config::Algorithm algorithm) {
    switch (algorithm) {
        case config::Algorithm::token_bucket: return "token_bucket";
        case config::Algorithm::sliding_window: return "sliding_window";
        case config::Algorithm::fixed_window: return "fixed_window";
        case config::Algorithm::concurrency: return "concurrency";
        case config::Algorithm::vendor_gate: return "vendor_gate";
    }
    return "?";
}

std::string rule_kind_name(config::PolicyRuleKind kind) {
    switch (kind) {
        case config::PolicyRuleKind::rolling: return "rolling";
        case config::PolicyRuleKind::fixed: return "fixed";
        case config::PolicyRuleKind::concurrency: return "concurrency";
    }
    return "?";
}

// "5 per 1s", "10 in flight", "no quota (vendor feedback only)".
std::string limit_text(const LimitReport& limit) {
    if (limit.vendor_gate) return "no quota of its own: vendor feedback only";
    if (limit.algorithm == config::Algorithm::concurrency) return std::to_string(limit.limit) + " in flight";
    return std::to_string(limit.limit) + " per " + fixed(seconds(limit.window), 3) + " s";
}

bool shown(const LimitReport& limit) {
    return !limit.vendor_gate || limit.requests > 0;
}

std::string refused_text(const std::vector<std::pair<std::string, std::uint64_t>>& refused) {
    std::uint64_t total = 0;
    std::string detail;
    for (const auto& [code, count] : refused) {
        total += count;
        detail += (detail.empty() ? "" : ", ") + code + " " + std::to_string(count);
    }
    return std::to_string(total) + (detail.empty() ? "" : " (" + detail + ")");
}

std::string delays_text(const DelayPercentiles& d) {
    return "p50 " + fixed(seconds(d.p50), 3) + " s, p90 " + fixed(seconds(d.p90), 3) + " s, p99 " +
           fixed(seconds(d.p99), 3) + " s, max " + fixed(seconds(d.max), 3) + " s";
}

json delays_json(const DelayPercentiles& d) {
    return {
        {"p50", seconds(d.p50)}, {"p90", seconds(d.p90)}, {"p99", seconds(d.p99)}, {"max", seconds(d.max)}};
}

json counts_json(const std::vector<std::pair<std::string, std::uint64_t>>& counts) {
    json out = json::object();
    for (const auto& [code, count] : counts) out[code] = count;
    return out;
}

std::string xml_escaped(std::string_view text) {
    std::string out;
    for (const char c : text) {
        switch (c) {
            case '&': out += "&amp;"; break;
            case '<': out += "&lt;"; break;
            case '>': out += "&gt;"; break;
            case '"': out += "&quot;"; break;
            case '\'': out += "&apos;"; break;
            default:
                // Control bytes are not allowed in XML 1.0 at all.
                if (static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\n') {
                    out += '?';
                } else {
                    out += c;
                }
        }
    }
    return out;
}

// 1, 2 or 5 times a power of ten: a tick step giving at most about `ticks` ticks up to `top`.
double nice_step(double top, int ticks) {
    if (top <= 0) return 1;
    const double raw = top / ticks;
    const double power = std::pow(10.0, std::floor(std::log10(raw)));
    for (const double m : {1.0, 2.0, 5.0, 10.0})
        if (m * power >= raw) return m * power;
    return 10 * power;
}

// Appends every piece in turn (the SVG is written piece by piece, without temporaries).
void append(std::string& out, std::initializer_list<std::string_view> pieces) {
    for (const auto piece : pieces) out.append(piece);
}

// How many differences are quoted: enough to look into, never the whole log.
constexpr std::size_t kQuotedDifferences = 5;

// What the daemon did to a logged request, as an outcome class ("at_once", "delayed",
// "refused:CODE", "not_routed"), or "" when the line does not say.
std::string logged_class(const LoggedOutcome& logged) {
    const auto& by = logged.answered_by;
    // Answered by the vendor, or failed on the way to it: admitted either way.
    if (by == "vendor" || by.rfind("upstream_", 0) == 0)
        return logged.queue_wait > Nanos(0) ? "delayed" : "at_once";
    if (by == "no_route") return "not_routed";
    for (const Errc code : {Errc::queue_full, Errc::admission_timeout, Errc::key_capacity,
                            Errc::vendor_rate_limited, Errc::cost_too_large, Errc::malformed_request}) {
        if (by == error_code_name(code)) return "refused:" + by;
    }
    return {};  // the client left, or a refusal the simulation does not model (shutting_down, ...)
}

std::string simulated_class(const RequestOutcome& outcome) {
    if (outcome.verdict == Verdict::refused) return "refused:" + std::string(error_code_name(outcome.reason));
    return std::string(verdict_name(outcome.verdict));
}

}  // namespace

LogComparison compare_with_log(const TrafficLog& log, const SimulationResult& result) {
    LogComparison comparison;
    for (std::size_t i = 0; i < log.requests.size() && i < result.outcomes.size(); ++i) {
        const auto& request = log.requests[i];
        if (!request.logged) continue;
        const auto logged = logged_class(*request.logged);
        if (logged.empty()) continue;
        ++comparison.compared;
        const auto simulated = simulated_class(result.outcomes[i]);
        if (logged == simulated) {
            ++comparison.same;
        } else if (comparison.differences.size() < kQuotedDifferences) {
            std::string difference = "line " + std::to_string(request.line);
            append(difference, {": logged ", logged, ", simulated ", simulated});
            comparison.differences.push_back(std::move(difference));
        }
    }
    return comparison;
}

std::string format_summary(const std::string& log_name, const TrafficLog& log, const SimulationResult& result,
                           double run_seconds) {
    std::string out;
    out += "sluice simulate: " + std::to_string(result.requests) + " requests from " + log_name + " (" +
           std::string(traffic_format_name(log.format)) + ")";
    if (result.requests > 0) {
        out += ", " + time_text(result.first_arrival) + " to " + time_text(result.last_event) + " (" +
               fixed(seconds(result.last_event - result.first_arrival), 3) + " s simulated";
        if (run_seconds > 0) out += " in " + fixed(run_seconds, 3) + " s";
        out += ")";
    }
    out += "\n";
    if (log.skipped_bad_lines > 0) {
        out += "  " + std::to_string(log.skipped_bad_lines) + " bad lines skipped, e.g.\n";
        for (const auto& example : log.skipped_examples) out += "    " + example + "\n";
    }
    if (log.unreplayable > 0)
        out += "  " + std::to_string(log.unreplayable) +
               " logged requests were refused before their head was read: not replayed\n";
    out += "  forwarded at once " + std::to_string(result.at_once) + ", delayed " +
           std::to_string(result.delayed) + ", refused " + refused_text(result.refused) + ", not routed " +
           std::to_string(result.not_routed) + "\n";
    out += "  delay of forwarded requests: " + delays_text(result.delays) + "\n";
    if (result.vendor_answers > 0)
        out += "  vendor answers replayed: " + std::to_string(result.vendor_answers) + " (" +
               std::to_string(result.vendor_paused) + " paused, " + std::to_string(result.vendor_capped) +
               " capped, " + std::to_string(result.vendor_retried) + " retried)\n";
    if (const auto comparison = compare_with_log(log, result); comparison.compared > 0) {
        out += "  against the log: the same outcome for " + std::to_string(comparison.same) + " of " +
               std::to_string(comparison.compared) +
               " requests (at once, delayed, refused with the same code)\n";
        for (const auto& difference : comparison.differences) out += "    " + difference + "\n";
    }
    if (result.limits_needing_missing_headers > 0) {
        std::string names;
        for (const auto& limit : result.limits)
            if (limit.needs_missing_headers) names += (names.empty() ? "" : ", ") + limit.name;
        out += "  " + std::to_string(result.limits_needing_missing_headers) +
               " limits keyed on headers the log does not carry (one key, fixed cost): " + names + "\n";
    }
    for (const auto& limit : result.limits) {
        if (!shown(limit)) continue;
        out += "limit " + limit.name + " (" + algorithm_name(limit.algorithm) + ", " + limit_text(limit) +
               (limit.enforce ? "" : ", shadow") + ")\n";
        out += "  requests " + std::to_string(limit.requests) + ": at once " + std::to_string(limit.at_once) +
               ", delayed " + std::to_string(limit.delayed) + ", refused " + refused_text(limit.refused) +
               "\n";
        if (!limit.vendor_gate) {
            out +=
                "  peak usage " + std::to_string(limit.peak_usage) + " of " + std::to_string(limit.capacity);
            if (limit.algorithm == config::Algorithm::token_bucket) out += " (the burst)";
            if (limit.capacity > 0)
                out +=
                    " (" +
                    fixed(100.0 * static_cast<double>(limit.peak_usage) / static_cast<double>(limit.capacity),
                          0) +
                    " %)";
            if (limit.peak_usage > 0) out += " at " + time_text(limit.peak_at);
            out += "\n";
        }
        out += "  longest queue " + std::to_string(limit.longest_queue);
        if (limit.longest_queue > 0) out += " at " + time_text(limit.longest_queue_at);
        out += "\n  delay " + delays_text(limit.delays) + "\n";
    }
    if (result.vendor) {
        const auto& vendor = *result.vendor;
        out += "vendor " + vendor.instance + " (" + vendor.vendor +
               (vendor.tier.empty() ? "" : ", tier " + vendor.tier) +
               "): " + (vendor.kept() ? "every published rule kept" : "a published rule EXCEEDED") + "\n";
        for (const auto& rule : vendor.rules) {
            out += "  " + rule.name + " (" + rule_kind_name(rule.kind) + ", " + std::to_string(rule.limit) +
                   (rule.kind == config::PolicyRuleKind::concurrency
                        ? " in flight"
                        : " per " + fixed(seconds(rule.window), 3) + " s") +
                   "): " + std::to_string(rule.requests) + " requests, peak " + std::to_string(rule.peak);
            if (rule.peak > 0) out += " at " + time_text(rule.peak_at);
            out += rule.exceeded ? ": EXCEEDED first at " + time_text(rule.first_exceeded_at) : ": kept";
            out += "\n";
            for (const auto& note : rule.notes) out += "    note: " + note + "\n";
        }
    }
    return out;
}

std::string format_json(const TrafficLog& log, const SimulationResult& result, bool per_request) {
    json out;
    out["traffic"] = {{"format", traffic_format_name(log.format)},
                      {"requests", result.requests},
                      {"skipped_bad_lines", log.skipped_bad_lines},
                      {"unreplayable", log.unreplayable},
                      {"carries_headers", log.carries_headers}};
    if (result.requests > 0) {
        out["traffic"]["first_arrival"] = time_text(result.first_arrival);
        out["traffic"]["last_event"] = time_text(result.last_event);
    }
    out["totals"] = {{"at_once", result.at_once},
                     {"delayed", result.delayed},
                     {"refused", counts_json(result.refused)},
                     {"not_routed", result.not_routed},
                     {"delay_seconds", delays_json(result.delays)}};
    out["limits_keyed_on_missing_headers"] = result.limits_needing_missing_headers;
    if (result.vendor_answers > 0)
        out["vendor_feedback"] = {{"answers", result.vendor_answers},
                                  {"paused", result.vendor_paused},
                                  {"capped", result.vendor_capped},
                                  {"retried", result.vendor_retried}};
    if (const auto comparison = compare_with_log(log, result); comparison.compared > 0)
        out["against_log"] = {{"compared", comparison.compared},
                              {"same", comparison.same},
                              {"differences", comparison.differences}};
    out["limits"] = json::array();
    for (const auto& limit : result.limits) {
        if (!shown(limit)) continue;
        json entry = {{"name", limit.name},
                      {"algorithm", algorithm_name(limit.algorithm)},
                      {"limit", limit.limit},
                      {"capacity", limit.capacity},
                      {"window_seconds", seconds(limit.window)},
                      {"enforce", limit.enforce},
                      {"vendor_gate", limit.vendor_gate},
                      {"keyed_on_missing_headers", limit.needs_missing_headers},
                      {"requests", limit.requests},
                      {"at_once", limit.at_once},
                      {"delayed", limit.delayed},
                      {"refused", counts_json(limit.refused)},
                      {"peak_usage", limit.peak_usage},
                      {"longest_queue", limit.longest_queue},
                      {"delay_seconds", delays_json(limit.delays)}};
        if (limit.peak_usage > 0) entry["peak_at"] = time_text(limit.peak_at);
        if (limit.longest_queue > 0) entry["longest_queue_at"] = time_text(limit.longest_queue_at);
        out["limits"].push_back(std::move(entry));
    }
    if (result.vendor) {
        json rules = json::array();
        for (const auto& rule : result.vendor->rules) {
            json entry = {{"name", rule.name},         {"kind", rule_kind_name(rule.kind)},
                          {"limit", rule.limit},       {"window_seconds", seconds(rule.window)},
                          {"requests", rule.requests}, {"peak", rule.peak},
                          {"exceeded", rule.exceeded}, {"notes", rule.notes}};
            if (rule.peak > 0) entry["peak_at"] = time_text(rule.peak_at);
            if (rule.exceeded) entry["first_exceeded_at"] = time_text(rule.first_exceeded_at);
            rules.push_back(std::move(entry));
        }
        out["vendor"] = {{"instance", result.vendor->instance},
                         {"vendor", result.vendor->vendor},
                         {"tier", result.vendor->tier},
                         {"kept", result.vendor->kept()},
                         {"rules", std::move(rules)}};
    }
    if (per_request) {
        json requests = json::array();
        for (std::size_t i = 0; i < result.outcomes.size() && i < log.requests.size(); ++i) {
            const auto& outcome = result.outcomes[i];
            const auto& request = log.requests[i];
            json entry = {{"line", request.line},
                          {"time", time_text(request.at)},
                          {"method", request.method},
                          {"host", request.host},
                          {"path", request.path},
                          {"outcome", verdict_name(outcome.verdict)},
                          {"delay_seconds", seconds(outcome.delay)}};
            entry["route"] = outcome.route && *outcome.route < result.route_names.size()
                                 ? json(result.route_names[*outcome.route])
                                 : json(nullptr);
            entry["code"] =
                outcome.reason == Errc::ok ? json(nullptr) : json(error_code_name(outcome.reason));
            if (request.logged) {
                const auto logged = logged_class(*request.logged);
                entry["logged"] = {{"status", request.logged->status},
                                   {"answered_by", request.logged->answered_by},
                                   {"queue_wait_seconds", seconds(request.logged->queue_wait)},
                                   {"outcome", logged.empty() ? json(nullptr) : json(logged)}};
            }
            entry["limit"] = outcome.limit && *outcome.limit < result.limits.size()
                                 ? json(result.limits[*outcome.limit].name)
                                 : json(nullptr);
            requests.push_back(std::move(entry));
        }
        out["requests"] = std::move(requests);
    }
    return out.dump(2) + "\n";
}

std::string format_svg(const SimulationResult& result, const std::string& title) {
    constexpr std::string_view kLegend =
        "units counted by the limit (blue) against its limit (red, dashed); requests waiting on it "
        "(orange, right axis); time in seconds from ";
    constexpr int kWidth = 900, kPanelHeight = 220, kTop = 50, kLeft = 70, kRight = 70, kGap = 40;
    constexpr int kPlotWidth = kWidth - kLeft - kRight;
    constexpr int kPlotHeight = kPanelHeight - kGap - 30;
    std::vector<const LimitReport*> panels;
    for (const auto& limit : result.limits)
        if (shown(limit) && limit.requests > 0) panels.push_back(&limit);
    const int height = kTop + static_cast<int>(panels.size()) * kPanelHeight + 20;
    const double span = std::max(seconds(result.last_event - result.first_arrival), 1e-3);
    std::string svg;
    svg += "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
    append(svg, {"<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"", std::to_string(kWidth),
                 "\" height=\"", std::to_string(height), "\" viewBox=\"0 0 ", std::to_string(kWidth), " ",
                 std::to_string(height), "\" font-family=\"sans-serif\" font-size=\"11\">\n"});
    svg += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
    append(svg, {"<text x=\"", std::to_string(kLeft), "\" y=\"22\" font-size=\"14\" font-weight=\"bold\">",
                 xml_escaped(title), "</text>\n"});
    append(svg, {"<text x=\"", std::to_string(kLeft), "\" y=\"38\" fill=\"#555\">", kLegend,
                 xml_escaped(time_text(result.first_arrival)), "</text>\n"});
    for (std::size_t p = 0; p < panels.size(); ++p) {
        const auto& limit = *panels[p];
        const int top = kTop + static_cast<int>(p) * kPanelHeight + 20;
        const int bottom = top + kPlotHeight;
        std::int64_t usage_top = limit.vendor_gate ? 1 : limit.capacity;
        std::size_t queue_top = 1;
        for (const auto& point : limit.series) {
            usage_top = std::max(usage_top, point.usage);
            queue_top = std::max(queue_top, point.waiting);
        }
        const double y_max = static_cast<double>(usage_top) * 1.1;
        const double q_max = static_cast<double>(queue_top) * 1.1;
        const auto x_of = [&](Nanos at) {
            return kLeft + kPlotWidth * std::clamp(seconds(at - result.first_arrival) / span, 0.0, 1.0);
        };
        const auto y_of = [&](double value, double max) { return bottom - kPlotHeight * value / max; };
        append(svg, {"<g>\n<text x=\"", std::to_string(kLeft), "\" y=\"", std::to_string(top - 6),
                     "\" font-weight=\"bold\">",
                     xml_escaped(limit.name + " (" + algorithm_name(limit.algorithm) + ", " +
                                 limit_text(limit) + ")"),
                     "</text>\n"});
        append(svg, {"<rect x=\"", std::to_string(kLeft), "\" y=\"", std::to_string(top), "\" width=\"",
                     std::to_string(kPlotWidth), "\" height=\"", std::to_string(kPlotHeight),
                     "\" fill=\"none\" stroke=\"#999\"/>\n"});
        const double y_step = nice_step(y_max, 4);
        for (double v = 0; v <= y_max; v += y_step) {
            const auto y = fixed(y_of(v, y_max), 1);
            append(svg,
                   {"<line x1=\"", std::to_string(kLeft - 4), "\" x2=\"", std::to_string(kLeft), "\" y1=\"",
                    y, "\" y2=\"", y, "\" stroke=\"#999\"/><text x=\"", std::to_string(kLeft - 6), "\" y=\"",
                    y, "\" text-anchor=\"end\" dominant-baseline=\"middle\">",
                    fixed(v, v < 10 && y_step < 1 ? 1 : 0), "</text>\n"});
        }
        const double q_step = nice_step(q_max, 4);
        for (double v = 0; v <= q_max; v += std::max(q_step, 1.0)) {
            const auto y = fixed(y_of(v, q_max), 1);
            append(svg, {"<text x=\"", std::to_string(kLeft + kPlotWidth + 6), "\" y=\"", y,
                         "\" dominant-baseline=\"middle\" fill=\"#d2691e\">", fixed(v, 0), "</text>\n"});
        }
        const double x_step = nice_step(span, 8);
        for (double t = 0; t <= span; t += x_step) {
            const auto x = fixed(kLeft + kPlotWidth * t / span, 1);
            append(svg, {"<line x1=\"", x, "\" x2=\"", x, "\" y1=\"", std::to_string(bottom), "\" y2=\"",
                         std::to_string(bottom + 4), "\" stroke=\"#999\"/><text x=\"", x, "\" y=\"",
                         std::to_string(bottom + 15), "\" text-anchor=\"middle\">",
                         fixed(t, x_step < 1 ? 1 : 0), "</text>\n"});
        }
        if (!limit.vendor_gate && limit.capacity > 0) {
            const auto y = fixed(y_of(static_cast<double>(limit.capacity), y_max), 1);
            append(svg, {"<line x1=\"", std::to_string(kLeft), "\" x2=\"", std::to_string(kLeft + kPlotWidth),
                         "\" y1=\"", y, "\" y2=\"", y, "\" stroke=\"#c00\" stroke-dasharray=\"6 4\"/>\n"});
        }
        // Steps: each bucket's value holds until the next bucket's.
        std::string usage, waiting;
        for (std::size_t i = 0; i < limit.series.size(); ++i) {
            const auto& point = limit.series[i];
            const auto x0 = fixed(x_of(point.at), 1);
            const auto x1 = fixed(x_of(point.at + result.bucket), 1);
            const auto yu = fixed(y_of(static_cast<double>(point.usage), y_max), 1);
            const auto yq = fixed(y_of(static_cast<double>(point.waiting), q_max), 1);
            append(usage, {x0, ",", yu, " ", x1, ",", yu, " "});
            append(waiting, {x0, ",", yq, " ", x1, ",", yq, " "});
        }
        if (!usage.empty()) {
            append(svg, {"<polyline fill=\"none\" stroke=\"#1f5fbf\" stroke-width=\"1.5\" points=\"", usage,
                         "\"/>\n"});
            append(svg, {"<polyline fill=\"none\" stroke=\"#d2691e\" stroke-width=\"1\" points=\"", waiting,
                         "\"/>\n"});
        }
        svg += "</g>\n";
    }
    svg += "</svg>\n";
    return svg;
}

}  // namespace sluice::simulate
