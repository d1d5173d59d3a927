#!/usr/bin/env bash
# Learning benchmarks (minutes, not part of the test suite):
#  1. ViT on Fashion-MNIST, split after block 2, trained through the in-process link.
#  2. BERT: masked-LM pre-training on fortunes text, then split fine-tuning on the
#     fortunes language task with delta:bits=4 up and quant:bits=8 down.
# Usage: scripts/learning_bench.sh [vit|bert|all]
set -euo pipefail
case "${1:-}" in -h | --help) sed -n '2,/^set /s/^# \{0,1\}//p' "$0"; exit 0 ;; esac
case "${1:-all}" in
  all | vit | bert) ;;
  *) echo "learning_bench: unknown run '$1' (vit, bert or all)" >&2; exit 2 ;;
esac
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh
. scripts/blas-env.sh
build=${SEAM_BENCH_DIR:-build-bench}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSEAM_BUILD_TESTS=OFF >/dev/null
cmake --build "$build" -j "$(nproc)" --target seam-train >/dev/null
train="$build/tools/seam-train"
what=${1:-all}
out=${SEAM_BENCH_OUT:-$build/learning}
mkdir -p "$out"
if [ "$what" = all ] || [ "$what" = vit ]; then
  echo "== ViT on Fashion-MNIST (split 2, none codec)"
  time "$train" finetune --model vit --task fashion-mnist --width 64 --depth 4 --patch 7 --split 2 \
    --steps 2800 --batch 64 --lr 2e-3 --warmup 200 --eval-every 700 --eval-limit 2000 --log-every 350
fi
if [ "$what" = all ] || [ "$what" = bert ]; then
  echo "== BERT masked-LM pre-training on fortunes text"
  time "$train" pretrain --model bert --task fortunes-language --max-per-class 2000 --max-len 64 --width 64 \
    --depth 4 --steps 400 --batch 64 --lr 2e-3 --warmup 50 --log-every 50 --out "$out/bert-mlm.pt"
  echo "== BERT split fine-tuning on fortunes-language (delta:bits=4 up, quant:bits=8 down)"
  time "$train" finetune --model bert --task fortunes-language --max-per-class 2000 --max-len 64 --width 64 \
    --depth 4 --split 2 --pretrained "$out/bert-mlm.pt" --up-codec delta:bits=4 --down-codec quant:bits=8 \
    --steps 500 --batch 32 --lr 1e-3 --warmup 50 --log-every 100
fi
