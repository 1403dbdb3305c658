#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <set>
#include <signal.h>
#include <spawn.h>
#include <sstream>
#include <stdexcept>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "support/sluice_process.hpp"

// The listener below needs Catch's reporter interfaces.
#define CATCH_CONFIG_EXTERNAL_INTERFACES
#include <catch2/catch.hpp>

extern char** environ;

#ifndef SLUICE_BINARY
#error "SLUICE_BINARY must name the sluice executable under test"
#endif

namespace sluice::test {
namespace {

constexpr std::size_t kStderrTail = 12 * 1024;

std::string make_temp_dir(const char* prefix) {
    std::string pattern =
        (std::filesystem::temp_directory_path() / (std::string(prefix) + "XXXXXX")).string();
    if (!::mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed for " + pattern);
    return pattern;
}

void write_file(const std::string& path, const std::string& text) {
    std::ofstream out(path, std::ios::trunc);
    out << text;
    if (!out) throw std::runtime_error("cannot write " + path);
}

std::string read_file(const std::string& path) {
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

// Spawns `args` with stdin from /dev/null and stdout/stderr into files.
pid_t spawn_process(const std::vector<std::string>& args, const std::string& stdout_path,
                    const std::string& stderr_path, const std::vector<std::string>& environment = {}) {
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 1, stdout_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&actions, 2, stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    std::vector<char*> argv;
    for (const auto& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
    argv.push_back(nullptr);
    std::vector<char*> envp;
    for (char** entry = environ; *entry; ++entry) envp.push_back(*entry);
    for (const auto& entry : environment) envp.push_back(const_cast<char*>(entry.c_str()));
    envp.push_back(nullptr);
    pid_t pid = -1;
    const int rc = ::posix_spawn(&pid, args[0].c_str(), &actions, nullptr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) throw std::runtime_error("posix_spawn " + args[0] + " failed: " + std::strerror(rc));
    return pid;
}

std::uint64_t proc_status_kib(pid_t pid, std::string_view key) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind(key, 0) == 0 && line.size() > key.size() && line[key.size()] == ':') {
            return std::strtoull(line.c_str() + key.size() + 1, nullptr, 10);
        }
    }
    return 0;
}

// Live processes, so a failed assertion can show what sluice logged.
std::mutex registry_mutex;
std::set<SluiceProcess*> registry;

struct DumpSluiceStderrOnFailure : Catch::TestEventListenerBase {
    using TestEventListenerBase::TestEventListenerBase;

    bool assertionEnded(const Catch::AssertionStats& stats) override {
        if (!stats.assertionResult.isOk()) {
            std::lock_guard lock(registry_mutex);
            for (auto* process : registry) process->dump_stderr("an assertion failed");
        }
        return true;
    }
};

}  // namespace
}  // namespace sluice::test

using sluice::test::DumpSluiceStderrOnFailure;
CATCH_REGISTER_LISTENER(DumpSluiceStderrOnFailure)

