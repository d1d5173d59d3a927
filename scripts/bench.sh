#!/usr/bin/env bash
# Builds (Release) and runs Seam's benchmark programs; prints their figures.
# Usage: scripts/bench.sh [all|codec|transport|c3keys|session]   (default: all)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh
. scripts/blas-env.sh
build=${SEAM_BENCH_DIR:-build-bench}
what=${1:-all}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSEAM_BUILD_TESTS=OFF >/dev/null
case "$what" in
  all) targets=(seam_codec_bench seam_transport_bench seam_c3_keys_bench seam_session_bench) ;;
  codec) targets=(seam_codec_bench) ;;
  transport) targets=(seam_transport_bench) ;;
  c3keys) targets=(seam_c3_keys_bench) ;;
  session) targets=(seam_session_bench) ;;
  *) echo "bench: unknown benchmark '$what' (all, codec, transport, c3keys, session)" >&2; exit 2 ;;
esac
cmake --build "$build" -j "$(nproc)" --target "${targets[@]}"
for t in "${targets[@]}"; do
  "$build/bench/$t"
done
