#!/usr/bin/python3
"""dnsd's CHAOS-class TXT reports (dnsd/chaos.h) in the lab, asked with the real `dig`.

    dig CH TXT NAME.why.egress   is NAME allowed, by which entry, what is installed for it
    dig CH TXT policy.egress     the allowlist's file, SHA-256, load time and counts

dnsd runs in enforce mode in the session namespace, so the addresses and lifetimes a report gives
are compared with the kernel's set (`nft -j`). Each test starts from an empty ruleset and flushes
it again when it ends (dnsd never flushes at start, by design).

Run: DNSD=build/dnsd/dnsd /usr/bin/python3 tests/integration/test_dnsd_chaos.py [-k NAME]  (root)
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # lab_support
import lab_support as S
from lab_support import L, DnsdCase, ede, rcode_text, wait_until

import dns.message
import dns.rdataclass
import dns.rdatatype

ALLOW = ("github.com", "*.githubusercontent.com", "*.example.org")
NETWORKS = ("198.19.0.0/16",)
ENFORCE = ("--nft-mode", "enforce")
EDE_PROHIBITED = 18


def setUpModule():
    S.module_up()


tearDownModule = S.module_down


def nft(*args, check: bool = False) -> subprocess.CompletedProcess:
    return S.LAB.run_in_session(["nft", *map(str, args)], check=check)


def allow4() -> dict:
    """address -> seconds left, of the session's allow4 set."""
    r = nft("-j", "list", "set", "inet", "egress", "allow4")
    if r.returncode != 0:
        return {}
    out = {}
    for o in json.loads(r.stdout)["nftables"]:
        for e in o.get("set", {}).get("elem", []):
            if isinstance(e, dict):
                out[e["elem"]["val"]] = e["elem"].get("expires")
    return out


class ChaosCase(DnsdCase):
    START = False

    def setUp(self):
        super().setUp()
        nft("flush", "ruleset", check=True)
        self.addCleanup(nft, "flush", "ruleset")  # after dnsd stopped (LIFO)

    def chaos(self, name: str, rdtype: str = "TXT") -> "tuple[str, list, str]":
        """`dig CH` from the session: (status, [TXT strings in order], the whole output)."""
        r = self.lab.dig("@127.0.0.1", "+tries=1", "+time=3", "+noall", "+comments", "+answer",
                         "CH", rdtype, name)
        m = re.search(r"status: (\w+)", r.stdout)
        self.assertIsNotNone(m, f"dig CH {rdtype} {name}: no reply\n{r.stdout}{r.stderr}")
        txt = []
        for owner, ttl, data in re.findall(r'(?m)^(\S+)\s+(\d+)\s+CH\s+TXT\s+"(.*)"$', r.stdout):
            self.assertEqual(owner.lower(), name.lower().rstrip(".") + ".")
            self.assertEqual(int(ttl), 0, r.stdout)
            txt.append(data)
        return m.group(1), txt, r.stdout


