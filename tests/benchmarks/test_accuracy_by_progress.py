"""Held-out accuracy by route progress: binning, the table's numbers by hand, and the command on a tiny model."""

from __future__ import annotations

import json

import pytest

from benchmarks.accuracy_by_progress import (
    format_table,
    main,
    progress_bin,
    tabulate,
    trajectory_steps,
)
from tests.vlm.train.fakes import write_collected


def test_progress_bins_split_the_route_in_quarters_after_the_first_decision() -> None:
    assert [progress_bin(t, 40) for t in (0, 1, 9, 10, 19, 20, 30, 39, 40)] == [
        "t=0", "0-25%", "0-25%", "25-50%", "25-50%", "50-75%", "75-100%", "75-100%", "75-100%",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="steps >= 1"):
        progress_bin(3, 0)


def test_tabulate_counts_by_hand() -> None:
    steps = {"a": 20, "b": 8}
    samples = [
        {"traj": "a", "t": 0, "action": "left"},  # t=0
        {"traj": "a", "t": 3, "action": "forward"},  # 0-25%
        {"traj": "a", "t": 4, "action": "right"},  # 0-25%
        {"traj": "a", "t": 16, "action": "forward"},  # 75-100%
        {"traj": "a", "t": 19, "action": "stop"},  # 75-100%
        {"traj": "b", "t": 7, "action": "left"},  # 75-100%
    ]
    predicted = ["left", "forward", "left", "left", "stop", "left"]
    result = tabulate(samples, predicted, steps)
    cells = result["cells"]
    assert cells["t=0"]["all"] == {"n": 1, "correct": 1, "acc": 1.0, "se": 0.0}
    assert (cells["0-25%"]["all"]["n"], cells["0-25%"]["all"]["acc"]) == (2, 0.5)
    assert cells["0-25%"]["forward"]["acc"] == 1.0 and cells["0-25%"]["turn"]["acc"] == 0.0
    assert (cells["75-100%"]["all"]["correct"], cells["75-100%"]["all"]["n"]) == (2, 3)
    assert cells["75-100%"]["turn"]["acc"] == 1.0 and cells["75-100%"]["stop"]["acc"] == 1.0
    assert cells["75-100%"]["forward"]["acc"] == 0.0
    assert cells["25-50%"]["all"] == {"n": 0, "correct": 0, "acc": None, "se": None}
    assert result["first_vs_last"]["diff"] == pytest.approx(2 / 3 - 0.5)
    assert result["first_vs_last"]["se"] == pytest.approx(((0.25 / 2) + (2 / 9) / 3) ** 0.5)
    table = format_table(result)
    assert "0.500 ±0.354 (   2)" in table and "last quarter - first quarter: +0.167" in table
    with pytest.raises(ValueError, match="6 samples but 5 predictions"):
        tabulate(samples, predicted[:5], steps)


def test_the_command_scores_a_model_and_writes_json(tmp_path, capsys) -> None:
    import vlm
    from vlm.tokenizer import build_tokenizer

    answer = "The next action is turn left 30 degrees."
    data = write_collected(tmp_path / "val", {"a": [answer] * 12, "b": [answer] * 9})
    with pytest.raises(ValueError, match="has no 'steps'"):  # the fake collector writes none
        trajectory_steps(data)
    trajectories = data / "shard-00000" / "trajectories.jsonl"
    trajectories.write_text('{"traj": "a", "steps": 12}\n{"traj": "b", "steps": 9}\n')
    tokenizer = build_tokenizer([answer, "Go a. <image>"], vocab_size=300)
    model = vlm.build_model(vlm.tiny_config(vocab_size=len(tokenizer)), tokenizer).eval()
    model.config.frame_sampling = "geometric"
    model.save_pretrained(tmp_path / "m")
    assert main([str(tmp_path / "m"), str(data), "--every", "2", "--json", str(tmp_path / "p.json")]) == 0
    out = capsys.readouterr().out
    assert "(every 2, geometric history)" in out and "75-100%" in out
    result = json.loads((tmp_path / "p.json").read_text())
    assert sum(result["cells"][b]["all"]["n"] for b in result["cells"]) == 11  # samples 0, 2, ..., 20
    assert result["frame_sampling"] == "geometric"
    with pytest.raises(SystemExit):
        main([str(tmp_path / "nowhere"), str(data)])


def test_the_model_is_scored_on_the_prompts_of_its_own_progress_cue(tmp_path, monkeypatch, capsys) -> None:
    import vlm
    from vlm.tokenizer import build_tokenizer
    from vlm.train import action_eval

    answer = "The next action is turn left 30 degrees."
    data = write_collected(tmp_path / "val", {"a": [answer] * 6}, navila_prompt=True)
    (data / "shard-00000" / "trajectories.jsonl").write_text('{"traj": "a", "steps": 6}\n')
    tokenizer = build_tokenizer([answer, "Go a. <image>"], vocab_size=300)
    model = vlm.build_model(vlm.tiny_config(vocab_size=len(tokenizer)), tokenizer).eval()
    model.config.progress_cue = "steps"
    model.save_pretrained(tmp_path / "m")
    prompts: list[str] = []
    original = action_eval.answer_items
    monkeypatch.setattr(
        action_eval, "answer_items", lambda m, items, *a: (prompts.extend(i["prompt"] for i in items), original(m, items, *a))[1]
    )
    assert main([str(tmp_path / "m"), str(data), "--json", str(tmp_path / "p.json")]) == 0
    assert [p.count(f"You have taken {t} steps so far. Analyze") for t, p in enumerate(prompts)] == [1] * 6
    assert "progress cue steps)" in capsys.readouterr().out
    assert json.loads((tmp_path / "p.json").read_text())["progress_cue"] == "steps"
