#include "jail/supervisor.h"

#include <linux/kcmp.h>

#include <fcntl.h>
#include <linux/audit.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "common/unique_fd.h"
#include "jail/destination.h"
#include "jail/missing_defs.h"
#include "jail/violation_log.h"

namespace jail {

namespace {

// sendto() data is copied out of the target to be sent from the duplicate socket. A datagram
// larger than this fails with EMSGSIZE, as UDP's own limit (65507 bytes over IPv4) would; a
// stream socket sends this much and returns the short count, which send(2) permits.
constexpr std::size_t kMaxSendtoCopy = 64 * 1024;
// Blocking connects waiting for a worker. Beyond this the call fails with EAGAIN rather than
// the supervisor holding unbounded state for a process that floods it.
constexpr std::size_t kMaxQueuedCalls = 64;
// Supervisor errors go to stderr; after this many, the rest are counted silently.
constexpr int kMaxErrorNotes = 20;

#if defined(__x86_64__)
constexpr std::uint32_t kNativeAuditArch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
constexpr std::uint32_t kNativeAuditArch = AUDIT_ARCH_AARCH64;
#else
#error "jail supports x86_64 and aarch64"
#endif

// sendto(2) flags the supervisor performs on the target's behalf; others are dropped.
constexpr int kSendtoFlags = MSG_DONTWAIT | MSG_MORE | MSG_EOR | MSG_OOB | MSG_CONFIRM |
                             MSG_DONTROUTE | MSG_FASTOPEN | MSG_NOSIGNAL;

std::atomic<int> g_error_notes{0};

// Logs a failed call once, where it failed, with the errno saved right after it.
void note(const char* call, int error) {
  const int n = g_error_notes.fetch_add(1);
  if (n < kMaxErrorNotes) {
    std::fprintf(stderr, "jail: supervisor: %s: %s\n", call, std::strerror(error));
  } else if (n == kMaxErrorNotes) {
    std::fprintf(stderr, "jail: supervisor: further errors are not shown\n");
  }
}

struct Reply {
  std::int64_t val = 0;
  int error = 0;              // positive errno; 0 for success
  bool continue_call = false;  // SECCOMP_USER_NOTIF_FLAG_CONTINUE
  bool sigpipe = false;        // raise SIGPIPE in the caller first (Impl::answer)
};

Reply fail_with(int error) { return Reply{0, error, false}; }

// pidfd_open(2). The notification's pid is the calling thread's id. PIDFD_THREAD (6.9) opens
// that thread itself, so pidfd_getfd(2) reads its own descriptor table; an older kernel only
// opens thread-group leaders, so the thread's Tgid (proc(5)) is opened instead.
egress::UniqueFd open_pidfd(pid_t tid, int& error, bool& of_thread) {
  of_thread = false;
  long fd = syscall(SYS_pidfd_open, tid, PIDFD_THREAD);
  if (fd >= 0) {
    of_thread = true;
    return egress::UniqueFd(static_cast<int>(fd));
  }
  error = errno;
  if (error != EINVAL) return {};
  fd = syscall(SYS_pidfd_open, tid, 0);
  if (fd >= 0) return egress::UniqueFd(static_cast<int>(fd));
  error = errno;
  if (error != EINVAL && error != ENOENT) return {};
  const std::string status_path = "/proc/" + std::to_string(tid) + "/status";
  FILE* f = std::fopen(status_path.c_str(), "re");
  if (!f) {
    error = errno;
    return {};
  }
  char line[128];
  pid_t tgid = 0;
  while (std::fgets(line, sizeof line, f)) {
    if (std::sscanf(line, "Tgid: %d", &tgid) == 1) break;
  }
  std::fclose(f);
  if (tgid <= 0) {
    error = ESRCH;
    return {};
  }
  // The leader's pidfd reaches the leader's descriptor table. A thread made without
  // CLONE_FILES has a table of its own: judging the leader's fd N while the kernel runs the
  // call on the thread's fd N would decide about the wrong socket, so such a thread is refused
  // (kcmp(2) KCMP_FILES: 0 when both share one table).
  if (tgid != tid && syscall(SYS_kcmp, tgid, tid, KCMP_FILES, 0, 0) != 0) {
    error = EPERM;
    return {};
  }
  fd = syscall(SYS_pidfd_open, tgid, 0);
  if (fd >= 0) return egress::UniqueFd(static_cast<int>(fd));
  error = errno;
  return {};
}

// Copies `out.size()` bytes at `remote` in the target (process_vm_readv(2)). 0 or an errno; a
// partial copy is EFAULT, as the kernel's own copy_from_user() would report.
int read_target(pid_t pid, std::uint64_t remote, std::span<std::uint8_t> out) {
  if (out.empty()) return 0;
  iovec local{out.data(), out.size()};
  iovec theirs{reinterpret_cast<void*>(static_cast<std::uintptr_t>(remote)), out.size()};
  const ssize_t n = process_vm_readv(pid, &local, 1, &theirs, 1, 0);
  if (n < 0) return errno;
  return static_cast<std::size_t>(n) == out.size() ? 0 : EFAULT;
}

std::optional<std::string> target_exe(pid_t pid) {
  const std::string link = "/proc/" + std::to_string(pid) + "/exe";
  char buf[4096];
  const ssize_t n = readlink(link.c_str(), buf, sizeof buf);
  if (n < 0) return std::nullopt;
  return std::string(buf, static_cast<std::size_t>(n));
}

struct SocketInfo {
  int domain = 0;
  int type = 0;  // 0 when not read: a connect on a non-blocking socket does not need it
  bool nonblocking = false;
};

int socket_info(int fd, bool is_sendto, SocketInfo& info) {
  const int flags = fcntl(fd, F_GETFL);
  if (flags < 0) return errno;
  info.nonblocking = (flags & O_NONBLOCK) != 0;
  socklen_t len = sizeof info.domain;
  if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &info.domain, &len) < 0) return errno;
  // The type decides a sendto's size limit and whether a blocking call goes to a worker
  // (dispatch()); one syscall less on the commonest path, a non-blocking connect.
  if (is_sendto || !info.nonblocking) {
    len = sizeof info.type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &info.type, &len) < 0) return errno;
  }
  return 0;
}

