# shellcheck shell=bash
# Sourced by results.sh, link_times.sh, finetune.sh and demo.sh: reading job files and seam-train logs.
# Expects $root (the repository) to be set by the caller.
# shellcheck disable=SC2154

# setup_and_build TARGET...: scripts/setup.sh (installs what is missing), the
# OpenBLAS environment, then a RelWithDebInfo build of the TARGETs in
# $SEAM_BUILD_DIR (default build). Sets build to that folder.
setup_and_build() {
  bash "$root/scripts/setup.sh"
  . "$root/scripts/blas-env.sh"
  build=${SEAM_BUILD_DIR:-build}
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$build" --target "$@"
}

# job_value FILE KEY: the last value of `KEY = value` in FILE (comments and blanks ignored).
job_value() {
  sed -n -e 's/[[:space:]]*#.*$//' -e "s/^[[:space:]]*$2[[:space:]]*=[[:space:]]*//p" "$1" | sed 's/[[:space:]]*$//' | tail -n 1
}

# job_for_cloud JOB: the job file with a relative `pretrained` path made absolute
# (relative paths in configs/ are relative to the repository).
job_for_cloud() {
  sed "s#^\([[:space:]]*pretrained[[:space:]]*=[[:space:]]*\)\([^/[:space:]]\)#\1$root/\2#" "$1"
}

# train_conf JOB BATCH: a `seam-train finetune --config` file made from a job file:
# the keys only the service knows are dropped, the batch is added.
train_conf() {
  job_for_cloud "$1" | grep -v -E '^[[:space:]]*(#|$)' |
    grep -v -E '^[[:space:]]*(allow|policy|checkpoint-every|keep-checkpoints|classes)[[:space:]]*='
  echo "batch = $2"
}

