#!/usr/bin/python3
"""dnsd's nftables layer (dnsd/nft_netlink.h, dnsd/nft_table.h) against the kernel.

Each test creates its own network namespace(s), runs tests/nft_probe_main.cpp (`nft_selftest`)
inside with `ip netns exec`, and reads the kernel's state back with `nft -j`. Nothing here needs
nsd or dnsd: only root, `ip`, `nft` and the nft_selftest binary.

Run: NFT_SELFTEST=build/tests/nft_selftest /usr/bin/python3 tests/integration/test_nft_netlink.py
(without NFT_SELFTEST the binary is looked up next to $DNSD, then in build/). Without root or
usable namespaces the file exits 77 (skip, with the reason), or fails when CI=true.
"""

from __future__ import annotations

import atexit
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import unittest
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import egress_lab  # noqa: E402  (test_main: the CI-fails / elsewhere-skips wrapper)

ROOT = Path(__file__).resolve().parents[2]
MARK = 0xE95
PREFIX = f"egress-{os.getpid()}-nft"


def selftest_path() -> Optional[Path]:
    candidates = []
    if os.environ.get("NFT_SELFTEST"):
        candidates.append(Path(os.environ["NFT_SELFTEST"]))
    if os.environ.get("DNSD"):  # <build>/dnsd/dnsd -> <build>/tests/nft_selftest
        candidates.append(Path(os.environ["DNSD"]).resolve().parents[1] / "tests" / "nft_selftest")
    candidates.append(ROOT / "build" / "tests" / "nft_selftest")
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c.resolve()
    return None


SELFTEST = selftest_path()


def privilege_problem() -> Optional[str]:
    if os.geteuid() != 0:
        return "nftables integration tests need root (network namespaces, CAP_NET_ADMIN)"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"{tool} not found"
    if SELFTEST is None:
        return "nft_selftest not built (set NFT_SELFTEST=<build>/tests/nft_selftest)"
    probe = f"{PREFIX}-probe"
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if r.returncode != 0:
        return f"'ip netns add' failed: {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


# --- namespaces: every one created is deleted, on failure and on SIGTERM too -----------------

_live: "list[Netns]" = []
_counter = itertools.count()


