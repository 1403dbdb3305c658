#pragma once
// Where one connection's handlers run. With several io threads each connection
// gets a strand, so its handlers never run concurrently; with one thread
// (workers: 1, the default) they are serialised already, and a strand would
// only add a queue, a mutex and type-erased executor copies to every handler
// (docs/benchmarks.md, "Where sluice's time goes").

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>

namespace sluice::upstream {

class ConnectionExecutor {
public:
    ConnectionExecutor(boost::asio::io_context& ioc, unsigned threads) : ioc_(ioc), threads_(threads) {}

    // A fresh executor for one connection (or one connection attempt).
    boost::asio::any_io_executor make() const {
        if (threads_ <= 1) return ioc_.get_executor();
        return boost::asio::make_strand(ioc_);
    }

private:
    boost::asio::io_context& ioc_;
    unsigned threads_;
};

}  // namespace sluice::upstream
