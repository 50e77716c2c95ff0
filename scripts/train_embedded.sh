#!/usr/bin/env bash
# Train the shipped embedded model end to end: collect expert data -> train -> evaluate -> (optional) DAgger rounds.
#
#   scripts/train_embedded.sh                      # run F's recipe (the ImageNet tower, shipped in sessions 5-17):
#                                                  # about 1 h on 2 CPU cores (collect 4 min, tower features 10,
#                                                  # training ~45) + evaluation. The shipped model (a depth tower
#                                                  # first, then this script with VISION_TOWER and one DAgger
#                                                  # round): scripts/reproduce_navila_tiny.sh
#   STEPS=200 LIMIT=50 scripts/train_embedded.sh   # a quick dry run of the whole pipeline
#   DAGGER=2 scripts/train_embedded.sh             # then two DAgger rounds (session 4's runs E1, E2; no SR gain yet)
#   DAGGER=1 DAGGER_BETAS=0.5 DAGGER_STEPS=1500 DAGGER_LRS=2e-4 DAGGER_REBALANCE=0 DAGGER_WEIGHT=2 \
#     scripts/train_embedded.sh                    # one round as session 6's run H and session 19's DG runs
#   SCENE_QA=2 scripts/train_embedded.sh           # + scene QA samples every 2nd frame (session 8's run J)
#   RXR_EVERY=2 scripts/train_embedded.sh          # + every 2nd RxR-style rxr_train episode (session 14's run R)
#   TOWER=cnn scripts/train_embedded.sh            # the small CNN tower on 64 px frames (vlm/convnet.py), trained
#                                                  # from scratch with the navigator (session 16's runs C0, C1)
#   MIRROR=0.5 scripts/train_embedded.sh          # mirror augmentation: half the draws left-right mirrored
#                                                  # (train --mirror-prob; session 20's run M0)
#   SEED=1 scripts/train_embedded.sh               # the same recipe from another init and data order (session 15's
#                                                  # seed study; the shipped model is seed 0)
#   VISION_TOWER=runs/tower scripts/train_embedded.sh  # the navigator on a tower from `navila-agent train-tower`
#                                                  # (train --vision-tower; sessions 12, 13 and 18)
#   COLOUR_GRID=2 scripts/train_embedded.sh       # the tower's tokens also carry their cells' 2x2 mean colours
#                                                  # (train --colour-grid; session 21's run K0)
#   INSTALL=1 scripts/train_embedded.sh            # install the final model as models/navila-tiny (the shipped default)
#                                                  # with its training files (config, log, data manifest, eval summaries)
#
# Without an installed `navila-agent` the CLI runs through $PYTHON (default: python).
# Every step is resumable: rerun the script after an interruption and each command continues where it stopped
# (collection skips finished trajectories, training restarts from its newest checkpoint, eval skips recorded
# episodes). Fill docs/MODEL_CARD.md from the files this writes ($RUN/train_config.json, $RUN/train_log.jsonl,
# $RUN/eval_*/summary.json).
set -euo pipefail

PYTHON=${PYTHON:-python}
source "$(dirname "${BASH_SOURCE[0]}")/install_model.sh"  # install_model, copy_evals
# The console script when installed (pip install -e .), else the same CLI through the interpreter.
navila() {
  if command -v navila-agent >/dev/null 2>&1; then navila-agent "$@"
  else "$PYTHON" -c 'from benchmarks.cli import main; main()' "$@"; fi
}
CACHE=${NAVILA_AGENT_CACHE:-$HOME/.cache/navila-agent}
DATA=${DATA:-$CACHE/train_data}                        # the default registry (vlm/train/registry/default.yaml) reads here
RUN=${RUN:-runs/navila-tiny}
EVERY=${EVERY:-1}                                      # every r2r_train episode: 2000 episodes, 1000 paths (the two
                                                       # instructions of a path share its frames); session 3's run D
                                                       # used EVERY=3 STEPS=4000
