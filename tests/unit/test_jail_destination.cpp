// The supervisor's pure parts: the destination decision (jail/destination.h) as a table of
// sockaddr bytes → verdict, and the violation log's JSON lines (jail/violation_log.h).
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <limits.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "common/cidr.h"
#include "jail/destination.h"
#include "jail/policy.h"
#include "jail/violation_log.h"

namespace {

using Bytes = std::vector<std::uint8_t>;

template <typename T>
Bytes bytes_of(const T& value, std::size_t len = sizeof(T)) {
  Bytes out(sizeof(T));
  std::memcpy(out.data(), &value, sizeof(T));
  out.resize(len);  // shorter: a truncated sockaddr
  return out;
}

Bytes in4(const char* ip, std::uint16_t port, sa_family_t family = AF_INET,
          std::size_t len = sizeof(sockaddr_in)) {
  sockaddr_in s{};
  s.sin_family = family;
  s.sin_port = htons(port);
  REQUIRE(inet_pton(AF_INET, ip, &s.sin_addr) == 1);
  return bytes_of(s, len);
}

Bytes in6(const char* ip, std::uint16_t port, std::size_t len = sizeof(sockaddr_in6)) {
  sockaddr_in6 s{};
  s.sin6_family = AF_INET6;
  s.sin6_port = htons(port);
  REQUIRE(inet_pton(AF_INET6, ip, &s.sin6_addr) == 1);
  return bytes_of(s, len);
}

// A sockaddr_un of family + `path` bytes (an abstract name starts with '\0').
Bytes un(const std::string& path) {
  Bytes out(sizeof(sa_family_t) + path.size());
  const sa_family_t family = AF_UNIX;
  std::memcpy(out.data(), &family, sizeof family);
  std::memcpy(out.data() + sizeof family, path.data(), path.size());
  return out;
}

Bytes family_only(sa_family_t family, std::size_t len) {
  Bytes out(len, 0x5a);
  if (len >= sizeof family) std::memcpy(out.data(), &family, sizeof family);
  return out;
}

jail::Policy test_policy() {
  jail::Policy p;
  for (const char* net : {"169.254.0.0/16", "2001:db8:dead::/48"}) {
    const egress::CidrParse c = egress::parse_cidr(net);
    REQUIRE(c.cidr);
    p.network.deny_networks.push_back(*c.cidr);
  }
  return p;  // dns unset: the sidecar is 127.0.0.1
}

struct Row {
  const char* name;
  jail::NetSyscall syscall;
  int domain;
  Bytes addr;
  jail::Verdict verdict;
  int error;
  const char* rule;     // nullptr: not checked
  const char* address;  // nullptr: not checked
};

constexpr auto kConnect = jail::NetSyscall::connect;
constexpr auto kSendto = jail::NetSyscall::sendto;
constexpr auto kAllow = jail::Verdict::allow;
constexpr auto kDeny = jail::Verdict::deny;
constexpr auto kContinue = jail::Verdict::continue_unix;
constexpr const char* kDnsRule = "dns only via the sidecar 127.0.0.1";

jail::Decision decide(jail::NetSyscall s, int domain, const Bytes& addr, const jail::Policy& p) {
  return jail::decide_destination(
      jail::DestinationRequest{s, domain, static_cast<std::int64_t>(addr.size()), addr}, p);
}

}  // namespace

