// Layer 1 tests of the DNS wire format (common/dns_wire.h) against hand-written byte arrays, one
// comment per field. Offsets in comments are from the start of the message.
#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/dns_wire.h"

namespace dns = egress::dns;
using Bytes = std::vector<std::uint8_t>;

// Failed comparisons of byte vectors print as hex.
template <>
struct doctest::StringMaker<Bytes> {
  static doctest::String convert(const Bytes& b) {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string s;
    for (std::uint8_t c : b) {
      s += kHex[c >> 4];
      s += kHex[c & 0xF];
      s += ' ';
    }
    return s.c_str();
  }
};

namespace {

Bytes cat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const Bytes& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

std::uint16_t be16(const Bytes& b, std::size_t at) {
  return static_cast<std::uint16_t>(b.at(at) << 8 | b.at(at + 1));
}

std::uint32_t be32(const Bytes& b, std::size_t at) {
  return static_cast<std::uint32_t>(be16(b, at)) << 16 | be16(b, at + 2);
}

// Header fields by offset (RFC 1035 §4.1.1).
constexpr std::size_t kId = 0, kFlags = 2, kQd = 4, kAn = 6, kNs = 8, kAr = 10;

void set16(Bytes& b, std::size_t at, std::uint16_t v) {
  b.at(at) = static_cast<std::uint8_t>(v >> 8);
  b.at(at + 1) = static_cast<std::uint8_t>(v);
}

// github.com A IN, RD, no EDNS: 28 octets.
const Bytes kQueryA = {
    0x12, 0x34,                                     // ID
    0x01, 0x00,                                     // flags: RD
    0x00, 0x01,                                     // QDCOUNT 1
    0x00, 0x00,                                     // ANCOUNT 0
    0x00, 0x00,                                     // NSCOUNT 0
    0x00, 0x00,                                     // ARCOUNT 0
    6, 'g', 'i', 't', 'h', 'u', 'b', 3, 'c', 'o', 'm', 0,  // 12: QNAME github.com
    0x00, 0x01,                                     // 24: QTYPE A
    0x00, 0x01,                                     // 26: QCLASS IN
};

// An OPT record (RFC 6891 §6.1.2) with the given payload size and TTL field.
Bytes opt(std::uint16_t udp, std::uint32_t ttl, Bytes rdata = {}) {
  Bytes b = {
      0x00,                                           // owner: root
      0x00, 0x29,                                     // TYPE OPT
      static_cast<std::uint8_t>(udp >> 8), static_cast<std::uint8_t>(udp),  // CLASS: UDP size
      static_cast<std::uint8_t>(ttl >> 24), static_cast<std::uint8_t>(ttl >> 16),
      static_cast<std::uint8_t>(ttl >> 8), static_cast<std::uint8_t>(ttl),  // TTL: ercode ver DO
      static_cast<std::uint8_t>(rdata.size() >> 8), static_cast<std::uint8_t>(rdata.size()),  // RDLEN
  };
  return cat({b, rdata});
}

// kQueryA with ARCOUNT 1 and the given OPT appended.
Bytes query_with_opt(const Bytes& opt_rr) {
  Bytes q = cat({kQueryA, opt_rr});
  set16(q, kAr, 1);
  return q;
}

// "GiThUb.CoM" A IN from a client: ID 0xBEEF, RD, EDNS 4096 with DO.
const Bytes kClientMixedCase = {
    0xBE, 0xEF,                                     // ID
    0x01, 0x00,                                     // flags: RD
    0x00, 0x01,                                     // QDCOUNT 1
    0x00, 0x00,                                     // ANCOUNT 0
    0x00, 0x00,                                     // NSCOUNT 0
    0x00, 0x01,                                     // ARCOUNT 1
    6, 'G', 'i', 'T', 'h', 'U', 'b', 3, 'C', 'o', 'M', 0,  // 12: QNAME GiThUb.CoM
    0x00, 0x01,                                     // 24: QTYPE A
    0x00, 0x01,                                     // 26: QCLASS IN
    0x00,                                           // 28: OPT owner root
    0x00, 0x29,                                     // TYPE OPT
    0x10, 0x00,                                     // UDP size 4096
    0x00, 0x00, 0x80, 0x00,                         // ext-rcode 0, version 0, DO
    0x00, 0x00,                                     // RDLENGTH 0
};

// Upstream answer to github.com A: a CNAME chain to cdn.example.net with two A and one AAAA,
// and an OPT last. 128 octets.
const Bytes kChainAnswer = {
    0xAB, 0xCD,                                     // ID (c-ares's)
    0x85, 0xA0,                                     // flags: QR AA RD | RA AD
    0x00, 0x01,                                     // QDCOUNT 1
    0x00, 0x04,                                     // ANCOUNT 4
    0x00, 0x00,                                     // NSCOUNT 0
    0x00, 0x01,                                     // ARCOUNT 1 (OPT)
    6, 'g', 'i', 't', 'h', 'u', 'b', 3, 'c', 'o', 'm', 0,  // 12: QNAME github.com
    0x00, 0x01,                                     // 24: QTYPE A
    0x00, 0x01,                                     // 26: QCLASS IN
    // 28: github.com CNAME cdn.example.net
    0xC0, 0x0C,                                     // owner: pointer to 12
    0x00, 0x05,                                     // TYPE CNAME
    0x00, 0x01,                                     // CLASS IN
    0x00, 0x00, 0x01, 0x2C,                         // 34: TTL 300
    0x00, 0x11,                                     // RDLENGTH 17
    3, 'c', 'd', 'n', 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'n', 'e', 't', 0,  // 40: target
    // 57: cdn.example.net A 192.0.2.1
    0xC0, 0x28,                                     // owner: pointer to 40
    0x00, 0x01,                                     // TYPE A
    0x00, 0x01,                                     // CLASS IN
    0x00, 0x00, 0x00, 0x3C,                         // 63: TTL 60
    0x00, 0x04,                                     // RDLENGTH 4
    192, 0, 2, 1,                                   // address
    // 73: cdn.example.net A 192.0.2.2
    0xC0, 0x28,                                     // owner: pointer to 40
    0x00, 0x01,                                     // TYPE A
    0x00, 0x01,                                     // CLASS IN
    0x00, 0x00, 0x00, 0x5A,                         // 79: TTL 90
    0x00, 0x04,                                     // RDLENGTH 4
    192, 0, 2, 2,                                   // address
    // 89: cdn.example.net AAAA 2001:db8::1
    0xC0, 0x28,                                     // owner: pointer to 40
    0x00, 0x1C,                                     // TYPE AAAA
    0x00, 0x01,                                     // CLASS IN
    0x00, 0x00, 0x00, 0x78,                         // 95: TTL 120
    0x00, 0x10,                                     // RDLENGTH 16
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,  // address
    // 117: OPT
    0x00,                                           // owner root
    0x00, 0x29,                                     // TYPE OPT
    0x04, 0xD0,                                     // UDP size 1232
    0x00, 0x00, 0x00, 0x00,                         // ext-rcode 0, version 0, no DO
    0x00, 0x00,                                     // RDLENGTH 0
};
constexpr std::size_t kChainOpt = 117;

// Upstream NXDOMAIN for github.com A: SOA of com in authority, TTL 3600, MINIMUM 300.
const Bytes kNxAnswer = {
    0x00, 0x07,                                     // ID
    0x81, 0x83,                                     // flags: QR RD | RA NXDOMAIN
    0x00, 0x01,                                     // QDCOUNT 1
    0x00, 0x00,                                     // ANCOUNT 0
    0x00, 0x01,                                     // NSCOUNT 1
    0x00, 0x00,                                     // ARCOUNT 0
    6, 'g', 'i', 't', 'h', 'u', 'b', 3, 'c', 'o', 'm', 0,  // 12: QNAME github.com
    0x00, 0x01,                                     // QTYPE A
    0x00, 0x01,                                     // QCLASS IN
    // 28: com SOA
    0xC0, 0x13,                                     // owner: pointer to 19 ("com")
    0x00, 0x06,                                     // TYPE SOA
    0x00, 0x01,                                     // CLASS IN
    0x00, 0x00, 0x0E, 0x10,                         // 34: TTL 3600
    0x00, 0x20,                                     // RDLENGTH 32
    2, 'n', 's', 0xC0, 0x13,                        // MNAME ns.com
    4, 'h', 'o', 's', 't', 0xC0, 0x13,              // RNAME host.com
    0x00, 0x00, 0x00, 0x01,                         // SERIAL
    0x00, 0x00, 0x07, 0x08,                         // REFRESH
    0x00, 0x00, 0x03, 0x84,                         // RETRY
    0x00, 0x09, 0x3A, 0x80,                         // EXPIRE
    0x00, 0x00, 0x01, 0x2C,                         // 68: MINIMUM 300
};

dns::Query parsed(const Bytes& packet) {
  dns::QueryParse p = dns::parse_query(packet);
  REQUIRE_MESSAGE(p.query.has_value(), p.reason);
  return *p.query;
}

dns::QueryError error_of(const Bytes& packet) {
  dns::QueryParse p = dns::parse_query(packet);
  REQUIRE_FALSE(p.query.has_value());
  return p.error;
}

// Reads a name at `pos` of a message made of a 12-octet header of zeros and `body`.
std::optional<dns::Name> name_at(const Bytes& body, std::size_t pos, std::size_t* end = nullptr) {
  Bytes msg = cat({Bytes(12, 0), body});
  dns::Reader r(msg, pos);
  auto n = r.name();
  if (end) *end = r.pos();
  return n;
}

}  // namespace

// --- Reader, Writer, Name ------------------------------------------------------------------------

TEST_CASE("dns_wire: Reader reads big-endian fields and refuses to read past the end") {
  const Bytes b = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07};
  dns::Reader r(b);
  CHECK(r.u8() == 0x01);
  CHECK(r.u16() == 0x0203);
  CHECK(r.u32() == 0x04050607u);
  CHECK(r.remaining() == 0);
  CHECK_FALSE(r.u8().has_value());
  CHECK_FALSE(r.skip(1));
  dns::Reader r2(b, 5);
  CHECK_FALSE(r2.u32().has_value());  // 2 left
  CHECK(r2.pos() == 5);               // a failed read does not move
  CHECK(r2.u16() == 0x0607);
  dns::Reader past(b, 100);           // a start beyond the end reads as the end
  CHECK(past.remaining() == 0);
  CHECK_FALSE(past.bytes(1).has_value());
}

TEST_CASE("dns_wire: Writer writes big-endian and patches in place") {
  Bytes out;
  dns::Writer w(out);
  w.header({.id = 0x1234, .flags = 0x8180, .qdcount = 1, .ancount = 2, .nscount = 3, .arcount = 4});
  w.u32(0xA1B2C3D4);
  w.patch_u16(6, 0x0909);
  w.patch_u16(15, 0xFFFF);  // would run past the end: ignored
  CHECK(out == Bytes{0x12, 0x34, 0x81, 0x80, 0, 1, 0x09, 0x09, 0, 3, 0, 4, 0xA1, 0xB2, 0xC3, 0xD4});
}