STEPS=${STEPS:-5000}                                   # length of the cosine schedule (optimizer steps, batch 16)
STOP_AFTER=${STOP_AFTER:-}                             # end after N steps on a checkpoint (empty = the whole schedule,
                                                       # as the shipped model)
BATCH=${BATCH:-16}
LR=${LR:-5e-4}
SEED=${SEED:-0}                                        # train --seed: the fresh model's init and the data order
TOWER=${TOWER:-efficientnet}                           # efficientnet: the shipped frozen ImageNet tower (its features
                                                       # cached); cnn: train --init embedded-cnn --tune-vision-tower
VISION_TOWER=${VISION_TOWER:-}                         # a checkpoint whose (fine-tuned) EfficientNet tower replaces
                                                       # the ImageNet one, frozen (empty = the ImageNet tower)
MIRROR=${MIRROR:-0}                                    # train --mirror-prob: share of draws shown mirrored
FEATURE_WORKERS=${FEATURE_WORKERS:-2}                  # train --feature-workers: processes that encode the frozen
                                                       # tower's features (2 on 2 cores: 1.4x one; RESULTS.md)
COLOUR_GRID=${COLOUR_GRID:-0}                          # train --colour-grid: K x K mean colours per tower token
                                                       # (0 = off, as NaVILA; TOWER=efficientnet only)
WORD_INIT=${WORD_INIT:-}                               # train --word-init: a text encoder folder whose word vectors
                                                       # start the fresh LM's embeddings (empty = random, as shipped)
ACTION_WEIGHT=${ACTION_WEIGHT:-5.0}                    # loss weight on the action word and amount tokens
LIMIT=${LIMIT:-}                                       # episodes per collected split (empty = all, after EVERY)
EVAL_LIMIT=${EVAL_LIMIT:-}                             # episodes per final evaluation (empty = the whole split)
EVAL=${EVAL:-1}                                         # 0: skip the final evaluations (pipeline smoke tests)
DAGGER=${DAGGER:-0}                                    # DAgger rounds after the first training (shipped: none)
DAGGER_EVERY=${DAGGER_EVERY:-6}                        # every 6th r2r_train episode per round: 334 episodes
read -r -a DAGGER_BETAS <<< "${DAGGER_BETAS:-0.5 0.3}" # P(expert acts) per round; later rounds reuse the last
read -r -a DAGGER_STEPS <<< "${DAGGER_STEPS:-2000 800}"
read -r -a DAGGER_LRS <<< "${DAGGER_LRS:-3e-4 2e-4}"
DAGGER_REBALANCE=${DAGGER_REBALANCE:-1}                # 1: the DAgger sets are stop/turn rebalanced as the expert
                                                       # data (session 4); 0: written once (sessions 6 and 19)
DAGGER_WEIGHT=${DAGGER_WEIGHT:-1}                      # sampling weight of each DAgger set in the mixture (the
                                                       # expert data has 1; sessions 6 and 19 used 2)
SCENE_QA=${SCENE_QA:-0}                                # > 0: also a scene QA sample every K frames of each path
                                                       # (collect --scene-qa-every; session 8's run J used 2)
RXR_EVERY=${RXR_EVERY:-0}                              # > 0: also collect every Nth rxr_train episode (1000
                                                       # distinct paths, ~115-word guide narrations) into the mixture
INSTALL=${INSTALL:-0}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}           # the shipped run: 2 torch threads on a shared 2-core VM

