#include <array>
#include <cctype>
#include <stdexcept>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <nlohmann/json.hpp>

#include "support/mock_upstream.hpp"

namespace sluice::test {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

namespace {

constexpr std::size_t kBodyBufferSize = 64 * 1024;
constexpr std::size_t kBodyPrefixSize = 64 * 1024;
constexpr std::size_t kHeaderLimit = 1024 * 1024;

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i])))
            return false;
    }
    return true;
}

}  // namespace

std::optional<std::string> find_header(const Headers& headers, std::string_view name) {
    for (const auto& [n, v] : headers) {
        if (iequals(n, name)) return v;
    }
    return std::nullopt;
}

std::size_t count_header(const Headers& headers, std::string_view name) {
    std::size_t count = 0;
    for (const auto& field : headers) count += iequals(field.first, name) ? 1 : 0;
    return count;
}

void Checksum::update(const void* data, std::size_t size) {
    const auto* p = static_cast<const unsigned char*>(data);
    for (std::size_t i = 0; i < size; ++i) {
        hash_ ^= p[i];
        hash_ *= 1099511628211ull;
    }
    bytes_ += size;
}

void fill_pattern(char* out, std::uint64_t offset, std::size_t size) {
    for (std::size_t i = 0; i < size; ++i) {
        const std::uint64_t n = offset + i;
        out[i] = static_cast<char>('a' + ((n * 131) ^ (n >> 10) ^ (n >> 19)) % 26);
    }
}

std::string pattern_string(std::uint64_t size) {
    std::string text(size, '\0');
    fill_pattern(text.data(), 0, text.size());
    return text;
}

Checksum pattern_checksum(std::uint64_t size) {
    Checksum sum;
    std::array<char, kBodyBufferSize> buffer;
    for (std::uint64_t offset = 0; offset < size;) {
        const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(buffer.size(), size - offset));
        fill_pattern(buffer.data(), offset, n);
        sum.update(buffer.data(), n);
        offset += n;
    }
    return sum;
}

MockReply MockReply::fixed(unsigned status, std::string body, Headers headers) {
    MockReply reply;
    reply.kind = Kind::fixed;
    reply.status = status;
    reply.body = std::move(body);
    reply.headers = std::move(headers);
    return reply;
}

MockReply MockReply::echo() {
    return MockReply{};
}

MockReply MockReply::stream(std::uint64_t bytes, bool chunked) {
    MockReply reply;
    reply.kind = Kind::stream;
    reply.stream_bytes = bytes;
    reply.stream_chunked = chunked;
    return reply;
}

MockReply MockReply::close_without_answer() {
    MockReply reply;
    reply.kind = Kind::close;
    return reply;
}

struct MockUpstream::State {
    mutable std::mutex mutex;
    mutable std::condition_variable changed;
    std::vector<RecordedRequest> requests;
    Handler handler;
    std::atomic<std::size_t> connections{0};
};

namespace {

using State = MockUpstream::State;

// One accepted connection. The server runs a single thread, so no strand is needed.
template <class Stream>
class Session : public std::enable_shared_from_this<Session<Stream>> {
public:
    Session(Stream stream, std::shared_ptr<State> state, std::uint64_t id)
        : stream_(std::move(stream)),
          state_(std::move(state)),
          id_(id),
          timer_(beast::get_lowest_layer(stream_).get_executor()) {}

    void start() {
        if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
            do_read_header();
        } else {
            beast::get_lowest_layer(stream_).expires_after(std::chrono::seconds(10));
            stream_.async_handshake(net::ssl::stream_base::server,
                                    [self = this->shared_from_this()](beast::error_code ec) {
                                        if (!ec) self->do_read_header();
                                    });
        }
    }

private:
    void do_read_header() {
        parser_.emplace();
        parser_->header_limit(kHeaderLimit);
        parser_->body_limit(boost::none);
        checksum_ = Checksum{};
        prefix_.clear();
        // Pooled upstream connections may idle for as long as a test runs.
        beast::get_lowest_layer(stream_).expires_never();
        http::async_read_header(
            stream_, buffer_, *parser_,
            [self = this->shared_from_this()](beast::error_code ec, std::size_t) { self->on_header(ec); });
    }

