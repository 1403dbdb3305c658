#include "sluice/route/route_table.hpp"

#include <catch2/catch.hpp>

#include "sluice/config/loader.hpp"

namespace {

using sluice::config::Config;
using sluice::config::RouteConfig;
using sluice::route::RequestTarget;
using sluice::route::RouteTable;

// A config with two upstreams ("plain" without base path, "v1" with "/v1") and
// two listeners; routes are added by each test.
Config base_config() {
    Config config;
    config.source_file = "<test>";
    config.listeners.resize(2);
    config.listeners[0].name = "default";
    config.listeners[1].name = "internal";
    config.upstreams.resize(2);
    config.upstreams[0].name = "plain";
    config.upstreams[1].name = "v1";
    config.upstreams[1].base_path = "/v1";
    return config;
}

RouteConfig make_route(std::string name) {
    RouteConfig route;
    route.name = std::move(name);
    route.upstream = "plain";
    route.upstream_index = 0;
    route.location = {"<test>", 10, 3};
    return route;
}

RouteConfig path_route(std::string name, std::string pattern) {
    auto route = make_route(std::move(name));
    route.match.path = std::move(pattern);
    return route;
}

RouteConfig prefix_route(std::string name, std::string prefix) {
    auto route = make_route(std::move(name));
    route.match.path_prefix = std::move(prefix);
    return route;
}

RequestTarget target(std::string_view path, std::string_view host = "api.example.com",
                     std::string_view method = "GET", std::size_t listener = 0) {
    return RequestTarget{listener, host, method, path};
}

// A table with one route: does the path match it?
bool pattern_matches(const std::string& pattern, std::string_view path) {
    auto config = base_config();
    config.routes.push_back(path_route("r", pattern));
    RouteTable table(config);
    return table.match(target(path)).has_value();
}

bool prefix_matches(const std::string& prefix, std::string_view path) {
    auto config = base_config();
    config.routes.push_back(prefix_route("r", prefix));
    RouteTable table(config);
    return table.match(target(path)).has_value();
}

std::string upstream_path_of(const std::string& prefix, bool strip, std::size_t upstream,
                             std::string_view path) {
    auto config = base_config();
    auto route = prefix_route("r", prefix);
    route.strip_prefix = strip;
    route.upstream_index = upstream;
    config.routes.push_back(route);
    RouteTable table(config);
    auto m = table.match(target(path));
    REQUIRE(m);
    return m->upstream_path;
}

}  // namespace

TEST_CASE("an empty table matches nothing", "[route]") {
    RouteTable table(base_config());
    CHECK(table.size() == 0);
    CHECK_FALSE(table.match(target("/")));
}

TEST_CASE("a route without criteria matches every request", "[route]") {
    auto config = base_config();
    config.routes.push_back(make_route("all"));
    RouteTable table(config);
    CHECK(table.match(target("/")));
    CHECK(table.match(target("/anything/at/all", "", "DELETE", 1)));
}

TEST_CASE("hosts match exactly and case-insensitively", "[route][host]") {
    auto config = base_config();
    auto route = make_route("r");
    route.match.hosts = {"API.Example.com", "other.test"};
    config.routes.push_back(route);
    RouteTable table(config);
    CHECK(table.match(target("/", "api.example.com")));
    CHECK(table.match(target("/", "API.EXAMPLE.COM")));
    CHECK(table.match(target("/", "other.test")));
    CHECK(table.match(target("/", "api.example.com.")));  // fully qualified form
    CHECK_FALSE(table.match(target("/", "example.com")));
    CHECK_FALSE(table.match(target("/", "x.api.example.com")));
    CHECK_FALSE(table.match(target("/", "api.example.co")));
    CHECK_FALSE(table.match(target("/", "api.example.com.evil")));
    CHECK_FALSE(table.match(target("/", "")));
    CHECK_FALSE(table.match(target("/", ".")));
}

