// nftables message building (dnsd/nft_table.h, dnsd/nft_netlink.h's NftBatch): the batches are
// walked message by message and parsed back with libnftnl's own parsers. No privileges needed.
#include <arpa/inet.h>
#include <doctest/doctest.h>
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

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/cidr.h"
#include "dnsd/nft_netlink.h"
#include "dnsd/nft_table.h"

namespace {

using dnsd::NftAddress;
using dnsd::NftBatch;
using dnsd::SetElement;
using dnsd::TableSpec;
using std::chrono::milliseconds;

// One message of a batch, copied out (aligned for libnftnl's parsers).
struct Msg {
  std::vector<std::uint32_t> storage;  // 4-byte aligned, as netlink wants
  const nlmsghdr* nlh() const { return reinterpret_cast<const nlmsghdr*>(storage.data()); }
  std::uint16_t subsys() const { return static_cast<std::uint16_t>(nlh()->nlmsg_type >> 8); }
  std::uint16_t type() const { return static_cast<std::uint16_t>(nlh()->nlmsg_type & 0xff); }
  std::uint16_t flags() const { return nlh()->nlmsg_flags; }
  std::uint32_t seq() const { return nlh()->nlmsg_seq; }
  std::uint8_t family() const {
    nfgenmsg g;
    std::memcpy(&g, reinterpret_cast<const std::byte*>(nlh()) + NLMSG_HDRLEN, sizeof g);
    return g.nfgen_family;
  }
  std::uint16_t res_id() const {
    nfgenmsg g;
    std::memcpy(&g, reinterpret_cast<const std::byte*>(nlh()) + NLMSG_HDRLEN, sizeof g);
    return ntohs(g.res_id);
  }
};

std::vector<Msg> split(std::span<const std::byte> bytes) {
  std::vector<Msg> out;
  std::size_t off = 0;
  while (bytes.size() - off >= sizeof(nlmsghdr)) {
    nlmsghdr h;
    std::memcpy(&h, bytes.data() + off, sizeof h);
    REQUIRE(h.nlmsg_len >= sizeof(nlmsghdr));
    REQUIRE(h.nlmsg_len <= bytes.size() - off);
    Msg m;
    m.storage.resize((h.nlmsg_len + 3) / 4);
    std::memcpy(m.storage.data(), bytes.data() + off, h.nlmsg_len);
    out.push_back(std::move(m));
    off += NLMSG_ALIGN(h.nlmsg_len);
  }
  CHECK(off == bytes.size());
  return out;
}

// The nf_tables messages of a sealed batch, after checking the begin/end markers.
std::vector<Msg> body(NftBatch& batch, std::uint32_t first = 100) {
  std::vector<Msg> all = split(batch.seal(first));
  REQUIRE(all.size() == batch.size() + 2);
  CHECK(all.front().nlh()->nlmsg_type == NFNL_MSG_BATCH_BEGIN);
  CHECK(all.back().nlh()->nlmsg_type == NFNL_MSG_BATCH_END);
  CHECK(all.front().res_id() == NFNL_SUBSYS_NFTABLES);
  for (std::size_t i = 0; i < all.size(); ++i) CHECK(all[i].seq() == first + i);
  return {all.begin() + 1, all.end() - 1};
}

struct SetFree {
  void operator()(nftnl_set* s) const { nftnl_set_free(s); }
};
using SetPtr = std::unique_ptr<nftnl_set, SetFree>;

struct Elem {
  std::vector<std::uint8_t> key;
  std::uint32_t flags = 0;
  std::optional<std::uint64_t> timeout, expiration;
  bool open = false;  // userdata carries NFTNL_SET_ELEM_F_INTERVAL_OPEN
};

struct ElemMsg {
  std::string table, set;
  std::vector<Elem> elems;
};

int udata_open_cb(const nftnl_udata* attr, void* data) {
  if (nftnl_udata_type(attr) == NFTNL_UDATA_SET_ELEM_FLAGS && nftnl_udata_len(attr) == 4) {
    *static_cast<bool*>(data) = (nftnl_udata_get_u32(attr) & NFTNL_SET_ELEM_F_INTERVAL_OPEN) != 0;
  }
  return 0;
}

ElemMsg parse_elems(const Msg& msg) {
  // libnftnl numbers the element nests of a request 1, 2, 3... (the kernel ignores the nest
  // type, nla_for_each_nested) but its parser accepts only NFTA_LIST_ELEM, what dumps use.
  Msg m = msg;
  auto* nlh = reinterpret_cast<nlmsghdr*>(m.storage.data());
  const auto* end = static_cast<const char*>(mnl_nlmsg_get_payload_tail(nlh));
  for (auto* attr = static_cast<nlattr*>(mnl_nlmsg_get_payload_offset(nlh, sizeof(nfgenmsg)));
       mnl_attr_ok(attr, static_cast<int>(end - reinterpret_cast<const char*>(attr)));
       attr = mnl_attr_next(attr)) {
    if (mnl_attr_get_type(attr) != NFTA_SET_ELEM_LIST_ELEMENTS) continue;
    const auto* nest_end = reinterpret_cast<const char*>(attr) + mnl_attr_get_len(attr);
    for (auto* e = static_cast<nlattr*>(mnl_attr_get_payload(attr));
         mnl_attr_ok(e, static_cast<int>(nest_end - reinterpret_cast<const char*>(e)));
         e = mnl_attr_next(e)) {
      e->nla_type = static_cast<std::uint16_t>((e->nla_type & ~NLA_TYPE_MASK) | NFTA_LIST_ELEM);
    }
  }
  SetPtr s(nftnl_set_alloc());
  REQUIRE(nftnl_set_elems_nlmsg_parse(m.nlh(), s.get()) >= 0);
  ElemMsg out{
      nftnl_set_get_str(s.get(), NFTNL_SET_TABLE), nftnl_set_get_str(s.get(), NFTNL_SET_NAME), {}};
  nftnl_set_elems_iter* it = nftnl_set_elems_iter_create(s.get());
  for (nftnl_set_elem* e = nftnl_set_elems_iter_next(it); e; e = nftnl_set_elems_iter_next(it)) {
    Elem el;
    std::uint32_t len = 0;
    const auto* key =
        static_cast<const std::uint8_t*>(nftnl_set_elem_get(e, NFTNL_SET_ELEM_KEY, &len));
    el.key.assign(key, key + len);
    if (nftnl_set_elem_is_set(e, NFTNL_SET_ELEM_FLAGS))
      el.flags = nftnl_set_elem_get_u32(e, NFTNL_SET_ELEM_FLAGS);
    if (nftnl_set_elem_is_set(e, NFTNL_SET_ELEM_TIMEOUT))
      el.timeout = nftnl_set_elem_get_u64(e, NFTNL_SET_ELEM_TIMEOUT);
    if (nftnl_set_elem_is_set(e, NFTNL_SET_ELEM_EXPIRATION))
      el.expiration = nftnl_set_elem_get_u64(e, NFTNL_SET_ELEM_EXPIRATION);
    if (nftnl_set_elem_is_set(e, NFTNL_SET_ELEM_USERDATA)) {
      std::uint32_t ulen = 0;
      const void* ud = nftnl_set_elem_get(e, NFTNL_SET_ELEM_USERDATA, &ulen);
      nftnl_udata_parse(ud, ulen, udata_open_cb, &el.open);
    }
    out.elems.push_back(std::move(el));
  }
  nftnl_set_elems_iter_destroy(it);
  return out;
}

NftAddress v4(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d) {
  NftAddress x;
  x.family = 4;
  x.bytes = {a, b, c, d};
  return x;
}

NftAddress v6_doc(std::uint8_t last) {  // 2001:db8::LAST
  NftAddress x;
  x.family = 6;
  x.bytes = {0x20, 0x01, 0x0d, 0xb8};
  x.bytes[15] = last;
  return x;
}

std::vector<std::uint8_t> key_of(const NftAddress& a) {
  return {a.bytes.begin(), a.bytes.begin() + (a.family == 4 ? 4 : 16)};
}

egress::Cidr cidr(const char* text) {
  const egress::CidrParse p = egress::parse_cidr(text);
  REQUIRE_MESSAGE(p.cidr.has_value(), text);
  return *p.cidr;
}

std::vector<std::uint8_t> bytes4(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d) {
  return {a, b, c, d};
}

}  // namespace

