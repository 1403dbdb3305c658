// RedisConnection against a real redis-server (support/redis_server.hpp). No sleeps: the io_context
// runs until the awaited event happens or a bounded deadline passes.

#include "sluice/redis/redis_connection.hpp"

#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <catch2/catch.hpp>

#include "support/redis_server.hpp"
#include "support/test_certs.hpp"

using namespace std::chrono_literals;
using boost::system::error_code;
using sluice::redis::RedisConnection;
using sluice::redis::RedisEndpoint;
using sluice::redis::Reply;
using sluice::redis::Script;
using sluice::test::RedisServer;
namespace error = sluice::redis;

namespace {

RedisEndpoint endpoint_for(const RedisServer& server) {
    RedisEndpoint endpoint;
    endpoint.host = "127.0.0.1";
    endpoint.port = server.port();
    endpoint.command_timeout = 2s;
    endpoint.reconnect_min = 20ms;
    endpoint.reconnect_max = 100ms;
    return endpoint;
}

struct Result {
    error_code ec;
    Reply reply;
};

// One connection on its own io_context, driven by the test thread.
struct Client {
    boost::asio::io_context io;
    std::shared_ptr<RedisConnection> connection;
    std::vector<bool> states;  // every call of the state hook, in order

    Client() = default;
    explicit Client(RedisEndpoint endpoint) { open(std::move(endpoint)); }
    void open(RedisEndpoint endpoint) {
        connection = std::make_shared<RedisConnection>(io.get_executor(), std::move(endpoint));
        connection->on_state_change([this](bool ready) { states.push_back(ready); });
        connection->start();
    }
    ~Client() {
        if (connection) connection->stop();
        io.restart();
        io.run_for(2s);  // returns as soon as nothing is left to do
    }

    // Runs the io_context until `done()` or `limit` has passed; returns done().
    bool run_until(const std::function<bool()>& done, std::chrono::milliseconds limit = 3s) {
        const auto deadline = std::chrono::steady_clock::now() + limit;
        while (!done()) {
            if (std::chrono::steady_clock::now() >= deadline) return false;
            if (io.stopped()) io.restart();
            io.run_one_for(10ms);
        }
        return true;
    }
    bool wait_ready(std::chrono::milliseconds limit = 3s) {
        return run_until([this] { return connection->connected(); }, limit);
    }
    Result call(std::vector<std::string> argv) {
        std::optional<Result> result;
        connection->command(std::move(argv), [&](error_code ec, Reply reply) { result = Result{ec, reply}; });
        REQUIRE(run_until([&] { return result.has_value(); }));
        return *result;
    }
    Result eval(const Script& script, std::vector<std::string> keys, std::vector<std::string> args) {
        std::optional<Result> result;
        connection->eval_script(script, std::move(keys), std::move(args), [&](error_code ec, Reply reply) {
            result = Result{ec, reply};
        });
        REQUIRE(run_until([&] { return result.has_value(); }));
        return *result;
    }
};

// Everything written to stderr (sluice's log) while it lives goes to a file the test can read.
class StderrCapture {
public:
    StderrCapture() {
        path_ =
            (std::filesystem::temp_directory_path() / ("sluice-redis-stderr-" + std::to_string(::getpid())))
                .string();
        std::fflush(stderr);
        saved_ = ::dup(2);
        const int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        ::dup2(fd, 2);
        ::close(fd);
    }
    ~StderrCapture() {
        std::fflush(stderr);
        ::dup2(saved_, 2);
        ::close(saved_);
        std::filesystem::remove(path_);
    }
    std::string text() const {
        std::fflush(stderr);
        std::ifstream in(path_);
        std::stringstream out;
        out << in.rdbuf();
        return out.str();
    }

private:
    std::string path_;
    int saved_ = -1;
};

}  // namespace

