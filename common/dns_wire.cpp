// DNS wire format (RFC 1035 §4): the bounded reader, the writer and the few messages dnsd builds.
// Every read of packet bytes goes through Reader, which checks `n > remaining()` before it moves.
#include "common/dns_wire.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <map>
#include <string>
#include <type_traits>
#include <utility>

namespace egress::dns {

// --- Limits and why ------------------------------------------------------------------------------
// RFC 1035 §2.3.4: 63 octets a label, 255 a name; the six-bit label length cannot say more.
static_assert(kMaxLabel == 63 && kMaxNameWire == 255);
// A compressor points a name at a suffix written earlier; that suffix may end in a pointer of its
// own, so a chain of a few jumps is normal. Sixteen is far beyond that, and a loop still ends.
static_assert(kMaxPointerJumps > 0 && kMaxPointerJumps <= 64);
// The smallest RR is 11 octets, so a 64 KiB message could claim ~6000; real answers hold tens.
// The cap bounds the walk, ttl_offsets and the addresses handed to netlink.
static_assert(kMaxRecords >= 64 && kMaxRecords * 11 < 65536);
// Address::record and the record numbers remove_records takes are 16-bit.
static_assert(kMaxRecords <= 65536);
// Each address collected becomes a set element in one netlink batch (design step 7) and stays in
// the cached answer. Real answers hold tens; an HTTPS record a few hints. Without the cap, one
// record's 64 KiB of RDATA could carry 16383 ipv4hint addresses.
static_assert(kMaxAddresses >= 16 && kMaxAddresses <= 4096);
// RFC 6891 §6.2.5: values below 512 are treated as 512; ours must not be below it.
static_assert(kOurUdpSize >= 512);
// Reader::header() copies the 12 octets in one memcpy.
static_assert(sizeof(Header) == kHeaderSize && std::is_trivially_copyable_v<Header>);

namespace {

constexpr std::uint8_t kLabelTypeMask = 0xC0;  // RFC 1035 §4.1.4: top two bits of a length octet
constexpr std::uint8_t kLabelNormal = 0x00;
constexpr std::uint8_t kLabelPointer = 0xC0;   // 01 and 10 are reserved (RFC 6891 §5 retired 01)
constexpr std::uint16_t kOpcodeMask = 0x7800;
constexpr std::uint16_t kZ = 0x0040;           // RFC 1035 §4.1.1: must be zero
constexpr std::uint32_t kDoBit = 0x8000;       // RFC 3225 §3: in the OPT TTL field
constexpr std::uint16_t kEdeOption = 15;       // RFC 8914 §2: the EDE option code
// Synthetic replies are kept within the size every client accepts, so they never need TC=1.
constexpr std::size_t kSyntheticMax = 512;
constexpr std::size_t kOptFixedSize = 11;      // root owner, type, class, TTL, RDLENGTH
constexpr std::size_t kMinQuestion = 5;        // root name, QTYPE, QCLASS

std::uint8_t fold(std::uint8_t c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<std::uint8_t>(c - 'A' + 'a') : c;
}

// RFC 2181 §8: a TTL with its top bit set is read as zero.
std::uint32_t sane_ttl(std::uint32_t ttl) { return ttl > 0x7FFFFFFFu ? 0 : ttl; }

struct NameRead {
  Name name;
  std::size_t end = 0;  // the octet after the name's bytes in place (after the first pointer)
};

// RFC 1035 §4.1.4. A pointer must point strictly before itself, which no loop-free compressor
// violates, and never into the header, whose octets are not names (and change when dnsd rewrites
// the ID and flags of a cached answer). What is read through a pointer must also end before that
// pointer: a compressor points at a suffix it wrote earlier, never at labels that run on over
// the pointer into the octets after it (the rest of the record: its TTL, which read_name cannot
// check yet, or later records). Following at most kMaxPointerJumps ends every loop; the
// 255-octet cap is Name::append_label's. `visit(offset, length)` sees each run of octets read
// (length octet and label, or pointer) and refuses the name by returning false.
template <typename Visit>
std::optional<NameRead> walk_name(std::span<const std::uint8_t> msg, std::size_t pos, Visit visit) {
  NameRead out;
  Reader walk(msg, pos);
  std::optional<std::size_t> resume;
  std::size_t limit = msg.size();  // every octet read lies before this: the last pointer taken
  int jumps = 0;
  for (;;) {
    const std::size_t at = walk.pos();
    auto len = walk.u8();
    if (!len) return std::nullopt;
    const std::uint8_t kind = *len & kLabelTypeMask;
    if (kind == kLabelNormal) {
      if (1u + *len > limit - at || !visit(at, 1u + *len)) return std::nullopt;
      if (*len == 0) break;
      auto label = walk.bytes(*len);
      if (!label || !out.name.append_label(*label)) return std::nullopt;
    } else if (kind == kLabelPointer) {
      auto low = walk.u8();
      if (!low || 2 > limit - at || !visit(at, 2)) return std::nullopt;
      const std::size_t target = static_cast<std::size_t>(*len & ~kLabelTypeMask) << 8 | *low;
      if (target >= at || target < kHeaderSize || ++jumps > kMaxPointerJumps) return std::nullopt;
      if (!resume) resume = walk.pos();
      limit = at;
      walk = Reader(msg, target);
    } else {
      return std::nullopt;  // 01 (RFC 6891 §5: extended labels, retired) and 10: reserved
    }
  }
  if (!out.name.finish()) return std::nullopt;
  out.end = resume.value_or(walk.pos());
  return out;
}

// Reads a name at r's cursor, refusing one that reads any octet of the TTL fields at `ttls`
// (ascending offsets). render_answer rewrites TTLs, so a name made of TTL octets (only a crafted
// message points there) would change shape, or stop being a name, in the client's copy.
std::optional<Name> read_name(Reader& r, std::span<const std::uint32_t> ttls) {
  const auto outside_ttls = [ttls](std::size_t start, std::size_t length) {
    // The first TTL field that ends after `start` must begin at or after the run's end.
    const auto it = std::lower_bound(ttls.begin(), ttls.end(), start,
                                     [](std::uint32_t off, std::size_t s) { return off + 4u <= s; });
    return it == ttls.end() || *it >= start + length;
  };
  auto n = walk_name(r.message(), r.pos(), outside_ttls);
  if (!n || !r.skip(n->end - r.pos())) return std::nullopt;
  return n->name;
}

// One resource record as found in a message; offsets index that message.
struct Rr {
  Name owner;
  std::uint16_t type = 0;
  std::uint16_t rclass = 0;
  std::uint32_t ttl = 0;
  std::size_t start = 0;
  std::size_t ttl_offset = 0;
  std::size_t rdata_offset = 0;
  std::uint16_t rdlength = 0;
};

// RFC 1035 §4.1.3. The owner may not read the TTL fields at `ttls` (see read_name).
std::optional<Rr> read_rr(Reader& r, std::span<const std::uint32_t> ttls = {}) {
  Rr rr;
  rr.start = r.pos();
  auto owner = read_name(r, ttls);
  if (!owner) return std::nullopt;
  rr.owner = *owner;
  auto type = r.u16();
  auto rclass = r.u16();
  if (!type || !rclass) return std::nullopt;
  rr.ttl_offset = r.pos();
  auto ttl = r.u32();
  auto rdlength = r.u16();
  if (!ttl || !rdlength) return std::nullopt;
  rr.type = *type;
  rr.rclass = *rclass;
  rr.ttl = *ttl;
  rr.rdlength = *rdlength;
  rr.rdata_offset = r.pos();
  if (!r.skip(rr.rdlength)) return std::nullopt;
  return rr;
}

bool is_root(const Name& n) { return n.wire().size() == 1; }

// RFC 6891 §6.1.2: RDATA is a sequence of {OPTION-CODE, OPTION-LENGTH, OPTION-DATA}.
bool options_well_formed(std::span<const std::uint8_t> rdata) {
  Reader r(rdata);
  while (r.remaining() != 0) {
    auto code = r.u16();
    auto length = r.u16();
    if (!code || !length || !r.skip(*length)) return false;
  }
  return true;
}

// --- RDATA layouts ---
// RFC 3597 §4 lists the types whose RDATA holds names that may arrive compressed: those of
// RFC 1035, which may also be sent compressed, and RP, AFSDB, RT, PX, NAPTR, SRV and DNAME, which
// must be decompressed on receipt but are sent uncompressed. Their layouts live in this one
// table: prepare_answer checks RDATA against it and remove_records re-encodes by it, so every
// RDATA that remove_records rewrites has been checked the same way.
enum class Field : std::uint8_t { End, Name, U16, U32, CharString };

struct Layout {
  std::uint16_t type;
  bool compress;  // the names may be written compressed (RFC 3597 §4: RFC 1035 types only)
  std::array<Field, 7> fields;  // in order, up to the first End
};

namespace rr_type {  // those not in the header's `type` namespace
inline constexpr std::uint16_t MD = 3, MF = 4, MB = 7, MG = 8, MR = 9, MINFO = 14, RP = 17,
                               AFSDB = 18, RT = 21, PX = 26, NAPTR = 35, DNAME = 39;
}

using F = Field;
constexpr Layout kNameLayouts[] = {
    {type::NS, true, {F::Name}},                                                  // 1035 §3.3.11
    {rr_type::MD, true, {F::Name}},                                               // 1035 §3.3.4
    {rr_type::MF, true, {F::Name}},                                               // 1035 §3.3.5
    {type::CNAME, true, {F::Name}},                                               // 1035 §3.3.1
    {type::SOA, true, {F::Name, F::Name, F::U32, F::U32, F::U32, F::U32, F::U32}},  // §3.3.13
    {rr_type::MB, true, {F::Name}},                                               // 1035 §3.3.3
    {rr_type::MG, true, {F::Name}},                                               // 1035 §3.3.6
    {rr_type::MR, true, {F::Name}},                                               // 1035 §3.3.8
    {type::PTR, true, {F::Name}},                                                 // 1035 §3.3.12
    {rr_type::MINFO, true, {F::Name, F::Name}},                                   // 1035 §3.3.7
    {type::MX, true, {F::U16, F::Name}},                                          // 1035 §3.3.9
    {rr_type::RP, false, {F::Name, F::Name}},                                     // 1183 §2.2
    {rr_type::AFSDB, false, {F::U16, F::Name}},                                   // 1183 §1
    {rr_type::RT, false, {F::U16, F::Name}},                                      // 1183 §3.1
    {rr_type::PX, false, {F::U16, F::Name, F::Name}},                             // 2163 §4
    {type::SRV, false, {F::U16, F::U16, F::U16, F::Name}},                        // 2782
    {rr_type::NAPTR, false,
     {F::U16, F::U16, F::CharString, F::CharString, F::CharString, F::Name}},     // 3403 §4.1
    {rr_type::DNAME, false, {F::Name}},                                           // 6672 §2.1
};
static_assert(std::is_sorted(std::begin(kNameLayouts), std::end(kNameLayouts),
                             [](const Layout& x, const Layout& y) { return x.type < y.type; }),
              "kNameLayouts: one entry per type, ascending");

const Layout* name_layout(std::uint16_t t) {
  for (const Layout& l : kNameLayouts) {
    if (l.type == t) return &l;
  }
  return nullptr;
}

// Reads rr's RDATA along `layout`: on_name(Name) for each name, on_octets(span) with the octets
// of each other field. A name may point anywhere before itself (RFC 1035 §4.1.4) but not read
// the TTL fields at `ttls` (see read_name); its octets in place, like every field, lie inside the
// RDATA, which the fields fill exactly.
template <typename OnName, typename OnOctets>
bool walk_rdata(std::span<const std::uint8_t> msg, const Rr& rr, const Layout& layout,
                std::span<const std::uint32_t> ttls, OnName on_name, OnOctets on_octets) {
  const std::size_t end = rr.rdata_offset + rr.rdlength;  // read_rr checked it is inside msg
  Reader r(msg, rr.rdata_offset);
  for (const Field f : layout.fields) {
    if (f == Field::End) break;
    if (f == Field::Name) {
      auto n = read_name(r, ttls);
      if (!n || r.pos() > end) return false;
      on_name(*n);
      continue;
    }
    std::size_t size = f == Field::U16 ? 2 : 4;
    if (f == Field::CharString) {  // RFC 1035 §3.3: a length octet, then that many octets
      auto length = Reader(msg, r.pos()).u8();
      if (!length) return false;
      size = 1u + *length;
    }
    if (size > end - r.pos()) return false;
    auto octets = r.bytes(size);
    if (!octets) return false;
    on_octets(*octets);
  }
  return r.pos() == end;
}

// --- SVCB and HTTPS (RFC 9460) ---
constexpr std::uint16_t kSvcIpv4Hint = 4, kSvcIpv6Hint = 6;  // RFC 9460 §14.3.2

// A name that may not be compressed, such as TargetName (RFC 9460 §2.2): labels in place up to
// the root, at most 255 octets.
bool skip_uncompressed_name(Reader& r) {
  Name n;
  for (;;) {
    auto length = r.u8();
    if (!length || (*length & kLabelTypeMask) != kLabelNormal) return false;
    if (*length == 0) return n.finish();
    auto label = r.bytes(*length);
    if (!label || !n.append_label(*label)) return false;
  }
}

// RFC 9460 §2.2 RDATA: SvcPriority (u16), TargetName (uncompressed), then SvcParams up to the
// end, each SvcParamKey (u16), length (u16) and value; keys strictly increasing, or the RR is
// malformed. In ServiceMode (priority > 0) ipv4hint and ipv6hint are non-empty lists of 4- and
// 16-octet addresses (§7.3); on_address(family, octets) sees each one. In AliasMode recipients
// MUST ignore SvcParams (§2.4.2): only their framing is checked and no address is reported.
// Returns the number of addresses, or nothing when the RDATA is malformed.
template <typename OnAddress>
std::optional<std::size_t> read_svcb(std::span<const std::uint8_t> rdata, OnAddress on_address) {
  Reader r(rdata);
  auto priority = r.u16();
  if (!priority || !skip_uncompressed_name(r)) return std::nullopt;
  const bool service_mode = *priority != 0;
  std::optional<std::uint16_t> previous_key;
  std::size_t count = 0;
  while (r.remaining() != 0) {
    auto key = r.u16();
    auto length = key ? r.u16() : std::nullopt;
    auto value = length ? r.bytes(*length) : std::nullopt;
    if (!value || (previous_key && *key <= *previous_key)) return std::nullopt;
    previous_key = key;
    if (!service_mode || (*key != kSvcIpv4Hint && *key != kSvcIpv6Hint)) continue;
    const std::uint8_t family = *key == kSvcIpv4Hint ? 4 : 6;
    const std::size_t size = family == 4 ? 4 : 16;
    if (value->empty() || value->size() % size != 0) return std::nullopt;
    for (std::size_t at = 0; at < value->size(); at += size) {
      on_address(family, value->subspan(at, size));
    }
    count += value->size() / size;
  }
  return count;
}

// The RDATA layouts that hold names (kNameLayouts) are checked so a client never gets a broken
// name from us, and so remove_records can rewrite them. The A and AAAA layouts are defined for
// class IN only (RFC 1035 §3.4.1, RFC 3596 §2.2), as are SVCB and HTTPS (RFC 9460 §6:
// their relevant class is IN).
// Other types are opaque octets. Names may not read the TTL fields at `ttls`, the record's own
// included (see read_name).
bool rdata_well_formed(std::span<const std::uint8_t> msg, const Rr& rr,
                       std::span<const std::uint32_t> ttls) {
  switch (rr.type) {
    case type::A:
      return rr.rclass != qclass::IN || rr.rdlength == 4;
    case type::AAAA:
      return rr.rclass != qclass::IN || rr.rdlength == 16;
    case type::SVCB:
    case type::HTTPS:
      return rr.rclass != qclass::IN ||
             read_svcb(msg.subspan(rr.rdata_offset, rr.rdlength),
                       [](std::uint8_t, std::span<const std::uint8_t>) {})
                 .has_value();
    default:
      break;
  }
  const Layout* layout = name_layout(rr.type);
  return !layout || walk_rdata(msg, rr, *layout, ttls, [](const Name&) {},
                               [](std::span<const std::uint8_t>) {});
}

// The SOA MINIMUM field: the last four octets of a well-formed SOA RDATA (RFC 1035 §3.3.13).
std::uint32_t soa_minimum(std::span<const std::uint8_t> msg, const Rr& rr) {
  Reader r(msg, rr.rdata_offset + rr.rdlength - 4);
  return r.u32().value_or(0);
}

// Adds the addresses of one answer-section RR of class IN, numbered `record`, if it has any: an
// A or AAAA, or a ServiceMode HTTPS/SVCB with hints (rdata_well_formed has checked its layout).
// Whole records only, up to kMaxAddresses; from the first record that does not fit on, records
// are listed in capped_records instead.
void collect_addresses(std::span<const std::uint8_t> msg, const Rr& rr, std::uint16_t record,
                       std::uint32_t ttl, PreparedAnswer& a) {
  const auto rdata = msg.subspan(rr.rdata_offset, rr.rdlength);
  const auto ignore = [](std::uint8_t, std::span<const std::uint8_t>) {};
  std::size_t count = 0;
  if (rr.type == type::A || rr.type == type::AAAA) {
    count = 1;
  } else if (rr.type == type::SVCB || rr.type == type::HTTPS) {
    count = read_svcb(rdata, ignore).value_or(0);
  }
  if (count == 0) return;
  if (a.addresses_capped || count > kMaxAddresses - a.addresses.size()) {
    a.addresses_capped = true;
    a.capped_records.push_back(record);
    return;
  }
  const auto add = [&a, ttl, record](std::uint8_t family, std::span<const std::uint8_t> octets) {
    Address addr;
    addr.family = family;
    addr.ttl = ttl;
    addr.record = record;
    std::copy_n(octets.begin(), std::min(octets.size(), addr.bytes.size()), addr.bytes.begin());
    a.addresses.push_back(addr);
  };
  if (rr.type == type::A) {
    add(4, rdata);
  } else if (rr.type == type::AAAA) {
    add(6, rdata);
  } else {
    read_svcb(rdata, add);
  }
}

struct RecordScan {
  const char* refused = nullptr;  // why the records are refused; nullptr when they are fine
  std::size_t keep_end = 0;       // where the OPT starts, else the message's end
  bool opt_seen = false;
};

// prepare_answer's walk over the RRs after the question (r's cursor), counted by h; remove_records
// runs it again on the message it writes. Fills a's ttl_offsets, addresses, capped_records and
// min_ttl.
RecordScan scan_records(std::span<const std::uint8_t> msg, Reader& r, const Header& h,
                        PreparedAnswer& a) {
  RecordScan scan;
  const auto refuse = [&scan](const char* why) {
    scan.refused = why;
    return scan;
  };
  const std::size_t answers = h.ancount;
  const std::size_t authority = h.nscount;
  const std::size_t total = answers + authority + h.arcount;
  if (total > kMaxRecords) return refuse("too many records");

  a.ttl_offsets.reserve(total);
  scan.keep_end = msg.size();
  bool any_ttl = false;
  std::uint32_t min_ttl = std::numeric_limits<std::uint32_t>::max();
  std::optional<std::uint32_t> soa_min;
  for (std::size_t i = 0; i < total; ++i) {
    auto rr = read_rr(r, a.ttl_offsets);
    if (!rr) return refuse("malformed or missing record");
    if (scan.opt_seen) return refuse("OPT is not the last record");
    const bool in_answer = i < answers;
    const bool in_authority = !in_answer && i < answers + authority;
    if (rr->type == type::OPT) {
      if (in_answer || in_authority) return refuse("OPT outside the additional section");
      if (!is_root(rr->owner)) return refuse("OPT owner is not the root");
      // An extended RCODE (BADCOOKIE…) would change meaning once the OPT is gone.
      if ((rr->ttl >> 24) != 0) return refuse("extended RCODE in the upstream OPT");
      if (!options_well_formed(msg.subspan(rr->rdata_offset, rr->rdlength))) {
        return refuse("malformed EDNS option");
      }
      scan.opt_seen = true;
      scan.keep_end = rr->start;
      continue;
    }
    const auto record = static_cast<std::uint16_t>(a.ttl_offsets.size());  // < kMaxRecords
    a.ttl_offsets.push_back(static_cast<std::uint32_t>(rr->ttl_offset));
    if (!rdata_well_formed(msg, *rr, a.ttl_offsets)) return refuse("malformed RDATA");
    const std::uint32_t ttl = sane_ttl(rr->ttl);
    if (in_answer || in_authority) {
      min_ttl = std::min(min_ttl, ttl);
      any_ttl = true;
    }
    if (in_authority && rr->type == type::SOA && !soa_min) {
      soa_min = sane_ttl(soa_minimum(msg, *rr));
    }
    if (in_answer && rr->rclass == qclass::IN) collect_addresses(msg, *rr, record, ttl, a);
  }
  if (r.remaining() != 0) return refuse("trailing bytes after the last record");

  a.min_ttl = any_ttl ? min_ttl : 0;
  // RFC 2308 §5: a negative answer lives min(SOA TTL, SOA MINIMUM); the SOA TTL is in min_ttl.
  if (answers == 0 && soa_min) a.min_ttl = std::min(a.min_ttl, *soa_min);
  return scan;
}

// Writes names for remove_records (RFC 1035 §4.1.4), pointing at names written before when asked.
// An entry is one label written in place at `offset` and followed there by the rest of its name,
// in place or through a pointer; that rest is itself an entry, or the root. An entry therefore
// stands for a whole name suffix, keyed by its label and its rest (the rest's entry offset, 0 for
// the root: no name starts in the header), and a name is looked up label by label from its end.
// Matching is exact, so names keep their case. Pointer chains stay within kMaxChainedJumps, well
// below what Reader follows; offsets beyond the 14-bit pointer range are not entered.
class NameWriter {
 public:
  explicit NameWriter(std::vector<std::uint8_t>& out) : out_(out) {}

