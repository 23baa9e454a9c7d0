#include "jail/launch.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/pidfd.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <exception>
#include <memory>
#include <optional>
#include <set>
#include <string_view>
#include <utility>

#include "common/json.h"
#include "common/rfc3339.h"
#include "common/unique_fd.h"
#include "jail/dns_pin.h"
#include "jail/filter.h"
#include "jail/landlock.h"
#include "jail/missing_defs.h"
#include "jail/privs.h"
#include "jail/seccomp_load.h"
#include "jail/violation_log.h"
#include "jail/step.h"

extern char** environ;

namespace jail {

namespace {

// Signals jail passes on to the program (the list plus SIGQUIT and SIGUSR1/2).
constexpr int kForwarded[] = {SIGINT, SIGTERM, SIGHUP, SIGWINCH, SIGQUIT, SIGUSR1, SIGUSR2};

// Child -> parent, one SOCK_SEQPACKET message each: `ready` (with the listener fd as
// SCM_RIGHTS when there is one) after confinement, or `error` for a failed step (instead of
// `ready`) or a failed execve (after it). A successful execve closes the CLOEXEC socket: EOF.
// The parent reads them once the child has exec'd or exited (CLONE_VFORK, see run()).
enum class MsgKind : std::uint8_t { ready = 1, error = 2 };
struct ChildMsg {
  MsgKind kind = MsgKind::ready;
  bool has_listener = false;
  bool wait_killable = false;
  bool bounding_cleared = true;
  bool dns_pinned = false;
  int landlock_abi = 0;
  int landlock_probe_errno = 0;
  std::uint64_t landlock_scoped = 0;
  std::uint64_t landlock_net = 0;
  bool landlock_domain = false;
  char dns_target[256] = {};
  int exit_status = kExitJailFailure;  // with `error`: what jail exits with
  StepError error;
};

struct ChildArgs {
  const LaunchOptions* options;
  const std::string* path;
  const std::vector<std::uint8_t>* bpf;
  char* const* argv;
  char* const* envp;  // the environment without the policy's env_drop names
  sigset_t old_mask;
  pid_t parent;
  int sock;
};

// The child's stack: clone(2) with CLONE_VM needs one of its own. The set-up steps use a few
// KiB (no recursion, 4 KiB buffers at most); a guard page below turns an overflow into a
// SIGSEGV of the child, which the parent reports as a set-up failure.
constexpr std::size_t kChildStackSize = 256 * 1024;

class ChildStack {
 public:
  ChildStack() {
    const long page = sysconf(_SC_PAGESIZE);
    guard_ = static_cast<std::size_t>(page > 0 ? page : 4096);
    void* p = mmap(nullptr, guard_ + kChildStackSize, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (p == MAP_FAILED) return;
    base_ = static_cast<char*>(p);
    if (mprotect(base_, guard_, PROT_NONE) != 0) {
      munmap(base_, guard_ + kChildStackSize);
      base_ = nullptr;
    }
  }
  ~ChildStack() {
    if (base_) munmap(base_, guard_ + kChildStackSize);
  }
  ChildStack(const ChildStack&) = delete;
  ChildStack& operator=(const ChildStack&) = delete;
  explicit operator bool() const { return base_ != nullptr; }
  void* top() const { return base_ + guard_ + kChildStackSize; }  // stacks grow down

 private:
  char* base_ = nullptr;
  std::size_t guard_ = 0;
};

void send_msg(int sock, const ChildMsg& msg, int fd = -1) {
  iovec iov{const_cast<ChildMsg*>(&msg), sizeof msg};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  if (fd >= 0) {
    mh.msg_control = control;
    mh.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
  }
  // Nothing to do if this fails: the parent then sees EOF and reports the child's status.
  while (sendmsg(sock, &mh, MSG_NOSIGNAL) < 0 && errno == EINTR) {
  }
}

[[noreturn]] void child_fail(int sock, const StepError& e, int status = kExitJailFailure) {
  ChildMsg msg;
  msg.kind = MsgKind::error;
  msg.error = e;
  msg.exit_status = status;
  send_msg(sock, msg);
  _exit(status);
}

// The jailed child. It runs in the parent's memory (CLONE_VM) while the parent is suspended
// (CLONE_VFORK), as posix_spawn's child does: it may allocate (the parent is single-threaded
// and waits, so the allocator's state stays consistent), but it changes nothing the parent
// reads afterwards (no setenv, no stdio, no exit(): only send_msg, execve and _exit end it).
// Order matters: the mount namespace needs CAP_SYS_ADMIN, so it comes before the capabilities
// are dropped; Landlock and seccomp need no_new_privs; seccomp comes last so the set-up
// syscalls above need not be in a strict allowlist. Capabilities, no_new_privs, Landlock and
// the seccomp filter are the child task's own: the shared memory does not share them.
[[noreturn]] void child_main(const ChildArgs& a) {
  const LaunchOptions& o = *a.options;
  // The program must not outlive its supervisor (its notified syscalls would fail anyway).
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0)
    child_fail(a.sock, step_error("PR_SET_PDEATHSIG", errno));
  if (getppid() != a.parent) _exit(kExitJailFailure);  // the parent is already gone

