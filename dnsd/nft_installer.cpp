#include "dnsd/nft_installer.h"

#include "dnsd/address_guard.h"

#include <algorithm>
#include <cerrno>

#include <boost/asio/post.hpp>
#include <spdlog/spdlog.h>

namespace dnsd {

namespace dns = egress::dns;
using namespace std::chrono_literals;

namespace {
// Expired elements leave the kernel on their own; the map forgets them on this period.
constexpr auto kSweepPeriod = 60s;
// Rebuilding the table blocks the loop for a few milliseconds: not more often than this.
constexpr auto kMinRecoveryInterval = 1s;
}  // namespace

TableSpec table_spec(const Config& config) {
  TableSpec spec;
  spec.table = config.nft_table;
  spec.allow4 = config.nft_set4;
  spec.allow6 = config.nft_set6;
  spec.mark = config.nft_mark;
  if (config.nft_mode == NftMode::Sets) {
    spec.nets4.clear();  // the admin's table: only the address sets are dnsd's
    spec.nets6.clear();
  }
  return spec;
}

BootstrapResult install_enforce_table(const TableSpec& spec,
                                      std::span<const egress::Cidr> networks) {
  const BootstrapResult r = bootstrap_enforce(spec);
  NftControlSocket control;
  NftBatch batch;
  append_replace_networks(batch, spec, networks);
  if (const auto res = control.commit(batch); res.error) {
    throw std::runtime_error("nftables: filling " + spec.nets4 + "/" + spec.nets6 + ": " +
                             res.error.message());
  }
  return r;
}

NftInstaller::NftInstaller(boost::asio::io_context& io, const Config& config,
                           std::span<const egress::Cidr> networks)
    : io_(io),
      mode_(config.nft_mode),
      spec_(table_spec(config)),
      ack_timeout_(config.nft_ack_timeout),
      table_(Lifetimes{std::chrono::seconds(config.element_min_timeout),
                       std::chrono::seconds(config.element_max_timeout),
                       std::chrono::seconds(config.element_grace)}),
      socket_(io),
      networks_(networks.begin(), networks.end()),
      sweep_(io) {
  if (const std::string why = validate(spec_); !why.empty()) {
    throw std::runtime_error("nftables: " + why);
  }
  if (mode_ == NftMode::Enforce) {
    const BootstrapResult r = install_enforce_table(spec_, networks_);
    if (r.created_table) spdlog::info("nftables: created table inet {}", spec_.table);
    for (const auto& s : r.created_sets) spdlog::info("nftables: created set {}", s);
    if (r.created_chain) spdlog::info("nftables: created chain {} (policy drop)", spec_.chain);
    if (r.replaced_rules) spdlog::warn("nftables: chain {} had other rules; replaced", spec_.chain);
  } else {
    check_sets(spec_);
  }
  const auto existing = list_elements(spec_);
  table_.restore(existing, Clock::now());
  kernel_renews_ = probe_renewal(spec_);
  spdlog::info("nftables: {} mode on table inet {} ({}/{}); {} elements read back; kernel {}",
               mode_ == NftMode::Enforce ? "enforce" : "sets", spec_.table, spec_.allow4,
               spec_.allow6, table_.size(),
               kernel_renews_ ? "renews elements in place" : "needs delete+add to renew");
  schedule_expiry_sweep();
}

std::optional<std::uint32_t> NftInstaller::fresh(std::span<const dns::Address> addresses,
                                                 Clock::time_point now, std::string_view holder) {
  ElementTable::Plan p = table_.plan(addresses, now);
  if (!p.empty()) return std::nullopt;
  ++stats_.skipped;
  if (!holder.empty()) table_.hold(holder, addresses);
  return p.ttl_cap;
}

void NftInstaller::install(std::string_view host, std::span<const dns::Address> addresses,
                           Clock::time_point now, Done done) {
  ElementTable::Plan plan = table_.plan(addresses, now);
  if (plan.empty()) {  // another answer installed them meanwhile
    table_.hold(host, addresses);
    boost::asio::post(io_, [done = std::move(done), cap = plan.ttl_cap] { done({}, cap); });
    return;
  }
  NftBatch batch;
  // Kernels before 6.12 keep an existing element's expiration on re-add: delete it first, in
  // the same transaction, so no packet sees it missing.
  if (!kernel_renews_ && !plan.already_there.empty() &&
      !append_delete_elements(batch, spec_, plan.already_there)) {
    boost::asio::post(io_, [done = std::move(done)] {
      done(std::make_error_code(std::errc::invalid_argument), 0);
    });
    return;
  }
  if (!append_add_elements(batch, spec_, plan.add)) {
    boost::asio::post(io_, [done = std::move(done)] {
      done(std::make_error_code(std::errc::invalid_argument), 0);
    });
    return;
  }
  ++stats_.batches;
  stats_.elements_added += plan.add.size() - plan.already_there.size();
  stats_.renewals += plan.already_there.size();
  std::vector<dns::Address> addrs(addresses.begin(), addresses.end());
  socket_.send(std::move(batch), ack_timeout_,
               [this, plan = std::move(plan), host = std::string(host), addrs = std::move(addrs),
                now, done = std::move(done)](std::error_code ec) {
                 if (ec == std::errc::operation_canceled) return;  // shutting down
                 if (ec) {
                   ++stats_.errors;
                   spdlog::error("nftables: adding {} address(es) of {} failed: {}",
                                 plan.add.size(), host, ec.message());
                   done(ec, 0);
                   recover(ec);
                   return;
                 }
                 table_.applied(plan, host, addrs, now);
                 done({}, plan.ttl_cap);
               });
}

void NftInstaller::reload(const std::function<bool(std::string_view)>& allowed,
                          std::span<const egress::Cidr> networks) {
  NftBatch batch;
  // Private addresses allowed by networks: that no longer cover them go too (rebinding guard).
  const std::vector<NftAddress> gone =
      table_.revoke(allowed, Clock::now(), [&networks](const NftAddress& a) {
        dns::Address d;
        d.family = a.family;
        d.bytes = a.bytes;
        return installable(d, networks);
      });
  if (!gone.empty() && !append_delete_elements(batch, spec_, gone)) {
    spdlog::error("nftables: cannot build the revocation batch");
    return;
  }
  const bool networks_changed =
      mode_ == NftMode::Enforce &&
      !std::equal(networks.begin(), networks.end(), networks_.begin(), networks_.end(),
                  [](const egress::Cidr& a, const egress::Cidr& b) {
                    return a.to_string() == b.to_string();
                  });
  if (networks_changed) {
    networks_.assign(networks.begin(), networks.end());
    append_replace_networks(batch, spec_, networks_);
  }
  if (batch.empty()) return;
  stats_.revoked += gone.size();
  // A reload is not on a client's path: a generous deadline.
  socket_.send(std::move(batch), std::chrono::seconds(2),
               [this, n = gone.size(), networks_changed](std::error_code ec) {
                 if (ec == std::errc::operation_canceled) return;
                 if (ec) {
                   spdlog::error("nftables: reload batch ({} revoked addresses{}) failed: {}", n,
                                 networks_changed ? ", networks" : "", ec.message());
                   recover(ec);
                   return;
                 }
                 spdlog::info("nftables: revoked {} address(es) no allowed name holds{}", n,
                              networks_changed ? "; networks replaced" : "");
               });
}

void NftInstaller::recover(std::error_code ec) {
  if (ec != std::errc::no_such_file_or_directory) return;
  if (mode_ != NftMode::Enforce) {
    spdlog::error("nftables: table inet {} or its sets are missing; in sets mode the admin "
                  "must recreate them",
                  spec_.table);
    return;
  }
  const auto now = Clock::now();
  if (now - last_recovery_ < kMinRecoveryInterval) return;
  last_recovery_ = now;
  ++stats_.recoveries;
  try {
    install_enforce_table(spec_, networks_);
    // The elements died with the table: forget them so that every answer installs again.
    table_.clear();
    table_.restore(list_elements(spec_), Clock::now());
    spdlog::warn("nftables: table inet {} was missing; recreated it", spec_.table);
  } catch (const std::exception& e) {
    spdlog::error("nftables: recreating table inet {} failed: {}", spec_.table, e.what());
  }
}

void NftInstaller::schedule_expiry_sweep() {
  sweep_.expires_after(kSweepPeriod);
  sweep_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    table_.expire(Clock::now());
    schedule_expiry_sweep();
  });
}

}  // namespace dnsd