TEST_CASE("RedisServer: starts on a free port, answers, restarts on the same port empty", "[redis]") {
    RedisServer server;
    REQUIRE(server.port() != 0);
    CHECK(server.command({"SET", "k", "v"}).text() == "OK");
    CHECK(server.command({"GET", "k"}).text() == "v");
    const auto port = server.port();
    server.kill();
    CHECK_FALSE(server.running());
    CHECK_THROWS(server.command({"PING"}));
    server.restart();
    CHECK(server.port() == port);
    CHECK(server.command({"GET", "k"}).type == RedisServer::Reply::Type::nil);
    server.stop();
    CHECK_FALSE(server.running());
}

TEST_CASE("Script: sha1 as Redis computes it", "[redis]") {
    RedisServer server;
    const Script script("return 1");
    CHECK(server.command({"SCRIPT", "LOAD", script.source}).str == script.sha1);
}

TEST_CASE("RedisConnection: PING, SET and GET round trip (binary-safe); error replies", "[redis]") {
    RedisServer server;
    Client client(endpoint_for(server));
    REQUIRE(client.wait_ready());
    CHECK(client.states == std::vector<bool>{true});

    auto ping = client.call({"PING"});
    CHECK_FALSE(ping.ec);
    CHECK(ping.reply.type == Reply::Type::status);
    CHECK(ping.reply.str == "PONG");

    const std::string value("a\0b\r\nc", 6);
    CHECK(client.call({"SET", "key", value}).reply.str == "OK");
    auto get = client.call({"GET", "key"});
    CHECK(get.reply.type == Reply::Type::string);
    CHECK(get.reply.str == value);
    CHECK(server.command({"GET", "key"}).str == value);
    CHECK(client.call({"GET", "missing"}).reply.type == Reply::Type::nil);

    auto range = client.call({"RPUSH", "list", "x", "y"});
    CHECK(range.reply.type == Reply::Type::integer);
    CHECK(range.reply.integer == 2);
    auto elements = client.call({"LRANGE", "list", "0", "-1"}).reply;
    REQUIRE(elements.type == Reply::Type::array);
    REQUIRE(elements.elements.size() == 2);
    CHECK(elements.elements[1].str == "y");

    auto wrong = client.call({"INCR", "key"});
    CHECK(wrong.ec == error::error::server);
    CHECK(wrong.reply.is_error());
    CHECK(wrong.reply.str.rfind("ERR", 0) == 0);
    CHECK(client.connection->connected());  // an error reply is an answer, not a failure
}

TEST_CASE("RedisConnection: 1000 pipelined INCRs are answered in order", "[redis]") {
    RedisServer server;
    Client client(endpoint_for(server));
    REQUIRE(client.wait_ready());
    std::vector<long long> answers;
    for (int i = 0; i < 1000; ++i) {
        client.connection->command({"INCR", "counter"}, [&](error_code ec, Reply reply) {
            CHECK_FALSE(ec);
            answers.push_back(reply.integer);
        });
    }
    REQUIRE(client.run_until([&] { return answers.size() == 1000; }));
    for (std::size_t i = 0; i < answers.size(); ++i) REQUIRE(answers[i] == static_cast<long long>(i + 1));
    CHECK(server.command({"GET", "counter"}).str == "1000");
}

TEST_CASE("RedisConnection: beyond kMaxPending outstanding commands fail at once", "[redis]") {
    RedisServer server;
    Client client(endpoint_for(server));
    REQUIRE(client.wait_ready());
    std::size_t answered = 0, refused = 0;
    // Issued together: all are queued before a single reply can be read.
    for (std::size_t i = 0; i < RedisConnection::kMaxPending + 5; ++i) {
        client.connection->command({"PING"}, [&](error_code ec, Reply) {
            if (ec == error::error::too_many_pending) {
                ++refused;
            } else if (!ec) {
                ++answered;
            }
        });
    }
    REQUIRE(client.run_until([&] { return answered + refused == RedisConnection::kMaxPending + 5; }, 5s));
    CHECK(refused == 5);
    CHECK(client.connection->connected());
}

