"""Trajectory collection: NaVILA labelling, frame indices, the on-disk format, resume, rebalancing, DAgger."""

from __future__ import annotations

import itertools
import json
import random

import numpy as np
import pytest

from benchmarks.collect import (
    CollectConfig,
    ReplayExpert,
    ShardWriter,
    collect,
    decision_points,
    expert_label,
    parse_rebalance_factors,
    predict_pose,
    read_jsonl,
    run_dagger,
    run_expert,
    sample_frame_indices,
    shard_assignment,
    write_frames,
)
from envs.constants import MOVE_FORWARD, STOP, TURN_LEFT, TURN_RIGHT
from envs.datasets.episode import Episode, Goal, GroundTruth, Instruction
from vlm.mm_utils import vlnce_frame_sampling
from vlm.train.dataset import FrameStore, TrajectoryDataset, depth_file, depth_grid, label_grid


def test_hand_checked_trajectory_labels():
    got = [(d.t, d.action.kind, d.action.amount) for d in decision_points([1, 1, 1, 1, 2, 2, 3, 1, 1, 0])]
    assert got == [
        (0, "forward", 75),
        (3, "forward", 25),
        (4, "left", 30),
        (6, "right", 15),
        (7, "forward", 50),
        (9, "stop", 0),
    ]


@pytest.mark.parametrize("seen", [0, 1, 3, 7, 8, 9, 15, 20, 50, 200])
def test_frame_indices_match_the_sampler(seen):
    frames = [np.full((2, 2, 3), i + 1, dtype=np.uint8) for i in range(seen)]  # frame i is filled with i + 1
    picked = vlnce_frame_sampling(frames, 8, image_size=(2, 2))
    expected = [int(f[0, 0, 0]) - 1 for f in picked]  # black (0) → -1
    assert sample_frame_indices(seen, 8) == expected


def test_frame_indices_reference_examples():
    assert sample_frame_indices(1) == [-1] * 7 + [0]
    assert sample_frame_indices(4) == [-1, -1, -1, -1, 0, 1, 2, 3]
    assert sample_frame_indices(20)[:7] == [0, 2, 5, 8, 10, 13, 16]
    assert sample_frame_indices(200) == [0, 28, 56, 85, 113, 142, 170, 199]


class FakeDriver:
    """A 1-D corridor: frames encode the step index in their pixels, so tests can check which frame is which."""

    def __init__(self):
        self.t = 0
        self.heading = 0.0

    def reset(self, episode):
        self.t = 0
        return self._frame()

    def _frame(self):
        return np.full((6, 6, 3), min(self.t, 255), dtype=np.uint8)

    def step(self, action):
        self.t += 1
        return self._frame(), action == STOP

    def pose(self):
        return np.zeros(3), np.array([0.0, 0.0, 0.0, 1.0])


def make_episode(i: int, actions: list[int]) -> Episode:
    return Episode(
        episode_id=str(i),
        trajectory_id=i,
        scene_id="gen/h0/h0.glb",
        start_position=[0, 0, 0],
        start_rotation=[0, 0, 0, 1],
        goals=[Goal([0, 0, -3])],
        instruction=Instruction(f"walk {i}"),
        reference_path=[[0, 0, 0]],
        gt=GroundTruth([[0, 0, 0]], actions, 0),
        dataset="r2r",
        split="train",
    )


def prompt_fn(instruction: str, n: int) -> str:
    return "<image>\n" * n + instruction


HAND = [1, 1, 1, 1, 2, 2, 3, 1, 1, 0]


def test_collect_writes_format_and_manifest(tmp_path):
    episodes = [make_episode(0, HAND), make_episode(1, [3, 3, 3, 3, 0])]
    out = tmp_path / "c"
    manifest = collect(
        CollectConfig(output=str(out), shards=2), episodes, FakeDriver(), ReplayExpert(), prompt_fn
    )
    assert manifest["trajectories"] == 2 and manifest["samples"] == 6 + 3
    assert manifest["actions"] == {"forward": 3, "left": 1, "right": 3, "stop": 2}
    assert json.loads((out / "manifest.json").read_text())["frames"] == 10 + 5
    samples = read_jsonl(out / "shard-00000" / "samples.jsonl")
    assert [s["t"] for s in samples] == [0, 3, 4, 6, 7, 9]
    assert samples[1]["frames"] == [-1, -1, -1, -1, 0, 1, 2, 3]
    assert samples[1]["conversations"][1]["value"] == "The next action is move forward 25 cm."
    assert samples[1]["conversations"][0]["value"].count("<image>") == 8
    store = FrameStore(out / "shard-00000" / samples[0]["frames_file"])
    assert store.shape == (10, 6, 6, 3)  # stored once per trajectory: one frame per executed action
    assert [int(store.frame(t)[0, 0, 0]) for t in range(10)] == list(range(10))  # frame t: before action t
    assert read_jsonl(out / "shard-00001" / "samples.jsonl")[0]["action"] == "right"


