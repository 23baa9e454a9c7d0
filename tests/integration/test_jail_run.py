#!/usr/bin/python3
"""jail's launch path with real programs, in the lab's session namespace (as root).

Exit statuses and messages, signals, stdin/stdout, PATH lookup, the environment, the pinned
resolv.conf (and the verify-only path of an unprivileged jail), capabilities, no_new_privs,
Landlock's signal scope, and python3/curl/git/dig/Go/bash under the default and strict policies.
Every jail runs inside the lab (`ip netns exec SESSION`); its only network peers are dnsd on
127.0.0.1 and the lab's web server on documentation/benchmark addresses.

Run: JAIL=build/jail/jail DNSD=build/dnsd/dnsd /usr/bin/python3 tests/integration/test_jail_run.py
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # lab_support
import lab_support as S
from lab_support import L

REPO = Path(__file__).resolve().parents[2]
JAIL = os.environ.get("JAIL") or str(REPO / "build/jail/jail")
GO_SRC = Path(__file__).resolve().parent / "go"
POLICIES = ("default", "strict")
ALLOW = ("github.com", "*.github.com", "pypi.org")
SIDECAR = "127.0.0.1"
NOBODY = 65534
EROFS, EPERM = 30, 1


def landlock_abi() -> int:
    """The running kernel's Landlock ABI (landlock(7)); 0 when unavailable."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    # landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION); 444 on x86_64 and
    # aarch64 alike (the unified syscall table).
    abi = libc.syscall(ctypes.c_long(444), None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    return max(int(abi), 0)


def setUpModule():
    S.module_up()
    if not os.access(JAIL, os.X_OK):
        raise RuntimeError(f"jail binary not found: {JAIL} (set JAIL or build it)")


tearDownModule = S.module_down


def one_line(text: str) -> str:
    lines = text.splitlines()
    if len(lines) != 1:
        raise AssertionError(f"expected exactly one stderr line, got {len(lines)}: {text!r}")
    return lines[0]


class JailCase(unittest.TestCase):
    """Runs jail in the lab's session namespace."""

    lab: L.Lab

    @classmethod
    def setUpClass(cls):
        cls.lab = S.LAB

    def tmpdir(self, mode: int = 0o700) -> Path:
        d = Path(tempfile.mkdtemp(prefix="jail-test-"))
        d.chmod(mode)
        self.addCleanup(shutil.rmtree, d, True)
        return d

    def jail(self, argv, policy="default", args=(), timeout=60, **kw):
        cmd = [JAIL, "--policy", policy, *args, "--", *argv]
        return self.lab.run_in_session(cmd, timeout=timeout, **kw)

    def jail_popen(self, argv, policy="default", args=(), **kw) -> subprocess.Popen:
        # `ip netns exec` execs its command: the Popen's pid is jail's own.
        p = self.lab.popen_in_session([JAIL, "--policy", policy, *args, "--", *argv], **kw)
        self.addCleanup(self._stop, p)
        return p

    @staticmethod
    def _stop(p: subprocess.Popen):
        if p.poll() is None:
            p.kill()
        p.wait(10)
        for f in (p.stdout, p.stderr):
            if f:
                f.close()

    def assertJailFails(self, r, status: int, message_re: str):
        self.assertEqual(r.returncode, status, f"stdout={r.stdout!r} stderr={r.stderr!r}")
        self.assertRegex(one_line(r.stderr), message_re)


class TestExitStatus(JailCase):
    def test_exit_codes_pass_through(self):
        for code in (0, 3, 255):
            with self.subTest(code=code):
                r = self.jail(["sh", "-c", f"exit {code}"])
                self.assertEqual(r.returncode, code, r.stderr)
                self.assertEqual(r.stderr, "")

    def test_signal_death_is_128_plus_n(self):
        for sig in (signal.SIGKILL, signal.SIGTERM):
            with self.subTest(sig=sig.name):
                r = self.jail(["sh", "-c", f"kill -{int(sig)} $$"])
                self.assertEqual(r.returncode, 128 + int(sig), r.stderr)

    def test_a_denial_logged_to_a_gone_reader_does_not_kill_jail(self):
        # jail's stderr (the default log) is a pipe whose reader has gone. Writing the denial
        # line fails with EPIPE; jail must not die of SIGPIPE (taking the program with it) but
        # return the program's own status. 169.254.0.0/16 is denied by the default policy
        # before any packet is sent.
        prog = ("import socket, sys\n"
                "try:\n"
                "    socket.socket().connect(('169.254.1.1', 80))\n"
                "except OSError as e:\n"
                "    sys.exit(7 if e.errno == 13 else 3)\n")
        r, w = os.pipe()
        os.close(r)
        try:
            result = self.jail(["python3", "-c", prog], capture_output=False,
                               stdout=subprocess.DEVNULL, stderr=w)
        finally:
            os.close(w)
        self.assertEqual(result.returncode, 7)

    def test_not_found_127(self):
        r = self.jail(["no-such-program-for-jail"])
        self.assertJailFails(r, 127, r"^jail: no-such-program-for-jail: command not found$")
        r = self.jail(["/nonexistent/prog"])
        self.assertJailFails(r, 127, r"^jail: /nonexistent/prog: No such file or directory$")

    def test_not_executable_126(self):
        d = self.tmpdir()
        f = d / "script"
        f.write_text("#!/bin/sh\nexit 0\n")
        f.chmod(0o644)
        r = self.jail([str(f)])
        self.assertJailFails(r, 126, rf"^jail: {f}: Permission denied$")
        r = self.jail([str(d)])
        self.assertJailFails(r, 126, rf"^jail: {d}: Is a directory$")
        # A file the kernel cannot execute (no #!, not ELF): found, but execve fails ENOEXEC
        # after confinement; reported the same way.
        g = d / "garbage"
        g.write_bytes(b"\x00\x01\x02 not a program\n")
        g.chmod(0o755)
        r = self.jail([str(g)])
        self.assertJailFails(r, 126, rf"^jail: {g}: Exec format error$")

    def test_jail_failures_125(self):
        r = self.lab.run_in_session([JAIL, "--policy", "/nonexistent/policy.yaml", "--", "true"])
        self.assertJailFails(r, 125, r"^jail: .*nonexistent/policy\.yaml")
        r = self.jail(["true"], args=["--dns", "not-an-address"])
        self.assertJailFails(r, 125, r"^jail: --dns: not an IP address: not-an-address$")
        r = self.jail(["true"], args=["--log", "/nonexistent/dir/log"])
        self.assertJailFails(r, 125, r"^jail: --log /nonexistent/dir/log: No such file")
        r = self.lab.run_in_session([JAIL, "--policy", "default"])
        self.assertJailFails(r, 125, r"^jail: nothing to run")


class TestPassThrough(JailCase):
    def test_stdin_stdout(self):
        data = "".join(f"line {i}\n" for i in range(2000))
        r = self.jail(["tr", "a-z", "A-Z"], input=data)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, data.upper())

    def test_path_lookup(self):
        d = self.tmpdir(0o755)
        tool = d / "jail-test-tool"
        tool.write_text("#!/bin/sh\necho \"tool $1\"\n")
        tool.chmod(0o755)
        env = dict(os.environ, PATH=f"/nonexistent:{d}:/usr/bin:/bin")
        r = self.jail(["jail-test-tool", "arg"], env=env)
        self.assertEqual((r.returncode, r.stdout), (0, "tool arg\n"), r.stderr)
        # Earlier PATH entries win, as for a shell.
        d2 = self.tmpdir(0o755)
        first = d2 / "jail-test-tool"
        first.write_text("#!/bin/sh\necho first\n")
        first.chmod(0o755)
        env["PATH"] = f"{d2}:{d}:/usr/bin:/bin"
        r = self.jail(["jail-test-tool"], env=env)
        self.assertEqual(r.stdout, "first\n", r.stderr)

    def test_env_scrubbed(self):
        env = dict(os.environ, RES_OPTIONS="ndots:9", LOCALDOMAIN="evil.test",
                   HOSTALIASES="/tmp/aliases", JAIL_TEST_KEEP="kept")
        r = self.jail(["env"], env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        names = {line.split("=", 1)[0] for line in r.stdout.splitlines()}
        self.assertFalse(names & {"RES_OPTIONS", "LOCALDOMAIN", "HOSTALIASES"}, r.stdout)
        self.assertIn("JAIL_TEST_KEEP=kept", r.stdout.splitlines())
        self.assertIn("PATH", names)


class TestSignals(JailCase):
    TRAP = ("import signal, sys, time\n"
            "for s, code in ((signal.SIGTERM, 41), (signal.SIGINT, 42), (signal.SIGHUP, 43),\n"
            "                (signal.SIGUSR1, 44)):\n"
            "    signal.signal(s, lambda n, f, code=code: sys.exit(code))\n"
            "print('ready', flush=True)\n"
            "time.sleep(60)\n"
            "sys.exit(1)\n")

    def test_forwarded_signals_reach_the_child(self):
        for sig, code in ((signal.SIGTERM, 41), (signal.SIGINT, 42), (signal.SIGHUP, 43),
                          (signal.SIGUSR1, 44)):
            with self.subTest(sig=sig.name):
                p = self.jail_popen(["python3", "-c", self.TRAP], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
                self.assertEqual(p.stdout.readline(), "ready\n")
                p.send_signal(sig)
                self.assertEqual(p.wait(30), code, p.stderr.read())

    def test_kill_of_the_jail_parent_denied(self):
        # Landlock's signal scope (ABI >= 6): the session cannot signal the supervisor.
        abi = landlock_abi()
        if abi < 6:
            self.skipTest(f"Landlock ABI {abi} < 6: no signal scoping on this kernel")
        r = self.jail(["python3", "-c",
                       "import os\n"
                       "try:\n    os.kill(os.getppid(), 0)\n    print('signalled')\n"
                       "except PermissionError:\n    print('EPERM')\n"
                       "os.kill(os.getpid(), 0)\nprint('self ok')\n"])
        self.assertEqual(r.stdout, "EPERM\nself ok\n", r.stderr)
        r = self.jail(["sh", "-c", "kill -0 $PPID"])
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("Operation not permitted", r.stderr)


class TestConfinement(JailCase):
    STATUS = ("import re\n"
              "s = open('/proc/self/status').read()\n"
              "for k in ('CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb', 'NoNewPrivs'):\n"
              "    print(k, re.search(rf'^{k}:\\s*(\\S+)', s, re.M).group(1))\n")

    def test_capabilities_cleared_and_no_new_privs(self):
        for policy in POLICIES:
            with self.subTest(policy=policy):
                r = self.jail(["python3", "-c", self.STATUS], policy=policy)
                self.assertEqual(r.returncode, 0, r.stderr)
                got = dict(line.split() for line in r.stdout.splitlines())
                for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
                    self.assertEqual(int(got[k], 16), 0, f"{k}: {r.stdout}")
                self.assertEqual(got["NoNewPrivs"], "1")

    def test_resolv_conf_pinned_read_only(self):
        probe = ("import ctypes, errno, os\n"
                 "print(open('/etc/resolv.conf').read(), end='')\n"
                 "try:\n    open('/etc/resolv.conf', 'w')\n"
                 "except OSError as e:\n    print('write', errno.errorcode[e.errno])\n"
                 "libc = ctypes.CDLL(None, use_errno=True)\n"
                 "rc = libc.mount(b'/etc/hostname', b'/etc/resolv.conf', None, 4096, None)\n"
                 "print('mount', rc, errno.errorcode[ctypes.get_errno()])\n")
        def our_mounts():  # other tests may add /run/netns mounts meanwhile: look at ours only
            return [ln for ln in Path("/proc/self/mountinfo").read_text().splitlines()
                    if "resolv.conf" in ln or "jail-dns" in ln]
        before = our_mounts()
        for policy in POLICIES:
            for dns in (None, "198.51.100.53"):
                with self.subTest(policy=policy, dns=dns):
                    args = ["--dns", dns] if dns else []
                    r = self.jail(["python3", "-c", probe], policy=policy, args=args)
                    self.assertEqual(r.returncode, 0, r.stderr)
                    ns = [ln.split()[1] for ln in r.stdout.splitlines()
                          if ln.startswith("nameserver")]
                    self.assertEqual(ns, [dns or SIDECAR], r.stdout)
                    self.assertIn("write EROFS", r.stdout)
                    self.assertIn("mount -1 EPERM", r.stdout)
        # Nothing propagates back. `ip netns exec` runs each jail in a mount namespace of its
        # own, so also run one jail (no network use) right in this test's namespace.
        host_before = Path("/etc/resolv.conf").read_text()
        r = subprocess.run([JAIL, "--", "cat", "/etc/resolv.conf"], capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(r.stdout, f"# written by jail: DNS goes to the egress sidecar only\n"
                                   f"nameserver {SIDECAR}\n", r.stderr)
        self.assertEqual(our_mounts(), before)
        self.assertEqual(Path("/etc/resolv.conf").read_text(), host_before)
        r = self.lab.run_in_session(["cat", "/etc/resolv.conf"])
        self.assertIn("nameserver 127.0.0.1", r.stdout)
        self.assertNotIn("written by jail", r.stdout)

    def test_host_resolver_sockets_hidden_and_proc_sys_read_only(self):
        """glibc's nss-resolve and nscd talk to host resolvers over unix sockets, around the
        sidecar: in the jail's mount namespace they are covered by an empty read-only file.
        /proc/sys is read-only (a uid-0 session without capabilities could still write the
        shared network namespace's sysctls). A socket is made for the test in a mount
        namespace of its own (a tmpfs over /run/nscd), never on the host."""
        probe = ("import errno, socket\n"
                 "s = socket.socket(socket.AF_UNIX)\n"
                 "try:\n    s.connect('/run/nscd/socket'); print('nscd connected')\n"
                 "except OSError as e:\n    print('nscd', errno.errorcode[e.errno])\n"
                 "try:\n    open('/proc/sys/net/ipv4/conf/all/route_localnet', 'w').write('1')\n"
                 "    print('sysctl written')\n"
                 "except OSError as e:\n    print('sysctl', errno.errorcode[e.errno])\n")
        server = ("import socket, time\n"
                  "s = socket.socket(socket.AF_UNIX); s.bind('/run/nscd/socket'); s.listen()\n"
                  "time.sleep(60)\n")
        script = ('mkdir -p /run/nscd && mount -t tmpfs jail-test /run/nscd || exit 9\n'
                  f'{sys.executable} -c "$1" & srv=$!\n'
                  'while [ ! -S /run/nscd/socket ]; do sleep 0.05; done\n'
                  '"$2" -- python3 -c "$3"\n'
                  f'{sys.executable} -c "$3"\n'
                  'kill $srv\n')
        r = subprocess.run(["unshare", "-m", "-n", "--propagation", "private", "sh", "-c", script,
                            "sh", server, JAIL, probe],
                           capture_output=True, text=True, timeout=60)
        lines = r.stdout.splitlines()
        self.assertEqual(len(lines), 4, r.stdout + r.stderr)
        # Under jail: the socket is covered by a read-only (0444) regular file, which a session
        # without CAP_DAC_OVERRIDE may not connect to; the sysctl is read-only.
        self.assertEqual(lines[:2], ["nscd EACCES", "sysctl EROFS"], r.stderr)
        # The control, same namespace, no jail: the socket exists and answers, and root may
        # write that sysctl (it writes the value it has, in the test's own network namespace).
        self.assertEqual(lines[2], "nscd connected", r.stderr)
        self.assertEqual(lines[3], "sysctl written", r.stderr)

    def test_symlinked_resolv_conf_target_is_covered(self):
        # /etc/resolv.conf as a symlink (systemd-resolved's stub-resolv.conf): the test's own
        # mount namespace gets an overlay on /etc where the file is a symlink into a temp dir.
        d = self.tmpdir(0o755)
        (d / "upper").mkdir()
        (d / "work").mkdir()
        stub = d / "stub-resolv.conf"
        stub.write_text("nameserver 192.0.2.1\n")
        setup = ('mount -t overlay overlay -o lowerdir=/etc,upperdir="$0/upper",workdir="$0/work" '
                 '/etc && ln -sf "$0/stub-resolv.conf" /etc/resolv.conf && exec "$@"')
        cmd = ["unshare", "--mount", "--", "sh", "-c", setup, str(d), JAIL, "-v", "--",
               "sh", "-c", "readlink /etc/resolv.conf; grep ^nameserver /etc/resolv.conf"]
        r = self.lab.run_in_session(cmd, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, f"{stub}\nnameserver {SIDECAR}\n")
        self.assertIn(f"pinned ({stub})", one_line(r.stderr))
        self.assertEqual(stub.read_text(), "nameserver 192.0.2.1\n")  # covered, not changed

    def test_start_line_and_log_event(self):
        log = self.tmpdir() / "jail.log"
        r = self.jail(["true"], args=["-v", "--log", str(log)])
        self.assertEqual(r.returncode, 0, r.stderr)
        line = one_line(r.stderr)
        self.assertRegex(line, r"^jail: landlock ")
        self.assertIn(f"dns {SIDECAR} pinned", line)
        events = [json.loads(x) for x in log.read_text().splitlines()]
        start = [e for e in events if e.get("event") == "start"]
        self.assertEqual(len(start), 1, events)
        self.assertEqual(start[0]["dns"], SIDECAR)
        self.assertEqual(start[0]["dns_mode"], "pinned")
        self.assertTrue(start[0]["bounding_set_cleared"])
        # SECCOMP_IOCTL_NOTIF_SET_FLAGS (sync wake-up) is in mainline from Linux 6.6 (an
        # older kernel may have it backported); the -v line says what the event says.
        if L.kernel_at_least(6, 6):
            self.assertTrue(start[0]["sync_wake_up"])
        self.assertEqual(bool(re.search(r"seccomp supervised \(.*sync wake-up\)$", line)),
                         start[0]["sync_wake_up"], line)
        self.assertEqual(start[0]["landlock_abi"], landlock_abi())
        if landlock_abi() >= 6:
            self.assertEqual(start[0]["landlock_scoped"], ["abstract_unix_socket", "signal"])
            self.assertIn("abstract unix sockets and signals scoped", line)
        self.assertEqual(oct(log.stat().st_mode & 0o777), "0o640")
        # Without -v and --log, jail says nothing.
        r = self.jail(["true"])
        self.assertEqual((r.returncode, r.stderr), (0, ""))


class TestConnectOff(JailCase):
    """A site policy with `connect: off`: no notify rule, no listener, no supervisor."""

    def test_site_policy_without_supervisor(self):
        dnsd = self.lab.start_dnsd(allowlist=str(self.lab.write_allowlist(ALLOW)))
        self.addCleanup(dnsd.stop)
        web = self.lab.start_web()
        self.addCleanup(lambda: (web.terminate(), web.wait(10)))
        d = self.tmpdir()
        site = d / "site.yaml"
        site.write_text("extends: default\nnetwork:\n  connect: off\n")
        r = self.jail(["curl", "-4", "-sS", "--max-time", "20", "http://github.com/"],
                      policy=str(site), args=["-v"])
        self.assertEqual((r.returncode, r.stdout), (0, f"{L.GITHUB_A}\n"), r.stderr)
        self.assertIn("seccomp without supervisor (connect: off)", one_line(r.stderr))


class TestCompiledPolicy(JailCase):
    """`jail --compile-policy`: the compiled file is what runs while it matches the YAML, and the
    YAML is what runs once it does not (jail/compiled_policy.h)."""

    def policies(self, site: str) -> Path:
        d = self.tmpdir(0o755)
        shutil.copy(REPO / "policies/jail/default.yaml", d / "default.yaml")
        (d / "site.yaml").write_text(site)
        return d

    def compile(self, d: Path, name: str = "site"):
        r = subprocess.run([JAIL, "--policies-dir", str(d), "--compile-policy", name],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual((r.returncode, r.stdout), (0, f"{d}/{name}.yaml.compiled: written\n"),
                         r.stderr)

    def uname(self, d: Path, *extra):
        return self.jail(["uname", "-s"], policy="site",
                         args=["--policies-dir", str(d), "-v", *extra])

    def test_the_compiled_filter_is_the_one_enforced(self):
        d = self.policies("extends: default\nsyscalls:\n  deny: [uname]\n")
        self.compile(d)
        log = self.tmpdir() / "jail.log"
        r = self.uname(d, "--log", str(log))
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn(f"jail: policy {d}/site.yaml: precompiled ({d}/site.yaml.compiled)",
                      r.stderr)
        self.assertIn("Operation not permitted", r.stderr)
        start = [json.loads(x) for x in log.read_text().splitlines()][0]
        self.assertEqual((start["event"], start["precompiled"], start["policy"]),
                         ("start", True, f"{d}/site.yaml"))

    def test_a_stale_compiled_file_is_not_used_either_way(self):
        # Compiled with uname denied, then the site file allows it again: the YAML decides.
        d = self.policies("extends: default\nsyscalls:\n  deny: [uname]\n")
        self.compile(d)
        (d / "site.yaml").write_text("extends: default\n")
        r = self.uname(d)
        self.assertEqual((r.returncode, r.stdout), (0, "Linux\n"), r.stderr)
        self.assertIn(f"site.yaml.compiled not used: {d}/site.yaml changed since it was "
                      "compiled", r.stderr)
        # Compiled with uname allowed, then the parent file (not the one named) denies it.
        d = self.policies("extends: default\n")
        self.compile(d)
        r = self.uname(d)
        self.assertEqual((r.returncode, r.stdout), (0, "Linux\n"), r.stderr)
        self.assertIn("precompiled", r.stderr)
        text = (d / "default.yaml").read_text().replace("  deny:\n", "  deny:\n    - uname\n", 1)
        self.assertIn("- uname", text)
        (d / "default.yaml").write_text(text)
        r = self.uname(d)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("Operation not permitted", r.stderr)
        self.assertIn(f"not used: {d}/default.yaml changed since it was compiled", r.stderr)

    def test_compile_errors(self):
        d = self.policies("extends: default\nsyscalls:\n  deny: [no_such_call]\n")
        r = subprocess.run([JAIL, "--policies-dir", str(d), "--compile-policy", "site"],
                           capture_output=True, text=True, timeout=60)
        self.assertJailFails(r, 125, rf"^jail: {d}/site\.yaml:3:10: syscalls\.deny: unknown "
                                     r"syscall \"no_such_call\"")
        self.assertFalse((d / "site.yaml.compiled").exists())
        for extra, message in ((["--", "true"], "^jail: --compile-policy runs no PROGRAM"),
                               (["--check-policy", "site"],
                                "^jail: --check-policy and --compile-policy are separate")):
            r = subprocess.run([JAIL, "--policies-dir", str(d), "--compile-policy", "default",
                                *extra], capture_output=True, text=True, timeout=60)
            self.assertJailFails(r, 125, message)
        self.assertFalse((d / "default.yaml.compiled").exists())

    def test_a_damaged_or_loosely_permitted_compiled_file_is_not_used(self):
        d = self.policies("extends: default\nsyscalls:\n  deny: [uname]\n")
        compiled = d / "site.yaml.compiled"
        for damage, reason in ((lambda: compiled.write_bytes(compiled.read_bytes()[:200]),
                                "not used: malformed at byte "),
                               (lambda: compiled.chmod(0o666),
                                f"not used: writable by others, and {d}/site.yaml is not")):
            self.compile(d)
            damage()
            r = self.uname(d)
            self.assertEqual(r.returncode, 1, r.stderr)  # the YAML's filter, uname denied
            self.assertIn(reason, r.stderr)
            c = subprocess.run([JAIL, "--policies-dir", str(d), "--check-policy", "site"],
                               capture_output=True, text=True, timeout=60)
            self.assertEqual(c.returncode, 0, c.stderr)
            self.assertIn(f"{compiled}: {reason}", c.stdout)


class TestUnprivilegedFallback(JailCase):
    """jail without CAP_SYS_ADMIN cannot make a mount namespace: it checks the resolv.conf it
    finds. The test makes a mount namespace of its own (unshare --mount), binds a resolv.conf of
    its choosing over /etc/resolv.conf there, and runs jail as nobody inside it."""

    def setUp(self):
        # jail, its policy and the resolv.conf files where nobody can read them.
        self.d = self.tmpdir(0o755)
        shutil.copy(JAIL, self.d / "jail")
        (self.d / "jail").chmod(0o755)
        shutil.copy(REPO / "policies/jail/default.yaml", self.d / "default.yaml")
        (self.d / "default.yaml").chmod(0o644)

    def run_as_nobody(self, resolv_conf: str, argv):
        rc = self.d / "resolv.conf"
        rc.write_text(resolv_conf)
        rc.chmod(0o644)
        inner = [str(self.d / "jail"), "-v", "--policy", str(self.d / "default.yaml"), "--",
                 *argv]
        # unshare --mount makes / private (util-linux's default propagation), so the bind
        # stays in this namespace.
        cmd = ["unshare", "--mount", "--", "sh", "-c",
               'mount --bind "$0" /etc/resolv.conf && exec setpriv --reuid=65534 '
               '--regid=65534 --clear-groups "$@"', str(rc), *inner]
        return self.lab.run_in_session(cmd, cwd="/", timeout=60)

    def test_sidecar_only_starts(self):
        r = self.run_as_nobody("nameserver 127.0.0.1\noptions timeout:2\n",
                               ["sh", "-c", "id -u; cat /etc/resolv.conf"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, f"{NOBODY}\nnameserver 127.0.0.1\noptions timeout:2\n")
        self.assertIn(f"dns {SIDECAR} verified", one_line(r.stderr))

    def test_foreign_nameserver_refused(self):
        for text in ("nameserver 127.0.0.1\nnameserver 203.0.113.53\n",
                     "nameserver 203.0.113.53\n", "search lab.test\n"):
            with self.subTest(resolv_conf=text):
                r = self.run_as_nobody(text, ["sh", "-c", "echo started"])
                self.assertEqual(r.stdout, "")
                self.assertJailFails(
                    r, 125, r"^jail: dns pin: no mount namespace \(unshare: Operation not "
                            r"permitted\) and /etc/resolv\.conf names .*not only the sidecar "
                            r"127\.0\.0\.1; run jail with CAP_SYS_ADMIN or make that file say "
                            r"only \"nameserver 127\.0\.0\.1\"$")


class TestRealPrograms(JailCase):
    """python3, curl, git, dig, a Go client and a bash pipeline under both policies, with DNS
    through dnsd (the sidecar on 127.0.0.1) and HTTP from the lab's web server."""

    go_bin: Path

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.dnsd = cls.lab.start_dnsd(allowlist=str(cls.lab.write_allowlist(ALLOW)))
        cls.web = cls.lab.start_web()
        cls.go_bin = None
        cls.go_problem = None
        go = shutil.which("go")
        if go is None:
            cls.go_problem = "go not found (scripts/install-deps.sh installs golang-go)"
            return
        out = Path(tempfile.mkdtemp(prefix="jail-go-"))
        out.chmod(0o755)
        cls.go_dir = out
        env = dict(os.environ, GOCACHE=str(out / "cache"), GOPATH=str(out / "gopath"),
                   GOFLAGS="-mod=mod", CGO_ENABLED="0", GOTOOLCHAIN="local")
        r = subprocess.run([go, "build", "-o", str(out / "httpget"), "."], cwd=GO_SRC, env=env,
                           capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            raise RuntimeError(f"go build failed: {r.stderr}")
        cls.go_bin = out / "httpget"

    @classmethod
    def tearDownClass(cls):
        cls.dnsd.stop()
        if getattr(cls, "go_dir", None):
            shutil.rmtree(cls.go_dir, ignore_errors=True)

    def check(self, r, want_stdout=None):
        self.assertEqual(r.returncode, 0, f"stdout={r.stdout!r}\nstderr={r.stderr!r}")
        if want_stdout is not None:
            self.assertEqual(r.stdout, want_stdout, r.stderr)

    def test_python_threads_and_urllib(self):
        prog = ("import threading, urllib.request\n"
                "out = {}\n"
                "def get(i):\n"
                "    out[i] = urllib.request.urlopen('http://github.com/', timeout=20).read()\n"
                "ts = [threading.Thread(target=get, args=(i,)) for i in range(4)]\n"
                "[t.start() for t in ts]; [t.join() for t in ts]\n"
                "print(sorted(set(out.values())))\n")
        for policy in POLICIES:
            with self.subTest(policy=policy):
                r = self.jail(["python3", "-c", prog], policy=policy)
                self.check(r, f"[b'{L.GITHUB_A}\\n']\n")

    def test_curl(self):
        for policy in POLICIES:
            with self.subTest(policy=policy):
                # api.github.com has an AAAA too: -4 makes the expected answer one address.
                r = self.jail(["curl", "-4", "-sS", "--max-time", "20",
                               "http://api.github.com/"], policy=policy)
                self.check(r, f"{L.API_GITHUB_A}\n")
                # By address, over IPv6.
                r = self.jail(["curl", "-sS", "--max-time", "20", "http://[2001:db8:200::7]/"],
                              policy=policy)
                self.check(r, "2001:db8:200::7\n")

    def test_dig_through_the_sidecar(self):
        for policy in POLICIES:
            with self.subTest(policy=policy):
                r = self.jail(["dig", "+short", "+tries=1", "+time=5", "github.com"],
                              policy=policy)
                self.check(r, f"{L.GITHUB_A}\n")
                r = self.jail(["dig", "+short", "+tcp", "+tries=1", "+time=5", "pypi.org",
                               "AAAA"], policy=policy)
                self.check(r, f"{L.PYPI_AAAA}\n")

    def test_git(self):
        for policy in POLICIES:
            with self.subTest(policy=policy):
                d = self.tmpdir()
                script = (f"cd {d} && git init -q repo && cd repo && echo hi > f && "
                          "git add f && git -c user.email=t@lab.test -c user.name=t "
                          "commit -q -m first && git log --format=%s && git status --short "
                          "&& git ls-files")
                r = self.jail(["bash", "-c", script], policy=policy)
                self.check(r, "first\nf\n")

    def test_go_http_client(self):
        if self.go_bin is None:
            if os.environ.get("CI") == "true":
                self.fail(self.go_problem)
            self.skipTest(self.go_problem)
        for policy in POLICIES:
            with self.subTest(policy=policy):
                r = self.jail([str(self.go_bin), "http://github.com/"], policy=policy)
                self.check(r, f"{L.GITHUB_A}\n")

    def test_bash_pipeline(self):
        for policy in POLICIES:
            with self.subTest(policy=policy):
                r = self.jail(["bash", "-c", "seq 1000 | sort -r | head -1"], policy=policy)
                self.check(r, "999\n")  # sort -r compares text


if __name__ == "__main__":
    L.test_main()