TEST_CASE("RedisConnection: a command past command_timeout times out, then the connection recovers",
          "[redis]") {
    RedisServer server;
    auto endpoint = endpoint_for(server);
    endpoint.command_timeout = 100ms;
    Client client(endpoint);
    REQUIRE(client.wait_ready());

    std::optional<Result> slow, behind;
    const auto issued = std::chrono::steady_clock::now();
    client.connection->command({"DEBUG", "SLEEP", "0.5"}, [&](error_code ec, Reply r) {
        slow = Result{ec, r};
    });
    client.connection->command({"PING"}, [&](error_code ec, Reply r) { behind = Result{ec, r}; });
    REQUIRE(client.run_until([&] { return slow && behind; }));
    CHECK(std::chrono::steady_clock::now() - issued < 480ms);  // not the sleep's answer
    CHECK(slow->ec == error::error::timed_out);
    CHECK(behind->ec);  // its answer would have been read as the sleep's: failed too
    CHECK_FALSE(client.connection->connected());
    CHECK(client.call({"PING"}).ec == error::error::not_connected);

    // By itself: reconnects (ready only once Redis answers again), and serves.
    REQUIRE(client.run_until([&] { return client.states.size() >= 3; }));
    CHECK(client.states == std::vector<bool>{true, false, true});
    auto ping = client.call({"PING"});
    CHECK_FALSE(ping.ec);
    CHECK(ping.reply.str == "PONG");
}

TEST_CASE(
    "RedisConnection: Redis killed: outstanding calls fail, not_connected while down, back after a "
    "restart with its scripts loaded",
    "[redis]") {
    RedisServer server;
    Client client(endpoint_for(server));
    REQUIRE(client.wait_ready());
    const Script script("return 'hello ' .. ARGV[1]");
    CHECK(client.eval(script, {}, {"world"}).reply.str == "hello world");

    std::optional<Result> blocked;
    client.connection->command({"BLPOP", "nothing", "0"}, [&](error_code ec, Reply r) {
        blocked = Result{ec, r};
    });
    // Until it is written: then the kill catches it outstanding.
    REQUIRE(client.run_until([&] {
        return server.command({"CLIENT", "LIST"}).str.find("cmd=blpop") != std::string::npos;
    }));
    server.kill();
    REQUIRE(client.run_until([&] { return blocked.has_value(); }));
    CHECK(blocked->ec);
    CHECK(blocked->ec != error::error::timed_out);  // the connection's loss, seen at once
    CHECK_FALSE(client.connection->connected());
    CHECK(client.states == std::vector<bool>{true, false});
    CHECK(client.call({"PING"}).ec == error::error::not_connected);

    server.restart();
    REQUIRE(client.wait_ready());
    CHECK(client.states == std::vector<bool>{true, false, true});
    // Loaded at connect, before anyone asked.
    auto exists = server.command({"SCRIPT", "EXISTS", script.sha1});
    REQUIRE(exists.elements.size() == 1);
    CHECK(exists.elements[0].integer == 1);
    CHECK(client.eval(script, {}, {"again"}).reply.str == "hello again");
}

TEST_CASE("RedisConnection: eval_script passes keys and args, and survives SCRIPT FLUSH (NOSCRIPT)",
          "[redis]") {
    RedisServer server;
    Client client(endpoint_for(server));
    REQUIRE(client.wait_ready());
    const Script script("redis.call('SET', KEYS[1], ARGV[1]) return {KEYS[1], ARGV[1], #KEYS, #ARGV}");
    auto first = client.eval(script, {"{p}:a"}, {"1"});
    REQUIRE_FALSE(first.ec);
    REQUIRE(first.reply.elements.size() == 4);
    CHECK(first.reply.elements[0].str == "{p}:a");
    CHECK(first.reply.elements[2].integer == 1);
    CHECK(first.reply.elements[3].integer == 1);

    CHECK(server.command({"SCRIPT", "FLUSH"}).str == "OK");
    auto second = client.eval(script, {"{p}:b"}, {"2", "x"});
    REQUIRE_FALSE(second.ec);
    CHECK(second.reply.elements[3].integer == 2);
    CHECK(server.command({"GET", "{p}:b"}).str == "2");
    CHECK(server.command({"SCRIPT", "EXISTS", script.sha1}).elements.at(0).integer == 1);

    const Script broken("return redis.call('NOSUCHCOMMAND')");
    auto failed = client.eval(broken, {}, {});
    CHECK(failed.ec == error::error::server);
    CHECK(failed.reply.is_error());
    CHECK(client.connection->connected());
}

