// The upstream transport: c-ares `ares_send` of the raw query (retries, server rotation, TCP on
// truncation, random IDs), driven by the Asio loop through c-ares's socket-state callback,
// `ares_process_fd` and one timer armed from `ares_timeout()`. No extra thread, no polling.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include <ares.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

#include "dnsd/config.h"

namespace dnsd {

class Upstream {
 public:
  // `status` is ARES_SUCCESS with the upstream's bytes in `answer`, or a c-ares error
  // (ARES_ETIMEOUT, ARES_ECONNREFUSED, ARES_ESERVFAIL after every server failed...).
  using Handler = std::function<void(int status, std::span<const std::uint8_t> answer)>;

  // `servers` empty: c-ares reads the nameservers of /etc/resolv.conf. `try_timeout` is the
  // first attempt's timeout (c-ares doubles it on each round). Throws std::runtime_error.
  // `mark`, when set, is put on every socket c-ares opens (SO_MARK): the enforce-mode chain lets
  // exactly those through to upstream resolvers (needs CAP_NET_ADMIN).
  Upstream(boost::asio::io_context& io, const std::vector<Endpoint>& servers,
           std::chrono::milliseconds try_timeout, int tries,
           std::optional<std::uint32_t> mark = std::nullopt);
  ~Upstream();
  Upstream(const Upstream&) = delete;
  Upstream& operator=(const Upstream&) = delete;

  // Sends `query` (its ID is replaced by c-ares); `handler` runs exactly once, possibly before
  // send() returns. After the Upstream is destroyed, pending handlers never run.
  void send(std::span<const std::uint8_t> query, Handler handler);

  // The servers in use, as endpoints (to detect a loop back to dnsd's own listeners).
  std::vector<Endpoint> servers() const;

  // How often the upstream sockets were closed to renew their source ports (for tests/stats).
  std::size_t socket_rotations() const { return rotations_; }

  // c-ares keeps its sockets open between queries (ARES_FLAG_STAYOPEN); once this many queries
  // used them, they are closed at the next idle moment so that a new socket gets a new random
  // source port: an off-path spoofer faces a port it has not seen for at most this many queries.
  static constexpr std::size_t kQueriesPerSocket = 32;

 private:
  struct Watch;
  struct Pending;
  static void on_sock_state(void* self, ares_socket_t fd, int readable, int writable);
  static int on_socket_created(ares_socket_t fd, int type, void* self);
  static void on_answer(void* arg, int status, int timeouts, unsigned char* abuf, int alen);
  void sock_state(ares_socket_t fd, bool readable, bool writable);
  void arm_read(const std::shared_ptr<Watch>& w);
  void arm_write(const std::shared_ptr<Watch>& w);
  void arm_timer();
  void rotate_sockets();

  boost::asio::io_context& io_;
  ares_channel channel_ = nullptr;
  boost::asio::steady_timer timer_;
  std::unordered_map<ares_socket_t, std::shared_ptr<Watch>> watches_;
  std::optional<std::uint32_t> mark_;
  bool timer_armed_ = false;
  bool destroying_ = false;
  std::string servers_csv_;
  std::size_t pending_ = 0;          // queries sent and not yet answered
  std::size_t sent_on_sockets_ = 0;  // queries since the sockets were last renewed
  std::size_t rotations_ = 0;
  bool rotate_posted_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // guards posted handlers
};

}  // namespace dnsd
