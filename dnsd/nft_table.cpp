#include "dnsd/nft_table.h"

#include <libmnl/libmnl.h>
#include <libnftnl/chain.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <libnftnl/udata.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <regex>
#include <stdexcept>
#include <string_view>
#include <utility>

namespace dnsd {

namespace {

// --- libnftnl ownership -------------------------------------------------------------------------

struct FreeTable {
  void operator()(nftnl_table* p) const { nftnl_table_free(p); }
};
struct FreeChain {
  void operator()(nftnl_chain* p) const { nftnl_chain_free(p); }
};
struct FreeRule {
  void operator()(nftnl_rule* p) const { nftnl_rule_free(p); }
};
struct FreeSet {
  void operator()(nftnl_set* p) const { nftnl_set_free(p); }
};
struct FreeUdata {
  void operator()(nftnl_udata_buf* p) const { nftnl_udata_buf_free(p); }
};
using TablePtr = std::unique_ptr<nftnl_table, FreeTable>;
using ChainPtr = std::unique_ptr<nftnl_chain, FreeChain>;
using RulePtr = std::unique_ptr<nftnl_rule, FreeRule>;
using SetPtr = std::unique_ptr<nftnl_set, FreeSet>;
using UdataPtr = std::unique_ptr<nftnl_udata_buf, FreeUdata>;

// libnftnl returns NULL only when malloc fails.
template <class T>
T* checked(T* p) {
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

// --- sizes --------------------------------------------------------------------------------------

// Room for a message's attributes (NftBatch::add). A name is at most NFT_NAME_MAXLEN (256) bytes
// with its NUL: 260 with the attribute header.
constexpr std::size_t kNameAttr = 4 + NFT_NAME_MAXLEN;
// Table, set, chain or rule-flush message: two names and a handful of u32/u64 attributes, a hook
// nest and the set's userdata (under 64 bytes).
constexpr std::size_t kObjectRoom = 2 * kNameAttr + 512;
// A rule: table and chain names and at most 8 expressions of under 100 bytes each, one or two of
// them naming a set.
constexpr std::size_t kRuleRoom = 4 * kNameAttr + 8 * 100 + 512;
// One element: nest 4, key nest 4 + 4 + 16, flags 8, timeout 12, expiration 12, userdata 12.
constexpr std::size_t kPerElementRoom = 128;
// Elements go in one NFTA_SET_ELEM_LIST_ELEMENTS nest whose length is 16 bits: libnftnl does not
// split (nftnl_set_elems_nlmsg_build_payload), so we do.
constexpr std::size_t kMaxElementsPerMessage = 256;
static_assert(kMaxElementsPerMessage * kPerElementRoom < 65535);
constexpr std::size_t kMaxDnsPorts = 64;

// nft's datatype numbers (nftables src/datatype.h, enum datatypes), stored in NFTA_SET_KEY_TYPE
// so that `nft list` prints the elements as the design writes them.
constexpr std::uint32_t kTypeIpv4Addr = 7;
constexpr std::uint32_t kTypeIpv6Addr = 8;
constexpr std::uint32_t kTypeInetProto = 12;
constexpr std::uint32_t kTypeInetService = 13;
constexpr std::uint32_t kTypeIcmp6Type = 29;
// nft's byte order tag in set userdata (NFTNL_UDATA_SET_KEYBYTEORDER; nftables enum byteorder).
constexpr std::uint32_t kHostEndian = 1;
constexpr std::uint32_t kBigEndian = 2;

constexpr std::uint16_t kFamily = NFPROTO_INET;

// ICMPv6 neighbour discovery that a host needs to send (RFC 4861 section 4): router solicitation
// 133, neighbour solicitation 135, neighbour advertisement 136.
constexpr std::uint8_t kNdRouterSolicit = 133;
constexpr std::uint8_t kNdNeighborSolicit = 135;
constexpr std::uint8_t kNdNeighborAdvert = 136;

const std::string& set_for(const TableSpec& spec, std::uint8_t family) {
  return family == 4 ? spec.allow4 : spec.allow6;
}

std::size_t key_len(std::uint8_t family) { return family == 4 ? 4 : 16; }

// --- set elements -------------------------------------------------------------------------------

// Appends `count` elements of one set in messages of at most kMaxElementsPerMessage; `make(i)`
// returns element i (ownership passes to the set).
template <class Make>
void append_elements(NftBatch& batch, const std::string& table, const std::string& set,
                     std::optional<std::uint32_t> set_id, std::uint16_t type, std::uint16_t flags,
                     std::size_t count, Make&& make) {
  for (std::size_t start = 0; start < count; start += kMaxElementsPerMessage) {
    const std::size_t n = std::min(kMaxElementsPerMessage, count - start);
    SetPtr s(checked(nftnl_set_alloc()));
    nftnl_set_set_str(s.get(), NFTNL_SET_TABLE, table.c_str());
    nftnl_set_set_str(s.get(), NFTNL_SET_NAME, set.c_str());
    if (set_id) nftnl_set_set_u32(s.get(), NFTNL_SET_ID, *set_id);
    for (std::size_t i = 0; i < n; ++i) nftnl_set_elem_add(s.get(), make(start + i));
    batch.add(type, kFamily, flags, kObjectRoom + n * kPerElementRoom,
              [&](nlmsghdr* nlh) { nftnl_set_elems_nlmsg_build_payload(nlh, s.get()); });
  }
}

nftnl_set_elem* new_elem(const void* key, std::size_t len) {
  nftnl_set_elem* e = checked(nftnl_set_elem_alloc());
  nftnl_set_elem_set(e, NFTNL_SET_ELEM_KEY, key, static_cast<std::uint32_t>(len));
  return e;
}

bool valid_element(const SetElement& e) {
  return (e.address.family == 4 || e.address.family == 6) && e.timeout.count() > 0 &&
         e.expires.count() > 0 && e.expires <= e.timeout;
}

// --- expressions --------------------------------------------------------------------------------

class RuleBuilder {
 public:
  explicit RuleBuilder(const TableSpec& spec) : rule_(checked(nftnl_rule_alloc())) {
    nftnl_rule_set_str(rule_.get(), NFTNL_RULE_TABLE, spec.table.c_str());
    nftnl_rule_set_str(rule_.get(), NFTNL_RULE_CHAIN, spec.chain.c_str());
    nftnl_rule_set_u32(rule_.get(), NFTNL_RULE_FAMILY, kFamily);
  }

  RuleBuilder& meta(std::uint32_t key) {
    nftnl_expr* e = expr("meta");
    nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, key);
    nftnl_expr_set_u32(e, NFTNL_EXPR_META_DREG, NFT_REG_1);
    return add(e);
  }
  RuleBuilder& ct_state() {
    nftnl_expr* e = expr("ct");
    nftnl_expr_set_u32(e, NFTNL_EXPR_CT_KEY, NFT_CT_STATE);
    nftnl_expr_set_u32(e, NFTNL_EXPR_CT_DREG, NFT_REG_1);
    return add(e);
  }
  // reg1 = (reg1 & mask) ^ 0, on a host-order u32 (ct state is a host-order bitmask).
  RuleBuilder& bitwise_and(std::uint32_t mask) {
    const std::uint32_t zero = 0;
    nftnl_expr* e = expr("bitwise");
    nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_SREG, NFT_REG_1);
    nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_DREG, NFT_REG_1);
    nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_LEN, sizeof mask);
    nftnl_expr_set(e, NFTNL_EXPR_BITWISE_MASK, &mask, sizeof mask);
    nftnl_expr_set(e, NFTNL_EXPR_BITWISE_XOR, &zero, sizeof zero);
    return add(e);
  }
  RuleBuilder& cmp(std::uint32_t op, const void* data, std::size_t len) {
    nftnl_expr* e = expr("cmp");
    nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_SREG, NFT_REG_1);
    nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_OP, op);
    nftnl_expr_set(e, NFTNL_EXPR_CMP_DATA, data, static_cast<std::uint32_t>(len));
    return add(e);
  }
  RuleBuilder& cmp_u8(std::uint8_t v) { return cmp(NFT_CMP_EQ, &v, sizeof v); }
  RuleBuilder& cmp_u32(std::uint32_t op, std::uint32_t host_order) {
    return cmp(op, &host_order, sizeof host_order);
  }
  RuleBuilder& payload(std::uint32_t base, std::uint32_t offset, std::uint32_t len) {
    nftnl_expr* e = expr("payload");
    nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_DREG, NFT_REG_1);
    nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_BASE, base);
    nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, offset);
    nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_LEN, len);
    return add(e);
  }
  RuleBuilder& lookup(const std::string& set, std::optional<std::uint32_t> set_id = {}) {
    nftnl_expr* e = expr("lookup");
    nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SREG, NFT_REG_1);
    nftnl_expr_set_str(e, NFTNL_EXPR_LOOKUP_SET, set.c_str());
    if (set_id) nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SET_ID, *set_id);
    // Flags 0 (a match, not NFT_LOOKUP_F_INV) is the kernel's default; it reports the attribute
    // in dumps, so sending it makes our rule read back as we built it (fingerprint()).
    nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_FLAGS, 0);
    return add(e);
  }
  RuleBuilder& counter() {
    nftnl_expr* e = expr("counter");
    nftnl_expr_set_u64(e, NFTNL_EXPR_CTR_PACKETS, 0);
    nftnl_expr_set_u64(e, NFTNL_EXPR_CTR_BYTES, 0);
    return add(e);
  }
  RuleBuilder& accept() {
    nftnl_expr* e = expr("immediate");
    nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
    nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_VERDICT, NF_ACCEPT);
    return add(e);
  }
  // In the inet family, reject is the family-neutral ICMPx (nft_reject_inet.c).
  RuleBuilder& reject_icmpx(std::uint8_t code) {
    nftnl_expr* e = expr("reject");
    nftnl_expr_set_u32(e, NFTNL_EXPR_REJECT_TYPE, NFT_REJECT_ICMPX_UNREACH);
    nftnl_expr_set_u8(e, NFTNL_EXPR_REJECT_CODE, code);
    return add(e);
  }

  RulePtr take() { return std::move(rule_); }

 private:
  static nftnl_expr* expr(const char* name) { return checked(nftnl_expr_alloc(name)); }
  RuleBuilder& add(nftnl_expr* e) {
    nftnl_rule_add_expr(rule_.get(), e);  // the rule owns it
    return *this;
  }
  RulePtr rule_;
};