TEST_CASE("a batch is begin, messages with REQUEST|ACK, end, numbered from the first sequence") {
  NftBatch empty;
  CHECK(empty.empty());
  CHECK(body(empty, 7).empty());
  CHECK(empty.last_seq() == 8);

  NftBatch b;
  const TableSpec spec;
  REQUIRE(dnsd::append_add_elements(
      b, spec,
      std::vector<SetElement>{{v4(192, 0, 2, 1), milliseconds(1000), milliseconds(1000)}}));
  CHECK(b.size() == 1);
  const std::vector<Msg> msgs = body(b, 0xfffffff0u);
  REQUIRE(msgs.size() == 1);
  CHECK(msgs[0].subsys() == NFNL_SUBSYS_NFTABLES);
  CHECK((msgs[0].flags() & (NLM_F_REQUEST | NLM_F_ACK)) == (NLM_F_REQUEST | NLM_F_ACK));
  CHECK(msgs[0].family() == NFPROTO_INET);
  CHECK(b.first_seq() == 0xfffffff0u);
  CHECK(b.last_seq() == 0xfffffff2u);
  // Sealing again renumbers without a second end marker.
  CHECK(split(b.seal(5)).size() == 3);
  CHECK(split(b.seal(5)).back().seq() == 7);
}

TEST_CASE(
    "add elements: one NEWSETELEM per family, CREATE without EXCL, timeout and expiration in ms") {
  TableSpec spec;
  spec.table = "tbl";
  spec.allow4 = "a4";
  spec.allow6 = "a6";
  const std::vector<SetElement> elems = {
      {v4(192, 0, 2, 1), milliseconds(90000), milliseconds(60000)},
      {v6_doc(7), milliseconds(3630000), milliseconds(3630000)},
      {v4(198, 51, 100, 9), milliseconds(1), milliseconds(1)},
  };
  NftBatch b;
  REQUIRE(dnsd::append_add_elements(b, spec, elems));
  const std::vector<Msg> msgs = body(b);
  REQUIRE(msgs.size() == 2);
  for (const Msg& m : msgs) {
    CHECK(m.type() == NFT_MSG_NEWSETELEM);
    CHECK((m.flags() & NLM_F_CREATE) != 0);
    CHECK((m.flags() & NLM_F_EXCL) == 0);  // an existing element is renewed, not an error
  }
  const ElemMsg m4 = parse_elems(msgs[0]);
  CHECK(m4.table == "tbl");
  CHECK(m4.set == "a4");
  REQUIRE(m4.elems.size() == 2);
  CHECK(m4.elems[0].key == key_of(elems[0].address));
  CHECK(m4.elems[0].timeout == 90000u);
  CHECK(m4.elems[0].expiration == 60000u);
  CHECK(m4.elems[1].key == key_of(elems[2].address));
  CHECK(m4.elems[1].timeout == 1u);
  const ElemMsg m6 = parse_elems(msgs[1]);
  CHECK(m6.set == "a6");
  REQUIRE(m6.elems.size() == 1);
  CHECK(m6.elems[0].key == key_of(elems[1].address));
  CHECK(m6.elems[0].key.size() == 16);
  CHECK(m6.elems[0].timeout == 3630000u);
  CHECK(m6.elems[0].expiration == 3630000u);
}