  ChildMsg ready;
  // 1. DNS pinned to the sidecar.
  auto dns = pin_dns(o.dns);
  if (auto* e = std::get_if<StepError>(&dns)) child_fail(a.sock, *e);
  const auto& pinned = std::get<DnsPinned>(dns);
  ready.dns_pinned = pinned.mode == DnsPinMode::pinned;
  std::memcpy(ready.dns_target, pinned.target.data(),
              std::min(pinned.target.size(), sizeof ready.dns_target - 1));

  // 2. The environment (without the variables that redirect the resolver, resolv.conf(5), and
  // the policy's) was prepared by the parent: a.envp.

  // 3. Capabilities and no_new_privs.
  const PrivsOutcome privs = drop_privileges();
  if (privs.error) child_fail(a.sock, *privs.error);
  ready.bounding_cleared = privs.result.bounding_cleared;

  // 4. Landlock scopes, and TCP connects left to the supervisor.
  const bool supervise = o.policy.network.connect == ConnectMode::supervise;
  const LandlockOutcome ll = apply_landlock(supervise);
  if (ll.error) child_fail(a.sock, *ll.error);
  ready.landlock_abi = ll.status.abi;
  ready.landlock_scoped = ll.status.scoped;
  ready.landlock_net = ll.status.net;
  ready.landlock_domain = ll.status.domain;
  ready.landlock_probe_errno = ll.status.probe_errno;

  // 5. seccomp. From here on every syscall passes the filter: only sendmsg, close,
  // rt_sigprocmask, execve and exit_group follow, all in strict.yaml's allowlist.
  auto loaded = load_seccomp(*a.bpf, supervise);
  if (auto* e = std::get_if<StepError>(&loaded)) child_fail(a.sock, *e);
  auto& filter = std::get<LoadedFilter>(loaded);
  ready.has_listener = static_cast<bool>(filter.listener);
  ready.wait_killable = filter.wait_killable;

  // 6. The listener to the parent, then execve. The parent starts serving the listener when
  // execve releases it; a connect the program makes before that waits in the kernel for the
  // supervisor's answer (seccomp_unotify(2)), so none goes unchecked.
  send_msg(a.sock, ready, filter.listener.get());
  filter.listener.reset();

