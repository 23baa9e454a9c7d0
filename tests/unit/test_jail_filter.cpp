// The seccomp filter compiled from jail policies (jail/filter.h), for x86_64 and aarch64.
// Nothing is loaded: the exported BPF runs in a small classic-BPF interpreter below, and the PFC
// text is checked for the rules --dump shows.
#include <doctest/doctest.h>
#include <linux/filter.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/socket.h>

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "jail/filter.h"
#include "jail/policy.h"

namespace {

const std::string kPolicyDir = EGRESS_SOURCE_DIR "/policies/jail";

constexpr std::uint32_t kAllow = SCMP_ACT_ALLOW;
constexpr std::uint32_t kNotify = SCMP_ACT_NOTIFY;
constexpr std::uint32_t kKill = SCMP_ACT_KILL_PROCESS;
constexpr std::uint32_t errno_action(int e) {
  return SCMP_ACT_ERRNO(static_cast<std::uint16_t>(e));
}
constexpr std::uint64_t kHigh = 1ull << 32;  // a bit the kernel ignores in an int argument

// struct seccomp_data (linux/seccomp.h); both architectures here are little-endian.
struct SeccompData {
  std::int32_t nr;
  std::uint32_t arch;
  std::uint64_t ip;
  std::uint64_t args[6];
};

// Runs a classic BPF seccomp program over `data`: the instructions libseccomp emits
// (ld abs/mem, st, alu and/or, jumps, ret). Anything else fails the test.
std::uint32_t run_bpf(const std::vector<std::uint8_t>& bytes, const SeccompData& data) {
  std::vector<sock_filter> prog(bytes.size() / sizeof(sock_filter));
  REQUIRE(prog.size() * sizeof(sock_filter) == bytes.size());
  std::memcpy(prog.data(), bytes.data(), bytes.size());
  unsigned char raw[sizeof data];
  std::memcpy(raw, &data, sizeof data);
  std::uint32_t a = 0, x = 0, mem[BPF_MEMWORDS] = {};
  for (std::size_t pc = 0; pc < prog.size(); ++pc) {
    const sock_filter& in = prog[pc];
    switch (in.code) {
      case BPF_LD | BPF_W | BPF_ABS:
        REQUIRE(in.k + 4 <= sizeof raw);
        std::memcpy(&a, raw + in.k, 4);
        break;
      case BPF_LD | BPF_MEM:
        a = mem[in.k];
        break;
      case BPF_LDX | BPF_MEM:
        x = mem[in.k];
        break;
      case BPF_ST:
        mem[in.k] = a;
        break;
      case BPF_STX:
        mem[in.k] = x;
        break;
      case BPF_ALU | BPF_AND | BPF_K:
        a &= in.k;
        break;
      case BPF_ALU | BPF_OR | BPF_K:
        a |= in.k;
        break;
      case BPF_MISC | BPF_TAX:
        x = a;
        break;
      case BPF_MISC | BPF_TXA:
        a = x;
        break;
      case BPF_JMP | BPF_JA:
        pc += in.k;
        break;
      case BPF_JMP | BPF_JEQ | BPF_K:
        pc += (a == in.k) ? in.jt : in.jf;
        break;
      case BPF_JMP | BPF_JGT | BPF_K:
        pc += (a > in.k) ? in.jt : in.jf;
        break;
      case BPF_JMP | BPF_JGE | BPF_K:
        pc += (a >= in.k) ? in.jt : in.jf;
        break;
      case BPF_JMP | BPF_JSET | BPF_K:
        pc += (a & in.k) ? in.jt : in.jf;
        break;
      case BPF_RET | BPF_K:
        return in.k;
      case BPF_RET | BPF_A:
        return a;
      default:
        FAIL("unexpected BPF opcode " << in.code);
        return 0;
    }
  }
  FAIL("BPF program fell off its end");
  return 0;
}

struct Compiled {
  jail::Arch arch;
  std::uint32_t token;
  std::vector<std::uint8_t> bpf;
  std::string pfc;

