#include "jail/compiled_policy.h"

#include <arpa/inet.h>
#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string_view>
#include <utility>

#include "common/unique_fd.h"
#include "jail/filter.h"

namespace jail {

namespace {

// The file starts with these 8 bytes and a format version; everything after is little-endian
// and length-prefixed:
//   magic "EGJAILC\n", u32 version
//   bytes build_id, u8 arch, str policies_dir
//   u32 n, then n x (str path, str text)            the extends chain, root first
//   u32 n, n x str families; str dns; u8 connect; u32 n, n x (u8 family, 16 x u8 addr,
//   u8 prefix) deny_networks; u8 unix_abstract; u8 mode; u32 n, n x str syscalls;
//   u32 deny_errno; u32 n, n x str env_drop; u8 on_violation
//   bytes bpf                                        struct sock_filter[], host byte order
// where str and bytes are a u32 length and that many bytes. Nothing may follow.
constexpr std::string_view kMagic{"EGJAILC\n", 8};
constexpr std::uint32_t kFormatVersion = 1;
constexpr std::size_t kSockFilterBytes = 8;  // struct sock_filter: u16 code, u8 jt, u8 jf, u32 k

class Writer {
 public:
  void u8(std::uint8_t v) { out_.push_back(v); }
  void u32(std::uint32_t v) {
    for (int shift = 0; shift < 32; shift += 8) out_.push_back(static_cast<std::uint8_t>(v >> shift));
  }
  void str(std::string_view s) {
    u32(static_cast<std::uint32_t>(s.size()));
    out_.insert(out_.end(), s.begin(), s.end());
  }
  void raw(std::span<const std::uint8_t> b) { out_.insert(out_.end(), b.begin(), b.end()); }
  std::vector<std::uint8_t> take() { return std::move(out_); }

 private:
  std::vector<std::uint8_t> out_;
};

// Every read of a compiled file goes through this cursor; each checks `n > remaining` first,
// and a count is never trusted to size anything before its elements have been read.
class Reader {
 public:
  explicit Reader(std::span<const std::uint8_t> in) : in_(in) {}

  bool raw(std::size_t n, std::span<const std::uint8_t>& out) {
    if (n > in_.size() - pos_) return false;
    out = in_.subspan(pos_, n);
    pos_ += n;
    return true;
  }
  bool u8(std::uint8_t& v) {
    std::span<const std::uint8_t> b;
    if (!raw(1, b)) return false;
    v = b[0];
    return true;
  }
  bool u32(std::uint32_t& v) {
    std::span<const std::uint8_t> b;
    if (!raw(4, b)) return false;
    v = 0;
    for (int i = 3; i >= 0; --i) v = (v << 8) | b[static_cast<std::size_t>(i)];
    return true;
  }
  bool str(std::string& s) {
    std::uint32_t n = 0;
    std::span<const std::uint8_t> b;
    if (!u32(n) || !raw(n, b)) return false;
    s.assign(b.begin(), b.end());
    return true;
  }
  // A str that is used as a C string (a path, an address, a variable name): no NUL inside,
  // which c_str() would silently cut at.
  bool text(std::string& s) { return str(s) && s.find('\0') == std::string::npos; }
  std::size_t offset() const { return pos_; }
  bool at_end() const { return pos_ == in_.size(); }

