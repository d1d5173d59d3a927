#!/usr/bin/env bash
# Builds the decode-gate fuzzer with clang (libFuzzer + ASan + UBSan) and runs it.
# Usage: scripts/fuzz.sh [seconds]   (default 600)
set -euo pipefail
case "${1:-}" in -h | --help) sed -n '2,/^set /s/^# \{0,1\}//p' "$0"; exit 0 ;; esac
[[ "${1:-600}" =~ ^[1-9][0-9]*$ ]] || { echo "fuzz: seconds must be a positive integer, got '$1'" >&2; exit 2; }
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh
secs=${1:-600}
build=${SEAM_FUZZ_DIR:-build-fuzz}
CC=clang CXX=clang++ cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSEAM_FUZZ=ON \
  -DSEAM_PCH=OFF >/dev/null
cmake --build "$build" --target seam_fuzz_decode_gate
mkdir -p "$build/fuzz-corpus"
cp -n tests/transport/fuzz/seeds/* "$build/fuzz-corpus/"  # hand-made frames that reach the packed Forward fields
"$build/tests/transport/fuzz/seam_fuzz_decode_gate" -max_total_time="$secs" -max_len=4096 \
  -print_final_stats=1 "$build/fuzz-corpus"