  // The filter's verdict for `name(args...)` made through this architecture's ABI.
  std::uint32_t call(const char* name, std::vector<std::uint64_t> args = {}) const {
    const int nr = seccomp_syscall_resolve_name_arch(token, name);
    REQUIRE_MESSAGE(nr >= 0, name);
    return raw(nr, token, args);
  }
  std::uint32_t raw(int nr, std::uint32_t audit_arch, std::vector<std::uint64_t> args) const {
    SeccompData d{};
    d.nr = nr;
    d.arch = audit_arch;
    for (std::size_t i = 0; i < args.size() && i < 6; ++i) d.args[i] = args[i];
    return run_bpf(bpf, d);
  }
};

Compiled compile(const jail::Policy& policy, jail::Arch arch) {
  const jail::Filter f = jail::compile_filter(policy, arch);
  return Compiled{arch, arch == jail::kX86_64 ? SCMP_ARCH_X86_64 : SCMP_ARCH_AARCH64, f.bpf(),
                  f.pfc()};
}

jail::Policy shipped(const char* name) { return jail::load_policy(name, kPolicyDir); }

// The action line that follows the `# filter for syscall "NAME"` line, without indentation.
std::string pfc_action(const std::string& pfc, const std::string& name) {
  const std::string marker = "# filter for syscall \"" + name + "\"";
  std::size_t at = pfc.find(marker);
  if (at == std::string::npos) return "(no rule)";
  at = pfc.find("action ", at);
  return pfc.substr(at, pfc.find('\n', at) - at);
}

constexpr std::uint64_t kRaw = SOCK_RAW, kStream = SOCK_STREAM, kDgram = SOCK_DGRAM;
constexpr std::uint64_t kCloexec = SOCK_CLOEXEC, kNonblock = SOCK_NONBLOCK;

}  // namespace

TEST_CASE("jail filter: the default policy's socket, clone and supervision rules, per arch") {
  const jail::Policy policy = shipped("default");
  for (const jail::Arch arch : {jail::kX86_64, jail::kAarch64}) {
    const Compiled f = compile(policy, arch);
    CAPTURE(arch);
    const std::uint32_t eafnosupport = errno_action(EAFNOSUPPORT);
    // socket(family, type, protocol)
    CHECK(f.call("socket", {AF_INET, kStream | kCloexec, 0}) == kAllow);
    CHECK(f.call("socket", {AF_INET6, kDgram | kNonblock, 0}) == kAllow);
    CHECK(f.call("socket", {AF_UNIX, kStream, 0}) == kAllow);
    CHECK(f.call("socket", {AF_INET, kRaw | kCloexec, 1}) == errno_action(EPERM));
    CHECK(f.call("socket", {AF_INET6, SOCK_PACKET, 0}) == errno_action(EPERM));
    CHECK(f.call("socket", {AF_PACKET, kRaw, 0x0300}) == eafnosupport);
    CHECK(f.call("socket", {AF_PACKET, kDgram, 0}) == eafnosupport);
    CHECK(f.call("socket", {AF_VSOCK, kStream, 0}) == eafnosupport);
    CHECK(f.call("socket", {AF_ALG, SOCK_SEQPACKET, 0}) == eafnosupport);
    CHECK(f.call("socket", {63, kStream, 0}) == eafnosupport);
    CHECK(f.call("socket", {64, kStream, 0}) == eafnosupport);
    CHECK(f.call("socket", {0xffffffffu, kStream, 0}) == eafnosupport);
    // Bits above 32 are ignored by the kernel: they must not hide AF_PACKET or smuggle anything.
    CHECK(f.call("socket", {kHigh | AF_PACKET, kRaw, 0}) == eafnosupport);
    CHECK(f.call("socket", {kHigh | AF_INET, kRaw, 0}) == eafnosupport);
    CHECK(f.call("socket", {AF_INET, kHigh | kRaw, 0}) == errno_action(EPERM));
    // netlink: NETLINK_ROUTE only, with SOCK_RAW as getifaddrs opens it.
    CHECK(f.call("socket", {AF_NETLINK, kRaw | kCloexec, 0}) == kAllow);
    CHECK(f.call("socket", {AF_NETLINK, kRaw, 12 /* NETLINK_NETFILTER */}) == eafnosupport);
    CHECK(f.call("socket", {AF_NETLINK, kRaw, 9 /* NETLINK_AUDIT */}) == eafnosupport);
    CHECK(f.call("socket", {AF_NETLINK, kRaw, kHigh}) == eafnosupport);
    // socketpair: AF_UNIX only.
    CHECK(f.call("socketpair", {AF_UNIX, kStream, 0, 0}) == kAllow);
    CHECK(f.call("socketpair", {AF_INET, kStream, 0, 0}) == eafnosupport);
    CHECK(f.call("socketpair", {kHigh | AF_UNIX, kStream, 0, 0}) == eafnosupport);
    // Supervision: connect always, sendto only with a destination (arg 4).
    CHECK(f.call("connect", {3, 0x1000, 16}) == kNotify);
    CHECK(f.call("sendto", {3, 0x1000, 10, 0, 0, 0}) == kAllow);
    CHECK(f.call("sendto", {3, 0x1000, 10, 0, 0x2000, 16}) == kNotify);
    CHECK(f.call("sendto", {3, 0x1000, 10, 0, kHigh, 16}) == kNotify);
    CHECK(f.call("sendmsg", {3, 0x1000, 0}) == kAllow);
    // Namespaces, clone3, listeners.
    CHECK(f.call("clone",
                 {CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM |
                  CLONE_SETTLS | CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID}) == kAllow);
    CHECK(f.call("clone", {SIGCHLD}) == kAllow);
    for (const std::uint64_t flag : {CLONE_NEWUSER, CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWPID,
                                     CLONE_NEWIPC, CLONE_NEWUTS, CLONE_NEWCGROUP}) {
      CAPTURE(flag);
      CHECK(f.call("clone", {flag | SIGCHLD}) == errno_action(EPERM));
    }
    CHECK(f.call("clone3", {0x1000, 88}) == errno_action(ENOSYS));
    CHECK(f.call("seccomp", {SECCOMP_SET_MODE_FILTER, 1u << 3 /* NEW_LISTENER */, 0x1000}) ==
          errno_action(EPERM));
    CHECK(f.call("seccomp", {SECCOMP_SET_MODE_FILTER, 0, 0x1000}) == kAllow);
    // The deny list.
    for (const char* name :
         {"io_uring_setup", "io_uring_enter", "io_uring_register", "bpf", "ptrace",
          "process_vm_writev", "perf_event_open", "userfaultfd", "keyctl", "kexec_load",
          "finit_module", "mount", "umount2", "fsopen", "move_mount", "unshare", "setns"}) {
      CAPTURE(name);
      CHECK(f.call(name) == errno_action(EPERM));
    }
    CHECK(f.call("read", {0, 0, 0}) == kAllow);
    CHECK(f.call("openat", {0, 0, 0}) == kAllow);
  }
}

