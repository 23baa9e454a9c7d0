// dnsd's answers to CHAOS-class TXT queries: how a session user learns the policy from inside
// the session, with dig and without access to logs (the convention of `dig CH TXT version.bind`).
//   dig CH TXT NAME.why.egress   is NAME allowed, by which allowlist entry, which addresses are
//                                installed for it and for how long; or that it is denied and why
//   dig CH TXT policy.egress     the allowlist's file, its SHA-256, when it was loaded, its counts
// One TXT record per fact ("key: value", at most 255 octets), TTL 0. Other types for these two
// names get NODATA (NOERROR, no answer: the name exists, the type does not); every other CHAOS
// name gets REFUSED with EDE 18 naming the two. A CHAOS query never goes upstream and never
// installs anything. `chaos: false` (`--chaos false`) turns all of it off: CHAOS is REFUSED then,
// like any class other than IN (the resolver's job, not this file's).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/dns_wire.h"
#include "dnsd/allowlist.h"
#include "dnsd/config.h"
#include "dnsd/installer.h"

namespace dnsd::chaos {

enum class Topic { Why, Policy, Unknown };

struct Question {
  Topic topic = Topic::Unknown;
  // Topic::Why: the name asked about (the labels before "why.egress"), lowercase without the
  // trailing dot, when every label is made of letters, digits, '-' and '_' (dns::Name::hostname);
  // otherwise nothing, and `display` holds its escaped presentation form.
  std::optional<std::string> hostname;
  std::string display;
};

// Which report `qname` asks for, ignoring case. "why.egress" with no name before it is Unknown.
Question classify(const egress::dns::Name& qname);

struct InstalledAddress {
  std::string address;             // "192.0.2.10", "2001:db8::1"
  std::chrono::seconds remaining;  // until the kernel removes the element
};

struct WhyFacts {
  std::string name;                  // as displayed
  bool hostname = true;              // false: no allowlist entry can name it
  const AllowEntry* rule = nullptr;  // the entry that allows it; nullptr: denied
  std::string source;                // the allowlist file
  std::string wildcard_hint;         // denied, but "*.NAME" is listed (it excludes NAME itself)
  std::string network;               // the name is an IPv4 literal inside this networks: entry
  DenyMode deny = DenyMode::NXDomain;
  NftMode nft_mode = NftMode::Enforce;
  std::vector<InstalledAddress> addresses;  // installed for this name, in display order
};

// At most this many addresses are listed; one more string says how many were left out.
inline constexpr std::size_t kMaxListedAddresses = 32;

// The report's strings, in order (pure).
std::vector<std::string> why_report(const WhyFacts& f);

struct PolicyFacts {
  std::string source;
  std::string sha256;
  std::chrono::system_clock::time_point loaded_at;
  std::size_t exact = 0, wildcards = 0, networks4 = 0, networks6 = 0;
  DenyMode deny = DenyMode::NXDomain;
  NftMode nft_mode = NftMode::Enforce;
  std::string table;  // nft table name
};

std::vector<std::string> policy_report(const PolicyFacts& f);

// The reply to a query of class CH: gathers the facts from `allowlist`, `installer` (what it
// installed, read from its memory: no netlink traffic) and `config` at `now`, and renders them
// with dns::make_txt_reply (TC=1 when over `limit`).
std::vector<std::uint8_t> reply(const egress::dns::Query& q, std::span<const std::uint8_t> packet,
                                std::size_t limit, const Allowlist& allowlist,
                                const Installer& installer, const Config& config,
                                Clock::time_point now);

}  // namespace dnsd::chaos