TEST_CASE("add elements: an invalid element appends nothing") {
  const TableSpec spec;
  const SetElement good{v4(192, 0, 2, 1), milliseconds(1000), milliseconds(1000)};
  struct Row {
    const char* why;
    SetElement e;
  } rows[] = {
      {"no timeout: it would never expire", {v4(192, 0, 2, 2), milliseconds(0), milliseconds(0)}},
      {"negative timeout", {v4(192, 0, 2, 2), milliseconds(-5), milliseconds(1)}},
      {"expires after its timeout", {v4(192, 0, 2, 2), milliseconds(1000), milliseconds(1001)}},
      {"no expiration", {v4(192, 0, 2, 2), milliseconds(1000), milliseconds(0)}},
      {"family 5", {NftAddress{5, {}}, milliseconds(1000), milliseconds(1000)}},
  };
  for (const Row& r : rows) {
    CAPTURE(r.why);
    NftBatch b;
    const std::size_t before = b.bytes().size();
    CHECK_FALSE(dnsd::append_add_elements(b, spec, std::vector<SetElement>{good, r.e}));
    CHECK(b.empty());
    CHECK(b.bytes().size() == before);
  }
}

TEST_CASE("many elements are split so that each element list fits its 16-bit nest") {
  const TableSpec spec;
  std::vector<SetElement> elems;
  for (int i = 0; i < 600; ++i) {
    elems.push_back({v4(198, 18, static_cast<std::uint8_t>(i >> 8), static_cast<std::uint8_t>(i)),
                     milliseconds(5000), milliseconds(5000)});
  }
  NftBatch b;
  REQUIRE(dnsd::append_add_elements(b, spec, elems));
  const std::vector<Msg> msgs = body(b);
  REQUIRE(msgs.size() == 3);
  std::size_t total = 0;
  for (const Msg& m : msgs) {
    const ElemMsg e = parse_elems(m);
    CHECK(e.elems.size() <= 256);
    for (const Elem& el : e.elems) CHECK(el.key == key_of(elems[total++].address));
  }
  CHECK(total == 600);
}

