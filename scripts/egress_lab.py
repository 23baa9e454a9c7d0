#!/usr/bin/python3
"""The egress test lab: two network namespaces, a real authoritative server, dnsd in between.

    internet namespace                              session namespace
    ┌──────────────────────────────────────┐  veth  ┌─────────────────────────────┐
    │ eth0 198.51.100.1/24 2001:db8:100::1 ├────────┤ eth0 198.51.100.2/24        │
    │      198.51.100.53   2001:db8:100::53│        │      2001:db8:100::2/64     │
    │ nsd on .53 (zones written by the lab)│        │ default routes: internet .1 │
    │ local routes: 192.0.2.0/24,          │        │ dnsd on 127.0.0.1:53, ::1   │
    │   203.0.113.0/24, 198.19.0.0/16,     │        │ /etc/netns/NAME/resolv.conf │
    │   2001:db8:200::/48                  │        │   -> nameserver 127.0.0.1   │
    │ blackhole: 198.18.0.53               │        │                             │
    └──────────────────────────────────────┘        └─────────────────────────────┘

Every address is in a documentation range (RFC 5737, RFC 3849, RFC 2544's 198.18.0.0/15) and the
namespaces have no link to anything else, so no packet can leave the lab. The HTTP ranges are
"AnyIP" local routes in the internet namespace: every address in them is local there, so a server
can bind any of them and a connection to one with no server gets an immediate RST.

Everything a Lab creates (namespaces, /etc/netns/NAME, processes, its temp dir) is removed by
close(), which runs from __exit__, from an atexit hook and, through the SIGTERM/SIGHUP handlers this
module installs (they raise KeyboardInterrupt), on those signals too. Namespace names are
"egress-<pid>-<n>-session|internet"; cleanup_stale() removes the ones whose pid is dead.

Library use (dnspython is the only third-party dependency):

    with Lab() as lab:
        lab.start_dnsd(allowlist=lab.write_allowlist(["github.com"]))
        r = lab.query("github.com", "A")           # dnspython, sent from the session namespace
        lab.run_in_session(["dig", "@127.0.0.1", "github.com"])

Command line (the README's "run" command):

    /usr/bin/python3 scripts/egress_lab.py up --allowlist policies/allowlist.yaml [--shell]
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import ipaddress
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Mapping, Optional, Sequence

import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype

# --- addresses ------------------------------------------------------------------------------

SESSION_V4 = "198.51.100.2"
SESSION_V6 = "2001:db8:100::2"
INTERNET_V4 = "198.51.100.1"  # also the "upstream that refuses": nothing listens on :53 here
INTERNET_V6 = "2001:db8:100::1"
UPSTREAM_V4 = "198.51.100.53"  # nsd
UPSTREAM_V6 = "2001:db8:100::53"
BLACKHOLE_V4 = "198.18.0.53"  # routed into a blackhole: a query to it is never answered
REFUSING_V4 = INTERNET_V4  # ICMP port unreachable for :53
# 198.19.0.0/16 (half of RFC 2544's range, clear of the blackhole) gives tests thousands of
# distinct server addresses.
LOCAL_PREFIXES = ("192.0.2.0/24", "203.0.113.0/24", "198.19.0.0/16", "2001:db8:200::/48")

# Addresses the zones publish (and tests compare against).
GITHUB_A = "192.0.2.10"
API_GITHUB_A = "192.0.2.11"
API_GITHUB_AAAA = "2001:db8:200::11"
GITHUB_WILDCARD_A = "192.0.2.20"
GITHUB_WILDCARD_AAAA = "2001:db8:200::20"
PYPI_A = "192.0.2.40"
PYPI_AAAA = "2001:db8:200::40"
FILES_PYTHONHOSTED_A = "203.0.113.41"
DEB_DEBIAN_A = "203.0.113.50"
DEB_DEBIAN_AAAA = "2001:db8:200::50"
EXAMPLE_ORG_A = "203.0.113.60"
CDN_NODE_A = "203.0.113.70"
CDN_NODE_AAAA = "2001:db8:200::70"
DEEP_A = "203.0.113.80"
# Eight TXT records of 200 octets: ~1.7 kB, above 1232 (nsd truncates UDP there, so c-ares must
# retry over TCP) and above 512 (a client without EDNS gets TC=1 from dnsd).
BIG_TXT_STRINGS = tuple(f"big-{i:02d}-" + "x" * 192 for i in range(8))

DEFAULT_LISTEN = ("127.0.0.1:53", "[::1]:53")
PROBE_NAME = "egress-lab-probe.invalid."  # readiness probe; filtered out of query_log()

_REPO = Path(__file__).resolve().parent.parent
_CLONE_NEWNET = 0x40000000
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_libc = ctypes.CDLL(None, use_errno=True)

# --- cleanup on exit and signals ------------------------------------------------------------

_live_labs: "list[Lab]" = []
_handlers_installed = False


def _close_live_labs() -> None:
    for lab in list(_live_labs):
        lab.close()


def _raise_interrupt(signum, _frame):
    # KeyboardInterrupt (not SystemExit): unittest records SystemExit from a test as an error and
    # carries on, while KeyboardInterrupt unwinds everything, running finally blocks and atexit.
    raise KeyboardInterrupt(f"signal {signum}")


def _install_handlers() -> None:
    global _handlers_installed
    if _handlers_installed:
        return
    _handlers_installed = True
    atexit.register(_close_live_labs)
    # Orphans of lab processes (nsd's children when its main process stops first) become our
    # children, so close() can reap them instead of leaving zombies to init.
    _libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be set from the main thread
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) in (signal.SIG_DFL, None):
            signal.signal(sig, _raise_interrupt)
    # SIGINT: Python's default handler already raises KeyboardInterrupt.


def _child_setup() -> None:
    # Children die with the test process even when it is SIGKILLed (ctest's timeout does that).
    # Kept across `ip netns exec`'s execve.
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


# --- privileges -----------------------------------------------------------------------------

def privilege_problem() -> Optional[str]:
    """Why the lab cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "integration tests need root (network namespaces)"
    for tool in ("ip", "nsd", "dig"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            return f"{tool} not found (scripts/install-deps.sh installs it)"
    probe = f"egress-{os.getpid()}-probe"
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if r.returncode != 0:
        return f"'ip netns add' failed: {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def kernel_at_least(major: int, minor: int) -> bool:
    """The running kernel's release (uname) is at least major.minor."""
    m = re.match(r"(\d+)\.(\d+)", os.uname().release)
    return m is not None and (int(m.group(1)), int(m.group(2))) >= (major, minor)


def require_privileges_or_skip() -> None:
    """For setUpModule: CI=true -> fail; elsewhere -> unittest.SkipTest with the reason."""
    import unittest

    problem = privilege_problem()
    if problem is None:
        return
    if os.environ.get("CI") == "true":
        raise RuntimeError(f"privileged test cannot run in CI: {problem}")
    print(f"SKIP: {problem}", file=sys.stderr)
    raise unittest.SkipTest(problem)


SKIP_EXIT = 77  # ctest's SKIP_RETURN_CODE for the integration tests


def test_main(check: Callable[[], Optional[str]] = privilege_problem) -> None:
    """`if __name__ == "__main__"` of a test file: `check` (the lab's privilege check unless the
    file needs another), then unittest.main. CI=true turns a problem into a failure."""
    import unittest

    problem = check()
    if problem is not None:
        if os.environ.get("CI") == "true":
            print(f"FAIL: privileged test cannot run in CI: {problem}", file=sys.stderr)
            sys.exit(1)
        print(f"SKIP: {problem}", file=sys.stderr)
        sys.exit(SKIP_EXIT)
    unittest.main(verbosity=2)


# --- stale namespaces -----------------------------------------------------------------------

def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner_pid(name: str) -> Optional[int]:
    for part in name.split("-")[1:]:
        if part.isdigit():
            return int(part)
    return None


def _netns_pids(name: str) -> list:
    r = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True)
    return [int(p) for p in r.stdout.split() if p.isdigit()]


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


