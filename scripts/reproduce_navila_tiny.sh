#!/usr/bin/env bash
# Rebuild the shipped models/navila-tiny (run DG, docs/MODEL_CARD.md) from nothing, in one command:
#   stage 0  the depth tower: r2r_train rebuilt in houses 40-119 (in a cache of its own, so the navigator's
#            r2r_train in houses 0-39 is untouched), collected with per-frame depth, `train-tower --tasks depth`;
#   stage 1  scripts/train_embedded.sh on that tower: expert data of houses 0-39, the navigator D0;
#   stage 2  one DAgger round on D0 (the shipped settings), giving DG;
#   stage 3  the progress monitor: DG fine-tuned on the same data with `train --progress-loss-weight` (run M0,
#            session 30), installed with the monitor's stop threshold (MONITOR_STOP, chosen on val_seen).
#
#   scripts/reproduce_navila_tiny.sh              # ~2.5 h on 2 CPU cores (session 22: stage 0 16 min, 1 70, 2 28;
#                                                 # session 30: stage 3 10 min)
#   INSTALL=1 scripts/reproduce_navila_tiny.sh    # and install the result as models/navila-tiny, stage 0's
#                                                 # provenance in models/navila-tiny/training/tower/, DG's and
#                                                 # D0's in training/before/
#   EVAL=1 scripts/reproduce_navila_tiny.sh       # and evaluate D0 and DG on r2r_val_unseen/val_seen with the
#                                                 # non-learned baselines (train_embedded.sh's step 3), and M0
#                                                 # with its stop threshold
#
# Compare the result with the shipped model episode by episode:
#   navila-agent eval --model runs/navila-tiny_monitor --monitor-stop 0.9 --split r2r_val_unseen --output runs/m0_unseen
#   navila-agent compare models/navila-tiny/training/eval/r2r_val_unseen runs/m0_unseen
#
# Every step resumes: rerun after an interruption (a built split is kept, collection skips finished trajectories,
# train-tower and train restart from their newest state). Settings (environment variables):
#   TOWER_CACHE   stage 0's cache (default: $NAVILA_AGENT_CACHE-h40, i.e. ~/.cache/navila-agent-h40)
#   TOWER_DATA    stage 0's collection (default: $DATA/qa40d)      TOWER_RUN  its tower (default: runs/tower_depth)
#   TOWER_HOUSES, TOWER_EPISODES, TOWER_LIMIT, TOWER_EPOCHS           stage 0's size (80, 26, 8000, 6)
#   RUN, DATA, STEPS, LIMIT, SEED, EVAL, EVAL_LIMIT, DAGGER_STEPS, FEATURE_WORKERS, INSTALL: as train_embedded.sh
#   (EVAL defaults to 0 here). The DAgger round's settings are the shipped ones unless set.
#   MONITOR_STEPS, MONITOR_WEIGHT, MONITOR_STOP, MONITOR_BF16   stage 3 (1500, 1.0, 0.9; bf16 yes where the CPU has
#                                                               bf16 instructions, else no)
set -euo pipefail

PYTHON=${PYTHON:-python}
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/install_model.sh"  # install_model, copy_evals, finished_model
navila() {
  if command -v navila-agent >/dev/null 2>&1; then navila-agent "$@"
  else "$PYTHON" -c 'from benchmarks.cli import main; main()' "$@"; fi
}
CACHE=${NAVILA_AGENT_CACHE:-$HOME/.cache/navila-agent}
export DATA=${DATA:-$CACHE/train_data}
TOWER_CACHE=${TOWER_CACHE:-$CACHE-h40}
TOWER_DATA=${TOWER_DATA:-$DATA/qa40d}
TOWER_RUN=${TOWER_RUN:-runs/tower_depth}
TOWER_HOUSES=${TOWER_HOUSES:-80}
TOWER_EPISODES=${TOWER_EPISODES:-26}
TOWER_LIMIT=${TOWER_LIMIT:-8000}
TOWER_EPOCHS=${TOWER_EPOCHS:-6}
RUN=${RUN:-runs/navila-tiny}
MONITOR_STEPS=${MONITOR_STEPS:-1500}
MONITOR_WEIGHT=${MONITOR_WEIGHT:-1.0}
MONITOR_STOP=${MONITOR_STOP:-0.9}
if [[ "$(realpath -m "$TOWER_CACHE")" == "$(realpath -m "$CACHE")" ]]; then
  # One cache would hold one r2r_train: stage 0's (houses 40-119) would replace the navigator's (houses 0-39).
  echo "TOWER_CACHE must differ from NAVILA_AGENT_CACHE ($CACHE): stage 0 builds r2r_train in other houses" >&2
  exit 2
fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