namespace sluice::test {

std::string yaml_subst(std::string text,
                       std::initializer_list<std::pair<std::string_view, std::string>> values) {
    for (const auto& [key, value] : values) {
        const std::string needle = "{" + std::string(key) + "}";
        for (auto at = text.find(needle); at != std::string::npos;
             at = text.find(needle, at + value.size())) {
            text.replace(at, needle.size(), value);
        }
    }
    return text;
}

SluiceProcess::SluiceProcess(const std::string& yaml) : SluiceProcess(yaml, Options{}) {}

SluiceProcess::SluiceProcess(const std::string& yaml, Options options) {
    dir_ = make_temp_dir("sluice-e2e-");
    config_path_ = dir_ + "/sluice.yaml";
    ready_path_ = dir_ + "/ready.json";
    stderr_path_ = dir_ + "/stderr.log";
    write_file(config_path_, yaml);
    {
        std::lock_guard lock(registry_mutex);
        registry.insert(this);
    }
    try {
        spawn(options);
        wait_ready(options.ready_timeout);
    } catch (...) {
        stop(std::chrono::seconds(1));
        {
            std::lock_guard lock(registry_mutex);
            registry.erase(this);
        }
        std::error_code ignored;
        std::filesystem::remove_all(dir_, ignored);
        throw;
    }
}

SluiceProcess::~SluiceProcess() {
    if (std::uncaught_exceptions() > 0) dump_stderr("the test is unwinding");
    stop();
    {
        std::lock_guard lock(registry_mutex);
        registry.erase(this);
    }
    if (!std::getenv("SLUICE_E2E_KEEP")) {
        std::error_code ignored;
        std::filesystem::remove_all(dir_, ignored);
    }
}

namespace {

// SLUICE_E2E_BINARY runs the suite against another build (e.g. a sanitizer build).
std::string sluice_binary() {
    const char* other = std::getenv("SLUICE_E2E_BINARY");
    return other && *other ? other : SLUICE_BINARY;
}

}  // namespace

void SluiceProcess::spawn(const Options& options) {
    std::vector<std::string> args = {sluice_binary(), "--config", config_path_, "--ready-file", ready_path_};
    args.insert(args.end(), options.extra_args.begin(), options.extra_args.end());
    pid_ = spawn_process(args, options.stdout_path.empty() ? dir_ + "/stdout.log" : options.stdout_path,
                         stderr_path_, options.environment);
}

void SluiceProcess::wait_ready(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
        if (std::filesystem::exists(ready_path_)) {
            const auto ready = nlohmann::json::parse(read_file(ready_path_));
            if (ready.at("pid").get<pid_t>() != pid_) {
                throw std::runtime_error("ready file names pid " + ready.at("pid").dump() + ", spawned " +
                                         std::to_string(pid_));
            }
            for (const auto& [name, port] : ready.at("listeners").items()) {
                ports_[name] = port.get<std::uint16_t>();
            }
            admin_port_ = ready.value("admin", std::uint16_t{0});
            return;
        }
        if (reap(false)) {
            throw std::runtime_error("sluice exited (code " + std::to_string(exit_status_.code) +
                                     ", signal " + std::to_string(exit_status_.signal) +
                                     ") before it was ready; stderr:\n" + stderr_text());
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    throw std::runtime_error("sluice wrote no ready file within " + std::to_string(timeout.count()) +
                             " ms; stderr:\n" + stderr_text());
}

std::uint16_t SluiceProcess::port(const std::string& listener) const {
    const auto it = ports_.find(listener);
    if (it == ports_.end()) throw std::out_of_range("the ready file names no listener '" + listener + "'");
    return it->second;
}

std::uint64_t SluiceProcess::peak_rss_bytes() const {
    return reaped_ ? 0 : proc_status_kib(pid_, "VmHWM") * 1024;
}

std::uint64_t SluiceProcess::current_rss_bytes() const {
    return reaped_ ? 0 : proc_status_kib(pid_, "VmRSS") * 1024;
}

std::string SluiceProcess::stderr_text() const {
    return read_file(stderr_path_);
}

bool SluiceProcess::running() {
    return pid_ > 0 && !reap(false);
}

bool SluiceProcess::reap(bool block) {
    if (reaped_ || pid_ <= 0) return true;
    int status = 0;
    const pid_t rc = ::waitpid(pid_, &status, block ? 0 : WNOHANG);
    if (rc != pid_) return false;
    reaped_ = true;
    exit_status_.exited = WIFEXITED(status);
    exit_status_.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    exit_status_.signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    return true;
}

SluiceProcess::ExitStatus SluiceProcess::stop(std::chrono::milliseconds grace) {
    if (pid_ <= 0 || reap(false)) return exit_status_;
    ::kill(pid_, SIGTERM);
    const auto deadline = std::chrono::steady_clock::now() + grace;
    while (std::chrono::steady_clock::now() < deadline) {
        if (reap(false)) return exit_status_;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    ::kill(pid_, SIGKILL);
    reap(true);
    exit_status_.needed_sigkill = true;
    return exit_status_;
}

void SluiceProcess::dump_stderr(const char* why) {
    if (dumped_) return;
    dumped_ = true;
    auto text = stderr_text();
    if (text.size() > kStderrTail) text = "[...]\n" + text.substr(text.size() - kStderrTail);
    std::cerr << "----- sluice (pid " << pid_ << ", " << dir_ << ") stderr, shown because " << why
              << " -----\n"
              << text << (text.empty() || text.back() == '\n' ? "" : "\n")
              << "----- end of sluice stderr -----\n";
}

CheckResult run_sluice_check(const std::string& yaml, const std::string& file_name,
                             const std::vector<std::string>& extra_args) {
    const auto dir = make_temp_dir("sluice-check-");
    const auto config_path = dir + "/" + file_name;
    write_file(config_path, yaml);
    std::vector<std::string> args{"--check", "--config", config_path};
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    auto result = run_sluice_command(args);
    result.config_path = config_path;
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
    return result;
}

CheckResult run_sluice_command(const std::vector<std::string>& arguments) {
    const auto dir = make_temp_dir("sluice-command-");
    CheckResult result;
    std::vector<std::string> args{sluice_binary()};
    args.insert(args.end(), arguments.begin(), arguments.end());
    const pid_t pid = spawn_process(args, dir + "/stdout.log", dir + "/stderr.log");
    int status = 0;
    bool exited = false;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
        if (::waitpid(pid, &status, WNOHANG) == pid) {
            exited = true;
            break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    if (!exited) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &status, 0);
    }
    result.exit_code = exited && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    result.stdout_text = read_file(dir + "/stdout.log");
    result.stderr_text = read_file(dir + "/stderr.log");
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
    return result;
}

StartAttempt try_start_sluice(const std::string& yaml, const std::vector<std::string>& extra_args,
                              std::chrono::milliseconds timeout) {
    const auto dir = make_temp_dir("sluice-start-");
    const auto config_path = dir + "/sluice.yaml";
    const auto ready_path = dir + "/ready.json";
    write_file(config_path, yaml);
    std::vector<std::string> args{sluice_binary(), "--config", config_path, "--ready-file", ready_path};
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    const pid_t pid = spawn_process(args, dir + "/stdout.log", dir + "/stderr.log");
    StartAttempt attempt;
    int status = 0;
    bool exited = false;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
        if (::waitpid(pid, &status, WNOHANG) == pid) {
            exited = true;
            break;
        }
        if (std::filesystem::exists(ready_path)) {
            attempt.became_ready = true;
            break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    if (!exited) {
        // Ready (or hung): not what the caller expected, so it gets no chance to linger.
        ::kill(pid, SIGTERM);
        bool reaped = false;
        const auto grace = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        while (!reaped && std::chrono::steady_clock::now() < grace) {
            reaped = ::waitpid(pid, &status, WNOHANG) == pid;
            if (!reaped) std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        if (!reaped) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, &status, 0);
        }
    } else if (WIFEXITED(status)) {
        attempt.exit_code = WEXITSTATUS(status);
    }
    attempt.stderr_text = read_file(dir + "/stderr.log");
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
    return attempt;
}

}  // namespace sluice::test
