// The state file across restarts (server.state in docs/configuration.md), through the real
// binary: a sluice is stopped (SIGTERM, or SIGKILL after a save) and another one started on
// the same state folder; a quota half used before is still half used after, and the vendor
// never sees more than a limit allows across both processes. A state.bin that cannot be read
// is set aside, never fatal; a state folder that cannot be written stops sluice before it
// listens (exit 3).
//
// Windows are not scaled: no window may end within a test, so a "day" is a real day whose
// period boundary is put 12 hours away (fixed_window_offset), and a sliding window of 5 minutes
// outlasts any run. Every count the tests compare is then within one window.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <signal.h>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "support/http_client.hpp"
#include "support/mock_upstream.hpp"
#include "support/proxy_config.hpp"
#include "support/sluice_process.hpp"
#include "support/synthetic_checks.hpp"

using namespace sluice::test;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

// The file's header (include/sluice/state/snapshot.hpp): "SLUICEST" | u32 version | u64 payload
// length | u32 CRC-32 | payload, little-endian.
constexpr std::size_t kVersionOffset = 8;
constexpr std::size_t kPayloadOffset = 8 + 4 + 8 + 4;

// A folder the test owns, shared by the processes of a restart as server.state.dir (each
// SluiceProcess writes its config into a folder of its own, removed with it). Removed at the end
// unless SLUICE_E2E_KEEP is set.
class TestDir {
public:
    TestDir() {
        std::string pattern = (fs::temp_directory_path() / "sluice-e2e-state-XXXXXX").string();
        if (!::mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed for " + pattern);
        path_ = pattern;
    }
    ~TestDir() {
        if (std::getenv("SLUICE_E2E_KEEP")) return;
        std::error_code ignored;
        fs::remove_all(path_, ignored);
    }
    TestDir(const TestDir&) = delete;
    TestDir& operator=(const TestDir&) = delete;

    const std::string& path() const { return path_; }
    std::string state_dir() const { return path_ + "/state"; }
    std::string state_file() const { return state_dir() + "/state.bin"; }

private:
    std::string path_;
};

std::int64_t unix_seconds() {
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

// A fixed window's offset from UTC midnight that makes the current daily period start 12 hours
// ago: no period boundary falls within a test, whatever the time of day it runs.
std::string fixed_window_offset() {
    return std::to_string(unix_seconds() % 86'400 - 43'200) + "s";
}

// Three limits of 10, each behind a route of its own on listener "main":
//   /daily/   "daily":   a fixed window of a day (always saved)
//   /rolling/ "rolling": a sliding window of 5 minutes (saved: not shorter than min_window 1m)
//   /short/   "short":   a sliding window of 30 s (not saved: shorter than min_window)
// queue.max_wait 0s: a request the limit cannot admit now gets its 429 at once.
struct StateConfig {
    std::string upstream_url;
    std::string state_dir;
    bool enabled = true;
    std::string save_interval = "1s";
    // The limits' names ("another config": the same routes through limits of other names).
    std::string daily_name = "daily";
    std::string rolling_name = "rolling";
    std::string short_name = "short";
    std::string daily_margin = "0s";
    std::string offset = fixed_window_offset();

    std::string yaml() const {
        return yaml_subst(R"(server:
  workers: {WORKERS}
  timeouts: {client_header: 2s, client_body: 5s, client_idle: 10s, client_write: 5s}
  drain_timeout: 2s
  admin:
    listen: "127.0.0.1:0"
  state: {enabled: {ENABLED}, dir: "{DIR}", save_interval: {SAVE}, min_window: 1m}
listeners:
  - name: main
    listen: "127.0.0.1:0"
upstreams:
  vendor:
    url: "{URL}"
    connect_timeout: 1s
    response_timeout: 5s
    body_timeout: 5s
    feedback: {enabled: false}
limits:
  {DAILY}: {algorithm: fixed_window, limit: 10, window: 1d, utc_offset: {OFFSET}, margin: {MARGIN}}
  {ROLLING}: {algorithm: sliding_window, limit: 10, window: 5m}
  {SHORT}: {algorithm: sliding_window, limit: 10, window: 30s}
queue: {max_depth: 100, max_wait: 0s}
routes:
  - name: daily
    match: {path_prefix: /daily/}
    upstream: vendor
    limits: [{DAILY}]
  - name: rolling
    match: {path_prefix: /rolling/}
    upstream: vendor
    limits: [{ROLLING}]
  - name: short
    match: {path_prefix: /short/}
    upstream: vendor
    limits: [{SHORT}]
)",
                          {{"WORKERS", std::to_string(e2e_workers())},
                           {"ENABLED", enabled ? "true" : "false"},
                           {"DIR", state_dir},
                           {"SAVE", save_interval},
                           {"URL", upstream_url},
                           {"DAILY", daily_name},
                           {"ROLLING", rolling_name},
                           {"SHORT", short_name},
                           {"OFFSET", offset},
                           {"MARGIN", daily_margin}});
    }
};

// Sends `count` GETs under `prefix`; each must be admitted and relayed.
void send_admitted(const SluiceProcess& sluice, const std::string& prefix, int count) {
    HttpClient client(sluice.port("main"), 5s);
    for (int i = 0; i < count; ++i) {
        const auto response = client.get(prefix + std::to_string(i));
        INFO(prefix << i << ": " << response.status << " " << response.body);
        REQUIRE(response.status == 200);
    }
}

struct AdmittedRun {
    int admitted = 0;      // 200s before the first refusal
    HttpResponse refusal;  // the first answer that was not 200 (status 0: none within `most`)
};

// Sends GETs under `prefix` until one is not admitted, at most `most`.
AdmittedRun admit_until_refused(const SluiceProcess& sluice, const std::string& prefix, int most) {
    HttpClient client(sluice.port("main"), 5s);
    AdmittedRun run;
    for (int i = 0; i < most; ++i) {
        auto response = client.get(prefix + "after-" + std::to_string(i));
        if (response.status != 200) {
            run.refusal = std::move(response);
            break;
        }
        ++run.admitted;
    }
    return run;
}

// The refusal a limit with no units left gives under max_wait 0s: an immediate 429 naming it.
void check_refused_by(const AdmittedRun& run, const std::string& limit) {
    check_synthetic(run.refusal, 429, "admission_timeout");  // a JSON object, or the test stops here
    CHECK(run.refusal.json().value("limit", "") == limit);
}

// Requests the mock upstream saw under `prefix`, from every process of the test.
std::size_t seen_by_upstream(const MockUpstream& upstream, const std::string& prefix) {
    const auto requests = upstream.requests();
    return static_cast<std::size_t>(
        std::count_if(requests.begin(), requests.end(),
                      [&](const RecordedRequest& r) { return r.target.rfind(prefix, 0) == 0; }));
}

// The value of an unlabelled sample on /metrics, if present.
std::optional<double> metric(const SluiceProcess& sluice, const std::string& name) {
    HttpClient admin(sluice.admin_port(), 5s);
    const auto response = admin.get("/metrics");
    REQUIRE(response.status == 200);
    std::istringstream lines(response.body);
    std::string line;
    while (std::getline(lines, line)) {
        if (line.rfind(name + " ", 0) == 0) return std::stod(line.substr(name.size() + 1));
    }
    return std::nullopt;
}

// Files in the state folder that a damaged state.bin was renamed to (not their .why files).
std::vector<std::string> set_aside_files(const TestDir& dir) {
    std::vector<std::string> out;
    for (const auto& entry : fs::directory_iterator(dir.state_dir())) {
        const auto name = entry.path().filename().string();
        if (name.rfind("state.bin.bad-", 0) == 0 && !name.ends_with(".why"))
            out.push_back(entry.path().string());
    }
    return out;
}

std::string read_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const std::string& path, const std::string& bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << bytes;
    REQUIRE(out.good());
}