TEST_CASE("delete elements: DELSETELEM without CREATE, keys only") {
  const TableSpec spec;
  NftBatch b;
  REQUIRE(
      dnsd::append_delete_elements(b, spec, std::vector<NftAddress>{v6_doc(1), v4(192, 0, 2, 3)}));
  const std::vector<Msg> msgs = body(b);
  REQUIRE(msgs.size() == 2);
  const ElemMsg m4 = parse_elems(msgs[0]), m6 = parse_elems(msgs[1]);
  CHECK(msgs[0].type() == NFT_MSG_DELSETELEM);
  CHECK((msgs[0].flags() & NLM_F_CREATE) == 0);
  CHECK(m4.set == "allow4");
  REQUIRE(m4.elems.size() == 1);
  CHECK(m4.elems[0].key == bytes4(192, 0, 2, 3));
  CHECK_FALSE(m4.elems[0].timeout.has_value());
  CHECK(m6.set == "allow6");
  REQUIRE(m6.elems.size() == 1);
  CHECK(m6.elems[0].key == key_of(v6_doc(1)));

  NftBatch bad;
  CHECK_FALSE(dnsd::append_delete_elements(bad, spec,
                                           std::vector<NftAddress>{v4(1, 2, 3, 4), NftAddress{}}));
  CHECK(bad.empty());
}

TEST_CASE("renewal by delete + add sits in one batch, delete first") {
  const TableSpec spec;
  const SetElement e{v4(192, 0, 2, 1), milliseconds(1000), milliseconds(1000)};
  NftBatch b;
  REQUIRE(dnsd::append_delete_elements(b, spec, std::vector<NftAddress>{e.address}));
  REQUIRE(dnsd::append_add_elements(b, spec, std::vector<SetElement>{e}));
  const std::vector<Msg> msgs = body(b);
  REQUIRE(msgs.size() == 2);
  CHECK(msgs[0].type() == NFT_MSG_DELSETELEM);
  CHECK(msgs[1].type() == NFT_MSG_NEWSETELEM);
}

