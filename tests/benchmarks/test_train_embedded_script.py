"""scripts/train_embedded.sh end to end at toy size: collect -> train -> install with provenance."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.vlm.conftest import stored_float_dtypes

REPO = Path(__file__).resolve().parents[2]


def run_script(tmp_path: Path, timeout: int, script: str = "train_embedded.sh", **settings: str
               ) -> subprocess.CompletedProcess:  # fmt: skip
    """scripts/`script` in `tmp_path` with `settings` as its environment variables, one torch thread and a cache of
    its own."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHON": sys.executable, "PYTHONPATH": str(REPO),
           "NAVILA_AGENT_CACHE": str(tmp_path / "cache"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}", **settings}  # fmt: skip
    return subprocess.run(["bash", str(REPO / "scripts" / script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


@pytest.mark.slow  # collect 2 + 2 (+ 2 DAgger) episodes, 20 + 3 steps, install: ~70 s on the 2-core CI box
def test_dry_run_installs_compact_model_with_its_training_files(tmp_path: Path) -> None:
    import vlm

    tower = tmp_path / "tower"  # a fresh embedded model stands in for a `train-tower` output
    tok = vlm.build_tokenizer(["a tower"], vocab_size=300)
    vlm.save_checkpoint(vlm.build_model(vlm.embedded_config(tok), tok), tower)
    from tests.vlm.train.test_word_init import write_text_encoder

    write_text_encoder(tmp_path / "encoder")
    done = run_script(tmp_path, 420, STEPS="20", LIMIT="2", EVAL="0", INSTALL="1", RXR_EVERY="2", SEED="3",
                      VISION_TOWER=str(tower), DAGGER="1", DAGGER_STEPS="3", DAGGER_BETAS="0.5",
                      DAGGER_REBALANCE="0", DAGGER_WEIGHT="2", MIRROR="0.5", COLOUR_GRID="2",
                      FEATURE_WORKERS="2", WORD_INIT=str(tmp_path / "encoder"))  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    installed = tmp_path / "models" / "navila-tiny"  # relative to the working directory, not the repository
    dtypes = stored_float_dtypes(installed)
    assert dtypes == {"llm": {torch.float16}, "mm_projector": {torch.float16}, "vision_tower": {torch.float32}}
    tower_config = json.loads((installed / "vision_tower" / "config.json").read_text())
    assert tower_config["colour_grid"] == 2  # COLOUR_GRID reaches train --colour-grid and survives the DAgger round
    training = installed / "training"
    # The installed model is the DAgger round's: fine-tuned from the first run on the expert data + the DAgger set.
    final = json.loads((training / "train_config.json").read_text())
    assert final["train"]["steps"] == 3 and Path(final["model"]).name == "navila-tiny"
    assert [(d["name"], d["weight"]) for d in final["datasets"]] == [
        ("r2r_gen", 1.0), ("rxr_gen", 1.0), ("r2r_dagger1", 2.0)]  # DAGGER_WEIGHT  # fmt: skip
    dagger = json.loads((training / "data_manifest_dagger1.json").read_text())
    assert dagger["settings"]["rebalance"] is False and dagger["settings"]["beta"] == 0.5  # DAGGER_REBALANCE=0
    assert Path(dagger["settings"]["policy"]).name == "navila-tiny" and dagger["policy_decisions"] >= 0
    # The first run's provenance is kept beside it.
    config = json.loads((training / "before" / "navila-tiny" / "train_config.json").read_text())
    assert config["train"]["steps"] == 20 and config["init"] == "embedded"
    assert config["train"]["seed"] == 3  # SEED reaches train --seed
    assert config["train"]["mirror_prob"] == final["train"]["mirror_prob"] == 0.5  # MIRROR, in every training
    assert config["train"]["feature_workers"] == final["train"]["feature_workers"] == 2  # FEATURE_WORKERS too
    assert config["vision_tower"] == str(tower)  # VISION_TOWER reaches train --vision-tower
    assert config["word_init"]["source"] == str(tmp_path / "encoder")  # WORD_INIT reaches train --word-init
    assert final["word_init"] is None  # the DAgger round continues from the first run's embeddings
    assert [d["name"] for d in config["datasets"]] == ["r2r_gen", "rxr_gen"]  # RXR_EVERY: both in the mixture
    assert len((training / "before" / "navila-tiny" / "train_log.jsonl").read_text().splitlines()) >= 2
    assert len((training / "train_log.jsonl").read_text().splitlines()) >= 1
    manifest = json.loads((training / "data_manifest.json").read_text())
    assert manifest["trajectories"] >= 1 and manifest["split"] == "r2r_train"
    rxr = json.loads((training / "data_manifest_rxr.json").read_text())
    assert rxr["split"] == "rxr_train" and rxr["settings"]["every"] == 2
    assert not list((training / "eval").iterdir())  # EVAL=0: no summaries to copy


def test_an_unknown_tower_stops_the_script_before_any_work(tmp_path: Path) -> None:
    done = run_script(tmp_path, 60, TOWER="vit")
    assert done.returncode == 2 and "TOWER must be efficientnet or cnn, got 'vit'" in done.stderr
    done = run_script(tmp_path, 60, VISION_TOWER=str(tmp_path / "missing"))
    assert done.returncode == 2 and "missing: not a checkpoint folder" in done.stderr
    done = run_script(tmp_path, 60, VISION_TOWER=str(tmp_path), TOWER="cnn")
    assert done.returncode == 2 and "VISION_TOWER needs TOWER=efficientnet" in done.stderr
    done = run_script(tmp_path, 60, DAGGER_REBALANCE="yes")
    assert done.returncode == 2 and "DAGGER_REBALANCE must be 0 or 1, got 'yes'" in done.stderr
    assert not (tmp_path / "cache").exists()  # nothing collected


@pytest.mark.slow  # collect 1 + 1 episodes, build the embedded-cnn model, 2 steps: ~20 s on the 2-core CI box
def test_tower_cnn_trains_the_convnet_tower_with_the_navigator(tmp_path: Path) -> None:
    done = run_script(tmp_path, 300, TOWER="cnn", STEPS="2", LIMIT="1", EVAL="0")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    config = json.loads((tmp_path / "runs" / "navila-tiny" / "train_config.json").read_text())
    assert config["init"] == "embedded-cnn" and config["train"]["tune_vision_tower"] is True
    tower = json.loads((tmp_path / "runs" / "navila-tiny" / "vision_tower" / "config.json").read_text())
    assert tower["model_type"] == "navila_convnet"