 private:
  std::span<const std::uint8_t> in_;
  std::size_t pos_ = 0;
};

// The form of a syscall name, not libseccomp's lookup (is_known_syscall): that walks its
// tables once per name, 145 us for the default policy here, a third of what the compiled file
// saves. Every name was looked up when this same build (the build ID says so) compiled the
// file, and the filter, which is what the kernel enforces, comes compiled.
bool is_syscall_name(std::string_view name) {
  constexpr std::size_t kMaxName = 64;  // the longest Linux syscall name has 26 characters
  if (name.empty() || name.size() > kMaxName) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

bool is_ip(const std::string& text) {
  unsigned char buf[16];
  return inet_pton(AF_INET, text.c_str(), buf) == 1 || inet_pton(AF_INET6, text.c_str(), buf) == 1;
}

// What decode() reads, field by field; each reader returns "" or the problem.
class Decoder {
 public:
  explicit Decoder(std::span<const std::uint8_t> bytes) : in_(bytes) {}

  std::variant<PolicyImage, std::string> run() {
    PolicyImage im;
    std::span<const std::uint8_t> magic;
    if (!in_.raw(kMagic.size(), magic) ||
        !std::equal(magic.begin(), magic.end(), kMagic.begin()))
      return std::string("not a compiled jail policy (bad magic)");
    std::uint32_t version = 0;
    if (!in_.u32(version)) return fail("version");
    if (version != kFormatVersion)
      return "format version " + std::to_string(version) + ", this jail reads " +
             std::to_string(kFormatVersion);
    if (!in_.str(im.build_id)) return fail("build ID");
    std::uint8_t arch = 0;
    if (!in_.u8(arch) || (arch != kX86_64 && arch != kAarch64)) return fail("architecture");
    im.arch = static_cast<Arch>(arch);
    if (!in_.text(im.policies_dir)) return fail("policies directory");
    if (auto e = files(im); !e.empty()) return e;
    if (auto e = network(im.policy.network); !e.empty()) return e;
    if (auto e = rest(im.policy); !e.empty()) return e;
    if (auto e = filter(im.bpf); !e.empty()) return e;
    if (!in_.at_end()) return fail("trailing bytes");
    return im;
  }

 private:
  std::string fail(const std::string& what) const {
    return "malformed at byte " + std::to_string(in_.offset()) + ": " + what;
  }

  // A u32 count no larger than `max`.
  bool count(std::uint32_t& n, std::uint32_t max) { return in_.u32(n) && n <= max; }

  std::string files(PolicyImage& im) {
    std::uint32_t n = 0;
    if (!count(n, kMaxExtendsDepth) || n == 0) return fail("number of policy files");
    for (std::uint32_t i = 0; i < n; ++i) {
      std::string path;
      std::string text;
      if (!in_.text(path) || path.empty() || !in_.str(text)) return fail("policy file");
      im.policy.files.push_back(std::move(path));
      im.texts.push_back(std::move(text));
    }
    return "";
  }

  std::string network(NetworkPolicy& net) {
    std::uint32_t n = 0;
    const auto max_families = static_cast<std::uint32_t>(socket_families().size());
    if (!count(n, max_families)) return fail("number of socket families");
    net.families.clear();
    for (std::uint32_t i = 0; i < n; ++i) {
      std::string name;
      if (!in_.str(name) || !find_socket_family(name)) return fail("socket family");
      // Policy keeps them sorted and unique (policy.h).
      if (!net.families.empty() && !(net.families.back() < name)) return fail("family order");
      net.families.push_back(std::move(name));
    }
    if (!in_.text(net.dns) || (!net.dns.empty() && !is_ip(net.dns))) return fail("dns");
    std::uint8_t connect = 0;
    if (!in_.u8(connect) || connect > static_cast<std::uint8_t>(ConnectMode::off))
      return fail("connect mode");
    net.connect = static_cast<ConnectMode>(connect);
    if (!in_.u32(n)) return fail("number of deny_networks");
    for (std::uint32_t i = 0; i < n; ++i) {
      egress::Cidr c;
      std::span<const std::uint8_t> addr;
      if (!in_.u8(c.family) || !in_.raw(c.addr.size(), addr) || !in_.u8(c.prefix))
        return fail("deny_networks");
      if ((c.family != 4 && c.family != 6) || c.prefix > (c.family == 4 ? 32 : 128))
        return fail("deny_networks family or prefix");
      std::copy(addr.begin(), addr.end(), c.addr.begin());
      net.deny_networks.push_back(c);
    }
    std::uint8_t abstract = 0;
    if (!in_.u8(abstract) || abstract > 1) return fail("unix_abstract");
    net.unix_abstract_allowed = abstract == 1;
    return "";
  }

  std::string rest(Policy& p) {
    std::uint8_t mode = 0;
    if (!in_.u8(mode) || mode > static_cast<std::uint8_t>(SyscallMode::allowlist))
      return fail("syscall mode");
    p.mode = static_cast<SyscallMode>(mode);
    std::uint32_t n = 0;
    if (!in_.u32(n)) return fail("number of syscalls");
    for (std::uint32_t i = 0; i < n; ++i) {
      std::string name;
      if (!in_.str(name) || !is_syscall_name(name)) return fail("syscall name");
      p.syscalls.insert(std::move(name));
    }
    std::uint32_t err = 0;
    if (!in_.u32(err) || !is_policy_errno(static_cast<int>(err))) return fail("errno");
    p.deny_errno = static_cast<int>(err);
    if (!in_.u32(n)) return fail("number of env.drop names");
    for (std::uint32_t i = 0; i < n; ++i) {
      std::string name;
      if (!in_.text(name) || name.empty() || name.find('=') != std::string::npos)
        return fail("env.drop name");
      p.env_drop.insert(std::move(name));
    }
    std::uint8_t on_violation = 0;
    if (!in_.u8(on_violation) || on_violation > static_cast<std::uint8_t>(OnViolation::kill))
      return fail("on_violation");
    p.on_violation = static_cast<OnViolation>(on_violation);
    return "";
  }

  std::string filter(std::vector<std::uint8_t>& bpf) {
    std::uint32_t n = 0;
    std::span<const std::uint8_t> b;
    if (!in_.u32(n) || n == 0 || n % kSockFilterBytes != 0 ||
        n / kSockFilterBytes > kMaxFilterInsns || !in_.raw(n, b))
      return fail("filter");
    bpf.assign(b.begin(), b.end());
    return "";
  }

  Reader in_;
};

// Reads a whole file of at most `cap` bytes; "" or the problem.
std::string read_capped(int fd, std::size_t cap, std::string& out) {
  out.clear();
  char buf[16384];
  for (;;) {
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return std::strerror(errno);
    }
    if (n == 0) return "";
    if (static_cast<std::size_t>(n) > cap - out.size())
      return "larger than " + std::to_string(cap) + " bytes";
    out.append(buf, static_cast<std::size_t>(n));
  }
}

// O_NONBLOCK: opening a FIFO put where a file was expected must not wait for a writer.
constexpr int kOpenFlags = O_RDONLY | O_CLOEXEC | O_NONBLOCK;

std::string read_path(const std::string& path, std::size_t cap, std::string& out) {
  const egress::UniqueFd fd(open(path.c_str(), kOpenFlags));
  if (!fd) return std::strerror(errno);
  struct stat st {};
  if (fstat(fd.get(), &st) != 0) return std::strerror(errno);
  if (!S_ISREG(st.st_mode)) return "not a regular file";
  return read_capped(fd.get(), cap, out);
}

// dl_iterate_phdr(3) callback: the first object is the executable; its PT_NOTE segments hold
// the NT_GNU_BUILD_ID note (elf(5), "Notes").
int find_build_id(dl_phdr_info* info, std::size_t, void* data) {
  auto* out = static_cast<std::string*>(data);
  for (ElfW(Half) i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_NOTE) continue;
    const std::size_t align = ph.p_align == 8 ? 8 : 4;  // name and desc are padded to it
    const auto* p = reinterpret_cast<const unsigned char*>(info->dlpi_addr + ph.p_vaddr);
    std::size_t left = ph.p_memsz;
    while (left >= sizeof(ElfW(Nhdr))) {
      ElfW(Nhdr) nh;
      std::memcpy(&nh, p, sizeof nh);
      const std::size_t name_len = (std::size_t{nh.n_namesz} + align - 1) & ~(align - 1);
      const std::size_t desc_len = (std::size_t{nh.n_descsz} + align - 1) & ~(align - 1);
      left -= sizeof nh;
      p += sizeof nh;
      if (name_len > left || desc_len > left - name_len) break;
      if (nh.n_type == NT_GNU_BUILD_ID && nh.n_namesz == 4 && std::memcmp(p, "GNU", 4) == 0) {
        out->assign(reinterpret_cast<const char*>(p + name_len), nh.n_descsz);
        return 1;
      }
      p += name_len + desc_len;
      left -= name_len + desc_len;
    }
  }
  return 1;  // only the executable
}

// POSIX ACLs (acl(5)) are never read, only noticed: with one, a file's group bits are the
// ACL's mask, not what its group may do, and further entries name more users and groups.
bool has_acl(int fd) {
  return fgetxattr(fd, "system.posix_acl_access", nullptr, 0) >= 0;  // ENODATA: none
}
bool has_acl(const std::string& path) {
  return getxattr(path.c_str(), "system.posix_acl_access", nullptr, 0) >= 0;
}

// Whether the policy file `p` (at `path`) lets its group write it: group-writable and no ACL.
bool group_writes(const struct stat& p, const std::string& path) {
  return (p.st_mode & S_IWGRP) && !has_acl(path);
}

// Why a compiled file owned by `owner` is not trusted for the policy file `p` (at `path`), or
// "": its owner must be root or p's owner. write_compiled() refuses what load_compiled()
// would then refuse.
std::string wrong_owner(uid_t owner, const struct stat& p, const std::string& path) {
  if (owner == 0 || owner == p.st_uid) return "";
  return "owned by uid " + std::to_string(owner) + ", neither root nor the owner of " + path +
         " (uid " + std::to_string(p.st_uid) + ")";
}

// Why the compiled file `c` can be written by someone who cannot write the policy file `p`, or
// "" (its owner is checked by wrong_owner()). Group write counts only for
// p's own group, when that group may write p; an ACL on the compiled file is refused.
std::string more_writable(const struct stat& c, const struct stat& p, const std::string& path) {
  if ((c.st_mode & S_IWOTH) && !(p.st_mode & S_IWOTH))
    return "writable by others, and " + path + " is not";
  if ((c.st_mode & S_IWGRP) && !(c.st_gid == p.st_gid && group_writes(p, path)))
    return "writable by group " + std::to_string(c.st_gid) + ", which cannot write " + path;
  return "";
}

// The compiled file's permission bits for the chain `files`, the last being the policy file
// `p`. Writable by no one who cannot write p (its owner aside); readable by no one who cannot
// read every file of the chain, since it holds their texts. `group_given`: the file has p's
// group. Throws std::runtime_error if a file cannot be stat'ed.
mode_t compiled_mode(const std::vector<std::string>& files, const struct stat& p,
                     bool group_given) {
  mode_t mode = S_IRUSR | S_IWUSR;
  if (group_given && group_writes(p, files.back())) mode |= S_IWGRP;
  if (p.st_mode & S_IWOTH) mode |= S_IWOTH;
  bool group_reads = group_given;
  bool others_read = true;
  for (const std::string& f : files) {
    struct stat st {};
    if (stat(f.c_str(), &st) != 0) throw std::runtime_error(f + ": " + std::strerror(errno));
    group_reads = group_reads && (st.st_mode & S_IRGRP) && st.st_gid == p.st_gid && !has_acl(f);
    others_read = others_read && (st.st_mode & S_IROTH);
  }
  if (group_reads) mode |= S_IRGRP;
  if (others_read) mode |= S_IROTH;
  return mode;
}

}  // namespace