// An anonymous constant set ("{ tcp, udp }") created in the same batch as the rule that looks
// it up: the kernel names it (the "%d" in "__set%d"); the rule refers to it by its batch id.
struct AnonSet {
  std::uint32_t id = 0;
  std::uint32_t key_type = 0;
  std::uint32_t key_len = 0;
  std::uint32_t byteorder = 0;
  std::vector<std::vector<std::uint8_t>> elements;
};

struct DesignRule {
  std::vector<AnonSet> sets;  // created before the rule
  RulePtr rule;
};

constexpr const char* kAnonName = "__set%d";
// Batch-local set ids (NFTA_SET_ID) of the named sets; anonymous ones follow.
constexpr std::uint32_t kFirstAnonId = 16;

std::vector<std::uint16_t> unique_ports(const std::vector<std::uint16_t>& ports) {
  std::vector<std::uint16_t> out;
  for (std::uint16_t p : ports) {
    if (std::find(out.begin(), out.end(), p) == out.end()) out.push_back(p);
  }
  return out;
}

// The design's chain, rule by rule (ARCHITECTURE.md, "The nftables table"); the expressions are
// what nft 1.0.6 generates for the same text, so `nft list` prints the design back.
std::vector<DesignRule> design_rules(const TableSpec& spec) {
  std::vector<DesignRule> out;
  std::uint32_t next_id = kFirstAnonId;
  auto rule = [&](std::vector<AnonSet> sets, RuleBuilder& b) {
    out.push_back(DesignRule{std::move(sets), b.take()});
  };

  {  // ct state established,related accept
    // include/uapi/linux/netfilter/nf_conntrack_common.h: NF_CT_STATE_BIT(ctinfo) = 1 << ctinfo,
    // IP_CT_ESTABLISHED = 0, IP_CT_RELATED = 1, so the bits are 2 and 4.
    constexpr std::uint32_t kEstablishedRelated = (1u << (0 + 1)) | (1u << (1 + 1));
    RuleBuilder b(spec);
    b.ct_state().bitwise_and(kEstablishedRelated).cmp_u32(NFT_CMP_NEQ, 0).accept();
    rule({}, b);
  }
  {  // oif lo accept: the loopback device is ifindex 1 in every network namespace
    // (LOOPBACK_IFINDEX, include/net/flow.h); nft resolves "lo" to it when the rule is added.
    constexpr std::uint32_t kLoopbackIfindex = 1;
    RuleBuilder b(spec);
    b.meta(NFT_META_OIF).cmp_u32(NFT_CMP_EQ, kLoopbackIfindex).accept();
    rule({}, b);
  }
  {  // icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit } accept
    AnonSet nd{next_id++,
               kTypeIcmp6Type,
               1,
               kBigEndian,
               {{kNdNeighborSolicit}, {kNdNeighborAdvert}, {kNdRouterSolicit}}};
    RuleBuilder b(spec);
    b.meta(NFT_META_NFPROTO).cmp_u8(NFPROTO_IPV6);
    b.meta(NFT_META_L4PROTO).cmp_u8(IPPROTO_ICMPV6);
    b.payload(NFT_PAYLOAD_TRANSPORT_HEADER, 0, 1).lookup(kAnonName, nd.id).accept();
    rule({std::move(nd)}, b);
  }
  {  // meta mark <mark> accept (meta mark is a host-order u32)
    RuleBuilder b(spec);
    b.meta(NFT_META_MARK).cmp_u32(NFT_CMP_EQ, spec.mark).accept();
    rule({}, b);
  }
  {  // meta l4proto { tcp, udp } th dport { 53, 853 } reject
    AnonSet protos{next_id++, kTypeInetProto, 1, kHostEndian, {{IPPROTO_TCP}, {IPPROTO_UDP}}};
    AnonSet ports{next_id++, kTypeInetService, 2, kBigEndian, {}};
    for (std::uint16_t p : unique_ports(spec.dns_ports)) {
      ports.elements.push_back({static_cast<std::uint8_t>(p >> 8), static_cast<std::uint8_t>(p)});
    }
    RuleBuilder b(spec);
    b.meta(NFT_META_L4PROTO).lookup(kAnonName, protos.id);
    // th dport: the destination port is at offset 2 of both the TCP and the UDP header.
    b.payload(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2).lookup(kAnonName, ports.id);
    b.reject_icmpx(NFT_REJECT_ICMPX_PORT_UNREACH);
    std::vector<AnonSet> sets;
    sets.push_back(std::move(protos));
    sets.push_back(std::move(ports));
    rule(std::move(sets), b);
  }
  // ip daddr @allow4 / ip6 daddr @allow6 / @nets4 / @nets6 accept. The destination address is
  // at offset 16 of the IPv4 header (RFC 791) and 24 of the IPv6 header (RFC 8200).
  const std::pair<const std::string*, int> lookups[] = {
      {&spec.allow4, 4}, {&spec.allow6, 6}, {&spec.nets4, 4}, {&spec.nets6, 6}};
  for (const auto& [name, family] : lookups) {
    RuleBuilder b(spec);
    if (family == 4) {
      b.meta(NFT_META_NFPROTO).cmp_u8(NFPROTO_IPV4).payload(NFT_PAYLOAD_NETWORK_HEADER, 16, 4);
    } else {
      b.meta(NFT_META_NFPROTO).cmp_u8(NFPROTO_IPV6).payload(NFT_PAYLOAD_NETWORK_HEADER, 24, 16);
    }
    b.lookup(*name).accept();
    rule({}, b);
  }
  {  // counter reject with icmpx admin-prohibited
    RuleBuilder b(spec);
    b.counter().reject_icmpx(NFT_REJECT_ICMPX_ADMIN_PROHIBITED);
    rule({}, b);
  }
  return out;
}

