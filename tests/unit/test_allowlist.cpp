// Allowlist parsing, validation and matching (dnsd/allowlist.h).
#include <doctest/doctest.h>

#include <memory>
#include <string>
#include <vector>

#include "common/config_error.h"
#include "dnsd/allowlist.h"

namespace {

std::shared_ptr<const dnsd::Allowlist> parse(const std::string& yaml) {
  return dnsd::Allowlist::parse(yaml, "allow.yaml");
}

// The whole what() of the ConfigError that parsing `yaml` throws.
std::string error_of(const std::string& yaml) {
  try {
    parse(yaml);
  } catch (const egress::ConfigError& e) {
    return e.what();
  }
  return "(no error)";
}

// The pattern (as written) of the entry that allows `name`, or "-" for none.
std::string verdict(const dnsd::Allowlist& list, std::string_view name) {
  const dnsd::AllowEntry* e = list.match(name);
  return e ? e->pattern : "-";
}

const char* const kPolicy = R"(domains:
  - github.com
  - "*.GitHub.com"            # apex and wildcard both listed
  - "*.githubusercontent.com"
  - PyPI.org.                 # case and trailing dot are normalised
  - bücher.example            # IDN: xn--bcher-kva.example
  - "*.münchen.de"            # IDN wildcard: *.xn--mnchen-3ya.de
  - "*.deep.example"
  - a.b.deep.example          # exact entry inside a wildcard
  - _dmarc.example.org
networks:
  - 192.0.2.0/24
)";

}  // namespace

TEST_CASE("match: name x pattern -> verdict") {
  const auto list = parse(kPolicy);
  struct Row {
    const char* name;
    const char* allowed_by;  // pattern as written, "-" for denied
  };
  const Row rows[] = {
      {"github.com", "github.com"},
      {"api.github.com", "*.GitHub.com"},
      {"a.b.github.com", "*.GitHub.com"},  // wildcard covers any depth
      {"githubusercontent.com", "-"},      // a wildcard never covers its apex
      {"raw.githubusercontent.com", "*.githubusercontent.com"},
      {"x.y.z.githubusercontent.com", "*.githubusercontent.com"},
      {"notgithub.com", "-"},  // suffix, not label boundary
      {"github.com.evil.example", "-"},
      {"githubxcom", "-"},
      {"com", "-"},
      {"pypi.org", "PyPI.org."},
      {"www.pypi.org", "-"},  // exact entries have no subdomains
      {"xn--bcher-kva.example", "bücher.example"},
      {"www.xn--bcher-kva.example", "-"},
      {"xn--mnchen-3ya.de", "-"},
      {"stadt.xn--mnchen-3ya.de", "*.münchen.de"},
      {"a.stadt.xn--mnchen-3ya.de", "*.münchen.de"},
      {"a.b.deep.example", "a.b.deep.example"},  // exact entry wins over the wildcard
      {"x.a.b.deep.example", "*.deep.example"},
      {"deep.example", "-"},
      {"_dmarc.example.org", "_dmarc.example.org"},
      {"example.org", "-"},
      {"", "-"},  // the root matches nothing
      {".", "-"},
  };
  for (const Row& r : rows) {
    CAPTURE(r.name);
    CHECK(verdict(*list, r.name) == r.allowed_by);
  }
}

TEST_CASE("match: the longest wildcard suffix wins, an exact entry before any wildcard") {
  const auto list =
      parse("domains: ['*.com', '*.example.com', 'example.com', '*.a.example.com']\n");
  CHECK(verdict(*list, "x.example.com") == "*.example.com");
  CHECK(verdict(*list, "y.x.example.com") == "*.example.com");
  CHECK(verdict(*list, "b.a.example.com") == "*.a.example.com");
  CHECK(verdict(*list, "a.example.com") == "*.example.com");
  CHECK(verdict(*list, "example.com") == "example.com");
  CHECK(verdict(*list, "other.com") == "*.com");
  CHECK(verdict(*list, "com") == "-");
}

