#!/usr/bin/python3
"""dnsd's nftables enforcement (issue 3, "Tests") in the lab, read back from the kernel.

dnsd runs in the session namespace with --nft-mode enforce (or sets/off); every check reads the
kernel's truth with `nft -j` inside that namespace and connects from it to the lab's web server
(Lab.start_web: one listener in the internet namespace answering on every lab address, so a
connection that fails was stopped by the session's chain, not by a missing server).

Each test starts from an empty ruleset in the session namespace and its own dnsd, and flushes the
ruleset again when it ends: dnsd never flushes at start (by design), so elements would otherwise
leak from one test into the next.

Run: DNSD=build/dnsd/dnsd /usr/bin/python3 tests/integration/test_dnsd_nft.py [-k NAME]   (root)
"""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # lab_support
import lab_support as S
from lab_support import L, DnsdCase, addrs, wait_until

import dns.exception
import dns.message
import dns.rcode
import dns.rdatatype

ENFORCE = ("--nft-mode", "enforce")
MARK = 25959  # dnsd's default SO_MARK (0x6567)
DEFAULT_TIMEOUT = 300 + 30  # zone TTL 300 (the lab's $TTL), clamp(300, 60, 3600) + 30
# What a connect() stopped by the chain fails with, at once: the DNS rule's reject (ICMP port
# unreachable -> ECONNREFUSED; EPERM for a UDP send the chain dropped), the final reject with
# admin-prohibited (EHOSTUNREACH for IPv4, EACCES for IPv6). A timeout is none of these.
REJECTED = {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.EACCES, errno.EPERM, errno.ENETUNREACH}

# --- zones ------------------------------------------------------------------------------------

RACE_NAMES = 1500  # r0 .. r1499.race.test, each with its own IPv4 address (every 4th an IPv6 too)


def race_name(i: int) -> str:
    return f"r{i}.race.test"


def race_a(i: int) -> str:
    return f"198.19.{i // 200}.{i % 200 + 1}"


def race_aaaa(i: int) -> Optional[str]:
    return f"2001:db8:200:19::{i + 1:x}" if i % 4 == 0 else None


def _race_zone() -> str:
    lines = []
    for i in range(RACE_NAMES):
        lines.append(f"r{i} A {race_a(i)}")
        if race_aaaa(i):
            lines.append(f"r{i} AAAA {race_aaaa(i)}")
    return "\n".join(lines)


NFT_ZONE = """
    a        A      203.0.113.100
    b        A      203.0.113.100
    c        A      203.0.113.101
    c        AAAA   2001:db8:200::101
    multi    CNAME  multi2.nft.test.
    multi2   CNAME  pool.nft.test.
    pool     A      192.0.2.81
    pool     A      192.0.2.82
    pool     AAAA   2001:db8:200::81
    mixed    A      10.0.0.1
    mixed    A      127.0.0.1
    mixed    A      169.254.169.254
    mixed    A      0.0.0.0
    mixed    A      224.0.0.1
    mixed    A      192.0.2.50
    mixed    AAAA   fe80::1
    mixed    AAAA   ::1
    mixed    AAAA   2001:db8:200::51
    private  A      10.0.0.1
    four     A      192.0.2.61
    four     A      192.0.2.62
    four     A      192.0.2.63
    four     A      192.0.2.64
    svc  120 HTTPS  1 . alpn=h2 ipv4hint=192.0.2.71 ipv6hint=2001:db8:200::71
    renew    A      192.0.2.95
    short 2  A      192.0.2.96
    t30   30 A      192.0.2.91
    t7200 7200 A    192.0.2.92
"""

ZONES = {"race.test": _race_zone(), "nft.test": NFT_ZONE}

MIXED_PUBLIC_A, MIXED_PUBLIC_AAAA = "192.0.2.50", "2001:db8:200::51"
NEVER_RESOLVED = ("192.0.2.99", "2001:db8:200::99")  # served by the web server, in no zone


def setUpModule():
    lab = S.module_up(extra_zones=ZONES)
    # ICMPv6 errors are rate-limited per destination (1/s): a second rejected IPv6 connect within
    # a second would only fail after a SYN retransmit. Both namespaces are the lab's own.
    lab.run_in_session(["sysctl", "-q", "-w", "net.ipv6.icmp.ratelimit=0"], check=True)
    lab.start_web()


tearDownModule = S.module_down


# --- the design's table, as nft renders it ----------------------------------------------------

def design_table(mark: int = MARK, table: str = "egress") -> str:
    """The enforce-mode table of ARCHITECTURE.md ("The nftables table") for the lab (port 53)."""
    return f"""
table inet {table} {{
  set allow4 {{ type ipv4_addr; flags timeout; size 65536; }}
  set allow6 {{ type ipv6_addr; flags timeout; size 65536; }}
  set nets4  {{ type ipv4_addr; flags interval; }}
  set nets6  {{ type ipv6_addr; flags interval; }}
  chain output {{
    type filter hook output priority filter; policy drop;
    ct state established,related accept
    oif lo accept
    icmpv6 type {{ nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit }} accept
    meta mark {mark} accept
    meta l4proto {{ tcp, udp }} th dport {{ 53, 853 }} reject
    ip daddr @allow4 accept ; ip6 daddr @allow6 accept
    ip daddr @nets4 accept  ; ip6 daddr @nets6 accept
    counter reject with icmpx admin-prohibited
  }}
}}
"""


