#include "jail/destination.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <array>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <optional>

namespace jail {

namespace {

constexpr std::int64_t kMaxAddrlen = sizeof(sockaddr_storage);  // move_addr_to_kernel()
constexpr std::size_t kFamilyBytes = sizeof(sa_family_t);
// SIN6_LEN_RFC2133: the kernel's inet6 connect accepts a sockaddr_in6 without sin6_scope_id.
constexpr std::size_t kMinSockaddrIn6 = offsetof(sockaddr_in6, sin6_scope_id);
static_assert(kMinSockaddrIn6 == 24);
constexpr std::uint16_t kPortDns = 53;       // RFC 1035
constexpr std::uint16_t kPortDnsTls = 853;   // RFC 7858
constexpr const char* kDefaultSidecar = "127.0.0.1";

// An inet destination in the form the rules compare: IPv4-mapped IPv6 is folded to IPv4.
struct InetAddr {
  std::uint8_t version = 4;           // 4 or 6, as egress::Cidr counts
  std::array<std::uint8_t, 16> bytes{};  // IPv4 in the first 4
  std::uint16_t port = 0;             // host order
};

bool v4_mapped(const std::array<std::uint8_t, 16>& a) {
  static constexpr std::uint8_t kPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return std::memcmp(a.data(), kPrefix, sizeof kPrefix) == 0;
}

InetAddr fold_mapped(InetAddr a) {
  if (a.version == 6 && v4_mapped(a.bytes)) {
    std::array<std::uint8_t, 16> v4{};
    std::memcpy(v4.data(), a.bytes.data() + 12, 4);
    a.bytes = v4;
    a.version = 4;
  }
  return a;
}

std::optional<InetAddr> parse_ip(const std::string& text) {
  InetAddr a;
  if (inet_pton(AF_INET, text.c_str(), a.bytes.data()) == 1) return a;
  a.version = 6;
  if (inet_pton(AF_INET6, text.c_str(), a.bytes.data()) == 1) return fold_mapped(a);
  return std::nullopt;
}

std::string ip_text(int af, const std::uint8_t* bytes) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (!inet_ntop(af, bytes, buf, sizeof buf)) return "?";
  return buf;
}

Decision deny(Decision d, int error, std::string rule, bool malformed = false) {
  d.verdict = Verdict::deny;
  d.error = error;
  d.rule = std::move(rule);
  d.malformed = malformed;
  return d;
}

Decision judge_inet(Decision d, InetAddr as_written, const Policy& policy) {
  const InetAddr a = fold_mapped(as_written);
  const std::span<const std::uint8_t> bytes(a.bytes.data(), a.version == 4 ? 4 : 16);
  for (const egress::Cidr& net : policy.network.deny_networks) {
    if (net.family == a.version && net.contains(a.version, bytes))
      return deny(std::move(d), EACCES, "deny_networks " + net.to_string());
  }
  if (a.port == kPortDns || a.port == kPortDnsTls) {
    const std::string sidecar = sidecar_address(policy);
    const std::optional<InetAddr> s = parse_ip(sidecar);
    const bool to_sidecar = s && s->version == a.version &&
                            std::memcmp(s->bytes.data(), a.bytes.data(), bytes.size()) == 0;
    if (!to_sidecar) return deny(std::move(d), EACCES, "dns only via the sidecar " + sidecar);
  }
  d.verdict = Verdict::allow;
  return d;
}

Decision decide_unix_socket(Decision d, std::span<const std::uint8_t> addr, const Policy& policy) {
  d.verdict = Verdict::continue_unix;
  if (d.family != AF_UNIX || addr.size() <= kFamilyBytes) return d;  // the kernel rejects it
  const std::size_t path_bytes = std::min(addr.size() - kFamilyBytes, sizeof(sockaddr_un::sun_path));
  const std::span<const std::uint8_t> path = addr.subspan(kFamilyBytes, path_bytes);
  if (path[0] == 0) {
    // unix(7): an abstract name is every byte after the leading NUL, up to addrlen.
    d.address = "@" + std::string(path.begin() + 1, path.end());
    if (!policy.network.unix_abstract_allowed)
      return deny(std::move(d), EPERM, "abstract unix sockets denied");
    return d;
  }
  std::size_t n = 0;
  while (n < path.size() && path[n] != 0) ++n;
  d.address.assign(path.begin(), path.begin() + static_cast<std::ptrdiff_t>(n));
  return d;
}

}  // namespace