  sigprocmask(SIG_SETMASK, &a.old_mask, nullptr);
  execve(a.path->c_str(), a.argv, a.envp);
  const int err = errno;
  child_fail(a.sock, step_error(*a.path, err), exit_status_for_exec_errno(err));
}

// Reads one message; nullopt on EOF (or a short read, which only a dead child produces).
std::optional<ChildMsg> recv_msg(int sock, egress::UniqueFd* fd_out) {
  ChildMsg msg;
  iovec iov{&msg, sizeof msg};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = control;
  mh.msg_controllen = sizeof control;
  ssize_t n;
  while ((n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR) {
  }
  for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
        c->cmsg_len == CMSG_LEN(sizeof(int))) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c), sizeof fd);
      egress::UniqueFd received(fd);
      if (fd_out) *fd_out = std::move(received);  // else: not expected, closed here
    }
  }
  if (n != static_cast<ssize_t>(sizeof msg)) return std::nullopt;
  return msg;
}

void print_step_error(const StepError& e) {
  std::fprintf(stderr, "jail: %s: %s\n", e.step, e.detail[0] ? e.detail : std::strerror(e.err));
}

// Waits for the child to end and returns its status as the shell would.
int wait_child(int pidfd) {
  siginfo_t info{};
  while (waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd), &info, WEXITED) != 0) {
    if (errno != EINTR) {
      std::fprintf(stderr, "jail: waitid: %s\n", std::strerror(errno));
      return kExitJailFailure;
    }
  }
  return exit_status_for_child(info.si_code, info.si_status);
}

// Kills the child and reaps it. The program may have started (the child execs before jail
// reads its messages); none of its network calls went through without the supervisor.
void abandon_child(int pidfd) {
  syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0);
  wait_child(pidfd);
}

void report_start(const LaunchOptions& o, const ChildMsg& m, pid_t pid, const std::string& path,
                  const Supervisor* supervisor) {
  LandlockStatus ll{m.landlock_abi, m.landlock_scoped, m.landlock_net, m.landlock_probe_errno,
                    m.landlock_domain};
  const std::string dns_mode = m.dns_pinned ? "pinned" : "verified";
  const bool sync_wake = supervisor != nullptr && supervisor->sync_wake_up();
  if (o.verbose) {
    std::string supervised = m.has_listener ? "supervised" : "without supervisor (connect: off)";
    std::string how;
    if (m.has_listener && m.wait_killable) how = "wait-killable";
    if (sync_wake) how += how.empty() ? "sync wake-up" : ", sync wake-up";
    if (!how.empty()) supervised += " (" + how + ")";
    std::fprintf(stderr, "jail: %s; dns %s %s (%s); capability bounding set %s; seccomp %s\n",
                 describe(ll).c_str(), o.dns.c_str(), dns_mode.c_str(), m.dns_target,
                 m.bounding_cleared ? "cleared" : "kept (no CAP_SETPCAP)", supervised.c_str());
  }
  if (m.has_listener && !(m.landlock_net & LANDLOCK_ACCESS_NET_CONNECT_TCP)) {
    // jail/landlock.h: without Landlock's TCP rule (Linux < 6.7) a thread swapping an inet
    // socket under a unix connect can connect it unchecked; nftables still decides where.
    std::fprintf(stderr,
                 "jail: warning: Landlock ABI %d has no TCP connect rule (needs 4, Linux 6.7): "
                 "TCP destinations are enforced by the nftables set only\n",
                 m.landlock_abi);
  }
  if (!o.log_start_event) return;
  std::string scoped;
  if (m.landlock_scoped & LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET) scoped += "\"abstract_unix_socket\"";
  if (m.landlock_scoped & LANDLOCK_SCOPE_SIGNAL) scoped += scoped.empty() ? "\"signal\"" : ",\"signal\"";
  const std::string line =
      "{\"event\":\"start\",\"time\":\"" + egress::rfc3339_ms(std::chrono::system_clock::now()) +
      "\",\"pid\":" + std::to_string(pid) +
      ",\"exe\":" + egress::json_string(path) + ",\"policy\":" +
      egress::json_string(o.policy.files.empty() ? "" : o.policy.files.back()) +
      ",\"precompiled\":" + (o.bpf.empty() ? "false" : "true") + ",\"dns\":" +
      egress::json_string(o.dns) + ",\"dns_mode\":\"" + dns_mode + "\",\"resolv_conf\":" +
      egress::json_string(m.dns_target) + ",\"landlock_abi\":" + std::to_string(m.landlock_abi) +
      ",\"landlock_scoped\":[" + scoped + "],\"landlock_tcp_connect_supervised\":" +
      ((m.landlock_net & LANDLOCK_ACCESS_NET_CONNECT_TCP) ? "true" : "false") +
      ",\"bounding_set_cleared\":" +
      (m.bounding_cleared ? "true" : "false") + ",\"supervised\":" +
      (m.has_listener ? "true" : "false") + ",\"sync_wake_up\":" + (sync_wake ? "true" : "false") +
      ",\"watch\":" + (o.supervisor.watch ? "true" : "false") +
      "}\n";
  // One write(2) per line so lines from jail and the supervisor never interleave.
  if (write(o.supervisor.log_fd, line.data(), line.size()) < 0) {
    std::fprintf(stderr, "jail: write(log): %s\n", std::strerror(errno));
  }
}

