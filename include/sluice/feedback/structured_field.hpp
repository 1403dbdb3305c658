#pragma once
// A parser for HTTP Structured Field Values (RFC 9651, formerly RFC 8941),
// enough to read the IETF rate-limit fields (draft-ietf-httpapi-ratelimit-headers):
// Lists, Dictionaries, Inner Lists, Parameters and every bare item type.
// Pure code. Parsing follows the RFC's algorithms: any syntax error fails the
// whole field (nullopt), as the RFC requires, so a half-understood field is
// never acted on. Byte sequences are kept as their base64 text (nothing here
// needs the bytes).

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sluice::feedback::sf {

struct BareItem {
    enum class Type { integer, decimal, string, token, byte_sequence, boolean, date };
    Type type = Type::integer;
    std::int64_t integer = 0;  // integer, date (Unix seconds), boolean (0/1)
    double decimal = 0;        // decimal
    std::string text;          // string (unescaped), token, byte_sequence (base64 text)

    bool is_number() const noexcept { return type == Type::integer || type == Type::decimal; }
    double number() const noexcept { return type == Type::decimal ? decimal : static_cast<double>(integer); }
};

// Parameters in order; a key repeated in the field keeps its last value, in the
// position of its first appearance (RFC 9651 4.2.3.2).
using Parameters = std::vector<std::pair<std::string, BareItem>>;

const BareItem* find_param(const Parameters& params, std::string_view key);

// A List member or Dictionary value: an Item, or an Inner List `(a b);p=1`.
struct Member {
    bool is_inner_list = false;
    BareItem item;                // when !is_inner_list
    std::vector<BareItem> inner;  // when is_inner_list (parameters of inner items are dropped)
    Parameters params;
};

using List = std::vector<Member>;
// In order; a repeated key keeps its last value (RFC 9651 4.2.2).
using Dictionary = std::vector<std::pair<std::string, Member>>;

std::optional<List> parse_list(std::string_view field);
std::optional<Dictionary> parse_dictionary(std::string_view field);

}  // namespace sluice::feedback::sf