// --- objects ------------------------------------------------------------------------------------

void append_table(NftBatch& batch, const TableSpec& spec) {
  TablePtr t(checked(nftnl_table_alloc()));
  nftnl_table_set_str(t.get(), NFTNL_TABLE_NAME, spec.table.c_str());
  nftnl_table_set_u32(t.get(), NFTNL_TABLE_FLAGS, 0);
  batch.add(NFT_MSG_NEWTABLE, kFamily, NLM_F_CREATE, kObjectRoom,
            [&](nlmsghdr* nlh) { nftnl_table_nlmsg_build_payload(nlh, t.get()); });
}

void set_keybyteorder(nftnl_set* s, std::uint32_t byteorder) {
  UdataPtr ud(checked(nftnl_udata_buf_alloc(64)));
  nftnl_udata_put_u32(ud.get(), NFTNL_UDATA_SET_KEYBYTEORDER, byteorder);
  nftnl_set_set_data(s, NFTNL_SET_USERDATA, nftnl_udata_buf_data(ud.get()),
                     nftnl_udata_buf_len(ud.get()));
}

// A named set: ipv4_addr/ipv6_addr, with `flags`, and a size when non-zero.
void append_named_set(NftBatch& batch, const TableSpec& spec, const std::string& name, int family,
                      std::uint32_t flags, std::uint32_t size, std::uint32_t id) {
  SetPtr s(checked(nftnl_set_alloc()));
  nftnl_set_set_str(s.get(), NFTNL_SET_TABLE, spec.table.c_str());
  nftnl_set_set_str(s.get(), NFTNL_SET_NAME, name.c_str());
  nftnl_set_set_u32(s.get(), NFTNL_SET_FAMILY, kFamily);
  nftnl_set_set_u32(s.get(), NFTNL_SET_FLAGS, flags);
  nftnl_set_set_u32(s.get(), NFTNL_SET_KEY_TYPE, family == 4 ? kTypeIpv4Addr : kTypeIpv6Addr);
  nftnl_set_set_u32(s.get(), NFTNL_SET_KEY_LEN, family == 4 ? 4 : 16);
  nftnl_set_set_u32(s.get(), NFTNL_SET_ID, id);
  if (size != 0) nftnl_set_set_u32(s.get(), NFTNL_SET_DESC_SIZE, size);
  set_keybyteorder(s.get(), kBigEndian);
  batch.add(NFT_MSG_NEWSET, kFamily, NLM_F_CREATE, kObjectRoom,
            [&](nlmsghdr* nlh) { nftnl_set_nlmsg_build_payload(nlh, s.get()); });
}

void append_anon_set(NftBatch& batch, const TableSpec& spec, const AnonSet& a) {
  SetPtr s(checked(nftnl_set_alloc()));
  nftnl_set_set_str(s.get(), NFTNL_SET_TABLE, spec.table.c_str());
  nftnl_set_set_str(s.get(), NFTNL_SET_NAME, kAnonName);
  nftnl_set_set_u32(s.get(), NFTNL_SET_FAMILY, kFamily);
  nftnl_set_set_u32(s.get(), NFTNL_SET_FLAGS, NFT_SET_ANONYMOUS | NFT_SET_CONSTANT);
  nftnl_set_set_u32(s.get(), NFTNL_SET_KEY_TYPE, a.key_type);
  nftnl_set_set_u32(s.get(), NFTNL_SET_KEY_LEN, a.key_len);
  nftnl_set_set_u32(s.get(), NFTNL_SET_ID, a.id);
  nftnl_set_set_u32(s.get(), NFTNL_SET_DESC_SIZE, static_cast<std::uint32_t>(a.elements.size()));
  set_keybyteorder(s.get(), a.byteorder);
  batch.add(NFT_MSG_NEWSET, kFamily, NLM_F_CREATE, kObjectRoom,
            [&](nlmsghdr* nlh) { nftnl_set_nlmsg_build_payload(nlh, s.get()); });
  append_elements(
      batch, spec.table, kAnonName, a.id, NFT_MSG_NEWSETELEM, NLM_F_CREATE, a.elements.size(),
      [&](std::size_t i) { return new_elem(a.elements[i].data(), a.elements[i].size()); });
}