// pidfds of the threads that made notified calls, kept between calls: opening one and closing
// it again were two of the supervisor's syscalls per connect. Only thread pidfds
// (PIDFD_THREAD) are kept: one is either the caller's or a dead thread's with the same id (it
// pins its thread's struct pid, and a live thread's id is unique), and pidfd_getfd(2) on a
// dead thread's fails with ESRCH, after which handle() opens afresh. A leader's pidfd (the
// fallback before Linux 6.9) is not kept: the thread that had the id may be gone and the id
// now another process's, whose leader is not the one kept, so it is opened, and its
// descriptor table checked with kcmp, for every call.
// shared_ptr: a blocking call's worker may still hold one that the cache has let go.
class PidfdCache {
 public:
  using Ref = std::shared_ptr<const egress::UniqueFd>;

  // The cached pidfd for `tid` (fresh = false), or one opened now; nullptr and `error` if
  // that fails.
  Ref get(pid_t tid, bool& fresh, int& error) {
    for (const auto& [id, fd] : entries_) {
      if (id == tid) {
        fresh = false;
        return fd;
      }
    }
    fresh = true;
    return open(tid, error);
  }

  Ref open(pid_t tid, int& error) {
    bool of_thread = false;
    egress::UniqueFd fd = open_pidfd(tid, error, of_thread);
    if (!fd) return nullptr;
    auto ref = std::make_shared<const egress::UniqueFd>(std::move(fd));
    drop(tid);
    if (!of_thread) return ref;
    if (entries_.size() == kCapacity) entries_.erase(entries_.begin());  // the oldest
    entries_.emplace_back(tid, ref);
    return ref;
  }

  void drop(pid_t tid) {
    entries_.erase(std::remove_if(entries_.begin(), entries_.end(),
                                  [tid](const auto& e) { return e.first == tid; }),
                   entries_.end());
  }

 private:
  // Threads that connect; beyond this the oldest is closed (Go programs have a few dozen).
  static constexpr std::size_t kCapacity = 64;
  std::vector<std::pair<pid_t, Ref>> entries_;
};

