// DNS wire format: one bounded reader and the few writers dnsd needs (RFC 1035 §4, RFC 6891 EDNS,
// RFC 8914 Extended DNS Errors). c-ares 1.18 parses single record types but not whole messages.
//
// Contract: every function here takes untrusted bytes as a span and returns a result; none throws,
// asserts or reads outside the span on packet data.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace egress::dns {

// --- Limits (everything a peer controls is capped; see dns_wire.cpp for reasons) ---------------
inline constexpr std::size_t kHeaderSize = 12;
inline constexpr std::size_t kMaxNameWire = 255;    // RFC 1035 §2.3.4, wire octets incl. root
inline constexpr std::size_t kMaxLabel = 63;        // RFC 1035 §2.3.4
inline constexpr int kMaxPointerJumps = 16;         // a real name needs a few; a loop needs many
inline constexpr std::size_t kMaxRecords = 512;     // RRs walked in one upstream message
inline constexpr std::size_t kMaxAddresses = 256;   // addresses collected from one answer
inline constexpr std::uint16_t kOurUdpSize = 1232;  // DNS flag day 2020: no IP fragmentation

namespace type {
inline constexpr std::uint16_t A = 1, NS = 2, CNAME = 5, SOA = 6, PTR = 12, MX = 15, TXT = 16,
                               AAAA = 28, SRV = 33, OPT = 41, DS = 43, RRSIG = 46, SVCB = 64,
                               HTTPS = 65, TKEY = 249, TSIG = 250, IXFR = 251, AXFR = 252,
                               MAILB = 253, MAILA = 254, ANY = 255;
}
namespace qclass {
inline constexpr std::uint16_t IN = 1, CH = 3, ANY = 255;
}
namespace rcode {
inline constexpr std::uint8_t NoError = 0, FormErr = 1, ServFail = 2, NXDomain = 3, NotImp = 4,
                              Refused = 5;
inline constexpr std::uint16_t BadVers = 16;  // extended (RFC 6891 §6.1.3): upper 8 bits in OPT
}
namespace ede {  // RFC 8914 §4 info-codes
inline constexpr std::uint16_t Other = 0, Blocked = 15, Prohibited = 18, NotReady = 14,
                               NoReachableAuthority = 22, NetworkError = 23;
}

// Header flag bits (RFC 1035 §4.1.1, RFC 4035 §3.2 for AD/CD).
namespace flag {
inline constexpr std::uint16_t QR = 0x8000, AA = 0x0400, TC = 0x0200, RD = 0x0100, RA = 0x0080,
                               AD = 0x0020, CD = 0x0010;
}

struct Header {
  std::uint16_t id = 0, flags = 0, qdcount = 0, ancount = 0, nscount = 0, arcount = 0;

  bool qr() const { return flags & flag::QR; }
  std::uint8_t opcode() const { return static_cast<std::uint8_t>((flags >> 11) & 0xF); }
  std::uint8_t rcode() const { return static_cast<std::uint8_t>(flags & 0xF); }
  bool has(std::uint16_t f) const { return (flags & f) != 0; }
};

// A domain name in uncompressed wire form (length-prefixed labels, root octet included),
// case as received.
class Name {
 public:
  Name() = default;
  // Builds from presentation text ("github.com", "github.com.", "" or "." for the root).
  // Returns nothing for empty labels, labels over 63 octets or names over 255 wire octets.
  // Backslash escapes are not interpreted.
  static std::optional<Name> from_text(std::string_view text);

  std::span<const std::uint8_t> wire() const { return {bytes_.data(), len_}; }
  std::size_t labels() const;  // 0 for the root

  // "github.com" in lowercase, no trailing dot ("" for the root), when every label is made of
  // letters, digits, '-' and '_' only (the alphabet an allowlist entry can hold). Otherwise
  // nothing: such a name can never match an entry, and a dotted rendering of a label holding
  // '.' would be ambiguous (one label "a.b" must not read as two labels).
  std::optional<std::string> hostname() const;

