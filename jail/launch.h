// Running PROGRAM under the jail: PATH lookup, clone, the child's confinement before execve, the
// supervisor, signal forwarding and the exit status (ARCHITECTURE.md, "jail: from exec to a
// confined process").
#pragma once

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "jail/policy.h"
#include "jail/supervisor.h"

namespace jail {

// Exit statuses of jail itself (the convention of env(1), timeout(1) and shells).
inline constexpr int kExitJailFailure = 125;   // jail could not set up or run the program
inline constexpr int kExitNotExecutable = 126;  // found but not executable (EACCES, ENOEXEC)
inline constexpr int kExitNotFound = 127;       // not found (ENOENT)

// Where PROGRAM resolved to, or the errno that decides 126/127.
struct Resolved {
  std::string path;  // empty on failure
  int err = 0;       // ENOENT, EACCES (not executable, a directory, not a regular file)
  bool is_dir = false;  // a name with '/' named a directory (for the message)
};

// execvp(3) semantics, evaluated in the parent: a name containing '/' is used as is; otherwise
// each element of `path_env` (":"-separated, an empty element meaning the current directory;
// when unset, confstr(_CS_PATH)) is tried in order. The first regular file with execute
// permission wins; a match that is not executable (or is a directory) is remembered as EACCES
// while the search goes on; nothing at all is ENOENT.
Resolved resolve_program(const std::string& name, const char* path_env);

// The exit status for an errno of resolve_program or execve: EACCES/ENOEXEC/EISDIR/ETXTBSY ->
// 126, ENOENT/ENOTDIR -> 127, anything else -> 125.
int exit_status_for_exec_errno(int err);

// The shell's status for a child that ended (waitid(2) si_code, si_status): the exit code, or
// 128+N for a signal death.
int exit_status_for_child(int code, int status);

// The one-line message for a failed lookup: "<name>: command not found" for a bare name that
// is nowhere on PATH, else "<name>: <strerror>" ("Is a directory" for a directory).
std::string lookup_message(const std::string& name, const Resolved& r);

struct LaunchOptions {
  Policy policy;
  std::vector<std::uint8_t> bpf;   // the policy's filter, precompiled; empty: built by run()
  std::string dns;                 // the sidecar's address (already validated)
  std::vector<std::string> argv;   // PROGRAM [ARGS...]
  SupervisorOptions supervisor;    // watch and log_fd
  bool verbose = false;            // the start line on stderr
  bool log_start_event = false;    // {"event":"start",...} to supervisor.log_fd (--log FILE)
};

// Runs the program and returns jail's exit status. Never throws; each failure of jail itself
// prints one line `jail: <what failed>: <why>` on stderr.
int run(const LaunchOptions& options);

}  // namespace jail
