#include "dnsd/udp_listener.h"

#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <vector>

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
// Datagrams per recvmmsg/sendmmsg (kBurst is a multiple of it).
constexpr std::size_t kBatch = 16;
static_assert(kBurst % kBatch == 0);

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

// One recvmmsg(2) takes up to kBatch queued datagrams, and one sendmmsg(2) sends the replies
// made at once (cache hits, denials): on a busy socket two syscalls serve a batch, and a batch
// shorter than kBatch means the queue was empty, so the loop waits without a receive that
// would only say EAGAIN. Replies that wait for an upstream are sent one by one when ready.
asio::awaitable<void> UdpListener::run() {
  struct Slot {
    std::array<std::uint8_t, kMaxUdpQuery + 1> buf;
    sockaddr_storage from;
    std::vector<std::uint8_t> reply;
  };
  std::vector<Slot> slots(kBatch);
  std::array<mmsghdr, kBatch> in{};
  std::array<iovec, kBatch> in_iov{};
  std::array<mmsghdr, kBatch> out{};
  std::array<iovec, kBatch> out_iov{};
  const int fd = socket_.native_handle();
  for (;;) {
    auto [wait_ec] = co_await socket_.async_wait(udp::socket::wait_read,
                                                 asio::as_tuple(asio::use_awaitable));
    if (wait_ec == asio::error::operation_aborted) co_return;
    for (int burst = 0;; burst += kBatch) {
      if (burst >= kBurst) {
        co_await asio::post(socket_.get_executor(), asio::use_awaitable);
        burst = 0;
      }
      for (std::size_t i = 0; i < kBatch; ++i) {
        in_iov[i] = iovec{slots[i].buf.data(), slots[i].buf.size()};
        in[i] = mmsghdr{};
        in[i].msg_hdr.msg_name = &slots[i].from;
        in[i].msg_hdr.msg_namelen = sizeof slots[i].from;
        in[i].msg_hdr.msg_iov = &in_iov[i];
        in[i].msg_hdr.msg_iovlen = 1;
      }
      const int n = recvmmsg(fd, in.data(), kBatch, MSG_DONTWAIT, nullptr);
      if (n < 0) {
        const int err = errno;
        if (err == EAGAIN || err == EWOULDBLOCK) break;
        if (err == EBADF) co_return;  // closed at shutdown
        // ICMP errors surface here on Linux (ECONNREFUSED from an earlier reply); keep going.
        spdlog::debug("udp recvmmsg: {}", std::strerror(err));
        continue;
      }
      unsigned replies = 0;
      for (int i = 0; i < n; ++i) {
        Slot& slot = slots[static_cast<std::size_t>(i)];
        const std::size_t len = in[static_cast<std::size_t>(i)].msg_len;
        // Longer than the buffer (MSG_TRUNC) or than any valid query: dropped unparsed.
        if (len > kMaxUdpQuery || (in[static_cast<std::size_t>(i)].msg_hdr.msg_flags & MSG_TRUNC))
          continue;
        udp::endpoint from;
        const socklen_t name_len = in[static_cast<std::size_t>(i)].msg_hdr.msg_namelen;
        if (name_len > from.capacity()) continue;
        std::memcpy(from.data(), &slot.from, name_len);
        from.resize(name_len);
        const ClientInfo client{from.address(), from.port(), false};
        const auto outcome = resolver_.handle(
            std::span<const std::uint8_t>(slot.buf.data(), len), client, slot.reply,
            [this, &from]() {
              return Resolver::Reply([this, to = from](std::span<const std::uint8_t> reply) {
                if (reply.empty()) return;
                boost::system::error_code send_ec;
                socket_.send_to(asio::buffer(reply.data(), reply.size()), to, 0, send_ec);
              });
            });
        if (outcome != Resolver::Outcome::Reply) continue;
        out_iov[replies] = iovec{slot.reply.data(), slot.reply.size()};
        out[replies] = mmsghdr{};
        out[replies].msg_hdr.msg_name = &slot.from;
        out[replies].msg_hdr.msg_namelen = name_len;
        out[replies].msg_hdr.msg_iov = &out_iov[replies];
        out[replies].msg_hdr.msg_iovlen = 1;
        ++replies;
      }
      // A full socket buffer drops the replies it cannot take, as the network would: the
      // clients retry. sendmmsg stops at the first failing message; the rest are dropped too.
      if (replies > 0 && sendmmsg(fd, out.data(), replies, 0) < 0)
        spdlog::debug("udp sendmmsg: {}", std::strerror(errno));
      if (n < static_cast<int>(kBatch)) break;  // the queue was drained
    }
  }
}

}  // namespace dnsd