// Serves the supervisor and forwards signals to the child until it ends; returns its status.
// One poll(2) over the supervisor's fd (its listener, or once its workers receive, their stop
// event), the signalfd and the child's pidfd.
int supervise_until_exit(int sigfd, int pidfd, pid_t pid, Supervisor* supervisor) {
  bool serving = supervisor != nullptr;
  for (;;) {
    pollfd fds[3] = {{pidfd, POLLIN, 0}, {sigfd, POLLIN, 0},
                     {serving ? supervisor->fd() : -1, POLLIN, 0}};
    if (poll(fds, 3, -1) < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      std::fprintf(stderr, "jail: poll: %s\n", std::strerror(err));
      abandon_child(pidfd);
      return kExitJailFailure;
    }
    if (fds[1].revents & POLLIN) {
      signalfd_siginfo si{};
      while (read(sigfd, &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
        const int sig = static_cast<int>(si.ssi_signo);
        if (sig == SIGCHLD) continue;  // the pidfd says when the child ends
        // A terminal sends SIGINT, SIGQUIT, SIGWINCH (and SIGHUP on hangup) to its foreground
        // process group, with si_code SI_KERNEL: the child, in our group, already has it.
        if (si.ssi_code == SI_KERNEL && getpgid(pid) == getpgrp()) continue;
        syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0);
      }
    }
    if (fds[2].revents != 0) serving = supervisor->serve(fds[2].revents);
    if (fds[0].revents & POLLIN) return wait_child(pidfd);
  }
}

// The environment for execve: environ without the variables named in `drop`.
std::vector<char*> environment_without(const std::set<std::string>& drop) {
  std::vector<char*> env;
  for (char** e = environ; *e; ++e) {
    const std::string_view entry(*e);
    const std::size_t eq = entry.find('=');
    if (eq != std::string_view::npos && drop.count(std::string(entry.substr(0, eq)))) continue;
    env.push_back(*e);
  }
  env.push_back(nullptr);
  return env;
}

int child_entry(void* args) { child_main(*static_cast<const ChildArgs*>(args)); }

}  // namespace