TEST_CASE("dns_wire: Name from_text accepts names and refuses empty or oversized labels") {
  auto n = dns::Name::from_text("GitHub.com.");
  REQUIRE(n);
  CHECK(Bytes(n->wire().begin(), n->wire().end()) ==
        Bytes{6, 'G', 'i', 't', 'H', 'u', 'b', 3, 'c', 'o', 'm', 0});
  CHECK(n->labels() == 2);
  CHECK(dns::Name::from_text("github.com")->wire().size() == 12);
  CHECK(dns::Name::from_text("")->wire().size() == 1);  // root
  CHECK(dns::Name::from_text(".")->labels() == 0);
  CHECK_FALSE(dns::Name::from_text("a..b"));
  CHECK_FALSE(dns::Name::from_text(".a"));
  CHECK_FALSE(dns::Name::from_text("a.."));
  CHECK(dns::Name::from_text(std::string(63, 'x') + ".com"));
  CHECK_FALSE(dns::Name::from_text(std::string(64, 'x') + ".com"));
  // 4 labels of 63 = 256 octets with the root; 3 of 63 plus one of 61 = 255.
  const std::string l63(63, 'a');
  CHECK_FALSE(dns::Name::from_text(l63 + "." + l63 + "." + l63 + "." + l63));
  CHECK(dns::Name::from_text(l63 + "." + l63 + "." + l63 + "." + std::string(61, 'a')));
  CHECK_FALSE(dns::Name::from_text(l63 + "." + l63 + "." + l63 + "." + std::string(62, 'a')));
}

TEST_CASE("dns_wire: append_label keeps room for the root label") {
  dns::Name n;
  const Bytes l63(63, 'a'), l62(62, 'a'), l61(61, 'a');
  for (int i = 0; i < 3; ++i) REQUIRE(n.append_label(l63));  // 192 octets
  CHECK_FALSE(n.append_label(l62));                           // 255 with no room for the root
  CHECK_FALSE(n.append_label({}));                            // an empty label is the root's
  CHECK_FALSE(n.append_label(Bytes(64, 'a')));
  CHECK(n.append_label(l61));                                 // 254
  CHECK(n.finish());                                          // 255
  CHECK(n.wire().size() == 255);
  CHECK(n.labels() == 4);
}

TEST_CASE("dns_wire: hostname is lowercase dotted and only for the allowlist alphabet") {
  CHECK(dns::Name::from_text("WWW.GitHub.COM")->hostname() == "www.github.com");
  CHECK(dns::Name::from_text("_dmarc.x-y.example.")->hostname() == "_dmarc.x-y.example");
  CHECK(dns::Name::from_text(".")->hostname() == "");
  CHECK_FALSE(dns::Name::from_text("a b.example")->hostname());
  CHECK_FALSE(dns::Name::from_text("a*.example")->hostname());
  // One label "a.b" must not read as two labels.
  const Bytes dotted = {3, 'a', '.', 'b', 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 0};
  auto n = name_at(dotted, 12);
  REQUIRE(n);
  CHECK(n->labels() == 2);
  CHECK_FALSE(n->hostname());
  CHECK(n->to_text() == "a\\.b.example.");
}

TEST_CASE("dns_wire: to_text escapes dots, backslashes and unprintable octets") {
  const Bytes body = {
      5, 'a', '\\', 'b', ' ', 0x00,                  // label: a \ b space NUL
      3, 'X', 0x7F, 0xFF,                            // label: X DEL 0xFF
      0,                                             // root
  };
  auto n = name_at(body, 12);
  REQUIRE(n);
  CHECK(n->to_text() == "a\\\\b\\032\\000.X\\127\\255.");
  CHECK(dns::Name::from_text(".")->to_text() == ".");
  CHECK(dns::Name::from_text("GitHub.com")->to_text() == "GitHub.com.");
}

TEST_CASE("dns_wire: lowercased and equals_ignore_case fold ASCII letters only") {
  auto upper = *dns::Name::from_text("GiThUb.CoM");
  auto lower = *dns::Name::from_text("github.com");
  CHECK(upper.equals_ignore_case(lower));
  const dns::Name folded = upper.lowercased();
  CHECK(Bytes(folded.wire().begin(), folded.wire().end()) ==
        Bytes(lower.wire().begin(), lower.wire().end()));
  CHECK_FALSE(upper.equals_ignore_case(*dns::Name::from_text("github.co")));
  CHECK_FALSE(upper.equals_ignore_case(*dns::Name::from_text("gitlab.com")));
  // 0xC1 is not 'A' + 0x80: no folding outside ASCII.
  Bytes hi = {1, 0xC1, 0};
  Bytes hi2 = {1, 0xE1, 0};
  CHECK_FALSE(name_at(hi, 12)->equals_ignore_case(*name_at(hi2, 12)));
}

// --- Compression (RFC 1035 §4.1.4) ---------------------------------------------------------------

TEST_CASE("dns_wire: a backward pointer is followed and the cursor stops after it") {
  const Bytes body = {
      3, 'c', 'o', 'm', 0,                           // 12: com
      6, 'g', 'i', 't', 'h', 'u', 'b', 0xC0, 0x0C,   // 17: github + pointer to 12
      0xAA,                                          // 26: a byte after the name
  };
  std::size_t end = 0;
  auto n = name_at(body, 17, &end);
  REQUIRE(n);
  CHECK(n->hostname() == "github.com");
  CHECK(end == 26);
  auto whole = name_at(body, 12, &end);
  REQUIRE(whole);
  CHECK(whole->hostname() == "com");
  CHECK(end == 17);
}

TEST_CASE("dns_wire: a pointer to itself is refused") {
  const Bytes body = {0xC0, 0x0C};  // 12: pointer to 12
  CHECK_FALSE(name_at(body, 12));
}

TEST_CASE("dns_wire: a loop of two pointers is refused") {
  const Bytes body = {
      0xC0, 0x0E,                                    // 12: pointer to 14 (forward)
      0xC0, 0x0C,                                    // 14: pointer to 12
  };
  CHECK_FALSE(name_at(body, 12));
  CHECK_FALSE(name_at(body, 14));
}

TEST_CASE("dns_wire: a backward loop through a label ends at the jump limit") {
  const Bytes body = {
      1, 'a',                                        // 12: label a
      0xC0, 0x0C,                                    // 14: pointer to 12: a.a.a.… forever
  };
  CHECK_FALSE(name_at(body, 12));
}

TEST_CASE("dns_wire: at most 16 pointer jumps are followed even when each goes backwards") {
  // 12: the root; then pointers at 13, 15, 17, … each to the one before (the first to 12).
  Bytes body = {0x00};
  for (int k = 0; k < 17; ++k) {
    const int target = k == 0 ? 12 : 13 + 2 * (k - 1);
    body.insert(body.end(), {0xC0, static_cast<std::uint8_t>(target)});
  }
  const std::size_t sixteenth = 13 + 2 * 15, seventeenth = 13 + 2 * 16;
  auto ok = name_at(body, sixteenth);
  REQUIRE(ok);
  CHECK(ok->labels() == 0);
  CHECK_FALSE(name_at(body, seventeenth));
}

TEST_CASE("dns_wire: forward, out-of-bounds, header and cut pointers are refused") {
  const Bytes forward = {
      0xC0, 0x0E,                                    // 12: pointer to 14
      3, 'c', 'o', 'm', 0,                           // 14: com
  };
  CHECK_FALSE(name_at(forward, 12));
  CHECK(name_at(forward, 14));  // the target itself is a fine name
  const Bytes beyond = {0xFF, 0xFF};                 // 12: pointer to 16383
  CHECK_FALSE(name_at(beyond, 12));
  const Bytes into_header = {0xC0, 0x02};            // 12: pointer to the flags
  CHECK_FALSE(name_at(into_header, 12));
  const Bytes cut = {3, 'c', 'o', 'm', 0xC0};        // 12: com, then half a pointer
  CHECK_FALSE(name_at(cut, 12));
}

TEST_CASE("dns_wire: a name longer than 255 octets through pointers is refused") {
  Bytes body;
  const auto label63 = [&body](char c) {
    body.push_back(63);
    body.insert(body.end(), 63, static_cast<std::uint8_t>(c));
  };
  label63('a');                                      // 12: a{63}
  body.push_back(0);                                 // 76: root (65 octets)
  label63('b');                                      // 77: b{63}
  body.insert(body.end(), {0xC0, 12});               // 141: -> 12 (129 octets)
  label63('c');                                      // 143: c{63}
  body.insert(body.end(), {0xC0, 77});               // 207: -> 77 (193 octets)
  label63('d');                                      // 209: d{63}
  body.insert(body.end(), {0xC0, 143});              // 273: -> 143 (257 octets)
  auto ok = name_at(body, 143);
  REQUIRE(ok);
  CHECK(ok->wire().size() == 193);
  CHECK_FALSE(name_at(body, 209));
}

TEST_CASE("dns_wire: label types 01 and 10 are refused: a 64-octet label cannot be said") {
  Bytes l64 = {64};                                  // 12: length 64 = 0b01000000
  l64.insert(l64.end(), 64, 'x');
  l64.push_back(0);
  CHECK_FALSE(name_at(l64, 12));
  const Bytes ten = {0x80, 'x', 0};                  // 12: type bits 10
  CHECK_FALSE(name_at(ten, 12));
  const Bytes truncated = {5, 'a', 'b'};             // 12: label says 5, 2 follow
  CHECK_FALSE(name_at(truncated, 12));
  const Bytes no_root = {3, 'c', 'o', 'm'};          // 12: ends without the root
  CHECK_FALSE(name_at(no_root, 12));
}

// --- parse_query ---------------------------------------------------------------------------------

TEST_CASE("dns_wire: parse_query accepts a plain A query") {
  dns::Query q = parsed(kQueryA);
  CHECK(q.header.id == 0x1234);
  CHECK(q.header.has(dns::flag::RD));
  CHECK(q.qname.hostname() == "github.com");
  CHECK(q.qtype == dns::type::A);
  CHECK(q.qclass == dns::qclass::IN);
  CHECK(q.question_end == 28);
  CHECK_FALSE(q.edns.present);
  CHECK(dns::udp_limit(q, 1232) == 512);
}

TEST_CASE("dns_wire: parse_query reads EDNS size and DO and reads small sizes as 512") {
  dns::Query q = parsed(query_with_opt(opt(4096, 0x00008000)));  // DO
  CHECK(q.edns.present);
  CHECK(q.edns.udp_size == 4096);
  CHECK(q.edns.do_bit);
  CHECK(q.edns.version == 0);
  CHECK(q.question_end == 28);
  CHECK(dns::udp_limit(q, 1232) == 1232);
  CHECK(dns::udp_limit(q, 8192) == 4096);

  dns::Query small = parsed(query_with_opt(opt(100, 0)));
  CHECK(small.edns.udp_size == 512);
  CHECK_FALSE(small.edns.do_bit);
  CHECK(dns::udp_limit(small, 1232) == 512);

  // A well-formed option (cookie, code 10, 8 octets) is accepted; a cut one is not.
  const Bytes cookie = {0x00, 0x0A, 0x00, 0x08, 1, 2, 3, 4, 5, 6, 7, 8};
  CHECK(parsed(query_with_opt(opt(1232, 0, cookie))).edns.present);
  const Bytes cut = {0x00, 0x0A, 0x00, 0x08, 1, 2, 3};
  CHECK(error_of(query_with_opt(opt(1232, 0, cut))) == dns::QueryError::FormErr);
}

