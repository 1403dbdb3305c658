#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "support/http_client.hpp"

namespace sluice::test {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

namespace {

constexpr std::size_t kHeaderLimit = 1024 * 1024;
constexpr std::uint64_t kStringBodyLimit = 64ull * 1024 * 1024;

template <class Fields>
Headers to_headers(const Fields& fields) {
    Headers headers;
    for (const auto& field : fields) headers.emplace_back(field.name_string(), field.value());
    return headers;
}

template <class Body>
void set_method(http::request<Body>& req, std::string_view method) {
    const auto verb = http::string_to_verb(method);
    if (verb == http::verb::unknown) {
        req.method_string(method);
    } else {
        req.method(verb);
    }
}

[[noreturn]] void fail(const std::string& what, beast::error_code ec) {
    throw std::runtime_error("http client: " + what + ": " + ec.message());
}

}  // namespace

HttpClient::HttpClient(std::uint16_t port, std::chrono::milliseconds timeout)
    : port_(port), timeout_(timeout), stream_(ioc_) {}

HttpClient::~HttpClient() {
    close();
}

template <class Op>
beast::error_code HttpClient::run(Op&& op) {
    beast::error_code result = net::error::would_block;
    stream_.expires_after(timeout_);
    op([&result](beast::error_code ec, auto&&...) { result = ec; });
    ioc_.restart();
    ioc_.run();
    return result;
}

void HttpClient::ensure_connected() {
    if (connected_) return;
    buffer_.clear();
    const tcp::endpoint endpoint(net::ip::make_address("127.0.0.1"), port_);
    const auto ec = run([&](auto handler) { stream_.async_connect(endpoint, handler); });
    if (ec) fail("connect to 127.0.0.1:" + std::to_string(port_), ec);
    stream_.socket().set_option(tcp::no_delay(true));
    connected_ = true;
    ++connects_;
}

bool HttpClient::is_open() const {
    return connected_;
}

void HttpClient::close() {
    if (!connected_) return;
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.socket().close(ignored);
    connected_ = false;
}

HttpResponse HttpClient::request(std::string_view method, std::string_view target, std::string body,
                                 const Headers& headers) {
    ensure_connected();
    http::request<http::string_body> req;
    set_method(req, method);
    req.target(target);
    req.version(11);
    if (!find_header(headers, "Host")) req.set(http::field::host, "127.0.0.1:" + std::to_string(port_));
    for (const auto& [name, value] : headers) req.insert(name, value);
    const bool framed = find_header(headers, "Content-Length") || find_header(headers, "Transfer-Encoding");
    const bool wants_length = method == "POST" || method == "PUT" || method == "PATCH";
    req.body() = std::move(body);
    if (!framed && (!req.body().empty() || wants_length)) req.content_length(req.body().size());
    const auto ec = run([&](auto handler) { http::async_write(stream_, req, handler); });
    if (ec) {
        // The server may have answered early (e.g. 413) and stopped reading: its answer is the result.
        try {
            return read_response(method == "HEAD");
        } catch (const std::exception& e) {
            fail("write " + std::string(method) + " " + std::string(target) + " (then " + e.what() + ")", ec);
        }
    }
    return read_response(method == "HEAD");
}

HttpResponse HttpClient::read_response(bool head) {
    ensure_connected();
    for (;;) {
        http::response_parser<http::string_body> parser;
        parser.header_limit(kHeaderLimit);
        parser.body_limit(kStringBodyLimit);
        if (head) parser.skip(true);
        const auto ec = run([&](auto handler) { http::async_read(stream_, buffer_, parser, handler); });
        if (ec) {
            close();
            fail("read response", ec);
        }
        auto res = parser.release();
        if (res.result_int() / 100 == 1 && res.result_int() != 101) continue;  // interim (100 Continue)
        HttpResponse out;
        out.status = res.result_int();
        out.headers = to_headers(res);
        out.keep_alive = res.keep_alive();
        out.body = std::move(res.body());
        if (!out.keep_alive) close();
        return out;
    }
}

HttpResponse HttpClient::upload_chunked(std::string_view method, std::string_view target, std::uint64_t bytes,
                                        const Headers& headers, std::size_t chunk_size) {
    ensure_connected();
    http::request<http::buffer_body> req;
    set_method(req, method);
    req.target(target);
    req.version(11);
    if (!find_header(headers, "Host")) req.set(http::field::host, "127.0.0.1:" + std::to_string(port_));
    for (const auto& [name, value] : headers) req.insert(name, value);
    req.chunked(true);
    req.body().data = nullptr;
    req.body().more = true;
    http::request_serializer<http::buffer_body> serializer{req};
    auto ec = run([&](auto handler) { http::async_write_header(stream_, serializer, handler); });
    if (ec) fail("write upload header", ec);
    std::vector<char> buffer(chunk_size);
    for (std::uint64_t offset = 0; offset < bytes && !ec;) {
        const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(chunk_size, bytes - offset));
        fill_pattern(buffer.data(), offset, n);
        req.body().data = buffer.data();
        req.body().size = n;
        req.body().more = true;
        ec = run([&](auto handler) { http::async_write(stream_, serializer, handler); });
        if (ec == http::error::need_buffer) ec = {};
        offset += n;
    }
    if (!ec) {
        req.body().data = nullptr;
        req.body().size = 0;
        req.body().more = false;
        ec = run([&](auto handler) { http::async_write(stream_, serializer, handler); });
    }
    if (ec) {
        // The server may have answered early (e.g. 413) and stopped reading: its answer is the result.
        try {
            return read_response();
        } catch (const std::exception& e) {
            fail("write upload body (then " + std::string(e.what()) + ")", ec);
        }
    }
    return read_response();
}

