#!/usr/bin/env bash
# Longer fuzzing than the corpus replay that ctest runs (../shared/TESTING.md, layer 4).
#
#   scripts/fuzz.sh [TARGET|all] [SECONDS]      default: every tests/fuzz/fuzz_*.cpp, 60 s each
#
# Builds the targets with clang-14, libFuzzer, ASan and UBSan in their own build directory
# ($FUZZ_BUILD_DIR, default build-fuzz/). All code is instrumented for coverage, not only the
# target's file, or libFuzzer would be blind inside the libraries. Each target then fuzzes from
# its corpus under tests/fuzz/corpus/TARGET; afterwards the inputs that reach new coverage are
# merged into that corpus (commit them). A crash stops the run: the input is saved under
# $FUZZ_BUILD_DIR/artifacts/TARGET/ and the script exits 1.
# Environment: FUZZ_MAX_LEN (default 4096 octets), FUZZ_ARGS (more libFuzzer flags).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${FUZZ_BUILD_DIR:-$repo/build-fuzz}
target=${1:-all}
seconds=${2:-60}
max_len=${FUZZ_MAX_LEN:-4096}

if [[ ! $seconds =~ ^[0-9]+$ || $seconds -eq 0 ]]; then
  echo "fuzz.sh: SECONDS must be a positive whole number, not '$seconds'" >&2
  exit 2
fi
for tool in clang-14 clang++-14 cmake ninja; do
  command -v "$tool" >/dev/null || { echo "fuzz.sh: $tool not found (scripts/install-deps.sh)" >&2; exit 2; }
done

all=()
for src in "$repo"/tests/fuzz/fuzz_*.cpp; do
  all+=("$(basename "$src" .cpp)")
done
if [[ $target == all ]]; then
  targets=("${all[@]}")
elif [[ -f $repo/tests/fuzz/$target.cpp ]]; then
  targets=("$target")
else
  echo "fuzz.sh: no target '$target'; targets: ${all[*]}" >&2
  exit 2
fi

# -fno-sanitize=function: clang-14 cannot emit UBSan's function check for coroutines (dnsd's
# Asio code): "Cannot represent a difference across sections", llvm/llvm-project#49689.
sanitizers="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize=function"
sanitizers+=" -fno-sanitize-recover=all -g"
cmake -S "$repo" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 \
  -DCMAKE_C_FLAGS="$sanitizers" -DCMAKE_CXX_FLAGS="$sanitizers" \
  -DEGRESS_LIBFUZZER=ON >/dev/null
ninja -C "$build" "${targets[@]}"

export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

for t in "${targets[@]}"; do
  corpus=$repo/tests/fuzz/corpus/$t
  artifacts=$build/artifacts/$t
  mkdir -p "$corpus" "$artifacts"
  # New inputs go to a scratch directory first; only those adding coverage reach the corpus.
  scratch=$(mktemp -d "$build/new-$t.XXXXXX")
  trap 'rm -rf "$scratch"' EXIT
  echo "fuzz.sh: $t for ${seconds}s from $(find "$corpus" -type f | wc -l) corpus inputs"
  # shellcheck disable=SC2086 # FUZZ_ARGS is a list of flags
  if ! "$build/tests/$t" -max_total_time="$seconds" -max_len="$max_len" \
      -artifact_prefix="$artifacts/" -print_final_stats=1 ${FUZZ_ARGS:-} \
      "$scratch" "$corpus"; then
    echo "fuzz.sh: $t failed; reproduce with: $build/tests/$t $artifacts/<file>" >&2
    exit 1
  fi
  before=$(find "$corpus" -type f | wc -l)
  "$build/tests/$t" -merge=1 -max_len="$max_len" "$corpus" "$scratch" 2>/dev/null
  after=$(find "$corpus" -type f | wc -l)
  echo "fuzz.sh: $t: $((after - before)) new inputs merged into tests/fuzz/corpus/$t"
  rm -rf "$scratch"
  trap - EXIT
done