TEST_CASE("jail filter: other ABIs are killed (i386 socketcall, x32, a foreign arch)") {
  const jail::Policy policy = shipped("default");
  const Compiled x86 = compile(policy, jail::kX86_64);
  const Compiled arm = compile(policy, jail::kAarch64);
  CHECK(x86.raw(102 /* i386 socketcall */, SCMP_ARCH_X86, {AF_PACKET}) == kKill);
  CHECK(x86.raw(0x40000000 | 41 /* x32 socket */, SCMP_ARCH_X86_64, {AF_PACKET, kRaw, 0}) == kKill);
  CHECK(x86.raw(0x40000000 | 0 /* x32 read */, SCMP_ARCH_X86_64, {}) == kKill);
  CHECK(x86.raw(198, SCMP_ARCH_AARCH64, {}) == kKill);
  CHECK(arm.raw(41, SCMP_ARCH_X86_64, {}) == kKill);
  CHECK(arm.raw(198, SCMP_ARCH_ARM, {}) == kKill);
  for (const Compiled* f : {&x86, &arm}) {
    CHECK(f->pfc.find("# invalid architecture action\naction KILL_PROCESS;") != std::string::npos);
  }
}

TEST_CASE("jail filter: the PFC shows what --dump promises, per arch") {
  const Compiled x86 = compile(shipped("default"), jail::kX86_64);
  const Compiled arm = compile(shipped("default"), jail::kAarch64);
  CHECK(x86.pfc.find("# filter for arch x86_64 ") != std::string::npos);
  CHECK(x86.pfc.find("aarch64") == std::string::npos);
  CHECK(arm.pfc.find("# filter for arch aarch64 ") != std::string::npos);
  CHECK(arm.pfc.find("x86_64") == std::string::npos);
  for (const Compiled* f : {&x86, &arm}) {
    CHECK(pfc_action(f->pfc, "io_uring_setup") == "action ERRNO(1);");
    CHECK(pfc_action(f->pfc, "clone3") == "action ERRNO(38);");
    CHECK(pfc_action(f->pfc, "connect") == "action 0x7fc00000;");  // NOTIFY
    CHECK(pfc_action(f->pfc, "socket") == "action ERRNO(97);");    // the first denied family
    CHECK(f->pfc.find("if ($a0.lo32 & 0xffffffff == 17)\n") != std::string::npos);  // AF_PACKET
    CHECK(pfc_action(f->pfc, "read") == "(no rule)");
  }
  // The binary tree: syscall numbers are split by range, not tested one by one.
  CHECK(x86.pfc.find("if ($syscall > ") != std::string::npos);
  CHECK(x86.pfc.find("# filter for syscall \"io_uring_setup\" (425)") != std::string::npos);
}

