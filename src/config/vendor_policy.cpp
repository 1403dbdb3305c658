// The `vendor_policy:` section of a preset -> VendorPolicy. Small and self-contained: the
// section has its own fixed shape, read with the same message format as the loader
// ("file:line:col: what; expected what is allowed"), and unknown keys are errors.

#include "sluice/config/vendor_policy.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <sstream>

#include <yaml-cpp/yaml.h>

#include "sluice/common/excerpt.hpp"
#include "sluice/config/loader.hpp"
#include "sluice/route/route_table.hpp"

namespace sluice::config {
namespace {

constexpr Duration kMaxPolicyWindow = std::chrono::hours(24 * 366);
constexpr Duration kDay = std::chrono::hours(24);

struct At {
    const std::string& file;
    const YAML::Node& node;
    std::string path;  // "vendor_policy.rules[2].window"

    SourceLocation where() const {
        const auto mark = node.Mark();
        if (mark.is_null() || mark.line < 0) return {file, 1, 1};
        return {file, mark.line + 1, mark.column + 1};
    }
    [[noreturn]] void fail(const std::string& what, const std::string& expected) const {
        throw ConfigError(where(), path + ": " + what + "; expected " + expected);
    }
    std::string scalar(const std::string& expected) const {
        if (!node.IsScalar() || node.Scalar().empty()) {
            fail("got " + (node.IsMap()        ? std::string("a map")
                           : node.IsSequence() ? std::string("a list")
                           : node.IsScalar()   ? quoted_excerpt(node.Scalar())
                                               : std::string("no value")),
                 expected);
        }
        return node.Scalar();
    }
    std::int64_t integer(std::int64_t min) const {
        const std::string expected = "an integer >= " + std::to_string(min);
        const auto text = scalar(expected);
        std::int64_t value = 0;
        const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
        if (ec != std::errc() || end != text.data() + text.size() || value < min)
            fail("got " + quoted_excerpt(text), expected);
        return value;
    }
    Duration duration(bool allow_negative, bool allow_zero) const {
        const std::string expected = std::string(allow_negative ? "a duration" : "a positive duration") +
                                     " with a unit, e.g. 10s, 5m, 1d" + (allow_negative ? " or -5h" : "");
        const auto text = scalar(expected);
        const auto value = parse_duration(text, allow_negative);
        if (!value || (!allow_zero && *value <= Duration::zero()) || *value > kMaxPolicyWindow ||
            *value < -kMaxPolicyWindow) {
            fail("got " + quoted_excerpt(text), expected);
        }
        return *value;
    }
};

// A map's entries, each key checked against `allowed` and given once.
std::vector<std::pair<std::string, YAML::Node>> entries(const At& at,
                                                        const std::vector<std::string>& allowed) {
    std::string allowed_text;
    for (const auto& key : allowed) allowed_text += (allowed_text.empty() ? "" : ", ") + key;
    if (!at.node.IsMap())
        at.fail("got " + std::string(at.node.IsSequence() ? "a list" : "a scalar"),
                "a map with keys " + allowed_text);
    std::vector<std::pair<std::string, YAML::Node>> out;
    for (const auto& entry : at.node) {
        const At key_at{at.file, entry.first, at.path};
        const auto key = key_at.scalar("a key");
        if (std::find(allowed.begin(), allowed.end(), key) == allowed.end())
            key_at.fail("unknown key " + quoted_excerpt(key), "one of " + allowed_text);
        for (const auto& [seen, unused] : out) {
            if (seen == key) key_at.fail("duplicate key " + quoted_excerpt(key), "each key once");
        }
        out.emplace_back(key, entry.second);
    }
    return out;
}

const YAML::Node* find(const std::vector<std::pair<std::string, YAML::Node>>& map, std::string_view key) {
    for (const auto& [k, v] : map) {
        if (k == key) return &v;
    }
    return nullptr;
}

bool is_token(std::string_view text) {
    return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) ||
               std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
    });
}

std::vector<std::string> string_list(const At& at, const std::string& expected) {
    std::vector<std::string> out;
    if (at.node.IsScalar()) {
        out.push_back(at.scalar(expected));
        return out;
    }
    if (!at.node.IsSequence()) at.fail("got a map", expected);
    for (std::size_t i = 0; i < at.node.size(); ++i) {
        const YAML::Node item = at.node[i];
        out.push_back(At{at.file, item, at.path + "[" + std::to_string(i + 1) + "]"}.scalar(expected));
    }
    return out;
}

