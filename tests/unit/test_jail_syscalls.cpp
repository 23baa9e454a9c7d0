// The jail's syscall and socket-family tables (jail/syscalls.h) and the shipped policies'
// agreement with them.
#include <doctest/doctest.h>
#include <seccomp.h>

#include <set>
#include <string>

#include "jail/policy.h"
#include "jail/syscalls.h"

namespace {

const std::string kPolicyDir = EGRESS_SOURCE_DIR "/policies/jail";

}  // namespace

TEST_CASE("jail: the syscall table is sorted by name without duplicates") {
  const auto facts = jail::syscall_facts();
  REQUIRE(facts.size() > 30);
  for (std::size_t i = 1; i < facts.size(); ++i) {
    INFO(facts[i - 1].name, " then ", facts[i].name);
    CHECK(facts[i - 1].name < facts[i].name);
  }
}

TEST_CASE("jail: every table row is a syscall libseccomp knows, on the arches the row says") {
  for (const auto& fact : jail::syscall_facts()) {
    INFO(fact.name);
    const std::string name(fact.name);
    const bool on_x86 = seccomp_syscall_resolve_name_arch(SCMP_ARCH_X86_64, name.c_str()) >= 0;
    const bool on_arm = seccomp_syscall_resolve_name_arch(SCMP_ARCH_AARCH64, name.c_str()) >= 0;
    CHECK(on_x86 == ((fact.arches & jail::kX86_64) != 0));
    CHECK(on_arm == ((fact.arches & jail::kAarch64) != 0));
    CHECK(!fact.why.empty());
  }
}

TEST_CASE("jail: the design's facts are in the table") {
  using jail::Action;
  using jail::ArgRule;
  const auto action = [](const char* n) { return jail::find_syscall_fact(n)->action; };
  const auto rule = [](const char* n) { return jail::find_syscall_fact(n)->rule; };
  CHECK(action("clone3") == Action::enosys);
  CHECK(action("connect") == Action::notify);
  CHECK(action("sendto") == Action::notify);
  CHECK(rule("sendto") == ArgRule::destination_given);
  CHECK(rule("socket") == ArgRule::socket_family);
  CHECK(rule("socketpair") == ArgRule::socketpair_unix);
  CHECK(rule("clone") == ArgRule::clone_namespaces);
  CHECK(rule("seccomp") == ArgRule::seccomp_listener);
  for (const char* n : {"io_uring_setup",
                        "io_uring_enter",
                        "io_uring_register",
                        "bpf",
                        "ptrace",
                        "process_vm_readv",
                        "process_vm_writev",
                        "perf_event_open",
                        "userfaultfd",
                        "keyctl",
                        "add_key",
                        "request_key",
                        "kexec_load",
                        "kexec_file_load",
                        "init_module",
                        "finit_module",
                        "delete_module",
                        "mount",
                        "umount2",
                        "open_tree",
                        "move_mount",
                        "fsopen",
                        "fsconfig",
                        "fsmount",
                        "fspick",
                        "mount_setattr",
                        "unshare",
                        "setns"}) {
    INFO(n);
    REQUIRE(jail::find_syscall_fact(n) != nullptr);
    CHECK(action(n) == Action::deny);
  }
  CHECK(jail::find_syscall_fact("read") == nullptr);
  CHECK(jail::find_syscall_fact("") == nullptr);
  CHECK(jail::find_syscall_fact("zzz") == nullptr);
}

TEST_CASE("jail: syscall names are checked against libseccomp for x86_64 and aarch64") {
  CHECK(jail::is_known_syscall("openat"));
  CHECK(jail::is_known_syscall("open"));  // x86_64 only
  CHECK(jail::is_known_syscall("io_uring_setup"));
  CHECK_FALSE(jail::is_known_syscall("opne"));
  CHECK_FALSE(jail::is_known_syscall(""));
  CHECK_FALSE(jail::is_known_syscall("socketcall"));  // i386 only: not a native-arch name
}

TEST_CASE("jail: the socket family table is sorted, and AF_PACKET cannot be named") {
  const auto families = jail::socket_families();
  for (std::size_t i = 1; i < families.size(); ++i) CHECK(families[i - 1].name < families[i].name);
  REQUIRE(jail::find_socket_family("netlink_route") != nullptr);
  CHECK(jail::find_socket_family("netlink_route")->family == 16);
  CHECK(jail::find_socket_family("netlink_route")->protocol == 0);
  CHECK(jail::find_socket_family("inet6")->family == 10);
  CHECK(jail::find_socket_family("packet") == nullptr);
  CHECK(jail::find_socket_family("netlink") == nullptr);
  for (const auto& f : families) CHECK(f.family < jail::kFamilyLimit);
}

TEST_CASE("jail: default.yaml denies exactly the table's deny rows") {
  const jail::Policy p = jail::load_policy("default", kPolicyDir);
  REQUIRE(p.mode == jail::SyscallMode::denylist);
  std::set<std::string> table;
  for (const auto& fact : jail::syscall_facts())
    if (fact.action == jail::Action::deny) table.emplace(fact.name);
  CHECK(p.syscalls == table);
}

TEST_CASE("jail: strict.yaml allows none of the table's deny rows and names clone3 nowhere") {
  const jail::Policy p = jail::load_policy("strict", kPolicyDir);
  REQUIRE(p.mode == jail::SyscallMode::allowlist);
  for (const auto& fact : jail::syscall_facts()) {
    INFO(fact.name);
    if (fact.action == jail::Action::deny || fact.action == jail::Action::enosys)
      CHECK(p.syscalls.count(std::string(fact.name)) == 0);
  }
  for (const char* needed : {"openat", "read", "execve", "mmap", "futex", "socket", "connect",
                             "clone", "rt_sigreturn", "exit_group", "getrandom"})
    CHECK(p.syscalls.count(needed) == 1);
}
