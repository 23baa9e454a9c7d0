// The connect()/sendto() supervisor: serves the seccomp user-notification listener of the
// jailed process tree (SECCOMP_RET_USER_NOTIF, see seccomp_unotify(2)).
//
// For each notification: take a pidfd for the caller (thread pidfds are kept between calls),
// duplicate its socket, copy the sockaddr once, check the notification is still valid
// (SECCOMP_IOCTL_NOTIF_ID_VALID: then all of that was read from the caller), decide
// (jail/destination.h). An allowed inet/inet6 destination is connected by the supervisor itself
// on a pidfd_getfd() duplicate of the caller's socket with the copy it checked, and that result
// is returned; AF_UNIX gets SECCOMP_USER_NOTIF_FLAG_CONTINUE. A denial returns an errno and
// writes one JSON line to the violation log. With `watch`, denials are logged and allowed.
#pragma once

#include <cstdio>
#include <memory>
#include <string>

#include "common/unique_fd.h"
#include "jail/policy.h"

namespace jail {

struct SupervisorOptions {
  bool watch = false;  // learn mode: log what would be denied, allow it
  int log_fd = 2;      // JSON lines go here (not owned); --log FILE opens it
  int workers = 4;     // threads for blocking connects
};

class Supervisor {
 public:
  // Serves `listener`. Throws std::system_error if the kernel's notification sizes cannot be
  // read.
  Supervisor(egress::UniqueFd listener, const Policy& policy, SupervisorOptions options);
  ~Supervisor();  // stops the workers, closes the listener (pending calls then fail: ENOSYS)
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // The supervisor has no thread of its own: the caller polls fd() for POLLIN (with its other
  // fds, as jail's main loop does) and calls serve() with the revents. Blocking connects are
  // handed to worker threads, started on demand, so serve() never waits on the network.
  int fd() const;
  // Handles one notification when `revents` has POLLIN. Returns false once the listener is
  // done: POLLHUP (no task uses the filter any more), or an error that would repeat, after
  // which the supervisor stops its workers and closes the listener, so the kernel fails every
  // notified call with ENOSYS (closed, not open). Stop polling it then.
  bool serve(short revents);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace jail
