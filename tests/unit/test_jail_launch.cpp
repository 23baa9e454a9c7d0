// The jail's launch path without privileges: PATH lookup (jail/launch.h), exit statuses, the
// generated and verified resolv.conf (jail/dns_pin.h), Landlock constants (jail/landlock.h).
#include <doctest/doctest.h>
#include <linux/capability.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <string>
#include <variant>
#include <vector>

#include "jail/dns_pin.h"
#include "jail/landlock.h"
#include "jail/launch.h"
#include "temp_dir.h"
#include "jail/missing_defs.h"
#include "jail/privs.h"
#include "jail/seccomp_load.h"
#include "jail/step.h"

namespace {

namespace fs = std::filesystem;

// A temp directory with a few files for PATH lookups, removed afterwards.
class BinDir {
 public:
  std::string file(const std::string& rel, mode_t mode) const {
    const std::string p = dir_.write(rel, "#!/bin/sh\nexit 0\n");
    REQUIRE(chmod(p.c_str(), mode) == 0);
    return p;
  }
  std::string dir(const std::string& rel) const {
    const std::string p = path() + "/" + rel;
    fs::create_directories(p);
    return p;
  }
  const std::string& path() const { return dir_.path(); }

 private:
  egress_test::TempDir dir_{"jail-launch"};
};

}  // namespace

TEST_CASE("jail launch: PATH lookup finds the first executable, like execvp") {
  BinDir d;
  const std::string a = d.dir("a");
  const std::string b = d.dir("b");
  d.file("b/tool", 0755);
  d.file("a/other", 0755);
  const std::string path = a + ":" + b;
  const jail::Resolved r = jail::resolve_program("tool", path.c_str());
  CHECK(r.err == 0);
  CHECK(r.path == b + "/tool");

  d.file("a/tool", 0755);  // earlier on PATH wins
  CHECK(jail::resolve_program("tool", path.c_str()).path == a + "/tool");
}

TEST_CASE("jail launch: a name nowhere on PATH is ENOENT (127, command not found)") {
  BinDir d;
  const std::string path = d.dir("a") + ":" + d.path() + "/missing-dir";
  const jail::Resolved r = jail::resolve_program("no-such-tool", path.c_str());
  CHECK(r.path.empty());
  CHECK(r.err == ENOENT);
  CHECK(jail::exit_status_for_exec_errno(r.err) == 127);
  CHECK(jail::lookup_message("no-such-tool", r) == "no-such-tool: command not found");
}

TEST_CASE("jail launch: a match without execute permission is EACCES, the search goes on") {
  // access(X_OK) succeeds for root when any execute bit is set; 0644 has none, so this holds
  // as root too.
  BinDir d;
  const std::string a = d.dir("a");
  const std::string b = d.dir("b");
  d.file("a/tool", 0644);
  std::string path = a + ":" + b;
  jail::Resolved r = jail::resolve_program("tool", path.c_str());
  CHECK(r.path.empty());
  CHECK(r.err == EACCES);
  CHECK(jail::exit_status_for_exec_errno(r.err) == 126);
  CHECK(jail::lookup_message("tool", r) == "tool: Permission denied");

  d.file("b/tool", 0755);  // an executable later on PATH is still found
  r = jail::resolve_program("tool", path.c_str());
  CHECK(r.err == 0);
  CHECK(r.path == b + "/tool");
}

TEST_CASE("jail launch: a directory is not executable (126)") {
  BinDir d;
  const std::string a = d.dir("a");
  d.dir("a/tool");
  const jail::Resolved on_path = jail::resolve_program("tool", a.c_str());
  CHECK(on_path.err == EACCES);
  const jail::Resolved direct = jail::resolve_program(a, "/nonexistent");
  CHECK(direct.err == EACCES);
  CHECK(direct.is_dir);
  CHECK(jail::lookup_message(a, direct) == a + ": Is a directory");
  CHECK(jail::exit_status_for_exec_errno(direct.err) == 126);
}

