"""benchmarks/probe_tower.py: targets read from scene-QA answers, probes scored on unseen houses, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.probe_tower import labels_of, main, pool_tokens, probe_table, probe_target, thumbnail
from benchmarks.scene_qa import SceneFacts, answer


def _facts(**kw) -> SceneFacts:
    base = dict(
        room="the pink bedroom", nearest_object="the red sofa", object_distance=2.4, object_side="left"
    )
    return SceneFacts(**{**base, "clearance": 1.3, **kw})


def test_targets_come_from_the_answers_scene_qa_writes():
    assert labels_of("room", answer("room", _facts())) == {
        "room": "pink bedroom",
        "room_type": "bedroom",
        "room_colour": "pink",
    }
    assert labels_of("room", answer("room", _facts(room="the living room"))) == {
        "room": "living room",
        "room_type": "living room",
    }
    assert labels_of("room", answer("room", _facts(room=""))) == {}  # between two rooms: no target
    assert labels_of("object", answer("object", _facts())) == {"object": "red sofa", "object_side": "left"}
    assert (
        labels_of("object", answer("object", _facts(object_side="ahead", object_distance=0.5)))["object_side"]
        == "ahead"
    )
    assert labels_of("object", answer("object", _facts(nearest_object=""))) == {
        "object": "none",
        "object_side": "none",
    }
    assert labels_of("clearance", answer("clearance", _facts())) == {"clearance": "About 1 meter"}


def _houses(n_houses: int, per_house: int) -> list[str]:
    return [f"house_{h}" for h in range(n_houses) for _ in range(per_house)]


def test_a_probe_finds_a_label_the_features_encode_and_not_one_they_do_not():
    rng = np.random.default_rng(0)
    houses = _houses(6, 40)
    labels = [str(v) for v in rng.integers(0, 3, len(houses))]
    encoded = rng.normal(size=(len(houses), 16)).astype(np.float32)
    encoded[:, :3] += 4.0 * np.eye(3)[[int(v) for v in labels]]  # the label, one-hot, in three features
    noise = rng.normal(size=(len(houses), 16)).astype(np.float32)
    good = probe_target(encoded, labels, houses, holdout=0.34, steps=100)
    bad = probe_target(noise, labels, houses, holdout=0.34, steps=100)
    assert good["test_houses"] == 2 and good["test_samples"] == 80 and good["classes"] == 3
    assert good["test_acc"] > 0.9
    assert bad["train_acc"] > bad["test_acc"]  # fits its training houses, learns nothing that carries over
    assert bad["test_acc"] < bad["majority_acc"] + 0.15


def test_grid_pooling_averages_cells_of_the_token_grid_row_major():
    rows, cols = np.meshgrid(np.arange(7), np.arange(7), indexing="ij")
    tokens = np.stack([rows.ravel(), cols.ravel()], axis=1).astype(np.float32)  # token r*7+c = (r, c)
    cells = pool_tokens(tokens, "grid").reshape(3, 3, 2)
    assert cells[0, 2].tolist() == [1.0, 5.0]  # rows 0-2, columns 4-6 (adaptive pooling's overlapping bins)
    assert cells[1, 1].tolist() == [3.0, 3.0] and cells[2, 0].tolist() == [5.0, 1.0]
    assert pool_tokens(tokens).tolist() == [3.0, 3.0, 6.0, 6.0]  # meanmax: mean then max
    with pytest.raises(ValueError, match="square token grid"):
        pool_tokens(tokens[:48], "grid")
    with pytest.raises(ValueError, match="pool must be one of"):
        pool_tokens(tokens, "sum")


def test_grid_pooling_decodes_where_a_thing_is_and_meanmax_cannot():
    """The same object token on the left or the right of the grid: mean and max are identical for both sides."""
    rng = np.random.default_rng(1)
    houses = _houses(6, 30)
    sides = [("left", "right")[int(v)] for v in rng.integers(0, 2, len(houses))]
    frames = []
    for side in sides:
        tokens = np.zeros((49, 4), dtype=np.float32)
        tokens[rng.permutation(49)[:5], 1] = 1.0  # clutter, anywhere
        tokens[3 * 7 + (0 if side == "left" else 6), 0] = (
            5.0  # the object, in the middle row's first/last column
        )
        frames.append(tokens)
    meanmax = np.stack([pool_tokens(t) for t in frames])
    grid = np.stack([pool_tokens(t, "grid") for t in frames])
    assert probe_target(grid, sides, houses, holdout=0.34, steps=100)["test_acc"] == 1.0
    assert probe_target(meanmax, sides, houses, holdout=0.34, steps=100)["test_acc"] < 0.7


def test_a_label_only_held_out_houses_have_counts_as_an_error():
    houses = _houses(4, 10)
    labels = ["a" if i % 2 else "b" for i in range(30)] + ["c"] * 10  # "c" only in the held-out house
    features = np.eye(2, dtype=np.float32)[[0 if label == "a" else 1 for label in labels]]
    r = probe_target(features, labels, houses, holdout=0.25, steps=50)
    assert r["classes"] == 2 and r["test_acc"] == 0.0 and r["majority_acc"] == 0.0
    with pytest.raises(ValueError, match="at least 3 houses"):
        probe_target(features[:20], labels[:20], houses[:20], holdout=0.5)


def test_cli_probes_a_collected_folder_and_names_what_is_missing(tmp_path, monkeypatch, capsys):
    from typer.testing import CliRunner

    import vlm
    from benchmarks.cli import app

    # Three houses, two episodes each (seconds), in a cache of this test's own: the session's cache may already hold
    # a one-house r2r_train from another test.
    monkeypatch.setenv("NAVILA_AGENT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("NAVILA_AGENT_GEN_HOUSES", "3")
    monkeypatch.setenv("NAVILA_AGENT_GEN_EPISODES", "2")
    data = tmp_path / "collected"
    args = [
        "collect",
        "--split",
        "r2r_train",
        "--output",
        str(data),
        "--frame-size",
        "32",
        "--scene-qa-every",
        "1",
    ]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    tok = vlm.build_tokenizer(["I am in the kitchen."], vocab_size=300)
    vlm.save_checkpoint(vlm.build_model(vlm.tiny_config(vocab_size=len(tok)), tok), tmp_path / "m")
    out = tmp_path / "probe.json"
    probe = ["--samples", str(data), "--model", str(tmp_path / "m"), "--limit", "400", "--holdout", "0.34"]
    assert main([*probe, "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    results = json.loads(out.read_text())["results"]
    assert set(results) == {"room", "room_type", "room_colour", "object", "object_side", "clearance"}
    probed = {k: r for k, r in results.items() if "skipped" not in r}
    assert "room_type" in probed and probed["room_type"]["test_houses"] == 1, results
    for target, r in results.items():
        assert target in printed
        if "skipped" not in r:
            assert 0.0 <= r["test_acc"] <= 1.0 and f"{r['test_acc']:.3f}" in printed
            assert r["pixels"]["test_samples"] == r["test_samples"]  # the baseline probes the same frames

    navigation_only = tmp_path / "nav"
    args = [
        "collect",
        "--split",
        "r2r_train",
        "--output",
        str(navigation_only),
        "--limit",
        "1",
        "--frame-size",
        "32",
    ]
    assert CliRunner().invoke(app, args, catch_exceptions=False).exit_code == 0
    with pytest.raises(SystemExit):
        main(["--samples", str(navigation_only), "--model", str(tmp_path / "m")])
    assert "--scene-qa-every" in capsys.readouterr().err


def test_thumbnail_keeps_the_colour_of_a_flat_frame():
    frame = np.zeros((32, 48, 3), dtype=np.uint8)
    frame[..., 0] = 255
    t = thumbnail(frame)
    assert t.shape == (8 * 8 * 3,) and np.allclose(t.reshape(8, 8, 3), [1.0, 0.0, 0.0])


def test_table_reports_skipped_targets_and_the_pixel_baseline():
    row = {"classes": 8, "train_acc": 1.0, "test_acc": 0.25, "majority_acc": 0.2, "train_samples": 9}
    row |= {"test_samples": 3, "pixels": {"test_acc": 0.75}}
    table = probe_table({"room_colour": {"skipped": "4 samples"}, "room": row})
    assert "room_colour" in table and "skipped: 4 samples" in table
    assert "0.250" in table and "0.750" in table and "0.200" in table
