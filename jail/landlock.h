// Landlock for the jailed child (landlock(7)): at ABI >= 6 the session can neither connect to
// abstract unix sockets created outside it nor signal processes outside it (the supervisor
// included). With a supervisor, at ABI >= 4 the child may not connect TCP sockets itself: every
// permitted TCP connect is made by the supervisor (outside this domain) on a duplicate of the
// socket. That closes the race where a CONTINUE'd unix connect is re-run by the kernel after
// another thread swapped an inet socket onto the same descriptor number. No filesystem rights
// are handled.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "jail/step.h"

namespace jail {

// The ABI from which LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET and LANDLOCK_SCOPE_SIGNAL exist (6.12).
inline constexpr int kLandlockScopeAbi = 6;
// The ABI from which LANDLOCK_ACCESS_NET_CONNECT_TCP exists (6.7).
inline constexpr int kLandlockNetAbi = 4;

struct LandlockStatus {
  int abi = 0;                // 0: Landlock unavailable (not built in, or disabled at boot)
  std::uint64_t scoped = 0;   // LANDLOCK_SCOPE_* bits enforced on this process
  std::uint64_t net = 0;      // LANDLOCK_ACCESS_NET_* rights denied to this process
  int probe_errno = 0;        // why abi is 0 (ENOSYS, EOPNOTSUPP), for the start line
  bool domain = false;        // a Landlock domain was entered (ptrace of outside processes denied)
};

// What would be scoped at `abi`: both scopes at kLandlockScopeAbi and above, else nothing.
std::uint64_t landlock_scopes_for(int abi);

// The network rights denied at `abi`: TCP connect when `supervised` and abi >= kLandlockNetAbi.
std::uint64_t landlock_net_for(int abi, bool supervised);

// "landlock ABI 7: abstract unix sockets and signals scoped" and the like.
std::string describe(const LandlockStatus& status);

// The ABI version of the running kernel (landlock_create_ruleset(NULL, 0, VERSION)), or 0
// with errno in `probe_errno`.
LandlockStatus landlock_probe();

// Probes, and restricts the calling thread with what the ABI offers (needs no_new_privs, set
// before). `supervised`: the connect supervisor runs, so TCP connects can be left to it.
struct LandlockOutcome {
  LandlockStatus status;
  std::optional<StepError> error;
};
LandlockOutcome apply_landlock(bool supervised);

}  // namespace jail
