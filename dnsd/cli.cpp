#include "dnsd/cli.h"

#include <utility>
#include <vector>

#include <CLI/CLI.hpp>

#include "common/config_error.h"

namespace dnsd {

namespace {

// A flag and the config key it sets. A flag's value goes through the same parser as the config
// file, so a value is checked in one place whichever way it arrives.
struct FlagKey {
  const char* flag;
  const char* yaml_prefix;  // the text before the value: "cache: {max_entries: "
  const char* yaml_suffix;  // "}" for nested keys
  const char* help;
};

constexpr FlagKey kScalarFlags[] = {
    {"--allowlist", "allowlist: ", "", "allowlist file (YAML: domains, networks)"},
    {"--deny", "deny: ", "", "answer to denied names: nxdomain (default) or refused"},
    {"--negative-ttl", "negative_ttl: ", "", "seconds clients cache a denial (default 10)"},
    {"--log-level", "log_level: ", "", "trace, debug, info (default), warn, error"},
    {"--chaos", "chaos: ", "", "answer CHAOS TXT NAME.why.egress and policy.egress: true "
                               "(default) or false (then REFUSED)"},
    {"--upstream-timeout-ms", "upstream_timeout_ms: ", "",
     "SERVFAIL when upstream has not answered after this (default 2000)"},
    {"--cache-max-entries", "cache: {max_entries: ", "}", "cached answers at most"},
    {"--cache-max-bytes", "cache: {max_bytes: ", "}", "cache size in bytes at most"},
    {"--cache-max-ttl", "cache: {max_ttl: ", "}", "longest time an answer is cached (s)"},
    {"--max-pending", "max_pending: ", "", "upstream queries in flight at most"},
    {"--tcp-max-connections", "tcp: {max_connections: ", "}", "open TCP connections at most"},
    {"--tcp-idle-timeout-ms", "tcp: {idle_timeout_ms: ", "}", "close idle TCP connections after"},
    {"--tcp-max-pipelined", "tcp: {max_pipelined: ", "}", "queries in flight per TCP connection"},
    {"--udp-max-size", "udp_max_size: ", "", "largest UDP reply, 512..4096 (default 1232)"},
    {"--nft-mode", "nft: {mode: ", "}", "enforce, sets or off"},
    {"--nft-table", "nft: {table: ", "}", "nftables table name (default egress)"},
    {"--nft-set4", "nft: {set4: ", "}", "IPv4 address set (default allow4)"},
    {"--nft-set6", "nft: {set6: ", "}", "IPv6 address set (default allow6)"},
    {"--nft-mark", "nft: {mark: ", "}", "SO_MARK of dnsd's upstream sockets (default 25959)"},
    {"--nft-ack-timeout-ms", "nft: {ack_timeout_ms: ", "}",
     "SERVFAIL when the kernel has not acknowledged an install after this (default 50)"},
    {"--nft-min-timeout", "nft: {min_timeout: ", "}", "shortest element timeout, s (default 60)"},
    {"--nft-max-timeout", "nft: {max_timeout: ", "}", "longest element timeout, s (default 3600)"},
    {"--nft-grace", "nft: {grace: ", "}", "seconds added to every element timeout (default 30)"},
    {"--nft-max-addresses", "nft: {max_addresses: ", "}",
     "addresses installed per answer at most (default 64)"},
};

std::string yaml_quote(const std::string& v) {
  std::string out = "\"";
  for (const char c : v) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

}  // namespace

std::optional<Invocation> parse_command_line(int argc, const char* const* argv, int& exit_code) {
  CLI::App app{"dnsd: allowlist DNS forwarder that opens egress for the names it resolves"};
  app.set_version_flag("--version", "dnsd 0.1.0");

  std::string config_file;
  bool check = false;
  bool install_only = false;
  bool check_ready = false;
  bool log_queries = false;
  std::vector<std::string> listen, upstream;
  std::vector<std::pair<const FlagKey*, std::string>> values(std::size(kScalarFlags));

  app.add_option("--config", config_file, "YAML config file; flags override its keys")
      ->check(CLI::ExistingFile);
  app.add_flag("--check-config", check,
               "validate the files named by --config/--allowlist and exit (no side effects)");
  auto* install_opt = app.add_flag(
      "--install-only", install_only,
      "enforce mode: install the nftables table and networks sets, then exit (init container)");
  auto* ready_opt = app.add_flag(
      "--check-ready", check_ready,
      "exit 0 when the nftables table, sets and chain are in place, else 1 (read-only)");
  install_opt->excludes(ready_opt);
  app.get_option("--check-config")->excludes(install_opt)->excludes(ready_opt);
  app.add_option("--listen", listen, "ADDR:PORT to serve UDP and TCP on (repeatable)");
  app.add_option("--upstream", upstream, "ADDR[:PORT] of an upstream resolver (repeatable)");
  app.add_flag("--log-queries", log_queries, "one JSON line per query on stdout");
  for (std::size_t i = 0; i < std::size(kScalarFlags); ++i) {
    values[i].first = &kScalarFlags[i];
    app.add_option(kScalarFlags[i].flag, values[i].second, kScalarFlags[i].help);
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    exit_code = app.exit(e);
    if (exit_code != 0) exit_code = kExitUsage;
    return std::nullopt;
  }

  Invocation inv;
  inv.check_config = check;
  inv.install_only = install_only;
  inv.check_ready = check_ready;
  if (!config_file.empty()) {
    inv.config_file = config_file;
    inv.config = load_config(config_file);
  }

  // Each flag becomes a one-line YAML document applied over what came before, so an error
  // names the flag and nested keys ("cache: {max_entries: N}") never collide.
  auto apply = [&inv](const std::string& flag, const std::string& yaml) {
    try {
      inv.config = parse_config(yaml, flag, inv.config);
    } catch (const egress::ConfigError& e) {
      throw egress::ConfigError(flag, e.message());
    }
  };
  auto list = [](const char* key, const std::vector<std::string>& items) {
    std::string line = std::string(key) + ": [";
    for (std::size_t i = 0; i < items.size(); ++i) line += (i ? ", " : "") + yaml_quote(items[i]);
    return line + "]";
  };
  if (!listen.empty()) apply("--listen", list("listen", listen));
  if (!upstream.empty()) apply("--upstream", list("upstream", upstream));
  if (log_queries) apply("--log-queries", "log_queries: true");
  for (const auto& [key, value] : values) {
    if (app.count(key->flag) == 0) continue;
    apply(key->flag, key->yaml_prefix + yaml_quote(value) + key->yaml_suffix);
  }
  inv.allowlist_flag = app.count("--allowlist") > 0;
  return inv;
}

}  // namespace dnsd