std::string compiled_path(const std::string& policy_file) { return policy_file + ".compiled"; }

std::string own_build_id() {
  static const std::string id = [] {
    std::string found;
    dl_iterate_phdr(find_build_id, &found);
    return found;
  }();
  return id;
}

std::vector<std::uint8_t> encode(const PolicyImage& im) {
  Writer w;
  w.raw({reinterpret_cast<const std::uint8_t*>(kMagic.data()), kMagic.size()});
  w.u32(kFormatVersion);
  w.str(im.build_id);
  w.u8(im.arch);
  w.str(im.policies_dir);
  const Policy& p = im.policy;
  w.u32(static_cast<std::uint32_t>(p.files.size()));
  for (std::size_t i = 0; i < p.files.size(); ++i) {
    w.str(p.files[i]);
    w.str(i < im.texts.size() ? im.texts[i] : std::string());
  }
  w.u32(static_cast<std::uint32_t>(p.network.families.size()));
  for (const auto& f : p.network.families) w.str(f);
  w.str(p.network.dns);
  w.u8(static_cast<std::uint8_t>(p.network.connect));
  w.u32(static_cast<std::uint32_t>(p.network.deny_networks.size()));
  for (const auto& c : p.network.deny_networks) {
    w.u8(c.family);
    w.raw(c.addr);
    w.u8(c.prefix);
  }
  w.u8(p.network.unix_abstract_allowed ? 1 : 0);
  w.u8(static_cast<std::uint8_t>(p.mode));
  w.u32(static_cast<std::uint32_t>(p.syscalls.size()));
  for (const auto& s : p.syscalls) w.str(s);
  w.u32(static_cast<std::uint32_t>(p.deny_errno));
  w.u32(static_cast<std::uint32_t>(p.env_drop.size()));
  for (const auto& e : p.env_drop) w.str(e);
  w.u8(static_cast<std::uint8_t>(p.on_violation));
  w.u32(static_cast<std::uint32_t>(im.bpf.size()));
  w.raw(im.bpf);
  return w.take();
}

