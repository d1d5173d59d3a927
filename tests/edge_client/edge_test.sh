#!/usr/bin/env bash
# The edge side against a real seam-cloud on loopback. One mode per ctest entry:
#   edge_test.sh capi     BUILD_DIR   the C test program (C99) drives libseam_edge.so
#   edge_test.sh symbols  BUILD_DIR   libseam_edge.so exports only seam_* symbols
#   edge_test.sh resume   BUILD_DIR   seam-edge interrupted (SIGINT) and killed (SIGKILL) mid-run,
#                                     started again: final weights bit-identical to an uninterrupted run
#   edge_test.sh reconnect BUILD_DIR  seam-cloud killed mid-run and restarted: seam-edge reconnects, rolls back,
#                                     and ends bit-identical to an uninterrupted run
#   edge_test.sh progress BUILD_DIR   the live bar under a pseudo-terminal (script), plain lines otherwise
#   edge_test.sh python   BUILD_DIR   the Python module and seam-edge give the same losses
# Each mode makes its own PKI (scripts/gen-certs.sh), job and server in a temp folder.
set -euo pipefail
mode=${1:?mode} build=${2:?build dir}
src=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/seam_edge_${mode}.XXXXXX")
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill -TERM "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAILED: $*" >&2; exit 1; }
export OMP_NUM_THREADS=1

# A small ViT job on Fashion-MNIST shapes, checkpoints every 5 steps.
# UP_CODEC, CHECKPOINT_EVERY and OPTIM (the optimizer's lines) replace the defaults; JOB_EXTRA adds keys.
start_server() {
  bash "$src/scripts/gen-certs.sh" "$work/pki" >/dev/null
  mkdir -p "$work/jobs"
  { printf 'model = vit\nclasses = 10\nwidth = 32\ndepth = 2\nheads = 4\nmlp-ratio = 2\nsplit = 1\nseed = 7\n'
    printf 'up-codec = %s\ndown-codec = quant:bits=8\n' "${UP_CODEC:-delta:bits=4}"
    printf '%b' "${OPTIM:-lr = 0.002\nwarmup = 5\nsteps = 60\n}"
    printf 'allow = CN=edge-1\ncheckpoint-every = %s\n%s' "${CHECKPOINT_EVERY:-5}" "${JOB_EXTRA:-}"; } >"$work/jobs/vit.job"
  "$build/tools/seam-cloud" prepare "$work/jobs/vit.job" --state-dir "$work/state" >/dev/null
  serve 0
}

# serve PORT: starts seam-cloud on the prepared state (PORT 0: any free port; sets $port).
serve() {
  "$build/tools/seam-cloud" serve --cert "$work/pki/server.pem" --key "$work/pki/server.key" \
    --client-ca "$work/pki/ca.pem" --jobs-dir "$work/jobs" --state-dir "$work/state" --port "$1" >"$work/server.out" 2>>"$work/server.err" &
  server_pid=$!
  local line= i
  for i in $(seq 600); do
    line=$(grep -m1 'serving jobs' "$work/server.out" || true)
    [ -n "$line" ] && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.05
  done
  [[ $line == *"serving jobs vit on 127.0.0.1:"* ]] || fail "seam-cloud said: $(cat "$work/server.out" "$work/server.err")"
  port=${line##*:}
}

# The prepared job's front half for an edge folder (never the cloud half).
edge_job_dir() {
  mkdir -p "$1"
  cp "$work/state/vit/job/job.conf" "$work/state/vit/job/edge_init.pt" "$work/state/vit/job/manifest" "$1/"
}

edge_args() {  # edge_args STATE_DIR CLIENT_ID
  echo --server "127.0.0.1:$port" --ca "$work/pki/ca.pem" --cert "$work/pki/client.pem" --key "$work/pki/client.key" \
    --job vit --job-dir "$work/edge-job" --state-dir "$1" --client-id "$2" --checkpoint-every 5 \
    --task fashion-mnist --batch 16 --threads 1 --data-seed 3 ${EVAL:---eval-limit 64} ${RETRY:---max-attempts 3 --backoff-initial-ms 20}
}

case $mode in
symbols)
  lib=$(ls "$build"/edge_client/libseam_edge.so.* | head -1)
  syms=$(nm -D --defined-only "$lib" | awk '$2 != "A" {print $3}' | sed 's/@.*//')
  [ -n "$syms" ] || fail "no symbols in $lib"
  bad=$(grep -v '^seam_' <<<"$syms" || true)
  [ -z "$bad" ] || fail "exported symbols outside seam_*: $(head -5 <<<"$bad" | tr '\n' ' ')"
  for want in seam_open seam_join seam_train_step seam_save seam_restore seam_close seam_free seam_error_message; do
    grep -qx "$want" <<<"$syms" || fail "$want is not exported"
  done
  echo "only seam_* exported: $(wc -l <<<"$syms") symbols"
  ;;
