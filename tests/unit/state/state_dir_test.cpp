// The state folder and its writer thread, in a temporary folder.
#include "sluice/state/state_dir.hpp"

#include <filesystem>
#include <fstream>
#include <future>
#include <set>
#include <unistd.h>

#include <catch2/catch.hpp>

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using sluice::Nanos;
using namespace sluice::state;

// A fresh folder under the system's temp folder, removed with everything in it.
class TempDir {
public:
    TempDir() {
        std::string pattern = (fs::temp_directory_path() / "sluice-state-test-XXXXXX").string();
        path_ = ::mkdtemp(pattern.data());
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path_, ec);
    }
    const fs::path& path() const { return path_; }

private:
    fs::path path_;
};

std::set<std::string> names_in(const fs::path& dir) {
    std::set<std::string> names;
    for (const auto& entry : fs::directory_iterator(dir)) names.insert(entry.path().filename().string());
    return names;
}

std::string contents(const fs::path& file) {
    std::ifstream in(file, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

TEST_CASE("state dir: open creates the folder; writes replace state.bin and leave no temp file",
          "[state][dir]") {
    TempDir temp;
    const auto folder = temp.path() / "nested" / "sluice-state";
    StateDir dir;
    REQUIRE_FALSE(dir.open(folder.string()));
    CHECK(fs::is_directory(folder));
    CHECK(names_in(folder).empty());  // the probe is gone

    CHECK(dir.read(1024).status == StateDir::ReadResult::Status::absent);
    REQUIRE_FALSE(dir.write_atomically("first"));
    REQUIRE_FALSE(dir.write_atomically("second, longer"));
    CHECK(names_in(folder) == std::set<std::string>{"state.bin"});
    const auto read = dir.read(1024);
    CHECK(read.status == StateDir::ReadResult::Status::read);
    CHECK(read.bytes == "second, longer");
    CHECK(dir.file_path() == (folder / "state.bin").string());
}

TEST_CASE("state dir: a file larger than the bound is not read", "[state][dir]") {
    TempDir temp;
    StateDir dir;
    REQUIRE_FALSE(dir.open(temp.path().string()));
    REQUIRE_FALSE(dir.write_atomically(std::string(100, 'x')));
    const auto read = dir.read(99);
    CHECK(read.status == StateDir::ReadResult::Status::too_large);
    CHECK(read.error.find("has 100 bytes, more than the 99 a state file may have") != std::string::npos);
    CHECK(dir.read(100).status == StateDir::ReadResult::Status::read);
}

TEST_CASE("state dir: a folder that cannot be created or written is a clear error", "[state][dir]") {
    TempDir temp;
    // A regular file where a folder should be (chmod would not stop root, which CI runs as).
    const auto blocker = temp.path() / "not-a-folder";
    std::ofstream(blocker) << "x";
    StateDir dir;
    SECTION("the folder's path is a file") {
        const auto error = dir.open(blocker.string());
        REQUIRE(error);
        CHECK(error->starts_with("cannot create the state folder '" + blocker.string() + "': "));
    }
    SECTION("a parent of the folder is a file") {
        const auto error = dir.open((blocker / "state").string());
        REQUIRE(error);
        CHECK(error->starts_with("cannot create the state folder '" + (blocker / "state").string() + "': "));
    }
    SECTION("no folder given") {
        CHECK(dir.open("") == std::optional<std::string>("the state folder is not set"));
    }
    CHECK(dir.write_atomically("x") == std::optional<std::string>("the state folder is not open"));
}

TEST_CASE("state dir: a write that fails leaves state.bin as it was", "[state][dir]") {
    TempDir temp;
    StateDir dir;
    REQUIRE_FALSE(dir.open(temp.path().string()));
    REQUIRE_FALSE(dir.write_atomically("good"));
    // The folder replaced by a file of the same name: every write now fails.
    const auto moved = temp.path().string() + ".moved";
    fs::rename(temp.path(), moved);
    std::ofstream(temp.path()) << "x";
    const auto error = dir.write_atomically("new");
    REQUIRE(error);
    CHECK(error->starts_with("cannot create '" + (temp.path() / ".state.bin.tmp-").string()));
    fs::remove(temp.path());
    fs::rename(moved, temp.path());
    CHECK(dir.read(1024).bytes == "good");
}

TEST_CASE("state dir: set_aside names files by the second and keeps the 3 newest", "[state][dir]") {
    TempDir temp;
    StateDir dir;
    REQUIRE_FALSE(dir.open(temp.path().string()));
    const auto set_aside = [&](std::string bytes, Nanos wall) {
        REQUIRE_FALSE(dir.write_atomically(bytes));
        return dir.set_aside("checksum: the payload's CRC-32 is 1", wall);
    };
    auto result = set_aside("a", 1'700'000'000s + 999ms);
    CHECK(result.error.empty());
    CHECK(result.path == (temp.path() / "state.bin.bad-1700000000").string());
    CHECK(contents(result.path) == "a");
    CHECK(contents(result.path + ".why") == "checksum: the payload's CRC-32 is 1\n");
    CHECK_FALSE(fs::exists(temp.path() / "state.bin"));

    // The same second again: a suffix, not an overwrite.
    result = set_aside("b", 1'700'000'000s);
    CHECK(result.path == (temp.path() / "state.bin.bad-1700000000-1").string());
    set_aside("c", 1'700'000'001s);
    // Ordered by number, not by text: 999 is older than 1000.
    set_aside("d", 999s);
    CHECK(names_in(temp.path()) ==
          std::set<std::string>{"state.bin.bad-1700000000", "state.bin.bad-1700000000.why",
                                "state.bin.bad-1700000000-1", "state.bin.bad-1700000000-1.why",
                                "state.bin.bad-1700000001", "state.bin.bad-1700000001.why"});
    set_aside("e", 1'700'000'002s);
    CHECK(names_in(temp.path()) ==
          std::set<std::string>{"state.bin.bad-1700000000-1", "state.bin.bad-1700000000-1.why",
                                "state.bin.bad-1700000001", "state.bin.bad-1700000001.why",
                                "state.bin.bad-1700000002", "state.bin.bad-1700000002.why"});
    CHECK(contents(temp.path() / "state.bin.bad-1700000002") == "e");

    // Nothing to set aside.
    const auto none = dir.set_aside("x", 1'800'000'000s);
    CHECK(none.path.empty());
    CHECK(none.error.starts_with("cannot rename '" + (temp.path() / "state.bin").string() + "'"));
}

TEST_CASE("state writer: writes what is submitted; flush waits for it", "[state][writer]") {
    TempDir temp;
    StateDir dir;
    REQUIRE_FALSE(dir.open(temp.path().string()));
    StateWriter writer(dir);
    writer.flush();  // nothing submitted: returns at once
    writer.submit("snapshot one", 5s);
    writer.flush();
    CHECK(dir.read(1024).bytes == "snapshot one");
    const auto counters = writer.counters();
    CHECK(counters.writes == 1);
    CHECK(counters.failures == 0);
    CHECK(counters.last_written_wall == 5s);
    CHECK(counters.bytes_last == 12);
}

TEST_CASE("state writer: the latest submitted snapshot wins over unwritten older ones", "[state][writer]") {
    std::promise<void> first_started;
    std::promise<void> release_first;
    auto release = release_first.get_future().share();
    std::vector<std::string> written;  // by the writer thread only, read after flush()
    StateWriter writer([&](std::string_view bytes) -> std::optional<std::string> {
        written.emplace_back(bytes);
        if (written.size() == 1) {
            first_started.set_value();
            release.wait();
        }
        return std::nullopt;
    });
    writer.submit("A", 1s);
    first_started.get_future().wait();  // A is being written
    writer.submit("B", 2s);
    writer.submit("C", 3s);  // replaces B, never written
    release_first.set_value();
    writer.flush();
    CHECK(written == std::vector<std::string>{"A", "C"});
    const auto counters = writer.counters();
    CHECK(counters.writes == 2);
    CHECK(counters.replaced == 1);
    CHECK(counters.last_written_wall == 3s);
}

TEST_CASE("state writer: a failed write is counted with its error; the destructor writes what is pending",
          "[state][writer]") {
    std::vector<std::string> written;
    {
        bool fail = true;
        StateWriter writer([&](std::string_view bytes) -> std::optional<std::string> {
            if (fail) {
                fail = false;
                return "cannot create 'x': No space left on device";
            }
            written.emplace_back(bytes);
            return std::nullopt;
        });
        writer.submit("A", 1s);
        writer.flush();
        auto counters = writer.counters();
        CHECK(counters.failures == 1);
        CHECK(counters.writes == 0);
        CHECK(counters.last_error == "cannot create 'x': No space left on device");
        CHECK(counters.last_written_wall == 0s);
        writer.submit("B", 2s);
    }
    CHECK(written == std::vector<std::string>{"B"});
}

TEST_CASE("state at start: absent, decoded, or set aside with the decoder's reason", "[state][dir]") {
    TempDir temp;
    StateDir dir;
    REQUIRE_FALSE(dir.open(temp.path().string()));
    auto start = read_state_at_start(dir, 1'700'000'000s);
    CHECK_FALSE(start.snapshot);
    CHECK_FALSE(start.set_aside);
    CHECK(start.message == "no state file");

    StateSnapshot saved;
    saved.boot_id = "b";
    saved.limits.push_back(LimitSnapshot{{"daily", 1}, sluice::config::Algorithm::fixed_window, 24h, 0s, {}});
    REQUIRE_FALSE(dir.write_atomically(encode(saved)));
    start = read_state_at_start(dir, 1'700'000'000s);
    REQUIRE(start.snapshot);
    CHECK(*start.snapshot == saved);
    CHECK(start.message == "read 1 limits from '" + dir.file_path() + "'");

    auto damaged = encode(saved);
    damaged.back() = static_cast<char>(damaged.back() ^ 1);
    REQUIRE_FALSE(dir.write_atomically(damaged));
    start = read_state_at_start(dir, 1'700'000'000s);
    CHECK_FALSE(start.snapshot);
    CHECK(start.set_aside);
    const auto aside = (temp.path() / "state.bin.bad-1700000000").string();
    CHECK_THAT(start.message,
               Catch::StartsWith("state.bin set aside as " + aside + ": checksum: the payload's CRC-32 is "));
    CHECK(contents(aside) == damaged);
    CHECK_THAT(contents(aside + ".why"), Catch::StartsWith("checksum: "));
    CHECK_FALSE(fs::exists(dir.file_path()));
    // The next start finds nothing, and starts fresh.
    CHECK(read_state_at_start(dir, 1'700'000'001s).message == "no state file");
}

TEST_CASE("boot id: read and trimmed; empty when missing or too long", "[state][dir]") {
    TempDir temp;
    const auto file = (temp.path() / "boot_id").string();
    std::ofstream(file) << "6f1c0b7e-1e0d-4a7e-9a57-2d3b6f0e9c11\n";
    CHECK(read_boot_id(file) == "6f1c0b7e-1e0d-4a7e-9a57-2d3b6f0e9c11");
    std::ofstream(file) << std::string(200, 'x');
    CHECK(read_boot_id(file).empty());
    CHECK(read_boot_id((temp.path() / "missing").string()).empty());
    // The real one, on Linux: 36 characters (a UUID).
    if (fs::exists("/proc/sys/kernel/random/boot_id")) CHECK(read_boot_id().size() == 36);
}