    void on_header(beast::error_code ec) {
        if (ec) return close();
        const auto& req = parser_->get();
        keep_alive_ = req.keep_alive();
        RecordedRequest record;
        record.connection_id = id_;
        record.method = std::string(req.method_string());
        record.target = std::string(req.target());
        record.version = req.version();
        for (const auto& field : req) record.headers.emplace_back(field.name_string(), field.value());
        record.chunked = parser_->chunked();
        record.arrival = std::chrono::steady_clock::now();
        {
            std::lock_guard lock(state_->mutex);
            index_ = state_->requests.size();
            state_->requests.push_back(std::move(record));
        }
        state_->changed.notify_all();
        const auto expect = req[http::field::expect];
        if (iequals(expect, "100-continue") && !parser_->is_done()) {
            continue_.emplace(http::status::continue_, 11);
            http::async_write(stream_, *continue_,
                              [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
                                  if (ec) return self->close();
                                  self->do_read_body();
                              });
            return;
        }
        do_read_body();
    }

    void do_read_body() {
        if (parser_->is_done()) return on_request_done();
        parser_->get().body().data = body_buffer_.data();
        parser_->get().body().size = body_buffer_.size();
        beast::get_lowest_layer(stream_).expires_after(std::chrono::seconds(30));
        http::async_read(
            stream_, buffer_, *parser_,
            [self = this->shared_from_this()](beast::error_code ec, std::size_t) { self->on_body(ec); });
    }

    void on_body(beast::error_code ec) {
        if (ec == http::error::need_buffer) ec = {};
        const std::size_t got = body_buffer_.size() - parser_->get().body().size;
        checksum_.update(body_buffer_.data(), got);
        if (prefix_.size() < kBodyPrefixSize) {
            prefix_.append(body_buffer_.data(), std::min(got, kBodyPrefixSize - prefix_.size()));
        }
        update_record(false);
        if (ec) return close();
        do_read_body();
    }

    void update_record(bool complete) {
        {
            std::lock_guard lock(state_->mutex);
            auto& record = state_->requests[index_];
            record.body_bytes = checksum_.bytes();
            record.body_checksum = checksum_.value();
            record.body_prefix = prefix_;
            record.complete = complete;
        }
        if (complete) state_->changed.notify_all();
    }

    void on_request_done() {
        update_record(true);
        MockUpstream::Handler handler;
        RecordedRequest record;
        {
            std::lock_guard lock(state_->mutex);
            handler = state_->handler;
            record = state_->requests[index_];
        }
        try {
            reply_ = handler ? handler(record) : MockReply::echo();
        } catch (const std::exception& e) {
            reply_ = MockReply::fixed(500, std::string("mock handler threw: ") + e.what());
        }
        if (reply_.delay.count() > 0) {
            timer_.expires_after(reply_.delay);
            timer_.async_wait(
                [self = this->shared_from_this(), record = std::move(record)](beast::error_code ec) {
                    if (ec) return;
                    self->respond(record);
                });
            return;
        }
        respond(record);
    }

    void respond(const RecordedRequest& record) {
        const bool keep_alive = keep_alive_ && !reply_.close_after;
        switch (reply_.kind) {
            case MockReply::Kind::close: return close();
            case MockReply::Kind::fixed:
            case MockReply::Kind::echo: {
                string_response_.emplace(static_cast<http::status>(reply_.status), record.version);
                auto& res = *string_response_;
                res.set(http::field::server, "sluice-mock-upstream");
                for (const auto& [name, value] : reply_.headers) res.insert(name, value);
                if (reply_.kind == MockReply::Kind::echo) {
                    res.set(http::field::content_type, "application/json");
                    res.body() = echo_body(record);
                } else {
                    res.body() = reply_.body;
                }
                res.keep_alive(keep_alive);
                res.prepare_payload();
                beast::get_lowest_layer(stream_).expires_after(std::chrono::seconds(30));
                auto on_written = [self = this->shared_from_this(), keep_alive](beast::error_code ec,
                                                                                std::size_t) {
                    self->on_written(ec, keep_alive);
                };
                if (record.method == "HEAD") {
                    head_serializer_.emplace(res);
                    http::async_write_header(stream_, *head_serializer_, std::move(on_written));
                } else {
                    http::async_write(stream_, res, std::move(on_written));
                }
                return;
            }
            case MockReply::Kind::stream: return start_stream(record, keep_alive);
        }
    }

