#!/usr/bin/env bash
# Regenerates docs/ptq.md and docs/ptq-accuracy.png (issue 14): trains a small
# ViT (Fashion-MNIST) and BERT (fortunes-language) classifier, quantizes their
# edge halves with every method over accumulator widths, tiles and weight
# bits, and writes the tables and the plot. Tens of minutes on two cores.
# Usage: scripts/ptq_results.sh
# Env: SEAM_PTQ_BUILD (build dir, default build-ptq), SEAM_PTQ_OUT (work dir,
#      default $SEAM_PTQ_BUILD/ptq-results; trained models there are reused),
#      SEAM_PTQ_NO_BUILD=1 (use the built seam-ptq as it is), SEAM_JOBS.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh
. scripts/blas-env.sh
build=${SEAM_PTQ_BUILD:-build-ptq}
if [ -z "${SEAM_PTQ_NO_BUILD:-}" ]; then
  cmake -S . -B "$build" -G Ninja >/dev/null
  cmake --build "$build" -j "${SEAM_JOBS:-$(nproc)}" --target seam-ptq >/dev/null
fi
ptq="$build/tools/seam-ptq"
out=${SEAM_PTQ_OUT:-$build/ptq-results}
mkdir -p "$out"
doc=docs/ptq.md
png=docs/ptq-accuracy.png

# 1. Float classifiers (reused when present).
vit_train=(train --model vit --task fashion-mnist --width 32 --depth 3 --heads 2 --patch 7 --steps 400 --batch 32
           --lr 3e-3 --warmup 40)
bert_train=(train --model bert --task fortunes-language --max-per-class 1000 --max-len 64 --width 32 --depth 3
            --heads 2 --steps 400 --batch 32 --lr 3e-3 --warmup 40)
[ -f "$out/vit.pt" ] || { echo "== training the ViT"; "$ptq" "${vit_train[@]}" --out "$out/vit.pt" | tail -1; }
[ -f "$out/bert.pt" ] || { echo "== training the BERT"; "$ptq" "${bert_train[@]}" --out "$out/bert.pt" | tail -1; }

# 2. Sweeps: the edge half is blocks [0, 3): the embedding and two transformer blocks.
# One LibTorch thread: on a shared two-core machine more threads were several times slower.
threads=(--threads "${SEAM_PTQ_THREADS:-1}")
methods=rtn,ep-init,optq,gpfq,optq+axe,gpfq+axe,ep-init+scaled,optq+axe+scaled,gpfq+axe+scaled
vit=("${threads[@]}" --checkpoint "$out/vit.pt" --task fashion-mnist --split 3 --calib 256 --eval-limit 2000)
bert=("${threads[@]}" --checkpoint "$out/bert.pt" --task fortunes-language --max-per-class 1000 --split 3 --calib 256)
for m in vit bert; do
  [ -n "${SEAM_PTQ_TABLES_ONLY:-}" ] && break  # only rewrite the page from the tables in $out
  declare -n args=$m
  echo "== $m: accuracy against accumulator bits (M=8, N=8, single stage)"
  "$ptq" sweep "${args[@]}" --methods "$methods" --acc-bits 10:20 --table "$out/$m-acc.tsv" > "$out/$m-acc.log"
  for tile in 0 64 32; do
    echo "== $m: accumulation in tiles of T=$tile (0: single stage) at P=16"
    "$ptq" sweep "${args[@]}" --methods "$methods" --acc-bits 16 --tile $tile --table "$out/$m-tile$tile.tsv" \
      > "$out/$m-tile$tile.log"
  done
  echo "== $m: weight bits at P=16"
  "$ptq" sweep "${args[@]}" --methods optq,gpfq,optq+axe,gpfq+axe,optq+axe+scaled,gpfq+axe+scaled \
    --weight-bits 8,6,4,3 --acc-bits 16 --table "$out/$m-bits.tsv" > "$out/$m-bits.log"
  echo "== $m: per-layer PTQ time (optq+axe+scaled, P=16, simulated)"
  "$ptq" quantize "${args[@]}" --method optq --axe --budget-scale --acc-bits 16 --simulate \
    --layer-table "$out/$m-layers.tsv" > "$out/$m-quantize.log"
  unset -n args
done

# 3. The plot: accuracy against P, one line per method, one panel per model.
gnuplot <<EOF
set terminal pngcairo size 1100,420 font ",10"
set output "$png"
set datafile separator "\t"
set multiplot layout 1,2
set xlabel "accumulator bits P (M=8, N=8, single stage; integer simulation)"
set ylabel "test accuracy"
set key bottom right
set grid
set xrange [9.5:20.5]
set yrange [0:1]
do for [f in "vit bert"] {
  set title (f eq "vit" ? "ViT, Fashion-MNIST, edge half [0,3)" : "BERT, fortunes-language, edge half [0,3)")
  file = "$out/".f."-acc.tsv"
  plot for [m in "rtn ep-init optq gpfq optq+axe gpfq+axe ep-init+scaled optq+axe+scaled gpfq+axe+scaled"] file using (strcol(1) eq m && \$4 > 0 ? \$4 : NaN):6 \
       with linespoints title m
}
unset multiplot
EOF

