#include "sluice/proxy/relay_writer.hpp"

#include <charconv>

namespace sluice::proxy {

namespace net = boost::asio;
namespace http = boost::beast::http;

namespace {

constexpr char kCrlf[] = "\r\n";
constexpr char kLastChunk[] = "0\r\n\r\n";  // no trailers: they are not relayed
// Up to this size a first body piece is copied behind the head (one buffer, one send()).
constexpr std::size_t kCoalesceLimit = 2048;

void append_version(std::string& out, unsigned version) {
    out.append("HTTP/");
    out.push_back(static_cast<char>('0' + version / 10));
    out.push_back('.');
    out.push_back(static_cast<char>('0' + version % 10));
}

template <class Allocator>
void append_fields(std::string& out, const http::basic_fields<Allocator>& fields) {
    for (const auto& field : fields) {
        out.append(field.name_string());
        out.append(": ");
        out.append(field.value());
        out.append(kCrlf);
    }
    out.append(kCrlf);
}

}  // namespace

template <class Fields>
void RelayWriter::start_request(const http::header<true, Fields>& head, bool chunked, bool bodyless) {
    head_.clear();
    head_.append(head.method_string());
    head_.push_back(' ');
    head_.append(head.target());
    head_.push_back(' ');
    append_version(head_, head.version());
    head_.append(kCrlf);
    append_fields(head_, head);
    finish_head(chunked, bodyless);
}

template <class Fields>
void RelayWriter::start_response(const http::header<false, Fields>& head, bool chunked, bool bodyless) {
    head_.clear();
    append_version(head_, head.version());
    head_.push_back(' ');
    char status[4] = {};
    const unsigned code = head.result_int() % 1000;
    status[0] = static_cast<char>('0' + code / 100);
    status[1] = static_cast<char>('0' + code / 10 % 10);
    status[2] = static_cast<char>('0' + code % 10);
    head_.append(status, 3);
    head_.push_back(' ');
    head_.append(head.reason());  // the vendor's own reason phrase, or the standard one
    head_.append(kCrlf);
    append_fields(head_, head);
    finish_head(chunked, bodyless);
}

template void RelayWriter::start_request(const http::request_header<>&, bool, bool);
template void RelayWriter::start_request(const http::header<true, ArenaFields>&, bool, bool);
template void RelayWriter::start_response(const http::response_header<>&, bool, bool);
template void RelayWriter::start_response(const http::header<false, ArenaFields>&, bool, bool);

void RelayWriter::finish_head(bool chunked, bool bodyless) {
    chunked_ = chunked && !bodyless;
    bodyless_ = bodyless;
    head_sent_ = false;
    done_ = false;
}

RelayWriter::Buffers RelayWriter::next(const char* data, std::size_t size, bool last) {
    Buffers out{};
    std::size_t n = 0;
    if (!head_sent_) {
        head_sent_ = true;
        if (size <= kCoalesceLimit && !done_ && !bodyless_) {
            // A small first piece is copied behind the head: the message leaves
            // as one contiguous buffer, one plain send() instead of a gather write.
            if (!chunked_) {
                if (size > 0) head_.append(data, size);
            } else {
                if (size > 0) {
                    auto [end, ec] =
                        std::to_chars(chunk_line_, chunk_line_ + sizeof chunk_line_ - 2, size, 16);
                    (void)ec;
                    head_.append(chunk_line_, end).append(kCrlf).append(data, size).append(kCrlf);
                }
                if (last) head_.append(kLastChunk);
            }
            if (last) done_ = true;
            out[0] = net::buffer(head_);
            return out;
        }
        out[n++] = net::buffer(head_);
    }
    if (done_) return out;
    if (bodyless_) {
        done_ = true;
        return out;
    }
    if (!chunked_) {
        if (size > 0) out[n++] = net::const_buffer(data, size);
    } else {
        if (size > 0) {
            auto [end, ec] = std::to_chars(chunk_line_, chunk_line_ + sizeof chunk_line_ - 2, size, 16);
            (void)ec;  // 16 hex digits always fit
            *end++ = '\r';
            *end++ = '\n';
            out[n++] = net::const_buffer(chunk_line_, static_cast<std::size_t>(end - chunk_line_));
            out[n++] = net::const_buffer(data, size);
            out[n++] = net::const_buffer(kCrlf, 2);
        }
        if (last) out[n++] = net::const_buffer(kLastChunk, sizeof kLastChunk - 1);
    }
    if (last) done_ = true;
    return out;
}

std::size_t total_size(const RelayWriter::Buffers& buffers) {
    std::size_t total = 0;
    for (const auto& b : buffers) total += b.size();
    return total;
}

}  // namespace sluice::proxy
