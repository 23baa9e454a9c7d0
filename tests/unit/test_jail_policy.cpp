// Jail policies: parsing, `extends:` and merging, errors at FILE:LINE:COL (jail/policy.h).
#include <doctest/doctest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "common/config_error.h"
#include "jail/policy.h"
#include "temp_dir.h"

namespace {

namespace fs = std::filesystem;

// A directory of policy files for one test, removed afterwards.
using PolicyDir = egress_test::TempDir;

// The ConfigError text for loading `ref`, with the directory replaced by "DIR".
std::string error_of(const PolicyDir& dir, const std::string& ref) {
  try {
    jail::load_policy(ref, dir.path());
  } catch (const egress::ConfigError& e) {
    std::string s = e.what();
    for (std::size_t at; (at = s.find(dir.path())) != std::string::npos;)
      s.replace(at, dir.path().size(), "DIR");
    return s;
  }
  return "(no error)";
}

std::vector<std::string> cidrs(const jail::Policy& p) {
  std::vector<std::string> out;
  for (const auto& c : p.network.deny_networks) out.push_back(c.to_string());
  return out;
}

constexpr const char* kBase = R"(network:
  families: [unix, inet, inet6, netlink_route]
  dns: 127.0.0.1
  deny_networks: [169.254.0.0/16]
syscalls:
  deny: [bpf, ptrace]
env:
  drop: [RES_OPTIONS]
)";

}  // namespace

TEST_CASE("jail policy: the defaults of an empty file") {
  PolicyDir dir;
  const jail::Policy p = jail::load_policy(dir.write("empty.yaml", ""), dir.path());
  CHECK(p.mode == jail::SyscallMode::denylist);
  CHECK(p.syscalls.empty());
  // Sorted, as a policy's own list is (a compiled file relies on it).
  CHECK(p.network.families == std::vector<std::string>{"inet", "inet6", "netlink_route", "unix"});
  CHECK(p.network.connect == jail::ConnectMode::supervise);
  CHECK_FALSE(p.network.unix_abstract_allowed);
  CHECK(p.deny_errno == 1);
  CHECK(p.on_violation == jail::OnViolation::errno_return);
}

TEST_CASE("jail policy: a full file") {
  PolicyDir dir;
  const jail::Policy p = jail::load_policy(dir.write("p.yaml", R"(network:
  families: [unix, inet]
  dns: "::1"
  connect: off
  deny_networks: [10.0.0.0/8, "fd00::/8"]
  unix_abstract: allow
syscalls:
  allow: [read, write]
  errno: EACCES
env:
  drop: [A, B]
on_violation: kill
)"),
                                           dir.path());
  CHECK(p.network.families == std::vector<std::string>{"inet", "unix"});
  CHECK(p.network.dns == "::1");
  CHECK(p.network.connect == jail::ConnectMode::off);
  CHECK(cidrs(p) == std::vector<std::string>{"10.0.0.0/8", "fd00::/8"});
  CHECK(p.network.unix_abstract_allowed);
  CHECK(p.mode == jail::SyscallMode::allowlist);
  CHECK(p.syscalls == std::set<std::string>{"read", "write"});
  CHECK(p.deny_errno == 13);
  CHECK(p.env_drop == std::set<std::string>{"A", "B"});
  CHECK(p.on_violation == jail::OnViolation::kill);
}