TEST_CASE("a wildcard host matches subdomains only, not the apex", "[route][host]") {
    auto config = base_config();
    auto route = make_route("r");
    route.match.hosts = {"*.Example.com"};
    config.routes.push_back(route);
    RouteTable table(config);
    CHECK(table.match(target("/", "api.example.com")));
    CHECK(table.match(target("/", "a.b.EXAMPLE.com")));
    CHECK(table.match(target("/", "api.example.com.")));
    CHECK_FALSE(table.match(target("/", "example.com")));
    CHECK_FALSE(table.match(target("/", ".example.com")));
    CHECK_FALSE(table.match(target("/", "badexample.com")));
    CHECK_FALSE(table.match(target("/", "api.example.com.evil")));
    CHECK_FALSE(table.match(target("/", "")));
}

TEST_CASE("an empty host is matched only by routes without a host criterion", "[route][host]") {
    auto config = base_config();
    auto with_host = make_route("with-host");
    with_host.match.hosts = {"*.example.com"};
    config.routes.push_back(with_host);
    config.routes.push_back(make_route("any"));
    RouteTable table(config);
    auto m = table.match(target("/", ""));
    REQUIRE(m);
    CHECK(m->route_index == 1);
}

TEST_CASE("methods match exactly", "[route][method]") {
    auto config = base_config();
    auto route = make_route("r");
    route.match.methods = {"POST", "PUT"};
    config.routes.push_back(route);
    RouteTable table(config);
    CHECK(table.match(target("/", "h", "POST")));
    CHECK(table.match(target("/", "h", "PUT")));
    CHECK_FALSE(table.match(target("/", "h", "GET")));
    CHECK_FALSE(table.match(target("/", "h", "post")));  // methods are case-sensitive (RFC 9110 9.1)
    CHECK_FALSE(table.match(target("/", "h", "")));
}

TEST_CASE("the listener criterion uses listener indexes", "[route][listener]") {
    auto config = base_config();
    auto route = make_route("internal-only");
    route.match.listeners = {"internal"};
    route.listener_indexes = {1};
    config.routes.push_back(route);
    config.routes.push_back(make_route("fallback"));
    RouteTable table(config);
    CHECK(table.match(target("/", "h", "GET", 1))->route_index == 0);
    CHECK(table.match(target("/", "h", "GET", 0))->route_index == 1);
}

TEST_CASE("all criteria must hold together", "[route]") {
    auto config = base_config();
    auto route = path_route("r", "/api/v1/lead/");
    route.match.hosts = {"api.close.com"};
    route.match.methods = {"GET"};
    route.listener_indexes = {0};
    config.routes.push_back(route);
    RouteTable table(config);
    CHECK(table.match(RequestTarget{0, "api.close.com", "GET", "/api/v1/lead/"}));
    CHECK_FALSE(table.match(RequestTarget{1, "api.close.com", "GET", "/api/v1/lead/"}));
    CHECK_FALSE(table.match(RequestTarget{0, "api.intercom.io", "GET", "/api/v1/lead/"}));
    CHECK_FALSE(table.match(RequestTarget{0, "api.close.com", "POST", "/api/v1/lead/"}));
    CHECK_FALSE(table.match(RequestTarget{0, "api.close.com", "GET", "/api/v1/activity/"}));
}

TEST_CASE("path prefixes respect segment boundaries", "[route][prefix]") {
    CHECK(prefix_matches("/intercom", "/intercom"));
    CHECK(prefix_matches("/intercom", "/intercom/"));
    CHECK(prefix_matches("/intercom", "/intercom/x/y"));
    CHECK_FALSE(prefix_matches("/intercom", "/intercomx"));
    CHECK_FALSE(prefix_matches("/intercom", "/interco"));
    CHECK_FALSE(prefix_matches("/intercom", "/Intercom"));
    CHECK_FALSE(prefix_matches("/intercom", "/x/intercom"));

    CHECK(prefix_matches("/intercom/", "/intercom/x"));
    CHECK(prefix_matches("/intercom/", "/intercom/"));
    CHECK_FALSE(prefix_matches("/intercom/", "/intercom"));
    CHECK_FALSE(prefix_matches("/intercom/", "/intercomx"));

    CHECK(prefix_matches("/", "/"));
    CHECK(prefix_matches("/", "/anything"));
    CHECK_FALSE(prefix_matches("/", ""));
}