PolicyMatch read_match(const At& at) {
    PolicyMatch match;
    const auto map = entries(at, {"methods", "path", "path_prefix"});
    if (const auto* v = find(map, "methods")) {
        const At methods_at{at.file, *v, at.path + ".methods"};
        for (auto method : string_list(methods_at, "an HTTP method or a list of them")) {
            if (!is_token(method))
                methods_at.fail(quoted_excerpt(method) + " is not an HTTP method", "GET, POST, ...");
            for (auto& c : method) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
            match.methods.push_back(method);
        }
    }
    if (const auto* v = find(map, "path")) {
        const At path_at{at.file, *v, at.path + ".path"};
        match.path = path_at.scalar("a path pattern starting with '/'");
        if (match.path.front() != '/')
            path_at.fail(quoted_excerpt(match.path) + " does not start with '/'",
                         "a path pattern starting with '/'");
        if (const auto error = route::validate_path_pattern(match.path); !error.empty())
            path_at.fail("invalid path pattern " + quoted_excerpt(match.path) + ": " + error,
                         "a valid route pattern");
    }
    if (const auto* v = find(map, "path_prefix")) {
        const At prefix_at{at.file, *v, at.path + ".path_prefix"};
        if (!match.path.empty())
            prefix_at.fail("both 'path' and 'path_prefix' are given", "at most one of them");
        match.path_prefix = prefix_at.scalar("a path prefix starting with '/'");
        if (match.path_prefix.front() != '/')
            prefix_at.fail(quoted_excerpt(match.path_prefix) + " does not start with '/'",
                           "a path prefix starting with '/'");
    }
    return match;
}

VendorRule read_rule(const std::string& file, const YAML::Node& node, const std::string& path,
                     const std::vector<std::string>& tiers) {
    const At at{file, node, path};
    VendorRule rule;
    rule.location = at.where();
    const auto map = entries(at, {"name", "kind", "limit", "window", "utc_offset", "time_zone", "match",
                                  "per", "per_group", "cost", "tier"});
    const auto require = [&](std::string_view key, const std::string& expected) {
        const auto* v = find(map, key);
        if (v == nullptr) at.fail("missing " + quoted_excerpt(key), expected);
        return At{file, *v, path + "." + std::string(key)};
    };
    rule.name = require("name", "a rule name unique in the policy").scalar("a rule name");
    const auto kind_at = require("kind", "kind: rolling, fixed or concurrency");
    const auto kind = kind_at.scalar("one of rolling, fixed, concurrency");
    if (kind == "rolling")
        rule.kind = PolicyRuleKind::rolling;
    else if (kind == "fixed")
        rule.kind = PolicyRuleKind::fixed;
    else if (kind == "concurrency")
        rule.kind = PolicyRuleKind::concurrency;
    else
        kind_at.fail("unknown kind " + quoted_excerpt(kind), "one of rolling, fixed, concurrency");
    rule.limit = require("limit", "the rule's limit, e.g. limit: 3000").integer(1);
    if (rule.kind == PolicyRuleKind::concurrency) {
        for (const auto* key : {"window", "utc_offset", "time_zone", "cost"}) {
            if (const auto* v = find(map, key))
                At{file, *v, path}.fail(quoted_excerpt(key) + " does not apply to a concurrency rule",
                                        "only name, kind, limit, match, per, per_group, tier");
        }
    } else {
        rule.window = require("window", "the window length, e.g. window: 5m").duration(false, false);
    }
    if (rule.kind != PolicyRuleKind::fixed) {
        for (const auto* key : {"utc_offset", "time_zone"}) {
            if (const auto* v = find(map, key))
                At{file, *v, path}.fail(quoted_excerpt(key) + " applies to fixed rules only",
                                        "kind: fixed, or no " + std::string(key));
        }
    }
    if (const auto* v = find(map, "utc_offset")) {
        const At offset_at{file, *v, path + ".utc_offset"};
        rule.utc_offset = offset_at.duration(true, true);
        if (rule.utc_offset <= -kDay || rule.utc_offset >= kDay)
            offset_at.fail("a whole day or more away from UTC", "a duration strictly between -24h and 24h");
    }
    if (const auto* v = find(map, "time_zone")) {
        const At zone_at{file, *v, path + ".time_zone"};
        if (find(map, "utc_offset"))
            zone_at.fail("both utc_offset and time_zone are given", "at most one of them");
        rule.time_zone = zone_at.scalar("an IANA time zone name, e.g. America/New_York");
    }
    if (const auto* v = find(map, "match")) rule.match = read_match(At{file, *v, path + ".match"});
    if (const auto* v = find(map, "per")) {
        const At per_at{file, *v, path + ".per"};
        const auto per = entries(per_at, {"header"});
        const auto* header = find(per, "header");
        if (header == nullptr) per_at.fail("missing 'header'", "per: {header: NAME}");
        const At header_at{file, *header, path + ".per.header"};
        rule.per_header = header_at.scalar("a header name");
        if (!is_token(rule.per_header))
            header_at.fail(quoted_excerpt(rule.per_header) + " is not a header name", "an HTTP token");
    }
    if (const auto* v = find(map, "per_group")) {
        const At group_at{file, *v, path + ".per_group"};
        rule.per_group = group_at.scalar("the name of the group of keys, e.g. organization");
        if (rule.per_header.empty())
            group_at.fail("per_group without per", "per: {header: NAME} naming the key that is grouped");
    }
    if (const auto* v = find(map, "cost")) {
        const At cost_at{file, *v, path + ".cost"};
        const auto cost = entries(cost_at, {"header", "default", "max"});
        const auto* header = find(cost, "header");
        if (header == nullptr) cost_at.fail("missing 'header'", "cost: {header: NAME, max: N}");
        const At header_at{file, *header, path + ".cost.header"};
        rule.cost.header = header_at.scalar("a header name");
        if (!is_token(rule.cost.header))
            header_at.fail(quoted_excerpt(rule.cost.header) + " is not a header name", "an HTTP token");
        if (const auto* d = find(cost, "default"))
            rule.cost.default_units = At{file, *d, path + ".cost.default"}.integer(0);
        if (const auto* m = find(cost, "max")) rule.cost.max = At{file, *m, path + ".cost.max"}.integer(1);
        rule.counts_units = true;
    }
    if (const auto* v = find(map, "tier")) {
        const At tier_at{file, *v, path + ".tier"};
        rule.tier = tier_at.scalar("a tier name");
        if (std::find(tiers.begin(), tiers.end(), rule.tier) == tiers.end()) {
            std::string names;
            for (const auto& t : tiers) names += (names.empty() ? "" : ", ") + t;
            tier_at.fail(
                "unknown tier " + quoted_excerpt(rule.tier),
                tiers.empty() ? std::string("a 'tiers' list in vendor_policy first") : "one of " + names);
        }
    }
    return rule;
}

}  // namespace

