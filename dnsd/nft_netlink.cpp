#include "dnsd/nft_netlink.h"

#include <libmnl/libmnl.h>
#include <libnftnl/common.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <set>

namespace dnsd {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

namespace {

// nfnetlink header + nfgenmsg: what nftnl_nlmsg_build_hdr writes before the attributes.
constexpr std::size_t kHeaderRoom = NLMSG_ALIGN(sizeof(nlmsghdr)) + NLMSG_ALIGN(sizeof(nfgenmsg));

// A batch begin/end message is a header and an nfgenmsg.
constexpr std::size_t kBatchMarkerRoom = kHeaderRoom;

// One receive buffer. The kernel's dump skbs are at most 32 KiB (netlink_dump grows its
// allocation up to the reader's buffer, capped at 32 KiB); an ACK with NETLINK_CAP_ACK is 36 bytes.
constexpr std::size_t kRecvBuffer = 64 * 1024;
static_assert(kRecvBuffer >= 32 * 1024);

std::error_code errno_code(int e) { return {e, std::generic_category()}; }

// The fd of a socket until something else owns it.
struct UniqueFd {
  int fd = -1;
  explicit UniqueFd(int f) : fd(f) {}
  ~UniqueFd() {
    if (fd >= 0) ::close(fd);
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  int release() { return std::exchange(fd, -1); }
};

[[noreturn]] void throw_errno(int e, const char* what) {
  throw std::system_error(e, std::generic_category(), what);
}

// Connecting a netlink socket to the kernel (port 0) makes the kernel refuse unicasts from any
// other sender (af_netlink.c, netlink_getsockbyportid: ECONNREFUSED for a connected socket whose
// dst_portid is not the sender's). Without it any local process could forge ACKs to our port.
void connect_to_kernel(int fd) {
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&kernel), sizeof kernel) != 0) {
    throw_errno(errno, "connect(NETLINK_NETFILTER, kernel)");
  }
}

// NETLINK_CAP_ACK: error messages carry only the failing message's header, not its payload
// (netlink(7)), so an error for a large batch message stays small.
void set_cap_ack(int fd) {
  const int one = 1;
  if (::setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof one) != 0) {
    throw_errno(errno, "setsockopt(NETLINK_CAP_ACK)");
  }
}

// SO_RCVBUFFORCE/SO_SNDBUFFORCE pass the sysctl limits with CAP_NET_ADMIN (which dnsd has, to
// change nftables at all); without it the plain option is capped by net.core.*mem_max.
void set_buffer(int fd, int force_opt, int opt, int bytes) {
  if (::setsockopt(fd, SOL_SOCKET, force_opt, &bytes, sizeof bytes) == 0) return;
  (void)::setsockopt(fd, SOL_SOCKET, opt, &bytes, sizeof bytes);  // best effort
}

}  // namespace

// --- NftBatch -----------------------------------------------------------------------------------

NftBatch::NftBatch() {
  reserve(4096);
  const nlmsghdr* nlh = nftnl_batch_begin(reinterpret_cast<char*>(buf_.data()), 0);
  used_ += NLMSG_ALIGN(nlh->nlmsg_len);
}

void NftBatch::reserve(std::size_t more) {
  if (buf_.size() - used_ >= more) return;
  buf_.resize(std::max(buf_.size() * 2, used_ + more));  // zero-filled scratch
}

nlmsghdr* NftBatch::begin_message(std::uint16_t type, std::uint16_t family, std::uint16_t flags,
                                  std::size_t room) {
  if (sealed_) std::abort();  // a programming error: the end marker is already written
  reserve(kHeaderRoom + room);
  const auto nl_flags = static_cast<std::uint16_t>(flags | NLM_F_ACK);  // NLM_F_REQUEST is added
  return nftnl_nlmsg_build_hdr(reinterpret_cast<char*>(buf_.data() + used_),
                               static_cast<std::uint16_t>((NFNL_SUBSYS_NFTABLES << 8) | type),
                               family, nl_flags, 0);
}

void NftBatch::end_message(nlmsghdr* nlh, std::size_t room) {
  // libnftnl wrote unchecked; past the room it wrote past what reserve() guaranteed.
  if (nlh->nlmsg_len > kHeaderRoom + room) std::abort();
  used_ += NLMSG_ALIGN(nlh->nlmsg_len);
  ++messages_;
}

