#!/usr/bin/python3
"""Writes the seed corpora of the DNS fuzz targets (tests/fuzz/corpus/fuzz_query, fuzz_answer).

Each seed is a hand-made message, valid or broken in one named way, so that the fuzzers start
from every path of the parser and `ctest` replays them all. Standard library only; run again
after editing: files are rewritten, files of other names (merged fuzzer finds) are left alone.

fuzz_answer's input is three selector bytes then the upstream message; see
tests/fuzz/fuzz_answer.cpp for their meaning. The selectors must match its tables.
"""

import pathlib
import struct
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "fuzz" / "corpus"

# Types and classes (RFC 1035 §3.2.2, RFC 3596, RFC 6891, RFC 9460).
A, NS, CNAME, SOA, MX, TXT, AAAA, OPT, RRSIG, HTTPS = 1, 2, 5, 6, 15, 16, 28, 41, 46, 65
MD, MF, MB, MG, MR, MINFO, RP, AFSDB, RT, PX = 3, 4, 7, 8, 9, 14, 17, 18, 21, 26
SRV, NAPTR, DNAME, SVCB = 33, 35, 39, 64
TSIG, AXFR, ANY = 250, 252, 255
IN, CH = 1, 3

# Header flags (RFC 1035 §4.1.1).
QR, AA, TC, RD, RA, AD, CD = 0x8000, 0x0400, 0x0200, 0x0100, 0x0080, 0x0020, 0x0010


def name(text):
    """Uncompressed wire name; labels are str or bytes."""
    if text in ("", "."):
        return b"\x00"
    out = b""
    for label in text.rstrip(".").split("."):
        raw = label.encode("latin-1")
        out += bytes([len(raw)]) + raw
    return out + b"\x00"


def labels(*parts):
    """Wire name from raw labels (bytes), for labels holding dots or odd octets."""
    return b"".join(bytes([len(p)]) + p for p in parts) + b"\x00"


def ptr(offset):
    return struct.pack("!H", 0xC000 | offset)


def header(ident=0x1234, flags=RD, qd=1, an=0, ns=0, ar=0):
    return struct.pack("!6H", ident, flags, qd, an, ns, ar)


def question(qname=b"", qtype=A, qclass=IN):
    return (qname or name("github.com")) + struct.pack("!HH", qtype, qclass)


def rr(owner, rtype, ttl, rdata, rclass=IN):
    return owner + struct.pack("!HHIH", rtype, rclass, ttl, len(rdata)) + rdata


def opt(udp=1232, version=0, do=False, ext_rcode=0, rdata=b"", owner=b"\x00"):
    ttl = ext_rcode << 24 | version << 16 | (0x8000 if do else 0)
    return owner + struct.pack("!HHIH", OPT, udp, ttl, len(rdata)) + rdata


def soa_rdata(minimum=300):
    return (name("ns.example.com") + name("hostmaster.example.com") +
            struct.pack("!5I", 2024010101, 7200, 3600, 1209600, minimum))


QNAME_AT = 12  # the question's name follows the header
GH = name("github.com")


