#!/usr/bin/python3
"""dnsd against a real authoritative server (nsd) and real clients, in the lab's namespaces.

Run: DNSD=build/dnsd/dnsd /usr/bin/python3 tests/integration/test_dnsd.py [-k NAME]   (root)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import struct
import sys
import threading
import time
import unittest
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # lab_support
import lab_support as S
from lab_support import L, DnsdCase, addrs, ede, wait_until

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype

setUpModule = S.module_up
tearDownModule = S.module_down

EDE_BLOCKED = 15
DIG_EDE = "; EDE: 15 (Blocked): (egress policy: {} not in allowlist)"
MAIN_ALLOW = ("github.com", "*.github.com", "pypi.org", "*.githubusercontent.com",
              "files.pythonhosted.org", "deb.debian.org", "www.cdn.example", "*.txt.test")


def tcp_frame(wire: bytes) -> bytes:
    return struct.pack("!H", len(wire)) + wire


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"closed after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


def recv_tcp_message(sock: socket.socket) -> dns.message.Message:
    (n,) = struct.unpack("!H", recv_exact(sock, 2))
    return dns.message.from_wire(recv_exact(sock, n))


def tcp_connect(lab, timeout=5.0, addr="127.0.0.1") -> socket.socket:
    s = lab.session_socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect((addr, 53))
    return s


def closed_by_peer(sock: socket.socket, timeout: float) -> bool:
    """True when the peer closes (EOF or RST) within `timeout`; data counts as "not closed"."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