TEST_CASE("jail filter: strict is an allowlist; arm64-only names are handled") {
  const jail::Policy policy = shipped("strict");
  const Compiled x86 = compile(policy, jail::kX86_64);
  const Compiled arm = compile(policy, jail::kAarch64);
  CHECK(pfc_action(x86.pfc, "open") == "action ALLOW;");
  CHECK(pfc_action(arm.pfc, "open") == "(no rule)");
  CHECK(pfc_action(arm.pfc, "openat") == "action ALLOW;");
  CHECK(pfc_action(arm.pfc, "faccessat") == "action ALLOW;");
  CHECK(arm.pfc.find("# default action\n  action ERRNO(1);") != std::string::npos);
  CHECK(x86.call("open", {0, 0}) == kAllow);
  for (const Compiled* f : {&x86, &arm}) {
    CHECK(f->call("openat", {0, 0, 0}) == kAllow);
    CHECK(f->call("read", {0, 0, 0}) == kAllow);
    CHECK(f->call("personality", {0}) == errno_action(EPERM));  // not listed
    CHECK(f->call("io_uring_setup") == errno_action(EPERM));
    CHECK(f->call("clone3") == errno_action(ENOSYS));
    CHECK(f->call("socket", {AF_INET, kStream | kCloexec, 0}) == kAllow);
    CHECK(f->call("socket", {AF_INET, kRaw, 0}) == errno_action(EPERM));
    CHECK(f->call("socket", {AF_INET, 7 /* no such type */, 0}) == errno_action(EPERM));
    CHECK(f->call("socket", {AF_PACKET, kRaw, 0}) == errno_action(EAFNOSUPPORT));
    CHECK(f->call("socket", {kHigh | AF_INET, kStream, 0}) == errno_action(EAFNOSUPPORT));
    CHECK(f->call("socket", {AF_NETLINK, kRaw, 0}) == kAllow);
    CHECK(f->call("socket", {AF_NETLINK, kRaw, 12}) == errno_action(EAFNOSUPPORT));
    CHECK(f->call("socketpair", {AF_UNIX, kStream, 0, 0}) == kAllow);
    CHECK(f->call("socketpair", {AF_INET, kStream, 0, 0}) == errno_action(EAFNOSUPPORT));
    CHECK(f->call("clone", {SIGCHLD}) == kAllow);
    CHECK(f->call("clone", {CLONE_NEWNET | SIGCHLD}) == errno_action(EPERM));
    CHECK(f->call("connect", {3, 0, 16}) == kNotify);
    CHECK(f->call("sendto", {3, 0, 1, 0, 0, 0}) == kAllow);
    CHECK(f->call("sendto", {3, 0, 1, 0, 0x1000, 16}) == kNotify);
    CHECK(f->call("seccomp", {1, 0, 0}) == kAllow);
    CHECK(f->call("seccomp", {1, 1u << 3, 0}) == errno_action(EPERM));
  }
}

TEST_CASE("jail filter: on_violation kill, errno choice, connect off, families") {
  jail::Policy policy = shipped("default");
  policy.on_violation = jail::OnViolation::kill;
  Compiled f = compile(policy, jail::kX86_64);
  CHECK(f.call("io_uring_setup") == kKill);
  CHECK(f.call("socket", {AF_PACKET, kRaw, 0}) == kKill);
  CHECK(f.call("socket", {AF_INET, kRaw, 0}) == kKill);
  CHECK(f.call("clone3") == errno_action(ENOSYS));  // compatibility, not a violation

  policy = shipped("default");
  policy.deny_errno = EACCES;
  policy.network.connect = jail::ConnectMode::off;
  policy.network.families = {"inet", "unix"};
  f = compile(policy, jail::kAarch64);
  CHECK(f.call("bpf") == errno_action(EACCES));
  CHECK(f.call("socket", {AF_INET, kRaw, 0}) == errno_action(EACCES));
  CHECK(f.call("socket", {AF_INET6, kStream, 0}) == errno_action(EAFNOSUPPORT));
  CHECK(f.call("socket", {AF_NETLINK, kRaw, 0}) == errno_action(EAFNOSUPPORT));
  CHECK(f.call("connect", {3, 0, 16}) == kAllow);
  CHECK(f.call("sendto", {3, 0, 1, 0, 0x1000, 16}) == kAllow);

  // A name the policy denies outright overrides its argument rule.
  policy = shipped("default");
  policy.syscalls.insert("socket");
  f = compile(policy, jail::kX86_64);
  CHECK(f.call("socket", {AF_INET, kStream, 0}) == errno_action(EPERM));
}

TEST_CASE("jail filter: BPF export is whole instructions and starts with the arch check") {
  const jail::Filter f = jail::compile_filter(shipped("default"), jail::kX86_64);
  const std::vector<std::uint8_t> bpf = f.bpf();
  REQUIRE(bpf.size() % sizeof(sock_filter) == 0);
  REQUIRE(bpf.size() / sizeof(sock_filter) < BPF_MAXINSNS);
  sock_filter first{};
  std::memcpy(&first, bpf.data(), sizeof first);
  CHECK(first.code == (BPF_LD | BPF_W | BPF_ABS));
  CHECK(first.k == 4);  // offsetof(struct seccomp_data, arch)
}
