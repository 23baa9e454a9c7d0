#include "dnsd/config.h"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <boost/asio/ip/address_v4.hpp>
#include <boost/asio/ip/address_v6.hpp>
#include <charconv>
#include <cstdio>
#include <initializer_list>
#include <optional>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "common/dns_wire.h"
#include "common/config_error.h"
#include "common/yaml_load.h"

namespace dnsd {

namespace {

using egress::fail_at;

// Longest endpoint text: a full IPv6 address with a scope name, brackets and a port.
constexpr std::size_t kMaxEndpointText = 128;

struct IntRange {
  const char* key;
  std::uint64_t min;
  std::uint64_t max;
};

// The bounds are what a sane deployment could want; beyond them the value is a typo (an extra
// zero, seconds written as milliseconds) or would let one client exhaust memory.
constexpr IntRange kNegativeTtl{"negative_ttl", 0, 86400};
constexpr IntRange kUpstreamTimeout{"upstream_timeout_ms", 1, 60000};
constexpr IntRange kCacheMaxEntries{"cache.max_entries", 1, 10'000'000};
constexpr IntRange kCacheMaxBytes{"cache.max_bytes", 4096, 1ull << 30};
constexpr IntRange kCacheMaxTtl{"cache.max_ttl", 1, 604800};
constexpr IntRange kMaxPending{"max_pending", 1, 65536};
constexpr IntRange kTcpMaxConnections{"tcp.max_connections", 1, 65536};
constexpr IntRange kTcpIdleTimeout{"tcp.idle_timeout_ms", 1, 60000};
constexpr IntRange kTcpMaxPipelined{"tcp.max_pipelined", 1, 1024};
constexpr IntRange kUdpMaxSize{"udp_max_size", 512, 4096};  // RFC 1035 minimum, EDNS practice
constexpr IntRange kNftMark{"nft.mark", 1, 0xFFFFFFFF};     // 0 would match unmarked packets
constexpr IntRange kNftAckTimeout{"nft.ack_timeout_ms", 1, 10000};
constexpr IntRange kNftMinTimeout{"nft.min_timeout", 1, 86400};
constexpr IntRange kNftMaxTimeout{"nft.max_timeout", 1, 604800};
constexpr IntRange kNftGrace{"nft.grace", 0, 3600};
// The wire parser collects at most dns::kMaxAddresses per answer.
constexpr IntRange kNftMaxAddresses{"nft.max_addresses", 1, egress::dns::kMaxAddresses};

constexpr const char* kEndpointExpected =
    "expected IP, IP:PORT or [IPv6]:PORT with a port from 1 to 65535";
// nft(8) identifiers; the kernel's NFT_NAME_MAXLEN is 256 with the NUL.
constexpr std::size_t kMaxNftName = 255;
constexpr const char* kNftNameExpected =
    "expected a name of letters, digits, '_', '-' and '.' starting with a letter or '_'";

constexpr std::initializer_list<const char*> kTopKeys = {
    "listen",       "upstream",    "allowlist", "deny",
    "negative_ttl", "log_queries", "log_level", "upstream_timeout_ms",
    "cache",        "max_pending", "tcp",       "udp_max_size",
    "nft",          "chaos"};
constexpr std::initializer_list<const char*> kCacheKeys = {"max_entries", "max_bytes", "max_ttl"};
constexpr std::initializer_list<const char*> kTcpKeys = {"max_connections", "idle_timeout_ms",
                                                         "max_pipelined"};
constexpr std::initializer_list<const char*> kNftKeys = {
    "mode",           "table",       "set4",        "set6",  "mark",
    "ack_timeout_ms", "min_timeout", "max_timeout", "grace", "max_addresses"};
constexpr std::initializer_list<const char*> kLogLevels = {"trace", "debug", "info", "warn",
                                                           "error"};

// "a, b or c"
std::string one_of(std::initializer_list<const char*> names) {
  std::string out;
  std::size_t i = 0;
  for (const char* n : names) {
    if (i > 0) out += i + 1 == names.size() ? " or " : ", ";
    out += n;
    ++i;
  }
  return out;
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diag = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0u : 1u)});
      diag = up;
    }
  }
  return row[b.size()];
}

std::string range_text(const IntRange& r) {
  return "expected an integer from " + std::to_string(r.min) + " to " + std::to_string(r.max);
}

bool valid_nft_name(std::string_view s) {
  if (s.empty() || s.size() > kMaxNftName) return false;
  const auto letter = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
  if (!letter(s[0]) && s[0] != '_') return false;
  return std::all_of(s.begin(), s.end(), [&](char c) {
    return letter(c) || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.';
  });
}

