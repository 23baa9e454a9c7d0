// The seam between answering and enforcement: before a client sees an allowed answer, its
// addresses are made reachable (nftables set elements, acknowledged by the kernel). The nftables
// implementation lives in its own files; `NoInstaller` is `--nft-mode off` (DNS filtering only).
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <system_error>

#include "common/dns_wire.h"

namespace dnsd {

class Installer {
 public:
  using Done = std::function<void(std::error_code)>;
  virtual ~Installer() = default;
  // Makes `addresses` reachable for at least their TTL and calls `done` once that is true (an
  // error otherwise). `done` may run before install() returns.
  virtual void install(std::span<const egress::dns::Address> addresses, Done done) = 0;
};

class NoInstaller final : public Installer {
 public:
  void install(std::span<const egress::dns::Address>, Done done) override { done({}); }
};

}  // namespace dnsd
