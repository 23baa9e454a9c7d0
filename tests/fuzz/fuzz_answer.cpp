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
//  * remove_records, with the records the input picks (those whose TTL is odd, plus a duplicate
//    and an unknown number), with none, with the capped ones and with every address record:
//    always a result; each section's count lowered by what it lost; the kept records' TTLs in
//    place; prepare_answer accepts the result for the same question and finds exactly its
//    offsets, addresses and lifetime; the addresses are the original ones minus the removed
//    records' (renumbered), exactly so once no capped record is left; the result renders.
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

bool same_address(const dns::Address& x, const dns::Address& y) {
  return x.family == y.family && x.bytes == y.bytes && x.ttl == y.ttl && x.record == y.record;
}

bool same_addresses(std::span<const dns::Address> x, std::span<const dns::Address> y) {
  return x.size() == y.size() && std::equal(x.begin(), x.end(), y.begin(), same_address);
}

void check_remove(const dns::PreparedAnswer& a, const dns::Query& q,
                  std::span<const std::uint8_t> packet, std::span<const std::uint16_t> remove) {
  const auto b = dns::remove_records(a, remove);
  check(b.has_value());
  const std::size_t total = a.ttl_offsets.size();
  std::vector<bool> gone(total, false);
  for (std::uint16_t i : remove) {
    if (i < total) gone[i] = true;
  }
  // Each kept record's new number, and what each section lost.
  std::vector<std::uint16_t> renumbered(total, 0);
  std::size_t kept = 0;
  const std::size_t an = be16(a.wire, 6), ns = be16(a.wire, 8), ar = be16(a.wire, 10);
  check(an + ns + ar == total);
  std::size_t lost[3] = {0, 0, 0};
  for (std::size_t i = 0; i < total; ++i) {
    if (gone[i]) {
      ++lost[i < an ? 0 : i < an + ns ? 1 : 2];
    } else {
      renumbered[i] = static_cast<std::uint16_t>(kept++);
    }
  }
  check(be16(b->wire, 6) == an - lost[0] && be16(b->wire, 8) == ns - lost[1] &&
        be16(b->wire, 10) == ar - lost[2]);
  check(b->ttl_offsets.size() == kept);
  for (std::size_t i = 0; i < total; ++i) {
    if (!gone[i]) check(be32(b->wire, b->ttl_offsets[renumbered[i]]) == be32(a.wire, a.ttl_offsets[i]));
  }
  check(b->rcode == a.rcode && b->truncated == a.truncated);
  // ID and flags as they were, and the question.
  const auto question_end = static_cast<std::ptrdiff_t>(q.question_end);
  check(b->wire.size() >= q.question_end);
  check(std::equal(a.wire.begin(), a.wire.begin() + 4, b->wire.begin()));
  check(std::equal(a.wire.begin() + dns::kHeaderSize, a.wire.begin() + question_end,
                   b->wire.begin() + dns::kHeaderSize));

  // An independent walk: prepare_answer finds the same message.
  const dns::AnswerParse again = dns::prepare_answer(b->wire, q);
  check(again.answer.has_value());
  const dns::PreparedAnswer& c = *again.answer;
  check(c.wire == b->wire && c.ttl_offsets == b->ttl_offsets && c.min_ttl == b->min_ttl);
  check(c.addresses_capped == b->addresses_capped && c.capped_records == b->capped_records);
  check(same_addresses(c.addresses, b->addresses));

  // The original addresses minus the removed records', renumbered.
  std::vector<dns::Address> expected;
  for (const dns::Address& addr : a.addresses) {
    if (addr.record >= total || gone[addr.record]) continue;
    dns::Address moved = addr;
    moved.record = renumbered[addr.record];
    expected.push_back(moved);
  }
  const bool capped_left = std::any_of(a.capped_records.begin(), a.capped_records.end(),
                                       [&gone](std::uint16_t i) { return !gone[i]; });
  if (capped_left) {  // capped records may now fit, after the kept addresses
    check(b->addresses.size() >= expected.size());
    check(same_addresses(std::span(b->addresses).first(expected.size()), expected));
  } else {
    check(same_addresses(b->addresses, expected));
    check(!b->addresses_capped);
  }
  check_render(*b, q, packet);
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
  check(a.ttl_offsets.size() <= dns::kMaxRecords && a.addresses.size() <= dns::kMaxAddresses);
  std::uint16_t previous = 0;
  for (const dns::Address& addr : a.addresses) {
    check(addr.family == 4 || addr.family == 6);
    check(addr.ttl <= 0x7FFFFFFFu);
    check(addr.record < a.ttl_offsets.size() && addr.record >= previous);  // message order
    const std::uint32_t ttl = be32(a.wire, a.ttl_offsets[addr.record]);
    check(addr.ttl == (ttl > 0x7FFFFFFFu ? 0 : ttl));  // its record's TTL (RFC 2181 §8)
    previous = addr.record;
  }
  // Capped records come after every collected one, ascending, and only when capped.
  check(a.addresses_capped == !a.capped_records.empty());
  for (std::size_t i = 0; i < a.capped_records.size(); ++i) {
    check(a.capped_records[i] < a.ttl_offsets.size());
    check(i == 0 ? (a.addresses.empty() || a.capped_records[0] > a.addresses.back().record)
                 : a.capped_records[i] > a.capped_records[i - 1]);
  }

  check_render(a, q, packet);

  std::vector<std::uint16_t> odd_ttl;
  for (std::size_t i = 0; i < a.ttl_offsets.size(); ++i) {
    if (a.wire[a.ttl_offsets[i] + 3] & 1) odd_ttl.push_back(static_cast<std::uint16_t>(i));
  }
  if (!odd_ttl.empty()) odd_ttl.push_back(odd_ttl.front());  // a duplicate
  odd_ttl.push_back(0xFFFF);                                  // a number beyond the last RR
  check_remove(a, q, packet, odd_ttl);
  check_remove(a, q, packet, {});
  if (a.addresses_capped) check_remove(a, q, packet, a.capped_records);
  std::vector<std::uint16_t> address_records = a.capped_records;
  for (const dns::Address& addr : a.addresses) address_records.push_back(addr.record);
  if (!address_records.empty()) check_remove(a, q, packet, address_records);
  return 0;
}
