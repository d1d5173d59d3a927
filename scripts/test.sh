#!/usr/bin/env bash
# The README's test command: set up, configure, build, run every test with ctest.
# Usage: scripts/test.sh [extra ctest args]
#   SEAM_BUILD_DIR (default build), SEAM_JOBS (default: cores), SEAM_SANITIZE=ON.
set -euo pipefail
case "${1:-}" in -h | --help) sed -n '2,/^set /s/^# \{0,1\}//p' "$0"; exit 0 ;; esac
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

bash scripts/setup.sh
. scripts/blas-env.sh

build=${SEAM_BUILD_DIR:-build}
jobs=${SEAM_JOBS:-$(nproc)}
werror=OFF
[ "${CI:-}" = "true" ] && werror=ON

cmake -S . -B "$build" -G Ninja \
  -DCMAKE_BUILD_TYPE="${SEAM_BUILD_TYPE:-RelWithDebInfo}" \
  -DSEAM_WERROR="${SEAM_WERROR:-$werror}" \
  -DSEAM_SANITIZE="${SEAM_SANITIZE:-OFF}" >/dev/null
cmake --build "$build" -j "$jobs"
cd "$build"
ctest --output-on-failure -j "$jobs" "$@"
