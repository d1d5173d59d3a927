#!/usr/bin/env bash
# Starts a whole inference pipeline on this machine from one config file: every
# stage (seam-stage serve, last first, each told where the next one listens),
# then the source (seam-stage source), which prints one JSON line of accuracy,
# throughput and latency. Stages are stopped (SIGTERM) when the source ends; the
# script exits with the source's status. Stage logs go to LOGDIR (default a
# temporary folder, printed).
#
# Usage: scripts/pipeline.sh CONFIG [LOGDIR]
# CONFIG, one "key = value" per line ('#' comments):
#   bin = build/tools/seam-stage      the program (default: build/tools/seam-stage)
#   certs = /tmp/seam-pki             a PKI from scripts/gen-certs.sh (made there if missing)
#   checkpoint = vit.pt               weights and config (seam-train pretrain / seam-ptq train)
#   task = fashion-mnist              the source's data (test split), or
#   input = images.npy                a tensor file (torch.save or .npy) whose rows are sent
#   micro_batch = 32
#   batches = 40
#   source_port = 7300                where results return
#   source_args = --in-flight 4       more seam-stage source flags (optional)
#   stage = s1 7301 0:3 --codec none  NAME PORT BLOCKS [more seam-stage serve flags]
#   stage = s2 7302 3:6               (in order; the last one's next hop is the source)
set -euo pipefail
[ $# -ge 1 ] || { sed -n '2,22p' "$0"; exit 2; }
conf=$1
logdir=${2:-$(mktemp -d /tmp/seam-pipeline.XXXXXX)}
mkdir -p "$logdir"
[ -f "$conf" ] || { echo "pipeline.sh: no config file '$conf'" >&2; exit 2; }
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/build/tools/seam-stage" certs="" checkpoint="" task="" input="" micro_batch=8 batches=20 source_port=7300 source_args=""
names=() ports=() blocks=() extras=()
while IFS= read -r line || [ -n "$line" ]; do
  line=${line%%#*}
  [[ "$line" =~ ^[[:space:]]*$ ]] && continue
  key=$(echo "${line%%=*}" | xargs) value=$(echo "${line#*=}" | xargs)
  case "$key" in
    bin) bin=$value ;;
    certs) certs=$value ;;
    checkpoint) checkpoint=$value ;;
    task) task=$value ;;
    input) input=$value ;;
    micro_batch) micro_batch=$value ;;
    batches) batches=$value ;;
    source_port) source_port=$value ;;
    source_args) source_args=$value ;;
    stage)
      read -r n p b rest <<<"$value"
      [ -n "${b:-}" ] || { echo "pipeline.sh: '$conf': stage needs NAME PORT BLOCKS, got '$value'" >&2; exit 2; }
      names+=("$n") ports+=("$p") blocks+=("$b") extras+=("${rest:-}") ;;
    *) echo "pipeline.sh: '$conf': unknown key '$key'" >&2; exit 2 ;;
  esac
done <"$conf"
[ ${#names[@]} -ge 1 ] || { echo "pipeline.sh: '$conf' has no stage lines" >&2; exit 2; }
[ -n "$certs" ] || { echo "pipeline.sh: '$conf' needs certs = DIR" >&2; exit 2; }
[ -n "$task$input" ] || { echo "pipeline.sh: '$conf' needs task or input" >&2; exit 2; }
[ -x "$bin" ] || { echo "pipeline.sh: no program '$bin' (build the seam-stage target)" >&2; exit 2; }
[ -f "$certs/ca.pem" ] || bash "$root/scripts/gen-certs.sh" "$certs" >/dev/null
tls=(--cert "$certs/server.pem" --key "$certs/server.key" --ca "$certs/ca.pem"
     --client-cert "$certs/client.pem" --client-key "$certs/client.key")
model=()
[ -n "$checkpoint" ] && model=(--checkpoint "$checkpoint")

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  # A stopped (frozen) stage never sees SIGTERM: kill what is left after 5 s.
  for _ in $(seq 1 50); do
    alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
next="127.0.0.1:$source_port" next_name=source
for ((i = ${#names[@]} - 1; i >= 0; i--)); do
  log="$logdir/${names[$i]}.out"
  # shellcheck disable=SC2086  # extras are flags, split on purpose
  "$bin" serve --name "${names[$i]}" --port "${ports[$i]}" --blocks "${blocks[$i]}" "${model[@]}" "${tls[@]}" \
    --next "$next" --next-name "$next_name" --log "$logdir/${names[$i]}.tsv" ${extras[$i]} >"$log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 300); do
    grep -q listening "$log" 2>/dev/null && break
    kill -0 "${pids[-1]}" 2>/dev/null || { echo "pipeline.sh: stage ${names[$i]} exited:" >&2; cat "$log" >&2; exit 1; }
    sleep 0.1
  done
  grep -q listening "$log" || { echo "pipeline.sh: stage ${names[$i]} did not start within 30 s" >&2; exit 1; }
  next="127.0.0.1:${ports[$i]}" next_name=${names[$i]}
done
stages=""
for i in "${!names[@]}"; do stages+="${stages:+,}${names[$i]}@127.0.0.1:${ports[$i]}"; done
echo "pipeline.sh: ${#names[@]} stage(s) up, logs in $logdir" >&2
data=(--task "$task")
[ -n "$input" ] && data=(--input "$input")
# shellcheck disable=SC2086
"$bin" source --port "$source_port" --first "$next" --stages "$stages" "${data[@]}" "${model[@]}" "${tls[@]}" \
  --micro-batch "$micro_batch" --batches "$batches" --times "$logdir/source-times.tsv" $source_args
