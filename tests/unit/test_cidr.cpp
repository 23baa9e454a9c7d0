// CIDR parsing and containment (common/cidr.h).
#include <doctest/doctest.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "common/cidr.h"

namespace {

using Bytes = std::vector<std::uint8_t>;

Bytes v4(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d) { return {a, b, c, d}; }

// 2001:db8:XXXX:YYYY:: (the rest zero, last octet `last`).
Bytes v6(std::uint16_t g1, std::uint16_t g2, std::uint16_t g3, std::uint8_t last = 0) {
  Bytes b(16, 0);
  const std::uint16_t groups[] = {g1, g2, g3};
  for (int i = 0; i < 3; ++i) {
    b[static_cast<std::size_t>(2 * i)] = static_cast<std::uint8_t>(groups[i] >> 8);
    b[static_cast<std::size_t>(2 * i + 1)] = static_cast<std::uint8_t>(groups[i] & 0xff);
  }
  b[15] = last;
  return b;
}

egress::Cidr must_parse(const std::string& text) {
  const egress::CidrParse p = egress::parse_cidr(text);
  REQUIRE_MESSAGE(p.cidr.has_value(), text << ": " << p.error);
  return *p.cidr;
}

}  // namespace

TEST_CASE("parse_cidr accepts networks and bare addresses in canonical form") {
  struct Row {
    const char* text;
    int family;
    int prefix;
    const char* canonical;
  };
  const Row rows[] = {
      {"192.0.2.0/24", 4, 24, "192.0.2.0/24"},
      {"192.0.2.128/25", 4, 25, "192.0.2.128/25"},
      {"10.0.0.0/8", 4, 8, "10.0.0.0/8"},
      {"0.0.0.0/0", 4, 0, "0.0.0.0/0"},
      {"192.0.2.1", 4, 32, "192.0.2.1/32"},  // a bare address is a /32
      {"192.0.2.1/32", 4, 32, "192.0.2.1/32"},
      {"2001:db8::/32", 6, 32, "2001:db8::/32"},
      {"2001:DB8::1", 6, 128, "2001:db8::1/128"},  // hex digits in either case, /128 when bare
      {"2001:0db8:0000::/48", 6, 48, "2001:db8::/48"},
      {"::/0", 6, 0, "::/0"},
      {"::ffff:192.0.2.0/120", 6, 120, "::ffff:192.0.2.0/120"},
  };
  for (const Row& r : rows) {
    CAPTURE(r.text);
    const egress::Cidr c = must_parse(r.text);
    CHECK(c.family == r.family);
    CHECK(c.prefix == r.prefix);
    CHECK(c.to_string() == r.canonical);
  }
}

TEST_CASE("parse_cidr rejects junk with an exact message") {
  struct Row {
    const char* text;
    const char* error;
  };
  const Row rows[] = {
      {"192.0.2.1/24", "host bits set in 192.0.2.1/24 (did you mean 192.0.2.0/24?)"},
      {"192.0.2.129/25", "host bits set in 192.0.2.129/25 (did you mean 192.0.2.128/25?)"},
      {"2001:db8::1/32", "host bits set in 2001:db8::1/32 (did you mean 2001:db8::/32?)"},
      {"192.0.2.0/33", "prefix length in \"192.0.2.0/33\" must be from 0 to 32"},
      {"2001:db8::/129", "prefix length in \"2001:db8::/129\" must be from 0 to 128"},
      {"", "\"\" is not an IPv4 or IPv6 network"},
      {"foo", "\"foo\" is not an IPv4 or IPv6 network"},
      {"192.0.2.0/", "\"192.0.2.0/\" is not an IPv4 or IPv6 network"},
      {"192.0.2.0/024", "\"192.0.2.0/024\" is not an IPv4 or IPv6 network"},
      {"192.0.2.0/-1", "\"192.0.2.0/-1\" is not an IPv4 or IPv6 network"},
      {"192.0.2.0/+8", "\"192.0.2.0/+8\" is not an IPv4 or IPv6 network"},
      {"192.0.2.0/1234", "\"192.0.2.0/1234\" is not an IPv4 or IPv6 network"},
      {"192.0.2.0/24/8", "\"192.0.2.0/24/8\" is not an IPv4 or IPv6 network"},
      {" 192.0.2.0/24", "\" 192.0.2.0/24\" is not an IPv4 or IPv6 network"},
      {"192.0.2.0/24 ", "\"192.0.2.0/24 \" is not an IPv4 or IPv6 network"},
      {"192.0.2.0\n", "\"192.0.2.0\\x0a\" is not an IPv4 or IPv6 network"},
      {"192.000.2.0/24", "\"192.000.2.0/24\" is not an IPv4 or IPv6 network"},  // leading zeros
      {"192.0.2/24", "\"192.0.2/24\" is not an IPv4 or IPv6 network"},
      {"256.0.0.0/8", "\"256.0.0.0/8\" is not an IPv4 or IPv6 network"},
      {"2001:db8:::/32", "\"2001:db8:::/32\" is not an IPv4 or IPv6 network"},
  };
  for (const Row& r : rows) {
    CAPTURE(r.text);
    const egress::CidrParse p = egress::parse_cidr(r.text);
    CHECK_FALSE(p.cidr.has_value());
    CHECK(p.error == r.error);
  }
}