std::string sidecar_address(const Policy& policy) {
  return policy.network.dns.empty() ? kDefaultSidecar : policy.network.dns;
}

Decision decide_destination(const DestinationRequest& request, const Policy& policy) {
  Decision d;
  if (request.addrlen < 0 || request.addrlen > kMaxAddrlen ||
      request.addr.size() != static_cast<std::size_t>(request.addrlen)) {
    return deny(std::move(d), EINVAL, "malformed sockaddr: length " +
                                          std::to_string(request.addrlen), true);
  }
  const std::span<const std::uint8_t> addr = request.addr;
  if (addr.size() >= kFamilyBytes) {
    sa_family_t family = 0;
    std::memcpy(&family, addr.data(), sizeof family);
    d.family = family;
  }

  if (request.socket_domain != 0 && request.socket_domain != AF_INET &&
      request.socket_domain != AF_INET6) {
    return decide_unix_socket(std::move(d), addr, policy);
  }

  // sendto() with addrlen 0 sends to the connected peer (TCP) or fails with EINVAL (UDP): the
  // kernel reads no address, so performing it with the empty copy is exact.
  if (request.syscall == NetSyscall::sendto && addr.empty()) {
    d.verdict = Verdict::allow;
    return d;
  }
  if (d.family < 0) return deny(std::move(d), EINVAL, "malformed sockaddr: no family", true);

  int family = d.family;
  if (family == AF_UNSPEC) {
    if (request.syscall == NetSyscall::connect || request.socket_domain == AF_INET6) {
      d.verdict = Verdict::allow;  // disconnect (connect) / no destination (udpv6_sendmsg)
      return d;
    }
    family = AF_INET;  // udp_sendmsg() takes sin_addr/sin_port of an AF_UNSPEC address
  }

  if (family == AF_INET) {
    if (addr.size() < sizeof(sockaddr_in))
      return deny(std::move(d), EINVAL, "malformed sockaddr: short sockaddr_in", true);
    sockaddr_in sin{};
    std::memcpy(&sin, addr.data(), sizeof sin);
    InetAddr a;
    std::memcpy(a.bytes.data(), &sin.sin_addr, 4);
    a.port = ntohs(sin.sin_port);
    d.address = ip_text(AF_INET, a.bytes.data()) + ":" + std::to_string(a.port);
    return judge_inet(std::move(d), a, policy);
  }
  if (family == AF_INET6) {
    if (addr.size() < kMinSockaddrIn6)
      return deny(std::move(d), EINVAL, "malformed sockaddr: short sockaddr_in6", true);
    sockaddr_in6 sin6{};
    std::memcpy(&sin6, addr.data(), kMinSockaddrIn6);
    InetAddr a;
    a.version = 6;
    std::memcpy(a.bytes.data(), &sin6.sin6_addr, 16);
    a.port = ntohs(sin6.sin6_port);
    d.address = "[" + ip_text(AF_INET6, a.bytes.data()) + "]:" + std::to_string(a.port);
    return judge_inet(std::move(d), a, policy);
  }
  if (family == AF_UNIX) {
    // Never CONTINUE on an inet socket: the kernel would re-read an address that may have
    // become AF_INET meanwhile. The kernel refuses this pairing anyway.
    Decision u = decide_unix_socket(std::move(d), addr, policy);  // for its address text
    return deny(std::move(u), EAFNOSUPPORT, "unix address on an inet socket");
  }
  return deny(std::move(d), EAFNOSUPPORT, "address family " + std::to_string(family));
}

}  // namespace jail
