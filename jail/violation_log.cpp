#include "jail/violation_log.h"

#include <limits.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include "common/json.h"
#include "common/rfc3339.h"

namespace jail {

namespace {

// Everything but the three capped fields: keys, punctuation, time, pid, verdict, errno.
constexpr std::size_t kFixedPartBound = 256;
constexpr std::size_t kEscapedBytes = 6;  // \u00XX
static_assert(kFixedPartBound + kEscapedBytes * (kMaxLoggedExe + kMaxLoggedAddress +
                                                 kMaxLoggedRule + 3 * 3) <= PIPE_BUF,
              "a violation line must fit one atomic pipe write");

std::string capped(std::string_view text, std::size_t cap) {
  if (text.size() <= cap) return std::string(text);
  return std::string(text.substr(0, cap)) + "...";
}

std::string family_json(int family) {
  switch (family) {
    case -1:
      return "null";
    case AF_INET:
      return "\"inet\"";
    case AF_INET6:
      return "\"inet6\"";
    case AF_UNIX:
      return "\"unix\"";
    default:
      return std::to_string(family);
  }
}

}  // namespace

std::string errno_name(int error) {
  if (const char* name = strerrorname_np(error)) return name;
  return std::to_string(error);
}

std::string format_violation(const Violation& v) {
  std::string line = "{\"time\":\"" + egress::rfc3339_ms(v.time) + "\"";
  line += ",\"pid\":" + std::to_string(v.pid);
  line += ",\"exe\":" + (v.exe ? egress::json_string(capped(*v.exe, kMaxLoggedExe)) : "null");
  line += ",\"syscall\":\"";
  line += v.syscall == NetSyscall::connect ? "connect" : "sendto";
  line += "\",\"family\":" + family_json(v.family);
  line += ",\"address\":" + egress::json_string(capped(v.address, kMaxLoggedAddress));
  line += ",\"verdict\":\"";
  line += v.watch ? "watch" : "deny";
  line += "\",\"rule\":" + egress::json_string(capped(v.rule, kMaxLoggedRule));
  line += ",\"errno\":" + egress::json_string(errno_name(v.error));
  line += "}\n";
  return line;
}

void ViolationLog::write(const Violation& v) {
  const std::string line = format_violation(v);
  ssize_t n;
  do {
    n = ::write(fd_, line.data(), line.size());
  } while (n < 0 && errno == EINTR);
  const int saved = errno;
  if (n == static_cast<ssize_t>(line.size())) return;
  if (!failed_.exchange(true)) {
    std::fprintf(stderr, "jail: writing the violation log: %s\n",
                 n < 0 ? std::strerror(saved) : "short write");
  }
}

}  // namespace jail
