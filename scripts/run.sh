#!/usr/bin/env bash
# The README's run command: builds egress, then starts the lab (an "internet" namespace with a
# real authoritative DNS server, a "session" namespace running dnsd with policies/allowlist.yaml)
# and tours what a user of a jailed session sees. --shell leaves you in a jailed shell inside
# the session namespace.
# Everything it creates is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "run.sh: needs root (it creates network namespaces); try: sudo $0 $*" >&2
  exit 1
fi
scripts/install-deps.sh
scripts/build.sh
export DNSD="$PWD/build/dnsd/dnsd" JAIL="$PWD/build/jail/jail"
exec /usr/bin/python3 scripts/egress_lab.py up --allowlist policies/allowlist.yaml "$@"