void append_chain(NftBatch& batch, const TableSpec& spec) {
  ChainPtr c(checked(nftnl_chain_alloc()));
  nftnl_chain_set_str(c.get(), NFTNL_CHAIN_TABLE, spec.table.c_str());
  nftnl_chain_set_str(c.get(), NFTNL_CHAIN_NAME, spec.chain.c_str());
  nftnl_chain_set_u32(c.get(), NFTNL_CHAIN_FAMILY, kFamily);
  nftnl_chain_set_u32(c.get(), NFTNL_CHAIN_HOOKNUM, NF_INET_LOCAL_OUT);
  nftnl_chain_set_s32(c.get(), NFTNL_CHAIN_PRIO, 0);  // "priority filter" (nft: NF_IP_PRI_FILTER)
  nftnl_chain_set_u32(c.get(), NFTNL_CHAIN_POLICY, NF_DROP);
  nftnl_chain_set_str(c.get(), NFTNL_CHAIN_TYPE, "filter");
  batch.add(NFT_MSG_NEWCHAIN, kFamily, NLM_F_CREATE, kObjectRoom,
            [&](nlmsghdr* nlh) { nftnl_chain_nlmsg_build_payload(nlh, c.get()); });
}

// DELRULE naming only table and chain deletes every rule of the chain
// (nf_tables_delrule -> nft_delrule_by_chain): the chain and the sets stay.
void append_flush_chain(NftBatch& batch, const TableSpec& spec) {
  RulePtr r(checked(nftnl_rule_alloc()));
  nftnl_rule_set_str(r.get(), NFTNL_RULE_TABLE, spec.table.c_str());
  nftnl_rule_set_str(r.get(), NFTNL_RULE_CHAIN, spec.chain.c_str());
  nftnl_rule_set_u32(r.get(), NFTNL_RULE_FAMILY, kFamily);
  batch.add(NFT_MSG_DELRULE, kFamily, 0, kObjectRoom,
            [&](nlmsghdr* nlh) { nftnl_rule_nlmsg_build_payload(nlh, r.get()); });
}

void append_rules(NftBatch& batch, const TableSpec& spec) {
  for (DesignRule& d : design_rules(spec)) {
    for (const AnonSet& a : d.sets) append_anon_set(batch, spec, a);
    // NLM_F_APPEND: without it the kernel inserts at the head of the chain (nf_tables_newrule).
    batch.add(NFT_MSG_NEWRULE, kFamily, NLM_F_CREATE | NLM_F_APPEND, kRuleRoom,
              [&](nlmsghdr* nlh) { nftnl_rule_nlmsg_build_payload(nlh, d.rule.get()); });
  }
}

// --- fingerprints -------------------------------------------------------------------------------

std::string hex(const void* data, std::size_t len) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  const auto* p = static_cast<const std::uint8_t*>(data);
  for (std::size_t i = 0; i < len; ++i) {
    out += kDigits[p[i] >> 4];
    out += kDigits[p[i] & 0xf];
  }
  return out;
}

std::string normalise(std::string text) {
  static const std::regex anon("__set[0-9]+");
  static const std::regex ctr("pkts [0-9]+ bytes [0-9]+");
  text = std::regex_replace(text, anon, "__set%d");
  return std::regex_replace(text, ctr, "pkts 0 bytes 0");
}

// The rule's expressions in libnftnl's notation; `anon_elements(set_name)` gives the sorted hex
// keys of an anonymous set the rule looks up.
template <class AnonElements>
std::string fingerprint(const nftnl_rule* r, AnonElements&& anon_elements) {
  std::string out;
  nftnl_expr_iter* it = checked(nftnl_expr_iter_create(r));
  for (nftnl_expr* e = nftnl_expr_iter_next(it); e != nullptr; e = nftnl_expr_iter_next(it)) {
    char buf[512];
    nftnl_expr_snprintf(buf, sizeof buf, e, NFTNL_OUTPUT_DEFAULT, 0);
    out += nftnl_expr_get_str(e, NFTNL_EXPR_NAME);
    out += ' ';
    out += buf;
    if (std::strcmp(nftnl_expr_get_str(e, NFTNL_EXPR_NAME), "lookup") == 0) {
      const char* set = nftnl_expr_get_str(e, NFTNL_EXPR_LOOKUP_SET);
      if (set != nullptr && std::strncmp(set, "__set", 5) == 0) out += anon_elements(set);
    }
    out += "; ";
  }
  nftnl_expr_iter_destroy(it);
  return normalise(out);
}

std::string join_sorted(std::vector<std::string> keys) {
  std::sort(keys.begin(), keys.end());
  std::string out = "{";
  for (const std::string& k : keys) out += k + ",";
  return out + "}";
}

// --- control plane ------------------------------------------------------------------------------

[[noreturn]] void fail(const std::string& what) { throw std::runtime_error(what); }

std::string where(const TableSpec& spec) { return "nft table inet " + spec.table; }

std::optional<TablePtr> get_table(NftControlSocket& sock, const TableSpec& spec) {
  TablePtr t(checked(nftnl_table_alloc()));
  nftnl_table_set_str(t.get(), NFTNL_TABLE_NAME, spec.table.c_str());
  TablePtr got(checked(nftnl_table_alloc()));
  const std::error_code ec = sock.request(
      NFT_MSG_GETTABLE, kFamily, NLM_F_REQUEST,
      [&](nlmsghdr* nlh) { nftnl_table_nlmsg_build_payload(nlh, t.get()); },
      [&](const nlmsghdr* nlh) { return nftnl_table_nlmsg_parse(nlh, got.get()) >= 0; });
  if (ec == std::errc::no_such_file_or_directory) return std::nullopt;
  if (ec) fail(where(spec) + ": reading the table: " + ec.message());
  return got;
}

std::optional<SetPtr> get_set(NftControlSocket& sock, const TableSpec& spec,
                              const std::string& name) {
  SetPtr q(checked(nftnl_set_alloc()));
  nftnl_set_set_str(q.get(), NFTNL_SET_TABLE, spec.table.c_str());
  nftnl_set_set_str(q.get(), NFTNL_SET_NAME, name.c_str());
  SetPtr got(checked(nftnl_set_alloc()));
  const std::error_code ec = sock.request(
      NFT_MSG_GETSET, kFamily, NLM_F_REQUEST,
      [&](nlmsghdr* nlh) { nftnl_set_nlmsg_build_payload(nlh, q.get()); },
      [&](const nlmsghdr* nlh) { return nftnl_set_nlmsg_parse(nlh, got.get()) >= 0; });
  if (ec == std::errc::no_such_file_or_directory) return std::nullopt;
  if (ec) fail(where(spec) + ": reading set " + name + ": " + ec.message());
  return got;
}

std::optional<ChainPtr> get_chain(NftControlSocket& sock, const TableSpec& spec) {
  ChainPtr q(checked(nftnl_chain_alloc()));
  nftnl_chain_set_str(q.get(), NFTNL_CHAIN_TABLE, spec.table.c_str());
  nftnl_chain_set_str(q.get(), NFTNL_CHAIN_NAME, spec.chain.c_str());
  ChainPtr got(checked(nftnl_chain_alloc()));
  const std::error_code ec = sock.request(
      NFT_MSG_GETCHAIN, kFamily, NLM_F_REQUEST,
      [&](nlmsghdr* nlh) { nftnl_chain_nlmsg_build_payload(nlh, q.get()); },
      [&](const nlmsghdr* nlh) { return nftnl_chain_nlmsg_parse(nlh, got.get()) >= 0; });
  if (ec == std::errc::no_such_file_or_directory) return std::nullopt;
  if (ec) fail(where(spec) + ": reading chain " + spec.chain + ": " + ec.message());
  return got;
}

