// Dropping privileges in the jailed child before exec (capabilities(7), prctl(2)).
#pragma once

#include <optional>

#include "jail/step.h"

namespace jail {

struct PrivsResult {
  // False when the bounding set could not be cleared because jail runs without CAP_SETPCAP
  // (an unprivileged jail): with no_new_privs set and no capability in any other set, no
  // execve can raise one (prctl(2), PR_SET_NO_NEW_PRIVS), so this is reported, not fatal.
  bool bounding_cleared = true;
};

// Clears the bounding set (0..cap_last_cap), the ambient set, and the effective, permitted
// and inheritable sets; sets PR_SET_NO_NEW_PRIVS; then verifies each by reading it back
// (capget, /proc/self/status CapBnd/CapAmb, PR_GET_NO_NEW_PRIVS). The first failure is
// returned in `error`.
struct PrivsOutcome {
  PrivsResult result;
  std::optional<StepError> error;
};
PrivsOutcome drop_privileges();

// The highest capability number the running kernel knows (/proc/sys/kernel/cap_last_cap),
// or CAP_LAST_CAP from the headers if that file cannot be read.
int cap_last_cap();

}  // namespace jail