std::span<const std::byte> NftBatch::seal(std::uint32_t first_seq) {
  if (!sealed_) {
    reserve(kBatchMarkerRoom);
    const nlmsghdr* end = nftnl_batch_end(reinterpret_cast<char*>(buf_.data() + used_), 0);
    used_ += NLMSG_ALIGN(end->nlmsg_len);
    sealed_ = true;
  }
  first_seq_ = first_seq;
  std::uint32_t seq = first_seq;
  int left = static_cast<int>(used_);
  for (auto* nlh = reinterpret_cast<nlmsghdr*>(buf_.data()); mnl_nlmsg_ok(nlh, left);
       nlh = mnl_nlmsg_next(nlh, &left)) {
    nlh->nlmsg_seq = seq++;
  }
  return {buf_.data(), used_};
}

// --- ACK parsing --------------------------------------------------------------------------------

std::vector<NftAck> parse_acks(std::span<const std::byte> datagram) {
  std::vector<NftAck> out;
  std::size_t off = 0;
  // netlink(7): messages are NLMSG_ALIGNed; each header's length covers header and payload.
  while (datagram.size() - off >= sizeof(nlmsghdr)) {
    nlmsghdr h;
    std::memcpy(&h, datagram.data() + off, sizeof h);
    if (h.nlmsg_len < sizeof(nlmsghdr) || h.nlmsg_len > datagram.size() - off) break;
    if (h.nlmsg_type == NLMSG_ERROR) {
      // struct nlmsgerr: int error, then the request's header (its payload unless CAP_ACK).
      if (h.nlmsg_len - sizeof(nlmsghdr) < sizeof(nlmsgerr)) break;
      nlmsgerr e;
      std::memcpy(&e, datagram.data() + off + NLMSG_HDRLEN, sizeof e);
      int err = -e.error;  // the kernel sends -errno; 0 is an ACK
      if (err < 0 || err > 4095) err = EPROTO;
      out.push_back({h.nlmsg_seq, err});
    }
    const std::size_t step = NLMSG_ALIGN(h.nlmsg_len);
    if (step > datagram.size() - off) break;
    off += step;
  }
  return out;
}

// --- NftSocket ----------------------------------------------------------------------------------

struct NftSocket::Impl : std::enable_shared_from_this<Impl> {
  struct Pending {
    std::uint32_t last = 0;     // last sequence number of the batch (its end marker)
    std::size_t acks_left = 0;  // ACKs of messages still missing
    Clock::time_point deadline;
    Handler done;
  };

  Impl(asio::io_context& io_, int fd, Options opt)
      : io(io_), sd(io_), timer(io_), options(opt), rx(kRecvBuffer) {
    UniqueFd owned(fd);
    int domain = 0;
    socklen_t len = sizeof domain;
    if (::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0) {
      throw_errno(errno, "getsockopt(SO_DOMAIN)");
    }
    netlink = domain == AF_NETLINK;
    sd.assign(owned.release());
    sd.non_blocking(true);  // every call also passes MSG_DONTWAIT; an adopted fd may not
  }

  void send(NftBatch batch, std::chrono::milliseconds deadline, Handler done) {
    if (closed) return post(std::move(done), make_error_code(std::errc::operation_canceled));
    if (batch.empty()) return post(std::move(done), {});  // no message, no ACK to wait for
    if (pending.size() >= options.max_in_flight) {
      return post(std::move(done), make_error_code(std::errc::resource_unavailable_try_again));
    }
    // Sequence ranges never wrap: a batch that would cross 2^32 starts again at 1. Lookups by
    // range (on_ack) then stay ordered. A batch older than 2^32 messages has long timed out.
    const std::uint64_t span = batch.size() + 2;
    if (static_cast<std::uint64_t>(next_seq) + span > std::numeric_limits<std::uint32_t>::max()) {
      next_seq = 1;
    }
    const std::uint32_t first = next_seq;
    next_seq = static_cast<std::uint32_t>(first + span);
    const std::span<const std::byte> wire = batch.seal(first);

    // The kernel runs the whole transaction inside this call (netlink_unicast_kernel ->
    // nfnetlink_rcv), so it never waits for the network; the ACKs are queued on our socket.
    const ssize_t n =
        ::send(sd.native_handle(), wire.data(), wire.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0) return post(std::move(done), errno_code(errno));
    if (static_cast<std::size_t>(n) != wire.size())
      return post(std::move(done), errno_code(EMSGSIZE));

    const Clock::time_point at = Clock::now() + deadline;
    pending.emplace(first, Pending{batch.last_seq(), batch.size(), at, std::move(done)});
    deadlines.emplace(at, first);
    // The ACKs are queued already (see above): reading them now completes the batch without
    // arming the deadline timer or a trip through the reactor (a timerfd_settime, an
    // epoll_ctl and an epoll_wait per answer). Over a socket that answers later, this finds
    // nothing and the wait below takes over.
    drain();
    arm_timer();
    arm_read();
  }

