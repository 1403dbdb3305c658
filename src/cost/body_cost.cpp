#include "sluice/cost/body_cost.hpp"

#include <array>
#include <charconv>
#include <limits>

#include <nlohmann/json.hpp>

namespace sluice::cost {

JsonPointer parse_json_pointer(std::string_view text) {
    JsonPointer pointer;
    if (text.empty()) return pointer;  // the whole document
    if (text.front() != '/') {
        pointer.error = "a JSON Pointer (RFC 6901): empty, or starting with '/', e.g. /emails";
        return pointer;
    }
    text.remove_prefix(1);
    while (true) {
        const auto slash = text.find('/');
        const auto raw = text.substr(0, slash);
        std::string token;
        token.reserve(raw.size());
        for (std::size_t i = 0; i < raw.size(); ++i) {
            if (raw[i] != '~') {
                token.push_back(raw[i]);
                continue;
            }
            // RFC 6901 section 4: only ~0 and ~1 are escapes; anything else is an error.
            if (i + 1 < raw.size() && (raw[i + 1] == '0' || raw[i + 1] == '1')) {
                token.push_back(raw[i + 1] == '0' ? '~' : '/');
                ++i;
                continue;
            }
            pointer.tokens.clear();
            pointer.error = "a JSON Pointer (RFC 6901) whose '~' is followed by 0 (for '~') or 1 (for '/')";
            return pointer;
        }
        pointer.tokens.push_back(std::move(token));
        if (pointer.tokens.size() > kMaxPointerTokens) {
            pointer.tokens.clear();
            pointer.error =
                "a JSON Pointer (RFC 6901) of at most " + std::to_string(kMaxPointerTokens) + " levels";
            return pointer;
        }
        if (slash == std::string_view::npos) break;
        text.remove_prefix(slash + 1);
    }
    return pointer;
}

std::string format_json_pointer(std::span<const std::string> tokens) {
    std::string text;
    for (const auto& token : tokens) {
        text.push_back('/');
        for (const char c : token) {
            if (c == '~') {
                text += "~0";
            } else if (c == '/') {
                text += "~1";
            } else {
                text.push_back(c);
            }
        }
    }
    return text;
}

namespace {

using Json = nlohmann::json;

// True when `token` is the RFC 6901 array index of element `index` (decimal, no leading zero;
// "-" names the element after the last, which never exists in a request body).
bool index_matches(std::uint64_t index, const std::string& token) {
    std::array<char, 24> digits{};
    const auto [end, ec] = std::to_chars(digits.data(), digits.data() + digits.size(), index);
    return ec == std::errc() &&
           std::string_view(digits.data(), static_cast<std::size_t>(end - digits.data())) == token;
}

// The SAX handler: a fixed stack of the open containers, each knowing whether its own path is
// a prefix of the pointer, so a value's path is compared one step at a time and never stored.
class CostHandler {
public:
    CostHandler(BodyCostKind kind, std::span<const std::string> pointer) : kind_(kind), pointer_(pointer) {}

    bool null() { return scalar("null"); }
    bool boolean(bool) { return scalar("a boolean"); }
    bool number_integer(Json::number_integer_t value) {
        if (!begin_value()) return true;
        if (kind_ != BodyCostKind::number || value < 0) return wrong_type("a negative number");
        return found(static_cast<std::int64_t>(value));
    }
    bool number_unsigned(Json::number_unsigned_t value) {
        if (!begin_value()) return true;
        if (kind_ != BodyCostKind::number) return wrong_type("a number");
        constexpr auto kTop = static_cast<Json::number_unsigned_t>(std::numeric_limits<std::int64_t>::max());
        return found(static_cast<std::int64_t>(value > kTop ? kTop : value));
    }
    bool number_float(Json::number_float_t, const Json::string_t& text) {
        if (!begin_value()) return true;
        // An integer too long for 64 bits arrives here as its digits: saturate it (it is then
        // above any limit and refused as such). "2.5", "1e3", "-1.0" are not integers.
        const bool digits_only =
            !text.empty() && text.find_first_not_of("0123456789") == Json::string_t::npos;
        if (kind_ == BodyCostKind::number && digits_only)
            return found(std::numeric_limits<std::int64_t>::max());
        return wrong_type(kind_ == BodyCostKind::number ? "a number that is not an integer" : "a number");
    }
    bool string(Json::string_t&) { return scalar("a string"); }
    bool binary(Json::binary_t&) { return scalar("binary data"); }

