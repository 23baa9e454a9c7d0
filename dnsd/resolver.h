// The query path (design steps 2-9), independent of sockets: validate, match the allowlist,
// answer from the cache, coalesce identical misses, forward upstream, install, answer.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/steady_timer.hpp>

#include "common/dns_wire.h"
#include "dnsd/allowlist.h"
#include "dnsd/cache.h"
#include "dnsd/config.h"
#include "dnsd/installer.h"
#include "dnsd/upstream.h"

namespace dnsd {

struct ClientInfo {
  boost::asio::ip::address address;
  std::uint16_t port = 0;
  bool tcp = false;
  std::string to_string() const;  // "192.0.2.1:40000", "[2001:db8::1]:40000"
};

struct ResolverStats {
  std::uint64_t queries = 0, allowed = 0, denied = 0, cache_hits = 0, coalesced = 0,
                renewals = 0, upstream_sent = 0, servfail = 0, malformed = 0, dropped = 0, overload = 0;
};

class Resolver {
 public:
  // Delivers a reply later; an empty span means "no reply" (the TCP side frees its slot).
  using Reply = std::function<void(std::span<const std::uint8_t>)>;

  Resolver(boost::asio::io_context& io, const Config& config,
           std::shared_ptr<const Allowlist> allowlist, Upstream& upstream, Installer& installer);

  enum class Outcome { Reply, Drop, Pending };
  // Handles one message. Reply: the answer is in `out`. Drop: send nothing. Pending: `defer()`
  // was called once and the Reply it returned will run later (possibly before handle() returns; at the
  // latest when the upstream deadline passes). TCP replies may be up to 65535 octets; UDP
  // replies fit the client's EDNS size, clamped to config.udp_max_size.
  Outcome handle(std::span<const std::uint8_t> packet, const ClientInfo& client,
                 std::vector<std::uint8_t>& out, const std::function<Reply()>& defer);

  // Swaps the policy (atomically for the single-threaded loop) and drops cached answers of
  // names it no longer allows.
  void set_allowlist(std::shared_ptr<const Allowlist> allowlist);
  const std::shared_ptr<const Allowlist>& allowlist() const { return allowlist_; }

  const ResolverStats& stats() const { return stats_; }
  std::size_t pending() const { return inflight_.size(); }

 private:
  struct Waiter {
    std::vector<std::uint8_t> packet;  // the client's own bytes: its question is echoed
    egress::dns::Query query;
    ClientInfo client;
    std::size_t limit = 0;
    bool coalesced = false;
    Reply reply;
  };
  struct Inflight {
    explicit Inflight(boost::asio::io_context& io) : deadline(io) {}
    std::uint64_t id = 0;
    std::string hostname;
    std::string rule;
    bool renewal = false;  // a cached answer whose elements are being renewed: no upstream
    std::vector<Waiter> waiters;
    boost::asio::steady_timer deadline;
    Clock::time_point started;
  };

  void arm_deadline(const std::string& key, Inflight& f);
  void start_upstream(const std::string& key, Inflight& f, const egress::dns::Query& q);
  void on_upstream(const std::string& key, std::uint64_t id, int status,
                   std::span<const std::uint8_t> answer);
  void install(const std::string& key, std::uint64_t id,
               std::shared_ptr<const egress::dns::PreparedAnswer> answer, std::uint32_t age);
  // Removes the in-flight entry (nullptr when the deadline or another path took it already).
  std::unique_ptr<Inflight> take(const std::string& key, std::uint64_t id);
  void complete(const std::string& key, std::uint64_t id,
                const std::shared_ptr<const egress::dns::PreparedAnswer>& answer,
                std::uint32_t ttl_cap, std::uint32_t age);
  void fail(const std::string& key, std::uint64_t id, std::uint16_t ede_code,
            const std::string& error);
  bool allowed(std::string_view host) const;
  void deny(const egress::dns::Query& q, std::span<const std::uint8_t> packet,
            const std::string& text, std::vector<std::uint8_t>& out);
  void log(const ClientInfo& c, const egress::dns::Query* q, std::string_view verdict,
           std::string_view rule, std::span<const std::uint8_t> reply, std::string_view cache,
           std::optional<double> upstream_ms) const;

  boost::asio::io_context& io_;
  const Config& config_;
  std::shared_ptr<const Allowlist> allowlist_;
  Upstream& upstream_;
  Installer& installer_;
  AnswerCache cache_;
  std::unordered_map<std::string, std::unique_ptr<Inflight>> inflight_;
  std::uint64_t next_id_ = 1;
  ResolverStats stats_;
};

}  // namespace dnsd
