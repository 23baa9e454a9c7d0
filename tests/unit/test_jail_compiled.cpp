// Compiled policies (jail/compiled_policy.h): the file format, its decoder on damaged input,
// and when load_compiled lets jail use one.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <variant>
#include <vector>

#include "common/config_error.h"
#include "jail/compiled_policy.h"
#include "jail/filter.h"
#include "jail/policy.h"
#include "skip.h"
#include "temp_dir.h"

namespace {

const std::string kPolicies = std::string(EGRESS_SOURCE_DIR) + "/policies/jail";

jail::PolicyImage image_of(const std::string& ref, const std::string& dir) {
  jail::PolicyImage im;
  im.build_id = jail::own_build_id();
  im.policy = jail::load_policy(ref, dir, &im.texts);
  im.arch = jail::kHostArch;
  im.policies_dir = dir;
  im.bpf = jail::compile_filter(im.policy, im.arch).bpf();
  return im;
}

std::vector<std::string> cidrs(const jail::Policy& p) {
  std::vector<std::string> out;
  for (const auto& c : p.network.deny_networks) out.push_back(c.to_string());
  return out;
}

void check_same(const jail::PolicyImage& a, const jail::PolicyImage& b) {
  CHECK(a.build_id == b.build_id);
  CHECK(a.arch == b.arch);
  CHECK(a.policies_dir == b.policies_dir);
  CHECK(a.texts == b.texts);
  CHECK(a.policy.files == b.policy.files);
  CHECK(a.policy.network.families == b.policy.network.families);
  CHECK(a.policy.network.dns == b.policy.network.dns);
  CHECK(a.policy.network.connect == b.policy.network.connect);
  CHECK(cidrs(a.policy) == cidrs(b.policy));
  CHECK(a.policy.network.unix_abstract_allowed == b.policy.network.unix_abstract_allowed);
  CHECK(a.policy.mode == b.policy.mode);
  CHECK(a.policy.syscalls == b.policy.syscalls);
  CHECK(a.policy.deny_errno == b.policy.deny_errno);
  CHECK(a.policy.env_drop == b.policy.env_drop);
  CHECK(a.policy.on_violation == b.policy.on_violation);
  CHECK(a.bpf == b.bpf);
}

std::string decode_error(const std::vector<std::uint8_t>& bytes) {
  auto r = jail::decode(bytes);
  if (auto* e = std::get_if<std::string>(&r)) return *e;
  return "(decoded)";
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void put(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

void put(const std::string& path, const std::vector<std::uint8_t>& bytes) {
  put(path, std::string(bytes.begin(), bytes.end()));
}

// A system.posix_acl_access value (acl(5), the xattr form: version 2, then (tag, perm, id)
// entries sorted by tag): user::rw-, user:12345:rw-, group::r--, mask::`mask`, other::r--.
std::string acl_xattr(std::uint16_t mask) {
  auto entry = [](std::uint16_t tag, std::uint16_t perm, std::uint32_t id) {
    std::string e(8, '\0');
    std::memcpy(e.data(), &tag, 2);
    std::memcpy(e.data() + 2, &perm, 2);
    std::memcpy(e.data() + 4, &id, 4);
    return e;
  };
  constexpr std::uint32_t kNoId = 0xffffffff;
  const std::uint32_t version = 2;
  return std::string(reinterpret_cast<const char*>(&version), 4) + entry(0x01, 6, kNoId) +
         entry(0x02, 6, 12345) + entry(0x04, 4, kNoId) + entry(0x10, mask, kNoId) +
         entry(0x20, 4, kNoId);
}

// False where the filesystem has no POSIX ACLs.
bool set_acl(const std::string& path, const std::string& acl) {
  return setxattr(path.c_str(), "system.posix_acl_access", acl.data(), acl.size(), 0) == 0;
}

}  // namespace

TEST_CASE("compiled policy: this binary has a build ID (compiled files need one)") {
  CHECK(jail::own_build_id().size() >= 8);
}

TEST_CASE("compiled policy: encode then decode gives back every field") {
  for (const char* name : {"default", "strict"}) {
    CAPTURE(name);
    const jail::PolicyImage im = image_of(name, kPolicies);
    REQUIRE(!im.bpf.empty());
    REQUIRE(im.texts.size() == im.policy.files.size());
    auto back = jail::decode(jail::encode(im));
    REQUIRE(std::holds_alternative<jail::PolicyImage>(back));
    check_same(im, std::get<jail::PolicyImage>(back));
  }
}

TEST_CASE("compiled policy: a cut-short or extended file is rejected, a changed one never read "
          "out of bounds") {
  const std::vector<std::uint8_t> good = jail::encode(image_of("strict", kPolicies));
  for (std::size_t n = 0; n < good.size(); ++n) {
    CAPTURE(n);
    const std::vector<std::uint8_t> cut(good.begin(), good.begin() + static_cast<long>(n));
    CHECK(decode_error(cut) != "(decoded)");
  }
  std::vector<std::uint8_t> longer = good;
  longer.push_back(0);
  CHECK(decode_error(longer).find("trailing bytes") != std::string::npos);
  // Every byte flipped in turn: decoded or refused, never a crash (the ASan preset checks the
  // reads). A flip in a text or the build ID still decodes; load_compiled compares those.
  int refused = 0;
  for (std::size_t i = 0; i < good.size(); ++i) {
    std::vector<std::uint8_t> bad = good;
    bad[i] ^= 0xff;
    if (decode_error(bad) != "(decoded)") ++refused;
  }
  CHECK(refused > 0);
}

TEST_CASE("compiled policy: decode refuses values this jail does not accept") {
  const jail::PolicyImage good = image_of("default", kPolicies);
  auto refused = [](jail::PolicyImage im) { return decode_error(jail::encode(im)); };
  CHECK(decode_error({}) == "not a compiled jail policy (bad magic)");
  {
    auto im = good;
    im.policy.network.families.push_back("ipx");
    CHECK(refused(im).find(": socket family") != std::string::npos);
  }
  {
    auto im = good;
    im.policy.network.families = {"unix", "inet"};  // not in the sorted order Policy keeps
    CHECK(refused(im).find(": family order") != std::string::npos);
  }
  {
    auto im = good;
    im.policy.network.dns = "sidecar.local";
    CHECK(refused(im).find(": dns") != std::string::npos);
  }
  {
    auto im = good;
    im.policy.deny_errno = EIO;
    CHECK(refused(im).find(": errno") != std::string::npos);
  }
  {
    auto im = good;
    im.policy.syscalls.insert("Read; rm -rf");
    CHECK(refused(im).find(": syscall name") != std::string::npos);
  }
  {
    auto im = good;
    im.policy.env_drop.insert("A=B");
    CHECK(refused(im).find(": env.drop name") != std::string::npos);
  }
  {
    auto im = good;
    egress::Cidr c;
    c.family = 4;
    c.prefix = 33;
    im.policy.network.deny_networks.push_back(c);
    CHECK(refused(im).find(": deny_networks family or prefix") != std::string::npos);
  }
  {
    auto im = good;
    im.bpf.pop_back();  // not a whole number of struct sock_filter
    CHECK(refused(im).find(": filter") != std::string::npos);
  }
  {
    auto im = good;
    im.bpf.assign((jail::kMaxFilterInsns + 1) * 8, 0);
    CHECK(refused(im).find(": filter") != std::string::npos);
  }
  {
    auto im = good;
    im.policy.files.clear();
    im.texts.clear();
    CHECK(refused(im).find(": number of policy files") != std::string::npos);
  }
  {
    auto im = good;
    im.policy.on_violation = static_cast<jail::OnViolation>(7);
    CHECK(refused(im).find(": on_violation") != std::string::npos);
  }
}

TEST_CASE("compiled policy: used only while the build, the directory and every file match") {
  egress_test::TempDir dir("jail-compiled");
  const std::string parent = dir.write("default.yaml", slurp(kPolicies + "/default.yaml"));
  const std::string site =
      dir.write("site.yaml", "extends: default\nsyscalls:\n  deny: [uname]\n");
  chmod(parent.c_str(), 0644);
  chmod(site.c_str(), 0644);
  const std::string file = jail::policy_path("site", dir.path());
  CHECK(file == site);

  // Nothing compiled yet: not used, and no reason to give.
  jail::Precompiled none = jail::load_compiled(file, dir.path());
  CHECK(!none.image);
  CHECK(none.why_not.empty());

  const std::string written = jail::write_compiled("site", dir.path());
  CHECK(written == site + ".compiled");
  struct stat st {};
  REQUIRE(stat(written.c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0644);  // the policy file's bits

  jail::Precompiled pre = jail::load_compiled(file, dir.path());
  REQUIRE_MESSAGE(pre.image, pre.why_not);
  check_same(*pre.image, image_of("site", dir.path()));
  CHECK(pre.image->policy.syscalls.count("uname") == 1);

  SUBCASE("another --policies-dir") {
    const auto r = jail::load_compiled(file, dir.path() + "/");
    CHECK(!r.image);
    CHECK(r.why_not == "compiled with --policies-dir " + dir.path());
  }
  SUBCASE("a file of the chain changed, the parent included") {
    std::ofstream(parent, std::ios::app) << "# edited\n";
    const auto r = jail::load_compiled(file, dir.path());
    CHECK(!r.image);
    CHECK(r.why_not == parent + " changed since it was compiled");
  }
  SUBCASE("a file of the chain gone") {
    REQUIRE(unlink(parent.c_str()) == 0);
    const auto r = jail::load_compiled(file, dir.path());
    CHECK(!r.image);
    CHECK(r.why_not == parent + ": No such file or directory");
  }
  SUBCASE("compiled for another policy file") {
    const std::string other = dir.write("other.yaml", slurp(site));
    put(other + ".compiled", slurp(written));
    chmod((other + ".compiled").c_str(), 0644);
    const auto r = jail::load_compiled(other, dir.path());
    CHECK(!r.image);
    CHECK(r.why_not == "compiled for " + site);
  }
  SUBCASE("written by another build") {
    jail::PolicyImage im = image_of("site", dir.path());
    im.build_id[0] = static_cast<char>(im.build_id[0] ^ 1);
    put(written, jail::encode(im));
    const auto r = jail::load_compiled(file, dir.path());
    CHECK(!r.image);
    CHECK(r.why_not == "written by another jail build");
  }
  SUBCASE("damaged") {
    const std::string bytes = slurp(written);
    put(written, bytes.substr(0, bytes.size() / 2));
    const auto r = jail::load_compiled(file, dir.path());
    CHECK(!r.image);
    CHECK(r.why_not.rfind("malformed at byte ", 0) == 0);
  }
  SUBCASE("writable by others while the policy file is not") {
    REQUIRE(chmod(written.c_str(), 0666) == 0);
    const auto r = jail::load_compiled(file, dir.path());
    CHECK(!r.image);
    CHECK(r.why_not == "writable by others, and " + site + " is not");
    // The same bits on the policy file: the compiled file is no easier to change than it.
    REQUIRE(chmod(site.c_str(), 0666) == 0);
    CHECK(jail::load_compiled(file, dir.path()).image);
  }
  SUBCASE("writable by a group that cannot write the policy file") {
    if (egress_test::cannot_run(geteuid() == 0, "chgrp to another group needs root")) return;
    REQUIRE(chmod(site.c_str(), 0664) == 0);
    REQUIRE(chmod(written.c_str(), 0664) == 0);
    CHECK(jail::load_compiled(file, dir.path()).image);  // the same group: as writable as site
    REQUIRE(chown(written.c_str(), static_cast<uid_t>(-1), 12345) == 0);
    const auto r = jail::load_compiled(file, dir.path());
    CHECK(!r.image);
    CHECK(r.why_not == "writable by group 12345, which cannot write " + site);
  }
  SUBCASE("a POSIX ACL on the compiled file, and one inherited when it is written") {
    // The mask r-- keeps the file looking group-read-only: the ACL itself is what is refused.
    const std::string acl = acl_xattr(4);
    if (egress_test::cannot_run(set_acl(written, acl), "no POSIX ACLs on " + dir.path()))
      return;
    const auto r = jail::load_compiled(file, dir.path());
    CHECK(!r.image);
    CHECK(r.why_not == "has a POSIX ACL");
    // A directory whose default ACL would give the new file one: --compile-policy removes it.
    REQUIRE(setxattr(dir.path().c_str(), "system.posix_acl_default", acl.data(), acl.size(),
                     0) == 0);
    REQUIRE(unlink(written.c_str()) == 0);
    CHECK(jail::write_compiled("site", dir.path()) == written);
    CHECK(getxattr(written.c_str(), "system.posix_acl_access", nullptr, 0) < 0);
    CHECK(jail::load_compiled(file, dir.path()).image);
  }
  SUBCASE("a FIFO where the compiled file should be does not hold jail") {
    REQUIRE(unlink(written.c_str()) == 0);
    REQUIRE(mkfifo(written.c_str(), 0644) == 0);
    const auto r = jail::load_compiled(file, dir.path());
    CHECK(!r.image);
    CHECK(r.why_not == "not a regular file");
  }
  SUBCASE("owned by someone else") {
    if (egress_test::cannot_run(geteuid() == 0, "chown needs root")) return;
    REQUIRE(chown(written.c_str(), 12345, 12345) == 0);
    const auto r = jail::load_compiled(file, dir.path());
    CHECK(!r.image);
    CHECK(r.why_not == "owned by uid 12345, neither root nor the owner of " + site + " (uid " +
                           std::to_string(st.st_uid) + ")");
  }
  SUBCASE("not a regular file") {
    REQUIRE(unlink(written.c_str()) == 0);
    REQUIRE(mkdir(written.c_str(), 0755) == 0);
    const auto r = jail::load_compiled(file, dir.path());
    CHECK(!r.image);
    CHECK(r.why_not == "not a regular file");
  }
}

TEST_CASE("compiled policy: the file is no more readable or writable than its sources") {
  egress_test::TempDir dir("jail-compiled");
  const std::string base = dir.write("base.yaml", "# SECRET-BASE-COMMENT\n");
  const std::string site = dir.write("site.yaml", "extends: base.yaml\n");
  REQUIRE(chmod(base.c_str(), 0600) == 0);
  REQUIRE(chmod(site.c_str(), 0664) == 0);
  const std::string written = jail::write_compiled(site, dir.path());
  struct stat st {};
  REQUIRE(stat(written.c_str(), &st) == 0);
  // It holds base.yaml's text: readable by no one who cannot read base.yaml. Writable by the
  // group, as site.yaml is.
  CHECK((st.st_mode & 07777) == 0620);
  CHECK(jail::load_compiled(site, dir.path()).image);

  SUBCASE("a policy file with an ACL: its group bits are the mask, not the group's right") {
    // The mask rw- makes the mode show 0664, but the file's group (group::r--) may only read.
    if (egress_test::cannot_run(set_acl(site, acl_xattr(6)), "no POSIX ACLs on " + dir.path()))
      return;
    REQUIRE(stat(site.c_str(), &st) == 0);
    REQUIRE((st.st_mode & 0777) == 0664);
    jail::write_compiled(site, dir.path());
    REQUIRE(stat(written.c_str(), &st) == 0);
    CHECK((st.st_mode & S_IWGRP) == 0);
    CHECK(jail::load_compiled(site, dir.path()).image);
    REQUIRE(chmod(written.c_str(), 0620) == 0);
    const auto r = jail::load_compiled(site, dir.path());
    CHECK(!r.image);
    CHECK(r.why_not ==
          "writable by group " + std::to_string(st.st_gid) + ", which cannot write " + site);
  }
  SUBCASE("written by root for a policy file someone else owns: theirs") {
    if (egress_test::cannot_run(geteuid() == 0, "chown needs root")) return;
    REQUIRE(chown(site.c_str(), 12345, 12345) == 0);
    REQUIRE(chown(base.c_str(), 12345, 12345) == 0);
    jail::write_compiled(site, dir.path());
    REQUIRE(stat(written.c_str(), &st) == 0);
    CHECK((st.st_uid == 12345 && st.st_gid == 12345));
    CHECK(jail::load_compiled(site, dir.path()).image);
  }
}

TEST_CASE("compiled policy: a policy that names no families compiles to a file that is used") {
  // The default family list is what such a policy gets; it must be in the order decode checks.
  egress_test::TempDir dir("jail-compiled");
  const std::string site = dir.write("site.yaml", "syscalls:\n  deny: [uname]\n");
  jail::write_compiled(site, dir.path());
  const jail::Precompiled pre = jail::load_compiled(site, dir.path());
  REQUIRE_MESSAGE(pre.image, pre.why_not);
  CHECK(pre.image->policy.network.families == jail::Policy{}.network.families);
}

TEST_CASE("compiled policy: a bad policy is not compiled, and nothing is written") {
  egress_test::TempDir dir("jail-compiled");
  const std::string site = dir.write("site.yaml", "syscalls:\n  deny: [no_such_call]\n");
  CHECK_THROWS_AS(jail::write_compiled(site, dir.path()), egress::ConfigError);
  struct stat st {};
  CHECK(stat((site + ".compiled").c_str(), &st) != 0);
}
