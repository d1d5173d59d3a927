#!/usr/bin/env bash
# EdgePipe plans for docs/pipeline.md. Profiles ViT-Large (24 blocks of width
# 1024, patch 16) and ViT-Huge (32 blocks of width 1280, patch 14) at 224x224,
# micro-batch 4, one thread, on this machine: a depth-2 model of each shape is
# measured and its second transformer block stands for all of them (they are
# identical in shape). Then plans on homogeneous and heterogeneous fleets of 4,
# 8 and 16 devices (fleets below; speeds relative to this machine).
# Usage: scripts/pipeline_plans.sh SEAM_STAGE OUT
set -euo pipefail
stage=$1 out=$2
mkdir -p "$out/plans"
cd "$out/plans"
profile() {  # NAME WIDTH HEADS PATCH DEPTH
  local name=$1 width=$2 heads=$3 patch=$4 depth=$5
  [ -f "$name-2.txt" ] || "$stage" profile --model vit --width "$width" --heads "$heads" --patch "$patch" --depth 2 \
    --image-size 224 --channels 3 --classes 1000 --micro-batch 4 --repeats 3 --threads 1 --out "$name-2.txt" >&2
  # blocks: 0 embedding, 1 and 2 transformer blocks, 3 head -> embedding, DEPTH x block 2, head
  awk -v depth="$depth" '
    /^block / { n++; if (n == 1) { print; next } if (n == 2) next
                if (n == 3) { for (i = 1; i <= depth; i++) { $2 = i; print } next }
                $2 = depth + 1; print; next }
    { print }' "$name-2.txt" >"$name.txt"
}
profile vit-large 1024 16 16 24
profile vit-huge 1280 16 14 32
fleet() {  # FILE then lines
  local f=$1
  shift
  printf '%s\n' "$@" >"$f"
}
# Homogeneous: n devices like this machine's one thread, 8 GiB, 1 Gbit/s.
for n in 4 8 16; do fleet "homo-$n.txt" "name=dev count=$n speed=1 memory_mb=8192 bandwidth_mbit=1000"; done
# Heterogeneous (four kinds, slowest to fastest), 1 Gbit/s links.
fleet hetero-4.txt "name=slow count=1 speed=0.25 memory_mb=2048 bandwidth_mbit=1000" \
  "name=mid count=1 speed=0.5 memory_mb=4096 bandwidth_mbit=1000" \
  "name=fast count=1 speed=1 memory_mb=8192 bandwidth_mbit=1000" \
  "name=top count=1 speed=2 memory_mb=16384 bandwidth_mbit=1000"
fleet hetero-8.txt "name=slow count=3 speed=0.25 memory_mb=2048 bandwidth_mbit=1000" \
  "name=mid count=2 speed=0.5 memory_mb=4096 bandwidth_mbit=1000" \
  "name=fast count=2 speed=1 memory_mb=8192 bandwidth_mbit=1000" \
  "name=top count=1 speed=2 memory_mb=16384 bandwidth_mbit=1000"
fleet hetero-16.txt "name=slow count=6 speed=0.25 memory_mb=2048 bandwidth_mbit=1000" \
  "name=mid count=4 speed=0.5 memory_mb=4096 bandwidth_mbit=1000" \
  "name=fast count=4 speed=1 memory_mb=8192 bandwidth_mbit=1000" \
  "name=top count=2 speed=2 memory_mb=16384 bandwidth_mbit=1000"
echo -e "model\tfleet\tdevices\tstages\tplan_per_s\tsingle_per_s\teven_per_s\tspeedup_vs_single\tspeedup_vs_even" >plans.tsv
for model in vit-large vit-huge; do
  for kind in homo hetero; do
    for n in 4 8 16; do
      "$stage" plan --profile "$model.txt" --fleet "$kind-$n.txt" >"$model-$kind-$n.plan"
      j=$(tail -1 "$model-$kind-$n.plan")
      echo "EdgePipe plan, $model, $kind fleet of $n ($stage plan --profile $out/plans/$model.txt --fleet $out/plans/$kind-$n.txt): $j"
      echo "$j" | sed 's/[{}" ]//g' | tr ',' '\n' | cut -d: -f2 | paste -sd '\t' | sed "s/^/$model\t$kind\t/" >>plans.tsv
    done
  done
done
