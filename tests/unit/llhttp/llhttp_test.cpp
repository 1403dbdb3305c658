// sluice_llhttp is the tests' independent HTTP/1.1 parser (llhttp, not Beast): before a test or
// a fuzz target trusts its framing, check it splits a pipelined stream where HTTP says.
#include <llhttp.h>
#include <string>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

namespace {

struct Seen {
    std::vector<std::string> urls;
    std::vector<std::string> bodies;
    std::string url;
    std::string body;
};

Seen& seen(llhttp_t* parser) {
    return *static_cast<Seen*>(parser->data);
}

}  // namespace

TEST_CASE("llhttp splits two pipelined requests, the first with a body") {
    llhttp_settings_t settings;
    llhttp_settings_init(&settings);
    settings.on_url = [](llhttp_t* p, const char* at, size_t n) {
        seen(p).url.append(at, n);
        return 0;
    };
    settings.on_body = [](llhttp_t* p, const char* at, size_t n) {
        seen(p).body.append(at, n);
        return 0;
    };
    settings.on_message_complete = [](llhttp_t* p) {
        auto& s = seen(p);
        s.urls.push_back(std::exchange(s.url, {}));
        s.bodies.push_back(std::exchange(s.body, {}));
        return 0;
    };
    llhttp_t parser;
    llhttp_init(&parser, HTTP_REQUEST, &settings);
    Seen result;
    parser.data = &result;

    const std::string stream =
        "POST /a/one HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
        "GET /b/two?q=1 HTTP/1.1\r\nHost: x\r\n\r\n";
    // Fed in two pieces cut inside the first body: framing must not depend on read boundaries.
    const auto cut = stream.find("hello") + 2;
    REQUIRE(llhttp_execute(&parser, stream.data(), cut) == HPE_OK);
    REQUIRE(llhttp_execute(&parser, stream.data() + cut, stream.size() - cut) == HPE_OK);

    REQUIRE(result.urls == std::vector<std::string>{"/a/one", "/b/two?q=1"});
    REQUIRE(result.bodies == std::vector<std::string>{"hello", ""});
    REQUIRE(llhttp_should_keep_alive(&parser) == 1);
}