TEST_CASE("strip_prefix and base_path build the upstream path", "[route][prefix]") {
    // Not stripped: the path as sent, with the base path in front.
    CHECK(upstream_path_of("/intercom", false, 0, "/intercom/x") == "/intercom/x");
    CHECK(upstream_path_of("/intercom", false, 1, "/intercom/x") == "/v1/intercom/x");
    // Stripped: always an origin-form path.
    CHECK(upstream_path_of("/intercom/", true, 0, "/intercom/x") == "/x");
    CHECK(upstream_path_of("/intercom", true, 0, "/intercom/x") == "/x");
    CHECK(upstream_path_of("/intercom", true, 0, "/intercom") == "/");
    CHECK(upstream_path_of("/intercom", true, 0, "/intercom/") == "/");
    CHECK(upstream_path_of("/intercom/", true, 0, "/intercom/") == "/");
    CHECK(upstream_path_of("/intercom", true, 0, "/intercom/a/b/") == "/a/b/");
    CHECK(upstream_path_of("/", true, 0, "/x") == "/x");
    CHECK(upstream_path_of("/intercom", true, 1, "/intercom/contacts") == "/v1/contacts");
    CHECK(upstream_path_of("/intercom", true, 1, "/intercom") == "/v1/");
    CHECK(upstream_path_of("/intercom/", true, 1, "/intercom/x%2Fy") == "/v1/x%2Fy");
}

TEST_CASE("a path pattern is never stripped", "[route][pattern]") {
    auto config = base_config();
    auto route = path_route("r", "/api/**");
    route.strip_prefix = true;
    route.upstream_index = 1;
    config.routes.push_back(route);
    RouteTable table(config);
    CHECK(table.match(target("/api/x"))->upstream_path == "/v1/api/x");
}

TEST_CASE("literal segments match exactly", "[route][pattern]") {
    CHECK(pattern_matches("/api/v1/lead", "/api/v1/lead"));
    CHECK_FALSE(pattern_matches("/api/v1/lead", "/api/v1/lead/"));
    CHECK_FALSE(pattern_matches("/api/v1/lead", "/api/v1/lea"));
    CHECK_FALSE(pattern_matches("/api/v1/lead", "/api/v1/leads"));
    CHECK_FALSE(pattern_matches("/api/v1/lead", "/api/v1/lead/1"));
    CHECK_FALSE(pattern_matches("/api/v1/lead", "/api/v1"));
    CHECK_FALSE(pattern_matches("/api/v1/lead", "/API/v1/lead"));  // case-sensitive
    CHECK_FALSE(pattern_matches("/api/v1/lead", ""));
    CHECK(pattern_matches("/", "/"));
    CHECK_FALSE(pattern_matches("/", "/x"));
    CHECK_FALSE(pattern_matches("/", ""));
}

TEST_CASE("a trailing slash is an empty last segment", "[route][pattern]") {
    CHECK(pattern_matches("/api/v1/lead/", "/api/v1/lead/"));
    CHECK_FALSE(pattern_matches("/api/v1/lead/", "/api/v1/lead"));
    CHECK_FALSE(pattern_matches("/api/v1/lead/", "/api/v1/lead/x"));
    CHECK_FALSE(pattern_matches("/api/v1/lead/", "/api/v1/lead//"));
}

TEST_CASE("empty segments in the path are matched literally", "[route][pattern]") {
    CHECK_FALSE(pattern_matches("/a/b", "/a//b"));
    CHECK_FALSE(pattern_matches("/a/{x}", "/a/"));
    CHECK_FALSE(pattern_matches("/a/{x}/b", "/a//b"));
    CHECK_FALSE(pattern_matches("/a/*/b", "/a//b"));
    CHECK(pattern_matches("/a/**", "/a//b"));
}