std::vector<const VendorRule*> VendorPolicy::rules_for_tier(std::string_view tier) const {
    const std::string chosen = tier.empty() ? default_tier() : std::string(tier);
    std::vector<const VendorRule*> out;
    for (const auto& rule : rules) {
        if (rule.tier.empty() || rule.tier == chosen) out.push_back(&rule);
    }
    return out;
}

VendorPolicy parse_vendor_policy(const std::string& yaml_text, const std::string& source_name) {
    YAML::Node document;
    try {
        document = YAML::Load(yaml_text);
    } catch (const YAML::Exception& e) {
        const SourceLocation where = e.mark.is_null()
                                         ? SourceLocation{source_name, 1, 1}
                                         : SourceLocation{source_name, e.mark.line + 1, e.mark.column + 1};
        throw ConfigError(where, "invalid YAML: " + e.msg + "; expected well-formed YAML");
    }
    if (!document.IsMap() || !document["vendor_policy"]) {
        throw ConfigError({source_name, 1, 1},
                          "no 'vendor_policy' section; expected a preset with vendor_policy: "
                          "{vendor: ..., source: ..., rules: [...]}");
    }
    const YAML::Node section = document["vendor_policy"];
    const At at{source_name, section, "vendor_policy"};
    VendorPolicy policy;
    policy.location = at.where();
    const auto map = entries(at, {"vendor", "source", "tiers", "rules"});
    const auto require = [&](std::string_view key, const std::string& expected) {
        const auto* v = find(map, key);
        if (v == nullptr) at.fail("missing " + quoted_excerpt(key), expected);
        return At{source_name, *v, "vendor_policy." + std::string(key)};
    };
    policy.vendor = require("vendor", "the vendor's name").scalar("the vendor's name");
    policy.source = require("source", "the URL of the vendor's rate-limit documentation").scalar("a URL");
    if (const auto* v = find(map, "tiers")) {
        const At tiers_at{source_name, *v, "vendor_policy.tiers"};
        policy.tiers = string_list(tiers_at, "a list of tier names");
        for (std::size_t i = 0; i < policy.tiers.size(); ++i) {
            for (std::size_t j = 0; j < i; ++j) {
                if (policy.tiers[i] == policy.tiers[j])
                    tiers_at.fail("tier " + quoted_excerpt(policy.tiers[i]) + " is listed twice",
                                  "unique tier names");
            }
        }
    }
    const auto rules_at = require("rules", "a list of rules");
    if (!rules_at.node.IsSequence() || rules_at.node.size() == 0)
        rules_at.fail("no rules", "a list of at least one rule");
    for (std::size_t i = 0; i < rules_at.node.size(); ++i) {
        const YAML::Node item = rules_at.node[i];
        auto rule =
            read_rule(source_name, item, "vendor_policy.rules[" + std::to_string(i + 1) + "]", policy.tiers);
        for (const auto& other : policy.rules) {
            if (other.name == rule.name) {
                throw ConfigError(rule.location,
                                  "vendor_policy.rules[" + std::to_string(i + 1) + "]: duplicate rule name " +
                                      quoted_excerpt(rule.name) + " (first at line " +
                                      std::to_string(other.location.line) + "); expected unique rule names");
            }
        }
        policy.rules.push_back(std::move(rule));
    }
    return policy;
}

VendorPolicy load_vendor_policy(const std::string& preset_file) {
    std::ifstream in(preset_file, std::ios::binary);
    if (!in) {
        throw ConfigError({preset_file, 1, 1}, std::string("cannot read the preset: ") +
                                                   std::strerror(errno) + "; expected a readable YAML file");
    }
    std::ostringstream text;
    text << in.rdbuf();
    return parse_vendor_policy(text.str(), preset_file);
}

}  // namespace sluice::config