TEST_CASE("dns_wire: parse_query answers FORMERR for each malformation") {
  Bytes qd0 = kQueryA;
  set16(qd0, kQd, 0);
  qd0.resize(12);
  CHECK(error_of(qd0) == dns::QueryError::FormErr);

  Bytes qd2 = cat({kQueryA, Bytes(kQueryA.begin() + 12, kQueryA.end())});
  set16(qd2, kQd, 2);
  CHECK(error_of(qd2) == dns::QueryError::FormErr);

  Bytes an1 = kQueryA;
  set16(an1, kAn, 1);
  CHECK(error_of(an1) == dns::QueryError::FormErr);

  Bytes ns1 = kQueryA;
  set16(ns1, kNs, 1);
  CHECK(error_of(ns1) == dns::QueryError::FormErr);

  Bytes two_opts = cat({kQueryA, opt(1232, 0), opt(1232, 0)});
  set16(two_opts, kAr, 2);
  CHECK(error_of(two_opts) == dns::QueryError::FormErr);

  const Bytes a_record = {
      0x00,                                          // owner root
      0x00, 0x01,                                    // TYPE A
      0x00, 0x01,                                    // CLASS IN
      0x00, 0x00, 0x00, 0x3C,                        // TTL
      0x00, 0x04, 1, 2, 3, 4,                        // RDLENGTH 4, address
  };
  CHECK(error_of(query_with_opt(a_record)) == dns::QueryError::FormErr);

  const Bytes opt_not_root = {
      1, 'x', 0,                                     // owner x.
      0x00, 0x29,                                    // TYPE OPT
      0x04, 0xD0,                                    // UDP size
      0x00, 0x00, 0x00, 0x00,                        // TTL
      0x00, 0x00,                                    // RDLENGTH
  };
  CHECK(error_of(query_with_opt(opt_not_root)) == dns::QueryError::FormErr);

  Bytes trailing = cat({kQueryA, Bytes{0x00}});
  CHECK(error_of(trailing) == dns::QueryError::FormErr);

  Bytes cut_question(kQueryA.begin(), kQueryA.begin() + 26);  // QCLASS missing
  CHECK(error_of(cut_question) == dns::QueryError::FormErr);

  Bytes cut_name(kQueryA.begin(), kQueryA.begin() + 18);      // inside "github"
  CHECK(error_of(cut_name) == dns::QueryError::FormErr);

  Bytes opt_claimed = kQueryA;                                // ARCOUNT 1, no record
  set16(opt_claimed, kAr, 1);
  CHECK(error_of(opt_claimed) == dns::QueryError::FormErr);

  for (std::uint16_t meta : {dns::type::OPT, dns::type::TSIG, dns::type::TKEY, dns::type::MAILA,
                             dns::type::MAILB}) {
    Bytes m = kQueryA;
    set16(m, 24, meta);
    CHECK(error_of(m) == dns::QueryError::FormErr);
  }
  Bytes axfr = kQueryA;  // a valid question; the server refuses it
  set16(axfr, 24, dns::type::AXFR);
  CHECK(parsed(axfr).qtype == dns::type::AXFR);
}

TEST_CASE("dns_wire: parse_query drops responses and runts without a reply") {
  Bytes response = kQueryA;
  response[kFlags] |= 0x80;                                   // QR
  CHECK(error_of(response) == dns::QueryError::Drop);
  CHECK(dns::make_error_reply(response, dns::QueryError::Drop).empty());
  const Bytes runt = {0x12, 0x34, 0x01, 0x00, 0x00};
  CHECK(error_of(runt) == dns::QueryError::Drop);
  CHECK(dns::make_error_reply(Bytes{0x12}, dns::QueryError::FormErr).empty());
}

TEST_CASE("dns_wire: make_error_reply for FORMERR echoes ID, RD and the question") {
  Bytes trailing = cat({kQueryA, Bytes{0xEE, 0xEE}});
  REQUIRE(error_of(trailing) == dns::QueryError::FormErr);
  const Bytes reply = dns::make_error_reply(trailing, dns::QueryError::FormErr);
  const Bytes expected = cat({
      {
          0x12, 0x34,                                // ID
          0x81, 0x81,                                // QR RD | RA FORMERR
          0x00, 0x01,                                // QDCOUNT 1
          0x00, 0x00, 0x00, 0x00, 0x00, 0x00,        // AN NS AR 0
      },
      Bytes(kQueryA.begin() + 12, kQueryA.end()),    // the question
  });
  CHECK(reply == expected);

  Bytes qd0 = kQueryA;
  set16(qd0, kQd, 0);
  qd0.resize(12);
  const Bytes bare = dns::make_error_reply(qd0, dns::QueryError::FormErr);
  CHECK(bare.size() == 12);
  CHECK(be16(bare, kQd) == 0);
}

TEST_CASE("dns_wire: opcode NOTIFY gets NOTIMP with the opcode echoed") {
  Bytes notify = kQueryA;
  notify[kFlags] = 0x20;                                      // opcode 4 (NOTIFY), no RD
  CHECK(error_of(notify) == dns::QueryError::NotImp);
  const Bytes reply = dns::make_error_reply(notify, dns::QueryError::NotImp);
  REQUIRE(reply.size() == 28);
  CHECK(be16(reply, kId) == 0x1234);
  CHECK(be16(reply, kFlags) == 0xA084);                       // QR NOTIFY | RA NOTIMP
  CHECK(be16(reply, kQd) == 1);
}

TEST_CASE("dns_wire: EDNS version 1 gets BADVERS with the extended rcode in an OPT") {
  const Bytes v1 = query_with_opt(opt(4096, 0x00018000));     // version 1, DO
  CHECK(error_of(v1) == dns::QueryError::BadVers);
  const Bytes reply = dns::make_error_reply(v1, dns::QueryError::BadVers);
  const Bytes expected = cat({
      {
          0x12, 0x34,                                // ID
          0x81, 0x80,                                // QR RD | RA, rcode low bits 0
          0x00, 0x01,                                // QDCOUNT 1
          0x00, 0x00, 0x00, 0x00,                    // AN NS 0
          0x00, 0x01,                                // ARCOUNT 1
      },
      Bytes(kQueryA.begin() + 12, kQueryA.end()),    // the question
      {
          0x00,                                      // OPT owner root
          0x00, 0x29,                                // TYPE OPT
          0x04, 0xD0,                                // our UDP size 1232
          0x01, 0x00, 0x80, 0x00,                    // ext-rcode 1 (16 >> 4), version 0, DO
          0x00, 0x00,                                // RDLENGTH 0
      },
  });
  CHECK(reply == expected);
}

// --- make_synthetic / make_upstream_query --------------------------------------------------------

TEST_CASE("dns_wire: make_synthetic NXDOMAIN with SOA and EDE, every octet") {
  const Bytes packet = query_with_opt(opt(4096, 0x00008000));  // DO
  dns::Query q = parsed(packet);
  const dns::Synthetic s{.rcode = dns::rcode::NXDomain, .negative_soa = true, .negative_ttl = 10,
                         .ede_code = dns::ede::Blocked, .ede_text = "blocked"};
  const Bytes out = dns::make_synthetic(q, packet, s);
  const Bytes expected = cat({
      {
          0x12, 0x34,                                // ID
          0x81, 0x83,                                // QR RD | RA NXDOMAIN
          0x00, 0x01,                                // QDCOUNT 1
          0x00, 0x00,                                // ANCOUNT 0
          0x00, 0x01,                                // NSCOUNT 1
          0x00, 0x01,                                // ARCOUNT 1
      },
      Bytes(kQueryA.begin() + 12, kQueryA.end()),    // the question, verbatim
      {
          0x00,                                      // SOA owner root
          0x00, 0x06,                                // TYPE SOA
          0x00, 0x01,                                // CLASS IN
          0x00, 0x00, 0x00, 0x0A,                    // TTL 10
          0x00, 0x34,                                // RDLENGTH 52
          4, 'd', 'n', 's', 'd', 6, 'e', 'g', 'r', 'e', 's', 's', 0,  // MNAME
          10, 'h', 'o', 's', 't', 'm', 'a', 's', 't', 'e', 'r',
          6, 'e', 'g', 'r', 'e', 's', 's', 0,        // RNAME
          0x00, 0x00, 0x00, 0x01,                    // SERIAL 1
          0x00, 0x00, 0x0E, 0x10,                    // REFRESH 3600
          0x00, 0x00, 0x02, 0x58,                    // RETRY 600
          0x00, 0x01, 0x51, 0x80,                    // EXPIRE 86400
          0x00, 0x00, 0x00, 0x0A,                    // MINIMUM 10
      },
      {
          0x00,                                      // OPT owner root
          0x00, 0x29,                                // TYPE OPT
          0x04, 0xD0,                                // UDP size 1232
          0x00, 0x00, 0x80, 0x00,                    // ext-rcode 0, version 0, DO echoed
          0x00, 0x0D,                                // RDLENGTH 13
          0x00, 0x0F,                                // OPTION-CODE 15 (EDE)
          0x00, 0x09,                                // OPTION-LENGTH 9: code + text
          0x00, 0x0F,                                // INFO-CODE 15 (Blocked)
          'b', 'l', 'o', 'c', 'k', 'e', 'd',         // EXTRA-TEXT
      },
  });
  CHECK(out == expected);
}

TEST_CASE("dns_wire: make_synthetic without EDNS has no OPT and ignores the EDE") {
  Bytes packet = kQueryA;
  packet[kFlags + 1] = 0x10;                                  // CD
  dns::Query q = parsed(packet);
  const Bytes out = dns::make_synthetic(
      q, packet, {.rcode = dns::rcode::Refused, .ede_code = dns::ede::Prohibited, .ede_text = "x"});
  REQUIRE(out.size() == 28);
  CHECK(be16(out, kFlags) == 0x8195);                         // QR RD | RA CD REFUSED
  CHECK(be16(out, kNs) == 0);
  CHECK(be16(out, kAr) == 0);
  CHECK(Bytes(out.begin() + 12, out.end()) == Bytes(kQueryA.begin() + 12, kQueryA.end()));
}

TEST_CASE("dns_wire: make_synthetic cuts a long EDE text to stay within 512 octets") {
  const Bytes packet = query_with_opt(opt(4096, 0));
  dns::Query q = parsed(packet);
  std::string text(600, 'x');
  // 28 octets of header and question, 17 of OPT and EDE header: 467 octets of text would fit,
  // but a two-octet character starts at 466.
  text[466] = '\xC3';
  text[467] = '\xA9';
  const Bytes out = dns::make_synthetic(
      q, packet, {.rcode = dns::rcode::NXDomain, .ede_code = dns::ede::Blocked, .ede_text = text});
  CHECK(out.size() == 511);
  CHECK(out.back() == 'x');  // never half a character
  // Still a well-formed message for the question.
  CHECK(dns::prepare_answer(out, q).answer.has_value());
}

TEST_CASE("dns_wire: make_upstream_query lowercases the name and copies CD and DO") {
  Bytes packet = kClientMixedCase;
  packet[kFlags + 1] = 0x10;                                  // CD
  dns::Query q = parsed(packet);
  const Bytes out = dns::make_upstream_query(q);
  const Bytes expected = {
      0x00, 0x00,                                    // ID 0
      0x01, 0x30,                                    // RD | AD CD
      0x00, 0x01,                                    // QDCOUNT 1
      0x00, 0x00, 0x00, 0x00,                        // AN NS 0
      0x00, 0x01,                                    // ARCOUNT 1
      6, 'g', 'i', 't', 'h', 'u', 'b', 3, 'c', 'o', 'm', 0,  // QNAME lowercased
      0x00, 0x01,                                    // QTYPE A
      0x00, 0x01,                                    // QCLASS IN
      0x00,                                          // OPT owner root
      0x00, 0x29,                                    // TYPE OPT
      0x04, 0xD0,                                    // UDP size 1232
      0x00, 0x00, 0x80, 0x00,                        // DO copied
      0x00, 0x00,                                    // RDLENGTH 0
  };
  CHECK(out == expected);
  dns::Query plain = parsed(kQueryA);
  const Bytes out2 = dns::make_upstream_query(plain);
  CHECK(be16(out2, kFlags) == 0x0120);                        // RD | AD, no CD
  CHECK(be32(out2, out2.size() - 6) == 0);                    // no DO
}