TEST_CASE("percent-encoded characters are matched literally", "[route][pattern]") {
    CHECK_FALSE(pattern_matches("/a/b", "/a%2Fb"));
    CHECK(pattern_matches("/a%2Fb", "/a%2Fb"));
    CHECK_FALSE(pattern_matches("/a%2Fb", "/a%2fb"));
    CHECK_FALSE(pattern_matches("/caf%C3%A9", "/café"));

    auto config = base_config();
    config.routes.push_back(path_route("r", "/files/{name}"));
    RouteTable table(config);
    auto m = table.match(target("/files/a%2Fb%20c"));
    REQUIRE(m);
    CHECK(sluice::route::find_param(m->params, "name") == "a%2Fb%20c");
}

TEST_CASE("'*' inside a segment matches any run except '/'", "[route][pattern]") {
    CHECK(pattern_matches("/api/v2.*/x", "/api/v2.1/x"));
    CHECK(pattern_matches("/api/v2.*/x", "/api/v2.10/x"));
    CHECK(pattern_matches("/api/v2.*/x", "/api/v2./x"));  // an empty run
    CHECK_FALSE(pattern_matches("/api/v2.*/x", "/api/v2/x"));
    CHECK_FALSE(pattern_matches("/api/v2.*/x", "/api/v3.1/x"));
    CHECK_FALSE(pattern_matches("/api/v2.*/x", "/api/v2.1/y/x"));

    CHECK(pattern_matches("/f/*.json", "/f/a.json"));
    CHECK(pattern_matches("/f/*.json", "/f/.json"));
    CHECK_FALSE(pattern_matches("/f/*.json", "/f/a.jsonx"));
    CHECK(pattern_matches("/f/a*b*c", "/f/abc"));
    CHECK(pattern_matches("/f/a*b*c", "/f/aXbYbZc"));
    CHECK(pattern_matches("/f/a*b*c", "/f/abbc"));
    CHECK_FALSE(pattern_matches("/f/a*b*c", "/f/acb"));
    CHECK_FALSE(pattern_matches("/f/a*a", "/f/a"));  // first and last pieces may not overlap
    CHECK(pattern_matches("/f/a*a", "/f/aa"));
    CHECK(pattern_matches("/f/*x*", "/f/x"));
    CHECK_FALSE(pattern_matches("/f/*x*", "/f/y"));
}

TEST_CASE("'*' alone matches one whole non-empty segment", "[route][pattern]") {
    CHECK(pattern_matches("/a/*/c", "/a/b/c"));
    CHECK(pattern_matches("/a/*", "/a/anything"));
    CHECK_FALSE(pattern_matches("/a/*", "/a/"));
    CHECK_FALSE(pattern_matches("/a/*", "/a"));
    CHECK_FALSE(pattern_matches("/a/*", "/a/b/c"));
}

TEST_CASE("{name} captures one whole segment", "[route][pattern]") {
    auto config = base_config();
    config.routes.push_back(path_route("r", "/contacts/{contact_id}/notes/{note-id}"));
    RouteTable table(config);
    auto m = table.match(target("/contacts/123/notes/abc"));
    REQUIRE(m);
    REQUIRE(m->params.size() == 2);
    CHECK(m->params[0] == std::pair<std::string, std::string>{"contact_id", "123"});
    CHECK(m->params[1] == std::pair<std::string, std::string>{"note-id", "abc"});
    CHECK_FALSE(table.match(target("/contacts/123/notes/")));
    CHECK_FALSE(table.match(target("/contacts//notes/abc")));
    CHECK_FALSE(table.match(target("/contacts/1/2/notes/abc")));
    CHECK_FALSE(table.match(target("/contacts/123/notes/abc/")));
}

