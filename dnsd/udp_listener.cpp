#include "dnsd/udp_listener.h"

#include <array>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

namespace dnsd {

namespace asio = boost::asio;
using asio::ip::udp;

namespace {

// No valid query is this large: one question (≤ 255 + 4 octets), one OPT with options
// (cookies, padding). Anything bigger is dropped without parsing.
constexpr std::size_t kMaxUdpQuery = 4096;
// Bursts of clients: a larger receive buffer than the default ~200 KiB drops less under load.
constexpr int kReceiveBuffer = 4 * 1024 * 1024;
// Datagrams handled per wake-up before the loop lets other work run (TCP, c-ares, netlink ACKs,
// deadlines): a flood must not starve them.
constexpr int kBurst = 64;

void rethrow(std::exception_ptr e) {
  if (e) std::rethrow_exception(e);
}

}  // namespace

UdpListener::UdpListener(asio::io_context& io, const Endpoint& at, Resolver& resolver)
    : socket_(io), resolver_(resolver) {
  const udp::endpoint ep(at.address, at.port);
  socket_.open(ep.protocol());
  // An IPv6 wildcard must not take the IPv4 port too: 0.0.0.0:53 may be listed separately.
  if (ep.address().is_v6()) socket_.set_option(asio::ip::v6_only(true));
  boost::system::error_code ignored;
  socket_.set_option(asio::socket_base::receive_buffer_size(kReceiveBuffer), ignored);
  socket_.bind(ep);
  socket_.non_blocking(true);
}

void UdpListener::start() { asio::co_spawn(socket_.get_executor(), run(), rethrow); }

// Reads every datagram already queued with non-blocking receives before waiting again: one wait
// per burst instead of one completion handler per packet.
asio::awaitable<void> UdpListener::run() {
  std::array<std::uint8_t, kMaxUdpQuery + 1> buf;
  std::vector<std::uint8_t> out;
  udp::endpoint from;
  for (;;) {
    auto [wait_ec] = co_await socket_.async_wait(udp::socket::wait_read,
                                                 asio::as_tuple(asio::use_awaitable));
    if (wait_ec == asio::error::operation_aborted) co_return;
    for (int burst = 0;; ++burst) {
      if (burst == kBurst) {
        co_await asio::post(socket_.get_executor(), asio::use_awaitable);
        burst = 0;
      }
      boost::system::error_code ec;
      const std::size_t n = socket_.receive_from(asio::buffer(buf), from, 0, ec);
      if (ec == asio::error::would_block || ec == asio::error::try_again) break;
      if (ec == asio::error::bad_descriptor || ec == asio::error::operation_aborted) co_return;
      if (ec) {
        // ICMP errors surface here on Linux (ECONNREFUSED from an earlier reply); keep going.
        spdlog::debug("udp receive: {}", ec.message());
        continue;
      }
      if (n > kMaxUdpQuery) continue;
      const ClientInfo client{from.address(), from.port(), false};
      const auto outcome = resolver_.handle(
          std::span<const std::uint8_t>(buf.data(), n), client, out, [this, &from]() {
            return Resolver::Reply([this, to = from](std::span<const std::uint8_t> reply) {
              if (reply.empty()) return;
              boost::system::error_code send_ec;
              socket_.send_to(asio::buffer(reply.data(), reply.size()), to, 0, send_ec);
            });
          });
      if (outcome == Resolver::Outcome::Reply) {
        // A full socket buffer drops the reply, as the network would: the client retries.
        socket_.send_to(asio::buffer(out), from, 0, ec);
      }
    }
  }
}

}  // namespace dnsd