Resolved resolve_program(const std::string& name, const char* path_env) {
  Resolved r;
  // execve(2) would fail with the errno returned here; a directory or another non-regular file
  // is EACCES, as execve reports it.
  const auto check = [](const std::string& candidate, bool& is_dir) -> int {
    struct stat st{};
    if (stat(candidate.c_str(), &st) != 0) return errno;
    is_dir = S_ISDIR(st.st_mode);
    if (!S_ISREG(st.st_mode)) return EACCES;
    if (access(candidate.c_str(), X_OK) != 0) return errno;
    return 0;
  };
  if (name.empty()) {
    r.err = ENOENT;
    return r;
  }
  if (name.find('/') != std::string::npos) {
    r.err = check(name, r.is_dir);
    if (r.err == 0) r.path = name;
    return r;
  }
  std::string path;
  if (path_env) {
    path = path_env;
  } else {
    char buf[256];
    const std::size_t n = confstr(_CS_PATH, buf, sizeof buf);
    path = n > 0 && n <= sizeof buf ? buf : "/bin:/usr/bin";
  }
  bool seen_eacces = false;
  std::size_t pos = 0;
  for (;;) {
    const std::size_t colon = path.find(':', pos);
    std::string dir = path.substr(pos, colon == std::string::npos ? std::string::npos : colon - pos);
    if (dir.empty()) dir = ".";  // execvp(3): an empty element is the current directory
    bool is_dir = false;
    const int err = check(dir + "/" + name, is_dir);
    if (err == 0) {
      r.path = dir + "/" + name;
      return r;
    }
    // execvp(3): EACCES is remembered and the search goes on; other errors are skipped.
    if (err == EACCES) seen_eacces = true;
    if (colon == std::string::npos) break;
    pos = colon + 1;
  }
  r.err = seen_eacces ? EACCES : ENOENT;
  return r;
}

int exit_status_for_exec_errno(int err) {
  switch (err) {
    case EACCES:
    case ENOEXEC:
    case EISDIR:
    case ETXTBSY:
    case EPERM:
      return kExitNotExecutable;
    case ENOENT:
    case ENOTDIR:
      return kExitNotFound;
    default:
      return kExitJailFailure;
  }
}

int exit_status_for_child(int code, int status) {
  if (code == CLD_EXITED) return status;
  if (code == CLD_KILLED || code == CLD_DUMPED) return 128 + status;
  return kExitJailFailure;
}

std::string lookup_message(const std::string& name, const Resolved& r) {
  if (r.err == ENOENT && name.find('/') == std::string::npos && !name.empty())
    return name + ": command not found";
  if (r.is_dir) return name + ": Is a directory";
  return name + ": " + std::strerror(r.err);
}

