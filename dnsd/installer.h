// The seam between answering and enforcement: before a client sees an allowed answer, its
// addresses are made reachable (nftables set elements the kernel acknowledged). NftInstaller
// (nft_installer.h) is enforce/sets mode; NoInstaller is `--nft-mode off` (DNS filtering only).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "common/cidr.h"
#include "common/dns_wire.h"
#include "dnsd/cache.h"
#include "dnsd/element_table.h"

namespace dnsd {

class Installer {
 public:
  // `ttl_cap`: how long the answer's records may live (seconds), so that none outlives its
  // element. Meaningless when `error` is set.
  using Done = std::function<void(std::error_code error, std::uint32_t ttl_cap)>;
  virtual ~Installer() = default;

  // The TTL cap when every address is installed already with enough life left (no kernel work);
  // nothing when install() is needed. Cheap: no netlink traffic. A non-empty `holder` is
  // recorded as holding the addresses (an upstream answer for that name; a cache hit passes
  // none: its name was recorded when the answer came).
  virtual std::optional<std::uint32_t> fresh(std::span<const egress::dns::Address> addresses,
                                             Clock::time_point now,
                                             std::string_view holder = {}) = 0;

  // Installs or renews what `addresses` need, on behalf of `host`, and calls `done` once the
  // kernel acknowledged (or refused, or the deadline passed). `done` never runs before install()
  // returns.
  virtual void install(std::string_view host, std::span<const egress::dns::Address> addresses,
                       Clock::time_point now, Done done) = 0;

  // Reload: names `allowed` rejects no longer hold their addresses; those no allowed name holds
  // are removed from the kernel. `networks` replaces the allowlist's networks.
  virtual void reload(const std::function<bool(std::string_view)>& allowed,
                      std::span<const egress::Cidr> networks) = 0;

  // The live elements installed on behalf of `host` with their expiry, for reports
  // (`dig CH TXT NAME.why.egress`); empty when nothing is installed (or nothing ever is).
  virtual std::vector<ElementTable::Held> held_by(std::string_view /*host*/,
                                                  Clock::time_point /*now*/) const {
    return {};
  }
};

class NoInstaller final : public Installer {
 public:
  std::optional<std::uint32_t> fresh(std::span<const egress::dns::Address>, Clock::time_point,
                                     std::string_view) override {
    return kNoCap;
  }
  void install(std::string_view, std::span<const egress::dns::Address>, Clock::time_point,
               Done done) override {
    done({}, kNoCap);  // unreachable: fresh() never asks for it
  }
  void reload(const std::function<bool(std::string_view)>&,
              std::span<const egress::Cidr>) override {}
};

}  // namespace dnsd
