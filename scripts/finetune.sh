#!/usr/bin/env bash
# Launches the edge side of a fine-tuning job against a running seam-cloud:
# runs seam-edge with the job named by JOB_FILE (its file name), the edge
# settings of its task (configs/TASK.edge: data and batch, TASK being the part
# of the job's name before the first '-'), the job's step count, and this
# client's certificate. Progress is shown live; per-step metrics go to a JSONL
# log (scripts/plots.sh draws them); Ctrl-C saves a checkpoint with the cloud
# and the same command resumes. See docs/deploy.md.
#
# Usage: scripts/finetune.sh [options] JOB_FILE [-- extra seam-edge flags]
#   --server HOST:PORT   the seam-cloud server (default 127.0.0.1:7433)
#   --pki DIR            certificates from scripts/gen-certs.sh (default pki):
#   --client NAME        DIR/ca.pem, DIR/NAME.pem, DIR/NAME.key (default client)
#   --job-dir DIR        the job's front half (default STATE_DIR/job; downloaded from
#                        the server on the first join, checked against its manifest)
#   --state-dir DIR      edge checkpoints (default out/edge/NAME-CLIENT)
#   --edge-conf FILE     edge settings (default configs/TASK.edge)
#   --steps N            steps to train (default: the job file's steps)
#   --metrics-log FILE   per-step JSONL (default STATE_DIR/metrics.jsonl)
# SEAM_BUILD_DIR (default build) holds seam-edge.
set -euo pipefail
usage() { sed -n '2,/^set /s/^# \{0,1\}//p' "$0" | sed '$d'; }
server=127.0.0.1:7433 pki=pki client=client job_dir="" state_dir="" edge_conf="" steps="" metrics=""
while [ $# -gt 0 ]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --server | --pki | --client | --job-dir | --state-dir | --edge-conf | --steps | --metrics-log)
      [ $# -ge 2 ] || { echo "finetune.sh: $1 needs a value" >&2; exit 2; }
      case "$1" in
        --server) server=$2 ;; --pki) pki=$2 ;; --client) client=$2 ;; --job-dir) job_dir=$2 ;;
        --state-dir) state_dir=$2 ;; --edge-conf) edge_conf=$2 ;; --steps) steps=$2 ;; --metrics-log) metrics=$2 ;;
      esac
      shift 2 ;;
    --) echo "finetune.sh: give JOB_FILE before --" >&2; exit 2 ;;
    -*) echo "finetune.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    *) break ;;
  esac
done
[ $# -ge 1 ] || { echo "finetune.sh: need a JOB_FILE (see --help)" >&2; exit 2; }
job=$1; shift
if [ $# -gt 0 ]; then
  [ "$1" = "--" ] || { echo "finetune.sh: unexpected '$1' after JOB_FILE (extra seam-edge flags go after --)" >&2; exit 2; }
  shift
fi
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/scripts/lib/jobs.sh"
[ -f "$job" ] || { echo "finetune.sh: job file '$job' does not exist" >&2; exit 2; }
name=$(basename "$job" .job)
task=${name%%-*}
edge_conf=${edge_conf:-$root/configs/$task.edge}
[ -f "$edge_conf" ] || { echo "finetune.sh: no edge settings '$edge_conf' (give --edge-conf)" >&2; exit 2; }
steps=${steps:-$(job_value "$job" steps)}
[[ "$steps" =~ ^[1-9][0-9]*$ ]] || { echo "finetune.sh: --steps must be a positive number (got '$steps')" >&2; exit 2; }
for f in "$pki/ca.pem" "$pki/$client.pem" "$pki/$client.key"; do
  [ -f "$f" ] || { echo "finetune.sh: '$f' does not exist (make certificates with scripts/gen-certs.sh)" >&2; exit 2; }
done
state_dir=${state_dir:-out/edge/$name-$client}
job_dir=${job_dir:-$state_dir/job}
metrics=${metrics:-$state_dir/metrics.jsonl}
edge="${SEAM_BUILD_DIR:-$root/build}/tools/seam-edge"
[ -x "$edge" ] || { echo "finetune.sh: '$edge' is not built (cmake --build build --target seam-edge)" >&2; exit 1; }
mkdir -p "$state_dir" "$(dirname "$metrics")"
. "$root/scripts/blas-env.sh"
exec "$edge" --server "$server" --ca "$pki/ca.pem" --cert "$pki/$client.pem" --key "$pki/$client.key" \
  --job "$name" --job-dir "$job_dir" --state-dir "$state_dir" --client-id "$client" \
  --config "$edge_conf" --steps "$steps" --metrics-log "$metrics" "$@"
