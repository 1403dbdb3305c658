// The access log's bounded buffer (access_log/line_buffer.hpp): whole lines or none,
// drops counted, written lines counted from what the writer consumed, and the ring's wrap.

#include "sluice/access_log/line_buffer.hpp"

#include <string>
#include <thread>

#include <catch2/catch.hpp>

using sluice::access_log::LineBuffer;

namespace {

std::string contents(const LineBuffer::Pending& pending) {
    return std::string(pending.first) + std::string(pending.second);
}

}  // namespace

TEST_CASE("a full buffer drops the whole line and counts it", "[access-log]") {
    LineBuffer buffer(10);
    CHECK(buffer.try_append("abcd\n"));
    CHECK(buffer.try_append("efg\n"));
    CHECK_FALSE(buffer.try_append("hi\n"));  // 9 used: 1 free
    CHECK(buffer.try_append("\n"));          // exactly fits
    CHECK_FALSE(buffer.try_append("\n"));
    CHECK(buffer.lines_dropped() == 2);
    CHECK(contents(buffer.pending()) == "abcd\nefg\n\n");
    CHECK(buffer.lines_written() == 0);
}

TEST_CASE("a line longer than the buffer is dropped, never cut", "[access-log]") {
    LineBuffer buffer(8);
    CHECK_FALSE(buffer.try_append("123456789\n"));
    CHECK(buffer.lines_dropped() == 1);
    CHECK(buffer.pending().size() == 0);
}

TEST_CASE("written lines are counted as the writer consumes them, partial writes included", "[access-log]") {
    LineBuffer buffer(64);
    REQUIRE(buffer.try_append("one\n"));
    REQUIRE(buffer.try_append("two\n"));
    buffer.consume_written(2);  // "on": no line ended
    CHECK(buffer.lines_written() == 0);
    CHECK(contents(buffer.pending()) == "e\ntwo\n");
    buffer.consume_written(4);  // "e\ntw"
    CHECK(buffer.lines_written() == 1);
    buffer.consume_written(100);  // more than there is: what there is
    CHECK(buffer.lines_written() == 2);
    CHECK(buffer.pending().size() == 0);
}

TEST_CASE("bytes lost to a write error count as dropped lines", "[access-log]") {
    LineBuffer buffer(64);
    REQUIRE(buffer.try_append("one\n"));
    REQUIRE(buffer.try_append("two\n"));
    buffer.consume_lost(buffer.pending().size());
    CHECK(buffer.lines_dropped() == 2);
    CHECK(buffer.lines_written() == 0);
}

TEST_CASE("the ring wraps: a line may come back in two pieces, in order", "[access-log]") {
    LineBuffer buffer(10);
    REQUIRE(buffer.try_append("abcdef\n"));  // 7 bytes
    buffer.consume_written(7);
    REQUIRE(buffer.try_append("123456\n"));  // 3 at the end, 4 at the start
    const auto pending = buffer.pending();
    CHECK(pending.first == "123");
    CHECK(pending.second == "456\n");
    CHECK(buffer.try_append("xyz\n") == false);  // 7 used: 3 free
    CHECK(buffer.try_append("xy\n"));
    CHECK(contents(buffer.pending()) == "123456\nxy\n");
    buffer.consume_written(10);
    CHECK(buffer.lines_written() == 3);
    CHECK(buffer.lines_dropped() == 1);
}

TEST_CASE("wait_pending takes a batch: after the timeout, or at once when half full or woken",
          "[access-log]") {
    LineBuffer buffer(64);
    CHECK(buffer.wait_pending(std::chrono::milliseconds(1)).size() == 0);
    REQUIRE(buffer.try_append("x\n"));
    CHECK(buffer.wait_pending(std::chrono::milliseconds(1)).size() == 2);  // less than half: the timeout
    buffer.consume_written(2);
    REQUIRE(buffer.try_append(std::string(31, 'y') + "\n"));  // half full
    // Returns at once (an hour is the test's failure, not a wait it relies on).
    CHECK(buffer.wait_pending(std::chrono::hours(1)).size() == 32);
    buffer.consume_written(32);
    std::thread waker([&buffer] { buffer.wake(); });
    CHECK(buffer.wait_pending(std::chrono::hours(1)).size() == 0);
    waker.join();
}

TEST_CASE("an append that fills half the buffer wakes a waiting writer", "[access-log]") {
    LineBuffer buffer(64);
    std::thread appender([&buffer] {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));  // most likely after the wait began
        buffer.try_append(std::string(40, 'z') + "\n");
    });
    CHECK(buffer.wait_pending(std::chrono::hours(1)).size() == 41);
    appender.join();
}

TEST_CASE("lines appended from several threads all arrive whole or are counted as dropped", "[access-log]") {
    LineBuffer buffer(4096);
    constexpr int kThreads = 4;
    constexpr int kLines = 2000;
    std::atomic<bool> done{false};
    std::string received;
    std::thread writer([&] {
        while (true) {
            const auto pending = buffer.wait_pending(std::chrono::milliseconds(5));
            received += contents(pending);
            buffer.consume_written(pending.size());
            if (pending.size() == 0 && done.load()) break;
        }
    });
    std::vector<std::thread> appenders;
    for (int t = 0; t < kThreads; ++t) {
        appenders.emplace_back([&buffer, t] {
            const std::string line = "thread-" + std::to_string(t) + "-line\n";
            for (int i = 0; i < kLines; ++i) buffer.try_append(line);
        });
    }
    for (auto& a : appenders) a.join();
    done = true;
    writer.join();
    CHECK(buffer.lines_written() + buffer.lines_dropped() == kThreads * kLines);
    CHECK(static_cast<std::uint64_t>(std::count(received.begin(), received.end(), '\n')) ==
          buffer.lines_written());
    // Every line whole: the text is a sequence of the lines sent.
    std::size_t at = 0;
    while (at < received.size()) {
        const auto end = received.find('\n', at);
        REQUIRE(end != std::string::npos);
        const auto line = received.substr(at, end - at);
        CHECK((line.rfind("thread-", 0) == 0 && line.size() == 13 && line.substr(8) == "-line"));
        at = end + 1;
    }
}
