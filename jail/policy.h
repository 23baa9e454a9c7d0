// Jail policies: YAML files under policies/jail/, loaded with their `extends:` chain and merged
// into one immutable Policy. Errors are egress::ConfigError at FILE:LINE:COL.
//
// Keys (all optional):
//   extends: NAME | PATH       NAME (no '/', no ".yaml") is POLICIES_DIR/NAME.yaml; a PATH is
//                              relative to the file that names it. Cycles and chains deeper
//                              than kMaxExtendsDepth are errors.
//   network:
//     families: [unix, inet, inet6, netlink_route]   socket() families (jail/syscalls.h)
//     dns: IP                  the sidecar's address
//     connect: supervise|off   send connect()/sendto(dest) to the supervisor
//     deny_networks: [CIDR...] never reachable from the session
//     unix_abstract: allow|deny
//   syscalls:
//     deny: [NAME...] | allow: [NAME...]
//     errno: EPERM|EACCES|ENOSYS   errno of a denied syscall (a denied socket family is always
//                                  EAFNOSUPPORT)
//   env:
//     drop: [NAME...]            removed from the environment before exec
//   on_violation: errno|kill
//
// Merging, from the root of the chain down to the named file (a child over its parent):
//   * scalars (dns, connect, unix_abstract, errno, on_violation): the child's value wins;
//   * families: the child's list replaces the parent's (it states the whole set);
//   * deny_networks, env.drop: union (a child can add, never lift);
//   * syscalls: the root file decides the mode, `deny` (denylist: everything else allowed) or
//     `allow` (allowlist: everything else denied); a root file with neither is a denylist.
//     In a child, the list named like the mode adds names and the other list removes them:
//     `allow: [ptrace]` under a denylist re-allows ptrace. One name in both lists of one file
//     is an error. The rules from jail/syscalls.h (socket families, clone3 ENOSYS, ...) apply
//     whenever the syscall is permitted, in either mode.
#pragma once

#include <cerrno>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "common/cidr.h"

namespace jail {

inline constexpr int kMaxExtendsDepth = 8;

enum class ConnectMode : std::uint8_t { supervise, off };
enum class OnViolation : std::uint8_t { errno_return, kill };
enum class SyscallMode : std::uint8_t { denylist, allowlist };

struct NetworkPolicy {
  std::vector<std::string> families{"inet", "inet6", "netlink_route", "unix"};  // sorted
  std::string dns;                                                              // empty: not set
  ConnectMode connect = ConnectMode::supervise;
  std::vector<egress::Cidr> deny_networks;
  bool unix_abstract_allowed = false;
};

struct Policy {
  std::vector<std::string> files;  // the chain, root first, as opened
  NetworkPolicy network;
  SyscallMode mode = SyscallMode::denylist;
  std::set<std::string> syscalls;  // denied (denylist) or allowed (allowlist)
  int deny_errno = EPERM;
  std::set<std::string> env_drop;
  OnViolation on_violation = OnViolation::errno_return;
};

// The file `ref` names: policies_dir/NAME.yaml for a NAME, else the PATH as given.
std::string policy_path(const std::string& ref, const std::string& policies_dir);

// `ref` is a NAME (looked up in policies_dir) or a PATH. With `texts`, each file's contents as
// read, in the order of Policy::files.
Policy load_policy(const std::string& ref, const std::string& policies_dir,
                   std::vector<std::string>* texts = nullptr);

// True for an errno that `syscalls.errno` may name (EPERM, EACCES, ENOSYS).
bool is_policy_errno(int value);

// The effective policy as YAML that load_policy accepts again (no `extends`).
std::string dump_policy(const Policy& policy);

}  // namespace jail