// Log lines at error level that mention `needle`.
std::size_t error_lines_with(const std::string& log, const std::string& needle) {
    std::size_t n = 0;
    std::istringstream lines(log);
    std::string line;
    while (std::getline(lines, line))
        if (line.find(" error ") != std::string::npos && line.find(needle) != std::string::npos) ++n;
    return n;
}

// The restarted process after 5 of 10 went through on each limit before the stop: 5 more on
// each, then the limit refuses, and the vendor saw 10 per limit across both processes (no
// window ends during a test). A fresh limit (no state restored) would admit 10 here.
void check_half_used_after_restart(const SluiceProcess& second, const MockUpstream& upstream) {
    const auto daily = admit_until_refused(second, "/daily/", 11);
    CHECK(daily.admitted == 5);
    check_refused_by(daily, "daily");
    const auto rolling = admit_until_refused(second, "/rolling/", 11);
    CHECK(rolling.admitted == 5);
    check_refused_by(rolling, "rolling");
    CHECK(seen_by_upstream(upstream, "/daily/") == 10);
    CHECK(seen_by_upstream(upstream, "/rolling/") == 10);
}

}  // namespace

TEST_CASE("after SIGTERM and a restart on the same state dir, half-used windows stay half used",
          "[e2e][state]") {
    // The default margin (0s), and one: a fixed window's counts are exported as lots dated at
    // the period's start + margin, and both must come back.
    const std::string margin = GENERATE("0s", "1s");
    INFO("daily margin: " << margin);
    TestDir dir;
    MockUpstream upstream;
    StateConfig config{upstream.url(), dir.state_dir()};
    config.daily_margin = margin;
    const auto yaml = config.yaml();
    {
        SluiceProcess first(yaml);
        send_admitted(first, "/daily/", 5);
        send_admitted(first, "/rolling/", 5);
        const auto status = first.stop(5s);
        CHECK(status.exited);
        CHECK(status.code == 0);
        CHECK_FALSE(status.needed_sigkill);
    }
    REQUIRE(fs::exists(dir.state_file()));  // the save at shutdown

    SluiceProcess second(yaml);
    // Without the state file (server.state.enabled: false, or counts lost on the way) each
    // limit would be fresh here and admit 10, not 5: see the enabled: false case below.
    check_half_used_after_restart(second, upstream);
    CHECK(metric(second, "sluice_state_restored_keys") == 2.0);
    CHECK(metric(second, "sluice_state_file_set_aside_total") == 0.0);
    CHECK(second.stop(5s).code == 0);
}

