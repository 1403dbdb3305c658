#include "sluice/common/excerpt.hpp"

namespace sluice {

std::string quoted_excerpt(std::string_view value, std::size_t max_chars) {
    std::string out = "'";
    std::size_t shown = 0;
    for (const char c : value) {
        if (shown == max_chars) break;
        const auto u = static_cast<unsigned char>(c);
        if (u < 0x20 || u == 0x7f) {
            constexpr char kHex[] = "0123456789abcdef";
            out += "\\x";
            out += kHex[u >> 4];
            out += kHex[u & 0xf];
        } else if (c == '\\') {
            out += "\\\\";
        } else {
            out += c;
        }
        ++shown;
    }
    out += "'";
    if (value.size() > max_chars) out += "... (" + std::to_string(value.size()) + " bytes)";
    return out;
}

}  // namespace sluice