TEST_CASE("networks: flush then merged intervals with end elements, as nft writes them") {
  const TableSpec spec;
  const std::vector<egress::Cidr> nets = {
      cidr("192.168.1.0/24"),   cidr("10.1.0.0/16"),  // inside 10/8, adjacent to 192.168.0/24
      cidr("10.0.0.0/8"),       cidr("192.168.0.0/24"),
      cidr("255.255.255.0/24"),                           // reaches the top: no end element
      cidr("2001:db8::/32"),    cidr("2001:db8:1::/48"),  // v6: the /48 is inside the /32
  };
  NftBatch b;
  dnsd::append_replace_networks(b, spec, nets);
  const std::vector<Msg> msgs = body(b);
  REQUIRE(msgs.size() == 4);  // flush nets4, add nets4, flush nets6, add nets6

  CHECK(msgs[0].type() == NFT_MSG_DELSETELEM);
  const ElemMsg flush4 = parse_elems(msgs[0]);
  CHECK(flush4.set == "nets4");
  CHECK(flush4.elems.empty());  // no element list: the whole set

  CHECK(msgs[1].type() == NFT_MSG_NEWSETELEM);
  const ElemMsg add4 = parse_elems(msgs[1]);
  CHECK(add4.set == "nets4");
  REQUIRE(add4.elems.size() == 6);
  const std::uint32_t END = NFT_SET_ELEM_INTERVAL_END;
  CHECK(add4.elems[0].key == bytes4(0, 0, 0, 0));  // nft's leading end element
  CHECK(add4.elems[0].flags == END);
  CHECK(add4.elems[1].key == bytes4(10, 0, 0, 0));
  CHECK(add4.elems[1].flags == 0);
  CHECK(add4.elems[2].key == bytes4(11, 0, 0, 0));  // [10.0.0.0, 11.0.0.0)
  CHECK(add4.elems[2].flags == END);
  CHECK(add4.elems[3].key == bytes4(192, 168, 0, 0));
  CHECK(add4.elems[4].key == bytes4(192, 168, 2, 0));  // two /24s merged
  CHECK(add4.elems[4].flags == END);
  CHECK(add4.elems[5].key == bytes4(255, 255, 255, 0));
  CHECK(add4.elems[5].flags == 0);
  CHECK(add4.elems[5].open);
  CHECK_FALSE(add4.elems[1].open);

  const ElemMsg add6 = parse_elems(msgs[3]);
  CHECK(add6.set == "nets6");
  REQUIRE(add6.elems.size() == 3);
  CHECK(add6.elems[0].key == std::vector<std::uint8_t>(16, 0));
  CHECK(add6.elems[0].flags == END);
  CHECK(add6.elems[1].key == key_of(v6_doc(0)));
  std::vector<std::uint8_t> end6(16, 0);
  end6[0] = 0x20, end6[1] = 0x01, end6[2] = 0x0d, end6[3] = 0xb9;  // 2001:db9::
  CHECK(add6.elems[2].key == end6);
}

TEST_CASE("networks: the whole space is one open interval; none is a flush alone") {
  const TableSpec spec;
  NftBatch b;
  dnsd::append_replace_networks(b, spec,
                                std::vector<egress::Cidr>{cidr("::/0"), cidr("0.0.0.0/0")});
  const std::vector<Msg> msgs = body(b);
  REQUIRE(msgs.size() == 4);
  for (int i : {1, 3}) {
    const ElemMsg add = parse_elems(msgs[static_cast<std::size_t>(i)]);
    REQUIRE(add.elems.size() == 1);  // no leading end element: it starts at 0
    CHECK(add.elems[0].flags == 0);
    CHECK(add.elems[0].open);
  }

  NftBatch none;
  dnsd::append_replace_networks(none, spec, {});
  const std::vector<Msg> flush = body(none);
  REQUIRE(flush.size() == 2);
  CHECK(flush[0].type() == NFT_MSG_DELSETELEM);
  CHECK(flush[1].type() == NFT_MSG_DELSETELEM);

  TableSpec no_nets;
  no_nets.nets4.clear();
  no_nets.nets6.clear();
  NftBatch skipped;
  dnsd::append_replace_networks(skipped, no_nets, std::vector<egress::Cidr>{cidr("10.0.0.0/8")});
  CHECK(skipped.empty());
}

