// Worst case a configuration lets reach a vendor, per rule of the vendor's policy
// (vendor_check.hpp states the bounds). Pure: reads the Config, never the network.

#include "sluice/config/vendor_check.hpp"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>

#include "sluice/config/config_printer.hpp"

namespace sluice::config {
namespace {

using Int = std::int64_t;
// Products of counts and nanoseconds overflow 64 bits (15,000 x 1 h in ns); GCC and Clang's
// 128-bit integer holds them exactly.
__extension__ typedef __int128 Wide;
constexpr Int kInfinite = std::numeric_limits<Int>::max();

Int saturate(Wide value) {
    return value >= static_cast<Wide>(kInfinite) ? kInfinite : static_cast<Int>(value);
}
Int add(Int a, Int b) {
    return saturate(static_cast<Wide>(a) + b);
}
Int ceil_div(Wide a, Wide b) {
    return saturate((a + b - 1) / b);
}

bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) ==
                      std::tolower(static_cast<unsigned char>(y));
           });
}

// ---- which requests a route sends, in the vendor's path space ------------------------------

// A set of paths: these segments (route pattern syntax), then anything when `rest`.
struct PathSet {
    std::vector<std::string> segments;
    bool rest = false;
};

std::vector<std::string> split(std::string_view path) {
    std::vector<std::string> out;
    std::size_t pos = 0;
    while (pos < path.size()) {
        if (path[pos] == '/') {
            ++pos;
            continue;
        }
        const auto end = path.find('/', pos);
        out.emplace_back(path.substr(pos, end == std::string_view::npos ? path.npos : end - pos));
        if (end == std::string_view::npos) break;
        pos = end;
    }
    return out;
}

// A pattern's segments ("/a/{id}/**" -> a, {id} + rest).
PathSet pattern_set(std::string_view pattern) {
    PathSet set;
    set.segments = split(pattern);
    if (!set.segments.empty() && set.segments.back() == "**") {
        set.segments.pop_back();
        set.rest = true;
    }
    return set;
}

// A prefix matches at segment boundaries ("/api/v1/lead/" and "/api/v1/lead" alike).
PathSet prefix_set(std::string_view prefix) {
    PathSet set;
    set.segments = split(prefix);
    set.rest = true;
    return set;
}

PathSet concat(const PathSet& head, const PathSet& tail) {
    PathSet out = head;
    out.segments.insert(out.segments.end(), tail.segments.begin(), tail.segments.end());
    out.rest = tail.rest;
    return out;
}

bool is_variable(const std::string& seg) {
    return seg == "*" || (seg.size() >= 2 && seg.front() == '{');
}

bool glob_matches(std::string_view glob, std::string_view text) {
    // '*' matches any run of characters within the segment.
    std::size_t g = 0, t = 0, star = std::string_view::npos, mark = 0;
    while (t < text.size()) {
        if (g < glob.size() && glob[g] == '*') {
            star = g++;
            mark = t;
        } else if (g < glob.size() && glob[g] == text[t]) {
            ++g;
            ++t;
        } else if (star != std::string_view::npos) {
            g = star + 1;
            t = ++mark;
        } else {
            return false;
        }
    }
    while (g < glob.size() && glob[g] == '*') ++g;
    return g == glob.size();
}

// Whether some segment matches both: false only when certainly not.
bool segments_overlap(const std::string& a, const std::string& b) {
    if (is_variable(a) || is_variable(b)) return true;
    const bool glob_a = a.find('*') != std::string::npos;
    const bool glob_b = b.find('*') != std::string::npos;
    if (glob_a && glob_b) return true;
    if (glob_a) return glob_matches(a, b);
    if (glob_b) return glob_matches(b, a);
    return a == b;
}

bool paths_overlap(const PathSet& a, const PathSet& b) {
    const auto common = std::min(a.segments.size(), b.segments.size());
    for (std::size_t i = 0; i < common; ++i) {
        if (!segments_overlap(a.segments[i], b.segments[i])) return false;
    }
    if (a.segments.size() == b.segments.size()) return true;
    return a.segments.size() < b.segments.size() ? a.rest : b.rest;
}

bool methods_overlap(const std::vector<std::string>& a, const std::vector<std::string>& b) {
    if (a.empty() || b.empty()) return true;
    return std::any_of(a.begin(), a.end(),
                       [&](const auto& m) { return std::find(b.begin(), b.end(), m) != b.end(); });
}