def query_seeds():
    q = question
    s = {}
    s["a_plain"] = header() + q()
    s["aaaa_plain"] = header() + q(qtype=AAAA)
    s["a_edns"] = header(ar=1) + q() + opt()
    s["a_edns_do"] = header(ar=1) + q() + opt(udp=4096, do=True)
    s["a_edns_small_size"] = header(ar=1) + q() + opt(udp=100)
    s["a_edns_cookie"] = header(ar=1) + q() + opt(rdata=struct.pack("!HH", 10, 8) + b"\x01" * 8)
    s["a_edns_bad_option"] = header(ar=1) + q() + opt(rdata=struct.pack("!HH", 10, 8) + b"\x01")
    s["a_edns_version1"] = header(ar=1) + q() + opt(version=1, do=True)
    s["mixed_case"] = header(ident=0xBEEF, ar=1) + q(name("GiThUb.CoM")) + opt(do=True)
    s["cd_ad"] = header(flags=RD | AD | CD) + q()
    s["https"] = header(ar=1) + q(qtype=HTTPS) + opt()
    s["any"] = header() + q(qtype=ANY)
    s["axfr"] = header(flags=0) + q(qtype=AXFR)
    s["qtype_opt"] = header() + q(qtype=OPT)
    s["qtype_tsig"] = header() + q(qtype=TSIG)
    s["chaos_txt"] = header() + q(name("version.bind"), TXT, CH)
    s["root_ns"] = header() + q(name("."), NS)
    s["qr_set"] = header(flags=QR | RD) + q()
    s["opcode_notify"] = header(flags=4 << 11) + q(qtype=SOA)
    s["opcode_update"] = header(flags=5 << 11, ar=0) + q(qtype=SOA)
    s["qdcount0"] = header(qd=0)
    s["qdcount2"] = header(qd=2) + q() + q(qtype=AAAA)
    s["ancount1"] = header(an=1) + q() + rr(ptr(QNAME_AT), A, 60, b"\x01\x02\x03\x04")
    s["two_opts"] = header(ar=2) + q() + opt() + opt()
    s["non_opt_additional"] = header(ar=1) + q() + rr(b"\x00", A, 60, b"\x01\x02\x03\x04")
    s["opt_not_root"] = header(ar=1) + q() + opt(owner=name("x"))
    s["arcount_without_record"] = header(ar=1) + q()
    s["trailing_bytes"] = header() + q() + b"\x00\x00"
    s["truncated_name"] = header() + GH[:5]
    s["truncated_qclass"] = header() + q()[:-2]
    s["runt"] = header()[:5]
    s["empty"] = b""
    # Compression in the question: never legitimate (a pointer there could only point backwards
    # into the header), each broken a different way.
    s["ptr_self"] = header() + ptr(12) + struct.pack("!HH", A, IN)
    s["ptr_forward"] = header() + ptr(18) + struct.pack("!HH", A, IN) + name("com")
    s["ptr_backward_loop"] = header() + b"\x01a" + ptr(12) + struct.pack("!HH", A, IN)
    s["ptr_into_header"] = header() + ptr(0) + struct.pack("!HH", A, IN)
    s["ptr_cut"] = header() + b"\x03com\xc0"
    s["label_64"] = header() + bytes([64]) + b"x" * 64 + b"\x00" + struct.pack("!HH", A, IN)
    s["label_type_10"] = header() + b"\x80x\x00" + struct.pack("!HH", A, IN)
    l63 = b"a" * 63
    s["name_255"] = header() + q(labels(l63, l63, l63, b"a" * 61))
    s["name_256"] = header() + q(labels(l63, l63, l63, b"a" * 62))
    s["label_with_dot"] = header() + q(labels(b"a.b", b"\\x", b" \x00\xff", b"example"))
    return s


# fuzz_answer selectors: kNames[0] = github.com, [1] GiThUb.CoM, [4] ".", [7] the 63-octet label.
# kTypes[0] = A, [1] AAAA, [2] CNAME, [4] MX, [5] SOA. Bits: 1 EDNS, 2 DO, 4 CD, 8 RD, 16 AD,
# 32 splice the question, 64/128 the client's UDP size (512, 1232, 4096, 100).
EDNS, DO, SEL_CD, SEL_RD, SEL_AD, SPLICE = 1, 2, 4, 8, 16, 32
UDP_1232, UDP_4096 = 64, 128
LONG = "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijk.example"


def sel(name_i=0, type_i=0, bits=EDNS | SEL_RD | UDP_1232):
    return bytes([name_i, type_i, bits])


