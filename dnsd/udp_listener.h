// A UDP listener: receives queries, hands them to the Resolver, sends replies.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/udp.hpp>

#include "dnsd/config.h"
#include "dnsd/resolver.h"

namespace dnsd {

class UdpListener {
 public:
  // Binds at once (start-up): throws boost::system::system_error naming the address.
  UdpListener(boost::asio::io_context& io, const Endpoint& at, Resolver& resolver);
  void start();

 private:
  boost::asio::awaitable<void> run();

  boost::asio::ip::udp::socket socket_;
  Resolver& resolver_;
};

}  // namespace dnsd
