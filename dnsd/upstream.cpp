#include "dnsd/upstream.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include <boost/asio/post.hpp>
#include <spdlog/spdlog.h>

namespace dnsd {

namespace asio = boost::asio;

// One c-ares socket watched by Asio. The descriptor is borrowed: c-ares opens and closes it, so
// it is released (never closed) when c-ares says the socket is done.
struct Upstream::Watch {
  explicit Watch(asio::io_context& io, ares_socket_t s) : sd(io, s), fd(s) {}
  asio::posix::stream_descriptor sd;
  ares_socket_t fd;
  bool want_read = false, want_write = false;
  bool reading = false, writing = false;
  bool done = false;
};

namespace {

struct LibraryInit {
  LibraryInit() {
    if (const int rc = ares_library_init(ARES_LIB_INIT_ALL); rc != ARES_SUCCESS) {
      throw std::runtime_error(std::string("ares_library_init: ") + ares_strerror(rc));
    }
  }
};

}  // namespace

Upstream::Upstream(asio::io_context& io, const std::vector<Endpoint>& servers,
                   std::chrono::milliseconds try_timeout, int tries,
                   std::optional<std::uint32_t> mark)
    : io_(io), timer_(io), mark_(mark) {
  static LibraryInit init;
  ares_options opts{};
  opts.sock_state_cb = &Upstream::on_sock_state;
  opts.sock_state_cb_data = this;
  opts.timeout = static_cast<int>(try_timeout.count());
  opts.tries = tries;
  // NOCHECKRESP stays off: a SERVFAIL/REFUSED/NOTIMP answer makes c-ares try the next server.
  // STAYOPEN: without it c-ares closes its socket whenever no query is pending, so at a low
  // query rate every query paid socket+connect+fcntl x3+ioctl+close and their epoll updates
  // (18 syscalls per miss instead of 10, counted with strace -c). The source port is still
  // renewed: rotate_sockets() closes the sockets once kQueriesPerSocket queries used them.
  opts.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_STAYOPEN;
  const int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_FLAGS;
  if (const int rc = ares_init_options(&channel_, &opts, mask); rc != ARES_SUCCESS) {
    throw std::runtime_error(std::string("c-ares init: ") + ares_strerror(rc));
  }
  // The configure callback runs before connect(): a TCP SYN must carry the mark too (the plain
  // socket callback runs after connect() has sent it, and the chain rejects unmarked port 53).
  if (mark_) ares_set_socket_configure_callback(channel_, &Upstream::on_socket_created, this);
  if (!servers.empty()) {
    std::string csv;
    for (const Endpoint& e : servers) {
      if (!csv.empty()) csv += ',';
      csv += e.to_string();
    }
    if (const int rc = ares_set_servers_ports_csv(channel_, csv.c_str()); rc != ARES_SUCCESS) {
      ares_destroy(channel_);
      throw std::runtime_error("c-ares servers \"" + csv + "\": " + ares_strerror(rc));
    }
  }
  // The servers as set now (from the config or resolv.conf), to set again in rotate_sockets().
  for (const Endpoint& e : this->servers()) {
    if (!servers_csv_.empty()) servers_csv_ += ',';
    servers_csv_ += e.to_string();
  }
}

Upstream::~Upstream() {
  destroying_ = true;  // ares_destroy runs every pending callback with ARES_EDESTRUCTION
  ares_destroy(channel_);
  for (auto& [fd, w] : watches_) {
    w->done = true;
    boost::system::error_code ignored;
    w->sd.cancel(ignored);
    w->sd.release();
  }
}

std::vector<Endpoint> Upstream::servers() const {
  std::vector<Endpoint> out;
  ares_addr_port_node* list = nullptr;
  if (ares_get_servers_ports(channel_, &list) != ARES_SUCCESS) return out;
  for (const ares_addr_port_node* n = list; n != nullptr; n = n->next) {
    Endpoint e;
    e.port = n->udp_port != 0 ? static_cast<std::uint16_t>(n->udp_port) : 53;
    if (n->family == AF_INET) {
      asio::ip::address_v4::bytes_type b;
      std::memcpy(b.data(), &n->addr.addr4, 4);
      e.address = asio::ip::address_v4(b);
    } else {
      asio::ip::address_v6::bytes_type b;
      std::memcpy(b.data(), &n->addr.addr6, 16);
      e.address = asio::ip::address_v6(b);
    }
    out.push_back(e);
  }
  ares_free_data(list);
  return out;
}

struct Upstream::Pending {
  Upstream* self;
  Handler handler;
};

void Upstream::send(std::span<const std::uint8_t> query, Handler handler) {
  auto* arg = new Pending{this, std::move(handler)};
  ++pending_;
  ++sent_on_sockets_;
  ares_send(channel_, query.data(), static_cast<int>(query.size()), &Upstream::on_answer, arg);
  arm_timer();
}

void Upstream::on_answer(void* arg, int status, int /*timeouts*/, unsigned char* abuf, int alen) {
  std::unique_ptr<Pending> p(static_cast<Pending*>(arg));
  if (status == ARES_EDESTRUCTION) return;
  Upstream& self = *p->self;
  --self.pending_;
  std::span<const std::uint8_t> answer;
  if (status == ARES_SUCCESS && abuf != nullptr && alen > 0) {
    answer = {abuf, static_cast<std::size_t>(alen)};
  }
  p->handler(status, answer);
  // Not from inside c-ares's own processing: setting servers frees the state it is walking.
  if (self.pending_ == 0 && self.sent_on_sockets_ >= kQueriesPerSocket && !self.rotate_posted_) {
    self.rotate_posted_ = true;
    asio::post(self.io_, [alive = std::weak_ptr<bool>(self.alive_), s = &self] {
      if (alive.expired()) return;
      s->rotate_sockets();
    });
  }
}

// Setting the same servers again makes c-ares close their sockets (it refuses while queries
// are pending, so this runs only when idle); the next query opens a fresh socket and the
// kernel picks a new random source port. Under continuous load the channel is never idle and
// the sockets live on, as they did without STAYOPEN.
void Upstream::rotate_sockets() {
  rotate_posted_ = false;
  if (pending_ != 0 || servers_csv_.empty()) return;
  if (const int rc = ares_set_servers_ports_csv(channel_, servers_csv_.c_str());
      rc != ARES_SUCCESS) {
    spdlog::warn("c-ares: renewing upstream sockets failed: {}", ares_strerror(rc));
    return;
  }
  sent_on_sockets_ = 0;
  ++rotations_;
}

// An unmarked upstream socket would be dropped by the enforce chain anyway; refusing it here
// makes c-ares report the failure at once instead of after a timeout.
int Upstream::on_socket_created(ares_socket_t fd, int /*type*/, void* self) {
  const std::uint32_t mark = *static_cast<Upstream*>(self)->mark_;
  if (setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof mark) != 0) {
    const int err = errno;
    spdlog::error("setsockopt(SO_MARK {:#x}) on an upstream socket: {}", mark,
                  std::strerror(err));
    return -1;
  }
  return 0;
}

