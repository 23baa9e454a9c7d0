#!/usr/bin/env bash
# Installs every build and test dependency of egress on Debian 12.
# Idempotent: when everything is present it prints nothing and does not touch apt.
# --build-only: the toolchain and libraries only (what docker/Dockerfile.* build stages need).
set -euo pipefail

packages=(
  # toolchain
  build-essential cmake pkg-config ninja-build
  # libraries (see ../shared design: "Libraries")
  libboost1.81-dev libc-ares-dev libyaml-cpp-dev libspdlog-dev libcli11-dev
  libidn2-dev doctest-dev libnftnl-dev libmnl-dev libseccomp-dev
)
[ "${1:-}" = "--build-only" ] || packages+=(
  # fuzzing with libFuzzer (scripts/fuzz.sh)
  clang-14 libclang-rt-14-dev
  # the integration lab: namespaces, an authoritative server, real clients
  iproute2 nftables nsd dnsutils knot-dnsutils python3 python3-dnspython procps
  # jail tests: real programs under the jail (a Go HTTP client is built by the test)
  curl git golang-go
  # tests of the deploy files (tests/deploy): YAML parsing, shell script lint
  python3-yaml shellcheck
)

missing=()
for p in "${packages[@]}"; do
  # dpkg-query prints "install ok installed" only for a fully installed package.
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages: ${missing[*]}; run this script as root" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
# Debian starts nsd as a service on install where an init system runs; the lab
# starts its own instances, so a system one must not hold port 53.
if command -v service >/dev/null 2>&1; then service nsd stop >/dev/null 2>&1 || true; fi
