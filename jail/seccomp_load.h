// Loading the compiled seccomp filter into the calling (single-threaded) process with the raw
// seccomp(2) syscall, so flags newer than libseccomp 2.5 (WAIT_KILLABLE_RECV) can be used.
#pragma once

#include <cstdint>
#include <variant>
#include <vector>

#include "common/unique_fd.h"
#include "jail/step.h"

namespace jail {

struct LoadedFilter {
  egress::UniqueFd listener;     // the user-notification fd; empty without `want_listener`
  bool wait_killable = false;    // SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV was accepted
};

// `bpf` is struct sock_filter[] (Filter::bpf()). With `want_listener` the filter is loaded with
// SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV, and again without
// WAIT_KILLABLE_RECV if the kernel rejects it with EINVAL (before 5.19). Needs no_new_privs.
std::variant<LoadedFilter, StepError> load_seccomp(const std::vector<std::uint8_t>& bpf,
                                                   bool want_listener);

}  // namespace jail
