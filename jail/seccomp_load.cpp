#include "jail/seccomp_load.h"

#include <linux/filter.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

#include "jail/missing_defs.h"

namespace jail {

namespace {

long seccomp_raw(unsigned op, unsigned long flags, const sock_fprog* prog) {
  return syscall(SYS_seccomp, op, flags, prog);
}

}  // namespace

std::variant<LoadedFilter, StepError> load_seccomp(const std::vector<std::uint8_t>& bpf,
                                                   bool want_listener) {
  if (bpf.empty() || bpf.size() % sizeof(sock_filter) != 0 ||
      bpf.size() / sizeof(sock_filter) > BPF_MAXINSNS)
    return step_error("seccomp", EINVAL, "compiled filter has an invalid size");
  // The kernel only reads the program; the cast drops a const the UAPI struct lacks.
  const sock_fprog prog{static_cast<unsigned short>(bpf.size() / sizeof(sock_filter)),
                        reinterpret_cast<sock_filter*>(const_cast<std::uint8_t*>(bpf.data()))};
  LoadedFilter out;
  if (!want_listener) {
    if (seccomp_raw(SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) return step_error("seccomp", errno);
    return out;
  }
  // seccomp_unotify(2): without WAIT_KILLABLE_RECV a non-fatal signal (Go's SIGURG preemption)
  // interrupts a notified syscall before the supervisor received it, and the restart is
  // notified again, forever. With it the wait becomes killable only once received.
  unsigned long flags = SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV;
  long fd = seccomp_raw(SECCOMP_SET_MODE_FILTER, flags, &prog);
  if (fd < 0 && errno == EINVAL) {
    flags = SECCOMP_FILTER_FLAG_NEW_LISTENER;
    fd = seccomp_raw(SECCOMP_SET_MODE_FILTER, flags, &prog);
  } else if (fd >= 0) {
    out.wait_killable = true;
  }
  if (fd < 0) return step_error("seccomp", errno);
  out.listener.reset(static_cast<int>(fd));
  return out;
}

}  // namespace jail