void Upstream::on_sock_state(void* self, ares_socket_t fd, int readable, int writable) {
  static_cast<Upstream*>(self)->sock_state(fd, readable != 0, writable != 0);
}

void Upstream::sock_state(ares_socket_t fd, bool readable, bool writable) {
  if (destroying_) return;
  auto it = watches_.find(fd);
  if (!readable && !writable) {  // c-ares is about to close fd
    if (it != watches_.end()) {
      it->second->done = true;
      boost::system::error_code ignored;
      it->second->sd.cancel(ignored);
      it->second->sd.release();
      watches_.erase(it);
    }
    return;
  }
  if (it == watches_.end()) {
    it = watches_.emplace(fd, std::make_shared<Watch>(io_, fd)).first;
  }
  const std::shared_ptr<Watch> w = it->second;
  w->want_read = readable;
  w->want_write = writable;
  if (readable) arm_read(w);
  if (writable) arm_write(w);
}

void Upstream::arm_read(const std::shared_ptr<Watch>& w) {
  if (w->reading || w->done) return;
  w->reading = true;
  w->sd.async_wait(asio::posix::descriptor_base::wait_read,
                   [this, w](const boost::system::error_code& ec) {
                     w->reading = false;
                     if (ec || w->done) return;
                     ares_process_fd(channel_, w->fd, ARES_SOCKET_BAD);
                     if (!w->done && w->want_read) arm_read(w);
                     arm_timer();
                   });
}

void Upstream::arm_write(const std::shared_ptr<Watch>& w) {
  if (w->writing || w->done) return;
  w->writing = true;
  w->sd.async_wait(asio::posix::descriptor_base::wait_write,
                   [this, w](const boost::system::error_code& ec) {
                     w->writing = false;
                     if (ec || w->done) return;
                     ares_process_fd(channel_, ARES_SOCKET_BAD, w->fd);
                     if (!w->done && w->want_write) arm_write(w);
                     arm_timer();
                   });
}

// c-ares keeps its own per-query deadlines; ares_timeout() says when the next one falls due.
// The timer is re-armed only when that is sooner than what it waits for already: a wait that
// fires early just processes nothing and re-arms, while cancelling on every packet costs a
// handler each time.
void Upstream::arm_timer() {
  timeval tv{};
  if (ares_timeout(channel_, nullptr, &tv) == nullptr) return;  // nothing pending
  const auto due = std::chrono::steady_clock::now() + std::chrono::seconds(tv.tv_sec) +
                   std::chrono::microseconds(tv.tv_usec);
  if (timer_armed_ && timer_.expiry() <= due) return;
  timer_armed_ = true;
  timer_.expires_at(due);
  timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;  // re-armed sooner, or shutting down
    timer_armed_ = false;
    ares_process_fd(channel_, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    arm_timer();
  });
}

}  // namespace dnsd