bool valid_log_level(std::string_view s) {
  return std::any_of(kLogLevels.begin(), kLogLevels.end(), [&](const char* l) { return s == l; });
}

// Reads one YAML document into a Config. Every error names the node it is about.
class Reader {
 public:
  Reader(std::string source, Config base) : source_(std::move(source)), c_(std::move(base)) {}

  Config read(const YAML::Node& root) {
    if (!root.IsDefined() || root.IsNull()) return std::move(c_);  // an empty file: defaults
    if (!root.IsMap()) {
      fail_at(source_, root,
              "the config must be a map of settings, not " + std::string(egress::node_kind(root)));
    }
    for_each_key(root, "", kTopKeys,
                 [&](const std::string& k, const YAML::Node& key, const YAML::Node& v) {
                   top_level(k, key, v);
                 });
    return std::move(c_);
  }

 private:
  // `value` is not what `name` takes. A missing value is reported at its key: yaml-cpp places an
  // empty node at whatever token follows, often the next line.
  [[noreturn]] void bad(const YAML::Node& key, const YAML::Node& value, const std::string& name,
                        const std::string& expected) const {
    if (value.IsScalar()) {
      fail_at(source_, value,
              "invalid value " + egress::quoted(value.Scalar()) + " for " + name + ": " + expected);
    }
    if (!value.IsDefined() || value.IsNull()) {
      fail_at(source_, key, "missing value for " + name + ": " + expected);
    }
    fail_at(source_, value,
            "invalid value for " + name + ": " + expected + ", not " + egress::node_kind(value));
  }

  template <class F>
  void for_each_key(const YAML::Node& map, const std::string& section,
                    std::initializer_list<const char*> known, F&& handle) const {
    std::vector<std::string> seen;
    const std::string where = section.empty() ? "" : " in " + section;
    for (auto it = map.begin(); it != map.end(); ++it) {
      const YAML::Node key = it->first;
      if (!key.IsScalar()) {
        fail_at(source_, key, "keys must be strings" + where + " (expected " + one_of(known) + ")");
      }
      const std::string& k = key.Scalar();
      const bool is_known =
          std::any_of(known.begin(), known.end(), [&](const char* n) { return k == n; });
      if (!is_known) fail_at(source_, key, unknown_key(k, where, known));
      if (std::find(seen.begin(), seen.end(), k) != seen.end()) {
        fail_at(source_, key, "duplicate key " + egress::quoted(k) + where);
      }
      seen.push_back(k);
      handle(k, key, it->second);
    }
  }

  static std::string unknown_key(const std::string& k, const std::string& where,
                                 std::initializer_list<const char*> known) {
    // A suggestion further away than a third of the word (two edits at least) is noise.
    const char* best = nullptr;
    std::size_t best_distance = std::max<std::size_t>(2, k.size() / 3) + 1;
    for (const char* n : known) {
      const std::size_t d = edit_distance(k, n);
      if (d < best_distance) {
        best = n;
        best_distance = d;
      }
    }
    if (best != nullptr && k.size() > 2) {
      return "unknown key " + egress::quoted(k) + where + " (did you mean " + egress::quoted(best) +
             "?)";
    }
    return "unknown key " + egress::quoted(k) + where + " (expected " + one_of(known) + ")";
  }

  template <class T>
  T integer(const YAML::Node& key, const YAML::Node& v, const IntRange& r) const {
    static_assert(std::is_integral_v<T>);
    std::uint64_t n = 0;
    bool ok = v.IsScalar();
    if (ok) {
      // Digits only: no sign, no hex, no exponent, no spaces (yaml-cpp's as<> accepts some).
      const std::string& s = v.Scalar();
      const char* end = s.data() + s.size();
      const auto [ptr, ec] = std::from_chars(s.data(), end, n);
      ok = !s.empty() && s[0] >= '0' && s[0] <= '9' && ec == std::errc() && ptr == end &&
           n >= r.min && n <= r.max;
    }
    if (!ok) bad(key, v, r.key, range_text(r));
    return static_cast<T>(n);
  }

  bool boolean(const YAML::Node& key, const YAML::Node& v, const std::string& name) const {
    if (v.IsScalar() && v.Scalar() == "true") return true;
    if (v.IsScalar() && v.Scalar() == "false") return false;
    bad(key, v, name, "expected true or false");
  }

