// jail: runs a program under the session's seccomp policy. Wiring only: policies are in
// policy.cpp, the filter in filter.cpp. Running a program is not implemented yet (issue 4).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <optional>
#include <string>
#include <vector>

#include "common/config_error.h"
#include "jail/filter.h"
#include "jail/policy.h"

namespace {

// ARCHITECTURE.md: jail's own failures exit 125 (126/127 are for the program).
constexpr int kExitJailFailure = 125;

#ifndef EGRESS_JAIL_POLICY_DIR
#define EGRESS_JAIL_POLICY_DIR "/etc/egress/jail"
#endif

jail::Arch host_arch() {
#if defined(__x86_64__)
  return jail::kX86_64;
#elif defined(__aarch64__)
  return jail::kAarch64;
#else
#error "jail supports x86_64 and aarch64"
#endif
}

int check_policy(const std::string& file, const std::string& dir, bool dump) {
  const jail::Policy policy = jail::load_policy(file, dir);
  const jail::Filter filter = jail::compile_filter(policy, host_arch());
  if (!dump) {
    std::printf("%s: ok\n", file.c_str());
    return 0;
  }
  std::printf("%s", jail::dump_policy(policy).c_str());
  std::printf("---\n# seccomp filter (libseccomp PFC)\n%s", filter.pfc().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"jail: run a program under the session's seccomp and network policy"};
  std::optional<std::string> check;
  bool dump = false;
  std::string policy = "default";
  std::string dir = EGRESS_JAIL_POLICY_DIR;
  std::vector<std::string> command;
  app.add_option("--check-policy", check, "validate a policy FILE or NAME and exit");
  app.add_flag("--dump", dump, "with --check-policy: print the effective policy and filter");
  app.add_option("--policy", policy, "policy FILE or NAME")->capture_default_str();
  app.add_option("--policies-dir", dir, "where policy NAMEs are looked up")->capture_default_str();
  app.add_option("command", command, "PROGRAM [ARGS...] after --");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : kExitJailFailure;
  }
  try {
    if (check) return check_policy(*check, dir, dump);
    if (dump) {
      std::fprintf(stderr, "jail: --dump needs --check-policy FILE\n");
      return kExitJailFailure;
    }
    if (command.empty()) {
      std::fprintf(stderr, "jail: nothing to run (usage: jail [--policy P] -- PROGRAM [ARGS])\n");
      return kExitJailFailure;
    }
    jail::load_policy(policy, dir);  // a bad policy is reported before anything else
    std::fprintf(stderr, "jail: running a program is not implemented yet\n");
    return kExitJailFailure;
  } catch (const egress::ConfigError& e) {
    std::fprintf(stderr, "jail: %s\n", e.what());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "jail: %s\n", e.what());
  }
  return kExitJailFailure;
}
