#!/usr/bin/env bash
# Regenerates the evidence of docs/pipeline.md (issue 13) into one folder and
# prints every figure with the command that made it:
#   1. throughput and latency of 1-, 2- and 3-stage pipelines of a trained ViT
#      on Fashion-MNIST test images, one LibTorch thread per stage;
#   2. accuracy against bits (32..2) with naive min/max, ACIQ and DS-ACIQ
#      clipping on the ViT and BERT (fortunes-language) pipelines;
#   3. the DS-ACIQ search cost (12.6 MB tensor, and per window in a run);
#   4. a dynamic-bandwidth run over a kernel-shaped link between two network
#      namespaces (tc tbf, 100 -> 10 -> 100 Mbit/s) with QuantPipe's controller
#      against fixed fp32 and fixed 2-bit (needs root; skipped otherwise);
#   5. EdgePipe plans for 4-, 8- and 16-device fleets from measured ViT-Large
#      and ViT-Huge block profiles;
#   6. the PNG plots (gnuplot).
# Usage: scripts/pipeline_results.sh [SECTION...]   (sections: models throughput bits search dynamic plan plots; default all)
# Env: SEAM_PIPE_BUILD (build dir with seam-stage, seam-ptq, seam-codec; default build-i13),
#      SEAM_PIPE_PTQ (seam-ptq to train the classifiers; default $SEAM_PIPE_BUILD/tools/seam-ptq, else build/tools/seam-ptq),
#      SEAM_PIPE_OUT (work folder; default /tmp/seam_pipeline_work; trained models are reused).
set -euo pipefail
case "${1:-}" in -h | --help) sed -n '2,/^set /s/^# \{0,1\}//p' "$0"; exit 0 ;; esac
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. scripts/blas-env.sh
build=${SEAM_PIPE_BUILD:-build-i13}
stage="$root/$build/tools/seam-stage"
ptq=${SEAM_PIPE_PTQ:-$root/$build/tools/seam-ptq}
[ -x "$ptq" ] || ptq="$root/build/tools/seam-ptq"
codec_bin="$root/$build/tools/seam-codec"
[ -x "$codec_bin" ] || codec_bin="$root/build/tools/seam-codec"
out=${SEAM_PIPE_OUT:-/tmp/seam_pipeline_work}
mkdir -p "$out"
certs="$out/pki"
[ -f "$certs/ca.pem" ] || bash scripts/gen-certs.sh "$certs" >/dev/null
sections=("$@")
[ ${#sections[@]} -gt 0 ] || sections=(models throughput bits search dynamic plan plots)
want() { local s; for s in "${sections[@]}"; do [ "$s" = "$1" ] && return 0; done; return 1; }
say() { echo "$*" | tee -a "$out/figures.txt"; }
run() { echo "\$ $*" >>"$out/commands.txt"; "$@"; }
tls=(--cert "$certs/server.pem" --key "$certs/server.key" --ca "$certs/ca.pem"
     --client-cert "$certs/client.pem" --client-key "$certs/client.key")

# pipeline NAME CKPT TASK MB BATCHES "CUTS" [stage flags...] : runs scripts/pipeline.sh on
# ports 74xx, prints the source's JSON line; logs in $out/NAME/.
pipeline() {
  local name=$1 ckpt=$2 task=$3 mb=$4 n=$5 cuts=$6
  shift 6
  local conf="$out/$name.conf" port=7400 prev=""
  mkdir -p "$out/$name"
  {
    echo "bin = $stage"; echo "certs = $certs"; echo "checkpoint = $ckpt"; echo "task = $task"
    echo "micro_batch = $mb"; echo "batches = $n"; echo "source_port = $port"
    local i=1
    for c in $cuts; do
      if [ -n "$prev" ]; then echo "stage = s$i $((port + i)) $prev:$c --threads 1 $*"; i=$((i + 1)); fi
      prev=$c
    done
  } >"$conf"
  echo "\$ scripts/pipeline.sh $conf" >>"$out/commands.txt"
  scripts/pipeline.sh "$conf" "$out/$name" 2>"$out/$name/launcher.err"
}

# 1. Classifiers (reused when present): the ViT and BERT of docs/ptq.md's recipe.
if want models; then
  [ -f "$out/vit.pt" ] || run "$ptq" train --model vit --task fashion-mnist --width 32 --depth 3 --heads 2 --patch 7 \
    --steps 400 --batch 32 --lr 3e-3 --warmup 40 --threads 1 --out "$out/vit.pt" | tail -1
  [ -f "$out/bert.pt" ] || run "$ptq" train --model bert --task fortunes-language --max-per-class 1000 --max-len 64 \
    --width 32 --depth 3 --heads 2 --steps 400 --batch 32 --lr 3e-3 --warmup 40 --threads 1 --out "$out/bert.pt" | tail -1
  # A wider ViT for the throughput runs, where compute should dominate.
  [ -f "$out/vit-wide.pt" ] || run "$ptq" train --model vit --task fashion-mnist --width 192 --depth 4 --heads 4 --patch 4 \
    --steps 150 --batch 32 --lr 1e-3 --warmup 20 --threads 1 --out "$out/vit-wide.pt" | tail -1
fi

# 2. Throughput and latency, 1, 2 and 3 stages (6 blocks: embedding, 4 transformer blocks, head).
if want throughput; then
  : >"$out/throughput.tsv"
  for cuts in "0 6" "0 3 6" "0 2 4 6"; do
    n=$(($(echo $cuts | wc -w) - 1))
    j=$(pipeline "tp$n" "$out/vit-wide.pt" fashion-mnist 16 24 "$cuts" --codec none)
    say "throughput, $n stage(s) [cuts $cuts], vit-wide (width 192, 4 blocks, 50 tokens), micro-batch 16, 24 micro-batches, codec none: $j"
    echo -e "$n\t$j" >>"$out/throughput.tsv"
  done
fi

# 3. Accuracy against bits on the 2-stage pipelines (cut after block 3 of the ViT, 2 of the BERT).
if want bits; then
  echo -e "model\tclip\tbits\taccuracy" >"$out/bits.tsv"
  for model in vit bert; do
    if [ $model = vit ]; then task=fashion-mnist cuts="0 3 5" mb=100 n=20; else task=fortunes-language cuts="0 2 5" mb=50 n=12; fi
    for bits in 32 16 8 6 4 3 2; do
      for clip in none aciq dsaciq; do
        if [ $bits -ge 16 ] && [ $clip != none ]; then continue; fi
        case $bits in 32) spec=none ;; 16) spec=fp16 ;; *) spec="quant:bits=$bits,clip=$clip" ;; esac
        j=$(pipeline "bits-$model-$bits-$clip" "$out/$model.pt" $task $mb $n "$cuts" --codec "$spec")
        acc=$(echo "$j" | sed 's/.*"accuracy": \([0-9.]*\).*/\1/')
        say "accuracy $model $task, hop codec $spec, $((mb * n)) test samples: $acc"
        if [ $bits -ge 16 ]; then for c in none aciq dsaciq; do echo -e "$model\t$c\t$bits\t$acc" >>"$out/bits.tsv"; done
        else echo -e "$model\t$clip\t$bits\t$acc" >>"$out/bits.tsv"; fi
      done
    done
  done