def _reap(pids: Iterable[int], timeout: float = 5.0) -> None:
    """Waits (bounded) until `pids` are gone. Orphans re-parented to us (we are a child
    subreaper, see _install_handlers) are reaped here, so no zombie outlives the lab."""
    pending = set(pids)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for pid in list(pending):
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    pending.discard(pid)
            except ChildProcessError:  # not our child: its parent reaps it
                if _gone(pid):
                    pending.discard(pid)
        if pending:
            time.sleep(0.02)


def _kill_netns_pids(name: str, timeout: float = 5.0) -> None:
    """SIGKILL every process in namespace `name` and wait (bounded) until none is left."""
    deadline = time.monotonic() + timeout
    while True:
        pids = _netns_pids(name)
        if not pids or time.monotonic() > deadline:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


def cleanup_stale() -> list:
    """Remove "egress-" namespaces (and /etc/netns dirs) whose owner pid is dead. Returns names."""
    removed = []
    names = set()
    for d in (Path("/run/netns"), Path("/etc/netns")):
        if d.is_dir():
            names.update(p.name for p in d.iterdir() if p.name.startswith("egress-"))
    for name in sorted(names):
        pid = _owner_pid(name)
        if pid is None or pid == os.getpid() or _pid_alive(pid):
            continue
        if Path("/run/netns", name).exists():
            inside = _netns_pids(name)
            _kill_netns_pids(name)
            _reap(inside)
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        shutil.rmtree(Path("/etc/netns", name), ignore_errors=True)
        removed.append(name)
    with contextlib.suppress(OSError):
        Path("/etc/netns").rmdir()  # only when empty
    return removed


# --- zones ----------------------------------------------------------------------------------

def _soa(origin: str) -> str:
    # SOA minimum 5 s: negative answers from nsd are short-lived too.
    return (f"$ORIGIN {origin}.\n$TTL 300\n"
            f"@ IN SOA ns1.lab.test. hostmaster.lab.test. 1 3600 600 86400 5\n"
            f"@ IN NS ns1.lab.test.\n")


def default_zones() -> "dict[str, str]":
    """origin -> zone body (records after SOA/NS). All addresses in documentation ranges."""
    big = "\n".join(f'big TXT "{s}"' for s in BIG_TXT_STRINGS)
    return {
        "github.com": f"""
            @      A     {GITHUB_A}
            www    CNAME github.com.
            api    A     {API_GITHUB_A}
            api    AAAA  {API_GITHUB_AAAA}
            raw    MX    10 mail.github.com.
            raw    TXT   "v=spf1 -all"
            mail   A     192.0.2.13
            short 2 A    192.0.2.14
            *      A     {GITHUB_WILDCARD_A}
            *      AAAA  {GITHUB_WILDCARD_AAAA}
        """,
        "githubusercontent.com": """
            raw      A  192.0.2.30
            objects  A  192.0.2.31
            *        A  192.0.2.32
        """,
        "pypi.org": f"""
            @    A     {PYPI_A}
            @    AAAA  {PYPI_AAAA}
            www  CNAME pypi.org.
        """,
        "pythonhosted.org": f"""
            files  A  {FILES_PYTHONHOSTED_A}
        """,
        "debian.org": f"""
            deb  A     {DEB_DEBIAN_A}
            deb  AAAA  {DEB_DEBIAN_AAAA}
        """,
        "example.org": f"""
            @    A  {EXAMPLE_ORG_A}
            www  A  {EXAMPLE_ORG_A}
        """,
        "cdn.example": f"""
            www   CNAME edge.cdn.example.
            edge  CNAME node.cdn.example.
            node  A     {CDN_NODE_A}
            node  AAAA  {CDN_NODE_AAAA}
        """,
        "txt.test": f"""
            small TXT "hello"
            {big}
        """,
        "deep.test": f"""
            a.b.c  A  {DEEP_A}
            x      A  203.0.113.81
        """,
        "ttl.test": """
            ttl1 1    A  203.0.113.90
            ttl2 2    A  203.0.113.91
            ttl5 5    A  203.0.113.92
            long 3600 A  203.0.113.93
        """,
        "lab.test": f"""
            ns1  A     {UPSTREAM_V4}
            ns1  AAAA  {UPSTREAM_V6}
        """,
    }


def _zone_text(origin: str, body: str) -> str:
    lines = [ln.strip() for ln in textwrap.dedent(body).splitlines() if ln.strip()]
    return _soa(origin) + "\n".join(lines) + "\n"