TEST_CASE("jail policy: extends by name merges as documented") {
  PolicyDir dir;
  dir.write("base.yaml", kBase);
  const std::string site = dir.write("site/site.yaml", R"(extends: base
network:
  families: [unix, inet]
  deny_networks: [10.0.0.0/8, 169.254.0.0/16]
syscalls:
  deny: [personality]
  allow: [ptrace]
env:
  drop: [LOCALDOMAIN]
on_violation: kill
)");
  const jail::Policy p = jail::load_policy(site, dir.path());
  CHECK(p.files == std::vector<std::string>{dir.path() + "/base.yaml", site});
  CHECK(p.network.families == std::vector<std::string>{"inet", "unix"});        // replaced
  CHECK(p.network.dns == "127.0.0.1");                                          // inherited
  CHECK(cidrs(p) == std::vector<std::string>{"169.254.0.0/16", "10.0.0.0/8"});  // union
  CHECK(p.mode == jail::SyscallMode::denylist);
  CHECK(p.syscalls == std::set<std::string>{"bpf", "personality"});  // ptrace re-allowed
  CHECK(p.env_drop == std::set<std::string>{"LOCALDOMAIN", "RES_OPTIONS"});
  CHECK(p.on_violation == jail::OnViolation::kill);
}

TEST_CASE("jail policy: under an allowlist, a child's deny removes names") {
  PolicyDir dir;
  dir.write("strictish.yaml", "syscalls:\n  allow: [read, write, ptrace]\n");
  const jail::Policy p = jail::load_policy(
      dir.write("child.yaml",
                "extends: strictish.yaml\nsyscalls:\n  deny: [ptrace]\n  allow: [openat]\n"),
      dir.path());
  CHECK(p.mode == jail::SyscallMode::allowlist);
  CHECK(p.syscalls == std::set<std::string>{"openat", "read", "write"});
}

TEST_CASE("jail policy: extends by relative path, and by name for the top-level ref") {
  PolicyDir dir;
  dir.write("base.yaml", kBase);
  dir.write("a/b.yaml", "extends: ../base.yaml\nnetwork:\n  connect: off\n");
  const jail::Policy p = jail::load_policy(dir.path() + "/a/b.yaml", dir.path());
  CHECK(p.network.connect == jail::ConnectMode::off);
  CHECK(p.syscalls == std::set<std::string>{"bpf", "ptrace"});
  CHECK(jail::load_policy("base", dir.path()).syscalls == p.syscalls);
}

TEST_CASE("jail policy: the dump loads again to the same policy") {
  PolicyDir dir;
  dir.write("base.yaml", kBase);
  const jail::Policy p = jail::load_policy("base", dir.path());
  const std::string dumped = jail::dump_policy(p);
  CHECK(dumped.find("deny: [bpf, ptrace]") != std::string::npos);
  const jail::Policy q = jail::load_policy(dir.write("again.yaml", dumped), dir.path());
  CHECK(q.syscalls == p.syscalls);
  CHECK(q.network.families == p.network.families);
  CHECK(cidrs(q) == cidrs(p));
  CHECK(q.network.dns == p.network.dns);
  CHECK(q.env_drop == p.env_drop);
}

