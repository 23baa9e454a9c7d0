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


if __name__ == "__main__":
    L.test_main()