def answer_seeds():
    s = {}
    R = QR | RD | RA
    qa = question()
    cdn_at = 12 + len(qa) + 12  # the CNAME target in the first answer record
    chain = (rr(ptr(QNAME_AT), CNAME, 300, name("cdn.example.net")) +
             rr(ptr(cdn_at), A, 60, bytes([192, 0, 2, 1])) +
             rr(ptr(cdn_at), A, 90, bytes([192, 0, 2, 2])) +
             rr(ptr(cdn_at), AAAA, 120, bytes.fromhex("20010db8000000000000000000000001")))

    s["chain_opt_last"] = sel() + header(0xABCD, R | AA | AD, an=4, ar=1) + qa + chain + opt()
    s["chain_spliced"] = sel(bits=EDNS | DO | SEL_RD | SPLICE) + header(0, R, an=4) + chain
    s["chain_no_edns"] = sel(bits=SEL_RD) + header(1, R, an=4) + qa + chain
    s["a_single"] = sel() + header(2, R, an=1) + qa + rr(ptr(12), A, 3600, bytes([140, 82, 112, 3]))
    s["a_mixed_case_client"] = (sel(name_i=1) + header(3, R, an=1) + qa +
                                rr(ptr(12), A, 60, bytes([140, 82, 112, 4])))
    s["aaaa_single"] = (sel(type_i=1) + header(4, R, an=1) + question(qtype=AAAA) +
                        rr(ptr(12), AAAA, 300, bytes(15) + b"\x01"))
    s["upstream_0x20_case"] = (sel() + header(5, R, an=1) + question(name("gItHuB.cOm")) +
                               rr(ptr(12), A, 60, bytes([1, 2, 3, 4])))
    s["nxdomain_soa"] = (sel() + header(6, R | 3, ns=1, ar=1) + qa +
                         rr(ptr(19), SOA, 3600, soa_rdata(300)) + opt())
    s["nodata_soa"] = (sel(type_i=1) + header(7, R, ns=1) + question(qtype=AAAA) +
                       rr(ptr(19), SOA, 100, soa_rdata(900)))
    s["servfail_empty"] = sel() + header(8, R | 2) + qa
    s["truncated_tc"] = sel() + header(9, R | TC) + qa
    s["opt_not_last"] = (sel() + header(10, R, an=1, ar=2) + qa +
                         rr(ptr(12), A, 60, bytes(4)) + opt() + rr(ptr(12), A, 60, bytes(4)))
    s["glue_then_opt"] = (sel() + header(11, R, an=1, ar=2) + qa +
                          rr(ptr(12), A, 60, bytes(4)) + rr(ptr(12), A, 60, bytes(4)) + opt())
    s["two_opts"] = sel() + header(12, R, ar=2) + qa + opt() + opt()
    s["opt_in_answer"] = sel() + header(13, R, an=1) + qa + opt()
    s["opt_ext_rcode"] = sel() + header(14, R | 7, ar=1) + qa + opt(ext_rcode=1)
    s["counts_lie"] = sel() + header(15, R, an=5) + qa + chain
    s["counts_huge"] = sel() + header(16, R, an=0xFFFF, ns=0xFFFF, ar=0xFFFF) + qa + chain
    s["wrong_type"] = sel() + header(17, R, an=1) + question(qtype=AAAA) + rr(ptr(12), A, 60, bytes(4))
    s["wrong_name"] = (sel() + header(18, R, an=1) + question(name("gitlab.com")) +
                       rr(ptr(12), A, 60, bytes(4)))
    s["not_a_response"] = sel() + header(19, RD, an=1) + qa + rr(ptr(12), A, 60, bytes(4))
    s["owner_ptr_loop"] = sel() + header(20, R, an=1) + qa + b"\x01x" + ptr(28) + struct.pack(
        "!HHIH", A, IN, 60, 4) + bytes(4)
    s["cname_forward_ptr"] = (sel() + header(21, R, an=2) + qa +
                              rr(ptr(12), CNAME, 60, ptr(60)) + rr(ptr(12), A, 60, bytes(4)))
    # A name read through a TTL field (octet 37 of a TTL 0 is a root label): render rewrites TTLs.
    s["owner_ptr_into_ttl"] = (sel() + header(35, R, an=2) + qa + rr(ptr(12), A, 0, bytes(4)) +
                               rr(ptr(37), A, 60, bytes(4)))
    s["owner_ptr_header"] = sel() + header(22, R, an=1) + qa + rr(ptr(2), A, 60, bytes(4))
    s["trailing_bytes"] = sel() + header(23, R, an=1) + qa + rr(ptr(12), A, 60, bytes(4)) + b"\x00"
    s["a_rdlength_5"] = sel() + header(24, R, an=1) + qa + rr(ptr(12), A, 60, bytes(5))
    s["ttl_high_bit"] = sel() + header(25, R, an=1) + qa + rr(ptr(12), A, 0x80000001, bytes(4))
    many = b"".join(rr(ptr(12), A, 60 + i, bytes([198, 51, 100, i])) for i in range(40))
    s["many_a_truncates"] = sel(bits=SEL_RD) + header(26, R, an=40) + qa + many
    s["many_a_edns_4096"] = sel(bits=EDNS | UDP_4096) + header(27, R, an=40, ar=1) + qa + many + opt()
    s["dnssec_rrsig_ad"] = (sel(bits=EDNS | DO) + header(28, R | AD, an=2, ar=1) + qa +
                            rr(ptr(12), A, 60, bytes([1, 1, 1, 1])) +
                            rr(ptr(12), RRSIG, 60, struct.pack("!HBBIIIH", A, 13, 2, 60,
                                                               1700000000, 1690000000, 12345) +
                               name("github.com") + bytes(64)) + opt(do=True))
    s["mx_answer"] = (sel(type_i=4) + header(29, R, an=1) + question(qtype=MX) +
                      rr(ptr(12), MX, 300, struct.pack("!H", 10) + b"\x04mail" + ptr(12)))
    s["soa_answer"] = (sel(type_i=5) + header(30, R | AA, an=1) + question(qtype=SOA) +
                       rr(ptr(12), SOA, 300, soa_rdata()))
    s["root_question"] = (sel(name_i=4, type_i=5) + header(31, R, an=1) + question(name("."), SOA) +
                          rr(b"\x00", SOA, 86400, soa_rdata()))
    s["long_label"] = (sel(name_i=7) + header(32, R, an=1) + question(name(LONG)) +
                       rr(ptr(12), A, 60, bytes([10, 0, 0, 1])))
    # A five-hop chain where each target is compressed against the previous one.
    hops = question()
    body = b""
    offset = 12 + len(hops)
    owner = ptr(12)
    for i in range(5):
        target = bytes([2]) + b"c" + str(i).encode() + ptr(19)  # cN.com
        record = rr(owner, CNAME, 300 - i, target)
        owner = ptr(offset + len(owner) + 10)
        offset += len(record)
        body += record
    body += rr(owner, A, 30, bytes([203, 0, 113, 7]))
    s["chain_5_hops"] = sel() + header(33, R, an=6) + hops + body
    s["short_header"] = sel() + header(34, R)[:7]
    s.update(svcb_seeds())
    s.update(pointer_seeds())
    return s


