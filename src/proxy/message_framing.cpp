#include "sluice/proxy/message_framing.hpp"

#include <charconv>
#include <string>

#include <boost/beast/core/string.hpp>
#include <boost/beast/http/field.hpp>

namespace sluice::proxy {

namespace http = boost::beast::http;

namespace {

std::string_view trim_ows(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

// The transfer codings of every Transfer-Encoding field, in order (RFC 9110
// 5.3: several fields are one comma-separated list).
struct TransferCodings {
    bool present = false;
    unsigned chunked = 0;  // how many codings are "chunked"
    unsigned others = 0;   // how many are something else (gzip, identity, "xchunked", ...)
    unsigned empty = 0;    // empty list members ("chunked,,")
    bool last_chunked = false;

    void add_field(std::string_view value) {
        present = true;
        while (true) {
            const auto comma = value.find(',');
            const auto coding = trim_ows(value.substr(0, comma));
            last_chunked = false;
            if (coding.empty()) {
                ++empty;
            } else if (boost::beast::iequals(coding, "chunked")) {
                ++chunked;
                last_chunked = true;
            } else {
                ++others;
            }
            if (comma == std::string_view::npos) break;
            value.remove_prefix(comma + 1);
        }
    }
    // Exactly one coding, "chunked": the only framing sluice relays.
    bool just_chunked() const { return chunked == 1 && others == 0 && empty == 0; }
};

bool all_digits(std::string_view s) {
    if (s.empty()) return false;
    for (const char c : s) {
        if (c < '0' || c > '9') return false;
    }
    return true;
}

// Every member of every Content-Length field is the same decimal number (RFC
// 9110 8.6: a list of equal values may be taken as one).
class ContentLengths {
public:
    void add_field(std::string_view value) {
        present_ = true;
        while (true) {
            const auto comma = value.find(',');
            auto member = trim_ows(value.substr(0, comma));
            while (member.size() > 1 && member.front() == '0') member.remove_prefix(1);
            if (!all_digits(member) || (!first_.empty() && member != first_)) consistent_ = false;
            if (first_.empty()) first_ = member;
            if (comma == std::string_view::npos) break;
            value.remove_prefix(comma + 1);
        }
    }
    bool present() const { return present_; }
    bool consistent() const { return consistent_; }

private:
    std::string_view first_;
    bool present_ = false;
    bool consistent_ = true;
};

// RFC 9110 7.2 / RFC 3986 3.2.2-3.2.3: host [ ":" port ], nothing else (no
// userinfo, path, whitespace). Beast already refused control bytes.
bool valid_host_value(std::string_view value) {
    for (const unsigned char c : value) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                        c == '-' || c == '.' || c == '_' || c == '~' || c == ':' || c == '[' || c == ']' ||
                        c == '%' || c == '!' || c == '$' || c == '&' || c == '\'' || c == '(' || c == ')' ||
                        c == '*' || c == '+' || c == ',' || c == ';' || c == '=';
        if (!ok) return false;
    }
    return true;
}

}  // namespace

template <class Allocator>
std::optional<HeadRefusal> check_request_head(const http::basic_fields<Allocator>& fields, unsigned version) {
    TransferCodings codings;
    ContentLengths lengths;
    unsigned hosts = 0;
    bool bad_host = false;
    for (const auto& field : fields) {
        switch (field.name()) {
            case http::field::transfer_encoding: codings.add_field(field.value()); break;
            case http::field::content_length: lengths.add_field(field.value()); break;
            case http::field::host:
                ++hosts;
                if (!valid_host_value(trim_ows(field.value()))) bad_host = true;
                break;
            default: break;
        }
    }
    // RFC 9112 3.2: exactly one Host in HTTP/1.1, at most one ever.
    if (hosts > 1) return HeadRefusal{Errc::malformed_request, "the request has more than one Host field"};
    if (hosts == 0 && version >= 11) {
        return HeadRefusal{Errc::malformed_request, "an HTTP/1.1 request must have a Host field"};
    }
    if (bad_host) return HeadRefusal{Errc::malformed_request, "the Host field is not a valid host[:port]"};
    if (codings.present) {
        // RFC 9112 6.1: Transfer-Encoding in 1.0 is faulty framing; with
        // Content-Length it is a smuggling attempt at worst and ambiguous at best.
        if (version < 11) {
            return HeadRefusal{Errc::malformed_request, "Transfer-Encoding in an HTTP/1.0 request"};
        }
        if (lengths.present()) {
            return HeadRefusal{Errc::malformed_request,
                               "the request has both Transfer-Encoding and Content-Length"};
        }
        // RFC 9112 6.3: a request whose final coding is not chunked has no
        // determinable length: 400 and close.
        if (!codings.last_chunked || codings.chunked > 1 || codings.empty > 0) {
            return HeadRefusal{Errc::malformed_request,
                               "Transfer-Encoding must end with exactly one \"chunked\""};
        }
        // RFC 9112 6.1: a coding sluice does not know (gzip, compress, ...) is 501.
        if (!codings.just_chunked()) {
            return HeadRefusal{Errc::not_implemented,
                               "only Transfer-Encoding: chunked is supported in requests"};
        }
    }
    if (!lengths.consistent()) {
        return HeadRefusal{Errc::malformed_request, "Content-Length values differ or are not numbers"};
    }
    return std::nullopt;
}

template <class Allocator>
bool response_framing_is_ambiguous(const http::basic_fields<Allocator>& fields) {
    TransferCodings codings;
    ContentLengths lengths;
    for (const auto& field : fields) {
        if (field.name() == http::field::transfer_encoding) codings.add_field(field.value());
        if (field.name() == http::field::content_length) lengths.add_field(field.value());
    }
    if (codings.present && (lengths.present() || !codings.just_chunked())) return true;
    return !lengths.consistent();
}

template <class Allocator>
void set_forwarded_framing(http::basic_fields<Allocator>& fields, bool chunked,
                           std::optional<std::uint64_t> content_length) {
    // Most messages already say exactly this (one "Content-Length: N" or one
    // "Transfer-Encoding: chunked"): then nothing is rewritten.
    unsigned lengths = 0;
    unsigned codings = 0;
    bool canonical = true;
    for (const auto& field : fields) {
        if (field.name() == http::field::content_length) {
            ++lengths;
            const auto value = field.value();
            std::uint64_t parsed = 0;
            const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), parsed);
            if (ec != std::errc() || end != value.data() + value.size() || !content_length ||
                parsed != *content_length || (value.size() > 1 && value.front() == '0')) {
                canonical = false;
            }
        } else if (field.name() == http::field::transfer_encoding) {
            ++codings;
            if (field.value() != "chunked") canonical = false;
        }
    }
    const bool as_wanted =
        chunked ? (codings == 1 && lengths == 0) : (codings == 0 && lengths == (content_length ? 1u : 0u));
    if (canonical && as_wanted) return;
    fields.erase(http::field::content_length);
    fields.erase(http::field::transfer_encoding);
    if (chunked) {
        fields.set(http::field::transfer_encoding, "chunked");
    } else if (content_length) {
        fields.set(http::field::content_length, std::to_string(*content_length));
    }
}

#define SLUICE_MESSAGE_FRAMING_INSTANTIATE(Alloc)                                                       \
    template std::optional<HeadRefusal> check_request_head(const http::basic_fields<Alloc>&, unsigned); \
    template bool response_framing_is_ambiguous(const http::basic_fields<Alloc>&);                      \
    template void set_forwarded_framing(http::basic_fields<Alloc>&, bool, std::optional<std::uint64_t>);
SLUICE_MESSAGE_FRAMING_INSTANTIATE(std::allocator<char>)
SLUICE_MESSAGE_FRAMING_INSTANTIATE(ArenaAllocator<char>)
#undef SLUICE_MESSAGE_FRAMING_INSTANTIATE

}  // namespace sluice::proxy