# --- the lab --------------------------------------------------------------------------------

class Dnsd:
    """One dnsd process started by Lab.start_dnsd."""

    def __init__(self, proc: subprocess.Popen, argv: list, stdout: Path, stderr: Path):
        self.proc, self.argv, self.stdout_path, self.stderr_path = proc, argv, stdout, stderr

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def query_log(self, include_probes: bool = False) -> list:
        """Parsed JSON lines of stdout. A line that is not JSON raises ValueError naming it."""
        out = []
        # JSON is UTF-8 (RFC 8259 §8.1): raw octets from a query name must have been escaped.
        raw = self.stdout_path.read_bytes()
        lines = raw.split(b"\n")[:-1]  # a last line without "\n" is still being written
        for n, bline in enumerate(lines, 1):
            try:
                line = bline.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ValueError(f"dnsd stdout line {n} is not UTF-8 ({e}): {bline!r}") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"dnsd stdout line {n} is not JSON ({e}): {line!r}") from None
            if not include_probes and str(obj.get("name", "")).lower() == PROBE_NAME:
                continue
            out.append(obj)
        return out

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 5.0) -> Optional[int]:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


class Lab:
    """A session namespace running dnsd and an internet namespace running nsd. See module doc."""

    _counter = itertools.count()

    def __init__(self, extra_zones: Optional[Mapping[str, str]] = None,
                 dnsd_path: Optional[str] = None, keep_tmp: bool = False):
        self.extra_zones = dict(extra_zones or {})
        self.dnsd_path = dnsd_path or os.environ.get("DNSD") or str(_REPO / "build/dnsd/dnsd")
        self.keep_tmp = keep_tmp
        n = next(Lab._counter)
        self.session = f"egress-{os.getpid()}-{n}-session"
        self.internet = f"egress-{os.getpid()}-{n}-internet"
        self.tmp: Optional[Path] = None
        self.nsd_proc: Optional[subprocess.Popen] = None
        self.dnsd: Optional[Dnsd] = None
        self._procs: "list[subprocess.Popen]" = []
        self._namespaces: "list[str]" = []
        self._etc_netns: Optional[Path] = None
        self._dnsd_count = itertools.count()
        self._closed = False

    # context manager ---------------------------------------------------------------------
    def __enter__(self) -> "Lab":
        self.up()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def up(self) -> "Lab":
        _install_handlers()
        _live_labs.append(self)
        try:
            cleanup_stale()
            self.tmp = Path(tempfile.mkdtemp(prefix=f"egress-lab-{os.getpid()}-"))
            self._make_network()
            self._write_etc_netns()
            self._start_servers()
        except BaseException:
            self.close()
            raise
        return self

    def _start_servers(self) -> None:
        self.start_nsd()

    def close(self) -> None:
        """Remove everything this lab created. Idempotent; never raises."""
        if self._closed:
            return
        self._closed = True
        inside = []
        with contextlib.suppress(Exception):
            inside = [pid for ns in self._namespaces for pid in _netns_pids(ns)]
        for p in reversed(self._procs):
            _stop_proc(p)
        for ns in self._namespaces:
            with contextlib.suppress(Exception):
                _kill_netns_pids(ns)
        with contextlib.suppress(Exception):
            _reap(inside)
        for ns in self._namespaces:
            with contextlib.suppress(Exception):
                subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        if self._etc_netns is not None:
            shutil.rmtree(self._etc_netns, ignore_errors=True)
            with contextlib.suppress(OSError):
                Path("/etc/netns").rmdir()  # only when empty: other labs may be running
        if self.tmp is not None and not self.keep_tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
        with contextlib.suppress(ValueError):
            _live_labs.remove(self)

    # network -----------------------------------------------------------------------------
    def _ip(self, *args: str) -> None:
        r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip()}")

    def _make_network(self) -> None:
        s, i = self.session, self.internet
        for ns in (s, i):
            self._ip("netns", "add", ns)
            self._namespaces.append(ns)
            self._ip("-n", ns, "link", "set", "lo", "up")
            # No duplicate address detection: addresses (link-local too) are usable at once,
            # instead of ~1 s of tentative state delaying the first IPv6 packets.
            self.run_in(ns, ["sysctl", "-q", "-w", "net.ipv6.conf.all.accept_dad=0",
                             "net.ipv6.conf.default.accept_dad=0"], check=True)
        # Created inside the namespaces: no interface ever appears in the caller's namespace.
        self._ip("-n", s, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", i)
        self._ip("-n", s, "addr", "add", f"{SESSION_V4}/24", "dev", "eth0")
        self._ip("-n", s, "-6", "addr", "add", f"{SESSION_V6}/64", "dev", "eth0", "nodad")
        self._ip("-n", i, "addr", "add", f"{INTERNET_V4}/24", "dev", "eth0")
        self._ip("-n", i, "-6", "addr", "add", f"{INTERNET_V6}/64", "dev", "eth0", "nodad")
        # The resolver's addresses sit on the veth itself so ARP/ND answer for them.
        self._ip("-n", i, "addr", "add", f"{UPSTREAM_V4}/32", "dev", "eth0")
        self._ip("-n", i, "-6", "addr", "add", f"{UPSTREAM_V6}/128", "dev", "eth0", "nodad")
        for ns in (s, i):
            self._ip("-n", ns, "link", "set", "eth0", "up")
        self._wait_link_up()
        self._ip("-n", s, "route", "add", "default", "via", INTERNET_V4)
        self._ip("-n", s, "-6", "route", "add", "default", "via", INTERNET_V6)
        for prefix in LOCAL_PREFIXES:
            fam = "-6" if ":" in prefix else "-4"
            self._ip("-n", i, fam, "route", "add", "local", prefix, "dev", "lo")
        self._ip("-n", i, "route", "add", "blackhole", f"{BLACKHOLE_V4}/32")
        # Servers may bind any address of the IPv6 AnyIP prefix.
        self.run_in_internet(["sysctl", "-q", "-w", "net.ipv6.ip_nonlocal_bind=1"], check=True)

    def _wait_link_up(self, timeout: float = 10.0) -> None:
        # The kernel's linkwatch turns the carrier on up to a second after `link set up`; packets
        # sent before are dropped (a lost first neighbour solicitation costs a 1 s retransmit).
        deadline = time.monotonic() + timeout
        for ns in (self.session, self.internet):
            while True:
                r = subprocess.run(["ip", "-n", ns, "-j", "link", "show", "eth0"],
                                   capture_output=True, text=True)
                with contextlib.suppress(ValueError, IndexError, KeyError):
                    if json.loads(r.stdout)[0]["operstate"] == "UP":
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"eth0 in {ns} not up after {timeout} s: {r.stdout}")
                time.sleep(0.05)

    def _write_etc_netns(self) -> None:
        # `ip netns exec` bind-mounts /etc/netns/NAME/* over /etc/*: getent, glibc and Python's
        # getaddrinfo in the session then use dnsd, and the host's /etc/hosts does not interfere.
        d = Path("/etc/netns", self.session)
        for attempt in range(10):  # another lab's close() may rmdir an empty /etc/netns
            try:
                Path("/etc/netns").mkdir(exist_ok=True)
                d.mkdir()
                break
            except FileNotFoundError:
                if attempt == 9:
                    raise
        self._etc_netns = d
        (d / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:2 attempts:2\n")
        (d / "hosts").write_text("127.0.0.1 localhost\n::1 localhost ip6-localhost\n")

    # running things ----------------------------------------------------------------------
    def _netns_argv(self, ns: str, argv: Sequence[str]) -> list:
        return ["ip", "netns", "exec", ns, *map(str, argv)]

    def run_in(self, ns: str, argv: Sequence[str], check: bool = False, timeout: float = 30,
               **kw) -> subprocess.CompletedProcess:
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        return subprocess.run(self._netns_argv(ns, argv), check=check, timeout=timeout,
                              preexec_fn=_child_setup, **kw)

    def popen_in(self, ns: str, argv: Sequence[str], **kw) -> subprocess.Popen:
        """Started in `ns`; stopped by close() if the caller does not stop it."""
        kw.setdefault("stdin", subprocess.DEVNULL)
        p = subprocess.Popen(self._netns_argv(ns, argv), preexec_fn=_child_setup, **kw)
        self._procs.append(p)
        return p

    def run_in_session(self, argv, **kw):
        return self.run_in(self.session, argv, **kw)

    def run_in_internet(self, argv, **kw):
        return self.run_in(self.internet, argv, **kw)

    def popen_in_session(self, argv, **kw):
        return self.popen_in(self.session, argv, **kw)

    def popen_in_internet(self, argv, **kw):
        return self.popen_in(self.internet, argv, **kw)

    @contextlib.contextmanager
    def netns(self, ns: str):
        """Run the body with this thread in `ns`: sockets created inside stay in `ns`."""
        orig = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(f"/run/netns/{ns}", os.O_RDONLY)
        try:
            if _libc.setns(target, _CLONE_NEWNET) != 0:
                e = ctypes.get_errno()
                raise OSError(e, f"setns({ns}): {os.strerror(e)}")
            try:
                yield
            finally:
                if _libc.setns(orig, _CLONE_NEWNET) != 0:  # cannot happen short of a kernel bug
                    os._exit(99)
        finally:
            os.close(orig)
            os.close(target)

    def session_socket(self, family=socket.AF_INET, type=socket.SOCK_DGRAM) -> socket.socket:
        with self.netns(self.session):
            return socket.socket(family, type)

    # DNS from the session ----------------------------------------------------------------
    def query(self, name, rdtype="A", server="127.0.0.1", port=53, tcp=False, timeout=3.0,
              message: Optional[dns.message.Message] = None, **make_query_kw) -> dns.message.Message:
        """A dnspython query sent from the session namespace. Raises dns.exception.Timeout."""
        q = message or dns.message.make_query(name, rdtype, **make_query_kw)
        with self.netns(self.session):
            if tcp:
                return dns.query.tcp(q, server, timeout=timeout, port=port)
            return dns.query.udp(q, server, timeout=timeout, port=port, ignore_unexpected=True)

    def dig(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return self.run_in_session(["dig", *args], timeout=timeout)

    # nsd ---------------------------------------------------------------------------------
    def zones(self) -> "dict[str, str]":
        """origin -> full zone file text. Override or pass extra_zones= to extend."""
        bodies = default_zones()
        bodies.update(self.extra_zones)
        return {origin: _zone_text(origin, body) for origin, body in bodies.items()}

    def _write_nsd_conf(self) -> Path:
        d = self.tmp / "nsd"
        d.mkdir(exist_ok=True)
        zone_stanzas = []
        for origin, text in self.zones().items():
            (d / f"{origin}.zone").write_text(text)
            zone_stanzas.append(f"zone:\n  name: {origin}\n  zonefile: {origin}.zone\n")
        conf = d / "nsd.conf"
        conf.write_text(textwrap.dedent(f"""\
            server:
              username: ""
              chroot: ""
              database: ""
              zonesdir: "{d}"
              pidfile: "{d}/nsd.pid"
              xfrdfile: "{d}/xfrd.state"
              xfrdir: "{d}"
              zonelistfile: "{d}/zone.list"
              logfile: "{d}/nsd.log"
              ip-address: {UPSTREAM_V4}
              ip-address: {UPSTREAM_V6}
              port: 53
              server-count: 1
              verbosity: 0
              hide-version: yes
              hide-identity: yes
              round-robin: no
            remote-control:
              control-enable: no
            """) + "".join(zone_stanzas))
        return conf

    def start_nsd(self, timeout: float = 10.0) -> None:
        conf = self._write_nsd_conf()
        log = open(self.tmp / "nsd" / "nsd.stderr", "wb")
        with log:
            self.nsd_proc = self.popen_in_internet(["/usr/sbin/nsd", "-d", "-c", str(conf)],
                                                   stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            if self.nsd_proc.poll() is not None:
                raise RuntimeError(f"nsd exited with {self.nsd_proc.returncode}:\n{self.nsd_log()}")
            try:
                r = self.query("github.com", "SOA", server=UPSTREAM_V4, timeout=0.5)
                if r.rcode() == dns.rcode.NOERROR and r.answer:
                    return
            except Exception:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"nsd did not answer within {timeout} s:\n{self.nsd_log()}")
            time.sleep(0.1)

    def stop_nsd(self) -> None:
        if self.nsd_proc is not None:
            inside = _netns_pids(self.internet)
            _stop_proc(self.nsd_proc)
            _reap(inside)  # nsd's server and xfrd children
            self._procs.remove(self.nsd_proc)
            self.nsd_proc = None

    def restart_nsd(self) -> None:
        """Rewrites the zones (after extra_zones changed) and starts nsd again."""
        self.stop_nsd()
        self.start_nsd()

    def nsd_log(self) -> str:
        parts = []
        for f in ("nsd.stderr", "nsd.log"):
            p = self.tmp / "nsd" / f
            if p.exists():
                parts.append(p.read_text(errors="replace"))
        return "".join(parts)

    # dnsd --------------------------------------------------------------------------------
    def write_allowlist(self, domains: Iterable[str] = (), networks: Iterable[str] = (),
                        path: Optional[Path] = None, text: Optional[str] = None) -> Path:
        """Writes an allowlist (in place when `path` exists) and returns its path."""
        if text is None:
            text = "domains:\n" + "".join(f'  - "{d}"\n' for d in domains)
            nets = list(networks)
            if nets:
                text += "networks:\n" + "".join(f"  - {n}\n" for n in nets)
        if path is None:
            path = Path(tempfile.mkstemp(prefix="allowlist-", suffix=".yaml", dir=self.tmp)[1])
        Path(path).write_text(text)
        return Path(path)

    def dnsd_argv(self, args: Sequence[str] = (), config: Optional[str] = None,
                  allowlist: Optional[str] = None, upstream: Optional[Sequence[str]] = None,
                  listen: Sequence[str] = DEFAULT_LISTEN, log_queries: bool = True) -> list:
        argv = [self.dnsd_path]
        if config is not None:
            argv += ["--config", str(config)]
        for l in listen:
            argv += ["--listen", l]
        for u in (upstream if upstream is not None else [UPSTREAM_V4]):
            argv += ["--upstream", u]
        if "--nft-mode" not in map(str, args):  # the lab's default; a test may ask for another
            argv += ["--nft-mode", "off"]
        if allowlist is not None:
            argv += ["--allowlist", str(allowlist)]
        if log_queries:
            argv += ["--log-queries"]
        return argv + [str(a) for a in args]

    def start_dnsd(self, args: Sequence[str] = (), config: Optional[str] = None,
                   allowlist: Optional[str] = None, upstream: Optional[Sequence[str]] = None,
                   listen: Sequence[str] = DEFAULT_LISTEN, log_queries: bool = True,
                   wait: bool = True, timeout: float = 10.0) -> Dnsd:
        """Starts dnsd in the session namespace; waits until every UDP listen address answers."""
        if not os.access(self.dnsd_path, os.X_OK):
            raise RuntimeError(f"dnsd binary not found or not executable: {self.dnsd_path} "
                               "(set DNSD or build it)")
        argv = self.dnsd_argv(args, config, allowlist, upstream, listen, log_queries)
        n = next(self._dnsd_count)
        out, err = self.tmp / f"dnsd-{n}.stdout", self.tmp / f"dnsd-{n}.stderr"
        with open(out, "wb") as fo, open(err, "wb") as fe:
            proc = self.popen_in_session(argv, stdout=fo, stderr=fe)
        d = Dnsd(proc, argv, out, err)
        self.dnsd = d
        if wait:
            # Without --listen, dnsd listens where its config (or its default) says.
            self.wait_dnsd(d, listen or DEFAULT_LISTEN, timeout)
        return d

    def wait_dnsd(self, d: Dnsd, listen: Sequence[str] = DEFAULT_LISTEN,
                  timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        for addr, port in map(split_hostport, listen):
            while True:
                if not d.running():
                    raise RuntimeError(f"dnsd exited with {d.proc.returncode}: {d.argv}\n"
                                       f"stderr:\n{d.stderr()}")
                try:
                    self.query(PROBE_NAME, "A", server=addr, port=port, timeout=0.3)
                    break
                except Exception:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"dnsd did not answer on {addr}:{port} within {timeout} s\n"
                                       f"stderr:\n{d.stderr()}")
                time.sleep(0.05)

    def stop_dnsd(self) -> Optional[int]:
        if self.dnsd is None:
            return None
        rc = self.dnsd.stop()
        with contextlib.suppress(ValueError):
            self._procs.remove(self.dnsd.proc)
        return rc

    def dnsd_stderr(self) -> str:
        return self.dnsd.stderr() if self.dnsd else ""

    def query_log(self) -> list:
        return self.dnsd.query_log() if self.dnsd else []

    # HTTP --------------------------------------------------------------------------------
    def start_http(self, address: str = GITHUB_A, port: int = 80,
                   directory: Optional[Path] = None, timeout: float = 10.0) -> subprocess.Popen:
        """python3 -m http.server on address:port in the internet namespace; waits until a TCP
        connection from the session namespace succeeds."""
        if directory is None:
            directory = self.tmp / "www"
            directory.mkdir(exist_ok=True)
            (directory / "index.html").write_text("egress lab\n")
        p = self.popen_in_internet(
            ["/usr/bin/python3", "-m", "http.server", "--bind", address, "--directory",
             str(directory), str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        fam = socket.AF_INET6 if ":" in address else socket.AF_INET
        deadline = time.monotonic() + timeout
        while True:
            if p.poll() is not None:
                raise RuntimeError(f"http.server on {address}:{port} exited with {p.returncode}")
            s = self.session_socket(fam, socket.SOCK_STREAM)
            try:
                s.settimeout(0.5)
                s.connect((address, port))
                return p
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"http.server on {address}:{port} not reachable") from None
                time.sleep(0.1)
            finally:
                s.close()

    def start_web(self, port: int = 80, timeout: float = 10.0) -> subprocess.Popen:
        """A TCP server in the internet namespace on every address there ([::]:port, dual-stack),
        so on every address of LOCAL_PREFIXES. A connection whose first line starts with "GET "
        or "HEAD " gets an HTTP/1.0 200 whose body is the address it reached (IPv4 without the
        ::ffff: prefix) and a newline; any other connection is echoed line by line until EOF
        (a long-lived connection for tests of established flows). Readiness is probed from the
        internet namespace itself: the session's firewall may already be closed."""
        p = self.popen_in_internet(["/usr/bin/python3", "-c", _WEB_SERVER, str(port)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        for addr in ("192.0.2.1", "2001:db8:200::1"):
            while True:
                if p.poll() is not None:
                    raise RuntimeError(f"web server on [::]:{port} exited with {p.returncode}")
                with self.netns(self.internet):
                    s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET,
                                      socket.SOCK_STREAM)
                try:
                    s.settimeout(0.5)
                    s.connect((addr, port))
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"web server not reachable on {addr}:{port}") from None
                    time.sleep(0.05)
                finally:
                    s.close()
        return p


# --- --upstream system: the host's resolver and network instead of the lab's ----------------

# The session's link to the host: a /30 per lab from the benchmarking range, clear of the lab's
# own addresses (198.18.0.53 is the lab's blackhole; the other labs never use 198.18.255.0/24).
SYSTEM_LINK_BASE = "198.18.255."


def host_resolvers(resolv_text: str) -> "list[str]":
    """The nameservers of a resolv.conf that a separate network namespace can reach: loopback
    resolvers (systemd-resolved's 127.0.0.53, a local dnsmasq) live in the host's namespace
    only, and link-local IPv6 needs a scope the session's link does not have."""
    out = []
    for line in resolv_text.splitlines():
        f = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(f) != 2 or f[0] != "nameserver":
            continue
        try:
            addr = ipaddress.ip_address(f[1])
        except ValueError:
            continue  # "fe80::1%eth0" and garbage
        if addr.is_loopback or addr.is_link_local or addr.is_unspecified:
            continue
        out.append(str(addr))
    return out


def system_plan(session: str, host_if: str, n: int, nft_table: str) -> dict:
    """The commands that join a session namespace to the host and NAT it out through the
    host's own routes, and the commands that undo them. Pure: tests read it without running."""
    if not 0 <= n < 64:
        raise ValueError("at most 64 system labs at once")
    host_ip, session_ip = f"{SYSTEM_LINK_BASE}{4 * n + 1}", f"{SYSTEM_LINK_BASE}{4 * n + 2}"
    up = [
        # Created in the caller's namespace with the other end moved into the session's.
        ["ip", "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", session],
        ["ip", "addr", "add", f"{host_ip}/30", "dev", host_if],
        ["ip", "link", "set", host_if, "up"],
        ["ip", "-n", session, "addr", "add", f"{session_ip}/30", "dev", "eth0"],
        ["ip", "-n", session, "link", "set", "eth0", "up"],
        ["ip", "-n", session, "route", "add", "default", "via", host_ip],
        ["nft", "-f", "-"],  # stdin: the table below
    ]
    table = (f"table ip {nft_table} {{\n"
             f"  chain postrouting {{ type nat hook postrouting priority srcnat; policy accept;\n"
             f"    ip saddr {session_ip} oifname != \"{host_if}\" masquerade\n  }}\n"
             f"  chain forward {{ type filter hook forward priority filter - 1; policy accept;\n"
             f"    iifname \"{host_if}\" accept\n"
             f"    oifname \"{host_if}\" ct state established,related accept\n  }}\n}}\n")
    down = [["nft", "delete", "table", "ip", nft_table],
            ["ip", "link", "del", host_if]]
    return {"host_ip": host_ip, "session_ip": session_ip, "up": up, "nft": table, "down": down}


class SystemLab(Lab):
    """A session namespace like the lab's, but joined to the host: dnsd forwards to the host's
    own resolvers and allowed traffic leaves through the host's routes (NAT). For a machine
    with internet access; the tests only check how it is planned and parsed."""

    _sys_counter = itertools.count()

    def __init__(self, upstreams: Sequence[str], **kw):
        super().__init__(**kw)
        self.upstreams = list(upstreams)
        self._n = next(SystemLab._sys_counter)
        self._host_if = f"egs{os.getpid() % 100000}{self._n}"[:15]
        self._nft_table = f"egress_lab_nat_{os.getpid()}_{self._n}"
        self._plan = system_plan(self.session, self._host_if, self._n, self._nft_table)
        self._forward_was: Optional[str] = None
        self.internet = ""  # none: the host is the internet

    # Lab.up() builds the lab through these: a session namespace joined to the host, no
    # authoritative server of its own.
    def _make_network(self) -> None:
        self._ip("netns", "add", self.session)
        self._namespaces.append(self.session)
        self._ip("-n", self.session, "link", "set", "lo", "up")
        for argv in self._plan["up"]:
            r = subprocess.run(argv, input=self._plan["nft"] if argv[0] == "nft" else None,
                               capture_output=True, text=True, timeout=30)
            if r.returncode != 0:
                raise RuntimeError(f"{' '.join(argv)}: {r.stderr.strip()}")
        fwd = Path("/proc/sys/net/ipv4/ip_forward")
        self._forward_was = fwd.read_text().strip()
        fwd.write_text("1\n")

    def _start_servers(self) -> None:
        pass

    def close(self) -> None:
        if self._closed:
            return
        for argv in self._plan["down"]:
            with contextlib.suppress(Exception):
                subprocess.run(argv, capture_output=True, timeout=30)
        if self._forward_was is not None:
            with contextlib.suppress(OSError):
                Path("/proc/sys/net/ipv4/ip_forward").write_text(self._forward_was + "\n")
        super().close()

    def start_nsd(self, timeout: float = 10.0) -> None:
        raise RuntimeError("--upstream system has no lab resolver")

    def dnsd_argv(self, args: Sequence[str] = (), config=None, allowlist=None, upstream=None,
                  listen: Sequence[str] = DEFAULT_LISTEN, log_queries: bool = True) -> list:
        return super().dnsd_argv(args, config, allowlist,
                                 upstream if upstream is not None else self.upstreams,
                                 listen, log_queries)


# Run by Lab.start_web with `python3 -c`; argv[1] is the port.
_WEB_SERVER = r"""
import socket, socketserver, sys

class Handler(socketserver.StreamRequestHandler):
    timeout = 30

    def handle(self):
        local = self.connection.getsockname()[0]
        if local.startswith("::ffff:"):
            local = local[len("::ffff:"):]
        line = self.rfile.readline(8192)
        if line.startswith((b"GET ", b"HEAD ")):
            while self.rfile.readline(8192) not in (b"\r\n", b"\n", b""):
                pass
            body = (local + "\n").encode()
            self.wfile.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n"
                             b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
                             + body)
            return
        while line:
            self.wfile.write(line)
            line = self.rfile.readline(8192)

class Server(socketserver.ThreadingTCPServer):
    address_family = socket.AF_INET6
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 1024

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()

Server(("::", int(sys.argv[1])), Handler).serve_forever()
"""


def split_hostport(text: str) -> "tuple[str, int]":
    """"127.0.0.1:53" / "[::1]:5353" / "::1" -> (address, port)."""
    m = re.fullmatch(r"\[(.+)\]:(\d+)", text)
    if m:
        return m.group(1), int(m.group(2))
    if text.count(":") == 1:
        a, p = text.split(":")
        return a, int(p)
    return text, 53


def _stop_proc(p: subprocess.Popen, timeout: float = 5.0) -> None:
    if p.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            p.terminate()
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                p.kill()
            p.wait()


# --- CLI: `up` ------------------------------------------------------------------------------

EDE_LINE = "; EDE: 15 (Blocked): (egress policy: example.org not in allowlist)"
FOREIGN_RESOLVER = UPSTREAM_V4  # a real resolver (nsd), but not the sidecar
UNRESOLVED_IP = EXAMPLE_ORG_A  # example.org is not allowed: nobody resolved this address


class Tour:
    """What a user sees from a jailed session: each step runs a real command in the session
    namespace (under `jail` unless it is the admin's view), is checked, and becomes a row of
    the table printed at the end."""

    def __init__(self, lab: Lab, jail: Optional[str], policy: Path, log: Path):
        self.lab, self.jail, self.policy, self.log = lab, jail, policy, log
        self.rows: "list[tuple[str, str, str, bool]]" = []
        self.details: "list[str]" = []

    def jailed(self, argv: Sequence[str]) -> list:
        if self.jail is None:
            return list(argv)
        return [self.jail, "--policy", str(self.policy), "--log", str(self.log), "--", *argv]

    def step(self, what: str, argv: Sequence[str], judge, jailed: bool = True,
             timeout: float = 30) -> subprocess.CompletedProcess:
        t0 = time.monotonic()
        r = self.lab.run_in_session(self.jailed(argv) if jailed else list(argv), timeout=timeout)
        ms = (time.monotonic() - t0) * 1e3
        seen, good = judge(r, ms)
        prompt = "session$" if jailed else "admin#"
        self.rows.append((what, f"{prompt} {' '.join(argv)}", seen, bool(good)))
        out = (r.stdout + r.stderr).rstrip()
        self.details.append(f"{prompt} {' '.join(argv)}\n{out}\n")
        return r

    def jail_log(self) -> "list[dict]":
        try:
            lines = self.log.read_text().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    def table(self) -> str:
        heads = ("step", "command", "what the user sees", "")
        rows = [heads] + [(w, c, seen, "ok" if g else "UNEXPECTED") for w, c, seen, g in self.rows]
        widths = [min(72, max(len(r[i]) for r in rows)) for i in range(4)]

        def fmt(r):
            return " | ".join(str(x)[:widths[i]].ljust(widths[i]) for i, x in enumerate(r))
        sep = "-+-".join("-" * w for w in widths)
        return "\n".join([fmt(rows[0]), sep] + [fmt(r) for r in rows[1:]])

    @property
    def ok(self) -> bool:
        return all(g for *_, g in self.rows)


def _first(pattern: str, text: str, default: str = "") -> str:
    m = re.search(pattern, text, re.M)
    return m.group(1) if m else default


def _tour(lab: Lab, jail: Optional[str], policy: Path, system: bool = False) -> bool:
    """system: the host's resolver and network (real github.com) instead of the lab's zones."""
    log = lab.tmp / "jail.log"
    t = Tour(lab, jail, policy, log)
    foreign_resolver = lab.upstreams[0] if system else FOREIGN_RESOLVER
    url = "https://github.com/" if system else "http://github.com/"

    def dig_answer(r, _ms):
        a = _first(r"^github\.com\.\s.*\sA\s+(\S+)", r.stdout)
        good = "status: NOERROR" in r.stdout and a and (system or a == GITHUB_A)
        return (f"NOERROR {a}" if a else "no answer"), good
    t.step("an allowed name resolves", ["dig", "github.com"], dig_answer)

    def dig_denied(r, _ms):
        ede_text = _first(r"^; EDE: (.*)$", r.stdout)
        return (f"NXDOMAIN, EDE {ede_text}",
                "status: NXDOMAIN" in r.stdout and EDE_LINE in r.stdout)
    t.step("a name off the allowlist is denied, and says why", ["dig", "example.org"], dig_denied)

    def curl_ok(r, _ms):
        code = r.stdout.strip()
        return f"HTTP {code}", code == "200" or (system and code[:1] in ("2", "3"))
    t.step("its address is reachable",
           ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10", url],
           curl_ok)

    def curl_refused(r, ms):
        err = _first(r"curl: \(\d+\) (.*)$", r.stderr, r.stderr.strip()[:60])
        return f"exit {r.returncode} after {ms:.0f} ms: {err}", r.returncode == 7 and ms < 5000
    t.step("an address nobody resolved is refused at once",
           ["curl", "-sS", "--max-time", "10", f"http://{UNRESOLVED_IP}/"], curl_refused)

    before = len(t.jail_log())

    def foreign(r, _ms):
        entries = t.jail_log()[before:]
        hit = next((e for e in entries if str(e.get("address", "")).startswith(
            foreign_resolver + ":53")), None)
        if jail is None:
            return "no jail: the chain drops it", "status:" not in r.stdout
        if hit is None:
            return "no jail log line", False
        return (f"{hit.get('syscall')} {hit.get('errno', '')}, jail logs: {hit.get('rule')}",
                "status:" not in r.stdout and hit.get("verdict") == "deny")
    t.step("a foreign resolver, tried directly, is denied",
           ["dig", f"@{foreign_resolver}", "+tries=1", "+time=2", "example.org"], foreign)

    def why(r, _ms):
        txt = " / ".join(re.findall(r'"([^"]*)"', r.stdout))[:120]
        return (txt or r.stdout.strip()[:80] or "no answer"), "allow" in txt.lower()
    t.step("the session asks dnsd why a name is allowed",
           ["dig", "+short", "CH", "TXT", "github.com.why.egress"], why)

    def nft_set(r, _ms):
        el = _first(r"elements = \{\s*([^}]*)\}", r.stdout).replace("\n", " ")
        el = re.sub(r"\s+", " ", el).strip()
        return el[:80] or "empty", re.search(r"timeout \S+ expires \S+", el) is not None
    t.step("the kernel's set holds it, with its expiry",
           ["nft", "list", "set", "inet", "egress", "allow4"], nft_set, jailed=False)

    print("What each step printed:\n")
    print("\n".join(t.details))
    entries = [e for e in t.jail_log() if "verdict" in e]
    if entries:
        print("jail's log (one JSON line per denial):")
        for e in entries[-3:]:
            print("  " + json.dumps(e))
    print("\ndnsd query log (stdout, one JSON object per query):")
    for entry in lab.query_log()[-3:]:
        print("  " + json.dumps(entry))
    print("\nThe tour:\n")
    print(t.table())
    print()
    return t.ok


def _jail_path(args) -> Optional[str]:
    p = args.jail or os.environ.get("JAIL") or str(_REPO / "build/jail/jail")
    return p if os.access(p, os.X_OK) else None


def _cmd_up(args) -> int:
    allowlist = Path(args.allowlist).resolve()
    if not allowlist.is_file():
        print(f"egress_lab: allowlist {allowlist} not found", file=sys.stderr)
        return 2
    policy = Path(args.policy).resolve()
    if not policy.is_file():
        print(f"egress_lab: jail policy {policy} not found", file=sys.stderr)
        return 2
    system = args.upstream == "system"
    resolvers: "list[str]" = []
    if args.resolver and not system:
        print("egress_lab: --resolver needs --upstream system", file=sys.stderr)
        return 2
    if system:
        resolvers = args.resolver or host_resolvers(Path("/etc/resolv.conf").read_text())
        if not resolvers:
            print("egress_lab: --upstream system: /etc/resolv.conf names no resolver that a "
                  "network namespace can reach (loopback ones such as systemd-resolved's "
                  "127.0.0.53 live in the host's namespace only); pass --resolver ADDR",
                  file=sys.stderr)
            return 2
    problem = privilege_problem()
    if problem:
        print(f"egress_lab: cannot build the lab: {problem}", file=sys.stderr)
        return 2
    lab = SystemLab(resolvers, dnsd_path=args.dnsd) if system else Lab(dnsd_path=args.dnsd)
    if not os.access(lab.dnsd_path, os.X_OK):
        print(f"egress_lab: dnsd binary not found: {lab.dnsd_path} (build it, or set DNSD or "
              "pass --dnsd)", file=sys.stderr)
        return 2
    jail = _jail_path(args)
    if jail is None:
        print("egress_lab: jail binary not found (build it, or set JAIL or pass --jail)",
              file=sys.stderr)
        return 2
    with lab:
        if system:
            print(f"lab up: session namespace {lab.session}, joined to this host (NAT); dnsd "
                  f"forwards to this host's resolvers {', '.join(resolvers)}")
        else:
            print(f"lab up: session namespace {lab.session}, internet namespace "
                  f"{lab.internet}; nsd on {UPSTREAM_V4}; web servers on the zones' addresses")
            lab.start_web()
        lab.start_dnsd(allowlist=str(allowlist), args=["--nft-mode", "enforce"])
        print(f"dnsd running in {lab.session} on 127.0.0.1:53 and [::1]:53 "
              f"(allowlist {allowlist}; nftables enforce mode, table inet egress)")
        print(f"session commands run under: jail --policy {policy} --\n")
        ok = _tour(lab, jail, policy, system)
        if not args.shell:
            print("demo: " + ("OK" if ok else "FAILED (see UNEXPECTED above)"))
            return 0 if ok else 1
        print("Opening a jailed shell in the session namespace; DNS goes to dnsd. Try: "
              "dig github.com, dig example.org, dig CH TXT pypi.org.why.egress, "
              "curl http://pypi.org/. Exit to tear down.")
        env = dict(os.environ, PS1=r"[egress-session \W]\$ ")
        # The shell owns the terminal; Ctrl-C there must not kill the lab underneath it.
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            subprocess.run(["ip", "netns", "exec", lab.session, jail, "--policy", str(policy),
                            "--", "bash", "--norc", "--noprofile", "-i"], env=env)
        finally:
            signal.signal(signal.SIGINT, old)
        print("lab torn down")
        return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="The egress test lab (network namespaces, nsd, dnsd).")
    sub = ap.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="build the lab, start dnsd, show a demo")
    up.add_argument("--allowlist", required=True, help="allowlist YAML for dnsd")
    up.add_argument("--shell", action="store_true",
                    help="open an interactive shell in the session namespace")
    up.add_argument("--dnsd", help="dnsd binary (default: $DNSD or build/dnsd/dnsd)")
    up.add_argument("--jail", help="jail binary (default: $JAIL or build/jail/jail)")
    up.add_argument("--policy", default=str(_REPO / "policies/jail/default.yaml"),
                    help="jail policy for the session's commands (default: %(default)s)")
    up.add_argument("--upstream", choices=("lab", "system"), default="lab",
                    help="lab: the lab's own authoritative server and web servers (default); "
                         "system: this host's resolvers and network, for a machine with "
                         "internet access")
    up.add_argument("--resolver", action="append", metavar="ADDR",
                    help="with --upstream system: the resolver(s) dnsd forwards to, instead of "
                         "the nameservers of /etc/resolv.conf")
    sub.add_parser("cleanup", help="remove namespaces left by crashed runs")
    args = ap.parse_args(argv)
    if args.cmd == "cleanup":
        for name in cleanup_stale():
            print(f"removed {name}")
        return 0
    try:
        return _cmd_up(args)
    except RuntimeError as e:  # the lab or dnsd did not come up; the lab is already torn down
        print(f"egress_lab: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; lab torn down", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
