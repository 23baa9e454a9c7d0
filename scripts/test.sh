#!/usr/bin/env bash
# The README's test command: installs what is missing, builds, and runs every test layer
# (unit, fuzz corpora, integration in network namespaces). Integration tests need root; where
# CI=true they fail rather than skip without it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
ctest --test-dir build --output-on-failure --timeout 900 "$@"