TEST_CASE("entries keep the pattern, the lookup name and the position") {
  const auto list = parse(kPolicy);
  const auto& e = list->entries();
  REQUIRE(e.size() == 9);
  CHECK(e[1].pattern == "*.GitHub.com");
  CHECK(e[1].name == "github.com");
  CHECK(e[1].wildcard);
  CHECK(e[1].line == 3);
  CHECK(e[1].column == 5);
  CHECK(e[3].name == "pypi.org");
  CHECK_FALSE(e[3].wildcard);
  CHECK(e[4].pattern == "bücher.example");
  CHECK(e[4].name == "xn--bcher-kva.example");
  CHECK(e[5].name == "xn--mnchen-3ya.de");
  CHECK(e[5].wildcard);
  REQUIRE(list->networks().size() == 1);
  CHECK(list->networks()[0].to_string() == "192.0.2.0/24");
  CHECK(list->source() == "allow.yaml");
}

TEST_CASE("IDN entries: case folding, NFC and non-transitional processing") {
  // "Bücher" with an upper-case B; "u" + combining diaeresis (NFD); "ß" kept (non-transitional);
  // the ideographic full stop as the label separator.
  const auto list = parse(
      "domains:\n  - Bücher.example\n  - mu\xCC\x88nchen.de\n"
      "  - straße.de\n  - b\xC3\xBC"
      "cher\xE3\x80\x82"
      "test\n");
  const auto& e = list->entries();
  REQUIRE(e.size() == 4);
  CHECK(e[0].name == "xn--bcher-kva.example");
  CHECK(e[1].name == "xn--mnchen-3ya.de");
  CHECK(e[2].name == "xn--strae-oqa.de");
  CHECK(e[3].name == "xn--bcher-kva.test");
}

TEST_CASE("repeated entries are kept once, at their first position") {
  const auto list = parse(
      "domains: [a.example, A.Example., '*.a.example', a.example]\n"
      "networks: [192.0.2.0/24, 192.0.2.0/24, 2001:db8::/32]\n");
  REQUIRE(list->entries().size() == 2);
  CHECK(list->entries()[0].pattern == "a.example");
  CHECK(list->entries()[0].column == 11);
  CHECK(list->entries()[1].wildcard);
  CHECK(list->networks().size() == 2);
}

TEST_CASE("missing or empty sections are empty lists; anchors and aliases work") {
  CHECK(parse("domains:\nnetworks:\n")->entries().empty());
  CHECK(parse("domains: []\n")->networks().empty());
  const auto only_nets = parse("networks: [198.51.100.0/24]\n");
  CHECK(only_nets->entries().empty());
  CHECK(only_nets->networks().size() == 1);
  CHECK(only_nets->match("example.com") == nullptr);

  const auto aliased = parse("domains:\n  - &gh github.com\n  - *gh\n  - docs.example\n");
  CHECK(aliased->entries().size() == 2);
  CHECK(verdict(*aliased, "github.com") == "github.com");
}

TEST_CASE("digest is FNV-1a 64 of the bytes, 16 hex digits") {
  CHECK(parse("domains: []\n")->digest() == "328673ca85d94266");
  CHECK(parse("domains: []\n\n")->digest() != parse("domains: []\n")->digest());
}

