#pragma once
// Minimal structured logging to stderr: one line per event, "level component: message".
// A process-wide level is the only shared state, set once by main(); writes are
// serialised so lines from several io threads never interleave.

#include <string_view>

namespace sluice::log {

enum class Level { debug = 0, info = 1, warn = 2, error = 3 };

void set_level(Level level) noexcept;
bool enabled(Level level) noexcept;
void write(Level level, std::string_view component, std::string_view message);

inline void debug(std::string_view c, std::string_view m) {
    if (enabled(Level::debug)) write(Level::debug, c, m);
}
inline void info(std::string_view c, std::string_view m) {
    if (enabled(Level::info)) write(Level::info, c, m);
}
inline void warn(std::string_view c, std::string_view m) {
    if (enabled(Level::warn)) write(Level::warn, c, m);
}
inline void error(std::string_view c, std::string_view m) {
    if (enabled(Level::error)) write(Level::error, c, m);
}

}  // namespace sluice::log
