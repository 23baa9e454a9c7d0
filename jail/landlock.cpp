#include "jail/landlock.h"

#include <linux/landlock.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

#include "common/unique_fd.h"
#include "jail/missing_defs.h"

namespace jail {

namespace {

// struct landlock_ruleset_attr as of 6.12 (landlock(7)); Debian 12's header has the first field
// only. The kernel copies min(size, its own size) and requires any extra tail to be zero, so
// the three fields are right on every kernel that reports ABI >= 6.
struct RulesetAttr {
  std::uint64_t handled_access_fs;
  std::uint64_t handled_access_net;  // 6.7 (ABI 4)
  std::uint64_t scoped;              // 6.12 (ABI 6)
};

long create_ruleset(const RulesetAttr* attr, std::size_t size, std::uint32_t flags) {
  return syscall(SYS_landlock_create_ruleset, attr, size, flags);
}

}  // namespace

std::uint64_t landlock_scopes_for(int abi) {
  if (abi < kLandlockScopeAbi) return 0;
  return LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET | LANDLOCK_SCOPE_SIGNAL;
}

std::uint64_t landlock_net_for(int abi, bool supervised) {
  if (!supervised || abi < kLandlockNetAbi) return 0;
  return LANDLOCK_ACCESS_NET_CONNECT_TCP;
}

std::string describe(const LandlockStatus& status) {
  if (status.abi == 0) return "landlock unavailable: nothing scoped";
  std::string out = "landlock ABI " + std::to_string(status.abi) + ": ";
  if (status.domain) out += "domain (no ptrace of jail); ";
  const bool unix_scoped = status.scoped & LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET;
  const bool signal_scoped = status.scoped & LANDLOCK_SCOPE_SIGNAL;
  if (unix_scoped && signal_scoped) {
    out += "abstract unix sockets and signals scoped";
  } else if (unix_scoped) {
    out += "abstract unix sockets scoped";
  } else if (signal_scoped) {
    out += "signals scoped";
  } else {
    out += "nothing scoped (scoping needs ABI " + std::to_string(kLandlockScopeAbi) + ")";
  }
  if (status.net & LANDLOCK_ACCESS_NET_CONNECT_TCP) out += "; TCP connects only via the supervisor";
  return out;
}

LandlockStatus landlock_probe() {
  LandlockStatus s;
  const long abi = create_ruleset(nullptr, 0, LANDLOCK_CREATE_RULESET_VERSION);
  if (abi < 0) {
    s.probe_errno = errno;  // ENOSYS: not built in; EOPNOTSUPP: disabled at boot
    return s;
  }
  s.abi = static_cast<int>(abi);
  return s;
}

LandlockOutcome apply_landlock(bool supervised) {
  LandlockOutcome out;
  out.status = landlock_probe();
  if (out.status.abi == 0) return out;
  const std::uint64_t scopes = landlock_scopes_for(out.status.abi);
  const std::uint64_t net = landlock_net_for(out.status.abi, supervised);
  // A domain is created at every ABI, even with nothing else to restrict: a process in a
  // Landlock domain cannot ptrace (or pidfd_getfd, or write /proc/PID/mem of) a process
  // outside it, so the session cannot take over the supervisor even where ptrace rules would
  // let a same-uid process do it (jail run unprivileged, Yama off). The one filesystem right
  // handled, making block devices, is one a session never needs; the kernel rejects a ruleset
  // that handles nothing (ENOMSG). The network right is handled with no rule added, so no port
  // is allowed: TCP connect() from the session fails with EACCES unless the supervisor,
  // outside this domain, makes it.
  const RulesetAttr attr{LANDLOCK_ACCESS_FS_MAKE_BLOCK, net, scopes};
  egress::UniqueFd ruleset(static_cast<int>(create_ruleset(&attr, sizeof attr, 0)));
  if (!ruleset) {
    out.error = step_error("landlock_create_ruleset", errno);
    return out;
  }
  if (syscall(SYS_landlock_restrict_self, ruleset.get(), 0u) != 0) {
    out.error = step_error("landlock_restrict_self", errno);
    return out;
  }
  out.status.domain = true;
  out.status.scoped = scopes;
  out.status.net = net;
  return out;
}

}  // namespace jail