std::variant<PolicyImage, std::string> decode(std::span<const std::uint8_t> bytes) {
  if (bytes.size() > kMaxCompiledBytes)
    return "larger than " + std::to_string(kMaxCompiledBytes) + " bytes";
  return Decoder(bytes).run();
}

std::string write_compiled(const std::string& ref, const std::string& policies_dir) {
  PolicyImage im;
  im.build_id = own_build_id();
  if (im.build_id.empty())
    throw std::runtime_error(
        "this jail was linked without a build ID (ld --build-id), so it could not tell its "
        "compiled files from another build's");
  im.policy = load_policy(ref, policies_dir, &im.texts);
  im.arch = kHostArch;
  im.policies_dir = policies_dir;
  im.bpf = compile_filter(im.policy, im.arch).bpf();
  const std::vector<std::uint8_t> bytes = encode(im);
  const std::string& file = im.policy.files.back();
  const std::string out = compiled_path(file);
  // What is written must be what load_compiled accepts (the caps, the canonical order of
  // families): refused here, with the reason, rather than written and never used.
  if (auto back = decode(bytes); auto* why = std::get_if<std::string>(&back))
    throw std::runtime_error(out + ": not written: " + *why);

  struct stat ps {};
  if (stat(file.c_str(), &ps) != 0)
    throw std::runtime_error(file + ": " + std::strerror(errno));
  // Root gives the file to the policy's owner (below); anyone else owns what they write.
  if (const std::string why = wrong_owner(geteuid(), ps, file); !why.empty())
    throw std::runtime_error(out + " would not be used: it would be " + why);
  std::string tmp = out + ".XXXXXX";
  const egress::UniqueFd fd(mkostemp(tmp.data(), O_CLOEXEC));
  if (!fd) throw std::runtime_error("mkostemp(" + tmp + "): " + std::strerror(errno));
  // The policy file's owner (when root writes it) and group, so that whoever may run jail
  // with the policy may read the compiled file; a writer who is not in that group (EPERM)
  // leaves the group its own, which then gets no access (compiled_mode).
  std::string err;
  bool group_given = true;
  if (fchown(fd.get(), geteuid() == 0 ? ps.st_uid : static_cast<uid_t>(-1), ps.st_gid) != 0) {
    if (errno != EPERM) err = std::string("fchown: ") + std::strerror(errno);
    group_given = false;
  }
  mode_t mode = 0600;
  try {
    mode = compiled_mode(im.policy.files, ps, group_given);
  } catch (const std::runtime_error& e) {
    if (err.empty()) err = e.what();
  }
  // A default ACL of the directory is inherited by the new file; load_compiled refuses ACLs.
  if (err.empty() && fremovexattr(fd.get(), "system.posix_acl_access") != 0 &&
      errno != ENODATA && errno != ENOTSUP)
    err = std::string("removing the inherited ACL: ") + std::strerror(errno);
  std::size_t done = 0;
  while (err.empty() && done < bytes.size()) {
    const ssize_t n = write(fd.get(), bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno != EINTR) err = std::string("write: ") + std::strerror(errno);
    if (n == 0) err = "write: no progress";
    if (n > 0) done += static_cast<std::size_t>(n);
  }
  if (err.empty() && fchmod(fd.get(), mode) != 0) err = std::string("fchmod: ") + std::strerror(errno);
  if (err.empty() && fsync(fd.get()) != 0) err = std::string("fsync: ") + std::strerror(errno);
  if (err.empty() && rename(tmp.c_str(), out.c_str()) != 0)
    err = std::string("rename: ") + std::strerror(errno);
  if (!err.empty()) {
    unlink(tmp.c_str());
    throw std::runtime_error(out + ": " + err);
  }
  return out;
}

