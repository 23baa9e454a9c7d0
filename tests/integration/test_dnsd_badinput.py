#!/usr/bin/python3
"""Malformed queries thrown at a running dnsd over UDP and TCP.

Each corpus entry is a named byte string with the outcome the contract gives it:
  "drop"   no reply within DROP_WAIT (shorter than a header, QR=1);
  RCODE    a reply with the query's ID, QR=1 and that rcode (NOTIMP for opcode != QUERY, BADVERS
           for EDNS version > 0, FORMERR for other malformations);
  a tuple  any of those outcomes, where the contract leaves the choice to dnsd.
Between cases and at the end a valid query must still be answered, and dnsd must still run.

Run: DNSD=build/dnsd/dnsd /usr/bin/python3 tests/integration/test_dnsd_badinput.py   (root)
"""

from __future__ import annotations

import os
import random
import socket
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # lab_support
import lab_support as S
from lab_support import L, DnsdCase, addrs, wait_until

import dns.exception
import dns.message
import dns.rcode

setUpModule = S.module_up
tearDownModule = S.module_down

DROP_WAIT = 0.3  # seconds without a reply that count as "dropped"
ID = 0x5a17


def hdr(qid=ID, flags=0x0100, qd=1, an=0, ns=0, ar=0) -> bytes:
    """RFC 1035 §4.1.1 header; flags 0x0100 = QUERY with RD."""
    return struct.pack("!HHHHHH", qid, flags, qd, an, ns, ar)


def name(*labels: bytes) -> bytes:
    return b"".join(bytes([len(lb)]) + lb for lb in labels) + b"\x00"


GITHUB = name(b"github", b"com")
Q_A = GITHUB + struct.pack("!HH", 1, 1)  # github.com A IN


def question(qname=GITHUB, qtype=1, qclass=1) -> bytes:
    return qname + struct.pack("!HH", qtype, qclass)


def opt(udp=1232, ext_rcode=0, version=0, flags=0, rdata=b"", owner=b"\x00",
        rdlen=None) -> bytes:
    """RFC 6891 §6.1.2 OPT pseudo-RR."""
    return owner + struct.pack("!HHBBHH", 41, udp, ext_rcode, version, flags,
                               len(rdata) if rdlen is None else rdlen) + rdata


def rr_a(owner=b"\xc0\x0c", addr=bytes([192, 0, 2, 1])) -> bytes:
    return owner + struct.pack("!HHIH", 1, 1, 300, 4) + addr


def opcode(op: int) -> int:
    return 0x0100 | (op << 11)


ANY_REPLY = ("NOERROR", "NXDOMAIN", "REFUSED", "NOTIMP", "FORMERR", "SERVFAIL")
HOSTILE_LABEL = b'q"\\\x00\x01\x1f\x7f\xff\xfe{}'  # JSON-hostile octets, all legal in a label

