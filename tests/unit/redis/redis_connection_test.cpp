#include "sluice/redis/redis_connection.hpp"

#include <catch2/catch.hpp>

#include "support/redis_server.hpp"

using sluice::test::RedisServer;

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

TEST_CASE("RedisServer: requirepass and a unix socket", "[redis]") {
    RedisServer::Options options;
    options.requirepass = "s3cret";
    options.unix_socket = true;
    RedisServer server(options);
    CHECK(server.command({"PING"}).text() == "PONG");
    CHECK_FALSE(server.unix_path().empty());
    CHECK(server.command({"CONFIG", "GET", "unixsocket"}).elements.at(1).str == server.unix_path());
}

TEST_CASE("Script: sha1 as Redis computes it", "[redis]") {
    RedisServer server;
    const sluice::redis::Script script("return 1");
    CHECK(server.command({"SCRIPT", "LOAD", script.source}).str == script.sha1);
}