// The vendor paths a route forwards to: the upstream's base path, then what the route sends on
// (its `path` pattern's subject, or what follows a stripped prefix, or the whole request path).
PathSet route_vendor_paths(const Config& config, const RouteConfig& route) {
    const auto& upstream = config.upstreams[route.upstream_index];
    const PathSet base{split(upstream.base_path), false};
    if (!route.match.path.empty()) return concat(base, pattern_set(route.match.path));
    if (!route.match.path_prefix.empty() && !route.strip_prefix)
        return concat(base, prefix_set(route.match.path_prefix));
    return concat(base, PathSet{{}, true});
}

PathSet rule_paths(const PolicyMatch& match) {
    if (!match.path.empty()) return pattern_set(match.path);
    if (!match.path_prefix.empty()) return prefix_set(match.path_prefix);
    return PathSet{{}, true};
}

bool same_set(std::vector<std::string> a, std::vector<std::string> b) {
    std::sort(a.begin(), a.end());
    std::sort(b.begin(), b.end());
    return a == b;
}

// Whether `earlier` takes every request of `rule` that `later` could: then none of them reach
// `later` (routes match first-wins). Only the plain case is recognised: the same listeners,
// hosts and mount, methods covering the rule's, and no path or the rule's exact path.
bool shadows(const Config& config, const RouteConfig& earlier, const RouteConfig& later,
             const PolicyMatch& rule) {
    if (!same_set(earlier.match.listeners, later.match.listeners) ||
        !same_set(earlier.match.hosts, later.match.hosts) || earlier.strip_prefix != later.strip_prefix) {
        return false;
    }
    if (earlier.match.path_prefix != later.match.path_prefix) return false;
    if (!earlier.match.methods.empty()) {
        if (rule.methods.empty()) return false;
        for (const auto& m : rule.methods) {
            if (std::find(earlier.match.methods.begin(), earlier.match.methods.end(), m) ==
                earlier.match.methods.end())
                return false;
        }
    }
    if (earlier.match.path.empty()) return true;
    // The earlier route's pattern is in request space: equal to the rule's only without a base path.
    return config.upstreams[earlier.upstream_index].base_path.empty() && !rule.path.empty() &&
           earlier.match.path == rule.path;
}

// ---- what a limit can admit -------------------------------------------------------------

// Capacity of `limit` over a half-open window of `window`, in its own units. `aligned_period`:
// the rule's calendar period, when the rule is a fixed window starting at `rule_offset`.
Int capacity(const LimitConfig& limit, Duration window, std::optional<Duration> rule_period,
             std::optional<Duration> rule_offset, std::string_view rule_zone) {
    const Wide span_ns = window.count();
    switch (limit.algorithm) {
        case Algorithm::sliding_window: {
            const Wide span = std::max<Duration::rep>((limit.window + limit.margin).count(), 1);
            return saturate(static_cast<Wide>(limit.limit) * ceil_div(span_ns, span));
        }
        case Algorithm::fixed_window: {
            const Wide p = std::max<Duration::rep>(limit.window.count(), 1);
            if (!limit.time_zone.empty()) {
                // Local days: the same calendar as a rule in the same zone; against any other,
                // periods as short as 23 hours (a daylight saving change) may cut the window.
                if (rule_period && limit.time_zone == rule_zone && rule_period->count() % p == 0)
                    return saturate(static_cast<Wide>(limit.limit) * (rule_period->count() / p));
                const Wide shortest =
                    std::max<Wide>(p - std::chrono::nanoseconds(std::chrono::hours(1)).count(), 1);
                return saturate(static_cast<Wide>(limit.limit) * (ceil_div(span_ns, shortest) + 1));
            }
            if (rule_period && rule_offset && rule_period->count() % p == 0) {
                const auto shift =
                    (rule_offset->count() - limit.utc_offset.count()) % static_cast<Duration::rep>(p);
                if (shift == 0) return saturate(static_cast<Wide>(limit.limit) * (rule_period->count() / p));
            }
            return saturate(static_cast<Wide>(limit.limit) * (ceil_div(span_ns, p) + 1));
        }
        case Algorithm::token_bucket: {
            const Wide period = std::max<Duration::rep>((limit.window + limit.margin).count(), 1);
            return add(limit.burst, saturate(static_cast<Wide>(limit.limit) * span_ns / period));
        }
        case Algorithm::concurrency:
        case Algorithm::vendor_gate: return kInfinite;
    }
    return kInfinite;
}