echo "== 0. the depth tower: r2r_train in houses 40-$((40 + TOWER_HOUSES - 1)), depth per frame, train-tower"
NAVILA_AGENT_CACHE=$TOWER_CACHE navila data build --split r2r_train --first-house 40 --houses "$TOWER_HOUSES" \
  --episodes "$TOWER_EPISODES"
NAVILA_AGENT_CACHE=$TOWER_CACHE navila collect --split r2r_train --output "$TOWER_DATA" --every 4 \
  --scene-qa-every 2 --frame-codec npz --depth-size 28
navila train-tower --samples "$TOWER_DATA" --output "$TOWER_RUN" --init embedded --tasks depth --keep best \
  --limit "$TOWER_LIMIT" --epochs "$TOWER_EPOCHS"

echo "== 1-2. the navigator on that tower (D0), then one DAgger round (DG): scripts/train_embedded.sh"
VISION_TOWER=$TOWER_RUN DAGGER=1 DAGGER_BETAS=${DAGGER_BETAS:-0.5} DAGGER_STEPS=${DAGGER_STEPS:-1500} \
  DAGGER_LRS=${DAGGER_LRS:-2e-4} DAGGER_REBALANCE=${DAGGER_REBALANCE:-0} DAGGER_WEIGHT=${DAGGER_WEIGHT:-2} \
  EVAL=${EVAL:-0} INSTALL=0 RUN=$RUN PYTHON=$PYTHON "$HERE/train_embedded.sh"

echo "== 3. the progress monitor: DG fine-tuned $MONITOR_STEPS steps with --progress-loss-weight $MONITOR_WEIGHT (M0)"
DG=$(finished_model "${RUN}_dagger1")
# bf16 autocast on the CPU, as M0 was trained (sessions 25-30: 1.3x faster on a CPU with AMX). A CPU without bf16
# instructions emulates it (session 32: 24x slower than fp32 on an AVX2-only AMD EPYC), so there the default is fp32;
# training does not reproduce bit for bit across CPUs anyway (session 22).
MONITOR_BF16=${MONITOR_BF16:-$("$PYTHON" -c 'from vlm.train.trainer import bf16_cpu_flags; print("yes" if bf16_cpu_flags() else "no")')}
MONITOR_RUN=${RUN}_monitor
navila train --data-mixture "$DATA/r2r_gen+$DATA/r2r_dagger1*2" --model "$DG" --output "$MONITOR_RUN" \
  --progress-loss-weight "$MONITOR_WEIGHT" --bf16 "$MONITOR_BF16" --steps "$MONITOR_STEPS" --batch-size 16 --lr 2e-4 \
  --warmup-ratio 0.03 --action-token-weight 5.0 --save-every 100 --log-every 10 --eval-every "$MONITOR_STEPS" \
  --eval-limit 0 --seed "${SEED:-0}" --feature-workers "${FEATURE_WORKERS:-2}" \
  --eval-samples "$DATA/r2r_val_seen_samples" --eval-samples-limit 300 --device cpu
FINAL=$(finished_model "$MONITOR_RUN")
if [[ "${EVAL:-0}" == 1 ]]; then
  eval_flag=(); [[ -n "${EVAL_LIMIT:-}" ]] && eval_flag=(--limit "$EVAL_LIMIT")
  for split in r2r_val_unseen r2r_val_seen; do
    navila eval --model "$FINAL" --split "$split" --monitor-stop "$MONITOR_STOP" --output "$MONITOR_RUN/eval_$split" \
      "${eval_flag[@]}"
  done
fi

if [[ "${INSTALL:-0}" == 1 ]]; then
  echo "== install $FINAL as models/navila-tiny, its progress monitor stopping at $MONITOR_STOP"
  # M0's config, log and evaluations in training/, D0's in training/before/<RUN>/ (install_model), DG's in
  # training/before/<RUN>_dagger1/.
  install_model "$FINAL" "$RUN" "$DATA" "$DATA/r2r_gen" 0 1 models/navila-tiny
  dg_before="models/navila-tiny/training/before/$(basename "${RUN}_dagger1")"
  mkdir -p "$dg_before"
  cp "${RUN}_dagger1/train_config.json" "${RUN}_dagger1/train_log.jsonl" "$dg_before/"
  copy_evals "${RUN}_dagger1" "$dg_before"
  "$PYTHON" -c 'import sys; from vlm.progress_head import set_stop_threshold; set_stop_threshold(sys.argv[1], float(sys.argv[2]))' \
    models/navila-tiny "$MONITOR_STOP"
  tower=models/navila-tiny/training/tower     # stage 0's provenance beside the navigator's
  mkdir -p "$tower"
  cp "$TOWER_RUN/tower_facts/summary.json" "$TOWER_RUN/tower_facts/log.jsonl" "$tower/"
  cp "$TOWER_DATA/manifest.json" "$tower/data_manifest.json"
  echo "stage 0's summary, log and data manifest in $tower/"
fi
