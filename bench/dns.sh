#!/usr/bin/env bash
# DNS benchmark: dnsd vs dnsmasq and unbound in the egress lab; writes the DNS section of
# docs/BENCHMARKS.md and docs/bench-dns-latency.png. About 12 minutes; needs root.
#
#   bench/dns.sh [--rounds N] [--quick] [--only dnsd,unbound] [--no-enforce] [--keep]
#
# Installs what is missing (the project's dependencies, then dnsperf, dnsmasq, unbound, gnuplot
# and perf, for dnsd's ACK-wait figure, from Debian), builds dnsd into $BUILD_DIR (default
# ./build-bench, RelWithDebInfo) unless $DNSD names a binary, and the floor contenders'
# bench/dns_floor.c there in any case, then runs bench/dns_bench.py.
# Not a test: ctest does not run it. `--report-from FILE.json` rewrites the report of an
# earlier `--json FILE.json` run without measuring.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "bench/dns.sh: needs root (network namespaces, nftables)" >&2
  exit 2
fi

scripts/install-deps.sh

# dnsmasq-base is the daemon without Debian's service; unbound's package ships a service (and
# unbound-resolvconf, which would point the host's resolv.conf at it): keep both from starting
# while apt installs, and stop them if an init system started them anyway. The bench runs its own
# instances inside the lab's namespace.
bench_packages=(dnsperf dnsmasq-base unbound gnuplot-nox linux-perf)
missing=()
for p in "${bench_packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bench/dns.sh: installing ${missing[*]}" >&2
  policy=/usr/sbin/policy-rc.d
  added_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    added_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  status=0
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; } ||
    status=$?
  [ "$added_policy" -eq 1 ] && rm -f "$policy"
  [ "$status" -eq 0 ] || exit "$status"
  if [ -d /run/systemd/system ]; then
    systemctl disable --now unbound.service unbound-resolvconf.service >/dev/null 2>&1 || true
  elif command -v service >/dev/null 2>&1; then
    service unbound stop >/dev/null 2>&1 || true
  fi
fi

if [ -z "${DNSD:-}" ]; then
  build="${BUILD_DIR:-build-bench}"
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  ninja -C "$build" dnsd >/dev/null
  DNSD="$(cd "$build" && pwd)/dnsd/dnsd"
fi

# The floor contenders (bench/dns_floor.c), built into $BUILD_DIR even when $DNSD names dnsd.
floor_dir="${BUILD_DIR:-build-bench}"
mkdir -p "$floor_dir"
floor="$(cd "$floor_dir" && pwd)/dns_floor"
cc -O2 -Wall -Wextra -o "$floor" bench/dns_floor.c

exec /usr/bin/python3 bench/dns_bench.py --dnsd "$DNSD" --floor "$floor" "$@"
