// The connect()/sendto() supervisor end to end, without the jail binary: a forked child sets
// no_new_privs, loads the filter compiled from a Policy with a user-notification listener
// (no privileges needed), hands the listener to the parent over SCM_RIGHTS and then connects
// to loopback listeners the parent opened. The parent runs jail::Supervisor on the listener and
// checks the errno each call got, what the listeners saw, and the violation log.
// Loopback only: no packet leaves this network namespace.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/cidr.h"
#include "common/unique_fd.h"
#include "jail/filter.h"
#include "jail/missing_defs.h"
#include "jail/policy.h"
#include "jail/supervisor.h"
#include "skip.h"

namespace {

using egress::UniqueFd;

#if defined(__x86_64__)
constexpr jail::Arch kHostArch = jail::kX86_64;
#else
constexpr jail::Arch kHostArch = jail::kAarch64;
#endif

constexpr int kChildTimeoutMs = 20000;  // a hung supervisor fails the test instead of hanging it

sockaddr_in in4(const char* ip, std::uint16_t port) {
  sockaddr_in s{};
  s.sin_family = AF_INET;
  s.sin_port = htons(port);
  inet_pton(AF_INET, ip, &s.sin_addr);
  return s;
}

sockaddr_in6 in6(const char* ip, std::uint16_t port) {
  sockaddr_in6 s{};
  s.sin6_family = AF_INET6;
  s.sin6_port = htons(port);
  inet_pton(AF_INET6, ip, &s.sin6_addr);
  return s;
}

template <typename Addr>
int connect_errno(int fd, const Addr& addr, socklen_t len = sizeof(Addr)) {
  return ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), len) == 0 ? 0 : errno;
}

int connect_new(int type, const sockaddr_in& addr) {
  const UniqueFd fd(socket(AF_INET, type, 0));
  if (!fd) return -errno;
  return connect_errno(fd.get(), addr);
}

int connect_new(int type, const sockaddr_in6& addr) {
  const UniqueFd fd(socket(AF_INET6, type, 0));
  if (!fd) return -errno;
  return connect_errno(fd.get(), addr);
}

// A listening TCP socket on `ip`, port chosen by the kernel.
struct TcpListener {
  UniqueFd fd;
  std::uint16_t port = 0;
  TcpListener(const char* ip, int backlog) {
    fd.reset(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    REQUIRE(fd);
    sockaddr_in a = in4(ip, 0);
    REQUIRE(bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(listen(fd.get(), backlog) == 0);
    socklen_t len = sizeof a;
    REQUIRE(getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &len) == 0);
    port = ntohs(a.sin_port);
  }
  // True if a connection is waiting to be accepted.
  bool pending() const {
    pollfd p{fd.get(), POLLIN, 0};
    return poll(&p, 1, 0) == 1;
  }
};

// A listener with backlog 0 and one connection already queued drops further SYNs
// (tcp_conn_request(): accept queue full), so a blocking connect to it stays in SYN_SENT
// until the queue drains and the SYN is retransmitted (about a second later): a slow connect.
struct FullListener {
  TcpListener listener{"127.0.0.1", 0};
  UniqueFd filler{socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)};
  sockaddr_in addr = in4("127.0.0.1", listener.port);
  FullListener() { REQUIRE(connect_errno(filler.get(), addr) == 0); }
};

// A leading '\0' in `path` makes it abstract.
UniqueFd unix_listener(const std::string& path, int backlog = 8) {
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  REQUIRE(fd);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::memcpy(a.sun_path, path.data(), path.size());
  const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size());
  REQUIRE(bind(fd.get(), reinterpret_cast<sockaddr*>(&a), len) == 0);
  REQUIRE(listen(fd.get(), backlog) == 0);
  return fd;
}

int connect_unix(const std::string& path) {
  const UniqueFd fd(socket(AF_UNIX, SOCK_STREAM, 0));
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::memcpy(a.sun_path, path.data(), path.size());
  const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size());
  return connect_errno(fd.get(), a, len);
}

// The child's side: "name value\n" lines on a pipe.
struct Reporter {
  int fd;
  void operator()(const char* name, long value) const {
    char line[128];
    const int n = std::snprintf(line, sizeof line, "%s %ld\n", name, value);
    if (write(fd, line, static_cast<std::size_t>(n)) < 0) _exit(3);
  }
};