def normalise_chain(text: str) -> list:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return [re.sub(r"counter packets \d+ bytes \d+", "counter", ln) for ln in lines]


def reference_chain(mark: int = MARK) -> list:
    """The design's output chain as `nft list` prints it, loaded in a throwaway namespace (gone
    when `unshare` exits): what dnsd's chain must read back as."""
    r = subprocess.run(["unshare", "--net", "sh", "-c",
                        "nft -f - && nft list chain inet egress output"],
                       input=design_table(mark), capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise RuntimeError(f"loading the design's table failed: {r.stderr}")
    return normalise_chain(r.stdout)


# --- reading the kernel -----------------------------------------------------------------------

def nft(*args, check: bool = False) -> subprocess.CompletedProcess:
    return S.LAB.run_in_session(["nft", *map(str, args)], check=check)


def nft_json(*args) -> Optional[list]:
    """`nft -j ARGS` in the session: the "nftables" list, or None when nft fails (no object)."""
    r = nft("-j", *args)
    if r.returncode != 0:
        return None
    return json.loads(r.stdout)["nftables"]


def set_info(name: str, table: str = "egress") -> Optional[dict]:
    out = nft_json("list", "set", "inet", table, name)
    if out is None:
        return None
    return next(o["set"] for o in out if "set" in o)


def elements(name: str = "allow4", table: str = "egress") -> Optional[dict]:
    """address -> (timeout, expires) in seconds of a timeout set; None when the set is missing."""
    info = set_info(name, table)
    if info is None:
        return None
    out = {}
    for e in info.get("elem", []):
        if isinstance(e, dict) and "elem" in e:
            out[canon(e["elem"]["val"])] = (e["elem"].get("timeout"), e["elem"].get("expires"))
        else:
            out[canon(e)] = (None, None)  # an element without a timeout: never expires
    return out


def members(name: str = "allow4", table: str = "egress") -> set:
    return set(elements(name, table) or {})


def table_names() -> list:
    return [(o["table"]["family"], o["table"]["name"])
            for o in nft_json("list", "tables") or [] if "table" in o]


def chain_info(table: str = "egress", chain: str = "output") -> Optional[dict]:
    out = nft_json("list", "chain", "inet", table, chain)
    if out is None:
        return None
    return next(o["chain"] for o in out if "chain" in o)


def reject_counter() -> int:
    """Packets counted by the chain's final rule (counter + reject with admin-prohibited)."""
    for o in nft_json("list", "chain", "inet", "egress", "output") or []:
        expr = o.get("rule", {}).get("expr", [])
        kinds = {k for x in expr for k in x}
        if "counter" in kinds and any(x.get("reject", {}) and
                                      x["reject"].get("expr") == "admin-prohibited"
                                      for x in expr if "reject" in x):
            return next(x["counter"]["packets"] for x in expr if "counter" in x)
    raise AssertionError("no counter + reject admin-prohibited rule in inet egress output")


def canon(addr: str) -> str:
    return str(ipaddress.ip_address(addr))


def family(addr: str) -> int:
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


# --- connecting from the session --------------------------------------------------------------

def http_get(addr: str, port: int = 80, timeout: float = 5.0):
    """GET from the session namespace: None when the web server answered with `addr` (so the
    connection reached that address), else the exception or a description of the reply."""
    s = S.LAB.session_socket(family(addr), socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        s.connect((addr, port))
        s.sendall(b"GET / HTTP/1.0\r\nHost: lab\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        if head.startswith(b"HTTP/1.0 200") and body.decode(errors="replace").strip() == addr:
            return None
        return f"unexpected reply from {addr}: {data[:200]!r}"
    except OSError as e:
        return e
    finally:
        s.close()


def open_echo(addr: str, port: int = 80, timeout: float = 5.0) -> socket.socket:
    """An established connection to the web server's echo mode, checked with one line."""
    s = S.LAB.session_socket(family(addr), socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((addr, port))
        echo(s, b"hello\n")
    except BaseException:
        s.close()
        raise
    return s


def echo(s: socket.socket, line: bytes) -> bytes:
    s.sendall(line)
    got = b""
    while not got.endswith(b"\n"):
        chunk = s.recv(4096)
        if not chunk:
            break
        got += chunk
    return got


def udp_dns(addr: str, name: str = "github.com", timeout: float = 3.0):
    """A DNS query over UDP from the session straight to `addr`: the reply, or the exception."""
    q = dns.message.make_query(name, "A")
    s = S.LAB.session_socket(family(addr), socket.SOCK_DGRAM)
    try:
        s.settimeout(timeout)
        s.connect((addr, 53))
        s.send(q.to_wire())
        return dns.message.from_wire(s.recv(4096))
    except OSError as e:
        return e
    finally:
        s.close()


# --- clients run as processes in the session (glibc resolver via /etc/netns resolv.conf) ------

RACE_CLIENT = r"""
import json, socket, sys, threading
names = open(sys.argv[1]).read().split()
threads = int(sys.argv[2])
failures, stats, lock = [], {"resolved": 0, "connected": 0}, threading.Lock()

def one(name):
    try:
        infos = socket.getaddrinfo(name, 80, type=socket.SOCK_STREAM)
    except OSError as e:
        return [[name, "", "resolve: " + str(e)]], 0
    bad, done = [], 0
    for fam, typ, proto, _, sa in {(i[0], i[1], i[2], "", i[4][:2]) for i in infos}:
        s = socket.socket(fam, typ, proto)
        s.settimeout(5)
        try:
            s.connect(sa)  # at once: the answer is only sent once the address is installed
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            body = data.partition(b"\r\n\r\n")[2].decode().strip()
            if body != sa[0]:
                bad.append([name, sa[0], "reply " + repr(data[:100])])
            else:
                done += 1
        except OSError as e:
            bad.append([name, sa[0], repr(e)])
        finally:
            s.close()
    return bad, done

def worker(k):
    for name in names[k::threads]:
        bad, done = one(name)
        with lock:
            failures.extend(bad)
            stats["connected"] += done
            stats["resolved"] += 0 if bad and not bad[0][1] else 1

ts = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
for t in ts:
    t.start()
for t in ts:
    t.join()
print(json.dumps(dict(stats, failures=failures)))
"""


# --- the test base ----------------------------------------------------------------------------

class NftCase(DnsdCase):
    """A dnsd per test, on an empty ruleset, which is flushed again when the test ends."""

    START = False

    def setUp(self):
        super().setUp()
        nft("flush", "ruleset", check=True)
        self.addCleanup(nft, "flush", "ruleset")  # runs after dnsd is stopped (LIFO)

    def start_nft(self, allow, networks=(), args=(), mode=ENFORCE) -> L.Dnsd:
        allowlist = self.lab.write_allowlist(allow, networks)
        return self.start(args=tuple(mode) + tuple(args), allowlist=allowlist)

    def dig(self, name: str, rdtype: str = "A") -> "tuple[str, list]":
        """`dig` in the session (resolv.conf -> dnsd): (status, [(owner, ttl, type, data)])."""
        r = self.lab.dig("+tries=1", "+time=3", "+noall", "+comments", "+answer", name, rdtype)
        m = re.search(r"status: (\w+)", r.stdout)
        self.assertIsNotNone(m, f"dig {name} {rdtype}: no reply\n{r.stdout}{r.stderr}")
        answer = [(o.lower(), int(t), ty, d.strip())
                  for o, t, ty, d in re.findall(r"(?m)^(\S+)\s+(\d+)\s+IN\s+(\S+)\s+(.+)$",
                                                r.stdout)]
        return m.group(1), answer

    def answer_addrs(self, answer, rdtype="A") -> set:
        return {canon(d) for _, _, ty, d in answer if ty == rdtype}

    def assertReachable(self, addr: str, port: int = 80):
        err = http_get(addr, port)
        self.assertIsNone(err, f"{addr}:{port} not reachable from the session: {err!r}\n"
                               f"allow4={members('allow4')} allow6={members('allow6')}")

    def assertRejected(self, addr: str, port: int = 80):
        err = http_get(addr, port)
        self.assertIsNotNone(err, f"{addr}:{port} reachable from the session")
        self.assertIsInstance(err, OSError, err)
        self.assertNotIsInstance(err, TimeoutError, f"{addr}:{port}: a timeout, not a rejection")
        self.assertIn(err.errno, REJECTED, f"{addr}:{port}: {err!r}")

    def assertDnsRejected(self, addr: str):
        got = udp_dns(addr)
        self.assertIsInstance(got, OSError, f"DNS over UDP to {addr} answered: {got}")
        self.assertNotIsInstance(got, TimeoutError, f"DNS over UDP to {addr} timed out")
        self.assertIn(got.errno, REJECTED, f"DNS over UDP to {addr}: {got!r}")
        for port in (53, 853):
            with self.subTest(addr=addr, port=port, proto="tcp"):
                self.assertRejected(addr, port)

    def nft_log_lines(self) -> list:
        return [ln for ln in self.dnsd.stderr().splitlines() if "nftables:" in ln]


# --- tests ------------------------------------------------------------------------------------

class TestEnforce(NftCase):
    def test_table_is_the_design(self):
        self.start_nft(["github.com"])
        chain = nft("list", "chain", "inet", "egress", "output")
        self.assertEqual(chain.returncode, 0, chain.stderr)
        self.assertEqual(normalise_chain(chain.stdout), reference_chain())
        for name, typ, flag in (("allow4", "ipv4_addr", "timeout"),
                                ("allow6", "ipv6_addr", "timeout"),
                                ("nets4", "ipv4_addr", "interval"),
                                ("nets6", "ipv6_addr", "interval")):
            with self.subTest(set=name):
                info = set_info(name)
                self.assertIsNotNone(info, f"set {name} missing")
                self.assertEqual(info["type"], typ)
                self.assertIn(flag, info.get("flags", []))
                if flag == "timeout":
                    self.assertEqual(info.get("size"), 65536)
        self.assertEqual(table_names(), [("inet", "egress")])

    def test_dig_installs_exactly_the_answer_with_timeouts(self):
        self.start_nft(["api.github.com", "github.com"])
        # A denied name installs nothing.
        self.assertEqual(self.dig("example.org")[0], "NXDOMAIN")
        self.assertEqual((members("allow4"), members("allow6")), (set(), set()))
        got = {}
        for rdtype, set_name in (("A", "allow4"), ("AAAA", "allow6")):
            status, answer = self.dig("api.github.com", rdtype)
            self.assertEqual(status, "NOERROR")
            got[set_name] = answer
        want4 = self.answer_addrs(got["allow4"], "A")
        want6 = self.answer_addrs(got["allow6"], "AAAA")
        self.assertEqual(want4, {L.API_GITHUB_A})
        self.assertEqual(want6, {L.API_GITHUB_AAAA})
        for set_name, want, answer in (("allow4", want4, got["allow4"]),
                                       ("allow6", want6, got["allow6"])):
            els = elements(set_name)
            self.assertEqual(set(els), want, f"{set_name}: {els}")
            for addr, (timeout, expires) in els.items():
                self.assertEqual(timeout, DEFAULT_TIMEOUT, f"{addr}: {els}")
                self.assertIsNotNone(expires, f"{addr}: no expiry")
                self.assertTrue(0 < expires <= timeout, f"{addr}: {els}")
            for _, ttl, _, _ in answer:  # no record outlives its element
                self.assertLessEqual(ttl, min(e for _, e in els.values()) + 1, answer)

    def test_timeouts_clamped_ttls_capped(self):
        # Non-default bounds, so the flags are what is tested: clamp(TTL, 100, 1000) + 7.
        self.start_nft(["t30.nft.test", "renew.nft.test", "t7200.nft.test"],
                       args=("--nft-min-timeout", "100", "--nft-max-timeout", "1000",
                             "--nft-grace", "7"))
        for name, addr, zone_ttl, timeout in (("t30.nft.test", "192.0.2.91", 30, 107),
                                              ("renew.nft.test", "192.0.2.95", 300, 307),
                                              ("t7200.nft.test", "192.0.2.92", 7200, 1007)):
            with self.subTest(name=name):
                status, answer = self.dig(name)
                self.assertEqual(status, "NOERROR")
                self.assertEqual(self.answer_addrs(answer), {addr})
                el_timeout, expires = elements()[addr]
                self.assertEqual(el_timeout, timeout)
                self.assertTrue(0 < expires <= timeout, (el_timeout, expires))
                ttl = answer[0][1]
                self.assertLessEqual(ttl, zone_ttl)
                self.assertLessEqual(ttl, timeout)
                self.assertLessEqual(ttl, expires + 1)  # nft prints whole seconds, rounded down
                self.assertGreater(ttl, 0)

    def test_chain_allows_resolved_rejects_unresolved(self):
        self.start_nft(["api.github.com"])
        for a in NEVER_RESOLVED + (L.API_GITHUB_A, L.API_GITHUB_AAAA):
            with self.lab.netns(self.lab.internet):  # the server is there for all of them
                socket.create_connection((a, 80), timeout=5).close()
        # Before the answer the chain rejects the address too: the answer is what opens it.
        self.assertRejected(L.API_GITHUB_A)
        for rdtype in ("A", "AAAA"):
            self.assertEqual(self.dig("api.github.com", rdtype)[0], "NOERROR")
        for url in (f"http://{L.API_GITHUB_A}/", f"http://[{L.API_GITHUB_AAAA}]/"):
            with self.subTest(url=url):
                r = self.lab.run_in_session(["curl", "-sS", "-g", "--max-time", "5", url])
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(r.stdout.strip(), url.split("/")[2].strip("[]"))
        for addr in NEVER_RESOLVED:
            with self.subTest(addr=addr):
                before = reject_counter()
                self.assertRejected(addr)
                self.assertGreater(reject_counter(), before, "not the chain's final reject")
                host = f"[{addr}]" if ":" in addr else addr
                r = self.lab.run_in_session(["curl", "-sS", "-g", "--max-time", "5",
                                             f"http://{host}/"])
                self.assertEqual(r.returncode, 7, f"curl: want 7 (could not connect), not 28 "
                                                  f"(timeout): {r.stderr}")

    def test_cname_chain_query_name_decides(self):
        self.start_nft(["www.cdn.example", "multi.nft.test"])
        # The chain's other names are not allowed: nothing installed for them.
        for name in ("edge.cdn.example", "node.cdn.example", "pool.nft.test"):
            self.assertEqual(self.dig(name)[0], "NXDOMAIN", name)
        self.assertEqual(members("allow4"), set())
        status, answer = self.dig("www.cdn.example", "A")
        self.assertEqual(status, "NOERROR")
        self.assertIn("CNAME", {ty for _, _, ty, _ in answer})
        self.assertEqual(self.dig("www.cdn.example", "AAAA")[0], "NOERROR")
        status, answer = self.dig("multi.nft.test", "A")
        self.assertEqual(self.answer_addrs(answer), {"192.0.2.81", "192.0.2.82"})
        self.assertEqual(self.dig("multi.nft.test", "AAAA")[0], "NOERROR")
        self.assertEqual(members("allow4"), {L.CDN_NODE_A, "192.0.2.81", "192.0.2.82"})
        self.assertEqual(members("allow6"), {L.CDN_NODE_AAAA, "2001:db8:200::81"})
        for addr in (L.CDN_NODE_A, "192.0.2.81", "192.0.2.82", "2001:db8:200::81"):
            self.assertReachable(addr)


class TestRace(NftCase):
    def test_connect_the_instant_the_answer_arrives(self):
        self.start_nft(["*.race.test"])
        n = 1200
        names = self.lab.tmp / "race-names.txt"
        names.write_text("\n".join(race_name(i) for i in range(n)) + "\n")
        r = self.lab.run_in_session(["/usr/bin/python3", "-c", RACE_CLIENT, str(names), "8"],
                                    timeout=400)
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        out = json.loads(r.stdout)
        self.assertEqual(out["failures"][:20], [], f"{len(out['failures'])} failures")
        want = n + sum(1 for i in range(n) if race_aaaa(i))
        self.assertEqual((out["resolved"], out["connected"]), (n, want))
        self.assertLessEqual({race_a(i) for i in range(n)}, members("allow4"))


class TestRenewal(NftCase):
    ARGS = ("--nft-min-timeout", "2", "--nft-max-timeout", "4", "--nft-grace", "1")

    def test_element_renewed_by_cache_hits_while_queried(self):
        self.start_nft(["renew.nft.test", "short.nft.test"], args=self.ARGS)
        # renew: TTL 300 -> element 5 s while the answer stays cached (renewal by hits);
        # short: TTL 2 -> element 3 s (the answer expires from the cache too).
        for name, addr, timeout in (("renew.nft.test", "192.0.2.95", 5),
                                    ("short.nft.test", "192.0.2.96", 3)):
            with self.subTest(name=name):
                r = self.q(name)
                self.assertRcode(r, "NOERROR")
                self.assertEqual(elements()[addr][0], timeout)
                self.assertLessEqual(r.answer[0].ttl, timeout)
                missing, polls = [], 0
                end = time.monotonic() + max(10.0, 2.5 * timeout)  # beyond several lifetimes
                while time.monotonic() < end:
                    r = self.q(name)
                    self.assertRcode(r, "NOERROR")
                    self.assertLessEqual(r.answer[0].ttl, timeout)
                    if addr not in members():
                        missing.append(round(end - time.monotonic(), 2))
                    polls += 1
                    time.sleep(0.2)
                self.assertEqual(missing, [], f"element absent in {len(missing)} of {polls} "
                                              "polls while queried")
                self.assertReachable(addr)
                if name == "renew.nft.test":
                    caches = [e.get("cache") for e in self.log_entries(name, polls)]
                    self.assertIn("hit", caches, "no cache hit: renewal by hits not exercised")
                # Not queried any more, the element expires: the short timeout was real.
                self.assertTrue(wait_until(lambda: addr not in members(), timeout + 10, 0.2),
                                f"{addr} still installed {timeout + 10} s after the last query")


class TestRestart(NftCase):
    def test_restart_under_load(self):
        self.start_nft(["*.race.test"])
        answered, connect_failures, dns_failures = {}, [], []
        stop = threading.Event()
        lock = threading.Lock()

        def load():
            for i in range(RACE_NAMES):
                if stop.is_set():
                    return
                name = race_name(i)
                try:
                    r = self.lab.query(name, "A", timeout=1.0)
                except dns.exception.Timeout as e:  # dnsd down between stop and start
                    dns_failures.append((name, repr(e)))
                    continue
                if r.rcode() != dns.rcode.NOERROR:
                    dns_failures.append((name, dns.rcode.to_text(r.rcode())))
                    continue
                got = addrs(r)
                with lock:
                    answered[name] = got
                for a in got:
                    err = http_get(a)
                    if err is not None:
                        connect_failures.append((name, a, repr(err)))

        t = threading.Thread(target=load)
        t.start()
        try:
            self.assertTrue(wait_until(lambda: len(answered) >= 100, 60, 0.1), "load stalled")
            before = elements()
            self.dnsd.stop()
            during = elements()
            first = self.dnsd
            self.start_nft(["*.race.test"])
            after_start = elements()
            n = len(answered)
            self.assertTrue(wait_until(lambda: len(answered) >= n + 100, 60, 0.1),
                            f"no answers after the restart; stderr:\n{self.dnsd.stderr()[-2000:]}"
                            f"\nfirst dnsd:\n{first.stderr()[-2000:]}")
        finally:
            stop.set()
            t.join(60)
        self.assertFalse(t.is_alive())
        self.assertEqual(connect_failures, [])
        self.assertIsNotNone(during, "table or set gone after dnsd stopped")
        for snapshot, what in ((during, "after stop"), (after_start, "after start")):
            lost = {a: v for a, v in before.items() if a not in snapshot}
            self.assertEqual(lost, {}, f"elements lost {what}")
            changed = {a: (v[0], snapshot[a][0]) for a, v in before.items()
                       if snapshot[a][0] != v[0]}
            self.assertEqual(changed, {}, f"element timeouts changed {what}")
        with lock:
            everything = dict(answered)
        unreachable = [(n, a) for n, got in everything.items() for a in got
                       if http_get(a) is not None]
        self.assertEqual(unreachable, [])


class TestReload(NftCase):
    def test_reload_revokes_unheld_keeps_established(self):
        self.start_nft(["a.nft.test", "b.nft.test", "c.nft.test", "api.github.com"])
        for name, rdtype in (("a.nft.test", "A"), ("b.nft.test", "A"), ("c.nft.test", "A"),
                             ("c.nft.test", "AAAA"), ("api.github.com", "A")):
            self.assertRcode(self.q(name, rdtype), "NOERROR")
        self.assertEqual(members("allow4"), {"203.0.113.100", "203.0.113.101", L.API_GITHUB_A})
        self.assertEqual(members("allow6"), {"2001:db8:200::101"})
        conns = [open_echo("203.0.113.101"), open_echo("2001:db8:200::101")]
        for s in conns:
            self.addCleanup(s.close)
        # a and c leave; b still holds 203.0.113.100.
        self.allowlist.write_text("domains:\n  - b.nft.test\n  - api.github.com\n")
        self.assertTrue(wait_until(lambda: "203.0.113.101" not in members("allow4")
                                   and "2001:db8:200::101" not in members("allow6"), 10, 0.1),
                        f"c's addresses not revoked: {members('allow4')} {members('allow6')}\n"
                        + self.dnsd.stderr()[-2000:])
        self.assertEqual(members("allow4"), {"203.0.113.100", L.API_GITHUB_A})
        self.assertEqual(members("allow6"), set())
        for s in conns:  # ct established: connections opened before keep working
            self.assertEqual(echo(s, b"still there\n"), b"still there\n")
        self.assertRejected("203.0.113.101")
        self.assertRejected("2001:db8:200::101")
        self.assertReachable("203.0.113.100")
        for name in ("a.nft.test", "c.nft.test"):
            self.assertRcode(self.q(name), "NXDOMAIN", name)
        self.assertEqual(addrs(self.q("b.nft.test")), {"203.0.113.100"})


class TestKill(NftCase):
    def test_sigkill_fails_closed(self):
        d = self.start_nft(["api.github.com", "github.com"])
        self.assertRcode(self.q("api.github.com"), "NOERROR")
        self.assertReachable(L.API_GITHUB_A)
        d.signal(signal.SIGKILL)
        d.proc.wait(10)
        self.dnsd = None  # its death is this test's doing, not a crash
        info = chain_info()
        self.assertIsNotNone(info, "chain gone with dnsd")
        self.assertEqual(info.get("policy"), "drop")
        self.assertIn(L.API_GITHUB_A, members("allow4"), "elements gone with dnsd")
        for addr in NEVER_RESOLVED:
            self.assertRejected(addr)
        # DNS fails: nothing answers on 127.0.0.1:53 and the upstream is out of reach.
        with self.assertRaises((dns.exception.Timeout, ConnectionRefusedError)):
            self.q("github.com", timeout=1.0)
        r = self.lab.dig("+tries=1", "+time=1", "github.com")
        self.assertNotEqual(r.returncode, 0, r.stdout)
        self.assertNotIn("status: NOERROR", r.stdout)
        r = self.lab.run_in_session(["getent", "hosts", "github.com"])
        self.assertNotEqual(r.returncode, 0, r.stdout)
        self.assertDnsRejected(L.UPSTREAM_V4)


class TestUpstreamDirect(NftCase):
    def test_direct_dns_rejected_dnsd_resolves(self):
        # ns1.lab.test is the resolver's own address: installed, yet DNS to it stays rejected.
        self.start_nft(["ns1.lab.test", "github.com", "pypi.org"])
        self.assertEqual(addrs(self.q("ns1.lab.test", "A")), {L.UPSTREAM_V4})
        self.assertEqual(addrs(self.q("ns1.lab.test", "AAAA"), "AAAA"), {L.UPSTREAM_V6})
        self.assertIn(L.UPSTREAM_V4, members("allow4"))
        self.assertIn(L.UPSTREAM_V6, members("allow6"))
        for addr in (L.UPSTREAM_V4, L.UPSTREAM_V6):
            with self.subTest(addr=addr):
                self.assertDnsRejected(addr)
                self.assertReachable(addr)  # port 80 there: the address itself is open
                r = self.lab.dig(f"@{addr}", "+tries=1", "+time=2", "github.com")
                self.assertNotIn("status: NOERROR", r.stdout)
                self.assertNotEqual(r.returncode, 0, r.stdout)
        # dnsd's marked sockets still reach the upstream: a miss resolves.
        r = self.q("pypi.org")
        self.assertEqual(addrs(r), {L.PYPI_A})
        self.assertEqual(self.log_entries("pypi.org")[-1].get("cache"), "miss")

    def test_upstream_tcp_fallback_carries_the_mark(self):
        # nsd truncates this answer at 1232 octets over UDP; c-ares retries over TCP, whose SYN
        # must already carry the mark or the chain rejects it (port 53).
        self.start_nft(["*.txt.test"])
        r = self.q("big.txt.test", "TXT", tcp=True)
        self.assertEqual(r.rcode(), dns.rcode.NOERROR)
        got = sorted(s.decode() for rrset in r.answer for rd in rrset for s in rd.strings)
        self.assertEqual(got, sorted(L.BIG_TXT_STRINGS))

    def test_custom_mark(self):
        self.start_nft(["github.com"], args=("--nft-mark", "4242"))
        self.assertEqual(normalise_chain(nft("list", "chain", "inet", "egress", "output").stdout),
                         reference_chain(4242))
        self.assertEqual(addrs(self.q("github.com")), {L.GITHUB_A})
        self.assertEqual(self.log_entries("github.com")[-1].get("cache"), "miss")
        self.assertDnsRejected(L.UPSTREAM_V4)


class TestNetlinkFailure(NftCase):
    def break_table(self) -> int:
        """Resolves r0, deletes the table behind dnsd's back; returns the log's nftables: count."""
        self.start_nft(["*.race.test"])
        self.assertEqual(addrs(self.q(race_name(0))), {race_a(0)})
        self.assertIn(race_a(0), members())
        before = len(self.nft_log_lines())
        nft("delete", "table", "inet", "egress", check=True)
        self.assertIsNone(set_info("allow4"))
        return before

    def recover(self) -> str:
        """Queries fresh names until one is answered; returns its address."""
        names = iter(range(2, RACE_NAMES))
        last = []

        def attempt():
            i = next(names)
            r = self.q(race_name(i))
            last[:] = [dns.rcode.to_text(r.rcode())]
            return race_a(i) if r.rcode() == dns.rcode.NOERROR else None

        addr = wait_until(attempt, 10, 0.2)
        self.assertTrue(addr, f"no answer after the table was deleted (last {last}); stderr:\n"
                              + self.dnsd.stderr()[-3000:])
        return addr

    def test_table_deleted_servfail_then_recreated(self):
        before = self.break_table()
        r = self.q(race_name(1))
        self.assertRcode(r, "SERVFAIL")
        self.assertTrue(wait_until(lambda: len(self.nft_log_lines()) > before, 3),
                        "no log line with 'nftables:':\n" + self.dnsd.stderr()[-2000:])
        addr = self.recover()
        self.assertIn(addr, members())
        info = chain_info()
        self.assertIsNotNone(info, "chain not recreated")
        self.assertEqual(info.get("policy"), "drop")
        self.assertEqual(normalise_chain(nft("list", "chain", "inet", "egress", "output").stdout),
                         reference_chain())
        self.assertReachable(addr)
        self.assertRejected(NEVER_RESOLVED[0])

    def test_name_answered_before_is_reachable_after_recovery(self):
        # r0's element went with the table; dnsd's expiry map still lists it. Its cached answer
        # must not be served with the address out of the set.
        self.break_table()
        self.q(race_name(1))
        self.recover()
        r = self.q(race_name(0))
        self.assertRcode(r, "NOERROR")
        self.assertEqual(addrs(r), {race_a(0)})
        self.assertIn(race_a(0), members())
        self.assertReachable(race_a(0))


class TestGuards(NftCase):
    def test_special_ranges_not_installed_and_stripped(self):
        self.start_nft(["mixed.nft.test", "private.nft.test"])
        r = self.q("mixed.nft.test", "A")
        self.assertRcode(r, "NOERROR")
        self.assertEqual(addrs(r), {MIXED_PUBLIC_A})
        r = self.q("mixed.nft.test", "AAAA")
        self.assertRcode(r, "NOERROR")
        self.assertEqual(addrs(r, "AAAA"), {MIXED_PUBLIC_AAAA})
        r = self.q("private.nft.test", "A")
        self.assertRcode(r, "NOERROR")
        self.assertEqual(addrs(r), set())
        self.assertEqual(members("allow4"), {MIXED_PUBLIC_A})
        self.assertEqual(members("allow6"), {MIXED_PUBLIC_AAAA})

    def test_networks_cover_private(self):
        self.start_nft(["mixed.nft.test"], networks=["10.0.0.0/8"])
        nets = set_info("nets4")
        self.assertIsNotNone(nets)
        self.assertIn({"prefix": {"addr": "10.0.0.0", "len": 8}}, nets.get("elem", []))
        r = self.q("mixed.nft.test", "A")
        self.assertEqual(addrs(r), {MIXED_PUBLIC_A, "10.0.0.1"})
        self.assertEqual(members("allow4"), {MIXED_PUBLIC_A, "10.0.0.1"})

    def test_per_name_cap(self):
        self.start_nft(["four.nft.test"], args=("--nft-max-addresses", "2"))
        r = self.q("four.nft.test", "A")
        self.assertRcode(r, "NOERROR")
        got = addrs(r)
        self.assertEqual(len(got), 2, r)
        self.assertLessEqual(got, {"192.0.2.61", "192.0.2.62", "192.0.2.63", "192.0.2.64"})
        self.assertEqual(members("allow4"), got)


class TestHttpsHints(NftCase):
    def test_ipv4hint_ipv6hint_installed(self):
        self.start_nft(["svc.nft.test"])
        r = self.q("svc.nft.test", "HTTPS")
        self.assertRcode(r, "NOERROR")
        https = [rrset for rrset in r.answer if rrset.rdtype == dns.rdatatype.HTTPS]
        self.assertEqual(len(https), 1, r)
        self.assertRegex(https[0][0].to_text(), r'ipv4hint="?192\.0\.2\.71"?( |$)')
        timeout = 120 + 30  # the record's TTL, clamped, plus grace
        self.assertEqual(elements("allow4").get("192.0.2.71", (None,))[0], timeout,
                         elements("allow4"))
        self.assertEqual(elements("allow6").get("2001:db8:200::71", (None,))[0], timeout,
                         elements("allow6"))
        self.assertLessEqual(https[0].ttl, timeout)
        self.assertReachable("192.0.2.71")


ADMIN_TABLE = """
table inet {table} {{
  set {set4} {{ type ipv4_addr; flags timeout; }}
  set {set6} {{ type ipv6_addr; flags timeout; }}
  chain out {{
    type filter hook output priority 10; policy accept;
    ip daddr @{set4} counter accept
    ip6 daddr @{set6} counter accept
  }}
}}
"""


class TestSetsMode(NftCase):
    SETS = ("--nft-mode", "sets")

    def admin(self, text: str):
        r = self.lab.run_in_session(["nft", "-f", "-"], input=text)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_admin_sets_filled(self):
        for table, set4, set6 in (("egress", "allow4", "allow6"), ("site", "v4", "v6")):
            with self.subTest(table=table):
                nft("flush", "ruleset", check=True)
                self.admin(ADMIN_TABLE.format(table=table, set4=set4, set6=set6))
                listing = nft("list", "table", "inet", table).stdout
                args = () if table == "egress" else ("--nft-table", table, "--nft-set4", set4,
                                                     "--nft-set6", set6)
                d = self.start_nft(["api.github.com"], args=args, mode=self.SETS)
                try:
                    self.assertEqual(addrs(self.q("api.github.com", "A")), {L.API_GITHUB_A})
                    self.assertEqual(addrs(self.q("api.github.com", "AAAA"), "AAAA"),
                                     {L.API_GITHUB_AAAA})
                    els4, els6 = elements(set4, table), elements(set6, table)
                    self.assertEqual(set(els4), {L.API_GITHUB_A})
                    self.assertEqual(set(els6), {L.API_GITHUB_AAAA})
                    self.assertEqual(els4[L.API_GITHUB_A][0], DEFAULT_TIMEOUT)
                    self.assertEqual(els6[L.API_GITHUB_AAAA][0], DEFAULT_TIMEOUT)
                    # Nothing else created or changed: no other table, the admin's chain as it
                    # was (counters aside) once the elements are gone again.
                    self.assertEqual(table_names(), [("inet", table)])
                    nft("flush", "set", "inet", table, set4, check=True)
                    nft("flush", "set", "inet", table, set6, check=True)
                    self.assertEqual(normalise_chain(nft("list", "table", "inet", table).stdout),
                                     normalise_chain(listing))
                finally:
                    d.stop()
                    self.dnsd = None

    def run_dnsd(self, *args) -> subprocess.CompletedProcess:
        allowlist = self.lab.write_allowlist(["github.com"])
        argv = self.lab.dnsd_argv(args=("--nft-mode", "sets") + args, allowlist=str(allowlist))
        try:
            return self.lab.run_in_session(argv, timeout=20)
        except subprocess.TimeoutExpired:
            self.fail(f"dnsd kept running on an unusable table: {argv}")

    def test_unusable_admin_table_exit_1(self):
        cases = (
            ("allow4 without flags timeout",
             "set allow4 { type ipv4_addr; }\nset allow6 { type ipv6_addr; flags timeout; }",
             "allow4"),
            ("allow6 of type ipv4_addr",
             "set allow4 { type ipv4_addr; flags timeout; }\n"
             "set allow6 { type ipv4_addr; flags timeout; }", "allow6"),
            ("allow6 missing", "set allow4 { type ipv4_addr; flags timeout; }", "allow6"),
            ("no table", None, "egress"),
        )
        for what, text, named in cases:
            with self.subTest(what):
                nft("flush", "ruleset", check=True)
                if text is not None:
                    self.admin(f"table inet egress {{\n{text}\n}}\n")
                before = nft("list", "ruleset").stdout
                r = self.run_dnsd()
                self.assertEqual(r.returncode, 1, f"{what}: {r.stderr}")
                self.assertIn(named, r.stderr)
                self.assertEqual(nft("list", "ruleset").stdout, before, "dnsd changed the table")

    def test_off_mode_creates_nothing(self):
        self.start(allow=["api.github.com"])  # the lab's default: --nft-mode off
        self.assertEqual(addrs(self.q("api.github.com")), {L.API_GITHUB_A})
        self.assertEqual(addrs(self.q("api.github.com", "AAAA"), "AAAA"), {L.API_GITHUB_AAAA})
        self.assertEqual(nft("list", "ruleset").stdout.strip(), "")
        self.assertIsNone(http_get(L.API_GITHUB_A))
        self.assertIsNone(http_get(NEVER_RESOLVED[0]))  # no chain: everything open


if __name__ == "__main__":
    L.test_main()