@pytest.mark.parametrize("codec", ["png", "jpeg", "npz"])
def test_frame_codecs_round_trip(tmp_path, codec):
    rng = np.random.default_rng(0)
    frames = np.repeat(
        np.repeat(rng.integers(0, 256, (5, 4, 6, 3), dtype=np.uint8), 8, 1), 8, 2
    )  # [5, 32, 48, 3]
    write_frames(tmp_path / "f.npz", frames, codec)
    store = FrameStore(tmp_path / "f.npz")
    assert store.shape == frames.shape and len(store) == 5
    decoded = np.stack([store.frame(i) for i in range(5)])
    if codec == "jpeg":  # lossy, but close
        assert np.abs(decoded.astype(int) - frames).mean() < 8
    else:
        assert np.array_equal(decoded, frames)


def test_collect_resumes_without_duplicates(tmp_path):
    episodes = [make_episode(i, HAND) for i in range(3)]
    out = tmp_path / "c"
    cfg = CollectConfig(output=str(out), limit=2)
    collect(cfg, episodes, FakeDriver(), ReplayExpert(), prompt_fn)
    # A crash after a trajectory's samples but before its trajectories.jsonl line leaves orphans: dropped on resume.
    orphan = dict(read_jsonl(out / "shard-00000" / "samples.jsonl")[0], traj="r2r_train__2")
    with open(out / "shard-00000" / "samples.jsonl", "a") as f:
        f.write(json.dumps(orphan) + "\n")
    driver = FakeDriver()
    calls = []
    driver.reset = lambda ep, _r=driver.reset: calls.append(ep.episode_id) or _r(ep)
    manifest = collect(CollectConfig(output=str(out)), episodes, driver, ReplayExpert(), prompt_fn)
    assert calls == ["2"]  # finished trajectories are skipped
    samples = read_jsonl(out / "shard-00000" / "samples.jsonl")
    assert len(samples) == manifest["samples"] == 18
    assert len({s["id"] for s in samples}) == 18


def test_every_spreads_the_subset_over_the_split(tmp_path):
    episodes = [make_episode(i, [3, 0]) for i in range(7)]
    driver = FakeDriver()
    calls = []
    driver.reset = lambda ep, _r=driver.reset: calls.append(ep.episode_id) or _r(ep)
    cfg = CollectConfig(output=str(tmp_path / "c"), every=3, limit=2)
    manifest = collect(cfg, episodes, driver, ReplayExpert(), prompt_fn)
    assert calls == ["0", "3"] and manifest["trajectories"] == 2
    with pytest.raises(ValueError, match="--every"):
        CollectConfig(every=0)


def test_rebalance_duplicates_stop_and_turns(tmp_path):
    manifest = collect(
        CollectConfig(output=str(tmp_path / "c"), rebalance=True),
        [make_episode(0, HAND)],
        FakeDriver(),
        ReplayExpert(),
        prompt_fn,
    )
    assert manifest["actions"] == {"forward": 3, "left": 2, "right": 2, "stop": 4}
    samples = read_jsonl(tmp_path / "c" / "shard-00000" / "samples.jsonl")
    assert sorted(s["copy"] for s in samples if s["action"] == "stop") == [0, 1, 2, 3]


def test_rebalance_factors_set_the_copies_per_kind(tmp_path):
    factors = parse_rebalance_factors("stop=1, forward=2")
    assert factors == {"stop": 1, "left": 2, "right": 2, "forward": 2}  # unnamed kinds keep their defaults
    manifest = collect(
        CollectConfig(output=str(tmp_path / "c"), rebalance=True, rebalance_factors=factors),
        [make_episode(0, HAND)],
        FakeDriver(),
        ReplayExpert(),
        prompt_fn,
    )
    assert manifest["actions"] == {"forward": 6, "left": 2, "right": 2, "stop": 1}
    assert manifest["rebalance_factors"] == factors
    samples = read_jsonl(tmp_path / "c" / "shard-00000" / "samples.jsonl")
    assert [s["copy"] for s in samples if s["action"] == "stop"] == [0]