# 4. docs/ptq.md. pivot FILE [COLUMN LABEL]: rows = P (or COLUMN), columns = methods, cells = accuracy.
pivot() {
  awk -F'\t' -v col="${2:-4}" -v label="${3:-P}" '$1 != "method" {
      p = (col == 4 && $4 == 0 ? "none (int64)" : $col); key = p SUBSEP $1
      if (!(p in seenp)) { seenp[p] = 1; ps[++np] = p }
      if (!($1 in seenm)) { seenm[$1] = 1; ms[++nm] = $1 }
      acc[key] = sprintf("%.4f", $6); ovf[key] = $8; fl = $7 }
    END {
      printf "| %s |", label; for (j = 1; j <= nm; ++j) printf " %s |", ms[j]; printf "\n|---|"
      for (j = 1; j <= nm; ++j) printf "---|"; printf "\n"
      for (i = 1; i <= np; ++i) { printf "| %s |", ps[i]
        for (j = 1; j <= nm; ++j) { k = ps[i] SUBSEP ms[j]
          if (k in acc) printf " %s%s |", acc[k], (ovf[k] > 0 ? sprintf(" (ovf %.1e)", ovf[k]) : "")
          else printf " – |" }
        printf "\n" }
      printf "\nFloat accuracy: %.4f.\n", fl }' "$1"
}
bits_table() {
  awk -F'\t' 'NR > 1 { key = $2 SUBSEP $1
      if (!($2 in seenb)) { seenb[$2] = 1; bs[++nb] = $2 }
      if (!($1 in seenm)) { seenm[$1] = 1; ms[++nm] = $1 }
      acc[key] = sprintf("%.4f", $6) }
    END { printf "| M |"; for (j = 1; j <= nm; ++j) printf " %s |", ms[j]; printf "\n|---|"
      for (j = 1; j <= nm; ++j) printf "---|"; printf "\n"
      for (i = 1; i <= nb; ++i) { printf "| %s |", bs[i]
        for (j = 1; j <= nm; ++j) { k = bs[i] SUBSEP ms[j]; printf " %s |", (k in acc ? acc[k] : "–") }
        printf "\n" } }' "$1"
}
layers_table() {
  awk -F'\t' 'NR == 1 { print "| layer | kind | in | out | seconds | output error |\n|---|---|---|---|---|---|"; next }
    { printf "| %s | %s | %s | %s | %.3f | %.2e |\n", $1, $2, $3, $4, $5, $6 }' "$1"
}
intro() {
  cat <<'EOF_INTRO'
# Accumulator-aware post-training quantization (`ptq/`, `seam-ptq`)

Edge stages that run integer kernels accumulate products of M-bit weights and
N-bit activation codes in a P-bit register. If the register is narrow (16 bits,
or 32 bits over tiles) and nothing bounds the weights, it overflows and wraps,
and accuracy collapses. `ptq/` quantizes the Linear and Conv2d layers of a model
half (native or TorchScript) so that overflow is impossible by construction
(AXE, Colbert et al. 2024), and simulates the integer arithmetic bit-exactly to
show it.

## What it does

- **Calibration, layer by layer.** Layers are found in the order a forward pass
  runs them (LibTorch's RecordFunction observer sees each `linear`/`matmul`/`addmm`/`conv2d`
  call and matches its weight by storage, so native and TorchScript halves work
  unchanged). Layer k is calibrated on inputs of the model whose layers before k
  are already quantized, weights and input activations both.
- **Quantizers.** Per-output-channel max-abs weight scales, M-bit signed codes
  (M = 2..8). Per-tensor N-bit input codes at each quantized layer, signed
  (symmetric) or unsigned (asymmetric, zero point); `auto` picks signed when the
  negative side of the observed range reaches a tenth of the positive side.
  A Conv2d is quantized as its im2col matrix [out, C·kh·kw].
- **OPTQ/GPTQ** (Frantar et al. 2022, arXiv 2210.17323): H = 2XXᵀ/n summed over
  batches from the partly quantized model's inputs, dead columns zeroed, damping
  of 1% of the mean diagonal, optional act-order, the upper Cholesky factor of
  H⁻¹, block-wise lazy error feedback (128 columns).
- **GPFQ** (Lybrand & Saab 2021, arXiv 2010.15979; the matrix form of Zhang &
  Saab): H̃ = X̃X̃ᵀ/n and G = X̃Xᵀ/n from the quantized inputs X̃ and the float
  model's inputs X; input t's target is (Σ_{j≤t} w_j G[t,j] − Σ_{j<t} q_j H̃[t,j]) / H̃[t,t].
- **AXE on both** (Colbert, Pappalardo, Petri-Koenig, Saab 2024, arXiv 2409.17092).
  For input codes in [μ, ν] and a P-bit register, every output channel's integer
  weights q must satisfy ν·Σq⁺ + μ·Σq⁻ ≤ 2^(P−1)−1 and μ·Σq⁺ + ν·Σq⁻ ≥ −(2^(P−1)−1),
  which implies ‖q‖₁ ≤ (2^P−2)/(2^N−1).
  - *Soft part:* before rounding, each target (after error feedback) shrinks by λ,
    the l1-ball projection threshold (Duchi et al. 2008) of the zero-centred scaled
    weights of its tile.
  - *Hard part:* running sums of the positive weights and of the negative
    magnitudes of each row and tile; each target is clipped to what is left of
    the budget B = ⌊(2^(P−1)−1)/(ν − min(μ,0))⌋ per sign before it is rounded, so
    both inequalities hold whatever the later columns do. The error that the
    shrinking and clipping cause is fed back like rounding error.
  - *Multi-stage:* with tiles of T inputs the budget holds per tile for a P-bit
    inner register; the outer register has P + ⌈log₂(K/T)⌉ bits.
- **Baselines:** round-to-nearest (no constraint, the register may overflow);
  EP-init (each tile's positive weights and negative magnitudes projected onto
  the budget B with Duchi's threshold, then rounded to nearest, so rounding can
  still step past the budget by half a step per weight); plain OPTQ and GPFQ.
- **Integer reference execution** (`ptq/include/seam/ptq/int_sim.hpp`): a
  sequential simulator that adds one product at a time into a P-bit wrap-around
  register (per tile, then the outer one) and flags each overflow; and a fast
  form that uses the identity "wrap-around addition = addition mod 2^P", so a
  register's final value is its exact sum wrapped once per stage. The tests check
  the two agree. Model evaluation uses the fast form inside the forward pass:
  the quantized layer's output is replaced by s_x·s_w·(acc − z·Σq) + b computed
  from the simulated register.

## Using it

```sh
build/tools/seam-ptq train --model vit --task fashion-mnist --steps 1500 --out vit.pt
build/tools/seam-ptq quantize --checkpoint vit.pt --task fashion-mnist --split 3 \
    --method gpfq --axe --acc-bits 16 --tile 64 --simulate --out vit-q.pt
build/tools/seam-ptq sweep --checkpoint vit.pt --task fashion-mnist --split 3 --acc-bits 10:20 --table r.tsv
```

`quantize` prints each layer as it finishes (time, input sign mode, output
error), the float and quantized accuracy, and, with `--simulate`, how many
simulated outputs overflowed. It writes a normal Seam checkpoint whose edge
weights are s·q (anything that loads checkpoints can run it) and `OUT.ptq`
beside it: int8 codes, scales, activation quantizers, P and T per layer
(`seam::ptq::load_ptq`, then `QuantizedExecution` to run with quantized inputs
or through the simulator). `seam-train pretrain` trains BERT as a masked LM,
so `seam-ptq train` exists to produce classifier checkpoints to quantize.

Bad settings are refused with the setting named: M outside 2..8, N outside
2..16, an accumulator too narrow for even one nonzero weight (P=8 with 8-bit
unsigned inputs: "need P >= 9"), a tile that does not divide a layer's inputs
(the layer is named), AXE or EP-init without P. A layer with no more inputs
than T is one tile.

## Results
EOF_INTRO
}
discussion() {
  echo "## Discussion"
}
stamp=$(date -u +%Y-%m-%d)
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
{
  intro
  echo
  echo "Generated by \`scripts/ptq_results.sh\` on $stamp ($cpu, $(nproc) cores). Models: \`${vit_train[*]}\`"
  echo "and \`${bert_train[*]}\`. Calibration: 256 training samples. ViT accuracy is on the first 2000 test"
  echo "images, BERT's on the whole test split. Every quantized accuracy below runs the quantized layers"
  echo "through the integer simulator with a P-bit wrap-around accumulator; \"ovf\" is the fraction of"
  echo "simulated outputs that the wrap-around changed. This is a simulation, not a hardware measurement."
  echo
  echo "![accuracy against accumulator bits](ptq-accuracy.png)"
  echo
  for m in vit bert; do
    name=$([ $m = vit ] && echo "ViT on Fashion-MNIST" || echo "BERT on fortunes-language")
    echo "### $name: accuracy against accumulator bits (M=8, N=8, single stage)"
    echo
    pivot "$out/$m-acc.tsv"
    echo
    echo "### $name: single-stage against tiled accumulation at P=16 (T inputs per inner register; the outer one has P + ceil(log2(K/T)) bits)"
    echo
    cat "$out/$m-tile0.tsv" "$out/$m-tile64.tsv" "$out/$m-tile32.tsv" | pivot /dev/stdin 5 T
    echo
    echo "### $name: weight bits M at P=16 (N=8, single stage)"
    echo
    bits_table "$out/$m-bits.tsv"
    echo
    echo "### $name: PTQ time per layer (optq+axe, M=8, N=8, P=16)"
    echo
    layers_table "$out/$m-layers.tsv"
    echo
    grep -E '^(float accuracy|quantized accuracy|simulated outputs)' "$out/$m-quantize.log" | sed 's/^/    /'
    echo
  done
  discussion
} > "$doc"
echo "wrote $doc and $png"
