"""End to end on a tiny generated split: collect -> train a few steps -> checkpoint -> load -> eval, and resume."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from benchmarks.cli import app
from vlm.mm_utils import frame_indices


@pytest.fixture
def tiny_splits(monkeypatch):
    # One house, two episodes per split: generation takes seconds.
    monkeypatch.setenv("NAVILA_AGENT_GEN_HOUSES", "1")
    monkeypatch.setenv("NAVILA_AGENT_GEN_EPISODES", "2")


def invoke(args: list[str]):
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


# ~4 s on an idle machine (two one-house splits are generated, 3 training steps, one 4-step eval episode).
def test_collect_train_checkpoint_load_eval(tiny_splits, tmp_path):
    import vlm

    data = tmp_path / "collected"
    invoke(["collect", "--split", "r2r_train", "--output", str(data), "--limit", "1", "--frame-size", "32"])
    manifest = json.loads((data / "manifest.json").read_text())
    assert manifest["trajectories"] == 1 and manifest["samples"] > 3 and manifest["actions"]["stop"] == 1
    # Resuming with settings that change the samples is refused, naming the setting; nothing is lost.
    result = CliRunner().invoke(app, ["collect", "--split", "r2r_train", "--output", str(data), "--limit", "1",
                                      "--frame-size", "32", "--rebalance-factors", "stop=2"])  # fmt: skip
    assert result.exit_code == 2 and "rebalance_factors=None; this run asks for" in result.output
    assert json.loads((data / "manifest.json").read_text()) == manifest
    assert manifest["success_rate"] == 1.0  # the expert (ground-truth replay) reaches the goal
    run = tmp_path / "run"
    train_args = [
        "train",
        "--data-mixture",
        str(data),
        "--init",
        "tiny",
        "--batch-size",
        "2",
        "--save-every",
        "2",
        "--vocab-size",
        "400",
        "--output",
        str(run),
        "--log-every",
        "1",
        "--eval-split",
        "r2r_val_unseen",
        "--eval-limit",
        "1",
        "--eval-max-steps",
        "4",
    ]
    first = invoke([*train_args, "--steps", "2", "--eval-every", "2"])
    # Frames stored at 32x32 are not what the agent sees (224x224): train says so.
    assert "stores frames resized to 32x32" in " ".join(first.output.split())
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    evals = [r for r in log if "eval/sr" in r]
    assert len(evals) == 1 and evals[0]["step"] == 2 and 0.0 <= evals[0]["eval/ndtw"] <= 1.0
    assert (run / "checkpoints" / "checkpoint-2" / "eval_r2r_val_unseen" / "summary.json").is_file()
    # Rerunning with more steps resumes from checkpoint-2 instead of starting over.
    result = invoke([*train_args, "--steps", "3"])
    assert '"resumed_from": 2' in result.output.replace("\n", "")
    model = vlm.load(run)
    from agent.prompt import build_prompt
    from vlm.media import Image

    frames = [Image.black(32, 32)] * 8
    [answer] = model.generate_text(
        [(frames, build_prompt("Walk to the door.", num_frames=8))], max_new_tokens=4
    )
    assert isinstance(answer, str)
    # DAgger with the trained checkpoint as the policy: expert labels at the states the mixture visits.
    dagger = tmp_path / "dagger"
    invoke(
        [
            "collect",
            "--split",
            "r2r_train",
            "--output",
            str(dagger),
            "--limit",
            "1",
            "--frame-size",
            "32",
            "--policy",
            str(run),
            "--beta",
            "0.5",
            "--max-steps",
            "20",
        ]
    )
    manifest = json.loads((dagger / "manifest.json").read_text())
    assert manifest["expert"] == "shortest_path_follower" and manifest["samples"] == manifest["decisions"] > 0


def test_train_refuses_a_collection_with_a_shard_missing(tiny_splits, monkeypatch, tmp_path):
    # Two paths, one per shard (a path's episodes stay together). The session's cache may already hold a one-path
    # r2r_train built by another test: the explicit size rebuilds it (envs.datasets.generate.is_built).
    monkeypatch.setenv("NAVILA_AGENT_GEN_EPISODES", "4")
    data = tmp_path / "half"
    args = ["collect", "--split", "r2r_train", "--output", str(data), "--frame-size", "32", "--shards", "2"]
    result = invoke([*args, "--shard-index", "0"])
    assert "incomplete: 2 of the 4 trajectories are on disk" in result.output
    train = ["train", "--data-mixture", str(data), "--init", "tiny", "--vocab-size", "400", "--steps", "1",
             "--batch-size", "1", "--output", str(tmp_path / "run")]  # fmt: skip
    result = CliRunner().invoke(app, train)
    assert result.exit_code == 2 and "'half' at" in result.output and "2 of the 4 trajectories" in result.output
    assert not (tmp_path / "run").exists()
    result = invoke([*args, "--shard-index", "1"])
    assert "incomplete" not in result.output


def test_bad_input_gives_a_clear_message(tmp_path):
    result = CliRunner().invoke(
        app, ["train", "--data-mixture", "nope", "--init", "tiny", "--output", str(tmp_path / "r")]
    )
    assert result.exit_code == 2 and "unknown dataset 'nope'" in result.output
    result = CliRunner().invoke(app, ["train", "--data-mixture", "r2r_gen", "--output", str(tmp_path / "r")])
    assert result.exit_code == 2 and "--model PATH" in result.output
    result = CliRunner().invoke(app, ["collect", "--split", "r2r_trian", "--output", str(tmp_path / "c")])
    assert result.exit_code == 2 and "did you mean 'r2r_train'" in result.output
    result = CliRunner().invoke(app, ["collect", "--output", str(tmp_path / "c"), "--beta", "0.5"])
    assert result.exit_code == 2 and "--policy" in result.output
    result = CliRunner().invoke(app, ["collect", "--output", str(tmp_path / "c"), "--rebalance-factors", "stop=x"])
    assert result.exit_code == 2 and "'stop=x' is not KIND=COUNT" in result.output


@pytest.mark.slow  # two processes (torchrun, gloo on CPU): ~30 s on a shared 2-core machine
def test_two_process_training_and_resume(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    from tests.vlm.train.fakes import write_collected

    repo = Path(__file__).resolve().parents[2]
    answers = [
        "The next action is move forward 75 cm.",
        "The next action is turn left 30 degrees.",
        "The next action is stop.",
    ]
    data = write_collected(tmp_path / "d", {"a": answers, "b": answers[::-1], "c": answers}, size=32)
    launcher = tmp_path / "cli.py"
    launcher.write_text("from benchmarks.cli import main\nmain()\n")
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"}
    run = tmp_path / "run"

    def launch(steps: int) -> str:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            str(launcher),
            "train",
            "--data-mixture",
            str(data),
            "--init",
            "tiny",
            "--steps",
            str(steps),
            "--batch-size",
            "2",
            "--save-every",
            "2",
            "--vocab-size",
            "300",
            "--log-every",
            "1",
            "--output",
            str(run),
        ]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout + done.stderr

    launch(2)
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2]  # one log line per step: only rank 0 writes
    out = launch(3)
    assert '"resumed_from": 2' in out.replace("\n", "") and (run / "checkpoints" / "checkpoint-3").is_dir()


def test_stop_after_ends_early_on_a_checkpoint_and_rerun_continues(tiny_splits, tmp_path):
    """`--stop-after N` stops a longer schedule after N steps (the newest checkpoint is the result, no final
    model yet); the same command without it resumes there and finishes the schedule."""
    data = tmp_path / "collected"
    invoke(["collect", "--split", "r2r_train", "--output", str(data), "--limit", "1", "--frame-size", "32"])
    run = tmp_path / "run"
    args = ["train", "--data-mixture", str(data), "--init", "tiny", "--batch-size", "2", "--save-every", "2",
            "--vocab-size", "400", "--output", str(run), "--steps", "4", "--eval-every", "0"]  # fmt: skip
    result = invoke([*args, "--stop-after", "2"])
    flat = result.output.replace("\n", "")
    assert "stopped after step 2 of 4" in flat and "checkpoint-2" in flat
    assert (
        not (run / "config.json").exists()
        and (run / "checkpoints" / "checkpoint-2" / "config.json").is_file()
    )
    result = invoke(args)
    assert '"resumed_from": 2' in result.output.replace("\n", "") and (run / "config.json").is_file()
    # A stop between two --save-every checkpoints still saves the step it stopped at: nothing is lost.
    other = tmp_path / "run_odd"
    odd = [*args[: args.index("--output")], "--output", str(other), *args[args.index("--output") + 2 :]]
    result = invoke([*odd, "--stop-after", "1"])  # --save-every 2 would save nothing before step 2
    flat = result.output.replace("\n", "")
    assert "stopped after step 1 of 4" in flat and "checkpoint-1" in flat
    assert (other / "checkpoints" / "checkpoint-1" / "trainer_state.json").is_file()
    assert '"resumed_from": 1' in invoke(odd).output.replace("\n", "")
    bad = CliRunner().invoke(app, [*args, "--stop-after", "0"])
    assert bad.exit_code != 0 and "--stop-after must be >= 1" in bad.output


def test_held_out_samples_scored_by_generation_during_training(tiny_splits, tmp_path):
    """`--eval-samples DIR`: every --eval-every steps the checkpoint answers held-out samples (greedy, as the
    agent would) and kind accuracy / predicted shares land in the training log; a bad mode is refused."""
    data = tmp_path / "collected"
    invoke(["collect", "--split", "r2r_train", "--output", str(data), "--limit", "1", "--frame-size", "32"])
    run = tmp_path / "run"
    # --eval-limit 0: no benchmark episodes; a 2-step model walks to the step limit (146 s of the test's 154 s).
    args = ["train", "--data-mixture", str(data), "--init", "tiny", "--batch-size", "2", "--save-every", "2",
            "--vocab-size", "400", "--output", str(run), "--steps", "2", "--eval-every", "2",
            "--eval-samples", str(data), "--eval-samples-limit", "3", "--eval-limit", "0"]  # fmt: skip
    bad = CliRunner().invoke(app, [*args, "--eval-samples-mode", "beam"])
    assert bad.exit_code != 0 and "--eval-samples-mode: unknown 'beam'" in bad.output
    invoke(args)
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    [scored] = [r for r in log if "eval/kind_acc" in r]
    assert scored["step"] == 2 and 0.0 <= scored["eval/kind_acc"] <= 1.0
    assert abs(sum(v for k, v in scored.items() if k.startswith("eval/share_")) - 1.0) < 1e-6


def test_a_fresh_model_takes_the_vision_tower_it_is_given(tiny_splits, tmp_path):
    """--init tiny --vision-tower CKPT: the navigator trains from scratch on that tower (train-tower's output), a
    tower of another shape is refused, and a resume must name the same tower (it is frozen: not in checkpoints)."""
    import torch

    import vlm

    data = tmp_path / "collected"
    invoke(["collect", "--split", "r2r_train", "--output", str(data), "--limit", "1", "--frame-size", "32"])
    tok = vlm.build_tokenizer(["go"], vocab_size=300)
    torch.manual_seed(123)  # other weights than the fresh model's seed-0 tower
    source = tmp_path / "tower_source"
    vlm.save_checkpoint(vlm.build_model(vlm.tiny_config(vocab_size=len(tok)), tok), source)
    run = tmp_path / "run"
    args = ["train", "--data-mixture", str(data), "--init", "tiny", "--batch-size", "2", "--save-every", "1",
            "--vocab-size", "400", "--output", str(run), "--steps", "1"]  # fmt: skip
    invoke([*args, "--vision-tower", str(source)])
    trained = vlm.load(run, device="cpu", dtype="float32").vision_tower.encoder.state_dict()
    given = vlm.load(source, device="cpu", dtype="float32").vision_tower.encoder.state_dict()
    assert all(torch.equal(trained[k], given[k]) for k in given)
    assert json.loads((run / "train_config.json").read_text())["vision_tower"] == str(source)

    result = CliRunner().invoke(app, [*args[:-1], "2"])  # a resume without the tower it started with
    assert result.exit_code == 2 and "resume it with the same --vision-tower" in " ".join(
        result.output.split()
    )
    other = tmp_path / "efficientnet"
    vlm.save_checkpoint(
        vlm.build_model(
            vlm.tiny_config(vocab_size=len(tok), tower="efficientnet"), tok, pretrained_vision=False
        ),
        other,
    )
    wrong = ["--output", str(tmp_path / "run2"), "--vision-tower", str(other)]
    result = CliRunner().invoke(app, [*args[:11], *wrong])  # args[:11]: everything before --output
    assert result.exit_code == 2 and "efficientnet_lite0 tower" in " ".join(result.output.split()), (
        result.output
    )
    model = ["--model", str(source), "--vision-tower", str(source)]
    result = CliRunner().invoke(
        app, ["train", "--data-mixture", str(data), "--output", str(tmp_path / "r3"), *model]
    )
    assert result.exit_code == 2 and "--vision-tower goes with --init" in result.output


def test_embedded_cnn_trains_its_tower_from_scratch_and_resumes(tiny_splits, tmp_path):
    """--init embedded-cnn: the embedded architecture with vlm/convnet.py's tower, which has no pretrained weights,
    so it must train (--tune-vision-tower, else a clear error); the tower's weights move, are in the checkpoints
    (a stopped run resumes them) and the final folder loads as a navila_convnet model."""
    import torch

    import vlm

    data = tmp_path / "collected"
    invoke(["collect", "--split", "r2r_train", "--output", str(data), "--limit", "1", "--frame-size", "64"])
    run = tmp_path / "run"
    args = ["train", "--data-mixture", str(data), "--init", "embedded-cnn", "--batch-size", "2", "--save-every", "1",
            "--vocab-size", "400", "--output", str(run), "--steps", "2", "--lr", "1e-3"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "add --tune-vision-tower" in " ".join(result.output.split())
    invoke([*args, "--tune-vision-tower", "--stop-after", "1"])
    assert '"resumed_from": 1' in invoke([*args, "--tune-vision-tower"]).output.replace("\n", "")
    model = vlm.load(run, device="cpu", dtype="float32")
    assert model.vision_tower.kind == "navila_convnet" and model.tokens_per_image == 16
    torch.manual_seed(0)  # the fresh model's seed: build_init_model seeds it with --seed (0)
    fresh = vlm.build_model(vlm.embedded_config(model.tokenizer, tower="convnet"), model.tokenizer)
    first_conv = "stages.0.0.weight"
    trained = model.vision_tower.encoder.state_dict()[first_conv]
    assert not torch.equal(trained, fresh.vision_tower.encoder.state_dict()[first_conv])
    config = json.loads((run / "train_config.json").read_text())
    assert config["train"]["tune_vision_tower"] is True and config["init"] == "embedded-cnn"


def test_mirror_prob_trains_on_mirrored_collected_samples(tiny_splits, tmp_path):
    """--mirror-prob: the collected samples mirror exactly (instruction found in NaVILA's prompt), the flipped
    frames' features are cached beside the others, the setting is recorded, and a bad value is refused."""
    from vlm.train.dataset import MixtureDataset, mirror_item
    from vlm.train.registry import DatasetEntry

    data = tmp_path / "collected"
    invoke(["collect", "--split", "r2r_train", "--output", str(data), "--limit", "1", "--frame-size", "32"])
    mixture = MixtureDataset([DatasetEntry("c", data)])
    mirrored = [mirror_item(mixture[i]) for i in range(len(mixture))]
    assert all(m is not None for m in mirrored)  # every collected navigation sample can be mirrored
    turns = [(mixture[i]["action"], m["action"]) for i, m in enumerate(mirrored) if m["action"] != "forward"]
    assert ("left", "right") in turns or ("right", "left") in turns
    run, cache = tmp_path / "run", tmp_path / "features"
    args = ["train", "--data-mixture", str(data), "--init", "tiny", "--batch-size", "2", "--save-every", "2",
            "--vocab-size", "400", "--output", str(run), "--steps", "2", "--feature-cache-dir", str(cache)]  # fmt: skip
    bad = CliRunner().invoke(app, [*args, "--mirror-prob", "2"])
    assert bad.exit_code != 0 and "--mirror-prob" in bad.output and "got 2.0" in bad.output
    invoke([*args, "--mirror-prob", "0.5"])
    assert json.loads((run / "train_config.json").read_text())["train"]["mirror_prob"] == 0.5
    plain = {p.name for p in cache.rglob("frames/*.npy") if not p.name.endswith("-mirror.npy")}
    assert plain and {p.name for p in cache.rglob("frames/*-mirror.npy")} == {
        n.replace(".npy", "-mirror.npy") for n in plain
    }


def test_progress_loss_weight_trains_the_progress_monitor_on_collected_routes(tiny_splits, tmp_path):
    """--progress-loss-weight: collect's trajectory records give every expert sample a target, the head's error
    is logged beside the loss, the weight is recorded, the saved model loads as usual, a bad value is refused."""
    import vlm
    from vlm.train.dataset import MixtureDataset
    from vlm.train.registry import DatasetEntry

    data = tmp_path / "collected"
    invoke(["collect", "--split", "r2r_train", "--output", str(data), "--limit", "1", "--frame-size", "32"])
    mixture = MixtureDataset([DatasetEntry("c", data)])
    targets = [mixture[i]["progress"] for i in range(len(mixture))]
    assert min(targets) == 0.0 and max(targets) == 1.0  # the first decision and the expert's STOP
    run = tmp_path / "run"
    args = ["train", "--data-mixture", str(data), "--init", "tiny", "--batch-size", "2", "--save-every", "2",
            "--vocab-size", "400", "--output", str(run), "--steps", "2", "--log-every", "1"]  # fmt: skip
    bad = CliRunner().invoke(app, [*args, "--progress-loss-weight", "-1"])
    assert bad.exit_code != 0 and "--progress-loss-weight" in bad.output and "got -1.0" in bad.output
    invoke([*args, "--progress-loss-weight", "0.5"])
    assert json.loads((run / "train_config.json").read_text())["train"]["progress_loss_weight"] == 0.5
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 2 and all(r["progress_loss"] >= 0 for r in log)
    vlm.load(run)


def test_colour_grid_gives_the_fresh_towers_tokens_their_cells_colours(tiny_splits, tmp_path):
    """--init embedded --colour-grid 2: the tower's tokens carry 12 more channels (its cells' 2x2 mean colours),
    the projector is sized for them, the saved model keeps them, and a resume must keep the setting."""
    import vlm

    data = tmp_path / "collected"
    invoke(["collect", "--split", "r2r_train", "--output", str(data), "--limit", "1", "--frame-size", "32"])
    run = tmp_path / "run"
    args = ["train", "--data-mixture", str(data), "--init", "embedded", "--batch-size", "2", "--save-every", "1",
            "--vocab-size", "400", "--output", str(run), "--steps", "2"]  # fmt: skip
    invoke([*args, "--colour-grid", "2", "--stop-after", "1", "--feature-workers", "2"])
    assert json.loads((run / "train_config.json").read_text())["train"]["feature_workers"] == 2
    result = CliRunner().invoke(app, args)  # a resume without the colours it started with
    assert result.exit_code == 2 and "resume it with the same --colour-grid (now 0)" in " ".join(result.output.split())
    assert '"resumed_from": 1' in invoke([*args, "--colour-grid", "2"]).output.replace("\n", "")
    model = vlm.load(run, device="cpu", dtype="float32")
    assert model.vision_tower.encoder.config.colour_grid == 2 and model.config.mm_hidden_size == 1280 + 12
    assert json.loads((run / "train_config.json").read_text())["colour_grid"] == 2

    for wrong, message in ((["--colour-grid", "3"], "--colour-grid must be one of 0, 1, 2, 4, 8, got 3"),
                           (["--colour-grid", "2", "--init", "tiny"], "--colour-grid goes with --init embedded")):  # fmt: skip
        result = CliRunner().invoke(app, [*args[:-3], str(tmp_path / "r2"), *wrong])
        assert result.exit_code == 2 and message in " ".join(result.output.split()), result.output


@pytest.mark.parametrize(
    "flag, value, navila, setter, bad, message",
    [
        ("--frame-sampling", "geometric", "uniform", "set_frame_sampling", "dense", "unknown frame sampling rule 'dense'"),
        ("--progress-cue", "steps", "none", "set_progress_cue", "meters", "unknown progress cue 'meters'"),
    ],
)  # fmt: skip
def test_input_option_is_trained_saved_and_kept_on_resume_and_fine_tuning(
    tiny_splits, tmp_path, monkeypatch, flag, value, navila, setter, bad, message
):
    """--frame-sampling geometric / --progress-cue steps: the training data and the held-out scoring are shown that
    way (the frames of the rule; the cue with each sample's step), the saved model's config.json carries the value
    (the agent follows it), a resume must keep it, fine-tuning the model without the flag keeps it, and a bad value
    fails naming the flag."""
    import vlm
    from vlm.train.dataset import TrajectoryDataset

    key = flag[2:].replace("-", "_")
    calls: list[tuple[str, str, list[int]]] = []
    original = getattr(TrajectoryDataset, setter)

    def record(self, chosen):
        original(self, chosen)
        calls.append((chosen, self.prompt(len(self) - 1), self.samples[-1]["frames"]))

    monkeypatch.setattr(TrajectoryDataset, setter, record)
    data = tmp_path / "collected"
    invoke(["collect", "--split", "r2r_train", "--output", str(data), "--limit", "1", "--frame-size", "32"])
    last = TrajectoryDataset(data).samples[-1]["t"]
    run = tmp_path / "run"
    args = ["train", "--data-mixture", str(data), "--init", "tiny", "--batch-size", "2", "--save-every", "1",
            "--vocab-size", "400", "--output", str(run), "--steps", "2", "--eval-every", "2", "--eval-limit", "0",
            "--eval-samples", str(data), "--eval-samples-limit", "2"]  # fmt: skip
    first = invoke([*args, flag, value, "--stop-after", "1"])
    assert [c[0] for c in calls] == [value] and f"{value}" in " ".join(first.output.split())
    if key == "frame_sampling":
        assert calls[-1][2] == frame_indices(last + 1, 8, "geometric") != frame_indices(last + 1, 8)
    else:
        assert f"You have taken {last} steps so far. Analyze" in calls[-1][1]
    result = CliRunner().invoke(app, args)  # a resume without the value it started with
    flat = " ".join(result.output.split())
    expected = f"was trained with {flag} {value}; resume it with the same {flag} (now {navila})"
    assert result.exit_code == 2 and expected in flat, result.output
    assert '"resumed_from": 1' in invoke([*args, flag, value]).output.replace("\n", "")
    assert [c[0] for c in calls[-2:]] == [value, value]  # the training data, then the held-out samples at step 2
    assert getattr(vlm.load(run, device="cpu").config, key) == value
    assert json.loads((run / "config.json").read_text())[key] == value
    assert json.loads((run / "train_config.json").read_text())[key] == value

    tuned = tmp_path / "tuned"
    invoke(["train", "--data-mixture", str(data), "--model", str(run), "--batch-size", "2", "--output", str(tuned),
            "--steps", "1", "--eval-every", "0"])  # fmt: skip
    assert getattr(vlm.load(tuned, device="cpu").config, key) == value
    bad_args = ["train", "--data-mixture", str(data), "--init", "tiny", "--output", str(tmp_path / "r2"), "--steps", "1"]
    result = CliRunner().invoke(app, [*bad_args, flag, bad])
    flat = " ".join(result.output.split())
    assert result.exit_code == 2 and f"{flag}: {message}" in flat, result.output


@pytest.mark.parametrize("cache", ["no", "yes"])
def test_num_frames_is_trained_saved_and_kept_on_resume(tiny_splits, tmp_path, monkeypatch, cache):
    """--num-frames 12: every sample shows 12 frames with 12 <image> markers (raw frames or cached features), the
    held-out scoring too, the saved config's num_video_frames is 12 (the agent follows it), a resume must keep it,
    and fine-tuning without the flag keeps the model's count."""
    import vlm
    from vlm.train.dataset import SampleEncoder

    shown: list[tuple[int, int]] = []
    original = SampleEncoder.encode

    def record(self, item):
        images = item["features"] if "features" in item else item["frames"]
        shown.append((len(images), item["prompt"].count("<image>")))
        return original(self, item)

    monkeypatch.setattr(SampleEncoder, "encode", record)
    data = tmp_path / "collected"
    invoke(["collect", "--split", "r2r_train", "--output", str(data), "--limit", "1", "--frame-size", "32"])
    run = tmp_path / "run"
    args = ["train", "--data-mixture", str(data), "--init", "tiny", "--batch-size", "2", "--save-every", "1",
            "--vocab-size", "400", "--output", str(run), "--steps", "2", "--eval-every", "2", "--eval-limit", "0",
            "--eval-samples", str(data), "--eval-samples-limit", "2"]  # fmt: skip
    args += ["--cache-vision-features", cache, "--feature-cache-dir", str(tmp_path / "features")]
    invoke([*args, "--num-frames", "12", "--stop-after", "1"])
    assert (tmp_path / "features").is_dir() == (cache == "yes")
    assert shown and set(shown) == {(12, 12)}
    result = CliRunner().invoke(app, args)  # a resume without the count it started with
    flat = " ".join(result.output.split())
    assert result.exit_code == 2 and "was trained with --num-frames 12; resume it with the same --num-frames (now 8)" in flat, result.output
    shown.clear()
    invoke([*args, "--num-frames", "12"])
    assert shown and set(shown) == {(12, 12)}  # training, then the held-out samples at step 2
    assert vlm.load(run, device="cpu").config.num_video_frames == 12
    tuned = tmp_path / "tuned"
    invoke(["train", "--data-mixture", str(data), "--model", str(run), "--batch-size", "2", "--output", str(tuned),
            "--steps", "1", "--eval-every", "0"])  # fmt: skip
    assert vlm.load(tuned, device="cpu").config.num_video_frames == 12
    bad = ["train", "--data-mixture", str(data), "--init", "tiny", "--output", str(tmp_path / "r2"), "--steps", "1"]
    result = CliRunner().invoke(app, [*bad, "--num-frames", "0"])
    assert result.exit_code == 2 and "--num-frames: must be >= 1, got 0" in " ".join(result.output.split())


def test_word_init_starts_the_fresh_embeddings_from_a_text_encoder(tiny_splits, tmp_path):
    """--word-init DIR: the fresh model's word embeddings come from the encoder's (recorded in train_config.json);
    it goes with --init only, and a folder that is not a text encoder is refused naming the missing file."""
    from tests.vlm.train.test_word_init import write_text_encoder

    data = tmp_path / "collected"
    invoke(["collect", "--split", "r2r_train", "--output", str(data), "--limit", "1", "--frame-size", "32"])
    write_text_encoder(tmp_path / "enc")
    run = tmp_path / "run"
    args = ["train", "--data-mixture", str(data), "--init", "tiny", "--batch-size", "2", "--vocab-size", "400",
            "--output", str(run), "--steps", "1"]  # fmt: skip
    invoke([*args, "--word-init", str(tmp_path / "enc")])
    report = json.loads((run / "train_config.json").read_text())["word_init"]
    assert report["source"] == str(tmp_path / "enc") and report["source_dim"] == 12
    assert 0 < report["initialised"] < report["tokens"]
    for wrong, message in (
        (["--word-init", str(tmp_path)], "--word-init " + str(tmp_path) + ": no tokenizer.json"),
        (["--word-init", str(tmp_path / "enc"), "--init", "tiny", "--model", str(run)], "give exactly one of"),
    ):
        result = CliRunner().invoke(app, [*args[:-3], str(tmp_path / "r2"), *wrong])
        assert result.exit_code == 2 and message in " ".join(result.output.split()), result.output
    result = CliRunner().invoke(app, ["train", "--data-mixture", str(data), "--model", str(run), "--output",
                                      str(tmp_path / "r3"), "--word-init", str(tmp_path / "enc")])  # fmt: skip
    assert result.exit_code == 2 and "--word-init goes with --init" in " ".join(result.output.split())


@pytest.mark.parametrize("cpu_flags", [[], ["amx_bf16"]])
def test_bf16_on_a_cpu_without_bf16_instructions_is_warned_about(tiny_splits, tmp_path, monkeypatch, cpu_flags):
    """`--bf16 yes` on a CPU that emulates bf16 (session 32: 24x slower than fp32) says so and names `--bf16 no`; a
    CPU with bf16 instructions trains without the warning."""
    import vlm.train.trainer as trainer

    monkeypatch.setattr(trainer, "bf16_cpu_flags", lambda cpuinfo=None: list(cpu_flags))
    data = tmp_path / "collected"
    invoke(["collect", "--split", "r2r_train", "--output", str(data), "--limit", "1", "--frame-size", "32"])
    result = invoke(["train", "--data-mixture", str(data), "--init", "tiny", "--batch-size", "2", "--vocab-size",
                     "400", "--output", str(tmp_path / "run"), "--steps", "1", "--eval-every", "0", "--device", "cpu",
                     "--bf16", "yes"])  # fmt: skip
    text = " ".join(result.output.split())
    assert ("without bf16 instructions" in text and "Use --bf16 no" in text) == (not cpu_flags)