    std::string echo_body(const RecordedRequest& record) const {
        nlohmann::json headers = nlohmann::json::array();
        for (const auto& [name, value] : record.headers) headers.push_back({name, value});
        nlohmann::json body = {{"method", record.method},
                               {"target", record.target},
                               {"version", record.version},
                               {"connection_id", record.connection_id},
                               {"chunked", record.chunked},
                               {"body_bytes", record.body_bytes},
                               {"body_checksum", record.body_checksum},
                               {"body", record.body_prefix},
                               {"headers", headers}};
        return body.dump();
    }

    void start_stream(const RecordedRequest& record, bool keep_alive) {
        stream_response_.emplace(static_cast<http::status>(reply_.status), record.version);
        auto& res = *stream_response_;
        res.set(http::field::server, "sluice-mock-upstream");
        res.set(http::field::content_type, "application/octet-stream");
        for (const auto& [name, value] : reply_.headers) res.insert(name, value);
        res.keep_alive(keep_alive);
        if (reply_.stream_chunked) {
            res.chunked(true);
        } else {
            res.content_length(reply_.stream_bytes);
        }
        res.body().data = nullptr;
        res.body().more = true;
        stream_sent_ = 0;
        serializer_.emplace(res);
        beast::get_lowest_layer(stream_).expires_after(std::chrono::seconds(30));
        http::async_write_header(
            stream_, *serializer_,
            [self = this->shared_from_this(), keep_alive](beast::error_code ec, std::size_t) {
                if (ec) return self->close();
                self->write_stream_chunk(keep_alive);
            });
    }

    void write_stream_chunk(bool keep_alive) {
        auto& body = stream_response_->body();
        const std::uint64_t left = reply_.stream_bytes - stream_sent_;
        if (left == 0) {
            body.data = nullptr;
            body.size = 0;
            body.more = false;
        } else {
            const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(left, out_buffer_.size()));
            fill_pattern(out_buffer_.data(), stream_sent_, n);
            stream_sent_ += n;
            body.data = out_buffer_.data();
            body.size = n;
            body.more = true;
        }
        const bool last = left == 0;
        beast::get_lowest_layer(stream_).expires_after(std::chrono::seconds(30));
        http::async_write(
            stream_, *serializer_,
            [self = this->shared_from_this(), keep_alive, last](beast::error_code ec, std::size_t) {
                if (ec == http::error::need_buffer) ec = {};
                if (ec) return self->close();
                if (last) return self->on_written(ec, keep_alive);
                self->write_stream_chunk(keep_alive);
            });
    }

    void on_written(beast::error_code ec, bool keep_alive) {
        if (ec || !keep_alive || reply_.drop_after) return close();
        do_read_header();
    }

    void close() {
        beast::error_code ignored;
        auto& socket = beast::get_lowest_layer(stream_).socket();
        socket.shutdown(tcp::socket::shutdown_both, ignored);
        socket.close(ignored);
    }

    Stream stream_;
    std::shared_ptr<State> state_;
    std::uint64_t id_;
    net::steady_timer timer_;
    beast::flat_buffer buffer_;
    std::optional<http::request_parser<http::buffer_body>> parser_;
    std::array<char, kBodyBufferSize> body_buffer_{};
    std::array<char, kBodyBufferSize> out_buffer_{};
    Checksum checksum_;
    std::string prefix_;
    std::size_t index_ = 0;
    bool keep_alive_ = true;
    MockReply reply_;
    std::optional<http::response<http::empty_body>> continue_;
    std::optional<http::response<http::string_body>> string_response_;
    std::optional<http::response_serializer<http::string_body>> head_serializer_;
    std::optional<http::response<http::buffer_body>> stream_response_;
    std::optional<http::response_serializer<http::buffer_body>> serializer_;
    std::uint64_t stream_sent_ = 0;
};

}  // namespace