  template <class E>
  E choice(const YAML::Node& key, const YAML::Node& v, const std::string& name,
           std::initializer_list<std::pair<const char*, E>> options) const {
    std::string names;
    std::size_t i = 0;
    for (const auto& [text, value] : options) {
      if (v.IsScalar() && v.Scalar() == text) return value;
      if (i > 0) names += i + 1 == options.size() ? " or " : ", ";
      names += text;
      ++i;
    }
    bad(key, v, name, "expected " + names);
  }

  std::vector<Endpoint> endpoints(const YAML::Node& key, const YAML::Node& v,
                                  const std::string& name) const {
    std::vector<YAML::Node> storage;
    if (v.IsScalar()) {
      storage.push_back(v);
    } else if (v.IsSequence()) {
      for (auto it = v.begin(); it != v.end(); ++it) storage.push_back(*it);
    } else {
      bad(key, v, name, "expected an address or a list of addresses (IP, IP:PORT or [IPv6]:PORT)");
    }
    std::vector<Endpoint> out;
    for (const YAML::Node& item : storage) {
      const std::optional<Endpoint> e =
          item.IsScalar() ? parse_endpoint(item.Scalar(), 53) : std::nullopt;
      if (!e) bad(key, item, name, kEndpointExpected);
      if (name == "upstream" && e->address.is_unspecified()) {
        bad(key, item, name, "expected a server's address, not the unspecified address");
      }
      if (name == "listen" && std::find(out.begin(), out.end(), *e) != out.end()) {
        fail_at(source_, item, "duplicate listen address " + e->to_string());
      }
      out.push_back(*e);
    }
    if (name == "listen" && out.empty()) {
      fail_at(source_, v,
              "invalid value for listen: expected at least one address, not an empty list");
    }
    return out;
  }

  std::string path(const YAML::Node& key, const YAML::Node& v, const std::string& name) const {
    if (!v.IsScalar() || v.Scalar().empty() || v.Scalar().find('\0') != std::string::npos) {
      bad(key, v, name, "expected a file path");
    }
    return v.Scalar();
  }

  template <class F>
  void section(const YAML::Node& key, const YAML::Node& v, const std::string& name,
               std::initializer_list<const char*> known, F&& handle) const {
    if (v.IsNull()) return;  // "cache:" with nothing under it changes nothing
    if (!v.IsMap()) bad(key, v, name, "expected a map of " + one_of(known));
    for_each_key(v, name, known, std::forward<F>(handle));
  }

  void top_level(const std::string& k, const YAML::Node& key, const YAML::Node& v) {
    if (k == "listen") {
      c_.listen = endpoints(key, v, k);
    } else if (k == "upstream") {
      c_.upstreams = endpoints(key, v, k);
    } else if (k == "allowlist") {
      c_.allowlist = path(key, v, k);
    } else if (k == "deny") {
      c_.deny = choice<DenyMode>(
          key, v, k, {{"nxdomain", DenyMode::NXDomain}, {"refused", DenyMode::Refused}});
    } else if (k == "negative_ttl") {
      c_.negative_ttl = integer<std::uint32_t>(key, v, kNegativeTtl);
    } else if (k == "log_queries") {
      c_.log_queries = boolean(key, v, k);
    } else if (k == "chaos") {
      c_.chaos = boolean(key, v, k);
    } else if (k == "log_level") {
      if (!v.IsScalar() || !valid_log_level(v.Scalar())) {
        bad(key, v, k, "expected " + one_of(kLogLevels));
      }
      c_.log_level = v.Scalar();
    } else if (k == "upstream_timeout_ms") {
      c_.upstream_timeout =
          std::chrono::milliseconds(integer<std::uint32_t>(key, v, kUpstreamTimeout));
    } else if (k == "max_pending") {
      c_.max_pending = integer<std::size_t>(key, v, kMaxPending);
    } else if (k == "udp_max_size") {
      c_.udp_max_size = integer<std::uint16_t>(key, v, kUdpMaxSize);
    } else if (k == "cache") {
      section(key, v, k, kCacheKeys,
              [&](const std::string& sk, const YAML::Node& skey, const YAML::Node& sv) {
                if (sk == "max_entries")
                  c_.cache_max_entries = integer<std::size_t>(skey, sv, kCacheMaxEntries);
                if (sk == "max_bytes")
                  c_.cache_max_bytes = integer<std::size_t>(skey, sv, kCacheMaxBytes);
                if (sk == "max_ttl")
                  c_.cache_max_ttl = integer<std::uint32_t>(skey, sv, kCacheMaxTtl);
              });
    } else if (k == "tcp") {
      section(key, v, k, kTcpKeys,
              [&](const std::string& sk, const YAML::Node& skey, const YAML::Node& sv) {
                if (sk == "max_connections")
                  c_.tcp_max_connections = integer<std::size_t>(skey, sv, kTcpMaxConnections);
                if (sk == "idle_timeout_ms")
                  c_.tcp_idle_timeout =
                      std::chrono::milliseconds(integer<std::uint32_t>(skey, sv, kTcpIdleTimeout));
                if (sk == "max_pipelined")
                  c_.tcp_max_pipelined = integer<std::size_t>(skey, sv, kTcpMaxPipelined);
              });
    } else if (k == "nft") {
      section(
          key, v, k, kNftKeys,
          [&](const std::string& sk, const YAML::Node& skey, const YAML::Node& sv) {
            if (sk == "mode") {
              c_.nft_mode = choice<NftMode>(
                  skey, sv, "nft.mode",
                  {{"enforce", NftMode::Enforce}, {"sets", NftMode::Sets}, {"off", NftMode::Off}});
            }
            auto name = [&](const char* full, std::string& out) {
              if (!sv.IsScalar() || !valid_nft_name(sv.Scalar()))
                bad(skey, sv, full, kNftNameExpected);
              out = sv.Scalar();
            };
            if (sk == "table") name("nft.table", c_.nft_table);
            if (sk == "set4") name("nft.set4", c_.nft_set4);
            if (sk == "set6") name("nft.set6", c_.nft_set6);
            if (sk == "mark") c_.nft_mark = integer<std::uint32_t>(skey, sv, kNftMark);
            if (sk == "ack_timeout_ms") {
              c_.nft_ack_timeout =
                  std::chrono::milliseconds(integer<std::int64_t>(skey, sv, kNftAckTimeout));
            }
            if (sk == "min_timeout") {
              c_.element_min_timeout = integer<std::uint32_t>(skey, sv, kNftMinTimeout);
            }
            if (sk == "max_timeout") {
              c_.element_max_timeout = integer<std::uint32_t>(skey, sv, kNftMaxTimeout);
            }
            if (sk == "grace") c_.element_grace = integer<std::uint32_t>(skey, sv, kNftGrace);
            if (sk == "max_addresses") {
              c_.max_addresses_per_name = integer<std::size_t>(skey, sv, kNftMaxAddresses);
            }
          });
    }
  }

