// nf_tables over netlink (NETLINK_NETFILTER): batches of messages built with libnftnl, sent
// as one nfnetlink transaction (NFNL_MSG_BATCH_BEGIN ... NFNL_MSG_BATCH_END), every message with
// NLM_F_ACK so that the kernel answers each with an NLMSG_ERROR (error 0 = ACK). The kernel
// applies a batch all or nothing (net/netfilter/nfnetlink.c, nfnetlink_rcv_batch).
//
// NftSocket is the data path: driven by an Asio io_context, never blocking, several batches in
// flight. NftControlSocket is the control plane (start-up): blocking, with dumps.
#pragma once

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <system_error>
#include <utility>
#include <vector>

struct nlmsghdr;
struct mnl_socket;

namespace dnsd {

// One batch in one contiguous buffer (one sendmsg: one nfnetlink transaction). Sequence numbers
// are given when the batch is sealed for sending, so a batch is built without a socket.
class NftBatch {
 public:
  NftBatch();

  // Appends one nf_tables message: type NFT_MSG_* (the NFNL_SUBSYS_NFTABLES subsystem is added),
  // flags | NLM_F_REQUEST | NLM_F_ACK, nfgen_family `family`. `fill` writes the payload (e.g.
  // nftnl_set_elems_nlmsg_build_payload) and must write at most `room` bytes: libnftnl writes
  // attributes unchecked (mnl_attr_put), so `room` is a bound computed by the caller; a message
  // longer than its room is a bug and aborts.
  template <class Fill>
  void add(std::uint16_t type, std::uint16_t family, std::uint16_t flags, std::size_t room,
           Fill&& fill) {
    nlmsghdr* nlh = begin_message(type, family, flags, room);
    std::forward<Fill>(fill)(nlh);
    end_message(nlh, room);
  }

  std::size_t size() const { return messages_; }  // nf_tables messages (each gets one ACK)
  bool empty() const { return messages_ == 0; }

  // Numbers the messages (begin = first_seq, message i = first_seq + 1 + i, end = last_seq()),
  // appends NFNL_MSG_BATCH_END once and returns the bytes to send.
  std::span<const std::byte> seal(std::uint32_t first_seq);
  std::uint32_t first_seq() const { return first_seq_; }
  std::uint32_t last_seq() const { return first_seq_ + static_cast<std::uint32_t>(messages_) + 1; }

  // The bytes so far (begin and messages; after seal() also the end), for tests.
  std::span<const std::byte> bytes() const { return {buf_.data(), used_}; }

 private:
  nlmsghdr* begin_message(std::uint16_t type, std::uint16_t family, std::uint16_t flags,
                          std::size_t room);
  void end_message(nlmsghdr* nlh, std::size_t room);
  void reserve(std::size_t more);

  std::vector<std::byte> buf_;  // [0, used_) holds messages; the rest is scratch room
  std::size_t used_ = 0;
  std::size_t messages_ = 0;
  std::uint32_t first_seq_ = 0;
  bool sealed_ = false;
};

// The result of matching one reply against a batch's sequence range: the kernel sends one
// NLMSG_ERROR per message carrying NLM_F_ACK, and an error for any message that failed (the
// begin message included, e.g. a wrong subsystem).
struct NftAck {
  std::uint32_t seq = 0;
  int error = 0;  // 0 = ACK, else a positive errno
};

// Parses the NLMSG_ERROR messages in one datagram (other message types are skipped). Bounded:
// a truncated or malformed message ends the walk. An errno outside 1..4095 becomes EPROTO.
std::vector<NftAck> parse_acks(std::span<const std::byte> datagram);

// The asynchronous data-path socket.
class NftSocket {
 public:
  using Handler = boost::asio::any_completion_handler<void(std::error_code)>;

  struct Options {
    std::size_t max_in_flight = 4096;  // batches awaiting ACKs; more fail with EAGAIN
    int rcvbuf = 4 << 20;              // bytes; ACKs of pipelined batches queue here
  };