    bool start_object(std::size_t) {
        const bool target = begin_value();
        if (target) return wrong_type("an object");
        return push(false, false);
    }
    bool key(Json::string_t& name) {
        const auto depth = depth_;  // the object's value depth + 1 = its members' depth
        key_on_path_ = stack_[depth - 1].on_path && depth <= pointer_.size() && name == pointer_[depth - 1];
        return true;
    }
    bool end_object() {
        --depth_;
        return true;
    }
    bool start_array(std::size_t) {
        const bool target = begin_value();
        if (target && kind_ != BodyCostKind::array_length) return wrong_type("an array");
        if (target && !found(0)) return false;
        return push(true, target);
    }
    bool end_array() {
        --depth_;
        return true;
    }
    bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception&) {
        if (result_.problem == BodyCostProblem::none) {
            result_.problem = BodyCostProblem::not_json;
            result_.message =
                "the request body is not valid JSON (error at byte " + std::to_string(position) + ")";
        }
        return false;
    }

    BodyCost finish(bool parsed) {
        if (result_.problem != BodyCostProblem::none) return std::move(result_);
        if (!parsed) {
            result_.problem = BodyCostProblem::not_json;
            result_.message = "the request body is not valid JSON";
            return std::move(result_);
        }
        if (!found_) {
            result_.problem = BodyCostProblem::missing;
            result_.message = "the request body has no value at " + where();
            return std::move(result_);
        }
        if (counting_) result_.units = static_cast<std::int64_t>(elements_);
        return std::move(result_);
    }

private:
    struct Frame {
        bool is_array = false;
        bool on_path = false;    // this container's path is the pointer's first `depth` tokens
        bool is_target = false;  // the array whose direct elements are counted
        std::uint64_t next_index = 0;
    };

    // A value begins at depth depth_: counts it if its parent is the target array, works out
    // whether it is on the pointer's path, and returns true when it is the pointed-to value.
    bool begin_value() {
        bool on_path = true;  // the root is the value of the empty pointer
        if (depth_ > 0) {
            auto& parent = stack_[depth_ - 1];
            if (parent.is_target) ++elements_;
            if (parent.is_array) {
                on_path = parent.on_path && depth_ <= pointer_.size() &&
                          index_matches(parent.next_index, pointer_[depth_ - 1]);
                ++parent.next_index;
            } else {
                on_path = key_on_path_;
                key_on_path_ = false;
            }
        }
        value_on_path_ = on_path;
        return on_path && depth_ == pointer_.size();
    }

    bool push(bool is_array, bool is_target) {
        if (depth_ == kMaxBodyCostDepth) {
            result_.problem = BodyCostProblem::too_deep;
            result_.message =
                "the request body nests deeper than " + std::to_string(kMaxBodyCostDepth) + " levels";
            return false;
        }
        stack_[depth_++] = Frame{is_array, value_on_path_, is_target, 0};
        return true;
    }

    bool scalar(const char* what) {
        if (!begin_value()) return true;
        return wrong_type(what);
    }

    bool found(std::int64_t units) {
        if (found_) {
            result_.problem = BodyCostProblem::ambiguous;
            result_.message = "the request body has two values at " + where() + " (a duplicate name)";
            return false;
        }
        found_ = true;
        if (kind_ == BodyCostKind::array_length) {
            counting_ = true;
        } else {
            result_.units = units;
        }
        return true;
    }

    bool wrong_type(const char* what) {
        result_.problem = BodyCostProblem::wrong_type;
        result_.message = "the request body has " + std::string(what) + " at " + where() + "; expected " +
                          (kind_ == BodyCostKind::array_length ? "an array" : "a non-negative integer");
        return false;
    }

    std::string where() const {
        return pointer_.empty() ? std::string("the top level") : "'" + format_json_pointer(pointer_) + "'";
    }

    BodyCostKind kind_;
    std::span<const std::string> pointer_;
    std::array<Frame, kMaxBodyCostDepth> stack_{};
    std::size_t depth_ = 0;
    bool key_on_path_ = false;
    bool value_on_path_ = false;
    bool found_ = false;
    bool counting_ = false;
    std::uint64_t elements_ = 0;
    BodyCost result_;
};

}  // namespace

BodyCost read_body_cost(std::string_view body, BodyCostKind kind,
                        std::span<const std::string> pointer) noexcept {
    try {
        if (body.find_first_not_of(" \t\r\n") == std::string_view::npos) {
            BodyCost empty;
            empty.problem = BodyCostProblem::not_json;
            empty.message = "the request body is empty; expected JSON";
            return empty;
        }
        CostHandler handler(kind, pointer);
        // strict: the whole body must be one JSON text; ignore_comments: false (not JSON).
        const bool parsed = Json::sax_parse(body.begin(), body.end(), &handler,
                                            nlohmann::json::input_format_t::json, true, false);
        return handler.finish(parsed);
    } catch (...) {
        // Only allocation can throw here (the SAX path reports parse errors to the handler).
        BodyCost failed;
        failed.problem = BodyCostProblem::not_json;
        failed.message = "the request body could not be read";
        return failed;
    }
}

}  // namespace sluice::cost