// A call the supervisor performs for the target, on a duplicate of its socket.
struct Call {
  std::uint64_t id = 0;
  NetSyscall syscall = NetSyscall::connect;
  egress::UniqueFd sock;   // pidfd_getfd(2) duplicate: same open file description
  std::shared_ptr<const egress::UniqueFd> pidfd;  // the caller's, for SIGPIPE
  std::vector<std::uint8_t> addr;  // the checked copy
  std::vector<std::uint8_t> data;  // sendto() payload (copied)
  int flags = 0;                   // sendto() flags
};

Reply perform(const Call& call) {
  sockaddr_storage ss{};
  std::memcpy(&ss, call.addr.data(), std::min(call.addr.size(), sizeof ss));
  const auto len = static_cast<socklen_t>(call.addr.size());
  const auto* sa = reinterpret_cast<const sockaddr*>(&ss);  // our own storage
  if (call.syscall == NetSyscall::connect) {
    // connect(2) on the duplicate: the file description (and O_NONBLOCK) is the target's, so
    // EINPROGRESS and the later completion are exactly what its own connect would have given.
    const int rc = ::connect(call.sock.get(), sa, len);
    return rc == 0 ? Reply{} : fail_with(errno);
  }
  // MSG_NOSIGNAL: a SIGPIPE belongs to the target, not to the supervisor.
  const ssize_t n = ::sendto(call.sock.get(), call.data.data(), call.data.size(),
                             call.flags | MSG_NOSIGNAL, sa, len);
  if (n >= 0) return Reply{n, 0, false};
  const int error = errno;
  Reply reply = fail_with(error);
  // send(2): EPIPE "also" raises SIGPIPE unless MSG_NOSIGNAL (Impl::answer sends it).
  reply.sigpipe = error == EPIPE && !(call.flags & MSG_NOSIGNAL);
  return reply;
}

}  // namespace

// Who receives notifications. Until the first blocking call, jail's main thread does, from its
// poll loop (serve()): most sessions never make one, and then no thread is ever started. The
// first one moves receiving to worker threads for good, which take turns (a leader/follower
// pool): the thread holding the receive token polls the listener, receives and handles each
// notification; before a call that may block it hands the token to an idle thread and
// performs the call itself, so no blocking call waits for a hand-over between threads (a
// futex wake and a thread switch, about 13 µs here, docs/BENCHMARKS.md). One thread is
// always left to receive: when none is idle and no more may start, the call is queued for
// the next thread that finishes one.
struct Supervisor::Impl {
  egress::UniqueFd listener;
  // eventfd(2): written when the workers must stop (stop()) or have stopped on their own (the
  // listener hung up or failed). Once workers receive, jail's loop polls this instead of the
  // listener and closes the listener when it fires (serve()).
  egress::UniqueFd done_event;
  Policy policy;
  SupervisorOptions options;
  ViolationLog log;
  seccomp_notif_sizes sizes{};
  bool sync_wake_up = false;  // SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP set (constructor)

  // The receive token. Its holder alone uses what follows (and calls handle()).
  std::mutex token;
  PidfdCache pidfds;
  std::vector<std::uint8_t> recv_buf;  // SECCOMP_IOCTL_NOTIF_RECV's, sizes.seccomp_notif long

  std::atomic<bool> workers_receive{false};  // set once, by the main thread
  std::mutex mu;
  std::vector<std::thread> workers;  // joined in stop(); guarded by mu
  std::deque<Call> queue;            // blocking calls waiting for a thread; guarded by mu
  std::vector<int> in_flight;        // duplicates being performed on; guarded by mu
  std::size_t idle = 0;              // workers waiting for the token; guarded by mu
  bool stopping = false;             // guarded by mu

  Impl(egress::UniqueFd fd, const Policy& p, SupervisorOptions o)
      : listener(std::move(fd)), policy(p), options(o), log(o.log_fd) {}