// --- prepare_answer ------------------------------------------------------------------------------

TEST_CASE("dns_wire: prepare_answer collects the CNAME chain's addresses and TTL offsets") {
  dns::Query q = parsed(kQueryA);
  dns::AnswerParse p = dns::prepare_answer(kChainAnswer, q);
  REQUIRE_MESSAGE(p.answer.has_value(), p.reason);
  const dns::PreparedAnswer& a = *p.answer;
  CHECK(a.ttl_offsets == std::vector<std::uint32_t>{34, 63, 79, 95});
  CHECK(a.min_ttl == 60);
  CHECK(a.rcode == dns::rcode::NoError);
  CHECK_FALSE(a.truncated);
  REQUIRE(a.addresses.size() == 3);
  CHECK(a.addresses[0].family == 4);
  CHECK(a.addresses[0].ttl == 60);
  CHECK(Bytes(a.addresses[0].bytes.begin(), a.addresses[0].bytes.begin() + 4) ==
        Bytes{192, 0, 2, 1});
  CHECK(a.addresses[1].ttl == 90);
  CHECK(a.addresses[1].bytes[3] == 2);
  CHECK(a.addresses[2].family == 6);
  CHECK(a.addresses[2].ttl == 120);
  CHECK(a.addresses[2].bytes[0] == 0x20);
  CHECK(a.addresses[2].bytes[15] == 0x01);
  // The OPT is gone and ARCOUNT says so; ID 0, AA cleared, RA kept.
  CHECK(a.wire.size() == kChainOpt);
  CHECK(Bytes(a.wire.begin() + 12, a.wire.end()) ==
        Bytes(kChainAnswer.begin() + 12, kChainAnswer.begin() + kChainOpt));
  CHECK(be16(a.wire, kId) == 0);
  CHECK(be16(a.wire, kFlags) == 0x81A0);                      // QR RD | RA AD
  CHECK(be16(a.wire, kAn) == 4);
  CHECK(be16(a.wire, kAr) == 0);
}

TEST_CASE("dns_wire: prepare_answer sets RA and keeps an OPT-less ARCOUNT") {
  Bytes no_opt(kChainAnswer.begin(), kChainAnswer.begin() + kChainOpt);
  set16(no_opt, kAr, 0);
  no_opt[kFlags + 1] = 0x00;                                  // no RA
  dns::AnswerParse p = dns::prepare_answer(no_opt, parsed(kQueryA));
  REQUIRE(p.answer);
  CHECK(p.answer->wire.size() == kChainOpt);
  CHECK(be16(p.answer->wire, kFlags) == 0x8180);
  CHECK(be16(p.answer->wire, kAr) == 0);
}

TEST_CASE("dns_wire: prepare_answer caches a negative answer for min of SOA TTL and MINIMUM") {
  dns::Query q = parsed(kQueryA);
  dns::AnswerParse p = dns::prepare_answer(kNxAnswer, q);
  REQUIRE_MESSAGE(p.answer.has_value(), p.reason);
  CHECK(p.answer->rcode == dns::rcode::NXDomain);
  CHECK(p.answer->min_ttl == 300);                            // MINIMUM below the TTL
  CHECK(p.answer->addresses.empty());
  CHECK(p.answer->ttl_offsets == std::vector<std::uint32_t>{34});

  Bytes low_ttl = kNxAnswer;
  set16(low_ttl, 36, 100);                                    // SOA TTL 100 < MINIMUM 300
  CHECK(dns::prepare_answer(low_ttl, q).answer->min_ttl == 100);

  Bytes empty = kNxAnswer;                                    // no RR at all
  set16(empty, kNs, 0);
  empty.resize(28);
  CHECK(dns::prepare_answer(empty, q).answer->min_ttl == 0);
}

TEST_CASE("dns_wire: prepare_answer refuses an answer to another question") {
  dns::Query q = parsed(kQueryA);
  REQUIRE(dns::prepare_answer(kChainAnswer, q).answer);

  Bytes other_name = kChainAnswer;
  other_name[15] = 'l';                                       // gilhub.com
  CHECK_FALSE(dns::prepare_answer(other_name, q).answer);

  Bytes other_type = kChainAnswer;
  set16(other_type, 24, dns::type::AAAA);
  CHECK_FALSE(dns::prepare_answer(other_type, q).answer);

  Bytes other_class = kChainAnswer;
  set16(other_class, 26, dns::qclass::CH);
  CHECK_FALSE(dns::prepare_answer(other_class, q).answer);

  Bytes upper = kChainAnswer;                                 // case differs: same question
  upper[13] = 'G';
  CHECK(dns::prepare_answer(upper, q).answer);
}

TEST_CASE("dns_wire: prepare_answer refuses non-responses and malformed messages") {
  dns::Query q = parsed(kQueryA);

  Bytes query = kChainAnswer;
  query[kFlags] &= 0x7F;                                      // QR=0
  CHECK_FALSE(dns::prepare_answer(query, q).answer);

  Bytes notify = kChainAnswer;
  notify[kFlags] = 0xA1;                                      // QR, opcode 4
  CHECK_FALSE(dns::prepare_answer(notify, q).answer);

  Bytes qd2 = kChainAnswer;
  set16(qd2, kQd, 2);
  CHECK_FALSE(dns::prepare_answer(qd2, q).answer);

  Bytes lying = kChainAnswer;                                 // counts claim a fifth answer
  set16(lying, kAn, 5);
  CHECK_FALSE(dns::prepare_answer(lying, q).answer);

  Bytes trailing = cat({kChainAnswer, Bytes{0x00}});
  CHECK_FALSE(dns::prepare_answer(trailing, q).answer);

  Bytes short_a = kChainAnswer;                               // A with RDLENGTH 3
  set16(short_a, 67, 3);
  short_a.erase(short_a.begin() + 72);
  CHECK_FALSE(dns::prepare_answer(short_a, q).answer);

  // The CNAME target's "net" (52..56) becomes a pointer: backward to "com" is fine, forward not.
  Bytes cname_ptr = kChainAnswer;
  set16(cname_ptr, 38, 14);                                   // RDLENGTH 17 -> 14
  cname_ptr.erase(cname_ptr.begin() + 54, cname_ptr.begin() + 57);
  cname_ptr[52] = 0xC0;
  cname_ptr[53] = 0x13;                                       // -> 19: cdn.example.com
  CHECK(dns::prepare_answer(cname_ptr, q).answer);
  cname_ptr[53] = 0x40;                                       // -> 64: forward
  CHECK_FALSE(dns::prepare_answer(cname_ptr, q).answer);

  Bytes too_many = kChainAnswer;
  set16(too_many, kAn, 600);
  CHECK(std::string(dns::prepare_answer(too_many, q).reason) == "too many records");

  Bytes ext_rcode = kChainAnswer;                             // BADCOOKIE-like ext-rcode
  ext_rcode[kChainOpt + 5] = 0x01;
  CHECK_FALSE(dns::prepare_answer(ext_rcode, q).answer);
}

TEST_CASE("dns_wire: prepare_answer refuses names made of TTL octets, which render rewrites") {
  dns::Query q = parsed(kQueryA);
  const Bytes header_and_question = {
      0x00, 0x01,                                    // ID
      0x81, 0x80,                                    // QR RD | RA
      0x00, 0x01,                                    // QDCOUNT 1
      0x00, 0x02,                                    // ANCOUNT 2
      0x00, 0x00, 0x00, 0x00,                        // NS AR 0
      6, 'g', 'i', 't', 'h', 'u', 'b', 3, 'c', 'o', 'm', 0,  // 12: QNAME github.com
      0x00, 0x01, 0x00, 0x01,                        // A IN
  };
  const Bytes first = {
      0xC0, 0x0C,                                    // 28: owner github.com
      0x00, 0x01, 0x00, 0x01,                        // A IN
      0x00, 0x00, 0x00, 0x00,                        // 34: TTL 0: octet 37 reads as a root
      0x00, 0x04, 192, 0, 2, 1,                      // RDLENGTH 4, address
  };
  const Bytes second_into_ttl = {
      0xC0, 0x25,                                    // 44: owner: pointer to 37, inside a TTL
      0x00, 0x01, 0x00, 0x01,                        // A IN
      0x00, 0x00, 0x00, 0x3C,                        // TTL 60
      0x00, 0x04, 192, 0, 2, 2,                      // RDLENGTH 4, address
  };
  const Bytes second_fine = {
      0xC0, 0x0C,                                    // 44: owner github.com
      0x00, 0x01, 0x00, 0x01,                        // A IN
      0x00, 0x00, 0x00, 0x3C,                        // TTL 60
      0x00, 0x04, 192, 0, 2, 2,                      // RDLENGTH 4, address
  };
  CHECK(dns::prepare_answer(cat({header_and_question, first, second_fine}), q).answer);
  CHECK_FALSE(dns::prepare_answer(cat({header_and_question, first, second_into_ttl}), q).answer);

  Bytes cname_own_ttl = cat({header_and_question, {
      0xC0, 0x0C,                                    // 28: owner github.com
      0x00, 0x05, 0x00, 0x01,                        // CNAME IN
      0x00, 0x00, 0x00, 0x00,                        // 34: TTL 0
      0x00, 0x02, 0xC0, 0x25,                        // RDLENGTH 2, target: pointer to 37
  }});
  set16(cname_own_ttl, kAn, 1);
  CHECK_FALSE(dns::prepare_answer(cname_own_ttl, q).answer);

  // A pointer back whose labels run on, past the pointer itself, into the record's own TTL:
  // that TTL is not yet known when the owner is read, so only "octets read through a pointer
  // lie before it" refuses it. (Found by fuzz_answer: the client's copy did not parse.)
  const Bytes opaque = {
      0xC0, 0x0C,                                    // 28: owner github.com
      0x00, 0x0A, 0x00, 0x01,                        // NULL IN: RDATA is anything
      0x00, 0x00, 0x00, 0x3C,                        // TTL 60
      0x00, 0x02, 0x0A, 'x',                         // RDLENGTH 2; 40: reads as a 10-octet label
  };
  const Bytes owner_runs_on = {
      0xC0, 0x28,                                    // 42: owner: pointer to 40, whose label
      0x00, 0x01, 0x00, 0x01,                        //     covers 41..50: this pointer, A IN,
      0x00, 0x00, 0x00, 0x00,                        // 48: and the TTL, whose last octet (51)
      0x00, 0x04, 192, 0, 2, 1,                      //     ends the name as a root
  };
  const Bytes runs_on = cat({header_and_question, opaque, owner_runs_on});
  CHECK(std::string(dns::prepare_answer(runs_on, q).reason) == "malformed or missing record");
  Bytes stays_before = runs_on;                      // the same pointer to "github.com" at 12
  stays_before[43] = 0x0C;
  CHECK(dns::prepare_answer(stays_before, q).answer);
}

