#include "dnsd/allowlist.h"

#include <arpa/inet.h>
#include <idn2.h>
#include <netinet/in.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "common/config_error.h"
#include "common/sha256.h"
#include "common/yaml_load.h"

namespace dnsd {

namespace {

using egress::fail_at;

// RFC 1035 2.3.4: 63 octets a label, 255 a wire name, i.e. 253 characters written without the
// trailing dot.
constexpr std::size_t kMaxLabel = 63;
constexpr std::size_t kMaxName = 253;

std::string char_name(char ch) {
  const auto c = static_cast<unsigned char>(ch);
  if (c < 0x20 || c >= 0x7f) {
    char hex[8];
    std::snprintf(hex, sizeof hex, "\\x%02x", c);
    return std::string("'") + hex + "'";
  }
  return std::string("'") + ch + "'";
}

// yaml-cpp gives an empty block entry ("-" and nothing after it) the position of the token that
// follows, often on a later line. Point at its "-" instead when that is what precedes.
YAML::Mark empty_entry_mark(std::string_view text, const YAML::Mark& next) {
  if (next.is_null() || next.line < 0) return next;
  std::vector<std::string_view> lines;
  for (std::size_t start = 0;;) {
    const std::size_t nl = text.find('\n', start);
    lines.push_back(text.substr(start, nl == std::string_view::npos ? nl : nl - start));
    if (nl == std::string_view::npos || lines.size() > static_cast<std::size_t>(next.line)) break;
    start = nl + 1;
  }
  for (auto l = static_cast<std::ptrdiff_t>(
           std::min(lines.size() - 1, static_cast<std::size_t>(next.line)));
       l >= 0; --l) {
    std::string_view s = lines[static_cast<std::size_t>(l)];
    if (l == 0 && s.starts_with("\xEF\xBB\xBF")) s.remove_prefix(3);  // marks skip the BOM
    if (l == next.line) s = s.substr(0, static_cast<std::size_t>(next.column));
    for (std::size_t i = 0; i < s.size(); ++i) {
      if (s[i] == '#' && (i == 0 || s[i - 1] == ' ' || s[i - 1] == '\t')) {
        s = s.substr(0, i);
        break;
      }
    }
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
      s.remove_suffix(1);
    if (s.empty()) continue;
    if (s.back() != '-') return next;
    YAML::Mark m;
    m.line = static_cast<int>(l);
    m.column = static_cast<int>(s.size() - 1);
    m.pos = -2;  // unknown; never is_null()
    return m;
  }
  return next;
}

bool is_ip_literal(const std::string& s) {
  unsigned char buf[sizeof(in6_addr)];
  return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

struct Normalized {
  std::string name;
  bool wildcard = false;
};

// Returns the entry's lookup form, or throws at `node` with the reason.
Normalized normalize_domain(const std::string& pattern, const YAML::Node& node,
                            const std::string& source) {
  const auto fail = [&](const std::string& why) {
    fail_at(source, node, "invalid domain " + egress::quoted(pattern) + ": " + why);
  };
  Normalized out;
  std::string s = pattern;
  if (s == "*") fail("'*' alone would allow every name");
  if (s.starts_with("*.")) {
    out.wildcard = true;
    s.erase(0, 2);
  }
  if (s.find('*') != std::string::npos) fail("'*' is allowed only as the whole first label");

  for (char& c : s) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  if (std::any_of(s.begin(), s.end(),
                  [](char c) { return static_cast<unsigned char>(c) >= 0x80; })) {
    // UTS #46 non-transitional processing, as browsers resolve names: case folding, NFC,
    // "ß" kept as itself, and the ideographic full stop as a dot.
    char* ascii = nullptr;
    const int rc = idn2_to_ascii_8z(s.c_str(), &ascii, IDN2_NONTRANSITIONAL | IDN2_NFC_INPUT);
    std::unique_ptr<char, decltype(&idn2_free)> owner(ascii, &idn2_free);
    if (rc != IDN2_OK) fail(std::string("IDNA conversion failed: ") + idn2_strerror(rc));
    s = ascii;
  }
  if (s.ends_with('.')) s.pop_back();
  if (s.empty()) {
    if (out.wildcard) fail("'*' alone would allow every name");
    fail("empty name");
  }

  if (!out.wildcard) {
    if (is_ip_literal(s)) {
      fail_at(source, node, "IP address " + s + " in domains: put networks in networks:");
    }
    if (s.find('/') != std::string::npos && egress::parse_cidr(s).cidr) {
      fail_at(source, node, "network " + s + " in domains: put networks in networks:");
    }
  }
  if (s.size() > kMaxName) fail("longer than 253 octets");

  std::size_t start = 0;
  std::string_view last;
  for (;;) {
    const std::size_t dot = s.find('.', start);
    const std::string_view label =
        std::string_view(s).substr(start, dot == std::string::npos ? dot : dot - start);
    if (label.empty()) fail("empty label");
    if (label.size() > kMaxLabel)
      fail("label " + egress::quoted(label) + " is longer than 63 octets");
    for (char c : label) {
      const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
      if (!ok) fail("invalid character " + char_name(c));
    }
    last = label;
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  // RFC 3696 2: a top-level domain is never all-numeric, so this is a mistyped address
  // ("10.0.0.256"), which no DNS query will ever ask for.
  if (std::all_of(last.begin(), last.end(), [](char c) { return c >= '0' && c <= '9'; }))
    fail("the last label is all digits (an IP address? put networks in networks:)");

  out.name = std::move(s);
  return out;
}

YAML::Node sequence_of(const YAML::Node& value, const std::string& name,
                       const std::string& source) {
  if (value.IsNull()) return YAML::Node();  // iterates as empty
  if (!value.IsSequence()) {
    fail_at(source, value, name + " must be a list, not " + std::string(egress::node_kind(value)));
  }
  return value;
}

std::string fnv1a64_hex(std::string_view bytes) {
  std::uint64_t h = 14695981039346656037ull;
  for (char c : bytes) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ull;
  }
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  return hex;
}

}  // namespace

std::shared_ptr<const Allowlist> Allowlist::load(const std::string& path) {
  return parse(egress::read_file(path), path);
}

std::shared_ptr<const Allowlist> Allowlist::parse(std::string_view yaml,
                                                  const std::string& source) {
  auto list = std::make_shared<Allowlist>();
  list->source_ = source;
  list->digest_ = fnv1a64_hex(yaml);
  list->sha256_ = egress::sha256_hex(yaml);
  list->loaded_at_ = std::chrono::system_clock::now();

  const YAML::Node root = egress::load_yaml(yaml, source);
  try {
    if (!root.IsDefined() || root.IsNull()) {
      // An empty file is more often a half-written one than a policy; keep the old one.
      throw egress::ConfigError(source, 1, 1,
                                "empty allowlist (write \"domains: []\" to deny every name)");
    }
    if (!root.IsMap()) {
      fail_at(source, root,
              "the allowlist must be a map with domains: and networks:, not " +
                  std::string(egress::node_kind(root)));
    }
    // Default-constructed nodes hold nothing, so assigning shares the document's node (a YAML::Node
    // that holds a value would instead be rebound to the assigned one).
    YAML::Node domains;
    YAML::Node networks;
    bool seen_domains = false;
    bool seen_networks = false;
    for (auto it = root.begin(); it != root.end(); ++it) {
      const YAML::Node key = it->first;
      if (!key.IsScalar())
        fail_at(source, key, "keys must be strings (expected domains or networks)");
      const std::string& k = key.Scalar();
      if (k == "domains" || k == "networks") {
        bool& seen = k == "domains" ? seen_domains : seen_networks;
        if (seen) fail_at(source, key, "duplicate key " + egress::quoted(k));
        seen = true;
        (k == "domains" ? domains : networks) = sequence_of(it->second, k, source);
      } else {
        fail_at(source, key,
                "unknown key " + egress::quoted(k) + " (expected domains or networks)");
      }
    }

    for (auto it = domains.begin(); it != domains.end(); ++it) {
      const YAML::Node entry = *it;
      if (entry.IsNull()) {
        fail_at(source, empty_entry_mark(yaml, entry.Mark()), "empty entry in domains");
      }
      if (!entry.IsScalar()) {
        fail_at(source, entry,
                "invalid entry in domains: expected a name, not " +
                    std::string(egress::node_kind(entry)));
      }
      const Normalized n = normalize_domain(entry.Scalar(), entry, source);
      auto& index = n.wildcard ? list->wildcard_ : list->exact_;
      if (index.contains(n.name)) continue;  // a repeated entry is harmless; keep the first
      const YAML::Mark m = entry.Mark();
      index.emplace(n.name, list->entries_.size());
      list->entries_.push_back(
          AllowEntry{entry.Scalar(), n.name, n.wildcard, m.line + 1, m.column + 1});
    }

    std::set<std::tuple<std::uint8_t, std::uint8_t, std::array<std::uint8_t, 16>>> unique_networks;
    for (auto it = networks.begin(); it != networks.end(); ++it) {
      const YAML::Node entry = *it;
      if (entry.IsNull()) {
        fail_at(source, empty_entry_mark(yaml, entry.Mark()), "empty entry in networks");
      }
      if (!entry.IsScalar()) {
        fail_at(source, entry,
                "invalid entry in networks: expected a network, not " +
                    std::string(egress::node_kind(entry)));
      }
      egress::CidrParse parsed = egress::parse_cidr(entry.Scalar());
      if (!parsed.cidr) fail_at(source, entry, parsed.error);
      const egress::Cidr& c = *parsed.cidr;
      if (unique_networks.emplace(c.family, c.prefix, c.addr).second) list->networks_.push_back(c);
    }
  } catch (const YAML::Exception& e) {
    // Not expected once the document loaded; still a config error, never an escaping exception.
    fail_at(source, e.mark, e.msg);
  }
  return list;
}

const AllowEntry* Allowlist::match(std::string_view hostname) const {
  if (hostname.empty() || hostname == ".") return nullptr;
  if (auto it = exact_.find(hostname); it != exact_.end()) return &entries_[it->second];
  if (wildcard_.empty()) return nullptr;
  // Proper suffixes, longest first: "a.b.github.com" tries "b.github.com", "github.com", "com".
  for (std::size_t dot = hostname.find('.'); dot != std::string_view::npos;
       dot = hostname.find('.', dot + 1)) {
    const std::string_view suffix = hostname.substr(dot + 1);
    if (suffix.empty()) break;
    if (auto it = wildcard_.find(suffix); it != wildcard_.end()) return &entries_[it->second];
  }
  return nullptr;
}

}  // namespace dnsd