// Every element of a set, each as its own nftnl_set_elem inside `into`.
std::error_code dump_elements(NftControlSocket& sock, const TableSpec& spec, const std::string& set,
                              SetPtr& into) {
  SetPtr q(checked(nftnl_set_alloc()));
  nftnl_set_set_str(q.get(), NFTNL_SET_TABLE, spec.table.c_str());
  nftnl_set_set_str(q.get(), NFTNL_SET_NAME, set.c_str());
  into.reset(checked(nftnl_set_alloc()));
  return sock.request(
      NFT_MSG_GETSETELEM, kFamily, NLM_F_REQUEST | NLM_F_DUMP,
      [&](nlmsghdr* nlh) { nftnl_set_elems_nlmsg_build_payload(nlh, q.get()); },
      [&](const nlmsghdr* nlh) { return nftnl_set_elems_nlmsg_parse(nlh, into.get()) >= 0; },
      [&] { into.reset(checked(nftnl_set_alloc())); });
}

template <class Fn>
void for_each_elem(nftnl_set* s, Fn&& fn) {
  nftnl_set_elems_iter* it = checked(nftnl_set_elems_iter_create(s));
  for (nftnl_set_elem* e = nftnl_set_elems_iter_next(it); e != nullptr;
       e = nftnl_set_elems_iter_next(it)) {
    fn(e);
  }
  nftnl_set_elems_iter_destroy(it);
}

std::vector<std::string> kernel_rule_fingerprints(NftControlSocket& sock, const TableSpec& spec) {
  RulePtr q(checked(nftnl_rule_alloc()));
  nftnl_rule_set_str(q.get(), NFTNL_RULE_TABLE, spec.table.c_str());
  nftnl_rule_set_str(q.get(), NFTNL_RULE_CHAIN, spec.chain.c_str());
  std::vector<RulePtr> rules;
  const std::error_code ec = sock.request(
      NFT_MSG_GETRULE, kFamily, NLM_F_REQUEST | NLM_F_DUMP,
      [&](nlmsghdr* nlh) { nftnl_rule_nlmsg_build_payload(nlh, q.get()); },
      [&](const nlmsghdr* nlh) {
        RulePtr r(checked(nftnl_rule_alloc()));
        if (nftnl_rule_nlmsg_parse(nlh, r.get()) < 0) return false;
        rules.push_back(std::move(r));
        return true;
      },
      [&] { rules.clear(); });
  if (ec) fail(where(spec) + ": reading the rules of chain " + spec.chain + ": " + ec.message());

  std::vector<std::string> out;
  for (const RulePtr& r : rules) {
    out.push_back(fingerprint(r.get(), [&](const char* set) {
      SetPtr elems;
      if (const std::error_code e = dump_elements(sock, spec, set, elems)) {
        fail(where(spec) + ": reading anonymous set " + set + ": " + e.message());
      }
      std::vector<std::string> keys;
      for_each_elem(elems.get(), [&](nftnl_set_elem* e) {
        std::uint32_t len = 0;
        const void* key = nftnl_set_elem_get(e, NFTNL_SET_ELEM_KEY, &len);
        keys.push_back(hex(key, len));
      });
      return join_sorted(std::move(keys));
    }));
  }
  return out;
}

std::string type_name(std::uint32_t key_type, std::uint32_t len) {
  if (key_type == kTypeIpv4Addr) return "ipv4_addr";
  if (key_type == kTypeIpv6Addr) return "ipv6_addr";
  return "datatype " + std::to_string(key_type) + " of " + std::to_string(len) + " bytes";
}

// Problems of an existing set against what dnsd needs; empty when fine.
std::vector<std::string> set_problems(const nftnl_set* s, const std::string& name, int family,
                                      bool interval) {
  std::vector<std::string> out;
  const std::uint32_t type = nftnl_set_get_u32(s, NFTNL_SET_KEY_TYPE);
  const std::uint32_t len = nftnl_set_get_u32(s, NFTNL_SET_KEY_LEN);
  const std::uint32_t flags = nftnl_set_get_u32(s, NFTNL_SET_FLAGS);
  const std::uint32_t want_type = family == 4 ? kTypeIpv4Addr : kTypeIpv6Addr;
  if (type != want_type || len != key_len(static_cast<std::uint8_t>(family))) {
    out.push_back("set " + name + " has type " + type_name(type, len) + ", expected " +
                  type_name(want_type, static_cast<std::uint32_t>(
                                           key_len(static_cast<std::uint8_t>(family)))));
  }
  if ((flags & (NFT_SET_MAP | NFT_SET_OBJECT)) != 0) {
    out.push_back("set " + name + " is a map; expected a plain set");
  }
  if (interval) {
    if ((flags & NFT_SET_INTERVAL) == 0) {
      out.push_back("set " + name + " lacks 'flags interval' (it holds networks)");
    }
  } else {
    if ((flags & NFT_SET_TIMEOUT) == 0) {
      out.push_back("set " + name + " lacks 'flags timeout' (dnsd's elements expire)");
    }
    if ((flags & NFT_SET_INTERVAL) != 0) {
      out.push_back("set " + name +
                    " has 'flags interval'; dnsd adds single addresses, remove the flag");
    }
  }
  return out;
}

std::string join(const std::vector<std::string>& parts, const char* sep) {
  std::string out;
  for (const std::string& p : parts) {
    if (!out.empty()) out += sep;
    out += p;
  }
  return out;
}

const char* message_name(std::uint16_t type) {
  switch (type) {
    case NFT_MSG_NEWTABLE:
      return "add table";
    case NFT_MSG_NEWCHAIN:
      return "add chain";
    case NFT_MSG_NEWRULE:
      return "add rule";
    case NFT_MSG_DELRULE:
      return "flush chain";
    case NFT_MSG_NEWSET:
      return "add set";
    case NFT_MSG_DELSET:
      return "delete set";
    case NFT_MSG_NEWSETELEM:
      return "add element";
    case NFT_MSG_DELSETELEM:
      return "delete element";
    default:
      return "message";
  }
}

// "add rule (message 12)" for the index the kernel reported.
std::string describe(const NftBatch& batch, std::optional<std::size_t> index) {
  if (!index) return "batch";
  const std::span<const std::byte> b = batch.bytes();
  int left = static_cast<int>(b.size());
  std::size_t i = 0;
  // The first message is the batch begin; the kernel's index counts nf_tables messages only.
  auto* nlh = reinterpret_cast<const nlmsghdr*>(b.data());
  for (nlh = mnl_nlmsg_next(nlh, &left); mnl_nlmsg_ok(nlh, left);
       nlh = mnl_nlmsg_next(nlh, &left)) {
    if (i++ == *index) {
      return std::string(message_name(static_cast<std::uint16_t>(nlh->nlmsg_type & 0xff))) +
             " (message " + std::to_string(*index + 1) + " of " + std::to_string(batch.size()) +
             ")";
    }
  }
  return "message " + std::to_string(*index + 1);
}