limit_flag=(); [[ -n "$LIMIT" ]] && limit_flag=(--limit "$LIMIT")
qa_flag=(); NAV_DATA="$DATA/r2r_gen"                   # a separate folder per setting: collect resumes into it
if [[ "$SCENE_QA" != 0 ]]; then qa_flag=(--scene-qa-every "$SCENE_QA"); NAV_DATA="$DATA/r2r_gen_qa$SCENE_QA"; fi
eval_flag=(); [[ -n "$EVAL_LIMIT" ]] && eval_flag=(--limit "$EVAL_LIMIT")
stop_flag=(); [[ -n "$STOP_AFTER" ]] && stop_flag=(--stop-after "$STOP_AFTER")
case "$DAGGER_REBALANCE" in
  1) dagger_rebalance=(--rebalance) ;;
  0) dagger_rebalance=(--no-rebalance) ;;
  *) echo "DAGGER_REBALANCE must be 0 or 1, got '$DAGGER_REBALANCE'" >&2; exit 2 ;;
esac
if [[ -n "$VISION_TOWER" ]]; then
  if [[ "$TOWER" != efficientnet ]]; then echo "VISION_TOWER needs TOWER=efficientnet, got '$TOWER'" >&2; exit 2; fi
  if [[ ! -f "$VISION_TOWER/config.json" ]]; then
    echo "VISION_TOWER=$VISION_TOWER: not a checkpoint folder (no config.json; see navila-agent train-tower)" >&2; exit 2
  fi
fi
if [[ "$COLOUR_GRID" != 0 && "$TOWER" != efficientnet ]]; then
  echo "COLOUR_GRID needs TOWER=efficientnet, got '$TOWER'" >&2; exit 2
fi
word_flag=(); [[ -n "$WORD_INIT" ]] && word_flag=(--word-init "$WORD_INIT")
case "$TOWER" in
  efficientnet) init_flags=(--init embedded --colour-grid "$COLOUR_GRID")
    [[ -n "$VISION_TOWER" ]] && init_flags+=(--vision-tower "$VISION_TOWER") ;;
  cnn) init_flags=(--init embedded-cnn --tune-vision-tower) ;;
  *) echo "TOWER must be efficientnet or cnn, got '$TOWER'" >&2; exit 2 ;;
esac

echo "== 1. collect expert trajectories (shortest-path follower on the generated houses, stop/turn rebalanced)"
navila collect --split r2r_train --output "$NAV_DATA" --every "$EVERY" --rebalance --frame-codec npz \
  "${qa_flag[@]}" "${limit_flag[@]}"
TRAIN_DATA="$NAV_DATA"
if [[ "$RXR_EVERY" != 0 ]]; then
  navila collect --split rxr_train --output "$DATA/rxr_gen" --every "$RXR_EVERY" --rebalance --frame-codec npz \
    "${limit_flag[@]}"
  TRAIN_DATA="$NAV_DATA+$DATA/rxr_gen"                 # each sample drawn at its natural share
fi
# Held-out samples (houses seen in training, other episodes): per-action accuracy during training.
navila collect --split r2r_val_seen --output "$DATA/r2r_val_seen_samples" --limit 30 --frame-codec npz

echo "== 2. train the embedded architecture from scratch (TOWER=efficientnet: the ImageNet EfficientNet-Lite0 tower"
echo "      is frozen, its features computed once per stored frame and cached, projector + LLM train on them;"
echo "      TOWER=cnn: the convnet tower trains with them)"
navila train --data-mixture "$TRAIN_DATA" "${init_flags[@]}" "${word_flag[@]}" --output "$RUN" \
  --steps "$STEPS" --batch-size "$BATCH" --lr "$LR" --warmup-ratio 0.03 --action-token-weight "$ACTION_WEIGHT" \
  --save-every 100 --log-every 10 --eval-every 1000 --eval-limit 0 --seed "$SEED" --mirror-prob "$MIRROR" \
  --feature-workers "$FEATURE_WORKERS" \
  --eval-samples "$DATA/r2r_val_seen_samples" --eval-samples-limit 300 --device cpu "${stop_flag[@]}"
MODEL=$(finished_model "$RUN")

