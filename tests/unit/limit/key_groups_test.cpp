// group_by: key values mapped to a group (API keys to their organization), so that one limit is
// per organization while another on the same header stays per key (Close's org limit).

#include <map>
#include <memory>
#include <string>

#include <catch2/catch.hpp>

#include "sluice/limit/request_key.hpp"

namespace {

using sluice::config::KeyGroups;
using sluice::config::KeySource;
using sluice::config::LimitConfig;
using sluice::limit::request_key;
using sluice::limit::RequestAttributes;

std::shared_ptr<KeyGroups> orgs(KeyGroups::Unmapped unmapped) {
    auto g = std::make_shared<KeyGroups>();
    g->group_of = {{"Basic key-a1", "acme"}, {"Basic key-a2", "acme"}, {"Basic key-g1", "globex"}};
    g->group_count = 2;
    g->unmapped = unmapped;
    return g;
}

LimitConfig limit_keyed(std::shared_ptr<const KeyGroups> groups, std::string name = "close-org") {
    LimitConfig c;
    c.name = std::move(name);
    c.limit = 60;
    c.key = {KeySource{KeySource::Kind::header, "Authorization", std::move(groups)}};
    return c;
}

std::uint64_t key_of(const LimitConfig& limit, std::optional<std::string> authorization) {
    const RequestAttributes request{"GET", "", nullptr,
                                    [&](std::string_view name) -> std::optional<std::string_view> {
                                        if (name == "Authorization" && authorization) return *authorization;
                                        return std::nullopt;
                                    }};
    return request_key(limit, request);
}

}  // namespace

TEST_CASE("group_by: every key of one group shares one bucket, groups stay apart", "[limit][key][group]") {
    const auto org = limit_keyed(orgs(KeyGroups::Unmapped::shared));
    CHECK(key_of(org, "Basic key-a1") == key_of(org, "Basic key-a2"));
    CHECK(key_of(org, "Basic key-a1") != key_of(org, "Basic key-g1"));
    // The per-key limit on the same header is not grouped.
    LimitConfig per_key = limit_keyed(nullptr, "close-key");
    CHECK(key_of(per_key, "Basic key-a1") != key_of(per_key, "Basic key-a2"));
}

TEST_CASE("group_by: unmapped values share one bucket, or each is its own", "[limit][key][group]") {
    const auto shared = limit_keyed(orgs(KeyGroups::Unmapped::shared));
    CHECK(key_of(shared, "Basic stranger-1") == key_of(shared, "Basic stranger-2"));
    CHECK(key_of(shared, "Basic stranger-1") != key_of(shared, "Basic key-a1"));
    CHECK(key_of(shared, "Basic stranger-1") != key_of(shared, std::nullopt));

    const auto own = limit_keyed(orgs(KeyGroups::Unmapped::own));
    CHECK(key_of(own, "Basic stranger-1") != key_of(own, "Basic stranger-2"));
    CHECK(key_of(own, "Basic key-a1") == key_of(own, "Basic key-a2"));
    // An unmapped value keyed as itself is the same bucket as the ungrouped limit's (the same
    // name and source): grouping changes only the values it lists.
    CHECK(key_of(own, "Basic stranger-1") == key_of(limit_keyed(nullptr), "Basic stranger-1"));
}

TEST_CASE("group_by: a group named like a key value is still a different bucket", "[limit][key][group]") {
    auto g = std::make_shared<KeyGroups>();
    g->group_of = {{"token-1", "token-2"}};
    g->unmapped = KeyGroups::Unmapped::own;
    const auto limit = limit_keyed(g);
    CHECK(key_of(limit, "token-1") != key_of(limit, "token-2"));
}