@pytest.mark.parametrize(
    "text, message",
    [("stop", "not KIND=COUNT"), ("jump=2", "unknown answer kind"), ("stop=0", "stop=0"), ("", "empty")],
)
def test_bad_rebalance_factors_are_named(text, message):
    with pytest.raises(ValueError, match=message):
        parse_rebalance_factors(text)


def test_resume_refuses_other_labelling_settings(tmp_path):
    out = tmp_path / "c"
    cfg = CollectConfig(output=str(out), rebalance=True)
    collect(cfg, [make_episode(0, HAND)], FakeDriver(), ReplayExpert(), prompt_fn)
    other = CollectConfig(output=str(out), rebalance=True, rebalance_factors={"stop": 2})
    with pytest.raises(ValueError, match=r"rebalance_factors=.*'stop': 4.*'stop': 2"):
        collect(other, [make_episode(0, HAND), make_episode(1, [3, 0])], FakeDriver(), ReplayExpert(), prompt_fn)
    with pytest.raises(ValueError, match="num_frames=8; this run asks for num_frames=4"):
        collect(CollectConfig(output=str(out), rebalance=True, num_frames=4), [], FakeDriver(), ReplayExpert(), prompt_fn)
    # Nothing was written by the refused runs; the same settings resume (and add episode 1 only).
    assert len(read_jsonl(out / "shard-00000" / "trajectories.jsonl")) == 1
    manifest = collect(cfg, [make_episode(0, HAND), make_episode(1, [3, 0])], FakeDriver(), ReplayExpert(), prompt_fn)
    assert manifest["trajectories"] == 2


def _same_path(i: int, text: str) -> Episode:
    """Episode i on path 7: R2R's several instructions for one trajectory."""
    ep = make_episode(i, HAND)
    ep.trajectory_id = 7
    ep.instruction = Instruction(text)
    return ep


def test_episodes_of_one_path_share_frames_and_keep_their_instructions(tmp_path):
    episodes = [_same_path(0, "walk on"), make_episode(1, [3, 0]), _same_path(2, "go ahead then stop")]
    out = tmp_path / "c"
    driver = FakeDriver()
    calls = []
    driver.reset = lambda ep, _r=driver.reset: calls.append(ep.episode_id) or _r(ep)
    manifest = collect(CollectConfig(output=str(out)), episodes, driver, ReplayExpert(), prompt_fn)
    assert calls == ["0", "1"]  # episode 2 is path 7 again: not driven
    assert manifest["trajectories"] == 3 and manifest["sharing_frames"] == 1
    assert manifest["frames"] == 10 + 2  # stored frames: path 7 once
    assert sorted(p.name for p in (out / "shard-00000" / "frames").iterdir()) == [
        "r2r_train__0.npz",
        "r2r_train__1.npz",
    ]
    samples = read_jsonl(out / "shard-00000" / "samples.jsonl")
    first = [s for s in samples if s["traj"] == "r2r_train__0"]
    second = [s for s in samples if s["traj"] == "r2r_train__2"]
    assert [s["frames_file"] for s in second] == ["frames/r2r_train__0.npz"] * 6
    assert [(s["t"], s["action"], s["frames"]) for s in second] == [
        (s["t"], s["action"], s["frames"]) for s in first
    ]
    assert {s["instruction"] for s in second} == {"go ahead then stop"}
    assert "go ahead then stop" in second[0]["conversations"][0]["value"]
    assert manifest["samples"] == len(samples) == 6 + 2 + 6
    lines = {r["traj"]: r for r in read_jsonl(out / "shard-00000" / "trajectories.jsonl")}
    assert lines["r2r_train__2"]["shares_frames_with"] == "r2r_train__0"
    assert lines["r2r_train__2"]["frames"] == 10 and lines["r2r_train__2"]["ended_with_stop"]
    # Resuming (a new episode of path 7 appended) still shares with the frames written by the first run.
    calls.clear()
    manifest = collect(
        CollectConfig(output=str(out)),
        [*episodes, _same_path(3, "stop by the door")],
        driver,
        ReplayExpert(),
        prompt_fn,
    )
    assert calls == [] and manifest["sharing_frames"] == 2 and manifest["frames"] == 12