TEST_CASE("with server.state.enabled: false a restart starts every limit fresh", "[e2e][state]") {
    // The control for the case above: the same traffic, the same folder, but no state file.
    TestDir dir;
    MockUpstream upstream;
    StateConfig config{upstream.url(), dir.state_dir()};
    config.enabled = false;
    const auto yaml = config.yaml();
    {
        SluiceProcess first(yaml);
        send_admitted(first, "/daily/", 5);
        send_admitted(first, "/rolling/", 5);
        CHECK(first.stop(5s).code == 0);
    }
    CHECK_FALSE(fs::exists(dir.state_file()));
    SluiceProcess second(yaml);
    CHECK(admit_until_refused(second, "/daily/", 11).admitted == 10);
    CHECK(admit_until_refused(second, "/rolling/", 11).admitted == 10);
    CHECK_FALSE(metric(second, "sluice_state_file_set_aside_total").has_value());
}

TEST_CASE("a sliding window shorter than server.state.min_window is not saved: fresh after a restart",
          "[e2e][state]") {
    TestDir dir;
    MockUpstream upstream;
    const auto yaml = StateConfig{upstream.url(), dir.state_dir()}.yaml();
    {
        SluiceProcess first(yaml);
        send_admitted(first, "/short/", 5);
        send_admitted(first, "/rolling/", 5);
        CHECK(first.stop(5s).code == 0);
    }
    REQUIRE(fs::exists(dir.state_file()));
    SluiceProcess second(yaml);
    // 30 s < min_window 1m: documented as refilled before a restart is over, so not saved.
    CHECK(admit_until_refused(second, "/short/", 11).admitted == 10);
    // ... while the 5-minute window in the same file is restored.
    CHECK(admit_until_refused(second, "/rolling/", 11).admitted == 5);
    CHECK(metric(second, "sluice_state_restored_keys") == 1.0);
}