  bool serve(short revents);
  enum class Received { call, none, done };
  Received receive(seccomp_notif& n);
  void handle(const seccomp_notif& n, std::unique_lock<std::mutex>& held);
  void dispatch(Call call, const SocketInfo& info, std::unique_lock<std::mutex>& held);
  void hand_over_first(Call call);
  bool track(int sock);  // mu held
  void perform_and_answer(Call call);
  void work(bool first_call);
  void lead(std::unique_lock<std::mutex>& held);
  bool start_worker(bool first_call = false);  // mu held
  void finish();
  void send(std::uint64_t id, const Reply& reply);
  void answer(const Call& call, const Reply& reply);
  bool id_valid(std::uint64_t id);
  void log_violation(const seccomp_notif& n, NetSyscall syscall, const Decision& d, bool watch);
  void stop();
};

void Supervisor::Impl::send(std::uint64_t id, const Reply& reply) {
  // seccomp_unotify(2): for CONTINUE, error and val must be 0.
  seccomp_notif_resp resp{};
  resp.id = id;
  if (reply.continue_call) {
    resp.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
  } else {
    resp.val = reply.val;
    resp.error = reply.error == 0 ? 0 : -reply.error;
  }
  std::vector<std::uint8_t> buf(std::max<std::size_t>(sizes.seccomp_notif_resp, sizeof resp));
  std::memcpy(buf.data(), &resp, sizeof resp);
  if (ioctl(listener.get(), SECCOMP_IOCTL_NOTIF_SEND, buf.data()) < 0) {
    const int error = errno;
    // ENOENT: the target died or its call was interrupted; nobody is waiting for the answer.
    if (error != ENOENT) note("SECCOMP_IOCTL_NOTIF_SEND", error);
  }
}

void Supervisor::Impl::answer(const Call& call, const Reply& reply) {
  // The SIGPIPE goes before the answer, as the kernel's own send raises it before returning,
  // and only while the call is still waiting: a blocking send can outlast its caller, and
  // after an execve from another thread the caller's thread id (and so its pidfd) belongs to
  // the new program (de_thread), which must not get a SIGPIPE for a send it never made. To
  // the calling thread where the pidfd is a thread's (PIDFD_THREAD), else to the process.
  if (reply.sigpipe && id_valid(call.id))
    syscall(SYS_pidfd_send_signal, call.pidfd->get(), SIGPIPE, nullptr, 0);
  send(call.id, reply);
}

bool Supervisor::Impl::id_valid(std::uint64_t id) {
  return ioctl(listener.get(), SECCOMP_IOCTL_NOTIF_ID_VALID, &id) == 0;
}

void Supervisor::Impl::log_violation(const seccomp_notif& n, NetSyscall syscall,
                                     const Decision& d, bool watch) {
  Violation v;
  v.time = std::chrono::system_clock::now();
  v.pid = static_cast<pid_t>(n.pid);
  v.exe = target_exe(v.pid);  // only for the log: a pid reused meanwhile names another program
  v.syscall = syscall;
  v.family = d.family;
  v.address = d.address;
  v.watch = watch;
  v.rule = d.rule;
  v.error = d.error;
  log.write(v);
}

