#!/usr/bin/env bash
# Step and epoch times of every job in configs/ through the real programs:
# seam-cloud serves the job and seam-edge trains it over mutual TLS, once on
# plain loopback and once across a kernel-shaped link (scripts/shaped-link.sh:
# a network namespace whose loopback has a tc tbf qdisc, 10 Mbit/s by default).
# Writes, per task,
#   out/results/link/TASK/SETTING-LINK.out     seam-edge's output
#   out/results/link/TASK/SETTING-LINK.jsonl   seam-edge's per-step metrics
#   out/results/TASK-link.tsv                  one row per setting and link
#   out/results/TASK-link.md                   the table for docs/results.md
# Step time is what seam-edge measures per step (edge compute + codec + link +
# cloud), averaged over the steps after the first --skip; the epoch time is that
# times the edge's steps per epoch (seam-edge prints it). The link column is the
# time a step's frames spent on the wire and in TLS; "bytes/rate" is the least
# that the step's bytes need at the shaped rate.
# Runs of one setting are sequential, so the figures depend on what else runs on
# the machine: compare rows of one run. The shaped runs need root (ip netns, tc);
# without it only the plain runs are made, and the script says so.
#
# Usage: scripts/link_times.sh [--steps 12] [--skip 2] [--rate 10mbit] [--only REGEX] [--threads 1] [vit|bert|all]
#   --steps    steps per run (default 12)
#   --skip     first steps left out of the means (default 2: warm-up)
#   --rate     tbf rate of the shaped link (default 10mbit; tc's units)
#   --only     only the settings whose name matches REGEX (e.g. '^(none|sft16.*)$');
#              the table keeps the rows of the other settings from an earlier run
#   --threads  LibTorch threads of seam-edge (default 1, as scripts/results.sh)
# SEAM_BUILD_DIR (default build) is where the programs are built.
set -euo pipefail
usage() { sed -n '2,/^set /s/^# \{0,1\}//p' "$0" | sed '$d'; }
steps=12 skip=2 rate=10mbit only="" threads=1 what=all
while [ $# -gt 0 ]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --steps | --skip | --rate | --only | --threads)
      [ $# -ge 2 ] || { echo "link_times.sh: $1 needs a value" >&2; exit 2; }
      case "$1" in
        --steps) steps=$2 ;; --skip) skip=$2 ;; --rate) rate=$2 ;; --only) only=$2 ;; --threads) threads=$2 ;;
      esac
      shift 2 ;;
    vit | bert | all) what=$1; shift ;;
    *) echo "link_times.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
for v in steps skip threads; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || { echo "link_times.sh: --$v must be a number (got '${!v}')" >&2; exit 2; }
done
[ "$steps" -gt "$skip" ] || { echo "link_times.sh: --steps ($steps) must be larger than --skip ($skip)" >&2; exit 2; }
[[ "$rate" =~ ^[0-9]+(\.[0-9]+)?(bit|kbit|mbit|gbit)$ ]] ||
  { echo "link_times.sh: --rate takes tc's units, e.g. 10mbit (got '$rate')" >&2; exit 2; }

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. scripts/lib/jobs.sh
setup_and_build seam-train seam-cloud seam-edge
bin=$(cd "$build/tools" && pwd)

links=(plain "$rate")
if [ "$(id -u)" != 0 ]; then
  echo "link_times.sh: not root, so no shaped link (ip netns and tc need root): plain runs only" >&2
  links=(plain)
fi
# bits per second of the rate, for the bytes/rate column
rate_bps=$(awk -v r="$rate" 'BEGIN { m = 1; if (r ~ /kbit$/) m = 1e3; else if (r ~ /mbit$/) m = 1e6; else if (r ~ /gbit$/) m = 1e9
                                     sub(/[a-z]+$/, "", r); print r * m }')

work=$(mktemp -d "${TMPDIR:-/tmp}/seam-link.XXXXXX")
cloud_pid=""
cleanup() {
  [ -z "$cloud_pid" ] || { kill -TERM "$cloud_pid" 2>/dev/null || true; wait "$cloud_pid" 2>/dev/null || true; }
  rm -rf "$work"
}
trap cleanup EXIT
bash scripts/gen-certs.sh "$work/pki" >/dev/null
pki=(--ca "$work/pki/ca.pem" --cert "$work/pki/client.pem" --key "$work/pki/client.key")
serve=(--cert "$work/pki/server.pem" --key "$work/pki/server.key" --client-ca "$work/pki/ca.pem"
       --jobs-dir "$work/jobs" --state-dir "$work/state" --bind-address 127.0.0.1)