TEST_CASE("dns_wire: prepare_answer refuses an OPT that is not last and a second OPT") {
  dns::Query q = parsed(kQueryA);
  const Bytes glue = {
      0xC0, 0x28,                                    // owner: pointer to 40
      0x00, 0x01,                                    // TYPE A
      0x00, 0x01,                                    // CLASS IN
      0x00, 0x00, 0x00, 0x3C,                        // TTL 60
      0x00, 0x04, 192, 0, 2, 9,                      // RDLENGTH 4, address
  };
  Bytes opt_first = cat({kChainAnswer, glue});                // OPT, then an A
  set16(opt_first, kAr, 2);
  CHECK(std::string(dns::prepare_answer(opt_first, q).reason) == "OPT is not the last record");

  Bytes opt_last = cat({Bytes(kChainAnswer.begin(), kChainAnswer.begin() + kChainOpt), glue,
                        Bytes(kChainAnswer.begin() + kChainOpt, kChainAnswer.end())});
  set16(opt_last, kAr, 2);
  dns::AnswerParse ok = dns::prepare_answer(opt_last, q);
  REQUIRE(ok.answer);
  CHECK(be16(ok.answer->wire, kAr) == 1);                     // the A stays, the OPT goes
  CHECK(ok.answer->wire.size() == kChainOpt + glue.size());
  CHECK(ok.answer->addresses.size() == 3);                    // additional: not collected
  CHECK(ok.answer->min_ttl == 60);

  Bytes two = cat({kChainAnswer, opt(1232, 0)});
  set16(two, kAr, 2);
  CHECK_FALSE(dns::prepare_answer(two, q).answer);

  Bytes in_answer = kChainAnswer;                             // the OPT counted as an answer
  set16(in_answer, kAn, 5);
  set16(in_answer, kAr, 0);
  CHECK_FALSE(dns::prepare_answer(in_answer, q).answer);
}

// --- render_answer -------------------------------------------------------------------------------

TEST_CASE("dns_wire: render_answer restores the client's ID and case and lowers TTLs") {
  const dns::PreparedAnswer a = *dns::prepare_answer(kChainAnswer, parsed(kQueryA)).answer;
  const dns::Query q = parsed(kClientMixedCase);
  Bytes out = {0xFF};  // cleared first
  dns::render_answer(a, q, kClientMixedCase, 10, 3600, 1232, out);
  REQUIRE(out.size() == kChainOpt + 11);
  CHECK(be16(out, kId) == 0xBEEF);
  CHECK(Bytes(out.begin() + 12, out.begin() + 28) ==
        Bytes(kClientMixedCase.begin() + 12, kClientMixedCase.begin() + 28));
  CHECK(be32(out, 34) == 290);
  CHECK(be32(out, 63) == 50);
  CHECK(be32(out, 79) == 80);
  CHECK(be32(out, 95) == 110);
  CHECK(be16(out, kAn) == 4);
  CHECK(be16(out, kAr) == 1);                                 // our OPT
  // Records after the TTLs are untouched.
  CHECK(Bytes(out.begin() + 40, out.begin() + 57) ==
        Bytes(kChainAnswer.begin() + 40, kChainAnswer.begin() + 57));

  dns::render_answer(a, q, kClientMixedCase, 100, 3600, 1232, out);
  CHECK(be32(out, 34) == 200);
  CHECK(be32(out, 63) == 0);                                  // not below 0
  CHECK(be32(out, 95) == 20);

  dns::render_answer(a, q, kClientMixedCase, 0, 70, 1232, out);
  CHECK(be32(out, 34) == 70);                                 // capped
  CHECK(be32(out, 63) == 60);
  CHECK(be32(out, 95) == 70);
}

TEST_CASE("dns_wire: render_answer keeps AD only for clients that set AD or DO") {
  const dns::PreparedAnswer a = *dns::prepare_answer(kChainAnswer, parsed(kQueryA)).answer;
  REQUIRE((be16(a.wire, kFlags) & dns::flag::AD) != 0);
  Bytes out;

  const dns::Query plain = parsed(kQueryA);                   // RD only, no EDNS
  dns::render_answer(a, plain, kQueryA, 0, 3600, 512, out);
  CHECK(be16(out, kFlags) == 0x8180);                         // QR RD | RA: AD cleared

  Bytes ad_packet = kQueryA;
  ad_packet[kFlags + 1] = 0x20;                               // AD in the query
  dns::render_answer(a, parsed(ad_packet), ad_packet, 0, 3600, 512, out);
  CHECK(be16(out, kFlags) == 0x81A0);

  dns::render_answer(a, parsed(kClientMixedCase), kClientMixedCase, 0, 3600, 1232, out);  // DO
  CHECK(be16(out, kFlags) == 0x81A0);

  Bytes no_rd_cd = kQueryA;
  no_rd_cd[kFlags] = 0x00;                                    // no RD
  no_rd_cd[kFlags + 1] = 0x10;                                // CD
  dns::render_answer(a, parsed(no_rd_cd), no_rd_cd, 0, 3600, 512, out);
  CHECK(be16(out, kFlags) == 0x8090);                         // QR | RA CD
}

TEST_CASE("dns_wire: render_answer adds an OPT only when the client sent EDNS") {
  const dns::PreparedAnswer a = *dns::prepare_answer(kChainAnswer, parsed(kQueryA)).answer;
  Bytes out;
  dns::render_answer(a, parsed(kQueryA), kQueryA, 0, 3600, 512, out);
  CHECK(out.size() == kChainOpt);
  CHECK(be16(out, kAr) == 0);

  dns::render_answer(a, parsed(kClientMixedCase), kClientMixedCase, 0, 3600, 1232, out);
  REQUIRE(out.size() == kChainOpt + 11);
  CHECK(be16(out, kAr) == 1);
  const Bytes opt_rr(out.begin() + kChainOpt, out.end());
  CHECK(opt_rr == opt(1232, 0x00008000));                     // DO echoed
}

TEST_CASE("dns_wire: render_answer truncates to header, question and OPT with TC=1") {
  const dns::PreparedAnswer a = *dns::prepare_answer(kChainAnswer, parsed(kQueryA)).answer;
  const dns::Query q = parsed(kClientMixedCase);
  Bytes out;
  dns::render_answer(a, q, kClientMixedCase, 0, 3600, kChainOpt + 11, out);  // fits exactly
  CHECK(out.size() == kChainOpt + 11);
  CHECK((be16(out, kFlags) & dns::flag::TC) == 0);

  dns::render_answer(a, q, kClientMixedCase, 0, 3600, kChainOpt + 10, out);  // one short
  const Bytes expected = cat({
      {
          0xBE, 0xEF,                                // the client's ID
          0x83, 0xA0,                                // QR TC RD | RA AD
          0x00, 0x01,                                // QDCOUNT 1
          0x00, 0x00, 0x00, 0x00,                    // AN NS 0
          0x00, 0x01,                                // ARCOUNT 1: our OPT
      },
      Bytes(kClientMixedCase.begin() + 12, kClientMixedCase.begin() + 28),
      opt(1232, 0x00008000),
  });
  CHECK(out == expected);

  dns::render_answer(a, parsed(kQueryA), kQueryA, 0, 3600, 64, out);  // no EDNS
  CHECK(out.size() == 28);
  CHECK(be16(out, kFlags) == 0x8380);
  CHECK(be16(out, kAr) == 0);
}

TEST_CASE("dns_wire: render_answer for another question writes a SERVFAIL") {
  const dns::PreparedAnswer a = *dns::prepare_answer(kChainAnswer, parsed(kQueryA)).answer;
  Bytes other = kQueryA;
  other[13] = 'x';                                            // xithub.com
  Bytes out;
  dns::render_answer(a, parsed(other), other, 0, 3600, 512, out);
  REQUIRE(out.size() == 28);
  CHECK(be16(out, kFlags) == 0x8182);                         // QR RD | RA SERVFAIL
  CHECK(be16(out, kAn) == 0);
  CHECK(Bytes(out.begin() + 12, out.end()) == Bytes(other.begin() + 12, other.end()));
}

TEST_CASE("dns_wire: a rendered answer is again a valid answer to the question") {
  const dns::PreparedAnswer a = *dns::prepare_answer(kNxAnswer, parsed(kQueryA)).answer;
  const dns::Query q = parsed(kClientMixedCase);
  Bytes out;
  dns::render_answer(a, q, kClientMixedCase, 5, 3600, 1232, out);
  dns::AnswerParse again = dns::prepare_answer(out, q);
  REQUIRE_MESSAGE(again.answer.has_value(), again.reason);
  CHECK(again.answer->rcode == dns::rcode::NXDomain);
  CHECK(again.answer->min_ttl == 300);                        // MINIMUM; the SOA TTL is 3595
  CHECK(be32(out, 34) == 3595);
}

// --- HTTPS / SVCB hints (RFC 9460) ----------------------------------------------------------------

namespace {

// kQueryA asking for another type.
Bytes query_for(std::uint16_t qtype) {
  Bytes q = kQueryA;
  set16(q, 24, qtype);
  return q;
}

// An upstream answer to github.com `rtype` IN holding one record of that type, owned by
// github.com, TTL 300, with `rdata`.
Bytes one_record_answer(std::uint16_t rtype, const Bytes& rdata) {
  Bytes out = {
      0x00, 0x09,                                    // ID
      0x81, 0x80,                                    // flags: QR RD | RA
      0x00, 0x01,                                    // QDCOUNT 1
      0x00, 0x01,                                    // ANCOUNT 1
      0x00, 0x00, 0x00, 0x00,                        // NS AR 0
      6, 'g', 'i', 't', 'h', 'u', 'b', 3, 'c', 'o', 'm', 0,  // 12: QNAME github.com
      0x00, 0x00,                                    // 24: QTYPE (set below)
      0x00, 0x01,                                    // 26: QCLASS IN
      0xC0, 0x0C,                                    // 28: owner github.com
      0x00, 0x00,                                    // 30: TYPE (set below)
      0x00, 0x01,                                    // 32: CLASS IN
      0x00, 0x00, 0x01, 0x2C,                        // 34: TTL 300
      0x00, 0x00,                                    // 38: RDLENGTH (set below)
  };
  set16(out, 24, rtype);
  set16(out, 30, rtype);
  set16(out, 38, static_cast<std::uint16_t>(rdata.size()));
  return cat({out, rdata});
}

struct WantAddress {
  std::uint8_t family;
  Bytes bytes;
  std::uint32_t ttl;
  std::uint16_t record;
};

void check_addresses(const std::vector<dns::Address>& got, const std::vector<WantAddress>& want) {
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < want.size(); ++i) {
    INFO("address " << i);
    CHECK(got[i].family == want[i].family);
    CHECK(Bytes(got[i].bytes.begin(), got[i].bytes.begin() + (want[i].family == 4 ? 4 : 16)) ==
          want[i].bytes);
    CHECK(got[i].ttl == want[i].ttl);
    CHECK(got[i].record == want[i].record);
  }
}

const Bytes kV6Doc1 = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01};