class TestResolve(DnsdCase):
    ALLOW = MAIN_ALLOW

    def test_a_allowed(self):
        r = self.q("github.com", "A")
        self.assertRcode(r, "NOERROR")
        self.assertEqual(addrs(r, "A"), {L.GITHUB_A})
        self.assertTrue(r.flags & dns.flags.QR)

    def test_aaaa_allowed(self):
        r = self.q("api.github.com", "AAAA")
        self.assertRcode(r, "NOERROR")
        self.assertEqual(addrs(r, "AAAA"), {L.API_GITHUB_AAAA})

    def test_ipv6_listener(self):
        r = self.q("pypi.org", "AAAA", server="::1")
        self.assertRcode(r, "NOERROR")
        self.assertEqual(addrs(r, "AAAA"), {L.PYPI_AAAA})

    def test_other_allowed_names(self):
        for name, rdtype, want in [("pypi.org", "A", L.PYPI_A),
                                   ("files.pythonhosted.org", "A", L.FILES_PYTHONHOSTED_A),
                                   ("deb.debian.org", "AAAA", L.DEB_DEBIAN_AAAA),
                                   ("objects.githubusercontent.com", "A", "192.0.2.31")]:
            with self.subTest(name=name):
                r = self.q(name, rdtype)
                self.assertRcode(r, "NOERROR")
                self.assertEqual(addrs(r, rdtype), {want})

    def test_cname_chain_whole_chain_returned(self):
        # Only www.cdn.example is allowed; edge and node are reached through the chain.
        for rdtype, want in (("A", L.CDN_NODE_A), ("AAAA", L.CDN_NODE_AAAA)):
            with self.subTest(rdtype=rdtype):
                r = self.q("www.cdn.example", rdtype)
                self.assertRcode(r, "NOERROR")
                cnames = {(rrset.name.to_text(), rd.target.to_text())
                          for rrset in r.answer if rrset.rdtype == dns.rdatatype.CNAME
                          for rd in rrset}
                self.assertEqual(cnames, {("www.cdn.example.", "edge.cdn.example."),
                                          ("edge.cdn.example.", "node.cdn.example.")})
                self.assertEqual(addrs(r, rdtype), {want})
        # The chain's targets are not themselves allowed.
        for name in ("edge.cdn.example", "node.cdn.example"):
            with self.subTest(name=name):
                self.assertRcode(self.q(name, "A"), "NXDOMAIN")

    def test_mx_and_txt(self):
        r = self.q("raw.github.com", "MX")
        self.assertRcode(r, "NOERROR")
        mx = [(rd.preference, rd.exchange.to_text()) for rrset in r.answer for rd in rrset]
        self.assertEqual(mx, [(10, "mail.github.com.")])
        r = self.q("raw.github.com", "TXT")
        self.assertRcode(r, "NOERROR")
        txt = [b"".join(rd.strings) for rrset in r.answer for rd in rrset]
        self.assertEqual(txt, [b"v=spf1 -all"])

    def test_denied_nxdomain_soa_ede(self):
        r = self.q("example.org", "A", use_edns=0)
        self.assertRcode(r, "NXDOMAIN")
        self.assertEqual(r.answer, [])
        soa = [rrset for rrset in r.authority if rrset.rdtype == dns.rdatatype.SOA]
        self.assertEqual(len(soa), 1, r)
        self.assertEqual(soa[0].name, dns.name.root)
        self.assertEqual(soa[0].ttl, 10)  # default --negative-ttl
        self.assertEqual(ede(r), [(EDE_BLOCKED, "egress policy: example.org not in allowlist")])

    def test_denied_without_edns_has_no_opt(self):
        # RFC 6891 §7: no OPT in the response when the query had none (so no EDE either).
        r = self.q("www.example.org", "A", use_edns=False)
        self.assertRcode(r, "NXDOMAIN")
        self.assertEqual(r.edns, -1, r)
        self.assertTrue(any(rr.rdtype == dns.rdatatype.SOA for rr in r.authority), r)

    def test_denied_seen_by_dig(self):
        out = self.lab.dig("@127.0.0.1", "example.org").stdout
        self.assertIn("status: NXDOMAIN", out)
        self.assertIn(DIG_EDE.format("example.org"), out)
        short = self.lab.dig("@127.0.0.1", "+short", "example.org")
        self.assertEqual(short.stdout.strip(), "")

    def test_query_log_lines(self):
        self.q("api.github.com", "AAAA")
        self.q("github.com", "TXT")
        self.q("evil.example", "A")
        keys = {"ts", "client", "proto", "name", "type", "verdict", "rule", "rcode", "cache",
                "upstream_ms"}
        allow = self.log_entries("api.github.com")[-1]
        self.assertLessEqual(keys, set(allow), allow)
        self.assertEqual((allow["proto"], allow["type"], allow["verdict"], allow["rule"],
                          allow["rcode"]), ("udp", "AAAA", "allow", "*.github.com", "NOERROR"))
        self.assertRegex(allow["client"], r"^127\.0\.0\.1:\d+$")
        exact = [e for e in self.log_entries("github.com") if e["type"] == "TXT"]
        self.assertEqual(exact[-1]["rule"], "github.com", exact)
        deny = self.log_entries("evil.example")[-1]
        self.assertEqual((deny["verdict"], deny["rule"], deny["rcode"]),
                         ("deny", None, "NXDOMAIN"), deny)

    def test_question_case_preserved(self):
        q = dns.message.make_query("GitHub.COM", "A")
        qname = dns.name.from_text("GitHub.COM").to_wire()
        s = self.lab.session_socket()
        with s:
            s.settimeout(3)
            s.sendto(q.to_wire(), ("127.0.0.1", 53))
            wire, _ = s.recvfrom(65535)
        self.assertEqual(wire[12:12 + len(qname)], qname, "question name case changed")
        r = dns.message.from_wire(wire)
        self.assertEqual(r.id, q.id)
        self.assertEqual(addrs(r), {L.GITHUB_A})

    def test_mixed_case_denied_name(self):
        r = self.q("ExAmple.ORG", "A", use_edns=0)
        self.assertRcode(r, "NXDOMAIN")
        self.assertEqual(r.question[0].name.to_text(), "ExAmple.ORG.")
        self.assertEqual(ede(r), [(EDE_BLOCKED, "egress policy: example.org not in allowlist")])
        r = self.q("API.GITHUB.COM", "A")
        self.assertRcode(r, "NOERROR")
        self.assertEqual(r.question[0].name.to_text(), "API.GITHUB.COM.")
        self.assertEqual(addrs(r), {L.API_GITHUB_A})

    def test_kdig(self):
        r = self.lab.run_in_session(["kdig", "@127.0.0.1", "+short", "github.com", "A"])
        self.assertEqual(r.stdout.split(), [L.GITHUB_A], r.stderr)
        r = self.lab.run_in_session(["kdig", "@127.0.0.1", "+edns", "example.org", "A"])
        self.assertIn("status: NXDOMAIN", r.stdout)
        self.assertIn("egress policy: example.org not in allowlist", r.stdout)
        r = self.lab.run_in_session(["kdig", "@127.0.0.1", "+tcp", "+short", "pypi.org", "AAAA"])
        self.assertEqual(r.stdout.split(), [L.PYPI_AAAA], r.stderr)

    def test_getent(self):
        r = self.lab.run_in_session(["getent", "hosts", "github.com"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.split()[0], L.GITHUB_A)
        r = self.lab.run_in_session(["getent", "ahosts", "api.github.com"])
        self.assertEqual({ln.split()[0] for ln in r.stdout.splitlines()},
                         {L.API_GITHUB_A, L.API_GITHUB_AAAA})
        r = self.lab.run_in_session(["getent", "hosts", "example.org"])
        self.assertEqual((r.returncode, r.stdout), (2, ""))  # 2: key not found

    def test_python_getaddrinfo(self):
        script = (
            "import json, socket, sys\n"
            "out = {}\n"
            "for n in sys.argv[1:]:\n"
            "    try:\n"
            "        out[n] = sorted({a[4][0] for a in socket.getaddrinfo(n, 443, "
            "proto=socket.IPPROTO_TCP)})\n"
            "    except socket.gaierror as e:\n"
            "        out[n] = ['gaierror', e.errno]\n"
            "print(json.dumps(out))\n")
        r = self.lab.run_in_session(["/usr/bin/python3", "-c", script, "pypi.org", "example.org"])
        self.assertEqual(r.returncode, 0, r.stderr)
        out = json.loads(r.stdout)
        self.assertEqual(out["pypi.org"], sorted([L.PYPI_A, L.PYPI_AAAA]))
        self.assertEqual(out["example.org"], ["gaierror", socket.EAI_NONAME])

    def test_tcp_dig(self):
        out = self.lab.dig("@127.0.0.1", "+tcp", "pypi.org", "A").stdout
        self.assertIn("status: NOERROR", out)
        self.assertRegex(out, rf"(?m)^pypi\.org\.\s+\d+\s+IN\s+A\s+{re.escape(L.PYPI_A)}$")
        self.assertIn("(TCP)", out)
        r = self.q("www.cdn.example", "A", tcp=True)
        self.assertEqual(addrs(r), {L.CDN_NODE_A})
        self.assertEqual(self.log_entries("www.cdn.example")[-1]["proto"], "tcp")

    def test_tcp_pipelining(self):
        cases = [("github.com", "A", "NOERROR", {L.GITHUB_A}),
                 ("api.github.com", "AAAA", "NOERROR", {L.API_GITHUB_AAAA}),
                 ("example.org", "A", "NXDOMAIN", set()),
                 ("pypi.org", "A", "NOERROR", {L.PYPI_A}),
                 ("www.cdn.example", "A", "NOERROR", {L.CDN_NODE_A}),
                 ("pipelined.github.com", "A", "NOERROR", {L.GITHUB_WILDCARD_A})]
        queries = {}
        data = b""
        for i, (name, rdtype, _, _) in enumerate(cases):
            m = dns.message.make_query(name, rdtype)
            m.id = 4000 + i
            queries[m.id] = m
            data += tcp_frame(m.to_wire())
        with tcp_connect(self.lab) as s:
            s.sendall(data)  # every query written before any answer is read
            got = {}
            for _ in cases:
                r = recv_tcp_message(s)
                self.assertIn(r.id, queries)
                self.assertNotIn(r.id, got, "two answers for one id")
                self.assertTrue(queries[r.id].is_response(r), r)
                got[r.id] = r
        for i, (name, rdtype, rcode, want) in enumerate(cases):
            with self.subTest(name=name):
                r = got[4000 + i]
                self.assertEqual(dns.rcode.to_text(r.rcode()), rcode)
                self.assertEqual(addrs(r, rdtype), want)

    def test_truncation_without_edns(self):
        r = self.q("big.txt.test", "TXT", use_edns=False)
        self.assertTrue(r.flags & dns.flags.TC, r)
        self.assertLessEqual(len(r.to_wire()), 512)

    def test_truncation_at_udp_max_size(self):
        # The client offers 4096; dnsd sends at most --udp-max-size (default 1232) over UDP.
        q = dns.message.make_query("big.txt.test", "TXT", use_edns=0, payload=4096)
        s = self.lab.session_socket()
        with s:
            s.settimeout(3)
            s.sendto(q.to_wire(), ("127.0.0.1", 53))
            wire, _ = s.recvfrom(65535)
        self.assertLessEqual(len(wire), 1232)
        self.assertTrue(dns.message.from_wire(wire).flags & dns.flags.TC)

    def test_big_answer_over_tcp_complete(self):
        # nsd truncates this answer over UDP (1232), so dnsd's upstream had to retry over TCP.
        r = self.q("big.txt.test", "TXT", tcp=True)
        self.assertRcode(r, "NOERROR")
        got = sorted(b"".join(rd.strings).decode() for rrset in r.answer for rd in rrset)
        self.assertEqual(got, sorted(L.BIG_TXT_STRINGS))

    def test_dig_retries_over_tcp_after_tc(self):
        out = self.lab.dig("@127.0.0.1", "+noedns", "big.txt.test", "TXT").stdout
        self.assertIn(";; Truncated, retrying in TCP mode.", out)
        self.assertIn("(TCP)", out)
        for s in L.BIG_TXT_STRINGS:
            self.assertIn(f'"{s}"', out)


class TestLabSanity(unittest.TestCase):
    """The lab itself: if these fail, the dnsd tests above prove nothing."""

    def test_nsd_truncates_big_answer_over_udp(self):
        q = dns.message.make_query("big.txt.test", "TXT", use_edns=0, payload=4096)
        r = S.LAB.query(None, message=q, server=L.UPSTREAM_V4)
        self.assertTrue(r.flags & dns.flags.TC)

    def test_session_resolv_conf_points_at_dnsd(self):
        r = S.LAB.run_in_session(["cat", "/etc/resolv.conf"])
        self.assertEqual(r.stdout.splitlines()[0], "nameserver 127.0.0.1")


class TestWildcard(DnsdCase):
    ALLOW = ("*.github.com", "*.deep.test")

    def test_any_depth_below_wildcard(self):
        for name, want in (("x.github.com", L.GITHUB_WILDCARD_A),
                           ("a.b.github.com", L.GITHUB_WILDCARD_A),
                           ("a.b.c.d.e.github.com", L.GITHUB_WILDCARD_A),
                           ("a.b.c.deep.test", L.DEEP_A)):
            with self.subTest(name=name):
                r = self.q(name)
                self.assertRcode(r, "NOERROR")
                self.assertEqual(addrs(r), {want})
        self.assertEqual(self.log_entries("a.b.github.com")[-1]["rule"], "*.github.com")

    def test_wildcard_does_not_match_apex_or_lookalikes(self):
        for name in ("github.com", "deep.test", "xgithub.com", "github.com.example.org",
                     "x.github.co", "com"):
            with self.subTest(name=name):
                r = self.q(name, use_edns=0)
                self.assertRcode(r, "NXDOMAIN")
                self.assertEqual(ede(r), [(EDE_BLOCKED,
                                           f"egress policy: {name} not in allowlist")])


class TestDenyRefused(DnsdCase):
    ALLOW = ("github.com",)
    ARGS = ("--deny", "refused")

    def test_denied_is_refused(self):
        r = self.q("example.org")
        self.assertRcode(r, "REFUSED")
        self.assertEqual(r.answer, [])
        self.assertEqual(self.log_entries("example.org")[-1]["rcode"], "REFUSED")
        self.assertRcode(self.q("github.com"), "NOERROR")


class TestSizeTtlCacheFlags(DnsdCase):
    ALLOW = ("github.com", "*.github.com", "*.txt.test")
    ARGS = ("--negative-ttl", "42", "--udp-max-size", "512", "--cache-max-entries", "1")

    def test_soa_ttl_is_negative_ttl(self):
        r = self.q("example.org")
        self.assertRcode(r, "NXDOMAIN")
        soa = [rr for rr in r.authority if rr.rdtype == dns.rdatatype.SOA]
        self.assertEqual([rr.ttl for rr in soa], [42])

    def test_udp_max_size(self):
        q = dns.message.make_query("big.txt.test", "TXT", use_edns=0, payload=4096)
        r = self.lab.query(None, message=q)
        self.assertTrue(r.flags & dns.flags.TC)
        self.assertLessEqual(len(r.to_wire()), 512)
        r = self.q("small.txt.test", "TXT", use_edns=0, payload=4096)
        self.assertFalse(r.flags & dns.flags.TC)
        self.assertEqual([b"".join(rd.strings) for rrset in r.answer for rd in rrset],
                         [b"hello"])

    def test_cache_max_entries(self):
        for name in ("one.github.com", "two.github.com", "one.github.com"):
            self.assertRcode(self.q(name), "NOERROR")
        log = self.log_entries("one.github.com", expect=2)
        self.assertEqual([e["cache"] for e in log[-2:]], ["miss", "miss"],
                         "evicted entry still served with --cache-max-entries 1")


class TestTcpIdle(DnsdCase):
    ARGS = ("--tcp-idle-timeout-ms", "300")

    def test_idle_connection_closed(self):
        with tcp_connect(self.lab) as s:
            self.assertTrue(closed_by_peer(s, 5.0), "idle TCP connection not closed")

    def test_idle_after_answer_closed(self):
        with tcp_connect(self.lab) as s:
            s.sendall(tcp_frame(dns.message.make_query("github.com", "A").to_wire()))
            r = recv_tcp_message(s)
            self.assertEqual(addrs(r), {L.GITHUB_A})
            self.assertTrue(closed_by_peer(s, 5.0), "idle TCP connection not closed")


class TestTcpCap(DnsdCase):
    ALLOW = ("github.com", "*.github.com")
    ARGS = ("--tcp-max-connections", "2", "--tcp-max-pipelined", "2")

    def ask(self, s, name="github.com"):
        m = dns.message.make_query(name, "A")
        s.sendall(tcp_frame(m.to_wire()))
        r = recv_tcp_message(s)
        self.assertTrue(m.is_response(r))
        return r

    def test_pipelined_beyond_cap_all_answered(self):
        # --tcp-max-pipelined limits work in flight; the rest waits, it is not dropped.
        ids, data = set(), b""
        for i in range(8):
            m = dns.message.make_query(f"p{i}.github.com", "A")
            m.id = 9000 + i
            ids.add(m.id)
            data += tcp_frame(m.to_wire())
        with tcp_connect(self.lab) as s:
            s.sendall(data)
            got = set()
            for _ in ids:
                r = recv_tcp_message(s)
                self.assertEqual(addrs(r), {L.GITHUB_WILDCARD_A})
                got.add(r.id)
        self.assertEqual(got, ids)

    def test_extra_connections_closed_existing_work(self):
        c1, c2 = tcp_connect(self.lab), tcp_connect(self.lab)
        try:
            self.assertEqual(addrs(self.ask(c1)), {L.GITHUB_A})
            self.assertEqual(addrs(self.ask(c2)), {L.GITHUB_A})
            # The kernel may complete the handshake of a third; dnsd must close it, not serve it
            # and not leave it hanging.
            c3 = self.lab.session_socket(socket.AF_INET, socket.SOCK_STREAM)
            with c3:
                c3.settimeout(5)
                try:
                    c3.connect(("127.0.0.1", 53))
                    c3.sendall(tcp_frame(dns.message.make_query("github.com", "A").to_wire()))
                except (ConnectionRefusedError, ConnectionResetError, BrokenPipeError):
                    pass
                else:
                    self.assertTrue(closed_by_peer(c3, 5.0),
                                    "connection over --tcp-max-connections not closed")
            self.assertEqual(addrs(self.ask(c1)), {L.GITHUB_A})
            self.assertEqual(addrs(self.ask(c2)), {L.GITHUB_A})
        finally:
            c1.close()
            c2.close()

        # With the slots free again, a new connection is served (dnsd sees the close first).
        def new_conn_works():
            try:
                with tcp_connect(self.lab, timeout=1.0) as c:
                    return addrs(self.ask(c)) == {L.GITHUB_A}
            except (OSError, ConnectionError):
                return False
        self.assertTrue(wait_until(new_conn_works, 5.0, 0.2))


class TestUpstreamFailure(DnsdCase):
    START = False
    ALLOW = ("github.com", "*.github.com")
    TIMEOUT = ("--upstream-timeout-ms", "500")

    def assertServfail(self, name, tcp=False):
        r = self.q(name, "A", use_edns=0, timeout=5.0, tcp=tcp)  # liveness bound, not a timing
        self.assertRcode(r, "SERVFAIL")
        codes = [c for c, _ in ede(r)]
        self.assertEqual(len(codes), 1, r)
        self.assertIn(codes[0], (22, 23), r)  # No Reachable Authority / Network Error
        return r

    def test_blackholed_upstream_servfail(self):
        self.start(self.TIMEOUT, upstream=[L.BLACKHOLE_V4])
        self.assertServfail("github.com")
        self.assertServfail("x.github.com", tcp=True)
        # Denials need no upstream.
        self.assertRcode(self.q("example.org", timeout=5.0), "NXDOMAIN")
        self.assertEqual(self.log_entries("github.com")[-1]["rcode"], "SERVFAIL")

    def test_refusing_upstream_servfail(self):
        self.start(self.TIMEOUT, upstream=[L.REFUSING_V4])
        self.assertServfail("github.com")

    def test_upstream_stopped_then_back(self):
        self.start(self.TIMEOUT)
        self.assertRcode(self.q("before.github.com"), "NOERROR")
        try:
            self.lab.stop_nsd()
            self.assertServfail("during.github.com")
        finally:
            if self.lab.nsd_proc is None:
                self.lab.start_nsd()
        # Not negatively cached for long: the same name resolves once the upstream is back.
        ok = wait_until(lambda: self.q("during.github.com", timeout=2.0).rcode()
                        == dns.rcode.NOERROR, 5.0, 0.2)
        self.assertTrue(ok, "name still failing after the upstream came back")

    def test_ipv6_upstream(self):
        self.start(self.TIMEOUT, upstream=[L.UPSTREAM_V6])
        r = self.q("api.github.com", "AAAA")
        self.assertRcode(r, "NOERROR")
        self.assertEqual(addrs(r, "AAAA"), {L.API_GITHUB_AAAA})


class TestUdpBursts(DnsdCase):
    """Datagrams are read and answered in batches (recvmmsg/sendmmsg, 16 at a time): a burst
    much larger than a batch, from several sockets at once, gets every reply, each to the
    socket that asked and matching its question and ID."""

    ALLOW = ("*.github.com",)

    def test_burst_of_mixed_queries_all_answered_in_kind(self):
        cached = [f"b{i}.github.com" for i in range(8)]
        for name in cached:
            self.assertRcode(self.q(name), "NOERROR")  # now cache hits: answered at once
        socks = [self.lab.session_socket() for _ in range(3)]
        # Stopped while the burst is sent, so that it waits in the socket's queue and dnsd
        # reads it in full batches.
        self.dnsd.signal(signal.SIGSTOP)
        try:
            sent = {}
            for round_ in range(40):
                for k, s in enumerate(socks):
                    i = round_ * len(socks) + k
                    name = cached[i % len(cached)] if i % 2 else f"d{i}.denied.example"
                    q = dns.message.make_query(name, "A")
                    q.id = i
                    s.sendto(q.to_wire(), ("127.0.0.1", 53))
                    sent[i] = (k, name)
            self.dnsd.signal(signal.SIGCONT)
            got = {}
            for k, s in enumerate(socks):
                s.settimeout(5.0)  # liveness bound, not a timing
                while sum(1 for (kk, _) in sent.values() if kk == k) > \
                        sum(1 for i in got if sent[i][0] == k):
                    r = dns.message.from_wire(s.recvfrom(65535)[0])
                    got[r.id] = (k, r)
        finally:
            self.dnsd.signal(signal.SIGCONT)
            for s in socks:
                s.close()
        self.assertEqual(set(got), set(sent))
        for i, (k, r) in got.items():
            self.assertEqual(k, sent[i][0], f"reply {i} went to another socket")
            self.assertEqual(r.question[0].name.to_text(), sent[i][1] + ".")
            want = "NOERROR" if sent[i][1].endswith("github.com") else "NXDOMAIN"
            self.assertRcode(r, want, sent[i][1])


class TestUpstreamSockets(DnsdCase):
    """dnsd keeps its upstream socket between queries (ARES_FLAG_STAYOPEN: no socket, connect
    and close per query) but renews it, and with it the source port, after a bounded number of
    queries once idle (dnsd/upstream.h kQueriesPerSocket = 32)."""

    ALLOW = ("*.github.com",)
    QUERIES = 160

    def upstream_ports(self) -> set:
        """Local ports of dnsd's UDP sockets connected to the upstream, from /proc (the table
        of dnsd's own network namespace, matched against the socket inodes dnsd holds)."""
        pid = self.dnsd.pid
        inodes = set()
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                m = re.fullmatch(r"socket:\[(\d+)\]", os.readlink(f"/proc/{pid}/fd/{fd}"))
            except OSError:
                continue  # closed in between
            if m:
                inodes.add(m.group(1))
        remote = "%08X:0035" % struct.unpack("<I", socket.inet_aton(L.UPSTREAM_V4))[0]
        ports = set()
        for line in Path(f"/proc/{pid}/net/udp").read_text().splitlines()[1:]:
            f = line.split()
            if f[2] == remote and f[9] in inodes:
                ports.add(int(f[1].split(":")[1], 16))
        return ports

    def test_socket_reused_then_renewed(self):
        seen = []
        for i in range(self.QUERIES):
            self.assertRcode(self.q(f"port{i}.github.com"), "NOERROR")  # one at a time: idle after
            seen.append(frozenset(self.upstream_ports()))
        ports = set().union(*seen)
        # Never more than one socket per server open at a time for sequential queries.
        self.assertTrue(all(len(s) <= 1 for s in seen), seen)
        # Reused: far fewer ports than queries (a socket per query would give ~160).
        self.assertLessEqual(len(ports), self.QUERIES // 32 + 2, sorted(ports))
        # Renewed: the port changed along the way (160 queries span several renewals).
        self.assertGreaterEqual(len(ports), 3, sorted(ports))


class TestCache(DnsdCase):
    ALLOW = ("*.github.com", "*.ttl.test")

    def test_ttl_decrements_and_log_shows_hit(self):
        r1 = self.q("cache.github.com")
        t1 = r1.answer[0].ttl
        self.assertLessEqual(t1, 300)
        time.sleep(2.1)
        r2 = self.q("cache.github.com")
        t2 = r2.answer[0].ttl
        self.assertEqual(addrs(r2), {L.GITHUB_WILDCARD_A})
        self.assertLess(t2, t1)
        self.assertGreaterEqual(t2, t1 - 10)
        log = self.log_entries("cache.github.com", expect=2)
        self.assertEqual([e["cache"] for e in log[-2:]], ["miss", "hit"])

    def test_hit_needs_no_upstream(self):
        self.assertRcode(self.q("cached.github.com"), "NOERROR")
        try:
            self.lab.stop_nsd()
            r = self.q("cached.github.com", timeout=5.0)
            self.assertRcode(r, "NOERROR")
            self.assertEqual(addrs(r), {L.GITHUB_WILDCARD_A})
        finally:
            if self.lab.nsd_proc is None:
                self.lab.start_nsd()

    def test_case_insensitive_key_keeps_client_case(self):
        self.assertRcode(self.q("case.github.com"), "NOERROR")
        r = self.q("CaSe.GitHub.Com")
        self.assertEqual(r.question[0].name.to_text(), "CaSe.GitHub.Com.")
        self.assertEqual(addrs(r), {L.GITHUB_WILDCARD_A})
        self.assertEqual(self.log_entries("case.github.com", expect=2)[-1]["cache"], "hit")

    def test_type_is_part_of_key(self):
        self.q("typed.github.com", "A")
        r = self.q("typed.github.com", "AAAA")
        self.assertEqual(addrs(r, "AAAA"), {L.GITHUB_WILDCARD_AAAA})
        log = self.log_entries("typed.github.com", expect=2)
        self.assertEqual([(e["type"], e["cache"]) for e in log], [("A", "miss"), ("AAAA", "miss")])

    def test_not_served_past_ttl(self):
        r1 = self.q("ttl2.ttl.test")
        self.assertLessEqual(r1.answer[0].ttl, 2)
        time.sleep(3.1)
        r2 = self.q("ttl2.ttl.test")
        self.assertLessEqual(r2.answer[0].ttl, 2)
        log = self.log_entries("ttl2.ttl.test", expect=2)
        self.assertEqual(log[-1]["cache"], "miss", "answer served from cache after its TTL")

    def test_identical_queries_one_upstream_miss(self):
        s = self.lab.session_socket()
        ids = set()
        with s:
            s.settimeout(5)
            for i in range(8):
                m = dns.message.make_query("burst.github.com", "A")
                m.id = 7000 + i
                ids.add(m.id)
                s.sendto(m.to_wire(), ("127.0.0.1", 53))
            got = set()
            while got != ids:
                r = dns.message.from_wire(s.recvfrom(65535)[0])
                self.assertEqual(addrs(r), {L.GITHUB_WILDCARD_A})
                got.add(r.id)
        log = self.log_entries("burst.github.com", expect=8)
        caches = sorted(e["cache"] for e in log)
        self.assertEqual(caches.count("miss"), 1, caches)
        self.assertLessEqual(set(caches), {"miss", "hit", "coalesced"})


class TestReload(DnsdCase):
    START = False

    def allowed(self, name) -> bool:
        return self.q(name, timeout=2.0).rcode() == dns.rcode.NOERROR

    def assertPolicy(self, allowed=(), denied=(), timeout=5.0):
        def ok():
            return (all(self.allowed(n) for n in allowed)
                    and not any(self.allowed(n) for n in denied))
        self.assertTrue(wait_until(ok, timeout, 0.1),
                        f"policy allowed={allowed} denied={denied} not in force after "
                        f"{timeout} s; stderr:\n{self.dnsd.stderr()[-2000:]}")

    def test_in_place_rewrite(self):
        self.start(allow=["github.com"])
        self.assertPolicy(["github.com"], ["pypi.org"], timeout=0)
        for allow, deny in ((["pypi.org"], ["github.com"]), (["github.com"], ["pypi.org"])):
            with open(self.allowlist, "w") as f:  # same inode, truncated and rewritten
                f.write("domains:\n" + "".join(f"  - {d}\n" for d in allow))
            self.assertPolicy(allow, deny)

    def test_atomic_rename(self):
        self.start(allow=["github.com"])
        # Twice: a watch on the first inode would miss the second replacement.
        for allow, deny in ((["pypi.org"], ["github.com"]),
                            (["deb.debian.org"], ["pypi.org"])):
            tmp = self.allowlist.with_suffix(".tmp")
            tmp.write_text("domains:\n" + "".join(f"  - {d}\n" for d in allow))
            os.rename(tmp, self.allowlist)
            self.assertPolicy(allow, deny)

    def test_configmap_symlink_swap(self):
        # The layout kubelet gives a ConfigMap volume: file -> ..data/file, ..data -> ..<ts>,
        # updated by renaming a new ..data_tmp symlink over ..data.
        d = Path(self.lab.tmp) / f"configmap-{id(self)}"
        d.mkdir()
        self.addCleanup(shutil.rmtree, d, True)

        def version(ts, names):
            v = d / f"..2026_01_01_00_00_{ts:02d}.000000001"
            v.mkdir()
            (v / "allowlist.yaml").write_text(
                "domains:\n" + "".join(f"  - {n}\n" for n in names))
            return v

        old = version(1, ["github.com"])
        os.symlink(old.name, d / "..data")
        os.symlink("..data/allowlist.yaml", d / "allowlist.yaml")
        self.start(allowlist=d / "allowlist.yaml")
        self.assertPolicy(["github.com"], ["pypi.org"], timeout=0)
        for ts, allow, deny in ((2, ["pypi.org"], ["github.com"]),
                                (3, ["deb.debian.org"], ["pypi.org"])):
            new = version(ts, allow)
            os.symlink(new.name, d / "..data_tmp")
            os.rename(d / "..data_tmp", d / "..data")
            shutil.rmtree(old)
            old = new
            self.assertPolicy(allow, deny)

    def test_sighup_reloads(self):
        self.start(allow=["github.com"])
        mentions = lambda: self.dnsd.stderr().count("allowlist")  # noqa: E731
        before = mentions()
        self.dnsd.signal(signal.SIGHUP)
        self.assertTrue(wait_until(lambda: mentions() > before, 5.0),
                        "no allowlist log line after SIGHUP:\n" + self.dnsd.stderr()[-2000:])
        self.assertTrue(self.dnsd.running(), "SIGHUP killed dnsd")
        self.assertPolicy(["github.com"], ["pypi.org"], timeout=0)

    def test_reload_under_query_load(self):
        self.start(allow=["github.com", "pypi.org"])
        versions = [["github.com", "pypi.org"], ["github.com", "deb.debian.org"]]
        failures, answered = [], [0]
        stop = threading.Event()

        def client():
            while not stop.is_set():
                try:
                    r = self.lab.query("github.com", "A", timeout=2.0)
                    if r.rcode() != dns.rcode.NOERROR or addrs(r) != {L.GITHUB_A}:
                        failures.append(dns.rcode.to_text(r.rcode()))
                    else:
                        answered[0] += 1
                except Exception as e:  # a timeout is a failure too
                    failures.append(repr(e))

        t = threading.Thread(target=client)
        t.start()
        try:
            for i in range(12):
                text = "domains:\n" + "".join(f"  - {n}\n" for n in versions[i % 2])
                if i % 3 == 0:
                    tmp = self.allowlist.with_suffix(".tmp")
                    tmp.write_text(text)
                    os.rename(tmp, self.allowlist)
                else:
                    self.allowlist.write_text(text)
                time.sleep(0.15)
        finally:
            stop.set()
            t.join(10)
        self.assertEqual(failures, [])
        self.assertGreater(answered[0], 10)
        # The last version written (i = 11) is the one in force.
        self.assertPolicy(["github.com", "deb.debian.org"], ["pypi.org"])

    REJECT = re.compile(r"allowlist reload rejected: (?P<file>.+?):(?P<line>\d+):(?P<col>\d+): "
                        r"(?P<msg>.+)")

    def test_invalid_reload_keeps_old_policy(self):
        self.start(allow=["github.com"])
        for text, line, col in (("domains: [a.*.com]\n", 1, 11),
                                ("domains:\n  - github.com\n  - pypi.org\n  - '*'\n", 4, 5),
                                ("domains:\n  - github.com\n  - [unclosed\n", None, None)):
            with self.subTest(text=text):
                before = self.dnsd.stderr().count("allowlist reload rejected:")
                self.allowlist.write_text(text)
                got = wait_until(lambda: self.dnsd.stderr().count(
                    "allowlist reload rejected:") > before, 5.0)
                self.assertTrue(got, "no rejection logged:\n" + self.dnsd.stderr()[-2000:])
                m = list(self.REJECT.finditer(self.dnsd.stderr()))[-1]
                self.assertEqual(m["file"], str(self.allowlist))
                if line is not None:
                    self.assertEqual((int(m["line"]), int(m["col"])), (line, col), m[0])
                self.assertIn("keeping the previous policy", m["msg"])
                # Neither "pypi.org" (in the rejected file) nor anything else changed.
                self.assertPolicy(["github.com"], ["pypi.org"], timeout=0)
        self.allowlist.write_text("domains:\n  - pypi.org\n")
        self.assertPolicy(["pypi.org"], ["github.com"])

    def test_deleted_file_keeps_policy_until_recreated(self):
        self.start(allow=["github.com"])
        before = self.dnsd.stderr().count("allowlist reload rejected:")
        self.allowlist.unlink()
        wait_until(lambda: self.dnsd.stderr().count("allowlist reload rejected:") > before, 2.0)
        self.assertPolicy(["github.com"], ["pypi.org"], timeout=0)
        self.allowlist.write_text("domains:\n  - pypi.org\n")
        self.assertPolicy(["pypi.org"], ["github.com"])


class TestConfigFile(DnsdCase):
    START = False

    def config(self, extra="") -> Path:
        allow = self.lab.write_allowlist(["github.com"])
        p = Path(self.lab.tmp) / f"dnsd-{self.id().rsplit('.', 1)[-1]}.yaml"
        p.write_text(f"""listen: ["127.0.0.1:53", "[::1]:53"]
upstream: [{L.UPSTREAM_V4}]
allowlist: {allow}
deny: refused
log_queries: true
{extra}""")
        return p

    def test_settings_from_file(self):
        self.dnsd = self.lab.start_dnsd(config=self.config(), listen=(), upstream=[],
                                        log_queries=False)
        self.addCleanup(self.dnsd.stop)
        self.assertEqual(addrs(self.q("github.com")), {L.GITHUB_A})
        self.assertRcode(self.q("example.org"), "REFUSED")
        self.assertEqual(self.log_entries("example.org")[-1]["rcode"], "REFUSED")

    def test_flag_overrides_file(self):
        self.dnsd = self.lab.start_dnsd(config=self.config("negative_ttl: 33\n"), listen=(),
                                        upstream=[], log_queries=False,
                                        args=("--deny", "nxdomain"))
        self.addCleanup(self.dnsd.stop)
        r = self.q("example.org")
        self.assertRcode(r, "NXDOMAIN")
        self.assertEqual([rr.ttl for rr in r.authority], [33])

    def test_default_listen_addresses(self):
        # No --listen and no config: 127.0.0.1:53 and [::1]:53 (dnsd/config.h).
        d = self.lab.start_dnsd(allowlist=str(self.lab.write_allowlist(["github.com"])),
                                listen=(), wait=False)
        self.addCleanup(d.stop)
        self.lab.wait_dnsd(d, L.DEFAULT_LISTEN)
        self.dnsd = d
        self.assertEqual(addrs(self.q("github.com", server="::1")), {L.GITHUB_A})


class TestCheckConfig(DnsdCase):
    ALLOW = ("github.com",)  # this dnsd holds 127.0.0.1:53 while --check-config runs

    def check(self, *args):
        return self.lab.run_in_session([self.lab.dnsd_path, "--check-config", *map(str, args)],
                                       timeout=20)

    def write(self, name, text) -> Path:
        p = Path(self.lab.tmp) / name
        p.write_text(text)
        self.addCleanup(p.unlink)
        return p

    def test_bad_allowlist_exit_1_with_position(self):
        for name, text, pos in (("bad1.yaml", "domains: [a.*.com]\n", "1:11"),
                                ("bad2.yaml", "domains:\n  - github.com\n  - a.*.com\n", "3:5"),
                                ("bad3.yaml", "domains:\n  - github.com\nnetworks:\n"
                                              "  - 192.0.2.0/33\n", "4:5"),
                                ("bad4.yaml", "domain:\n  - github.com\n", "1:1")):
            with self.subTest(name=name):
                p = self.write(name, text)
                r = self.check("--allowlist", p)
                self.assertEqual(r.returncode, 1, r.stderr)
                self.assertIn(f"{p}:{pos}: ", r.stderr)

    def test_bad_config_exit_1_with_position(self):
        good = self.write("good-a.yaml", "domains: [github.com]\n")
        p = self.write("bad-config.yaml",
                       f"allowlist: {good}\nupstream: [{L.UPSTREAM_V4}]\nbogus_key: 1\n")
        r = self.check("--config", p)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn(f"{p}:3:1: ", r.stderr)

    def test_good_config_exit_0_without_binding(self):
        good = self.write("good.yaml", "domains:\n  - github.com\n  - '*.pypi.org'\n")
        r = self.check("--allowlist", good, "--listen", "127.0.0.1:53", "--upstream",
                       L.UPSTREAM_V4)
        self.assertEqual(r.returncode, 0, r.stderr)
        # The running dnsd still owns the port and answers.
        self.assertRcode(self.q("github.com"), "NOERROR")


if __name__ == "__main__":
    L.test_main()