  // Presentation form for logs and EDE text: trailing dot, "\." "\\" and "\DDD" escapes.
  std::string to_text() const;

  // Wire form with ASCII letters folded to lowercase (cache keys, upstream queries).
  Name lowercased() const;
  bool equals_ignore_case(const Name& other) const;

  // Used by Reader; appends one label. False if the name would exceed 255 octets.
  bool append_label(std::span<const std::uint8_t> label);
  // Appends the root label; after this the name is complete.
  bool finish();

 private:
  std::array<std::uint8_t, kMaxNameWire> bytes_{};
  std::size_t len_ = 0;
};

// The one bounded cursor over a message. Every read checks `n > remaining()` first.
class Reader {
 public:
  // A start beyond the end reads as the end, so remaining() never wraps.
  explicit Reader(std::span<const std::uint8_t> msg, std::size_t pos = 0)
      : msg_(msg), pos_(pos < msg.size() ? pos : msg.size()) {}

  std::optional<std::uint8_t> u8();
  std::optional<std::uint16_t> u16();
  std::optional<std::uint32_t> u32();
  std::optional<std::span<const std::uint8_t>> bytes(std::size_t n);
  bool skip(std::size_t n);
  std::optional<Header> header();
  // Reads a (possibly compressed, RFC 1035 §4.1.4) name at the cursor. Pointers must point
  // strictly backwards, never into the 12-octet header, and at most kMaxPointerJumps are
  // followed, so loops end. The cursor moves
  // past the name's bytes in place (up to and including the first pointer).
  std::optional<Name> name();

  std::size_t pos() const { return pos_; }
  std::size_t remaining() const { return msg_.size() - pos_; }
  std::span<const std::uint8_t> message() const { return msg_; }

 private:
  std::span<const std::uint8_t> msg_;
  std::size_t pos_;
};

// Appends big-endian fields to a byte vector.
class Writer {
 public:
  explicit Writer(std::vector<std::uint8_t>& out) : out_(out) {}
  void u8(std::uint8_t v) { out_.push_back(v); }
  void u16(std::uint16_t v);
  void u32(std::uint32_t v);
  void bytes(std::span<const std::uint8_t> b) { out_.insert(out_.end(), b.begin(), b.end()); }
  void header(const Header& h);
  std::size_t size() const { return out_.size(); }
  // Overwrites a 16-bit field already written (counts, RDLENGTH).
  void patch_u16(std::size_t offset, std::uint16_t v);

 private:
  std::vector<std::uint8_t>& out_;
};

// EDNS(0) as the client sent it (RFC 6891 §6.1.2, §6.1.3).
struct Edns {
  bool present = false;
  std::uint16_t udp_size = 512;  // the requestor's payload size as sent (values < 512 read as 512)
  std::uint8_t version = 0;
  bool do_bit = false;
};

// A validated query. `qname` keeps the client's case; the question occupies bytes
// [kHeaderSize, question_end) of the packet it was parsed from.
struct Query {
  Header header;
  Name qname;
  std::uint16_t qtype = 0;
  std::uint16_t qclass = 0;
  std::size_t question_end = 0;
  Edns edns;
};

// Why a packet is not a query we answer normally.
enum class QueryError {
  Drop,      // no reply at all: shorter than a header, or QR=1 (never answer a response)
  FormErr,   // malformed: reply FORMERR with the ID
  NotImp,    // opcode other than QUERY: reply NOTIMP
  BadVers,   // EDNS version > 0: reply BADVERS with an OPT (RFC 6891 §6.1.3)
};

struct QueryParse {
  std::optional<Query> query;     // set when the packet is a valid query
  QueryError error = QueryError::Drop;
  const char* reason = "";        // short static text for logs when !query
};

