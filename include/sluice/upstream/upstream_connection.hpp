#pragma once
// One connection to an upstream, plain TCP or TLS, owned by exactly one client
// session while it is lent out by the pool, and by the pool while idle.
// The relay code is written once for both stream types through with_stream().

#include <chrono>
#include <cstdint>
#include <variant>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

namespace sluice::upstream {

class UpstreamConnection {
public:
    // Plain sockets, not beast::tcp_stream: the client session times every
    // operation with its own watchdog, and the stream's per-operation timer
    // layers cost CPU on every read and write (docs/benchmarks.md).
    using PlainStream = boost::asio::ip::tcp::socket;
    using TlsStream = boost::beast::ssl_stream<boost::asio::ip::tcp::socket>;

    explicit UpstreamConnection(PlainStream stream)
        : stream_(std::in_place_type<PlainStream>, std::move(stream)) {}
    explicit UpstreamConnection(TlsStream stream)
        : stream_(std::in_place_type<TlsStream>, std::move(stream)) {}

    // Calls f(stream) with the concrete stream type.
    template <class F>
    decltype(auto) with_stream(F&& f) {
        return std::visit(std::forward<F>(f), stream_);
    }

    boost::asio::ip::tcp::socket& socket() {
        return std::visit(
            [](auto& s) -> boost::asio::ip::tcp::socket& { return boost::beast::get_lowest_layer(s); },
            stream_);
    }
    bool is_tls() const { return std::holds_alternative<TlsStream>(stream_); }

    // Read-ahead buffer for responses; lives as long as the connection so bytes
    // the upstream sent past one response are never lost.
    boost::beast::flat_buffer& buffer() { return buffer_; }

    // Requests carried so far: > 0 means it came from the idle pool, where a
    // failure before any response byte may be a close race (safe to retry a
    // bodyless request on a fresh connection).
    std::uint64_t requests_served = 0;
    std::chrono::steady_clock::time_point idle_since{};
    std::uint64_t id = 0;

private:
    std::variant<PlainStream, TlsStream> stream_;
    boost::beast::flat_buffer buffer_{64 * 1024};
};

}  // namespace sluice::upstream
