// The supervisor's decision for one connect() or sendto() destination: pure, no syscalls, so a
// table of sockaddr bytes → verdict tests it. The bytes are the supervisor's one copy of the
// caller's sockaddr (untrusted: any length, any content).
//
// Rules, in order:
//   * addrlen outside [0, sizeof(sockaddr_storage)] → EINVAL, as the kernel's
//     move_addr_to_kernel() says (a "malformed" denial: watch mode does not lift it);
//   * a socket whose domain is neither AF_INET nor AF_INET6 (AF_UNIX, AF_NETLINK: families the
//     seccomp filter let socket() create, none of which reaches the network) → continue_unix:
//     the kernel runs the call itself and re-reads the caller's memory. An abstract AF_UNIX
//     address (sun_path[0] == 0, longer than the autobind form) is denied first with EPERM
//     unless network.unix_abstract is allow. The kernel re-runs the call from the registers
//     (seccomp_unotify(2), "Caveats regarding the use of CONTINUE"), so what was checked can
//     change before it runs:
//       - the address: a thread rewriting it reaches another unix socket; this check is best
//         effort and Landlock's abstract-unix scope (ABI >= 6) is what confines abstract names;
//       - the descriptor: a thread sharing the fd table can dup2() an AF_INET socket onto the
//         number and rewrite the address to an inet one in the window; the kernel then connects
//         that socket unchecked (tests/escape/net_fdswap.c does it). Nothing in the supervisor
//         can close this; jail/landlock.cpp does for TCP: with a supervisor, the jailed process
//         runs under Landlock (ABI >= 4) handling LANDLOCK_ACCESS_NET_CONNECT_TCP with no port
//         allowed, so it cannot connect a TCP socket itself (every permitted connect is made
//         by the supervisor, outside that domain). UDP is left to nftables, already the
//         enforcement for sendmsg(), which is not supervised.
//   * on an inet/inet6 socket the supervisor performs the call itself with the copy checked
//     here (allow) or fails it:
//       - shorter than the family's sockaddr (sockaddr_in 16, sockaddr_in6 24 as RFC 2133) or
//         than sa_family → EINVAL ("malformed"), as tcp_v4_connect()/udp_sendmsg() do;
//       - AF_UNSPEC: connect() means "dissolve the association" (connect(2)) → allow, nothing
//         is reached; but sendto() on an AF_INET socket reads sin_addr/sin_port of an
//         AF_UNSPEC address (udp_sendmsg() compatibility), so it is checked as AF_INET;
//       - any family other than AF_INET/AF_INET6/AF_UNSPEC → EAFNOSUPPORT;
//       - IPv4-mapped IPv6 (::ffff:a.b.c.d) is judged as the IPv4 address;
//       - an address in network.deny_networks → EACCES;
//       - port 53 or 853 (DNS, DNS over TLS; TCP or UDP alike) anywhere but the sidecar
//         (network.dns; 127.0.0.1 when unset) → EACCES.
//     EACCES is the address-policy errno: connect(2) documents it for a connection refused by
//     a local firewall rule, which is what this is.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "jail/policy.h"

namespace jail {

enum class NetSyscall : std::uint8_t { connect, sendto };

enum class Verdict : std::uint8_t {
  allow,          // the supervisor performs the call on a duplicate socket with the copy
  deny,           // the call fails with `error`
  continue_unix,  // SECCOMP_USER_NOTIF_FLAG_CONTINUE: a non-inet socket, the kernel runs it
};

struct DestinationRequest {
  NetSyscall syscall = NetSyscall::connect;
  int socket_domain = 0;  // SO_DOMAIN of the caller's socket; 0 if unknown (judged as inet)
  // The caller's addrlen as the kernel reads it (an int: the low 32 bits of the argument).
  std::int64_t addrlen = 0;
  // The copy: min(addrlen, sizeof(sockaddr_storage)) bytes when addrlen is in range.
  std::span<const std::uint8_t> addr;
};

struct Decision {
  Verdict verdict = Verdict::deny;
  int error = 0;           // errno when denied
  bool malformed = false;  // a denial the kernel would make too; watch mode keeps it
  std::string rule;        // why it was denied, for the log ("deny_networks 169.254.0.0/16")
  int family = -1;         // sa_family as copied; -1 when the copy is shorter than sa_family
  // For the log: "203.0.113.53:53", "[2001:db8::1]:53", a unix path, "@name" for an abstract
  // unix name (raw bytes: the log escapes them); empty when there is no address.
  std::string address;
};

// The sidecar's address as a policy states it (network.dns), defaulting to 127.0.0.1.
std::string sidecar_address(const Policy& policy);

Decision decide_destination(const DestinationRequest& request, const Policy& policy);

}  // namespace jail