void Supervisor::Impl::handle(const seccomp_notif& n, std::unique_lock<std::mutex>& held) {
  NetSyscall syscall_kind;
  if (n.data.arch != kNativeAuditArch) {
    send(n.id, fail_with(ENOSYS));  // the filter kills other ABIs; never reached
    return;
  }
  if (n.data.nr == SYS_connect) {
    syscall_kind = NetSyscall::connect;
  } else if (n.data.nr == SYS_sendto) {
    syscall_kind = NetSyscall::sendto;
  } else {
    note("unexpected notified syscall", ENOSYS);
    send(n.id, fail_with(ENOSYS));
    return;
  }
  const auto pid = static_cast<pid_t>(n.pid);

  // seccomp_unotify(2), "Design goals; use of SECCOMP_USER_NOTIF_FLAG_CONTINUE" and the
  // ID_VALID description: the pid may be reused once the caller is gone, so everything read
  // through it (the pidfd, the socket, the memory) is trusted only once ID_VALID, after all of
  // it, says the call is still waiting: then the caller was alive throughout, its pid was
  // never free, and the pidfd and process_vm_readv reached the caller. Nothing before that
  // check acts on what it read.
  int error = 0;
  bool fresh = false;
  PidfdCache::Ref pidfd = pidfds.get(pid, fresh, error);

  // The kernel reads fd and addrlen as int: the low 32 bits of the registers.
  const int target_fd = static_cast<int>(static_cast<std::uint32_t>(n.data.args[0]));
  const std::uint64_t addr_ptr =
      syscall_kind == NetSyscall::connect ? n.data.args[1] : n.data.args[4];
  const std::int64_t addrlen = static_cast<std::int32_t>(static_cast<std::uint32_t>(
      syscall_kind == NetSyscall::connect ? n.data.args[2] : n.data.args[5]));

  // pidfd_getfd(2): a duplicate of the caller's socket (needs PTRACE_MODE_ATTACH_REALCREDS).
  long dup = pidfd ? syscall(SYS_pidfd_getfd, pidfd->get(), target_fd, 0) : -1;
  if (dup < 0 && errno == ESRCH && pidfd && !fresh) {
    // A kept pidfd of a thread that has gone: its id now belongs to the caller. Once more
    // with a new pidfd.
    pidfds.drop(pid);
    pidfd = pidfds.open(pid, error);
    if (pidfd) dup = syscall(SYS_pidfd_getfd, pidfd->get(), target_fd, 0);
  }
  // Errors are answered without ID_VALID: a SEND for a call that has gone fails with ENOENT.
  if (!pidfd) {
    if (error != ESRCH) note("pidfd_open", error);
    send(n.id, fail_with(error));
    return;
  }
  if (dup < 0) {
    error = errno;
    if (error == EPERM || error == ENOSYS) note("pidfd_getfd", error);
    send(n.id, fail_with(error));  // EBADF: the fd is not open in the target, as connect says
    return;
  }
  egress::UniqueFd sock(static_cast<int>(dup));
  SocketInfo info;
  if ((error = socket_info(sock.get(), syscall_kind == NetSyscall::sendto, info)) != 0) {
    send(n.id, fail_with(error));  // ENOTSOCK for a file that is not a socket
    return;
  }
  const bool inet = info.domain == AF_INET || info.domain == AF_INET6;

  std::vector<std::uint8_t> addr;
  int copy_error = 0;
  if (addrlen >= 0 && addrlen <= static_cast<std::int64_t>(sizeof(sockaddr_storage))) {
    addr.resize(static_cast<std::size_t>(addrlen));
    copy_error = read_target(pid, addr_ptr, addr);
  }
  std::vector<std::uint8_t> data;
  int data_error = 0;
  if (syscall_kind == NetSyscall::sendto && inet && copy_error == 0) {
    const std::uint64_t want = n.data.args[2];
    if (want > kMaxSendtoCopy && info.type != SOCK_STREAM) {
      data_error = EMSGSIZE;
    } else {
      data.resize(static_cast<std::size_t>(std::min<std::uint64_t>(want, kMaxSendtoCopy)));
      data_error = read_target(pid, n.data.args[1], data);
    }
  }
  if (!id_valid(n.id)) return;
  if (copy_error != 0) {
    if (copy_error != EFAULT && copy_error != ESRCH) note("process_vm_readv", copy_error);
    send(n.id, fail_with(copy_error == ESRCH ? copy_error : EFAULT));
    return;
  }

  const Decision d = decide_destination(
      DestinationRequest{syscall_kind, info.domain, addrlen, addr}, policy);
  if (d.verdict == Verdict::deny) {
    const bool watch = options.watch && !d.malformed;
    log_violation(n, syscall_kind, d, watch);
    if (!watch) {
      send(n.id, fail_with(d.error));
      return;
    }
  }
  const int flags = static_cast<int>(static_cast<std::uint32_t>(n.data.args[3]));
  if (!inet) {
    // MSG_FASTOPEN means nothing to a unix socket, but the kernel re-runs a CONTINUE'd call
    // on whatever the fd number holds by then: a TCP socket swapped in would connect through
    // tcp_sendmsg_fastopen(), which Landlock's connect rule does not see. Refused instead.
    if (syscall_kind == NetSyscall::sendto && (flags & MSG_FASTOPEN) != 0) {
      send(n.id, fail_with(EOPNOTSUPP));
      return;
    }
    // Not a network socket (AF_UNIX, AF_NETLINK): the kernel runs the call as the caller, so
    // a unix peer sees the caller's credentials. CONTINUE re-reads the target's memory and
    // looks its fd up again; see jail/destination.h for what that leaves open.
    send(n.id, Reply{0, 0, true});
    return;
  }
  if (data_error != 0) {
    send(n.id, fail_with(data_error));
    return;
  }
  Call call;
  call.id = n.id;
  call.syscall = syscall_kind;
  call.sock = std::move(sock);
  call.pidfd = std::move(pidfd);
  call.addr = std::move(addr);
  call.data = std::move(data);
  // Only the flags that shape one send are passed on: MSG_ZEROCOPY would pin the
  // supervisor's own buffer in the kernel after the call returns (and report completions on
  // the target's error queue), MSG_CMSG_CLOEXEC and the like mean nothing to sendto.
  call.flags = flags & kSendtoFlags;
  dispatch(std::move(call), info, held);
}