class TestReports(ChaosCase):
    def setUp(self):
        super().setUp()
        self.start(args=ENFORCE, allowlist=self.lab.write_allowlist(ALLOW, NETWORKS))

    def test_allowed_name_shows_rule_and_installed_addresses(self):
        self.assertEqual(S.addrs(self.q("github.com")), {L.GITHUB_A})
        status, txt, out = self.chaos("github.com.why.egress")
        self.assertEqual(status, "NOERROR", out)
        self.assertEqual(txt[0], "github.com: allowed", out)
        self.assertEqual(txt[1], f"rule: github.com (exact) at {self.allowlist}:2:5", out)
        self.assertEqual(len(txt), 3, out)
        m = re.fullmatch(r"address: (\S+) expires in (\d+) s", txt[2])
        self.assertIsNotNone(m, out)
        self.assertEqual(m.group(1), L.GITHUB_A)
        left = int(m.group(2))
        kernel = allow4()
        self.assertIn(L.GITHUB_A, kernel)
        # zone TTL 300: timeout clamp(300, 60, 3600) + 30; the kernel's count agrees within 2 s.
        self.assertTrue(300 < left <= 330, out)
        self.assertLessEqual(abs(left - kernel[L.GITHUB_A]), 2, (left, kernel))
        # Case of the question does not matter; the owner keeps the client's case.
        status, txt2, out = self.chaos("GitHub.COM.Why.Egress")
        self.assertEqual(txt2[:2], txt[:2], out)
        self.assertIn("GitHub.COM.Why.Egress.", out)

    def test_wildcard_rule_and_nothing_installed_by_asking(self):
        before = allow4()
        status, txt, out = self.chaos("raw.githubusercontent.com.why.egress")
        self.assertEqual(status, "NOERROR", out)
        self.assertEqual(txt[0], "raw.githubusercontent.com: allowed")
        self.assertEqual(txt[1], "rule: *.githubusercontent.com (wildcard) at "
                                 f"{self.allowlist}:3:5")
        self.assertTrue(txt[2].startswith("addresses: none installed now"), out)
        # A CHAOS query never goes upstream and never installs anything.
        self.assertEqual(allow4(), before)
        entries = self.log_entries("raw.githubusercontent.com.why.egress")
        self.assertEqual([(e["verdict"], e["rcode"]) for e in entries], [("chaos", "NOERROR")])
        self.assertIsNone(entries[0].get("upstream_ms"))
        # Resolving it afterwards installs the wildcard's address, which the report then shows.
        self.assertEqual(S.addrs(self.q("raw.githubusercontent.com")), {"192.0.2.30"})
        _, txt, out = self.chaos("raw.githubusercontent.com.why.egress")
        self.assertRegex(txt[2], r"^address: 192\.0\.2\.30 expires in \d+ s$", out)

    def test_denied_names_say_why(self):
        status, txt, out = self.chaos("evil.example.why.egress")
        self.assertEqual(status, "NOERROR", out)
        self.assertEqual(txt, ["evil.example: denied",
                               f"reason: no entry of {self.allowlist} matches it",
                               "clients get: NXDOMAIN with EDE 15 (Blocked)"], out)
        _, txt, out = self.chaos("example.org.why.egress")
        self.assertEqual(txt[0], "example.org: denied", out)
        self.assertIn("note: *.example.org is listed; it matches the names below example.org, "
                      "not example.org itself", txt, out)
        # The real answer agrees with the report.
        r = self.q("evil.example", use_edns=0)
        self.assertEqual(rcode_text(r), "NXDOMAIN")
        self.assertEqual(ede(r), [(15, "egress policy: evil.example not in allowlist")])

    def test_other_chaos_names_are_refused_and_other_types_empty(self):
        for name in ("version.bind", "hostname.bind", "id.server", "why.egress", "egress"):
            with self.subTest(name=name):
                r = self.q(name, "TXT", rdclass=dns.rdataclass.CH, use_edns=0)
                self.assertEqual(rcode_text(r), "REFUSED")
                self.assertEqual(r.answer, [])
                self.assertEqual(len(ede(r)), 1)
                self.assertEqual(ede(r)[0][0], EDE_PROHIBITED)
                self.assertIn("policy.egress", ede(r)[0][1])
        status, txt, out = self.chaos("policy.egress", "A")
        self.assertEqual((status, txt), ("NOERROR", []), out)
        self.assertNotRegex(out, r"(?m)^policy\.egress\.\s", out)

    def test_policy_hash_matches_sha256sum_and_changes_on_reload(self):
        def policy():
            status, txt, out = self.chaos("policy.egress")
            self.assertEqual(status, "NOERROR", out)
            return dict(s.split(": ", 1) for s in txt), out

        def sha256sum() -> str:
            r = subprocess.run(["sha256sum", str(self.allowlist)], capture_output=True,
                               text=True, check=True)
            return r.stdout.split()[0]

        facts, out = policy()
        self.assertEqual(facts["source"], str(self.allowlist))
        self.assertEqual(facts["sha256"], sha256sum(), out)
        self.assertEqual(facts["exact names"], "1")
        self.assertEqual(facts["wildcards"], "2")
        self.assertEqual(facts["networks"], "1 (1 IPv4, 0 IPv6)")
        self.assertEqual(facts["nft"], "enforce, table inet egress")
        loaded = datetime.datetime.strptime(facts["loaded"], "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=datetime.timezone.utc)
        now = datetime.datetime.now(datetime.timezone.utc)
        self.assertLess(abs((now - loaded).total_seconds()), 120, facts["loaded"])

        old = facts["sha256"]
        self.allowlist.write_text("domains:\n  - pypi.org\n  - \"*.pypi.org\"\n")
        self.assertTrue(wait_until(lambda: policy()[0]["sha256"] != old, 10, 0.1),
                        self.dnsd.stderr()[-2000:])
        facts, out = policy()
        self.assertEqual(facts["sha256"], sha256sum(), out)
        self.assertEqual(facts["sha256"],
                         hashlib.sha256(self.allowlist.read_bytes()).hexdigest())
        self.assertEqual((facts["exact names"], facts["wildcards"], facts["networks"]),
                         ("1", "1", "0 (0 IPv4, 0 IPv6)"))
        # An invalid file keeps the policy, and the report says so by keeping the old hash.
        self.allowlist.write_text("domains:\n  - a.*.com\n")
        self.assertTrue(wait_until(lambda: "allowlist reload rejected" in self.dnsd.stderr(), 10))
        self.assertEqual(policy()[0]["sha256"], facts["sha256"])


class TestDisabled(ChaosCase):
    def test_chaos_false_in_the_config_refuses_chaos(self):
        config = self.lab.tmp / "chaos-off.yaml"
        config.write_text("chaos: false\n")
        allowlist = self.lab.write_allowlist(ALLOW)
        self.dnsd = self.lab.start_dnsd(config=str(config), allowlist=str(allowlist))
        self.addCleanup(self.dnsd.stop)
        for name in ("policy.egress", "github.com.why.egress"):
            with self.subTest(name=name):
                status, txt, out = self.chaos(name)
                self.assertEqual((status, txt), ("REFUSED", []), out)
                r = self.q(name, "TXT", rdclass=dns.rdataclass.CH, use_edns=0)
                self.assertEqual(ede(r), [(EDE_PROHIBITED,
                                           "egress: CHAOS reports are off (chaos: false)")])
        # Class IN is unaffected.
        self.assertEqual(S.addrs(self.q("github.com")), {L.GITHUB_A})

    def test_chaos_flag_false(self):
        self.start(args=("--chaos", "false"))
        status, txt, out = self.chaos("policy.egress")
        self.assertEqual((status, txt), ("REFUSED", []), out)


if __name__ == "__main__":
    L.test_main()
