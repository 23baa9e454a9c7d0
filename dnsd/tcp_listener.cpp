#include "dnsd/tcp_listener.h"

#include <deque>
#include <memory>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <spdlog/spdlog.h>

namespace dnsd {

namespace asio = boost::asio;
using asio::ip::tcp;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

namespace {
// A query needs a few hundred octets (see udp_listener.cpp); a larger length prefix is garbage
// and ends the connection instead of making us buffer 64 KiB per peer.
constexpr std::size_t kMaxTcpQuery = 4096;
// Replies queued for a client that does not read: past this the connection is closed instead of
// growing without bound (a full reply is at most 64 KiB).
constexpr std::size_t kMaxQueuedBytes = 256 * 1024;

// An exception escaping a coroutine must not leave a deaf listener in a live process: it goes
// out of io_context::run() and main() reports it and exits.
void rethrow(std::exception_ptr e) {
  if (e) std::rethrow_exception(e);
}
}  // namespace

class TcpListener::Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(tcp::socket socket, TcpListener& owner)
      : socket_(std::move(socket)),
        idle_(socket_.get_executor()),
        resume_(socket_.get_executor()),
        owner_(owner),
        count_(owner.connections_) {
    ++*count_;
    boost::system::error_code ec;
    const auto peer = socket_.remote_endpoint(ec);
    client_ = ClientInfo{peer.address(), peer.port(), true};
  }
  // The io_context may free this after the listener is gone (shutdown): only the shared
  // counter is touched here.
  ~Connection() { --*count_; }

  void start() {
    auto self = shared_from_this();
    asio::co_spawn(socket_.get_executor(), read_loop(self), rethrow);
    asio::co_spawn(socket_.get_executor(), idle_watch(self), rethrow);
  }

 private:
  asio::awaitable<void> read_loop(std::shared_ptr<Connection> self) {
    // `self` keeps the connection alive for the coroutine and for the replies it defers.
    std::vector<std::uint8_t> msg;
    std::vector<std::uint8_t> out;
    for (;;) {
      // Pipelining cap: wait until a reply frees a slot.
      while (in_flight_ >= owner_.config_.tcp_max_pipelined && !closed_) {
        resume_.expires_at(asio::steady_timer::time_point::max());
        co_await resume_.async_wait(kTuple);
      }
      if (closed_) co_return;
      std::array<std::uint8_t, 2> len_buf;
      auto [ec, n] = co_await asio::async_read(socket_, asio::buffer(len_buf), kTuple);
      if (ec == asio::error::eof && (in_flight_ > 0 || writing_)) {
        // The client half-closed after its queries: answer them, then close.
        draining_ = true;
        co_return;
      }
      if (ec) break;
      const std::size_t len = static_cast<std::size_t>(len_buf[0] << 8 | len_buf[1]);
      if (len == 0 || len > kMaxTcpQuery) {
        spdlog::debug("tcp {}: message length {} out of range, closing", client_.to_string(), len);
        break;
      }
      msg.resize(len);
      std::tie(ec, n) = co_await asio::async_read(socket_, asio::buffer(msg), kTuple);
      if (ec) break;
      touch();
      const auto outcome = owner_.resolver_.handle(msg, client_, out, [&self]() {
        return Resolver::Reply(
            [self](std::span<const std::uint8_t> reply) { self->on_deferred(reply); });
      });
      if (outcome == Resolver::Outcome::Reply) {
        enqueue(out);
      } else if (outcome == Resolver::Outcome::Pending) {
        ++in_flight_;
      }
    }
    close();
  }

  // Closes the connection once nothing happened for the idle timeout while no query is being
  // answered (RFC 7766 §6.2.3).
  asio::awaitable<void> idle_watch(std::shared_ptr<Connection> self) {
    (void)self;  // held so the connection lives as long as this coroutine
    const auto timeout = owner_.config_.tcp_idle_timeout;
    while (!closed_) {
      const auto now = asio::steady_timer::clock_type::now();
      // Busy (a query or a write pending) counts as activity; a write stuck for a whole timeout
      // means the client stopped reading.
      idle_.expires_at(std::max(last_activity_ + timeout, now + std::chrono::milliseconds(1)));
      co_await idle_.async_wait(kTuple);
      if (closed_) co_return;
      if (asio::steady_timer::clock_type::now() < last_activity_ + timeout) continue;
      if (in_flight_ > 0 && !writing_) {
        touch();  // waiting on upstream, bounded by its deadline
        continue;
      }
      spdlog::debug("tcp {}: {}, closing", client_.to_string(),
                    writing_ ? "replies unread" : "idle");
      close();
    }
  }

