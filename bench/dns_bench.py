#!/usr/bin/python3
"""DNS benchmark: dnsd against dnsmasq and unbound, side by side in one run, in the egress lab.

Run through bench/dns.sh (it installs the tools and builds dnsd). Everything runs in the lab's
network namespaces (scripts/egress_lab.py): nsd in the "internet" namespace is the upstream of
every contender; the contender listens on 127.0.0.1:53 in the "session" namespace, where dnsperf
and the probes run too. One contender runs at a time; every measurement starts it afresh.

Order: for each round, for each measurement, every contender in turn (A B C A B C ...), so the
contenders of one measurement run close together in time and each round yields paired ratios.
The report gives per-round figures, their medians and the median of the per-round ratios.

Writes the DNS section of docs/BENCHMARKS.md (between markers, the rest of the file is kept) and
docs/bench-dns-latency.png. Standard library only (plus the lab module, which uses dnspython).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime
import json
import os
import platform
import random
import re
import select
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))
import egress_lab as L  # noqa: E402

# --- workload data --------------------------------------------------------------------------

ZONE = "bench.test"
MISS_NAMES = 60000  # distinct names per miss run; each run starts the contender afresh
HIT_NAMES = 200
DENIED_NAMES = 200
NFT_TABLE_FOR_DNSMASQ = """\
table inet egress {
  set allow4 { type ipv4_addr; flags timeout; size 65536; }
  set allow6 { type ipv6_addr; flags timeout; size 65536; }
}
"""
# 60000 distinct answers must fit the sets (size 65536) with room to spare: every miss run
# starts from an empty table.
assert MISS_NAMES < 65536


def miss_name(i: int) -> str:
    return f"n{i:06d}.{ZONE}"


def miss_addr(i: int) -> str:
    return f"198.18.{i >> 8}.{i & 255}"  # RFC 2544 benchmarking range, not a guarded range


def hit_name(i: int) -> str:
    return f"h{i:03d}.{ZONE}"


def denied_name(i: int) -> str:
    return f"d{i:03d}.denied.test"


def bench_zone_body() -> str:
    lines = [f"n{i:06d} A {miss_addr(i)}" for i in range(MISS_NAMES)]
    lines += [f"h{i:03d} A 198.19.0.{i}" for i in range(HIT_NAMES)]
    return "\n".join(lines) + "\n"


def write_datafiles(d: Path) -> "dict[str, Path]":
    files = {
        "hit": [f"{hit_name(i)} A" for i in range(HIT_NAMES)],
        "miss": [f"{miss_name(i)} A" for i in range(MISS_NAMES)],
        "denied": [f"{denied_name(i)} A" for i in range(DENIED_NAMES)],
        # half allowed (cached) and half denied, interleaved
        "mixed": [ln for i in range(HIT_NAMES)
                  for ln in (f"{hit_name(i)} A", f"{denied_name(i % DENIED_NAMES)} A")],
    }
    out = {}
    for k, lines in files.items():
        p = d / f"{k}.txt"
        p.write_text("\n".join(lines) + "\n")
        out[k] = p
    return out


# --- small helpers --------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _pdeathsig() -> None:
    _libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG: die with the bench


def cpu_seconds(pid: int) -> float:
    """utime+stime of the whole process (all threads) from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def machine_busy_seconds() -> float:
    """CPU time all cores spent busy (not idle, not iowait) since boot, from /proc/stat."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(f[:8]) - f[3] - f[4]) / CLK_TCK  # user..steal minus idle and iowait


def smaps_rollup(pid: int) -> "dict[str, int]":
    """Pss and Anonymous (KiB): VmRSS counts every resident page of the shared libraries a
    process maps, pages other processes share; these two say what the process itself costs."""
    out = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            k, _, v = line.partition(":")
            if k in ("Pss", "Anonymous"):
                out[k] = int(v.split()[0])
    return out


def percentile(sorted_vals: list, p: float) -> Optional[float]:
    if not sorted_vals:
        return None
    k = (len(sorted_vals) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (k - lo)


def median(vals) -> Optional[float]:
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def dns_query_packet(name: str, qid: int) -> bytes:
    q = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\0"
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + q + struct.pack("!HH", 1, 1)


def sh(argv, **kw) -> str:
    r = subprocess.run(argv, capture_output=True, text=True, **kw)
    return (r.stdout or r.stderr).strip()


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --- contenders -----------------------------------------------------------------------------

@dataclass
class Contender:
    key: str
    label: str
    argv: Callable[[Path], list]          # workdir -> argv
    setup: Callable[["Bench"], None] = lambda b: None
    config_text: Callable[[Path], str] = lambda d: ""
    config_name: str = ""
    # A measuring rod (bench/dns_floor.c), not a DNS server: measured only where it is the floor
    # (floor_steps), kept out of the start-up, ratio and latency tables. The echo's answers
    # carry no records.
    floor: bool = False


class Running:
    def __init__(self, proc: subprocess.Popen, first_answer_ms: float, rss_idle: int,
                 stderr: Path, stderr_offset: int, spawn_ms: float):
        self.proc, self.first_answer_ms, self.rss_idle = proc, first_answer_ms, rss_idle
        self.stderr, self.stderr_offset, self.spawn_ms = stderr, stderr_offset, spawn_ms
        self.smaps: "dict[str, int]" = {}

    @property
    def pid(self) -> int:
        return self.proc.pid


def dnsmasq_conf(d: Path, nftset: bool) -> str:
    return textwrap.dedent(f"""\
        # the usual allowlist recipe: forward the allowed zone, block everything else
        port=53
        listen-address=127.0.0.1
        bind-interfaces
        no-resolv
        no-hosts
        server=/{ZONE}/{L.UPSTREAM_V4}
        address=/#/
        # default cache-size is 150, smaller than the 200-name hit set; 10000 = dnsd's default
        cache-size=10000
        pid-file=
        log-facility={d}/dnsmasq.log
        """) + (f"nftset=/{ZONE}/4#inet#egress#allow4\n" if nftset else "")


def unbound_conf(d: Path) -> str:
    return textwrap.dedent(f"""\
        server:
          num-threads: 1
          interface: 127.0.0.1
          port: 53
          do-ip6: no
          access-control: 127.0.0.0/8 allow
          username: ""
          chroot: ""
          directory: "{d}"
          pidfile: "{d}/unbound.pid"
          use-syslog: no
          logfile: "{d}/unbound.log"
          verbosity: 0
          module-config: "iterator"
          local-zone: "." refuse
          local-zone: "{ZONE}." transparent
        forward-zone:
          name: "{ZONE}."
          forward-addr: {L.UPSTREAM_V4}
        remote-control:
          control-enable: no
        """)


def make_contenders(dnsd: str, allowlist: Path, enforce: bool,
                    floor: str = "") -> "list[Contender]":
    def dnsd_argv(mode):
        return lambda d: [dnsd, "--listen", "127.0.0.1:53", "--upstream", L.UPSTREAM_V4,
                          "--allowlist", str(allowlist), "--nft-mode", mode]

    def write_conf(name, text_fn):
        def argv_fn(d):
            (d / name).write_text(text_fn(d))
            return argv_tail(name, d)
        return argv_fn

    def argv_tail(name, d):
        if name.startswith("dnsmasq"):
            return ["/usr/sbin/dnsmasq", "-k", "-C", str(d / name)]
        return ["/usr/sbin/unbound", "-d", "-c", str(d / name)]

    cs = [Contender("dnsd", "dnsd (nft off)", dnsd_argv("off"))]
    if enforce:
        cs.append(Contender("dnsd-enforce", "dnsd (nft enforce)", dnsd_argv("enforce")))
    cs += [
        Contender("dnsmasq", "dnsmasq", write_conf("dnsmasq.conf", lambda d: dnsmasq_conf(d, False)),
                  config_text=lambda d: dnsmasq_conf(d, False), config_name="dnsmasq.conf"),
        Contender("dnsmasq-nftset", "dnsmasq+nftset",
                  write_conf("dnsmasq-nftset.conf", lambda d: dnsmasq_conf(d, True)),
                  setup=lambda b: b.nft_load(NFT_TABLE_FOR_DNSMASQ),
                  config_text=lambda d: dnsmasq_conf(d, True), config_name="dnsmasq-nftset.conf"),
        Contender("unbound", "unbound", write_conf("unbound.conf", unbound_conf),
                  config_text=unbound_conf, config_name="unbound.conf"),
    ]
    if floor:
        cs += [
            Contender("floor-echo", "floor: UDP echo", lambda d: [floor, "127.0.0.1", "53"],
                      floor=True),
            Contender("floor-relay", "floor: UDP relay",
                      lambda d: [floor, "127.0.0.1", "53", L.UPSTREAM_V4], floor=True),
        ]
    return cs


# --- measurements ---------------------------------------------------------------------------

@dataclass
class Plan:
    rounds: int = 2
    sat_seconds: float = 10.0
    rate_seconds: float = 3.0
    hit_rates: tuple = (10000, 25000, 40000, 70000)
    cpu_hit_rate: int = 40000       # the anchors in issue 6 are at 40k queries/s
    miss_rates: tuple = (2000, 5000, 10000, 20000)
    cpu_miss_rate: int = 2000       # below every contender's miss saturation (dnsmasq+nftset
                                    # reaches 3.5-10k/s here, depending on the machine's load)
    cpu_miss_seconds: float = 8.0   # longer: a low-rate CPU figure needs more queries
    pair_seconds: float = 3.0       # denied vs hit, back to back in one process
    clients: int = 8
    outstanding: int = 100          # below dnsmasq's dns-forward-max (150)


@dataclass
class Result:
    round: int
    contender: str
    workload: str                   # hit, miss, mixed, denied
    kind: str                       # sat or rate
    rate: Optional[int]
    sent: int = 0
    completed: int = 0
    lost: int = 0
    qps: float = 0.0
    runtime: float = 0.0
    avg_lat_ms: Optional[float] = None
    p50_ms: Optional[float] = None
    p99_ms: Optional[float] = None
    cpu_us_per_q: Optional[float] = None
    server_cpu_pct: Optional[float] = None
    loadgen_cpu_pct: Optional[float] = None
    nsd_us_per_q: Optional[float] = None
    first_answer_ms: Optional[float] = None
    spawn_ms: Optional[float] = None
    other_cpu_pct: Optional[float] = None
    rss_idle_kib: Optional[int] = None
    rss_after_kib: Optional[int] = None
    pss_idle_kib: Optional[int] = None
    anon_idle_kib: Optional[int] = None
    rcodes: str = ""
    extra: dict = field(default_factory=dict)


class Bench:
    def __init__(self, args, lab: "L.Lab", work: Path):
        self.args, self.lab, self.work = args, lab, work
        self.data = write_datafiles(work)
        self.results: "list[Result]" = []
        self.acks: "list[dict]" = []
        self.pairs: "list[dict]" = []
        self.running: Optional[Running] = None
        self.netns_exec_ms = 0.0

    # processes in the session namespace (forked from inside it: no `ip netns exec` in the
    # timing, and the PID is the program's own)
    def spawn(self, argv, stdout, stderr, fast: bool = False) -> subprocess.Popen:
        """`fast`: no preexec_fn, so Python uses vfork and the start-up timing is not a fork
        of this (large) process; such a child does not die with the bench on SIGKILL, but it
        lives in the lab's namespace, whose processes Lab.close() and the next run's
        cleanup_stale() kill."""
        with self.lab.netns(self.lab.session):
            return subprocess.Popen([str(a) for a in argv], stdin=subprocess.DEVNULL,
                                    stdout=stdout, stderr=stderr,
                                    preexec_fn=None if fast else _pdeathsig)

    def nft(self, *args: str, check=True) -> subprocess.CompletedProcess:
        return self.lab.run_in_session(["nft", *args], check=check)

    def nft_load(self, text: str) -> None:
        p = self.work / "table.nft"
        p.write_text(text)
        self.nft("-f", str(p))

    def reset_nft(self) -> None:
        self.nft("delete", "table", "inet", "egress", check=False)

    # start / stop ----------------------------------------------------------------------------
    def start(self, c: Contender, timeout: float = 10.0) -> Running:
        self.reset_nft()
        c.setup(self)
        d = self.work / c.key
        d.mkdir(exist_ok=True)
        argv = c.argv(d)
        spawn_ms = self.spawn_baseline_ms()
        out = open(d / "stdout", "ab")
        err = open(d / "stderr", "ab")
        offset = err.tell()
        sock = self.lab.session_socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        try:
            t0 = time.monotonic()
            proc = self.spawn(argv, out, err, fast=True)
            first = self._first_answer(sock, proc, t0, timeout, c)
        finally:
            sock.close()
            out.close()
            err.close()
        self.running = Running(proc, first, rss_kib(proc.pid), d / "stderr", offset, spawn_ms)
        self.running.smaps = smaps_rollup(proc.pid)
        return self.running

    def spawn_baseline_ms(self) -> float:
        """The floor of the start-up figure: fork+exec+exit of /bin/true, spawned the same way."""
        t0 = time.monotonic()
        p = self.spawn(["/bin/true"], subprocess.DEVNULL, subprocess.DEVNULL, fast=True)
        p.wait()
        return (time.monotonic() - t0) * 1000.0

    def _first_answer(self, sock, proc, t0, timeout, c) -> float:
        """Sends a query for an allowed name every 0.5 ms until a NOERROR answer with data."""
        name = hit_name(0)
        qid = random.randrange(65536)
        next_send = t0
        while True:
            now = time.monotonic()
            if proc.poll() is not None:
                raise RuntimeError(f"{c.label} exited with {proc.returncode}: "
                                   f"{(self.work / c.key / 'stderr').read_text()[-2000:]}")
            if now - t0 > timeout:
                raise RuntimeError(f"{c.label} gave no answer within {timeout} s")
            if now >= next_send:
                qid = (qid + 1) & 0xFFFF
                with contextlib.suppress(OSError):
                    sock.sendto(dns_query_packet(name, qid), ("127.0.0.1", 53))
                next_send = now + 0.0005
            r, _, _ = select.select([sock], [], [], 0.0005)
            if not r:
                continue
            with contextlib.suppress(OSError):
                pkt = sock.recv(4096)
                if len(pkt) >= 12:
                    flags, an = struct.unpack("!H", pkt[2:4])[0], struct.unpack("!H", pkt[6:8])[0]
                    if flags & 0x8000 and flags & 0xF == 0 and (an > 0 or c.floor):
                        return (time.monotonic() - t0) * 1000.0

    def stop(self) -> str:
        """Stops the running contender; returns what it wrote on stderr during this run."""
        if self.running is None:
            return ""
        run, self.running = self.running, None
        p = run.proc
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        with contextlib.suppress(OSError), open(run.stderr, "rb") as f:
            f.seek(run.stderr_offset)
            return f.read().decode(errors="replace")
        return ""

    # dnsperf ---------------------------------------------------------------------------------
    def dnsperf(self, datafile: Path, limit: float, rate: Optional[int] = None,
                runs: Optional[int] = None, verbose: bool = False, tag: str = "") -> dict:
        plan = self.args.plan
        argv = ["dnsperf", "-s", "127.0.0.1", "-p", "53", "-d", str(datafile),
                "-c", str(plan.clients), "-T", "1", "-q", str(plan.outstanding), "-t", "2",
                "-l", f"{limit:g}", "-O", "suppress=timeouts,unexpected,congestion,sendfailed"]
        if rate:
            argv += ["-Q", str(rate)]
        if runs:
            argv += ["-n", str(runs)]
        if verbose:
            argv += ["-v"]
        out_path = self.work / f"dnsperf-{tag}.out"
        with open(out_path, "wb") as out, open(self.work / "dnsperf.stderr", "ab") as err:
            t0 = time.monotonic()
            p = self.spawn(argv, out, err)
            try:
                _, status, ru = os.wait4(p.pid, 0)
            except BaseException:
                p.kill()
                p.wait()
                raise
            p.returncode = os.waitstatus_to_exitcode(status)
            wall = time.monotonic() - t0
        text = out_path.read_text(errors="replace")
        if p.returncode != 0:
            raise RuntimeError(f"dnsperf exited {p.returncode}: {' '.join(argv)}\n{text[-2000:]}")
        res = parse_dnsperf(text)
        res["loadgen_cpu_s"] = ru.ru_utime + ru.ru_stime
        res["loadgen_cpu_pct"] = 100.0 * res["loadgen_cpu_s"] / wall if wall > 0 else None
        res["argv"] = argv
        if verbose:
            lat = sorted(float(m.group(1)) for m in
                         re.finditer(r"^> \S+ .* (\d+\.\d+)$", text, re.M))
            res["p50_ms"] = percentile(lat, 50) * 1000 if lat else None
            res["p99_ms"] = percentile(lat, 99) * 1000 if lat else None
        if not self.args.keep:
            out_path.unlink()
        return res

    def nsd_cpu(self) -> float:
        total = 0.0
        for pid in L._netns_pids(self.lab.internet):
            with contextlib.suppress(OSError, IndexError, ValueError):
                total += cpu_seconds(pid)
        return total

    # one measurement ---------------------------------------------------------------------------
    def measure(self, rnd: int, c: Contender, workload: str, kind: str,
                rate: Optional[int] = None, seconds: Optional[float] = None) -> Result:
        plan = self.args.plan
        run = self.start(c)
        try:
            if workload in ("hit", "mixed"):
                # warm: every allowed name of the set once (denied names need no warming)
                self.dnsperf(self.data["hit"], 10, runs=1, tag="warm")
            pid = run.pid
            cpu0, nsd0, busy0 = cpu_seconds(pid), self.nsd_cpu(), machine_busy_seconds()
            t0 = time.monotonic()
            limit = seconds or (plan.sat_seconds if kind == "sat" else plan.rate_seconds)
            runs = 1 if workload == "miss" else None
            tag = f"{rnd}-{c.key}-{workload}-{kind}-{rate or 0}"
            d = self.dnsperf(self.data[workload], limit, rate=rate, runs=runs,
                             verbose=(kind == "rate"), tag=tag)
            wall = time.monotonic() - t0
            cpu1, nsd1, busy1 = cpu_seconds(pid), self.nsd_cpu(), machine_busy_seconds()
            rss_after = rss_kib(pid)
            set_elements = (self.count_set_elements()
                            if c.key in ("dnsd-enforce", "dnsmasq-nftset") else None)
            stderr = self.stop()
            r = Result(rnd, c.key, workload, kind, rate)
            r.sent, r.completed, r.lost = d["sent"], d["completed"], d["lost"]
            r.qps, r.runtime, r.avg_lat_ms = d["qps"], d["runtime"], d["avg_lat_ms"]
            r.p50_ms, r.p99_ms = d.get("p50_ms"), d.get("p99_ms")
            r.rcodes = d["rcodes"]
            r.loadgen_cpu_pct = d["loadgen_cpu_pct"]
            # CPU the machine spent on anything but this measurement (other users of the
            # shared machine), as a share of all cores: a noisy run shows here.
            ours = (cpu1 - cpu0) + (nsd1 - nsd0) + d["loadgen_cpu_s"]
            r.other_cpu_pct = 100.0 * max(0.0, (busy1 - busy0) - ours) / (wall * (os.cpu_count() or 1))
            if r.completed:
                r.cpu_us_per_q = (cpu1 - cpu0) * 1e6 / r.completed
                if workload == "miss":
                    r.nsd_us_per_q = (nsd1 - nsd0) * 1e6 / r.completed
            r.server_cpu_pct = 100.0 * (cpu1 - cpu0) / wall if wall > 0 else None
            r.first_answer_ms = run.first_answer_ms
            r.rss_idle_kib = run.rss_idle
            r.pss_idle_kib = run.smaps.get("Pss")
            r.anon_idle_kib = run.smaps.get("Anonymous")
            r.rss_after_kib = rss_after
            r.spawn_ms = run.spawn_ms
            r.extra["dnsperf"] = " ".join(d["argv"])
            if set_elements is not None:
                r.extra["set_elements"] = set_elements
            r.extra.update(parse_dnsd_stats(stderr))
            self.results.append(r)
            lat = (f" p50 {r.p50_ms:.3f} ms p99 {r.p99_ms:.3f} ms" if r.p50_ms is not None else "")
            log(f"round {rnd} {c.label:20s} {workload:6s} {kind:4s} {rate or '':>6} "
                f"-> {r.qps:9.0f} q/s, {r.cpu_us_per_q or 0:6.1f} us/q, lost {r.lost}{lat}, "
                f"first answer {r.first_answer_ms:.1f} ms, RSS {r.rss_idle_kib}->"
                f"{r.rss_after_kib} KiB")
            return r
        finally:
            self.stop()

    def netfilter_fds(self, pid: int) -> "set[int]":
        """dnsd's NETLINK_NETFILTER sockets (protocol 12 in /proc/PID/net/netlink)."""
        inodes = set()
        for line in Path(f"/proc/{pid}/net/netlink").read_text().splitlines()[1:]:
            f = line.split()
            if len(f) >= 10 and f[1] == "12":
                inodes.add(f[9])
        fds = set()
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                m = re.fullmatch(r"socket:\[(\d+)\]", os.readlink(fd))
                if m and m.group(1) in inodes:
                    fds.add(int(fd.name))
        return fds

    def ack_wait(self, rnd: int, c: Contender, rate: int, seconds: float) -> Optional[dict]:
        """dnsd's wait for the kernel's ACK on the miss path, seen from outside: `perf record` of
        three syscall tracepoints, filtered in the kernel to the netlink socket (entry of the
        batch's sendto, its exit, and every recvmsg that returned data: dnsd reads nothing else
        with recvmsg), so the run costs a few events per query and no ptrace stop. The wait is
        from the entry of a batch's send() to the exit of the recvmsg() that read its ACK; the
        send() alone is the kernel's nf_tables transaction (netlink runs it inside the call)."""
        if shutil.which("perf") is None:
            return None
        run = self.start(c)
        data = self.work / f"perf-ack-{rnd}-{rate}.data"
        tracer = None
        try:
            fds = sorted(self.netfilter_fds(run.pid))
            if not fds:
                log("ACK wait: dnsd has no NETLINK_NETFILTER socket?")
                return None
            fd_filter = " || ".join(f"fd == {fd}" for fd in fds)
            tracer = subprocess.Popen(
                ["perf", "record", "-q", "-o", str(data), "-p", str(run.pid),
                 "-e", "syscalls:sys_enter_sendto", "--filter", fd_filter,
                 "-e", "syscalls:sys_exit_sendto",
                 "-e", "syscalls:sys_exit_recvmsg", "--filter", "ret > 0"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=_pdeathsig)
            time.sleep(1.0)  # perf attaches asynchronously
            if tracer.poll() is not None:
                log(f"perf record failed: {tracer.stderr.read().decode(errors='replace')[-300:]}")
                return None
            d = self.dnsperf(self.data["miss"], seconds, rate=rate, runs=1, tag=f"ack-{rnd}")
        finally:
            if tracer is not None and tracer.poll() is None:
                tracer.send_signal(signal.SIGINT)
                try:
                    tracer.wait(30)
                except subprocess.TimeoutExpired:
                    tracer.kill()
                    tracer.wait()
            stderr = self.stop()
        script = subprocess.run(["perf", "script", "-i", str(data), "-F", "time,event"],
                                capture_output=True, text=True)
        res = ack_waits(script.stdout)
        res["completed"] = d["completed"]
        res.update(parse_dnsd_stats(stderr))
        if not self.args.keep:
            data.unlink(missing_ok=True)
        log(f"round {rnd} {c.label:20s} ACK wait at {rate} q/s: {d['completed']} answered, "
            f"{res['batches']} batches, p50 {fmt(res['wait_p50_ms'], '.3f')} ms, "
            f"p99 {fmt(res['wait_p99_ms'], '.3f')} ms; send() p50 "
            f"{fmt(res['send_p50_ms'], '.3f')} ms, p99 {fmt(res['send_p99_ms'], '.3f')} ms")
        return res

    def denied_vs_hit(self, rnd: int, c: Contender) -> dict:
        """CPU per query of denied and of cached allowed names, alternated back to back in one
        warm process (hit, denied, hit, denied): the comparison the goal asks for, with the
        drift of a shared machine between the two kept to seconds."""
        plan = self.args.plan
        run = self.start(c)
        out = {"round": rnd, "contender": c.key, "hit": [], "denied": []}
        try:
            self.dnsperf(self.data["hit"], 10, runs=1, tag="warm")
            for _ in range(2):
                for wl in ("hit", "denied"):
                    cpu0 = cpu_seconds(run.pid)
                    d = self.dnsperf(self.data[wl], plan.pair_seconds, rate=plan.cpu_hit_rate,
                                     tag=f"pair-{rnd}-{c.key}-{wl}")
                    cpu1 = cpu_seconds(run.pid)
                    if d["completed"]:
                        out[wl].append((cpu1 - cpu0) * 1e6 / d["completed"])
        finally:
            self.stop()
        ratios = [dn / h for h, dn in zip(out["hit"], out["denied"]) if h]
        out["ratio"] = median(ratios)
        log(f"round {rnd} {c.label:20s} denied vs hit at {plan.cpu_hit_rate} q/s: "
            f"hit {', '.join(f'{x:.1f}' for x in out['hit'])} us/q, denied "
            f"{', '.join(f'{x:.1f}' for x in out['denied'])} us/q -> {fmt(out['ratio'], '.2f')}x")
        return out

    def count_set_elements(self) -> Optional[int]:
        r = self.nft("-j", "list", "set", "inet", "egress", "allow4", check=False)
        if r.returncode != 0:
            return None
        with contextlib.suppress(ValueError, KeyError, TypeError):
            for obj in json.loads(r.stdout)["nftables"]:
                if "set" in obj:
                    return len(obj["set"].get("elem", []))
        return None


_SCRIPT_LINE = re.compile(r"^\s*([\d.]+):\s+syscalls:(sys_enter_sendto|sys_exit_sendto|sys_exit_recvmsg)")


def ack_waits(script: str) -> dict:
    """From `perf script -F time,event` of the three filtered tracepoints: pairs each netlink
    send with its own sendto exit (dnsd is single-threaded) and with the first ACK read after it
    (FIFO: the kernel queues ACKs in the order of the batches)."""
    events = [(float(m.group(1)), m.group(2)) for m in map(_SCRIPT_LINE.match, script.splitlines())
              if m]
    events.sort()
    pending, waits, sends = [], [], []
    in_send = None
    for t, ev in events:
        if ev == "sys_enter_sendto":
            in_send = t
            pending.append(t)
        elif ev == "sys_exit_sendto":
            if in_send is not None:
                sends.append(t - in_send)
                in_send = None
        elif pending:  # an ACK datagram read
            waits.append(t - pending.pop(0))
    waits = sorted(w * 1000 for w in waits)
    sends = sorted(x * 1000 for x in sends)
    return {"batches": len(waits) + len(pending),
            "wait_p50_ms": percentile(waits, 50), "wait_p99_ms": percentile(waits, 99),
            "wait_max_ms": waits[-1] if waits else None,
            "send_p50_ms": percentile(sends, 50), "send_p99_ms": percentile(sends, 99)}


def parse_dnsd_stats(stderr: str) -> dict:
    """The counters dnsd logs when it stops ("stopped: N queries, ..." and "nftables: ...")."""
    out = {}
    for line in stderr.splitlines():
        m = re.search(r"(stopped|nftables): (.*)$", line)
        if not m:
            continue
        for num, what in re.findall(r"(\d+) ([a-z][a-z ]*?)(?:,|$)", m.group(2)):
            out[f"{m.group(1)}.{what.strip().replace(' ', '_')}"] = int(num)
    return out


def parse_dnsperf(text: str) -> dict:
    def num(pattern, cast=float, default=0):
        m = re.search(pattern, text, re.M)
        return cast(m.group(1)) if m else default

    avg = num(r"Average Latency \(s\):\s+([\d.]+)", float, None)
    rc = re.search(r"Response codes:\s+(.*)$", text, re.M)
    return {
        "sent": num(r"Queries sent:\s+(\d+)", int),
        "completed": num(r"Queries completed:\s+(\d+)", int),
        "lost": num(r"Queries lost:\s+(\d+)", int),
        "runtime": num(r"Run time \(s\):\s+([\d.]+)"),
        "qps": num(r"Queries per second:\s+([\d.]+)"),
        "avg_lat_ms": avg * 1000 if avg is not None else None,
        "rcodes": rc.group(1).strip() if rc else "",
    }


# --- the schedule ---------------------------------------------------------------------------

def floor_steps(plan: Plan) -> "dict[str, set]":
    """Where each floor is measured: the echo where a cache hit's CPU is judged (and its
    saturation), the relay where a miss's is."""
    return {"floor-echo": {("hit", "sat", None), ("hit", "rate", plan.cpu_hit_rate)},
            "floor-relay": {("miss", "sat", None), ("miss", "rate", plan.cpu_miss_rate)}}


def schedule(plan: Plan, contenders: "list[Contender]"):
    """(workload, kind, rate, seconds, contenders) in run order, for one round."""
    keys = [c.key for c in contenders]
    floors = [c for c in contenders if c.floor]
    contenders = [c for c in contenders if not c.floor]
    not_nftset = [c for c in contenders if c.key != "dnsmasq-nftset"]  # same path as dnsmasq
    steps = [("hit", "sat", None, None, not_nftset)]
    steps += [("hit", "rate", r, None, not_nftset) for r in plan.hit_rates]
    steps += [("mixed", "sat", None, None, not_nftset),
              ("mixed", "rate", plan.cpu_hit_rate, None, not_nftset),
              ("denied", "rate", plan.cpu_hit_rate, None, not_nftset)]
    steps += [("miss", "sat", None, None, contenders)]
    for r in plan.miss_rates:
        base = plan.cpu_miss_seconds if r == plan.cpu_miss_rate else plan.rate_seconds
        secs = min(base, max(1.0, 0.95 * MISS_NAMES / r))
        steps.append(("miss", "rate", r, secs, contenders))
    where = floor_steps(plan)
    steps = [(wl, kind, rate, secs, cs + [f for f in floors if (wl, kind, rate) in where[f.key]])
             for wl, kind, rate, secs, cs in steps]
    assert keys
    return steps


def ack_rates(bench: Bench, plan: Plan, rnd: int) -> "list[int]":
    """The fixed miss rate, and 3x the miss saturation dnsmasq+nftset reached in this round (the
    load of issue 3's goal), when that was measured."""
    rates = [plan.cpu_miss_rate]
    sat = [r.qps for r in bench.results if r.round == rnd and r.contender == "dnsmasq-nftset"
           and r.workload == "miss" and r.kind == "sat"]
    if sat:
        rates.append(max(1000, int(round(3 * sat[0], -3))))
    return rates


def estimate_seconds(plan: Plan, contenders) -> float:
    total = 0.0
    for wl, kind, rate, secs, cs in schedule(plan, contenders):
        per = secs or (plan.sat_seconds if kind == "sat" else plan.rate_seconds)
        total += len(cs) * (per + 1.5)
    if any(c.key == "dnsd-enforce" for c in contenders):
        total += 2 * (plan.rate_seconds + 5)
    total += sum(4 * plan.pair_seconds + 3 for c in contenders if c.key.startswith("dnsd"))
    return total * plan.rounds


# --- report ---------------------------------------------------------------------------------

def machine_info() -> dict:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) // 1024} MiB"
    vers = {
        "dnsmasq": sh(["/usr/sbin/dnsmasq", "--version"]).splitlines()[0],
        "unbound": (sh(["/usr/sbin/unbound", "-V"]).splitlines() or ["?"])[0],
        "nsd": (sh(["/usr/sbin/nsd", "-v"]).splitlines() or ["?"])[0],
        "dnsperf": next((ln for ln in sh(["dnsperf", "-h"]).splitlines()
                         if ln.startswith("Version")), "?"),
    }
    git = sh(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = sh(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"])
    return {"nproc": os.cpu_count(), "cpu": cpu, "kernel": platform.release(), "mem": mem,
            "versions": vers, "git": git + (" + uncommitted changes" if dirty else ""),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def fmt(v, spec=".1f", none="–"):
    if v is None:
        return none
    return format(v, spec)


class Report:
    def __init__(self, bench: Bench, contenders, plan: Plan, info: dict, elapsed: float,
                 enforce_note: str):
        self.b, self.cs, self.plan, self.info = bench, contenders, plan, info
        self.elapsed, self.enforce_note = elapsed, enforce_note
        self.label = {c.key: c.label for c in contenders}

    def sel(self, contender, workload, kind, rate=None):
        return [r for r in self.b.results if r.contender == contender and r.workload == workload
                and r.kind == kind and (rate is None or r.rate == rate)]

    def med(self, contender, workload, kind, attr, rate=None):
        return median(getattr(r, attr) for r in self.sel(contender, workload, kind, rate))

    def ratio(self, a, b, workload, kind, attr, rate=None):
        """Median over rounds of a/b, each round's pair measured side by side."""
        out = []
        for rnd in range(1, self.plan.rounds + 1):
            ra = [getattr(r, attr) for r in self.sel(a, workload, kind, rate) if r.round == rnd]
            rb = [getattr(r, attr) for r in self.sel(b, workload, kind, rate) if r.round == rnd]
            if ra and rb and ra[0] is not None and rb[0]:
                out.append(ra[0] / rb[0])
        return median(out)

    def all_runs(self, contender, attr):
        return median(getattr(r, attr) for r in self.b.results if r.contender == contender)

    def table(self, workload, kind, rate=None) -> str:
        rows = ["| contender | q/s | CPU µs/q | server CPU % | avg lat ms | p50 ms | p99 ms "
                "| lost | loadgen CPU % | other load % | per round (q/s; µs/q) |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for c in self.cs:
            rs = self.sel(c.key, workload, kind, rate)
            if not rs:
                continue
            per = "; ".join(f"{r.qps:.0f}, {fmt(r.cpu_us_per_q)}" for r in rs)
            nsd = ""
            if workload == "miss":
                nsd = f" (nsd {fmt(median(r.nsd_us_per_q for r in rs))} µs/q)"
            rows.append(
                f"| {c.label} | {fmt(median(r.qps for r in rs), '.0f')} "
                f"| {fmt(median(r.cpu_us_per_q for r in rs))}{nsd} "
                f"| {fmt(median(r.server_cpu_pct for r in rs), '.0f')} "
                f"| {fmt(median(r.avg_lat_ms for r in rs), '.3f')} "
                f"| {fmt(median(r.p50_ms for r in rs), '.3f')} "
                f"| {fmt(median(r.p99_ms for r in rs), '.3f')} "
                f"| {fmt(median(r.lost for r in rs), '.0f')} "
                f"| {fmt(median(r.loadgen_cpu_pct for r in rs), '.0f')} "
                f"| {fmt(median(r.other_cpu_pct for r in rs), '.0f')} | {per} |")
        return "\n".join(rows)

    def goals(self) -> "list[tuple]":
        """(goal, measured, verdict) rows."""
        P = self.plan
        g = []
        d_miss = "dnsd-enforce" if any(c.key == "dnsd-enforce" for c in self.cs) else None

        def verdict(ok):
            return "**met**" if ok else "**missed**"

        def row(goal, value, ok, note=""):
            if value is None:
                g.append((goal, "not measured" + (f" ({note})" if note else ""), "open"))
            else:
                g.append((goal, value + (f" ({note})" if note else ""), verdict(ok)))

        r = self.ratio("dnsd", "unbound", "hit", "rate", "cpu_us_per_q", P.cpu_hit_rate)
        row(f"cache hit: CPU/query ≤ 0.75× unbound's (at {P.cpu_hit_rate} q/s)",
            None if r is None else f"{r:.2f}× ({fmt(self.med('dnsd', 'hit', 'rate', 'cpu_us_per_q', P.cpu_hit_rate))} vs "
            f"{fmt(self.med('unbound', 'hit', 'rate', 'cpu_us_per_q', P.cpu_hit_rate))} µs)",
            r is not None and r <= 0.75)
        self.floor_row(g, "floor-echo", "unbound", "hit", P.cpu_hit_rate, "dnsd",
                       "cache hit: a UDP echo (no work in user space)")
        r = self.ratio("dnsd", "unbound", "hit", "sat", "qps")
        row("cache hit: saturation ≥ unbound's",
            None if r is None else f"{r:.2f}× ({fmt(self.med('dnsd', 'hit', 'sat', 'qps'), '.0f')} vs "
            f"{fmt(self.med('unbound', 'hit', 'sat', 'qps'), '.0f')} q/s)",
            r is not None and r >= 1.0)
        if d_miss:
            r = self.ratio(d_miss, "dnsmasq-nftset", "miss", "sat", "qps")
            row("miss with installation: throughput ≥ 3× dnsmasq+nftset's",
                None if r is None else f"{r:.2f}× ({fmt(self.med(d_miss, 'miss', 'sat', 'qps'), '.0f')} vs "
                f"{fmt(self.med('dnsmasq-nftset', 'miss', 'sat', 'qps'), '.0f')} q/s)",
                r is not None and r >= 3.0)
            r = self.ratio(d_miss, "dnsmasq-nftset", "miss", "rate", "cpu_us_per_q",
                           P.cpu_miss_rate)
            row(f"miss with installation: CPU/query ≤ 0.25× dnsmasq+nftset's (at {P.cpu_miss_rate} q/s)",
                None if r is None else f"{r:.2f}× ({fmt(self.med(d_miss, 'miss', 'rate', 'cpu_us_per_q', P.cpu_miss_rate))} vs "
                f"{fmt(self.med('dnsmasq-nftset', 'miss', 'rate', 'cpu_us_per_q', P.cpu_miss_rate))} µs)",
                r is not None and r <= 0.25)
            self.floor_row(g, "floor-relay", "dnsmasq-nftset", "miss", P.cpu_miss_rate, d_miss,
                           "miss: a UDP relay to nsd (no cache, no parsing, no nftables)")
            r = self.ratio(d_miss, "dnsmasq-nftset", "miss", "sat", "cpu_us_per_q")
            if r is not None:
                g.append(("(orientation) miss with installation: CPU/query at each one's saturation",
                          f"{r:.2f}× ({fmt(self.med(d_miss, 'miss', 'sat', 'cpu_us_per_q'))} vs "
                          f"{fmt(self.med('dnsmasq-nftset', 'miss', 'sat', 'cpu_us_per_q'))} µs)",
                          "–"))
        else:
            row("miss with installation: throughput ≥ 3× dnsmasq+nftset's", None, False,
                self.enforce_note)
            row("miss with installation: CPU/query ≤ 0.25× dnsmasq+nftset's", None, False,
                self.enforce_note)
        # the same comparison without installation on either side, for orientation
        r = self.ratio("dnsd", "dnsmasq", "miss", "sat", "qps")
        if r is not None:
            g.append(("(orientation) miss without installation: dnsd off vs dnsmasq, throughput",
                      f"{r:.2f}×", "–"))
        r = self.ratio("dnsd", "dnsmasq", "miss", "rate", "cpu_us_per_q", P.cpu_miss_rate)
        if r is not None:
            g.append(("(orientation) miss without installation: dnsd off vs dnsmasq, CPU/query",
                      f"{r:.2f}×", "–"))
        for key in ["dnsd"] + ([d_miss] if d_miss else []):
            ps = [p for p in self.b.pairs if p["contender"] == key]
            hit = median(x for p in ps for x in p["hit"])
            den = median(x for p in ps for x in p["denied"])
            rr = median(p["ratio"] for p in ps)
            if rr is not None and 1.0 < rr <= 1.05:
                g.append((f"denied queries cost no more than cache hits ({self.label.get(key, key)})",
                          f"{rr:.2f}× ({fmt(den)} vs {fmt(hit)} µs)",
                          "equal within the run-to-run noise (±5 %)"))
            else:
                row(f"denied queries cost no more than cache hits ({self.label.get(key, key)})",
                    None if rr is None else f"{rr:.2f}× ({fmt(den)} vs {fmt(hit)} µs)",
                    rr is not None and rr <= 1.0)
        rr = self.ratio_attr("dnsd", "dnsmasq", "rss_idle_kib")
        anon = self.ratio_attr("dnsd", "dnsmasq", "anon_idle_kib")
        row("RSS idle ≤ dnsmasq's (VmRSS)",
            None if rr is None else f"{rr:.2f}× ({fmt(self.all_runs('dnsd', 'rss_idle_kib'), '.0f')} vs "
            f"{fmt(self.all_runs('dnsmasq', 'rss_idle_kib'), '.0f')} KiB)",
            rr is not None and rr <= 1.0,
            None if anon is None else f"anonymous memory {anon:.2f}×: "
            f"{fmt(self.all_runs('dnsd', 'anon_idle_kib'), '.0f')} vs "
            f"{fmt(self.all_runs('dnsmasq', 'anon_idle_kib'), '.0f')} KiB; the rest of VmRSS is "
            "shared library pages")
        per = self.per_cached_name("dnsd")
        row("≤ 1 KiB per cached name (dnsd off, after the miss run)",
            None if per is None else f"{per:.2f} KiB", per is not None and per <= 1.0,
            "ΔRSS / min(names, cache max_entries 10000)")
        fa = self.all_runs("dnsd", "first_answer_ms")
        row("first answer ≤ 50 ms after exec (dnsd)", None if fa is None else f"{fa:.1f} ms",
            fa is not None and fa <= 50.0)
        if d_miss:
            high = [a for a in self.b.acks if a["rate"] != P.cpu_miss_rate]
            p99 = median(a["wait_p99_ms"] for a in high)
            rate = median(a["rate"] for a in high)
            row("miss with installation: ACK wait p99 < 1 ms at that load",
                None if p99 is None else f"{p99:.3f} ms at {rate:.0f} q/s offered",
                p99 is not None and p99 < 1.0, "perf record of syscall tracepoints, see below")
        return g

    def floor_row(self, g, floor, other, workload, rate, dnsd, what):
        """An orientation row: the floor's CPU per query as a share of `other`'s, i.e. the
        lowest ratio any server could reach against `other` on this machine."""
        r = self.ratio(floor, other, workload, "rate", "cpu_us_per_q", rate)
        if r is None:
            return
        above = self.ratio(dnsd, floor, workload, "rate", "cpu_us_per_q", rate)
        g.append((f"(floor) {what}: CPU/query ÷ {self.label.get(other, other)}'s (at {rate} q/s)",
                  f"{r:.2f}× ({fmt(self.med(floor, workload, 'rate', 'cpu_us_per_q', rate))} vs "
                  f"{fmt(self.med(other, workload, 'rate', 'cpu_us_per_q', rate))} µs)"
                  + ("" if above is None else
                     f"; {self.label.get(dnsd, dnsd)} ÷ floor {above:.2f}×"), "–"))

    def ratio_same(self, key, wl_a, wl_b, rate):
        out = []
        for rnd in range(1, self.plan.rounds + 1):
            a = [r.cpu_us_per_q for r in self.sel(key, wl_a, "rate", rate) if r.round == rnd]
            b = [r.cpu_us_per_q for r in self.sel(key, wl_b, "rate", rate) if r.round == rnd]
            if a and b and a[0] is not None and b[0]:
                out.append(a[0] / b[0])
        return median(out)

    def ratio_attr(self, a, b, attr):
        out = []
        for rnd in range(1, self.plan.rounds + 1):
            va = median(getattr(r, attr) for r in self.b.results if r.contender == a and r.round == rnd)
            vb = median(getattr(r, attr) for r in self.b.results if r.contender == b and r.round == rnd)
            if va is not None and vb:
                out.append(va / vb)
        return median(out)

    def per_cached_name(self, key, cache_entries=10000):
        rs = self.sel(key, "miss", "sat")
        vals = [(r.rss_after_kib - r.rss_idle_kib) / min(r.completed, cache_entries)
                for r in rs if r.completed]
        return median(vals)

    def ratios_table(self) -> str:
        P = self.plan
        dnsd_keys = [c.key for c in self.cs if c.key.startswith("dnsd")]
        others = [c.key for c in self.cs if not c.key.startswith("dnsd") and not c.floor]
        lines = ["| dnsd variant | vs | hit q/s | hit µs/q @%dk | mixed q/s | mixed µs/q @%dk "
                 "| denied µs/q @%dk | miss q/s | miss µs/q @%dk | RSS idle |"
                 % (P.cpu_hit_rate // 1000, P.cpu_hit_rate // 1000, P.cpu_hit_rate // 1000,
                    P.cpu_miss_rate // 1000),
                 "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for d in dnsd_keys:
            for o in others:
                cells = [
                    self.ratio(d, o, "hit", "sat", "qps"),
                    self.ratio(d, o, "hit", "rate", "cpu_us_per_q", P.cpu_hit_rate),
                    self.ratio(d, o, "mixed", "sat", "qps"),
                    self.ratio(d, o, "mixed", "rate", "cpu_us_per_q", P.cpu_hit_rate),
                    self.ratio(d, o, "denied", "rate", "cpu_us_per_q", P.cpu_hit_rate),
                    self.ratio(d, o, "miss", "sat", "qps"),
                    self.ratio(d, o, "miss", "rate", "cpu_us_per_q", P.cpu_miss_rate),
                    self.ratio_attr(d, o, "rss_idle_kib"),
                ]
                lines.append(f"| {self.label[d]} | {self.label[o]} | "
                             + " | ".join(fmt(x, ".2f") + ("×" if x is not None else "")
                                          for x in cells) + " |")
        return "\n".join(lines)

    def startup_table(self) -> str:
        rows = ["| contender | first answer ms (median, all starts) | max | spawn floor ms "
                "| RSS idle KiB | PSS idle KiB | anonymous idle KiB | RSS after miss run KiB "
                "| ΔRSS per answered miss name |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for c in self.cs:
            rs = [r for r in self.b.results if r.contender == c.key]
            if not rs or c.floor:
                continue
            miss = self.sel(c.key, "miss", "sat")
            after = median(r.rss_after_kib for r in miss)
            per = median((r.rss_after_kib - r.rss_idle_kib) * 1024 / r.completed
                         for r in miss if r.completed)
            rows.append(f"| {c.label} | {fmt(median(r.first_answer_ms for r in rs))} "
                        f"| {fmt(max(r.first_answer_ms for r in rs))} "
                        f"| {fmt(median(r.spawn_ms for r in rs))} "
                        f"| {fmt(median(r.rss_idle_kib for r in rs), '.0f')} "
                        f"| {fmt(median(r.pss_idle_kib for r in rs), '.0f')} "
                        f"| {fmt(median(r.anon_idle_kib for r in rs), '.0f')} "
                        f"| {fmt(after, '.0f')} | {fmt(per, '.0f')} B |")
        return "\n".join(rows)

    def sweep_table(self, workload, rates) -> str:
        head = "| contender | " + " | ".join(f"{r // 1000}k/s" for r in rates) + " |"
        rows = [head, "|---|" + "---:|" * len(rates)]
        for c in self.cs:
            if c.floor or not self.sel(c.key, workload, "rate"):
                continue
            cells = []
            for rate in rates:
                rs = self.sel(c.key, workload, "rate", rate)
                if not rs:
                    cells.append("–")
                    continue
                cells.append(f"{fmt(median(r.p50_ms for r in rs), '.3f')} / "
                             f"{fmt(median(r.p99_ms for r in rs), '.3f')} "
                             f"({fmt(median(r.qps for r in rs), '.0f')}; lost "
                             f"{fmt(median(r.lost for r in rs), '.0f')})")
            rows.append(f"| {c.label} | " + " | ".join(cells) + " |")
        return "\n".join(rows)

    def pairs_table(self) -> str:
        rows = ["| contender | round | hit µs/q | denied µs/q | denied / hit (median of pairs) |",
                "|---|---:|---|---|---:|"]
        for p in self.b.pairs:
            rows.append(f"| {self.label[p['contender']]} | {p['round']} "
                        f"| {', '.join(f'{x:.1f}' for x in p['hit'])} "
                        f"| {', '.join(f'{x:.1f}' for x in p['denied'])} "
                        f"| {fmt(p['ratio'], '.2f')} |")
        return "\n".join(rows)

    def enforce_tables(self) -> str:
        if not any(c.key == "dnsd-enforce" for c in self.cs):
            return "Not measured: " + self.enforce_note
        keys = ["nftables.batches", "nftables.elements_added", "nftables.renewed",
                "nftables.skipped", "nftables.errors", "stopped.renewals", "stopped.servfail",
                "stopped.cache_hits", "stopped.upstream"]
        rows = ["Counters dnsd (enforce) logs when it stops, per measurement (median over rounds; "
                "\"renewed\"/\"skipped\" are the installer's, \"renewals\" the resolver's cache-hit "
                "renewals), and the set's size after the run:", "",
                "| measurement | completed | " + " | ".join(k.split(".", 1)[1].replace("_", " ")
                                                          for k in keys) + " | set elements |",
                "|---|---:|" + "---:|" * (len(keys) + 1)]
        seen = []
        for r in self.b.results:
            if r.contender == "dnsd-enforce" and (r.workload, r.kind, r.rate) not in seen:
                seen.append((r.workload, r.kind, r.rate))
        for wl, kind, rate in seen:
            rs = self.sel("dnsd-enforce", wl, kind, rate)
            cells = [fmt(median(r.extra.get(k) for r in rs), ".0f") for k in keys]
            rows.append(f"| {wl} {kind}{' ' + str(rate) if rate else ''} "
                        f"| {fmt(median(r.completed for r in rs), '.0f')} | " + " | ".join(cells)
                        + f" | {fmt(median(r.extra.get('set_elements') for r in rs), '.0f')} |")
        rows += ["", "ACK wait on the miss path, in separate runs recorded with `perf record` of "
                 "the syscall tracepoints `sys_enter_sendto` (filtered in the kernel to dnsd's "
                 "netlink socket), `sys_exit_sendto` and `sys_exit_recvmsg` (ret > 0): from the "
                 "entry of each batch's `send()` to the exit of the `recvmsg()` that read its ACK. "
                 "The kernel runs the nf_tables transaction inside `send()`; the rest of the wait "
                 "is dnsd's event loop getting round to the ACK.",
                 "", "| round | offered q/s | answered | batches | wait p50 ms "
                 "| wait p99 ms | wait max ms | send() p50 ms | send() p99 ms |",
                 "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for a in self.b.acks:
            rows.append(f"| {a['round']} | {a['rate']} | {a['completed']} | {a['batches']} "
                        f"| {fmt(a['wait_p50_ms'], '.3f')} "
                        f"| {fmt(a['wait_p99_ms'], '.3f')} | {fmt(a['wait_max_ms'], '.3f')} "
                        f"| {fmt(a['send_p50_ms'], '.3f')} | {fmt(a['send_p99_ms'], '.3f')} |")
        if not self.b.acks:
            rows.append("| – | not measured (perf missing or perf record failed) ||||||||")
        return "\n".join(rows)

    def floor_note(self) -> str:
        if not any(c.floor for c in self.cs):
            return ("Floors (bench/dns_floor.c) not measured in this run (bench/dns.sh builds "
                    "and passes `--floor`; `--only` may have left them out).")
        return ("Floors: `bench/dns_floor.c`, a measuring rod, not a DNS server, runs in the "
                "contenders' place: **UDP echo** answers each query with itself, QR set (one "
                "blocking `recvmmsg` of up to 64 queries, one `sendmmsg`), measured on the hit "
                "workload; **UDP relay** passes each query to nsd and the answer back under an ID "
                "of its own (`poll`, then `recvmmsg`/`sendmmsg` per socket), measured on the miss "
                "workload. Neither parses, caches or allocates: their CPU per query is the kernel's "
                "share of every server's, the least any server can spend here.")

    def configs(self) -> str:
        out = []
        wd = Path("WORKDIR")
        for c in self.cs:
            argv = [("WORKDIR/" + Path(a).name) if str(a).startswith(str(self.b.work)) else str(a)
                    for a in c.argv(self.b.work / c.key)]
            if c.key.startswith("dnsd"):
                argv[0] = "dnsd"
            if c.floor:
                argv[0] = "dns_floor"
            line = f"{c.label}: `{' '.join(argv)}`"
            if c.config_name:
                line += f", with {c.config_name}:\n\n```\n{c.config_text(wd).rstrip()}\n```"
            out.append(line)
        out.append(f"allowlist.yaml (dnsd):\n\n```\n{(self.b.work / 'allowlist.yaml').read_text().rstrip()}\n```")
        return "\n\n".join(out)

    def markdown(self, plot_rel: str) -> str:
        P, info = self.plan, self.info
        any_rate = next((r for r in self.b.results if r.kind == "rate"), None)
        any_sat = next((r for r in self.b.results if r.kind == "sat"), None)
        v = info["versions"]
        values = {
            "date": info["date"], "git": info["git"], "minutes": f"{self.elapsed / 60:.1f}",
            "nproc": info["nproc"], "cpu": info["cpu"], "kernel": info["kernel"],
            "mem": info["mem"], "v_dnsmasq": v["dnsmasq"], "v_unbound": v["unbound"],
            "v_nsd": v["nsd"], "v_dnsperf": v["dnsperf"], "upstream": L.UPSTREAM_V4,
            "zone": ZONE, "miss_names": MISS_NAMES, "hit_names": HIT_NAMES,
            "denied_names": DENIED_NAMES, "rounds": P.rounds,
            "sat_cmd": any_sat.extra["dnsperf"] if any_sat else "",
            "rate_cmd": any_rate.extra["dnsperf"] if any_rate else "",
            "sat_s": f"{P.sat_seconds:g}", "rate_s": f"{P.rate_seconds:g}",
            "hit_rate": P.cpu_hit_rate, "miss_rate": P.cpu_miss_rate,
            "enforce_note": self.enforce_note, "configs": self.configs(),
            "floor_note": self.floor_note(),
            "nft": NFT_TABLE_FOR_DNSMASQ.rstrip(),
            "goals": "\n".join(f"| {a} | {b} | {c} |" for a, b, c in self.goals()),
            "ratios": self.ratios_table(),
            "t_hit_sat": self.table("hit", "sat"),
            "t_hit_rate": self.table("hit", "rate", P.cpu_hit_rate),
            "t_mixed_sat": self.table("mixed", "sat"),
            "t_mixed_rate": self.table("mixed", "rate", P.cpu_hit_rate),
            "t_denied_rate": self.table("denied", "rate", P.cpu_hit_rate),
            "t_miss_sat": self.table("miss", "sat"),
            "t_miss_rate": self.table("miss", "rate", P.cpu_miss_rate),
            "t_startup": self.startup_table(),
            "plot": plot_rel,
            "sweep_hit": self.sweep_table("hit", P.hit_rates),
            "sweep_miss": self.sweep_table("miss", P.miss_rates),
            "enforce": self.enforce_tables(),
            "t_pairs": self.pairs_table(), "pair_s": f"{P.pair_seconds:g}",
        }
        return MARKDOWN.format(**values)


MARKDOWN = """\
## DNS: dnsd vs dnsmasq and unbound

Generated by `bench/dns.sh` on {date} (git {git}); the whole run took {minutes} min.
Re-running the command replaces this section (between the dns-bench markers).

### Machine

`nproc` = {nproc}; CPU: {cpu}; kernel {kernel}; RAM {mem}. A shared machine: absolute
figures drift between runs; the ratios pair contenders measured minutes apart in the same run.
{v_dnsmasq}; unbound {v_unbound}; {v_nsd}; dnsperf {v_dnsperf}.

### Method

* Lab: `scripts/egress_lab.py` (two network namespaces joined by a veth pair). nsd in the
  "internet" namespace on {upstream} serves `{zone}` through the lab's `extra_zones`:
  {miss_names} names `nNNNNNN.{zone} A 198.18.x.y` for the miss workload and {hit_names} names
  `hNNN.{zone} A 198.19.0.y` for cache hits, TTL 300 s.
* Each contender runs alone in the "session" namespace on 127.0.0.1:53 and forwards `{zone}`
  to nsd; every other name is denied. dnsperf runs in the same namespace; nothing is pinned to a
  core, so dnsperf, the contender and (for misses) nsd share the {nproc} cores.
* Every measurement starts the contender afresh: every miss run has a cold cache and, for the
  nftset/enforce variants, an empty set (the table is deleted before each start).
* Order: {rounds} rounds; in each round every measurement runs each contender in turn
  (A B C, A B C, ...). Ratios are the median of the per-round ratios.
* Workloads (dnsperf data files, type A, no EDNS, as glibc's stub resolver sends):
  **hit** = the {hit_names} `hNNN` names repeated, after one warming pass;
  **mixed** = hit names and {denied_names} denied names (`dNNN.denied.test`) alternating;
  **denied** = the denied names only; **miss** = the {miss_names} distinct `nNNNNNN` names, each
  asked once (`-n 1`).
* Saturation: `{sat_cmd}` ({sat_s} s; a miss run ends earlier when its names are used up).
* Fixed offered rate: the same with `-Q RATE -l {rate_s} -v`, e.g. `{rate_cmd}`. p50/p99 come from
  dnsperf's per-query latencies (`-v`); "avg lat" is dnsperf's own average.
* CPU µs per answered query: utime+stime of the server process (all threads) from
  /proc/PID/stat before and after the dnsperf run, divided by dnsperf's completed queries; taken
  at {hit_rate} q/s for hit/mixed/denied (the rate of issue 6's anchors) and at {miss_rate} q/s
  for misses. "loadgen CPU %" is dnsperf's own CPU: near 100 % means a saturation figure is
  bounded by the load generator, not by the server.
* Start-up: time from fork+exec of the server (forked inside the namespace) to the first
  NOERROR answer to an allowed name (one query every 0.5 ms); "RSS idle" is VmRSS at that moment,
  "RSS after" VmRSS after the miss run. Medians over all starts.
* {floor_note}
* dnsmasq's `cache-size` is raised from its default 150 (smaller than the hit set) to 10000,
  dnsd's default `cache.max_entries`; unbound keeps its default cache sizes.
* {enforce_note}

Configurations (WORKDIR is the bench's temporary directory):

{configs}

The table loaded with `nft -f` before each dnsmasq+nftset start:

```
{nft}
```

### Goals (issues 3 and 6)

| goal | measured (median of per-round ratios; medians) | verdict |
|---|---|---|
{goals}

### Ratios, dnsd / other (q/s: above 1 favours dnsd; µs/q and RSS: below 1 favours dnsd)

{ratios}

### Raw figures (medians over rounds; per-round values in the last column)

Cache hit, saturation:

{t_hit_sat}

Cache hit, {hit_rate} q/s offered:

{t_hit_rate}

Mixed (half allowed and cached, half denied), saturation:

{t_mixed_sat}

Mixed, {hit_rate} q/s offered:

{t_mixed_rate}

Denied only, {hit_rate} q/s offered:

{t_denied_rate}

Denied against cached allowed names in one warm dnsd process, back to back ({pair_s} s each at
{hit_rate} q/s: hit, denied, hit, denied); the goal "denied queries cost no more than cache hits"
is judged on these pairs, which the machine's drift cannot separate:

{t_pairs}

Cache miss ({miss_names} distinct names), saturation (nsd's own CPU per query in parentheses: it
shares the cores):

{t_miss_sat}

Cache miss, {miss_rate} q/s offered:

{t_miss_rate}

Start-up and memory ("spawn floor": the same fork+exec of /bin/true until it exits, measured
before each start; the first-answer figure cannot be lower):

{t_startup}

### dnsd in enforce mode: installer counters and ACK wait

{enforce}

### Latency against offered load

![DNS latency against offered load]({plot})

p50 / p99 latency in ms (achieved q/s; lost queries), medians over rounds.

Cache hit:

{sweep_hit}

Cache miss:

{sweep_miss}
"""


BEGIN = "<!-- dns-bench:begin (generated by bench/dns.sh; edits inside are overwritten) -->"
END = "<!-- dns-bench:end -->"


def write_markdown(path: Path, section: str) -> None:
    block = f"{BEGIN}\n{section.rstrip()}\n{END}\n"
    if path.exists():
        text = path.read_text()
        if BEGIN in text and END in text:
            pre, rest = text.split(BEGIN, 1)
            post = rest.split(END, 1)[1].lstrip("\n")
            path.write_text(pre + block + ("\n" + post if post else ""))
            return
        path.write_text(text.rstrip() + "\n\n" + block)
        return
    path.write_text("# Benchmarks\n\nHow egress compares with the tools it replaces, measured "
                    "side by side on one machine. See ../shared/TESTING.md, \"Measuring "
                    "performance honestly\".\n\n" + block)


def plot(report: Report, work: Path, png: Path) -> None:
    P = report.plan
    panels = [("hit", P.hit_rates, "cache hit (200 names)"),
              ("miss", P.miss_rates, f"cache miss ({MISS_NAMES} distinct names)")]
    plots = []
    for wl, rates, title in panels:
        series = []
        for c in (c for c in report.cs if not c.floor):
            rows = []
            for rate in rates:
                rs = report.sel(c.key, wl, "rate", rate)
                p50, p99 = median(r.p50_ms for r in rs), median(r.p99_ms for r in rs)
                if p50 is not None and p99 is not None:
                    rows.append(f"{rate / 1000:g} {p50:.4f} {p99:.4f}")
            if rows:
                f = work / f"plot-{wl}-{c.key}.dat"
                f.write_text("\n".join(rows) + "\n")
                series.append((c, f))
        plots.append((title, series))
    colors = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02"]
    ci = {c.key: colors[i % len(colors)] for i, c in enumerate(report.cs)}
    gp = [f"set terminal pngcairo size 1300,640 font 'sans,10'" if _has_cairo() else
          "set terminal png size 1300,640",
          f"set output '{png}'",
          "set multiplot layout 1,2 title 'DNS latency against offered load "
          "(solid p50, dashed p99; dnsperf, lab on one 2-core machine)'",
          "set logscale y", "set grid", "set key below horizontal maxrows 3",
          "set xlabel 'offered load (thousand queries/s)'", "set ylabel 'latency (ms)'"]
    for title, series in plots:
        gp.append(f"set title '{title}'")
        parts = []
        for c, f in series:
            parts.append(f"'{f}' using 1:2 with linespoints lw 2 pt 7 lc rgb '{ci[c.key]}' "
                         f"title '{c.label} p50'")
            parts.append(f"'{f}' using 1:3 with linespoints lw 1 dt 2 pt 6 lc rgb '{ci[c.key]}' "
                         f"title '{c.label} p99'")
        gp.append("plot " + ", \\\n  ".join(parts) if parts else "plot 0 notitle")
    gp.append("unset multiplot")
    script = work / "latency.gp"
    script.write_text("\n".join(gp) + "\n")
    r = subprocess.run(["gnuplot", str(script)], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"gnuplot failed: {r.stderr}")


def _has_cairo() -> bool:
    r = subprocess.run(["gnuplot", "-e", "set terminal"], capture_output=True, text=True)
    return "pngcairo" in (r.stdout + r.stderr)


# --- main -----------------------------------------------------------------------------------

def enforce_available(lab: "L.Lab", dnsd: str, allowlist: Path) -> "tuple[bool, str]":
    """Starts `dnsd --nft-mode enforce` once; available when it answers."""
    lab.run_in_session(["nft", "delete", "table", "inet", "egress"])
    argv = [dnsd, "--listen", "127.0.0.1:53", "--upstream", L.UPSTREAM_V4, "--allowlist",
            str(allowlist), "--nft-mode", "enforce"]
    p = lab.popen_in_session(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        d = L.Dnsd(p, argv, Path(os.devnull), Path(os.devnull))
        try:
            lab.wait_dnsd(d, ["127.0.0.1:53"], timeout=5)
            r = lab.query(hit_name(1), "A", timeout=2)
            ok = r.rcode() == 0 and bool(r.answer)
            return ok, ("dnsd `--nft-mode enforce` measured (it owns the table)." if ok else
                        "dnsd `--nft-mode enforce` started but did not answer an allowed name.")
        except RuntimeError:
            p.kill()
            err = p.stderr.read().decode(errors="replace").strip().splitlines()
            why = err[-1] if err else f"exit {p.returncode}"
            return False, (f"dnsd `--nft-mode enforce` is not measured: it does not start in this "
                           f"build ({why}).")
    finally:
        if p.poll() is None:
            p.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(5)
        if p.poll() is None:
            p.kill()
            p.wait()
        with contextlib.suppress(ValueError):
            lab._procs.remove(p)
        lab.run_in_session(["nft", "delete", "table", "inet", "egress"])


def emit(args, report: "Report", work: Path) -> None:
    png = Path(args.plot)
    plot(report, work, png)
    md = Path(args.markdown)
    write_markdown(md, report.markdown(os.path.relpath(png, md.parent)))
    log(f"wrote {md} and {png}")
    print("\nGoals:")
    for goal, value, verdict in report.goals():
        print(f"  {verdict.strip('*'):8s} {goal}: {value}")


def report_from(args) -> int:
    import types
    raw = json.loads(Path(args.report_from).read_text())
    plan = Plan(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw["plan"].items()})
    work = Path(tempfile.mkdtemp(prefix="egress-dns-report-"))
    try:
        allowlist = work / "allowlist.yaml"
        allowlist.write_text(f'domains:\n  - "*.{ZONE}"\n')
        contenders = [c for c in make_contenders(args.dnsd, allowlist, raw["enforce"], "dns_floor")
                      if c.key in raw["contenders"]]
        bench = types.SimpleNamespace(results=[Result(**r) for r in raw["results"]],
                                      acks=raw["acks"], pairs=raw["pairs"], work=work)
        for c in contenders:
            (work / c.key).mkdir(exist_ok=True)
        emit(args, Report(bench, contenders, plan, raw["info"], raw["elapsed"], raw["note"]), work)
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dnsd", default=os.environ.get("DNSD", str(REPO / "build-bench/dnsd/dnsd")))
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--floor", default="",
                    help="bench/dns_floor.c built: measure the floor contenders with it")
    ap.add_argument("--quick", action="store_true",
                    help="short runs and one round, to check the bench itself (figures are noisy)")
    ap.add_argument("--only", default="", help="comma-separated contender keys")
    ap.add_argument("--no-enforce", action="store_true", help="skip dnsd --nft-mode enforce")
    ap.add_argument("--markdown", default=str(REPO / "docs/BENCHMARKS.md"))
    ap.add_argument("--plot", default=str(REPO / "docs/bench-dns-latency.png"))
    ap.add_argument("--json", default="", help="also write the raw results here")
    ap.add_argument("--report-from", default="", metavar="JSON",
                    help="write the report and plot from a --json file of an earlier run, "
                         "measuring nothing")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()

    plan = Plan(rounds=args.rounds)
    if args.quick:
        plan = Plan(rounds=1, sat_seconds=3, rate_seconds=2, hit_rates=(10000, 40000),
                    miss_rates=(2000, 20000), cpu_miss_seconds=3, pair_seconds=2)
    args.plan = plan
    if args.report_from:
        return report_from(args)

    problem = L.privilege_problem()
    if problem:
        print(f"dns_bench: {problem}", file=sys.stderr)
        return 2
    for tool in ("dnsperf", "gnuplot", "/usr/sbin/dnsmasq", "/usr/sbin/unbound", "nft"):
        if shutil.which(tool) is None:
            print(f"dns_bench: {tool} missing (bench/dns.sh installs it)", file=sys.stderr)
            return 2
    if args.floor and not os.access(args.floor, os.X_OK):
        print(f"dns_bench: {args.floor} is not executable", file=sys.stderr)
        return 2
    if not os.access(args.dnsd, os.X_OK):
        print(f"dns_bench: dnsd not found at {args.dnsd} (bench/dns.sh builds it)",
              file=sys.stderr)
        return 2

    work = Path(tempfile.mkdtemp(prefix="egress-dns-bench-"))
    t_start = time.monotonic()
    try:
        log(f"work directory {work}; writing the zone ({MISS_NAMES + HIT_NAMES} names)")
        with L.Lab(extra_zones={ZONE: bench_zone_body()}, dnsd_path=args.dnsd) as lab:
            allowlist = lab.write_allowlist([f"*.{ZONE}"], path=work / "allowlist.yaml")
            if args.no_enforce:
                enforce, note = False, "dnsd `--nft-mode enforce` skipped (--no-enforce)."
            else:
                enforce, note = enforce_available(lab, args.dnsd, allowlist)
            log(note)
            contenders = make_contenders(args.dnsd, allowlist, enforce, args.floor)
            if args.only:
                keep = set(args.only.split(","))
                contenders = [c for c in contenders if c.key in keep]
            bench = Bench(args, lab, work)
            log(f"contenders: {', '.join(c.label for c in contenders)}; "
                f"estimated {estimate_seconds(plan, contenders) / 60:.1f} min")
            enforce_c = next((c for c in contenders if c.key == "dnsd-enforce"), None)
            for rnd in range(1, plan.rounds + 1):
                for wl, kind, rate, secs, cs in schedule(plan, contenders):
                    for c in cs:
                        bench.measure(rnd, c, wl, kind, rate, secs)
                for c in contenders:
                    if c.key.startswith("dnsd"):
                        bench.pairs.append(bench.denied_vs_hit(rnd, c))
                if enforce_c is not None:
                    for rate in ack_rates(bench, plan, rnd):
                        secs = min(plan.rate_seconds, 0.95 * MISS_NAMES / rate)
                        a = bench.ack_wait(rnd, enforce_c, rate, secs)
                        if a is not None:
                            a.update(round=rnd, rate=rate)
                            bench.acks.append(a)
            elapsed = time.monotonic() - t_start
            report = Report(bench, contenders, plan, machine_info(), elapsed, note)
            if args.json:
                Path(args.json).write_text(json.dumps({
                    "plan": plan.__dict__, "info": report.info, "elapsed": elapsed, "note": note,
                    "enforce": enforce, "contenders": [c.key for c in contenders],
                    "results": [r.__dict__ for r in bench.results], "acks": bench.acks,
                    "pairs": bench.pairs}, indent=1))
            emit(args, report, work)
        return 0
    except KeyboardInterrupt:
        print("\ndns_bench: interrupted; lab torn down", file=sys.stderr)
        return 130
    finally:
        if args.keep:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