// A limit's capacity turned into the rule's units (requests, or the rule's cost units), or
// kInfinite with the reason in `why` when the limit cannot bound the rule.
Int in_rule_units(const LimitConfig& limit, const VendorRule& rule, Int limit_units, std::string& why) {
    // A cost read from the body (cost.body), or corrected from the response (cost.settle), may
    // be 0 for a request the vendor counts: such a limit bounds neither requests nor, unless
    // it is known to read the vendor's own count, units (docs/costs.md).
    if (limit.cost.body) {
        why = "counts units from the request body (a request may cost 0), not " +
              std::string(rule.counts_units ? "the vendor's units (" + rule.cost.header + ")" : "requests");
        return kInfinite;
    }
    if (limit.cost.settles()) {
        why = "is corrected from " +
              (limit.cost.settle_body ? "the response body" : limit.cost.settle_header) +
              " (a request may end up costing 0)";
        return kInfinite;
    }
    if (!rule.counts_units) {
        if (!limit.cost.header.empty()) {
            why = "counts units from " + limit.cost.header + " (a request may cost 0), not requests";
            return kInfinite;
        }
        if (limit.cost.fixed <= 0) {
            why = "costs 0 per request";
            return kInfinite;
        }
        return limit_units / limit.cost.fixed;
    }
    const Int rule_max = rule.cost.max > 0 ? rule.cost.max : kInfinite;
    if (!limit.cost.header.empty() && iequals(limit.cost.header, rule.cost.header)) {
        // A request costing more than cost.max is refused, not clamped: every unit the vendor
        // counts was counted here.
        if (limit.cost.fixed < rule.cost.default_units) {
            why = "counts " + std::to_string(limit.cost.fixed) + " for a request without " +
                  limit.cost.header + ", the vendor " + std::to_string(rule.cost.default_units);
            return kInfinite;
        }
        return limit_units;
    }
    if (!limit.cost.header.empty() || limit.cost.fixed <= 0 || rule_max == kInfinite) {
        why = "does not count the vendor's units (" + rule.cost.header + ")";
        return kInfinite;
    }
    return saturate(static_cast<Wide>(limit_units / limit.cost.fixed) * rule_max);
}

// Whether a limit partitions traffic like the rule or more coarsely.
bool partition_bounds(const LimitConfig& limit, const VendorRule& rule, std::string& why) {
    if (limit.key.empty()) return true;
    const bool by_rule_header = limit.key.size() == 1 && limit.key[0].kind == KeySource::Kind::header &&
                                !rule.per_header.empty() && iequals(limit.key[0].name, rule.per_header);
    if (by_rule_header && rule.per_key()) return true;  // per key, or per group of keys: as coarse
    if (by_rule_header && limit.key[0].group_by) {
        // Keys mapped to groups (group_by): one bucket per group, as the vendor's organization limit,
        // provided the map is right; an unlisted key alone in its bucket could be a second bucket
        // of a listed organization.
        if (limit.key[0].group_by->unmapped == KeyGroups::Unmapped::shared) return true;
        why = "groups keys by " + rule.per_group +
              " but counts each unlisted key on its own (unmapped: own): keys missing from the map "
              "could exceed the rule";
        return false;
    }
    if (by_rule_header) {
        why = "is per " + limit.key[0].name + " and the rule per " + rule.per_group +
              ": it bounds the rule only if each " + rule.per_group + " uses one key";
    } else if (rule.account_wide()) {
        why = "is per key and the rule account-wide: it bounds the rule only if a single key is used";
    } else {
        why = "is keyed otherwise than the rule (per " + rule.per_header + ")";
    }
    return false;
}

struct Bound {
    std::string name;
    Int capacity = kInfinite;
    std::vector<std::size_t> routes;  // indexes into the covered routes
};

