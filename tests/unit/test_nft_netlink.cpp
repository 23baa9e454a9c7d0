// The data-path netlink socket (dnsd/nft_netlink.h) without the kernel: NftSocket adopts one end
// of a socketpair and the test plays the kernel on the other end, reading each batch and writing
// NLMSG_ERROR ACKs as nfnetlink would. No privileges needed.
#include <doctest/doctest.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <poll.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <tuple>
#include <vector>

#include "dnsd/nft_netlink.h"
#include "dnsd/nft_table.h"

namespace {

namespace asio = boost::asio;
using dnsd::NftAck;
using dnsd::NftBatch;
using dnsd::NftSocket;
using std::chrono::milliseconds;

// A batch of `n` one-element add messages (n addresses of alternating family).
NftBatch batch_of(int n) {
  std::vector<dnsd::SetElement> elems;
  for (int i = 0; i < n; ++i) {
    dnsd::SetElement e;
    e.address.family = i % 2 == 0 ? 4 : 6;
    e.address.bytes[0] = 192;
    e.address.bytes[3] = static_cast<std::uint8_t>(i);
    e.timeout = e.expires = milliseconds(1000);
    elems.push_back(e);
  }
  NftBatch b;
  REQUIRE(dnsd::append_add_elements(b, dnsd::TableSpec{}, elems));
  return b;
}

// The kernel's side of the socketpair.
class FakeKernel {
 public:
  FakeKernel() {
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, fds) == 0);
    ours_ = fds[0];
    theirs_ = fds[1];
  }
  ~FakeKernel() {
    if (theirs_ >= 0) ::close(theirs_);
    if (ours_ >= 0) ::close(ours_);
  }
  FakeKernel(const FakeKernel&) = delete;
  FakeKernel& operator=(const FakeKernel&) = delete;

  int give_socket() { return std::exchange(ours_, -1); }  // NftSocket adopts and closes it
  void close_kernel_end() { ::close(std::exchange(theirs_, -1)); }

  struct Received {
    std::vector<std::uint32_t> seqs;  // every message, begin and end included
    std::vector<std::uint16_t> types;
  };
  // The next batch datagram, waiting at most a second.
  std::optional<Received> read_batch() {
    pollfd p{theirs_, POLLIN, 0};
    if (::poll(&p, 1, 1000) != 1) return std::nullopt;
    std::vector<std::byte> buf(1 << 16);
    const ssize_t n = ::recv(theirs_, buf.data(), buf.size(), 0);
    if (n <= 0) return std::nullopt;
    Received r;
    std::size_t off = 0;
    while (static_cast<std::size_t>(n) - off >= sizeof(nlmsghdr)) {
      nlmsghdr h;
      std::memcpy(&h, buf.data() + off, sizeof h);
      if (h.nlmsg_len < sizeof h) break;
      r.seqs.push_back(h.nlmsg_seq);
      r.types.push_back(h.nlmsg_type);
      off += NLMSG_ALIGN(h.nlmsg_len);
    }
    return r;
  }
  bool nothing_sent() {
    std::byte b;
    return ::recv(theirs_, &b, 1, MSG_DONTWAIT) < 0 && errno == EAGAIN;
  }

  // What nfnetlink sends per message: NLMSG_ERROR with -errno (0: ACK) and, with
  // NETLINK_CAP_ACK, only the request's header.
  void ack(std::uint32_t seq, int err = 0) {
    struct {
      nlmsghdr h;
      nlmsgerr e;
    } m{};
    m.h.nlmsg_len = sizeof m;
    m.h.nlmsg_type = NLMSG_ERROR;
    m.h.nlmsg_flags = NLM_F_CAPPED;
    m.h.nlmsg_seq = seq;
    m.e.error = -err;
    m.e.msg.nlmsg_seq = seq;
    raw(&m, sizeof m);
  }
  void raw(const void* data, std::size_t len) {
    REQUIRE(::send(theirs_, data, len, 0) == static_cast<ssize_t>(len));
  }
  // Bytes sent to NftSocket that it has not read yet (unix(7) SIOCOUTQ: a datagram stays
  // charged to the sender until the receiver takes it).
  int unread() const {
    int n = -1;
    REQUIRE(::ioctl(theirs_, SIOCOUTQ, &n) == 0);
    return n;
  }

 private:
  int ours_ = -1;
  int theirs_ = -1;
};

