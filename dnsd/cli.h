// dnsd's command line. The contract (scripts and platforms drive it; keep it stable):
//   dnsd --config FILE                 YAML; each key also has a flag that overrides it
//   dnsd --check-config [--config FILE] [--allowlist FILE]
//                                      validate only what the other flags name, no side effects;
//                                      errors as FILE:LINE:COL: message; exit 1 on error
//   dnsd --install-only [flags]        enforce mode: install the table (and fill nets4/nets6 from
//                                      the allowlist's networks:), then exit 0 (an init
//                                      container's job); exit 1 with the reason on failure
//   dnsd --check-ready [flags]         read-only: exit 0 when the table, its sets and its chain
//                                      are in place (enforce; sets mode: the admin's sets), else
//                                      1 with what is missing (a readiness probe)
//   flags: --listen ADDR:PORT (repeatable) --upstream ADDR[:PORT] (repeatable) --allowlist FILE
//          --deny nxdomain|refused --log-queries --nft-mode enforce|sets|off --nft-table NAME
//          and one flag per remaining config key (dnsd --help lists them).
#pragma once

#include <optional>
#include <string>

#include "dnsd/config.h"

namespace dnsd {

struct Invocation {
  Config config;                           // defaults <- config file <- flags
  std::optional<std::string> config_file;  // --config
  bool allowlist_flag = false;             // --allowlist was given
  bool check_config = false;
  bool install_only = false;  // --install-only
  bool check_ready = false;   // --check-ready
};

// Exit codes: 0 ok, 1 invalid configuration, 2 usage error (unknown flag, missing value).
inline constexpr int kExitConfig = 1;
inline constexpr int kExitUsage = 2;

// Parses argv. On --help/--version or a usage error prints what CLI11 prints and returns the exit
// code in `exit_code` (no Invocation). Throws egress::ConfigError for invalid values, naming the
// flag ("--negative-ttl: invalid value ...") or the file position.
std::optional<Invocation> parse_command_line(int argc, const char* const* argv, int& exit_code);

}  // namespace dnsd
