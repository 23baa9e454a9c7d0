// The jail's syscall facts: the one table that the policy loader, the seccomp filter and (later)
// the supervisor's name lookup derive from, plus the socket families a policy may name.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace jail {

// Architectures the jail builds filters for. Bits, so a table row can name several.
enum Arch : std::uint8_t {
  kX86_64 = 1u << 0,
  kAarch64 = 1u << 1,
};
inline constexpr std::uint8_t kAllArches = kX86_64 | kAarch64;

// The architecture this jail runs on: the only one whose filter it loads.
#if defined(__x86_64__)
inline constexpr Arch kHostArch = kX86_64;
#elif defined(__aarch64__)
inline constexpr Arch kHostArch = kAarch64;
#else
#error "jail supports x86_64 and aarch64"
#endif

// What the `default` policy does with the syscall.
enum class Action : std::uint8_t {
  allow,   // listed for an argument rule or for the record; no blanket decision
  deny,    // denied in `default` (policies/jail/default.yaml mirrors these; a test checks it)
  enosys,  // always ENOSYS, in every policy, so that libc falls back to an older call
  notify,  // sent to the supervisor (SECCOMP_RET_USER_NOTIF), subject to `rule`
};

// Argument checks the filter applies whenever the syscall itself is permitted.
enum class ArgRule : std::uint8_t {
  none,
  socket_family,      // socket(): family allowlist, (type & 0xf) not RAW/PACKET, netlink route only
  socketpair_unix,    // socketpair(): AF_UNIX only
  destination_given,  // sendto(): notify only when dest_addr (arg 4) is non-NULL
  clone_namespaces,   // clone(): no CLONE_NEW* flag in arg 0
  seccomp_listener,   // seccomp(): no SECCOMP_FILTER_FLAG_NEW_LISTENER in arg 1
  no_fastopen_arg2,   // sendmsg(): no MSG_FASTOPEN in the flags (arg 2)
  no_fastopen_arg3,   // sendmmsg(): no MSG_FASTOPEN in the flags (arg 3)
};

struct SyscallFact {
  std::string_view name;
  Action action;
  ArgRule rule;
  std::uint8_t arches;   // Arch bits where the syscall exists
  std::string_view why;  // shown by --dump and in denial logs
};

// Sorted by name, no duplicates (checked at compile time and by a unit test).
std::span<const SyscallFact> syscall_facts();
const SyscallFact* find_syscall_fact(std::string_view name);

// True if libseccomp knows `name` as a syscall on x86_64 or aarch64.
bool is_known_syscall(std::string_view name);

// A socket family a policy may allow. `protocol` restricts the third argument of socket()
// (netlink_route = AF_NETLINK with NETLINK_ROUTE only).
struct SocketFamily {
  std::string_view name;
  int family;
  std::optional<int> protocol;
};

// Sorted by name.
std::span<const SocketFamily> socket_families();
const SocketFamily* find_socket_family(std::string_view name);

// Families up to this value are denied one by one; anything at or above it in the full 64-bit
// argument is denied by one range compare (the kernel's AF_MAX on 6.x is 46, AF_MCTP + 1).
inline constexpr int kFamilyLimit = 64;

}  // namespace jail