struct Calls {
  std::vector<std::error_code> results;
  NftSocket::Handler handler() {
    return NftSocket::Handler([this](std::error_code ec) { results.push_back(ec); });
  }
};

// Runs the loop until `pred` holds (bounded: a broken implementation fails, it does not hang).
void run_until(asio::io_context& io, const std::function<bool()>& pred) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!pred() && std::chrono::steady_clock::now() < until) {
    io.restart();
    io.run_one_for(milliseconds(10));
  }
  REQUIRE(pred());
}

// Lets every ready handler run (the reactor polled without blocking), a few rounds.
void settle(asio::io_context& io) {
  for (int i = 0; i < 5; ++i) {
    io.restart();
    io.poll();
  }
}

std::vector<std::byte> ack_bytes(std::uint32_t seq, int error) {
  struct {
    nlmsghdr h;
    nlmsgerr e;
  } m{};
  m.h.nlmsg_len = sizeof m;
  m.h.nlmsg_type = NLMSG_ERROR;
  m.h.nlmsg_seq = seq;
  m.e.error = error;
  std::vector<std::byte> out(sizeof m);
  std::memcpy(out.data(), &m, sizeof m);
  return out;
}

}  // namespace

TEST_CASE("parse_acks reads NLMSG_ERROR messages and stops at malformed ones") {
  std::vector<std::byte> d = ack_bytes(5, 0);
  const std::vector<std::byte> e = ack_bytes(6, -ENOENT);
  d.insert(d.end(), e.begin(), e.end());
  std::vector<NftAck> acks = dnsd::parse_acks(d);
  REQUIRE(acks.size() == 2);
  CHECK(acks[0].seq == 5);
  CHECK(acks[0].error == 0);
  CHECK(acks[1].seq == 6);
  CHECK(acks[1].error == ENOENT);

  // A positive or huge "errno" is not one: EPROTO.
  CHECK(dnsd::parse_acks(ack_bytes(1, 7)).at(0).error == EPROTO);
  CHECK(dnsd::parse_acks(ack_bytes(1, -100000)).at(0).error == EPROTO);

  // Truncated: the header claims more than the datagram holds.
  std::vector<std::byte> cut = ack_bytes(9, 0);
  cut.resize(cut.size() - 1);
  CHECK(dnsd::parse_acks(cut).empty());
  // An NLMSG_ERROR too short for its nlmsgerr.
  nlmsghdr h{};
  h.nlmsg_len = sizeof h;
  h.nlmsg_type = NLMSG_ERROR;
  std::vector<std::byte> shorty(sizeof h);
  std::memcpy(shorty.data(), &h, sizeof h);
  CHECK(dnsd::parse_acks(shorty).empty());
  // A length below the header size ends the walk instead of looping.
  h.nlmsg_len = 3;
  std::memcpy(shorty.data(), &h, sizeof h);
  CHECK(dnsd::parse_acks(shorty).empty());
  // Other message types are skipped, not misread.
  nlmsghdr done{};
  done.nlmsg_len = sizeof done;
  done.nlmsg_type = NLMSG_DONE;
  std::vector<std::byte> mixed(sizeof done);
  std::memcpy(mixed.data(), &done, sizeof done);
  const std::vector<std::byte> a = ack_bytes(3, 0);
  mixed.insert(mixed.end(), a.begin(), a.end());
  REQUIRE(dnsd::parse_acks(mixed).size() == 1);
  CHECK(dnsd::parse_acks(mixed)[0].seq == 3);
  CHECK(dnsd::parse_acks({}).empty());
}

