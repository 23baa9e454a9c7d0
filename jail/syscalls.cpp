#include "jail/syscalls.h"

#include <seccomp.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <string>

#include "jail/missing_defs.h"

namespace jail {

namespace {

constexpr auto D = Action::deny;

// The single source of truth for what the jail does with a syscall beyond the policy's own
// lists. Sorted by name. Syscalls not listed here are governed only by the policy's
// `syscalls.deny` / `syscalls.allow`.
constexpr std::array kFacts = {
    SyscallFact{"add_key", D, ArgRule::none, kAllArches,
                "kernel keyrings are shared state and a long record of bugs"},
    SyscallFact{"bpf", D, ArgRule::none, kAllArches,
                "eBPF programs and maps reach into the kernel"},
    SyscallFact{"clone", Action::allow, ArgRule::clone_namespaces, kAllArches,
                "threads and processes, but no new namespaces"},
    SyscallFact{
        "clone3", Action::enosys, ArgRule::none, kAllArches,
        "its flags live in memory seccomp cannot read; ENOSYS makes libc fall back to clone"},
    SyscallFact{"connect", Action::notify, ArgRule::none, kAllArches,
                "the supervisor checks every destination"},
    SyscallFact{"delete_module", D, ArgRule::none, kAllArches, "kernel module loading"},
    SyscallFact{"finit_module", D, ArgRule::none, kAllArches, "kernel module loading"},
    SyscallFact{"fsconfig", D, ArgRule::none, kAllArches, "new mount API"},
    SyscallFact{"fsmount", D, ArgRule::none, kAllArches, "new mount API"},
    SyscallFact{"fsopen", D, ArgRule::none, kAllArches, "new mount API"},
    SyscallFact{"fspick", D, ArgRule::none, kAllArches, "new mount API"},
    SyscallFact{"init_module", D, ArgRule::none, kAllArches, "kernel module loading"},
    SyscallFact{"io_uring_enter", D, ArgRule::none, kAllArches,
                "io_uring performs connect/sendmsg without any syscall seccomp could see"},
    SyscallFact{"io_uring_register", D, ArgRule::none, kAllArches,
                "io_uring performs connect/sendmsg without any syscall seccomp could see"},
    SyscallFact{"io_uring_setup", D, ArgRule::none, kAllArches,
                "io_uring performs connect/sendmsg without any syscall seccomp could see"},
    SyscallFact{"kcmp", D, ArgRule::none, kAllArches,
                "compares other processes' files and memory (the supervisor's included)"},
    SyscallFact{"kexec_file_load", D, ArgRule::none, kAllArches, "replaces the running kernel"},
    SyscallFact{"kexec_load", D, ArgRule::none, kAllArches, "replaces the running kernel"},
    SyscallFact{"keyctl", D, ArgRule::none, kAllArches,
                "kernel keyrings are shared state and a long record of bugs"},
    SyscallFact{"mount", D, ArgRule::none, kAllArches, "could mount over the pinned resolv.conf"},
    SyscallFact{"mount_setattr", D, ArgRule::none, kAllArches,
                "could make the pinned resolv.conf writable"},
    SyscallFact{"move_mount", D, ArgRule::none, kAllArches, "new mount API"},
    SyscallFact{"open_by_handle_at", D, ArgRule::none, kAllArches,
                "opens files by handle, outside the mount namespace's view"},
    SyscallFact{"open_tree", D, ArgRule::none, kAllArches, "new mount API"},
    SyscallFact{"perf_event_open", D, ArgRule::none, kAllArches,
                "side channels and a long record of kernel bugs"},
    SyscallFact{"pidfd_getfd", D, ArgRule::none, kAllArches,
                "takes another process's descriptors, e.g. the supervisor's listener"},
    SyscallFact{"pivot_root", D, ArgRule::none, kAllArches, "changes the root mount"},
    SyscallFact{"process_vm_readv", D, ArgRule::none, kAllArches,
                "reads another process's memory (the supervisor's included)"},
    SyscallFact{"process_vm_writev", D, ArgRule::none, kAllArches,
                "writes another process's memory, e.g. a sockaddr after the supervisor checked it"},
    SyscallFact{"ptrace", D, ArgRule::none, kAllArches,
                "could rewrite a checked sockaddr or attach to the supervisor"},
    SyscallFact{"reboot", D, ArgRule::none, kAllArches, "not for a session"},
    SyscallFact{"request_key", D, ArgRule::none, kAllArches,
                "kernel keyrings are shared state and a long record of bugs"},
    SyscallFact{"seccomp", Action::allow, ArgRule::seccomp_listener, kAllArches,
                "stacking filters is fine; a new listener would take precedence over the jail's"},
    // sendmsg/sendmmsg carry the destination inside struct msghdr in memory, which seccomp
    // cannot read; notifying every call would route most writes through the supervisor. The
    // nftables set is the enforcement for these; the jail only explains connect/sendto. Their
    // MSG_FASTOPEN (a TCP connect inside a send, which Landlock's connect rule does not see)
    // is refused: a TCP connect goes through connect() or sendto(), both supervised.
    SyscallFact{"sendmmsg", Action::allow, ArgRule::no_fastopen_arg3, kAllArches,
                "destination is in memory; left to the nftables set; no TCP Fast Open"},
    SyscallFact{"sendmsg", Action::allow, ArgRule::no_fastopen_arg2, kAllArches,
                "destination is in memory; left to the nftables set; no TCP Fast Open"},
    SyscallFact{"sendto", Action::notify, ArgRule::destination_given, kAllArches,
                "a destination address is checked like connect"},
    SyscallFact{"setns", D, ArgRule::none, kAllArches, "could join the host's namespaces"},
    SyscallFact{"socket", Action::allow, ArgRule::socket_family, kAllArches,
                "families and types restricted by network.families"},
    SyscallFact{"socketpair", Action::allow, ArgRule::socketpair_unix, kAllArches,
                "only AF_UNIX pairs exist in practice"},
    SyscallFact{"swapoff", D, ArgRule::none, kAllArches, "not for a session"},
    SyscallFact{"swapon", D, ArgRule::none, kAllArches, "not for a session"},
    SyscallFact{"umount2", D, ArgRule::none, kAllArches, "could unmount the pinned resolv.conf"},
    SyscallFact{"unshare", D, ArgRule::none, kAllArches,
                "a new user or network namespace escapes the session's rules"},
    SyscallFact{"userfaultfd", D, ArgRule::none, kAllArches,
                "stalls kernel copies at will, the classic race-widening tool"},
};

// Update when adding a row, so that a merge that drops or duplicates one fails to build.
constexpr std::size_t kFactCount = 44;
static_assert(kFacts.size() == kFactCount, "syscall table changed: update kFactCount");

template <typename Row, std::size_t N>
constexpr bool strictly_sorted(const std::array<Row, N>& rows) {
  for (std::size_t i = 1; i < N; ++i)
    if (!(rows[i - 1].name < rows[i].name)) return false;
  return true;
}
static_assert(strictly_sorted(kFacts), "kFacts must be sorted by name, without duplicates");

// AF_PACKET is deliberately absent: it sees every frame on the interface. Sorted by name.
constexpr std::array kFamilies = {
    SocketFamily{"alg", AF_ALG, std::nullopt},
    SocketFamily{"bluetooth", AF_BLUETOOTH, std::nullopt},
    SocketFamily{"can", AF_CAN, std::nullopt},
    SocketFamily{"inet", AF_INET, std::nullopt},
    SocketFamily{"inet6", AF_INET6, std::nullopt},
    SocketFamily{"netlink_route", AF_NETLINK, NETLINK_ROUTE},
    SocketFamily{"tipc", AF_TIPC, std::nullopt},
    SocketFamily{"unix", AF_UNIX, std::nullopt},
    SocketFamily{"vsock", AF_VSOCK, std::nullopt},
    SocketFamily{"xdp", AF_XDP, std::nullopt},
};
static_assert(strictly_sorted(kFamilies), "kFamilies must be sorted by name, without duplicates");
static_assert(AF_MAX <= kFamilyLimit, "raise kFamilyLimit: the kernel knows more families");

template <typename Row, std::size_t N>
const Row* find_by_name(const std::array<Row, N>& rows, std::string_view name) {
  const auto it = std::lower_bound(rows.begin(), rows.end(), name,
                                   [](const Row& r, std::string_view n) { return r.name < n; });
  return it != rows.end() && it->name == name ? &*it : nullptr;
}

}  // namespace

std::span<const SyscallFact> syscall_facts() { return kFacts; }

const SyscallFact* find_syscall_fact(std::string_view name) { return find_by_name(kFacts, name); }

bool is_known_syscall(std::string_view name) {
  const std::string n(name);
  return seccomp_syscall_resolve_name_arch(SCMP_ARCH_X86_64, n.c_str()) >= 0 ||
         seccomp_syscall_resolve_name_arch(SCMP_ARCH_AARCH64, n.c_str()) >= 0;
}

std::span<const SocketFamily> socket_families() { return kFamilies; }

const SocketFamily* find_socket_family(std::string_view name) {
  return find_by_name(kFamilies, name);
}

}  // namespace jail