void Supervisor::Impl::dispatch(Call call, const SocketInfo& info,
                                std::unique_lock<std::mutex>& held) {
  const bool dontwait =
      call.syscall == NetSyscall::sendto && (call.flags & MSG_DONTWAIT) != 0;
  if (info.nonblocking || dontwait || info.type == SOCK_DGRAM) {
    // The file description's O_NONBLOCK is shared with the session, which could clear it
    // after socket_info() read it: a send the caller made non-blocking stays so whatever
    // happens to the flag (MSG_DONTWAIT), so the receiving thread (at first jail's loop,
    // which also forwards signals) cannot be held by a peer that stops reading. (A connect
    // has no such flag: README, "Limits".)
    if (call.syscall == NetSyscall::sendto && info.nonblocking) call.flags |= MSG_DONTWAIT;
    {
      std::lock_guard lock(mu);
      if (!track(call.sock.get())) return;
    }
    perform_and_answer(std::move(call));  // returns at once (EINPROGRESS, EAGAIN)
    return;
  }
  if (!workers_receive) {
    hand_over_first(std::move(call));
    return;
  }
  // A worker holding the token: another thread takes it (one that waits for it, or one
  // started now) and this one performs the call.
  std::unique_lock lock(mu);
  if (stopping) return;  // no new call: closing the listener fails it (ENOSYS)
  if (idle == 0 && !start_worker()) {
    // Every other thread is busy with a blocking call and no more may start: the call waits
    // for the first that finishes, and this one goes on receiving. (With no other thread at
    // all, one could not start: nobody would take it.)
    const bool full = queue.size() >= kMaxQueuedCalls;
    if (full || workers.size() < 2) {
      lock.unlock();
      if (full) note("blocking connect queue full", EAGAIN);
      send(call.id, fail_with(EAGAIN));
      return;
    }
    queue.push_back(std::move(call));
    return;
  }
  track(call.sock.get());
  lock.unlock();
  held.unlock();  // another thread receives now
  perform_and_answer(std::move(call));
}

// The first blocking call, received by jail's main thread: from now on workers receive (fd()
// is done_event from here on), and the call goes to a second worker (the one hand-over there
// is).
void Supervisor::Impl::hand_over_first(Call call) {
  if (!done_event) {
    done_event = egress::UniqueFd(eventfd(0, EFD_CLOEXEC));
    if (!done_event) {
      note("eventfd", errno);
      send(call.id, fail_with(EAGAIN));  // the main thread goes on receiving
      return;
    }
  }
  std::unique_lock lock(mu);
  if (!start_worker()) {
    lock.unlock();
    send(call.id, fail_with(EAGAIN));  // the main thread goes on receiving
    return;
  }
  workers_receive = true;  // that worker takes the token once serve() returns
  if (!start_worker(/*first_call=*/true)) {
    lock.unlock();
    send(call.id, fail_with(EAGAIN));  // as when no thread is left for a blocking call
    return;
  }
  queue.push_back(std::move(call));
}