TEST_CASE("jail launch: a name with '/' is not searched on PATH") {
  BinDir d;
  const std::string tool = d.file("bin/tool", 0755);
  const std::string path = d.path() + "/bin";
  CHECK(jail::resolve_program(tool, "/nonexistent").path == tool);
  // "bin/tool" is relative to the current directory, not to PATH entries.
  const jail::Resolved rel = jail::resolve_program("bin/tool", path.c_str());
  CHECK(rel.path.empty());
  CHECK(rel.err == ENOENT);
  CHECK(jail::lookup_message("bin/tool", rel) == "bin/tool: No such file or directory");
  CHECK(jail::resolve_program(d.path() + "/bin/missing", path.c_str()).err == ENOENT);
  CHECK(jail::resolve_program("", path.c_str()).err == ENOENT);
}

TEST_CASE("jail launch: an empty PATH element is the current directory") {
  BinDir d;
  d.file("tool", 0755);
  const fs::path old = fs::current_path();
  fs::current_path(d.path());
  const jail::Resolved r = jail::resolve_program("tool", "/nonexistent::/also-not");
  fs::current_path(old);
  CHECK(r.err == 0);
  CHECK(r.path == "./tool");
}

TEST_CASE("jail launch: exit statuses") {
  CHECK(jail::exit_status_for_child(CLD_EXITED, 0) == 0);
  CHECK(jail::exit_status_for_child(CLD_EXITED, 3) == 3);
  CHECK(jail::exit_status_for_child(CLD_EXITED, 255) == 255);
  CHECK(jail::exit_status_for_child(CLD_KILLED, SIGKILL) == 137);
  CHECK(jail::exit_status_for_child(CLD_KILLED, SIGTERM) == 143);
  CHECK(jail::exit_status_for_child(CLD_DUMPED, SIGSEGV) == 139);
  CHECK(jail::exit_status_for_exec_errno(ENOEXEC) == 126);
  CHECK(jail::exit_status_for_exec_errno(ENOTDIR) == 127);
  CHECK(jail::exit_status_for_exec_errno(ENOMEM) == 125);
  CHECK(jail::kExitJailFailure == 125);
}

TEST_CASE("jail dns pin: the generated resolv.conf names the sidecar only") {
  const std::string text = jail::resolv_conf_text("127.0.0.1");
  CHECK(text == "# written by jail: DNS goes to the egress sidecar only\n"
                "nameserver 127.0.0.1\n");
  CHECK(jail::nameservers(text) == std::vector<std::string>{"127.0.0.1"});
  CHECK(jail::names_only(text, "127.0.0.1"));
  CHECK(jail::names_only(jail::resolv_conf_text("::1"), "0:0::1"));
}

TEST_CASE("jail dns pin: verifying an existing resolv.conf") {
  CHECK(jail::names_only("nameserver 127.0.0.1\noptions edns0\n", "127.0.0.1"));
  CHECK(jail::names_only("# c\nsearch lab\nnameserver\t127.0.0.1 # sidecar\n", "127.0.0.1"));
  // Every nameserver line must name the sidecar.
  CHECK_FALSE(jail::names_only("nameserver 127.0.0.1\nnameserver 10.0.0.53\n", "127.0.0.1"));
  CHECK_FALSE(jail::names_only("nameserver 10.255.255.53\n", "127.0.0.1"));
  // No nameserver line: glibc would fall back to a default; refuse.
  CHECK_FALSE(jail::names_only("search example\n", "127.0.0.1"));
  CHECK_FALSE(jail::names_only("", "127.0.0.1"));
  // A keyword must be the whole word at the start of the line.
  CHECK(jail::nameservers("nameservers 1.2.3.4\n  nameserver 5.6.7.8\n").empty());
  CHECK(jail::nameservers("nameserver 192.0.2.1\r\nnameserver 2001:db8::1\n") ==
        std::vector<std::string>{"192.0.2.1", "2001:db8::1"});
  CHECK_FALSE(jail::names_only("nameserver garbage\n", "127.0.0.1"));
  CHECK_FALSE(jail::names_only("nameserver \n", "127.0.0.1"));
}