capi)
  start_server
  # No job folder on the device: join downloads the front half, never the cloud half.
  "$build/tests/seam_edge_c_test" "$port" "$work/pki" "$work/device/job" "$work/edge-state"
  for f in manifest job.conf edge_init.pt; do
    cmp -s "$work/device/job/$f" "$work/state/vit/job/$f" || fail "downloaded $f differs from the server's"
  done
  [ ! -e "$work/device/job/cloud_init.pt" ] || fail "the cloud half was downloaded"
  echo "join downloaded manifest, job.conf, edge_init.pt (identical to the server's), no cloud_init.pt"
  ;;
resume)
  start_server
  edge_job_dir "$work/edge-job"
  steps=24
  # An uninterrupted run.
  out=$("$build/tools/seam-edge" $(edge_args "$work/a" a) --steps $steps --progress none)
  ref=$(grep '^edge weights sha256' <<<"$out") || fail "no weights hash: $out"
  # Interrupted with SIGINT (Ctrl-C) after step 7, then killed with SIGKILL after step 15: each time the same
  # command resumes. The metrics log tells how far a run got.
  run_until() {  # run_until SIGNAL STEP_LINES
    local log=$work/b.jsonl
    "$build/tools/seam-edge" $(edge_args "$work/b" b) --steps $steps --progress none --metrics-log "$log" \
      >"$work/b.out" 2>&1 &
    local pid=$! i
    for i in $(seq 600); do
      [ -f "$log" ] && (($(wc -l <"$log") >= $2)) && break
      sleep 0.05
    done
    kill "-$1" "$pid"
    local rc=0
    wait "$pid" || rc=$?
    echo "$rc"
  }
  rc=$(run_until INT 7)
  [ "$rc" = 130 ] || fail "SIGINT: exit $rc, expected 130: $(cat "$work/b.out")"
  stopped=$(grep -o "interrupted at step [0-9]*; checkpoint saved" "$work/b.out" | grep -o "[0-9]*") ||
    fail "SIGINT: no save message: $(cat "$work/b.out")"
  rc=$(run_until KILL 15)
  [ "$rc" = 137 ] || fail "SIGKILL: exit $rc"
  # Ctrl-C saved exactly where it stopped: the next run resumes there, not at an older periodic checkpoint.
  grep -q "resuming at step $stopped of" "$work/b.out" || fail "the second run did not resume at $stopped: $(cat "$work/b.out")"
  out=$("$build/tools/seam-edge" $(edge_args "$work/b" b) --steps $steps --progress none)
  grep -q "resuming at step [1-9]" <<<"$out" || fail "the third run did not resume: $out"
  got=$(grep '^edge weights sha256' <<<"$out") || fail "no weights hash: $out"
  [ "$got" = "$ref" ] || fail "resumed weights differ: $got vs $ref"
  echo "resumed after SIGINT ($(grep -o 'resuming at step [0-9]*' "$work/b.out" | head -1)) and after SIGKILL" \
    "($(grep -o 'resuming at step [0-9]*' <<<"$out")): final weights identical to the uninterrupted run"
  ;;
