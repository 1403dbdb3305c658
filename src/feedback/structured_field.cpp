#include "sluice/feedback/structured_field.hpp"

#include <charconv>

namespace sluice::feedback::sf {
namespace {

bool is_digit(char c) noexcept {
    return c >= '0' && c <= '9';
}
bool is_lcalpha(char c) noexcept {
    return c >= 'a' && c <= 'z';
}
bool is_alpha(char c) noexcept {
    return is_lcalpha(c) || (c >= 'A' && c <= 'Z');
}

// RFC 9110 5.6.2.
bool is_tchar(char c) noexcept {
    switch (c) {
        case '!':
        case '#':
        case '$':
        case '%':
        case '&':
        case '\'':
        case '*':
        case '+':
        case '-':
        case '.':
        case '^':
        case '_':
        case '`':
        case '|':
        case '~': return true;
        default: return is_digit(c) || is_alpha(c);
    }
}

bool is_base64(char c) noexcept {
    return is_alpha(c) || is_digit(c) || c == '+' || c == '/' || c == '=';
}

template <typename Pairs, typename Value>
void set_last_wins(Pairs& pairs, std::string key, Value value) {
    for (auto& [k, v] : pairs) {
        if (k == key) {
            v = std::move(value);
            return;
        }
    }
    pairs.emplace_back(std::move(key), std::move(value));
}

// The parsing algorithms of RFC 9651 section 4.2, one member function each.
class Parser {
public:
    explicit Parser(std::string_view input) : in_(input) {
        // 4.2: leading and trailing SP are discarded (HTAB too: header values may carry OWS).
        while (!in_.empty() && (in_.front() == ' ' || in_.front() == '\t')) in_.remove_prefix(1);
        while (!in_.empty() && (in_.back() == ' ' || in_.back() == '\t')) in_.remove_suffix(1);
    }

    std::optional<List> list() {
        List members;
        while (!in_.empty()) {
            auto member = item_or_inner_list();
            if (!member) return std::nullopt;
            members.push_back(std::move(*member));
            if (!next_member()) return std::nullopt;
        }
        return members;
    }

    std::optional<Dictionary> dictionary() {
        Dictionary members;
        while (!in_.empty()) {
            auto key = parse_key();
            if (!key) return std::nullopt;
            Member member;
            if (peek() == '=') {
                in_.remove_prefix(1);
                auto value = item_or_inner_list();
                if (!value) return std::nullopt;
                member = std::move(*value);
            } else {
                member.item.type = BareItem::Type::boolean;
                member.item.integer = 1;
                auto params = parameters();
                if (!params) return std::nullopt;
                member.params = std::move(*params);
            }
            set_last_wins(members, std::move(*key), std::move(member));
            if (!next_member()) return std::nullopt;
        }
        return members;
    }

private:
    char peek() const noexcept { return in_.empty() ? '\0' : in_.front(); }

    void skip_ows() {
        while (!in_.empty() && (in_.front() == ' ' || in_.front() == '\t')) in_.remove_prefix(1);
    }

    // After a member: the end, or OWS "," OWS and another member (no trailing comma).
    bool next_member() {
        skip_ows();
        if (in_.empty()) return true;
        if (in_.front() != ',') return false;
        in_.remove_prefix(1);
        skip_ows();
        return !in_.empty();
    }

    std::optional<Member> item_or_inner_list() {
        Member member;
        if (peek() == '(') {
            member.is_inner_list = true;
            in_.remove_prefix(1);
            while (true) {
                while (peek() == ' ') in_.remove_prefix(1);
                if (in_.empty()) return std::nullopt;
                if (peek() == ')') {
                    in_.remove_prefix(1);
                    break;
                }
                auto item = bare_item();
                if (!item || !parameters()) return std::nullopt;
                member.inner.push_back(std::move(*item));
                if (peek() != ' ' && peek() != ')') return std::nullopt;
            }
        } else {
            auto item = bare_item();
            if (!item) return std::nullopt;
            member.item = std::move(*item);
        }
        auto params = parameters();
        if (!params) return std::nullopt;
        member.params = std::move(*params);
        return member;
    }

    std::optional<Parameters> parameters() {
        Parameters params;
        while (peek() == ';') {
            in_.remove_prefix(1);
            while (peek() == ' ') in_.remove_prefix(1);
            auto key = parse_key();
            if (!key) return std::nullopt;
            BareItem value;
            value.type = BareItem::Type::boolean;
            value.integer = 1;
            if (peek() == '=') {
                in_.remove_prefix(1);
                auto parsed = bare_item();
                if (!parsed) return std::nullopt;
                value = std::move(*parsed);
            }
            set_last_wins(params, std::move(*key), std::move(value));
        }
        return params;
    }