CORPUS = [
    # shorter than a header: dropped
    ("empty", b"", "drop"),
    ("1 byte", b"\x12", "drop"),
    ("2 bytes (id only)", b"\x5a\x17", "drop"),
    ("11 bytes", hdr()[:11], "drop"),
    # header problems
    ("QR=1 (a response)", hdr(flags=0x8100) + Q_A, "drop"),
    ("QR=1 with an rcode", hdr(flags=0x8103) + Q_A, "drop"),
    ("opcode 1 IQUERY", hdr(flags=opcode(1)) + Q_A, "NOTIMP"),
    ("opcode 2 STATUS", hdr(flags=opcode(2)) + Q_A, "NOTIMP"),
    ("opcode 4 NOTIFY", hdr(flags=opcode(4)) + Q_A, "NOTIMP"),
    ("opcode 5 UPDATE", hdr(flags=opcode(5)) + Q_A, "NOTIMP"),
    ("opcode 15", hdr(flags=opcode(15)) + Q_A, "NOTIMP"),
    ("header only, qdcount 1", hdr(), "FORMERR"),
    ("qdcount 0", hdr(qd=0), "FORMERR"),
    ("qdcount 0 with a question after it", hdr(qd=0) + Q_A, "FORMERR"),
    ("qdcount 2, two questions", hdr(qd=2) + Q_A + question(qtype=28), "FORMERR"),
    ("qdcount 2, one question", hdr(qd=2) + Q_A, "FORMERR"),
    ("qdcount 65535", hdr(qd=65535) + Q_A, "FORMERR"),
    ("ancount 1", hdr(an=1) + Q_A + rr_a(), "FORMERR"),
    ("nscount 1", hdr(ns=1) + Q_A + rr_a(), "FORMERR"),
    ("arcount 1, nothing there", hdr(ar=1) + Q_A, "FORMERR"),
    ("arcount 65535", hdr(ar=65535) + Q_A + opt(), "FORMERR"),
    # OPT / EDNS
    ("two OPTs", hdr(ar=2) + Q_A + opt() + opt(), "FORMERR"),
    ("OPT with non-root owner", hdr(ar=1) + Q_A + opt(owner=GITHUB), "FORMERR"),
    ("OPT rdlength past the end", hdr(ar=1) + Q_A + opt(rdlen=40), "FORMERR"),
    ("OPT option length past rdata", hdr(ar=1) + Q_A
     + opt(rdata=struct.pack("!HH", 65001, 100) + b"ab"), "FORMERR"),
    ("OPT truncated fixed part", hdr(ar=1) + Q_A + opt()[:7], "FORMERR"),
    ("EDNS version 1", hdr(ar=1) + Q_A + opt(version=1), "BADVERS"),
    ("EDNS version 255", hdr(ar=1) + Q_A + opt(version=255), "BADVERS"),
    # legal oddities an implementation must accept (RFC 6891 §6.2.3, §6.1.2)
    ("EDNS udp size 0 (means 512)", hdr(ar=1) + Q_A + opt(udp=0), "NOERROR"),
    ("EDNS unknown option", hdr(ar=1) + Q_A
     + opt(rdata=struct.pack("!HH", 65001, 3) + b"abc"), "NOERROR"),
    ("EDNS DO bit", hdr(ar=1) + Q_A + opt(flags=0x8000), "NOERROR"),
    ("name of exactly 255 octets", hdr()
     + question(name(*([b"a" * 63] * 3 + [b"b" * 61]))), "NXDOMAIN"),
    ("JSON-hostile label octets", hdr()
     + question(name(HOSTILE_LABEL, b"example", b"org")), "NXDOMAIN"),
    # names (RFC 1035 §4.1.4 compression, §2.3.4 sizes)
    ("compression pointer to itself", hdr() + b"\xc0\x0c" + struct.pack("!HH", 1, 1),
     "FORMERR"),
    ("compression loop of two", hdr() + b"\xc0\x0e\xc0\x0c" + struct.pack("!HH", 1, 1),
     "FORMERR"),
    ("pointer forward", hdr() + b"\xc0\x12" + struct.pack("!HH", 1, 1) + GITHUB, "FORMERR"),
    ("pointer past the end", hdr() + b"\xc0\xff" + struct.pack("!HH", 1, 1), "FORMERR"),
    ("pointer cut in half", hdr() + b"\xc0", "FORMERR"),
    ("label length 64 (01 label type)", hdr() + question(b"\x40" + b"a" * 64 + b"\x00"),
     "FORMERR"),
    ("label type 10 (reserved)", hdr() + question(b"\x80" + b"a" * 10 + b"\x00"), "FORMERR"),
    ("name over 255 octets", hdr() + question(name(*([b"a" * 63] * 5))), "FORMERR"),
    ("label runs past the end", hdr() + b"\x3fabc", "FORMERR"),
    ("name without terminating zero", hdr() + b"\x06github\x03com", "FORMERR"),
    ("question without qtype/qclass", hdr() + GITHUB, "FORMERR"),
    ("question with half a qclass", hdr() + GITHUB + b"\x00\x01\x00", "FORMERR"),
    ("trailing garbage after the question", hdr() + Q_A + b"garbage!", "FORMERR"),
    ("trailing garbage after OPT", hdr(ar=1) + Q_A + opt() + b"\x00\x00", "FORMERR"),
    # question types that are not queries for data
    ("qtype OPT", hdr() + question(qtype=41), "FORMERR"),
    ("qtype TSIG", hdr() + question(qtype=250), "FORMERR"),
    ("qtype AXFR", hdr() + question(qtype=252), ("REFUSED", "NOTIMP")),
    ("qtype IXFR", hdr() + question(qtype=251), ("REFUSED", "NOTIMP")),
    ("qclass CH version.bind TXT", hdr() + question(name(b"version", b"bind"), 16, 3),
     ANY_REPLY),
]

# UDP only: the largest IPv4 UDP payload, a valid query padded with zeros.
HUGE = hdr() + Q_A + b"\x00" * (65507 - 12 - len(Q_A))
UDP_ONLY = [("65507-byte UDP payload", HUGE, ("drop", "FORMERR"))]


class Malformed(Exception):
    pass


def _skip_name(wire: bytes, pos: int) -> int:
    """Position after the name at `pos` (RFC 1035 §4.1.4); pointers end a name."""
    for _ in range(128):
        if pos >= len(wire):
            raise Malformed(f"name runs past the end at {pos}")
        n = wire[pos]
        if n & 0xC0 == 0xC0:
            if pos + 2 > len(wire):
                raise Malformed("cut pointer")
            return pos + 2
        if n & 0xC0:
            raise Malformed(f"label type {n >> 6} at {pos}")
        if n == 0:
            return pos + 1
        pos += 1 + n
    raise Malformed("name too long")


