#!/usr/bin/env bash
# Installs every Debian package Seam's build, tests and demos need.
# Quiet and offline when everything is already installed (dpkg-query only).
set -euo pipefail
case "${1:-}" in -h | --help) sed -n '2,/^set /s/^# \{0,1\}//p' "$0"; exit 0 ;; esac
[ $# -eq 0 ] || { echo "setup: takes no arguments (see --help)" >&2; exit 2; }

PACKAGES=(
  # toolchain
  g++ cmake ninja-build ccache lld pkg-config git
  # libraries
  libtorch-dev libopenblas0-openmp libasio-dev libcereal-dev libssl-dev
  libboost-program-options-dev libgtest-dev libzstd-dev zlib1g-dev
  # cloud service: /metrics over HTTP, structured logs
  libcpp-httplib-dev libspdlog-dev
  # fuzzing (libFuzzer needs clang's runtime)
  clang libclang-rt-14-dev
  # python side: TorchScript models and reference results in tests
  python3 python3-torch python3-numpy
  # the Python edge module (pybind11 against Debian's python3-torch)
  python3-dev pybind11-dev
  # JSON lines (seam-edge's metrics log); `script` (util-linux) for the progress test
  nlohmann-json3-dev util-linux
  # real data
  dataset-fashion-mnist fortunes fortunes-min fortunes-de fortunes-es fortunes-it
  # certificates, peer tool, link emulation
  openssl iproute2
  # plots in docs (scripts/ptq_results.sh, scripts/plots.sh reads JSONL metrics with jq)
  gnuplot-nox jq
)

missing=()
for p in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [ "$status" = "installed" ] || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "seam setup: installing ${#missing[@]} package(s): ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "seam setup: done"
