// IPv4/IPv6 networks in CIDR notation ("192.0.2.0/24", "2001:db8::/32", a bare address = /32 or /128).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace egress {

struct Cidr {
  std::uint8_t family = 0;  // 4 or 6
  std::array<std::uint8_t, 16> addr{};  // network address; IPv4 in the first 4 octets
  std::uint8_t prefix = 0;

  // True if `bytes` (4 octets for IPv4, 16 for IPv6) of the same family lie inside.
  bool contains(std::uint8_t fam, std::span<const std::uint8_t> bytes) const;
  std::string to_string() const;  // canonical "192.0.2.0/24"
};

struct CidrParse {
  std::optional<Cidr> cidr;
  std::string error;  // e.g. "host bits set in 192.0.2.1/24 (did you mean 192.0.2.0/24?)"
};

CidrParse parse_cidr(std::string_view text);

}  // namespace egress
