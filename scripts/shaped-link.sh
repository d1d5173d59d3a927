#!/usr/bin/env bash
# Runs two programs across a real kernel-shaped link: a fresh network namespace
# whose loopback has MTU 1500 and a tc tbf qdisc (tbf drops packets larger than
# its burst, hence the MTU). The first program runs in the background (e.g. a
# server), the second in the foreground; the script exits with the second's
# status and always removes the namespace. Needs root (ip netns, tc).
#
# Usage: scripts/shaped-link.sh [--rate 10mbit] [--burst 32kbit] [--wait 1] -- CMD1... -- CMD2...
# Example:
#   scripts/shaped-link.sh --rate 10mbit -- build-bench/bench/seam_transport_bench serve 7555 \
#       -- build-bench/bench/seam_transport_bench send 7555 4
set -euo pipefail
rate=10mbit burst=32kbit wait=1
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
  case "$1" in
    --rate) rate=$2; shift 2 ;;
    --burst) burst=$2; shift 2 ;;
    --wait) wait=$2; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "shaped-link: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ "${1:-}" = "--" ] || { echo "shaped-link: expected -- CMD1... -- CMD2..." >&2; exit 2; }
shift
first=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do first+=("$1"); shift; done
[ "${1:-}" = "--" ] && [ ${#first[@]} -gt 0 ] || { echo "shaped-link: need two commands separated by --" >&2; exit 2; }
shift
[ $# -gt 0 ] || { echo "shaped-link: second command is empty" >&2; exit 2; }

ns=seam-link-$$
cleanup() {
  [ -n "${bg:-}" ] && kill "$bg" 2>/dev/null && wait "$bg" 2>/dev/null
  ip netns del "$ns" 2>/dev/null || true
}
trap cleanup EXIT
ip netns add "$ns"
ip netns exec "$ns" ip link set lo mtu 1500 up
ip netns exec "$ns" tc qdisc add dev lo root tbf rate "$rate" burst "$burst" latency 400ms
echo "shaped-link: namespace $ns, loopback tbf rate $rate burst $burst, MTU 1500" >&2
ip netns exec "$ns" "${first[@]}" &
bg=$!
sleep "$wait"
ip netns exec "$ns" "$@"
