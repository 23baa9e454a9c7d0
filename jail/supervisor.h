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
  int workers = 4;     // blocking calls performed at once (threads: one more, to receive)
};

class Supervisor {
 public:
  // Serves `listener`. Throws std::system_error if the kernel's notification sizes cannot be
  // read.
  Supervisor(egress::UniqueFd listener, const Policy& policy, SupervisorOptions options);
  ~Supervisor();  // stops the workers, closes the listener (pending calls then fail: ENOSYS)
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // The caller polls fd() for POLLIN (with its other fds, as jail's main loop does) and calls
  // serve() with the revents; fd() can change after a serve(), so read it before each poll.
  // At first fd() is the listener and serve() handles one notification on the caller's
  // thread. A call on a blocking socket (a connect, or a send on a stream) is not performed
  // there: the first one moves receiving to worker threads for good, and fd() becomes an
  // event that fires only when they stop (the listener hung up or failed). So serve() does
  // not wait on the network (README, "Limits", says the one exception), and a session that
  // makes no blocking call starts no thread.
  int fd() const;
  // Returns false once the supervisor is done: the listener hung up (no task uses the filter
  // any more) or failed with an error that would repeat; the workers are then stopped and
  // the listener closed, so the kernel fails every notified call with ENOSYS (closed, not
  // open). Stop polling it then.
  bool serve(short revents);

  // Whether the kernel wakes the supervisor on the caller's CPU and back (Linux >= 6.6,
  // SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP), which halves the notification round trip.
  bool sync_wake_up() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace jail