TEST_CASE("a batch completes once, after the ACK of every message") {
  asio::io_context io;
  FakeKernel k;
  NftSocket sock(io, k.give_socket(), {});
  Calls calls;
  sock.send(batch_of(2), milliseconds(5000), calls.handler());
  CHECK(sock.in_flight() == 1);

  const auto got = k.read_batch();
  REQUIRE(got);
  REQUIRE(got->seqs.size() == 4);  // begin, two messages, end
  CHECK(got->types.front() == NFNL_MSG_BATCH_BEGIN);
  CHECK(got->types.back() == NFNL_MSG_BATCH_END);
  for (std::size_t i = 1; i < got->seqs.size(); ++i) CHECK(got->seqs[i] == got->seqs[0] + i);

  k.ack(got->seqs[1]);
  settle(io);
  CHECK(calls.results.empty());  // one ACK of two: not yet
  k.ack(got->seqs[2]);
  run_until(io, [&] { return !calls.results.empty(); });
  REQUIRE(calls.results.size() == 1);
  CHECK_FALSE(calls.results[0]);
  CHECK(sock.in_flight() == 0);
  k.ack(got->seqs[2]);  // a duplicate is ignored
  settle(io);
  CHECK(calls.results.size() == 1);
}

TEST_CASE("the kernel's errno fails the batch at once; its later ACKs are ignored") {
  asio::io_context io;
  FakeKernel k;
  NftSocket sock(io, k.give_socket(), {});
  Calls calls;
  sock.send(batch_of(2), milliseconds(5000), calls.handler());
  const auto got = k.read_batch();
  REQUIRE(got);
  k.ack(got->seqs[1], ENOENT);  // e.g. the table was deleted behind our back
  run_until(io, [&] { return !calls.results.empty(); });
  CHECK(calls.results.at(0) == std::errc::no_such_file_or_directory);
  CHECK(calls.results.at(0).category() == std::generic_category());
  k.ack(got->seqs[2]);
  settle(io);
  CHECK(calls.results.size() == 1);

  // An error addressed to the batch begin (the kernel rejecting the batch itself) counts too.
  sock.send(batch_of(1), milliseconds(5000), calls.handler());
  const auto second = k.read_batch();
  REQUIRE(second);
  k.ack(second->seqs.front(), EINVAL);
  run_until(io, [&] { return calls.results.size() == 2; });
  CHECK(calls.results[1] == std::errc::invalid_argument);
}

TEST_CASE("after a failed batch, its other ACKs are read at once, not left queued") {
  asio::io_context io;
  FakeKernel k;
  NftSocket sock(io, k.give_socket(), {});
  Calls calls;
  sock.send(batch_of(3), milliseconds(5000), calls.handler());
  const auto got = k.read_batch();
  REQUIRE(got);
  // nfnetlink acknowledges every message of an aborted batch, all queued together.
  k.ack(got->seqs[1], EEXIST);
  k.ack(got->seqs[2]);
  k.ack(got->seqs[3]);
  run_until(io, [&] { return !calls.results.empty(); });
  settle(io);
  REQUIRE(calls.results.size() == 1);
  CHECK(calls.results[0] == std::errc::file_exists);
  CHECK(k.unread() == 0);  // nothing waits in the receive buffer for the next batch
}

TEST_CASE("no ACK by the deadline: timed_out, and a late ACK is ignored") {
  asio::io_context io;
  FakeKernel k;
  NftSocket sock(io, k.give_socket(), {});
  Calls calls;
  sock.send(batch_of(1), milliseconds(20), calls.handler());
  const auto got = k.read_batch();
  REQUIRE(got);
  run_until(io, [&] { return !calls.results.empty(); });
  CHECK(calls.results.at(0) == std::errc::timed_out);
  CHECK(sock.in_flight() == 0);
  k.ack(got->seqs[1]);
  settle(io);
  CHECK(calls.results.size() == 1);
}

TEST_CASE("an ACK queued before the deadline fires counts even if the loop was late") {
  asio::io_context io;
  FakeKernel k;
  NftSocket sock(io, k.give_socket(), {});
  Calls calls;
  sock.send(batch_of(1), milliseconds(1), calls.handler());
  const auto got = k.read_batch();
  REQUIRE(got);
  k.ack(got->seqs[1]);
  ::usleep(20000);  // the deadline passes while the ACK waits in the queue
  run_until(io, [&] { return !calls.results.empty(); });
  CHECK_FALSE(calls.results.at(0));
}

