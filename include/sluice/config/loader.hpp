#pragma once
// Loading and validating the YAML configuration. This is the one place where
// sluice throws: every problem is found at load time and reported as a
// ConfigError whose what() reads
//     "<file>:<line>:<column>: <what was wrong>; expected <what is allowed>"
// (line and column 1-based, of the offending node). Unknown keys are errors,
// so a typo is never silently ignored.

#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sluice/config/config.hpp"

namespace sluice::config {

class ConfigError : public std::runtime_error {
public:
    ConfigError(SourceLocation where, const std::string& message)
        : std::runtime_error(where.file + ":" + std::to_string(where.line) + ":" +
                             std::to_string(where.column) + ": " + message),
          where_(std::move(where)) {}
    const SourceLocation& where() const noexcept { return where_; }

private:
    SourceLocation where_;
};

// What the caller, not the file, decides about a load.
struct LoadOptions {
    // Divides every limit window, margin, fixed-window period and utc_offset by this (> 0), so a
    // preset's 5-minute windows run in 10 s: for tests and demos, never production (the vendor's
    // windows do not shrink). `sluice check --vendor` divides the vendor's windows alike.
    double time_scale = 1.0;
    // Searched first for presets (`vendors: {x: {preset: NAME}}`), before the file's
    // `presets_dir:`, `presets/` next to the file and the installed presets (preset_search_path).
    std::string presets_dir;
};

// Reads and validates a file. Throws ConfigError (also for an unreadable file or YAML syntax errors).
std::shared_ptr<const Config> load_config_file(const std::string& path, const LoadOptions& options = {});

// Same, from text; `source_name` stands in for the file name in messages (and its folder is where
// `presets/` and a relative `presets_dir:` are looked for; "<string>": the current directory).
std::shared_ptr<const Config> load_config_string(const std::string& yaml,
                                                 const std::string& source_name = "<string>",
                                                 const LoadOptions& options = {});

// The folders searched for presets, in order: options.presets_dir, the file's `presets_dir:`
// (relative to the file's folder), `presets/` in the file's folder, then the installed presets
// (SLUICE_PRESETS_DIR, set at build time: the source tree's config/presets, or the image's
// /usr/local/share/sluice/presets). The first folder holding NAME.yaml wins.
std::vector<std::string> preset_search_path(const std::string& config_file,
                                            const std::string& presets_dir_key, const LoadOptions& options);

// The presets available on that path (names, sorted, without duplicates).
std::vector<std::string> available_presets(const std::vector<std::string>& search_path);

// "250ms", "10s", "5m", "1h", "1d", also "1500us", "20ns" and compound "1m30s". A bare number is rejected
// (a unit is required). Negative only where allowed ("-5h" for utc_offset). Returns nullopt if malformed.
std::optional<Duration> parse_duration(std::string_view text, bool allow_negative = false);

// A client's Sluice-Max-Wait header (and a traffic log's, `sluice simulate`): "0", "2.5" (seconds)
// or a duration with a unit ("250ms"). Negative or garbage: nullopt.
std::optional<Duration> parse_max_wait_header(std::string_view text);
// "16384", "16k"/"16KiB", "10m"/"10MiB", "1g"/"1GiB" (powers of 1024). Returns nullopt if malformed.
std::optional<std::uint64_t> parse_size(std::string_view text);

}  // namespace sluice::config