  void write(const Name& name, bool compress) {
    const auto wire = name.wire();
    std::array<std::size_t, kMaxNameWire / 2> starts{};  // each label's offset in `wire`
    std::size_t labels = 0;
    for (std::size_t i = 0; i < wire.size() && wire[i] != 0 && labels < starts.size();
         i += 1u + wire[i]) {
      starts[labels++] = i;
    }
    const auto label = [&wire, &starts](std::size_t k) {
      const auto first = wire.begin() + static_cast<std::ptrdiff_t>(starts[k]);
      return std::string(first + 1, first + 1 + wire[starts[k]]);
    };

    // Labels [0, literal) go in place; then a pointer to `rest`, or the root when rest is 0.
    std::size_t literal = labels;
    std::uint16_t rest = 0;
    int jumps = 0;  // pointers followed to read the name from its first octet
    if (compress) {
      std::uint16_t id = 0;
      for (std::size_t k = labels; k-- > 0;) {
        const auto it = entries_.find({label(k), id});
        if (it == entries_.end()) break;
        id = it->second.offset;
        if (it->second.jumps < kMaxChainedJumps) {
          literal = k;
          rest = id;
          jumps = it->second.jumps + 1;
        }
      }
    }
    std::array<std::size_t, kMaxNameWire / 2> offsets{};  // where each literal label lands
    for (std::size_t k = 0; k < literal; ++k) {
      offsets[k] = out_.size();
      const auto first = wire.begin() + static_cast<std::ptrdiff_t>(starts[k]);
      out_.insert(out_.end(), first, first + 1 + wire[starts[k]]);
    }
    Writer w(out_);
    if (rest != 0) {
      w.u16(static_cast<std::uint16_t>(kPointerTag | rest));
    } else {
      w.u8(0);
    }
    // Enter the literal labels from the end. One whose suffix is known already keeps the known
    // entry (same name, another place); one beyond pointer range ends the walk, as the labels
    // before it could not name their rest.
    std::uint16_t id = rest;
    for (std::size_t k = literal; k-- > 0;) {
      auto it = entries_.find({label(k), id});
      if (it == entries_.end()) {
        if (offsets[k] > kMaxPointerTarget) break;
        it = entries_.emplace(Key{label(k), id},
                              Entry{static_cast<std::uint16_t>(offsets[k]), jumps}).first;
      }
      id = it->second.offset;
    }
  }

