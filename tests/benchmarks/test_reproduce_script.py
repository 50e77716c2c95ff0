"""scripts/reproduce_navila_tiny.sh at toy size: stage 0's depth tower -> D0 on it -> a DAgger round (DG) -> the
progress monitor's fine-tune (M0) -> install with its stop threshold."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.benchmarks.test_train_embedded_script import run_script as run_any_script


def run_script(tmp_path: Path, timeout: int, **settings: str):
    """scripts/reproduce_navila_tiny.sh as test_train_embedded_script runs its script."""
    return run_any_script(tmp_path, timeout, script="reproduce_navila_tiny.sh", **settings)


TOY = dict(TOWER_HOUSES="3", TOWER_EPISODES="2", TOWER_LIMIT="60", TOWER_EPOCHS="1", STEPS="4", LIMIT="2",
           DAGGER_STEPS="2", MONITOR_STEPS="2", MONITOR_BF16="no", FEATURE_WORKERS="1", INSTALL="1")  # fmt: skip


@pytest.mark.slow  # 3 houses, a 1-epoch tower, 4 + 2 + 2 steps, install: ~2 min on the 2-core CI box
def test_toy_reproduction_installs_the_monitor_fine_tune_of_dg_on_its_own_depth_tower(tmp_path: Path) -> None:
    import vlm

    done = run_script(tmp_path, 600, **TOY)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # Stage 0 built its r2r_train in houses 40-42 in a cache of its own; the navigator's r2r_train is elsewhere.
    assert (tmp_path / "cache-h40").is_dir()
    tower_manifest = json.loads((tmp_path / "cache" / "train_data" / "qa40d" / "manifest.json").read_text())
    assert tower_manifest["settings"]["depth_size"] == 28 and tower_manifest["scene_qa"] > 0
    tower_houses = {t["scene_id"] for t in _trajectories(tmp_path / "cache" / "train_data" / "qa40d")}
    nav_houses = {t["scene_id"] for t in _trajectories(tmp_path / "cache" / "train_data" / "r2r_gen")}
    assert tower_houses and nav_houses and not tower_houses & nav_houses
    # The installed model is the progress monitor's fine-tune of the DAgger round (DG) on D0, with its stop
    # threshold; D0 was trained on stage 0's tower.
    training = tmp_path / "models" / "navila-tiny" / "training"
    final = json.loads((training / "train_config.json").read_text())
    assert Path(final["model"]).name == "navila-tiny_dagger1" and final["train"]["steps"] == 2
    assert final["train"]["progress_loss_weight"] == 1.0
    assert [(d["name"], d["weight"]) for d in final["datasets"]] == [("r2r_gen", 1.0), ("r2r_dagger1", 2.0)]
    installed = vlm.load(tmp_path / "models" / "navila-tiny")
    assert installed.progress_head is not None and installed.progress_head.stop_threshold == 0.9
    dg = json.loads((training / "before" / "navila-tiny_dagger1" / "train_config.json").read_text())
    assert Path(dg["model"]).name == "navila-tiny" and dg["train"]["steps"] == 2
    assert dg["train"]["progress_loss_weight"] == 0.0
    d0 = json.loads((training / "before" / "navila-tiny" / "train_config.json").read_text())
    assert d0["vision_tower"] == "runs/tower_depth" and d0["train"]["steps"] == 4
    dagger = json.loads((training / "data_manifest_dagger1.json").read_text())["settings"]
    assert dagger["beta"] == 0.5 and dagger["rebalance"] is False and dagger["every"] == 6
    # Stage 0's provenance beside the navigator's, as the shipped model has it.
    summary = json.loads((training / "tower" / "summary.json").read_text())
    assert len(summary["epochs"]) == 1 and "depth" in summary["epochs"][0]["held_out_acc"]
    assert json.loads((training / "tower" / "data_manifest.json").read_text()) == tower_manifest
    assert len((training / "tower" / "log.jsonl").read_text().splitlines()) == 1
    # A rerun resumes: every stage finds its work done and the same model is installed again.
    again = run_script(tmp_path, 600, **TOY)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert json.loads((training / "train_config.json").read_text()) == final


def test_one_cache_for_both_stages_is_refused_before_any_work(tmp_path: Path) -> None:
    done = run_script(tmp_path, 60, TOWER_CACHE=str(tmp_path / "cache" / ".." / "cache"))
    assert done.returncode == 2 and "TOWER_CACHE must differ from NAVILA_AGENT_CACHE" in done.stderr
    assert not (tmp_path / "cache").exists()


def _trajectories(folder: Path) -> list[dict]:
    """Every trajectory record of a collected folder (its shards' trajectories.jsonl)."""
    rows = []
    for path in sorted(folder.glob("shard-*/trajectories.jsonl")):
        rows += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return rows