def svc_param(key, value):
    return struct.pack("!HH", key, len(value)) + value


def svcb_rdata(priority, target=b"\x00", params=b""):
    """RFC 9460 §2.2: SvcPriority, TargetName (uncompressed), SvcParams."""
    return struct.pack("!H", priority) + target + params


V4_1, V4_2, V4_3 = bytes([192, 0, 2, 1]), bytes([192, 0, 2, 2]), bytes([198, 51, 100, 7])
V6_1 = bytes.fromhex("20010db8000000000000000000000001")


def svcb_seeds():
    """HTTPS/SVCB answers (kTypes[7] = HTTPS): hints collected, AliasMode, each malformation."""
    s = {}
    R = QR | RD | RA
    qh = question(qtype=HTTPS)
    https_sel = sel(type_i=7)
    first = svcb_rdata(1, params=svc_param(1, b"\x02h2") + svc_param(4, V4_1 + V4_2) +
                       svc_param(6, V6_1))
    first_rr = rr(ptr(12), HTTPS, 301, first)  # odd TTL: the fuzz target removes it
    target_at = 12 + len(qh) + len(first_rr) + 12 + 2  # the second record's TargetName
    s["https_hints"] = (https_sel + header(40, R, an=2, ar=1) + qh + first_rr +
                        rr(ptr(12), HTTPS, 60, svcb_rdata(2, name("svc.github.com"),
                                                          svc_param(4, V4_3))) +
                        rr(ptr(target_at), A, 30, V4_3))
    s["svcb_alias"] = (https_sel + header(41, R, an=1) + qh +
                       rr(ptr(12), SVCB, 300, svcb_rdata(0, name("svc.example.net"))))
    s["svcb_alias_with_hints"] = (https_sel + header(42, R, an=1) + qh +
                                  rr(ptr(12), SVCB, 300, svcb_rdata(
                                      0, name("svc.example.net"), svc_param(4, bytes(5)))))
    bad = {
        "https_keys_decreasing": svcb_rdata(1, params=svc_param(6, V6_1) + svc_param(4, V4_1)),
        "https_keys_repeated": svcb_rdata(1, params=svc_param(4, V4_1) + svc_param(4, V4_2)),
        "https_ipv4hint_len5": svcb_rdata(1, params=svc_param(4, V4_1 + b"\x07")),
        "https_ipv4hint_empty": svcb_rdata(1, params=svc_param(4, b"")),
        "https_ipv6hint_len4": svcb_rdata(1, params=svc_param(6, V4_1)),
        "https_params_truncated": svcb_rdata(1, params=struct.pack("!HH", 4, 8) + V4_1),
        "https_half_key": svcb_rdata(1, params=svc_param(4, V4_1) + b"\x00"),
        "https_target_compressed": svcb_rdata(1, ptr(12)),
        "https_target_no_root": struct.pack("!H", 1) + b"\x03svc",
    }
    for seed_name, rdata in bad.items():
        s[seed_name] = https_sel + header(43, R, an=1) + qh + rr(ptr(12), HTTPS, 300, rdata)
    # 255 + 2 + 1 hints: the second record would pass kMaxAddresses (256), so it and the third are
    # capped.
    many = b"".join(bytes([10, 0, i >> 8, i & 0xFF]) for i in range(255))
    s["https_hints_capped"] = (https_sel + header(44, R, an=3) + qh +
                               rr(ptr(12), HTTPS, 60, svcb_rdata(1, params=svc_param(4, many))) +
                               rr(ptr(12), HTTPS, 61, svcb_rdata(1, params=svc_param(4, V4_1 + V4_2))) +
                               rr(ptr(12), HTTPS, 62, svcb_rdata(1, params=svc_param(4, V4_3))))
    return s


