# Functions that install a trained run as the shipped model with its provenance; sourced by train_embedded.sh
# (INSTALL=1), reproduce_navila_tiny.sh and tests/benchmarks/test_install_model.py, which checks every copied file
# without training.
#
#   source scripts/install_model.sh
#   install_model FINAL RUN DATA NAV_DATA RXR_EVERY DAGGER DEST
#
# Needs $PYTHON (an interpreter with this repository importable) for vlm.save_compact.

# A training run's model: its folder when the schedule finished, else (--stop-after) its newest checkpoint.
finished_model() {
  if [[ -f "$1/config.json" ]]; then echo "$1"
  else ls -d "$1"/checkpoints/checkpoint-* | sort -t- -k2 -n | tail -n 1; fi
}

# Every evaluation summary and per-episode result of a run folder SRC (its eval_r2r_<split>/ folders; the
# baselines' eval_<agent>_<split>/ folders and evaluations without a summary, i.e. interrupted ones, are left
# out) into DEST as summary_<split>.json and <split>/results.jsonl, so a new checkpoint can be compared with it
# episode by episode without re-running it: navila-agent compare DEST/r2r_val_unseen <new run>.
copy_evals() {
  local src=$1 dest=$2 summary split
  for summary in "$src"/eval_r2r_*/summary.json; do
    [[ -f "$summary" ]] || continue
    split=$(basename "$(dirname "$summary")"); split=${split#eval_}
    mkdir -p "$dest/$split"
    cp "$summary" "$dest/summary_$split.json"; cp "$(dirname "$summary")/results.jsonl" "$dest/$split/"
  done
}

# Install FINAL (a model folder or checkpoint of run RUN or of its last DAgger round RUN_dagger<DAGGER>) as DEST:
# - the LM and projector in fp16, the vision tower in fp32 (an fp16 tower costs successes, see
#   vlm.save_compact); vlm.load casts everything back to float32 on CPU;
# - DEST/training/: the installed run's config and log, the expert collection's manifest (NAV_DATA, and
#   DATA/rxr_gen's when RXR_EVERY is not 0), and the installed run's evaluations (copy_evals);
# - after DAgger rounds, the runs before the last (RUN, RUN_dagger1, ...) keep their config, log and evaluations
#   in DEST/training/before/<run>/, and each round's collection (DATA/r2r_dagger<N>) its manifest in
#   DEST/training/data_manifest_dagger<N>.json, so the first run's recipe is not lost.
install_model() {
  local final=$1 run=$2 data=$3 nav_data=$4 rxr_every=$5 dagger=$6 dest=$7 final_run previous before round
  rm -rf "$dest"
  "${PYTHON:-python}" -c 'import sys, vlm; vlm.save_compact(vlm.load(sys.argv[1]), sys.argv[2])' "$final" "$dest"
  final_run=${final%/checkpoints/checkpoint-*}          # a --stop-after checkpoint belongs to its run folder
  mkdir -p "$dest/training/eval"
  cp "$final_run/train_config.json" "$final_run/train_log.jsonl" "$dest/training/"
  cp "$nav_data/manifest.json" "$dest/training/data_manifest.json"
  if [[ "$rxr_every" != 0 ]]; then cp "$data/rxr_gen/manifest.json" "$dest/training/data_manifest_rxr.json"; fi
  copy_evals "$final_run" "$dest/training/eval"
  previous=$run
  for ((round = 1; round <= dagger; round++)); do
    before="$dest/training/before/$(basename "$previous")"
    mkdir -p "$before"
    cp "$previous/train_config.json" "$previous/train_log.jsonl" "$before/"
    copy_evals "$previous" "$before"
    cp "$data/r2r_dagger$round/manifest.json" "$dest/training/data_manifest_dagger$round.json"
    previous="${run}_dagger$round"
  done
}