  void post(Handler done, std::error_code ec) {
    asio::post(io, [h = std::move(done), ec]() mutable { std::move(h)(ec); });
  }

  void complete(std::map<std::uint32_t, Pending>::iterator it, std::error_code ec) {
    if (ec) read_to_end = true;  // its remaining ACKs, if any, are read and dropped
    deadlines.erase({it->second.deadline, it->first});
    Handler done(std::move(it->second.done));
    pending.erase(it);
    post(std::move(done), ec);
  }

  void fail_all(std::error_code ec) {
    while (!pending.empty()) complete(pending.begin(), ec);
  }

  void arm_read() {
    if (reading || closed || pending.empty()) return;
    reading = true;
    sd.async_wait(asio::posix::stream_descriptor::wait_read,
                  [self = shared_from_this()](const boost::system::error_code& ec) {
                    self->reading = false;
                    if (ec || self->closed) return;
                    self->drain();
                    self->arm_read();
                  });
  }

  // Reads queued datagrams, without blocking, until no batch waits for an ACK (the last
  // read would only say EAGAIN) or the queue is empty. After a batch failed or timed out,
  // its other ACKs may still come (nfnetlink acknowledges every message of an aborted batch):
  // then the queue is read to the end, so they never pile up against the receive buffer; a
  // late one still queued is read, and ignored, before the next batch's ACKs.
  void drain() {
    while (!pending.empty() || read_to_end) {
      sockaddr_nl from{};
      iovec iov{rx.data(), rx.size()};
      msghdr msg{};
      msg.msg_name = &from;
      msg.msg_namelen = sizeof from;
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      const ssize_t n = ::recvmsg(sd.native_handle(), &msg, MSG_DONTWAIT);
      if (n < 0) {
        const int e = errno;
        if (e == EINTR) continue;
        if (e == EAGAIN || e == EWOULDBLOCK) {
          read_to_end = false;
          return;
        }
        // ENOBUFS: the queue overflowed and ACKs were dropped (netlink(7)); which ones is
        // unknown, so every pending batch fails rather than wait for an ACK that is gone.
        fail_all(errno_code(e));
        return;
      }
      if (n == 0) return;  // an empty datagram (or a stream peer's EOF): nothing to read
      if (netlink && (msg.msg_namelen < sizeof(sockaddr_nl) || from.nl_pid != 0)) continue;
      if ((msg.msg_flags & MSG_TRUNC) != 0) continue;  // ACKs are small; not one of ours
      for (const NftAck& a : parse_acks({rx.data(), static_cast<std::size_t>(n)})) on_ack(a);
    }
  }

  void on_ack(const NftAck& ack) {
    auto it = pending.upper_bound(ack.seq);
    if (it == pending.begin()) return;  // before every pending batch: late or foreign
    --it;
    if (ack.seq > it->second.last) return;
    if (ack.error != 0) return complete(it, errno_code(ack.error));  // the batch was aborted
    const bool is_message = ack.seq != it->first && ack.seq != it->second.last;
    if (is_message && --it->second.acks_left == 0) complete(it, {});
  }

