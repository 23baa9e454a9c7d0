#include "dnsd/address_guard.h"

#include <algorithm>
#include <array>
#include <string>

namespace dnsd {

namespace dns = egress::dns;

namespace {

// The special-purpose ranges (RFC 6890 registries) a public name has no business pointing at.
// One table: the parsed form is derived from it once.
struct Range {
  const char* cidr;
  const char* text;  // what guarded_range() reports
};
constexpr Range kGuarded[] = {
    {"0.0.0.0/8", "0.0.0.0/8 (unspecified, \"this network\")"},
    {"10.0.0.0/8", "10.0.0.0/8 (private)"},
    {"100.64.0.0/10", "100.64.0.0/10 (shared address space)"},
    {"127.0.0.0/8", "127.0.0.0/8 (loopback)"},
    {"169.254.0.0/16", "169.254.0.0/16 (link-local, cloud metadata)"},
    {"192.0.0.0/24", "192.0.0.0/24 (IETF protocol assignments)"},
    {"172.16.0.0/12", "172.16.0.0/12 (private)"},
    {"192.168.0.0/16", "192.168.0.0/16 (private)"},
    {"224.0.0.0/4", "224.0.0.0/4 (multicast)"},
    {"240.0.0.0/4", "240.0.0.0/4 (reserved, broadcast)"},
    {"::/128", "::/128 (unspecified)"},
    {"::1/128", "::1/128 (loopback)"},
    {"::/96", "::/96 (IPv4-compatible, deprecated)"},
    {"64:ff9b:1::/48", "64:ff9b:1::/48 (local-use IPv4/IPv6 translation)"},
    {"::ffff:0:0/96", "::ffff:0:0/96 (IPv4-mapped)"},
    {"fc00::/7", "fc00::/7 (unique local)"},
    {"fe80::/10", "fe80::/10 (link-local)"},
    {"ff00::/8", "ff00::/8 (multicast)"},
};

struct Parsed {
  egress::Cidr cidr;
  std::string_view text;
};

const std::vector<Parsed>& guarded() {
  static const std::vector<Parsed> table = [] {
    std::vector<Parsed> out;
    for (const Range& r : kGuarded) out.push_back({*egress::parse_cidr(r.cidr).cidr, r.text});
    return out;
  }();
  return table;
}

std::span<const std::uint8_t> bytes_of(const dns::Address& a) {
  return {a.bytes.data(), a.family == 4 ? 4u : 16u};
}

bool covered(const dns::Address& a, std::span<const egress::Cidr> networks) {
  return std::any_of(networks.begin(), networks.end(), [&](const egress::Cidr& c) {
    return c.contains(a.family, bytes_of(a));
  });
}

}  // namespace

std::string_view guarded_range(const dns::Address& a) {
  for (const Parsed& p : guarded()) {
    if (p.cidr.contains(a.family, bytes_of(a))) return p.text;
  }
  // IPv6 forms that carry an IPv4 address a translator or relay would reach: judged by it
  // (64:ff9b::a9fe:a9fe is 169.254.169.254 through NAT64).
  if (a.family == 6) {
    static constexpr std::array<std::uint8_t, 12> kNat64{0x00, 0x64, 0xff, 0x9b};  // RFC 6052
    dns::Address v4;
    v4.family = 4;
    if (std::equal(kNat64.begin(), kNat64.end(), a.bytes.begin())) {
      std::copy_n(a.bytes.begin() + 12, 4, v4.bytes.begin());
      return guarded_range(v4);
    }
    if (a.bytes[0] == 0x20 && a.bytes[1] == 0x02) {  // 6to4, 2002:V4ADDR::/48 (RFC 3056)
      std::copy_n(a.bytes.begin() + 2, 4, v4.bytes.begin());
      return guarded_range(v4);
    }
  }
  return {};
}

bool installable(const dns::Address& a, std::span<const egress::Cidr> networks) {
  return guarded_range(a).empty() || covered(a, networks);
}

std::vector<std::uint16_t> records_to_drop(const dns::PreparedAnswer& answer,
                                           std::span<const egress::Cidr> networks,
                                           std::size_t max_addresses) {
  // Records whose addresses did not fit the collection cap were never looked at: out too.
  std::vector<std::uint16_t> drop(answer.capped_records.begin(), answer.capped_records.end());
  std::size_t kept = 0;
  for (const dns::Address& a : answer.addresses) {
    const bool refused = !installable(a, networks) || kept >= max_addresses;
    if (refused) {
      drop.push_back(a.record);
    } else {
      ++kept;
    }
  }
  std::sort(drop.begin(), drop.end());
  drop.erase(std::unique(drop.begin(), drop.end()), drop.end());
  return drop;
}

}  // namespace dnsd
