// The command line of `sluice --check` with presets: --vendor's exit status and report,
// --print's output loading back, --time-scale. No sockets: the binary only reads files.

#include <string>

#include <catch2/catch.hpp>

#include "support/sluice_process.hpp"

using namespace sluice::test;

namespace {

const std::string kPresets = SLUICE_SOURCE_DIR "/config/presets";

CheckResult check(const std::string& yaml, std::vector<std::string> args) {
    args.insert(args.begin(), {"--presets-dir", kPresets});
    return run_sluice_check(yaml, "sluice.yaml", args);
}

}  // namespace

TEST_CASE("sluice check --vendor: exit 0 when every rule is kept, 1 when one is exceeded", "[e2e][check]") {
    const auto kept = check("vendors:\n  intercom: {preset: intercom, path_prefix: /intercom/}\n",
                            {"--vendor", "intercom"});
    INFO(kept.stdout_text << kept.stderr_text);
    CHECK(kept.exit_code == 0);
    CHECK(
        kept.stdout_text.find("kept      per-10s: 166 per rolling 10s; worst case 166 (intercom.rolling)") !=
        std::string::npos);

    const auto exceeded =
        check("vendors:\n  intercom:\n    preset: intercom\n    limits: {rolling: {limit: 200}}\n",
              {"--vendor", "all"});
    INFO(exceeded.stdout_text << exceeded.stderr_text);
    CHECK(exceeded.exit_code == 1);
    CHECK(exceeded.stdout_text.find("EXCEEDED  per-10s: 166 per rolling 10s; worst case 200") !=
          std::string::npos);

    const auto unknown = check("vendors:\n  intercom: {preset: intercom}\n", {"--vendor", "intercm"});
    CHECK(unknown.exit_code == 2);
    CHECK(
        unknown.stderr_text.find("no vendor instance 'intercm' in the configuration (there are: intercom)") !=
        std::string::npos);
}

TEST_CASE("sluice check --print writes YAML that sluice loads back", "[e2e][check]") {
    const auto printed =
        check("vendors:\n  convertr: {preset: convertr, path_prefix: /convertr/}\n", {"--print"});
    INFO(printed.stderr_text);
    REQUIRE(printed.exit_code == 0);
    CHECK(printed.stdout_text.find("convertr.lead-result:") != std::string::npos);
    CHECK(printed.stderr_text.find(": OK (") != std::string::npos);  // the summary stays out of the YAML
    const auto again = run_sluice_check(printed.stdout_text);
    INFO(again.stderr_text);
    CHECK(again.exit_code == 0);
    CHECK(again.stdout_text.find("1 listeners, 1 upstreams, 4 limits, 3 routes") != std::string::npos);
}

TEST_CASE("sluice check --time-scale divides the windows of the limits and of the policy alike",
          "[e2e][check]") {
    const auto scaled = check("vendors:\n  convertr: {preset: convertr}\n",
                              {"--time-scale", "30", "--vendor", "convertr", "--print"});
    INFO(scaled.stderr_text);
    CHECK(scaled.exit_code == 0);
    CHECK(scaled.stdout_text.find("window: 10s") != std::string::npos);
    CHECK(scaled.stderr_text.find("blanket: 3000 per rolling 10s; worst case 3000") != std::string::npos);
    CHECK(check("vendors:\n  c: {preset: convertr}\n", {"--time-scale", "0"}).exit_code == 2);
}
