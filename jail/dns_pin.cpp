#include "jail/dns_pin.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>

#include "common/unique_fd.h"

namespace jail {

namespace {

// Where the generated file is written: a tmpfs mounted over one of these directories inside
// the private namespace, detached again once the file is bound (the bind keeps the tmpfs alive;
// nothing is written to any host filesystem). The first that exists and does not contain the
// target is used: a tmpfs over an ancestor would hide the target. A memfd cannot be the source
// of a bind mount (EINVAL).
constexpr const char* kScratchCandidates[] = {"/tmp", "/mnt", "/var/tmp", "/run", "/media",
                                              "/srv", "/opt", "/home"};

const char* scratch_for(const std::string& target) {
  for (const char* dir : kScratchCandidates) {
    const std::string prefix = std::string(dir) + "/";
    if (target.compare(0, prefix.size(), prefix) == 0) continue;
    struct stat st{};
    if (lstat(dir, &st) == 0 && S_ISDIR(st.st_mode)) return dir;
  }
  return nullptr;
}

// Compares two textual addresses as addresses.
bool same_address(const std::string& a, const std::string& b) {
  unsigned char x[16] = {};
  unsigned char y[16] = {};
  if (inet_pton(AF_INET, a.c_str(), x) == 1) return inet_pton(AF_INET, b.c_str(), y) == 1 &&
                                                    std::memcmp(x, y, 4) == 0;
  if (inet_pton(AF_INET6, a.c_str(), x) == 1) return inet_pton(AF_INET6, b.c_str(), y) == 1 &&
                                                     std::memcmp(x, y, 16) == 0;
  return a == b;
}

std::optional<std::string> read_file(const char* path, int& err) {
  egress::UniqueFd fd(open(path, O_RDONLY | O_CLOEXEC));
  if (!fd) {
    err = errno;
    return std::nullopt;
  }
  std::string out;
  char buf[4096];
  // resolv.conf is small; cap what we read so a huge file cannot exhaust memory.
  constexpr std::size_t kMax = 1 << 20;
  for (;;) {
    const ssize_t n = read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      err = errno;
      return std::nullopt;
    }
    if (n == 0 || out.size() > kMax) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

bool write_all(int fd, const std::string& text) {
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = write(fd, text.data() + done, text.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    done += static_cast<std::size_t>(n);
  }
  return true;
}

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ", ") + s;
  return out.empty() ? "no nameserver" : out;
}

// Unix sockets of host resolvers that glibc's NSS modules talk to instead of reading
// resolv.conf: nss-resolve (systemd-resolved's varlink socket) and nscd. A session reaching one
// resolves through the host, around the sidecar and its allowlist (a DNS tunnel).
constexpr const char* kHostResolverSockets[] = {
    "/run/systemd/resolve/io.systemd.Resolve",
    "/run/nscd/socket",
    "/var/run/nscd/socket",
};

bool exists(const char* path) {
  struct stat st{};
  return lstat(path, &st) == 0;
}

std::variant<DnsPinned, StepError> verify(const std::string& dns, const char* resolv_conf,
                                          int unshare_err) {
  for (const char* sock : kHostResolverSockets) {
    if (exists(sock))
      return step_error("dns pin", 0,
                        std::string("no mount namespace (unshare: ") +
                            std::strerror(unshare_err) + ") to hide the host resolver socket " +
                            sock + ", which would resolve around the sidecar; run jail with "
                            "CAP_SYS_ADMIN or remove it from the session's filesystem");
  }
  char resolved[PATH_MAX];
  const char* target = realpath(resolv_conf, resolved) ? resolved : resolv_conf;
  int err = 0;
  const auto text = read_file(target, err);
  const std::string why = std::string("no mount namespace (unshare: ") +
                          std::strerror(unshare_err) + ")";
  if (!text)
    return step_error("dns pin", 0,
                      why + " and " + target + " cannot be read (" + std::strerror(err) + ")");
  if (!names_only(*text, dns))
    return step_error("dns pin", 0,
                      why + " and " + target + " names " + join(nameservers(*text)) +
                          ", not only the sidecar " + dns +
                          "; run jail with CAP_SYS_ADMIN or make that file say only "
                          "\"nameserver " + dns + "\"");
  return DnsPinned{DnsPinMode::verified, target};
}

}  // namespace

std::string resolv_conf_text(const std::string& dns) {
  return "# written by jail: DNS goes to the egress sidecar only\nnameserver " + dns + "\n";
}