def outcome(wire: bytes) -> str:
    """The rcode text of a reply, with the OPT's extended rcode (BADVERS); raises Malformed.

    A walk of our own rather than dns.message.from_wire: dnspython refuses replies to opcodes it
    parses differently (UPDATE) or does not know (15), which are legal replies here."""
    if len(wire) < 12:
        raise Malformed("shorter than a header")
    _, flags, qd, an, ns, ar = struct.unpack("!HHHHHH", wire[:12])
    pos, ext = 12, 0
    for _ in range(qd):
        pos = _skip_name(wire, pos) + 4
    for i in range(an + ns + ar):
        start = pos
        pos = _skip_name(wire, pos)
        if pos + 10 > len(wire):
            raise Malformed("RR header runs past the end")
        rtype, _, ttl, rdlen = struct.unpack("!HHIH", wire[pos:pos + 10])
        if rtype == 41 and i >= an + ns:
            if wire[start] != 0:
                raise Malformed("OPT owner not root")
            ext = ttl >> 24
        pos += 10 + rdlen
    if pos != len(wire):
        raise Malformed(f"{len(wire) - pos} bytes left after the last section")
    return dns.rcode.to_text((ext << 4) | (flags & 0xF))


class BadInputCase(DnsdCase):
    ALLOW = ("github.com",)
    ARGS = ("--tcp-idle-timeout-ms", "1000")

    def assertAlive(self, after: str):
        """A valid allowed query is answered over UDP (bounded retries for a busy dnsd)."""
        last = None
        for _ in range(3):
            try:
                r = self.lab.query("github.com", "A", timeout=2.0)
                self.assertEqual(addrs(r), {L.GITHUB_A}, f"after {after}")
                break
            except dns.exception.Timeout as e:
                last = e
        else:
            self.fail(f"valid query unanswered after {after}: {last}")
        self.assertTrue(self.dnsd.running(), f"dnsd died after {after}:\n"
                        + self.dnsd.stderr()[-2000:])

    def check_reply(self, label, wire, reply, expect):
        allowed = expect if isinstance(expect, tuple) else (expect,)
        if reply is None:
            self.assertIn("drop", allowed, f"{label}: no reply, expected {expect}")
            return
        if allowed == ("drop",):
            self.fail(f"{label}: got a reply ({reply[:32].hex()}), expected a drop")
        self.assertGreaterEqual(len(reply), 12, f"{label}: reply shorter than a header")
        rid, flags = struct.unpack("!HH", reply[:4])
        self.assertTrue(flags & 0x8000, f"{label}: reply without QR")
        if len(wire) >= 2:
            self.assertEqual(rid, struct.unpack("!H", wire[:2])[0], f"{label}: reply ID")
        try:
            got = outcome(reply)
        except Exception as e:  # every reply dnsd sends must itself be well-formed
            self.fail(f"{label}: dnsd sent a malformed reply ({e}): {reply[:64].hex()}")
        self.assertIn(got, allowed, f"{label}: rcode {got}, expected {expect}")


class TestBadInputUdp(BadInputCase):
    def send(self, wire: bytes, wait: float):
        s = self.lab.session_socket()
        with s:
            s.sendto(wire, ("127.0.0.1", 53))
            s.settimeout(wait)
            try:
                return s.recv(65535)
            except socket.timeout:
                return None

    def test_corpus(self):
        for label, wire, expect in CORPUS + UDP_ONLY:
            with self.subTest(case=label):
                allowed = expect if isinstance(expect, tuple) else (expect,)
                reply = self.send(wire, DROP_WAIT if "drop" in allowed else 3.0)
                self.check_reply(label, wire, reply, expect)
                self.assertAlive(label)

    def test_random_garbage_flood(self):
        rng = random.Random(20260101)  # fixed seed: the same packets every run
        s = self.lab.session_socket()
        with s:
            for _ in range(2000):
                n = rng.choice((rng.randrange(0, 12), rng.randrange(12, 64),
                                rng.randrange(64, 1500)))
                pkt = bytes(rng.getrandbits(8) for _ in range(n))
                if n >= 4 and rng.random() < 0.5:  # mostly-plausible headers reach the parser
                    pkt = hdr(flags=0x0100, qd=1)[:min(n, 12)] + pkt[12:]
                s.sendto(pkt, ("127.0.0.1", 53))
        self.assertAlive("2000 random packets")

    def test_query_log_stays_json(self):
        # After the corpus and garbage, every stdout line must still parse (query_log raises).
        s = self.lab.session_socket()
        with s:
            s.settimeout(3)
            s.sendto(hdr() + question(name(HOSTILE_LABEL, b"example", b"org")),
                     ("127.0.0.1", 53))
            s.recv(65535)
        # dnsd may write the line just after the reply: a bounded wait, then every line parses.
        hostile = wait_until(lambda: [e for e in self.dnsd.query_log()
                                      if "example.org" in str(e.get("name", ""))
                                      and e.get("verdict") == "deny"], 3.0)
        self.assertTrue(hostile, "no query-log line for the hostile name")