# ensure_pretrained SEAM_TRAIN CONF THREADS: runs `seam-train pretrain --config CONF`
# unless the checkpoint it writes (its `out` key) already exists.
ensure_pretrained() {
  local out
  out=$(job_value "$2" out)
  [ -n "$out" ] || { echo "seam: '$2' has no 'out' key" >&2; return 1; }
  case "$out" in /*) ;; *) out=$root/$out ;; esac
  if [ -f "$out" ]; then
    echo "seam: pretrained checkpoint $out exists; not pre-training again"
    return 0
  fi
  echo "seam: pre-training with $2 -> $out"
  "$1" pretrain --config "$2" --out "$out" --threads "$3"
}

# train_log_jsonl < LOG: seam-train finetune's output (run with --log-every 1) as
# JSONL metrics, in the fields of seam-edge's --metrics-log (step counts from 0),
# plus eval_accuracy and, on the last line, exact total_bytes_up/_down.
train_log_jsonl() {
  awk '
    /^step +[0-9]+ +eval accuracy/ { eval[$2 - 1] = $5; next }
    /^step +[0-9]+ +loss/ {
      s = $2 - 1; n++; steps[n] = s; loss[s] = $4; acc[s] = $6
      up[s] = int($8 * 1024 + 0.5)
      for (i = 9; i <= NF; i++) if ($i == "down") { down[s] = int($(i + 1) * 1024 + 0.5); break }
      next
    }
    /^finetune done:/ { for (i = 1; i <= NF; i++) if ($i == "accuracy") final = $(i + 1); sub(",", "", final)
                        total = $3; next }
    /^up +per step:/ { upb = $4 }
    /^down per step:/ { downb = $4 }
    END {
      for (k = 1; k <= n; k++) {
        s = steps[k]
        printf "%d\t%s\t%s\t%d\t%d\t%s\t%s\t%s\n", s, loss[s], acc[s], up[s], down[s],
          (k == n && final != "" ? upb * total : "-"), (k == n && final != "" ? downb * total : "-"),
          (k == n && final != "" ? final : (s in eval ? eval[s] : "-"))
      }
    }' |
    jq -R -c 'split("\t") | {step: (.[0] | tonumber), loss: (.[1] | tonumber), accuracy: (.[2] | tonumber),
               bytes_up: (.[3] | tonumber), bytes_down: (.[4] | tonumber)}
              + (if .[5] != "-" then {total_bytes_up: (.[5] | tonumber), total_bytes_down: (.[6] | tonumber)} else {} end)
              + (if .[7] != "-" then {eval_accuracy: (.[7] | tonumber)} else {} end)'
}

# summary_row SETTING SEED LOG: one TSV row from a finetune log.
summary_row() {
  awk -v setting="$1" -v seed="$2" '
    /^finetune done:/ { steps = $3; secs = $6; for (i = 1; i <= NF; i++) if ($i == "accuracy") acc = $(i + 1); sub(",", "", acc) }
    /^up +per step:/ { upb = $4 }
    /^down per step:/ { downb = $4 }
    END { if (acc == "") { print "seam: no summary in the log of " setting > "/dev/stderr"; exit 1 }
          printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", setting, seed, acc, upb, downb, steps, secs }' "$3"
}

# results_table TSV: a Markdown table, one row per setting: mean and spread of the
# test accuracy over seeds, bytes per step, reduction of up + down against `none`.
results_table() {
  awk -F'\t' '
    NR == 1 { next }
    { k = $1; if (!(k in n)) order[++m] = k; n[k]++; sum[k] += $3; sq[k] += $3 * $3
      if (!(k in up)) { up[k] = $4; down[k] = $5 }; secs[k] += $7 / $6 * 1000; seedl[k] = seedl[k] (seedl[k] == "" ? "" : ",") $2 }
    END {
      base = ("none" in up) ? up["none"] + down["none"] : 0; bacc = ("none" in n) ? sum["none"] / n["none"] : -1
      print "| setting | seeds | test accuracy | vs none (points) | up B/step | down B/step | reduction vs fp32 (up+down) | ms/step |"
      print "|---|---|---|---|---|---|---|---|"
      for (i = 1; i <= m; i++) {
        k = order[i]; mean = sum[k] / n[k]; var = n[k] > 1 ? (sq[k] - n[k] * mean * mean) / (n[k] - 1) : 0
        acc = sprintf("%.2f%%", 100 * mean); if (n[k] > 1) acc = acc sprintf(" ± %.2f", 100 * sqrt(var > 0 ? var : 0))
        gap = bacc >= 0 ? sprintf("%+.2f", 100 * (mean - bacc)) : "n/a"
        red = base > 0 ? sprintf("x%.1f", base / (up[k] + down[k])) : "n/a"
        printf "| %s | %s | %s | %s | %d | %d | %s | %.0f |\n", k, seedl[k], acc, gap, up[k], down[k], red, secs[k] / n[k]
      }
    }' "$1"
}

# start_cloud SEAM_CLOUD LOG SERVE_ARGS...: starts `seam-cloud serve SERVE_ARGS... --port 0`
# in the background, waits for its line "... serving jobs ... on ADDR:PORT" (log lines
# may come first), prints it and sets cloud_pid and cloud_port. Fails with the server's output.
start_cloud() {
  local bin=$1 log=$2 line="" _
  shift 2
  "$bin" serve "$@" --port 0 > "$log" 2>&1 &
  cloud_pid=$!
  for _ in $(seq 600); do
    line=$(grep -m 1 "serving jobs .* on " "$log" 2>/dev/null || true)
    [ -n "$line" ] && break
    kill -0 "$cloud_pid" 2>/dev/null || break
    sleep 0.1
  done
  if [[ "$line" != *"serving jobs "*" on "*:* ]]; then
    echo "seam-cloud did not start: $(cat "$log")" >&2
    kill -TERM "$cloud_pid" 2>/dev/null && wait "$cloud_pid" 2>/dev/null
    return 1
  fi
  # shellcheck disable=SC2034  # read by the caller
  cloud_port=${line##*:}
  echo "$line"
}

# link_table TSV RATE RATE_BPS: link_times.sh's rows as a Markdown table, one row
# per setting (none first): plain and shaped step times side by side, epoch
# times, the shaped link's time against the least its bytes need at RATE_BPS
# bits per second, and the speed-up against none on the shaped link.
link_table() {
  awk -F'\t' -v rate="$2" -v bps="$3" '
    NR == 1 { next }
    { k = $1; if (!(k in seen)) { seen[k] = 1; order[++m] = k }
      ms[k, $2] = $4; lk[k, $2] = $5; bytes[k] = $6 + $7; ep[k] = $8 }
    function cell(x, f) { return x == "" ? "–" : sprintf(f, x) }
    END {
      printf "| setting | up+down B/step | plain ms/step | %s ms/step | %s link ms (bytes/rate) | plain s/epoch | %s s/epoch | %s / plain | speed-up vs none at %s |\n", rate, rate, rate, rate, rate
      print "|---|---|---|---|---|---|---|---|---|"
      # none first, then the others in the order of the rows
      for (i = 0; i <= m; i++) {
        k = i == 0 ? "none" : order[i]
        if ((i == 0 && !("none" in seen)) || (i > 0 && k == "none")) continue
        p = ms[k, "plain"]; s = ms[k, rate]
        printf "| %s | %d | %s | %s | %s | %s | %s | %s | %s |\n", k, bytes[k], cell(p, "%.0f"), cell(s, "%.0f"),
          (s == "" ? "–" : sprintf("%.0f (%.0f)", lk[k, rate], bytes[k] * 8 / bps * 1000)),
          cell(p == "" ? "" : p * ep[k] / 1000, "%.0f"), cell(s == "" ? "" : s * ep[k] / 1000, "%.0f"),
          (p == "" || s == "" ? "–" : sprintf("%.2f", s / p)),
          (s == "" || ms["none", rate] == "" ? "–" : sprintf("x%.1f", ms["none", rate] / s))
      }
    }' "$1"
}
