#!/usr/bin/env bash
# Turns per-step metrics logs (JSONL, one object per line) into PNG charts:
#   loss.png              training loss against step, one line per run
#   accuracy.png          batch accuracy (thin) and test accuracy (points) against step
#   bytes.png             bytes sent, up + down, cumulative, against step (log scale)
#   accuracy-bytes.png    test accuracy against total bytes, every run on one chart
# Each log is one run; its label is the file name without .jsonl (or --label).
# Fields read from each line (others are ignored; a line without "step" is skipped):
#   step                       1-based step number
#   loss, accuracy             the step's loss and batch accuracy
#   bytes_up, bytes_down       whole-frame bytes of this step, each way
#   total_bytes_up/_down       cumulative bytes up to and including this step (optional:
#                              without them, bytes_* are summed over the lines, times the
#                              step gap, so a log of every 10th step still adds up)
#   eval_accuracy              test accuracy measured after this step (optional)
# Usage: scripts/plots.sh [--title T] OUT_DIR RUN.jsonl [RUN.jsonl...]
# Needs jq and gnuplot (scripts/setup.sh installs both).
set -euo pipefail
usage() { sed -n '2,/^set /s/^# \{0,1\}//p' "$0" | sed '$d'; }
title=""
while [ $# -gt 0 ]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --title) [ $# -ge 2 ] || { echo "plots.sh: --title needs a value" >&2; exit 2; }; title=$2; shift 2 ;;
    --) shift; break ;;
    -*) echo "plots.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    *) break ;;
  esac
done
[ $# -ge 2 ] || { echo "plots.sh: need OUT_DIR and at least one RUN.jsonl (see --help)" >&2; exit 2; }
out=$1; shift
for f in "$@"; do
  [ -f "$f" ] || { echo "plots.sh: '$f' is not a file" >&2; exit 2; }
done
for tool in jq gnuplot; do
  command -v "$tool" >/dev/null || { echo "plots.sh: '$tool' is not installed (run scripts/setup.sh)" >&2; exit 1; }
done
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# One TSV per run: step loss acc cum_up cum_down eval (NaN where absent).
labels=()
i=0
for f in "$@"; do
  label=$(basename "$f" .jsonl)
  jq -r 'select(type == "object" and has("step")) |
         [.step, (.loss // "NaN"), (.accuracy // "NaN"), (.bytes_up // 0), (.bytes_down // 0),
          (.total_bytes_up // "NaN"), (.total_bytes_down // "NaN"), (.eval_accuracy // "NaN")] | @tsv' "$f" |
    awk -F'\t' 'BEGIN { OFS = "\t"; prev = 0; up = 0; down = 0 }
      { gap = $1 - prev; if (gap < 1) gap = 1; prev = $1
        up += $4 * gap; down += $5 * gap
        if ($6 != "NaN") up = $6; if ($7 != "NaN") down = $7
        print $1, $2, $3, up, down, $8 }' > "$work/$i.tsv"
  [ -s "$work/$i.tsv" ] || { echo "plots.sh: '$f' has no line with a \"step\" field" >&2; exit 1; }
  labels+=("$label")
  i=$((i + 1))
done

# gnuplot plot clauses over every run, with a column expression and a style.
clauses() {  # clauses USING WITH
  local s="" k
  for k in "${!labels[@]}"; do
    s+="${s:+, }'$work/$k.tsv' using $1 with $2 lc $((k + 1)) title '${labels[$k]//_/\\_}'"
  done
  printf '%s' "$s"
}
evals() {  # eval points, or nothing when no run has any
  local s="" k
  for k in "${!labels[@]}"; do
    awk -F'\t' '$6 != "NaN" { found = 1 } END { exit !found }' "$work/$k.tsv" || continue
    s+=", '$work/$k.tsv' using 1:6 with linespoints pt 7 ps 1.2 lw 2 lc $((k + 1)) notitle"
  done
  printf '%s' "$s"
}
# The last test accuracy of each run, against its total bytes at that point.
: > "$work/final.tsv"
for k in "${!labels[@]}"; do
  awk -F'\t' -v l="${labels[$k]}" '$6 != "NaN" { a = $6; b = $4 + $5 } END { if (a != "") print b, a, l }' \
    OFS='\t' "$work/$k.tsv" >> "$work/final.tsv"
done
heading=${title:+$title: }

gnuplot <<EOF
set terminal pngcairo size 1000,560 font ",11"
set grid
set key outside right
set datafile separator "\t"
set datafile missing "NaN"
set output '$out/loss.png'
set title '${heading}training loss'
set xlabel 'step'
set ylabel 'loss'
plot $(clauses '1:2' 'lines lw 1.5')
set output '$out/accuracy.png'
set title '${heading}accuracy (lines: batch; points: test)'
set ylabel 'accuracy'
set yrange [0:1]
plot $(clauses '1:3' 'lines lw 0.8')$(evals)
set output '$out/bytes.png'
set title '${heading}bytes sent, up + down, cumulative'
set ylabel 'bytes'
set autoscale y
set logscale y
set format y '10^{%L}'
plot $(clauses '1:($4 + $5)' 'lines lw 2')
EOF
if [ -s "$work/final.tsv" ]; then
  gnuplot <<EOF
set terminal pngcairo size 1000,560 font ",11"
set grid
set datafile separator "\t"
set output '$out/accuracy-bytes.png'
set title '${heading}test accuracy against total bytes (up + down)'
set xlabel 'total bytes sent (log scale)'
set ylabel 'test accuracy'
set logscale x
set format x '10^{%L}'
set offsets graph 0.08, graph 0.25, graph 0.05, graph 0.05
unset key
plot '$work/final.tsv' using 1:2 with points pt 7 ps 1.6 lc 1, \
     '' using 1:2:(strcol(3)) with labels left offset 0.8,0.4 font ",9"
EOF
else
  echo "plots.sh: no run has an eval_accuracy: accuracy-bytes.png not drawn" >&2
fi
echo "plots.sh: charts in $out: $(cd "$out" && ls -- *.png | tr '\n' ' ')"