TEST_CASE("RedisConnection: AUTH with requirepass and with an ACL user", "[redis]") {
    RedisServer::Options options;
    options.requirepass = "right";
    RedisServer server(options);

    SECTION("the wrong password: never ready, said in the log") {
        StderrCapture log;
        auto endpoint = endpoint_for(server);
        endpoint.password = "wrong";
        Client client(endpoint);
        CHECK(client.run_until([&] { return log.text().find("AUTH failed") != std::string::npos; }));
        CHECK_FALSE(client.connection->connected());
        CHECK(client.states.empty());
        CHECK(log.text().find("wrong") == std::string::npos);  // the password is never logged
        CHECK(client.call({"PING"}).ec == error::error::not_connected);
    }
    SECTION("no password at all: never ready") {
        StderrCapture log;
        Client client(endpoint_for(server));
        CHECK(client.run_until([&] { return log.text().find("NOAUTH") != std::string::npos; }));
        CHECK_FALSE(client.connection->connected());
    }
    SECTION("the right password") {
        auto endpoint = endpoint_for(server);
        endpoint.password = "right";
        Client client(endpoint);
        REQUIRE(client.wait_ready());
        CHECK(client.call({"SET", "k", "v"}).reply.str == "OK");
    }
    SECTION("username and password (Redis 6 ACL)") {
        REQUIRE(server.command({"ACL", "SETUSER", "sluice", "on", ">pw", "~*", "+@all"}).str == "OK");
        auto endpoint = endpoint_for(server);
        endpoint.username = "sluice";
        endpoint.password = "pw";
        Client client(endpoint);
        REQUIRE(client.wait_ready());
        auto whoami = client.call({"ACL", "WHOAMI"});
        CHECK(whoami.reply.str == "sluice");
    }
}

TEST_CASE("RedisConnection: SELECT db", "[redis]") {
    RedisServer server;
    auto endpoint = endpoint_for(server);
    endpoint.db = 3;
    Client client(endpoint);
    REQUIRE(client.wait_ready());
    CHECK(client.call({"SET", "k", "in three"}).reply.str == "OK");
    CHECK(server.command({"GET", "k"}).type == RedisServer::Reply::Type::nil);  // not in db 0
    CHECK(server.command({"EVAL", "redis.call('SELECT', 3) return redis.call('GET', 'k')", "0"}).str ==
          "in three");
}

TEST_CASE("RedisConnection: over a unix socket", "[redis]") {
    RedisServer::Options options;
    options.unix_socket = true;
    RedisServer server(options);
    RedisEndpoint endpoint;
    endpoint.unix_path = server.unix_path();
    endpoint.host = "nowhere.invalid";  // unused with a unix socket
    Client client(endpoint);
    REQUIRE(client.wait_ready());
    CHECK(client.call({"SET", "k", "v"}).reply.str == "OK");
    CHECK(server.command({"GET", "k"}).str == "v");
    CHECK(client.call({"CLIENT", "INFO"}).reply.str.find("laddr=" + server.unix_path()) != std::string::npos);
}

