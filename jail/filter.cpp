#include "jail/filter.h"

#include <netinet/in.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string_view>
#include <utility>

#include "jail/missing_defs.h"

namespace jail {

namespace {

// Socket types a permitted family may use in an allowlist policy (socket(2)); SOCK_RAW and
// SOCK_PACKET are never permitted, other values the kernel rejects itself.
constexpr int kPermittedTypes[] = {SOCK_STREAM, SOCK_DGRAM, SOCK_RDM, SOCK_SEQPACKET, SOCK_DCCP};
constexpr int kForbiddenTypes[] = {SOCK_RAW, SOCK_PACKET};
// inet/inet6: only plain TCP and datagram sockets. Landlock's TCP connect rule (the backstop
// for a CONTINUE'd unix connect whose fd is swapped, jail/landlock.h) covers plain TCP only:
// MPTCP (SOCK_STREAM, IPPROTO_MPTCP), SCTP (SOCK_STREAM/SOCK_SEQPACKET, IPPROTO_SCTP) and DCCP
// connect without it. These get EPROTONOSUPPORT, which programs that try MPTCP first (Go)
// take as "use TCP".
constexpr int kInetRefusedTypes[] = {SOCK_RDM, SOCK_SEQPACKET, SOCK_DCCP};
constexpr scmp_datum_t kInetStreamProtocols[] = {0, IPPROTO_TCP};  // IPPROTO_TCP is 6
// socket(2): the low 4 bits of `type` are the type, the rest are SOCK_NONBLOCK/SOCK_CLOEXEC.
constexpr scmp_datum_t kTypeMask = 0xf;
// The kernel reads int arguments from the low 32 bits of the register; a deny compare must
// ignore the high half or 0x1_00000011 would slip past a check for AF_PACKET (17).
constexpr scmp_datum_t kLow32 = 0xffffffff;

// clone(2) flags that create namespaces. CLONE_NEWTIME is absent: in clone() that bit is part
// of the exit signal (it only means a time namespace for clone3 and unshare, both denied).
constexpr scmp_datum_t kNamespaceFlags[] = {CLONE_NEWNS,  CLONE_NEWCGROUP, CLONE_NEWUTS,
                                            CLONE_NEWIPC, CLONE_NEWUSER,   CLONE_NEWPID,
                                            CLONE_NEWNET};

[[noreturn]] void fail(const std::string& call, int rc) {
  throw std::runtime_error(call + ": " + std::strerror(-rc));
}

std::uint32_t arch_token(Arch arch) {
  switch (arch) {
    case kX86_64:
      return SCMP_ARCH_X86_64;
    case kAarch64:
      return SCMP_ARCH_AARCH64;
  }
  throw std::runtime_error("compile_filter: unsupported architecture");
}

struct ScmpCtx {
  scmp_filter_ctx ctx;
  ~ScmpCtx() {
    if (ctx) seccomp_release(ctx);
  }
  scmp_filter_ctx release() { return std::exchange(ctx, nullptr); }
};

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) close(fd);
  }
};

class Builder {
 public:
  Builder(const Policy& policy, Arch arch) : policy_(policy), token_(arch_token(arch)) {
    deny_ = policy.on_violation == OnViolation::kill
                ? SCMP_ACT_KILL_PROCESS
                : SCMP_ACT_ERRNO(static_cast<std::uint16_t>(policy.deny_errno));
    family_deny_ = policy.on_violation == OnViolation::kill ? SCMP_ACT_KILL_PROCESS
                                                            : SCMP_ACT_ERRNO(EAFNOSUPPORT);
    protocol_deny_ = policy.on_violation == OnViolation::kill
                         ? SCMP_ACT_KILL_PROCESS
                         : SCMP_ACT_ERRNO(EPROTONOSUPPORT);
    default_ = policy.mode == SyscallMode::denylist ? SCMP_ACT_ALLOW : deny_;
  }

