#pragma once
// The version and git commit this binary was built from (CMakeLists.txt, "sluice_build_info"):
// the same values /metrics reports in sluice_build_info. The commit is the one checked out when
// the build was configured, "unknown" outside a git checkout (a docker build's context, a tarball).

#include <string>
#include <string_view>

namespace sluice::cli {

std::string_view version();
std::string_view git_commit();

// What `sluice --version` prints: "sluice VERSION (commit HASH)".
std::string version_line();

}  // namespace sluice::cli