void send_fd(int sock, int fd) {
  char byte = 'L';
  iovec iov{&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
  if (sendmsg(sock, &msg, 0) != 1) _exit(4);
}

UniqueFd recv_fd(int sock) {
  pollfd p{sock, POLLIN, 0};
  if (poll(&p, 1, kChildTimeoutMs) != 1) return {};
  char byte = 0;
  iovec iov{&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  if (recvmsg(sock, &msg, MSG_CMSG_CLOEXEC) != 1) return {};
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  if (!c || c->cmsg_type != SCM_RIGHTS) return {};
  int fd = -1;
  std::memcpy(&fd, CMSG_DATA(c), sizeof fd);
  return UniqueFd(fd);
}

// Loads `bpf` with a new listener (seccomp(2)); WAIT_KILLABLE_RECV where the kernel has it.
int load_with_listener(const std::vector<std::uint8_t>& bpf) {
  sock_fprog prog{};
  prog.len = static_cast<unsigned short>(bpf.size() / sizeof(sock_filter));
  std::vector<sock_filter> insns(prog.len);
  std::memcpy(insns.data(), bpf.data(), bpf.size());
  prog.filter = insns.data();
  long fd = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
                    SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
                    &prog);
  if (fd < 0 && errno == EINVAL)
    fd = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
  return static_cast<int>(fd);
}

struct Run {
  std::map<std::string, long> results;
  std::string log;
  bool timed_out = false;
  int status = -1;
};

// Forks a confined child that runs `body`; the parent supervises it. `on_line` sees each
// result as it arrives. `keep` receives the supervisor (destroy it to stop supervising) —
// by default it is destroyed after the child exits.
Run run_confined(const jail::Policy& policy, bool watch,
                 const std::function<void(const Reporter&)>& body,
                 const std::function<void(const std::string&, long,
                                          std::unique_ptr<jail::Supervisor>&)>& on_line = {}) {
  const std::vector<std::uint8_t> bpf = jail::compile_filter(policy, kHostArch).bpf();
  int pair[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0);
  UniqueFd parent_end(pair[0]), child_end(pair[1]);
  int pipe_fds[2];
  REQUIRE(pipe2(pipe_fds, O_CLOEXEC) == 0);
  UniqueFd results_read(pipe_fds[0]), results_write(pipe_fds[1]);
  UniqueFd log_fd(memfd_create("violations", MFD_CLOEXEC));
  REQUIRE(log_fd);

  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) _exit(5);
    const int listener = load_with_listener(bpf);
    if (listener < 0) _exit(6);
    send_fd(child_end.get(), listener);
    close(listener);
    body(Reporter{results_write.get()});
    _exit(0);
  }
  child_end.reset();
  results_write.reset();

  Run run;
  UniqueFd listener = recv_fd(parent_end.get());
  std::unique_ptr<jail::Supervisor> supervisor;
  if (listener) {
    supervisor = std::make_unique<jail::Supervisor>(
        std::move(listener), policy, jail::SupervisorOptions{watch, log_fd.get(), 2});
    // As jail's main loop does: one poll over the supervisor's listener and, here, the
    // child's results.
    std::string pending;
    bool serving = true;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kChildTimeoutMs);
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      pollfd p[2] = {{results_read.get(), POLLIN, 0},
                     {serving && supervisor ? supervisor->fd() : -1, POLLIN, 0}};
      if (left.count() <= 0 || poll(p, 2, static_cast<int>(left.count())) < 1) {
        run.timed_out = true;
        break;
      }
      if (p[1].revents != 0) serving = supervisor->serve(p[1].revents);
      if (p[0].revents == 0) continue;
      char buf[512];
      const ssize_t n = read(results_read.get(), buf, sizeof buf);
      if (n <= 0) break;
      pending.append(buf, static_cast<std::size_t>(n));
      for (std::size_t eol; (eol = pending.find('\n')) != std::string::npos;) {
        const std::string line = pending.substr(0, eol);
        pending.erase(0, eol + 1);
        const std::size_t sp = line.find(' ');
        const std::string name = line.substr(0, sp);
        const long value = std::stol(line.substr(sp + 1));
        run.results[name] = value;
        if (on_line) on_line(name, value, supervisor);
      }
    }
  }
  if (run.timed_out || !listener) kill(child, SIGKILL);
  REQUIRE(waitpid(child, &run.status, 0) == child);
  supervisor.reset();
  char buf[8192];
  const ssize_t n = pread(log_fd.get(), buf, sizeof buf, 0);
  if (n > 0) run.log.assign(buf, static_cast<std::size_t>(n));
  return run;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  for (std::size_t start = 0, eol; (eol = text.find('\n', start)) != std::string::npos;
       start = eol + 1) {
    out.push_back(text.substr(start, eol - start));
  }
  return out;
}

bool has_line(const std::string& log, std::initializer_list<const char*> parts) {
  for (const std::string& line : lines_of(log)) {
    bool all = true;
    for (const char* p : parts) all = all && line.find(p) != std::string::npos;
    if (all) return true;
  }
  return false;
}

jail::Policy test_policy() {
  jail::Policy p;  // the sidecar defaults to 127.0.0.1
  const egress::CidrParse c = egress::parse_cidr("127.0.0.2/32");
  REQUIRE(c.cidr);
  p.network.deny_networks.push_back(*c.cidr);
  return p;
}

