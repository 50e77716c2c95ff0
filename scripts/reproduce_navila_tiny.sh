#!/usr/bin/env bash
# Rebuild the shipped models/navila-tiny (run DG, docs/MODEL_CARD.md) from nothing, in one command:
#   stage 0  the depth tower: r2r_train rebuilt in houses 40-119 (in a cache of its own, so the navigator's
#            r2r_train in houses 0-39 is untouched), collected with per-frame depth, `train-tower --tasks depth`;
#   stage 1  scripts/train_embedded.sh on that tower: expert data of houses 0-39, the navigator D0;
#   stage 2  one DAgger round on D0 (the shipped settings), giving DG.
#
#   scripts/reproduce_navila_tiny.sh              # ~2 h on 2 CPU cores (session 22: stage 0 16 min, 1 70, 2 28)
#   INSTALL=1 scripts/reproduce_navila_tiny.sh    # and install the result as models/navila-tiny, stage 0's
#                                                 # provenance in models/navila-tiny/training/tower/
#   EVAL=1 scripts/reproduce_navila_tiny.sh       # and evaluate D0 and DG on r2r_val_unseen/val_seen with the
#                                                 # non-learned baselines (train_embedded.sh's step 3)
#
# Compare the result with the shipped model episode by episode:
#   navila-agent eval --model runs/navila-tiny_dagger1 --split r2r_val_unseen --output runs/dg_unseen
#   navila-agent compare models/navila-tiny/training/eval/r2r_val_unseen runs/dg_unseen
#
# Every step resumes: rerun after an interruption (a built split is kept, collection skips finished trajectories,
# train-tower and train restart from their newest state). Settings (environment variables):
#   TOWER_CACHE   stage 0's cache (default: $NAVILA_AGENT_CACHE-h40, i.e. ~/.cache/navila-agent-h40)
#   TOWER_DATA    stage 0's collection (default: $DATA/qa40d)      TOWER_RUN  its tower (default: runs/tower_depth)
#   TOWER_HOUSES, TOWER_EPISODES, TOWER_LIMIT, TOWER_EPOCHS           stage 0's size (80, 26, 8000, 6)
#   RUN, DATA, STEPS, LIMIT, SEED, EVAL, EVAL_LIMIT, DAGGER_STEPS, FEATURE_WORKERS, INSTALL: as train_embedded.sh
#   (EVAL defaults to 0 here). The DAgger round's settings are the shipped ones unless set.
set -euo pipefail

PYTHON=${PYTHON:-python}
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
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
  EVAL=${EVAL:-0} PYTHON=$PYTHON "$HERE/train_embedded.sh"

if [[ "${INSTALL:-0}" == 1 ]]; then
  tower=models/navila-tiny/training/tower     # stage 0's provenance beside the navigator's
  mkdir -p "$tower"
  cp "$TOWER_RUN/tower_facts/summary.json" "$TOWER_RUN/tower_facts/log.jsonl" "$tower/"
  cp "$TOWER_DATA/manifest.json" "$tower/data_manifest.json"
  echo "stage 0's summary, log and data manifest in $tower/"
fi
