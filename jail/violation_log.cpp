#include "jail/violation_log.h"

#include <limits.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include "common/rfc3339.h"

namespace jail {

namespace {

// Everything but the three capped fields: keys, punctuation, time, pid, verdict, errno.
constexpr std::size_t kFixedPartBound = 256;
constexpr std::size_t kEscapedBytes = 6;  // \u00XX
static_assert(kFixedPartBound + kEscapedBytes * (kMaxLoggedExe + kMaxLoggedAddress +
                                                 kMaxLoggedRule + 3 * 3) <= PIPE_BUF,
              "a violation line must fit one atomic pipe write");

// Length of the well-formed UTF-8 sequence at the start of `s` (RFC 3629 section 4: no
// overlongs, no surrogates, nothing above U+10FFFF), or 0.
std::size_t utf8_sequence(std::string_view s) {
  const auto b = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
  const auto cont = [&](std::size_t i) { return i < s.size() && (b(i) & 0xc0) == 0x80; };
  const unsigned char c = b(0);
  if (c >= 0xc2 && c <= 0xdf) return cont(1) ? 2 : 0;
  if (c >= 0xe0 && c <= 0xef) {
    if (!cont(1) || !cont(2)) return 0;
    if (c == 0xe0 && b(1) < 0xa0) return 0;   // overlong
    if (c == 0xed && b(1) >= 0xa0) return 0;  // UTF-16 surrogates
    return 3;
  }
  if (c >= 0xf0 && c <= 0xf4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    if (c == 0xf0 && b(1) < 0x90) return 0;   // overlong
    if (c == 0xf4 && b(1) >= 0x90) return 0;  // above U+10FFFF
    return 4;
  }
  return 0;
}

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

std::string json_string(std::string_view text) {
  std::string out = "\"";
  std::size_t i = 0;
  while (i < text.size()) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
      ++i;
    } else if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
      ++i;
    } else if (const std::size_t n = c >= 0x80 ? utf8_sequence(text.substr(i)) : 0; n > 0) {
      out.append(text.substr(i, n));
      i += n;
    } else {
      // A control character, DEL, or a byte that is not part of valid UTF-8.
      char esc[8];
      std::snprintf(esc, sizeof esc, "\\u%04x", static_cast<unsigned>(c));
      out += esc;
      ++i;
    }
  }
  return out + "\"";
}

std::string errno_name(int error) {
  if (const char* name = strerrorname_np(error)) return name;
  return std::to_string(error);
}

std::string format_violation(const Violation& v) {
  std::string line = "{\"time\":\"" + egress::rfc3339_ms(v.time) + "\"";
  line += ",\"pid\":" + std::to_string(v.pid);
  line += ",\"exe\":" + (v.exe ? json_string(capped(*v.exe, kMaxLoggedExe)) : "null");
  line += ",\"syscall\":\"";
  line += v.syscall == NetSyscall::connect ? "connect" : "sendto";
  line += "\",\"family\":" + family_json(v.family);
  line += ",\"address\":" + json_string(capped(v.address, kMaxLoggedAddress));
  line += ",\"verdict\":\"";
  line += v.watch ? "watch" : "deny";
  line += "\",\"rule\":" + json_string(capped(v.rule, kMaxLoggedRule));
  line += ",\"errno\":" + json_string(errno_name(v.error));
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
