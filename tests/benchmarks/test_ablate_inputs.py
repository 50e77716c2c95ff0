"""Input ablations: the sample views, a model's measured dependence on its inputs, and the swapped-instruction root."""

from __future__ import annotations

import json

import numpy as np
import pytest

import vlm
from benchmarks.ablate_inputs import (
    DEFAULT_ABLATIONS,
    SAMPLE_ABLATIONS,
    AblatedSamples,
    ablation_table,
    main,
    other_trajectory_instructions,
)
from tests.vlm.train.test_real_model import _conditioned_data, train_conditioned_model
from vlm.media import JPEG_QUALITY, perturb_frames
from vlm.train.dataset import TrajectoryDataset


def test_views_change_only_what_they_name(tmp_path):
    data = TrajectoryDataset(_conditioned_data(tmp_path / "d", "instruction", 3, seed=0))
    i = 3  # t3 of trajectory t0: three history frames and the current one
    full = data[i]
    other = AblatedSamples(data, "other_instruction")[i]
    own, donor = data.samples[i]["instruction"], data.samples[4]["instruction"]  # t1's first instruction
    assert other["prompt"] == full["prompt"].replace(own, donor) and donor != own
    assert np.array_equal(other["frames"], full["frames"]) and other["answer"] == full["answer"]
    static = AblatedSamples(data, "current_as_history")[i]
    seen = np.asarray(data.samples[i]["frames"][:-1]) >= 0
    assert seen.sum() == 3 and all(np.array_equal(f, full["frames"][-1]) for f in static["frames"][:-1][seen])
    assert not static["frames"][:-1][~seen].any()
    no_history = AblatedSamples(data, "no_history")[i]
    assert np.array_equal(no_history["frames"][-1], full["frames"][-1]) and full["frames"][:-1].any()
    assert not no_history["frames"][:-1].any() and no_history["prompt"] == full["prompt"]
    assert not AblatedSamples(data, "black_frames")[i]["frames"].any()
    with pytest.raises(ValueError, match="unknown ablation 'colour'"):
        AblatedSamples(data, "colour")