TEST_CASE("Convertr's lead-result pattern", "[route][pattern][vendor]") {
    auto config = base_config();
    config.routes.push_back(
        path_route("lead-result", "/api/v2.*/publisher/{publisher_id}/lead-result/{lead_id}"));
    config.routes.push_back(prefix_route("blanket", "/api"));
    RouteTable table(config);

    auto m = table.match(target("/api/v2.1/publisher/7/lead-result/99"));
    REQUIRE(m);
    CHECK(m->route_index == 0);
    CHECK(sluice::route::find_param(m->params, "publisher_id") == "7");
    CHECK(sluice::route::find_param(m->params, "lead_id") == "99");
    CHECK_FALSE(sluice::route::find_param(m->params, "other"));
    CHECK(m->upstream_path == "/api/v2.1/publisher/7/lead-result/99");

    CHECK(table.match(target("/api/v2.13/publisher/7/lead-result/99"))->route_index == 0);
    CHECK(table.match(target("/api/v4/publisher/7/lead-result/99"))->route_index == 1);
    CHECK(table.match(target("/api/v2/publisher/7/lead-result/99"))->route_index == 1);
    CHECK(table.match(target("/api/v2.1/publisher/7/lead-result/"))->route_index == 1);
    CHECK(table.match(target("/api/v2.1/publisher/7/lead-result"))->route_index == 1);
    CHECK(table.match(target("/api/v2.1/publisher/7/lead-result/99/x"))->route_index == 1);
    CHECK(table.match(target("/api/v2.1/publisher//lead-result/99"))->route_index == 1);
}

TEST_CASE("a final /** matches zero or more segments", "[route][pattern]") {
    CHECK(pattern_matches("/api/**", "/api"));
    CHECK(pattern_matches("/api/**", "/api/"));
    CHECK(pattern_matches("/api/**", "/api/x"));
    CHECK(pattern_matches("/api/**", "/api/x/y/z/"));
    CHECK_FALSE(pattern_matches("/api/**", "/apix"));
    CHECK_FALSE(pattern_matches("/api/**", "/"));
    CHECK_FALSE(pattern_matches("/api/**", "/x/api"));
    CHECK(pattern_matches("/**", "/"));
    CHECK(pattern_matches("/**", "/a/b"));
    CHECK(pattern_matches("/v*/{id}/**", "/v2/42/rest/of/it"));

    auto config = base_config();
    config.routes.push_back(path_route("r", "/t/{tenant}/**"));
    RouteTable table(config);
    auto m = table.match(target("/t/acme/a/b"));
    REQUIRE(m);
    CHECK(sluice::route::find_param(m->params, "tenant") == "acme");
    CHECK_FALSE(table.match(target("/t")));
    CHECK(table.match(target("/t/acme")));
}

TEST_CASE("path_prefix and path together must both hold", "[route][pattern]") {
    auto config = base_config();
    auto route = path_route("r", "/api/{x}");
    route.match.path_prefix = "/api/a";
    config.routes.push_back(route);
    RouteTable table(config);
    CHECK(table.match(target("/api/a")));
    CHECK_FALSE(table.match(target("/api/b")));
}

TEST_CASE("the first matching route wins", "[route][order]") {
    auto config = base_config();
    config.routes.push_back(path_route("specific", "/api/v1/lead/"));
    auto post_only = prefix_route("post-activity", "/api/v1/activity");
    post_only.match.methods = {"POST", "PUT"};
    config.routes.push_back(post_only);
    config.routes.push_back(prefix_route("api", "/api"));
    config.routes.push_back(path_route("shadowed", "/api/v1/other"));
    config.routes.push_back(make_route("catch-all"));
    RouteTable table(config);
    CHECK(table.match(target("/api/v1/lead/"))->route_index == 0);
    CHECK(table.match(target("/api/v1/activity/", "h", "POST"))->route_index == 1);
    CHECK(table.match(target("/api/v1/activity/", "h", "GET"))->route_index == 2);
    CHECK(table.match(target("/api/v1/other"))->route_index == 2);
    CHECK(table.match(target("/other"))->route_index == 4);
}