// The running kernel's release is at least major.minor ("6.18.3-..." from uname(2)).
bool kernel_at_least(int major, int minor) {
  utsname u{};
  REQUIRE(uname(&u) == 0);
  int have_major = 0, have_minor = 0;
  REQUIRE(std::sscanf(u.release, "%d.%d", &have_major, &have_minor) == 2);
  return have_major > major || (have_major == major && have_minor >= minor);
}

bool ipv6_available() {
  const UniqueFd fd(socket(AF_INET6, SOCK_STREAM, 0));
  return static_cast<bool>(fd);
}

std::string temp_socket_path() {
  return "/tmp/egress-test-sup-" + std::to_string(getpid()) + ".sock";
}

// run_confined() in a child process whose own seccomp filter is `outer`, so the supervisor
// runs under it (the confined child inherits it too). Returns the results named in `names`,
// space-separated, "timed out" or "error".
std::string confined_under_filter(std::vector<sock_filter> outer,
                                  const std::function<void(const Reporter&)>& body,
                                  std::initializer_list<const char*> names) {
  int report_pipe[2];
  REQUIRE(pipe2(report_pipe, O_CLOEXEC) == 0);
  UniqueFd report_read(report_pipe[0]), report_write(report_pipe[1]);
  const pid_t sup = fork();
  REQUIRE(sup >= 0);
  if (sup == 0) {
    report_read.reset();
    std::string out = "error";
    try {
      sock_fprog prog{static_cast<unsigned short>(outer.size()), outer.data()};
      if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
          syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0)
        _exit(3);
      Run run = run_confined(test_policy(), false, body);
      if (run.timed_out) {
        out = "timed out";
      } else {
        out.clear();
        for (const char* name : names) {
          if (!out.empty()) out += ' ';
          out += std::to_string(run.results[name]);
        }
      }
    } catch (...) {
    }
    if (write(report_write.get(), out.data(), out.size()) < 0) _exit(5);
    _exit(0);
  }
  report_write.reset();
  char buf[256] = {};
  const ssize_t n = read(report_read.get(), buf, sizeof buf - 1);
  int status = 0;
  REQUIRE(waitpid(sup, &status, 0) == sup);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  return std::string(buf, n > 0 ? static_cast<std::size_t>(n) : 0);
}

}  // namespace