void commit_or_throw(NftControlSocket& sock, NftBatch& batch, const std::string& what) {
  const NftControlSocket::CommitResult r = sock.commit(batch);
  if (r.error) fail(what + ": " + describe(batch, r.failed_message) + ": " + r.error.message());
}

void require_valid(const TableSpec& spec) {
  if (const std::string why = validate(spec); !why.empty()) fail("nft table spec: " + why);
}

}  // namespace

// --- public -------------------------------------------------------------------------------------

std::string validate(const TableSpec& spec) {
  const std::pair<const char*, const std::string*> names[] = {
      {"table", &spec.table}, {"allow4", &spec.allow4}, {"allow6", &spec.allow6},
      {"nets4", &spec.nets4}, {"nets6", &spec.nets6},   {"chain", &spec.chain}};
  for (const auto& [what, name] : names) {
    const bool optional = name == &spec.nets4 || name == &spec.nets6;
    if (name->empty()) {
      if (optional) continue;
      return std::string(what) + " name is empty";
    }
    if (name->size() >= NFT_NAME_MAXLEN) {
      return std::string(what) + " name is longer than " + std::to_string(NFT_NAME_MAXLEN - 1) +
             " bytes";
    }
    // The kernel expands "%d" in set names (nf_tables_set_alloc_name); NUL would cut the name.
    if (name->find_first_of(std::string_view("%\0", 2)) != std::string::npos) {
      return std::string(what) + " name \"" + *name + "\" holds '%' or NUL";
    }
  }
  // "meta mark 0 accept" would accept every unmarked packet: the chain would enforce nothing.
  if (spec.mark == 0) return "mark is 0 (dnsd's upstream sockets need a non-zero SO_MARK)";
  if (spec.dns_ports.empty()) return "no DNS port to reject";
  if (spec.dns_ports.size() > kMaxDnsPorts) {
    return "more than " + std::to_string(kMaxDnsPorts) + " DNS ports";
  }
  if (spec.set_size == 0) return "set size is 0";
  return {};
}

bool append_add_elements(NftBatch& batch, const TableSpec& spec,
                         std::span<const SetElement> elements) {
  if (!std::all_of(elements.begin(), elements.end(), valid_element)) return false;
  for (const std::uint8_t family : {std::uint8_t{4}, std::uint8_t{6}}) {
    std::vector<const SetElement*> mine;
    for (const SetElement& e : elements) {
      if (e.address.family == family) mine.push_back(&e);
    }
    append_elements(batch, spec.table, set_for(spec, family), std::nullopt, NFT_MSG_NEWSETELEM,
                    NLM_F_CREATE, mine.size(), [&](std::size_t i) {
                      const SetElement& e = *mine[i];
                      nftnl_set_elem* el = new_elem(e.address.bytes.data(), key_len(family));
                      // Milliseconds on the wire (nf_tables_api.c, nf_msecs_to_jiffies64).
                      nftnl_set_elem_set_u64(el, NFTNL_SET_ELEM_TIMEOUT,
                                             static_cast<std::uint64_t>(e.timeout.count()));
                      nftnl_set_elem_set_u64(el, NFTNL_SET_ELEM_EXPIRATION,
                                             static_cast<std::uint64_t>(e.expires.count()));
                      return el;
                    });
  }
  return true;
}

bool append_delete_elements(NftBatch& batch, const TableSpec& spec,
                            std::span<const NftAddress> addresses) {
  for (const NftAddress& a : addresses) {
    if (a.family != 4 && a.family != 6) return false;
  }
  for (const std::uint8_t family : {std::uint8_t{4}, std::uint8_t{6}}) {
    std::vector<const NftAddress*> mine;
    for (const NftAddress& a : addresses) {
      if (a.family == family) mine.push_back(&a);
    }
    append_elements(
        batch, spec.table, set_for(spec, family), std::nullopt, NFT_MSG_DELSETELEM, 0, mine.size(),
        [&](std::size_t i) { return new_elem(mine[i]->bytes.data(), key_len(family)); });
  }
  return true;
}

void append_replace_networks(NftBatch& batch, const TableSpec& spec,
                             std::span<const egress::Cidr> networks) {
  using U128 = unsigned __int128;
  for (const std::uint8_t family : {std::uint8_t{4}, std::uint8_t{6}}) {
    const std::string& set = family == 4 ? spec.nets4 : spec.nets6;
    if (set.empty()) continue;
    const std::size_t len = key_len(family);
    const unsigned bits = static_cast<unsigned>(len * 8);
    const U128 top = bits == 128 ? ~U128{0} : ((U128{1} << bits) - 1);

    // [first, last] of each network, as integers.
    std::vector<std::pair<U128, U128>> ranges;
    for (const egress::Cidr& c : networks) {
      if (c.family != family || c.prefix > bits) continue;
      U128 v = 0;
      for (std::size_t i = 0; i < len; ++i) v = (v << 8) | c.addr[i];
      const U128 host = c.prefix == 0 ? top : ((U128{1} << (bits - c.prefix)) - 1);
      ranges.emplace_back(v & ~host & top, (v & ~host & top) | host);
    }
    std::sort(ranges.begin(), ranges.end());
    // Merge overlapping and adjacent ranges: the kernel refuses overlapping intervals.
    std::vector<std::pair<U128, U128>> merged;
    for (const auto& r : ranges) {
      if (!merged.empty() && (merged.back().second == top || r.first <= merged.back().second + 1)) {
        merged.back().second = std::max(merged.back().second, r.second);
      } else {
        merged.push_back(r);
      }
    }

    struct Key {
      std::array<std::uint8_t, 16> bytes{};
      bool end = false;   // NFT_SET_ELEM_INTERVAL_END
      bool open = false;  // the interval runs to the top of the address space
    };
    auto key_of = [&](U128 v) {
      Key k;
      for (std::size_t i = len; i-- > 0;) {
        k.bytes[i] = static_cast<std::uint8_t>(v & 0xff);
        v >>= 8;
      }
      return k;
    };
    std::vector<Key> keys;
    // nft writes an end element at 0 before a first interval that does not start at 0 (what the
    // rbtree backend of older kernels expected); doing the same keeps `nft list` output identical.
    if (!merged.empty() && merged.front().first != 0) {
      Key k = key_of(0);
      k.end = true;
      keys.push_back(k);
    }
    for (const auto& [first, last] : merged) {
      Key start = key_of(first);
      start.open = last == top;
      keys.push_back(start);
      if (last != top) {
        Key end = key_of(last + 1);
        end.end = true;
        keys.push_back(end);
      }
    }

    // Flush: DELSETELEM without elements (nf_tables_delsetelem -> nft_set_flush).
    SetPtr s(checked(nftnl_set_alloc()));
    nftnl_set_set_str(s.get(), NFTNL_SET_TABLE, spec.table.c_str());
    nftnl_set_set_str(s.get(), NFTNL_SET_NAME, set.c_str());
    batch.add(NFT_MSG_DELSETELEM, kFamily, 0, kObjectRoom,
              [&](nlmsghdr* nlh) { nftnl_set_elems_nlmsg_build_payload(nlh, s.get()); });

    append_elements(batch, spec.table, set, std::nullopt, NFT_MSG_NEWSETELEM, NLM_F_CREATE,
                    keys.size(), [&](std::size_t i) {
                      nftnl_set_elem* e = new_elem(keys[i].bytes.data(), len);
                      if (keys[i].end) {
                        nftnl_set_elem_set_u32(e, NFTNL_SET_ELEM_FLAGS, NFT_SET_ELEM_INTERVAL_END);
                      }
                      if (keys[i].open) {
                        // nft marks a half-open last interval in the element's userdata
                        // (libnftnl udata.h, NFTNL_SET_ELEM_F_INTERVAL_OPEN).
                        UdataPtr ud(checked(nftnl_udata_buf_alloc(16)));
                        nftnl_udata_put_u32(ud.get(), NFTNL_UDATA_SET_ELEM_FLAGS,
                                            NFTNL_SET_ELEM_F_INTERVAL_OPEN);
                        nftnl_set_elem_set(e, NFTNL_SET_ELEM_USERDATA,
                                           nftnl_udata_buf_data(ud.get()),
                                           nftnl_udata_buf_len(ud.get()));
                      }
                      return e;
                    });
  }
}