// github.com HTTPS: ServiceMode with alpn, ipv4hint (two) and ipv6hint (one); then an HTTPS with
// a TargetName and one ipv4hint; then, in the additional section, an A for that TargetName (glue:
// not collected). 136 octets.
const Bytes kHttpsAnswer = {
    0x00, 0x09,                                      // ID
    0x81, 0x80,                                      // flags: QR RD | RA
    0x00, 0x01,                                      // QDCOUNT 1
    0x00, 0x02,                                      // ANCOUNT 2
    0x00, 0x00,                                      // NSCOUNT 0
    0x00, 0x01,                                      // ARCOUNT 1
    6, 'g', 'i', 't', 'h', 'u', 'b', 3, 'c', 'o', 'm', 0,  // 12: QNAME github.com
    0x00, 0x41,                                      // 24: QTYPE HTTPS
    0x00, 0x01,                                      // 26: QCLASS IN
    // 28: record 0, github.com HTTPS 1 . alpn=h2 ipv4hint=192.0.2.1,192.0.2.2 ipv6hint=2001:db8::1
    0xC0, 0x0C,                                      // owner github.com
    0x00, 0x41,                                      // TYPE HTTPS
    0x00, 0x01,                                      // CLASS IN
    0x00, 0x00, 0x01, 0x2C,                          // 34: TTL 300
    0x00, 0x2A,                                      // 38: RDLENGTH 42
    0x00, 0x01,                                      // 40: SvcPriority 1 (ServiceMode)
    0x00,                                            // 42: TargetName "." (the owner)
    0x00, 0x01, 0x00, 0x03, 2, 'h', '2',             // 43: key 1 alpn, length 3, "h2"
    0x00, 0x04, 0x00, 0x08,                          // 50: key 4 ipv4hint, length 8
    192, 0, 2, 1, 192, 0, 2, 2,                      //     two addresses
    0x00, 0x06, 0x00, 0x10,                          // 62: key 6 ipv6hint, length 16
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,  // one address
    // 82: record 1, github.com HTTPS 2 svc.github.com ipv4hint=198.51.100.7
    0xC0, 0x0C,                                      // owner github.com
    0x00, 0x41,                                      // TYPE HTTPS
    0x00, 0x01,                                      // CLASS IN
    0x00, 0x00, 0x00, 0x3C,                          // 88: TTL 60
    0x00, 0x1A,                                      // 92: RDLENGTH 26
    0x00, 0x02,                                      // 94: SvcPriority 2
    3, 's', 'v', 'c', 6, 'g', 'i', 't', 'h', 'u', 'b', 3, 'c', 'o', 'm', 0,  // 96: TargetName
    0x00, 0x04, 0x00, 0x04, 198, 51, 100, 7,         // 112: ipv4hint, length 4, one address
    // 120: record 2 (additional), svc.github.com A 198.51.100.7
    0xC0, 0x60,                                      // owner: pointer to 96, the TargetName
    0x00, 0x01,                                      // TYPE A
    0x00, 0x01,                                      // CLASS IN
    0x00, 0x00, 0x00, 0x1E,                          // 126: TTL 30
    0x00, 0x04, 198, 51, 100, 7,                     // RDLENGTH 4, address
};

}  // namespace

TEST_CASE("dns_wire: prepare_answer collects HTTPS ipv4hint and ipv6hint with record numbers") {
  const dns::Query q = parsed(query_for(dns::type::HTTPS));
  const dns::AnswerParse p = dns::prepare_answer(kHttpsAnswer, q);
  REQUIRE_MESSAGE(p.answer.has_value(), p.reason);
  const dns::PreparedAnswer& a = *p.answer;
  CHECK(a.ttl_offsets == std::vector<std::uint32_t>{34, 88, 126});
  check_addresses(a.addresses, {{4, {192, 0, 2, 1}, 300, 0},
                                {4, {192, 0, 2, 2}, 300, 0},
                                {6, kV6Doc1, 300, 0},
                                {4, {198, 51, 100, 7}, 60, 1}});  // the glue A is not collected
  CHECK_FALSE(a.addresses_capped);
  CHECK(a.capped_records.empty());
  CHECK(a.min_ttl == 60);

  // The same RDATA as SVCB (64), with the question asking for SVCB.
  Bytes svcb = kHttpsAnswer;
  for (std::size_t at : {24, 30, 84}) set16(svcb, at, dns::type::SVCB);
  const dns::AnswerParse ps = dns::prepare_answer(svcb, parsed(query_for(dns::type::SVCB)));
  REQUIRE_MESSAGE(ps.answer.has_value(), ps.reason);
  CHECK(ps.answer->addresses.size() == 4);

  // Class CH: the layout is IN's only (RFC 9460 §6), so nothing is collected.
  Bytes chaos = kHttpsAnswer;
  set16(chaos, 32, dns::qclass::CH);
  const dns::AnswerParse pc = dns::prepare_answer(chaos, q);
  REQUIRE_MESSAGE(pc.answer.has_value(), pc.reason);
  check_addresses(pc.answer->addresses, {{4, {198, 51, 100, 7}, 60, 1}});
}

TEST_CASE("dns_wire: SVCB AliasMode yields no address, even with hints present") {
  const dns::Query q = parsed(query_for(dns::type::SVCB));
  const Bytes alias = {
      0x00, 0x00,                                    // SvcPriority 0 (AliasMode)
      3, 's', 'v', 'c', 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'n', 'e', 't', 0,  // TargetName
  };
  const dns::AnswerParse p = dns::prepare_answer(one_record_answer(dns::type::SVCB, alias), q);
  REQUIRE_MESSAGE(p.answer.has_value(), p.reason);
  CHECK(p.answer->addresses.empty());
  CHECK(p.answer->ttl_offsets == std::vector<std::uint32_t>{34});

  // RFC 9460 §2.4.2: recipients MUST ignore SvcParams in AliasMode, so hints are not collected
  // (and a length that would be malformed in ServiceMode is not judged).
  const Bytes alias_hints = cat({alias, {
      0x00, 0x04, 0x00, 0x05, 1, 2, 3, 4, 5,         // ipv4hint, length 5
  }});
  const dns::AnswerParse ph =
      dns::prepare_answer(one_record_answer(dns::type::SVCB, alias_hints), q);
  REQUIRE_MESSAGE(ph.answer.has_value(), ph.reason);
  CHECK(ph.answer->addresses.empty());
}

TEST_CASE("dns_wire: prepare_answer refuses malformed HTTPS RDATA") {
  const dns::Query q = parsed(query_for(dns::type::HTTPS));
  const auto refused = [&q](const Bytes& rdata) {
    const dns::AnswerParse p = dns::prepare_answer(one_record_answer(dns::type::HTTPS, rdata), q);
    return !p.answer && std::string(p.reason) == "malformed RDATA";
  };
  const Bytes good = {
      0x00, 0x01,                                    // SvcPriority 1
      0x00,                                          // TargetName "."
      0x00, 0x04, 0x00, 0x04, 192, 0, 2, 1,          // ipv4hint, length 4
      0x00, 0x06, 0x00, 0x10,                        // ipv6hint, length 16
      0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
  };
  CHECK_FALSE(refused(good));

  CHECK(refused({
      0x00, 0x01,                                    // SvcPriority 1
      0x00,                                          // TargetName "."
      0x00, 0x06, 0x00, 0x10,                        // ipv6hint first
      0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
      0x00, 0x04, 0x00, 0x04, 192, 0, 2, 1,          // then ipv4hint: keys decrease
  }));
  CHECK(refused({
      0x00, 0x01,                                    // SvcPriority 1
      0x00,                                          // TargetName "."
      0x00, 0x04, 0x00, 0x04, 192, 0, 2, 1,          // ipv4hint
      0x00, 0x04, 0x00, 0x04, 192, 0, 2, 2,          // ipv4hint again: not strictly increasing
  }));
  CHECK(refused({
      0x00, 0x01,                                    // SvcPriority 1
      0x00,                                          // TargetName "."
      0x00, 0x04, 0x00, 0x05, 192, 0, 2, 1, 7,       // ipv4hint, length 5
  }));
  CHECK(refused({
      0x00, 0x01,                                    // SvcPriority 1
      0x00,                                          // TargetName "."
      0x00, 0x04, 0x00, 0x00,                        // ipv4hint, length 0: no address
  }));
  CHECK(refused({
      0x00, 0x01,                                    // SvcPriority 1
      0x00,                                          // TargetName "."
      0x00, 0x06, 0x00, 0x04, 192, 0, 2, 1,          // ipv6hint, length 4
  }));
  CHECK(refused({
      0x00, 0x01,                                    // SvcPriority 1
      0x00,                                          // TargetName "."
      0x00, 0x04, 0x00, 0x08, 192, 0, 2, 1,          // ipv4hint says 8 octets, RDATA ends at 4
  }));
  CHECK(refused({
      0x00, 0x01,                                    // SvcPriority 1
      0x00,                                          // TargetName "."
      0x00, 0x04, 0x00, 0x04, 192, 0, 2, 1,          // ipv4hint
      0x00,                                          // half a key
  }));
  CHECK(refused({
      0x00, 0x01,                                    // SvcPriority 1
      0xC0, 0x0C,                                    // TargetName compressed (RFC 9460 §2.2: MUST NOT)
  }));
  CHECK(refused({
      0x00, 0x01,                                    // SvcPriority 1
      3, 's', 'v', 'c',                              // TargetName without its root label
  }));
  CHECK(refused({0x00}));                            // half a SvcPriority
}

TEST_CASE("dns_wire: addresses stop at kMaxAddresses, whole records only, the rest listed") {
  static_assert(dns::kMaxAddresses == 256);
  const dns::Query q = parsed(query_for(dns::type::HTTPS));
  // record 0: HTTPS with 255 ipv4hints; record 1: HTTPS with 2 (would make 257); record 2: HTTPS
  // with 1 (would fit, but collection has stopped).
  const auto https = [](std::size_t hints) {
    Bytes rdata = {
        0x00, 0x01,                                  // SvcPriority 1
        0x00,                                        // TargetName "."
        0x00, 0x04,                                  // ipv4hint
        static_cast<std::uint8_t>(hints * 4 >> 8), static_cast<std::uint8_t>(hints * 4),  // length
    };
    for (std::size_t i = 0; i < hints; ++i) {
      rdata.insert(rdata.end(), {10, 0, static_cast<std::uint8_t>(i >> 8), static_cast<std::uint8_t>(i)});
    }
    Bytes rr = {
        0xC0, 0x0C,                                  // owner github.com
        0x00, 0x41, 0x00, 0x01,                      // HTTPS IN
        0x00, 0x00, 0x00, 0x3C,                      // TTL 60
        static_cast<std::uint8_t>(rdata.size() >> 8), static_cast<std::uint8_t>(rdata.size()),
    };
    return cat({rr, rdata});
  };
  Bytes msg = cat({Bytes(kHttpsAnswer.begin(), kHttpsAnswer.begin() + 28), https(255), https(2),
                   https(1)});
  set16(msg, kAn, 3);
  set16(msg, kAr, 0);
  const dns::AnswerParse p = dns::prepare_answer(msg, q);
  REQUIRE_MESSAGE(p.answer.has_value(), p.reason);
  const dns::PreparedAnswer& a = *p.answer;
  CHECK(a.addresses.size() == 255);
  CHECK(a.addresses.back().record == 0);
  CHECK(a.addresses_capped);
  CHECK(a.capped_records == std::vector<std::uint16_t>{1, 2});

  // Removing the records listed leaves an answer that is not capped.
  const auto kept = dns::remove_records(a, a.capped_records);
  REQUIRE(kept);
  CHECK(kept->addresses.size() == 255);
  CHECK_FALSE(kept->addresses_capped);
  CHECK(kept->capped_records.empty());
  CHECK(be16(kept->wire, kAn) == 1);

  // Removing the first instead: the next two now fit.
  const std::uint16_t first[] = {0};
  const auto rest = dns::remove_records(a, first);
  REQUIRE(rest);
  check_addresses(rest->addresses, {{4, {10, 0, 0, 0}, 60, 0},
                                    {4, {10, 0, 0, 1}, 60, 0},
                                    {4, {10, 0, 0, 0}, 60, 1}});
  CHECK_FALSE(rest->addresses_capped);
}

// --- remove_records ------------------------------------------------------------------------------

