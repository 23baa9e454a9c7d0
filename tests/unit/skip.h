// Skipping a unit test case that needs what this machine or user lacks (root, POSIX ACLs):
// outside CI a message says why; where CI=true it fails instead (shared TESTING.md: a test
// that cannot run in CI never skips silently).
#pragma once

#include <doctest/doctest.h>

#include <cstdlib>
#include <cstring>
#include <string>

namespace egress_test {

// True when the case cannot run and must return now.
inline bool cannot_run(bool can, const std::string& why) {
  if (can) return false;
  const char* ci = std::getenv("CI");
  if (ci != nullptr && std::strcmp(ci, "true") == 0) {
    FAIL_CHECK("cannot run where CI=true: " << why);
  } else {
    MESSAGE("skipped: " << why);
  }
  return true;
}

}  // namespace egress_test
