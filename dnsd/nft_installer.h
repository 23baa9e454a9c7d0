// Installer for --nft-mode enforce and sets: one netlink batch per answer that needs the kernel,
// sent on the Asio loop, the client answered only after the ACK. ElementTable remembers what is
// installed, so cache hits cost no netlink traffic until an element is half-way to expiry.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "dnsd/config.h"
#include "dnsd/element_table.h"
#include "dnsd/installer.h"
#include "dnsd/nft_netlink.h"
#include "dnsd/nft_table.h"

namespace dnsd {

struct InstallerStats {
  std::uint64_t batches = 0, elements_added = 0, renewals = 0, skipped = 0, errors = 0,
                revoked = 0, recoveries = 0;
};

class NftInstaller final : public Installer {
 public:
  // Start-up (throws std::runtime_error naming what failed): enforce mode makes the table the
  // design's (never flushing elements) and fills the networks sets; sets mode checks the admin's
  // sets. Then elements already in the kernel are read back into the expiry map and the kernel is
  // probed for in-place renewal.
  NftInstaller(boost::asio::io_context& io, const Config& config,
               std::span<const egress::Cidr> networks);

  std::optional<std::uint32_t> fresh(std::span<const egress::dns::Address> addresses,
                                     Clock::time_point now, std::string_view holder) override;
  void install(std::string_view host, std::span<const egress::dns::Address> addresses,
               Clock::time_point now, Done done) override;
  void reload(const std::function<bool(std::string_view)>& allowed,
              std::span<const egress::Cidr> networks) override;
  std::vector<ElementTable::Held> held_by(std::string_view host,
                                          Clock::time_point now) const override {
    return table_.held_by(host, now);
  }

  const InstallerStats& stats() const { return stats_; }
  bool kernel_renews() const { return kernel_renews_; }
  std::size_t elements() const { return table_.size(); }

 private:
  // A batch failed because what dnsd owns is gone (ENOENT: table or set deleted behind its
  // back): in enforce mode rebuild it, at most once per second; the failed query got SERVFAIL.
  void recover(std::error_code ec);
  void schedule_expiry_sweep();

  boost::asio::io_context& io_;
  NftMode mode_;
  TableSpec spec_;
  std::chrono::milliseconds ack_timeout_;
  ElementTable table_;
  NftSocket socket_;
  std::vector<egress::Cidr> networks_;
  bool kernel_renews_ = true;
  Clock::time_point last_recovery_{};
  boost::asio::steady_timer sweep_;
  InstallerStats stats_;
};

// The table, sets and mark a config names.
TableSpec table_spec(const Config& config);

// Enforce mode's start-up, also `dnsd --install-only`: bootstrap_enforce (never flushing set
// elements), then nets4/nets6 replaced by `networks` in one batch. Throws std::runtime_error.
BootstrapResult install_enforce_table(const TableSpec& spec,
                                      std::span<const egress::Cidr> networks);

}  // namespace dnsd