 private:
  static constexpr std::uint16_t kPointerTag = 0xC000;      // RFC 1035 §4.1.4: the top two bits
  static constexpr std::size_t kMaxPointerTarget = 0x3FFF;  // the other 14 bits
  // A chain this long is already rare in upstream answers; the cap keeps every name we write
  // readable by Reader (kMaxPointerJumps), however the suffixes were shared out.
  static constexpr int kMaxChainedJumps = 4;
  static_assert(kMaxChainedJumps < kMaxPointerJumps);

  using Key = std::pair<std::string, std::uint16_t>;  // (label, its rest's entry offset)
  struct Entry {
    std::uint16_t offset;
    int jumps;
  };
  std::map<Key, Entry> entries_;
  std::vector<std::uint8_t>& out_;
};

void write_opt(Writer& w, std::uint8_t ext_rcode, bool do_bit, std::span<const std::uint8_t> rdata) {
  w.u8(0);                  // owner: the root
  w.u16(type::OPT);
  w.u16(kOurUdpSize);       // CLASS: our payload size
  // TTL: EXTENDED-RCODE, VERSION 0, DO, Z (RFC 6891 §6.1.3).
  w.u32(static_cast<std::uint32_t>(ext_rcode) << 24 | (do_bit ? kDoBit : 0));
  w.u16(static_cast<std::uint16_t>(rdata.size()));
  w.bytes(rdata);
}

// The client's question bytes, when q's offsets describe `packet`.
std::optional<std::span<const std::uint8_t>> client_question(const Query& q,
                                                             std::span<const std::uint8_t> packet) {
  if (q.question_end < kHeaderSize + kMinQuestion || q.question_end > packet.size()) {
    return std::nullopt;
  }
  return packet.subspan(kHeaderSize, q.question_end - kHeaderSize);
}

// Writes q's question: the client's bytes verbatim, or rebuilt from q if the packet does not fit.
void write_question(Writer& w, const Query& q, std::span<const std::uint8_t> packet) {
  if (auto bytes = client_question(q, packet)) {
    w.bytes(*bytes);
    return;
  }
  w.bytes(q.qname.wire());
  w.u16(q.qtype);
  w.u16(q.qclass);
}

// A reply with no records: header, the question, and an OPT when the client sent EDNS.
void write_empty_reply(Writer& w, const Query& q, std::span<const std::uint8_t> packet,
                       std::uint16_t flags) {
  Header h;
  h.id = q.header.id;
  h.flags = flags;
  h.qdcount = 1;
  h.arcount = q.edns.present ? 1 : 0;
  w.header(h);
  write_question(w, q, packet);
  if (q.edns.present) write_opt(w, 0, q.edns.do_bit, {});
}

// RFC 6895 §3.1: OPT, TSIG and TKEY are meta-TYPEs, meaningful only as records of a transaction,
// so a question for one is malformed: FORMERR. MAILA and MAILB (RFC 1035 §3.2.3) are obsolete
// QTYPEs that resolvers no longer answer; FORMERR too rather than NOTIMP, because NOTIMP speaks of
// opcodes, and so they never reach the allowlist. AXFR and IXFR are valid questions the caller
// refuses.
bool is_meta_qtype(std::uint16_t t) {
  return t == type::OPT || t == type::TSIG || t == type::TKEY || t == type::MAILA ||
         t == type::MAILB;
}

// parse_query's walk, shared with make_error_reply, which echoes what could be read.
struct QueryScan {
  Query q;
  bool header_read = false;
  bool question_read = false;
  std::optional<QueryError> error;
  const char* reason = "";
};

QueryScan& reject(QueryScan& s, QueryError e, const char* why) {
  s.error = e;
  s.reason = why;
  return s;
}

QueryScan scan_query(std::span<const std::uint8_t> packet) {
  QueryScan s;
  Reader r(packet);
  auto h = r.header();
  if (!h) return reject(s, QueryError::Drop, "shorter than a DNS header");
  s.q.header = *h;
  s.header_read = true;
  if (h->qr()) return reject(s, QueryError::Drop, "QR=1: a response, not a query");

  // Read the question before judging the rest, so that error replies can echo it.
  if (h->qdcount == 1) {
    auto qname = r.name();
    auto qtype = qname ? r.u16() : std::nullopt;
    auto qclass = qtype ? r.u16() : std::nullopt;
    if (qclass) {
      s.q.qname = *qname;
      s.q.qtype = *qtype;
      s.q.qclass = *qclass;
      s.q.question_end = r.pos();
      s.question_read = true;
    }
  }
  if (h->opcode() != 0) return reject(s, QueryError::NotImp, "opcode is not QUERY");
  if (h->qdcount != 1) return reject(s, QueryError::FormErr, "QDCOUNT is not 1");
  if (!s.question_read) return reject(s, QueryError::FormErr, "truncated or malformed question");
  if (h->ancount != 0 || h->nscount != 0) {
    return reject(s, QueryError::FormErr, "answer or authority records in a query");
  }
  // Each RR read consumes at least 11 octets or fails, so the packet size bounds this loop.
  for (std::uint16_t i = 0; i < h->arcount; ++i) {
    auto rr = read_rr(r);
    if (!rr) return reject(s, QueryError::FormErr, "malformed additional record");
    if (rr->type != type::OPT) return reject(s, QueryError::FormErr, "additional record is not OPT");
    // RFC 6891 §6.1.1: more than one OPT, or an OPT not owned by the root, is FORMERR.
    if (s.q.edns.present) return reject(s, QueryError::FormErr, "more than one OPT record");
    if (!is_root(rr->owner)) return reject(s, QueryError::FormErr, "OPT owner is not the root");
    if (!options_well_formed(packet.subspan(rr->rdata_offset, rr->rdlength))) {
      return reject(s, QueryError::FormErr, "malformed EDNS option");
    }
    s.q.edns.present = true;
    s.q.edns.udp_size = std::max<std::uint16_t>(rr->rclass, 512);  // RFC 6891 §6.2.5
    s.q.edns.version = static_cast<std::uint8_t>(rr->ttl >> 16);
    s.q.edns.do_bit = (rr->ttl & kDoBit) != 0;
  }
  if (r.remaining() != 0) return reject(s, QueryError::FormErr, "trailing bytes after the last record");
  if (is_meta_qtype(s.q.qtype)) return reject(s, QueryError::FormErr, "meta type in the question");
  // RFC 6891 §6.1.3: checked last, so the BADVERS reply can echo a question and OPT that parsed.
  if (s.q.edns.present && s.q.edns.version != 0) {
    return reject(s, QueryError::BadVers, "EDNS version not supported");
  }
  return s;
}

}  // namespace

// --- Name ----------------------------------------------------------------------------------------

std::optional<Name> Name::from_text(std::string_view text) {
  Name n;
  if (text == ".") {
    text = {};
  } else if (!text.empty() && text.back() == '.') {
    text.remove_suffix(1);
  }
  while (!text.empty()) {
    const std::size_t dot = text.find('.');
    const std::string_view label = text.substr(0, dot);
    if (label.empty() || label.size() > kMaxLabel) return std::nullopt;
    std::array<std::uint8_t, kMaxLabel> bytes{};
    std::transform(label.begin(), label.end(), bytes.begin(),
                   [](char c) { return static_cast<std::uint8_t>(c); });
    if (!n.append_label({bytes.data(), label.size()})) return std::nullopt;
    text = dot == std::string_view::npos ? std::string_view{} : text.substr(dot + 1);
    if (dot != std::string_view::npos && text.empty()) return std::nullopt;  // "a..": empty label
  }
  if (!n.finish()) return std::nullopt;
  return n;
}

std::size_t Name::labels() const {
  std::size_t count = 0;
  for (std::size_t i = 0; i < len_ && bytes_[i] != 0; i += 1u + bytes_[i]) ++count;
  return count;
}

std::optional<std::string> Name::hostname() const {
  std::string out;
  for (std::size_t i = 0; i < len_ && bytes_[i] != 0; i += 1u + bytes_[i]) {
    const std::size_t n = bytes_[i];
    if (n > len_ - i - 1) return std::nullopt;
    if (!out.empty()) out.push_back('.');
    for (std::size_t k = i + 1; k <= i + n; ++k) {
      const std::uint8_t c = fold(bytes_[k]);
      const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
      if (!ok) return std::nullopt;
      out.push_back(static_cast<char>(c));
    }
  }
  return out;
}

// RFC 4343 §2.1 presentation form: "\." and "\\" inside labels, "\DDD" (decimal) for octets that
// are not printable ASCII, space included.
std::string Name::to_text() const {
  std::string out;
  for (std::size_t i = 0; i < len_ && bytes_[i] != 0; i += 1u + bytes_[i]) {
    const std::size_t n = std::min<std::size_t>(bytes_[i], len_ - i - 1);
    for (std::size_t k = i + 1; k <= i + n; ++k) {
      const std::uint8_t c = bytes_[k];
      if (c == '.' || c == '\\') {
        out.push_back('\\');
        out.push_back(static_cast<char>(c));
      } else if (c > 0x20 && c < 0x7F) {
        out.push_back(static_cast<char>(c));
      } else {
        out.push_back('\\');
        out.push_back(static_cast<char>('0' + c / 100));
        out.push_back(static_cast<char>('0' + c / 10 % 10));
        out.push_back(static_cast<char>('0' + c % 10));
      }
    }
    out.push_back('.');
  }
  return out.empty() ? "." : out;
}

// Length octets are at most 63, below 'A' (65), so folding every octet leaves them intact.
Name Name::lowercased() const {
  Name n = *this;
  for (std::size_t i = 0; i < len_; ++i) n.bytes_[i] = fold(bytes_[i]);
  return n;
}

bool Name::equals_ignore_case(const Name& other) const {
  if (len_ != other.len_) return false;
  for (std::size_t i = 0; i < len_; ++i) {
    if (fold(bytes_[i]) != fold(other.bytes_[i])) return false;
  }
  return true;
}

// One octet stays reserved for the root label, so a name that appends fine can always finish.
bool Name::append_label(std::span<const std::uint8_t> label) {
  if (label.empty() || label.size() > kMaxLabel) return false;
  if (label.size() + 2 > kMaxNameWire - len_) return false;
  bytes_[len_++] = static_cast<std::uint8_t>(label.size());
  std::copy(label.begin(), label.end(), bytes_.begin() + static_cast<std::ptrdiff_t>(len_));
  len_ += label.size();
  return true;
}

bool Name::finish() {
  if (len_ >= kMaxNameWire) return false;
  bytes_[len_++] = 0;
  return true;
}

// --- Reader --------------------------------------------------------------------------------------

std::optional<std::span<const std::uint8_t>> Reader::bytes(std::size_t n) {
  if (n > remaining()) return std::nullopt;
  auto out = msg_.subspan(pos_, n);
  pos_ += n;
  return out;
}

bool Reader::skip(std::size_t n) { return bytes(n).has_value(); }

std::optional<std::uint8_t> Reader::u8() {
  auto b = bytes(1);
  if (!b) return std::nullopt;
  return (*b)[0];
}

std::optional<std::uint16_t> Reader::u16() {
  auto b = bytes(2);
  if (!b) return std::nullopt;
  std::uint16_t v;
  std::memcpy(&v, b->data(), sizeof v);
  return ntohs(v);
}

std::optional<std::uint32_t> Reader::u32() {
  auto b = bytes(4);
  if (!b) return std::nullopt;
  std::uint32_t v;
  std::memcpy(&v, b->data(), sizeof v);
  return ntohl(v);
}

std::optional<Header> Reader::header() {
  auto b = bytes(kHeaderSize);
  if (!b) return std::nullopt;
  Header h;
  std::memcpy(&h, b->data(), kHeaderSize);
  for (std::uint16_t* f : {&h.id, &h.flags, &h.qdcount, &h.ancount, &h.nscount, &h.arcount}) {
    *f = ntohs(*f);
  }
  return h;
}

// The rules are walk_name's.
std::optional<Name> Reader::name() {
  auto n = walk_name(msg_, pos_, [](std::size_t, std::size_t) { return true; });
  if (!n) return std::nullopt;
  pos_ = n->end;
  return n->name;
}

// --- Writer --------------------------------------------------------------------------------------

void Writer::u16(std::uint16_t v) {
  const std::uint16_t be = htons(v);
  std::array<std::uint8_t, sizeof be> b;
  std::memcpy(b.data(), &be, sizeof be);
  bytes(b);
}

void Writer::u32(std::uint32_t v) {
  const std::uint32_t be = htonl(v);
  std::array<std::uint8_t, sizeof be> b;
  std::memcpy(b.data(), &be, sizeof be);
  bytes(b);
}

void Writer::header(const Header& h) {
  for (std::uint16_t f : {h.id, h.flags, h.qdcount, h.ancount, h.nscount, h.arcount}) u16(f);
}

// Offsets come from our own writes; one that does not fit is ignored rather than written past.
void Writer::patch_u16(std::size_t offset, std::uint16_t v) {
  if (offset > out_.size() || 2 > out_.size() - offset) return;
  const std::uint16_t be = htons(v);
  std::memcpy(out_.data() + offset, &be, sizeof be);
}

// --- Queries -------------------------------------------------------------------------------------

QueryParse parse_query(std::span<const std::uint8_t> packet) {
  QueryScan s = scan_query(packet);
  QueryParse out;
  if (s.error) {
    out.error = *s.error;
    out.reason = s.reason;
  } else {
    out.query = s.q;
  }
  return out;
}

std::vector<std::uint8_t> make_error_reply(std::span<const std::uint8_t> packet, QueryError error) {
  if (error == QueryError::Drop || packet.size() < 2) return {};
  const QueryScan s = scan_query(packet);
  Header in;
  if (s.header_read) {
    in = s.q.header;
  } else {  // shorter than a header: the ID and, if present, the flags
    Reader r(packet);
    in.id = r.u16().value_or(0);
    in.flags = r.u16().value_or(0);
  }
  std::uint16_t rc = rcode::FormErr;
  if (error == QueryError::NotImp) rc = rcode::NotImp;
  if (error == QueryError::BadVers) rc = rcode::BadVers & 0xF;  // the rest goes in the OPT
  const bool echo = s.question_read && s.q.question_end <= packet.size();

  Header h;
  h.id = in.id;
  // RA: dnsd is a recursive service whatever was wrong with this packet.
  h.flags = static_cast<std::uint16_t>(flag::QR | (in.flags & (kOpcodeMask | flag::RD)) | flag::RA | rc);
  h.qdcount = echo ? 1 : 0;
  h.arcount = error == QueryError::BadVers ? 1 : 0;
  std::vector<std::uint8_t> out;
  Writer w(out);
  w.header(h);
  if (echo) w.bytes(packet.subspan(kHeaderSize, s.q.question_end - kHeaderSize));
  if (error == QueryError::BadVers) {
    write_opt(w, static_cast<std::uint8_t>(rcode::BadVers >> 4), s.q.edns.do_bit, {});
  }
  return out;
}

std::vector<std::uint8_t> make_synthetic(const Query& q, std::span<const std::uint8_t> packet,
                                         const Synthetic& s) {
  std::vector<std::uint8_t> out;
  out.reserve(kSyntheticMax);
  Writer w(out);
  Header h;
  h.id = q.header.id;
  h.flags = static_cast<std::uint16_t>(flag::QR | (q.header.flags & (flag::RD | flag::CD)) |
                                       flag::RA | (s.rcode & 0xF));
  h.qdcount = 1;
  h.nscount = s.negative_soa ? 1 : 0;
  h.arcount = q.edns.present ? 1 : 0;
  w.header(h);
  write_question(w, q, packet);

  if (s.negative_soa) {
    // RFC 2308 §3: the SOA's TTL and MINIMUM bound how long the denial is cached.
    static constexpr std::uint8_t kMname[] = {4, 'd', 'n', 's', 'd', 6, 'e', 'g', 'r', 'e', 's', 's', 0};
    static constexpr std::uint8_t kRname[] = {10, 'h', 'o', 's', 't', 'm', 'a', 's', 't', 'e', 'r',
                                              6,  'e', 'g', 'r', 'e', 's', 's', 0};
    w.u8(0);  // owner: the root
    w.u16(type::SOA);
    w.u16(qclass::IN);
    w.u32(s.negative_ttl);
    w.u16(static_cast<std::uint16_t>(sizeof kMname + sizeof kRname + 20));
    w.bytes(kMname);
    w.bytes(kRname);
    w.u32(1);       // SERIAL
    w.u32(3600);    // REFRESH
    w.u32(600);     // RETRY
    w.u32(86400);   // EXPIRE
    w.u32(s.negative_ttl);  // MINIMUM
  }

  if (q.edns.present) {
    std::vector<std::uint8_t> rdata;
    if (s.ede_code) {
      // RFC 8914 §2: OPTION-CODE 15, OPTION-LENGTH, INFO-CODE, EXTRA-TEXT (UTF-8, not terminated).
      // The text is cut, on a character boundary, so the whole reply stays within 512 octets.
      const std::size_t used = out.size() + kOptFixedSize + 6;
      std::size_t n = std::min(s.ede_text.size(), kSyntheticMax - std::min(used, kSyntheticMax));
      while (n > 0 && n < s.ede_text.size() &&
             (static_cast<std::uint8_t>(s.ede_text[n]) & 0xC0) == 0x80) {
        --n;
      }
      Writer o(rdata);
      o.u16(kEdeOption);
      o.u16(static_cast<std::uint16_t>(2 + n));
      o.u16(*s.ede_code);
      for (std::size_t i = 0; i < n; ++i) o.u8(static_cast<std::uint8_t>(s.ede_text[i]));
    }
    write_opt(w, static_cast<std::uint8_t>(s.rcode >> 4), q.edns.do_bit, rdata);
  }
  return out;
}

std::vector<std::uint8_t> make_txt_reply(const Query& q, std::span<const std::uint8_t> packet,
                                         std::span<const std::string> strings, std::size_t limit) {
  static constexpr std::size_t kMaxString = 255;        // one <character-string>
  static constexpr std::uint16_t kQuestionPointer = 0xC000 | kHeaderSize;  // RFC 1035 §4.1.4
  const std::size_t n = std::min(strings.size(), kMaxTxtRecords);
  std::vector<std::uint8_t> out;
  Writer w(out);
  Header h;
  h.id = q.header.id;
  h.flags = static_cast<std::uint16_t>(flag::QR | (q.header.flags & (flag::RD | flag::CD)) |
                                       flag::RA | rcode::NoError);
  h.qdcount = 1;
  h.ancount = static_cast<std::uint16_t>(n);
  h.arcount = q.edns.present ? 1 : 0;
  w.header(h);
  write_question(w, q, packet);
  for (std::size_t i = 0; i < n; ++i) {
    const std::string& text = strings[i];
    std::size_t len = std::min(text.size(), kMaxString);
    while (len > 0 && len < text.size() &&
           (static_cast<std::uint8_t>(text[len]) & 0xC0) == 0x80) {  // a continuation octet
      --len;
    }
    w.u16(kQuestionPointer);
    w.u16(type::TXT);
    w.u16(q.qclass);
    w.u32(0);  // TTL 0: a report is about now
    w.u16(static_cast<std::uint16_t>(1 + len));
    w.u8(static_cast<std::uint8_t>(len));
    for (std::size_t j = 0; j < len; ++j) w.u8(static_cast<std::uint8_t>(text[j]));
  }
  if (q.edns.present) write_opt(w, 0, q.edns.do_bit, {});
  if (out.size() > limit) {
    out.clear();
    write_empty_reply(w, q, packet, static_cast<std::uint16_t>(h.flags | flag::TC));
  }
  return out;
}

// AD=1 asks the upstream for the AD bit without DNSSEC records (RFC 6840 §5.7): the cache key has
// no AD, so the cached answer carries AD whenever upstream validated, and render_answer strips it
// for clients that did not ask.
std::vector<std::uint8_t> make_upstream_query(const Query& q) {
  std::vector<std::uint8_t> out;
  Writer w(out);
  Header h;
  h.flags = static_cast<std::uint16_t>(flag::RD | flag::AD | (q.header.flags & flag::CD));
  h.qdcount = 1;
  h.arcount = 1;
  w.header(h);
  w.bytes(q.qname.lowercased().wire());
  w.u16(q.qtype);
  w.u16(q.qclass);
  write_opt(w, 0, q.edns.do_bit, {});
  return out;
}

// --- Answers -------------------------------------------------------------------------------------

AnswerParse prepare_answer(std::span<const std::uint8_t> upstream, const Query& q) {
  AnswerParse res;
  const auto refuse = [&res](const char* why) {
    res.reason = why;
    return res;
  };
  Reader r(upstream);
  auto h = r.header();
  if (!h) return refuse("shorter than a DNS header");
  if (!h->qr()) return refuse("not a response (QR=0)");
  if (h->opcode() != 0) return refuse("opcode is not QUERY");
  if (h->qdcount != 1) return refuse("QDCOUNT is not 1");
  auto qname = r.name();
  auto qtype = qname ? r.u16() : std::nullopt;
  auto qclass = qtype ? r.u16() : std::nullopt;
  if (!qclass) return refuse("malformed question");
  if (!qname->equals_ignore_case(q.qname) || *qtype != q.qtype || *qclass != q.qclass) {
    return refuse("answer to another question");
  }

  PreparedAnswer a;
  a.rcode = h->rcode();
  a.truncated = h->has(flag::TC);
  const RecordScan scan = scan_records(upstream, r, *h, a);
  if (scan.refused) return refuse(scan.refused);

  a.wire.assign(upstream.begin(), upstream.begin() + static_cast<std::ptrdiff_t>(scan.keep_end));
  Writer w(a.wire);
  w.patch_u16(0, 0);  // ID: each client's goes in at render time
  w.patch_u16(2, static_cast<std::uint16_t>((h->flags & ~(flag::AA | kZ)) | flag::RA));
  if (scan.opt_seen) w.patch_u16(10, static_cast<std::uint16_t>(h->arcount - 1));
  res.answer = std::move(a);
  return res;
}

// The message is walked once and written again RR by RR; the new message is then scanned like an
// upstream answer, so its ttl_offsets, addresses and min_ttl follow the same rules by
// construction.
std::optional<PreparedAnswer> remove_records(const PreparedAnswer& a,
                                             std::span<const std::uint16_t> records) {
  Reader r(a.wire);
  auto h = r.header();
  if (!h || h->qdcount != 1) return std::nullopt;
  auto qname = r.name();
  auto qtype = qname ? r.u16() : std::nullopt;
  auto qclass = qtype ? r.u16() : std::nullopt;
  if (!qclass) return std::nullopt;
  const std::size_t total = std::size_t{h->ancount} + h->nscount + h->arcount;
  if (total > kMaxRecords) return std::nullopt;
  std::vector<bool> drop(total, false);
  for (const std::uint16_t i : records) {
    if (i < total) drop[i] = true;
  }

  std::vector<std::uint8_t> out;
  out.reserve(a.wire.size());
  Writer w(out);
  NameWriter names(out);
  Header out_h = *h;
  w.header(out_h);  // counts patched below
  // In full, as prepared answers have it: a pointer in the question could only reach the header
  // or the question itself (a loop), both of which Reader refuses.
  names.write(*qname, false);
  w.u16(*qtype);
  w.u16(*qclass);
  const std::size_t authority_end = std::size_t{h->ancount} + h->nscount;
  for (std::size_t i = 0; i < total; ++i) {
    auto rr = read_rr(r);
    if (!rr) return std::nullopt;
    if (drop[i]) {  // RFC 1035 §4.1: answer, authority, additional, in that order
      if (i < h->ancount) {
        --out_h.ancount;
      } else if (i < authority_end) {
        --out_h.nscount;
      } else {
        --out_h.arcount;
      }
      continue;
    }
    names.write(rr->owner, true);  // owner names may always be compressed (RFC 1035 §4.1.4)
    w.u16(rr->type);
    w.u16(rr->rclass);
    w.u32(rr->ttl);
    const std::size_t rdlength_at = w.size();
    w.u16(0);
    const Layout* layout = name_layout(rr->type);
    if (layout) {
      const bool ok = walk_rdata(
          a.wire, *rr, *layout, {}, [&](const Name& n) { names.write(n, layout->compress); },
          [&w](std::span<const std::uint8_t> octets) { w.bytes(octets); });
      if (!ok) return std::nullopt;
    } else {
      w.bytes(std::span(a.wire).subspan(rr->rdata_offset, rr->rdlength));
    }
    const std::size_t rdlength = w.size() - rdlength_at - 2;
    // Layouts hold at most 2 + 2 + 3 × 256 + 255 octets (NAPTR) decompressed; raw RDATA keeps
    // its length. Checked all the same, as the field is 16 bits.
    if (rdlength > 0xFFFF) return std::nullopt;
    w.patch_u16(rdlength_at, static_cast<std::uint16_t>(rdlength));
  }
  if (r.remaining() != 0) return std::nullopt;
  w.patch_u16(6, out_h.ancount);
  w.patch_u16(8, out_h.nscount);
  w.patch_u16(10, out_h.arcount);

  PreparedAnswer b;
  Reader again(out);
  auto again_h = again.header();
  if (!again_h || !again.name() || !again.skip(4)) return std::nullopt;
  const RecordScan scan = scan_records(out, again, *again_h, b);
  if (scan.refused || scan.opt_seen) return std::nullopt;
  b.wire = std::move(out);
  b.rcode = a.rcode;
  b.truncated = a.truncated;
  return b;
}

void render_answer(const PreparedAnswer& a, const Query& q, std::span<const std::uint8_t> packet,
                   std::uint32_t age, std::uint32_t ttl_cap, std::size_t limit,
                   std::vector<std::uint8_t>& out) {
  out.clear();
  Writer w(out);
  const std::uint16_t client_bits = q.header.flags & (flag::RD | flag::CD);

  // The client's question replaces the prepared one in place, so the offsets in `a` hold only if
  // both are the same question, hence the same length.
  Reader r(a.wire);
  auto h = r.header();
  auto qname = h ? r.name() : std::nullopt;
  auto qtype = qname ? r.u16() : std::nullopt;
  auto qclass = qtype ? r.u16() : std::nullopt;
  const auto question = client_question(q, packet);
  if (!qclass || !question || r.pos() != q.question_end || !qname->equals_ignore_case(q.qname) ||
      *qtype != q.qtype || *qclass != q.qclass) {
    write_empty_reply(w, q, packet,
                      static_cast<std::uint16_t>(flag::QR | flag::RA | client_bits | rcode::ServFail));
    return;
  }

  const bool want_ad = q.header.has(flag::AD) || q.edns.do_bit;  // RFC 6840 §5.8
  Header out_h = *h;
  out_h.id = q.header.id;
  out_h.flags = static_cast<std::uint16_t>((h->flags & ~(flag::RD | flag::CD | flag::AD)) |
                                           client_bits | flag::RA);
  if (want_ad && h->has(flag::AD)) out_h.flags |= flag::AD;
  if (q.edns.present) ++out_h.arcount;  // at most kMaxRecords, so no overflow
  w.header(out_h);
  w.bytes(*question);
  w.bytes(std::span(a.wire).subspan(q.question_end));

  for (std::uint32_t off : a.ttl_offsets) {
    Reader t(out, off);
    auto ttl = off >= q.question_end ? t.u32() : std::nullopt;  // never inside the question
    if (!ttl) continue;
    const std::uint32_t left = sane_ttl(*ttl) > age ? sane_ttl(*ttl) - age : 0;
    const std::uint32_t v = std::min(ttl_cap, left);
    w.patch_u16(off, static_cast<std::uint16_t>(v >> 16));
    w.patch_u16(off + 2, static_cast<std::uint16_t>(v & 0xFFFF));
  }
  if (q.edns.present) write_opt(w, 0, q.edns.do_bit, {});

  if (out.size() > limit) {  // RFC 2181 §9: TC=1 with no partial RRsets; the client retries on TCP
    out.clear();
    write_empty_reply(w, q, packet, static_cast<std::uint16_t>(out_h.flags | flag::TC));
  }
}

std::size_t udp_limit(const Query& q, std::size_t our_max) {
  if (!q.edns.present) return 512;
  return std::max<std::size_t>(512, std::min<std::size_t>(q.edns.udp_size, our_max));
}

std::string type_name(std::uint16_t t) {
  switch (t) {
    case type::A: return "A";
    case type::NS: return "NS";
    case type::CNAME: return "CNAME";
    case type::SOA: return "SOA";
    case type::PTR: return "PTR";
    case type::MX: return "MX";
    case type::TXT: return "TXT";
    case type::AAAA: return "AAAA";
    case type::SRV: return "SRV";
    case 35: return "NAPTR";
    case 39: return "DNAME";
    case type::OPT: return "OPT";
    case type::DS: return "DS";
    case type::RRSIG: return "RRSIG";
    case 47: return "NSEC";
    case 48: return "DNSKEY";
    case 50: return "NSEC3";
    case type::SVCB: return "SVCB";
    case type::HTTPS: return "HTTPS";
    case type::TKEY: return "TKEY";
    case type::TSIG: return "TSIG";
    case type::IXFR: return "IXFR";
    case type::AXFR: return "AXFR";
    case type::MAILB: return "MAILB";
    case type::MAILA: return "MAILA";
    case type::ANY: return "ANY";
    case 257: return "CAA";
    default: return "TYPE" + std::to_string(t);  // RFC 3597 §5
  }
}

}  // namespace egress::dns