// Whether `sock`'s call may go ahead: not once stop() has begun (it would not see the socket
// to abort it). If so, `sock` is in in_flight until perform_and_answer() is done with it.
bool Supervisor::Impl::track(int sock) {
  if (stopping) return false;
  in_flight.push_back(sock);
  return true;
}

// Performs a tracked call and answers it. A call that failed once stop() had begun is not
// answered: stop()'s shutdown(2) may be why (an EPIPE would raise a SIGPIPE the session did
// not cause), and it is left to fail when the listener closes (ENOSYS), as queued ones do.
void Supervisor::Impl::perform_and_answer(Call call) {
  const Reply reply = perform(call);
  {
    std::lock_guard lock(mu);
    in_flight.erase(std::find(in_flight.begin(), in_flight.end(), call.sock.get()));
    if (stopping && reply.error != 0) return;
  }
  // If the target was killed meanwhile, SEND fails with ENOENT: nothing to do.
  answer(call, reply);
}

// A new worker takes the token; only the first one the main thread starts for its call, and
// a worker that has performed a call, take a queued call before that (a new one taking it
// would leave the thread that started it, about to perform a call of its own, without a
// receiver after it).
bool Supervisor::Impl::start_worker(bool first_call) {
  if (stopping ||
      workers.size() >= static_cast<std::size_t>(std::max(1, options.workers)) + 1)
    return false;
  // Workers start with every signal blocked, so the jail's signal forwarding (a signalfd on
  // the main thread) sees them all, and a worker's connect is never cut short by EINTR.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  struct Restore {
    sigset_t* old;
    ~Restore() { pthread_sigmask(SIG_SETMASK, old, nullptr); }
  } restore{&old};
  try {
    workers.emplace_back([this, first_call] { work(first_call); });
  } catch (const std::system_error& e) {
    note("starting a connect worker", e.code().value());
    return false;
  }
  // Idle from now on, not from when it first runs: a call that dispatch() queued because no
  // worker was idle would otherwise wait beside it, as it does not look at the queue.
  if (!first_call) ++idle;
  return true;
}

void Supervisor::Impl::work(bool first_call) {
  bool may_take_queued = first_call;
  bool counted_idle = !first_call;  // by start_worker()
  for (;;) {
    std::unique_lock lock(mu);
    if (stopping) return;
    if (may_take_queued && !queue.empty()) {
      Call call = std::move(queue.front());
      queue.pop_front();
      track(call.sock.get());
      lock.unlock();
      perform_and_answer(std::move(call));
      continue;
    }
    if (!counted_idle) ++idle;
    counted_idle = false;
    lock.unlock();
    std::unique_lock held(token);
    lock.lock();
    --idle;
    if (stopping) return;
    lock.unlock();
    lead(held);
    may_take_queued = true;  // lead() returns having handed the token on (or stopping)
  }
}

// Receives and handles notifications while this thread holds the token.
void Supervisor::Impl::lead(std::unique_lock<std::mutex>& held) {
  while (held.owns_lock()) {
    pollfd p[2] = {{listener.get(), POLLIN, 0}, {done_event.get(), POLLIN, 0}};
    if (poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      note("poll", errno);
      finish();
      return;
    }
    if (p[1].revents != 0) return;  // stopping
    if (!(p[0].revents & POLLIN)) {
      // POLLHUP: no task uses the filter any more; nothing will ever arrive.
      finish();
      return;
    }
    seccomp_notif n{};
    const Received r = receive(n);
    if (r == Received::done) {
      finish();
      return;
    }
    if (r == Received::call) handle(n, held);
  }
}

// The workers stop on their own (the listener hung up or failed): jail's loop, polling
// done_event, then closes the listener (serve()).
void Supervisor::Impl::finish() {
  {
    std::lock_guard lock(mu);
    stopping = true;
    queue.clear();
    for (const int fd : in_flight) shutdown(fd, SHUT_RDWR);
  }
  const std::uint64_t one = 1;
  if (write(done_event.get(), &one, sizeof one) < 0) note("write(eventfd)", errno);
}