TEST_CASE("RedisConnection: stop() aborts outstanding calls and says the connection is lost", "[redis]") {
    RedisServer server;
    Client client(endpoint_for(server));
    REQUIRE(client.wait_ready());
    std::optional<Result> blocked;
    client.connection->command({"BLPOP", "nothing", "0"}, [&](error_code ec, Reply r) {
        blocked = Result{ec, r};
    });
    client.connection->stop();
    REQUIRE(client.run_until([&] { return blocked.has_value(); }));
    CHECK(blocked->ec == boost::asio::error::operation_aborted);
    CHECK(client.states == std::vector<bool>{true, false});
    CHECK_FALSE(client.connection->connected());
    CHECK(client.call({"PING"}).ec == error::error::not_connected);
    // And start() again connects again.
    client.connection->start();
    REQUIRE(client.wait_ready());
    CHECK_FALSE(client.call({"PING"}).ec);
}

TEST_CASE("RedisConnection: nothing listening: not ready, calls fail at once", "[redis]") {
    RedisServer server;
    auto endpoint = endpoint_for(server);
    server.stop();
    Client client(endpoint);
    CHECK(client.call({"PING"}).ec == error::error::not_connected);
    CHECK_FALSE(client.run_until([&] { return client.connection->connected(); }, 200ms));
    CHECK(client.states.empty());
}

TEST_CASE("RedisConnection: TLS, the certificate checked against the CA and the name", "[redis]") {
    const auto& certs = sluice::test::test_certs();
    const auto tls_server = [&](const sluice::test::CertPair& pair) {
        RedisServer::Options options;
        options.tls_cert_file = pair.cert;
        options.tls_key_file = pair.key;
        return std::make_unique<RedisServer>(options);
    };
    const auto tls_endpoint = [&](const RedisServer& server) {
        auto endpoint = endpoint_for(server);
        endpoint.port = server.tls_port();
        endpoint.tls = true;
        endpoint.tls_ca_file = certs.ca_cert;
        return endpoint;
    };

    SECTION("trusted, and the address is in the certificate") {
        auto server = tls_server(certs.server);
        Client client(tls_endpoint(*server));
        REQUIRE(client.wait_ready());
        CHECK(client.call({"SET", "k", "over tls"}).reply.str == "OK");
        CHECK(server->command({"GET", "k"}).str == "over tls");
    }
    SECTION("server_name: the name sent (SNI) and verified") {
        auto server = tls_server(certs.server);
        auto endpoint = tls_endpoint(*server);
        endpoint.tls_server_name = "localhost";
        Client client(endpoint);
        REQUIRE(client.wait_ready());
        CHECK_FALSE(client.call({"PING"}).ec);
    }
    SECTION("a certificate for another name: never ready") {
        StderrCapture log;
        auto server = tls_server(certs.wrong_host);
        Client client(tls_endpoint(*server));
        CHECK(client.run_until([&] { return log.text().find("TLS handshake") != std::string::npos; }));
        CHECK_FALSE(client.connection->connected());
        CHECK(client.states.empty());
    }
    SECTION("self-signed: refused, unless verify is off") {
        auto server = tls_server(certs.self_signed);
        auto endpoint = tls_endpoint(*server);
        {
            StderrCapture log;
            Client client(endpoint);
            CHECK(client.run_until([&] { return log.text().find("TLS handshake") != std::string::npos; }));
            CHECK_FALSE(client.connection->connected());
        }
        endpoint.tls_verify = false;
        Client client(endpoint);
        REQUIRE(client.wait_ready());
        CHECK_FALSE(client.call({"PING"}).ec);
    }
    SECTION("an unreadable CA file: never ready, said in the log") {
        StderrCapture log;
        auto server = tls_server(certs.server);
        auto endpoint = tls_endpoint(*server);
        endpoint.tls_ca_file = "/nonexistent/ca.pem";
        Client client(endpoint);
        CHECK(client.run_until([&] { return log.text().find("/nonexistent/ca.pem") != std::string::npos; }));
        CHECK_FALSE(client.connection->connected());
    }
}