std::vector<std::string> nameservers(std::string_view text) {
  std::vector<std::string> out;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    // resolv.conf(5): keyword at the start of a line, then white space, then the value.
    constexpr std::string_view kKey = "nameserver";
    if (line.substr(0, kKey.size()) != kKey) continue;
    line.remove_prefix(kKey.size());
    if (line.empty() || (line.front() != ' ' && line.front() != '\t')) continue;
    const std::size_t b = line.find_first_not_of(" \t");
    if (b == std::string_view::npos) {
      out.emplace_back();
      continue;
    }
    line.remove_prefix(b);
    const std::size_t e = line.find_first_of(" \t\r#;");
    out.emplace_back(line.substr(0, e));
  }
  return out;
}

bool names_only(std::string_view text, const std::string& dns) {
  const std::vector<std::string> ns = nameservers(text);
  if (ns.empty()) return false;
  for (const auto& n : ns)
    if (!same_address(n, dns)) return false;
  return true;
}

std::variant<DnsPinned, StepError> pin_dns(const std::string& dns, const char* resolv_conf) {
  if (unshare(CLONE_NEWNS) != 0) {
    const int err = errno;
    if (err == EPERM) return verify(dns, resolv_conf, err);
    return step_error("unshare(CLONE_NEWNS)", err);
  }
  // Private first: the mounts below must not propagate back to the host's namespace.
  if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
    return step_error("mount(/, MS_REC|MS_PRIVATE)", errno);
  // The resolved target: /etc/resolv.conf is often a symlink (systemd-resolved's
  // stub-resolv.conf), and a bind over the symlink's target covers what resolvers open.
  char target[PATH_MAX];
  if (!realpath(resolv_conf, target))
    return step_error("realpath(" + std::string(resolv_conf) + ")", errno);

  const char* scratch = scratch_for(target);
  if (!scratch) return step_error("dns pin", 0, "no directory for a scratch tmpfs");
  if (mount("jail-dns", scratch, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=16k,mode=0755")
      != 0)
    return step_error("mount(tmpfs)", errno);
  const std::string file = std::string(scratch) + "/resolv.conf";
  {
    egress::UniqueFd fd(open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    if (!fd) return step_error("open(resolv.conf)", errno);
    if (!write_all(fd.get(), resolv_conf_text(dns))) return step_error("write(resolv.conf)", errno);
  }
  if (mount(file.c_str(), target, nullptr, MS_BIND, nullptr) != 0)
    return step_error("mount(MS_BIND resolv.conf)", errno);
  // mount(2): MS_RDONLY on a bind mount takes a second, MS_REMOUNT call.
  if (mount(nullptr, target, nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV,
            nullptr) != 0)
    return step_error("mount(MS_REMOUNT|MS_RDONLY resolv.conf)", errno);
  // Host resolver sockets: an empty read-only file bound over each, so connecting to it
  // fails (ECONNREFUSED) and NSS falls back to resolv.conf.
  const std::string empty = std::string(scratch) + "/hidden";
  {
    egress::UniqueFd fd(open(empty.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444));
    if (!fd) return step_error("open(hidden)", errno);
  }
  for (const char* sock : kHostResolverSockets) {
    // Absent: nothing to hide. One stat(2) says so; realpath(3) would readlink each component.
    struct stat st{};
    if (stat(sock, &st) != 0) continue;
    char real[PATH_MAX];
    if (!realpath(sock, real)) continue;
    if (mount(empty.c_str(), real, nullptr, MS_BIND, nullptr) != 0)
      return step_error(std::string("mount(MS_BIND over ") + real + ")", errno);
    if (mount(nullptr, real, nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY, nullptr) != 0)
      return step_error(std::string("mount(MS_REMOUNT|MS_RDONLY ") + real + ")", errno);
  }
  // /proc/sys read-only: without capabilities a uid-0 session can still write the network
  // namespace's sysctls (they check euid, not capabilities), and it shares that namespace
  // with the sidecar.
  if (exists("/proc/sys/net")) {
    if (mount("/proc/sys", "/proc/sys", nullptr, MS_BIND | MS_REC, nullptr) != 0)
      return step_error("mount(MS_BIND /proc/sys)", errno);
    if (mount(nullptr, "/proc/sys", nullptr,
              MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0)
      return step_error("mount(MS_REMOUNT|MS_RDONLY /proc/sys)", errno);
  }
  if (umount2(scratch, MNT_DETACH) != 0) return step_error("umount2(tmpfs)", errno);
  return DnsPinned{DnsPinMode::pinned, target};
}

}  // namespace jail