namespace {

// www.github.com A IN, RD, no EDNS: 32 octets.
const Bytes kQueryWww = {
    0x56, 0x78,                                      // ID
    0x01, 0x00,                                      // flags: RD
    0x00, 0x01,                                      // QDCOUNT 1
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00,              // AN NS AR 0
    3, 'w', 'w', 'w', 6, 'g', 'i', 't', 'h', 'u', 'b', 3, 'c', 'o', 'm', 0,  // 12: QNAME
    0x00, 0x01,                                      // 28: QTYPE A
    0x00, 0x01,                                      // 30: QCLASS IN
};

// An answer to www.github.com A in which later names point into records 0 and 1: record 1's
// owner a1.cdn.example.net is pointed at by record 2's owner, the SOA's MNAME, the MX's owner
// and exchange, and the SRV's target; the CNAME target cdn.example.net (record 0's RDATA) by
// record 3's owner, the SOA's owner and RNAME, the SRV's and NAPTR's owners. 246 octets.
const Bytes kPointerAnswer = {
    0x00, 0x11,                                      // ID
    0x81, 0x80,                                      // flags: QR RD | RA
    0x00, 0x01,                                      // QDCOUNT 1
    0x00, 0x04,                                      // ANCOUNT 4
    0x00, 0x01,                                      // NSCOUNT 1
    0x00, 0x03,                                      // ARCOUNT 3
    3, 'w', 'w', 'w', 6, 'g', 'i', 't', 'h', 'u', 'b', 3, 'c', 'o', 'm', 0,  // 12: QNAME
    0x00, 0x01,                                      // 28: QTYPE A
    0x00, 0x01,                                      // 30: QCLASS IN
    // 32: record 0, www.github.com CNAME cdn.example.net
    0xC0, 0x0C,                                      // owner: pointer to 12
    0x00, 0x05, 0x00, 0x01,                          // CNAME IN
    0x00, 0x00, 0x01, 0x2C,                          // 38: TTL 300
    0x00, 0x11,                                      // 42: RDLENGTH 17
    3, 'c', 'd', 'n',                                // 44: cdn
    7, 'e', 'x', 'a', 'm', 'p', 'l', 'e',            // 48: example
    3, 'n', 'e', 't', 0,                             // 56: net, root
    // 61: record 1, a1.cdn.example.net A 192.0.2.1
    2, 'a', '1', 0xC0, 0x2C,                         // owner: a1 + pointer to 44
    0x00, 0x01, 0x00, 0x01,                          // A IN
    0x00, 0x00, 0x00, 0x3C,                          // 70: TTL 60
    0x00, 0x04, 192, 0, 2, 1,                        // RDLENGTH 4, address
    // 80: record 2, a1.cdn.example.net A 192.0.2.2
    0xC0, 0x3D,                                      // owner: pointer to 61 (inside record 1)
    0x00, 0x01, 0x00, 0x01,                          // A IN
    0x00, 0x00, 0x00, 0x5A,                          // 86: TTL 90
    0x00, 0x04, 192, 0, 2, 2,                        // RDLENGTH 4, address
    // 96: record 3, cdn.example.net AAAA 2001:db8::1
    0xC0, 0x2C,                                      // owner: pointer to 44 (CNAME RDATA)
    0x00, 0x1C, 0x00, 0x01,                          // AAAA IN
    0x00, 0x00, 0x00, 0x78,                          // 102: TTL 120
    0x00, 0x10,                                      // RDLENGTH 16
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,  // address
    // 124: record 4 (authority), example.net SOA
    0xC0, 0x30,                                      // owner: pointer to 48
    0x00, 0x06, 0x00, 0x01,                          // SOA IN
    0x00, 0x00, 0x0E, 0x10,                          // 130: TTL 3600
    0x00, 0x20,                                      // 134: RDLENGTH 32
    2, 'n', 's', 0xC0, 0x3D,                         // 136: MNAME ns + pointer to 61
    4, 'h', 'o', 's', 't', 0xC0, 0x30,               // 141: RNAME host + pointer to 48
    0x00, 0x00, 0x00, 0x01,                          // 148: SERIAL 1
    0x00, 0x00, 0x1C, 0x20,                          // REFRESH 7200
    0x00, 0x00, 0x0E, 0x10,                          // RETRY 3600
    0x00, 0x12, 0x75, 0x00,                          // EXPIRE 1209600
    0x00, 0x00, 0x02, 0x58,                          // 164: MINIMUM 600
    // 168: record 5 (additional), a1.cdn.example.net MX 10 mx.a1.cdn.example.net
    0xC0, 0x3D,                                      // owner: pointer to 61
    0x00, 0x0F, 0x00, 0x01,                          // MX IN
    0x00, 0x00, 0x01, 0x2C,                          // 174: TTL 300
    0x00, 0x07,                                      // RDLENGTH 7
    0x00, 0x0A,                                      // 180: PREFERENCE 10
    2, 'm', 'x', 0xC0, 0x3D,                         // 182: EXCHANGE mx + pointer to 61
    // 187: record 6, _sip._tcp.cdn.example.net SRV 1 5 5060 a1.cdn.example.net
    4, '_', 's', 'i', 'p', 4, '_', 't', 'c', 'p', 0xC0, 0x2C,  // owner: ... + pointer to 44
    0x00, 0x21, 0x00, 0x01,                          // SRV IN
    0x00, 0x00, 0x01, 0x2C,                          // 203: TTL 300
    0x00, 0x08,                                      // RDLENGTH 8
    0x00, 0x01, 0x00, 0x05, 0x13, 0xC4,              // 209: priority 1, weight 5, port 5060
    0xC0, 0x3D,                                      // 215: target: pointer to 61 (RFC 2782
                                                     //      forbids it; RFC 3597 §4 accepts it)
    // 217: record 7, example.net NAPTR 100 10 "S" "SIP+D2U" "" _sip._tcp.cdn.example.net
    0xC0, 0x30,                                      // owner: pointer to 48
    0x00, 0x23, 0x00, 0x01,                          // NAPTR IN
    0x00, 0x00, 0x01, 0x2C,                          // 223: TTL 300
    0x00, 0x11,                                      // RDLENGTH 17
    0x00, 0x64, 0x00, 0x0A,                          // 229: ORDER 100, PREFERENCE 10
    1, 'S',                                          // FLAGS "S"
    7, 'S', 'I', 'P', '+', 'D', '2', 'U',            // SERVICES "SIP+D2U"
    0,                                               // REGEXP ""
    0xC0, 0xBB,                                      // REPLACEMENT: pointer to 187
};

// One RR as an independent walk with the plain Reader finds it.
struct WalkedRr {
  std::string owner;
  std::uint16_t type = 0;
  std::uint32_t ttl = 0;
  std::size_t rdata = 0;
  std::uint16_t rdlength = 0;
};

// Every RR of `msg` after its one question; REQUIREs that the counts and octets agree.
std::vector<WalkedRr> walk(const Bytes& msg) {
  dns::Reader r(msg);
  auto h = r.header();
  REQUIRE(h);
  REQUIRE(h->qdcount == 1);
  REQUIRE(r.name());
  REQUIRE(r.skip(4));
  std::vector<WalkedRr> out;
  for (int i = 0; i < h->ancount + h->nscount + h->arcount; ++i) {
    WalkedRr rr;
    auto owner = r.name();
    REQUIRE(owner);
    rr.owner = owner->to_text();
    rr.type = r.u16().value_or(0);
    REQUIRE(r.skip(2));
    rr.ttl = r.u32().value_or(0);
    rr.rdlength = r.u16().value_or(0);
    rr.rdata = r.pos();
    REQUIRE(r.skip(rr.rdlength));
    out.push_back(rr);
  }
  CHECK(r.remaining() == 0);
  return out;
}

std::string name_text(const Bytes& msg, std::size_t at) {
  dns::Reader r(msg, at);
  auto n = r.name();
  return n ? n->to_text() : "<malformed>";
}

}  // namespace

TEST_CASE("dns_wire: remove_records rewrites names that pointed into the removed record") {
  const dns::Query q = parsed(kQueryWww);
  const dns::AnswerParse p = dns::prepare_answer(kPointerAnswer, q);
  REQUIRE_MESSAGE(p.answer.has_value(), p.reason);
  const dns::PreparedAnswer& a = *p.answer;
  check_addresses(a.addresses, {{4, {192, 0, 2, 1}, 60, 1},
                                {4, {192, 0, 2, 2}, 90, 2},
                                {6, kV6Doc1, 120, 3}});
  CHECK(a.min_ttl == 60);

  const std::uint16_t remove[] = {1, 1, 99};         // a duplicate and an unknown number
  const auto b = dns::remove_records(a, remove);
  REQUIRE(b);
  CHECK(be16(b->wire, kAn) == 3);
  CHECK(be16(b->wire, kNs) == 1);
  CHECK(be16(b->wire, kAr) == 3);
  CHECK(be16(b->wire, kId) == 0);
  CHECK(be16(b->wire, kFlags) == be16(a.wire, kFlags));
  CHECK(Bytes(b->wire.begin() + 12, b->wire.begin() + 32) ==
        Bytes(a.wire.begin() + 12, a.wire.begin() + 32));  // the question as it was
  CHECK(b->rcode == a.rcode);
  CHECK(b->min_ttl == 90);                                    // the removed A had the lowest
  check_addresses(b->addresses, {{4, {192, 0, 2, 2}, 90, 1}, {6, kV6Doc1, 120, 2}});

  // An independent walk of the new message.
  const std::vector<WalkedRr> rrs = walk(b->wire);
  REQUIRE(rrs.size() == 7);
  const std::vector<std::string> owners = {
      "www.github.com.", "a1.cdn.example.net.", "cdn.example.net.", "example.net.",
      "a1.cdn.example.net.", "_sip._tcp.cdn.example.net.", "example.net."};
  const std::vector<std::uint16_t> types = {dns::type::CNAME, dns::type::A, dns::type::AAAA,
                                            dns::type::SOA, dns::type::MX, dns::type::SRV, 35};
  const std::vector<std::uint32_t> ttls = {300, 90, 120, 3600, 300, 300, 300};
  REQUIRE(b->ttl_offsets.size() == 7);
  for (std::size_t i = 0; i < rrs.size(); ++i) {
    INFO("record " << i);
    CHECK(rrs[i].owner == owners[i]);
    CHECK(rrs[i].type == types[i]);
    CHECK(rrs[i].ttl == ttls[i]);
    CHECK(be32(b->wire, b->ttl_offsets[i]) == ttls[i]);
  }
  CHECK(name_text(b->wire, rrs[0].rdata) == "cdn.example.net.");     // CNAME target
  dns::Reader soa(b->wire, rrs[3].rdata);
  CHECK(soa.name()->to_text() == "ns.a1.cdn.example.net.");         // MNAME
  CHECK(soa.name()->to_text() == "host.example.net.");              // RNAME
  CHECK(soa.u32() == 1u);                                           // SERIAL
  CHECK(soa.u32() == 7200u);                                        // REFRESH
  CHECK(soa.u32() == 3600u);                                        // RETRY
  CHECK(soa.u32() == 1209600u);                                     // EXPIRE
  CHECK(soa.u32() == 600u);                                         // MINIMUM
  CHECK(soa.pos() == rrs[3].rdata + rrs[3].rdlength);
  CHECK(be16(b->wire, rrs[4].rdata) == 10);                         // MX PREFERENCE
  CHECK(name_text(b->wire, rrs[4].rdata + 2) == "mx.a1.cdn.example.net.");
  // SRV and NAPTR names are written uncompressed (RFC 3597 §4: only RFC 1035 types compress).
  const Bytes a1 = {2, 'a', '1', 3, 'c', 'd', 'n', 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e',
                    3, 'n', 'e', 't', 0};
  CHECK(rrs[5].rdlength == 6 + a1.size());
  CHECK(Bytes(b->wire.begin() + static_cast<std::ptrdiff_t>(rrs[5].rdata),
              b->wire.begin() + static_cast<std::ptrdiff_t>(rrs[5].rdata + 6)) ==
        Bytes{0x00, 0x01, 0x00, 0x05, 0x13, 0xC4});                 // priority, weight, port
  CHECK(Bytes(b->wire.begin() + static_cast<std::ptrdiff_t>(rrs[5].rdata + 6),
              b->wire.begin() + static_cast<std::ptrdiff_t>(rrs[5].rdata + rrs[5].rdlength)) == a1);
  const std::size_t naptr = rrs[6].rdata;
  CHECK(Bytes(b->wire.begin() + static_cast<std::ptrdiff_t>(naptr),
              b->wire.begin() + static_cast<std::ptrdiff_t>(naptr + 15)) ==
        Bytes{0x00, 0x64, 0x00, 0x0A, 1, 'S', 7, 'S', 'I', 'P', '+', 'D', '2', 'U', 0});
  CHECK(name_text(b->wire, naptr + 15) == "_sip._tcp.cdn.example.net.");
  CHECK(rrs[6].rdlength == 15 + 27);                                // the name in full

  // prepare_answer accepts the new message as an answer to the same question, with the same
  // addresses, offsets and lifetime.
  const dns::AnswerParse again = dns::prepare_answer(b->wire, q);
  REQUIRE_MESSAGE(again.answer.has_value(), again.reason);
  CHECK(again.answer->ttl_offsets == b->ttl_offsets);
  CHECK(again.answer->min_ttl == b->min_ttl);
  check_addresses(again.answer->addresses, {{4, {192, 0, 2, 2}, 90, 1}, {6, kV6Doc1, 120, 2}});
}

