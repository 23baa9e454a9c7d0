#include "jail/privs.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "common/unique_fd.h"

namespace jail {

namespace {

int capget_raw(__user_cap_header_struct* h, __user_cap_data_struct* d) {
  return static_cast<int>(syscall(SYS_capget, h, d));
}
int capset_raw(__user_cap_header_struct* h, const __user_cap_data_struct* d) {
  return static_cast<int>(syscall(SYS_capset, h, d));
}

std::string read_small_file(const char* path) {
  egress::UniqueFd fd(open(path, O_RDONLY | O_CLOEXEC));
  if (!fd) return {};
  std::string out;
  char buf[4096];
  for (;;) {
    const ssize_t n = read(fd.get(), buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

// The hex value of a "Name:\t0000..." line of /proc/self/status; nullopt if absent.
std::optional<std::uint64_t> status_mask(const std::string& status, const std::string& name) {
  const std::string key = "\n" + name + ":";
  const std::size_t at = status.find(key);
  if (at == std::string::npos) return std::nullopt;
  return std::strtoull(status.c_str() + at + key.size(), nullptr, 16);
}

bool has_effective(int cap) {
  __user_cap_header_struct h{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct d[2] = {};
  if (capget_raw(&h, d) != 0) return false;
  const auto idx = static_cast<std::size_t>(cap / 32);
  return (d[idx].effective >> (cap % 32)) & 1u;
}

}  // namespace

int cap_last_cap() {
  const std::string text = read_small_file("/proc/sys/kernel/cap_last_cap");
  if (text.empty()) return CAP_LAST_CAP;
  return std::atoi(text.c_str());
}

PrivsOutcome drop_privileges() {
  PrivsOutcome out;
  const int last = cap_last_cap();
  // capabilities(7): dropping from the bounding set needs CAP_SETPCAP, so it comes before
  // capset() empties the effective set.
  const bool can_setpcap = has_effective(CAP_SETPCAP);
  for (int cap = 0; cap <= last; ++cap) {
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) {
      const int err = errno;
      if (err == EINVAL) break;  // beyond what this kernel knows
      if (err == EPERM && !can_setpcap) {
        out.result.bounding_cleared = false;
        break;
      }
      out.error = step_error("PR_CAPBSET_DROP", err);
      return out;
    }
  }
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0) {
    out.error = step_error("PR_CAP_AMBIENT_CLEAR_ALL", errno);
    return out;
  }
  __user_cap_header_struct h{_LINUX_CAPABILITY_VERSION_3, 0};
  const __user_cap_data_struct none[2] = {};
  if (capset_raw(&h, none) != 0) {
    out.error = step_error("capset", errno);
    return out;
  }
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    out.error = step_error("PR_SET_NO_NEW_PRIVS", errno);
    return out;
  }

  // Verify by reading back what the kernel now holds.
  __user_cap_data_struct now[2] = {};
  h = {_LINUX_CAPABILITY_VERSION_3, 0};
  if (capget_raw(&h, now) != 0) {
    out.error = step_error("capget", errno);
    return out;
  }
  for (const auto& d : now) {
    if (d.effective || d.permitted || d.inheritable) {
      out.error = step_error("capget", 0, "capabilities still set after capset");
      return out;
    }
  }
  const std::string status = read_small_file("/proc/self/status");
  const auto bnd = status_mask(status, "CapBnd");
  const auto amb = status_mask(status, "CapAmb");
  if (!bnd || !amb) {
    out.error = step_error("/proc/self/status", 0, "no CapBnd/CapAmb line");
    return out;
  }
  if (*amb != 0) {
    out.error = step_error("/proc/self/status", 0, "ambient capabilities still set");
    return out;
  }
  if (out.result.bounding_cleared && *bnd != 0) {
    out.error = step_error("/proc/self/status", 0, "bounding set not empty after PR_CAPBSET_DROP");
    return out;
  }
  const int nnp = prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0);
  if (nnp != 1) {
    out.error = step_error("PR_GET_NO_NEW_PRIVS", nnp < 0 ? errno : 0,
                           nnp < 0 ? "" : "no_new_privs is not set");
    return out;
  }
  return out;
}

}  // namespace jail
