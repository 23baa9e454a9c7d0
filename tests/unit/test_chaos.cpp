// CHAOS reports (dnsd/chaos.h), the TXT reply writer (dns::make_txt_reply) and SHA-256
// (common/sha256.h) against FIPS 180-2's published vectors.
#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <vector>

#include "common/config_error.h"
#include "common/dns_wire.h"
#include "common/rfc3339.h"
#include "common/sha256.h"
#include "dnsd/allowlist.h"
#include "dnsd/chaos.h"
#include "dnsd/cli.h"
#include "dnsd/config.h"

namespace dns = egress::dns;
namespace chaos = dnsd::chaos;
using namespace std::chrono_literals;
using Bytes = std::vector<std::uint8_t>;

namespace {

// A query: ID 0x1234, RD, one question, an OPT (size 1232, DO clear) when `edns`.
Bytes make_query(std::string_view name, std::uint16_t qtype, std::uint16_t qclass, bool edns) {
  Bytes b = {0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, static_cast<std::uint8_t>(edns ? 1 : 0)};
  const auto n = dns::Name::from_text(name);
  REQUIRE(n);
  b.insert(b.end(), n->wire().begin(), n->wire().end());
  b.insert(b.end(), {static_cast<std::uint8_t>(qtype >> 8), static_cast<std::uint8_t>(qtype),
                     static_cast<std::uint8_t>(qclass >> 8), static_cast<std::uint8_t>(qclass)});
  if (edns) b.insert(b.end(), {0, 0, 41, 0x04, 0xD0, 0, 0, 0, 0, 0, 0});
  return b;
}

struct Reply {
  dns::Header header;
  std::vector<std::string> txt;  // one string per answer RR
  std::vector<std::uint32_t> ttls;
  std::vector<std::uint16_t> classes;
  bool opt = false;
};

// Walks a reply of make_txt_reply/make_synthetic: header, one question, TXT answers, an OPT.
Reply read_reply(const Bytes& b) {
  Reply r;
  dns::Reader rd(b);
  const auto h = rd.header();
  REQUIRE(h);
  r.header = *h;
  REQUIRE(h->qdcount == 1);
  REQUIRE(rd.name());
  REQUIRE(rd.skip(4));
  for (int i = 0; i < h->ancount; ++i) {
    const auto owner = rd.name();
    REQUIRE(owner);
    const auto type = rd.u16(), cls = rd.u16();
    const auto ttl = rd.u32();
    const auto len = rd.u16();
    REQUIRE(len);
    CHECK(*type == dns::type::TXT);
    const auto rdata = rd.bytes(*len);
    REQUIRE(rdata);
    REQUIRE(!rdata->empty());
    REQUIRE((*rdata)[0] + 1u == rdata->size());  // exactly one <character-string>
    r.txt.emplace_back(rdata->begin() + 1, rdata->end());
    r.ttls.push_back(*ttl);
    r.classes.push_back(*cls);
  }
  for (int i = 0; i < h->arcount; ++i) {
    REQUIRE(rd.u8() == std::optional<std::uint8_t>(0));
    REQUIRE(rd.u16() == std::optional<std::uint16_t>(dns::type::OPT));
    REQUIRE(rd.skip(6));
    const auto len = rd.u16();
    REQUIRE(len);
    REQUIRE(rd.skip(*len));
    r.opt = true;
  }
  CHECK(rd.remaining() == 0);
  return r;
}

dns::Query parsed(const Bytes& packet) {
  const auto p = dns::parse_query(packet);
  REQUIRE(p.query);
  return *p.query;
}

class FakeInstaller final : public dnsd::Installer {
 public:
  std::vector<dnsd::ElementTable::Held> held;
  mutable std::string asked;
  std::optional<std::uint32_t> fresh(std::span<const dns::Address>, dnsd::Clock::time_point,
                                     std::string_view) override {
    return dnsd::kNoCap;
  }
  void install(std::string_view, std::span<const dns::Address>, dnsd::Clock::time_point,
               Done done) override {
    done({}, dnsd::kNoCap);
  }
  void reload(const std::function<bool(std::string_view)>&,
              std::span<const egress::Cidr>) override {}
  std::vector<dnsd::ElementTable::Held> held_by(std::string_view host,
                                                dnsd::Clock::time_point) const override {
    asked = std::string(host);
    return held;
  }
};

dnsd::NftAddress v4(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d) {
  dnsd::NftAddress n;
  n.family = 4;
  n.bytes = {a, b, c, d};
  return n;
}

constexpr const char* kPolicy =
    "domains:\n"
    "  - github.com\n"
    "  - \"*.githubusercontent.com\"\n"
    "  - \"*.example.org\"\n"
    "networks:\n"
    "  - 192.0.2.0/24\n"
    "  - 2001:db8::/32\n";

}  // namespace