StreamedResponse HttpClient::download(std::string_view target, const Headers& headers) {
    ensure_connected();
    http::request<http::empty_body> req{http::verb::get, target, 11};
    if (!find_header(headers, "Host")) req.set(http::field::host, "127.0.0.1:" + std::to_string(port_));
    for (const auto& [name, value] : headers) req.insert(name, value);
    auto ec = run([&](auto handler) { http::async_write(stream_, req, handler); });
    if (ec) fail("write download request", ec);

    http::response_parser<http::buffer_body> parser;
    parser.header_limit(kHeaderLimit);
    parser.body_limit(boost::none);
    ec = run([&](auto handler) { http::async_read_header(stream_, buffer_, parser, handler); });
    if (ec) fail("read download header", ec);
    StreamedResponse out;
    out.status = parser.get().result_int();
    out.headers = to_headers(parser.get());
    out.chunked = parser.chunked();
    Checksum checksum;
    std::vector<char> buffer(64 * 1024);
    while (!parser.is_done()) {
        parser.get().body().data = buffer.data();
        parser.get().body().size = buffer.size();
        ec = run([&](auto handler) { http::async_read(stream_, buffer_, parser, handler); });
        if (ec == http::error::need_buffer) ec = {};
        if (ec) fail("read download body after " + std::to_string(checksum.bytes()) + " bytes", ec);
        checksum.update(buffer.data(), buffer.size() - parser.get().body().size);
    }
    out.body_bytes = checksum.bytes();
    out.body_checksum = checksum.value();
    if (!parser.get().keep_alive()) close();
    return out;
}

void HttpClient::write_raw(std::string_view bytes) {
    ensure_connected();
    const auto ec = run([&](auto handler) { net::async_write(stream_, net::buffer(bytes), handler); });
    if (ec) fail("write raw bytes", ec);
}

std::string HttpClient::read_until_close() {
    ensure_connected();
    std::string out = beast::buffers_to_string(buffer_.data());
    buffer_.consume(buffer_.size());
    std::array<char, 16 * 1024> chunk;
    for (;;) {
        std::size_t got = 0;
        const auto ec = run([&](auto handler) {
            stream_.async_read_some(net::buffer(chunk),
                                    [&got, handler](beast::error_code e, std::size_t n) mutable {
                                        got = n;
                                        handler(e, n);
                                    });
        });
        out.append(chunk.data(), got);
        if (ec) break;
    }
    close();
    return out;
}

bool HttpClient::wait_for_close(std::chrono::milliseconds wait) {
    ensure_connected();
    if (buffer_.size() > 0) {
        throw std::runtime_error("http client: expected the connection to close, but " +
                                 std::to_string(buffer_.size()) +
                                 " unread bytes are buffered: " + beast::buffers_to_string(buffer_.data()));
    }
    const auto saved = timeout_;
    timeout_ = wait;
    std::array<char, 4096> chunk;
    std::size_t got = 0;
    const auto ec = run([&](auto handler) {
        stream_.async_read_some(net::buffer(chunk),
                                [&got, handler](beast::error_code e, std::size_t n) mutable {
                                    got = n;
                                    handler(e, n);
                                });
    });
    timeout_ = saved;
    if (got > 0) {
        close();
        throw std::runtime_error("http client: expected the connection to close, got bytes: " +
                                 std::string(chunk.data(), got));
    }
    close();  // a timed-out tcp_stream is unusable either way
    if (ec == beast::error::timeout) return false;
    return true;  // eof, reset, ...
}

namespace {

std::string shell_quote(const std::string& arg) {
    std::string out = "'";
    for (const char c : arg) {
        if (c == '\'') {
            out += "'\\''";
        } else {
            out += c;
        }
    }
    return out + "'";
}

}  // namespace

CurlResult run_curl(const std::vector<std::string>& args) {
    char err_path[] = "/tmp/sluice-curl-err-XXXXXX";
    const int err_fd = ::mkstemp(err_path);
    if (err_fd < 0) throw std::runtime_error("mkstemp failed for curl stderr");
    ::close(err_fd);
    std::string command = "curl -sS --max-time 15";
    for (const auto& arg : args) command += " " + shell_quote(arg);
    command += " 2>" + shell_quote(err_path) + " </dev/null";
    CurlResult result;
    FILE* pipe = ::popen(command.c_str(), "r");
    if (!pipe) throw std::runtime_error("popen failed: " + command);
    char buffer[4096];
    while (const auto n = std::fread(buffer, 1, sizeof buffer, pipe)) result.out.append(buffer, n);
    const int status = ::pclose(pipe);
    result.exit_code = (status != -1 && WIFEXITED(status)) ? WEXITSTATUS(status) : -1;
    std::ifstream err(err_path);
    std::stringstream text;
    text << err.rdbuf();
    result.err = text.str();
    ::unlink(err_path);
    return result;
}

}  // namespace sluice::test
