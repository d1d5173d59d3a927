#!/usr/bin/env bash
# The README's run command: split fine-tuning between a cloud server and two
# edge clients on this machine, over mutual TLS on 127.0.0.1.
#   1. installs what is missing and builds seam-train, seam-cloud and seam-edge;
#   2. makes a throwaway CA, a server certificate and two client certificates
#      (CN=edge-1, CN=edge-2) in a temporary folder;
#   3. pre-trains the model on a different task when out/pretrained/ lacks it
#      (configs/pretrain-TASK.conf: ViT on Fashion-MNIST classes 0-4);
#   4. prepares the job configs/JOB.job (default vit-sft16-q4-zstd-q8-zstd:
#      fine-tune on classes 5-9 through an SFT rank-16 bottleneck, 4-bit
#      activations + zstd up, 8-bit gradients + zstd down) and starts seam-cloud;
#   5. runs two seam-edge clients, each on its own half of the training data
#      (seam-edge --data-part 1/2 and 2/2), showing their progress;
#   6. prints a summary (test accuracy of each client, measured through the
#      cloud; bytes each way; reduction against fp32; time), stops the server
#      and removes the temporary folder, also after Ctrl-C.
# Usage: scripts/demo.sh [--job JOB] [--steps N] [--keep]
#   --job    a job of configs/ (default vit-sft16-q4-zstd-q8-zstd; e.g. vit-none, bert-sft8)
#   --steps  steps per client (default: the job's steps, split between the two clients)
#   --keep   keep the temporary folder (logs, metrics, certificates) and print its path
# SEAM_BUILD_DIR (default build) is the build folder.
set -euo pipefail
usage() { sed -n '2,/^set /s/^# \{0,1\}//p' "$0" | sed '$d'; }
job=vit-sft16-q4-zstd-q8-zstd steps="" keep=""
while [ $# -gt 0 ]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --job | --steps)
      [ $# -ge 2 ] || { echo "demo.sh: $1 needs a value" >&2; exit 2; }
      if [ "$1" = --job ]; then job=$2; else steps=$2; fi
      shift 2 ;;
    --keep) keep=yes; shift ;;
    *) echo "demo.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
job_file=configs/$job.job
[ -f "$job_file" ] || { echo "demo.sh: no job '$job' in configs/ ($(cd configs && ls -- *.job | sed 's/\.job$//' | tr '\n' ' '))" >&2; exit 2; }
[ -z "$steps" ] || [[ "$steps" =~ ^[1-9][0-9]*$ ]] || { echo "demo.sh: --steps must be a positive number (got '$steps')" >&2; exit 2; }
. scripts/lib/jobs.sh
task=${job%%-*}
t_start=$(date +%s)
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "1/6 set-up and build (scripts/setup.sh, then cmake)"
bash scripts/setup.sh
. scripts/blas-env.sh
build=${SEAM_BUILD_DIR:-build}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE="${SEAM_BUILD_TYPE:-RelWithDebInfo}" >/dev/null
cmake --build "$build" --target seam-train seam-cloud seam-edge
bin=$build/tools
t_built=$(date +%s)

work=$(mktemp -d "${TMPDIR:-/tmp}/seam-demo.XXXXXX")
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ -n "$keep" ]; then echo "demo: kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'echo; echo "demo: interrupted; stopping the server and the clients" >&2; exit 130' INT TERM

say "2/6 throwaway certificates in $work/pki"
bash scripts/gen-certs.sh --client edge-2 "$work/pki" >/dev/null
echo "ca.pem, server.pem (127.0.0.1), client.pem (CN=edge-1), edge-2.pem (CN=edge-2), and their keys"

say "3/6 the pretrained model"
threads=$(nproc)
ensure_pretrained "$bin/seam-train" "configs/pretrain-$task.conf" "$threads"

say "4/6 the job $job: prepare and serve"
mkdir -p "$work/jobs"
# Both clients fine-tune ONE cloud half (policy shared).
{ job_for_cloud "$job_file" | grep -v -E '^[[:space:]]*policy[[:space:]]*='; echo "policy = shared"; } > "$work/jobs/$job.job"
"$bin/seam-cloud" prepare "$work/jobs/$job.job" --state-dir "$work/state"
grep -E '^(model|task|width|split|sft-rank|c3-groups|up-codec|down-codec|steps)[[:space:]]*=' "$work/jobs/$job.job" | tr '\n' ';' | sed 's/;/; /g'; echo
start_cloud "$bin/seam-cloud" "$work/server.log" --cert "$work/pki/server.pem" --key "$work/pki/server.key" \
  --client-ca "$work/pki/ca.pem" --jobs-dir "$work/jobs" --state-dir "$work/state" --bind-address 127.0.0.1 ||
  exit 1