  Filter build() {
    ScmpCtx c{seccomp_init(default_)};
    if (!c.ctx) throw std::runtime_error("seccomp_init failed");
    ctx_ = c.ctx;
    // One architecture only: seccomp_init added the host's; swap it for the target.
    if (token_ != seccomp_arch_native()) {
      check("seccomp_arch_add", seccomp_arch_add(ctx_, token_));
      check("seccomp_arch_remove", seccomp_arch_remove(ctx_, SCMP_ARCH_NATIVE));
    }
    // A syscall made through another ABI (int 0x80 i386 socketcall, x32) never reaches the
    // rules below: kill it.
    check("SCMP_FLTATR_ACT_BADARCH",
          seccomp_attr_set(ctx_, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS));
    // Binary search over syscall numbers instead of a linear chain (libseccomp >= 2.5).
    check("SCMP_FLTATR_CTL_OPTIMIZE", seccomp_attr_set(ctx_, SCMP_FLTATR_CTL_OPTIMIZE, 2));

    for (const SyscallFact& fact : syscall_facts()) {
      if (fact.action == Action::enosys) add(fact.name, SCMP_ACT_ERRNO(ENOSYS), {});
    }
    for (const std::string& name : policy_.syscalls) {
      const SyscallFact* fact = find_syscall_fact(name);
      if (fact && fact->action == Action::enosys) continue;
      const bool ruled = fact && (fact->rule != ArgRule::none || fact->action == Action::notify);
      if (policy_.mode == SyscallMode::denylist) {
        add(name, deny_, {});
      } else if (!ruled) {
        add(name, SCMP_ACT_ALLOW, {});
      }
    }
    for (const SyscallFact& fact : syscall_facts()) {
      if (fact.rule == ArgRule::none && fact.action != Action::notify) continue;
      if (!permitted(fact.name)) continue;
      add_rules(fact);
    }
    return Filter(c.release());
  }

 private:
  bool permitted(std::string_view name) const {
    const bool listed = policy_.syscalls.count(std::string(name)) > 0;
    return policy_.mode == SyscallMode::denylist ? !listed : listed;
  }
  bool allowlist() const { return policy_.mode == SyscallMode::allowlist; }
  bool supervise() const { return policy_.network.connect == ConnectMode::supervise; }

  void add_rules(const SyscallFact& fact) {
    switch (fact.rule) {
      case ArgRule::none:  // connect
        if (supervise()) {
          add(fact.name, SCMP_ACT_NOTIFY, {});
        } else if (allowlist()) {
          add(fact.name, SCMP_ACT_ALLOW, {});
        }
        return;
      case ArgRule::destination_given:  // sendto(fd, buf, len, flags, dest_addr, addrlen)
        if (supervise()) {
          add(fact.name, SCMP_ACT_NOTIFY, {SCMP_A4_64(SCMP_CMP_NE, 0)});
          if (allowlist()) add(fact.name, SCMP_ACT_ALLOW, {SCMP_A4_64(SCMP_CMP_EQ, 0)});
        } else if (allowlist()) {
          add(fact.name, SCMP_ACT_ALLOW, {});
        }
        return;
      case ArgRule::socket_family:
        socket_rules(fact.name);
        return;
      case ArgRule::socketpair_unix:
        // Full 64-bit compares: a value with high bits set is denied even if the kernel would
        // have read it as AF_UNIX, which only errs on the safe side.
        add(fact.name, family_deny_, {SCMP_A0_64(SCMP_CMP_NE, AF_UNIX)});
        if (allowlist()) add(fact.name, SCMP_ACT_ALLOW, {SCMP_A0_64(SCMP_CMP_EQ, AF_UNIX)});
        return;
      case ArgRule::clone_namespaces: {
        scmp_datum_t all = 0;
        for (const scmp_datum_t flag : kNamespaceFlags) {
          add(fact.name, deny_, {SCMP_A0_64(SCMP_CMP_MASKED_EQ, flag, flag)});
          all |= flag;
        }
        if (allowlist()) add(fact.name, SCMP_ACT_ALLOW, {SCMP_A0_64(SCMP_CMP_MASKED_EQ, all, 0)});
        return;
      }
      case ArgRule::no_fastopen_arg2:
      case ArgRule::no_fastopen_arg3: {
        const unsigned arg = fact.rule == ArgRule::no_fastopen_arg2 ? 2 : 3;
        const scmp_datum_t fastopen = MSG_FASTOPEN;
        add(fact.name, deny_, {scmp_arg_cmp{arg, SCMP_CMP_MASKED_EQ, fastopen, fastopen}});
        if (allowlist())
          add(fact.name, SCMP_ACT_ALLOW, {scmp_arg_cmp{arg, SCMP_CMP_MASKED_EQ, fastopen, 0}});
        return;
      }
      case ArgRule::seccomp_listener: {
        // seccomp(op, flags, args): a second listener would receive our notifications first.
        const scmp_datum_t listener = SECCOMP_FILTER_FLAG_NEW_LISTENER;
        add(fact.name, deny_, {SCMP_A1_64(SCMP_CMP_MASKED_EQ, listener, listener)});
        if (allowlist())
          add(fact.name, SCMP_ACT_ALLOW, {SCMP_A1_64(SCMP_CMP_MASKED_EQ, listener, 0)});
        return;
      }
    }
  }