reconnect)
  # The server is killed (SIGKILL) mid-run and restarted on the same port from its checkpoints:
  # seam-edge reconnects with backoff, rolls back to the cloud's step and replays; the final
  # weights equal an uninterrupted run's.
  start_server
  edge_job_dir "$work/edge-job"
  steps=24
  ref=$("$build/tools/seam-edge" $(edge_args "$work/a" a) --steps $steps --progress none | grep '^edge weights sha256') ||
    fail "reference run"
  RETRY='--max-attempts 12 --backoff-initial-ms 100 --backoff-max-ms 1000'
  "$build/tools/seam-edge" $(edge_args "$work/b" b) --steps $steps --progress none --metrics-log "$work/b.jsonl" \
    >"$work/b.out" 2>&1 &
  edge_pid=$!
  for i in $(seq 600); do
    [ -f "$work/b.jsonl" ] && (($(wc -l <"$work/b.jsonl") >= 13)) && break
    kill -0 "$edge_pid" 2>/dev/null || fail "seam-edge stopped: $(cat "$work/b.out")"
    sleep 0.05
  done
  kill -KILL "$server_pid"
  wait "$server_pid" 2>/dev/null || true
  serve "$port"
  wait "$edge_pid" || fail "seam-edge failed across the restart: $(cat "$work/b.out")"
  got=$(grep '^edge weights sha256' "$work/b.out")
  [ "$got" = "$ref" ] || fail "weights after the restart differ: $got vs $ref"
  reconnects=$(grep -o 'reconnects [0-9]*' "$work/b.out")
  [ "$reconnects" != "reconnects 0" ] || fail "no reconnect counted: $(cat "$work/b.out")"
  replayed=$(($(wc -l <"$work/b.jsonl") - steps))
  echo "server killed after step 13 and restarted: $reconnects, $replayed steps replayed, final weights identical"
  ;;
progress)
  start_server
  edge_job_dir "$work/edge-job"
  cmd="$build/tools/seam-edge $(edge_args "$work/t" t) --steps 6"
  # On a terminal: a bar rewritten in place.
  script -qefc "$cmd" /dev/null >"$work/tty.out" </dev/null || fail "under script: $(cat "$work/tty.out")"
  grep -q $'\r' "$work/tty.out" || fail "no carriage return on a terminal"
  grep -aq '\[########################\] epoch 1/1 step 6/6 loss [0-9.]* acc [0-9.]* up [0-9.]* MB down [0-9.]* MB x[0-9.]* ETA' \
    "$work/tty.out" || fail "no full bar: $(cat -v "$work/tty.out")"
  # Not a terminal: plain lines, no escapes.
  $build/tools/seam-edge $(edge_args "$work/p" p) --steps 6 --log-every 2 >"$work/plain.out"
  ! grep -q $'\r\|\033' "$work/plain.out" || fail "escape codes in plain output"
  [ "$(grep -c '^epoch 1/1 step [246]/6 loss' "$work/plain.out")" = 3 ] || fail "plain lines: $(cat "$work/plain.out")"
  grep -q '^bytes up .* (fp32 .*, x[0-9.]*), down' "$work/plain.out" || fail "no summary: $(cat "$work/plain.out")"
  grep -q '^time per step (mean ms): edge' "$work/plain.out" || fail "no time split"
  grep -q '^final test accuracy 0\.[0-9]* (64 test examples, through the cloud' "$work/plain.out" ||
    fail "no test accuracy: $(cat "$work/plain.out")"
  # Options from --config (same names as the flags), and a bad value refused with exit 2.
  printf 'progress = lines\nlog-every = 3\n' >"$work/edge.conf"
  "$build/tools/seam-edge" $(EVAL=--eval-limit=-1 edge_args "$work/q" q) --steps 3 --config "$work/edge.conf" >"$work/conf.out"
  [ "$(grep -c '^epoch 1/1 step 3/3 loss' "$work/conf.out")" = 1 ] || fail "--config: $(cat "$work/conf.out")"
  rc=0
  "$build/tools/seam-edge" $(edge_args "$work/q" q) --progress fancy >"$work/bad.out" 2>&1 || rc=$?
  [ "$rc" = 2 ] && grep -q "progress must be auto, bar, lines or none (got 'fancy')" "$work/bad.out" ||
    fail "bad --progress: exit $rc: $(cat "$work/bad.out")"
  echo "bar on a terminal, plain lines otherwise, --config read, a bad flag refused (exit 2)"
  ;;
python)
  # Plain SGD, so that torch.optim.SGD in the script is the job's optimizer.
  CHECKPOINT_EVERY=0  # each side picks its own: the script keeps no checkpoints
  OPTIM='optimizer = sgd\nlr = 0.01\nwarmup = 0\nschedule = constant\nclip = 0\nweight-decay = 0\n'
  start_server
  edge_job_dir "$work/edge-job"
  PYTHONPATH="$build/edge_client/python${PYTHONPATH:+:$PYTHONPATH}" /usr/bin/python3 \
    "$src/tests/edge_client/python_vs_cpp.py" "$port" "$work/pki" "$work/edge-job" "$work" "$build/tools/seam-edge"
  ;;
*)
  fail "unknown mode '$mode'"
  ;;
esac
