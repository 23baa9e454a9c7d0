#include "dnsd/resolver.h"

#include <algorithm>
#include <limits>

#include <spdlog/spdlog.h>

#include "dnsd/address_guard.h"
#include "dnsd/chaos.h"
#include "dnsd/query_log.h"

namespace dnsd {

namespace dns = egress::dns;

namespace {

constexpr std::size_t kMaxTcpMessage = 65535;
// Identical queries waiting for one upstream answer: each holds its client's packet, so a client
// repeating one name while the upstream is slow must not grow memory without bound.
constexpr std::size_t kMaxWaiters = 256;  // the 2-octet length prefix (RFC 1035 §4.2.2)
bool cacheable(const dns::PreparedAnswer& a) {
  // Only answers that say something about the name: SERVFAIL/REFUSED say something about the
  // upstream, and a truncated answer is incomplete.
  return !a.truncated && (a.rcode == dns::rcode::NoError || a.rcode == dns::rcode::NXDomain);
}

std::string_view error_verdict(dns::QueryError e) {
  switch (e) {
    case dns::QueryError::FormErr: return "formerr";
    case dns::QueryError::NotImp: return "notimp";
    case dns::QueryError::BadVers: return "badvers";
    case dns::QueryError::Drop: break;
  }
  return "drop";
}

std::string display_name(const dns::Query& q, const std::optional<std::string>& host) {
  if (!host) return q.qname.to_text();
  return host->empty() ? std::string(".") : *host;
}

}  // namespace

Resolver::Resolver(boost::asio::io_context& io, const Config& config,
                   std::shared_ptr<const Allowlist> allowlist, Upstream& upstream,
                   Installer& installer)
    : io_(io),
      config_(config),
      allowlist_(std::move(allowlist)),
      upstream_(upstream),
      installer_(installer),
      cache_(config.cache_max_entries, config.cache_max_bytes, config.cache_max_ttl) {}

std::string ClientInfo::to_string() const {
  return address.is_v6() ? "[" + address.to_string() + "]:" + std::to_string(port)
                         : address.to_string() + ":" + std::to_string(port);
}

Resolver::Outcome Resolver::handle(std::span<const std::uint8_t> packet, const ClientInfo& client,
                                   std::vector<std::uint8_t>& out,
                                   const std::function<Reply()>& defer) {
  ++stats_.queries;
  const dns::QueryParse parsed = dns::parse_query(packet);
  if (!parsed.query) {
    if (parsed.error == dns::QueryError::Drop) {
      ++stats_.dropped;
      spdlog::debug("dropped a packet from {}: {}", client.to_string(), parsed.reason);
      return Outcome::Drop;
    }
    out = dns::make_error_reply(packet, parsed.error);
    if (out.empty()) return Outcome::Drop;
    ++stats_.malformed;
    log(client, nullptr, error_verdict(parsed.error), "", out, "", std::nullopt);
    return Outcome::Reply;
  }
  const dns::Query& q = *parsed.query;
  const std::size_t limit = client.tcp ? kMaxTcpMessage : dns::udp_limit(q, config_.udp_max_size);

  // CHAOS reports (chaos.h) are answered here, from memory: never upstream, never installed.
  if (q.qclass == dns::qclass::CH && config_.chaos) {
    out = chaos::reply(q, packet, limit, *allowlist_, installer_, config_, Clock::now());
    log(client, &q, "chaos", "", out, "", std::nullopt);
    return Outcome::Reply;
  }
  // Only the Internet class is forwarded; zone transfers are not a forwarder's business.
  if (q.qclass != dns::qclass::IN || q.qtype == dns::type::AXFR || q.qtype == dns::type::IXFR) {
    const std::string text = q.qclass == dns::qclass::CH
                                 ? "egress: CHAOS reports are off (chaos: false)"
                             : q.qclass != dns::qclass::IN ? "egress: only class IN is served"
                                                           : "egress: zone transfers are not served";
    out = dns::make_synthetic(q, packet, {.rcode = dns::rcode::Refused,
                                          .ede_code = dns::ede::Prohibited,
                                          .ede_text = text});
    log(client, &q, "refused", "", out, "", std::nullopt);
    return Outcome::Reply;
  }

  const std::optional<std::string> host = q.qname.hostname();
  const AllowEntry* rule = host ? allowlist_->match(*host) : nullptr;
  if (rule == nullptr) {
    ++stats_.denied;
    const std::string name = display_name(q, host);
    deny(q, packet,
         host ? "egress policy: " + name + " not in allowlist"
              : "egress policy: " + name + " is not a hostname",
         out);
    log(client, &q, "deny", "", out, "", std::nullopt);
    return Outcome::Reply;
  }
  ++stats_.allowed;

  std::string key = cache_key(q);
  const auto now = Clock::now();
  std::optional<AnswerCache::Hit> hit = cache_.lookup(key, now);
  if (hit) {
    // A cached answer is served at once while its elements have life left; otherwise it is
    // renewed in the kernel first (the dnsmasq bug: cached answers that never renew).
    if (const auto cap = installer_.fresh(hit->answer->addresses, now)) {
      ++stats_.cache_hits;
      dns::render_answer(*hit->answer, q, packet, hit->age, *cap, limit, out);
      log(client, &q, "allow", rule->pattern, out, "hit", std::nullopt);
      return Outcome::Reply;
    }
  }

  Waiter w{std::vector<std::uint8_t>(packet.begin(), packet.end()), q, client, limit, false,
           nullptr};
  if (const auto it = inflight_.find(key); it != inflight_.end() &&
                                           it->second->waiters.size() < kMaxWaiters) {
    ++stats_.coalesced;
    w.coalesced = true;
    w.reply = defer();
    it->second->waiters.push_back(std::move(w));
    return Outcome::Pending;
  }
  if (inflight_.size() >= config_.max_pending || inflight_.contains(key)) {
    ++stats_.overload;
    out = dns::make_synthetic(q, packet, {.rcode = dns::rcode::ServFail,
                                          .ede_code = dns::ede::Other,
                                          .ede_text = "egress: too many queries in flight"});
    log(client, &q, "overload", rule->pattern, out, "", std::nullopt);
    return Outcome::Reply;
  }

  auto f = std::make_unique<Inflight>(io_);
  f->id = next_id_++;
  f->hostname = *host;
  f->rule = rule->pattern;
  f->started = now;
  w.reply = defer();
  f->waiters.push_back(std::move(w));
  Inflight& ref = *f;
  const auto [pos, inserted] = inflight_.emplace(std::move(key), std::move(f));
  arm_deadline(pos->first, ref);
  if (hit) {
    ++stats_.renewals;
    ref.renewal = true;
    install(pos->first, ref.id, hit->answer, hit->age);
  } else {
    start_upstream(pos->first, ref, q);  // may finish (and erase) before it returns
  }
  return Outcome::Pending;
}

void Resolver::arm_deadline(const std::string& key, Inflight& f) {
  f.deadline.expires_after(config_.upstream_timeout);
  f.deadline.async_wait([this, key, id = f.id](const boost::system::error_code& ec) {
    if (ec) return;
    fail(key, id, dns::ede::NoReachableAuthority,
         "egress: no upstream answer within " + std::to_string(config_.upstream_timeout.count()) +
             " ms");
  });
}

void Resolver::start_upstream(const std::string& key, Inflight& f, const dns::Query& q) {
  ++stats_.upstream_sent;
  const std::vector<std::uint8_t> query = dns::make_upstream_query(q);
  upstream_.send(query, [this, key, id = f.id](int status, std::span<const std::uint8_t> answer) {
    on_upstream(key, id, status, answer);
  });
}

void Resolver::on_upstream(const std::string& key, std::uint64_t id, int status,
                           std::span<const std::uint8_t> answer) {
  const auto it = inflight_.find(key);
  if (it == inflight_.end() || it->second->id != id) return;  // the deadline answered already
  if (status != ARES_SUCCESS) {
    fail(key, id, dns::ede::NoReachableAuthority,
         std::string("egress: upstream failed: ") + ares_strerror(status));
    return;
  }
  const Inflight& f = *it->second;
  dns::AnswerParse parsed = dns::prepare_answer(answer, f.waiters.front().query);
  if (!parsed.answer) {
    spdlog::warn("upstream answer for {} rejected: {}", f.hostname, parsed.reason);
    fail(key, id, dns::ede::NetworkError,
         std::string("egress: upstream answer rejected: ") + parsed.reason);
    return;
  }
  // Design step 6: no private/loopback/link-local address unless networks: covers it, and at
  // most max_addresses_per_name; such records leave the answer as well as the set.
  const auto drop = records_to_drop(*parsed.answer, allowlist_->networks(),
                                    config_.max_addresses_per_name);
  if (!drop.empty()) {
    spdlog::info("{}: {} record(s) removed from the answer (guarded ranges or the address cap)",
                 f.hostname, drop.size());
    auto filtered = dns::remove_records(*parsed.answer, drop);
    if (!filtered) {
      fail(key, id, dns::ede::Other, "egress: could not filter the upstream answer");
      return;
    }
    parsed.answer = std::move(filtered);
  }
  install(key, id, std::make_shared<const dns::PreparedAnswer>(std::move(*parsed.answer)), 0);
}

// Design step 7: the answer goes out only once its addresses are in the kernel's set.
void Resolver::install(const std::string& key, std::uint64_t id,
                       std::shared_ptr<const dns::PreparedAnswer> answer, std::uint32_t age) {
  const auto now = Clock::now();
  const std::string host = inflight_.find(key)->second->hostname;
  if (const auto cap = installer_.fresh(answer->addresses, now, host)) {
    complete(key, id, answer, *cap, age);
    return;
  }
  installer_.install(host, answer->addresses, now,
                     [this, key, id, answer, age, host](std::error_code ec, std::uint32_t cap) {
                       if (!ec && !allowed(host)) {
                         // A reload removed the name while its addresses were being installed:
                         // revoke them again now that the installer knows them.
                         installer_.reload([this](std::string_view h) { return allowed(h); },
                                           allowlist_->networks());
                       }
                       if (ec) {
                         fail(key, id, dns::ede::Other,
                              "egress: installing the addresses failed: " + ec.message());
                         return;
                       }
                       complete(key, id, answer, cap, age);
                     });
}

std::unique_ptr<Resolver::Inflight> Resolver::take(const std::string& key, std::uint64_t id) {
  const auto it = inflight_.find(key);
  if (it == inflight_.end() || it->second->id != id) return nullptr;
  std::unique_ptr<Inflight> f = std::move(it->second);
  inflight_.erase(it);
  f->deadline.cancel();
  return f;
}

void Resolver::complete(const std::string& key, std::uint64_t id,
                        const std::shared_ptr<const dns::PreparedAnswer>& answer,
                        std::uint32_t ttl_cap, std::uint32_t age) {
  std::unique_ptr<Inflight> f = take(key, id);
  if (!f) return;
  const auto now = Clock::now();
  const double ms = std::chrono::duration<double, std::milli>(now - f->started).count();
  if (!f->renewal && cacheable(*answer)) cache_.insert(key, f->hostname, answer, now);
  std::vector<std::uint8_t> out;
  for (Waiter& w : f->waiters) {
    dns::render_answer(*answer, w.query, w.packet, age, ttl_cap, w.limit, out);
    log(w.client, &w.query, "allow", f->rule, out,
        f->renewal ? "renewed" : (w.coalesced ? "coalesced" : "miss"),
        f->renewal ? std::nullopt : std::optional<double>(ms));
    w.reply(out);
  }
}

void Resolver::fail(const std::string& key, std::uint64_t id, std::uint16_t ede_code,
                    const std::string& error) {
  std::unique_ptr<Inflight> f = take(key, id);
  if (!f) return;
  ++stats_.servfail;
  spdlog::debug("SERVFAIL for {}: {}", f->hostname, error);
  std::vector<std::uint8_t> out;
  for (Waiter& w : f->waiters) {
    out = dns::make_synthetic(w.query, w.packet, {.rcode = dns::rcode::ServFail,
                                                  .ede_code = ede_code,
                                                  .ede_text = error});
    log(w.client, &w.query, "allow", f->rule, out, w.coalesced ? "coalesced" : "miss",
        std::nullopt);
    w.reply(out);
  }
}

void Resolver::deny(const dns::Query& q, std::span<const std::uint8_t> packet,
                    const std::string& text, std::vector<std::uint8_t>& out) {
  dns::Synthetic s{.ede_code = dns::ede::Blocked, .ede_text = text};
  if (config_.deny == DenyMode::NXDomain) {
    s.rcode = dns::rcode::NXDomain;
    s.negative_soa = true;
    s.negative_ttl = config_.negative_ttl;
  } else {
    s.rcode = dns::rcode::Refused;
  }
  out = dns::make_synthetic(q, packet, s);
}

bool Resolver::allowed(std::string_view host) const { return allowlist_->match(host) != nullptr; }

void Resolver::set_allowlist(std::shared_ptr<const Allowlist> allowlist) {
  const bool networks_changed =
      !std::equal(allowlist->networks().begin(), allowlist->networks().end(),
                  allowlist_->networks().begin(), allowlist_->networks().end(),
                  [](const egress::Cidr& a, const egress::Cidr& b) {
                    return a.to_string() == b.to_string();
                  });
  allowlist_ = std::move(allowlist);
  // Cached answers were filtered against the old networks (the rebinding guard): when those
  // change, every answer is fetched and filtered again.
  const std::size_t dropped = cache_.erase_if(
      [&](std::string_view host) { return networks_changed || !allowed(host); });
  if (dropped > 0) spdlog::info("dropped {} cached answers", dropped);
  // Queries in flight for names no longer allowed get no answer with addresses.
  std::vector<std::pair<std::string, std::uint64_t>> revoked;
  for (const auto& [key, f] : inflight_) {
    if (!allowed(f->hostname)) revoked.emplace_back(key, f->id);
  }
  for (const auto& [key, id] : revoked) {
    fail(key, id, dns::ede::Blocked, "egress policy: the allowlist changed while resolving");
  }
  installer_.reload([this](std::string_view h) { return allowed(h); }, allowlist_->networks());
}

void Resolver::log(const ClientInfo& c, const dns::Query* q, std::string_view verdict,
                   std::string_view rule, std::span<const std::uint8_t> reply,
                   std::string_view cache, std::optional<double> upstream_ms) const {
  if (!config_.log_queries) return;
  std::uint16_t rc = reply.size() >= dns::kHeaderSize ? (reply[3] & 0x0F) : 0;
  if (verdict == "badvers") rc = dns::rcode::BadVers;
  const std::string name = q ? q->qname.to_text() : std::string();
  const std::string type = q ? dns::type_name(q->qtype) : std::string();
  const std::string client = c.to_string();
  log_query({.client = client,
             .proto = c.tcp ? "tcp" : "udp",
             .name = name,
             .type = type,
             .verdict = verdict,
             .rule = rule,
             .rcode = rc,
             .cache = cache,
             .upstream_ms = upstream_ms});
}

}  // namespace dnsd
