"""Shared pieces of the integration tests: one lab per test file, a dnsd per test class.

Not a test file itself (ctest registers tests/integration/test_*.py only).
"""

from __future__ import annotations

import sys
import time
import unittest
from pathlib import Path
from typing import Callable, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import egress_lab as L  # noqa: E402

import dns.edns  # noqa: E402
import dns.message  # noqa: E402
import dns.rcode  # noqa: E402
import dns.rdatatype  # noqa: E402

LAB: Optional[L.Lab] = None


def module_up(**lab_kw) -> L.Lab:
    """setUpModule: privilege check (CI=true: fail; else skip), then the lab."""
    global LAB
    L.require_privileges_or_skip()
    LAB = L.Lab(**lab_kw).up()
    return LAB


def module_down() -> None:
    global LAB
    if LAB is not None:
        LAB.close()
        LAB = None


def wait_until(pred: Callable[[], object], timeout: float = 5.0, interval: float = 0.05):
    """Polls pred() until truthy (returned) or the bounded wait ends (returns the last value)."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(interval)


def ede(msg: dns.message.Message) -> list:
    """[(code, text)] of the Extended DNS Error options (RFC 8914) in a response."""
    return [(o.code, o.text) for o in msg.options if o.otype == dns.edns.EDE]


def addrs(msg: dns.message.Message, rdtype: str = "A") -> set:
    t = dns.rdatatype.from_text(rdtype)
    return {r.to_text() for rrset in msg.answer if rrset.rdtype == t for r in rrset}


def rcode_text(msg: dns.message.Message) -> str:
    return dns.rcode.to_text(msg.rcode())


class DnsdCase(unittest.TestCase):
    """A test class with one dnsd for the whole class (START) started with ALLOW and ARGS, or,
    with START = False, a dnsd per test from self.start()."""

    START = True
    ALLOW: tuple = ("github.com",)
    NETWORKS: tuple = ()
    ARGS: tuple = ()
    UPSTREAM: Optional[tuple] = None  # default: nsd's IPv4 address

    lab: L.Lab
    dnsd: Optional[L.Dnsd] = None

    @classmethod
    def setUpClass(cls):
        cls.lab = LAB
        if cls.START:
            cls.allowlist = LAB.write_allowlist(cls.ALLOW, cls.NETWORKS)
            cls.dnsd = LAB.start_dnsd(args=cls.ARGS, allowlist=str(cls.allowlist),
                                      upstream=cls.UPSTREAM)

    @classmethod
    def tearDownClass(cls):
        if cls.START and cls.dnsd is not None:
            cls.dnsd.stop()

    def tearDown(self):
        # A crash is the failure of the test that caused it, not of the next one.
        if self.dnsd is not None and not self.dnsd.running():
            self.fail(f"dnsd exited with {self.dnsd.proc.returncode}; stderr:\n"
                      + self.dnsd.stderr()[-3000:])

    def start(self, args=(), allow=None, allowlist=None, upstream=None) -> L.Dnsd:
        """A dnsd for this test only (START = False classes), stopped by the test's cleanup."""
        if allowlist is None:
            allowlist = self.lab.write_allowlist(allow if allow is not None else self.ALLOW)
        self.allowlist = Path(allowlist)
        self.dnsd = self.lab.start_dnsd(args=args, allowlist=str(allowlist), upstream=upstream)
        self.addCleanup(self.dnsd.stop)
        return self.dnsd

    # helpers -----------------------------------------------------------------------------
    def q(self, name, rdtype="A", **kw) -> dns.message.Message:
        return self.lab.query(name, rdtype, **kw)

    def assertRcode(self, msg, rcode: str, context: str = ""):
        self.assertEqual(rcode_text(msg), rcode, f"{context}\n{msg}")

    def log_entries(self, name: str, expect: int = 1, timeout: float = 3.0, dnsd=None) -> list:
        """Query-log entries for `name` (case-insensitive, absolute), waiting (bounded) until at
        least `expect` are there: dnsd must flush a line per query."""
        d = dnsd or self.dnsd
        want = name.lower().rstrip(".") + "."

        def get():
            found = [e for e in d.query_log() if str(e.get("name", "")).lower() == want]
            return found if len(found) >= expect else None

        got = wait_until(get, timeout)
        if not got:
            self.fail(f"fewer than {expect} query-log lines for {want} within {timeout} s; "
                      f"stdout:\n{d.stdout()[-3000:]}")
        return got