if [[ "$EVAL" == 1 ]]; then
  echo "== 3. evaluate on the held-out houses (and the seen ones), with the non-learned baselines"
  for split in r2r_val_unseen r2r_val_seen; do
    navila eval --model "$MODEL" --split "$split" --output "$RUN/eval_$split" "${eval_flag[@]}"
    for agent in random forward oracle; do
      navila eval --agent "$agent" --split "$split" --output "$RUN/eval_${agent}_$split" "${eval_flag[@]}"
    done
  done
fi

FINAL=$MODEL
mixture="$TRAIN_DATA"
pick() { local -n list=$1; local i=$2; echo "${list[$(( i < ${#list[@]} ? i : ${#list[@]} - 1 ))]}"; }
for ((round = 1; round <= DAGGER; round++)); do
  beta=$(pick DAGGER_BETAS $((round - 1))); steps=$(pick DAGGER_STEPS $((round - 1)))
  lr=$(pick DAGGER_LRS $((round - 1)))
  echo "== 4.$round DAgger: the expert acts with probability $beta, $FINAL otherwise; the expert labels every state"
  # Two shards in parallel (one per core); shard k flips its coins with seed k (as session 4's runs did). Each
  # shard gets half the torch threads: two processes with OMP_NUM_THREADS=2 each on 2 cores collected 25x slower
  # (session 22: 2.7 against 65 episodes/min), the OpenMP threads spinning against each other.
  shard_threads=$(( OMP_NUM_THREADS > 1 ? OMP_NUM_THREADS / 2 : 1 ))
  pids=()
  for shard in 0 1; do
    OMP_NUM_THREADS=$shard_threads navila collect --split r2r_train --output "$DATA/r2r_dagger$round" --every "$DAGGER_EVERY" "${dagger_rebalance[@]}" \
      --policy "$FINAL" --beta "$beta" --shards 2 --shard-index "$shard" --seed "$shard" \
      --frame-codec npz "${limit_flag[@]}" &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid"; done  # a failed shard stops the script (set -e); the last one to end
                                                 # writes the manifest over both shards
  mixture="$mixture+$DATA/r2r_dagger$round*$DAGGER_WEIGHT"
  # Fine-tune the current model on the expert data and every DAgger round so far (aggregation).
  navila train --data-mixture "$mixture" --model "$FINAL" --output "${RUN}_dagger$round" \
    --steps "$steps" --batch-size "$BATCH" --lr "$lr" --warmup-ratio 0.03 --action-token-weight "$ACTION_WEIGHT" \
    --save-every 500 --log-every 10 --eval-every "$steps" --eval-limit 0 --mirror-prob "$MIRROR" \
    --feature-workers "$FEATURE_WORKERS" \
    --eval-samples "$DATA/r2r_val_seen_samples" --eval-samples-limit 300 --device cpu "${stop_flag[@]}"
  FINAL=$(finished_model "${RUN}_dagger$round")
  if [[ "$EVAL" == 1 ]]; then
    for split in r2r_val_unseen r2r_val_seen; do
      navila eval --model "$FINAL" --split "$split" --output "${RUN}_dagger$round/eval_$split" "${eval_flag[@]}"
    done
  fi
done

if [[ "$INSTALL" == 1 ]]; then
  echo "== install $FINAL as the shipped model (models/navila-tiny)"
  # LM and projector in fp16, the tower in fp32; beside the weights the provenance docs/MODEL_CARD.md quotes: the
  # installed run's config, log, data manifests and evaluations, and after DAgger the earlier runs' in
  # training/before/<run>/ (scripts/install_model.sh).
  install_model "$FINAL" "$RUN" "$DATA" "$NAV_DATA" "$RXR_EVERY" "$DAGGER" models/navila-tiny
  echo "installed models/navila-tiny with its training files in models/navila-tiny/training/"
fi
echo "done: model in $FINAL; fill docs/MODEL_CARD.md from $RUN/train_config.json, $RUN/train_log.jsonl and $RUN/eval_*/summary.json"