void append_enforce_table(NftBatch& batch, const TableSpec& spec, const ExistingTable& existing) {
  if (!existing.table) append_table(batch, spec);
  std::uint32_t id = 1;
  const struct {
    const std::string* name;
    bool exists;
    int family;
    bool timeout;
  } sets[] = {{&spec.allow4, existing.table && existing.allow4, 4, true},
              {&spec.allow6, existing.table && existing.allow6, 6, true},
              {&spec.nets4, existing.table && existing.nets4, 4, false},
              {&spec.nets6, existing.table && existing.nets6, 6, false}};
  for (const auto& s : sets) {
    const std::uint32_t set_id = id++;
    if (s.exists) continue;
    append_named_set(batch, spec, *s.name, s.family, s.timeout ? NFT_SET_TIMEOUT : NFT_SET_INTERVAL,
                     s.timeout ? spec.set_size : 0, set_id);
  }
  const bool chain = existing.table && existing.chain;
  if (!chain) {
    append_chain(batch, spec);
    append_rules(batch, spec);
    return;
  }
  // An existing base chain's policy is updated by NEWCHAIN with the same hook (nf_tables_updchain).
  if (!existing.chain_policy_drop) append_chain(batch, spec);
  if (!existing.rules_match) {
    append_flush_chain(batch, spec);
    append_rules(batch, spec);
  }
}

std::vector<std::string> expected_rule_fingerprints(const TableSpec& spec) {
  std::vector<std::string> out;
  for (const DesignRule& d : design_rules(spec)) {
    std::size_t next = 0;  // a rule looks its anonymous sets up in the order they are listed
    out.push_back(fingerprint(d.rule.get(), [&](const char*) {
      std::vector<std::string> keys;
      if (next < d.sets.size()) {
        for (const auto& k : d.sets[next].elements) keys.push_back(hex(k.data(), k.size()));
      }
      ++next;
      return join_sorted(std::move(keys));
    }));
  }
  return out;
}

namespace {

// What of the enforce-mode table exists, read from the kernel; `problems` gets what exists in a
// shape the kernel cannot change in place (set key type or flags, chain hook or priority).
ExistingTable read_existing(NftControlSocket& sock, const TableSpec& spec,
                            std::vector<std::string>& problems) {
  ExistingTable existing;
  existing.table = get_table(sock, spec).has_value();
  if (existing.table) {
    const struct {
      const std::string* name;
      bool* exists;
      int family;
      bool interval;
    } sets[] = {{&spec.allow4, &existing.allow4, 4, false},
                {&spec.allow6, &existing.allow6, 6, false},
                {&spec.nets4, &existing.nets4, 4, true},
                {&spec.nets6, &existing.nets6, 6, true}};
    for (const auto& s : sets) {
      const std::optional<SetPtr> got = get_set(sock, spec, *s.name);
      *s.exists = got.has_value();
      if (got) {
        for (std::string& p : set_problems(got->get(), *s.name, s.family, s.interval)) {
          problems.push_back(std::move(p));
        }
      }
    }
    if (const std::optional<ChainPtr> chain = get_chain(sock, spec)) {
      existing.chain = true;
      const nftnl_chain* c = chain->get();
      const bool base = nftnl_chain_is_set(c, NFTNL_CHAIN_HOOKNUM);
      const char* type =
          nftnl_chain_is_set(c, NFTNL_CHAIN_TYPE) ? nftnl_chain_get_str(c, NFTNL_CHAIN_TYPE) : "";
      if (!base || nftnl_chain_get_u32(c, NFTNL_CHAIN_HOOKNUM) != NF_INET_LOCAL_OUT ||
          nftnl_chain_get_s32(c, NFTNL_CHAIN_PRIO) != 0 || std::strcmp(type, "filter") != 0) {
        problems.push_back("chain " + spec.chain +
                           " exists but is not 'type filter hook output priority filter'");
      }
      existing.chain_policy_drop = nftnl_chain_is_set(c, NFTNL_CHAIN_POLICY) &&
                                   nftnl_chain_get_u32(c, NFTNL_CHAIN_POLICY) == NF_DROP;
    }
    if (existing.chain && problems.empty())
      existing.rules_match =
          kernel_rule_fingerprints(sock, spec) == expected_rule_fingerprints(spec);
  }
  return existing;
}

void require_enforce_spec(const TableSpec& spec) {
  require_valid(spec);
  if (spec.nets4.empty() || spec.nets6.empty())
    fail("nft table spec: enforce mode needs nets4 and nets6");
}

}  // namespace

BootstrapResult bootstrap_enforce(const TableSpec& spec) {
  require_enforce_spec(spec);
  NftControlSocket sock;
  BootstrapResult result;
  std::vector<std::string> problems;
  const ExistingTable existing = read_existing(sock, spec, problems);
  if (!problems.empty()) {
    fail(where(spec) + " (enforce mode): " + join(problems, "; ") +
         ". The kernel cannot change these in place: delete the table (nft delete table inet " +
         spec.table + ") and restart dnsd");
  }

  NftBatch batch;
  append_enforce_table(batch, spec, existing);
  commit_or_throw(sock, batch, where(spec) + ": bootstrap");
  result.created_table = !existing.table;
  if (!existing.table || !existing.allow4) result.created_sets.push_back(spec.allow4);
  if (!existing.table || !existing.allow6) result.created_sets.push_back(spec.allow6);
  if (!existing.table || !existing.nets4) result.created_sets.push_back(spec.nets4);
  if (!existing.table || !existing.nets6) result.created_sets.push_back(spec.nets6);
  result.created_chain = !existing.chain;
  result.replaced_rules = existing.chain && (!existing.rules_match || !existing.chain_policy_drop);
  return result;
}