pids+=("$cloud_pid")
port=$cloud_port

say "5/6 two edge clients"
total=$(job_value "$work/jobs/$job.job" steps)
[ -n "$steps" ] || steps=$(( (total + 1) / 2 ))
clients=(client edge-2)
# Each client trains on its own half of the training split.
edge_pids=()
for i in 0 1; do
  c=${clients[$i]}
  data=(--data-part "$((i + 1))/2")
  e=$work/edge-$((i + 1))  # seam-edge downloads the job's front half into $e/job
  mkdir -p "$e"
  "$bin/seam-edge" --server "127.0.0.1:$port" --ca "$work/pki/ca.pem" --cert "$work/pki/$c.pem" \
    --key "$work/pki/$c.key" --job "$job" --state-dir "$e" \
    --client-id "edge-$((i + 1))" --config "configs/$task.edge" "${data[@]}" --steps "$steps" \
    --threads 1 --progress lines --log-every 25 --metrics-log "$e/metrics.jsonl" \
    > >(tee "$e/out.log" | sed -u "s/^/[edge-$((i + 1))] /") 2>&1 &
  edge_pids+=($!)
  pids+=($!)
done
status=0
for p in "${edge_pids[@]}"; do wait "$p" || status=$?; done
if [ "$status" -eq 130 ]; then  # seam-edge's own exit after Ctrl-C
  echo "demo: interrupted; stopping the server and removing $work" >&2
  exit 130
fi
[ "$status" -eq 0 ] || { echo "demo: an edge client failed (status $status); server log:" >&2; cat "$work/server.log" >&2; exit 1; }
t_end=$(date +%s)

say "6/6 summary"
# fp32 reference: the boundary the unsplit model would send, [batch, tokens, width]
# each way. SFT sends rank r instead of width, C3 one row per R samples.
width=$(job_value "$work/jobs/$job.job" width)
rank=$(job_value "$work/jobs/$job.job" sft-rank)
groups=$(job_value "$work/jobs/$job.job" c3-groups)
scale=$(awk -v w="$width" -v r="${rank:-0}" -v g="${groups:-0}" 'BEGIN { f = 1; if (r > 0) f *= w / r; if (g > 0) f *= g; print f }')
# Each client's front half with the shared cloud half, over the whole test split
# (seam-edge evaluates through the cloud after training).
test=""
for i in 1 2; do
  a=$(sed -n 's/^final test accuracy \([0-9.]*\) (\([0-9]*\) test examples.*/\1 on \2 test examples/p' "$work/edge-$i/out.log" 2>/dev/null || true)
  test+="${test:+, }edge-$i ${a:-not measured}"
done
cat "$work"/edge-*/metrics.jsonl | jq -s -r --arg job "$job" --arg test "$test" --argjson scale "$scale" \
  --argjson built "$((t_built - t_start))" --argjson ran "$((t_end - t_built))" '
  def mb: . / 1e6 * 100 | round / 100;
  def x: . * 10 | round / 10;
  (map(.bytes_up) | add) as $up | (map(.bytes_down) | add) as $down |
  (map(.naive_up) | add) as $nup | (map(.naive_down) | add) as $ndown |
  (.[-50:] | map(.accuracy) | add / length) as $acc |
  # the up tensor has the shape of the gradient; the rest of naive_up is int64 ids, labels and mask
  ($ndown * $scale + ($nup - $ndown)) as $rup | ($ndown * $scale) as $rdown |
  "job \($job) (policy shared): \(length) steps over two clients",
  "accuracy on the last 50 training batches: \($acc * 1000 | round / 10)%; test accuracy: \($test)",
  "bytes up \($up | mb) MB, down \($down | mb) MB (whole frames, both clients)",
  "reduction against the fp32 boundary of the unsplit model: up x\($rup / $up | x), down x\($rdown / $down | x), both x\(($rup + $rdown) / ($up + $down) | x)",
  "time: set-up and build \($built) s; pre-training, job and training \($ran) s"'