  void on_deferred(std::span<const std::uint8_t> reply) {
    --in_flight_;
    if (!reply.empty()) enqueue(reply);
    resume_.cancel();
    close_if_drained();
  }

  void enqueue(std::span<const std::uint8_t> reply) {
    if (closed_) return;
    std::vector<std::uint8_t> framed;
    framed.reserve(reply.size() + 2);
    framed.push_back(static_cast<std::uint8_t>(reply.size() >> 8));
    framed.push_back(static_cast<std::uint8_t>(reply.size() & 0xFF));
    framed.insert(framed.end(), reply.begin(), reply.end());
    queued_bytes_ += framed.size();
    queue_.push_back(std::move(framed));
    if (queued_bytes_ > kMaxQueuedBytes) {
      spdlog::debug("tcp {}: {} bytes of replies unread, closing", client_.to_string(),
                    queued_bytes_);
      close();
      return;
    }
    if (!writing_) write_next();
  }

  void write_next() {
    if (queue_.empty() || closed_) {
      writing_ = false;
      close_if_drained();
      return;
    }
    writing_ = true;
    asio::async_write(socket_, asio::buffer(queue_.front()),
                      [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
                        if (self->queue_.empty()) return;  // closed meanwhile
                        self->queued_bytes_ -= self->queue_.front().size();
                        self->queue_.pop_front();
                        if (ec) {
                          self->close();
                          return;
                        }
                        self->touch();
                        self->write_next();
                      });
  }

  void close_if_drained() {
    if (draining_ && in_flight_ == 0 && !writing_) close();
  }

  void touch() { last_activity_ = asio::steady_timer::clock_type::now(); }

  void close() {
    if (closed_) return;
    closed_ = true;
    boost::system::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
    idle_.cancel();
    resume_.cancel();
  }

  tcp::socket socket_;
  asio::steady_timer idle_;
  asio::steady_timer resume_;
  TcpListener& owner_;
  std::shared_ptr<std::size_t> count_;
  ClientInfo client_;
  std::deque<std::vector<std::uint8_t>> queue_;
  asio::steady_timer::time_point last_activity_ = asio::steady_timer::clock_type::now();
  std::size_t in_flight_ = 0;
  std::size_t queued_bytes_ = 0;
  bool writing_ = false;
  bool draining_ = false;  // read side ended; close once the last reply is written
  bool closed_ = false;
};

TcpListener::TcpListener(asio::io_context& io, const Endpoint& at, Resolver& resolver,
                         const Config& config)
    : acceptor_(io), resolver_(resolver), config_(config) {
  const tcp::endpoint ep(at.address, at.port);
  acceptor_.open(ep.protocol());
  acceptor_.set_option(tcp::acceptor::reuse_address(true));
  if (ep.address().is_v6()) acceptor_.set_option(asio::ip::v6_only(true));
  acceptor_.bind(ep);
  acceptor_.listen();
}

void TcpListener::start() {
  asio::co_spawn(acceptor_.get_executor(), accept_loop(), rethrow);
}

asio::awaitable<void> TcpListener::accept_loop() {
  for (;;) {
    auto [ec, socket] = co_await acceptor_.async_accept(kTuple);
    if (ec == asio::error::operation_aborted) co_return;
    if (ec) {
      // EMFILE and friends: back off briefly instead of spinning on the same error.
      spdlog::warn("tcp accept: {}", ec.message());
      asio::steady_timer pause(acceptor_.get_executor(), std::chrono::milliseconds(100));
      co_await pause.async_wait(kTuple);
      continue;
    }
    if (*connections_ >= config_.tcp_max_connections) {
      // Closing at once tells the client to go elsewhere; leaving it queued would stall it.
      boost::system::error_code ignored;
      socket.close(ignored);
      spdlog::debug("tcp connection refused: {} connections open", *connections_);
      continue;
    }
    std::make_shared<Connection>(std::move(socket), *this)->start();
  }
}

}  // namespace dnsd