TEST_CASE("after SIGKILL, counts saved a save_interval after the last request are kept", "[e2e][state]") {
    const std::string margin = GENERATE("0s", "1s");
    INFO("daily margin: " << margin);
    TestDir dir;
    MockUpstream upstream;
    StateConfig config{upstream.url(), dir.state_dir()};
    config.save_interval = "200ms";
    config.daily_margin = margin;
    const auto yaml = config.yaml();
    {
        SluiceProcess first(yaml);
        send_admitted(first, "/daily/", 5);
        send_admitted(first, "/rolling/", 5);
        // The documented bound: a crash loses at most one save_interval of counting. Five
        // intervals later every admission above is on disk; no save at shutdown follows a SIGKILL.
        std::this_thread::sleep_for(1s);
        REQUIRE(::kill(first.pid(), SIGKILL) == 0);
        const auto status = first.stop(5s);
        CHECK_FALSE(status.exited);
        CHECK(status.signal == SIGKILL);
    }
    REQUIRE(fs::exists(dir.state_file()));  // a periodic save: nothing ran at the kill

    SluiceProcess second(yaml);
    // Without the periodic save, or with it not restored, each limit would admit 10 here.
    check_half_used_after_restart(second, upstream);
}

TEST_CASE("a damaged state.bin is set aside: sluice logs it, counts it, and serves without it",
          "[e2e][state]") {
    // Each damage and the reason (snapshot.hpp's decode_error_name) it must be set aside for.
    struct Damage {
        const char* name;
        const char* reason;
    };
    const auto damage =
        GENERATE(Damage{"a flipped payload byte", "checksum"}, Damage{"cut in half", "truncated"},
                 Damage{"format version 99", "future_version"}, Damage{"a bad magic", "bad_magic"});
    INFO("state.bin with " << damage.name);
    TestDir dir;
    MockUpstream upstream;
    const auto yaml = StateConfig{upstream.url(), dir.state_dir()}.yaml();
    {
        SluiceProcess first(yaml);
        send_admitted(first, "/daily/", 5);
        CHECK(first.stop(5s).code == 0);
    }
    auto bytes = read_bytes(dir.state_file());
    REQUIRE(bytes.size() > kPayloadOffset);
    const std::string reason = damage.reason;
    if (reason == "checksum") {
        bytes[kPayloadOffset + (bytes.size() - kPayloadOffset) / 2] ^= 0x20;
    } else if (reason == "truncated") {
        bytes.resize(bytes.size() / 2);
    } else if (reason == "future_version") {
        const char version[4] = {99, 0, 0, 0};
        bytes.replace(kVersionOffset, 4, version, 4);
    } else {
        bytes[0] = 'X';
    }
    write_bytes(dir.state_file(), bytes);

    const auto started_at = unix_seconds();
    SluiceProcess second(yaml);  // throws if it does not start
    // It serves, and as if fresh: the daily window used 5 of 10 before, and admits 10 now.
    const auto daily = admit_until_refused(second, "/daily/", 11);
    CHECK(daily.admitted == 10);
    check_refused_by(daily, "daily");

    const auto moved = set_aside_files(dir);
    REQUIRE(moved.size() == 1);
    // Named state.bin.bad-<unix seconds> of when it was set aside.
    const auto suffix =
        fs::path(moved.front()).filename().string().substr(std::string("state.bin.bad-").size());
    INFO("set aside as " << moved.front());
    REQUIRE_FALSE(suffix.empty());
    REQUIRE(std::all_of(suffix.begin(), suffix.end(), [](char c) { return c >= '0' && c <= '9'; }));
    CHECK(std::stoll(suffix) >= started_at - 1);
    CHECK(std::stoll(suffix) <= unix_seconds() + 1);
    CHECK(read_bytes(moved.front()) == bytes);  // moved as it was, for a post-mortem
    const auto why = read_bytes(moved.front() + ".why");
    INFO(".why: " << why);
    CHECK(why.find(reason) != std::string::npos);
    const auto log = second.stderr_text();
    INFO("stderr: " << log);
    CHECK(error_lines_with(log, "set aside") == 1);
    CHECK(metric(second, "sluice_state_file_set_aside_total") == 1.0);
    CHECK(metric(second, "sluice_state_restored_keys") == 0.0);

    const auto status = second.stop(5s);
    CHECK(status.exited);
    CHECK(status.code == 0);
    // A good file took the damaged one's place: its 10 are kept from here on.
    CHECK(fs::exists(dir.state_file()));
    CHECK(read_bytes(dir.state_file()) != bytes);
}

