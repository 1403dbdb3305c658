#include "sluice/cli/build_info.hpp"

// Defined on this file only (CMakeLists.txt), so that a new commit recompiles it alone.
#ifndef SLUICE_VERSION
#define SLUICE_VERSION "unknown"
#endif
#ifndef SLUICE_GIT_COMMIT
#define SLUICE_GIT_COMMIT "unknown"
#endif

namespace sluice::cli {

std::string_view version() {
    return SLUICE_VERSION;
}
std::string_view git_commit() {
    return SLUICE_GIT_COMMIT;
}

std::string version_line() {
    return "sluice " + std::string(version()) + " (commit " + std::string(git_commit()) + ")";
}

}  // namespace sluice::cli
