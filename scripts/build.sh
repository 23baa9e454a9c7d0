#!/usr/bin/env bash
# Configures and builds egress into ./build (Release with debug info, warnings as errors).
# Arguments name targets to build (e.g. `scripts/build.sh dnsd`); none builds everything.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEGRESS_WERROR=ON >/dev/null
if [ $# -gt 0 ]; then
  cmake --build build -j"$(nproc)" --target "$@"
else
  cmake --build build -j"$(nproc)"
fi
