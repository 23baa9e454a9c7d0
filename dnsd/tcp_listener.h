// A TCP listener (RFC 7766): length-prefixed messages, pipelining (replies in completion order),
// an idle timeout and caps on connections and on queries in flight per connection.
#pragma once

#include <cstddef>
#include <memory>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "dnsd/config.h"
#include "dnsd/resolver.h"

namespace dnsd {

class TcpListener {
 public:
  // Binds and listens at once (start-up): throws boost::system::system_error.
  TcpListener(boost::asio::io_context& io, const Endpoint& at, Resolver& resolver,
              const Config& config);
  void start();

  std::size_t connections() const { return *connections_; }

 private:
  class Connection;
  boost::asio::awaitable<void> accept_loop();

  boost::asio::ip::tcp::acceptor acceptor_;
  Resolver& resolver_;
  const Config& config_;
  std::shared_ptr<std::size_t> connections_ = std::make_shared<std::size_t>(0);
};

}  // namespace dnsd