std::vector<std::string> check_enforce(const TableSpec& spec) {
  require_enforce_spec(spec);
  NftControlSocket sock;
  std::vector<std::string> problems;
  const ExistingTable e = read_existing(sock, spec, problems);
  if (!e.table) return {where(spec) + " not found"};
  const std::pair<const std::string*, bool> sets[] = {
      {&spec.allow4, e.allow4}, {&spec.allow6, e.allow6}, {&spec.nets4, e.nets4},
      {&spec.nets6, e.nets6}};
  for (const auto& [name, exists] : sets) {
    if (!exists) problems.push_back("set " + *name + " not found");
  }
  if (!e.chain) {
    problems.push_back("chain " + spec.chain + " not found");
  } else {
    if (!e.chain_policy_drop) problems.push_back("chain " + spec.chain + " has no policy drop");
    if (!e.rules_match) {
      problems.push_back("chain " + spec.chain + " holds other rules than dnsd's");
    }
  }
  return problems;
}

void check_sets(const TableSpec& spec) {
  require_valid(spec);
  NftControlSocket sock;
  if (!get_table(sock, spec)) {
    fail(where(spec) +
         " not found: in sets mode an admin creates the table and its sets "
         "(or run dnsd with --nft-mode enforce)");
  }
  std::vector<std::string> problems;
  const struct {
    const std::string* name;
    int family;
    bool interval;
  } sets[] = {{&spec.allow4, 4, false},
              {&spec.allow6, 6, false},
              {&spec.nets4, 4, true},
              {&spec.nets6, 6, true}};
  for (const auto& s : sets) {
    if (s.name->empty()) continue;  // no networks: nets4/nets6 unused
    const std::optional<SetPtr> got = get_set(sock, spec, *s.name);
    if (!got) {
      problems.push_back("set " + *s.name + " not found");
      continue;
    }
    for (std::string& p : set_problems(got->get(), *s.name, s.family, s.interval)) {
      problems.push_back(std::move(p));
    }
  }
  if (!problems.empty()) fail(where(spec) + ": " + join(problems, "; "));
}

std::vector<SetElement> list_elements(const TableSpec& spec) {
  require_valid(spec);
  NftControlSocket sock;
  std::vector<SetElement> out;
  for (const std::uint8_t family : {std::uint8_t{4}, std::uint8_t{6}}) {
    const std::string& name = set_for(spec, family);
    SetPtr elems;
    if (const std::error_code ec = dump_elements(sock, spec, name, elems)) {
      fail(where(spec) + ": reading the elements of set " + name + ": " + ec.message());
    }
    for_each_elem(elems.get(), [&](nftnl_set_elem* e) {
      std::uint32_t len = 0;
      const void* key = nftnl_set_elem_get(e, NFTNL_SET_ELEM_KEY, &len);
      if (key == nullptr || len != key_len(family)) return;  // not an address of this family
      SetElement el;
      el.address.family = family;
      std::memcpy(el.address.bytes.data(), key, len);
      if (nftnl_set_elem_is_set(e, NFTNL_SET_ELEM_TIMEOUT)) {
        el.timeout = std::chrono::milliseconds(
            static_cast<std::int64_t>(nftnl_set_elem_get_u64(e, NFTNL_SET_ELEM_TIMEOUT)));
      }
      if (nftnl_set_elem_is_set(e, NFTNL_SET_ELEM_EXPIRATION)) {
        el.expires = std::chrono::milliseconds(
            static_cast<std::int64_t>(nftnl_set_elem_get_u64(e, NFTNL_SET_ELEM_EXPIRATION)));
      }
      out.push_back(el);
    });
  }
  return out;
}

bool probe_renewal(const TableSpec& spec) {
  require_valid(spec);
  using std::chrono::milliseconds;
  // Short first expiration, long second: renewed if the element then expires far later than
  // the first expiration allowed. The margin absorbs jiffies rounding and a slow machine.
  constexpr milliseconds kTimeout{600000};
  constexpr milliseconds kShort{5000};
  constexpr milliseconds kRenewedAbove{300000};
  TableSpec probe = spec;
  probe.allow4 = "egress_probe";
  const std::string what = where(spec) + ": renewal probe";

  NftControlSocket sock;
  struct DeleteProbe {  // the temporary set goes, whatever happens
    NftControlSocket& sock;
    const TableSpec& probe;
    ~DeleteProbe() {
      SetPtr s(nftnl_set_alloc());
      if (!s) return;
      nftnl_set_set_str(s.get(), NFTNL_SET_TABLE, probe.table.c_str());
      nftnl_set_set_str(s.get(), NFTNL_SET_NAME, probe.allow4.c_str());
      NftBatch b;
      b.add(NFT_MSG_DELSET, kFamily, 0, kObjectRoom,
            [&](nlmsghdr* nlh) { nftnl_set_nlmsg_build_payload(nlh, s.get()); });
      (void)sock.commit(b);  // best effort: nothing to do about a failure here
    }
  };

  NftBatch create;
  append_named_set(create, probe, probe.allow4, 4, NFT_SET_TIMEOUT, 0, 1);
  // Flush in case a crashed probe left the set behind with the element in it.
  {
    SetPtr s(checked(nftnl_set_alloc()));
    nftnl_set_set_str(s.get(), NFTNL_SET_TABLE, probe.table.c_str());
    nftnl_set_set_str(s.get(), NFTNL_SET_NAME, probe.allow4.c_str());
    create.add(NFT_MSG_DELSETELEM, kFamily, 0, kObjectRoom,
               [&](nlmsghdr* nlh) { nftnl_set_elems_nlmsg_build_payload(nlh, s.get()); });
  }
  SetElement e;
  e.address.family = 4;
  e.address.bytes = {192, 0, 2, 1};  // TEST-NET-1 (RFC 5737): never a real destination
  e.timeout = kTimeout;
  e.expires = kShort;
  if (!append_add_elements(create, probe, {&e, 1})) fail(what + ": invalid element");
  commit_or_throw(sock, create, what);
  DeleteProbe cleanup{sock, probe};

  NftBatch renew;
  e.expires = kTimeout;
  if (!append_add_elements(renew, probe, {&e, 1})) fail(what + ": invalid element");
  commit_or_throw(sock, renew, what);

  SetPtr elems;
  if (const std::error_code ec = dump_elements(sock, probe, probe.allow4, elems)) {
    fail(what + ": reading back: " + ec.message());
  }
  std::optional<milliseconds> expires;
  for_each_elem(elems.get(), [&](nftnl_set_elem* el) {
    if (nftnl_set_elem_is_set(el, NFTNL_SET_ELEM_EXPIRATION)) {
      expires = milliseconds(
          static_cast<std::int64_t>(nftnl_set_elem_get_u64(el, NFTNL_SET_ELEM_EXPIRATION)));
    }
  });
  if (!expires) fail(what + ": the probe element is missing or has no expiration");
  return *expires > kRenewedAbove;
}

}  // namespace dnsd