TEST_CASE("jail supervisor: connect and sendto decisions in a confined child") {
  const jail::Policy policy = test_policy();
  TcpListener allowed("127.0.0.1", 16);
  TcpListener denied("127.0.0.2", 16);
  UniqueFd udp(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_in udp_addr = in4("127.0.0.1", 0);
  REQUIRE(bind(udp.get(), reinterpret_cast<sockaddr*>(&udp_addr), sizeof udp_addr) == 0);
  socklen_t udp_len = sizeof udp_addr;
  REQUIRE(getsockname(udp.get(), reinterpret_cast<sockaddr*>(&udp_addr), &udp_len) == 0);
  const std::uint16_t udp_port = ntohs(udp_addr.sin_port);
  const std::string path = temp_socket_path();
  unlink(path.c_str());
  const UniqueFd path_listener = unix_listener(path);
  const std::string abstract = std::string(1, '\0') + "egress-test-sup-" + std::to_string(getpid());
  const UniqueFd abstract_listener = unix_listener(abstract);
  const bool v6 = ipv6_available();
  const std::uint16_t port = allowed.port, denied_port = denied.port;

  Run run = run_confined(policy, false, [&](const Reporter& report) {
    report("tcp_allowed", connect_new(SOCK_STREAM, in4("127.0.0.1", port)));
    report("tcp_deny_networks", connect_new(SOCK_STREAM, in4("127.0.0.2", denied_port)));
    report("udp_dns_foreign", connect_new(SOCK_DGRAM, in4("127.0.0.4", 53)));
    report("udp_dns_sidecar", connect_new(SOCK_DGRAM, in4("127.0.0.1", 53)));
    if (v6) {
      report("mapped_denied", connect_new(SOCK_STREAM, in6("::ffff:127.0.0.2", denied_port)));
      report("mapped_allowed", connect_new(SOCK_STREAM, in6("::ffff:127.0.0.1", port)));
      report("mapped_dns_foreign", connect_new(SOCK_DGRAM, in6("::ffff:127.0.0.4", 53)));
    }
    {
      const UniqueFd s(socket(AF_INET, SOCK_DGRAM, 0));
      const sockaddr_in foreign = in4("127.0.0.4", 53);
      const sockaddr_in ok = in4("127.0.0.1", udp_port);
      sockaddr_in unspec = foreign;
      unspec.sin_family = AF_UNSPEC;
      const auto* f = reinterpret_cast<const sockaddr*>(&foreign);
      const auto* u = reinterpret_cast<const sockaddr*>(&unspec);
      report("sendto_denied", sendto(s.get(), "x", 1, 0, f, sizeof foreign) < 0 ? errno : 0);
      report("sendto_unspec_denied", sendto(s.get(), "x", 1, 0, u, sizeof unspec) < 0 ? errno : 0);
      report("sendto_allowed", sendto(s.get(), "hello", 5, 0,
                                      reinterpret_cast<const sockaddr*>(&ok), sizeof ok));
      // connect, then AF_UNSPEC dissolves the association (connect(2)).
      report("udp_connect", connect_errno(s.get(), ok));
      sockaddr_in none{};
      none.sin_family = AF_UNSPEC;
      report("unspec_disconnect", connect_errno(s.get(), none));
    }
    report("unix_path", connect_unix(path));
    report("unix_abstract", connect_unix(abstract));
    {
      const UniqueFd s(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0));
      report("nonblocking", connect_errno(s.get(), in4("127.0.0.1", port)));
      pollfd p{s.get(), POLLOUT, 0};
      report("nonblocking_poll", poll(&p, 1, 5000));
      int so_error = -1;
      socklen_t len = sizeof so_error;
      getsockopt(s.get(), SOL_SOCKET, SO_ERROR, &so_error, &len);
      report("nonblocking_so_error", so_error);
    }
    {
      const UniqueFd s(socket(AF_INET, SOCK_STREAM, 0));
      const sockaddr_in a = in4("127.0.0.1", port);
      report("short_len", connect_errno(s.get(), a, 3));
      sockaddr_storage big{};
      std::memcpy(&big, &a, sizeof a);
      report("long_len", ::connect(s.get(), reinterpret_cast<const sockaddr*>(&big), 1000) == 0
                             ? 0 : errno);
      report("bad_pointer",
             ::connect(s.get(), reinterpret_cast<const sockaddr*>(std::uintptr_t{8}), 16) == 0
                 ? 0 : errno);
      sockaddr_in odd = a;
      odd.sin_family = 0xffff;
      report("family_ffff", connect_errno(s.get(), odd));
    }
    report("bad_fd", connect_errno(987654, in4("127.0.0.1", port)));
    {
      int p[2];
      if (pipe(p) == 0) {
        report("not_socket", connect_errno(p[0], in4("127.0.0.1", port)));
        close(p[0]);
        close(p[1]);
      }
    }
    long threaded = -1;
    std::thread t([&] { threaded = connect_new(SOCK_STREAM, in4("127.0.0.1", port)); });
    t.join();
    report("thread", threaded);
  });
  unlink(path.c_str());

  REQUIRE_FALSE(run.timed_out);
  CHECK(WIFEXITED(run.status));
  CHECK(WEXITSTATUS(run.status) == 0);
  const auto r = [&](const char* name) {
    const auto it = run.results.find(name);
    return it == run.results.end() ? -999 : it->second;
  };
  CHECK(r("tcp_allowed") == 0);
  CHECK(r("tcp_deny_networks") == EACCES);
  CHECK_FALSE(denied.pending());  // refused before any SYN
  CHECK(r("udp_dns_foreign") == EACCES);
  CHECK(r("udp_dns_sidecar") == 0);
  if (v6) {
    CHECK(r("mapped_denied") == EACCES);
    CHECK(r("mapped_allowed") == 0);
    CHECK(r("mapped_dns_foreign") == EACCES);
  }
  CHECK(r("sendto_denied") == EACCES);
  CHECK(r("sendto_unspec_denied") == EACCES);
  CHECK(r("sendto_allowed") == 5);
  char got[16] = {};
  CHECK(recv(udp.get(), got, sizeof got, MSG_DONTWAIT) == 5);
  CHECK(std::string(got) == "hello");
  CHECK(recv(udp.get(), got, sizeof got, MSG_DONTWAIT) < 0);  // nothing else arrived
  CHECK(r("udp_connect") == 0);
  CHECK(r("unspec_disconnect") == 0);
  CHECK(r("unix_path") == 0);
  CHECK(r("unix_abstract") == EPERM);
  CHECK((r("nonblocking") == EINPROGRESS || r("nonblocking") == 0));
  CHECK(r("nonblocking_poll") == 1);
  CHECK(r("nonblocking_so_error") == 0);
  CHECK(r("short_len") == EINVAL);
  CHECK(r("long_len") == EINVAL);
  CHECK(r("bad_pointer") == EFAULT);
  CHECK(r("family_ffff") == EAFNOSUPPORT);
  CHECK(r("bad_fd") == EBADF);
  CHECK(r("not_socket") == ENOTSOCK);
  CHECK(r("thread") == 0);

  INFO(run.log);
  CHECK(has_line(run.log, {"\"syscall\":\"connect\"", "\"family\":\"inet\"",
                           "\"address\":\"127.0.0.2:", "\"verdict\":\"deny\"",
                           "\"rule\":\"deny_networks 127.0.0.2/32\"", "\"errno\":\"EACCES\""}));
  CHECK(has_line(run.log, {"\"address\":\"127.0.0.4:53\"", "\"syscall\":\"connect\"",
                           "\"rule\":\"dns only via the sidecar 127.0.0.1\""}));
  CHECK(has_line(run.log, {"\"address\":\"127.0.0.4:53\"", "\"syscall\":\"sendto\""}));
  CHECK(has_line(run.log, {"\"family\":\"unix\"", "\"rule\":\"abstract unix sockets denied\"",
                           "\"errno\":\"EPERM\"", "\"address\":\"@egress-test-sup-"}));
  CHECK(has_line(run.log, {"\"family\":65535", "\"errno\":\"EAFNOSUPPORT\""}));
  CHECK(has_line(run.log, {"\"rule\":\"malformed sockaddr: length 1000\""}));
  if (v6) CHECK(has_line(run.log, {"\"family\":\"inet6\"", "[::ffff:127.0.0.2]:"}));
  char self[4096] = {};
  REQUIRE(readlink("/proc/self/exe", self, sizeof self - 1) > 0);
  const std::string exe = "\"exe\":\"" + std::string(self) + "\"";
  CHECK(has_line(run.log, {exe.c_str()}));
  // deny_networks, udp dns, sendto x2, abstract, short, long, 0xffff (+2 mapped): one each.
  CHECK(lines_of(run.log).size() == (v6 ? 10u : 8u));
  for (const std::string& line : lines_of(run.log)) {
    CHECK(line.front() == '{');
    CHECK(line.back() == '}');
  }
}