class Netns:
    def __init__(self):
        self.name = f"{PREFIX}-{next(_counter)}"
        self.procs: "list[subprocess.Popen]" = []
        subprocess.run(["ip", "netns", "add", self.name], check=True, capture_output=True)
        _live.append(self)
        self.run(["ip", "link", "set", "lo", "up"])

    def argv(self, argv) -> list:
        return ["ip", "netns", "exec", self.name, *map(str, argv)]

    def run(self, argv, check=True, input_text=None) -> subprocess.CompletedProcess:
        r = subprocess.run(self.argv(argv), capture_output=True, text=True, input=input_text,
                           timeout=120)
        if check and r.returncode != 0:
            raise AssertionError(f"{argv} in {self.name}: exit {r.returncode}\n"
                                 f"stdout: {r.stdout}\nstderr: {r.stderr}")
        return r

    def spawn(self, argv) -> subprocess.Popen:
        p = subprocess.Popen(self.argv(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
        self.procs.append(p)
        return p

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.communicate(timeout=10)
        self.procs.clear()
        # Anything else still in the namespace (nothing should be) goes too.
        pids = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True,
                              text=True).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
        if self in _live:
            _live.remove(self)


def _close_all() -> None:
    for ns in list(_live):
        ns.close()


def _on_signal(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")  # unwinds through cleanups and atexit


atexit.register(_close_all)
for _sig in (signal.SIGTERM, signal.SIGHUP):
    signal.signal(_sig, _on_signal)


# --- helpers -----------------------------------------------------------------------------------

DESIGN = textwrap.dedent(f"""\
    table inet egress {{
      set allow4 {{ type ipv4_addr; flags timeout; size 65536; }}
      set allow6 {{ type ipv6_addr; flags timeout; size 65536; }}
      set nets4  {{ type ipv4_addr; flags interval; }}
      set nets6  {{ type ipv6_addr; flags interval; }}
      chain output {{
        type filter hook output priority filter; policy drop;
        ct state established,related accept
        oif lo accept
        icmpv6 type {{ nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit }} accept
        meta mark {MARK:#x} accept
        meta l4proto {{ tcp, udp }} th dport {{ 53, 853 }} reject
        ip daddr @allow4 accept
        ip6 daddr @allow6 accept
        ip daddr @nets4 accept
        ip6 daddr @nets6 accept
        counter reject with icmpx admin-prohibited
      }}
    }}
    """)


def normalised(listing: dict) -> list:
    """`nft -j list table` without what differs between two equal tables: metainfo, handles,
    counter values; anonymous set members sorted."""
    out = []

    def scrub(x):
        if isinstance(x, dict):
            return {k: scrub(v) for k, v in x.items() if k != "handle"}
        if isinstance(x, list):
            return [scrub(v) for v in x]
        return x

    for obj in listing["nftables"]:
        if "metainfo" in obj:
            continue
        obj = scrub(obj)
        for expr in obj.get("rule", {}).get("expr", []):
            if "counter" in expr:
                expr["counter"] = {"packets": 0, "bytes": 0}
            right = expr.get("match", {}).get("right")
            if isinstance(right, dict) and isinstance(right.get("set"), list):
                right["set"] = sorted(right["set"], key=str)
        out.append(obj)
    return out


class NftCase(unittest.TestCase):
    maxDiff = None

    def setUp(self):
        self.ns = Netns()
        self.addCleanup(self.ns.close)

    # nft_selftest in the namespace; returns its JSON line
    def tool(self, *args, ok: bool = True, ns: Optional[Netns] = None) -> dict:
        r = (ns or self.ns).run([SELFTEST, "--mark", hex(MARK), *args], check=False)
        try:
            out = json.loads(r.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            self.fail(f"nft_selftest {args}: no JSON (exit {r.returncode})\n{r.stdout}\n{r.stderr}")
        if ok:
            self.assertEqual(r.returncode, 0, f"nft_selftest {args}: {out}\n{r.stderr}")
        else:
            self.assertEqual(r.returncode, 1, f"nft_selftest {args} should fail: {out}")
        return out

    def nft(self, *args, ns: Optional[Netns] = None, check=True) -> subprocess.CompletedProcess:
        return (ns or self.ns).run(["nft", *args], check=check)

    def nft_file(self, text: str, ns: Optional[Netns] = None) -> None:
        (ns or self.ns).run(["nft", "-f", "-"], input_text=text)

    def listing(self, ns: Optional[Netns] = None) -> dict:
        return json.loads(self.nft("-j", "list", "table", "inet", "egress", ns=ns).stdout)

    def elements(self, set_name: str) -> dict:
        """{address or prefix: elem dict} of a set, from `nft -j list set`."""
        j = json.loads(self.nft("-j", "list", "set", "inet", "egress", set_name).stdout)
        out = {}
        for obj in j["nftables"]:
            for e in obj.get("set", {}).get("elem", []):
                if isinstance(e, dict) and "elem" in e:
                    v = e["elem"]["val"]
                    key = f"{v['prefix']['addr']}/{v['prefix']['len']}" if isinstance(v, dict) else v
                    out[key] = e["elem"]
                elif isinstance(e, dict) and "prefix" in e:
                    out[f"{e['prefix']['addr']}/{e['prefix']['len']}"] = {}
                else:
                    out[str(e)] = {}
        return out

    def rule_handles(self) -> list:
        return [o["rule"]["handle"] for o in self.listing()["nftables"] if "rule" in o]


class Bootstrap(NftCase):
    def test_bootstrap_creates_exactly_the_designs_table(self):
        r = self.tool("bootstrap")
        self.assertEqual(r, {"created_table": True,
                             "created_sets": ["allow4", "allow6", "nets4", "nets6"],
                             "created_chain": True, "replaced_rules": False})
        # The oracle: the design's text loaded by nft itself in a second namespace.
        ref = Netns()
        self.addCleanup(ref.close)
        self.nft_file(DESIGN, ns=ref)
        self.assertEqual(normalised(self.listing()), normalised(self.listing(ns=ref)))
        self.assertEqual(self.nft("list", "ruleset").stdout, self.nft("list", "ruleset", ns=ref).stdout)
        kinds = [next(iter(o)) for o in self.listing()["nftables"] if "metainfo" not in o]
        self.assertEqual(kinds, ["table"] + ["set"] * 4 + ["chain"] + ["rule"] * 10)

    def test_second_bootstrap_keeps_elements_and_rules(self):
        self.tool("bootstrap")
        self.tool("add", "192.0.2.7,600000,600000", "2001:db8::7,600000,600000")
        self.tool("networks", "10.0.0.0/8", "2001:db8:100::/48")
        handles = self.rule_handles()
        r = self.tool("bootstrap")
        self.assertEqual(r, {"created_table": False, "created_sets": [], "created_chain": False,
                             "replaced_rules": False})
        self.assertEqual(self.rule_handles(), handles)  # the chain was left alone
        self.assertIn("192.0.2.7", self.elements("allow4"))
        self.assertIn("2001:db8::7", self.elements("allow6"))
        self.assertIn("10.0.0.0/8", self.elements("nets4"))
        self.assertIn("2001:db8:100::/48", self.elements("nets6"))

    def test_bootstrap_repairs_a_tampered_chain_without_touching_sets(self):
        self.tool("bootstrap")
        self.tool("add", "192.0.2.8,600000,600000")
        mark_rule = [o["rule"]["handle"] for o in self.listing()["nftables"]
                     if "rule" in o and "mark" in json.dumps(o["rule"]["expr"])]
        self.assertEqual(len(mark_rule), 1)
        self.nft("delete", "rule", "inet", "egress", "output", "handle", str(mark_rule[0]))
        self.nft("add", "rule", "inet", "egress", "output", "ip", "daddr", "198.51.100.1", "accept")
        self.nft("chain", "inet", "egress", "output", "{ policy accept; }")
        r = self.tool("bootstrap")
        self.assertTrue(r["replaced_rules"])
        self.assertFalse(r["created_chain"])
        ref = Netns()
        self.addCleanup(ref.close)
        self.nft_file(DESIGN, ns=ref)
        self.nft("flush", "set", "inet", "egress", "allow4", check=False, ns=ref)
        mine = [o for o in normalised(self.listing()) if "set" not in o or o["set"]["name"] != "allow4"]
        theirs = [o for o in normalised(self.listing(ns=ref)) if "set" not in o or o["set"]["name"] != "allow4"]
        self.assertEqual(mine, theirs)
        self.assertIn("192.0.2.8", self.elements("allow4"))

    def test_bootstrap_refuses_a_set_of_another_type(self):
        self.nft_file("table inet egress {\n set allow4 { type ipv6_addr; flags timeout; }\n}\n")
        r = self.tool("bootstrap", ok=False)
        self.assertIn("set allow4 has type ipv6_addr, expected ipv4_addr", r["exception"])
        self.assertIn("nft delete table inet egress", r["exception"])
        kinds = [next(iter(o)) for o in self.listing()["nftables"] if "metainfo" not in o]
        self.assertEqual(kinds, ["table", "set"])  # nothing was half-built


class Elements(NftCase):
    def setUp(self):
        super().setUp()
        self.tool("bootstrap")

    def test_add_shows_the_given_timeouts(self):
        r = self.tool("add", "192.0.2.7,90000,60000", "2001:db8::7,3630000,3630000",
                      "198.51.100.9,1000,1000")
        self.assertEqual((r["ok"], r["handler_calls"]), (1, 1))
        v4, v6 = self.elements("allow4"), self.elements("allow6")
        self.assertEqual(set(v4), {"192.0.2.7", "198.51.100.9"})
        self.assertEqual(set(v6), {"2001:db8::7"})
        self.assertEqual(v4["192.0.2.7"]["timeout"], 90)
        self.assertLessEqual(v4["192.0.2.7"]["expires"], 60)
        self.assertGreater(v4["192.0.2.7"]["expires"], 30)
        self.assertEqual(v6["2001:db8::7"]["timeout"], 3630)
        self.assertGreater(v6["2001:db8::7"]["expires"], 3600)

    def test_invalid_elements_are_refused_before_the_kernel(self):
        r = self.tool("add", "192.0.2.7,0,0", ok=False)
        self.assertEqual(r, {"invalid": True})
        self.assertEqual(self.elements("allow4"), {})

    def test_delete_removes_and_a_missing_element_fails_the_whole_batch(self):
        self.tool("add", "192.0.2.1,600000,600000", "192.0.2.2,600000,600000",
                  "2001:db8::1,600000,600000")
        self.tool("delete", "192.0.2.1", "2001:db8::1")
        self.assertEqual(set(self.elements("allow4")), {"192.0.2.2"})
        self.assertEqual(self.elements("allow6"), {})
        r = self.tool("delete", "192.0.2.2", "192.0.2.99", ok=False)
        self.assertEqual(r["errors"], {"2": 1})  # ENOENT, and the transaction was aborted:
        self.assertEqual(set(self.elements("allow4")), {"192.0.2.2"})

    def test_renewal_by_delete_and_add_in_one_batch(self):
        self.tool("add", "192.0.2.3,600000,5000")
        self.assertLessEqual(self.elements("allow4")["192.0.2.3"]["expires"], 5)
        self.tool("renew", "192.0.2.3,600000,600000")
        self.assertGreater(self.elements("allow4")["192.0.2.3"]["expires"], 500)

    def test_readd_renews_exactly_when_the_probe_says_so(self):
        self.tool("add", "192.0.2.4,600000,600000")
        before = self.listing()
        r = self.tool("probe")
        expected = egress_lab.kernel_at_least(6, 12)
        self.assertEqual(r, {"renews": expected}, os.uname().release)
        # The probe's temporary set is gone and nothing else changed.
        self.assertEqual(normalised(self.listing())[:6], normalised(before)[:6])
        self.assertNotIn("egress_probe", self.nft("list", "ruleset").stdout)
        # And the probe tells the truth: re-adding with a later expiration renews (or not).
        self.tool("add", "192.0.2.5,600000,5000")
        self.tool("add", "192.0.2.5,600000,600000")
        renewed = self.elements("allow4")["192.0.2.5"]["expires"] > 500
        self.assertEqual(renewed, expected)

    def test_list_elements_reads_back_what_was_added(self):
        self.tool("add", "192.0.2.10,90000,60000", "2001:db8::10,120000,120000")
        self.nft("add", "element", "inet", "egress", "allow4", "{ 198.51.100.10 timeout 1h }")
        got = {e["addr"]: e for e in self.tool("list")["elements"]}
        self.assertEqual(set(got), {"192.0.2.10", "2001:db8::10", "198.51.100.10"})
        self.assertEqual(got["192.0.2.10"]["timeout_ms"], 90000)
        self.assertLessEqual(got["192.0.2.10"]["expires_ms"], 60000)
        self.assertGreater(got["192.0.2.10"]["expires_ms"], 30000)
        self.assertEqual(got["2001:db8::10"]["timeout_ms"], 120000)
        self.assertEqual(got["198.51.100.10"]["timeout_ms"], 3600000)

    def test_networks_are_replaced_as_merged_intervals(self):
        self.tool("networks", "10.0.0.0/8", "10.1.0.0/16", "192.168.0.0/24", "192.168.1.0/24",
                  "2001:db8::/32")
        self.assertEqual(set(self.elements("nets4")), {"10.0.0.0/8", "192.168.0.0/23"})
        self.assertEqual(set(self.elements("nets6")), {"2001:db8::/32"})
        self.tool("networks", "172.16.0.0/12")
        self.assertEqual(set(self.elements("nets4")), {"172.16.0.0/12"})
        self.assertEqual(self.elements("nets6"), {})

    def test_a_table_deleted_behind_our_back_gives_enoent_to_the_handler(self):
        self.nft("delete", "table", "inet", "egress")
        r = self.tool("add", "192.0.2.11,600000,600000", ok=False)
        self.assertEqual(r["handler_calls"], 1)
        self.assertEqual(r["errors"], {"2": 1})
        self.assertIn("No such file or directory", r["message"])
        # Bootstrap (what enforce mode does on such an error) brings it back.
        self.assertTrue(self.tool("bootstrap")["created_table"])
        self.tool("add", "192.0.2.11,600000,600000")

    def test_many_batches_sent_back_to_back_all_complete(self):
        n = 3000
        r = self.tool("pipeline", str(n))
        self.assertEqual(r["handler_calls"], n)
        self.assertEqual(r["ok"], n)
        # The kernel runs each transaction inside send() and queues its ACKs there; the socket
        # reads them at once, so no batch is left waiting on the reactor or the deadline timer.
        # (Batches whose ACKs come later are pipelined: tests/unit/test_nft_netlink.cpp.)
        self.assertEqual(r["in_flight_after_sends"], 0)
        self.assertEqual(len(self.elements("allow4")), n)
        self.assertEqual(len(self.elements("allow6")), n // 2)


class SetsMode(NftCase):
    ADMIN = textwrap.dedent("""\
        table inet egress {
          set allow4 { typeof ip daddr; flags timeout; }
          set allow6 { type ipv6_addr; flags timeout; }
          set nets4 { type ipv4_addr; flags interval; }
          set nets6 { type ipv6_addr; flags interval; }
        }
        """)

    def test_missing_table(self):
        r = self.tool("check-sets", ok=False)
        self.assertIn("nft table inet egress not found", r["exception"])
        self.assertEqual(self.nft("list", "ruleset").stdout.strip(), "")  # nothing created

    def test_an_admins_table_passes(self):
        self.nft_file(self.ADMIN)
        self.assertEqual(self.tool("check-sets"), {"ok": True})
        self.tool("add", "192.0.2.20,600000,600000")
        self.assertIn("192.0.2.20", self.elements("allow4"))

    def test_each_problem_is_named(self):
        cases = [
            ("missing set", self.ADMIN.replace("set allow6 { type ipv6_addr; flags timeout; }", ""),
             "set allow6 not found"),
            ("wrong type", self.ADMIN.replace("typeof ip daddr", "type ipv6_addr"),
             "set allow4 has type ipv6_addr, expected ipv4_addr"),
            ("no timeout flag", self.ADMIN.replace("type ipv6_addr; flags timeout;", "type ipv6_addr;"),
             "set allow6 lacks 'flags timeout'"),
            ("interval on an address set",
             self.ADMIN.replace("typeof ip daddr; flags timeout;", "typeof ip daddr; flags timeout,interval;"),
             "set allow4 has 'flags interval'"),
            ("networks set without interval",
             self.ADMIN.replace("set nets4 { type ipv4_addr; flags interval; }", "set nets4 { type ipv4_addr; }"),
             "set nets4 lacks 'flags interval'"),
        ]
        for what, ruleset, message in cases:
            with self.subTest(what):
                self.nft("flush", "ruleset")
                self.nft_file(ruleset)
                r = self.tool("check-sets", ok=False)
                self.assertIn(message, r["exception"])


class Enforcement(NftCase):
    """The bootstrapped chain in action: a session namespace (ours) and a server namespace joined
    by a veth pair, both in documentation ranges and linked to nothing else."""

    SERVER = ("import socket, time\n"
              "s = [socket.create_server(('0.0.0.0', p)) for p in (53, 8080)]\n"
              "s += [socket.create_server(('::', p), family=socket.AF_INET6) for p in (53, 8080)]\n"
              "print('ready', flush=True)\n"
              "time.sleep(600)\n")
    CONNECT = ("import errno, socket, sys\n"
               "host, port, mark = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])\n"
               "s = socket.socket(socket.AF_INET6 if ':' in host else socket.AF_INET)\n"
               "if mark: s.setsockopt(socket.SOL_SOCKET, 36, mark)  # SO_MARK\n"
               "s.settimeout(5)\n"
               "try:\n"
               "    s.connect((host, port)); print('ok')\n"
               "except socket.timeout: print('timeout')\n"
               "except OSError as e: print(errno.errorcode.get(e.errno, e.errno))\n")

    def setUp(self):
        super().setUp()
        self.server = Netns()
        self.addCleanup(self.server.close)
        self.ns.run(["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0",
                     "netns", self.server.name])
        for ns, last in ((self.ns, 2), (self.server, 1)):
            ns.run(["ip", "link", "set", "eth0", "up"])
            ns.run(["ip", "addr", "add", f"192.0.2.{last}/24", "dev", "eth0"])
            ns.run(["ip", "addr", "add", f"2001:db8::{last}/64", "dev", "eth0", "nodad"])
        p = self.server.spawn([sys.executable, "-c", self.SERVER])
        self.assertEqual(p.stdout.readline().strip(), "ready")
        self.tool("bootstrap")

    def connect(self, host: str, port: int, mark: int = 0) -> str:
        return self.ns.run([sys.executable, "-c", self.CONNECT, host, port, mark]).stdout.strip()

    def test_only_installed_addresses_are_reachable_and_failures_are_fast(self):
        # Rejected with admin-prohibited: an immediate error, not a timeout.
        self.assertEqual(self.connect("192.0.2.1", 8080), "EHOSTUNREACH")
        self.assertIn(self.connect("2001:db8::1", 8080), ("EACCES", "EHOSTUNREACH"))
        self.tool("add", "192.0.2.1,600000,600000", "2001:db8::1,600000,600000")
        self.assertEqual(self.connect("192.0.2.1", 8080), "ok")
        self.assertEqual(self.connect("2001:db8::1", 8080), "ok")  # ND passed the chain too
        self.tool("delete", "192.0.2.1")
        self.assertEqual(self.connect("192.0.2.1", 8080), "EHOSTUNREACH")

    def test_dns_goes_only_through_marked_sockets(self):
        self.tool("add", "192.0.2.1,600000,600000")
        self.assertEqual(self.connect("192.0.2.1", 53), "ECONNREFUSED")  # reject: port unreachable
        self.assertEqual(self.connect("192.0.2.1", 53, MARK), "ok")
        self.assertEqual(self.connect("192.0.2.1", 53, MARK + 1), "ECONNREFUSED")

    def test_networks_open_whole_ranges(self):
        self.assertEqual(self.connect("192.0.2.1", 8080), "EHOSTUNREACH")
        self.tool("networks", "192.0.2.0/28")
        self.assertEqual(self.connect("192.0.2.1", 8080), "ok")


if __name__ == "__main__":
    egress_lab.test_main(privilege_problem)