TEST_CASE("params are empty for prefix routes and patterns without captures", "[route]") {
    auto config = base_config();
    config.routes.push_back(path_route("r", "/a/*"));
    RouteTable table(config);
    auto m = table.match(target("/a/b"));
    REQUIRE(m);
    CHECK(m->params.empty());
}

TEST_CASE("a moved table still matches", "[route]") {
    auto config = base_config();
    config.routes.push_back(path_route("r", "/a/{x}"));
    RouteTable table(config);
    RouteTable moved(std::move(table));
    config.routes.clear();  // the table holds no reference to the config
    auto m = moved.match(target("/a/1"));
    REQUIRE(m);
    CHECK(sluice::route::find_param(m->params, "x") == "1");
}

TEST_CASE("validate_path_pattern accepts the documented forms", "[route][validate]") {
    for (const char* ok :
         {"/", "/a", "/a/", "/a/b/c", "/api/v2.*/publisher/{publisher_id}/lead-result/{lead_id}", "/**",
          "/a/**", "/a/*/b", "/*.json", "/{id}", "/a%2Fb", "/v*/x*y*z", "/{a}/{b}/**"}) {
        INFO(ok);
        CHECK(sluice::route::validate_path_pattern(ok).empty());
    }
}

TEST_CASE("validate_path_pattern explains what is wrong", "[route][validate]") {
    using sluice::route::validate_path_pattern;
    CHECK(validate_path_pattern("") == "a path pattern must start with '/'");
    CHECK(validate_path_pattern("api/x") == "a path pattern must start with '/'");
    CHECK(validate_path_pattern("/a/{}") == "empty parameter name '{}' in '{}'");
    CHECK(validate_path_pattern("/a/{id") == "unbalanced '{' in '{id'");
    CHECK(validate_path_pattern("/a/id}") == "unbalanced '}' in 'id}'");
    CHECK(validate_path_pattern("/a/{{id}}") == "nested '{' in '{{id}}'");
    CHECK(validate_path_pattern("/a/{id}/") == "");
    CHECK(validate_path_pattern("/a/**/b") == "'**' must be the last segment");
    CHECK(validate_path_pattern("/**/") == "'**' must be the last segment");
    CHECK(validate_path_pattern("/a/b**") == "'**' must be a whole segment (a final '/**'), found 'b**'");
    CHECK(validate_path_pattern("/a/v{id}") ==
          "a parameter must be a whole segment ('/{name}/'), found 'v{id}'");
    CHECK(validate_path_pattern("/a/{x}{y}") ==
          "a parameter must be a whole segment ('/{name}/'), found '{x}{y}'");
    CHECK(validate_path_pattern("/a/{x.y}") ==
          "invalid parameter name 'x.y'; expected letters, digits, '_' and '-'");
    CHECK(validate_path_pattern("/a/{id}/b/{id}") == "parameter '{id}' appears twice");
    CHECK(validate_path_pattern("/a//b") == "empty segment ('//')");
    CHECK(validate_path_pattern("//") == "empty segment ('//')");
    CHECK(validate_path_pattern("/a?x=1") ==
          "'?' in a path pattern: the query string and fragment are never matched");
    CHECK(validate_path_pattern("/a#f") ==
          "'#' in a path pattern: the query string and fragment are never matched");
    CHECK(validate_path_pattern("/a b") == "spaces and control characters are not allowed in a path pattern");
}

