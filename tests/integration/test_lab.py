#!/usr/bin/python3
"""The lab harness itself: it removes what it creates (on exit, signals and crashes), and the
README's run command (`egress_lab.py up`) reports what a user should see.

Run: DNSD=build/dnsd/dnsd /usr/bin/python3 tests/integration/test_lab.py   (root)
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # lab_support
from lab_support import L  # also puts scripts/ on sys.path

SCRIPT = Path(L.__file__).resolve()
REPO = SCRIPT.parent.parent
PYTHON = "/usr/bin/python3"  # Debian's, with python3-dnspython


def setUpModule():
    L.require_privileges_or_skip()


def namespaces() -> set:
    r = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    return {line.split()[0] for line in r.stdout.splitlines() if line.strip()}


def alive(pid: int) -> bool:
    return not L._gone(pid)


CHILD = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {scripts!r})
    import egress_lab as L
    lab = L.Lab().up() if {bare!r} else L.Lab().__enter__()
    print(lab.session, lab.internet, lab.tmp, lab.nsd_proc.pid, flush=True)
    time.sleep(120)
""")


class TestCleanup(unittest.TestCase):
    def spawn_lab(self, bare=True):
        p = subprocess.Popen([PYTHON, "-c", CHILD.format(scripts=str(SCRIPT.parent), bare=bare)],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.addCleanup(lambda: (p.poll() is None and p.kill(), p.wait(), p.stdout.close()))
        line = p.stdout.readline().split()
        self.assertEqual(len(line), 4, "child lab did not come up")
        session, internet, tmp, nsd_pid = line
        self.addCleanup(L.cleanup_stale)
        self.assertLessEqual({session, internet}, namespaces())
        self.assertTrue(alive(int(nsd_pid)))
        return p, session, internet, Path(tmp), int(nsd_pid)

    def assertRemoved(self, session, internet, tmp, nsd_pid):
        self.assertFalse({session, internet} & namespaces())
        self.assertFalse(Path("/etc/netns", session).exists())
        self.assertFalse(tmp.exists())
        L._reap([nsd_pid])
        self.assertFalse(alive(nsd_pid), f"nsd {nsd_pid} still running")

    def test_close(self):
        lab = L.Lab(extra_zones={"extra.test": "www A 192.0.2.99"}).up()
        try:
            r = lab.query("www.extra.test", "A", server=L.UPSTREAM_V4)
            self.assertEqual([rd.to_text() for rrset in r.answer for rd in rrset], ["192.0.2.99"])
            nsd = lab.nsd_proc.pid
            http = lab.start_http(L.GITHUB_A, 80).pid
            names = {lab.session, lab.internet}
            self.assertLessEqual(names, namespaces())
            self.assertTrue(Path("/etc/netns", lab.session, "resolv.conf").exists())
        finally:
            lab.close()
        self.assertFalse(names & namespaces())
        self.assertFalse(Path("/etc/netns", lab.session).exists())
        self.assertFalse(lab.tmp.exists())
        self.assertFalse(alive(nsd) or alive(http))
        lab.close()  # idempotent

    def test_sigterm(self):
        p, session, internet, tmp, nsd = self.spawn_lab(bare=True)
        p.send_signal(signal.SIGTERM)
        p.wait(30)
        self.assertRemoved(session, internet, tmp, nsd)

    def test_sigint(self):
        p, session, internet, tmp, nsd = self.spawn_lab(bare=False)
        p.send_signal(signal.SIGINT)
        p.wait(30)
        self.assertRemoved(session, internet, tmp, nsd)

    def test_sigkill_then_cleanup_stale(self):
        p, session, internet, tmp, nsd = self.spawn_lab()
        p.kill()
        p.wait()
        self.assertLessEqual({session, internet}, namespaces())  # nobody could clean up
        removed = L.cleanup_stale()
        self.assertLessEqual({session, internet}, set(removed))
        self.assertFalse({session, internet} & namespaces())
        self.assertFalse(Path("/etc/netns", session).exists())
        L._reap([nsd])
        self.assertFalse(alive(nsd))
        shutil.rmtree(tmp, ignore_errors=True)  # a killed lab cannot remove its temp dir

    def test_cleanup_stale_spares_live_owners(self):
        sleeper = subprocess.Popen(["sleep", "60"])
        self.addCleanup(lambda: (sleeper.kill(), sleeper.wait()))
        live = f"egress-{sleeper.pid}-99-session"
        subprocess.run(["ip", "netns", "add", live], check=True)
        self.addCleanup(subprocess.run, ["ip", "netns", "del", live], capture_output=True)
        self.assertNotIn(live, L.cleanup_stale())
        self.assertIn(live, namespaces())


class TestUpCommand(unittest.TestCase):
    def up(self, allowlist):
        return subprocess.run([PYTHON, "-B", str(SCRIPT), "up", "--allowlist",
                               str(allowlist)], capture_output=True, text=True, timeout=120)

    def test_demo_with_shipped_allowlist(self):
        r = self.up(REPO / "policies/allowlist.yaml")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("demo: OK", r.stdout)
        self.assertIn(L.EDE_LINE, r.stdout)
        tour = r.stdout.split("The tour:", 1)[1]
        rows = {line.split("|")[0].strip(): line for line in tour.splitlines() if "|" in line}
        self.assertIn("HTTP 200", rows["its address is reachable"])
        self.assertRegex(rows["an address nobody resolved is refused at once"], r"exit 7 after")
        # The jail, not only the chain, stopped the foreign resolver, and logged why.
        self.assertIn("jail logs: dns only via the sidecar",
                      rows["a foreign resolver, tried directly, is denied"])
        self.assertRegex(rows["the kernel's set holds it, with its expiry"],
                         rf"{re.escape(L.GITHUB_A)} timeout \S+ expires")
        self.assertTrue(all(line.rstrip().endswith("| ok") for line in rows.values()
                            if not line.startswith("step")), tour)
        # Its own namespaces are gone (other labs, e.g. a benchmark, may run at the same time).
        made = set(re.findall(r"namespace (egress-\S+?)[,;\s]", r.stdout))
        self.assertEqual(len(made), 2, r.stdout)
        self.assertFalse(made & namespaces())

    def test_demo_fails_when_github_not_allowed(self):
        p = Path(f"/tmp/egress-test-allowlist-{os.getpid()}.yaml")
        p.write_text("domains:\n  - pypi.org\n")
        self.addCleanup(p.unlink)
        r = self.up(p)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("demo: FAILED", r.stdout)


class TestSystemUpstream(unittest.TestCase):
    """`up --upstream system` (the host's resolvers and network): only how it is parsed and
    planned is tested here. Running it would send traffic off this machine."""

    def test_host_resolvers(self):
        text = ("# comment\nnameserver 127.0.0.53\nnameserver 192.0.2.53 # inline\n"
                "nameserver fe80::1%eth0\nnameserver fe80::1\nnameserver ::1\n"
                "nameserver 2001:db8::53\nnameserver not-an-ip\nnameserver\n"
                "search example\nnameserver 0.0.0.0\n")
        self.assertEqual(L.host_resolvers(text), ["192.0.2.53", "2001:db8::53"])
        self.assertEqual(L.host_resolvers("nameserver 127.0.0.53\noptions edns0\n"), [])

    def test_plan_nats_only_the_session(self):
        plan = L.system_plan("egress-x-session", "egs1230", 3, "egress_lab_nat_x")
        self.assertEqual((plan["host_ip"], plan["session_ip"]), ("198.18.255.13", "198.18.255.14"))
        self.assertIn('ip saddr 198.18.255.14 oifname != "egs1230" masquerade', plan["nft"])
        self.assertIn(["ip", "-n", "egress-x-session", "route", "add", "default", "via",
                       "198.18.255.13"], plan["up"])
        self.assertEqual(plan["down"], [["nft", "delete", "table", "ip", "egress_lab_nat_x"],
                                        ["ip", "link", "del", "egs1230"]])
        with self.assertRaises(ValueError):
            L.system_plan("s", "h", 64, "t")

    def test_wiring_forwards_to_the_host_resolvers(self):
        lab = L.SystemLab(["192.0.2.53", "2001:db8::53"], dnsd_path="/bin/true")
        argv = lab.dnsd_argv(["--nft-mode", "enforce"], allowlist="/a.yaml")
        ups = [argv[i + 1] for i, a in enumerate(argv) if a == "--upstream"]
        self.assertEqual(ups, ["192.0.2.53", "2001:db8::53"])
        self.assertEqual(argv[argv.index("--nft-mode") + 1], "enforce")
        with self.assertRaises(RuntimeError):
            lab.start_nsd()

    def test_up_and_close_leave_the_host_as_it_was(self):
        """Builds the link and NAT (no process sends anything: no dnsd, no client) and removes
        them; the host's ip_forward is restored."""
        fwd = Path("/proc/sys/net/ipv4/ip_forward")
        was = fwd.read_text()
        lab = L.SystemLab(["192.0.2.53"])
        try:
            lab.up()
            route = lab.run_in_session(["ip", "route", "show", "default"]).stdout
            self.assertIn(f"via {lab._plan['host_ip']}", route)
            table = subprocess.run(["nft", "list", "table", "ip", lab._nft_table],
                                   capture_output=True, text=True).stdout
            self.assertIn(f"ip saddr {lab._plan['session_ip']}", table)
            self.assertIn("masquerade", table)
            self.assertEqual(fwd.read_text().strip(), "1")
        finally:
            lab.close()
        self.assertNotIn(lab.session, namespaces())
        self.assertNotEqual(subprocess.run(["nft", "list", "table", "ip", lab._nft_table],
                                           capture_output=True).returncode, 0)
        self.assertNotEqual(subprocess.run(["ip", "link", "show", lab._host_if],
                                           capture_output=True).returncode, 0)
        self.assertEqual(fwd.read_text(), was)

    def run_up(self, resolv: str, *extra: str) -> subprocess.CompletedProcess:
        """`up --upstream system` in a private mount namespace whose /etc/resolv.conf is
        `resolv`: it must refuse before creating anything."""
        with tempfile.NamedTemporaryFile("w", suffix=".conf") as f:
            f.write(resolv)
            f.flush()
            script = (f'mount --bind {f.name} /etc/resolv.conf && exec {PYTHON} -B {SCRIPT} up '
                      f'--allowlist {REPO}/policies/allowlist.yaml --upstream system '
                      + " ".join(extra))
            return subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                                   script], capture_output=True, text=True, timeout=60)

    def test_loopback_only_resolver_is_refused(self):
        before = namespaces()
        r = self.run_up("nameserver 127.0.0.53\n")
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("127.0.0.53 live in the host's namespace only", r.stderr)
        self.assertIn("--resolver ADDR", r.stderr)
        self.assertEqual(namespaces() - before, set())

    def test_bad_options(self):
        r = subprocess.run([PYTHON, "-B", str(SCRIPT), "up", "--allowlist",
                            str(REPO / "policies/allowlist.yaml"), "--upstream", "internet"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 2)
        self.assertIn("invalid choice: 'internet'", r.stderr)
        r = subprocess.run([PYTHON, "-B", str(SCRIPT), "up", "--allowlist",
                            str(REPO / "policies/allowlist.yaml"), "--resolver", "192.0.2.53"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 2)
        self.assertIn("--resolver needs --upstream system", r.stderr)


if __name__ == "__main__":
    L.test_main()
