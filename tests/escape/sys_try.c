/* Non-network escapes from the jail, one per sub-command: `sys_try CASE [ARG]`. Each case makes
 * one syscall (or one raw socket() with chosen argument bits) that jail's seccomp filter must
 * refuse, and prints "ok" or the errno's name, e.g. `EPERM`, like the net_*.c programs;
 * tests/integration/test_jail_sys_escape.py runs it with and without jail. A case the filter
 * kills prints nothing: the process dies of SIGSYS. Exit status 0 once a result is printed, 2 on
 * bad usage.
 *
 * Anything a case creates is released before it reports (fds closed, children reaped, a mount
 * undone), so a control run outside the jail changes nothing. Cases that open sockets send
 * nothing; the test runs them in a fresh network namespace anyway. */
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/io_uring.h>
#include <linux/keyctl.h>
#include <linux/netlink.h>
#include <linux/perf_event.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <linux/userfaultfd.h>
#include <linux/vm_sockets.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <netinet/in.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "net_common.h"

#ifndef AF_ALG
#define AF_ALG 38
#endif
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

/* A value the kernel reads as `low` (int arguments are the register's low 32 bits) but that a
 * 64-bit compare sees as something else. */
#define HIGH_BITS(low) ((long)(0x100000000L | (long)(low)))

static int report(long rc) { return net_report(rc, errno); }

/* Closes an fd a successful case got and reports "ok", or reports the errno. */
static int report_fd(long fd) {
  const int err = errno;
  if (fd >= 0) close((int)fd);
  return net_report(fd, err);
}

/* For clone-like cases: the child leaves at once; the parent reaps it. */
static int report_child(long pid) {
  const int err = errno;
  if (pid == 0) _exit(0);
  if (pid > 0) waitpid((pid_t)pid, NULL, __WALL);
  return net_report(pid, err);
}

static long raw_socket(long family, long type, long protocol) {
  return syscall(SYS_socket, family, type, protocol);
}

/* socketcall(SYS_SOCKET, {AF_PACKET, SOCK_RAW, ETH_P_ALL}) through the i386 `int 0x80` gate of a
 * 64-bit process. Its pointer argument is truncated to 32 bits, so the argument block lives in
 * memory mapped below 4 GiB. */
static int int80_socketcall(void) {
  uint32_t *args = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
  if (args == MAP_FAILED) return report(-1);
  args[0] = AF_PACKET;
  args[1] = SOCK_RAW;
  args[2] = htons(ETH_P_ALL);
  long ret = 102; /* __NR_socketcall on i386 */
  const long call = 1; /* SYS_SOCKET */
  const long block = (long)(uintptr_t)args;
  __asm__ volatile("int $0x80"
                   : "+a"(ret)
                   : "b"(call), "c"(block)
                   : "memory", "r8", "r9", "r10", "r11");
  munmap(args, 4096);
  const int rc = (int)ret; /* the i386 ABI's result is the low 32 bits */
  if (rc < 0) {
    errno = -rc;
    return report(-1);
  }
  return report_fd(rc);
}

static int ptrace_attach(pid_t pid) {
  const long rc = ptrace(PTRACE_ATTACH, pid, NULL, NULL);
  const int err = errno;
  if (rc == 0) { /* let it go again at once */
    waitpid(pid, NULL, __WALL);
    ptrace(PTRACE_DETACH, pid, NULL, NULL);
  }
  return net_report(rc, err);
}

static int ptrace_child(void) {
  int ready[2];
  if (pipe(ready) != 0) return report(-1);
  const pid_t parent = getpid();
  const pid_t child = fork();
  if (child < 0) return report(-1);
  if (child == 0) {
    /* Dies with its parent too, should the filter kill that one (on_violation: kill); the
     * parent waits for this before it tries, so the child never outlives it holding stdout. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(0);
    if (write(ready[1], "r", 1) != 1) _exit(0);
    for (;;) pause();
  }
  char byte;
  close(ready[1]);
  if (read(ready[0], &byte, 1) != 1) return report(-1);
  close(ready[0]);
  const long rc = ptrace(PTRACE_ATTACH, child, NULL, NULL);
  const int err = errno;
  kill(child, SIGKILL);
  waitpid(child, NULL, __WALL);
  return net_report(rc, err);
}

/* One byte into PID at ADDR: from the local buffer `src`. */
static int vm_write(pid_t pid, void *addr) {
  char src = 'x';
  struct iovec local = {&src, 1};
  struct iovec remote = {addr, 1};
  return report(process_vm_writev(pid, &local, 1, &remote, 1, 0));
}

static long seccomp_allow_all(unsigned int flags) {
  struct sock_filter insns[] = {BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)};
  struct sock_fprog prog = {(unsigned short)(sizeof insns / sizeof insns[0]), insns};
  return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog);
}