TEST_CASE("validate_host_pattern", "[route][validate]") {
    using sluice::route::validate_host_pattern;
    CHECK(validate_host_pattern("api.example.com").empty());
    CHECK(validate_host_pattern("*.example.com").empty());
    CHECK(validate_host_pattern("127.0.0.1").empty());
    CHECK(validate_host_pattern("::1").empty());
    CHECK(validate_host_pattern("") == "empty host");
    CHECK(validate_host_pattern("api example.com") == "invalid character in host 'api example.com'");
    CHECK(validate_host_pattern("example.com/x") == "invalid character in host 'example.com/x'");
    const std::string expected = "; expected '*.' followed by a domain (*.example.com)";
    CHECK(validate_host_pattern("*") == "invalid wildcard host '*'" + expected);
    CHECK(validate_host_pattern("*.") == "invalid wildcard host '*.'" + expected);
    CHECK(validate_host_pattern("*example.com") == "invalid wildcard host '*example.com'" + expected);
    CHECK(validate_host_pattern("api.*.com") == "invalid wildcard host 'api.*.com'" + expected);
    CHECK(validate_host_pattern("*.*.com") == "invalid wildcard host '*.*.com'" + expected);
    CHECK(validate_host_pattern("*..com") == "invalid wildcard host '*..com'" + expected);
}

TEST_CASE("invalid routes throw ConfigError with the route's location", "[route][validate]") {
    auto config = base_config();
    config.routes.push_back(path_route("convertr", "/api/**/x"));
    try {
        RouteTable table(config);
        FAIL("expected a ConfigError");
    } catch (const sluice::config::ConfigError& e) {
        CHECK(
            std::string(e.what()) ==
            "<test>:10:3: route 'convertr': invalid path pattern '/api/**/x': '**' must be the last segment");
        CHECK(e.where().line == 10);
    }

    config.routes = {path_route("braces", "/a/{}")};
    CHECK_THROWS_WITH(
        RouteTable(config),
        "<test>:10:3: route 'braces': invalid path pattern '/a/{}': empty parameter name '{}' in '{}'");

    auto bad_host = make_route("host");
    bad_host.match.hosts = {"a.*.com"};
    config.routes = {bad_host};
    CHECK_THROWS_WITH(
        RouteTable(config),
        "<test>:10:3: route 'host': invalid wildcard host 'a.*.com'; expected '*.' followed by a "
        "domain (*.example.com)");

    config.routes = {prefix_route("prefix", "intercom")};
    CHECK_THROWS_WITH(RouteTable(config),
                      "<test>:10:3: route 'prefix': path_prefix 'intercom' must start with '/'");
}

TEST_CASE("pattern errors cap and escape what they echo", "[route][validate][echo]") {
    using sluice::route::validate_host_pattern;
    using sluice::route::validate_path_pattern;
    // A 10 MB segment used to come back whole (and the loader quoted it again around it).
    const std::string huge(10'000'000, 'b');
    const auto message = validate_path_pattern("/a/" + huge + "**");
    CHECK(message == "'**' must be a whole segment (a final '/**'), found '" + std::string(64, 'b') +
                         "'... (10000002 bytes)");
    CHECK(validate_path_pattern("/a/{" + huge).size() < 200);
    CHECK(validate_path_pattern("/a/{" + huge + "}/{" + huge + "}").size() < 200);
    // A NUL or another control byte in a host is shown, never passed on raw.
    CHECK(validate_host_pattern(std::string("api\0x.com", 9)) == "invalid character in host 'api\\x00x.com'");
    CHECK(validate_host_pattern("a\tb.com") == "invalid character in host 'a\\x09b.com'");
    CHECK(validate_host_pattern("*" + huge).size() < 200);
    CHECK(validate_host_pattern(huge + " ").size() < 200);
}

TEST_CASE("RouteTable's own errors cap the pattern and the prefix", "[route][validate][echo]") {
    auto config = base_config();
    const std::string huge(1'000'000, 'x');
    config.routes.push_back(path_route("convertr", "/" + huge + "/{}"));
    try {
        RouteTable table(config);
        FAIL("no ConfigError");
    } catch (const sluice::config::ConfigError& e) {
        const std::string what = e.what();
        CHECK(what.size() < 400);
        CHECK(what.find("(1000004 bytes)") != std::string::npos);
    }
}