TEST_CASE("jail supervisor: watch mode logs and allows") {
  const jail::Policy policy = test_policy();
  TcpListener denied("127.0.0.2", 16);
  const std::string abstract = std::string(1, '\0') + "egress-test-watch-" + std::to_string(getpid());
  const UniqueFd abstract_listener = unix_listener(abstract);
  const std::uint16_t port = denied.port;
  Run run = run_confined(policy, true, [&](const Reporter& report) {
    report("tcp", connect_new(SOCK_STREAM, in4("127.0.0.2", port)));
    report("abstract", connect_unix(abstract));
    const UniqueFd s(socket(AF_INET, SOCK_STREAM, 0));
    report("short_len", connect_errno(s.get(), in4("127.0.0.2", port), 3));
  });
  REQUIRE_FALSE(run.timed_out);
  CHECK(run.results["tcp"] == 0);
  CHECK(denied.pending());
  CHECK(run.results["abstract"] == 0);
  CHECK(run.results["short_len"] == EINVAL);  // malformed stays refused
  INFO(run.log);
  CHECK(has_line(run.log, {"\"verdict\":\"watch\"", "deny_networks 127.0.0.2/32"}));
  CHECK(has_line(run.log, {"\"verdict\":\"watch\"", "abstract unix sockets denied"}));
  CHECK(has_line(run.log, {"\"verdict\":\"deny\"", "malformed sockaddr"}));
}