static int bpf_map(void) {
  union bpf_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.map_type = BPF_MAP_TYPE_ARRAY;
  attr.key_size = 4;
  attr.value_size = 4;
  attr.max_entries = 1;
  return report_fd(syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof attr));
}

static int perf_event(void) {
  struct perf_event_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.size = sizeof attr;
  attr.type = PERF_TYPE_SOFTWARE;
  attr.config = PERF_COUNT_SW_TASK_CLOCK;
  attr.disabled = 1;
  attr.exclude_kernel = 1;
  attr.exclude_hv = 1;
  return report_fd(syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0));
}

static int mount_tmpfs(const char *dir) {
  if (!dir) {
    fprintf(stderr, "usage: sys_try mount_tmpfs DIR\n");
    exit(2);
  }
  const int rc = mount("none", dir, "tmpfs", 0, "size=1m");
  const int err = errno;
  if (rc == 0) umount2(dir, MNT_DETACH);
  return net_report(rc, err);
}

/* sendmsg(MSG_FASTOPEN) on a TCP socket: a connect inside a send. Towards 127.0.0.1:9 in the
 * test's own network namespace (nothing listens: the control gets ECONNREFUSED). */
static int tfo_sendmsg(void) {
  const int s = socket(AF_INET, SOCK_STREAM, 0);
  if (s < 0) return report(-1);
  struct sockaddr_in to;
  memset(&to, 0, sizeof to);
  to.sin_family = AF_INET;
  to.sin_port = htons(9);
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  char byte = 'x';
  struct iovec iov = {&byte, 1};
  struct msghdr msg;
  memset(&msg, 0, sizeof msg);
  msg.msg_name = &to;
  msg.msg_namelen = sizeof to;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  const long rc = sendmsg(s, &msg, MSG_FASTOPEN);
  const int err = errno;
  close(s);
  return net_report(rc, err);
}

/* pidfd_getfd of the parent's stdin: the supervisor's descriptors are its listener's
 * neighbours. */
static int pidfd_getfd_parent(void) {
  const long pidfd = syscall(SYS_pidfd_open, getppid(), 0);
  if (pidfd < 0) return report(-1);
  const long fd = syscall(SYS_pidfd_getfd, (int)pidfd, 0, 0);
  const int err = errno;
  close((int)pidfd);
  if (fd >= 0) close((int)fd);
  return net_report(fd, err);
}

static int clone3_plain(void) {
  struct clone_args args;
  memset(&args, 0, sizeof args);
  args.exit_signal = SIGCHLD;
  return report_child(syscall(SYS_clone3, &args, sizeof args));
}

