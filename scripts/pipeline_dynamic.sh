#!/usr/bin/env bash
# The dynamic-bandwidth run of docs/pipeline.md: a 2-stage ViT pipeline whose
# stage-to-stage hop crosses a kernel-shaped link. The source and stage s1 run
# in network namespace A, stage s2 in namespace B; the A->B side of the veth
# pair between them has a tc tbf qdisc at 100 Mbit/s, changed to 10 Mbit/s at
# DROP_AT seconds and back at RESTORE_AT. Three runs: QuantPipe's controller
# (--codec quantpipe, target TARGET micro-batches/s), fixed fp32, fixed 2-bit.
# Writes OUT/dyn-MODE/{s1.tsv,source-times.tsv,source.json} and prints one line per run.
# Needs root (ip netns, tc).
# Usage: scripts/pipeline_dynamic.sh SEAM_STAGE OUT CERTS
# Env: DROP_AT (4), RESTORE_AT (12), TARGET (60), BATCHES (900), MICRO_BATCH (64)
set -euo pipefail
stage=$1 out=$2 certs=$3
drop_at=${DROP_AT:-4} restore_at=${RESTORE_AT:-12} target=${TARGET:-60} batches=${BATCHES:-900} mb=${MICRO_BATCH:-64}
a=seam-pa-$$ b=seam-pb-$$ va=vpa$$ vb=vpb$$
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  ip netns del "$a" 2>/dev/null || true
  ip netns del "$b" 2>/dev/null || true
}
trap cleanup EXIT
ip netns add "$a"
ip netns add "$b"
ip link add "$va" type veth peer name "$vb"
ip link set "$va" netns "$a"
ip link set "$vb" netns "$b"
ip -n "$a" addr add 10.13.0.1/24 dev "$va"
ip -n "$b" addr add 10.13.0.2/24 dev "$vb"
for ns in "$a" "$b"; do ip -n "$ns" link set lo up; done
ip -n "$a" link set "$va" up
ip -n "$b" link set "$vb" up
shape() { ip netns exec "$a" tc qdisc "$1" dev "$va" root tbf rate "$2" burst 64kb latency 400ms; }
shape add 100mbit
tls=(--cert "$certs/server.pem" --key "$certs/server.key" --ca "$certs/ca.pem"
     --client-cert "$certs/client.pem" --client-key "$certs/client.key")
wait_listening() {
  for _ in $(seq 1 300); do grep -q listening "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "pipeline_dynamic: no stage in $1" >&2; cat "$1" >&2; return 1
}
for mode in quantpipe fp32 2bit; do
  case $mode in
    quantpipe) codec=(--codec quantpipe --target-rate "$target" --window 8 --clip dsaciq) ;;
    fp32) codec=(--codec none) ;;
    2bit) codec=(--codec quant:bits=2,clip=dsaciq) ;;
  esac
  d="$out/dyn-$mode"
  mkdir -p "$d"
  shape change 100mbit
  ip netns exec "$b" "$stage" serve --name s2 --bind-address 10.13.0.2 --port 7502 --blocks 3:5 \
    --checkpoint "$out/vit.pt" "${tls[@]}" --next 10.13.0.1:7500 --next-name source --next-server-name localhost \
    --threads 1 --log "$d/s2.tsv" >"$d/s2.out" 2>&1 &
  pids+=($!)
  wait_listening "$d/s2.out"
  ip netns exec "$a" "$stage" serve --name s1 --port 7501 --blocks 0:3 --checkpoint "$out/vit.pt" "${tls[@]}" \
    --next 10.13.0.2:7502 --next-name s2 --next-server-name localhost --threads 1 "${codec[@]}" \
    --log "$d/s1.tsv" >"$d/s1.out" 2>&1 &
  pids+=($!)
  wait_listening "$d/s1.out"
  date +%s.%N >"$d/changer-start"
  ( sleep "$drop_at"; shape change 10mbit; sleep $((restore_at - drop_at)); shape change 100mbit ) &
  changer=$!
  ip netns exec "$a" "$stage" source --bind-address 10.13.0.1 --port 7500 --first 127.0.0.1:7501 \
    --stages s1@127.0.0.1:7501 --task fashion-mnist --checkpoint "$out/vit.pt" "${tls[@]}" --threads 1 \
    --micro-batch "$mb" --batches "$batches" --times "$d/source-times.tsv" --result-timeout-ms 30000 >"$d/source.json"
  wait "$changer" 2>/dev/null || true
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  pids=()
  echo "dynamic bandwidth, $mode (${codec[*]}), 100 -> 10 Mbit/s at ${drop_at} s -> 100 at ${restore_at} s, $batches micro-batches of $mb: $(cat "$d/source.json")"
done