Precompiled load_compiled(const std::string& policy_file, const std::string& policies_dir) {
  Precompiled r;
  r.path = compiled_path(policy_file);
  const egress::UniqueFd fd(open(r.path.c_str(), kOpenFlags));
  if (!fd) {
    if (errno != ENOENT) r.why_not = std::string("cannot open: ") + std::strerror(errno);
    return r;
  }
  struct stat cs {};
  struct stat ps {};
  if (fstat(fd.get(), &cs) != 0) {
    r.why_not = std::string("fstat: ") + std::strerror(errno);
    return r;
  }
  if (!S_ISREG(cs.st_mode)) {
    r.why_not = "not a regular file";
    return r;
  }
  if (stat(policy_file.c_str(), &ps) != 0) {
    r.why_not = policy_file + ": " + std::strerror(errno);
    return r;
  }
  if (std::string why = wrong_owner(cs.st_uid, ps, policy_file); !why.empty()) {
    r.why_not = std::move(why);
    return r;
  }
  if (std::string why = more_writable(cs, ps, policy_file); !why.empty()) {
    r.why_not = std::move(why);
    return r;
  }
  if (has_acl(fd.get())) {
    r.why_not = "has a POSIX ACL";
    return r;
  }
  std::string bytes;
  if (const std::string e = read_capped(fd.get(), kMaxCompiledBytes, bytes); !e.empty()) {
    r.why_not = "cannot read: " + e;
    return r;
  }
  auto decoded = decode({reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()});
  if (auto* e = std::get_if<std::string>(&decoded)) {
    r.why_not = *e;
    return r;
  }
  PolicyImage& im = std::get<PolicyImage>(decoded);
  const std::string id = own_build_id();
  if (id.empty()) {
    r.why_not = "this jail has no build ID";
  } else if (im.build_id != id) {
    r.why_not = "written by another jail build";
  } else if (im.arch != kHostArch) {
    r.why_not = "compiled for another architecture";
  } else if (im.policies_dir != policies_dir) {
    r.why_not = "compiled with --policies-dir " + im.policies_dir;
  } else if (im.policy.files.back() != policy_file) {
    r.why_not = "compiled for " + im.policy.files.back();
  }
  // Each file of the chain as it is now, byte for byte: the same files, read from the same
  // paths, give the same chain and the same merged policy.
  for (std::size_t i = 0; r.why_not.empty() && i < im.policy.files.size(); ++i) {
    const std::string& f = im.policy.files[i];
    std::string now;
    if (const std::string e = read_path(f, kMaxCompiledBytes, now); !e.empty())
      r.why_not = f + ": " + e;
    else if (now != im.texts[i])
      r.why_not = f + " changed since it was compiled";
  }
  if (r.why_not.empty()) r.image = std::move(im);
  return r;
}

}  // namespace jail
