#!/usr/bin/env bash
# The PNG plots of docs/pipeline.md from the files scripts/pipeline_results.sh
# writes into OUT: pipeline-bits.png (accuracy against bits, naive / ACIQ /
# DS-ACIQ, ViT and BERT) and pipeline-dynamic.png (results per second against
# time with the target, and the hop's bitwidth, for the adaptive, fp32 and
# 2-bit runs). Needs gnuplot.
# Usage: scripts/pipeline_plots.sh OUT DOCS_DIR
set -euo pipefail
out=$1 docs=$2
if [ -s "$out/bits.tsv" ]; then
  for m in vit bert; do
    for c in none aciq dsaciq; do
      awk -F'\t' -v m=$m -v c=$c '$1 == m && $2 == c { print $3 "\t" $4 }' "$out/bits.tsv" | sort -n >"$out/bits-$m-$c.dat"
    done
  done
  gnuplot <<GP
set terminal pngcairo size 1000,420 font ",10"
set output "$docs/pipeline-bits.png"
set multiplot layout 1,2
set logscale x 2
set xtics (2, 3, 4, 6, 8, 16, 32)
set xlabel "bits on the stage-to-stage hop"
set ylabel "test accuracy"
set key bottom right
set grid
set title "ViT, Fashion-MNIST (2 stages)"
plot "$out/bits-vit-none.dat" w lp t "naive min/max", "$out/bits-vit-aciq.dat" w lp t "ACIQ", "$out/bits-vit-dsaciq.dat" w lp t "DS-ACIQ"
set title "BERT, fortunes-language (2 stages)"
plot "$out/bits-bert-none.dat" w lp t "naive min/max", "$out/bits-bert-aciq.dat" w lp t "ACIQ", "$out/bits-bert-dsaciq.dat" w lp t "DS-ACIQ"
unset multiplot
GP
  echo "wrote $docs/pipeline-bits.png"
fi
if [ -s "$out/dyn-quantpipe/source-times.tsv" ]; then
  target=${TARGET:-60}
  # The link changes DROP_AT and RESTORE_AT seconds after the rate changer began,
  # which is a little before the source's run began.
  start=$(sed 's/.*"start_unix_s": \([0-9.]*\).*/\1/' "$out/dyn-quantpipe/source.json")
  off=$(awk -v a="$(cat "$out/dyn-quantpipe/changer-start")" -v b="$start" 'BEGIN { print a - b }')
  drop=$(awk -v o="$off" -v d="${DROP_AT:-4}" 'BEGIN { print o + d }')
  restore=$(awk -v o="$off" -v d="${RESTORE_AT:-12}" 'BEGIN { print o + d }')
  for mode in quantpipe fp32 2bit; do
    # micro-batches per second over a sliding second, at each result
    awk -F'\t' 'NR > 1 { t[NR] = $3; n = NR } END { j = 2; for (i = 2; i <= n; i++) { while (t[j] < t[i] - 1) j++; print t[i] "\t" (i - j + 1) } }' \
      "$out/dyn-$mode/source-times.tsv" >"$out/dyn-$mode-rate.dat"
  done
  gnuplot <<GP
set terminal pngcairo size 1000,640 font ",10"
set output "$docs/pipeline-dynamic.png"
set multiplot layout 2,1
set grid
set xlabel "seconds since the run began"
set xrange [0:*]
set object 1 rect from $drop, graph 0 to $restore, graph 1 fc rgb "#eeeeee" behind
set ylabel "micro-batches per second (1 s window)"
set title "Results at the source; shaded: the link at 10 Mbit/s (else 100)"
plot "$out/dyn-quantpipe-rate.dat" w l lw 2 t "QuantPipe (adaptive)", "$out/dyn-fp32-rate.dat" w l t "fixed fp32", \
     "$out/dyn-2bit-rate.dat" w l t "fixed 2-bit", $target w l dt 2 lc rgb "black" t "target $target/s"
set title "Bitwidth the adaptive run's stage s1 chose per micro-batch"
set xrange [0:GPVAL_X_MAX]
set ylabel "bits"
set logscale y 2
set yrange [1.5:40]
set ytics (2, 3, 4, 6, 8, 16, 32)
start = $start
plot "$out/dyn-quantpipe/s1.tsv" every ::1 u (\$1 - start):3 w steps lw 2 t "bits"
unset multiplot
GP
  echo "wrote $docs/pipeline-dynamic.png"
fi
