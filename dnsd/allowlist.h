// The allowlist: which names a session may resolve (and so reach), and which networks it may
// reach without DNS. Parsed, validated and frozen at load; shared as shared_ptr<const Allowlist>
// and swapped whole on reload.
//
// File format (YAML):
//   domains:            # "name" = that name only; "*.name" = every name below it, not the name
//     - github.com
//     - "*.githubusercontent.com"
//   networks:           # CIDRs reachable without DNS
//     - 192.0.2.0/24
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/cidr.h"

namespace dnsd {

struct AllowEntry {
  std::string pattern;  // as written in the file ("*.Bücher.example")
  std::string name;     // ASCII lowercase without "*." or trailing dot ("xn--bcher-kva.example")
  bool wildcard = false;
  int line = 0;  // position in the file, 1-based
  int column = 0;
};

class Allowlist {
 public:
  // Throw egress::ConfigError with FILE:LINE:COL for: YAML syntax errors, unknown keys, a
  // non-list, a non-string entry, '*' other than as a whole leading label ("a.*.com", "**.com",
  // "*foo.com"), "*" alone, empty labels, labels over 63 octets, names over 253 octets, IP
  // literals in domains:, characters other than letters, digits, '-' and '_' after IDNA
  // conversion, invalid CIDRs in networks:.
  static std::shared_ptr<const Allowlist> load(const std::string& path);
  static std::shared_ptr<const Allowlist> parse(std::string_view yaml, const std::string& source);

  // `hostname` is lowercase without trailing dot (dns::Name::hostname()). Returns the entry that
  // allows it (an exact entry first, else the longest wildcard suffix), or nullptr.
  const AllowEntry* match(std::string_view hostname) const;

  const std::vector<AllowEntry>& entries() const { return entries_; }
  const std::vector<egress::Cidr>& networks() const { return networks_; }
  const std::string& source() const { return source_; }
  // FNV-1a 64 of the file's bytes as 16 hex digits: tells two versions of the file apart.
  const std::string& digest() const { return digest_; }
  // SHA-256 of the file's bytes, 64 hex digits: what `sha256sum FILE` prints (policy.egress).
  const std::string& sha256() const { return sha256_; }
  // When this content was parsed (wall clock).
  std::chrono::system_clock::time_point loaded_at() const { return loaded_at_; }

 private:
  std::vector<AllowEntry> entries_;
  std::vector<egress::Cidr> networks_;
  // Looked up by string_view on the query path: no allocation per query.
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  using Index = std::unordered_map<std::string, std::size_t, Hash, std::equal_to<>>;
  Index exact_;     // name -> index in entries_
  Index wildcard_;  // suffix -> index in entries_
  std::string source_;
  std::string digest_;
  std::string sha256_;
  std::chrono::system_clock::time_point loaded_at_;
};

}  // namespace dnsd
