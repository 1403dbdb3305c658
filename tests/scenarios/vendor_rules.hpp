#pragma once
// The vendor simulator's rule engine: pure code (no sockets, no clock of its own), so the
// scenario suite's yardstick is itself unit-tested with exact times (vendor_rules_test.cpp).
//
// A vendor is a list of rules, all enforced at once. A request is accepted only if every rule
// that matches it has room; an accepted request counts against all of them, a refused one
// against none. Each arrival is answered in the vendor's own format (its headers, its 429) and
// recorded; analyze() then reports, per rule, the most the vendor accepted in any window of the
// rule's length and how much of what the rule allowed was used.
//
// Rule has exactly the fields of the vendors' published policy data (name, kind, limit, window,
// utc_offset, match, per, per_group, cost), so a preset's policy converts field by field.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sluice::test::sim {

using Nanos = std::int64_t;  // nanoseconds: steady (arrival order) or Unix (calendar periods)
using Fields = std::vector<std::pair<std::string, std::string>>;

std::optional<std::string> find_field(const Fields& fields, std::string_view name);  // case-insensitive

// Which requests a rule counts. Absent from a rule: every request.
struct Match {
    std::vector<std::string> methods;  // upper case; empty: any method
    std::string path;         // a sluice route pattern, e.g. /api/v2.*/publisher/{id}/lead-result/{x}
    std::string path_prefix;  // or a prefix; at most one of the two
};

struct Per {
    std::string header;  // one counter per value of this request header (e.g. Authorization)
};

struct Cost {
    std::string header;    // units a request takes, from this header (absent or invalid: 1)
    std::int64_t max = 0;  // a larger value counts as this much, as sluice reads the same field (0: no cap)
};

struct Rule {
    enum class Kind { rolling, fixed, concurrency };
    std::string name;
    Kind kind = Kind::rolling;
    std::int64_t limit = 0;
    std::chrono::nanoseconds window{0};      // rolling: any interval this long; fixed: the period
    std::chrono::nanoseconds utc_offset{0};  // fixed: periods start at k * window - utc_offset (Unix):
                                             // -5h starts a day at 05:00 UTC, midnight US Eastern
    std::optional<Match> match;
    std::optional<Per> per;  // absent: one counter for the whole account
    std::string per_group;   // "organization": one counter per group of the `per` key (Options::key_groups)
    std::optional<Cost> cost;
};

// Divides every window and utc_offset of `rules` by `factor` (the scenario's time scale), as
// sluice's --time-scale does; limits stay.
std::vector<Rule> scaled(std::vector<Rule> rules, std::int64_t factor);

// How the vendor answers.
enum class Style {
    bare,      // 429 with no rate-limit headers (Constant Contact, Convertr, Amplemarket)
    intercom,  // X-RateLimit-Limit / -Remaining / -Reset (Unix seconds, rounded up) on every response
    close,     // x-rate-limit-limit / -remaining / -reset (decimal seconds) for the limit closest to being
               // hit; 429: retry-after (whole seconds, rounded up) and a JSON body
};

// A usage budget outside the rate rules (Amplemarket's credits): once spent, a matching request
// is answered with `status` and `body` instead (it does not count against any rule).
struct Credits {
    std::optional<Match> match;
    std::int64_t units = 0;  // the budget, in the units of the first matching rule with a cost (else 1)
    std::string cost_header;
    unsigned status = 402;
    std::string body;
};

struct Options {
    std::string vendor;  // for reports
    Style style = Style::bare;
    bool retry_after = false;  // bare: a Retry-After (whole seconds, rounded up) on 429s
    // Stricter mode: the limit the vendor really enforces, by rule name (lower than published).
    std::map<std::string, std::int64_t> enforced_limits;
    std::map<std::string, std::string> key_groups;  // per_group: `per` key value -> organization
    std::optional<Credits> credits;
    bool count_refused = false;       // a vendor whose 429s count toward its windows too
    std::size_t max_log = 1'000'000;  // arrivals recorded at most (bounded); more are counted as dropped
};

struct Request {
    std::string method;
    std::string path;  // without the query
    Fields headers;
};

struct Reply {
    unsigned status = 200;
    Fields headers;
    std::string body;
};

// One arrival at the vendor.
struct Arrival {
    std::uint64_t ticket = 0;
    Nanos at = 0;            // steady
    Nanos unix_at = 0;       // the same instant on the Unix clock (calendar periods)
    Nanos done = 0;          // when its answer had been written (concurrency); 0 until then
    std::string consumer;    // X-Consumer, or "sluice"
    std::string key;         // the API key: the value of the first matching keyed rule's header
    std::string request_id;  // X-Scenario-Id, to find a request sent twice
    std::string method;
    std::string path;
    unsigned status = 0;
    std::string refused_by;  // the rule (or "credits") that refused it
    std::vector<std::string>
        partitions;                   // per rule (index as in rules()): the counter it touched, "" if none
    std::vector<std::int64_t> costs;  // per rule: units it took (0 if the rule does not match)
};

inline constexpr const char* kConsumerHeader = "X-Consumer";
inline constexpr const char* kRequestIdHeader = "X-Scenario-Id";
inline constexpr const char* kVendorMarkHeader = "X-Vendor";  // on every vendor answer: "sim"

class VendorRules {
public:
    VendorRules(std::vector<Rule> rules, Options options);
    ~VendorRules();
    VendorRules(VendorRules&&) noexcept;
    VendorRules& operator=(VendorRules&&) noexcept;

    // Decides and records one arrival at `at` (steady; arrivals in time order) / `unix_at`.
    // Returns the answer and the arrival's ticket (for finish()).
    std::pair<std::uint64_t, Reply> arrive(const Request& request, Nanos at, Nanos unix_at);
    // The answer to `ticket` has been written: its concurrency slots are free.
    void finish(std::uint64_t ticket, Nanos at);

    const std::vector<Rule>& rules() const;
    const Options& options() const;
    std::int64_t enforced_limit(std::size_t rule) const;  // the stricter one when set
    const std::vector<Arrival>& log() const;
    std::size_t dropped() const;  // arrivals not recorded (log full)

private:
    struct State;
    std::unique_ptr<State> state_;
};

// What the vendor saw under one rule.
struct RuleReport {
    std::string name;
    Rule::Kind kind = Rule::Kind::rolling;
    std::int64_t limit = 0;      // enforced
    std::int64_t published = 0;  // as published (differs in stricter mode)
    std::int64_t max_in_window =
        0;  // most accepted (units) in any window, any partition (concurrency: in flight)
    std::int64_t max_arrivals = 0;  // the same over every arrival, refused ones too: what was sent
    std::int64_t accepted = 0;      // units accepted in the measured interval, all partitions
    std::int64_t allowed = 0;       // what the rule allowed there (partitions x whole windows x limit)
    std::size_t partitions = 0;     // distinct counters seen
    double utilization() const { return allowed > 0 ? static_cast<double>(accepted) / allowed : 0.0; }
};

// The most accepted units in any interval (t - window, t] of the sorted (time, units) list.
std::int64_t max_in_rolling_window(const std::vector<std::pair<Nanos, std::int64_t>>& sorted, Nanos window);

// Per rule, over `log`. Utilization is measured over [from, from + k * window) (steady) with k the
// most whole windows before `to`: rolling, every such interval can hold k * limit at most; fixed,
// the whole calendar periods inside [from, to). Concurrency rules get no utilization.
std::vector<RuleReport> analyze(const VendorRules& vendor, Nanos from, Nanos to, Nanos unix_minus_steady);

}  // namespace sluice::test::sim
