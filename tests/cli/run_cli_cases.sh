#!/usr/bin/env bash
# Feeds Seam's programs bad input, one table per program, and checks each case:
# a non-zero exit, no signal, and a message naming the file or flag and what was
# wrong. Valid runs are checked for exit 0, and JSON output with a JSON parser.
#   run_cli_cases.sh codec PATH/seam-codec
#   run_cli_cases.sh train PATH/seam-train
set -u
which_table=${1:?codec or train} bin=${2:?path of the program}
work=$(mktemp -d "${TMPDIR:-/tmp}/seam_cli.XXXXXX")
trap 'rm -rf "$work"' EXIT
py=/usr/bin/python3  # Debian's, with python3-torch and numpy
failed=0 ran=0

# expect KIND NAME REGEX ARGS...: runs the program on ARGS. KIND bad: it must exit
# 1..127 (a refusal, not a signal); KIND good: it must exit 0. Either way its
# output must match REGEX (grep -E).
expect() {
  local kind=$1 name=$2 re=$3 out rc why=
  shift 3
  out=$("$bin" "$@" 2>&1)
  rc=$?
  ran=$((ran + 1))
  if [ "$kind" = good ]; then
    ((rc == 0)) || why="exit $rc, expected 0"
  elif ((rc == 0)); then
    why="exit 0, expected a refusal"
  elif ((rc >= 128)); then
    why="killed by signal $((rc - 128))"
  fi
  [ -n "$why" ] || grep -Eq -- "$re" <<<"$out" || why="exit $rc, but the output does not match /$re/"
  if [ -z "$why" ]; then
    echo "ok   $name (exit $rc)"
    return 0
  fi
  echo "FAIL $name: $why"
  sed 's/^/     | /' <<<"$out" | tail -n 20
  failed=$((failed + 1))
}
bad() { expect bad "$@"; }
good() { expect good "$@"; }

# A .npy file with HEADER_DICT over DATA_BYTES zero bytes (v1.0 format).
npy() {
  local path=$1 dict=$2 nbytes=$3
  "$py" - "$path" "$dict" "$nbytes" <<'PY'
import sys
path, d, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
h = d.encode()
h += b' ' * (63 - (10 + len(h)) % 64) + b'\n'
open(path, 'wb').write(b'\x93NUMPY\x01\x00' + len(h).to_bytes(2, 'little') + h + bytes(n))
PY
}

codec_table() {
  npy "$work/huge.npy" "{'descr': '<f4', 'fortran_order': False, 'shape': (100000, 100000), }" 16
  npy "$work/i32.npy" "{'descr': '<i4', 'fortran_order': False, 'shape': (4,), }" 16
  npy "$work/empty.npy" "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 3), }" 0
  npy "$work/ok.NPY" "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 8), }" 64
  printf 'not a tensor' >"$work/junk.bin"
  "$py" - "$work" <<'PY'
import sys, torch
d = sys.argv[1]
t = torch.randn(4, 16)
torch.save({'w': t}, d + '/dict.pt')
torch.save(t, d + '/legacy.pt', _use_new_zipfile_serialization=False)
torch.save(t, d + '/good.pt')
open(d + '/truncated.pt', 'wb').write(open(d + '/good.pt', 'rb').read()[:200])
torch.save(torch.arange(8), d + '/int64.pt')
torch.save(t.half(), d + '/half.pt')
for name, v in (('nan', float('nan')), ('inf', float('inf'))):
    x = t.clone(); x[1, 2] = v; torch.save(x, d + '/' + name + '.pt')
PY
  local ev=(eval --repeat 1 --threads 1)
  bad dir-input "tensor file '$work' is a directory, not a file" "${ev[@]}" --spec none --input "$work"
  bad missing-input "tensor file '$work/nope.pt' does not exist" "${ev[@]}" --spec none --input "$work/nope.pt"
  bad huge-npy-header "huge.npy: .*needs 40000000000 data bytes, the file has 16" "${ev[@]}" --spec none --input "$work/huge.npy"
  bad int32-npy "i32.npy: .*dtype '<i4' is not supported" "${ev[@]}" --spec none --input "$work/i32.npy"
  bad int64-pt "int64.pt: dtype Long is not supported" "${ev[@]}" --spec none --input "$work/int64.pt"
  bad dict-pt "dict.pt: a torch.save file that does not hold a single tensor .*save one with torch.save\(t, path\)" "${ev[@]}" --spec none --input "$work/dict.pt"
  bad legacy-pt "legacy.pt: a legacy \(pre-zip\) torch.save" "${ev[@]}" --spec none --input "$work/legacy.pt"
  bad truncated-pt "truncated.pt: a truncated or damaged zip file" "${ev[@]}" --spec none --input "$work/truncated.pt"
  bad junk-file "junk.bin: neither a .npy file .* nor a torch.save zip file" "${ev[@]}" --spec none --input "$work/junk.bin"
  bad empty-tensor "--input .*empty.npy: the tensor is empty \(shape \[0, 3\]\)" "${ev[@]}" --spec none --input "$work/empty.npy"
  local spec
  for spec in none fp16 bf16; do
    bad "nan-$spec" "--input .*nan.pt: 1 of 64 values are NaN or Inf" "${ev[@]}" --spec "$spec" --input "$work/nan.pt"
    bad "inf-$spec" "--input .*inf.pt: 1 of 64 values are NaN or Inf" "${ev[@]}" --spec "$spec" --input "$work/inf.pt"
  done
  bad lowrank-x9 "more than 256 parts at stage 'lowrank'" "${ev[@]}" --synthetic gaussian --shape 4,8 \
    --spec "$(printf 'lowrank:rank=1+%.0s' 1 2 3 4 5 6 7 8)lowrank:rank=1"
  bad stages-16 "codec spec has 17 stages \(with the implicit final none\); at most 16" "${ev[@]}" --synthetic gaussian \
    --shape 4,8 --spec "$(printf 'lowrank:rank=1+%.0s' {1..15})lowrank:rank=1"
  bad delta-after-lowrank "stage 'delta' takes one tensor but follows stages that split it into 2 parts" "${ev[@]}" \
    --synthetic gaussian --shape 4,8 --spec lowrank:rank=2+delta
  bad bad-shape "--shape: '4,-1' is not a list of positive integers" "${ev[@]}" --spec none --synthetic gaussian --shape 4,-1
  bad bad-repeat "--repeat must be in \[1, 10000\]" eval --repeat 0 --spec none --synthetic gaussian
  bad unknown-flag "unrecognised option '--bogus'" eval --bogus
  bad unknown-command "unknown command 'evla'" evla
  # Valid runs: the magic, not the suffix, picks the format; fp16 keeps 2 bytes per element.
  good npy-upper-suffix "bytes_in +64" "${ev[@]}" --spec none --input "$work/ok.NPY"
  good half-own-dtype "bytes_in +128" "${ev[@]}" --spec none --input "$work/half.pt"
  local json rc
  json=$("$bin" "${ev[@]}" --spec quant:bits=4 --input "$work/good.pt" --json 2>/dev/null)
  rc=$?
  ran=$((ran + 1))
  if ((rc == 0)) && "$py" -m json.tool <<<"$json" >/dev/null; then
    echo "ok   json-output"
  else
    echo "FAIL json-output: exit $rc, not JSON: $json"
    failed=$((failed + 1))
  fi
}