TEST_CASE("jail supervisor: a blocking connect waits on a worker, not on the loop") {
  const jail::Policy policy = test_policy();
  FullListener full;
  const sockaddr_in full_addr = full.addr;
  TcpListener fast("127.0.0.1", 16);
  const std::uint16_t fast_port = fast.port;

  Run run = run_confined(
      policy, false,
      [&](const Reporter& report) {
        std::atomic<bool> slow_done{false};
        long slow = -1;
        std::thread t([&] {
          slow = connect_new(SOCK_STREAM, full_addr);
          slow_done = true;
        });
        // Give the slow connect time to reach a worker (it stays there for a second or more).
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        report("fast", connect_new(SOCK_STREAM, in4("127.0.0.1", fast_port)));
        report("slow_pending_at_fast", slow_done ? 0 : 1);
        t.join();
        report("slow", slow);
      },
      [&](const std::string& name, long, std::unique_ptr<jail::Supervisor>&) {
        if (name == "slow_pending_at_fast") {
          const UniqueFd accepted(accept4(full.listener.fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
          CHECK(accepted);  // the queue drains; the retransmitted SYN gets through
        }
      });
  REQUIRE_FALSE(run.timed_out);
  CHECK(run.results["fast"] == 0);
  CHECK(run.results["slow_pending_at_fast"] == 1);
  CHECK(run.results["slow"] == 0);
  CHECK(run.log.empty());
}

TEST_CASE("jail supervisor: asks for synchronous wake-ups where the kernel has them (Linux 6.6)") {
  const jail::Policy policy = test_policy();
  TcpListener server("127.0.0.1", 16);
  const std::uint16_t port = server.port;
  std::optional<bool> sync;
  Run run = run_confined(
      policy, false,
      [&](const Reporter& report) {
        report("connect", connect_new(SOCK_STREAM, in4("127.0.0.1", port)));
      },
      [&](const std::string&, long, std::unique_ptr<jail::Supervisor>& supervisor) {
        sync = supervisor->sync_wake_up();
      });
  REQUIRE_FALSE(run.timed_out);
  CHECK(run.results["connect"] == 0);  // served with it as without it
  REQUIRE(sync.has_value());
  // Mainline has it from 6.6; an older kernel may have it backported, so only this is sure.
  if (kernel_at_least(6, 6)) CHECK(*sync);
}

TEST_CASE("jail supervisor: stopping aborts pending connects, then calls fail closed") {
  const jail::Policy policy = test_policy();
  FullListener full;
  const sockaddr_in full_addr = full.addr;
  TcpListener open_listener("127.0.0.1", 16);
  const std::uint16_t open_port = open_listener.port;

  Run run = run_confined(
      policy, false,
      [&](const Reporter& report) {
        std::thread t([&] { report("slow", connect_new(SOCK_STREAM, full_addr)); });
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        report("stop_now", 0);
        t.join();
        // The listener is closed: the kernel fails notified calls with ENOSYS.
        report("after_stop", connect_new(SOCK_STREAM, in4("127.0.0.1", open_port)));
      },
      [&](const std::string& name, long, std::unique_ptr<jail::Supervisor>& supervisor) {
        if (name == "stop_now") supervisor.reset();  // must return although a worker waits
      });
  REQUIRE_FALSE(run.timed_out);
  CHECK(run.results.count("slow") == 1);
  CHECK(run.results["slow"] == ENOSYS);  // aborted, not answered: the closed listener fails it
  CHECK(run.results["after_stop"] == ENOSYS);
  CHECK_FALSE(open_listener.pending());
}

TEST_CASE("jail supervisor: with every worker in a slow connect, one thread still receives") {
  // run_confined's supervisor has 2 workers: two blocking connects at once, a third queued.
  // The thread left receiving must not take the third itself, or the non-blocking connect
  // and the denial after it would wait for a SYN retransmission.
  const jail::Policy policy = test_policy();
  FullListener full;
  const sockaddr_in full_addr = full.addr;
  TcpListener fast("127.0.0.1", 16);
  const std::uint16_t fast_port = fast.port;

  Run run = run_confined(
      policy, false,
      [&](const Reporter& report) {
        std::atomic<int> slow_done{0};
        std::vector<std::thread> slow;
        for (int i = 0; i < 3; ++i) {
          slow.emplace_back([&, i] {
            const int rc = connect_new(SOCK_STREAM, full_addr);
            ++slow_done;
            report(("slow" + std::to_string(i)).c_str(), rc);
          });
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        const UniqueFd s(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0));
        report("nonblocking", connect_errno(s.get(), in4("127.0.0.1", fast_port)));
        report("denied", connect_new(SOCK_STREAM, in4("127.0.0.2", fast_port)));
        report("slow_done_before_stop", slow_done.load());
        report("stop_now", 0);
        for (std::thread& t : slow) t.join();
      },
      [&](const std::string& name, long, std::unique_ptr<jail::Supervisor>& supervisor) {
        if (name == "stop_now") supervisor.reset();
      });
  REQUIRE_FALSE(run.timed_out);
  CHECK(run.results["nonblocking"] == EINPROGRESS);
  CHECK(run.results["denied"] == EACCES);
  CHECK(run.results["slow_done_before_stop"] == 0);
  // Stopping aborts the two being performed and drops the queued one; none is answered, and
  // closing the listener fails all three.
  for (const char* name : {"slow0", "slow1", "slow2"}) {
    REQUIRE(run.results.count(name) == 1);
    CHECK(run.results[name] == ENOSYS);
  }
  CHECK(has_line(run.log, {"\"verdict\":\"deny\"", "127.0.0.2"}));
}

TEST_CASE("jail supervisor: many threads mixing blocking, non-blocking, denied and unix calls "
          "all get their own answers") {
  // The workers take turns receiving while others perform: every call must be answered, and
  // with its own result (a mix-up shows as a blocking connect with EINPROGRESS, a denial
  // that succeeds, a unix connect refused...).
  constexpr int kThreads = 8;
  constexpr int kRounds = 40;
  // Backlogs that hold every connection made (nothing accepts them): a full one would drop
  // SYNs (slow connects) or block unix connects.
  constexpr int kBacklog = kThreads * kRounds;
  const jail::Policy policy = test_policy();
  TcpListener fast("127.0.0.1", kBacklog);
  const std::uint16_t fast_port = fast.port;
  const std::string path = temp_socket_path();
  unlink(path.c_str());
  const UniqueFd path_listener = unix_listener(path, kBacklog);

  Run run = run_confined(policy, false, [&](const Reporter& report) {
    std::atomic<int> wrong{0}, answered{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        const sockaddr_in ok = in4("127.0.0.1", fast_port);
        for (int i = 0; i < kRounds; ++i) {
          int got = 0, want = 0;
          switch ((t + i) % 4) {
            case 0:
              got = connect_new(SOCK_STREAM, ok);
              break;
            case 1: {
              const UniqueFd s(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0));
              got = connect_errno(s.get(), ok);
              want = EINPROGRESS;
              break;
            }
            case 2:
              got = connect_new(SOCK_STREAM, in4("127.0.0.2", fast_port));
              want = EACCES;
              break;
            default:
              got = connect_unix(path);
              break;
          }
          ++answered;
          if (got != want) ++wrong;
        }
      });
    }
    for (std::thread& th : threads) th.join();
    report("answered", answered.load());
    report("wrong", wrong.load());
  });
  unlink(path.c_str());
  REQUIRE_FALSE(run.timed_out);
  CHECK(run.results["answered"] == kThreads * kRounds);
  CHECK(run.results["wrong"] == 0);
}