  // Opens a NETLINK_NETFILTER socket (non-blocking, close-on-exec) connected to the kernel, so
  // that nothing but the kernel can send to it. Throws std::system_error naming the call.
  explicit NftSocket(boost::asio::io_context& io);
  NftSocket(boost::asio::io_context& io, Options options);
  // Adopts `fd`, a connected datagram socket. For tests: they hold the other end of a
  // socketpair and play the kernel.
  NftSocket(boost::asio::io_context& io, int fd, Options options);
  // Pending handlers complete with operation_canceled (posted).
  ~NftSocket();
  NftSocket(const NftSocket&) = delete;
  NftSocket& operator=(const NftSocket&) = delete;

  // Sends `batch` and calls `done` exactly once, always through the io_context (never inline):
  //  * {} when the kernel ACKed every message (an empty batch succeeds at once);
  //  * the kernel's errno (std::generic_category) when it rejected the transaction;
  //  * std::errc::timed_out when the ACKs have not all arrived `deadline` after the send; an ACK
  //    that arrives later is ignored;
  //  * an errno of sendmsg()/recvmsg() (ENOBUFS: the receive queue overflowed and ACKs were lost,
  //    every pending batch fails), EAGAIN when max_in_flight batches are pending,
  //    operation_canceled when the socket is destroyed.
  void send(NftBatch batch, std::chrono::milliseconds deadline, Handler done);

  // The same as an Asio asynchronous operation, e.g.
  //   auto [ec] = co_await s.async_send(std::move(b), 50ms, as_tuple(use_awaitable));
  template <class Token>
  auto async_send(NftBatch batch, std::chrono::milliseconds deadline, Token&& token) {
    return boost::asio::async_initiate<Token, void(std::error_code)>(
        [this](auto handler, NftBatch b, std::chrono::milliseconds d) {
          send(std::move(b), d, Handler(std::move(handler)));
        },
        token, std::move(batch), deadline);
  }

  std::size_t in_flight() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;  // shared with the pending Asio operations
};

// The blocking control-plane socket (start-up: bootstrap, checks, dumps). Every receive is
// bounded by a timeout so that start-up cannot hang.
class NftControlSocket {
 public:
  // Throws std::system_error naming the call.
  explicit NftControlSocket(std::chrono::milliseconds recv_timeout = std::chrono::seconds(5));
  ~NftControlSocket();
  NftControlSocket(const NftControlSocket&) = delete;
  NftControlSocket& operator=(const NftControlSocket&) = delete;

  struct CommitResult {
    std::error_code error;
    std::optional<std::size_t> failed_message;  // index in the batch, when the kernel said
  };
  // Sends `batch` and waits for every ACK or the first error.
  CommitResult commit(NftBatch& batch);

  // Sends one request (a GET message, NLM_F_DUMP in `flags` for a dump) and calls `on_reply`
  // for each nf_tables message of the answer; on_reply returns false to report a parse error
  // (EPROTO). Returns the kernel's errno (ENOENT: no such object) or {}. A dump interrupted by
  // a concurrent change (NLM_F_DUMP_INTR) is retried a few times from the start; `on_reset` runs
  // before each retry so that the caller can drop what it collected.
  std::error_code request(std::uint16_t type, std::uint16_t family, std::uint16_t flags,
                          const std::function<void(nlmsghdr*)>& fill,
                          const std::function<bool(const nlmsghdr*)>& on_reply,
                          const std::function<void()>& on_reset = {});

  // The kernel-assigned netlink port id (for tests and logs).
  std::uint32_t portid() const;

 private:
  struct Close {
    void operator()(mnl_socket* s) const;
  };
  std::unique_ptr<mnl_socket, Close> sock_;
  std::uint32_t seq_ = 1;
  std::vector<std::byte> rx_;
};

}  // namespace dnsd
