#pragma once
// The sending half of the relay: turns a parsed (and rewritten) message head and
// the body pieces read into the relay buffer into wire bytes, so that each step
// of the exchange is ONE gather write: the head with the first body piece, each
// further piece with its chunk framing, the last piece with the last-chunk.
//
// Why not Beast's serializer: a proxy relays bodies piece by piece, and the
// serializer's nested buffer-sequence views cost more CPU than the whole rest
// of the relay (docs/benchmarks.md, "Where sluice's time goes"). The head is
// formatted into a string kept for the connection's life, so the hot path does
// not allocate once that string has grown to the usual head size.
//
// Framing follows the head as it will be sent: `chunked` re-encodes each
// piece as one chunk (RFC 9112 7.1; the receiver's parser removed the
// sender's chunking, trailers are not relayed); otherwise pieces go out raw
// (Content-Length, or a close-delimited body). A zero-length piece that is not
// the last is never sent as a chunk: it would end the body.

#include <array>
#include <cstddef>
#include <string>

#include <boost/asio/buffer.hpp>
#include <boost/beast/http/message.hpp>

#include "sluice/proxy/header_arena.hpp"

namespace sluice::proxy {

class RelayWriter {
public:
    // At most: head, chunk-size line, data, CRLF after the data, last-chunk.
    using Buffers = std::array<boost::asio::const_buffer, 5>;

    // Starts a message: formats its head. `chunked`: the head says
    // Transfer-Encoding: chunked (message::chunked()). `bodyless`: no body
    // follows (HEAD responses, 1xx/204/304, a request without a body).
    // Fields: Beast's default fields or the session's ArenaFields (header_arena.hpp).
    template <class Fields>
    void start_request(const boost::beast::http::header<true, Fields>& head, bool chunked, bool bodyless);
    template <class Fields>
    void start_response(const boost::beast::http::header<false, Fields>& head, bool chunked, bool bodyless);

    // The buffers of the next write: the head if it has not gone yet, then
    // `size` bytes at `data` framed as the body requires, then, if `last`, the
    // body's end. Empty (total size 0) when there is nothing to send yet. The
    // buffers stay valid until the next call (and `data` must too).
    Buffers next(const char* data, std::size_t size, bool last);

    // Everything of the message, its end included, was handed out by next().
    bool done() const { return done_; }
    bool head_sent() const { return head_sent_; }

private:
    void finish_head(bool chunked, bool bodyless);

    std::string head_;
    char chunk_line_[20] = {};  // hex size + CRLF
    bool chunked_ = false;
    bool bodyless_ = false;
    bool head_sent_ = false;
    bool done_ = false;
};

extern template void RelayWriter::start_request(const boost::beast::http::request_header<>&, bool, bool);
extern template void RelayWriter::start_request(const boost::beast::http::header<true, ArenaFields>&, bool,
                                                bool);
extern template void RelayWriter::start_response(const boost::beast::http::response_header<>&, bool, bool);
extern template void RelayWriter::start_response(const boost::beast::http::header<false, ArenaFields>&, bool,
                                                 bool);

// Total bytes in a buffer sequence returned by RelayWriter::next().
std::size_t total_size(const RelayWriter::Buffers& buffers);

}  // namespace sluice::proxy