class MockUpstream::Server {
public:
    Server(std::shared_ptr<State> state, const std::optional<CertPair>& tls)
        : state_(std::move(state)), acceptor_(ioc_) {
        if (tls) {
            ssl_.emplace(net::ssl::context::tls_server);
            ssl_->use_certificate_chain_file(tls->cert);
            ssl_->use_private_key_file(tls->key, net::ssl::context::pem);
        }
        const tcp::endpoint endpoint(net::ip::make_address("127.0.0.1"), 0);
        acceptor_.open(endpoint.protocol());
        acceptor_.set_option(net::socket_base::reuse_address(true));
        acceptor_.bind(endpoint);
        acceptor_.listen(net::socket_base::max_listen_connections);
        port_ = acceptor_.local_endpoint().port();
        do_accept();
        thread_ = std::thread([this] { ioc_.run(); });
    }

    ~Server() {
        net::post(ioc_, [this] {
            beast::error_code ignored;
            acceptor_.close(ignored);
        });
        ioc_.stop();
        thread_.join();
    }

    std::uint16_t port() const { return port_; }

private:
    void do_accept() {
        acceptor_.async_accept(net::make_strand(ioc_), [this](beast::error_code ec, tcp::socket socket) {
            if (ec) return;  // closed at shutdown
            const auto id = ++state_->connections;
            if (ssl_) {
                std::make_shared<Session<beast::ssl_stream<beast::tcp_stream>>>(
                    beast::ssl_stream<beast::tcp_stream>(beast::tcp_stream(std::move(socket)), *ssl_), state_,
                    id)
                    ->start();
            } else {
                std::make_shared<Session<beast::tcp_stream>>(beast::tcp_stream(std::move(socket)), state_, id)
                    ->start();
            }
            state_->changed.notify_all();
            do_accept();
        });
    }

    std::shared_ptr<State> state_;
    std::optional<net::ssl::context> ssl_;
    net::io_context ioc_{1};
    tcp::acceptor acceptor_;
    std::uint16_t port_ = 0;
    std::thread thread_;
};

MockUpstream::MockUpstream() : MockUpstream(Options{}) {}

MockUpstream::MockUpstream(Handler handler) : MockUpstream(Options{std::move(handler), std::nullopt}) {}

MockUpstream::MockUpstream(Options options)
    : state_(std::make_shared<State>()), tls_(options.tls.has_value()) {
    state_->handler = std::move(options.handler);
    server_ = std::make_unique<Server>(state_, options.tls);
    port_ = server_->port();
}

MockUpstream::~MockUpstream() {
    server_.reset();
}

std::string MockUpstream::url() const {
    return (tls_ ? "https://localhost:" : "http://127.0.0.1:") + std::to_string(port_);
}

void MockUpstream::set_handler(Handler handler) {
    std::lock_guard lock(state_->mutex);
    state_->handler = std::move(handler);
}

std::vector<RecordedRequest> MockUpstream::requests() const {
    std::lock_guard lock(state_->mutex);
    return state_->requests;
}

std::size_t MockUpstream::request_count() const {
    std::lock_guard lock(state_->mutex);
    return state_->requests.size();
}

std::size_t MockUpstream::connections_accepted() const {
    return state_->connections.load();
}

bool MockUpstream::wait_for_complete_requests(std::size_t count, std::chrono::milliseconds timeout) const {
    std::unique_lock lock(state_->mutex);
    return state_->changed.wait_for(lock, timeout, [&] {
        std::size_t complete = 0;
        for (const auto& r : state_->requests) complete += r.complete ? 1 : 0;
        return complete >= count;
    });
}

bool MockUpstream::wait_for_requests(std::size_t count, std::chrono::milliseconds timeout) const {
    std::unique_lock lock(state_->mutex);
    return state_->changed.wait_for(lock, timeout, [&] { return state_->requests.size() >= count; });
}

}  // namespace sluice::test
