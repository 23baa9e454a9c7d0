// dnsd's configuration: defaults, the YAML file, then command-line flags (each key has a flag).
// Parse -> validate -> freeze: the result is an immutable value.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/ip/address.hpp>

namespace dnsd {

struct Endpoint {
  boost::asio::ip::address address;
  std::uint16_t port = 53;
  std::string to_string() const;  // "127.0.0.1:53", "[::1]:53"
  bool operator==(const Endpoint&) const = default;
};

// "192.0.2.1", "192.0.2.1:5353", "[2001:db8::1]:53", "2001:db8::1" (no port in bare IPv6).
std::optional<Endpoint> parse_endpoint(std::string_view text, std::uint16_t default_port);

enum class DenyMode { NXDomain, Refused };
enum class NftMode { Enforce, Sets, Off };

struct Config {
  std::vector<Endpoint> listen{{boost::asio::ip::address_v4::loopback(), 53},
                              {boost::asio::ip::address_v6::loopback(), 53}};
  std::vector<Endpoint> upstreams;  // empty: the nameservers of /etc/resolv.conf
  std::string allowlist = "/etc/egress/allowlist.yaml";
  DenyMode deny = DenyMode::NXDomain;
  std::uint32_t negative_ttl = 10;          // seconds, SOA TTL of denials
  bool log_queries = false;
  bool chaos = true;                        // answer CHAOS TXT reports (chaos.h); off: REFUSED
  std::string log_level = "info";           // spdlog level names
  std::chrono::milliseconds upstream_timeout{2000};  // SERVFAIL after this, never silence
  std::size_t cache_max_entries = 10000;
  std::size_t cache_max_bytes = 8 * 1024 * 1024;
  std::uint32_t cache_max_ttl = 86400;
  std::size_t max_pending = 4096;           // upstream queries in flight
  std::size_t tcp_max_connections = 256;
  std::chrono::milliseconds tcp_idle_timeout{10000};
  std::size_t tcp_max_pipelined = 32;       // queries in flight on one TCP connection
  std::uint16_t udp_max_size = 1232;        // largest UDP reply we send
  NftMode nft_mode = NftMode::Enforce;
  std::string nft_table = "egress";
  std::string nft_set4 = "allow4";
  std::string nft_set6 = "allow6";
  std::uint32_t nft_mark = 0x6567;          // SO_MARK of dnsd's upstream sockets ("eg")
  std::chrono::milliseconds nft_ack_timeout{50};  // SERVFAIL when the kernel has not ACKed
  // Element lifetime: timeout = clamp(TTL, min_timeout, max_timeout) + grace, in seconds.
  std::uint32_t element_min_timeout = 60;
  std::uint32_t element_max_timeout = 3600;
  std::uint32_t element_grace = 30;
  std::size_t max_addresses_per_name = 64;  // more in one answer are not installed (dropped)
};

// Key names in the YAML file (also the flags' long names with '_' as '-'):
//   listen: [ADDR:PORT, ...]     upstream: [ADDR[:PORT], ...]   allowlist: PATH
//   deny: nxdomain|refused       negative_ttl: SECONDS          log_queries: BOOL
//   chaos: BOOL (CHAOS TXT reports NAME.why.egress, policy.egress; default true)
//   log_level: trace|debug|info|warn|error   upstream_timeout_ms: MS
//   cache: {max_entries: N, max_bytes: N, max_ttl: SECONDS}     max_pending: N
//   tcp: {max_connections: N, idle_timeout_ms: MS, max_pipelined: N}   udp_max_size: 512..4096
//   nft: {mode: enforce|sets|off, table: NAME, set4: NAME, set6: NAME, mark: N,
//         ack_timeout_ms: MS, min_timeout: S, max_timeout: S, grace: S, max_addresses: N}
// Unknown keys and bad values throw egress::ConfigError with FILE:LINE:COL.
Config parse_config(std::string_view yaml, const std::string& source, Config base = {});
Config load_config(const std::string& path, Config base = {});

// Cross-field checks after flags are applied (e.g. an upstream equal to a listen address would
// loop). Throws egress::ConfigError(source, message).
void validate(const Config& c, const std::string& source);

}  // namespace dnsd
