// The supervisor's violation log: one JSON object per line, one line per denied (or, in watch
// mode, would-be denied) connect()/sendto():
//   {"time":"2026-12-01T13:03:18.123Z","pid":1234,"exe":"/usr/bin/dig","syscall":"connect",
//    "family":"inet","address":"203.0.113.53:53","verdict":"deny",
//    "rule":"dns only via the sidecar 127.0.0.1","errno":"EACCES"}
// "exe" is null when /proc/PID/exe cannot be read; "family" is "inet", "inet6", "unix", the
// number for other families, or null when the sockaddr was shorter than sa_family.
// exe and address are the target's bytes: control characters and bytes that are not UTF-8 are
// written as \u00XX, and both are truncated (marked "...") so a line stays within PIPE_BUF.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "jail/destination.h"

namespace jail {

struct Violation {
  std::chrono::system_clock::time_point time;
  pid_t pid = 0;
  std::optional<std::string> exe;
  NetSyscall syscall = NetSyscall::connect;
  int family = -1;
  std::string address;
  bool watch = false;  // verdict "watch" (allowed in learn mode) instead of "deny"
  std::string rule;
  int error = 0;
};

// Caps on the untrusted fields, in bytes before escaping (each byte escapes to at most 6).
inline constexpr std::size_t kMaxLoggedExe = 256;
inline constexpr std::size_t kMaxLoggedAddress = 110;  // sun_path is 108
inline constexpr std::size_t kMaxLoggedRule = 80;      // ours, but a CIDR or number inside

// One line, '\n'-terminated.
std::string format_violation(const Violation& v);

// "EACCES" for EACCES; the number for an errno without a name.
std::string errno_name(int error);

// Writes lines to a descriptor it does not own. Thread-safe: each line is one write(2), and a
// line is at most PIPE_BUF bytes, so lines from several threads do not interleave on a pipe or
// an O_APPEND file.
class ViolationLog {
 public:
  explicit ViolationLog(int fd) : fd_(fd) {}
  void write(const Violation& v);

 private:
  int fd_;
  std::atomic<bool> failed_{false};  // a write error is reported once, on stderr
};

}  // namespace jail
