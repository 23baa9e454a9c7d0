#!/usr/bin/env bash
# jail benchmark: `jail -- /bin/true` against bare, `unshare -m`, bwrap and firejail, and the
# per-syscall cost of the filter and the connect supervisor. Writes the jail section of
# docs/BENCHMARKS.md. A few minutes; needs root. Not a test: ctest does not run it.
#
#   bench/jail.sh [--runs N] [--rounds N] [--seed N]
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "bench/jail.sh: needs root (network namespace, mount namespace)" >&2
  exit 2
fi

scripts/install-deps.sh

# The contenders from Debian. When the archive cannot be reached the bench still runs and the
# report says which contenders were not measured.
missing=()
for p in bubblewrap firejail hyperfine; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bench/jail.sh: installing ${missing[*]}" >&2
  if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" >/dev/null; }; then
    echo "bench/jail.sh: could not install ${missing[*]}; measuring without them" >&2
  fi
fi

build="${BUILD_DIR:-build-bench}"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
ninja -C "$build" jail >/dev/null
micro="$build/jail_micro"
cc -O2 -Wall -Wextra -o "$micro" bench/jail_micro.c -lpthread

exec /usr/bin/python3 bench/jail_bench.py --jail "$(cd "$build" && pwd)/jail/jail" \
  --micro "$(cd "$build" && pwd)/jail_micro" "$@"
