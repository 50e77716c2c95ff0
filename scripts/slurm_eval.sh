#!/usr/bin/env bash
# Multi-node, multi-GPU `navila-agent eval` on SLURM, resubmitted automatically when it hits the time limit.
#
#   sbatch --nodes 4 --gpus-per-node 8 --time 04:00:00 scripts/slurm_eval.sh \
#       --agent navila --model /ckpt/navila-llama3-8b --split r2r_val_unseen --output runs/navila-8b-r2r
#
# One task per node (srun), each task one rank (SLURM_PROCID / SLURM_NTASKS), each rank one worker per GPU of its
# node. Every rank appends to its own results-rankRRR.jsonl in the shared --output folder; the last rank to finish
# merges them into results.jsonl and writes summary.json. --output is required: it is what makes a requeued job
# resume (recorded episodes are skipped; a kill mid-episode only loses that episode).
#
# Time limit: SLURM sends USR1 to this script 120 s before the limit (--signal=B:USR1@120); the trap requeues the
# job (`scontrol requeue`, needs --requeue) or, where requeueing is not allowed, submits a copy that waits for
# this one (that copy gets this file's #SBATCH lines, not options given to the first sbatch: edit them here when
# requeueing is disabled on your cluster). At most NAVILA_MAX_RESUBMITS (default 10) times. After all ranks finish, if the summary is missing
# (a rank crashed), run `navila-agent eval --merge-only --output DIR` to see what is recorded.
#
# Environment: NAVILA_EVAL_BIN (default `navila-agent`) is the command run per rank; NAVILA_GPUS overrides the GPU
# list of each node (default 0..N-1 from SLURM_GPUS_ON_NODE).
#
#SBATCH --job-name=navila-eval
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=16
#SBATCH --time=04:00:00
#SBATCH --signal=B:USR1@120
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=slurm-%x-%j.out

set -euo pipefail

EVAL_BIN=${NAVILA_EVAL_BIN:-navila-agent}
MAX_RESUBMITS=${NAVILA_MAX_RESUBMITS:-10}
RESTARTS=${SLURM_RESTART_COUNT:-${NAVILA_RESUBMIT_COUNT:-0}}

if [[ " $* " != *" --output "* && " $* " != *" --output="* ]]; then
  echo "slurm_eval.sh: pass --output DIR (a shared folder): a requeued job resumes from it" >&2
  exit 2
fi

gpu_list() {
  if [[ -n "${NAVILA_GPUS:-}" ]]; then echo "$NAVILA_GPUS"; return; fi
  local n=${SLURM_GPUS_ON_NODE:-${SLURM_GPUS_PER_NODE:-0}}
  n=${n##*:}  # "gpu:8" -> "8"
  if [[ "$n" -le 0 ]]; then echo ""; return; fi
  seq -s, 0 $((n - 1))
}

resubmit() {
  echo "slurm_eval.sh: time limit near (restart ${RESTARTS} of at most ${MAX_RESUBMITS})" >&2
  if [[ "$RESTARTS" -ge "$MAX_RESUBMITS" ]]; then
    echo "slurm_eval.sh: not resubmitting (NAVILA_MAX_RESUBMITS=${MAX_RESUBMITS}); rerun the same command to resume" >&2
    exit 1
  fi
  if scontrol requeue "${SLURM_JOB_ID}"; then
    echo "slurm_eval.sh: requeued job ${SLURM_JOB_ID}; it resumes from the results already recorded" >&2
  else
    local script=${NAVILA_SLURM_SCRIPT:-$(scontrol show job "${SLURM_JOB_ID}" | sed -n 's/^ *Command=\([^ ]*\).*/\1/p')}
    NAVILA_RESUBMIT_COUNT=$((RESTARTS + 1)) sbatch --export=ALL --dependency="afterany:${SLURM_JOB_ID}" \
      "$script" "$@"
    echo "slurm_eval.sh: submitted a follow-up job after ${SLURM_JOB_ID}" >&2
  fi
  kill -TERM "${SRUN_PID:-0}" 2>/dev/null || true
  exit 0
}
trap 'resubmit "$@"' USR1

GPUS=$(gpu_list)
GPU_ARGS=()
if [[ -n "$GPUS" ]]; then GPU_ARGS=(--gpus "$GPUS"); fi

echo "slurm_eval.sh: job ${SLURM_JOB_ID:-?} on ${SLURM_JOB_NUM_NODES:-1} node(s), GPUs per node: ${GPUS:-none}" >&2
# In the background + wait, so bash runs the USR1 trap at once instead of after srun returns.
srun --ntasks-per-node=1 --kill-on-bad-exit=0 $EVAL_BIN eval "$@" "${GPU_ARGS[@]}" &
SRUN_PID=$!
wait "$SRUN_PID"