TEST_CASE("dns_wire: remove_records of a CNAME whose RDATA other names point into") {
  const dns::Query q = parsed(kQueryWww);
  const dns::PreparedAnswer a = *dns::prepare_answer(kPointerAnswer, q).answer;
  const std::uint16_t remove[] = {0, 1, 4, 6};      // CNAME, an A, the SOA, the SRV
  const auto b = dns::remove_records(a, remove);
  REQUIRE(b);
  CHECK(be16(b->wire, kAn) == 2);
  CHECK(be16(b->wire, kNs) == 0);
  CHECK(be16(b->wire, kAr) == 2);
  const std::vector<WalkedRr> rrs = walk(b->wire);
  REQUIRE(rrs.size() == 4);
  CHECK(rrs[0].owner == "a1.cdn.example.net.");
  CHECK(rrs[1].owner == "cdn.example.net.");
  CHECK(rrs[2].owner == "a1.cdn.example.net.");
  CHECK(name_text(b->wire, rrs[2].rdata + 2) == "mx.a1.cdn.example.net.");
  CHECK(rrs[3].owner == "example.net.");
  CHECK(name_text(b->wire, rrs[3].rdata + 15) == "_sip._tcp.cdn.example.net.");
  CHECK(b->min_ttl == 90);
  check_addresses(b->addresses, {{4, {192, 0, 2, 2}, 90, 0}, {6, kV6Doc1, 120, 1}});
  const dns::AnswerParse again = dns::prepare_answer(b->wire, q);
  REQUIRE_MESSAGE(again.answer.has_value(), again.reason);
  check_addresses(again.answer->addresses, {{4, {192, 0, 2, 2}, 90, 0}, {6, kV6Doc1, 120, 1}});
}

TEST_CASE("dns_wire: remove_records compresses like the upstream did when it can") {
  // kChainAnswer without its second A: the same octets minus the record, ANCOUNT 3.
  const dns::PreparedAnswer a = *dns::prepare_answer(kChainAnswer, parsed(kQueryA)).answer;
  const std::uint16_t second_a[] = {2};
  const auto b = dns::remove_records(a, second_a);
  REQUIRE(b);
  Bytes expected = a.wire;
  expected.erase(expected.begin() + 73, expected.begin() + 89);
  set16(expected, kAn, 3);
  CHECK(b->wire == expected);
  CHECK(b->ttl_offsets == std::vector<std::uint32_t>{34, 63, 79});

  // Nothing removed: the message comes back as it was.
  const auto same = dns::remove_records(a, {});
  REQUIRE(same);
  CHECK(same->wire == a.wire);
  CHECK(same->ttl_offsets == a.ttl_offsets);
}

TEST_CASE("dns_wire: remove_records keeps pointer chains short when it shares suffixes") {
  // Twenty CNAMEs of github.com whose targets, written in full, each extend the previous one:
  // l1.com, l2.l1.com, … l20.….l1.com. Compressing each against the one before would chain 19
  // pointers; Reader follows at most 16, and the writer stays well below that.
  constexpr int kNames = 20;
  Bytes msg(kChainAnswer.begin(), kChainAnswer.begin() + 28);
  set16(msg, kAn, kNames);
  set16(msg, kAr, 0);
  Bytes target = {3, 'c', 'o', 'm', 0};
  std::vector<std::string> targets;
  for (int i = 1; i <= kNames; ++i) {
    const std::string label = "l" + std::to_string(i);
    Bytes longer = {static_cast<std::uint8_t>(label.size())};
    for (char c : label) longer.push_back(static_cast<std::uint8_t>(c));
    target = cat({longer, target});
    targets.push_back(name_text(cat({Bytes(12, 0), target}), 12));
    msg.insert(msg.end(), {
        0xC0, 0x0C,                                  // owner github.com
        0x00, 0x05, 0x00, 0x01,                      // CNAME IN
        0x00, 0x00, 0x00, 0x3C,                      // TTL 60
        0x00, static_cast<std::uint8_t>(target.size()),  // RDLENGTH
    });
    msg.insert(msg.end(), target.begin(), target.end());
  }
  const dns::Query q = parsed(kQueryA);
  const dns::PreparedAnswer a = *dns::prepare_answer(msg, q).answer;
  const auto b = dns::remove_records(a, {});
  REQUIRE(b);
  CHECK(b->wire.size() < a.wire.size());
  const std::vector<WalkedRr> rrs = walk(b->wire);
  REQUIRE(rrs.size() == kNames);
  for (std::size_t i = 0; i < kNames; ++i) CHECK(name_text(b->wire, rrs[i].rdata) == targets[i]);
  CHECK(dns::prepare_answer(b->wire, q).answer.has_value());
}

TEST_CASE("dns_wire: removing every address leaves a NODATA-shaped answer that renders") {
  const dns::Query q = parsed(kQueryA);
  const dns::PreparedAnswer a = *dns::prepare_answer(kChainAnswer, q).answer;
  std::vector<std::uint16_t> records;
  for (const dns::Address& addr : a.addresses) records.push_back(addr.record);
  const auto b = dns::remove_records(a, records);
  REQUIRE(b);
  CHECK(b->addresses.empty());
  CHECK(be16(b->wire, kAn) == 1);                             // the CNAME stays
  CHECK(b->min_ttl == 300);
  CHECK(b->wire.size() == 57);                                // header, question, the CNAME

  // A plain A answer without its A: no record at all, NOERROR.
  Bytes plain = cat({Bytes(kChainAnswer.begin(), kChainAnswer.begin() + 28), {
      0xC0, 0x0C,                                    // owner github.com
      0x00, 0x01, 0x00, 0x01,                        // A IN
      0x00, 0x00, 0x00, 0x3C,                        // TTL 60
      0x00, 0x04, 192, 0, 2, 9,                      // RDLENGTH 4, address
  }});
  set16(plain, kAn, 1);
  set16(plain, kAr, 0);
  const dns::PreparedAnswer one = *dns::prepare_answer(plain, q).answer;
  const std::uint16_t first[] = {0};
  const auto none = dns::remove_records(one, first);
  REQUIRE(none);
  CHECK(none->wire.size() == 28);
  CHECK(be16(none->wire, kAn) == 0);
  CHECK(none->rcode == dns::rcode::NoError);
  CHECK(none->ttl_offsets.empty());
  CHECK(none->min_ttl == 0);

  // Both render for a client: its ID and question, TTLs lowered, and parse again.
  const dns::Query client = parsed(kClientMixedCase);
  Bytes out;
  dns::render_answer(*b, client, kClientMixedCase, 10, 3600, 1232, out);
  REQUIRE(out.size() == 57 + 11);
  CHECK(be16(out, kId) == 0xBEEF);
  CHECK(Bytes(out.begin() + 12, out.begin() + 28) ==
        Bytes(kClientMixedCase.begin() + 12, kClientMixedCase.begin() + 28));
  CHECK(be32(out, 34) == 290);
  const dns::AnswerParse again = dns::prepare_answer(out, client);
  REQUIRE_MESSAGE(again.answer.has_value(), again.reason);
  CHECK(again.answer->addresses.empty());
  dns::render_answer(*none, client, kClientMixedCase, 0, 3600, 1232, out);
  CHECK(out.size() == 28 + 11);
  CHECK(be16(out, kAn) == 0);
  CHECK(dns::prepare_answer(out, client).answer.has_value());
}

TEST_CASE("dns_wire: remove_records of an HTTPS record removes all its hints") {
  const dns::Query q = parsed(query_for(dns::type::HTTPS));
  const dns::PreparedAnswer a = *dns::prepare_answer(kHttpsAnswer, q).answer;
  const std::uint16_t first[] = {0};
  const auto b = dns::remove_records(a, first);
  REQUIRE(b);
  check_addresses(b->addresses, {{4, {198, 51, 100, 7}, 60, 0}});
  const std::vector<WalkedRr> rrs = walk(b->wire);
  REQUIRE(rrs.size() == 2);
  CHECK(rrs[1].owner == "svc.github.com.");                   // pointed into the TargetName
  CHECK(rrs[1].type == dns::type::A);
  // The TargetName (RFC 9460 §2.2: never compressed) is copied with its RDATA as it was.
  CHECK(Bytes(b->wire.begin() + static_cast<std::ptrdiff_t>(rrs[0].rdata),
              b->wire.begin() + static_cast<std::ptrdiff_t>(rrs[0].rdata + rrs[0].rdlength)) ==
        Bytes(kHttpsAnswer.begin() + 94, kHttpsAnswer.begin() + 120));
}

TEST_CASE("dns_wire: remove_records refuses a message it cannot walk") {
  dns::PreparedAnswer broken = *dns::prepare_answer(kChainAnswer, parsed(kQueryA)).answer;
  broken.wire.resize(60);                                     // cut inside the CNAME target
  CHECK_FALSE(dns::remove_records(broken, {}).has_value());
  CHECK_FALSE(dns::remove_records(dns::PreparedAnswer{}, {}).has_value());
}

// --- udp_limit / type_name -----------------------------------------------------------------------

TEST_CASE("dns_wire: udp_limit clamps to 512 and our maximum") {
  dns::Query q;
  CHECK(dns::udp_limit(q, 1232) == 512);
  q.edns.present = true;
  q.edns.udp_size = 65535;
  CHECK(dns::udp_limit(q, 1232) == 1232);
  q.edns.udp_size = 512;
  CHECK(dns::udp_limit(q, 1232) == 512);
  q.edns.udp_size = 1400;
  CHECK(dns::udp_limit(q, 4096) == 1400);
}

TEST_CASE("dns_wire: type_name names common types and falls back to TYPEnnn") {
  CHECK(dns::type_name(dns::type::A) == "A");
  CHECK(dns::type_name(dns::type::AAAA) == "AAAA");
  CHECK(dns::type_name(dns::type::HTTPS) == "HTTPS");
  CHECK(dns::type_name(65534) == "TYPE65534");
  CHECK(dns::type_name(0) == "TYPE0");
}