TEST_CASE("jail destination: the decision table") {
  const jail::Policy policy = test_policy();
  const Row rows[] = {
      {"https anywhere", kConnect, AF_INET, in4("203.0.113.10", 443), kAllow, 0, nullptr,
       nullptr},
      {"dns to the sidecar", kConnect, AF_INET, in4("127.0.0.1", 53), kAllow, 0, nullptr, nullptr},
      {"dns to a foreign resolver", kConnect, AF_INET, in4("203.0.113.53", 53), kDeny, EACCES,
       kDnsRule, "203.0.113.53:53"},
      {"dns over tls elsewhere", kConnect, AF_INET, in4("203.0.113.53", 853), kDeny, EACCES,
       kDnsRule, "203.0.113.53:853"},
      {"dns to another loopback address", kConnect, AF_INET, in4("127.0.0.53", 53), kDeny, EACCES,
       kDnsRule, nullptr},
      {"dns to 0.0.0.0 (the kernel means the local host)", kConnect, AF_INET, in4("0.0.0.0", 53),
       kDeny, EACCES, kDnsRule, nullptr},
      {"mapped foreign resolver", kConnect, AF_INET6, in6("::ffff:203.0.113.53", 53), kDeny,
       EACCES, kDnsRule, "[::ffff:203.0.113.53]:53"},
      {"mapped sidecar", kConnect, AF_INET6, in6("::ffff:127.0.0.1", 53), kAllow, 0, nullptr,
       nullptr},
      {"ipv6 resolver", kConnect, AF_INET6, in6("2001:db8::1", 53), kDeny, EACCES, kDnsRule,
       "[2001:db8::1]:53"},
      {"ipv6 web", kConnect, AF_INET6, in6("2001:db8::1", 80), kAllow, 0, nullptr, nullptr},
      {"ipv6 without scope id (RFC 2133 length)", kConnect, AF_INET6, in6("2001:db8::1", 80, 24),
       kAllow, 0, nullptr, nullptr},
      {"metadata service", kConnect, AF_INET, in4("169.254.169.254", 80), kDeny, EACCES,
       "deny_networks 169.254.0.0/16", "169.254.169.254:80"},
      {"mapped metadata service", kConnect, AF_INET6, in6("::ffff:169.254.169.254", 80), kDeny,
       EACCES, "deny_networks 169.254.0.0/16", nullptr},
      {"denied ipv6 network", kConnect, AF_INET6, in6("2001:db8:dead::1", 80), kDeny, EACCES,
       "deny_networks 2001:db8:dead::/48", nullptr},
      {"sendto a foreign resolver", kSendto, AF_INET, in4("203.0.113.53", 53), kDeny, EACCES,
       kDnsRule, nullptr},
      {"sendto with an empty address", kSendto, AF_INET, Bytes{}, kAllow, 0, nullptr, nullptr},
      {"connect AF_UNSPEC dissolves", kConnect, AF_INET, in4("203.0.113.53", 53, AF_UNSPEC),
       kAllow, 0, nullptr, nullptr},
      {"sendto AF_UNSPEC on inet is read as inet", kSendto, AF_INET,
       in4("203.0.113.53", 53, AF_UNSPEC), kDeny, EACCES, kDnsRule, "203.0.113.53:53"},
      {"sendto AF_UNSPEC on inet6 has no destination", kSendto, AF_INET6,
       in4("203.0.113.53", 53, AF_UNSPEC), kAllow, 0, nullptr, nullptr},
      {"short sockaddr_in", kConnect, AF_INET, in4("127.0.0.1", 80, AF_INET, 15), kDeny, EINVAL,
       "malformed sockaddr: short sockaddr_in", nullptr},
      {"short sockaddr_in6", kConnect, AF_INET6, in6("::1", 80, 23), kDeny, EINVAL,
       "malformed sockaddr: short sockaddr_in6", nullptr},
      {"one byte", kConnect, AF_INET, Bytes{2}, kDeny, EINVAL, "malformed sockaddr: no family",
       nullptr},
      {"empty connect", kConnect, AF_INET, Bytes{}, kDeny, EINVAL, nullptr, nullptr},
      {"family 0xffff", kConnect, AF_INET, family_only(0xffff, 16), kDeny, EAFNOSUPPORT,
       "address family 65535", nullptr},
      {"unix address on an inet socket", kConnect, AF_INET, un("/tmp/x"), kDeny, EAFNOSUPPORT,
       "unix address on an inet socket", "/tmp/x"},
      {"unknown domain is judged as inet", kConnect, 0, un("/tmp/x"), kDeny, EAFNOSUPPORT, nullptr,
       nullptr},
      {"unix pathname", kConnect, AF_UNIX, un(std::string("/run/a.sock\0junk", 16)), kContinue, 0,
       nullptr, "/run/a.sock"},
      {"unix abstract", kConnect, AF_UNIX, un(std::string("\0egress", 7)), kDeny, EPERM,
       "abstract unix sockets denied", nullptr},
      {"unix autobind form", kConnect, AF_UNIX, un(""), kContinue, 0, nullptr, nullptr},
      {"inet bytes on a unix socket (the kernel refuses)", kConnect, AF_UNIX,
       in4("203.0.113.53", 53), kContinue, 0, nullptr, nullptr},
      {"unix sendto abstract", kSendto, AF_UNIX, un(std::string("\0x", 2)), kDeny, EPERM, nullptr,
       nullptr},
      {"netlink", kConnect, AF_NETLINK, family_only(AF_NETLINK, 12), kContinue, 0, nullptr,
       nullptr},
  };
  for (const Row& row : rows) {
    CAPTURE(row.name);
    const jail::Decision d = decide(row.syscall, row.domain, row.addr, policy);
    CHECK(d.verdict == row.verdict);
    CHECK(d.error == row.error);
    if (row.rule) CHECK(d.rule == row.rule);
    if (row.address) CHECK(d.address == row.address);
    if (row.verdict != kDeny) CHECK(d.rule.empty());
  }
}

