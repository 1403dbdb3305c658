// LimitService::install (reload): limits matched by name and StableId keep
// their limiter, changed ones carry their counts (and permits in flight) to a
// new limiter, removed ones are retired; a reload never grants a fresh quota.

#include <chrono>
#include <memory>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <catch2/catch.hpp>

#include "sluice/common/clock.hpp"
#include "sluice/proxy/limit_service.hpp"

using namespace std::chrono_literals;
using sluice::FakeClock;
using sluice::Nanos;
using sluice::config::Algorithm;
using sluice::config::LimitConfig;
using sluice::limit::LimitUse;
using sluice::queue::Outcome;

namespace {

LimitConfig limit_of(const char* name, Algorithm algorithm, std::int64_t limit, Nanos window = 60s) {
    LimitConfig c;
    c.name = name;
    c.algorithm = algorithm;
    c.limit = limit;
    c.window = algorithm == Algorithm::concurrency ? Nanos{0} : window;
    return c;
}

struct Fixture {
    boost::asio::io_context ioc;
    FakeClock clock;
    std::shared_ptr<sluice::proxy::LimitService> limits =
        std::make_shared<sluice::proxy::LimitService>(ioc, clock);

    // Admitted at once (true) or refused (no waiting: max_wait 0).
    bool admit(std::size_t slot) {
        const auto a =
            limits->submit(sluice::queue::AdmissionRequest{0, {LimitUse{slot, 0, 1}}, Nanos{0}, 10},
                           ioc.get_executor(), [] { return [](const sluice::queue::Admission&) {}; });
        return a.outcome == Outcome::admitted;
    }
    int admit_all(std::size_t slot) {
        int n = 0;
        while (n < 100 && admit(slot)) ++n;
        return n;
    }
};

}  // namespace

TEST_CASE("a reload keeps an unchanged limit's limiter and carries a changed one's count", "[reload]") {
    Fixture f;
    auto first = f.limits->install(
        {limit_of("daily", Algorithm::sliding_window, 5), limit_of("calls", Algorithm::concurrency, 2)});
    REQUIRE(first.error.empty());
    REQUIRE(first.slots == std::vector<std::size_t>{0, 1});
    CHECK(first.added == std::vector<std::string>{"daily", "calls"});
    for (int i = 0; i < 3; ++i) REQUIRE(f.admit(0));
    REQUIRE(f.admit(1));
    REQUIRE(f.admit(1));

    // daily unchanged; calls 2 -> 3 in flight.
    auto second = f.limits->install(
        {limit_of("daily", Algorithm::sliding_window, 5), limit_of("calls", Algorithm::concurrency, 3)});
    CHECK(second.kept == std::vector<std::string>{"daily"});
    CHECK(second.carried == std::vector<std::string>{"calls"});
    REQUIRE(second.slots.size() == 2);
    CHECK(second.slots[0] == 0);
    const auto calls = second.slots[1];
    CHECK(calls != 1);
    // The two exchanges admitted before still count: one more, not three.
    CHECK(f.admit_all(calls) == 1);
    // One of them ends: its release names the old limit and reaches the new one.
    f.limits->release({LimitUse{1, 0, 1}});
    CHECK(f.admit_all(calls) == 1);

    // daily 5 -> 8 per minute: the 3 used are carried, so 5 more, not 8.
    auto third = f.limits->install({limit_of("daily", Algorithm::sliding_window, 8)});
    CHECK(third.carried == std::vector<std::string>{"daily"});
    CHECK(third.removed == std::vector<std::string>{"calls"});
    CHECK(f.admit_all(third.slots[0]) == 5);
    // A minute later the carried units have left the window.
    f.clock.advance(61s);
    CHECK(f.admit_all(third.slots[0]) == 8);
}

TEST_CASE("a limit whose only change is enforce gets a new limiter with its exact count", "[reload]") {
    Fixture f;
    auto first = f.limits->install({limit_of("daily", Algorithm::fixed_window, 4, 24h)});
    for (int i = 0; i < 4; ++i) REQUIRE(f.admit(first.slots[0]));
    auto shadow = limit_of("daily", Algorithm::fixed_window, 4, 24h);
    shadow.enforce = false;
    auto second = f.limits->install({shadow});
    CHECK(second.carried == std::vector<std::string>{"daily"});
    auto enforced_again = f.limits->install({limit_of("daily", Algorithm::fixed_window, 4, 24h)});
    CHECK_FALSE(f.admit(enforced_again.slots[0]));  // still 4 of 4 today
}
