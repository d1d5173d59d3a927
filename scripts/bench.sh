#!/usr/bin/env bash
# Builds (Release) and runs Seam's benchmark programs; prints their figures.
# Usage: scripts/bench.sh [all|codec|transport|c3keys|session|slowlink]   (default: all)
#   slowlink: one 8 MiB frame over a kernel-shaped 1 Mbit/s link (scripts/shaped-link.sh,
#   about 70 s) with the default timeouts; it must complete without a reconnect.
#   Needs root for the network namespace; skipped with a note otherwise.
set -euo pipefail
case "${1:-}" in -h | --help) sed -n '2,/^set /s/^# \{0,1\}//p' "$0"; exit 0 ;; esac
case "${1:-all}" in
  all | codec | transport | c3keys | session | slowlink) ;;
  *) echo "bench: unknown benchmark '$1' (all, codec, transport, c3keys, session, slowlink)" >&2; exit 2 ;;
esac
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
  slowlink) targets=() ;;
  *) echo "bench: unknown benchmark '$what' (all, codec, transport, c3keys, session, slowlink)" >&2; exit 2 ;;
esac
[ "$what" = slowlink ] && build_targets=(seam_transport_bench) || build_targets=("${targets[@]}")
cmake --build "$build" -j "$(nproc)" --target "${build_targets[@]}"
for t in "${targets[@]}"; do
  "$build/bench/$t"
done

# The slow-link check: the kernel shapes, the default timeouts must hold.
slowlink() {
  local probe=seam-probe-$$
  if ! ip netns add "$probe" 2>/dev/null; then
    echo "slowlink: skipped (needs root for ip netns and tc)"
    return 0
  fi
  ip netns del "$probe"
  echo "slowlink: one 8 MiB frame over a 1 Mbit/s tc tbf link, default timeouts (about 70 s)"
  bash scripts/shaped-link.sh --rate 1mbit -- "$build/bench/seam_transport_bench" serve 7557 \
    -- "$build/bench/seam_transport_bench" frame 7557 8
}
if [ "$what" = slowlink ] || [ "$what" = all ]; then slowlink; fi