namespace {

// A TCP server that answers the n-th read on each connection with answers[n] (then nothing more):
// for what a real Redis never sends.
struct FakeRedis {
    boost::asio::ip::tcp::acceptor acceptor;
    std::vector<std::string> answers;
    int connections = 0;
    std::vector<std::chrono::steady_clock::time_point> accepted_at;
    // Its handlers may run after it is gone (the test's Client drains the io_context last).
    std::shared_ptr<bool> alive = std::make_shared<bool>(true);

    FakeRedis(boost::asio::io_context& io, std::vector<std::string> answers_in)
        : acceptor(io, {boost::asio::ip::make_address("127.0.0.1"), 0}), answers(std::move(answers_in)) {
        accept();
    }
    ~FakeRedis() { *alive = false; }
    std::uint16_t port() const { return acceptor.local_endpoint().port(); }

    void accept() {
        acceptor.async_accept([this, alive = alive](error_code ec, boost::asio::ip::tcp::socket socket) {
            if (ec || !*alive) return;
            ++connections;
            accepted_at.push_back(std::chrono::steady_clock::now());
            read(std::make_shared<boost::asio::ip::tcp::socket>(std::move(socket)), 0);
            accept();
        });
    }
    void read(std::shared_ptr<boost::asio::ip::tcp::socket> socket, std::size_t n) {
        auto buffer = std::make_shared<std::array<char, 4096>>();
        socket->async_read_some(boost::asio::buffer(*buffer),
                                [this, alive = alive, socket, buffer, n](error_code ec, std::size_t) {
                                    if (ec || !*alive || n >= answers.size()) return;
                                    auto answer = std::make_shared<std::string>(answers[n]);
                                    boost::asio::async_write(*socket, boost::asio::buffer(*answer),
                                                             [answer](error_code, std::size_t) {});
                                    read(socket, n + 1);
                                });
    }
};

}  // namespace

TEST_CASE("RedisConnection: a reply that is not RESP is a protocol error: the connection is re-established",
          "[redis]") {
    Client client;
    FakeRedis fake(client.io, {"+PONG\r\n", "?garbage\r\n"});
    RedisEndpoint endpoint;
    endpoint.host = "127.0.0.1";
    endpoint.port = fake.port();
    endpoint.reconnect_min = 20ms;
    endpoint.reconnect_max = 50ms;
    client.open(endpoint);
    REQUIRE(client.wait_ready());
    auto result = client.call({"PING"});
    CHECK(result.ec == error::error::protocol);
    CHECK_FALSE(client.connection->connected());
    REQUIRE(client.wait_ready());  // a new connection (the fake answers its handshake again)
    CHECK(fake.connections == 2);
    CHECK(client.states == std::vector<bool>{true, false, true});
}

TEST_CASE("RedisConnection: a reply nobody asked for is a protocol error", "[redis]") {
    Client client;
    FakeRedis fake(client.io, {"+PONG\r\n+UNASKED\r\n"});
    RedisEndpoint endpoint;
    endpoint.host = "127.0.0.1";
    endpoint.port = fake.port();
    endpoint.reconnect_min = 20ms;
    endpoint.reconnect_max = 50ms;
    client.open(endpoint);
    REQUIRE(client.run_until([&] { return fake.connections >= 2; }));
    CHECK(client.states.size() >= 2);
    CHECK(client.states[0] == true);
    CHECK(client.states[1] == false);
}