train_table() {
  printf '{"text": "a", "label": "x"}\n{"text: "b", "label": "y"}\n' >"$work/bad.jsonl"
  printf 'steps = 3\nbogus-key = 1\n' >"$work/unknown.cfg"
  touch "$work/a_file"
  local tiny=(--width 16 --depth 1 --heads 2 --mlp-ratio 1 --batch 4 --threads 1 --log-every 0)
  # One real pretrain, for the checkpoint cases: bert at --max-len 32.
  good pretrain-bert "pretrain done: 1 steps" pretrain --model bert --task fortunes-language --max-per-class 20 \
    --max-len 32 --steps 1 "${tiny[@]}" --out "$work/ck/bert.pt"
  bad config-dir "--config '$work' is a directory" finetune --config "$work"
  bad config-missing "--config '$work/none.cfg' does not exist" finetune --config "$work/none.cfg"
  bad config-unknown-key "--config '$work/unknown.cfg': .*bogus-key" finetune --config "$work/unknown.cfg"
  bad negative-steps "--steps must be >= 1 \(got -5\)" finetune --steps -5
  bad negative-seed "--seed must be 0\.\.9223372036854775807 \(a negative number wraps around" finetune --seed -1
  bad zero-batch "--batch must be >= 1 \(got 0\)" finetune --batch 0
  bad negative-eval-limit "--eval-limit must be >= 0" finetune --eval-limit -3
  bad out-is-dir "--out '$work' is a directory" pretrain --out "$work"
  bad out-parent-file "--out '$work/a_file/x.pt': '$work/a_file' is not a folder" pretrain --out "$work/a_file/x.pt"
  bad vit-on-text "--model vit reads images, but task 'fortunes-language' gives text" finetune --model vit \
    --task fortunes-language --max-per-class 20 "${tiny[@]}"
  bad bert-on-images "--model bert reads text, but task 'fashion-mnist:0-1' gives images" finetune --model bert \
    --task fashion-mnist:0-1 "${tiny[@]}"
  bad jsonl-names-file "JSONL file '$work/bad.jsonl', line 2: " finetune --model bert --task "jsonl:$work/bad.jsonl"
  bad vit-from-bert "pretrained checkpoint '$work/ck/bert.pt' holds a bert model, but the model is vit" finetune \
    --model vit --task fashion-mnist:0-1 --pretrained "$work/ck/bert.pt" "${tiny[@]}"
  bad pretrained-missing "checkpoint '$work/nope.pt' does not exist" finetune --model bert --task fortunes-language --max-per-class 20 \
    --pretrained "$work/nope.pt" "${tiny[@]}"
  bad pretrained-dir "checkpoint '$work' is a directory" finetune --model bert --task fortunes-language \
    --max-per-class 20 --pretrained "$work" "${tiny[@]}"
  bad gpt-finetune "finetune classifies: use --model vit, cnn or bert" finetune --model gpt
  bad unknown-command "unknown command 'pretrian'" pretrian
  # Loading a checkpoint made at another --max-len says which tensors were not loaded.
  good partial-load-is-reported "shape \[1, 32, 16\] in the checkpoint, \[1, 64, 16\] in the model" finetune --model bert --task fortunes-language \
    --max-per-class 20 --max-len 64 --steps 1 --eval-limit 8 "${tiny[@]}" --pretrained "$work/ck/bert.pt"
}

"${which_table}_table"
echo "$((ran - failed)) of $ran cases passed"
((failed == 0))