# step_stats JSONL: mean ms/step, mean link ms, mean up and down bytes per step over steps >= skip.
step_stats() {
  jq -s -r --argjson skip "$skip" '
    map(select(.step >= $skip)) as $s | ($s | length) as $n
    | if $n == 0 then error("no steps after the warm-up") else . end
    | [ ($s | map(.edge_ms + .encode_ms + .link_ms + .cloud_ms + .decode_ms) | add / $n),
        ($s | map(.link_ms) | add / $n), ($s | map(.bytes_up) | add / $n), ($s | map(.bytes_down) | add / $n) ]
    | @tsv' "$1"
}

tasks=(vit bert)
[ "$what" = all ] || tasks=("$what")
for task in "${tasks[@]}"; do
  dir=out/results/link/$task
  mkdir -p "$dir"
  ensure_pretrained "$bin/seam-train" "configs/pretrain-$task.conf" "$threads"
  tsv=out/results/$task-link.tsv
  header=$(printf 'setting\tlink\tsteps_measured\tms_per_step\tlink_ms\tup_B\tdown_B\tsteps_per_epoch')
  if [ -n "$only" ] && [ -f "$tsv" ] && [ "$(head -n 1 "$tsv")" = "$header" ]; then
    # --only re-measures some settings: the other settings' rows stay.
    awk -F'\t' -v re="$only" 'NR == 1 || $1 !~ re' "$tsv" > "$tsv.tmp" && mv "$tsv.tmp" "$tsv"
  else
    echo "$header" > "$tsv"
  fi
  for job_file in configs/"$task"-*.job; do
    job=$(basename "$job_file" .job)
    setting=${job#"$task"-}
    [ -z "$only" ] || [[ "$setting" =~ $only ]] || continue
    for link in "${links[@]}"; do
      rm -rf "$work/jobs" "$work/state" "$work/edge"
      mkdir -p "$work/jobs" "$work/edge"
      job_for_cloud "$job_file" > "$work/jobs/$job.job"
      "$bin/seam-cloud" prepare "$work/jobs/$job.job" --state-dir "$work/state" > "$work/prepare.log"
      out=$dir/$setting-$link.out jsonl=$dir/$setting-$link.jsonl
      rm -f "$jsonl"
      edge=("$bin/seam-edge" "${pki[@]}" --job "$job" --state-dir "$work/edge" --config "configs/$task.edge"
            --steps "$steps" --eval-limit -1 --threads "$threads" --progress none --metrics-log "$jsonl")
      echo "== $task $setting, link $link: $steps steps"
      if [ "$link" = plain ]; then
        start_cloud "$bin/seam-cloud" "$work/cloud.log" "${serve[@]}" > /dev/null
        "${edge[@]}" --server "127.0.0.1:$cloud_port" > "$out" 2>&1 || { cat "$out" >&2; exit 1; }
        kill -TERM "$cloud_pid"; wait "$cloud_pid" || true; cloud_pid=""
      else
        # A fresh namespace has the port to itself; the edge waits until the cloud listens.
        bash scripts/shaped-link.sh --rate "$rate" --wait 0 -- "$bin/seam-cloud" serve "${serve[@]}" --port 7611 -- \
          bash -c 'for _ in $(seq 1200); do (exec 3<>/dev/tcp/127.0.0.1/7611) 2>/dev/null && exec "$@"; sleep 0.1; done
                   echo "link_times.sh: seam-cloud did not listen within 120 s" >&2; exit 1' _ \
          "${edge[@]}" --server 127.0.0.1:7611 > "$out" 2>&1 || { cat "$out" >&2; exit 1; }
      fi
      per_epoch=$(grep -o '([0-9]* steps per epoch)' "$out" | grep -o '[0-9]*')
      read -r ms link_ms up down < <(step_stats "$jsonl")
      printf '%s\t%s\t%s\t%.1f\t%.1f\t%.0f\t%.0f\t%s\n' "$setting" "$link" "$((steps - skip))" "$ms" "$link_ms" \
        "$up" "$down" "$per_epoch" >> "$tsv"
      tail -n 1 "$tsv"
    done
  done
  link_table "$tsv" "$rate" "$rate_bps" > "out/results/$task-link.md"
  cat "out/results/$task-link.md"
done
