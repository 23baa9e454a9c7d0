// Fuzz target: an upstream answer through prepare_answer and render_answer.
//
// Input layout (scripts/make_fuzz_seeds.py writes seeds in it):
//   byte 0  the question's name, an index into kNames
//   byte 1  the question's type, an index into kTypes
//   byte 2  the client: bit0 EDNS, bit1 DO, bit2 CD, bit3 RD, bit4 AD, bits 6-7 its UDP size;
//           bit5 "splice": the target inserts the question's wire bytes after the answer's
//           12-octet header, so mutations explore the records rather than the question match
//   rest    the upstream message
// Invariants (a violation traps):
//  * an accepted answer: header present, every TTL offset inside the wire and after the question,
//    addresses of family 4 or 6;
//  * a render: the client's ID and question bytes, size within the limit whenever the limit holds
//    header + question + OPT, TTLs at most the cap, and the output is again an acceptable answer.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "common/dns_wire.h"

namespace dns = egress::dns;

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

constexpr std::string_view kNames[] = {
    "github.com", "GiThUb.CoM", "www.example.org", "a.b.c.d.example.net", ".",
    "xn--bcher-kva.example", "_dmarc.example.com",
    "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijk.example",  // 63-octet label
};
constexpr std::uint16_t kTypes[] = {dns::type::A,   dns::type::AAAA,  dns::type::CNAME,
                                    dns::type::TXT, dns::type::MX,    dns::type::SOA,
                                    dns::type::ANY, dns::type::HTTPS};
constexpr std::uint16_t kUdpSizes[] = {512, 1232, 4096, 100};

std::uint16_t be16(std::span<const std::uint8_t> b, std::size_t at) {
  return static_cast<std::uint16_t>(b[at] << 8 | b[at + 1]);
}

std::uint32_t be32(std::span<const std::uint8_t> b, std::size_t at) {
  return static_cast<std::uint32_t>(be16(b, at)) << 16 | be16(b, at + 2);
}

// The client's query packet for the selector bytes.
std::vector<std::uint8_t> client_packet(std::uint8_t name_i, std::uint8_t type_i,
                                        std::uint8_t bits) {
  const auto name = dns::Name::from_text(kNames[name_i % std::size(kNames)]);
  check(name.has_value());
  std::vector<std::uint8_t> out;
  dns::Writer w(out);
  const bool edns = bits & 0x01;
  dns::Header h;
  h.id = static_cast<std::uint16_t>(0x4000 | bits);
  h.flags = static_cast<std::uint16_t>(((bits & 0x08) ? dns::flag::RD : 0) |
                                       ((bits & 0x04) ? dns::flag::CD : 0) |
                                       ((bits & 0x10) ? dns::flag::AD : 0));
  h.qdcount = 1;
  h.arcount = edns ? 1 : 0;
  w.header(h);
  w.bytes(name->wire());
  w.u16(kTypes[type_i % std::size(kTypes)]);
  w.u16(dns::qclass::IN);
  if (edns) {
    w.u8(0);
    w.u16(dns::type::OPT);
    w.u16(kUdpSizes[bits >> 6]);
    w.u32((bits & 0x02) ? 0x8000u : 0u);
    w.u16(0);
  }
  return out;
}

void check_render(const dns::PreparedAnswer& a, const dns::Query& q,
                  std::span<const std::uint8_t> packet) {
  struct Case {
    std::uint32_t age, cap;
    std::size_t limit;
  };
  const Case cases[] = {{0, 0xFFFFFFFFu, 65535}, {1, 300, 512},   {10, 0, 1232},
                        {0xFFFFFFFFu, 5, 100},   {2, 86400, 12}, {0, 60, dns::udp_limit(q, 1232)}};
  const std::size_t minimal = q.question_end + (q.edns.present ? 11 : 0);
  std::vector<std::uint8_t> out;
  for (const Case& c : cases) {
    dns::render_answer(a, q, packet, c.age, c.cap, c.limit, out);
    check(out.size() >= q.question_end);
    check(be16(out, 0) == q.header.id);
    check(std::equal(packet.begin() + dns::kHeaderSize, packet.begin() + static_cast<std::ptrdiff_t>(q.question_end),
                     out.begin() + dns::kHeaderSize));
    if (c.limit >= minimal) check(out.size() <= c.limit);
    const bool truncated = (be16(out, 2) & dns::flag::TC) != 0 && be16(out, 6) == 0 &&
                           be16(out, 8) == 0;
    if (!truncated) {
      for (std::uint32_t off : a.ttl_offsets) check(be32(out, off) <= c.cap);
    }
    const dns::AnswerParse again = dns::prepare_answer(out, q);
    check(again.answer.has_value());
    check(again.answer->rcode == a.rcode);
    if (!truncated) check(again.answer->addresses.size() == a.addresses.size());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 3) return 0;
  const std::vector<std::uint8_t> packet = client_packet(data[0], data[1], data[2]);
  const dns::QueryParse parsed = dns::parse_query(packet);
  check(parsed.query.has_value());
  const dns::Query& q = *parsed.query;

  std::vector<std::uint8_t> upstream(data + 3, data + size);
  if ((data[2] & 0x20) && upstream.size() >= dns::kHeaderSize) {
    upstream.insert(upstream.begin() + dns::kHeaderSize, packet.begin() + dns::kHeaderSize,
                    packet.begin() + static_cast<std::ptrdiff_t>(q.question_end));
  }

  const dns::AnswerParse p = dns::prepare_answer(upstream, q);
  if (!p.answer) return 0;
  const dns::PreparedAnswer& a = *p.answer;
  check(a.wire.size() >= q.question_end && a.wire.size() <= upstream.size());
  check(be16(a.wire, 0) == 0);
  check((be16(a.wire, 2) & (dns::flag::QR | dns::flag::RA)) == (dns::flag::QR | dns::flag::RA));
  check((be16(a.wire, 2) & dns::flag::AA) == 0);
  for (std::uint32_t off : a.ttl_offsets) {
    check(off >= q.question_end && off + 4 <= a.wire.size());
  }
  for (const dns::Address& addr : a.addresses) {
    check(addr.family == 4 || addr.family == 6);
    check(addr.ttl <= 0x7FFFFFFFu);
  }
  check(a.addresses.size() <= a.ttl_offsets.size() && a.ttl_offsets.size() <= dns::kMaxRecords);

  check_render(a, q, packet);
  return 0;
}
