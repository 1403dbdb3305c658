#pragma once
// A request's cost read from its JSON body (docs/costs.md): the length of the array a JSON
// Pointer (RFC 6901) names, or the non-negative integer it names. Pure code: no I/O, no clock,
// no exception escapes. The body is read with nlohmann/json's SAX interface and a handler that
// keeps only the path to the current value (bounded by kMaxBodyCostDepth) and one counter:
// no document is built, so the memory used is independent of the body's size.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::cost {

// What the pointed-to value gives: an array's number of elements, or an integer's value.
enum class BodyCostKind : std::uint8_t { array_length, number };

// Objects and arrays nested deeper than this are refused, whatever the pointer: the path
// stack is a fixed array, and a body built to exhaust it is not a real request.
inline constexpr std::size_t kMaxBodyCostDepth = 64;
// A pointer may name at most this many levels (it cannot go deeper than the body may).
inline constexpr std::size_t kMaxPointerTokens = kMaxBodyCostDepth;

// RFC 6901: "" (the whole document) or "/a/b", each token unescaped (~1 -> '/', ~0 -> '~').
// Returns the tokens, or an error text (no leading '/', '~' not followed by 0 or 1, too deep).
struct JsonPointer {
    std::vector<std::string> tokens;
    std::string error;  // empty: parsed
};
JsonPointer parse_json_pointer(std::string_view text);

// Why no cost could be read.
enum class BodyCostProblem : std::uint8_t {
    none,
    not_json,    // empty, truncated, invalid UTF-8, garbage, or several documents
    too_deep,    // nested deeper than kMaxBodyCostDepth
    missing,     // the pointer names nothing in this body
    ambiguous,   // the pointer names two values (an object with a duplicate name on the path)
    wrong_type,  // not an array (array_length) / not a non-negative integer (number)
};

struct BodyCost {
    // The units: an array's length, or the number, saturated at INT64_MAX (a number too
    // large for any limit is then refused as above the limit, not misread).
    std::int64_t units = 0;
    BodyCostProblem problem = BodyCostProblem::none;
    std::string message;  // for the client's error body: what was wrong, where
    bool ok() const { return problem == BodyCostProblem::none; }
};

// Reads the cost `pointer` names in `body`. The whole body must be one valid JSON text (a
// body that is JSON up to the target and garbage after it is refused, not half-trusted).
BodyCost read_body_cost(std::string_view body, BodyCostKind kind,
                        std::span<const std::string> pointer) noexcept;

// "/a/b~1c" again from tokens, for messages and the config printer.
std::string format_json_pointer(std::span<const std::string> tokens);

}  // namespace sluice::cost
