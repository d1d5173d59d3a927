#!/usr/bin/env bash
# The README's run command: a split fine-tuning run between a cloud server and an
# edge client on this machine.
set -euo pipefail
case "${1:-}" in -h | --help) sed -n '2,/^set /s/^# \{0,1\}//p' "$0"; exit 0 ;; esac
cat >&2 <<'MSG'
seam demo: not available yet.
The split fine-tuning job (cloud server + edge client over TLS) has not landed.
What works today: `scripts/test.sh` builds Seam and runs its test suite, and
split fine-tuning runs in one process with `build/tools/seam-train finetune`
(see README.md, "Split fine-tuning in one process").
MSG
exit 2