  // socket(family, type, protocol). The rules are disjoint, so libseccomp's rule order does
  // not matter: a family with high bits set fails every exact compare and meets the range rule.
  void socket_rules(std::string_view name) {
    std::vector<const SocketFamily*> allowed;
    for (const std::string& f : policy_.network.families) {
      if (const SocketFamily* fam = find_socket_family(f)) allowed.push_back(fam);
    }
    const auto is_allowed = [&](int family) {
      return std::any_of(allowed.begin(), allowed.end(),
                         [&](const SocketFamily* f) { return f->family == family; });
    };
    for (int family = 0; family < kFamilyLimit; ++family) {
      if (is_allowed(family)) continue;
      add(name, family_deny_,
          {SCMP_A0_64(SCMP_CMP_MASKED_EQ, kLow32, static_cast<scmp_datum_t>(family))});
    }
    add(name, family_deny_, {SCMP_A0_64(SCMP_CMP_GE, static_cast<scmp_datum_t>(kFamilyLimit))});

    for (const SocketFamily* fam : allowed) {
      const auto family = static_cast<scmp_datum_t>(fam->family);
      if (fam->protocol) {
        // netlink: SOCK_RAW is how netlink sockets are opened (getifaddrs, iproute2), so the
        // type is not checked; the protocol is.
        const auto protocol = static_cast<scmp_datum_t>(*fam->protocol);
        add(name, family_deny_,
            {SCMP_A0_64(SCMP_CMP_EQ, family), SCMP_A2_64(SCMP_CMP_NE, protocol)});
        if (allowlist())
          add(name, SCMP_ACT_ALLOW,
              {SCMP_A0_64(SCMP_CMP_EQ, family), SCMP_A2_64(SCMP_CMP_EQ, protocol)});
        continue;
      }
      for (const int type : kForbiddenTypes) {
        add(name, deny_,
            {SCMP_A0_64(SCMP_CMP_EQ, family),
             SCMP_A1_64(SCMP_CMP_MASKED_EQ, kTypeMask, static_cast<scmp_datum_t>(type))});
      }
      if (fam->family == AF_INET || fam->family == AF_INET6) {
        inet_rules(name, family);
        continue;
      }
      if (!allowlist()) continue;
      for (const int type : kPermittedTypes) {
        add(name, SCMP_ACT_ALLOW,
            {SCMP_A0_64(SCMP_CMP_EQ, family),
             SCMP_A1_64(SCMP_CMP_MASKED_EQ, kTypeMask, static_cast<scmp_datum_t>(type))});
      }
    }
  }