// --- SHA-256 ---------------------------------------------------------------------------------

TEST_CASE("sha256: FIPS 180-2 example vectors") {
  CHECK(egress::sha256_hex("") ==
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(egress::sha256_hex("abc") ==
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(egress::sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  CHECK(egress::sha256_hex(std::string(1'000'000, 'a')) ==
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST_CASE("sha256: any split of the input into updates gives the one-shot digest") {
  // Lengths around the padding edges (55, 56, 63, 64 octets) and several blocks.
  for (const std::size_t len : {0u, 1u, 55u, 56u, 63u, 64u, 65u, 119u, 120u, 128u, 200u}) {
    std::string text;
    for (std::size_t i = 0; i < len; ++i) text += static_cast<char>('a' + i % 26);
    const std::string whole = egress::sha256_hex(text);
    for (std::size_t cut = 0; cut <= len; cut += (len < 70 ? 1 : 7)) {
      egress::Sha256 s;
      s.update(std::string_view(text).substr(0, cut));
      s.update(std::string_view(text).substr(cut));
      std::string hex;
      for (const auto b : s.finish()) {
        static constexpr char kHex[] = "0123456789abcdef";
        hex += kHex[b >> 4];
        hex += kHex[b & 0xF];
      }
      CHECK_MESSAGE(hex == whole, "length ", len, " cut at ", cut);
    }
  }
}

TEST_CASE("allowlist: sha256 is of the file's bytes; loaded_at is the parse time") {
  const auto before = std::chrono::system_clock::now();
  const auto list = dnsd::Allowlist::parse(kPolicy, "allow.yaml");
  CHECK(list->sha256() == egress::sha256_hex(kPolicy));
  CHECK(list->sha256().size() == 64);
  CHECK(list->loaded_at() >= before);
  CHECK(list->loaded_at() <= std::chrono::system_clock::now());
  CHECK(dnsd::Allowlist::parse(std::string(kPolicy) + "\n", "allow.yaml")->sha256() !=
        list->sha256());
}

// --- names -----------------------------------------------------------------------------------

TEST_CASE("chaos: classify finds the two reports, ignoring case") {
  const auto cls = [](std::string_view text) {
    return chaos::classify(*dns::Name::from_text(text));
  };
  CHECK(cls("policy.egress").topic == chaos::Topic::Policy);
  CHECK(cls("POLICY.Egress.").topic == chaos::Topic::Policy);
  const auto why = cls("API.GitHub.com.WHY.egress.");
  CHECK(why.topic == chaos::Topic::Why);
  CHECK(why.hostname == std::optional<std::string>("api.github.com"));
  CHECK(why.display == "api.github.com");
  CHECK(cls("x.why.egress").hostname == std::optional<std::string>("x"));
  for (const char* other :
       {"why.egress", "egress", "version.bind", "hostname.bind", "a.policy.egress",
        "policy.egress.example", "github.com.why", "github.com.why.egress.example", "."}) {
    CHECK_MESSAGE(cls(other).topic == chaos::Topic::Unknown, other);
  }
}

TEST_CASE("chaos: a name that is not a hostname is reported escaped, with no hostname") {
  dns::Name n;
  const std::uint8_t odd[] = {'a', ' ', 'b'};
  const std::uint8_t why[] = {'w', 'h', 'y'};
  const std::uint8_t egress[] = {'e', 'g', 'r', 'e', 's', 's'};
  REQUIRE(n.append_label(odd));
  REQUIRE(n.append_label(why));
  REQUIRE(n.append_label(egress));
  REQUIRE(n.finish());
  const auto q = chaos::classify(n);
  CHECK(q.topic == chaos::Topic::Why);
  CHECK(!q.hostname);
  CHECK(q.display == "a\\032b");
}

// --- reports ---------------------------------------------------------------------------------

TEST_CASE("chaos: why_report for an allowed name lists the rule and the installed addresses") {
  const dnsd::AllowEntry rule{"*.githubusercontent.com", "githubusercontent.com", true, 3, 5};
  chaos::WhyFacts f;
  f.name = "raw.githubusercontent.com";
  f.rule = &rule;
  f.source = "/etc/egress/allowlist.yaml";
  f.addresses = {{"192.0.2.30", 329s}, {"2001:db8::30", 12s}};
  const std::vector<std::string> want = {
      "raw.githubusercontent.com: allowed",
      "rule: *.githubusercontent.com (wildcard) at /etc/egress/allowlist.yaml:3:5",
      "address: 192.0.2.30 expires in 329 s",
      "address: 2001:db8::30 expires in 12 s",
  };
  CHECK(chaos::why_report(f) == want);

  f.addresses.clear();
  CHECK(chaos::why_report(f).back().starts_with("addresses: none installed now"));
  f.nft_mode = dnsd::NftMode::Off;
  CHECK(chaos::why_report(f).back() ==
        "addresses: none installed (nft mode off: DNS filtering only)");
}

TEST_CASE("chaos: why_report lists at most kMaxListedAddresses and counts the rest") {
  const dnsd::AllowEntry rule{"cdn.example", "cdn.example", false, 2, 5};
  chaos::WhyFacts f;
  f.name = "cdn.example";
  f.rule = &rule;
  f.source = "a.yaml";
  for (int i = 0; i < 40; ++i) f.addresses.push_back({"203.0.113." + std::to_string(i), 60s});
  const auto r = chaos::why_report(f);
  CHECK(r.size() == 2 + chaos::kMaxListedAddresses + 1);
  CHECK(r.back() == "addresses: 8 more not listed");
  CHECK(r[1] == "rule: cdn.example (exact) at a.yaml:2:5");
}

TEST_CASE("chaos: why_report for a denied name says why and what clients get") {
  chaos::WhyFacts f;
  f.name = "github.io";
  f.source = "a.yaml";
  f.wildcard_hint = "*.github.io";
  const std::vector<std::string> want = {
      "github.io: denied",
      "reason: no entry of a.yaml matches it",
      "note: *.github.io is listed; it matches the names below github.io, not github.io itself",
      "clients get: NXDOMAIN with EDE 15 (Blocked)",
  };
  CHECK(chaos::why_report(f) == want);

  chaos::WhyFacts g;
  g.name = "a\\032b";
  g.hostname = false;
  g.deny = dnsd::DenyMode::Refused;
  const auto r = chaos::why_report(g);
  CHECK(r[1].starts_with("reason: not a hostname"));
  CHECK(r.back() == "clients get: REFUSED");
}

TEST_CASE("chaos: policy_report and RFC 3339 times") {
  CHECK(egress::rfc3339_s(std::chrono::system_clock::time_point{}) == "1970-01-01T00:00:00Z");
  CHECK(egress::rfc3339_s(std::chrono::system_clock::time_point{1'000'000'000s}) ==
        "2001-09-09T01:46:40Z");
  chaos::PolicyFacts f;
  f.source = "/etc/egress/allowlist.yaml";
  f.sha256 = std::string(64, 'a');
  f.loaded_at = std::chrono::system_clock::time_point{1'000'000'000s};
  f.exact = 3;
  f.wildcards = 2;
  f.networks4 = 1;
  f.table = "egress";
  const std::vector<std::string> want = {
      "source: /etc/egress/allowlist.yaml",
      "sha256: " + std::string(64, 'a'),
      "loaded: 2001-09-09T01:46:40Z",
      "exact names: 3",
      "wildcards: 2",
      "networks: 1 (1 IPv4, 0 IPv6)",
      "deny: nxdomain",
      "nft: enforce, table inet egress",
  };
  CHECK(chaos::policy_report(f) == want);
  f.nft_mode = dnsd::NftMode::Off;
  CHECK(chaos::policy_report(f).back() == "nft: off");
}

// --- the wire reply --------------------------------------------------------------------------

TEST_CASE("make_txt_reply: one TXT RR per string, class of the query, TTL 0, RA, no AA") {
  const Bytes packet = make_query("policy.egress", dns::type::TXT, dns::qclass::CH, true);
  const dns::Query q = parsed(packet);
  const std::vector<std::string> strings = {"a: 1", "b: two", ""};
  const Bytes out = dns::make_txt_reply(q, packet, strings, 1232);
  const Reply r = read_reply(out);
  CHECK(r.header.id == 0x1234);
  CHECK(r.header.qr());
  CHECK(r.header.rcode() == dns::rcode::NoError);
  CHECK(r.header.has(dns::flag::RA));
  CHECK(r.header.has(dns::flag::RD));
  CHECK(!r.header.has(dns::flag::AA));
  CHECK(r.txt == strings);
  CHECK(r.ttls == std::vector<std::uint32_t>{0, 0, 0});
  CHECK(r.classes == std::vector<std::uint16_t>(3, dns::qclass::CH));
  CHECK(r.opt);
  // The owner is a pointer to the question (the client's case kept).
  CHECK(out[packet.size() - 11] == 0xC0);
  CHECK(out[packet.size() - 10] == 12);
}

TEST_CASE("make_txt_reply: strings over 255 octets are cut on a UTF-8 boundary") {
  const Bytes packet = make_query("policy.egress", dns::type::TXT, dns::qclass::CH, false);
  std::string s(254, 'x');
  s += "\xC3\xBC";  // "ü" would straddle octet 255
  const std::vector<std::string> strings = {s, std::string(300, 'y')};
  const Reply r = read_reply(dns::make_txt_reply(parsed(packet), packet, strings, 65535));
  REQUIRE(r.txt.size() == 2);
  CHECK(r.txt[0] == std::string(254, 'x'));
  CHECK(r.txt[1] == std::string(255, 'y'));
  CHECK(!r.opt);
}

TEST_CASE("make_txt_reply: no strings is NODATA; over the limit is TC=1 with no answer") {
  const Bytes packet = make_query("policy.egress", dns::type::TXT, dns::qclass::CH, false);
  const dns::Query q = parsed(packet);
  const Reply empty = read_reply(dns::make_txt_reply(q, packet, {}, 512));
  CHECK(empty.header.rcode() == dns::rcode::NoError);
  CHECK(empty.header.ancount == 0);
  const std::vector<std::string> big(4, std::string(200, 'z'));
  const Bytes out = dns::make_txt_reply(q, packet, big, 512);
  CHECK(out.size() <= 512);
  const Reply tc = read_reply(out);
  CHECK(tc.header.has(dns::flag::TC));
  CHECK(tc.header.ancount == 0);
  CHECK(read_reply(dns::make_txt_reply(q, packet, big, 4096)).txt.size() == 4);
}

// --- reply(): facts gathered from the allowlist, the installer, the config ---------------------

TEST_CASE("chaos: reply answers why and policy, NODATA for other types, REFUSED for other names") {
  const auto list = dnsd::Allowlist::parse(kPolicy, "/etc/egress/allowlist.yaml");
  FakeInstaller inst;
  const auto now = dnsd::Clock::now();
  inst.held = {{v4(192, 0, 2, 10), now + 100s}, {v4(192, 0, 2, 11), now + 5s}};
  const dnsd::Config config;

  const auto ask = [&](std::string_view name, std::uint16_t qtype = dns::type::TXT) {
    const Bytes packet = make_query(name, qtype, dns::qclass::CH, true);
    return read_reply(chaos::reply(parsed(packet), packet, 1232, *list, inst, config, now));
  };

  const Reply allowed = ask("GitHub.com.why.egress");
  CHECK(inst.asked == "github.com");
  const std::vector<std::string> want = {
      "github.com: allowed",
      "rule: github.com (exact) at /etc/egress/allowlist.yaml:2:5",
      "address: 192.0.2.10 expires in 100 s",
      "address: 192.0.2.11 expires in 5 s",
  };
  CHECK(allowed.txt == want);

  const Reply wild = ask("a.b.githubusercontent.com.why.egress");
  CHECK(wild.txt[1] ==
        "rule: *.githubusercontent.com (wildcard) at /etc/egress/allowlist.yaml:3:5");

  inst.asked.clear();
  const Reply denied = ask("example.org.why.egress");
  CHECK(inst.asked.empty());  // a denied name has nothing installed to ask about
  REQUIRE(denied.txt.size() == 4);
  CHECK(denied.txt[0] == "example.org: denied");
  CHECK(denied.txt[2] ==
        "note: *.example.org is listed; it matches the names below example.org, not example.org "
        "itself");

  const Reply net = ask("192.0.2.99.why.egress");
  CHECK(net.txt[0] == "192.0.2.99: denied");
  CHECK(net.txt[2] ==
        "note: 192.0.2.99 is inside networks: entry 192.0.2.0/24, reachable "
        "without DNS");

  const Reply policy = ask("policy.egress");
  REQUIRE(policy.txt.size() == 8);
  CHECK(policy.txt[0] == "source: /etc/egress/allowlist.yaml");
  CHECK(policy.txt[1] == "sha256: " + egress::sha256_hex(kPolicy));
  CHECK(policy.txt[3] == "exact names: 1");
  CHECK(policy.txt[4] == "wildcards: 2");
  CHECK(policy.txt[5] == "networks: 2 (1 IPv4, 1 IPv6)");

  const Reply a = ask("policy.egress", dns::type::A);
  CHECK(a.header.rcode() == dns::rcode::NoError);
  CHECK(a.header.ancount == 0);

  for (const char* other : {"version.bind", "hostname.bind", "why.egress", "id.server"}) {
    const Reply r = ask(other);
    CHECK_MESSAGE(r.header.rcode() == dns::rcode::Refused, other);
    CHECK(r.header.ancount == 0);
  }
}

// --- config ----------------------------------------------------------------------------------

TEST_CASE("config: chaos defaults to true; the key and --chaos turn it off; bad values name it") {
  CHECK(dnsd::Config{}.chaos);
  CHECK(!dnsd::parse_config("chaos: false\n", "d.yaml").chaos);
  CHECK(dnsd::parse_config("chaos: true\n", "d.yaml").chaos);
  try {
    dnsd::parse_config("chaos: maybe\n", "d.yaml");
    FAIL("no error");
  } catch (const egress::ConfigError& e) {
    CHECK(std::string(e.what()) ==
          "d.yaml:1:8: invalid value \"maybe\" for chaos: expected true or false");
  }
  int code = 0;
  const char* argv[] = {"dnsd", "--chaos", "false"};
  const auto inv = dnsd::parse_command_line(3, argv, code);
  REQUIRE(inv);
  CHECK(!inv->config.chaos);
  const char* both[] = {"dnsd", "--install-only", "--check-ready"};
  CHECK(!dnsd::parse_command_line(3, both, code));
  CHECK(code == dnsd::kExitUsage);
  const char* ready[] = {"dnsd", "--check-ready", "--nft-table", "t1"};
  const auto r = dnsd::parse_command_line(4, ready, code);
  REQUIRE(r);
  CHECK(r->check_ready);
  CHECK(!r->install_only);
  CHECK(r->config.nft_table == "t1");
}