namespace {

struct ChainFree {
  void operator()(nftnl_chain* c) const { nftnl_chain_free(c); }
};
struct RuleFree {
  void operator()(nftnl_rule* r) const { nftnl_rule_free(r); }
};

std::vector<std::string> expr_names(const Msg& m) {
  std::unique_ptr<nftnl_rule, RuleFree> r(nftnl_rule_alloc());
  REQUIRE(nftnl_rule_nlmsg_parse(m.nlh(), r.get()) >= 0);
  std::vector<std::string> out;
  nftnl_expr_iter* it = nftnl_expr_iter_create(r.get());
  for (nftnl_expr* e = nftnl_expr_iter_next(it); e; e = nftnl_expr_iter_next(it)) {
    std::string name = nftnl_expr_get_str(e, NFTNL_EXPR_NAME);
    if (name == "lookup") name += std::string(":") + nftnl_expr_get_str(e, NFTNL_EXPR_LOOKUP_SET);
    if (name == "cmp" && nftnl_expr_get_u32(e, NFTNL_EXPR_CMP_OP) == NFT_CMP_EQ) {
      std::uint32_t len = 0;
      const void* d = nftnl_expr_get(e, NFTNL_EXPR_CMP_DATA, &len);
      std::uint32_t v = 0;
      std::memcpy(&v, d, std::min<std::uint32_t>(len, 4));
      name += "=" + std::to_string(v);
    }
    if (name == "reject")
      name += ":" + std::to_string(nftnl_expr_get_u8(e, NFTNL_EXPR_REJECT_CODE));
    out.push_back(name);
  }
  nftnl_expr_iter_destroy(it);
  return out;
}

using Names = std::vector<std::string>;

}  // namespace