TEST_CASE("jail supervisor: when no worker can start, a blocking call gets EAGAIN and the loop "
          "goes on receiving") {
  // The supervisor runs in a child whose filter fails every thread creation with EAGAIN (as
  // RLIMIT_NPROC or a pids cgroup would): clone3 is ENOSYS, so glibc falls back to clone,
  // and clone with CLONE_THREAD is EAGAIN. The confined child inherits that filter: its body
  // makes no thread.
  TcpListener fast("127.0.0.1", 16);
  const std::uint16_t fast_port = fast.port;
  // ld nr; clone3? ENOSYS; clone? ld args[0] (low half); CLONE_THREAD set? EAGAIN : allow.
  const std::string got = confined_under_filter(
      {
          BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
          BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone3, 0, 1),
          BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
          BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone, 0, 3),
          BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, args)),
          BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, CLONE_THREAD, 0, 1),
          BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EAGAIN),
          BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      },
      [&](const Reporter& report) {
        const sockaddr_in ok = in4("127.0.0.1", fast_port);
        report("blocking", connect_new(SOCK_STREAM, ok));
        const UniqueFd s(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0));
        report("nonblocking", connect_errno(s.get(), ok));
        report("denied", connect_new(SOCK_STREAM, in4("127.0.0.2", fast_port)));
        report("blocking_again", connect_new(SOCK_STREAM, ok));
      },
      {"blocking", "nonblocking", "denied", "blocking_again"});
  CHECK(got == std::to_string(EAGAIN) + " " + std::to_string(EINPROGRESS) + " " +
                   std::to_string(EACCES) + " " + std::to_string(EAGAIN));
  // One connection came: the non-blocking connect's. Neither blocking connect was made.
  pollfd p{fast.fd.get(), POLLIN, 0};
  REQUIRE(poll(&p, 1, 5000) == 1);
  const UniqueFd accepted(accept4(fast.fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
  CHECK(accepted);
  CHECK_FALSE(fast.pending());
}

TEST_CASE("jail supervisor: a thread id used again after its thread ended gets a fresh pidfd") {
  // The supervisor keeps the pidfd of each thread that connected. When that thread has ended
  // and a new one is given the same id, the kept pidfd names the dead thread: pidfd_getfd
  // fails on it (ESRCH), and the connect must still be performed on the new thread's socket.
  // The kernel hands out the id again when told to (ns_last_pid, which needs root).
  if (egress_test::cannot_run(geteuid() == 0,
                              "making the kernel reuse a thread id needs root (ns_last_pid)"))
    return;
  TcpListener listener("127.0.0.1", 16);
  const sockaddr_in addr = in4("127.0.0.1", listener.port);
  Run run = run_confined(test_policy(), false, [&](const Reporter& report) {
    long first_tid = 0;
    std::thread([&] {
      first_tid = gettid();
      report("first", connect_new(SOCK_STREAM, addr));
    }).join();
    for (int attempt = 0; attempt < 50; ++attempt) {
      // Another process may take the id first, or the old thread may not be released yet.
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      FILE* f = std::fopen("/proc/sys/kernel/ns_last_pid", "w");
      if (!f) {
        report("ns_last_pid_errno", errno);
        return;
      }
      std::fprintf(f, "%ld", first_tid - 1);
      std::fclose(f);
      long tid = 0;
      long second = -1;
      std::thread([&] {
        tid = gettid();
        if (tid == first_tid) second = connect_new(SOCK_STREAM, addr);
      }).join();
      if (tid == first_tid) {
        report("reused_at_attempt", attempt);
        report("second", second);
        return;
      }
    }
    report("reused_at_attempt", -1);
  });
  REQUIRE_FALSE(run.timed_out);
  CHECK(run.results.count("ns_last_pid_errno") == 0);
  CHECK(run.results["first"] == 0);
  REQUIRE(run.results["reused_at_attempt"] >= 0);
  CHECK(run.results["second"] == 0);
  CHECK(run.log.empty());
}

TEST_CASE("jail supervisor: without thread pidfds (Linux < 6.9) each call's thread is checked "
          "afresh") {
  // Before PIDFD_THREAD the supervisor opens the thread group leader's pidfd and checks with
  // kcmp that the calling thread shares the leader's descriptor table. A leader pidfd kept
  // from an earlier call would skip that check: a thread that then unshares its table and
  // puts a UDP socket where the leader has a unix one would have its sendto judged by the
  // leader's unix socket (CONTINUE) and sent unchecked. Here the supervisor runs in a child
  // whose own filter makes pidfd_open(PIDFD_THREAD) fail with EINVAL, as such a kernel does.
  UniqueFd receiver(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_in to = in4("127.0.0.2", 0);  // in test_policy()'s deny_networks
  REQUIRE(bind(receiver.get(), reinterpret_cast<sockaddr*>(&to), sizeof to) == 0);
  socklen_t to_len = sizeof to;
  REQUIRE(getsockname(receiver.get(), reinterpret_cast<sockaddr*>(&to), &to_len) == 0);
  const std::string path = temp_socket_path();
  unlink(path.c_str());
  const UniqueFd path_listener = unix_listener(path);
  // ld nr; pidfd_open? ld args[1] (low half); PIDFD_THREAD set? EINVAL : allow.
  const std::string got = confined_under_filter(
      {
          BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
          BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_pidfd_open, 0, 3),
          BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, args) + sizeof(std::uint64_t)),
          BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, PIDFD_THREAD, 0, 1),
          BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EINVAL),
          BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      },
      [&](const Reporter& report) {
        // The leader's fd 100: a unix socket.
        if (dup2(socket(AF_UNIX, SOCK_DGRAM, 0), 100) != 100) _exit(7);
        std::thread([&] {
          report("first", connect_unix(path));  // notified: the leader's pidfd is opened
          if (unshare(CLONE_FILES) != 0) _exit(8);
          if (dup2(socket(AF_INET, SOCK_DGRAM, 0), 100) != 100) _exit(9);
          const ssize_t n =
              sendto(100, "x", 1, 0, reinterpret_cast<const sockaddr*>(&to), sizeof to);
          report("second", n < 0 ? -errno : n);
        }).join();
      },
      {"first", "second"});
  unlink(path.c_str());
  // The connect went through; the sendto from the thread with a table of its own was refused
  // (EPERM), not sent to 127.0.0.2.
  CHECK(got == "0 " + std::to_string(-EPERM));
  char byte = 0;
  CHECK(recv(receiver.get(), &byte, 1, MSG_DONTWAIT) < 0);
}