class TestBadInputTcp(BadInputCase):
    def conn(self) -> socket.socket:
        s = self.lab.session_socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(3)
        s.connect(("127.0.0.1", 53))
        return s

    def read_reply(self, s, timeout):
        """One length-prefixed reply, or None on timeout / close."""
        s.settimeout(timeout)
        buf = b""
        try:
            while len(buf) < 2:
                c = s.recv(2 - len(buf))
                if not c:
                    return None
                buf += c
            (n,) = struct.unpack("!H", buf)
            msg = b""
            while len(msg) < n:
                c = s.recv(n - len(msg))
                if not c:
                    self.fail(f"connection closed inside a reply ({len(msg)} of {n} bytes)")
                msg += c
            return msg
        except socket.timeout:
            if buf:
                self.fail("half a length prefix, then nothing")
            return None
        except ConnectionResetError:
            return None

    def test_corpus(self):
        for label, wire, expect in CORPUS:
            with self.subTest(case=label):
                allowed = expect if isinstance(expect, tuple) else (expect,)
                with self.conn() as s:
                    s.sendall(struct.pack("!H", len(wire)) + wire)
                    reply = self.read_reply(s, DROP_WAIT if "drop" in allowed else 3.0)
                self.check_reply(label, wire, reply, expect)
                self.assertAlive(label)

    def test_length_65535_then_close(self):
        with self.conn() as s:
            s.sendall(b"\xff\xff" + hdr() + Q_A)
        self.assertAlive("length 65535 then close")

    def test_length_prefix_only_then_close(self):
        with self.conn() as s:
            s.sendall(b"\x00")
        self.assertAlive("one byte of length prefix then close")

    def test_half_message_then_idle(self):
        wire = hdr() + Q_A
        with self.conn() as slow:
            slow.sendall(struct.pack("!H", len(wire)) + wire[:10])
            # Others are served while the slow client holds its connection...
            self.assertAlive("half a message on another connection")
            with self.conn() as other:
                m = dns.message.make_query("github.com", "A")
                other.sendall(struct.pack("!H", len(m.to_wire())) + m.to_wire())
                reply = self.read_reply(other, 3.0)
                self.assertIsNotNone(reply, "TCP query unanswered while another client stalls")
                self.assertEqual(addrs(dns.message.from_wire(reply)), {L.GITHUB_A})
            # ...and the stalled connection is closed by the idle timeout (1 s), not kept.
            slow.settimeout(10.0)
            try:
                data = slow.recv(65535)
            except ConnectionResetError:
                data = b""
            except socket.timeout:
                self.fail("stalled half message kept open past the idle timeout")
            self.assertEqual(data, b"", "reply to half a message")

    def test_zero_length_message(self):
        with self.conn() as s:
            s.sendall(b"\x00\x00")
            self.assertIsNone(self.read_reply(s, DROP_WAIT), "reply to a 0-length message")
        self.assertAlive("0-length message")

    def test_garbage_lengths(self):
        for label, data in (("length 3, 3 bytes", b"\x00\x03abc"),
                            ("length 11, 11 bytes", b"\x00\x0b" + hdr()[:11]),
                            ("length shorter than the message", b"\x00\x14" + hdr() + Q_A),
                            ("random stream", bytes(random.Random(7).getrandbits(8)
                                                    for _ in range(3000)))):
            with self.subTest(case=label):
                with self.conn() as s:
                    try:
                        s.sendall(data)
                        self.read_reply(s, DROP_WAIT)
                    except (ConnectionResetError, BrokenPipeError):
                        pass
                self.assertAlive(label)

    def test_valid_after_garbage_on_new_connection(self):
        with self.conn() as s:
            s.sendall(b"\x00\x05hello")
        with self.conn() as s:
            m = dns.message.make_query("github.com", "A")
            s.sendall(struct.pack("!H", len(m.to_wire())) + m.to_wire())
            reply = self.read_reply(s, 3.0)
        self.assertIsNotNone(reply)
        self.assertTrue(m.is_response(dns.message.from_wire(reply)))


if __name__ == "__main__":
    L.test_main()