TEST_CASE("a state file naming some of the config's limits restores those and drops the others",
          "[e2e][state]") {
    TestDir dir;
    MockUpstream upstream;
    StateConfig config{upstream.url(), dir.state_dir()};
    {
        SluiceProcess first(config.yaml());
        send_admitted(first, "/daily/", 5);
        send_admitted(first, "/rolling/", 5);
        CHECK(first.stop(5s).code == 0);
    }
    REQUIRE(fs::exists(dir.state_file()));
    config.daily_name = "daily-v2";  // the same route through a limit of another name
    SluiceProcess second(config.yaml());
    // Nothing saved under "daily" reaches "daily-v2": a name is a limit's identity.
    CHECK(admit_until_refused(second, "/daily/", 11).admitted == 10);
    CHECK(admit_until_refused(second, "/rolling/", 11).admitted == 5);
    CHECK(set_aside_files(dir).empty());  // a readable file of this config, in part
    CHECK(metric(second, "sluice_state_file_set_aside_total") == 0.0);
    CHECK(metric(second, "sluice_state_restored_keys") == 1.0);
    const auto log = second.stderr_text();
    INFO("stderr: " << log);
    CHECK(log.find("not restored: daily") != std::string::npos);
}

TEST_CASE("a state file naming none of the config's limits is set aside as another configuration's",
          "[e2e][state]") {
    // docs/deployment.md, "Set-aside files": a shared or reused folder's file is not this
    // config's history.
    TestDir dir;
    MockUpstream upstream;
    StateConfig config{upstream.url(), dir.state_dir()};
    {
        SluiceProcess first(config.yaml());
        send_admitted(first, "/daily/", 5);
        send_admitted(first, "/rolling/", 5);
        CHECK(first.stop(5s).code == 0);
    }
    const auto saved = read_bytes(dir.state_file());
    REQUIRE_FALSE(saved.empty());
    config.daily_name = "daily-v2";
    config.rolling_name = "rolling-v2";
    config.short_name = "short-v2";
    SluiceProcess second(config.yaml());
    CHECK(admit_until_refused(second, "/daily/", 11).admitted == 10);
    CHECK(admit_until_refused(second, "/rolling/", 11).admitted == 10);
    const auto moved = set_aside_files(dir);
    REQUIRE(moved.size() == 1);
    CHECK(read_bytes(moved.front()) == saved);
    const auto why = read_bytes(moved.front() + ".why");
    INFO(".why: " << why);
    CHECK(why.find("another configuration") != std::string::npos);
    const auto log = second.stderr_text();
    INFO("stderr: " << log);
    CHECK(error_lines_with(log, "set aside") == 1);
    CHECK(metric(second, "sluice_state_file_set_aside_total") == 1.0);
    CHECK(metric(second, "sluice_state_restored_keys") == 0.0);
}

TEST_CASE("a state dir that cannot be created stops sluice with exit 3 naming server.state.dir",
          "[e2e][state]") {
    // Below a regular file, or the file itself: no folder can be made there, even by root
    // (chmod would not stop root, and CI runs as root).
    const std::string below = GENERATE("/state", "");
    TestDir dir;
    MockUpstream upstream;
    const auto blocker = dir.path() + "/afile";
    write_bytes(blocker, "not a folder\n");
    StateConfig config{upstream.url(), blocker + below};
    INFO("server.state.dir: " << config.state_dir);

    const auto attempt = try_start_sluice(config.yaml());
    INFO("stderr: " << attempt.stderr_text);
    CHECK_FALSE(attempt.became_ready);  // it never listened
    CHECK(attempt.exit_code == 3);
    CHECK(attempt.stderr_text.find("server.state.dir") != std::string::npos);
    CHECK(attempt.stderr_text.find(blocker) != std::string::npos);
    CHECK(read_bytes(blocker) == "not a folder\n");

    // The same folder with the state file off: it starts and serves.
    config.enabled = false;
    SluiceProcess sluice(config.yaml());
    HttpClient client(sluice.port("main"), 5s);
    CHECK(client.get("/daily/x").status == 200);
}