TEST_CASE("jail destination: lengths the kernel refuses") {
  const jail::Policy policy = test_policy();
  const Bytes addr = in4("127.0.0.1", 80);
  for (const std::int64_t len : {std::int64_t{-1}, std::int64_t{INT32_MIN}, std::int64_t{129},
                                 std::int64_t{1000}}) {
    CAPTURE(len);
    const jail::Decision d =
        jail::decide_destination(jail::DestinationRequest{kConnect, AF_INET, len, {}}, policy);
    CHECK(d.verdict == kDeny);
    CHECK(d.error == EINVAL);
    CHECK(d.malformed);
  }
  // A copy that does not match the length is refused too (a supervisor bug, not allowed).
  const jail::Decision d = jail::decide_destination(
      jail::DestinationRequest{kConnect, AF_INET, 20, addr}, policy);
  CHECK(d.verdict == kDeny);
  CHECK(d.error == EINVAL);
  // A full sockaddr_storage is a valid length.
  Bytes big(sizeof(sockaddr_storage), 0);
  std::memcpy(big.data(), addr.data(), addr.size());
  CHECK(decide(kConnect, AF_INET, big, policy).verdict == kAllow);
}

TEST_CASE("jail destination: the sidecar from the policy") {
  jail::Policy policy = test_policy();
  policy.network.dns = "10.0.0.53";
  CHECK(jail::sidecar_address(policy) == "10.0.0.53");
  const jail::Decision loop = decide(kConnect, AF_INET, in4("127.0.0.1", 53), policy);
  CHECK(loop.verdict == kDeny);
  CHECK(loop.rule == "dns only via the sidecar 10.0.0.53");
  CHECK(decide(kConnect, AF_INET, in4("10.0.0.53", 853), policy).verdict == kAllow);
  CHECK(decide(kConnect, AF_INET6, in6("::ffff:10.0.0.53", 53), policy).verdict == kAllow);

  policy.network.dns = "fd00::53";
  CHECK(decide(kConnect, AF_INET6, in6("fd00::53", 53), policy).verdict == kAllow);
  CHECK(decide(kConnect, AF_INET6, in6("fd00::54", 53), policy).verdict == kDeny);
  CHECK(decide(kConnect, AF_INET, in4("10.0.0.53", 53), policy).verdict == kDeny);

  policy.network.unix_abstract_allowed = true;
  CHECK(decide(kConnect, AF_UNIX, un(std::string("\0egress", 7)), policy).verdict == kContinue);
}

TEST_CASE("jail destination: the family and the raw abstract name") {
  const jail::Policy policy = test_policy();
  const jail::Decision d = decide(kConnect, AF_UNIX, un(std::string("\0a\nb\xff", 5)), policy);
  CHECK(d.family == AF_UNIX);
  CHECK(d.address == std::string("@a\nb\xff"));
  CHECK(decide(kConnect, AF_INET, Bytes{1}, policy).family == -1);
  CHECK(decide(kConnect, AF_INET, family_only(0xffff, 16), policy).family == 0xffff);
}

TEST_CASE("jail violation log: one line per violation") {
  jail::Violation v;
  v.time = std::chrono::system_clock::time_point(std::chrono::milliseconds(1764594198123));
  v.pid = 4242;
  v.exe = "/usr/bin/dig";
  v.syscall = jail::NetSyscall::connect;
  v.family = AF_INET;
  v.address = "203.0.113.53:53";
  v.rule = "dns only via the sidecar 127.0.0.1";
  v.error = EACCES;
  CHECK(jail::format_violation(v) ==
        "{\"time\":\"2025-12-01T13:03:18.123Z\",\"pid\":4242,\"exe\":\"/usr/bin/dig\","
        "\"syscall\":\"connect\",\"family\":\"inet\",\"address\":\"203.0.113.53:53\","
        "\"verdict\":\"deny\",\"rule\":\"dns only via the sidecar 127.0.0.1\","
        "\"errno\":\"EACCES\"}\n");

  v.exe.reset();
  v.watch = true;
  v.syscall = jail::NetSyscall::sendto;
  v.family = 0xffff;
  v.error = EAFNOSUPPORT;
  const std::string line = jail::format_violation(v);
  CHECK(line.find("\"exe\":null") != std::string::npos);
  CHECK(line.find("\"syscall\":\"sendto\"") != std::string::npos);
  CHECK(line.find("\"family\":65535") != std::string::npos);
  CHECK(line.find("\"verdict\":\"watch\"") != std::string::npos);
  CHECK(line.find("\"errno\":\"EAFNOSUPPORT\"") != std::string::npos);
  v.family = -1;
  CHECK(jail::format_violation(v).find("\"family\":null") != std::string::npos);
  v.family = AF_INET6;
  CHECK(jail::format_violation(v).find("\"family\":\"inet6\"") != std::string::npos);
  v.family = AF_UNIX;
  CHECK(jail::format_violation(v).find("\"family\":\"unix\"") != std::string::npos);
}

TEST_CASE("jail violation log: hostile fields stay one bounded line") {
  jail::Violation v;
  v.exe = std::string(4096, '\x01');        // PATH_MAX of control bytes
  v.address = "@" + std::string(200, '\n');  // an abstract name of newlines
  v.rule = std::string(500, 'r');
  const std::string line = jail::format_violation(v);
  CHECK(line.size() <= PIPE_BUF);
  CHECK(line.back() == '\n');
  CHECK(line.find('\n') == line.size() - 1);
  CHECK(line.find("...") != std::string::npos);
}
