#!/usr/bin/python3
"""`dnsd --install-only` (an init container's job) and `dnsd --check-ready` (a readiness probe)
in the lab's session namespace, read back from the kernel with `nft`.

Each test starts from an empty ruleset in the session namespace and flushes it when it ends.

Run: DNSD=build/dnsd/dnsd /usr/bin/python3 tests/integration/test_dnsd_install.py [-k NAME] (root)
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # lab_support
import lab_support as S
from lab_support import L, DnsdCase

NETWORKS = ("198.19.0.0/16", "2001:db8:300::/48")


def setUpModule():
    S.module_up()


tearDownModule = S.module_down


def nft(*args, check: bool = False) -> subprocess.CompletedProcess:
    return S.LAB.run_in_session(["nft", *map(str, args)], check=check)


def table_text(table: str = "egress") -> str:
    """`nft list table` with counters zeroed and expiries dropped: what must not change."""
    r = nft("list", "table", "inet", table)
    if r.returncode != 0:
        return ""
    return re.sub(r" expires \S+", "", re.sub(r"counter packets \d+ bytes \d+", "counter", r.stdout))


def set_elements(name: str, table: str = "egress") -> list:
    r = nft("-j", "list", "set", "inet", table, name, check=True)
    out = []
    for o in json.loads(r.stdout)["nftables"]:
        out += o.get("set", {}).get("elem", [])
    return out


class InstallCase(DnsdCase):
    START = False

    def setUp(self):
        super().setUp()
        nft("flush", "ruleset", check=True)
        self.addCleanup(nft, "flush", "ruleset")
        self.allowlist = self.lab.write_allowlist(["github.com"], NETWORKS)

    def dnsd_cmd(self, *args, user: str = "") -> subprocess.CompletedProcess:
        argv = [self.lab.dnsd_path, *args]
        if user:  # no capabilities at all: setpriv to an unprivileged uid
            argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *argv]
        return self.lab.run_in_session(argv)

    def install(self, *args) -> subprocess.CompletedProcess:
        return self.dnsd_cmd("--install-only", "--allowlist", str(self.allowlist), *args)

    def assertExit(self, r: subprocess.CompletedProcess, code: int):
        self.assertEqual(r.returncode, code, f"{r.args}\nstdout: {r.stdout}\nstderr: {r.stderr}")


class TestInstallOnly(InstallCase):
    def test_check_ready_fails_before_and_passes_after(self):
        r = self.dnsd_cmd("--check-ready")
        self.assertExit(r, 1)
        self.assertEqual(r.stderr.strip(), "dnsd: not ready: nft table inet egress not found")
        self.assertEqual(nft("list", "tables").stdout.strip(), "")  # the check created nothing

        r = self.install()
        self.assertExit(r, 0)
        self.assertIn("created table set:allow4 set:allow6 set:nets4 set:nets6 chain:output",
                      r.stdout)
        self.assertIn("chain output", table_text())
        self.assertIn("policy drop", table_text())
        nets4 = [e["prefix"] for e in set_elements("nets4")]
        self.assertEqual(nets4, [{"addr": "198.19.0.0", "len": 16}])
        self.assertEqual([e["prefix"] for e in set_elements("nets6")],
                         [{"addr": "2001:db8:300::", "len": 48}])
        self.assertEqual(set_elements("allow4"), [])

        r = self.dnsd_cmd("--check-ready")
        self.assertExit(r, 0)
        self.assertEqual(r.stdout.strip(), "dnsd: ready: table inet egress (allow4, allow6) in place")

    def test_install_only_twice_changes_nothing(self):
        self.assertExit(self.install(), 0)
        nft("add", "element", "inet", "egress", "allow4", "{ 192.0.2.77 timeout 1h }", check=True)
        first = table_text()
        r = self.install()
        self.assertExit(r, 0)
        self.assertIn("all in place already", r.stdout)
        self.assertEqual(table_text(), first)
        self.assertIn("192.0.2.77", table_text())

    def test_dnsd_after_install_only_flushes_nothing(self):
        self.assertExit(self.install(), 0)
        nft("add", "element", "inet", "egress", "allow4", "{ 192.0.2.77 timeout 1h }", check=True)
        d = self.start(args=("--nft-mode", "enforce"), allowlist=self.allowlist)
        log = [ln for ln in d.stderr().splitlines() if "nftables:" in ln]
        self.assertFalse([ln for ln in log if "created" in ln or "replaced" in ln], log)
        self.assertTrue(any("1 elements read back" in ln for ln in log), log)
        self.assertIn("192.0.2.77", [e["elem"]["val"] for e in set_elements("allow4")])
        self.assertEqual(S.addrs(self.q("github.com")), {L.GITHUB_A})
        self.assertEqual({e["elem"]["val"] for e in set_elements("allow4")},
                         {"192.0.2.77", L.GITHUB_A})
        self.assertExit(self.dnsd_cmd("--check-ready"), 0)

    def test_check_ready_names_what_is_wrong(self):
        self.assertExit(self.install(), 0)
        nft("add", "rule", "inet", "egress", "output", "accept", check=True)
        r = self.dnsd_cmd("--check-ready")
        self.assertExit(r, 1)
        self.assertIn("chain output holds other rules than dnsd's", r.stderr)
        self.assertExit(self.install(), 0)  # puts the design's rules back
        self.assertExit(self.dnsd_cmd("--check-ready"), 0)
        nft("add", "chain", "inet", "egress", "output",
            "{ type filter hook output priority filter; policy accept; }", check=True)
        r = self.dnsd_cmd("--check-ready")
        self.assertExit(r, 1)
        self.assertIn("chain output has no policy drop", r.stderr)

    def test_table_name_flag(self):
        self.assertExit(self.install("--nft-table", "egress2"), 0)
        self.assertExit(self.dnsd_cmd("--check-ready", "--nft-table", "egress2"), 0)
        r = self.dnsd_cmd("--check-ready")
        self.assertExit(r, 1)
        self.assertIn("nft table inet egress not found", r.stderr)

    def test_failures_are_clear_and_nonzero(self):
        r = self.install("--nft-mode", "off")
        self.assertExit(r, 2)
        self.assertIn("--install-only needs --nft-mode enforce", r.stderr)
        r = self.dnsd_cmd("--install-only", "--allowlist", str(self.lab.tmp / "missing.yaml"))
        self.assertExit(r, 1)
        self.assertIn("missing.yaml: cannot read", r.stderr)
        # No CAP_NET_ADMIN: the kernel refuses, and both commands say so. (The lab's directory
        # is private: an unprivileged user reads a copy of the allowlist.)
        readable = tempfile.NamedTemporaryFile("w", prefix="egress-allowlist-", suffix=".yaml")
        self.addCleanup(readable.close)
        readable.write(self.allowlist.read_text())
        readable.flush()
        os.chmod(readable.name, 0o644)
        r = self.dnsd_cmd("--install-only", "--allowlist", readable.name, user="65534")
        self.assertExit(r, 1)
        self.assertIn("dnsd: --install-only:", r.stderr)
        self.assertIn("CAP_NET_ADMIN", r.stderr)
        r = self.dnsd_cmd("--check-ready", user="65534")
        self.assertExit(r, 1)
        self.assertIn("dnsd: not ready:", r.stderr)
        self.assertEqual(nft("list", "tables").stdout.strip(), "")
        # A table of another shape is not overwritten.
        nft("add", "table", "inet", "egress", check=True)
        nft("add", "set", "inet", "egress", "allow4", "{ type ipv6_addr; }", check=True)
        r = self.install()
        self.assertExit(r, 1)
        self.assertIn("cannot change these in place", r.stderr)
        self.assertExit(self.dnsd_cmd("--check-ready"), 1)

    def test_check_ready_sets_and_off(self):
        r = self.dnsd_cmd("--check-ready", "--nft-mode", "sets")
        self.assertExit(r, 1)
        self.assertIn("not found", r.stderr)
        r = self.dnsd_cmd("--check-ready", "--nft-mode", "off")
        self.assertExit(r, 0)
        self.assertIn("nft mode off", r.stdout)


if __name__ == "__main__":
    L.test_main()