fi

# 4. DS-ACIQ search cost: one 12.6 MB tensor (32x128x768 fp32), with and without the search.
if want search; then
  for clip in none dsaciq; do
    j=$(run "$codec_bin" eval --spec "quant:bits=4,clip=$clip" --synthetic gaussian --shape 32,128,768 --repeat 5 --threads 1 --json)
    say "seam-codec eval quant:bits=4,clip=$clip on 32x128x768 fp32 (12.6 MB), 1 thread: $j"
  done
fi

# 5. Dynamic bandwidth: source and s1 in namespace A, s2 in B, the A->B veth shaped by tbf.
if want dynamic; then
  if [ "$(id -u)" != 0 ] || ! command -v tc >/dev/null; then
    say "dynamic bandwidth: skipped (needs root and tc)"
  else
    bash scripts/pipeline_dynamic.sh "$stage" "$out" "$certs" | tee -a "$out/figures.txt"
  fi
fi

# 6. EdgePipe plans: ViT-Large and ViT-Huge blocks measured here (a depth-2 model of each
#    shape; its transformer block stands for all 24 or 32), fleets of 4, 8 and 16 devices.
if want plan; then
  bash scripts/pipeline_plans.sh "$stage" "$out" | tee -a "$out/figures.txt"
fi

if want plots; then
  bash scripts/pipeline_plots.sh "$out" "$root/docs"
fi
echo "figures: $out/figures.txt; commands: $out/commands.txt"