  void arm_timer() {
    if (closed || deadlines.empty()) return;
    const Clock::time_point earliest = deadlines.begin()->first;
    if (timer_at && *timer_at <= earliest) return;  // an earlier wait is armed
    timer_at = earliest;
    timer.expires_at(earliest);  // cancels a later wait, whose handler sees operation_aborted
    timer.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (ec == asio::error::operation_aborted || self->closed) return;
      self->timer_at.reset();
      self->on_deadline();
    });
  }

  void on_deadline() {
    drain();  // ACKs already queued count: the loop may just have been busy
    const Clock::time_point now = Clock::now();
    while (!deadlines.empty() && deadlines.begin()->first <= now) {
      complete(pending.find(deadlines.begin()->second), make_error_code(std::errc::timed_out));
    }
    arm_timer();
  }

  void close() {
    closed = true;
    boost::system::error_code ignored;
    timer.cancel();
    sd.close(ignored);
    fail_all(make_error_code(std::errc::operation_canceled));
  }

  asio::io_context& io;
  asio::posix::stream_descriptor sd;
  asio::steady_timer timer;
  Options options;
  bool netlink = false;  // check that datagrams come from the kernel
  bool reading = false;
  bool closed = false;
  bool read_to_end = false;  // a batch failed: drain() reads until EAGAIN (see there)
  std::optional<Clock::time_point> timer_at;
  std::uint32_t next_seq = 1;
  std::map<std::uint32_t, Pending> pending;                         // by first sequence number
  std::set<std::pair<Clock::time_point, std::uint32_t>> deadlines;  // (deadline, first)
  std::vector<std::byte> rx;
};

namespace {

int open_netfilter_socket(const NftSocket::Options& options) {
  UniqueFd fd(::socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_NETFILTER));
  if (fd.fd < 0) throw_errno(errno, "socket(AF_NETLINK, NETLINK_NETFILTER)");
  sockaddr_nl local{};
  local.nl_family = AF_NETLINK;  // nl_pid 0: the kernel assigns the port id
  if (::bind(fd.fd, reinterpret_cast<const sockaddr*>(&local), sizeof local) != 0) {
    throw_errno(errno, "bind(NETLINK_NETFILTER)");
  }
  connect_to_kernel(fd.fd);
  set_cap_ack(fd.fd);
  set_buffer(fd.fd, SO_RCVBUFFORCE, SO_RCVBUF, options.rcvbuf);
  return fd.release();
}

}  // namespace

NftSocket::NftSocket(asio::io_context& io) : NftSocket(io, Options{}) {}

NftSocket::NftSocket(asio::io_context& io, Options options)
    : impl_(std::make_shared<Impl>(io, open_netfilter_socket(options), options)) {}

NftSocket::NftSocket(asio::io_context& io, int fd, Options options)
    : impl_(std::make_shared<Impl>(io, fd, options)) {}

NftSocket::~NftSocket() { impl_->close(); }

void NftSocket::send(NftBatch batch, std::chrono::milliseconds deadline, Handler done) {
  impl_->send(std::move(batch), deadline, std::move(done));
}

std::size_t NftSocket::in_flight() const { return impl_->pending.size(); }

// --- NftControlSocket ---------------------------------------------------------------------------

void NftControlSocket::Close::operator()(mnl_socket* s) const { mnl_socket_close(s); }

NftControlSocket::NftControlSocket(std::chrono::milliseconds recv_timeout) : rx_(kRecvBuffer) {
  sock_.reset(mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC));
  if (!sock_) throw_errno(errno, "mnl_socket_open2(NETLINK_NETFILTER)");
  if (mnl_socket_bind(sock_.get(), 0, MNL_SOCKET_AUTOPID) != 0) {
    throw_errno(errno, "mnl_socket_bind(NETLINK_NETFILTER)");
  }
  const int fd = mnl_socket_get_fd(sock_.get());
  connect_to_kernel(fd);
  set_cap_ack(fd);
  // Bootstrap and the networks' refill can be large batches; a datagram must fit the send
  // buffer (netlink_sendmsg: EMSGSIZE above sk_sndbuf - 32).
  set_buffer(fd, SO_SNDBUFFORCE, SO_SNDBUF, 8 << 20);
  set_buffer(fd, SO_RCVBUFFORCE, SO_RCVBUF, 4 << 20);
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(recv_timeout.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((recv_timeout.count() % 1000) * 1000);
  if (::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0) {
    throw_errno(errno, "setsockopt(SO_RCVTIMEO)");
  }
}

NftControlSocket::~NftControlSocket() = default;

std::uint32_t NftControlSocket::portid() const { return mnl_socket_get_portid(sock_.get()); }