// The smallest sum of capacities whose routes cover all `count` routes: one bound covering all,
// the per-route minimum, and a greedy cover (each is a valid bound; the minimum is kept).
std::pair<Int, std::vector<std::string>> cheapest_cover(const std::vector<Bound>& bounds, std::size_t count) {
    Int best = kInfinite;
    std::vector<std::string> best_names;
    for (const auto& b : bounds) {
        if (b.routes.size() == count && b.capacity < best) {
            best = b.capacity;
            best_names = {b.name};
        }
    }
    // Per route: its smallest bound, summed (a bound shared by several routes is counted once).
    {
        std::set<std::string> chosen;
        std::map<std::string, Int> capacities;
        bool complete = true;
        for (std::size_t r = 0; r < count && complete; ++r) {
            const Bound* smallest = nullptr;
            for (const auto& b : bounds) {
                if (std::find(b.routes.begin(), b.routes.end(), r) == b.routes.end()) continue;
                if (smallest == nullptr || b.capacity < smallest->capacity) smallest = &b;
            }
            if (smallest == nullptr || smallest->capacity == kInfinite) {
                complete = false;
            } else {
                chosen.insert(smallest->name);
                capacities[smallest->name] = smallest->capacity;
            }
        }
        if (complete) {
            Int sum = 0;
            for (const auto& name : chosen) sum = add(sum, capacities[name]);
            if (sum < best) {
                best = sum;
                best_names.assign(chosen.begin(), chosen.end());
            }
        }
    }
    // Greedy: the bound with the least capacity per newly covered route, until all are covered.
    {
        std::vector<bool> covered(count, false);
        std::size_t left = count;
        Int sum = 0;
        std::vector<std::string> names;
        while (left > 0) {
            const Bound* pick = nullptr;
            long double pick_cost = 0;
            for (const auto& b : bounds) {
                std::size_t gain = 0;
                for (const auto r : b.routes) gain += covered[r] ? 0 : 1;
                if (gain == 0 || b.capacity == kInfinite) continue;
                const long double cost =
                    static_cast<long double>(b.capacity) / static_cast<long double>(gain);
                if (pick == nullptr || cost < pick_cost) {
                    pick = &b;
                    pick_cost = cost;
                }
            }
            if (pick == nullptr) break;
            for (const auto r : pick->routes) {
                if (!covered[r]) {
                    covered[r] = true;
                    --left;
                }
            }
            sum = add(sum, pick->capacity);
            names.push_back(pick->name);
        }
        if (left == 0 && sum < best) {
            best = sum;
            best_names = names;
        }
    }
    if (count == 0) return {0, {}};
    return {best, best_names};
}

Duration scale(Duration d, double time_scale) {
    if (time_scale == 1.0) return d;
    return Duration(static_cast<Duration::rep>(static_cast<double>(d.count()) / time_scale));
}

}  // namespace

std::optional<std::vector<Duration>> zone_offsets(const std::string& zone) {
    // An IANA name: letters, digits, '/', '_', '-', '+'; never a path out of the database.
    if (zone.empty() || zone.find("..") != std::string::npos || zone.front() == '/' ||
        !std::all_of(zone.begin(), zone.end(), [](char c) {
            return std::isalnum(static_cast<unsigned char>(c)) || c == '/' || c == '_' || c == '-' ||
                   c == '+';
        })) {
        return std::nullopt;
    }
    std::ifstream in("/usr/share/zoneinfo/" + zone, std::ios::binary);
    if (!in) return std::nullopt;
    const std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    // TZif (RFC 8536), the version 1 block: 32-bit transition times (enough from 2000 to 2037).
    if (data.size() < 44 || data.compare(0, 4, "TZif") != 0) return std::nullopt;
    const auto u32 = [&](std::size_t at) {
        return (static_cast<std::uint32_t>(static_cast<unsigned char>(data[at])) << 24) |
               (static_cast<std::uint32_t>(static_cast<unsigned char>(data[at + 1])) << 16) |
               (static_cast<std::uint32_t>(static_cast<unsigned char>(data[at + 2])) << 8) |
               static_cast<std::uint32_t>(static_cast<unsigned char>(data[at + 3]));
    };
    const std::size_t timecnt = u32(32), typecnt = u32(36);
    const std::size_t times_at = 44, indexes_at = times_at + 4 * timecnt, types_at = indexes_at + timecnt;
    if (typecnt == 0 || data.size() < types_at + 6 * typecnt) return std::nullopt;
    constexpr std::int64_t kYear2000 = 946'684'800;
    std::set<std::size_t> used;
    for (std::size_t i = 0; i < timecnt; ++i) {
        const auto when = static_cast<std::int32_t>(u32(times_at + 4 * i));
        if (when >= kYear2000 || i + 1 == timecnt)
            used.insert(static_cast<unsigned char>(data[indexes_at + i]));
    }
    if (used.empty()) used.insert(0);
    std::vector<Duration> offsets;
    for (const auto type : used) {
        if (type >= typecnt) return std::nullopt;
        const auto seconds = static_cast<std::int32_t>(u32(types_at + 6 * type));
        const Duration offset = std::chrono::seconds(seconds);
        if (std::find(offsets.begin(), offsets.end(), offset) == offsets.end()) offsets.push_back(offset);
    }
    std::sort(offsets.begin(), offsets.end());
    return offsets;
}

