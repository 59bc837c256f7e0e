#!/bin/bash
# Submit AIFT as N shard tasks plus a merge job that starts only when all of them succeeded (afterok).
#
#   scripts/slurm/aift_submit.sh RECIPE N [--key value ...]        e.g. recipes/zephyr-7b.yaml 16
#
# Extra sbatch options for the shard tasks go in AIFT_SBATCH_ARGS, e.g. AIFT_SBATCH_ARGS="--gres=gpu:2
# --partition=gpu" for two GPUs (vLLM tensor_parallel_size 2) per task. Prints both job ids.
set -euo pipefail

USAGE="usage: aift_submit.sh RECIPE SHARDS [--key value ...]"
RECIPE=${1:?$USAGE}
SHARDS=${2:?$USAGE}
shift 2
[[ "$SHARDS" =~ ^[1-9][0-9]*$ ]] || { echo "error: SHARDS must be a positive integer, got '$SHARDS'" >&2; exit 2; }
SCRIPT="$(dirname "$0")/aift_array.slurm"

# A bad recipe fails here, in seconds, not in N queued jobs.
westwind check "$RECIPE" "$@" > /dev/null
mkdir -p logs

read -r -a EXTRA <<< "${AIFT_SBATCH_ARGS:-}"
ARRAY_JOB=$(sbatch --parsable "${EXTRA[@]}" --array="0-$((SHARDS - 1))" "$SCRIPT" "$RECIPE" "$@")
ARRAY_JOB=${ARRAY_JOB%%;*}  # --parsable prints "id" or "id;cluster"
MERGE_JOB=$(sbatch --parsable --dependency="afterok:$ARRAY_JOB" --gres=gpu:0 --cpus-per-task=8 \
  "$SCRIPT" --merge "$RECIPE" "$@")
echo "westwind: AIFT shards: job $ARRAY_JOB (array 0-$((SHARDS - 1))); merge: job ${MERGE_JOB%%;*} (after all succeed)"