int run(const LaunchOptions& o) {
  if (o.argv.empty()) {
    std::fprintf(stderr, "jail: nothing to run: no PROGRAM after --\n");
    return kExitJailFailure;
  }
  const Resolved prog = resolve_program(o.argv[0], std::getenv("PATH"));
  if (prog.path.empty()) {
    std::fprintf(stderr, "jail: %s\n", lookup_message(o.argv[0], prog).c_str());
    return exit_status_for_exec_errno(prog.err);
  }

  // The filter: precompiled (jail/compiled_policy.h) or built here from the policy.
  std::vector<std::uint8_t> built;
  if (o.bpf.empty()) {
    try {
      built = compile_filter(o.policy, kHostArch).bpf();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "jail: seccomp filter: %s\n", e.what());
      return kExitJailFailure;
    }
  }
  const std::vector<std::uint8_t>& bpf = o.bpf.empty() ? built : o.bpf;
  std::vector<char*> argv;
  argv.reserve(o.argv.size() + 1);
  for (const std::string& s : o.argv) argv.push_back(const_cast<char*>(s.c_str()));
  argv.push_back(nullptr);

  // Signals are blocked before clone and read from a signalfd: none is lost between clone and
  // the loop (the connect workers block them all, jail/supervisor.cpp). SIGPIPE is blocked
  // too but not read: a log line written to a pipe whose reader has gone fails with EPIPE
  // instead of killing jail (and with it the program). The child restores the old mask before
  // execve, so the program starts with the signal mask jail was given.
  sigset_t mask;
  sigemptyset(&mask);
  for (const int sig : kForwarded) sigaddset(&mask, sig);
  sigaddset(&mask, SIGCHLD);
  sigset_t blocked = mask;
  sigaddset(&blocked, SIGPIPE);
  sigset_t old_mask;
  if (sigprocmask(SIG_BLOCK, &blocked, &old_mask) != 0) {
    std::fprintf(stderr, "jail: sigprocmask: %s\n", std::strerror(errno));
    return kExitJailFailure;
  }
  egress::UniqueFd sigfd(signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!sigfd) {
    std::fprintf(stderr, "jail: signalfd: %s\n", std::strerror(errno));
    return kExitJailFailure;
  }
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
    std::fprintf(stderr, "jail: socketpair: %s\n", std::strerror(errno));
    return kExitJailFailure;
  }
  egress::UniqueFd parent_sock(sv[0]);
  egress::UniqueFd child_sock(sv[1]);

  const std::vector<char*> envp = environment_without(o.policy.env_drop);
  ChildStack stack;
  if (!stack) {
    std::fprintf(stderr, "jail: mmap(child stack): %s\n", std::strerror(errno));
    return kExitJailFailure;
  }
  // Not dumpable: /proc/<jail>/mem and ptrace of the supervisor need CAP_SYS_PTRACE, which the
  // session never has, whatever Yama or Landlock allow. The flag is the memory's, so the child
  // shares it until its execve, which decides afresh for the program.
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
    std::fprintf(stderr, "jail: prctl(PR_SET_DUMPABLE): %s\n", std::strerror(errno));
    return kExitJailFailure;
  }

  // CLONE_VM | CLONE_VFORK, as posix_spawn(3) does, rather than fork(): no page table is
  // copied and no page is copied on write, in the child or here afterwards. On the machine of
  // docs/BENCHMARKS.md, where faults are dear, `jail -- /bin/true` went from 12.4 to 8.7 ms
  // with this alone. This thread waits until the child has exec'd or exited.
  // CLONE_PIDFD: a pidfd for the child from the same call, so no pid can be reused under it.
  const ChildArgs args{&o, &prog.path, &bpf, argv.data(), envp.data(), old_mask, getpid(),
                       child_sock.get()};
  int pidfd_raw = -1;
  const pid_t pid = clone(child_entry, stack.top(), CLONE_VM | CLONE_VFORK | CLONE_PIDFD | SIGCHLD,
                          const_cast<ChildArgs*>(&args), &pidfd_raw);
  if (pid < 0) {
    std::fprintf(stderr, "jail: clone: %s\n", std::strerror(errno));
    return kExitJailFailure;
  }
  egress::UniqueFd pidfd(pidfd_raw);
  child_sock.reset();

  egress::UniqueFd listener;
  const std::optional<ChildMsg> ready = recv_msg(parent_sock.get(), &listener);
  if (!ready) {
    const int status = wait_child(pidfd.get());
    std::fprintf(stderr, "jail: set-up: the child ended before it was confined (status %d)\n",
                 status);
    return kExitJailFailure;
  }
  if (ready->kind == MsgKind::error) {
    print_step_error(ready->error);
    wait_child(pidfd.get());
    return ready->exit_status;
  }
  if (ready->has_listener && !listener) {
    std::fprintf(stderr, "jail: recvmsg: no listener fd from the child\n");
    abandon_child(pidfd.get());
    return kExitJailFailure;
  }
  // EOF: execve succeeded and closed the child's CLOEXEC end.
  if (const std::optional<ChildMsg> after = recv_msg(parent_sock.get(), nullptr);
      after && after->kind == MsgKind::error) {
    print_step_error(after->error);
    wait_child(pidfd.get());
    return after->exit_status;
  }
  parent_sock.reset();

  std::unique_ptr<Supervisor> supervisor;
  if (listener) {
    try {
      supervisor = std::make_unique<Supervisor>(std::move(listener), o.policy, o.supervisor);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "jail: supervisor: %s\n", e.what());
      abandon_child(pidfd.get());
      return kExitJailFailure;
    }
  }
  report_start(o, *ready, pid, prog.path, supervisor.get());
  return supervise_until_exit(sigfd.get(), pidfd.get(), pid, supervisor.get());
}

}  // namespace jail
