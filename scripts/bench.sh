#!/usr/bin/env bash
# Builds (Release) and runs Seam's benchmark programs; prints their figures.
# Usage: scripts/bench.sh [codec]   (default: all)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh
build=${SEAM_BENCH_DIR:-build-bench}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSEAM_BUILD_TESTS=OFF >/dev/null
cmake --build "$build" -j "$(nproc)" --target seam_codec_bench
what=${1:-all}
if [ "$what" = all ] || [ "$what" = codec ]; then
  "$build/bench/seam_codec_bench"
fi
