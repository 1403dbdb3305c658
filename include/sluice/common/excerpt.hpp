#pragma once
// How a value that came from outside (a config file, an environment variable)
// is quoted in an error message: between single quotes, control bytes and DEL as
// \xNN (a NUL would also cut the message short where it is printed as a C string),
// a backslash doubled, and at most `max_chars` bytes of it followed by its length,
// so that a 10 MB value does not become a 10 MB message. Bytes >= 0x80 pass
// unchanged (UTF-8 names stay readable). The request path has its own, stricter
// helper for bytes from clients (proxy::printable_excerpt).

#include <cstddef>
#include <string>
#include <string_view>

namespace sluice {

inline constexpr std::size_t kMaxEchoedChars = 64;

std::string quoted_excerpt(std::string_view value, std::size_t max_chars = kMaxEchoedChars);

}  // namespace sluice
