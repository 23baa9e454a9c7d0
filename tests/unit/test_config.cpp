// dnsd configuration: endpoints, the YAML file, cross-field validation (dnsd/config.h).
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "common/config_error.h"
#include "dnsd/config.h"

namespace {

using namespace std::chrono_literals;

dnsd::Endpoint ep(const char* address, std::uint16_t port) {
  return dnsd::Endpoint{boost::asio::ip::make_address(address), port};
}

std::vector<std::string> strings(const std::vector<dnsd::Endpoint>& v) {
  std::vector<std::string> out;
  for (const auto& e : v) out.push_back(e.to_string());
  return out;
}

// The defaults documented in dnsd/config.h, listen included.
dnsd::Config documented_defaults() {
  dnsd::Config c;
  c.listen = {ep("127.0.0.1", 53), ep("::1", 53)};
  return c;
}

void check_same(const dnsd::Config& a, const dnsd::Config& b) {
  CHECK(strings(a.listen) == strings(b.listen));
  CHECK(strings(a.upstreams) == strings(b.upstreams));
  CHECK(a.allowlist == b.allowlist);
  CHECK(a.deny == b.deny);
  CHECK(a.negative_ttl == b.negative_ttl);
  CHECK(a.log_queries == b.log_queries);
  CHECK(a.chaos == b.chaos);
  CHECK(a.log_level == b.log_level);
  CHECK(a.upstream_timeout == b.upstream_timeout);
  CHECK(a.cache_max_entries == b.cache_max_entries);
  CHECK(a.cache_max_bytes == b.cache_max_bytes);
  CHECK(a.cache_max_ttl == b.cache_max_ttl);
  CHECK(a.max_pending == b.max_pending);
  CHECK(a.tcp_max_connections == b.tcp_max_connections);
  CHECK(a.tcp_idle_timeout == b.tcp_idle_timeout);
  CHECK(a.tcp_max_pipelined == b.tcp_max_pipelined);
  CHECK(a.udp_max_size == b.udp_max_size);
  CHECK(a.nft_mode == b.nft_mode);
  CHECK(a.nft_table == b.nft_table);
  CHECK(a.nft_set4 == b.nft_set4);
  CHECK(a.nft_set6 == b.nft_set6);
  CHECK(a.nft_mark == b.nft_mark);
  CHECK(a.nft_ack_timeout == b.nft_ack_timeout);
  CHECK(a.element_min_timeout == b.element_min_timeout);
  CHECK(a.element_max_timeout == b.element_max_timeout);
  CHECK(a.element_grace == b.element_grace);
  CHECK(a.max_addresses_per_name == b.max_addresses_per_name);
}

std::string error_of(const std::string& yaml) {
  try {
    dnsd::parse_config(yaml, "d.yaml");
  } catch (const egress::ConfigError& e) {
    return e.what();
  }
  return "(no error)";
}

std::string validate_error(const dnsd::Config& c) {
  try {
    dnsd::validate(c, "d.yaml");
  } catch (const egress::ConfigError& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("parse_endpoint: text -> endpoint") {
  struct Row {
    const char* text;
    const char* parsed;  // to_string(), or nullptr when rejected
  };
  const Row rows[] = {
      {"192.0.2.1", "192.0.2.1:53"},
      {"192.0.2.1:5353", "192.0.2.1:5353"},
      {"0.0.0.0:53", "0.0.0.0:53"},
      {"192.0.2.1:65535", "192.0.2.1:65535"},
      {"192.0.2.1:1", "192.0.2.1:1"},
      {"[2001:db8::1]:53", "[2001:db8::1]:53"},
      {"[2001:DB8::1]:8053", "[2001:db8::1]:8053"},
      {"[2001:db8::1]", "[2001:db8::1]:53"},
      {"2001:db8::1", "[2001:db8::1]:53"},
      {"[::]:5353", "[::]:5353"},
      {"::1:53", "[::0.1.0.83]:53"},  // bare IPv6 carries no port: this is ::1:53 the address
      {"", nullptr},
      {"192.0.2.1:0", nullptr},
      {"192.0.2.1:65536", nullptr},
      {"192.0.2.1:", nullptr},
      {"192.0.2.1:abc", nullptr},
      {"192.0.2.1:+53", nullptr},
      {"192.0.2.1:053", nullptr},
      {"192.0.2.01", nullptr},
      {"192.0.2", nullptr},
      {" 192.0.2.1", nullptr},
      {"192.0.2.1 ", nullptr},
      {"example.com:53", nullptr},
      {"[2001:db8::1]53", nullptr},
      {"[2001:db8::1", nullptr},
      {"2001:db8::1]:53", nullptr},
      {"[192.0.2.1]:53", nullptr},
      {"[]:53", nullptr},
  };
  for (const Row& r : rows) {
    CAPTURE(r.text);
    const auto e = dnsd::parse_endpoint(r.text, 53);
    if (r.parsed == nullptr) {
      CHECK_FALSE(e.has_value());
    } else {
      REQUIRE(e.has_value());
      CHECK(e->to_string() == r.parsed);
    }
  }
  CHECK(dnsd::parse_endpoint("192.0.2.1", 5300)->port == 5300);
  CHECK_FALSE(dnsd::parse_endpoint(std::string("127.0.0.1\0junk", 14), 53).has_value());
}

TEST_CASE("an empty or comment-only file leaves every value as it was") {
  check_same(dnsd::parse_config("", "d.yaml"), dnsd::Config{});
  check_same(dnsd::parse_config("# nothing\n", "d.yaml", documented_defaults()),
             documented_defaults());
}

TEST_CASE("the documented defaults") {
  const dnsd::Config c;
  CHECK(c.upstreams.empty());
  CHECK(c.allowlist == "/etc/egress/allowlist.yaml");
  CHECK(c.deny == dnsd::DenyMode::NXDomain);
  CHECK(c.negative_ttl == 10);
  CHECK_FALSE(c.log_queries);
  CHECK(c.log_level == "info");
  CHECK(c.upstream_timeout == 2000ms);
  CHECK(c.nft_mode == dnsd::NftMode::Enforce);
  CHECK(c.nft_table == "egress");
  CHECK(c.nft_set4 == "allow4");
  CHECK(c.nft_set6 == "allow6");
  CHECK(c.nft_ack_timeout == 50ms);
  CHECK(c.element_min_timeout == 60);
  CHECK(c.element_max_timeout == 3600);
  CHECK(c.element_grace == 30);
  CHECK(c.max_addresses_per_name == 64);
  CHECK(validate_error(documented_defaults()) == "(no error)");
}

TEST_CASE("every key is read") {
  const dnsd::Config c = dnsd::parse_config(R"(
listen: [127.0.0.53:53, "[::1]:5353"]
upstream:
  - 192.0.2.53
  - "[2001:db8::53]:5353"
allowlist: /srv/allow.yaml
deny: refused
negative_ttl: 0
log_queries: true
log_level: debug
upstream_timeout_ms: 1500
cache:
  max_entries: 500
  max_bytes: 65536
  max_ttl: 3600
max_pending: 100
tcp:
  max_connections: 10
  idle_timeout_ms: 2500
  max_pipelined: 4
udp_max_size: 4096
nft:
  mode: off
  table: sess_1
  set4: a4
  set6: a6
  mark: 7
  ack_timeout_ms: 20
  min_timeout: 30
  max_timeout: 600
  grace: 5
  max_addresses: 8
)",
                                            "d.yaml");
  CHECK(strings(c.listen) == std::vector<std::string>{"127.0.0.53:53", "[::1]:5353"});
  CHECK(strings(c.upstreams) == std::vector<std::string>{"192.0.2.53:53", "[2001:db8::53]:5353"});
  CHECK(c.allowlist == "/srv/allow.yaml");
  CHECK(c.deny == dnsd::DenyMode::Refused);
  CHECK(c.negative_ttl == 0);
  CHECK(c.log_queries);
  CHECK(c.log_level == "debug");
  CHECK(c.upstream_timeout == 1500ms);
  CHECK(c.cache_max_entries == 500);
  CHECK(c.cache_max_bytes == 65536);
  CHECK(c.cache_max_ttl == 3600);
  CHECK(c.max_pending == 100);
  CHECK(c.tcp_max_connections == 10);
  CHECK(c.tcp_idle_timeout == 2500ms);
  CHECK(c.tcp_max_pipelined == 4);
  CHECK(c.udp_max_size == 4096);
  CHECK(c.nft_mode == dnsd::NftMode::Off);
  CHECK(c.nft_table == "sess_1");
  CHECK(c.nft_set4 == "a4");
  CHECK(c.nft_set6 == "a6");
  CHECK(c.nft_mark == 7);
  CHECK(c.nft_ack_timeout == 20ms);
  CHECK(c.element_min_timeout == 30);
  CHECK(c.element_max_timeout == 600);
  CHECK(c.element_grace == 5);
  CHECK(c.max_addresses_per_name == 8);
  CHECK(validate_error(c) == "(no error)");
}

TEST_CASE("only the keys present override the base; a scalar listen is a one-element list") {
  dnsd::Config base = documented_defaults();
  base.udp_max_size = 999;
  base.upstreams = {ep("192.0.2.1", 53)};
  const dnsd::Config c = dnsd::parse_config(
      "listen: 127.0.0.1:5353\nnft: {mode: sets}\ncache:\ntcp: {}\n", "d.yaml", base);
  CHECK(strings(c.listen) == std::vector<std::string>{"127.0.0.1:5353"});
  CHECK(c.nft_mode == dnsd::NftMode::Sets);
  CHECK(c.nft_table == "egress");
  CHECK(c.udp_max_size == 999);
  CHECK(strings(c.upstreams) == std::vector<std::string>{"192.0.2.1:53"});
  CHECK(dnsd::parse_config("upstream: []\n", "d.yaml", base).upstreams.empty());
  CHECK(dnsd::parse_config("deny: nxdomain\n", "d.yaml", base).deny == dnsd::DenyMode::NXDomain);
  CHECK(dnsd::parse_config("log_queries: false\n", "d.yaml", base).log_queries == false);
}

TEST_CASE("unknown keys: exact file:line:column: message") {
  struct Row {
    const char* yaml;
    const char* error;
  };
  const Row rows[] = {
      {"upstreams: [192.0.2.1]\n",
       "d.yaml:1:1: unknown key \"upstreams\" (did you mean \"upstream\"?)"},
      {"deny: refused\nnegative-ttl: 5\n",
       "d.yaml:2:1: unknown key \"negative-ttl\" (did you mean \"negative_ttl\"?)"},
      {"frobnicate: 1\n",
       "d.yaml:1:1: unknown key \"frobnicate\" (expected listen, upstream, allowlist, deny, "
       "negative_ttl, log_queries, log_level, upstream_timeout_ms, cache, max_pending, tcp, "
       "udp_max_size, nft or chaos)"},
      {"cache:\n  max_entry: 5\n",
       "d.yaml:2:3: unknown key \"max_entry\" in cache (did you mean \"max_entries\"?)"},
      {"tcp:\n  idle: 5\n",
       "d.yaml:2:3: unknown key \"idle\" in tcp (expected max_connections, idle_timeout_ms or "
       "max_pipelined)"},
      {"nft: {mode: off, set: x}\n",
       "d.yaml:1:18: unknown key \"set\" in nft (did you mean \"set4\"?)"},
      {"deny: refused\ndeny: nxdomain\n", "d.yaml:2:1: duplicate key \"deny\""},
      {"cache: {max_ttl: 5, max_ttl: 6}\n", "d.yaml:1:21: duplicate key \"max_ttl\" in cache"},
      {"[a]: 1\n",
       "d.yaml:1:1: keys must be strings (expected listen, upstream, allowlist, deny, "
       "negative_ttl, log_queries, log_level, upstream_timeout_ms, cache, max_pending, tcp, "
       "udp_max_size, nft or chaos)"},
  };
  for (const Row& r : rows) {
    CAPTURE(r.yaml);
    CHECK(error_of(r.yaml) == r.error);
  }
}

TEST_CASE("bad values: exact file:line:column: message") {
  struct Row {
    const char* yaml;
    const char* error;
  };
  const Row rows[] = {
      {"upstream_timeout_ms: abc",
       "d.yaml:1:22: invalid value \"abc\" for upstream_timeout_ms: expected an integer from 1 "
       "to 60000"},
      {"upstream_timeout_ms: 0",
       "d.yaml:1:22: invalid value \"0\" for upstream_timeout_ms: expected an integer from 1 to "
       "60000"},
      {"upstream_timeout_ms: 60001",
       "d.yaml:1:22: invalid value \"60001\" for upstream_timeout_ms: expected an integer from 1 "
       "to 60000"},
      {"upstream_timeout_ms: -5",
       "d.yaml:1:22: invalid value \"-5\" for upstream_timeout_ms: expected an integer from 1 to "
       "60000"},
      {"upstream_timeout_ms: 99999999999999999999999",
       "d.yaml:1:22: invalid value \"99999999999999999999999\" for upstream_timeout_ms: expected "
       "an integer from 1 to 60000"},
      {"negative_ttl: 1e3",
       "d.yaml:1:15: invalid value \"1e3\" for negative_ttl: expected an integer from 0 to 86400"},
      {"negative_ttl: 86401",
       "d.yaml:1:15: invalid value \"86401\" for negative_ttl: expected an integer from 0 to "
       "86400"},
      {"negative_ttl:\n",
       "d.yaml:1:1: missing value for negative_ttl: expected an integer from 0 to 86400"},
      {"negative_ttl: [1]\n",
       "d.yaml:1:15: invalid value for negative_ttl: expected an integer from 0 to 86400, not a "
       "list"},
      {"udp_max_size: 511",
       "d.yaml:1:15: invalid value \"511\" for udp_max_size: expected an integer from 512 to "
       "4096"},
      {"udp_max_size: 0x200",
       "d.yaml:1:15: invalid value \"0x200\" for udp_max_size: expected an integer from 512 to "
       "4096"},
      {"udp_max_size: 4097",
       "d.yaml:1:15: invalid value \"4097\" for udp_max_size: expected an integer from 512 to "
       "4096"},
      {"max_pending: 0",
       "d.yaml:1:14: invalid value \"0\" for max_pending: expected an integer from 1 to 65536"},
      {"cache:\n  max_entries: 0\n",
       "d.yaml:2:16: invalid value \"0\" for cache.max_entries: expected an integer from 1 to "
       "10000000"},
      {"cache:\n  max_bytes: 1k\n",
       "d.yaml:2:14: invalid value \"1k\" for cache.max_bytes: expected an integer from 4096 to "
       "1073741824"},
      {"cache:\n  max_ttl: 604801\n",
       "d.yaml:2:12: invalid value \"604801\" for cache.max_ttl: expected an integer from 1 to "
       "604800"},
      {"tcp:\n  max_connections: \"\"\n",
       "d.yaml:2:20: invalid value \"\" for tcp.max_connections: expected an integer from 1 to "
       "65536"},
      {"tcp:\n  idle_timeout_ms: 0\n",
       "d.yaml:2:20: invalid value \"0\" for tcp.idle_timeout_ms: expected an integer from 1 to "
       "60000"},
      {"tcp:\n  max_pipelined: 1025\n",
       "d.yaml:2:18: invalid value \"1025\" for tcp.max_pipelined: expected an integer from 1 to "
       "1024"},
      {"log_queries: yes",
       "d.yaml:1:14: invalid value \"yes\" for log_queries: expected true or false"},
      {"log_queries: True",
       "d.yaml:1:14: invalid value \"True\" for log_queries: expected true or false"},
      {"deny: drop", "d.yaml:1:7: invalid value \"drop\" for deny: expected nxdomain or refused"},
      {"log_level: verbose",
       "d.yaml:1:12: invalid value \"verbose\" for log_level: expected trace, debug, info, warn "
       "or error"},
      {"nft:\n  mode: on\n",
       "d.yaml:2:9: invalid value \"on\" for nft.mode: expected enforce, sets or off"},
      {"nft:\n  table: \"a b\"\n",
       "d.yaml:2:10: invalid value \"a b\" for nft.table: expected a name of letters, digits, "
       "'_', '-' and '.' starting with a letter or '_'"},
      {"nft: sets\n",
       "d.yaml:1:6: invalid value \"sets\" for nft: expected a map of mode, table, set4, set6, mark, "
       "ack_timeout_ms, min_timeout, max_timeout, grace or max_addresses"},
      {"cache: [1]\n",
       "d.yaml:1:8: invalid value for cache: expected a map of max_entries, max_bytes or "
       "max_ttl, not a list"},
      {"allowlist: \"\"\n", "d.yaml:1:12: invalid value \"\" for allowlist: expected a file path"},
      {"allowlist: {a: b}\n",
       "d.yaml:1:12: invalid value for allowlist: expected a file path, not a map"},
      {"listen: 127.0.0.1:99999",
       "d.yaml:1:9: invalid value \"127.0.0.1:99999\" for listen: expected IP, IP:PORT or "
       "[IPv6]:PORT with a port from 1 to 65535"},
      {"listen:\n  - 127.0.0.1\n  - localhost\n",
       "d.yaml:3:5: invalid value \"localhost\" for listen: expected IP, IP:PORT or [IPv6]:PORT "
       "with a port from 1 to 65535"},
      {"listen: []\n",
       "d.yaml:1:9: invalid value for listen: expected at least one address, not an empty list"},
      {"listen:\n",
       "d.yaml:1:1: missing value for listen: expected an address or a list of "
       "addresses (IP, IP:PORT or [IPv6]:PORT)"},
      {"listen: {a: 1}\n",
       "d.yaml:1:9: invalid value for listen: expected an address or a list of addresses (IP, "
       "IP:PORT or [IPv6]:PORT), not a map"},
      {"listen: [127.0.0.1, 127.0.0.1:53]\n", "d.yaml:1:21: duplicate listen address 127.0.0.1:53"},
      {"upstream: [[192.0.2.1]]\n",
       "d.yaml:1:12: invalid value for upstream: expected IP, IP:PORT or [IPv6]:PORT with a port "
       "from 1 to 65535, not a list"},
      {"upstream: 0.0.0.0\n",
       "d.yaml:1:11: invalid value \"0.0.0.0\" for upstream: expected a server's address, not the "
       "unspecified address"},
      {"- listen\n", "d.yaml:1:1: the config must be a map of settings, not a list"},
      {"listen: [\n", "d.yaml:2:1: invalid YAML: end of sequence flow not found"},
      {"deny: refused\n---\ndeny: nxdomain\n", "d.yaml:3:1: more than one YAML document"},
  };
  for (const Row& r : rows) {
    CAPTURE(r.yaml);
    CHECK(error_of(r.yaml) == r.error);
  }
}

TEST_CASE("validate: an upstream that is one of dnsd's own listen addresses would loop") {
  struct Row {
    const char* listen;
    const char* upstream;
    bool loops;
  };
  const Row rows[] = {
      {"127.0.0.1:53", "127.0.0.1:53", true},
      {"127.0.0.1:53", "127.0.0.1:5353", false},
      {"127.0.0.1:53", "192.0.2.53:53", false},
      {"0.0.0.0:53", "127.0.0.1:53", true},  // a wildcard listener receives loopback
      {"0.0.0.0:53", "127.0.0.2:53", true},  // all of 127/8
      {"0.0.0.0:53", "127.0.0.1:5353", false},
      {"0.0.0.0:53", "[::1]:53", false},  // an IPv4 wildcard does not get IPv6
      {"[::]:53", "[::1]:53", true},
      {"[::]:53", "127.0.0.1:53", true},  // "::" is dual-stack
      {"[::1]:53", "[::1]:53", true},
      {"[::1]:53", "127.0.0.1:53", false},
      {"0.0.0.0:53", "0.0.0.0:53", true},
  };
  for (const Row& r : rows) {
    CAPTURE(r.listen);
    CAPTURE(r.upstream);
    dnsd::Config c;
    c.listen = {*dnsd::parse_endpoint(r.listen, 53)};
    c.upstreams = {ep("192.0.2.1", 53), *dnsd::parse_endpoint(r.upstream, 53)};
    const std::string got = validate_error(c);
    if (r.loops) {
      const std::string u = c.upstreams[1].to_string();
      const bool unspecified = c.upstreams[1].address.is_unspecified();
      CHECK(got == (unspecified ? "d.yaml: invalid value \"" + u +
                                      "\" for upstream: expected a server's address, not the "
                                      "unspecified address"
                                : "d.yaml: upstream " + u +
                                      " is one of dnsd's own listen addresses: queries would "
                                      "loop"));
    } else {
      CHECK(got == "(no error)");
    }
  }
}

TEST_CASE("validate: values set after the file (flags) are checked too") {
  dnsd::Config c = documented_defaults();
  CHECK(validate_error(c) == "(no error)");

  c.listen.clear();
  CHECK(validate_error(c) == "d.yaml: invalid value for listen: expected at least one address");

  c = documented_defaults();
  c.listen.push_back(ep("127.0.0.1", 53));
  CHECK(validate_error(c) == "d.yaml: duplicate listen address 127.0.0.1:53");

  c = documented_defaults();
  c.udp_max_size = 100;
  CHECK(validate_error(c) ==
        "d.yaml: invalid value \"100\" for udp_max_size: expected an integer from 512 to 4096");

  c = documented_defaults();
  c.upstream_timeout = -1ms;
  CHECK(validate_error(c) ==
        "d.yaml: invalid value \"-1\" for upstream_timeout_ms: expected an "
        "integer from 1 to 60000");

  c = documented_defaults();
  c.cache_max_entries = 0;
  CHECK(validate_error(c) ==
        "d.yaml: invalid value \"0\" for cache.max_entries: expected an "
        "integer from 1 to 10000000");

  c = documented_defaults();
  c.log_level = "loud";
  CHECK(validate_error(c) ==
        "d.yaml: invalid value \"loud\" for log_level: expected trace, "
        "debug, info, warn or error");

  c = documented_defaults();
  c.nft_table = "1table";
  CHECK(validate_error(c) ==
        "d.yaml: invalid value \"1table\" for nft.table: expected a name of "
        "letters, digits, '_', '-' and '.' starting with a letter or '_'");

  c = documented_defaults();
  c.element_min_timeout = 600;
  c.element_max_timeout = 60;
  CHECK(validate_error(c) == "d.yaml: nft.min_timeout (600) is above nft.max_timeout (60)");

  c = documented_defaults();
  c.nft_set6 = c.nft_set4;
  CHECK(validate_error(c) ==
        "d.yaml: nft.set4 and nft.set6 are both \"allow4\": they need two sets");

  c = documented_defaults();
  c.allowlist.clear();
  CHECK(validate_error(c) == "d.yaml: missing value for allowlist: expected a file path");
}

TEST_CASE("load_config: unreadable file; the shipped policies/dnsd.yaml holds the defaults") {
  CHECK_THROWS_WITH_AS(dnsd::load_config("/nonexistent/dnsd.yaml"),
                       "/nonexistent/dnsd.yaml: cannot read: No such file or directory",
                       egress::ConfigError);
  const std::string path = std::string(EGRESS_SOURCE_DIR) + "/policies/dnsd.yaml";
  // A base unlike every default, so that each key the file omits would show.
  dnsd::Config odd;
  odd.listen = {ep("192.0.2.9", 9)};
  odd.upstreams = {ep("192.0.2.9", 9)};
  odd.allowlist = "x";
  odd.deny = dnsd::DenyMode::Refused;
  odd.negative_ttl = 1;
  odd.log_queries = true;
  odd.log_level = "trace";
  odd.upstream_timeout = 1ms;
  odd.cache_max_entries = 1;
  odd.cache_max_bytes = 4096;
  odd.cache_max_ttl = 1;
  odd.max_pending = 1;
  odd.tcp_max_connections = 1;
  odd.tcp_idle_timeout = 1ms;
  odd.tcp_max_pipelined = 1;
  odd.udp_max_size = 512;
  odd.nft_mode = dnsd::NftMode::Off;
  odd.nft_table = "x";
  odd.nft_set4 = "x4";
  odd.nft_set6 = "x6";
  odd.nft_mark = 1;
  odd.nft_ack_timeout = 1ms;
  odd.element_min_timeout = 1;
  odd.element_max_timeout = 1;
  odd.element_grace = 0;
  odd.max_addresses_per_name = 1;
  const dnsd::Config c = dnsd::load_config(path, odd);
  check_same(c, documented_defaults());
  CHECK(validate_error(c) == "(no error)");
}