static int setns_own_net(void) {
  const int fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    printf("open:");
    return report(-1);
  }
  const int rc = setns(fd, CLONE_NEWNET);
  const int err = errno;
  close(fd);
  return net_report(rc, err);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: sys_try CASE [ARG]\n");
    return 2;
  }
  const char *c = argv[1];
  const char *arg = argc > 2 ? argv[2] : NULL;
  /* socket families and types */
  if (!strcmp(c, "packet")) return report_fd(socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL)));
  if (!strcmp(c, "inet_raw"))
    return report_fd(socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMP));
  if (!strcmp(c, "inet6_raw")) return report_fd(socket(AF_INET6, SOCK_RAW, IPPROTO_ICMPV6));
  if (!strcmp(c, "inet_packet"))  /* the kernel turns this into an AF_PACKET socket */
    return report_fd(socket(AF_INET, SOCK_PACKET, htons(ETH_P_ALL)));
  if (!strcmp(c, "netlink_netfilter"))
    return report_fd(socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER));
  if (!strcmp(c, "netlink_route"))
    return report_fd(socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
  if (!strcmp(c, "vsock")) return report_fd(socket(AF_VSOCK, SOCK_STREAM, 0));
  if (!strcmp(c, "alg")) return report_fd(socket(AF_ALG, SOCK_SEQPACKET, 0));
  if (!strcmp(c, "inet_dgram")) return report_fd(socket(AF_INET, SOCK_DGRAM, 0));
  if (!strcmp(c, "inet_tcp")) return report_fd(socket(AF_INET, SOCK_STREAM, IPPROTO_TCP));
  /* TCP look-alikes that Landlock's TCP connect rule does not cover */
  if (!strcmp(c, "mptcp")) return report_fd(socket(AF_INET, SOCK_STREAM, 262 /* MPTCP */));
  if (!strcmp(c, "sctp_stream")) return report_fd(socket(AF_INET6, SOCK_STREAM, 132 /* SCTP */));
  if (!strcmp(c, "inet_seqpacket")) return report_fd(socket(AF_INET, SOCK_SEQPACKET, 0));
  if (!strcmp(c, "tfo_sendmsg")) return tfo_sendmsg();
  if (!strcmp(c, "pidfd_getfd_parent")) return pidfd_getfd_parent();
  if (!strcmp(c, "kcmp_parent"))
    return report(syscall(SYS_kcmp, getpid(), getppid(), 0 /* KCMP_FILE */, 0, 0));
  if (!strcmp(c, "high_family_inet"))
    return report_fd(raw_socket(HIGH_BITS(AF_INET), SOCK_DGRAM, 0));
  if (!strcmp(c, "high_family_inet_raw"))
    return report_fd(raw_socket(HIGH_BITS(AF_INET), SOCK_RAW, IPPROTO_ICMP));
  if (!strcmp(c, "high_family_packet"))
    return report_fd(raw_socket(HIGH_BITS(AF_PACKET), SOCK_RAW, htons(ETH_P_ALL)));
  if (!strcmp(c, "high_type_raw"))
    return report_fd(raw_socket(AF_INET, HIGH_BITS(SOCK_RAW), IPPROTO_ICMP));
  if (!strcmp(c, "int80_socketcall")) return int80_socketcall();
  if (!strcmp(c, "int80_getpid")) { /* is there an i386 gate at all? (getpid is 20 there) */
    long nr = 20;
    __asm__ volatile("int $0x80" : "+a"(nr) : : "memory", "r8", "r9", "r10", "r11");
    return report(nr);
  }
  if (!strcmp(c, "x32_socket")) /* socket through the x32 ABI: __X32_SYSCALL_BIT | 41 */
    return report_fd(syscall(0x40000000L | SYS_socket, AF_PACKET, SOCK_RAW, htons(ETH_P_ALL)));
  /* io_uring, namespaces, clone */
  if (!strcmp(c, "io_uring_setup")) {
    struct io_uring_params params;
    memset(&params, 0, sizeof params);
    return report_fd(syscall(SYS_io_uring_setup, 4, &params));
  }
  if (!strcmp(c, "unshare_user")) return report(unshare(CLONE_NEWUSER));
  if (!strcmp(c, "setns")) return setns_own_net();
  if (!strcmp(c, "clone3")) return clone3_plain();
  if (!strcmp(c, "clone_newnet"))
    return report_child(syscall(SYS_clone, CLONE_NEWNET | SIGCHLD, 0, 0, 0, 0));
  if (!strcmp(c, "clone_newuser"))
    return report_child(syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0));
  if (!strcmp(c, "fork")) return report_child(syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0));
  /* other processes */
  if (!strcmp(c, "ptrace_parent")) return ptrace_attach(getppid());
  if (!strcmp(c, "ptrace_child")) return ptrace_child();
  if (!strcmp(c, "vm_write_parent")) /* the page at 4096 is never mapped (mmap_min_addr) */
    return vm_write(getppid(), (void *)(uintptr_t)4096);
  if (!strcmp(c, "vm_write_self")) {
    static char dst = 0;
    return vm_write(getpid(), &dst);
  }
  /* seccomp, kernel facilities */
  if (!strcmp(c, "seccomp_listener"))
    return report_fd(seccomp_allow_all(SECCOMP_FILTER_FLAG_NEW_LISTENER));
  if (!strcmp(c, "seccomp_stack")) return report(seccomp_allow_all(0));
  if (!strcmp(c, "bpf")) return bpf_map();
  if (!strcmp(c, "perf_event_open")) return perf_event();
  if (!strcmp(c, "userfaultfd"))
    return report_fd(syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY));
  if (!strcmp(c, "keyctl"))
    return report(syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_USER_KEYRING, 0));
  /* mounts */
  if (!strcmp(c, "mount_tmpfs")) return mount_tmpfs(arg);
  if (!strcmp(c, "open_tree")) /* no OPEN_TREE_CLONE: an O_PATH open, needing no privilege */
    return report_fd(syscall(SYS_open_tree, AT_FDCWD, "/", OPEN_TREE_CLOEXEC));
  if (!strcmp(c, "fsopen")) return report_fd(syscall(SYS_fsopen, "tmpfs", FSOPEN_CLOEXEC));
  fprintf(stderr, "sys_try: unknown case %s\n", c);
  return 2;
}