Supervisor::Impl::Received Supervisor::Impl::receive(seccomp_notif& n) {
  // seccomp_unotify(2): the buffer must be zeroed before SECCOMP_IOCTL_NOTIF_RECV.
  std::fill(recv_buf.begin(), recv_buf.end(), std::uint8_t{0});
  if (ioctl(listener.get(), SECCOMP_IOCTL_NOTIF_RECV, recv_buf.data()) < 0) {
    const int error = errno;
    // ENOENT: the target was killed or its call interrupted before we received it.
    if (error == ENOENT || error == EINTR) return Received::none;
    // Anything else would repeat forever: the listener is closed (serve()), and the kernel
    // fails every notified call with ENOSYS (closed, not open).
    note("SECCOMP_IOCTL_NOTIF_RECV", error);
    return Received::done;
  }
  std::memcpy(&n, recv_buf.data(), sizeof n);
  return Received::call;
}

bool Supervisor::Impl::serve(short revents) {
  if (workers_receive) {
    // done_event: the workers have stopped. The workers, which answer on the listener, are
    // joined before it is closed.
    if (revents == 0) return true;
    stop();
    listener.reset();
    return false;
  }
  if (!(revents & POLLIN)) {
    if (!(revents & (POLLHUP | POLLERR | POLLNVAL))) return true;
    stop();
    listener.reset();
    return false;
  }
  std::unique_lock held(token);  // no worker runs yet: never contended
  seccomp_notif n{};
  const Received r = receive(n);
  if (r == Received::done) {
    held.unlock();
    stop();
    listener.reset();
    return false;
  }
  if (r == Received::call) handle(n, held);
  return true;
}

void Supervisor::Impl::stop() {
  std::vector<std::thread> joining;
  {
    std::lock_guard lock(mu);
    stopping = true;
    queue.clear();
    // A blocking connect can take minutes (SYN retries). shutdown(2) on a connecting TCP
    // socket aborts it, so the workers can be joined now; this runs when the jail ends (or
    // the listener failed). Queued calls get no answer: closing the listener fails them.
    for (const int fd : in_flight) shutdown(fd, SHUT_RDWR);
    joining.swap(workers);
  }
  // Wakes the worker in poll(); the others see `stopping` as they take the token in turn.
  const std::uint64_t one = 1;
  if (done_event && write(done_event.get(), &one, sizeof one) < 0) note("write(eventfd)", errno);
  for (std::thread& t : joining) t.join();
}

Supervisor::Supervisor(egress::UniqueFd listener, const Policy& policy, SupervisorOptions options)
    : impl_(std::make_unique<Impl>(std::move(listener), policy, options)) {
  // seccomp_unotify(2): the structures' sizes come from the running kernel.
  if (syscall(SYS_seccomp, SECCOMP_GET_NOTIF_SIZES, 0, &impl_->sizes) < 0)
    throw std::system_error(errno, std::generic_category(), "seccomp(SECCOMP_GET_NOTIF_SIZES)");
  impl_->recv_buf.resize(std::max<std::size_t>(impl_->sizes.seccomp_notif, sizeof(seccomp_notif)));
  // The caller waits while its call is handled, and the handler then waits for the next call:
  // seccomp_unotify(2), SECCOMP_IOCTL_NOTIF_SET_FLAGS. With this flag the kernel wakes the
  // handling thread on the caller's CPU and the caller on the handler's, instead of wherever
  // the scheduler would place them (here, often the other CPU, reached by an interrupt).
  // Advice only (the scheduler may still move either), so a kernel without it (< 6.6:
  // EINVAL) just serves more slowly.
  impl_->sync_wake_up = ioctl(impl_->listener.get(), SECCOMP_IOCTL_NOTIF_SET_FLAGS,
                              SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP) == 0;
}

Supervisor::~Supervisor() {
  if (impl_) impl_->stop();
}

int Supervisor::fd() const {
  return impl_->workers_receive ? impl_->done_event.get() : impl_->listener.get();
}

bool Supervisor::serve(short revents) { return impl_->serve(revents); }

bool Supervisor::sync_wake_up() const { return impl_->sync_wake_up; }

}  // namespace jail