  std::string source_;
  Config c_;
};

void check_range(const std::string& source, const IntRange& r, std::int64_t value) {
  if (value < 0 || static_cast<std::uint64_t>(value) < r.min ||
      static_cast<std::uint64_t>(value) > r.max) {
    throw egress::ConfigError(source, "invalid value " + egress::quoted(std::to_string(value)) +
                                          " for " + r.key + ": " + range_text(r));
  }
}

bool parse_port(std::string_view s, std::uint16_t& port) {
  if (s.empty() || s.size() > 5 || s[0] == '0') return false;
  unsigned value = 0;
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || ptr != s.data() + s.size() || value < 1 || value > 65535) return false;
  port = static_cast<std::uint16_t>(value);
  return true;
}

}  // namespace

std::string Endpoint::to_string() const {
  const std::string p = std::to_string(port);
  if (address.is_v6()) return "[" + address.to_string() + "]:" + p;
  return address.to_string() + ":" + p;
}

std::optional<Endpoint> parse_endpoint(std::string_view text, std::uint16_t default_port) {
  if (text.empty() || text.size() > kMaxEndpointText) return std::nullopt;
  // Printable ASCII only: inet_pton stops at a NUL, which would accept "127.0.0.1\0junk".
  if (!std::all_of(text.begin(), text.end(), [](char c) { return c > ' ' && c < 0x7f; })) {
    return std::nullopt;
  }
  std::string_view host = text;
  std::optional<std::string_view> port;
  bool v6 = false;
  if (text.front() == '[') {
    const std::size_t close = text.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    host = text.substr(1, close - 1);
    v6 = true;
    const std::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return std::nullopt;
      port = rest.substr(1);
    }
  } else if (const auto colons = std::count(text.begin(), text.end(), ':'); colons == 1) {
    const std::size_t colon = text.find(':');
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  } else if (colons > 1) {
    v6 = true;  // a bare IPv6 address cannot carry a port: "::1:53" is an address
  }

  Endpoint e;
  boost::system::error_code ec;
  if (v6) {
    e.address = boost::asio::ip::make_address_v6(std::string(host), ec);
  } else {
    e.address = boost::asio::ip::make_address_v4(std::string(host), ec);
  }
  if (ec) return std::nullopt;
  e.port = default_port;
  if (port && !parse_port(*port, e.port)) return std::nullopt;
  return e;
}

