// RelayWriter: the bytes a relayed message goes out as, piece by piece.
#include "sluice/proxy/relay_writer.hpp"

#include <string>

#include <boost/asio/buffer.hpp>
#include <boost/beast/http/message.hpp>
#include <catch2/catch.hpp>

namespace http = boost::beast::http;
using sluice::proxy::RelayWriter;

namespace {

std::string flatten(const RelayWriter::Buffers& buffers) {
    std::string out;
    for (const auto& b : buffers) out.append(static_cast<const char*>(b.data()), b.size());
    return out;
}

http::request_header<> request_head(bool chunked) {
    http::request_header<> head;
    head.method(http::verb::post);
    head.target("/v1/leads?x=1");
    head.version(11);
    head.set(http::field::host, "api.example.com");
    head.set("X-Custom", "a b");
    if (chunked) head.set(http::field::transfer_encoding, "chunked");
    return head;
}

}  // namespace

TEST_CASE("a bodiless request is its head, sent once", "[proxy][relay_writer]") {
    RelayWriter writer;
    writer.start_request(request_head(false), false, true);
    REQUIRE_FALSE(writer.done());
    CHECK(flatten(writer.next(nullptr, 0, true)) ==
          "POST /v1/leads?x=1 HTTP/1.1\r\nHost: api.example.com\r\nX-Custom: a b\r\n\r\n");
    CHECK(writer.done());
    CHECK(sluice::proxy::total_size(writer.next(nullptr, 0, true)) == 0);
}

TEST_CASE("a Content-Length body goes out raw, the head with its first piece", "[proxy][relay_writer]") {
    RelayWriter writer;
    auto head = request_head(false);
    head.set(http::field::content_length, "8");
    writer.start_request(head, false, false);
    const std::string first = flatten(writer.next("abcd", 4, false));
    CHECK(first.substr(first.size() - 4) == "abcd");
    CHECK(first.find("Content-Length: 8\r\n\r\nabcd") != std::string::npos);
    CHECK_FALSE(writer.done());
    CHECK(flatten(writer.next("efgh", 4, true)) == "efgh");
    CHECK(writer.done());
}

TEST_CASE("a chunked body is re-framed one chunk per piece, then the last-chunk", "[proxy][relay_writer]") {
    RelayWriter writer;
    writer.start_request(request_head(true), true, false);
    const std::string first = flatten(writer.next("0123456789abcdefX", 17, false));
    CHECK(first.find("Transfer-Encoding: chunked\r\n\r\n11\r\n0123456789abcdefX\r\n") != std::string::npos);
    // An empty piece that is not the last must not become "0\r\n\r\n": that would end the body.
    CHECK(sluice::proxy::total_size(writer.next(nullptr, 0, false)) == 0);
    CHECK_FALSE(writer.done());
    CHECK(flatten(writer.next("yz", 2, true)) == "2\r\nyz\r\n0\r\n\r\n");
    CHECK(writer.done());
}

TEST_CASE("a chunked body that ends with an empty piece still ends", "[proxy][relay_writer]") {
    RelayWriter writer;
    writer.start_request(request_head(true), true, false);
    const std::string all = flatten(writer.next(nullptr, 0, true));
    const std::string tail = "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n";  // the head, then the last-chunk
    REQUIRE(all.size() >= tail.size());
    CHECK(all.substr(all.size() - tail.size()) == tail);
    CHECK(writer.done());
}

TEST_CASE("a response head keeps the vendor's status and reason phrase", "[proxy][relay_writer]") {
    RelayWriter writer;
    http::response_header<> head;
    head.result(429);
    head.reason("Slow Down");
    head.version(10);
    head.set(http::field::content_length, "0");
    writer.start_response(head, false, true);
    CHECK(flatten(writer.next(nullptr, 0, true)) == "HTTP/1.0 429 Slow Down\r\nContent-Length: 0\r\n\r\n");

    http::response_header<> plain;
    plain.result(http::status::ok);
    plain.version(11);
    writer.start_response(plain, false, true);
    CHECK(flatten(writer.next(nullptr, 0, true)) == "HTTP/1.1 200 OK\r\n\r\n");
}

TEST_CASE("a writer is reused across messages", "[proxy][relay_writer]") {
    RelayWriter writer;
    writer.start_request(request_head(true), true, false);
    (void)writer.next("a", 1, true);
    REQUIRE(writer.done());
    writer.start_request(request_head(false), false, true);
    CHECK_FALSE(writer.done());
    CHECK(flatten(writer.next(nullptr, 0, true)).rfind("POST /v1/leads?x=1 HTTP/1.1\r\n", 0) == 0);
}

namespace {

std::size_t non_empty(const RelayWriter::Buffers& buffers) {
    std::size_t n = 0;
    for (const auto& b : buffers) n += b.size() > 0 ? 1 : 0;
    return n;
}

}  // namespace

TEST_CASE("a small first piece leaves in one buffer with its head; a large one beside it",
          "[proxy][relay_writer]") {
    // One buffer is one send(); the copy is worth it only for small pieces.
    RelayWriter writer;
    auto head = request_head(false);
    head.set(http::field::content_length, "3");
    writer.start_request(head, false, false);
    const auto small = writer.next("ok\n", 3, true);
    CHECK(non_empty(small) == 1);
    CHECK(flatten(small).find("Content-Length: 3\r\n\r\nok\n") != std::string::npos);
    CHECK(writer.done());

    writer.start_request(request_head(true), true, false);
    const auto chunk = writer.next("abc", 3, true);
    CHECK(non_empty(chunk) == 1);
    CHECK(flatten(chunk).find("chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n") != std::string::npos);
    CHECK(writer.done());

    const std::string big(64 * 1024, 'x');
    auto big_head = request_head(false);
    big_head.set(http::field::content_length, std::to_string(big.size()));
    writer.start_request(big_head, false, false);
    const auto large = writer.next(big.data(), big.size(), true);
    CHECK(non_empty(large) == 2);
    CHECK(static_cast<const char*>(large[1].data()) == big.data());  // not copied
    CHECK(flatten(large).size() == flatten(large).find("\r\n\r\n") + 4 + big.size());
}
