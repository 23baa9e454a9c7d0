// dnsd's memory of the set elements it installed: when each expires and which names hold it.
// It answers "does this answer need the kernel?" without netlink traffic (a cache hit renews an
// element only when less than half of its timeout is left), and "which addresses does a reload
// revoke?" (those no allowed name holds any more).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/dns_wire.h"
#include "dnsd/cache.h"
#include "dnsd/nft_table.h"

namespace dnsd {

struct Lifetimes {
  std::chrono::seconds min{60};
  std::chrono::seconds max{3600};
  std::chrono::seconds grace{30};
};

// An element's timeout for a record with `ttl`: clamp(ttl, min, max) + grace.
std::chrono::seconds element_timeout(std::uint32_t ttl, const Lifetimes& l);

inline constexpr std::uint32_t kNoCap = std::numeric_limits<std::uint32_t>::max();

class ElementTable {
 public:
  explicit ElementTable(Lifetimes lifetimes) : lifetimes_(lifetimes) {}

  struct Plan {
    std::vector<SetElement> add;           // new elements and renewals, full timeout
    std::vector<NftAddress> already_there; // of `add`, those the kernel holds now
    // How long the answer's records may live once the plan is applied: the least remaining life
    // of its elements minus the grace (so a client never holds a record whose element is gone).
    std::uint32_t ttl_cap = kNoCap;
    bool empty() const { return add.empty(); }
  };

  // What `addresses` need at `now`. An element missing, or with less than half of the timeout
  // its record's TTL asks for, is (re)added.
  Plan plan(std::span<const egress::dns::Address> addresses, Clock::time_point now) const;

  // Records a plan the kernel acknowledged, and that `host` holds `addresses`.
  void applied(const Plan& plan, std::string_view host,
               std::span<const egress::dns::Address> addresses, Clock::time_point now);
  // Records that `host` holds `addresses` (installed already, perhaps for another name), so a
  // reload that removes the other name keeps them.
  void hold(std::string_view host, std::span<const egress::dns::Address> addresses);

  // Elements read back from the kernel at start-up. Which names hold them is not known, so a
  // reload never revokes them: they expire on their own.
  void restore(std::span<const SetElement> elements, Clock::time_point now);

  // Drops the names `allowed` rejects and returns the live addresses that no name holds any more,
  // and those `address_ok` rejects whoever holds them (for one delete batch); they are forgotten.
  std::vector<NftAddress> revoke(
      const std::function<bool(std::string_view)>& allowed, Clock::time_point now,
      const std::function<bool(const NftAddress&)>& address_ok = nullptr);

  struct Held {
    NftAddress address;
    Clock::time_point expires;
  };
  // The live elements `host` holds (recorded by applied()/hold()), sorted by family and address.
  // Elements read back at start-up have no known holder and are never listed; nor is `host` on an
  // address already held by kMaxNamesPerAddress other names. O(elements): for reports only.
  std::vector<Held> held_by(std::string_view host, Clock::time_point now) const;

  // Forgets expired elements (the kernel removed them itself); returns how many.
  std::size_t expire(Clock::time_point now);
  void clear() { elements_.clear(); }
  std::size_t size() const { return elements_.size(); }

 private:
  // A CDN address can serve any number of names below one wildcard: the names kept per address
  // are capped; past the cap, revocation judges by the names kept.
  static constexpr std::size_t kMaxNamesPerAddress = 32;

  struct Hash {
    std::size_t operator()(const NftAddress& a) const;
  };
  struct State {
    Clock::time_point expires;
    std::vector<std::string> names;  // empty: restored at start-up, owner unknown
  };

  Lifetimes lifetimes_;
  std::unordered_map<NftAddress, State, Hash> elements_;
};

NftAddress to_nft(const egress::dns::Address& a);

}  // namespace dnsd
