#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <deque>
#include <map>
#include <mutex>

#include "support/mock_vendor.hpp"

namespace sluice::test {

namespace {

using Clock = std::chrono::steady_clock;
using WallClock = std::chrono::system_clock;

std::int64_t ceil_seconds(Clock::duration d) {
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
    return ns <= 0 ? 0 : (ns + 999'999'999) / 1'000'000'000;
}

std::int64_t ceil_millis(Clock::duration d) {
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
    return ns <= 0 ? 0 : (ns + 999'999) / 1'000'000;
}

std::string decimal_seconds(std::int64_t millis) {
    char text[32];
    std::snprintf(text, sizeof text, "%lld.%03lld", static_cast<long long>(millis / 1000),
                  static_cast<long long>(millis % 1000));
    return text;
}

// RFC 9110 5.6.7 IMF-fixdate, independent of the process locale.
std::string imf_fixdate(std::int64_t unix_seconds) {
    static constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                              "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    const std::time_t t = static_cast<std::time_t>(unix_seconds);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char text[40];
    std::snprintf(text, sizeof text, "%s, %02d %s %04d %02d:%02d:%02d GMT", kDays[tm.tm_wday], tm.tm_mday,
                  kMonths[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    return text;
}

std::int64_t unix_seconds_ceil(WallClock::time_point t) {
    return ceil_seconds(t.time_since_epoch());
}

}  // namespace

struct MockVendor::State {
    struct Period {
        Clock::time_point start;
        std::int64_t accepted = 0;
    };

    Options options;
    Clock::time_point epoch = Clock::now();  // fixed periods start at epoch + k * window
    mutable std::mutex mutex;
    mutable std::condition_variable changed;
    std::map<std::string, std::deque<Clock::time_point>> windows;  // rolling: accepted, per key
    std::map<std::string, Period> periods;                         // fixed: the current period, per key
    std::vector<Answer> answers;

    Clock::time_point period_start(Clock::time_point t) const {
        return epoch + options.window * ((t - epoch) / options.window);
    }

    MockReply answer(const RecordedRequest& request) {
        const auto now = Clock::now();
        const auto wall_now = WallClock::now();
        // A wall-clock instant as a steady one, for comparing with arrival times.
        const auto steady_of = [&](std::int64_t unix_seconds) {
            return now + std::chrono::duration_cast<Clock::duration>(
                             WallClock::time_point(std::chrono::seconds(unix_seconds)) - wall_now);
        };

        Answer a;
        a.consumer = request.header(kConsumerHeader).value_or(kSluiceConsumer);
        a.key = options.key_header.empty() ? "" : request.header(options.key_header).value_or("");
        a.method = request.method;
        a.target = request.target;
        a.at = now;
        a.retry_at = now;

        const std::lock_guard<std::mutex> lock(mutex);
        // One level's window (a key's, or the organization's): whether one more
        // fits, and, once the decision is made, what remains and when it resets.
        struct Level {
            std::int64_t limit = 0;
            std::int64_t used = 0;
            Clock::duration reset{0};
        };
        const auto look = [&](const std::string& id, std::int64_t limit) {
            Level level;
            level.limit = limit;
            if (options.kind == Window::rolling) {
                auto& window = windows[id];
                while (!window.empty() && window.front() + options.window <= now) window.pop_front();
                level.used = static_cast<std::int64_t>(window.size());
            } else {
                const auto start = period_start(now);
                auto& period = periods[id];
                if (period.start != start) period = Period{start, 0};
                level.used = period.accepted;
            }
            return level;
        };
        const auto take = [&](const std::string& id, Level& level) {
            if (options.kind == Window::rolling) {
                windows[id].push_back(now);
            } else {
                ++periods[id].accepted;
            }
            ++level.used;
        };
        const auto reset_of = [&](const std::string& id) -> Clock::duration {
            if (options.kind == Window::rolling) {
                const auto& window = windows[id];
                return window.empty() ? Clock::duration::zero() : window.front() + options.window - now;
            }
            return period_start(now) + options.window - now;
        };
        static const std::string kOrg = "\x01org";
        Level key_level = look(a.key, options.limit);
        std::optional<Level> org_level;
        if (options.org_limit > 0) org_level = look(kOrg, options.org_limit);
        const bool key_room = key_level.used < key_level.limit;
        const bool org_room = !org_level || org_level->used < org_level->limit;
        const bool accepted = key_room && org_room;
        if (accepted) {
            take(a.key, key_level);
            if (org_level) take(kOrg, *org_level);
        }
        // The level the headers describe: the one that refused, else the closest to its limit.
        bool describe_org = false;
        if (org_level) {
            describe_org = accepted ? org_level->limit - org_level->used < key_level.limit - key_level.used
                                    : !org_room && key_room;
        }
        const Level& described = describe_org ? *org_level : key_level;
        const std::int64_t described_limit = described.limit;
        a.remaining = described.limit - described.used;
        const Clock::duration reset = reset_of(describe_org ? kOrg : a.key);
        a.status = accepted ? 200 : 429;

        auto reply = accepted ? MockReply::echo() : MockReply::fixed(429);
        const auto& style = options.style;
        // Reading order of the sources below is sluice's precedence, lowest first:
        // each later one that is present overrides retry_at.
        if (style.ietf) {
            const auto t = ceil_seconds(reset);
            const auto w = ceil_seconds(options.window);
            reply = reply.with_header(
                "RateLimit", "\"default\";r=" + std::to_string(a.remaining) + ";t=" + std::to_string(t));
            reply = reply.with_header("RateLimit-Policy", "\"default\";q=" + std::to_string(described_limit) +
                                                              ";w=" + std::to_string(w));
            a.retry_at = now + std::chrono::seconds(t);
        }
        switch (style.rate_headers) {
            case VendorStyle::RateHeaders::none: break;
            case VendorStyle::RateHeaders::close: {
                const auto ms = ceil_millis(reset);
                reply = reply.with_header("x-rate-limit-limit", std::to_string(described_limit))
                            .with_header("x-rate-limit-remaining", std::to_string(a.remaining))
                            .with_header("x-rate-limit-reset", decimal_seconds(ms));
                a.retry_at = now + std::chrono::milliseconds(ms);
                break;
            }
            case VendorStyle::RateHeaders::intercom: {
                const auto at = unix_seconds_ceil(wall_now + reset);
                reply = reply.with_header("X-RateLimit-Limit", std::to_string(described_limit))
                            .with_header("X-RateLimit-Remaining", std::to_string(a.remaining))
                            .with_header("X-RateLimit-Reset", std::to_string(at));
                a.retry_at = steady_of(at);
                break;
            }
        }
        if (!accepted) {
            if (style.retry_after_date) {
                const auto at = unix_seconds_ceil(wall_now + reset);
                reply = reply.with_header("Retry-After", imf_fixdate(at));
                a.retry_at = steady_of(at);
            } else if (style.retry_after_decimal) {
                const auto ms = ceil_millis(reset);
                reply = reply.with_header("Retry-After", decimal_seconds(ms));
                a.retry_at = now + std::chrono::milliseconds(ms);
            } else if (style.retry_after) {
                const auto s = ceil_seconds(reset);
                reply = reply.with_header("Retry-After", std::to_string(s));
                a.retry_at = now + std::chrono::seconds(s);
            }
            if (style.body_rate_reset) {
                const auto ms = ceil_millis(reset);
                reply.body = R"({"error":{"message":"API rate limit exceeded","rate_reset":)" +
                             decimal_seconds(ms) + R"(,"rate_limit_type":")" +
                             (describe_org ? "org" : "key") + R"("}})";
                reply = reply.with_header("Content-Type", "application/json");
                a.retry_at = now + std::chrono::milliseconds(ms);
            }
            if (reply.body.empty()) reply.body = "Too Many Requests";
        }
        answers.push_back(std::move(a));
        changed.notify_all();
        return reply;
    }
};