// Validates a query (design "query path" step 2): QR=0, opcode QUERY, exactly one question,
// no answer or authority records, additional section holding at most one OPT (owner root) and
// nothing else, no trailing bytes, qtype not a meta type (OPT, TSIG, TKEY, MAILA/B; AXFR and
// IXFR are refused by the caller).
QueryParse parse_query(std::span<const std::uint8_t> packet);

// Reply to a packet parse_query rejected with error != Drop: header (ID, opcode, RD copied,
// QR=1, the rcode), the question echoed when it could be read, an OPT only for BadVers.
// Returns empty when the packet is too short to carry an ID.
std::vector<std::uint8_t> make_error_reply(std::span<const std::uint8_t> packet, QueryError error);

// A reply dnsd makes itself, to a valid query.
struct Synthetic {
  std::uint8_t rcode = rcode::ServFail;
  // Adds an SOA to the authority section with TTL and MINIMUM = negative_ttl (RFC 2308 §3), so
  // the client caches the denial for that long. Owner ".", mname "dnsd.egress.", rname
  // "hostmaster.egress.".
  bool negative_soa = false;
  std::uint32_t negative_ttl = 10;
  // RFC 8914 option, sent only when the query had EDNS. The text is cut (on a UTF-8 character
  // boundary) so that the whole reply fits in 512 octets.
  std::optional<std::uint16_t> ede_code;
  std::string_view ede_text;
};

// Header (client ID, QR, RD and CD copied, RA=1), the client's question bytes verbatim, and an
// OPT (our UDP size, DO echoed, EDE) when the query had EDNS.
std::vector<std::uint8_t> make_synthetic(const Query& q, std::span<const std::uint8_t> packet,
                                         const Synthetic& s);

// A NOERROR reply dnsd writes itself with TXT records (the CHAOS reports): header as
// make_synthetic (client ID, RD and CD copied, QR=1, RA=1, AA=0), the client's question, one TXT
// RR per string (owner: a pointer to the question's name, the query's class, TTL 0, one
// <character-string> each; a string over 255 octets is cut on a UTF-8 character boundary, RFC
// 1035 §3.3.14), at most kMaxTxtRecords of them, and an OPT when the query had EDNS. No string:
// NODATA (NOERROR, empty answer). A reply over `limit` octets is header + question (+ OPT) with
// TC=1 instead (RFC 2181 §9): the client retries over TCP.
inline constexpr std::size_t kMaxTxtRecords = 256;
std::vector<std::uint8_t> make_txt_reply(const Query& q, std::span<const std::uint8_t> packet,
                                         std::span<const std::string> strings, std::size_t limit);

// The query dnsd sends upstream for q: ID 0 (c-ares sets its own), RD=1, AD=1 (RFC 6840 §5.7:
// report validation without DO), CD copied, the name in lowercase, an OPT with our UDP size and
// DO copied.
std::vector<std::uint8_t> make_upstream_query(const Query& q);

// An address from the answer section: the whole CNAME chain's A/AAAA records, and the
// ipv4hint/ipv6hint values of its HTTPS/SVCB records in ServiceMode (RFC 9460 §7.3).
struct Address {
  std::uint8_t family = 0;  // 4 or 6
  std::array<std::uint8_t, 16> bytes{};
  std::uint32_t ttl = 0;
  // The RR it came from, numbered like PreparedAnswer::ttl_offsets (ttl_offsets[record] is that
  // RR's TTL field). An HTTPS/SVCB record yields several addresses with the same number.
  std::uint16_t record = 0;
};

