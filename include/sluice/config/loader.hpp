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

// Reads and validates a file. Throws ConfigError (also for an unreadable file or YAML syntax errors).
std::shared_ptr<const Config> load_config_file(const std::string& path);

// Same, from text; `source_name` stands in for the file name in messages.
std::shared_ptr<const Config> load_config_string(const std::string& yaml,
                                                 const std::string& source_name = "<string>");

// "250ms", "10s", "5m", "1h", "1d", also "1500us", "20ns" and compound "1m30s". A bare number is rejected
// (a unit is required). Negative only where allowed ("-5h" for utc_offset). Returns nullopt if malformed.
std::optional<Duration> parse_duration(std::string_view text, bool allow_negative = false);

// "16384", "16k"/"16KiB", "10m"/"10MiB", "1g"/"1GiB" (powers of 1024). Returns nullopt if malformed.
std::optional<std::uint64_t> parse_size(std::string_view text);

}  // namespace sluice::config
