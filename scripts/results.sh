#!/usr/bin/env bash
# Fine-tuning results for docs/results.md: every job file configs/TASK-*.job is
# trained with the same seed, data order and steps, and the script writes, per task,
#   out/results/TASK/SETTING-sSEED.log     the run's output
#   out/results/TASK/SETTING-sSEED.jsonl   per-step metrics (scripts/plots.sh reads them)
#   out/results/TASK.tsv                   one row per run: accuracy, bytes, reduction, time
#   out/results/TASK.md                    the same as a Markdown table
#   docs/results/TASK/*.png                the charts of scripts/plots.sh
# The model is pretrained first when out/pretrained/ lacks the job's checkpoint
# (configs/pretrain-TASK.conf, a different task: see configs/README.md).
#
# Runs go through `seam-train finetune` (both halves in one process, the real
# encoded frames of the network protocol between them, so the bytes are those
# of the wire). With --link, every setting then also goes through seam-cloud
# and seam-edge over TLS, plain and over a 10 Mbit/s tc-shaped link, for the
# step and epoch times (scripts/link_times.sh: out/results/TASK-link.md).
#
# Usage: scripts/results.sh [--seeds "0 1 2"] [--only REGEX] [--threads N] [--link] [vit|bert|all]
#   --seeds    seeds to run every setting with (default 0)
#   --only     run only the settings whose name matches REGEX (e.g. 'none|sft')
#   --threads  LibTorch threads per run (default 1: leaves a core to the rest)
#   --link     also the networked step times (needs root for the shaped link)
# SEAM_BUILD_DIR (default build) is where seam-train is built.
set -euo pipefail
usage() { sed -n '2,/^set /s/^# \{0,1\}//p' "$0" | sed '$d'; }
seeds="0" only="" threads=1 what=all link=0
while [ $# -gt 0 ]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --link) link=1; shift ;;
    --seeds | --only | --threads)
      [ $# -ge 2 ] || { echo "results.sh: $1 needs a value" >&2; exit 2; }
      case "$1" in --seeds) seeds=$2 ;; --only) only=$2 ;; --threads) threads=$2 ;; esac
      shift 2 ;;
    vit | bert | all) what=$1; shift ;;
    *) echo "results.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ "$threads" =~ ^[0-9]+$ ]] || { echo "results.sh: --threads must be a number (got '$threads')" >&2; exit 2; }
for s in $seeds; do
  [[ "$s" =~ ^[0-9]+$ ]] || { echo "results.sh: --seeds takes numbers (got '$s')" >&2; exit 2; }
done

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. scripts/lib/jobs.sh
setup_and_build seam-train
train="$build/tools/seam-train"

tasks=(vit bert)
[ "$what" = all ] || tasks=("$what")
for task in "${tasks[@]}"; do
  dir=out/results/$task
  mkdir -p "$dir" docs/results
  ensure_pretrained "$train" "configs/pretrain-$task.conf" "$threads"
  batch=$(job_value "configs/$task.edge" batch)
  tsv=out/results/$task.tsv
  printf 'setting\tseed\ttest_accuracy\tup_B_per_step\tdown_B_per_step\tsteps\tseconds\n' > "$tsv"
  for job in configs/"$task"-*.job; do
    setting=$(basename "$job" .job)
    setting=${setting#"$task"-}
    [ -z "$only" ] || [[ "$setting" =~ $only ]] || continue
    for seed in $seeds; do
      name=$setting-s$seed
      conf=$dir/$name.conf
      train_conf "$job" "$batch" > "$conf"
      echo "== $task $setting seed $seed"
      "$train" finetune --config "$conf" --seed "$seed" --threads "$threads" --log-every 1 > "$dir/$name.log"
      train_log_jsonl < "$dir/$name.log" > "$dir/$name.jsonl"
      summary_row "$setting" "$seed" "$dir/$name.log" >> "$tsv"
      tail -n 1 "$tsv"
    done
  done
  results_table "$tsv" > "out/results/$task.md"
  jsonls=()
  for f in "$dir"/*-s"${seeds%% *}".jsonl; do jsonls+=("$f"); done
  bash scripts/plots.sh --title "$task" "docs/results/$task" "${jsonls[@]}"
  cat "out/results/$task.md"
  if [ "$link" = 1 ]; then
    only_args=()
    [ -z "$only" ] || only_args=(--only "$only")
    bash scripts/link_times.sh --threads "$threads" "${only_args[@]}" "$task"
  fi
done
