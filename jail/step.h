// A failed confinement step in the jailed child, as the parent reports it: one line
// `jail: <step>: <detail or strerror(err)>`. Plain data: it crosses a socket unchanged.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <string_view>

namespace jail {

struct StepError {
  char step[64] = {};     // what failed, e.g. "capset", "landlock_restrict_self"
  int err = 0;            // errno saved right after the call, 0 when `detail` says it all
  char detail[448] = {};  // optional text replacing strerror(err)
};

inline StepError step_error(std::string_view step, int err, std::string_view detail = {}) {
  StepError e;
  std::memcpy(e.step, step.data(), std::min(step.size(), sizeof e.step - 1));
  e.err = err;
  std::memcpy(e.detail, detail.data(), std::min(detail.size(), sizeof e.detail - 1));
  return e;
}

}  // namespace jail
