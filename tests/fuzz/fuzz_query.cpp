// Fuzz target: a client's packet through parse_query and every reply built from it.
// Invariants (a violation traps):
//  * a valid query's question lies inside the packet and its name is at most 255 octets;
//  * an error reply carries the packet's ID with QR=1; Drop gets no reply;
//  * make_synthetic's reply fits in 512 octets and prepare_answer accepts it as an answer to q;
//  * make_upstream_query's query parses back to the same question, lowercased, with DO kept;
//  * render_answer of a synthetic answer respects the size limit.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/dns_wire.h"

namespace dns = egress::dns;

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

std::uint16_t be16(const std::vector<std::uint8_t>& b, std::size_t at) {
  return static_cast<std::uint16_t>(b[at] << 8 | b[at + 1]);
}

void exercise_valid(const dns::Query& q, std::span<const std::uint8_t> packet) {
  check(q.question_end >= dns::kHeaderSize + 5 && q.question_end <= packet.size());
  check(q.qname.wire().size() >= 1 && q.qname.wire().size() <= dns::kMaxNameWire);
  check(q.header.opcode() == 0 && !q.header.qr());

  if (auto host = q.qname.hostname()) {
    for (char c : *host) check(!(c >= 'A' && c <= 'Z'));
    check(host->empty() || host->back() != '.');
  }
  const std::string text = q.qname.to_text();
  check(!text.empty() && text.back() == '.');

  const std::string ede_text = "egress policy: " + text + " not in allowlist";
  const dns::Synthetic denials[] = {
      {.rcode = dns::rcode::NXDomain, .negative_soa = true, .negative_ttl = 10,
       .ede_code = dns::ede::Blocked, .ede_text = ede_text},
      {.rcode = dns::rcode::Refused, .ede_code = dns::ede::Prohibited, .ede_text = "refused"},
      {.rcode = dns::rcode::ServFail, .ede_code = std::nullopt, .ede_text = {}},
  };
  std::vector<std::uint8_t> out;
  for (const dns::Synthetic& s : denials) {
    const std::vector<std::uint8_t> reply = dns::make_synthetic(q, packet, s);
    check(reply.size() <= 512);
    check(be16(reply, 0) == q.header.id);
    const dns::AnswerParse again = dns::prepare_answer(reply, q);
    check(again.answer.has_value());
    check(again.answer->rcode == s.rcode);
    check(again.answer->addresses.empty());
    if (s.negative_soa) check(again.answer->min_ttl == s.negative_ttl);

    for (std::size_t limit : {std::size_t{0}, std::size_t{64}, std::size_t{512}}) {
      dns::render_answer(*again.answer, q, packet, 3, 5, limit, out);
      check(out.size() >= dns::kHeaderSize && be16(out, 0) == q.header.id);
      const std::size_t minimal = q.question_end + (q.edns.present ? 11 : 0);
      if (limit >= minimal) check(out.size() <= limit);
    }
  }

  const std::vector<std::uint8_t> upstream = dns::make_upstream_query(q);
  const dns::QueryParse back = dns::parse_query(upstream);
  check(back.query.has_value());
  const dns::Name lower = q.qname.lowercased();
  check(back.query->qname.equals_ignore_case(q.qname));
  check(std::vector<std::uint8_t>(back.query->qname.wire().begin(),
                                  back.query->qname.wire().end()) ==
        std::vector<std::uint8_t>(lower.wire().begin(), lower.wire().end()));
  check(back.query->qtype == q.qtype && back.query->qclass == q.qclass);
  check(back.query->edns.present && back.query->edns.do_bit == q.edns.do_bit);
  check(back.query->header.has(dns::flag::CD) == q.header.has(dns::flag::CD));

  (void)dns::udp_limit(q, 1232);
  (void)dns::type_name(q.qtype);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> packet(data, size);
  const dns::QueryParse p = dns::parse_query(packet);
  if (p.query) {
    exercise_valid(*p.query, packet);
    return 0;
  }
  const std::vector<std::uint8_t> reply = dns::make_error_reply(packet, p.error);
  if (p.error == dns::QueryError::Drop) {
    check(reply.empty());
    return 0;
  }
  check(reply.size() >= dns::kHeaderSize && reply.size() <= size + 11);
  check(reply[0] == data[0] && reply[1] == data[1]);
  check((reply[2] & 0x80) != 0);  // QR
  return 0;
}