bool VendorCheck::kept() const {
    return std::all_of(rules.begin(), rules.end(), [](const RuleVerdict& r) { return r.kept; });
}

VendorCheck check_vendor(const Config& config, const std::string& instance_name) {
    const VendorInstance* instance = nullptr;
    std::string names;
    for (const auto& v : config.vendors) {
        if (v.name == instance_name) instance = &v;
        names += (names.empty() ? "" : ", ") + v.name;
    }
    if (instance == nullptr) {
        throw std::invalid_argument(
            "no vendor instance '" + instance_name + "' in the configuration (" +
            (names.empty() ? std::string("it has no 'vendors' entries") : "there are: " + names) + ")");
    }
    if (!instance->policy) {
        throw std::invalid_argument("preset '" + instance->preset + "' of vendor instance '" + instance_name +
                                    "' has no vendor_policy to check against");
    }
    VendorCheck check;
    check.instance = instance->name;
    check.preset = instance->preset;
    check.tier = instance->tier;
    check.policy = instance->policy;

    // The routes that reach this vendor, in match order.
    std::vector<std::size_t> vendor_routes;
    for (std::size_t i = 0; i < config.routes.size(); ++i) {
        const auto& up = instance->upstream_indexes;
        if (std::find(up.begin(), up.end(), config.routes[i].upstream_index) != up.end())
            vendor_routes.push_back(i);
    }

    for (const auto* rule : instance->policy->rules_for_tier(instance->tier)) {
        RuleVerdict verdict;
        verdict.rule = rule;
        verdict.window = scale(rule->window, config.time_scale);
        const auto rule_set = rule_paths(rule->match);
        std::vector<std::size_t> covered;  // indexes into config.routes
        for (const auto r : vendor_routes) {
            const auto& route = config.routes[r];
            if (!methods_overlap(route.match.methods, rule->match.methods)) continue;
            if (!paths_overlap(route_vendor_paths(config, route), rule_set)) continue;
            bool shadowed = false;
            for (std::size_t e = 0; e < r && !shadowed; ++e)
                shadowed = shadows(config, config.routes[e], route, rule->match);
            if (shadowed) continue;
            covered.push_back(r);
            verdict.routes.push_back(route.name);
        }

        std::set<std::string> noted;
        const auto note = [&](const std::string& text) {
            if (noted.insert(text).second) verdict.notes.push_back(text);
        };
        // Evaluated once per offset the vendor's calendar may start at; the worst is kept.
        std::vector<std::optional<Duration>> offsets{std::nullopt};
        std::optional<Duration> period;
        if (rule->kind == PolicyRuleKind::fixed) {
            period = verdict.window;
            if (!rule->time_zone.empty() && config.time_scale != 1.0) {
                // The loader aligns a scaled time_zone limit to UTC (local days cannot shrink);
                // the vendor's scaled day is read the same way.
                offsets = {Duration::zero()};
                note("time zone " + rule->time_zone +
                     ": aligned to UTC under --time-scale, as the limits are");
            } else if (!rule->time_zone.empty()) {
                const auto zone = zone_offsets(rule->time_zone);
                if (zone) {
                    offsets.assign(zone->begin(), zone->end());
                    std::string list;
                    for (const auto& o : *zone) list += (list.empty() ? "" : ", ") + format_duration(o);
                    note("time zone " + rule->time_zone + ": UTC offsets " + list + " considered");
                } else {
                    note("time zone " + rule->time_zone +
                         " could not be read: its day is assumed to start at any time");
                }
            } else {
                offsets = {scale(rule->utc_offset, config.time_scale)};
            }
        }

        Int worst = 0;
        std::vector<std::string> worst_names;
        for (const auto& offset : offsets) {
            // A zone's offsets are real hours; the vendor's period is scaled: scale them alike.
            const std::optional<Duration> scaled_offset =
                offset && !rule->time_zone.empty() && config.time_scale == 1.0
                    ? std::optional<Duration>(scale(*offset, config.time_scale))
                    : offset;
            std::vector<Bound> bounds;
            std::map<std::string, std::size_t> by_name;
            const auto add_bound = [&](const std::string& name, Int cap, std::size_t route_position) {
                auto [it, inserted] = by_name.try_emplace(name, bounds.size());
                if (inserted) bounds.push_back({name, cap, {}});
                bounds[it->second].routes.push_back(route_position);
            };
            for (std::size_t pos = 0; pos < covered.size(); ++pos) {
                const auto& route = config.routes[covered[pos]];
                for (const auto li : route.limit_indexes) {
                    const auto& limit = config.limits[li];
                    const bool concurrent = limit.algorithm == Algorithm::concurrency;
                    if ((rule->kind == PolicyRuleKind::concurrency) != concurrent) continue;
                    std::string why;
                    if (!limit.enforce) {
                        note("limit " + limit.name + " is not enforced (enforce: false)");
                        continue;
                    }
                    if (!partition_bounds(limit, *rule, why)) {
                        note("limit " + limit.name + " " + why);
                        continue;
                    }
                    const Int own =
                        concurrent ? limit.limit
                                   : capacity(limit, verdict.window,
                                              rule->kind == PolicyRuleKind::fixed ? period : std::nullopt,
                                              scaled_offset, rule->time_zone);
                    const Int units = in_rule_units(limit, *rule, own, why);
                    if (units == kInfinite) {
                        note("limit " + limit.name + " " + why);
                        continue;
                    }
                    add_bound(limit.name, units, pos);
                }
                // One request per connection: an upstream's max_connections bounds what is in flight.
                if (rule->kind == PolicyRuleKind::concurrency) {
                    const auto& upstream = config.upstreams[route.upstream_index];
                    add_bound("upstream " + upstream.name + " max_connections",
                              static_cast<Int>(upstream.max_connections), pos);
                }
            }
            const auto [total, names_used] = cheapest_cover(bounds, covered.size());
            if (total >= worst) {
                worst = total;
                worst_names = names_used;
            }
        }
        if (worst == kInfinite) {
            verdict.worst_case.reset();
            for (const auto r : covered) {
                const auto& route = config.routes[r];
                bool bounded = false;
                for (const auto li : route.limit_indexes) {
                    const auto& l = config.limits[li];
                    bounded = bounded || ((rule->kind == PolicyRuleKind::concurrency) ==
                                          (l.algorithm == Algorithm::concurrency));
                }
                if (!bounded) note("route " + route.name + " has no limit that counts toward this rule");
            }
        } else {
            verdict.worst_case = worst;
            verdict.bounded_by = worst_names;
        }
        verdict.kept = verdict.worst_case && *verdict.worst_case <= rule->limit;
        check.rules.push_back(std::move(verdict));
    }
    return check;
}