TEST_CASE("enforce table from nothing: table, sets, chain and the design's rules in order") {
  TableSpec spec;
  spec.mark = 0xe95;
  NftBatch b;
  dnsd::append_enforce_table(b, spec, {});
  const std::vector<Msg> msgs = body(b);

  std::vector<std::uint16_t> types;
  for (const Msg& m : msgs) types.push_back(m.type());
  // Nothing is ever flushed by the bootstrap of a new table.
  CHECK(std::count(types.begin(), types.end(), NFT_MSG_DELSETELEM) == 0);
  CHECK(std::count(types.begin(), types.end(), NFT_MSG_DELRULE) == 0);
  CHECK(std::count(types.begin(), types.end(), NFT_MSG_NEWRULE) == 10);
  CHECK(std::count(types.begin(), types.end(), NFT_MSG_NEWSET) == 4 + 3);  // + 3 anonymous
  REQUIRE(msgs.size() == 1 + 4 + 1 + 3 * 2 + 10);
  CHECK(types[0] == NFT_MSG_NEWTABLE);
  CHECK((msgs[0].flags() & NLM_F_CREATE) != 0);
  CHECK((msgs[0].flags() & NLM_F_EXCL) == 0);

  // The named sets.
  struct Want {
    const char* name;
    std::uint32_t flags, key_type, key_len, size;
  } want[] = {{"allow4", NFT_SET_TIMEOUT, 7, 4, 65536},
              {"allow6", NFT_SET_TIMEOUT, 8, 16, 65536},
              {"nets4", NFT_SET_INTERVAL, 7, 4, 0},
              {"nets6", NFT_SET_INTERVAL, 8, 16, 0}};
  for (std::size_t i = 0; i < 4; ++i) {
    CAPTURE(want[i].name);
    const Msg& m = msgs[1 + i];
    REQUIRE(m.type() == NFT_MSG_NEWSET);
    CHECK((m.flags() & NLM_F_EXCL) == 0);  // an existing set is kept, elements and all
    SetPtr s(nftnl_set_alloc());
    REQUIRE(nftnl_set_nlmsg_parse(m.nlh(), s.get()) >= 0);
    CHECK(std::string(nftnl_set_get_str(s.get(), NFTNL_SET_NAME)) == want[i].name);
    CHECK(std::string(nftnl_set_get_str(s.get(), NFTNL_SET_TABLE)) == "egress");
    CHECK(nftnl_set_get_u32(s.get(), NFTNL_SET_FLAGS) == want[i].flags);
    CHECK(nftnl_set_get_u32(s.get(), NFTNL_SET_KEY_TYPE) == want[i].key_type);
    CHECK(nftnl_set_get_u32(s.get(), NFTNL_SET_KEY_LEN) == want[i].key_len);
    if (want[i].size != 0) {
      CHECK(nftnl_set_get_u32(s.get(), NFTNL_SET_DESC_SIZE) == want[i].size);
    } else {
      CHECK_FALSE(nftnl_set_is_set(s.get(), NFTNL_SET_DESC_SIZE));
    }
  }

  // The chain.
  REQUIRE(types[5] == NFT_MSG_NEWCHAIN);
  std::unique_ptr<nftnl_chain, ChainFree> c(nftnl_chain_alloc());
  REQUIRE(nftnl_chain_nlmsg_parse(msgs[5].nlh(), c.get()) >= 0);
  CHECK(std::string(nftnl_chain_get_str(c.get(), NFTNL_CHAIN_NAME)) == "output");
  CHECK(std::string(nftnl_chain_get_str(c.get(), NFTNL_CHAIN_TYPE)) == "filter");
  CHECK(nftnl_chain_get_u32(c.get(), NFTNL_CHAIN_HOOKNUM) == NF_INET_LOCAL_OUT);
  CHECK(nftnl_chain_get_s32(c.get(), NFTNL_CHAIN_PRIO) == 0);
  CHECK(nftnl_chain_get_u32(c.get(), NFTNL_CHAIN_POLICY) == NF_DROP);

  // The rules, appended (not inserted at the head), in the design's order.
  std::vector<Names> rules;
  for (const Msg& m : msgs) {
    if (m.type() != NFT_MSG_NEWRULE) continue;
    CHECK((m.flags() & NLM_F_APPEND) != 0);
    rules.push_back(expr_names(m));
  }
  const std::vector<Names> design = {
      {"ct", "bitwise", "cmp", "immediate"},
      {"meta", "cmp=1", "immediate"},  // oif 1 (lo)
      {"meta", "cmp=10", "meta", "cmp=58", "payload", "lookup:__set%d", "immediate"},
      {"meta", "cmp=3733", "immediate"},  // meta mark 0xe95
      {"meta", "lookup:__set%d", "payload", "lookup:__set%d", "reject:1"},
      {"meta", "cmp=2", "payload", "lookup:allow4", "immediate"},
      {"meta", "cmp=10", "payload", "lookup:allow6", "immediate"},
      {"meta", "cmp=2", "payload", "lookup:nets4", "immediate"},
      {"meta", "cmp=10", "payload", "lookup:nets6", "immediate"},
      {"counter", "reject:3"},  // icmpx admin-prohibited
  };
  CHECK(rules == design);

  // Anonymous sets precede their rule with their elements: icmpv6 ND types, l4proto, ports.
  std::vector<std::vector<std::vector<std::uint8_t>>> anon;
  for (std::size_t i = 0; i < msgs.size(); ++i) {
    if (msgs[i].type() != NFT_MSG_NEWSET) continue;
    SetPtr s(nftnl_set_alloc());
    REQUIRE(nftnl_set_nlmsg_parse(msgs[i].nlh(), s.get()) >= 0);
    if (std::string(nftnl_set_get_str(s.get(), NFTNL_SET_NAME)) != "__set%d") continue;
    CHECK(nftnl_set_get_u32(s.get(), NFTNL_SET_FLAGS) == (NFT_SET_ANONYMOUS | NFT_SET_CONSTANT));
    REQUIRE(i + 1 < msgs.size());
    REQUIRE(msgs[i + 1].type() == NFT_MSG_NEWSETELEM);
    std::vector<std::vector<std::uint8_t>> keys;
    for (const Elem& e : parse_elems(msgs[i + 1]).elems) keys.push_back(e.key);
    anon.push_back(keys);
  }
  REQUIRE(anon.size() == 3);
  CHECK(anon[0] == std::vector<std::vector<std::uint8_t>>{{135}, {136}, {133}});
  CHECK(anon[1] == std::vector<std::vector<std::uint8_t>>{{IPPROTO_TCP}, {IPPROTO_UDP}});
  CHECK(anon[2] == std::vector<std::vector<std::uint8_t>>{{0, 53}, {0x03, 0x55}});  // 53, 853
}

