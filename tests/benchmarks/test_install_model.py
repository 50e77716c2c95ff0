"""scripts/install_model.sh on fake run folders: which weights, configs, manifests and evaluations an install keeps.

The script's dry run (test_train_embedded_script.py) trains for real but cannot afford evaluations; these tests
build the folders a finished DAgger run leaves and check every file the install copies, in seconds.
"""

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


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small embedded-architecture checkpoint, saved once for the module."""
    import vlm

    path = tmp_path_factory.mktemp("model") / "model"
    tok = vlm.build_tokenizer(["move forward 25 cm", "turn left 15 degrees", "stop"], vocab_size=300)
    vlm.save_checkpoint(vlm.build_model(vlm.embedded_config(tok), tok), path)
    return path


def write_json(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def fake_run(run: Path, name: str, evals: dict[str, bool]) -> None:
    """A run folder's provenance: its config and log, and one evaluation per entry of `evals` (folder name ->
    finished, i.e. with a summary; an interrupted evaluation has per-episode results but no summary)."""
    write_json(run / "train_config.json", {"run": name})
    (run / "train_log.jsonl").write_text(json.dumps({"step": 1, "run": name}) + "\n")
    for folder, finished in evals.items():
        (run / folder).mkdir(parents=True)
        (run / folder / "results.jsonl").write_text(
            json.dumps({"episode_id": "1", "run": name, "eval": folder})
        )
        if finished:
            write_json(run / folder / "summary.json", {"run": name, "eval": folder})


def install(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = f'set -euo pipefail; source "{REPO}/scripts/install_model.sh"; install_model "$@"'
    return subprocess.run(["bash", "-c", command, "install", *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip


def test_install_after_a_dagger_round_keeps_every_run_and_its_finished_evaluations(
    tmp_path: Path, model_dir: Path
) -> None:
    import shutil

    run, dagger_run, data = tmp_path / "runs" / "nav", tmp_path / "runs" / "nav_dagger1", tmp_path / "data"
    fake_run(run, "first", {"eval_r2r_val_unseen": True, "eval_r2r_val_seen": True,
                            "eval_random_r2r_val_unseen": True})  # fmt: skip
    fake_run(dagger_run, "dagger1", {"eval_r2r_val_unseen": True, "eval_r2r_val_seen": False})
    checkpoint = dagger_run / "checkpoints" / "checkpoint-3"  # a --stop-after model: its run folder is two up
    shutil.copytree(model_dir, checkpoint)
    for name in ("r2r_gen", "rxr_gen", "r2r_dagger1"):
        write_json(data / name / "manifest.json", {"collection": name})
    (tmp_path / "models" / "navila-tiny" / "stale").mkdir(
        parents=True
    )  # a previous install is replaced whole

    done = install(tmp_path, str(checkpoint), str(run), str(data), str(data / "r2r_gen"), "2", "1",
                   "models/navila-tiny")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr

    dest = tmp_path / "models" / "navila-tiny"
    assert not (dest / "stale").exists()
    assert stored_float_dtypes(dest) == {
        "llm": {torch.float16}, "mm_projector": {torch.float16}, "vision_tower": {torch.float32}}  # fmt: skip
    training = dest / "training"
    files = sorted(str(p.relative_to(training)) for p in training.rglob("*") if p.is_file())
    assert files == [
        "before/nav/r2r_val_seen/results.jsonl",
        "before/nav/r2r_val_unseen/results.jsonl",
        "before/nav/summary_r2r_val_seen.json",
        "before/nav/summary_r2r_val_unseen.json",
        "before/nav/train_config.json",
        "before/nav/train_log.jsonl",
        "data_manifest.json",
        "data_manifest_dagger1.json",
        "data_manifest_rxr.json",
        "eval/r2r_val_unseen/results.jsonl",  # the interrupted val_seen evaluation (no summary) is left out
        "eval/summary_r2r_val_unseen.json",
        "train_config.json",
        "train_log.jsonl",
    ]  # the random baseline's evaluation (eval_random_*) is not the model's and is left out
    assert json.loads((training / "train_config.json").read_text()) == {"run": "dagger1"}
    assert json.loads((training / "before/nav/train_config.json").read_text()) == {"run": "first"}
    assert json.loads((training / "before/nav/summary_r2r_val_seen.json").read_text()) == {
        "run": "first", "eval": "eval_r2r_val_seen"}  # fmt: skip
    assert json.loads((training / "eval/r2r_val_unseen/results.jsonl").read_text())["run"] == "dagger1"
    assert json.loads((training / "data_manifest_dagger1.json").read_text()) == {"collection": "r2r_dagger1"}
    assert json.loads((training / "data_manifest_rxr.json").read_text()) == {"collection": "rxr_gen"}


def test_install_without_dagger_keeps_no_earlier_runs(tmp_path: Path, model_dir: Path) -> None:
    import shutil

    run, data = tmp_path / "runs" / "nav", tmp_path / "data"
    shutil.copytree(model_dir, run)
    fake_run(run, "only", {"eval_r2r_val_unseen": True})
    write_json(data / "r2r_gen" / "manifest.json", {"collection": "r2r_gen"})

    done = install(tmp_path, str(run), str(run), str(data), str(data / "r2r_gen"), "0", "0", "out")
    assert done.returncode == 0, done.stdout + done.stderr
    training = tmp_path / "out" / "training"
    files = sorted(str(p.relative_to(training)) for p in training.rglob("*") if p.is_file())
    assert files == ["data_manifest.json", "eval/r2r_val_unseen/results.jsonl", "eval/summary_r2r_val_unseen.json",
                     "train_config.json", "train_log.jsonl"]  # fmt: skip


def test_a_missing_manifest_fails_the_install(tmp_path: Path, model_dir: Path) -> None:
    """set -e in the caller: a run without its data manifest must not install silently without provenance."""
    import shutil

    run = tmp_path / "runs" / "nav"
    shutil.copytree(model_dir, run)
    fake_run(run, "only", {})
    done = install(tmp_path, str(run), str(run), str(tmp_path / "data"), str(tmp_path / "data" / "r2r_gen"), "0",
                   "0", "out")  # fmt: skip
    assert done.returncode != 0 and "r2r_gen/manifest.json" in done.stderr