TEST_CASE("invalid entries: exact file:line:column: message") {
  struct Row {
    std::string entry;  // placed on line 3, column 5
    std::string error;
  };
  const std::string long_label(64, 'a');
  // 4 labels of 63 plus 3 dots = 255 octets.
  const std::string long_name = std::string(63, 'a') + "." + std::string(63, 'b') + "." +
                                std::string(63, 'c') + "." + std::string(63, 'd');
  const std::vector<Row> rows = {
      {"\"a.*.com\"", "invalid domain \"a.*.com\": '*' is allowed only as the whole first label"},
      {"\"**.com\"", "invalid domain \"**.com\": '*' is allowed only as the whole first label"},
      {"\"*foo.com\"", "invalid domain \"*foo.com\": '*' is allowed only as the whole first label"},
      {"\"*.*.com\"", "invalid domain \"*.*.com\": '*' is allowed only as the whole first label"},
      {"\"*\"", "invalid domain \"*\": '*' alone would allow every name"},
      {"\"*.\"", "invalid domain \"*.\": '*' alone would allow every name"},
      {"a..com", "invalid domain \"a..com\": empty label"},
      {".com", "invalid domain \".com\": empty label"},
      {"a.com..", "invalid domain \"a.com..\": empty label"},
      {"\".\"", "invalid domain \".\": empty name"},
      {"\"\"", "invalid domain \"\": empty name"},
      {long_label + ".com", "invalid domain \"" + long_label + ".com\": label \"" + long_label +
                                "\" is longer than 63 octets"},
      {long_name, "invalid domain \"" + long_name.substr(0, 80) + "...\": longer than 253 octets"},
      {"192.0.2.1", "IP address 192.0.2.1 in domains: put networks in networks:"},
      {"\"2001:db8::1\"", "IP address 2001:db8::1 in domains: put networks in networks:"},
      {"192.0.2.0/24", "network 192.0.2.0/24 in domains: put networks in networks:"},
      {"10.0.0.256",
       "invalid domain \"10.0.0.256\": the last label is all digits (an IP address? put "
       "networks in networks:)"},
      {"\"exa mple.com\"", "invalid domain \"exa mple.com\": invalid character ' '"},
      {"a!.com", "invalid domain \"a!.com\": invalid character '!'"},
      {"\"a\\tb.com\"", "invalid domain \"a\\x09b.com\": invalid character '\\x09'"},
      {"\"\xEF\xBC\x8A.com\"", "invalid domain \"\xEF\xBC\x8A.com\": invalid character '*'"},
      {"xn--zz.bücher.example",
       "invalid domain \"xn--zz.bücher.example\": IDNA conversion failed: string contains "
       "invalid punycode data"},
      {"[a.com]", "invalid entry in domains: expected a name, not a list"},
      {"{a: b}", "invalid entry in domains: expected a name, not a map"},
  };
  for (const Row& r : rows) {
    CAPTURE(r.entry);
    CHECK(error_of("domains:\n  - ok.example\n  - " + r.entry + "\n  - later.example\n") ==
          "allow.yaml:3:5: " + r.error);
  }
}

TEST_CASE("invalid files: exact file:line:column: message") {
  struct Row {
    const char* yaml;
    const char* error;
  };
  const Row rows[] = {
      {"domain:\n  - a.com\n",
       "allow.yaml:1:1: unknown key \"domain\" (expected domains or networks)"},
      {"domains: []\nnetwork: []\n",
       "allow.yaml:2:1: unknown key \"network\" (expected domains or networks)"},
      {"domains: github.com\n", "allow.yaml:1:10: domains must be a list, not a string"},
      {"networks: {a: 1}\n", "allow.yaml:1:11: networks must be a list, not a map"},
      {"- github.com\n",
       "allow.yaml:1:1: the allowlist must be a map with domains: and networks:, not a list"},
      {"github.com\n",
       "allow.yaml:1:1: the allowlist must be a map with domains: and networks:, not a string"},
      {"", "allow.yaml:1:1: empty allowlist (write \"domains: []\" to deny every name)"},
      {"# nothing yet\n",
       "allow.yaml:1:1: empty allowlist (write \"domains: []\" to deny every name)"},
      {"domains: []\nnetworks: []\ndomains: [a.com]\n",
       "allow.yaml:3:1: duplicate key \"domains\""},
      {"[a]: 1\n", "allow.yaml:1:1: keys must be strings (expected domains or networks)"},
      {"domains: []\n---\ndomains: [a.com]\n", "allow.yaml:3:1: more than one YAML document"},
      {"domains:\n  - a.com\n  -\n  - b.com\n", "allow.yaml:3:3: empty entry in domains"},
      {"domains:\n  - a.com\n  -   # comment\n\n  - b.com\n",
       "allow.yaml:3:3: empty entry in domains"},
      {"domains:\n  - a.com\n  -\n", "allow.yaml:3:3: empty entry in domains"},
      {"domains: [a.com, ~]\n", "allow.yaml:1:18: empty entry in domains"},
      {"networks:\n  - 192.0.2.1/24\n",
       "allow.yaml:2:5: host bits set in 192.0.2.1/24 (did you mean 192.0.2.0/24?)"},
      {"networks: [foo]\n", "allow.yaml:1:12: \"foo\" is not an IPv4 or IPv6 network"},
      {"networks:\n  - 10.0.0.0/8\n  - [1]\n",
       "allow.yaml:3:5: invalid entry in networks: expected a network, not a list"},
      {"networks:\n  -\n", "allow.yaml:2:3: empty entry in networks"},
      {"domains:\n  - *.github.com\n",
       "allow.yaml:2:5: invalid YAML: the referenced anchor is not defined (quote entries that "
       "start with '*': \"*.example.com\")"},
      // yaml-cpp reports where it noticed: the end of the input, the character after the tab.
      {"domains: [a.com\n", "allow.yaml:2:1: invalid YAML: end of sequence flow not found"},
      {"domains:\n\t- a.com\n", "allow.yaml:2:2: invalid YAML: illegal block entry"},
      // yaml-cpp 0.7 alone would loop on this one (LoadAll) or ignore the rest (Load).
      {",x\n", "allow.yaml:1:1: invalid YAML: unexpected ','"},
      {",dodomtooru\n  - 2tw:\n", "allow.yaml:1:1: invalid YAML: unexpected ','"},
      // yaml-cpp echoes the offending byte; messages stay printable.
      {"domains: [\"a\\\x01\"]\n",
       "allow.yaml:1:15: invalid YAML: unknown escape character: \\x01"},
  };
  for (const Row& r : rows) {
    CAPTURE(r.yaml);
    CHECK(error_of(r.yaml) == r.error);
  }
}