TEST_CASE("parse_cidr does not read past an embedded NUL") {
  const std::string text("192.0.2.1\0/8", 12);
  const egress::CidrParse p = egress::parse_cidr(text);
  CHECK_FALSE(p.cidr.has_value());
  CHECK(p.error == "\"192.0.2.1\\x00/8\" is not an IPv4 or IPv6 network");
}

TEST_CASE("Cidr::contains checks family, length and the prefix bits") {
  struct Row {
    const char* network;
    std::uint8_t family;
    Bytes address;
    bool inside;
  };
  const std::vector<Row> rows = {
      {"192.0.2.0/24", 4, v4(192, 0, 2, 77), true},
      {"192.0.2.0/24", 4, v4(192, 0, 2, 0), true},
      {"192.0.2.0/24", 4, v4(192, 0, 3, 1), false},
      {"192.0.2.128/25", 4, v4(192, 0, 2, 128), true},
      {"192.0.2.128/25", 4, v4(192, 0, 2, 255), true},
      {"192.0.2.128/25", 4, v4(192, 0, 2, 127), false},
      {"192.0.2.1", 4, v4(192, 0, 2, 1), true},
      {"192.0.2.1", 4, v4(192, 0, 2, 2), false},
      {"0.0.0.0/0", 4, v4(203, 0, 113, 9), true},
      {"0.0.0.0/0", 6, v6(0x2001, 0xdb8, 0), false},      // family differs
      {"192.0.2.0/24", 4, Bytes{192, 0, 2}, false},       // short span
      {"192.0.2.0/24", 4, v6(0xc000, 0x0200, 0), false},  // 16 octets for IPv4
      {"2001:db8::/32", 6, v6(0x2001, 0xdb8, 0xffff, 1), true},
      {"2001:db8::/32", 6, v6(0x2001, 0xdb9, 0), false},
      {"2001:db8::/33", 6, v6(0x2001, 0xdb8, 0x7fff), true},
      {"2001:db8::/33", 6, v6(0x2001, 0xdb8, 0x8000), false},
      {"2001:db8::/32", 4, v4(32, 1, 13, 184), false},  // family differs
      {"::/0", 6, v6(0xfe80, 0, 0, 1), true},
      {"2001:db8::1", 6, v6(0x2001, 0xdb8, 0, 1), true},
      {"2001:db8::1", 6, v6(0x2001, 0xdb8, 0, 2), false},
  };
  for (const Row& r : rows) {
    CAPTURE(r.network);
    CAPTURE(r.address.size());
    CHECK(must_parse(r.network).contains(r.family, r.address) == r.inside);
  }
}

TEST_CASE("a default Cidr contains nothing") {
  const egress::Cidr none;
  CHECK_FALSE(none.contains(0, Bytes{}));
  CHECK_FALSE(none.contains(4, v4(0, 0, 0, 0)));
}
