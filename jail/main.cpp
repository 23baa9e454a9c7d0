// jail: runs a program under the session's seccomp policy. Wiring only: policies are in
// policy.cpp, the filter in filter.cpp, running the program in launch.cpp.
#include <arpa/inet.h>
#include <fcntl.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <optional>
#include <string>
#include <vector>

#include "common/config_error.h"
#include "common/unique_fd.h"
#include "jail/compiled_policy.h"
#include "jail/filter.h"
#include "jail/launch.h"
#include "jail/policy.h"

namespace {

using jail::kExitJailFailure;

// The sidecar when neither --dns nor the policy names one.
constexpr const char* kDefaultDns = "127.0.0.1";

#ifndef EGRESS_JAIL_POLICY_DIR
#define EGRESS_JAIL_POLICY_DIR "/etc/egress/jail"
#endif

// One line on the compiled file next to `file`, when there is one.
void report_compiled(const std::string& file, const std::string& dir) {
  const jail::Precompiled pre = jail::load_compiled(file, dir);
  if (pre.image)
    std::printf("%s: current\n", pre.path.c_str());
  else if (!pre.why_not.empty())
    std::printf("%s: not used: %s\n", pre.path.c_str(), pre.why_not.c_str());
}

int check_policy(const std::string& ref, const std::string& dir, bool dump) {
  const jail::Policy policy = jail::load_policy(ref, dir);
  const jail::Filter filter = jail::compile_filter(policy, jail::kHostArch);
  if (!dump) {
    std::printf("%s: ok\n", ref.c_str());
    report_compiled(policy.files.back(), dir);
    return 0;
  }
  std::printf("%s", jail::dump_policy(policy).c_str());
  std::printf("---\n# seccomp filter (libseccomp PFC)\n%s", filter.pfc().c_str());
  return 0;
}

// The policy and its filter: from the compiled file when it is current, else from the YAML.
void load(const std::string& ref, const std::string& dir, bool verbose,
          jail::LaunchOptions& options) {
  const std::string file = jail::policy_path(ref, dir);
  jail::Precompiled pre = jail::load_compiled(file, dir);
  if (pre.image) {
    options.policy = std::move(pre.image->policy);
    options.bpf = std::move(pre.image->bpf);
    if (verbose) std::fprintf(stderr, "jail: policy %s: precompiled (%s)\n", file.c_str(), pre.path.c_str());
    return;
  }
  if (verbose && !pre.why_not.empty())
    std::fprintf(stderr, "jail: policy %s: %s not used: %s\n", file.c_str(), pre.path.c_str(),
                 pre.why_not.c_str());
  options.policy = jail::load_policy(ref, dir);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"jail: run a program under the session's seccomp and network policy"};
  std::optional<std::string> check;
  std::optional<std::string> compile;
  bool dump = false;
  std::string policy = "default";
  std::string dir = EGRESS_JAIL_POLICY_DIR;
  std::vector<std::string> command;
  std::optional<std::string> dns;
  std::optional<std::string> log;
  bool watch = false;
  bool verbose = false;
  app.add_option("--check-policy", check, "validate a policy FILE or NAME and exit");
  app.add_option("--compile-policy", compile,
                 "write FILE.compiled next to the policy FILE or NAME (its filter and merged "
                 "policy, used while they match) and exit");
  app.add_flag("--dump", dump, "with --check-policy: print the effective policy and filter");
  app.add_option("--policy", policy, "policy FILE or NAME")->capture_default_str();
  app.add_option("--policies-dir", dir, "where policy NAMEs are looked up")->capture_default_str();
  app.add_option("--dns", dns,
                 "the sidecar's address: overrides the policy's network.dns; without either, " +
                     std::string(kDefaultDns));
  app.add_flag("--watch", watch, "learn mode: log connects the policy would deny, allow them");
  app.add_option("--log", log, "append the supervisor's JSON lines to FILE (default: stderr)");
  app.add_flag("-v,--verbose", verbose, "say on stderr what was enforced, at start");
  app.add_option("command", command, "PROGRAM [ARGS...] after --");
  app.footer(
      "Exit status: the program's; 128+N if a signal N ended it; 125 if jail itself failed, "
      "126 if PROGRAM is not executable, 127 if it is not found (one line on stderr says why).");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : kExitJailFailure;
  }
  try {
    // Each of these is a command of its own: one that also named a PROGRAM would otherwise
    // exit 0 without running it.
    if (check && compile) {
      std::fprintf(stderr, "jail: --check-policy and --compile-policy are separate commands\n");
      return kExitJailFailure;
    }
    if ((check || compile) && !command.empty()) {
      std::fprintf(stderr, "jail: %s runs no PROGRAM; start the program with a second jail\n",
                   check ? "--check-policy" : "--compile-policy");
      return kExitJailFailure;
    }
    if (check) return check_policy(*check, dir, dump);
    if (compile) {
      std::printf("%s: written\n", jail::write_compiled(*compile, dir).c_str());
      return 0;
    }
    if (dump) {
      std::fprintf(stderr, "jail: --dump needs --check-policy FILE\n");
      return kExitJailFailure;
    }
    if (command.empty()) {
      std::fprintf(stderr, "jail: nothing to run (usage: jail [--policy P] -- PROGRAM [ARGS])\n");
      return kExitJailFailure;
    }
    jail::LaunchOptions options;
    load(policy, dir, verbose, options);  // a bad policy is reported first
    options.dns = dns ? *dns : options.policy.network.dns.empty() ? kDefaultDns
                                                                   : options.policy.network.dns;
    unsigned char addr[16];
    if (inet_pton(AF_INET, options.dns.c_str(), addr) != 1 &&
        inet_pton(AF_INET6, options.dns.c_str(), addr) != 1) {
      std::fprintf(stderr, "jail: --dns: not an IP address: %s\n", options.dns.c_str());
      return kExitJailFailure;
    }
    options.policy.network.dns = options.dns;  // the supervisor allows port 53/853 to it only
    options.argv = command;
    options.verbose = verbose;
    options.supervisor.watch = watch;
    egress::UniqueFd log_fd;
    if (log) {
      log_fd.reset(open(log->c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640));
      if (!log_fd) {
        std::fprintf(stderr, "jail: --log %s: %s\n", log->c_str(), std::strerror(errno));
        return kExitJailFailure;
      }
      options.supervisor.log_fd = log_fd.get();
      options.log_start_event = true;
    }
    return jail::run(options);
  } catch (const egress::ConfigError& e) {
    std::fprintf(stderr, "jail: %s\n", e.what());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "jail: %s\n", e.what());
  }
  return kExitJailFailure;
}