TEST_CASE("pipelined batches complete independently, whatever the ACK order") {
  asio::io_context io;
  FakeKernel k;
  NftSocket sock(io, k.give_socket(), {});
  std::vector<std::optional<std::error_code>> results(3);
  for (std::size_t i = 0; i < 3; ++i) {
    sock.send(batch_of(static_cast<int>(i) + 1), milliseconds(5000),
              [&results, i](std::error_code ec) {
                CHECK_FALSE(results[i].has_value());  // exactly once
                results[i] = ec;
              });
  }
  CHECK(sock.in_flight() == 3);
  std::vector<FakeKernel::Received> got;
  for (int i = 0; i < 3; ++i) {
    auto r = k.read_batch();
    REQUIRE(r);
    got.push_back(*r);
  }
  // Sequence ranges do not overlap.
  CHECK(got[0].seqs.back() < got[1].seqs.front());
  CHECK(got[1].seqs.back() < got[2].seqs.front());
  // Batch 3 fails, batch 2 and 1 succeed; ACKs interleaved and in reverse order.
  k.ack(got[2].seqs[3]);
  k.ack(got[1].seqs[2]);
  k.ack(got[0].seqs[1]);
  k.ack(got[2].seqs[2], EEXIST);
  k.ack(got[1].seqs[1]);
  run_until(io, [&] { return results[0] && results[1] && results[2]; });
  CHECK_FALSE(*results[0]);
  CHECK_FALSE(*results[1]);
  CHECK(*results[2] == std::errc::file_exists);
}

TEST_CASE("garbage and foreign sequence numbers are ignored") {
  asio::io_context io;
  FakeKernel k;
  NftSocket sock(io, k.give_socket(), {});
  Calls calls;
  sock.send(batch_of(1), milliseconds(5000), calls.handler());
  const auto got = k.read_batch();
  REQUIRE(got);
  const char junk[] = "not netlink at all";
  k.raw(junk, sizeof junk);
  k.ack(got->seqs.back() + 1000, ENOENT);  // nobody's batch
  k.ack(0, ENOENT);
  settle(io);
  CHECK(calls.results.empty());
  k.ack(got->seqs[1]);
  run_until(io, [&] { return !calls.results.empty(); });
  CHECK_FALSE(calls.results.at(0));
}

TEST_CASE("edge cases: empty batch, in-flight cap, send failure, destruction") {
  asio::io_context io;
  FakeKernel k;
  NftSocket::Options opt;
  opt.max_in_flight = 1;
  auto sock = std::make_unique<NftSocket>(io, k.give_socket(), opt);
  Calls calls;

  sock->send(NftBatch{}, milliseconds(5000), calls.handler());
  CHECK(calls.results.empty());  // never inline
  run_until(io, [&] { return calls.results.size() == 1; });
  CHECK_FALSE(calls.results[0]);
  CHECK(k.nothing_sent());

  sock->send(batch_of(1), milliseconds(5000), calls.handler());
  sock->send(batch_of(1), milliseconds(5000), calls.handler());
  run_until(io, [&] { return calls.results.size() == 2; });
  CHECK(calls.results[1] == std::errc::resource_unavailable_try_again);
  CHECK(sock->in_flight() == 1);

  sock.reset();  // the pending batch is cancelled, once
  run_until(io, [&] { return calls.results.size() == 3; });
  CHECK(calls.results[2] == std::errc::operation_canceled);
  settle(io);
  CHECK(calls.results.size() == 3);

  FakeKernel gone;
  NftSocket orphan(io, gone.give_socket(), {});
  gone.close_kernel_end();
  orphan.send(batch_of(1), milliseconds(5000), calls.handler());
  run_until(io, [&] { return calls.results.size() == 4; });
  CHECK(calls.results[3]);  // sendmsg's errno (ECONNREFUSED on a unix socket)
  CHECK(orphan.in_flight() == 0);
}

TEST_CASE("async_send works as an awaitable with as_tuple") {
  asio::io_context io;
  FakeKernel k;
  NftSocket sock(io, k.give_socket(), {});
  std::optional<std::error_code> result;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        auto [ec] = co_await sock.async_send(batch_of(1), milliseconds(5000),
                                             asio::as_tuple(asio::use_awaitable));
        result = ec;
      },
      asio::detached);
  settle(io);  // the coroutine runs up to the send
  const auto got = k.read_batch();
  REQUIRE(got);
  k.ack(got->seqs[1], EPERM);
  run_until(io, [&] { return result.has_value(); });
  CHECK(*result == std::errc::operation_not_permitted);
}