namespace {
volatile sig_atomic_t g_sigpipes = 0;
void count_sigpipe(int) { g_sigpipes = g_sigpipes + 1; }
}  // namespace

TEST_CASE("jail supervisor: a supervised sendto that fails with EPIPE raises SIGPIPE, as send does") {
  // send(2): EPIPE on a stream socket shut down for writing "also" raises SIGPIPE unless
  // MSG_NOSIGNAL. The supervisor performs the send, so it must raise it in the caller.
  TcpListener listener("127.0.0.1", 16);
  const sockaddr_in addr = in4("127.0.0.1", listener.port);
  Run run = run_confined(test_policy(), false, [&](const Reporter& report) {
    struct sigaction sa {};
    sa.sa_handler = count_sigpipe;
    sigaction(SIGPIPE, &sa, nullptr);
    const UniqueFd fd(socket(AF_INET, SOCK_STREAM, 0));
    report("connect", connect_errno(fd.get(), addr));
    shutdown(fd.get(), SHUT_WR);
    for (const int flags : {0, static_cast<int>(MSG_NOSIGNAL)}) {
      const int before = g_sigpipes;
      // With a destination, so the call is supervised (a connected TCP socket ignores it).
      const ssize_t n = sendto(fd.get(), "x", 1, flags, reinterpret_cast<const sockaddr*>(&addr),
                               sizeof addr);
      const std::string name = flags == 0 ? "plain" : "nosignal";
      report((name + "_errno").c_str(), n < 0 ? errno : 0);
      report((name + "_sigpipes").c_str(), g_sigpipes - before);
    }
  });
  REQUIRE_FALSE(run.timed_out);
  CHECK(run.results["connect"] == 0);
  CHECK(run.results["plain_errno"] == EPIPE);
  CHECK(run.results["plain_sigpipes"] == 1);
  CHECK(run.results["nosignal_errno"] == EPIPE);
  CHECK(run.results["nosignal_sigpipes"] == 0);
}