  // socket(AF_INET/AF_INET6, type, protocol) beyond the forbidden types: SOCK_DGRAM with any
  // protocol (UDP, UDP-Lite, ICMP echo: all left to nftables), SOCK_STREAM with protocol 0 or
  // IPPROTO_TCP only, no other type. A protocol with bits above 32 is refused even where the
  // kernel would read 0 or 6 in its low half (only errs on the safe side).
  void inet_rules(std::string_view name, scmp_datum_t family) {
    const auto type_is = [&](int type) {
      return SCMP_A1_64(SCMP_CMP_MASKED_EQ, kTypeMask, static_cast<scmp_datum_t>(type));
    };
    for (const int type : kInetRefusedTypes) {
      add(name, protocol_deny_, {SCMP_A0_64(SCMP_CMP_EQ, family), type_is(type)});
    }
    // Stream protocols other than 0 and 6: 1..5, and everything above 6.
    static_assert(kInetStreamProtocols[0] == 0 && kInetStreamProtocols[1] == 6);
    for (scmp_datum_t p = 1; p < 6; ++p) {
      add(name, protocol_deny_,
          {SCMP_A0_64(SCMP_CMP_EQ, family), type_is(SOCK_STREAM), SCMP_A2_64(SCMP_CMP_EQ, p)});
    }
    add(name, protocol_deny_,
        {SCMP_A0_64(SCMP_CMP_EQ, family), type_is(SOCK_STREAM), SCMP_A2_64(SCMP_CMP_GT, 6)});
    if (!allowlist()) return;
    for (const scmp_datum_t p : kInetStreamProtocols) {
      add(name, SCMP_ACT_ALLOW,
          {SCMP_A0_64(SCMP_CMP_EQ, family), type_is(SOCK_STREAM), SCMP_A2_64(SCMP_CMP_EQ, p)});
    }
    add(name, SCMP_ACT_ALLOW, {SCMP_A0_64(SCMP_CMP_EQ, family), type_is(SOCK_DGRAM)});
  }

  // Adds a rule if the syscall exists on the target architecture (`open` does not on aarch64).
  void add(std::string_view name, std::uint32_t action, std::vector<scmp_arg_cmp> args) {
    const std::string n(name);
    if (seccomp_syscall_resolve_name_arch(token_, n.c_str()) < 0) return;
    // libseccomp rejects a rule whose action is the default one; the rules are disjoint, so
    // such a rule would change nothing.
    if (action == default_) return;
    // Numbers passed to libseccomp are the host's; it translates them for the target.
    const int nr = seccomp_syscall_resolve_name(n.c_str());
    check(
        "seccomp_rule_add(" + n + ")",
        seccomp_rule_add_array(ctx_, action, nr, static_cast<unsigned>(args.size()), args.data()));
  }

  static void check(const std::string& call, int rc) {
    if (rc < 0) fail(call, rc);
  }

  const Policy& policy_;
  std::uint32_t token_;
  std::uint32_t deny_ = 0;
  std::uint32_t family_deny_ = 0;
  std::uint32_t protocol_deny_ = 0;
  std::uint32_t default_ = 0;
  scmp_filter_ctx ctx_ = nullptr;
};

std::string export_with(const void* ctx, int (*exporter)(const scmp_filter_ctx, int),
                        const char* call) {
  Fd f{memfd_create("jail-filter", MFD_CLOEXEC)};
  if (f.fd < 0) fail("memfd_create", -errno);
  const int rc = exporter(const_cast<void*>(ctx), f.fd);
  if (rc < 0) fail(call, rc);
  if (lseek(f.fd, 0, SEEK_SET) < 0) fail("lseek", -errno);
  std::string out;
  char buf[16384];
  for (;;) {
    const ssize_t n = read(f.fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("read", -errno);
    }
    if (n == 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

}  // namespace

Filter::~Filter() {
  if (ctx_) seccomp_release(ctx_);
}

std::string Filter::pfc() const {
  return export_with(ctx_, seccomp_export_pfc, "seccomp_export_pfc");
}

std::vector<std::uint8_t> Filter::bpf() const {
  const std::string raw = export_with(ctx_, seccomp_export_bpf, "seccomp_export_bpf");
  return std::vector<std::uint8_t>(raw.begin(), raw.end());
}

Filter compile_filter(const Policy& policy, Arch arch) { return Builder(policy, arch).build(); }

}  // namespace jail