TEST_CASE("enforce table over an existing one: create what is missing, never flush a set") {
  TableSpec spec;
  auto types_of = [&](const dnsd::ExistingTable& existing) {
    NftBatch b;
    dnsd::append_enforce_table(b, spec, existing);
    std::vector<std::uint16_t> t;
    for (const Msg& m : body(b)) t.push_back(m.type());
    CHECK(std::count(t.begin(), t.end(), NFT_MSG_DELSETELEM) == 0);
    CHECK(std::count(t.begin(), t.end(), NFT_MSG_DELSET) == 0);
    CHECK(std::count(t.begin(), t.end(), NFT_MSG_DELTABLE) == 0);
    CHECK(std::count(t.begin(), t.end(), NFT_MSG_DELCHAIN) == 0);
    return t;
  };
  auto count = [](const std::vector<std::uint16_t>& t, std::uint16_t type) {
    return std::count(t.begin(), t.end(), type);
  };

  dnsd::ExistingTable all{true, true, true, true, true, true, true, true};
  CHECK(types_of(all).empty());  // as designed: nothing to send

  dnsd::ExistingTable tampered = all;
  tampered.rules_match = false;
  const auto t1 = types_of(tampered);
  CHECK(count(t1, NFT_MSG_NEWTABLE) == 0);
  CHECK(count(t1, NFT_MSG_NEWCHAIN) == 0);
  REQUIRE(!t1.empty());
  CHECK(t1[0] == NFT_MSG_DELRULE);  // the chain's rules go, in the same transaction as the new
  CHECK(count(t1, NFT_MSG_DELRULE) == 1);
  CHECK(count(t1, NFT_MSG_NEWRULE) == 10);
  CHECK(count(t1, NFT_MSG_NEWSET) == 3);  // the anonymous ones only

  dnsd::ExistingTable policy = all;
  policy.chain_policy_drop = false;
  const auto t2 = types_of(policy);
  CHECK(t2 == std::vector<std::uint16_t>{NFT_MSG_NEWCHAIN});

  dnsd::ExistingTable one_set_missing = all;
  one_set_missing.nets6 = false;
  const auto t3 = types_of(one_set_missing);
  CHECK(t3 == std::vector<std::uint16_t>{NFT_MSG_NEWSET});

  dnsd::ExistingTable no_chain{true, true, true, true, true, false, false, false};
  const auto t4 = types_of(no_chain);
  CHECK(count(t4, NFT_MSG_NEWCHAIN) == 1);
  CHECK(count(t4, NFT_MSG_NEWRULE) == 10);
  CHECK(count(t4, NFT_MSG_DELRULE) == 0);
  CHECK(count(t4, NFT_MSG_NEWSET) == 3);
}

TEST_CASE("rule fingerprints follow the mark and the DNS ports") {
  TableSpec a, b;
  a.mark = 1;
  b.mark = 2;
  const auto fa = dnsd::expected_rule_fingerprints(a);
  const auto fb = dnsd::expected_rule_fingerprints(b);
  REQUIRE(fa.size() == 10);
  CHECK(fa != fb);
  CHECK(fa[3] != fb[3]);
  CHECK(fa[0] == fb[0]);
  TableSpec c = a;
  c.dns_ports = {53, 853, 5353};
  const auto fc = dnsd::expected_rule_fingerprints(c);
  CHECK(fc[4] != fa[4]);
  CHECK(fc[4].find("14e9") != std::string::npos);  // 5353 = 0x14e9, an element of the anonymous set
  CHECK(dnsd::expected_rule_fingerprints(a) == fa);  // deterministic
}

TEST_CASE("table spec validation names the problem") {
  TableSpec ok;
  ok.mark = 0xe95;
  CHECK(dnsd::validate(ok).empty());
  CHECK(dnsd::validate(TableSpec{}).find("mark is 0") == 0);  // would accept everything unmarked
  TableSpec s = ok;
  s.allow4 = "";
  CHECK(dnsd::validate(s) == "allow4 name is empty");
  s = ok;
  s.table = std::string(256, 'x');
  CHECK(dnsd::validate(s).find("longer than 255") != std::string::npos);
  s = ok;
  s.allow6 = "a%d";
  CHECK(dnsd::validate(s).find("'%'") != std::string::npos);
  s = ok;
  s.dns_ports.clear();
  CHECK(dnsd::validate(s) == "no DNS port to reject");
  s = ok;
  s.nets4.clear();
  s.nets6.clear();
  CHECK(dnsd::validate(s).empty());  // sets mode without networks
}