TEST_CASE("jail policy: errors name FILE:LINE:COL and say what was expected") {
  PolicyDir dir;
  dir.write("base.yaml", kBase);
  const auto err = [&](const std::string& text) {
    return error_of(dir, dir.write("bad.yaml", text));
  };
  CHECK(err("extends: base\nnetwork:\n  famlies: [unix]\n") ==
        "DIR/bad.yaml:3:3: unknown key \"famlies\" in network (expected families, dns, connect, "
        "deny_networks or unix_abstract)");
  CHECK(err("sycalls: {}\n") ==
        "DIR/bad.yaml:1:1: unknown key \"sycalls\" (expected extends, network, syscalls, env or "
        "on_violation)");
  CHECK(err("syscalls:\n  deny: [bpf, opne]\n") ==
        "DIR/bad.yaml:2:15: syscalls.deny: unknown syscall \"opne\" (not a syscall on x86_64 or "
        "aarch64)");
  CHECK(err("syscalls:\n  allow: [socketcall]\n") ==
        "DIR/bad.yaml:2:11: syscalls.allow: unknown syscall \"socketcall\" (not a syscall on "
        "x86_64 or aarch64)");
  CHECK(err("network:\n  families: [unix, packet]\n") ==
        "DIR/bad.yaml:2:20: network.families: unknown socket family \"packet\" (expected alg, "
        "bluetooth, can, inet, inet6, netlink_route, tipc, unix, vsock or xdp)");
  CHECK(err("network:\n  dns: sidecar\n") ==
        "DIR/bad.yaml:2:8: network.dns: expected an IP address, not \"sidecar\"");
  CHECK(err("network:\n  connect: yes\n") ==
        "DIR/bad.yaml:2:12: network.connect: expected supervise or off, not \"yes\"");
  CHECK(err("network:\n  deny_networks: [169.254.0.1/16]\n") ==
        "DIR/bad.yaml:2:19: network.deny_networks: host bits set in 169.254.0.1/16 (did you "
        "mean 169.254.0.0/16?)");
  CHECK(err("network:\n  families: unix\n") ==
        "DIR/bad.yaml:2:13: network.families: expected a list, not a string");
  CHECK(err("syscalls:\n  deny: [ptrace]\n  allow: [ptrace]\n") ==
        "DIR/bad.yaml:3:11: syscalls: \"ptrace\" is in both deny and allow");
  CHECK(err("syscalls:\n  deny: [bpf]\n  allow: [ptrace]\n") ==
        "DIR/bad.yaml:2:3: syscalls: a policy without extends takes deny or allow, not both");
  CHECK(err("syscalls:\n  errno: EIO\n") ==
        "DIR/bad.yaml:2:10: syscalls.errno: expected EPERM, EACCES or ENOSYS, not \"EIO\"");
  CHECK(err("on_violation: log\n") ==
        "DIR/bad.yaml:1:15: on_violation: expected errno or kill, not \"log\"");
  CHECK(err("env:\n  drop: [\"A=B\"]\n") ==
        "DIR/bad.yaml:2:10: env.drop: \"A=B\" is not a variable name");
  CHECK(err("- a\n") == "DIR/bad.yaml:1:1: the policy: expected a map, not a list");
  CHECK(err("extends: [base]\n") == "DIR/bad.yaml:1:10: extends: expected a string, not a list");
  CHECK(err("extends: nosuch\n") ==
        "DIR/bad.yaml:1:10: extends: \"nosuch\" not found (looked for DIR/nosuch.yaml)");
  CHECK(err("network: {families: [unix}\n").starts_with("DIR/bad.yaml:1:"));
}

TEST_CASE("jail policy: an error in a parent names the parent's file") {
  PolicyDir dir;
  dir.write("parent.yaml", "network:\n  unix_abstract: maybe\n");
  CHECK(error_of(dir, dir.write("child.yaml", "extends: parent\n")) ==
        "DIR/parent.yaml:2:18: network.unix_abstract: expected allow or deny, not \"maybe\"");
}

TEST_CASE("jail policy: extends cycles and over-long chains are errors") {
  PolicyDir dir;
  dir.write("a.yaml", "extends: b\n");
  dir.write("b.yaml", "extends: a.yaml\n");
  CHECK(error_of(dir, "a") ==
        "DIR/b.yaml:1:10: extends: cycle DIR/a.yaml -> DIR/b.yaml -> DIR/a.yaml");
  dir.write("self.yaml", "extends: self\n");
  CHECK(error_of(dir, "self") ==
        "DIR/self.yaml:1:10: extends: cycle DIR/self.yaml -> DIR/self.yaml");
  for (int i = 0; i < jail::kMaxExtendsDepth + 1; ++i)
    dir.write("c" + std::to_string(i) + ".yaml",
              i == 0 ? "" : "extends: c" + std::to_string(i - 1) + "\n");
  CHECK_NOTHROW(jail::load_policy("c" + std::to_string(jail::kMaxExtendsDepth - 1), dir.path()));
  CHECK(error_of(dir, "c" + std::to_string(jail::kMaxExtendsDepth)) ==
        "DIR/c1.yaml:1:10: extends: chain deeper than 8 files");
}

TEST_CASE("jail policy: an unreadable file") {
  PolicyDir dir;
  CHECK(error_of(dir, "missing") == "DIR/missing.yaml: cannot read: No such file or directory");
}