    std::optional<std::string> parse_key() {
        const char first = peek();
        if (!is_lcalpha(first) && first != '*') return std::nullopt;
        std::size_t n = 1;
        while (n < in_.size()) {
            const char c = in_[n];
            if (!is_lcalpha(c) && !is_digit(c) && c != '_' && c != '-' && c != '.' && c != '*') break;
            ++n;
        }
        std::string key(in_.substr(0, n));
        in_.remove_prefix(n);
        return key;
    }

    std::optional<BareItem> bare_item() {
        const char c = peek();
        if (c == '-' || is_digit(c)) return number();
        if (c == '"') return string();
        if (is_alpha(c) || c == '*') return token();
        if (c == ':') return byte_sequence();
        if (c == '?') return boolean();
        if (c == '@') {
            in_.remove_prefix(1);
            auto date = number();
            if (!date || date->type != BareItem::Type::integer) return std::nullopt;
            date->type = BareItem::Type::date;
            return date;
        }
        return std::nullopt;  // includes RFC 9651 Display Strings, which no rate-limit field uses
    }

    // 4.2.4: at most 15 integer digits; a decimal has at most 12 before the '.' and 1 to 3 after.
    std::optional<BareItem> number() {
        BareItem item;
        std::size_t n = 0;
        const bool negative = peek() == '-';
        if (negative) ++n;
        const std::size_t digits_start = n;
        std::size_t dot = std::string_view::npos;
        while (n < in_.size()) {
            const char c = in_[n];
            if (is_digit(c)) {
                ++n;
            } else if (c == '.' && dot == std::string_view::npos) {
                if (n - digits_start > 12) return std::nullopt;
                dot = n++;
            } else {
                break;
            }
        }
        const auto text = in_.substr(0, n);
        if (n == digits_start || !is_digit(in_[digits_start])) return std::nullopt;
        if (dot == std::string_view::npos) {
            if (n - digits_start > 15) return std::nullopt;
            item.type = BareItem::Type::integer;
            // from_chars accepts the leading '-' itself.
            if (std::from_chars(text.data(), text.data() + text.size(), item.integer).ec != std::errc{}) {
                return std::nullopt;
            }
        } else {
            const auto fraction = n - dot - 1;
            if (fraction < 1 || fraction > 3) return std::nullopt;
            item.type = BareItem::Type::decimal;
            if (std::from_chars(text.data(), text.data() + text.size(), item.decimal).ec != std::errc{}) {
                return std::nullopt;
            }
        }
        in_.remove_prefix(n);
        return item;
    }

    std::optional<BareItem> string() {
        BareItem item;
        item.type = BareItem::Type::string;
        in_.remove_prefix(1);
        while (!in_.empty()) {
            const char c = in_.front();
            in_.remove_prefix(1);
            if (c == '\\') {
                if (in_.empty() || (in_.front() != '"' && in_.front() != '\\')) return std::nullopt;
                item.text += in_.front();
                in_.remove_prefix(1);
            } else if (c == '"') {
                return item;
            } else if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) {
                return std::nullopt;
            } else {
                item.text += c;
            }
        }
        return std::nullopt;  // unterminated
    }

    std::optional<BareItem> token() {
        BareItem item;
        item.type = BareItem::Type::token;
        std::size_t n = 1;
        while (n < in_.size() && (is_tchar(in_[n]) || in_[n] == ':' || in_[n] == '/')) ++n;
        item.text = std::string(in_.substr(0, n));
        in_.remove_prefix(n);
        return item;
    }

    std::optional<BareItem> byte_sequence() {
        BareItem item;
        item.type = BareItem::Type::byte_sequence;
        const auto end = in_.find(':', 1);
        if (end == std::string_view::npos) return std::nullopt;
        const auto body = in_.substr(1, end - 1);
        for (const char c : body) {
            if (!is_base64(c)) return std::nullopt;
        }
        item.text = std::string(body);
        in_.remove_prefix(end + 1);
        return item;
    }

    std::optional<BareItem> boolean() {
        if (in_.size() < 2 || (in_[1] != '0' && in_[1] != '1')) return std::nullopt;
        BareItem item;
        item.type = BareItem::Type::boolean;
        item.integer = in_[1] == '1' ? 1 : 0;
        in_.remove_prefix(2);
        return item;
    }

    std::string_view in_;
};

}  // namespace

const BareItem* find_param(const Parameters& params, std::string_view key) {
    for (const auto& [k, v] : params) {
        if (k == key) return &v;
    }
    return nullptr;
}

std::optional<List> parse_list(std::string_view field) {
    return Parser(field).list();
}

std::optional<Dictionary> parse_dictionary(std::string_view field) {
    return Parser(field).dictionary();
}

}  // namespace sluice::feedback::sf