TEST_CASE("RedisConnection: callable from any thread, the io_context run by several", "[redis]") {
    RedisServer server;
    boost::asio::io_context io;
    auto work = boost::asio::make_work_guard(io);
    auto connection = std::make_shared<RedisConnection>(io.get_executor(), endpoint_for(server));
    std::atomic<int> ready_calls{0};
    connection->on_state_change([&](bool ready) { ready_calls += ready ? 1 : 0; });
    connection->start();
    std::vector<std::thread> io_threads;
    for (int i = 0; i < 2; ++i) io_threads.emplace_back([&] { io.run(); });

    const auto deadline = std::chrono::steady_clock::now() + 3s;
    while (!connection->connected() && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(1ms);  // a bounded poll
    REQUIRE(connection->connected());

    std::atomic<int> answered{0}, failed{0};
    std::vector<std::thread> callers;
    for (int t = 0; t < 4; ++t) {
        callers.emplace_back([&] {
            for (int i = 0; i < 250; ++i) {
                connection->command({"INCR", "n"},
                                    [&](error_code ec, Reply) { (ec ? failed : answered) += 1; });
            }
        });
    }
    for (auto& caller : callers) caller.join();
    while (answered + failed < 1000 && std::chrono::steady_clock::now() < deadline + 3s)
        std::this_thread::sleep_for(1ms);  // a bounded poll
    connection->stop();
    work.reset();
    for (auto& thread : io_threads) thread.join();
    CHECK(answered == 1000);
    CHECK(failed == 0);
    CHECK(ready_calls == 1);
    CHECK(server.command({"GET", "n"}).str == "1000");
}

TEST_CASE("error_reason: a bounded label for every failure", "[redis]") {
    using sluice::redis::error_reason;
    CHECK(error_reason({}) == "");
    CHECK(error_reason(error::error::not_connected) == "not_connected");
    CHECK(error_reason(error::error::timed_out) == "timed_out");
    CHECK(error_reason(error::error::protocol) == "protocol");
    CHECK(error_reason(error::error::server) == "server");
    CHECK(error_reason(error::error::too_many_pending) == "too_many_pending");
    CHECK(error_reason(boost::asio::error::operation_aborted) == "aborted");
    CHECK(error_reason(boost::asio::error::eof) == "connection_lost");
    CHECK(error_reason(boost::asio::error::connection_reset) == "connection_lost");
    CHECK(error::make_error_code(error::error::timed_out).category().name() == std::string("sluice.redis"));
}

TEST_CASE("RedisConnection: reconnects with a doubling backoff up to reconnect_max", "[redis]") {
    Client client;
    FakeRedis fake(client.io, {"-ERR not today\r\n"});  // the handshake's PING fails: never ready
    RedisEndpoint endpoint;
    endpoint.host = "127.0.0.1";
    endpoint.port = fake.port();
    endpoint.reconnect_min = 20ms;
    endpoint.reconnect_max = 80ms;
    client.open(endpoint);
    REQUIRE(client.run_until([&] { return fake.connections >= 6; }));
    std::vector<std::chrono::milliseconds> gaps;
    for (std::size_t i = 1; i < fake.accepted_at.size(); ++i) {
        gaps.push_back(std::chrono::duration_cast<std::chrono::milliseconds>(fake.accepted_at[i] -
                                                                             fake.accepted_at[i - 1]));
    }
    // Waits drawn in [w/2, w] for w = 20, 40, 80, 80, 80 ms (timers never fire early; the upper
    // bounds leave room for a loaded machine, and an uncapped w = 320 ms would wait 160 ms or more).
    CHECK(gaps[0] >= 10ms);
    CHECK(gaps[0] < 100ms);
    CHECK(gaps[1] >= 20ms);
    CHECK(gaps[2] >= 40ms);  // doubled twice
    CHECK(gaps[4] >= 40ms);
    CHECK(gaps[4] < 150ms);  // capped at reconnect_max
    CHECK_FALSE(client.connection->connected());
    CHECK(client.states.empty());
}

TEST_CASE("RedisServer: a Redis that cannot start throws with its log", "[redis]") {
    RedisServer::Options options;
    options.extra_args = {"--no-such-directive", "1"};
    try {
        RedisServer server(options);
        FAIL("redis-server started with an unknown directive");
    } catch (const std::runtime_error& e) {
        CHECK_THAT(e.what(), Catch::Contains("no-such-directive"));
    }
}
