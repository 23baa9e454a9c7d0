// Compiles a jail Policy into a libseccomp filter for one architecture, and exports it as PFC
// text (for --dump and tests) or as the BPF program the kernel loads.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "jail/policy.h"
#include "jail/syscalls.h"

namespace jail {

// An owned libseccomp context (scmp_filter_ctx), released on destruction.
class Filter {
 public:
  explicit Filter(void* ctx) : ctx_(ctx) {}
  Filter(Filter&& other) noexcept : ctx_(other.ctx_) { other.ctx_ = nullptr; }
  Filter& operator=(Filter&&) = delete;
  Filter(const Filter&) = delete;
  ~Filter();

  void* ctx() const { return ctx_; }
  std::string pfc() const;                // throws std::runtime_error naming the failed call
  std::vector<std::uint8_t> bpf() const;  // struct sock_filter[] as the kernel takes it

 private:
  void* ctx_;
};

// The filter for `arch` (one of Arch; it need not be the host's: libseccomp generates filters
// for other architectures without loading them). Throws std::runtime_error on a libseccomp error.
//
// Actions: a denied socket family is EAFNOSUPPORT; other denials are policy.deny_errno, or
// SECCOMP_RET_KILL_PROCESS with on_violation: kill; clone3 is always ENOSYS; connect and sendto
// with a destination are SECCOMP_RET_USER_NOTIF when network.connect is supervise. Other
// architectures (i386 and x32 on x86_64 included) kill the process.
Filter compile_filter(const Policy& policy, Arch arch);

}  // namespace jail