def test_perturbations_change_every_seen_frame_by_what_nobody_can_see(tmp_path):
    """pixel_noise moves values by at most 1 with the same draw every time; jpeg is the recorder's round trip; both
    keep black slots black and everything but the frames as it was. Neither runs unless asked for."""
    import dataclasses

    import cv2

    from benchmarks.callbacks import RecordingCallback

    assert "pixel_noise" not in DEFAULT_ABLATIONS and {"pixel_noise", "jpeg"} <= set(SAMPLE_ABLATIONS)
    recorder = {f.name: f.default for f in dataclasses.fields(RecordingCallback)}
    assert recorder["jpeg_quality"] == JPEG_QUALITY  # the frames `eval --record` writes
    data = TrajectoryDataset(_conditioned_data(tmp_path / "d", "image", 2, seed=0))
    i = 2  # t2: two history frames, five black slots, the current frame
    full = data[i]
    black = ~full["frames"].reshape(len(full["frames"]), -1).any(axis=1)
    assert black.sum() == 5
    for kind in ("pixel_noise", "jpeg"):
        item = AblatedSamples(data, kind)[i]
        assert item["prompt"] == full["prompt"] and item["answer"] == full["answer"]
        assert not item["frames"][black].any()
        changed = item["frames"].astype(int) - full["frames"].astype(int)
        assert all(np.abs(changed[k]).sum() > 0 for k in np.flatnonzero(~black)), kind
        assert np.array_equal(item["frames"], AblatedSamples(data, kind)[i]["frames"])  # reproducible
    noisy = AblatedSamples(data, "pixel_noise")[i]["frames"].astype(int)
    assert np.abs(noisy - full["frames"].astype(int)).max() == 1
    assert not np.array_equal(
        noisy, AblatedSamples(data, "pixel_noise")[i + 1]["frames"]
    )  # a draw per sample
    current = full["frames"][-1]
    _, buf = cv2.imencode(
        ".jpg", np.ascontiguousarray(current[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    )
    assert np.array_equal(
        AblatedSamples(data, "jpeg")[i]["frames"][-1], cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1]
    )
    with pytest.raises(ValueError, match="unknown perturbation 'blur'"):
        perturb_frames(full["frames"], "blur")


def test_other_instruction_never_comes_from_the_same_path():
    samples = [
        {"traj": "a", "frames_file": "f/a.npz", "instruction": "A"},
        {"traj": "a2", "frames_file": "f/a.npz", "instruction": "A2"},  # the same path, another instruction
        {"traj": "b", "frames_file": "f/b.npz", "instruction": "B"},
    ]
    assert other_trajectory_instructions(samples) == {"a": "B", "a2": "B", "b": "A"}
    with pytest.raises(ValueError, match="at least two different paths"):
        other_trajectory_instructions(samples[:2])


@pytest.mark.parametrize("condition", ["instruction", "image"])
def test_ablations_find_the_input_a_model_uses(tmp_path, condition):
    """A model trained to answer from the instruction loses it under `other_instruction` and keeps it with black
    frames; one trained on the current frame's colour the other way round (and keeps it without the history)."""
    from benchmarks.ablate_inputs import sample_ablations

    train_conditioned_model(tmp_path, condition)  # saved in tmp_path / "run"
    held_out = _conditioned_data(tmp_path / "val", condition, 12, seed=1)
    r = sample_ablations(
        tmp_path / "run",
        held_out,
        48,
        "generate",
        list(DEFAULT_ABLATIONS),
    )
    acc = {k: v["kind_acc"] for k, v in r.items()}
    assert acc["full"] >= 0.9, acc
    # How many answers an ablation leaves unchanged: all under `full`; at most what the accuracies allow under the
    # ablation that takes the used input away (the two agree on the right kind at most acc_ablated + (1 - acc_full)).
    same = {k: v["same_as_full"] for k, v in r.items()}
    assert same["full"] == 1.0 and all(len(v["predicted"]) == 48 for v in r.values())
    hurt = "other_instruction" if condition == "instruction" else "black_frames"
    assert same[hurt] <= acc[hurt] + 1 - acc["full"] + 1e-9, same
    assert same[hurt] == np.mean(
        [a == b for a, b in zip(r[hurt]["predicted"], r["full"]["predicted"], strict=True)]
    )
    if condition == "instruction":
        assert acc["other_instruction"] <= 0.7 and acc["black_frames"] >= 0.9, acc
    else:
        assert acc["black_frames"] <= 0.7 and acc["other_instruction"] >= 0.9 and acc["no_history"] >= 0.9, (
            acc
        )
    table = ablation_table(r)
    assert "other_instruction" in table and f"{acc['full']:.3f}" in table and f"{same[hurt]:.3f}" in table


def test_ablations_show_a_model_the_history_of_its_own_frame_sampling_rule(tmp_path, monkeypatch):
    """A model trained with the geometric history is scored on that rule's frames, not the stored uniform ones."""
    from benchmarks.ablate_inputs import sample_ablations
    from vlm.tokenizer import build_tokenizer

    shown: list[list[int]] = []
    original = AblatedSamples.__getitem__
    monkeypatch.setattr(
        AblatedSamples,
        "__getitem__",
        lambda self, i: (shown.append(list(self.data.samples[i]["frames"])), original(self, i))[1],
    )
    from tests.vlm.train.fakes import write_collected

    answer = "The next action is turn left 30 degrees."
    held_out = write_collected(
        tmp_path / "val", {"a": [answer] * 24, "b": [answer] * 12}
    )  # long enough to differ
    tokenizer = build_tokenizer([answer, "Go a. <image>"], vocab_size=300)
    model = vlm.build_model(vlm.tiny_config(vocab_size=len(tokenizer)), tokenizer).eval()
    model.config.frame_sampling = "geometric"
    model.save_pretrained(tmp_path / "geo")
    data = TrajectoryDataset(held_out)
    sample_ablations(tmp_path / "geo", held_out, len(data), "teacher_forced", ["full"])
    stored = [s["frames"] for s in data.samples]
    data.set_frame_sampling("geometric")
    assert shown == [s["frames"] for s in data.samples] != stored


def test_ablations_show_a_model_the_prompt_of_its_own_progress_cue(tmp_path, monkeypatch):
    """A model trained with the step-count cue is scored on prompts that carry it (each sample's own step)."""
    from benchmarks.ablate_inputs import sample_ablations
    from tests.vlm.train.fakes import write_collected
    from vlm.tokenizer import build_tokenizer

    prompts: list[str] = []
    original = AblatedSamples.__getitem__
    monkeypatch.setattr(
        AblatedSamples,
        "__getitem__",
        lambda self, i: (item := original(self, i), prompts.append(item["prompt"]))[0],
    )
    answer = "The next action is turn left 30 degrees."
    held_out = write_collected(tmp_path / "val", {"a": [answer] * 3, "b": [answer] * 2}, navila_prompt=True)
    tokenizer = build_tokenizer([answer, "Go a. <image>"], vocab_size=300)
    model = vlm.build_model(vlm.tiny_config(vocab_size=len(tokenizer)), tokenizer).eval()
    model.config.progress_cue = "steps"
    model.save_pretrained(tmp_path / "cue")
    sample_ablations(
        tmp_path / "cue", held_out, 5, "teacher_forced", ["full", "other_instruction", "other_steps"]
    )
    assert len(prompts) == 15
    assert [p.split("You have taken ")[1].split(" ")[0] for p in prompts[10:]] == ["2", "0", "1", "0", "1"]
    prompts = prompts[:10]
    steps = [0, 1, 2, 0, 1] * 2
    assert all(
        f"You have taken {t} steps so far. Analyze" in p for t, p in zip(steps, prompts, strict=True)
    ), prompts
    assert '"Go b." You have taken 0' in prompts[5] and '"Go a." You have taken 0' in prompts[8]  # swapped


def test_other_steps_needs_a_model_with_a_progress_cue(tmp_path):
    from benchmarks.ablate_inputs import DEFAULT_ABLATIONS, sample_ablations
    from tests.vlm.train.fakes import write_collected
    from vlm.tokenizer import build_tokenizer

    assert "other_steps" not in DEFAULT_ABLATIONS
    answer = "The next action is turn left 30 degrees."
    held_out = write_collected(tmp_path / "val", {"a": [answer] * 3}, navila_prompt=True)
    tokenizer = build_tokenizer([answer, "Go a. <image>"], vocab_size=300)
    vlm.build_model(vlm.tiny_config(vocab_size=len(tokenizer)), tokenizer).save_pretrained(tmp_path / "plain")
    with pytest.raises(
        ValueError, match="sample 'a:0': the 'other_steps' ablation needs a model trained with"
    ):
        sample_ablations(tmp_path / "plain", held_out, 3, "teacher_forced", ["other_steps"])


def test_samples_command_prints_the_table_and_writes_json(tmp_path, capsys):
    data = _conditioned_data(tmp_path / "d", "image", 3, seed=0)
    tok = vlm.build_tokenizer(["The next action is turn left 30 degrees."], vocab_size=300)
    vlm.save_checkpoint(vlm.build_model(vlm.tiny_config(vocab_size=len(tok)), tok), tmp_path / "m")
    out = tmp_path / "r.json"
    args = [
        "samples",
        "--samples",
        str(data),
        "--model",
        str(tmp_path / "m"),
        "--limit",
        "5",
        "--json",
        str(out),
    ]
    assert main([*args, "--ablations", "full,black_frames"]) == 0
    printed = capsys.readouterr().out
    assert "black_frames" in printed and "other_instruction" not in printed and "n=5 samples" in printed
    assert set(json.loads(out.read_text())["results"]) == {"full", "black_frames"}
    assert main([*args, "--ablations", "full", "--decisions", "first"]) == 0
    assert json.loads(out.read_text())["results"]["full"]["samples"] == 3  # t = 0 of the 3 trajectories
    assert (
        main([*args, "--ablations", "full", "--decisions", "later"]) == 0
    )  # 5 spread over 12: t 0, 3, 2, 1, 3
    assert json.loads(out.read_text())["results"]["full"]["samples"] == 3
    with pytest.raises(SystemExit):
        main([*args, "--ablations", "full,colour"])
    assert "--ablations: unknown ['colour']" in capsys.readouterr().err


def test_swapped_instruction_root_is_a_runnable_data_root(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from benchmarks.cli import app
    from envs.datasets.splits import load_split

    monkeypatch.setenv(
        "NAVILA_AGENT_CACHE", str(tmp_path / "cache")
    )  # a split of this size, whatever ran before
    monkeypatch.setenv("NAVILA_AGENT_GEN_HOUSES", "1")
    monkeypatch.setenv("NAVILA_AGENT_GEN_EPISODES", "6")
    root = tmp_path / "shuffled"
    assert main(["episodes", "--split", "r2r_val_unseen", "--output", str(root)]) == 0
    original = {ep.episode_id: ep for ep in load_split("r2r_val_unseen")}
    swapped = load_split("r2r_val_unseen", data_root=root)
    path_of_text = {ep.instruction.instruction_text: ep.trajectory_id for ep in original.values()}
    assert len({ep.trajectory_id for ep in original.values()}) > 1
    for ep in swapped:
        before = original[ep.episode_id]
        assert ep.start_position == before.start_position and ep.goals[0].position == before.goals[0].position
        assert ep.gt is not None and ep.gt.actions == before.gt.actions
        assert path_of_text[ep.instruction.instruction_text] != ep.trajectory_id  # another path's words
    assert (root / "scene_datasets").is_symlink()
    with pytest.raises(SystemExit):  # never over an existing dataset
        main(["episodes", "--split", "r2r_val_unseen", "--output", str(root)])

    run = tmp_path / "run"
    args = ["eval", "--agent", "forward", "--data-root", str(root), "--limit", "1", "--output", str(run)]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert list(run.rglob("summary.json"))


def test_a_split_of_one_path_cannot_swap_instructions(tmp_path, monkeypatch):
    monkeypatch.setenv("NAVILA_AGENT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("NAVILA_AGENT_GEN_HOUSES", "1")
    monkeypatch.setenv("NAVILA_AGENT_GEN_EPISODES", "1")  # a single path
    from envs.datasets.splits import load_split

    episodes = load_split("r2r_val_unseen")
    if len({ep.trajectory_id for ep in episodes}) != 1:
        pytest.fail(f"expected one path, got {[ep.trajectory_id for ep in episodes]}")
    with pytest.raises(ValueError, match="at least two paths"):
        main(["episodes", "--split", "r2r_val_unseen", "--output", str(tmp_path / "o")])