TEST_CASE("jail landlock: scope flags and what each ABI enforces") {
  // landlock(7) / <linux/landlock.h> since 6.12: the values the kernel expects.
  CHECK(LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET == 1ull);
  CHECK(LANDLOCK_SCOPE_SIGNAL == 2ull);
  CHECK(LANDLOCK_CREATE_RULESET_VERSION == 1u);
  CHECK(jail::landlock_scopes_for(0) == 0);
  CHECK(jail::landlock_scopes_for(5) == 0);
  CHECK(jail::landlock_scopes_for(6) == 3);
  CHECK(jail::landlock_scopes_for(7) == 3);
  CHECK(LANDLOCK_ACCESS_NET_CONNECT_TCP == 2ull);
  // TCP connects are left to the supervisor from ABI 4 (6.7), and only when one runs.
  CHECK(jail::landlock_net_for(3, true) == 0);
  CHECK(jail::landlock_net_for(4, true) == LANDLOCK_ACCESS_NET_CONNECT_TCP);
  CHECK(jail::landlock_net_for(7, true) == LANDLOCK_ACCESS_NET_CONNECT_TCP);
  CHECK(jail::landlock_net_for(7, false) == 0);
  CHECK(jail::describe({7, 3, 0, 0}) == "landlock ABI 7: abstract unix sockets and signals scoped");
  CHECK(jail::describe({2, 0, 0, 0, true}) ==
        "landlock ABI 2: domain (no ptrace of jail); nothing scoped (scoping needs ABI 6)");
  CHECK(jail::describe({7, 3, 2, 0}) ==
        "landlock ABI 7: abstract unix sockets and signals scoped; TCP connects only via the "
        "supervisor");
  CHECK(jail::describe({5, 0, 2, 0}) ==
        "landlock ABI 5: nothing scoped (scoping needs ABI 6); TCP connects only via the "
        "supervisor");
  CHECK(jail::describe({0, 0, 0, ENOSYS}) == "landlock unavailable: nothing scoped");
  // The probe only reads the ABI version; it restricts nothing.
  const jail::LandlockStatus probed = jail::landlock_probe();
  CHECK(probed.scoped == 0);
  CHECK((probed.abi > 0) == (probed.probe_errno == 0));
}

TEST_CASE("jail privs: cap_last_cap comes from the running kernel") {
  const int last = jail::cap_last_cap();
  CHECK(last >= CAP_AUDIT_READ);  // 37, Linux 3.16
  CHECK(last < 64);
}

TEST_CASE("jail seccomp load: a malformed program is refused before seccomp() is called") {
  const std::vector<std::uint8_t> empty;
  const auto r = jail::load_seccomp(empty, true);
  REQUIRE(std::holds_alternative<jail::StepError>(r));
  CHECK(std::get<jail::StepError>(r).err == EINVAL);
  const std::vector<std::uint8_t> odd(7, 0);  // not a whole number of struct sock_filter
  CHECK(std::holds_alternative<jail::StepError>(jail::load_seccomp(odd, false)));
}

TEST_CASE("jail step errors: fixed-size text, truncated, always terminated") {
  const jail::StepError e = jail::step_error("capset", EPERM);
  CHECK(std::string(e.step) == "capset");
  CHECK(e.err == EPERM);
  CHECK(e.detail[0] == '\0');
  const std::string longer(1000, 'x');
  const jail::StepError t = jail::step_error(longer, 0, longer);
  CHECK(std::string(t.step).size() == sizeof t.step - 1);
  CHECK(std::string(t.detail).size() == sizeof t.detail - 1);
}
