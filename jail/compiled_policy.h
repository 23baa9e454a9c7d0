// A policy compiled ahead of time. `jail --compile-policy P` writes P's file name + ".compiled"
// next to it: the effective Policy, its seccomp filter for this architecture, the build ID of
// the jail that made it, the policies directory, and a copy of every file of P's extends chain.
// A later `jail --policy P` uses it instead of parsing YAML and building the filter, but only
// when all of that still holds: this binary's build ID, the architecture, the policies
// directory, the named file's path, and each file of the chain byte for byte. Otherwise jail
// loads the YAML as it always does: a stale or damaged compiled file costs time, never policy.
//
// The compiled file is trusted like the YAML beside it, so it must not be writable by anyone
// who cannot write the policy file: its owner is root or the policy file's owner, it is
// group-writable only if the policy file is and has the same group, world-writable only if
// the policy file is, and it has no POSIX ACL.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "jail/policy.h"
#include "jail/syscalls.h"

namespace jail {

// Caps on what a compiled file may hold; a file over them is rejected, not truncated.
inline constexpr std::size_t kMaxCompiledBytes = 1u << 20;  // policies are a few KiB
inline constexpr std::size_t kMaxFilterInsns = 4096;        // BPF_MAXINSNS, linux/bpf_common.h

// The contents of a compiled file. decode() checks that it is well formed and that its values
// are ones this jail accepts (socket families, errno, modes; syscall names by their form only,
// see compiled_policy.cpp); nothing in it has been compared with the machine.
struct PolicyImage {
  std::string build_id;            // NT_GNU_BUILD_ID of the jail that wrote it (raw bytes)
  Arch arch = kX86_64;             // the filter's architecture
  std::string policies_dir;        // --policies-dir when it was compiled
  std::vector<std::string> texts;  // the files of policy.files, as they were read
  Policy policy;
  std::vector<std::uint8_t> bpf;   // Filter::bpf() for `arch`
};

// "P.compiled" for the policy file P.
std::string compiled_path(const std::string& policy_file);

// This executable's build ID (raw bytes), or empty when it was linked without one; a jail
// without a build ID neither writes nor uses compiled files.
std::string own_build_id();

std::vector<std::uint8_t> encode(const PolicyImage& image);

// Parses bytes from a file: the image, or why it is not one. Never throws on bad data.
std::variant<PolicyImage, std::string> decode(std::span<const std::uint8_t> bytes);

// Loads and compiles `ref` (a NAME or PATH, as --policy takes it) and writes its compiled file
// atomically (a temporary file renamed over it). Returns the path written. Throws
// egress::ConfigError for a bad policy, std::runtime_error for a failed write.
std::string write_compiled(const std::string& ref, const std::string& policies_dir);

// What load_compiled found for a policy file.
struct Precompiled {
  std::string path;                // the compiled file it looked at
  std::optional<PolicyImage> image;  // set when it may be used
  std::string why_not;             // when not: the reason, "" if there is no compiled file
};

// The compiled file of `policy_file` (a path from policy_path), if it exists and still matches
// everything listed at the top of this header. Never throws.
Precompiled load_compiled(const std::string& policy_file, const std::string& policies_dir);

}  // namespace jail
