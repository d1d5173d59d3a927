#!/usr/bin/env bash
# The demo, CI-sized: seam-cloud and two seam-edge clients over mutual TLS on
# 127.0.0.1, one shared job: a small ViT on Fashion-MNIST classes 5-9, SFT rank 8
# at the split, 4-bit activations up, 8-bit gradients down. Each client downloads
# the front half when it joins and trains a few dozen steps on its own half of the
# data (seam-edge --data-part). Checks, from the
# clients' JSONL logs:
#   - the loss falls (mean of the last 5 steps below the mean of the first 5);
#   - every step's bytes are what the chain's spec implies: the activations are
#     [B, 17, r] at 4 bits and the gradients [B, 17, r] at 8 bits, so a frame is
#     at least that many bytes, and at most 1% + 512 bytes more (the frame
#     header and metadata, the codec message's own header with its spec and
#     range, the bit-packed labels: about 250 bytes here);
#     against the fp32 boundary of the unsplit model ([B, 17, width] fp32) that is
#     a reduction of (width/r)*(32/bits): x64 up, x32 down at width 64, r 8.
# Usage: tests/demo/demo_test.sh BUILD_DIR
set -euo pipefail
build=${1:?usage: demo_test.sh BUILD_DIR}
src=$(cd "$(dirname "$0")/../.." && pwd)
root=$src
. "$src/scripts/lib/jobs.sh"
work=$(mktemp -d "${TMPDIR:-/tmp}/seam_demo_test.XXXXXX")
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAILED: $*" >&2; exit 1; }
export OMP_NUM_THREADS=1
width=64 rank=8 up_bits=4 down_bits=8 batch=64 tokens=17 steps=20

bash "$src/scripts/gen-certs.sh" --client edge-2 "$work/pki" >/dev/null
mkdir -p "$work/jobs"
cat > "$work/jobs/demo.job" <<JOB
model = vit
task = fashion-mnist:5-9
width = $width
depth = 2
heads = 4
mlp-ratio = 2
patch = 7
split = 2
sft-rank = $rank
up-codec = quant:bits=$up_bits
down-codec = quant:bits=$down_bits
lr = 0.002
warmup = 5
steps = $((2 * steps))
seed = 1
policy = shared
allow = CN=edge-1
allow = CN=edge-2
JOB
"$build/tools/seam-cloud" prepare "$work/jobs/demo.job" --state-dir "$work/state" >/dev/null
start_cloud "$build/tools/seam-cloud" "$work/server.out" --cert "$work/pki/server.pem" --key "$work/pki/server.key" \
  --client-ca "$work/pki/ca.pem" --jobs-dir "$work/jobs" --state-dir "$work/state" >/dev/null || fail "no server"
pids+=("$cloud_pid")
port=$cloud_port

certs=(client edge-2)
# Each client on its own half of the data.
edge=()
for i in 0 1; do
  data=(--data-part "$((i + 1))/2")
  "$build/tools/seam-edge" --server "127.0.0.1:$port" --ca "$work/pki/ca.pem" --cert "$work/pki/${certs[$i]}.pem" \
    --key "$work/pki/${certs[$i]}.key" --job demo --state-dir "$work/edge-$i" \
    --client-id "edge-$((i + 1))" --task fashion-mnist:5-9 "${data[@]}" --steps "$steps" \
    --batch "$batch" --threads 1 --eval-limit -1 --progress none --metrics-log "$work/m$i.jsonl" >"$work/edge-$i.out" 2>&1 &
  edge+=($!)
  pids+=($!)
done
for i in 0 1; do
  wait "${edge[$i]}" || fail "edge-$((i + 1)) exited with $?: $(cat "$work/edge-$i.out")"
done

for i in 0 1; do
  log=$work/m$i.jsonl
  n=$(wc -l < "$log")
  [ "$n" -eq "$steps" ] || fail "edge-$((i + 1)) logged $n steps, expected $steps"
  # The loss falls.
  jq -s -e '(.[:5] | map(.loss) | add / 5) as $a | (.[-5:] | map(.loss) | add / 5) as $b | $b < $a' "$log" >/dev/null ||
    fail "edge-$((i + 1)): the loss did not fall: $(jq -s -c 'map(.loss)' "$log")"
  # Every step's bytes against the spec: at least the packed bits, at most 1% + 512 bytes more.
  jq -s -e --argjson up $((batch * tokens * rank * up_bits / 8)) --argjson down $((batch * tokens * rank * down_bits / 8)) \
    'all(.[]; .bytes_up >= $up and .bytes_up <= $up * 1.01 + 512 and .bytes_down >= $down and .bytes_down <= $down * 1.01 + 512)' \
    "$log" >/dev/null ||
    fail "edge-$((i + 1)): bytes per step outside the spec's [packed, packed + 1% + 512]: $(jq -s -c 'map([.bytes_up, .bytes_down]) | unique' "$log")"
  # The reduction against the unsplit model's fp32 boundary, both directions.
  fp32=$((batch * tokens * width * 4))
  jq -s -r --argjson fp32 "$fp32" \
    '"edge-'$((i + 1))': loss \(.[0].loss) -> \(.[-1].loss); reduction against fp32 up x\($fp32 * length / (map(.bytes_up) | add) * 10 | round / 10) (spec x'$((width / rank * 32 / up_bits))'), down x\($fp32 * length / (map(.bytes_down) | add) * 10 | round / 10) (spec x'$((width / rank * 32 / down_bits))')"' "$log"
done
echo "PASSED"