NftControlSocket::CommitResult NftControlSocket::commit(NftBatch& batch) {
  if (batch.empty()) return {};
  const std::uint32_t first = seq_;
  seq_ += static_cast<std::uint32_t>(batch.size() + 2);
  const std::span<const std::byte> wire = batch.seal(first);
  if (mnl_socket_sendto(sock_.get(), wire.data(), wire.size()) < 0) {
    return {errno_code(errno), std::nullopt};
  }
  std::size_t acks_left = batch.size();
  while (acks_left > 0) {
    const ssize_t n = mnl_socket_recvfrom(sock_.get(), rx_.data(), rx_.size());
    if (n < 0) {
      const int e = errno;
      if (e == EINTR) continue;
      return {errno_code(e == EAGAIN ? ETIMEDOUT : e), std::nullopt};  // SO_RCVTIMEO: EAGAIN
    }
    for (const NftAck& a : parse_acks({rx_.data(), static_cast<std::size_t>(n)})) {
      if (a.seq < first || a.seq > batch.last_seq()) continue;  // an older request's
      const bool is_message = a.seq != first && a.seq != batch.last_seq();
      if (a.error != 0) {
        std::optional<std::size_t> index;
        if (is_message) index = a.seq - first - 1;
        return {errno_code(a.error), index};
      }
      if (is_message) --acks_left;
    }
  }
  return {};
}

std::error_code NftControlSocket::request(std::uint16_t type, std::uint16_t family,
                                          std::uint16_t flags,
                                          const std::function<void(nlmsghdr*)>& fill,
                                          const std::function<bool(const nlmsghdr*)>& on_reply,
                                          const std::function<void()>& on_reset) {
  const bool dump = (flags & NLM_F_DUMP) == NLM_F_DUMP;
  constexpr int kDumpTries = 4;
  std::vector<char> req(MNL_SOCKET_BUFFER_SIZE);
  for (int attempt = 0; attempt < kDumpTries; ++attempt) {
    if (attempt > 0 && on_reset) on_reset();
    std::fill(req.begin(), req.end(), '\0');
    const std::uint32_t seq = seq_++;
    nlmsghdr* nlh = nftnl_nlmsg_build_hdr(
        req.data(), static_cast<std::uint16_t>((NFNL_SUBSYS_NFTABLES << 8) | type), family, flags,
        seq);
    fill(nlh);  // a GET names a table, a set or a chain: far below the buffer
    if (nlh->nlmsg_len > req.size()) std::abort();
    if (mnl_socket_sendto(sock_.get(), nlh, nlh->nlmsg_len) < 0) return errno_code(errno);

    bool interrupted = false;
    bool parse_failed = false;  // the dump is still read to its end
    bool done = false;
    while (!done) {
      const ssize_t n = mnl_socket_recvfrom(sock_.get(), rx_.data(), rx_.size());
      if (n < 0) {
        const int e = errno;
        if (e == EINTR) continue;
        return errno_code(e == EAGAIN ? ETIMEDOUT : e);  // SO_RCVTIMEO expired
      }
      int left = static_cast<int>(n);
      for (auto* m = reinterpret_cast<const nlmsghdr*>(rx_.data()); !done && mnl_nlmsg_ok(m, left);
           m = mnl_nlmsg_next(m, &left)) {
        // ACKs of an earlier batch that failed early are still queued: skip other sequences.
        if (m->nlmsg_seq != seq) continue;
        if (m->nlmsg_type == NLMSG_ERROR) {
          const std::vector<NftAck> acks =
              parse_acks({reinterpret_cast<const std::byte*>(m), m->nlmsg_len});
          if (acks.empty()) return errno_code(EPROTO);
          return acks.front().error == 0 ? std::error_code{} : errno_code(acks.front().error);
        }
        if (m->nlmsg_type == NLMSG_DONE) {
          done = true;
          break;
        }
        // netlink(7): NLM_F_DUMP_INTR marks a dump that raced a change. It is read to its end
        // (the kernel refuses a new dump on this socket while one runs), then redone.
        if ((m->nlmsg_flags & NLM_F_DUMP_INTR) != 0) interrupted = true;
        if (m->nlmsg_type < NLMSG_MIN_TYPE) continue;  // NLMSG_NOOP, NLMSG_OVERRUN
        if (!interrupted && !parse_failed && !on_reply(m)) parse_failed = true;
        if (!dump) return parse_failed ? errno_code(EPROTO) : std::error_code{};
      }
    }
    if (parse_failed) return errno_code(EPROTO);
    if (!interrupted) return {};
  }
  return errno_code(EINTR);
}

}  // namespace dnsd