MockVendor::MockVendor(Options options) : state_(std::make_shared<State>()) {
    state_->options = std::move(options);
}

MockVendor::~MockVendor() = default;

MockUpstream::Handler MockVendor::handler() const {
    return [state = state_](const RecordedRequest& request) { return state->answer(request); };
}

MockVendor::Clock::time_point MockVendor::next_period_start() const {
    return state_->period_start(Clock::now()) + state_->options.window;
}

std::vector<MockVendor::Answer> MockVendor::answers() const {
    const std::lock_guard<std::mutex> lock(state_->mutex);
    return state_->answers;
}

std::size_t MockVendor::count(std::string_view consumer, unsigned status) const {
    const std::lock_guard<std::mutex> lock(state_->mutex);
    return static_cast<std::size_t>(
        std::count_if(state_->answers.begin(), state_->answers.end(),
                      [&](const Answer& a) { return a.consumer == consumer && a.status == status; }));
}

std::size_t MockVendor::count(std::string_view consumer) const {
    const std::lock_guard<std::mutex> lock(state_->mutex);
    return static_cast<std::size_t>(std::count_if(state_->answers.begin(), state_->answers.end(),
                                                  [&](const Answer& a) { return a.consumer == consumer; }));
}

bool MockVendor::wait_for(std::string_view consumer, unsigned status, std::size_t count,
                          std::chrono::milliseconds timeout) const {
    std::unique_lock<std::mutex> lock(state_->mutex);
    return state_->changed.wait_for(lock, timeout, [&] {
        return static_cast<std::size_t>(std::count_if(
                   state_->answers.begin(), state_->answers.end(),
                   [&](const Answer& a) { return a.consumer == consumer && a.status == status; })) >= count;
    });
}

}  // namespace sluice::test
