#pragma once
// A scriptable HTTP/1.1 upstream for the end-to-end tests: an async Boost.Beast
// server on 127.0.0.1 (ephemeral port, optional TLS) running on its own thread
// and io_context.
//
// Contract:
// - Every request is recorded when its header arrives (method, target, every
//   header in order, connection id, arrival time) and completed when its body
//   has been read. Bodies are read with a fixed 64 KiB buffer, so any size
//   (chunked or not) costs bounded memory; only the byte count, an FNV-1a
//   checksum and the first 64 KiB are kept.
// - `Expect: 100-continue` is answered with an interim 100 before the body is read.
// - The reply is chosen per request by the handler (run on the server thread,
//   after the body was read): a fixed response, an echo (JSON describing the
//   request), a generated download of N bytes streamed from a fixed buffer,
//   a delay before any of these, or closing the connection without answering.
// - Keep-alive is honoured; connections are counted as they are accepted.
// - The destructor stops the server and joins its thread; pending exchanges are
//   abandoned.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "support/test_certs.hpp"

namespace sluice::test {

using Headers = std::vector<std::pair<std::string, std::string>>;

// First value of `name` (case-insensitive), if any.
std::optional<std::string> find_header(const Headers& headers, std::string_view name);
// How many fields are named `name` (case-insensitive).
std::size_t count_header(const Headers& headers, std::string_view name);

// A streaming checksum (FNV-1a, 64 bit) that sender and receiver compute
// incrementally, so large bodies are compared without being stored.
class Checksum {
public:
    void update(const void* data, std::size_t size);
    void update(std::string_view text) { update(text.data(), text.size()); }
    std::uint64_t value() const { return hash_; }
    std::uint64_t bytes() const { return bytes_; }

private:
    std::uint64_t hash_ = 14695981039346656037ull;
    std::uint64_t bytes_ = 0;
};

// The deterministic payload used for generated bodies (uploads and downloads):
// byte i depends on i, so a dropped, repeated or reordered block changes the checksum.
void fill_pattern(char* out, std::uint64_t offset, std::size_t size);
std::string pattern_string(std::uint64_t size);
Checksum pattern_checksum(std::uint64_t size);

struct RecordedRequest {
    std::uint64_t connection_id = 0;  // 1-based, in accept order
    std::string method;
    std::string target;
    unsigned version = 11;
    Headers headers;  // as received, in order
    bool chunked = false;
    std::uint64_t body_bytes = 0;
    std::uint64_t body_checksum = Checksum{}.value();
    std::string body_prefix;                        // the first 64 KiB of the body
    bool complete = false;                          // the body was read to its end
    std::chrono::steady_clock::time_point arrival;  // when the header had been read

    std::optional<std::string> header(std::string_view name) const { return find_header(headers, name); }
    bool has_header(std::string_view name) const { return count_header(headers, name) > 0; }
};

struct MockReply {
    enum class Kind { fixed, echo, stream, close };

    Kind kind = Kind::echo;
    unsigned status = 200;
    Headers headers;
    std::string body;                    // fixed
    std::uint64_t stream_bytes = 0;      // stream: generated with fill_pattern
    bool stream_chunked = true;          // stream: chunked, else Content-Length
    std::chrono::milliseconds delay{0};  // before answering (or closing)
    bool close_after = false;            // answer with Connection: close and close
    bool drop_after = false;  // answer as keep-alive, then close anyway (an upstream idle-timeout race)

    static MockReply fixed(unsigned status, std::string body = {}, Headers headers = {});
    // 200 with a JSON body: {"method","target","version","connection_id","chunked",
    // "body_bytes","body_checksum","body","headers":[[name,value],...]} ("body": the first 64 KiB).
    static MockReply echo();
    static MockReply stream(std::uint64_t bytes, bool chunked = true);
    static MockReply close_without_answer();

    MockReply with_delay(std::chrono::milliseconds d) const {
        auto copy = *this;
        copy.delay = d;
        return copy;
    }
    MockReply with_header(std::string name, std::string value) const {
        auto copy = *this;
        copy.headers.emplace_back(std::move(name), std::move(value));
        return copy;
    }
};

class MockUpstream {
public:
    using Handler = std::function<MockReply(const RecordedRequest&)>;

    struct Options {
        Handler handler;              // empty: echo
        std::optional<CertPair> tls;  // serve HTTPS with this certificate
    };

    MockUpstream();
    explicit MockUpstream(Handler handler);
    explicit MockUpstream(Options options);
    ~MockUpstream();
    MockUpstream(const MockUpstream&) = delete;
    MockUpstream& operator=(const MockUpstream&) = delete;

    std::uint16_t port() const { return port_; }
    // "http://127.0.0.1:PORT", or "https://localhost:PORT" with TLS.
    std::string url() const;

    void set_handler(Handler handler);

    std::vector<RecordedRequest> requests() const;  // a snapshot
    std::size_t request_count() const;
    std::size_t connections_accepted() const;
    // Waits (bounded) until `count` requests have arrived and were read to the end.
    bool wait_for_complete_requests(std::size_t count, std::chrono::milliseconds timeout) const;
    // Waits (bounded) until `count` request headers have arrived.
    bool wait_for_requests(std::size_t count, std::chrono::milliseconds timeout) const;

    struct State;  // shared with the sessions (defined in the .cpp)

private:
    class Server;
    std::shared_ptr<State> state_;
    std::unique_ptr<Server> server_;
    std::uint16_t port_ = 0;
    bool tls_ = false;
};

}  // namespace sluice::test