TEST_CASE("ConfigError carries the position apart from the text") {
  try {
    parse("domains:\n  - ok.example\n  - \"a.*.com\"\n");
    FAIL("no error");
  } catch (const egress::ConfigError& e) {
    CHECK(e.file() == "allow.yaml");
    CHECK(e.line() == 3);
    CHECK(e.column() == 5);
    CHECK(e.message() ==
          "invalid domain \"a.*.com\": '*' is allowed only as the whole first "
          "label");
  }
}

TEST_CASE("a rejected file leaves an accepted allowlist untouched") {
  const auto good = parse("domains: [github.com]\n");
  CHECK(error_of("domains: [\"a.*.com\"]\n") != "(no error)");
  CHECK(verdict(*good, "github.com") == "github.com");
  CHECK(good->entries().size() == 1);
}

TEST_CASE("load: an unreadable file is a ConfigError naming it") {
  CHECK_THROWS_WITH_AS(dnsd::Allowlist::load("/nonexistent/allow.yaml"),
                       "/nonexistent/allow.yaml: cannot read: No such file or directory",
                       egress::ConfigError);
  CHECK_THROWS_WITH_AS(dnsd::Allowlist::load("/"), "/: cannot read: Is a directory",
                       egress::ConfigError);
}

TEST_CASE("the shipped policies/allowlist.yaml loads and says what it claims") {
  const std::string path = std::string(EGRESS_SOURCE_DIR) + "/policies/allowlist.yaml";
  const auto list = dnsd::Allowlist::load(path);
  CHECK(list->source() == path);
  CHECK(list->digest().size() == 16);
  const char* const allowed[] = {
      "github.com",     "api.github.com",     "raw.githubusercontent.com",
      "gitlab.com",     "pypi.org",           "files.pythonhosted.org",
      "deb.debian.org", "security.debian.org"};
  for (const char* name : allowed) {
    CAPTURE(name);
    CHECK(list->match(name) != nullptr);
  }
  CHECK(list->match("githubusercontent.com") == nullptr);
  CHECK(list->match("example.com") == nullptr);
  const std::uint8_t doc_addr[] = {192, 0, 2, 10};
  bool covered = false;
  for (const egress::Cidr& c : list->networks()) covered = covered || c.contains(4, doc_addr);
  CHECK(covered);
}