class Message:
    """A message under construction that knows the offset of what it appends."""

    def __init__(self, head):
        self.data = head

    def add(self, part):
        at = len(self.data)
        self.data += part
        return at


def pointer_seeds():
    """Answers whose later names point into earlier records' owners and RDATA, for remove_records.

    Records with an odd TTL are the ones fuzz_answer removes first.
    """
    s = {}
    R = QR | RD | RA
    # www.example.org (kNames[2]) A: CNAME, A owned by a1.<target>, A and AAAA pointing into both,
    # SOA, MX, SRV, NAPTR whose names point there too.
    m = Message(header(50, R, an=4, ns=1, ar=3) + question(name("www.example.org")))
    cname = m.add(rr(ptr(12), CNAME, 301, name("cdn.example.net")))
    cdn = cname + 12
    example = cdn + 4
    a1 = m.add(rr(b"\x02a1" + ptr(cdn), A, 61, V4_1))
    m.add(rr(ptr(a1), A, 90, V4_2))
    m.add(rr(ptr(cdn), AAAA, 120, V6_1))
    m.add(rr(ptr(example), SOA, 3600, b"\x02ns" + ptr(a1) + b"\x04host" + ptr(example) +
             struct.pack("!5I", 1, 7200, 3600, 1209600, 600)))
    m.add(rr(ptr(a1), MX, 300, struct.pack("!H", 10) + b"\x02mx" + ptr(a1)))
    sip = m.add(rr(b"\x04_sip\x04_tcp" + ptr(cdn), SRV, 300, struct.pack("!3H", 1, 5, 5060) + ptr(a1)))
    m.add(rr(ptr(example), NAPTR, 300, struct.pack("!HH", 100, 10) + b"\x01S\x07SIP+D2U\x00" +
             ptr(sip)))
    s["pointer_heavy"] = sel(name_i=2) + m.data

    # Every other type whose RDATA names RFC 3597 §4 lists, compressed into the first record.
    m = Message(header(51, R, an=12) + question())
    base = m.add(rr(ptr(12), NS, 61, name("ns1.example.net")))
    ns1 = base + 12
    net = ns1 + 12
    m.add(rr(ptr(12), MD, 300, b"\x02md" + ptr(ns1)))
    m.add(rr(ptr(12), MF, 300, b"\x02mf" + ptr(net)))
    m.add(rr(ptr(12), MB, 300, ptr(ns1)))
    m.add(rr(ptr(12), MG, 300, ptr(ns1)))
    m.add(rr(ptr(12), MR, 300, ptr(ns1)))
    m.add(rr(ptr(12), MINFO, 300, b"\x02rm" + ptr(ns1) + b"\x02em" + ptr(net)))
    m.add(rr(ptr(ns1), RP, 300, b"\x04mbox" + ptr(ns1) + b"\x03txt" + ptr(net)))
    m.add(rr(ptr(ns1), AFSDB, 300, struct.pack("!H", 1) + ptr(ns1)))
    m.add(rr(ptr(ns1), RT, 300, struct.pack("!H", 10) + b"\x02rt" + ptr(ns1)))
    m.add(rr(ptr(ns1), PX, 300, struct.pack("!H", 10) + ptr(ns1) + b"\x02px" + ptr(net)))
    m.add(rr(ptr(net), DNAME, 300, b"\x03new" + ptr(ns1)))
    s["name_types_compressed"] = sel() + m.data

    # Twenty CNAME targets each extending the previous one, written in full: re-encoding shares
    # their suffixes and must keep pointer chains short.
    m = Message(header(52, R, an=20) + question())
    target = name("com")
    for i in range(1, 21):
        target = bytes([len(str(i)) + 1]) + b"l" + str(i).encode() + target
        m.add(rr(ptr(12), CNAME, 60 + i, target))
    s["suffix_chain"] = sel() + m.data
    return s


def write(target, seeds):
    out = CORPUS / target
    out.mkdir(parents=True, exist_ok=True)
    for seed_name, data in seeds.items():
        (out / seed_name).write_bytes(data)
    return len(seeds)


def main():
    n = write("fuzz_query", query_seeds())
    m = write("fuzz_answer", answer_seeds())
    print(f"wrote {n} fuzz_query and {m} fuzz_answer seeds under {CORPUS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