def _pairs() -> list[Episode]:
    """R2R's layout: two instructions per path, consecutive in the split (paths 10, 11, 12)."""
    out = []
    for i in range(6):
        ep = make_episode(i, HAND if i // 2 != 1 else [3, 3, 0])
        ep.trajectory_id = 10 + i // 2
        out.append(ep)
    return out


def test_parallel_shards_keep_the_episodes_of_a_path_together(tmp_path):
    episodes = _pairs()
    assert shard_assignment(episodes, 2, by_path=True) == [0, 0, 1, 1, 0, 0]
    assert shard_assignment(episodes, 2, by_path=False) == [0, 1, 0, 1, 0, 1]  # DAgger: every drive differs
    out = tmp_path / "c"
    driver = FakeDriver()
    calls = []
    driver.reset = lambda ep, _r=driver.reset: calls.append(ep.episode_id) or _r(ep)
    for k in (0, 1):  # two collectors, one per shard
        manifest = collect(
            CollectConfig(output=str(out), shards=2, shard_index=k),
            episodes,
            driver,
            ReplayExpert(),
            prompt_fn,
        )
    assert calls == ["0", "4", "2"]  # one drive per path
    assert manifest["trajectories"] == 6 and manifest["sharing_frames"] == 3
    assert manifest["frames"] == 10 + 10 + 3  # each path's frames stored once, not once per shard
    shard1 = read_jsonl(out / "shard-00001" / "trajectories.jsonl")
    assert [r["traj"] for r in shard1] == ["r2r_train__2", "r2r_train__3"]


def test_a_folder_missing_a_shard_is_marked_incomplete_and_not_trained_on(tmp_path):
    """Shard collectors run in parallel: until the last one finishes, the folder is a partial collection and the
    training loader says so (naming the folder and the counts) instead of training on half the split."""
    episodes = _pairs()
    out = tmp_path / "c"
    config = CollectConfig(output=str(out), shards=2, shard_index=0)
    manifest = collect(config, episodes, FakeDriver(), ReplayExpert(), prompt_fn)
    assert manifest["episodes_selected"] == 6 and manifest["trajectories"] == 4 and manifest["complete"] is False
    with pytest.raises(ValueError, match=r"'c' at .*c is incomplete: 4 of the 6 trajectories"):
        TrajectoryDataset(out)
    config = CollectConfig(output=str(out), shards=2, shard_index=1)
    manifest = collect(config, episodes, FakeDriver(), ReplayExpert(), prompt_fn)
    assert manifest["trajectories"] == 6 and manifest["complete"] is True
    assert len(TrajectoryDataset(out)) == manifest["samples"]
    config = CollectConfig(output=str(tmp_path / "l"), limit=2)
    limited = collect(config, episodes, FakeDriver(), ReplayExpert(), prompt_fn)
    assert limited["episodes_selected"] == 2 and limited["complete"] is True  # --limit is what was asked for


def test_resume_skips_trajectories_finished_in_another_shard(tmp_path):
    """A collection sharded by episode index (before path sharding) resumes without collecting anything twice."""
    episodes = _pairs()
    out = tmp_path / "c"
    out.mkdir()
    driver = FakeDriver()
    # the old layout's shard 1 (episodes 1, 3, 5 by i % 2): collected alone, then moved into place
    collect(CollectConfig(output=str(tmp_path / "old")), episodes[1::2], driver, ReplayExpert(), prompt_fn)
    (tmp_path / "old" / "shard-00000").rename(out / "shard-00001")
    calls = []
    driver.reset = lambda ep, _r=driver.reset: calls.append(ep.episode_id) or _r(ep)
    manifest = collect(
        CollectConfig(output=str(out), shards=2, shard_index=0), episodes, driver, ReplayExpert(), prompt_fn
    )
    assert calls == ["0", "4"]  # episode 1 (path 10) and 5 (path 12) are done in shard 1: skipped
    assert (
        manifest["trajectories"] == 5
    )  # 0, 4 (shard 0) + 1, 3, 5 (shard 1); episode 2 waits for collector 1
    keys = [
        r["traj"] for f in ("shard-00000", "shard-00001") for r in read_jsonl(out / f / "trajectories.jsonl")
    ]
    assert len(keys) == len(set(keys))


def test_sharing_needs_the_same_path_and_no_dagger(tmp_path):
    other_actions = _same_path(1, "b")
    other_actions.gt = GroundTruth([[0, 0, 0]], [3, 3, 0], 0)  # same trajectory id, other ground truth
    driver = FakeDriver()
    calls = []
    driver.reset = lambda ep, _r=driver.reset: calls.append(ep.episode_id) or _r(ep)
    collect(
        CollectConfig(output=str(tmp_path / "a")),
        [_same_path(0, "a"), other_actions],
        driver,
        ReplayExpert(),
        prompt_fn,
    )
    assert calls == ["0", "1"]
    calls.clear()
    collect(  # DAgger: every drive differs (coin flips, the model), so nothing is shared
        CollectConfig(output=str(tmp_path / "d"), beta=0.5, policy="fake", max_steps=4),
        [_same_path(0, "a"), _same_path(1, "b")],
        driver,
        HeadingExpert(),
        prompt_fn,
        policy=AlwaysRight(),
    )
    assert calls == ["0", "1"]


def test_a_shard_has_one_collector_at_a_time(tmp_path):
    first = ShardWriter(tmp_path / "shard-00000")
    with pytest.raises(RuntimeError, match=r"another collector is writing .*shard-00000"):
        collect(
            CollectConfig(output=str(tmp_path)),
            [make_episode(0, HAND)],
            FakeDriver(),
            ReplayExpert(),
            prompt_fn,
        )
    first.close()  # released: collecting works, and releases the lock again when done
    collect(
        CollectConfig(output=str(tmp_path)), [make_episode(0, HAND)], FakeDriver(), ReplayExpert(), prompt_fn
    )
    ShardWriter(tmp_path / "shard-00000").close()


def test_config_validation():
    with pytest.raises(ValueError, match="--beta"):
        CollectConfig(beta=1.5)
    with pytest.raises(ValueError, match="--policy"):
        CollectConfig(beta=0.5)
    with pytest.raises(ValueError, match="--shard-index"):
        CollectConfig(shards=2, shard_index=2)


class HeadingExpert:
    """Turns left until facing +x (heading 90°), then walks forward to x = 1, then stops: needs look-ahead poses."""

    def reset(self, episode):
        pass

    def next_action(self, position, rotation, t):
        from envs.geometry import quaternion_to_heading

        heading = np.degrees(quaternion_to_heading(rotation))
        if heading < 89:
            return TURN_LEFT
        return MOVE_FORWARD if position[0] > -0.99 else STOP


def test_expert_label_looks_ahead_with_predicted_poses():
    label = expert_label(HeadingExpert(), np.zeros(3), np.array([0, 0, 0, 1.0]), t=5)
    assert (label.t, label.action.kind, label.action.amount, label.low_level) == (5, "left", 45, (2, 2, 2))
    pos, _rot = predict_pose(
        np.zeros(3), np.array([0, np.sin(np.pi / 4), 0, np.cos(np.pi / 4)]), MOVE_FORWARD
    )
    assert np.allclose(pos, [-0.25, 0, 0])  # heading +90° faces -x


class PoseDriver(FakeDriver):
    def reset(self, episode):
        self.position, self.rotation = np.zeros(3), np.array([0, 0, 0, 1.0])
        return super().reset(episode)

    def step(self, action):
        self.position, self.rotation = predict_pose(self.position, self.rotation, action)
        return super().step(action)

    def pose(self):
        return self.position, self.rotation


class AlwaysRight:
    def __init__(self):
        self.calls = []

    def decide(self, frames, instruction):
        self.calls.append(len(frames))
        return [TURN_RIGHT]


def test_dagger_labels_with_expert_at_visited_states():
    policy = AlwaysRight()
    traj = run_dagger(
        PoseDriver(),
        HeadingExpert(),
        policy,
        make_episode(0, []),
        beta=0.0,
        rng=random.Random(0),
        max_steps=4,
    )
    assert traj.actions == [TURN_RIGHT] * 4 and traj.executed_by == ["policy"] * 4
    # Facing further right each time, the expert would turn left 45 every time (its label, not the policy's).
    assert [(d.t, d.action.kind, d.action.amount) for d in traj.decisions] == [
        (t, "left", 45) for t in range(4)
    ]
    assert policy.calls == [1, 2, 3, 4]  # the policy sees every frame so far
    expert_run = run_dagger(
        PoseDriver(),
        HeadingExpert(),
        policy,
        make_episode(0, []),
        beta=1.0,
        rng=random.Random(0),
        max_steps=100,
    )
    assert expert_run.ended_with_stop and expert_run.actions[:6] == [2] * 6
    assert [d.action.kind for d in expert_run.decisions] == ["left", "left", "forward", "forward", "stop"]


class FlakyPolicy(AlwaysRight):
    """Turns right; every other answer counts as unparsable (as ModelPolicy counts them)."""

    parse_failures = 0

    def decide(self, frames, instruction):
        self.parse_failures += len(self.calls) % 2
        return super().decide(frames, instruction)


def test_dagger_collect_records_policy_share_and_failures(tmp_path):
    cfg = CollectConfig(output=str(tmp_path / "d"), beta=0.0, policy="fake", max_steps=4)
    manifest = collect(
        cfg, [make_episode(0, [])], PoseDriver(), HeadingExpert(), prompt_fn, policy=FlakyPolicy()
    )
    assert manifest["policy_decisions"] == 4 and manifest["policy_parse_failures"] == 2
    assert manifest["expert"] == "shortest_path_follower" and manifest["actions"] == {
        "forward": 0,
        "left": 4,
        "right": 0,
        "stop": 0,
    }
    samples = read_jsonl(tmp_path / "d" / "shard-00000" / "samples.jsonl")
    assert [s["executed_by"] for s in samples] == ["policy"] * 4
    assert samples[3]["frames"] == [-1, -1, -1, -1, 0, 1, 2, 3]


def test_real_r2r_ground_truth_labels_replay_exactly(r2r_sample_dir):
    """On the real R2R-CE sample, the merged answers re-expand to exactly the ground-truth actions."""
    from envs.datasets.splits import load_split

    episodes = load_split("r2r_val_seen", data_root=r2r_sample_dir)
    assert len(episodes) == 20
    for ep in episodes:
        decisions = decision_points(ep.gt.actions)
        assert [a for d in decisions for a in d.action.to_low_level()] == list(ep.gt.actions)
        assert decisions[-1].action.kind == "stop" and decisions[-1].t == len(ep.gt.actions) - 1
        assert all(1 <= len(d.low_level) <= 3 for d in decisions)
        # A decision starts where the previous one's steps ran out.
        assert all(b.t == a.t + len(a.low_level) for a, b in itertools.pairwise(decisions))


def test_model_policy_encodes_each_frame_once():
    import torch

    import vlm
    from benchmarks.collect import ModelPolicy

    tok = vlm.build_tokenizer(["The next action is move forward 75 cm.", "Go."], vocab_size=300)
    torch.manual_seed(0)
    model = vlm.build_model(vlm.tiny_config(vocab_size=len(tok)), tok).eval()
    encoded = []
    model.vision_tower.register_forward_hook(lambda _m, args, _o: encoded.append(args[0].shape[0]))
    policy = ModelPolicy(model, max_new_tokens=3)
    policy.reset(make_episode(0, []))
    frames = [np.full((32, 32, 3), 10 * t, dtype=np.uint8) for t in range(3)]
    for t in range(3):
        plan = policy.decide(frames[: t + 1], "Go.")
        assert plan and set(plan) <= {0, 1, 2, 3}
    assert encoded == [2, 1, 1]  # black pad + frame 0, then only the new frame each decision
    assert policy.decisions == 3 and 0 <= policy.parse_failures <= 3


def test_model_policy_shows_the_model_its_own_history_rule():
    """A DAgger round driven by a model trained with the geometric history gives it that history."""
    from benchmarks.collect import ModelPolicy
    from vlm.mm_utils import history_indices

    class Config:
        frame_sampling = "geometric"

    class Recorder:
        config = Config()
        conv_mode = "llama_3"

        def __init__(self) -> None:
            self.keys: list[list] = []

        def generate_text(self, samples, max_new_tokens=32):
            self.keys.append([image.key for image in samples[0][0]])
            return ["The next action is move forward 25 cm."]

    model = Recorder()
    policy = ModelPolicy(model)
    policy.reset(make_episode(0, []))
    frames = [np.zeros((8, 8, 3), dtype=np.uint8) for _ in range(30)]
    policy.decide(frames, "Go.")
    uid = policy._uid
    assert model.keys == [[(uid, i) for i in history_indices(30, 8, "geometric")] + [(uid, 29)]]
    assert history_indices(30, 8, "geometric") != history_indices(30, 8)


def test_model_policy_shows_the_model_its_own_frame_count_and_progress_cue():
    """A DAgger round driven by a model trained on 4 frames with the step-count cue shows it 4 frames and tells it
    the current step, as the agent does."""
    from benchmarks.collect import ModelPolicy

    class Config:
        num_video_frames = 4
        progress_cue = "steps"

    class Recorder:
        config = Config()
        conv_mode = "llama_3"

        def __init__(self) -> None:
            self.seen: list[tuple[int, str]] = []

        def generate_text(self, samples, max_new_tokens=32):
            self.seen.append((len(samples[0][0]), samples[0][1]))
            return ["The next action is move forward 25 cm."]

    model = Recorder()
    policy = ModelPolicy(model)
    policy.reset(make_episode(0, []))
    policy.decide([np.zeros((8, 8, 3), dtype=np.uint8) for _ in range(30)], "Go.")
    [(count, prompt)] = model.seen
    assert count == prompt.count("<image>") == 4
    assert '"Go." You have taken 29 steps so far. Analyze' in prompt
    assert ModelPolicy(model, num_frames=8).num_frames == 8


def test_model_policy_stops_on_the_models_monitor_as_the_agent_does():
    """A DAgger round driven by a model whose monitor comes with a stop threshold stops where the agent would: on
    `patience` consecutive estimates at or above it (the model's own threshold unless one is given; 0 = never)."""
    from benchmarks.collect import ModelPolicy

    class Head:
        stop_threshold = 0.8

    class Monitored:
        conv_mode = "llama_3"
        progress_head = Head()

        def __init__(self, estimates: list[float]) -> None:
            self.estimates = list(estimates)

        def generate_text(self, samples, max_new_tokens=32, return_progress=False):
            assert return_progress
            return ["The next action is move forward 25 cm."], [self.estimates.pop(0)]

    frames = [np.zeros((8, 8, 3), dtype=np.uint8)]
    estimates = [0.5, 0.85, 0.7, 0.9, 0.95]

    def plans(**kwargs) -> tuple[list[list[int]], int]:
        policy = ModelPolicy(Monitored(estimates), **kwargs)
        policy.reset(make_episode(0, []))
        out = [policy.decide(frames, "Go.") for _ in estimates]
        return out, policy.monitor_stops

    forward, stop = [1], [0]
    assert plans() == ([forward, stop, forward, stop, stop], 3)  # the model's own 0.8, every decision at it stops
    assert plans(monitor_patience=2) == ([forward, forward, forward, forward, stop], 1)  # 0.9 then 0.95 in a row
    assert plans(monitor_stop=0.92) == ([forward] * 4 + [stop], 1)
    policy = ModelPolicy(Monitored(estimates), monitor_stop=0)  # 0 = never: no estimate asked for
    policy.model.generate_text = lambda samples, max_new_tokens=32: ["The next action is move forward 25 cm."]
    policy.reset(make_episode(0, []))
    assert policy.decide(frames, "Go.") == forward and policy.monitor_stops == 0
    with pytest.raises(ValueError, match="monitor_patience must be >= 1"):
        ModelPolicy(Monitored(estimates), monitor_patience=0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"frame_codec": "gif"}, "unknown --frame-codec 'gif'"),
        ({"frame_size": 4}, "--frame-size must be >= 8"),
        ({"max_steps": 0}, "max_steps must be >= 1"),
        ({"rebalance_factors": {"stop": 0}}, "stop=0"),
    ],
)
def test_config_errors_name_the_option(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CollectConfig(**kwargs)


class DepthDriver(FakeDriver):
    """FakeDriver that also observes depth: every pixel of frame t is t + 1 metres away, except a hole (0: nothing
    hit) in the top-left pixel."""

    def depth(self):
        d = np.full((6, 6), self.t + 1.0, dtype=np.float32)
        d[0, 0] = 0.0
        return d


def test_depth_grid_averages_the_pixels_that_hit_something():
    d = np.array([[0, 2, 4, 4], [2, 2, 4, 4], [1, 1, 0, 0], [3, 3, 0, 0]], dtype=np.float32)
    assert np.allclose(depth_grid(d, 2), [[2.0, 4.0], [2.0, 0.0]])  # holes do not pull the mean down
    assert depth_grid(d[:, :, None], 4).shape == (4, 4)  # the env's [H, W, 1] works too


def test_label_grid_names_a_cell_by_its_most_common_object_when_it_covers_enough():
    ids = np.zeros((2, 4, 4), dtype=np.int16)
    ids[0, :2, :2] = 3  # a whole cell
    ids[0, 0, 2] = 1  # a quarter of one
    ids[1, 2:, 2:] = [[2, 2], [5, 5]]  # a tie: the lower id
    ids[1, 3, 0] = 5
    assert label_grid(ids, 2, 0.5).tolist() == [[[3, 0], [0, 0]], [[0, 0], [0, 2]]]
    assert label_grid(ids, 2, 0.25).tolist() == [[[3, 1], [0, 0]], [[0, 0], [5, 2]]]
    assert label_grid(ids, 2, 0.25).dtype == np.int16 and label_grid(ids[0], 4, 0.5).tolist() == ids[0].tolist()
    assert not label_grid(np.zeros((3, 6, 6), dtype=np.int16), 3, 0.5).any()  # nothing anywhere: all none
    with pytest.raises(ValueError, match="labels must be >= 0"):
        label_grid(-ids, 2, 0.5)


def test_collect_stores_depth_aligned_with_frames(tmp_path):
    out = tmp_path / "c"
    episodes = [_same_path(0, "a"), _same_path(1, "b"), make_episode(2, [3, 3, 0])]
    manifest = collect(CollectConfig(output=str(out), depth_size=3), episodes, DepthDriver(), ReplayExpert(), prompt_fn)
    assert manifest["settings"]["depth_size"] == 3
    shard = out / "shard-00000"
    for sample in read_jsonl(shard / "samples.jsonl"):
        depth = np.load(shard / depth_file(sample["frames_file"]))["depth"]
        frames = FrameStore(shard / sample["frames_file"])
        assert depth.shape == (len(frames), 3, 3) and depth.dtype == np.float16
        t = sample["frames"][-1]  # frame t was seen t steps in: t + 1 metres everywhere but the hole's cell
        assert depth[t, 1, 1] == t + 1 and int(frames.frame(t)[0, 0, 0]) == t
    data = TrajectoryDataset(out)
    positions, depth = next(data.current_depths([1]))
    assert positions == [0] and depth[0, 2, 2] == data.samples[1]["frames"][-1] + 1
    # Episodes 0 and 1 share one path: one frames file and one depth file.
    assert sorted(p.name for p in (shard / "depth").iterdir()) == ["r2r_train__0.npz", "r2r_train__2.npz"]
    with pytest.raises(ValueError, match="depth_size=3; this run asks for depth_size=4"):
        collect(CollectConfig(output=str(out), depth_size=4), episodes, DepthDriver(), ReplayExpert(), prompt_fn)


def test_depth_needs_a_driver_that_observes_it_and_is_named_when_missing(tmp_path):
    with pytest.raises(ValueError, match="--depth-size needs a driver that observes depth"):
        collect(CollectConfig(output=str(tmp_path / "a"), depth_size=4), [make_episode(0, HAND)], FakeDriver(),
                ReplayExpert(), prompt_fn)  # fmt: skip
    with pytest.raises(ValueError, match="--depth-size must be >= 0"):
        CollectConfig(depth_size=-1)
    collect(CollectConfig(output=str(tmp_path / "b")), [make_episode(0, HAND)], FakeDriver(), ReplayExpert(), prompt_fn)
    data = TrajectoryDataset(tmp_path / "b")
    assert not data.has_depth(0)
    with pytest.raises(ValueError, match=r"r2r_train__0.npz: no stored depth; collect with .*--depth-size"):
        next(data.current_depths([0]))


def test_expert_and_dagger_drives_keep_one_depth_per_frame():
    for traj in (
        run_expert(DepthDriver(), ReplayExpert(), make_episode(0, HAND), 100, record_depth=True),
        run_dagger(
            DepthDriver(), ReplayExpert(), AlwaysRight(), make_episode(0, HAND), 0.0, random.Random(0), 6, True
        ),
    ):
        assert len(traj.depths) == len(traj.frames) > 1
        assert [float(d[1, 1]) for d in traj.depths] == [float(f[0, 0, 0]) + 1 for f in traj.frames]
    assert run_expert(FakeDriver(), ReplayExpert(), make_episode(0, HAND), 100).depths == []