std::string format_vendor_check(const VendorCheck& check) {
    std::ostringstream out;
    const auto& policy = *check.policy;
    out << "vendor " << check.instance << ": preset " << check.preset << ", policy of " << policy.vendor
        << (check.tier.empty() ? "" : ", tier " + check.tier) << "\n";
    out << "  source: " << policy.source << "\n";
    for (const auto& v : check.rules) {
        const auto& rule = *v.rule;
        out << "  " << (v.kept ? "kept    " : "EXCEEDED") << "  " << rule.name << ": ";
        if (rule.kind == PolicyRuleKind::concurrency) {
            out << rule.limit << " in flight";
        } else {
            out << rule.limit << (rule.counts_units ? " units (" + rule.cost.header + ")" : "") << " per "
                << (rule.kind == PolicyRuleKind::fixed ? "calendar " : "rolling ")
                << format_duration(v.window);
        }
        out << (rule.per_group.empty() ? rule.per_header.empty() ? "" : ", per " + rule.per_header
                                       : ", per " + rule.per_group)
            << "; worst case " << (v.worst_case ? std::to_string(*v.worst_case) : std::string("unbounded"));
        if (!v.bounded_by.empty()) {
            out << " (";
            for (std::size_t i = 0; i < v.bounded_by.size(); ++i) out << (i ? " + " : "") << v.bounded_by[i];
            out << ")";
        }
        out << "\n";
        if (v.routes.empty()) {
            out << "            no route reaches it\n";
        } else {
            out << "            routes: ";
            for (std::size_t i = 0; i < v.routes.size(); ++i) out << (i ? ", " : "") << v.routes[i];
            out << "\n";
        }
        for (const auto& note : v.notes) out << "            note: " << note << "\n";
    }
    std::size_t exceeded = 0;
    for (const auto& v : check.rules) exceeded += v.kept ? 0 : 1;
    out << "  "
        << (exceeded == 0
                ? "all " + std::to_string(check.rules.size()) + " rules kept"
                : std::to_string(exceeded) + " of " + std::to_string(check.rules.size()) + " rules EXCEEDED")
        << "\n";
    return out.str();
}

}  // namespace sluice::config