// An upstream answer checked against its question and normalised once, for the cache:
// header with ID 0, AA cleared, RA set; the question as the upstream wrote it (the client's bytes
// replace it at render time: the same name, so the same length and the same offsets); every RR
// kept byte for byte except the OPT, which is removed (it must be the last RR; RFC 6891 allows
// otherwise only after TSIG/SIG(0), which dnsd never requests).
struct PreparedAnswer {
  std::vector<std::uint8_t> wire;
  std::vector<std::uint32_t> ttl_offsets;  // the TTL field of each RR kept
  std::uint8_t rcode = 0;
  // How long the answer may be cached: the minimum TTL of the answer and authority RRs; for a
  // negative answer min(SOA TTL, SOA MINIMUM) (RFC 2308 §5); 0 when there is no RR at all.
  std::uint32_t min_ttl = 0;
  bool truncated = false;                  // TC=1 from upstream (not cacheable)
  // Every address of the answer section's A/AAAA (class IN) and ServiceMode HTTPS/SVCB records,
  // in message order, whole records only: at most kMaxAddresses. When the next record's
  // addresses would not fit, collection stops there and addresses_capped is set; that record and
  // every later address-holding one are listed in capped_records (ascending), so that the caller
  // can remove them (remove_records) rather than hand out addresses it did not install.
  std::vector<Address> addresses;
  bool addresses_capped = false;
  std::vector<std::uint16_t> capped_records;
};

struct AnswerParse {
  std::optional<PreparedAnswer> answer;
  const char* reason = "";  // why the answer was refused, for logs
};

// Accepts `upstream` only if it is a response (QR=1, opcode QUERY) to q's question: one question,
// same name ignoring case, same type and class (dnsdist's responseContentMatches). Every RR must
// be well formed (names, lengths, no trailing bytes); A must have 4 octets, AAAA 16; the RDATA of
// the types remove_records decompresses must match its layout exactly; HTTPS/SVCB of class IN
// must follow RFC 9460 §2.2 (ServiceMode hints a non-empty whole number of addresses).
AnswerParse prepare_answer(std::span<const std::uint8_t> upstream, const Query& q);

// `a` without the RRs numbered `records` (numbering as Address::record; duplicates and numbers
// beyond the last RR are ignored), each section's count lowered by the RRs it lost. Removing
// octets would break compression pointers into them, so the message is re-encoded: owner names,
// and the names inside the RDATA of the types RFC 3597 §4 lists (NS MD MF CNAME SOA MB MG MR PTR
// MINFO MX, and RP AFSDB RT PX NAPTR SRV DNAME), are decompressed and written again; only owner
// names and the RFC 1035 types' RDATA names are compressed, against names written before. Other
// RDATA is copied as is. The question, header flags, rcode and truncated stay; ttl_offsets,
// addresses (renumbered), capped_records and min_ttl are those of the new message, as
// prepare_answer would compute them: a capped record left in may now fit and be collected, so
// install the result's addresses. Removing a record removes all of its addresses (an HTTPS
// record's every hint). The result may be larger than `a` (render_answer truncates to its
// limit). Nothing only for a message it cannot walk, which prepare_answer never produces.
std::optional<PreparedAnswer> remove_records(const PreparedAnswer& a,
                                             std::span<const std::uint16_t> records);

// Writes the answer for one client into `out` (cleared first): the client's ID, question bytes,
// RD/CD bits; each TTL lowered by `age` seconds (not below 0) and capped at `ttl_cap`; AD kept
// only if the client set AD or DO; an OPT (our UDP size, DO echoed) when the client sent EDNS.
// If the result would exceed `limit` octets, writes header + question (+ OPT) with TC=1 instead
// (RFC 2181 §9). If `a` is not an answer to q's question (a caller's mistake: the client's
// question bytes would not fit its offsets), writes a SERVFAIL with q's question instead.
void render_answer(const PreparedAnswer& a, const Query& q, std::span<const std::uint8_t> packet,
                   std::uint32_t age, std::uint32_t ttl_cap, std::size_t limit,
                   std::vector<std::uint8_t>& out);

// The largest UDP reply a client accepts: 512 without EDNS, else its size clamped to
// [512, our_max].
std::size_t udp_limit(const Query& q, std::size_t our_max);

// Short name for a type ("A", "AAAA", "TYPE65534") for logs.
std::string type_name(std::uint16_t t);

}  // namespace egress::dns
