#pragma once
// A small synchronous HTTP/1.1 client for the end-to-end tests, built on
// Boost.Beast. Every operation has a timeout (the default 10 s, settable), so a
// proxy that hangs fails the test instead of hanging the suite; failures throw
// std::runtime_error naming the operation.
//
// One HttpClient is one TCP connection (opened lazily, reused for keep-alive;
// reopened after the server closed it; `connects()` counts TCP connects). Raw mode
// (write_raw + read_response / read_until_close) sends arbitrary bytes, for
// pipelining and malformed requests.
//
// run_curl() runs the real curl binary for "a real client" tests.

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <nlohmann/json.hpp>

#include "support/mock_upstream.hpp"

namespace sluice::test {

struct HttpResponse {
    unsigned status = 0;
    Headers headers;
    std::string body;
    bool keep_alive = false;

    std::optional<std::string> header(std::string_view name) const { return find_header(headers, name); }
    bool has_header(std::string_view name) const { return count_header(headers, name) > 0; }
    // The body parsed as JSON (throws nlohmann::json::parse_error otherwise).
    nlohmann::json json() const { return nlohmann::json::parse(body); }
};

// A response whose body was consumed streaming (never stored).
struct StreamedResponse {
    unsigned status = 0;
    Headers headers;
    bool chunked = false;
    std::uint64_t body_bytes = 0;
    std::uint64_t body_checksum = 0;

    std::optional<std::string> header(std::string_view name) const { return find_header(headers, name); }
};

class HttpClient {
public:
    explicit HttpClient(std::uint16_t port, std::chrono::milliseconds timeout = std::chrono::seconds(10));
    ~HttpClient();
    HttpClient(const HttpClient&) = delete;
    HttpClient& operator=(const HttpClient&) = delete;

    void set_timeout(std::chrono::milliseconds timeout) { timeout_ = timeout; }

    // Sends one request and reads its response. Host defaults to 127.0.0.1:PORT
    // unless `headers` has one; Content-Length is set for a non-empty body (or
    // for POST/PUT/PATCH) unless `headers` sets Content-Length/Transfer-Encoding.
    HttpResponse request(std::string_view method, std::string_view target, std::string body = {},
                         const Headers& headers = {});
    HttpResponse get(std::string_view target, const Headers& headers = {}) {
        return request("GET", target, {}, headers);
    }

    // Sends a chunked request whose body is `bytes` bytes of fill_pattern,
    // generated into a fixed buffer as it is written (bounded memory).
    HttpResponse upload_chunked(std::string_view method, std::string_view target, std::uint64_t bytes,
                                const Headers& headers = {}, std::size_t chunk_size = 64 * 1024);

    // Sends a bodiless request and reads the response body streaming: only its
    // size and checksum are kept.
    StreamedResponse download(std::string_view target, const Headers& headers = {});

    // Raw mode.
    void write_raw(std::string_view bytes);
    // Reads the next final response on the connection (1xx interim responses are skipped).
    HttpResponse read_response(bool head = false);
    // Reads until the server closes the connection or the timeout expires.
    std::string read_until_close();
    // True when the server closes the connection within `wait` (EOF or reset);
    // false when the connection is still open at the end of `wait`. Throws if
    // bytes arrive instead.
    bool wait_for_close(std::chrono::milliseconds wait);

    bool is_open() const;
    void close();
    std::size_t connects() const { return connects_; }  // TCP connections opened so far

private:
    void ensure_connected();
    template <class Op>
    boost::beast::error_code run(Op&& op);

    std::uint16_t port_;
    std::chrono::milliseconds timeout_;
    boost::asio::io_context ioc_;
    boost::beast::tcp_stream stream_;
    boost::beast::flat_buffer buffer_;
    bool connected_ = false;
    std::size_t connects_ = 0;
};

struct CurlResult {
    int exit_code = -1;  // curl's exit status (0 = success), -1 if it did not exit normally
    std::string out;     // stdout
    std::string err;     // stderr
};

// Runs `curl -sS --max-time 15 ARGS...` (each argument quoted for the shell).
CurlResult run_curl(const std::vector<std::string>& args);

}  // namespace sluice::test
