#include "common/cidr.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <charconv>
#include <cstdio>

namespace egress {

namespace {

// The text is echoed in messages; a network is short, so anything long is junk anyway.
constexpr std::size_t kMaxCidrText = INET6_ADDRSTRLEN + 4;  // address, '/', up to 3 digits

std::string quoted(std::string_view s) {
  std::string out = "\"";
  for (std::size_t i = 0; i < s.size() && i < kMaxCidrText + 8; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c >= 0x7f) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      out += hex;
    } else {
      out += static_cast<char>(c);
    }
  }
  if (s.size() > kMaxCidrText + 8) out += "...";
  return out + "\"";
}

CidrParse failure(std::string message) { return CidrParse{std::nullopt, std::move(message)}; }

std::size_t address_octets(std::uint8_t family) { return family == 4 ? 4 : 16; }

void clear_host_bits(Cidr& c) {
  const std::size_t octets = address_octets(c.family);
  for (std::size_t i = 0; i < octets; ++i) {
    const std::size_t bit = i * 8;
    if (bit >= c.prefix) {
      c.addr[i] = 0;
    } else if (c.prefix - bit < 8) {
      c.addr[i] &= static_cast<std::uint8_t>(0xff << (8 - (c.prefix - bit)));
    }
  }
}

}  // namespace

bool Cidr::contains(std::uint8_t fam, std::span<const std::uint8_t> bytes) const {
  if (fam != family || (family != 4 && family != 6)) return false;
  if (bytes.size() != address_octets(family)) return false;
  const std::size_t whole = prefix / 8;
  if (!std::equal(addr.begin(), addr.begin() + static_cast<std::ptrdiff_t>(whole), bytes.begin()))
    return false;
  const unsigned rest = prefix % 8u;
  if (rest == 0) return true;
  const auto mask = static_cast<std::uint8_t>(0xff << (8 - rest));
  return (addr[whole] & mask) == (bytes[whole] & mask);
}

std::string Cidr::to_string() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (inet_ntop(family == 4 ? AF_INET : AF_INET6, addr.data(), buf, sizeof buf) == nullptr)
    return "invalid";
  return std::string(buf) + "/" + std::to_string(prefix);
}

CidrParse parse_cidr(std::string_view text) {
  const std::string not_a_network = quoted(text) + " is not an IPv4 or IPv6 network";
  if (text.empty() || text.size() > kMaxCidrText) return failure(not_a_network);
  // inet_pton already refuses blanks and IPv4 leading zeros; checking the alphabet first keeps
  // NUL bytes and the like away from a C string function.
  const bool alphabet_ok = std::all_of(text.begin(), text.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == '.' ||
           c == ':' || c == '/';
  });
  if (!alphabet_ok) return failure(not_a_network);

  const std::size_t slash = text.find('/');
  const std::string address(text.substr(0, slash));
  Cidr c;
  c.family = address.find(':') != std::string::npos ? 6 : 4;
  if (inet_pton(c.family == 4 ? AF_INET : AF_INET6, address.c_str(), c.addr.data()) != 1)
    return failure(not_a_network);

  const unsigned max_prefix = c.family == 4 ? 32 : 128;
  unsigned prefix = max_prefix;
  if (slash != std::string_view::npos) {
    const std::string_view digits = text.substr(slash + 1);
    // Digits only, no sign, no leading zero: "/024" is more likely a typo than a prefix.
    const bool digits_ok =
        !digits.empty() && digits.size() <= 3 &&
        std::all_of(digits.begin(), digits.end(), [](char ch) { return ch >= '0' && ch <= '9'; }) &&
        (digits.size() == 1 || digits[0] != '0');
    if (!digits_ok) return failure(not_a_network);
    std::from_chars(digits.data(), digits.data() + digits.size(), prefix);
    if (prefix > max_prefix) {
      return failure("prefix length in " + quoted(text) + " must be from 0 to " +
                     std::to_string(max_prefix));
    }
  }
  c.prefix = static_cast<std::uint8_t>(prefix);

  Cidr network = c;
  clear_host_bits(network);
  if (network.addr != c.addr) {
    return failure("host bits set in " + std::string(text) + " (did you mean " +
                   network.to_string() + "?)");
  }
  return CidrParse{c, {}};
}

}  // namespace egress