Config parse_config(std::string_view yaml, const std::string& source, Config base) {
  const YAML::Node root = egress::load_yaml(yaml, source);
  try {
    return Reader(source, std::move(base)).read(root);
  } catch (const YAML::Exception& e) {
    // Not expected once the document loaded; still a config error, never an escaping exception.
    fail_at(source, e.mark, e.msg);
  }
}

Config load_config(const std::string& path, Config base) {
  return parse_config(egress::read_file(path), path, std::move(base));
}

void validate(const Config& c, const std::string& source) {
  // The file's values were checked as they were read; flags may have changed any of them.
  check_range(source, kNegativeTtl, c.negative_ttl);
  check_range(source, kUpstreamTimeout, c.upstream_timeout.count());
  check_range(source, kCacheMaxEntries, static_cast<std::int64_t>(c.cache_max_entries));
  check_range(source, kCacheMaxBytes, static_cast<std::int64_t>(c.cache_max_bytes));
  check_range(source, kCacheMaxTtl, c.cache_max_ttl);
  check_range(source, kMaxPending, static_cast<std::int64_t>(c.max_pending));
  check_range(source, kTcpMaxConnections, static_cast<std::int64_t>(c.tcp_max_connections));
  check_range(source, kTcpIdleTimeout, c.tcp_idle_timeout.count());
  check_range(source, kTcpMaxPipelined, static_cast<std::int64_t>(c.tcp_max_pipelined));
  check_range(source, kUdpMaxSize, c.udp_max_size);
  if (!valid_log_level(c.log_level)) {
    throw egress::ConfigError(source, "invalid value " + egress::quoted(c.log_level) +
                                          " for log_level: expected " + one_of(kLogLevels));
  }
  check_range(source, kNftMark, c.nft_mark);
  check_range(source, kNftAckTimeout, c.nft_ack_timeout.count());
  check_range(source, kNftMinTimeout, c.element_min_timeout);
  check_range(source, kNftMaxTimeout, c.element_max_timeout);
  check_range(source, kNftGrace, c.element_grace);
  check_range(source, kNftMaxAddresses, static_cast<std::int64_t>(c.max_addresses_per_name));
  if (c.element_min_timeout > c.element_max_timeout) {
    throw egress::ConfigError(source, "nft.min_timeout (" + std::to_string(c.element_min_timeout) +
                                          ") is above nft.max_timeout (" +
                                          std::to_string(c.element_max_timeout) + ")");
  }
  for (const auto& [key, value] :
       {std::pair{"nft.table", &c.nft_table}, std::pair{"nft.set4", &c.nft_set4},
        std::pair{"nft.set6", &c.nft_set6}}) {
    if (!valid_nft_name(*value)) {
      throw egress::ConfigError(source, "invalid value " + egress::quoted(*value) + " for " + key +
                                            ": " + kNftNameExpected);
    }
  }
  if (c.nft_set4 == c.nft_set6) {
    throw egress::ConfigError(source, "nft.set4 and nft.set6 are both " +
                                          egress::quoted(c.nft_set4) + ": they need two sets");
  }
  if (c.allowlist.empty()) {
    throw egress::ConfigError(source, "missing value for allowlist: expected a file path");
  }

  if (c.listen.empty()) {
    throw egress::ConfigError(source, "invalid value for listen: expected at least one address");
  }
  for (std::size_t i = 0; i < c.listen.size(); ++i) {
    if (std::find(c.listen.begin(), c.listen.begin() + static_cast<std::ptrdiff_t>(i),
                  c.listen[i]) != c.listen.begin() + static_cast<std::ptrdiff_t>(i)) {
      throw egress::ConfigError(source, "duplicate listen address " + c.listen[i].to_string());
    }
  }
  for (const Endpoint& u : c.upstreams) {
    if (u.address.is_unspecified()) {
      throw egress::ConfigError(source, "invalid value " + egress::quoted(u.to_string()) +
                                            " for upstream: expected a server's address, not "
                                            "the unspecified address");
    }
    for (const Endpoint& l : c.listen) {
      // A wildcard listener also receives what is sent to loopback on its port; an IPv6 one
      // ("::", dual-stack by default) receives IPv4 as well.
      const bool wildcard_hit = l.address.is_unspecified() && u.address.is_loopback() &&
                                u.port == l.port && (l.address.is_v6() || u.address.is_v4());
      if (u == l || wildcard_hit) {
        throw egress::ConfigError(source, "upstream " + u.to_string() +
                                              " is one of dnsd's own listen addresses: queries "
                                              "would loop");
      }
    }
  }
}

}  // namespace dnsd
