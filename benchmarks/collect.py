"""Trajectory collection: an expert drives the env and every decision point becomes a training sample.

    navila-agent collect --split r2r_train --output data/r2r_gen --limit 200 --rebalance

Labelling follows NaVILA: the expert's low-level actions are merged into mid-level answers, at most 3 identical
consecutive actions per answer (25/50/75 cm, 15/30/45°), STOP alone; a decision point is the step where the
previous answer's queue ran out. For `[1,1,1,1,2,2,3,1,1,0]` the decisions are at t = 0 (forward 75 cm),
3 (forward 25 cm), 4 (turn left 30), 6 (turn right 15), 7 (forward 50), 9 (stop). At decision t the agent
has seen frames 0..t (frame 0 after reset, frame k after step k); the 8 frames of a sample are the indices
that `vlm.mm_utils.vlnce_frame_sampling` picks from those t + 1 frames, -1 for its black padding.

The expert (`--expert auto`, the default) replays the episode's ground-truth actions when it has them — real
R2R-CE/RxR-CE (`{split}_gt.json.gz`) and the generated splits, whose ground truth is the shortest-path follower
driven through the instruction's waypoints, so the trajectory matches what the instruction describes — and
otherwise runs the shortest-path follower straight to the goal (`--expert follower` forces it). DAgger needs
an expert that answers at any state, so it always uses the follower.

DAgger (beyond NaVILA, `--policy PATH --beta B`): at every decision a coin with P(expert) = beta picks who
acts, the expert or the model; the label is always the expert's answer at the visited state (its next actions
predicted from that pose, merged the same way). Aggregating several DAgger rounds is a data mixture of their
output folders.

Output layout (one folder per collection; `vlm/train/dataset.py` reads it):

    OUT/manifest.json                     # counts per action, trajectories, samples, frames, split, settings,
                                          # episodes_selected and complete (every shard's episodes on disk)
    OUT/shard-00000/frames/<traj>.npz     # every frame of one trajectory, stored once (see `write_frames`):
                                          #   one PNG (default) or JPEG per frame, or raw `rgb` [T, H, W, 3]
    OUT/shard-00000/depth/<traj>.npz      # with --depth-size S: `depth` [T, S, S] float16 metres
                                          #   (`vlm.train.dataset.depth_grid`)
    OUT/shard-00000/objects/<traj>.npz    # with --object-size S: `ids` [T, S, S] int16 (1 + object index,
                                          #   0 = none), the objects' `categories` and `colours`
    OUT/shard-00000/samples.jsonl         # one sample per line (LLaVA conversation + frame indices)
    OUT/shard-00000/trajectories.jsonl    # one line per finished trajectory: resuming skips these

A samples.jsonl line:

    {"id": "r2r_train__17:3", "traj": "r2r_train__17", "episode_uid": "r2r_train:17",
     "frames_file": "frames/r2r_train__17.npz", "t": 4, "frames": [-1, -1, -1, 0, 1, 2, 3, 4],
     "instruction": "...", "conversations": [{"from": "human", "value": "<NaVILA prompt with 8 <image>>"},
                                             {"from": "gpt", "value": "The next action is turn left 30 degrees."}],
     "action": "left", "amount": 30, "low_level": [2, 2], "executed_by": "expert", "copy": 0}

Episodes that share a path (R2R has ~3 instructions per path; the generated r2r splits 2) drive the same expert
trajectory: without DAgger, an episode whose path (`path_key`: trajectory id, scene, start pose, goals, ground-truth
actions) was already collected in the same shard is not driven again — its samples (with its own instruction)
reference the first episode's frames file, and its trajectories.jsonl line names it in `"shares_frames_with"`.
Frames and tower features are then stored and computed once per path; the manifest's `frames` counts stored frames.
Parallel collectors (`--shards S --shard-index K`) therefore split the split by path, not by episode
(`shard_assignment`): every episode of a path lands in the path's shard.

Scene QA (`--scene-qa-every K`, generated houses, expert drives only): every K-th frame of a path also becomes an
auxiliary question-answer sample over the same stored frames — the room, the nearest object in view, the free
distance ahead (`benchmarks/scene_qa.py`) — marked `"task": "scene_qa"`, `"action": null`; the manifest counts
them under `scene_qa`. NaVILA mixes ScanQA into its navigation data the same way.

Depth (`--depth-size S`): the env's depth of every stored frame, averaged to S × S cells, beside the frames. The
model never sees it (NaVILA is RGB only); it is a dense target for fine-tuning the vision tower on geometry
(`navila-agent train-tower --tasks depth`).

Object maps (`--object-size S`, generated houses, expert drives only): which object each stored frame shows in each
of S × S cells (`vlm.train.dataset.label_grid` over 2 × 2 labelled pixels per cell, `benchmarks.scene_qa.object_id_map`:
the depth puts each pixel's surface in the house, and the house's semantics say whose box it is in). The model never
sees them either; they are the dense target of `train-tower --tasks objects` (what the object is) and
`--tasks object_colours` (its colour), the words the instructions name landmarks and goals with.

Rebalancing (`--rebalance`): NaVILA duplicates the rare stop and turn samples; the paper gives no factors, so
ours are `REBALANCE_FACTORS` (stop ×4, turns ×2, forward ×1), which brings the generated splits' label
histogram close to uniform over {forward, turn, stop} mass. Duplicates are extra lines with `"copy": k > 0`.
`--rebalance-factors stop=1` sets the copies per kind (kinds not named keep these defaults).

Resuming (`collect` again into the same folder) skips finished trajectories; settings that would change what a
sample is (`RESUME_SETTINGS`, the rebalance factors) must match the manifest's, or the run is refused before it
writes anything: two labellings in one folder could not be told apart afterwards.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import random
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from agent.actions import MAX_MERGE, MidLevelAction, format_action, merge_low_level
from envs.constants import FORWARD_STEP_M, MOVE_FORWARD, STOP, TURN_ANGLE_DEG, TURN_LEFT, TURN_RIGHT
from envs.datasets.episode import Episode

FORMAT = "navila-agent-trajectories/1"
NUM_FRAMES = 8  # frames per sample (7 history + current), NaVILA's num_video_frames
REBALANCE_FACTORS: dict[str, int] = {"stop": 4, "left": 2, "right": 2, "forward": 1}
SAMPLES_FILE = "samples.jsonl"
TRAJECTORIES_FILE = "trajectories.jsonl"
MANIFEST_FILE = "manifest.json"
EXPERTS = ("auto", "replay", "follower")
FRAME_CODECS = ("png", "jpeg", "npz")
# The follower stops this close (geodesic, metres) to the goal: the generator's expert_stop_distance.
FOLLOWER_GOAL_RADIUS = 0.3


@dataclass
class CollectConfig:
    split: str = "r2r_train"  # episode split to drive (generated, or real with data_root)
    output: str = "train_data/r2r_gen"  # output folder (created; resumed when it exists)
    limit: int | None = None  # only the first N episodes of the split (after `every`)
    every: int = (
        1  # every k-th episode of the split: a subset spread over all houses (splits are house-major)
    )
    shards: int = 1  # path p (DAgger: episode i) goes to shard p % shards; see shard_assignment
    shard_index: int | None = None  # collect only this shard (parallel collectors, one per shard); None = all
    rebalance: bool = False  # duplicate stop/turn samples by `rebalance_factors`
    rebalance_factors: dict[str, int] | None = None  # copies per answer kind when rebalancing; None: REBALANCE_FACTORS
    policy: str | None = None  # DAgger: VILA-layout checkpoint that acts with probability 1 - beta
    beta: float = 1.0  # DAgger: probability that the expert acts at a decision
    data_root: str | None = None  # VLN-CE data folder (real episodes; expert = ground-truth replay)
    num_frames: int = NUM_FRAMES  # frames per sample
    frame_size: int | None = None  # resize stored frames to S×S (None = the env's resolution)
    frame_codec: str = (
        "png"  # frames file: "png" (lossless, per frame), "jpeg" (q95, photoreal scenes), "npz" (raw)
    )
    seed: int = 0  # DAgger coin flips
    max_steps: int = 500  # low-level step limit per trajectory
    expert: str = (
        "auto"  # "auto" (replay ground truth when the episode has it, else follower) | "replay" | "follower"
    )
    scene_qa_every: int = 0  # > 0: a scene QA sample every K frames of each expert path (benchmarks/scene_qa.py)
    depth_size: int = 0  # > 0: store each frame's depth averaged to S×S cells in depth/<traj>.npz (dataset.depth_grid)
    object_size: int = 0  # > 0: store each frame's object ids on S×S cells in objects/<traj>.npz (dataset.label_grid)

    def __post_init__(self) -> None:
        if self.expert not in EXPERTS:
            raise ValueError(f"unknown --expert '{self.expert}'; available: {', '.join(EXPERTS)}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"--limit must be >= 1, got {self.limit}")
        if self.every < 1:
            raise ValueError(f"--every must be >= 1, got {self.every}")
        if self.shards < 1:
            raise ValueError(f"--shards must be >= 1, got {self.shards}")
        if self.shard_index is not None and not 0 <= self.shard_index < self.shards:
            raise ValueError(f"--shard-index must be in [0, {self.shards}), got {self.shard_index}")
        if not 0.0 <= self.beta <= 1.0:
            raise ValueError(f"--beta must be in [0, 1], got {self.beta}")
        if self.beta < 1.0 and self.policy is None:
            raise ValueError("--beta < 1 needs --policy PATH (the model that acts when the expert does not)")
        if self.num_frames < 1:
            raise ValueError(f"--num-frames must be >= 1, got {self.num_frames}")
        if self.rebalance_factors is not None:
            self.rebalance_factors = check_rebalance_factors(self.rebalance_factors)
        if self.frame_codec not in FRAME_CODECS:
            raise ValueError(
                f"unknown --frame-codec '{self.frame_codec}'; available: {', '.join(FRAME_CODECS)}"
            )
        if self.frame_size is not None and self.frame_size < 8:
            raise ValueError(f"--frame-size must be >= 8 pixels, got {self.frame_size}")
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.scene_qa_every < 0:
            raise ValueError(f"--scene-qa-every must be >= 0 (0 = off), got {self.scene_qa_every}")
        if self.scene_qa_every and self.beta < 1.0:
            raise ValueError("--scene-qa-every works on expert drives only; it cannot be combined with --policy/--beta")
        if self.depth_size < 0:
            raise ValueError(f"--depth-size must be >= 0 (0 = no depth stored), got {self.depth_size}")
        if self.object_size < 0:
            raise ValueError(f"--object-size must be >= 0 (0 = no object maps stored), got {self.object_size}")
        if self.object_size and self.beta < 1.0:
            raise ValueError("--object-size works on expert drives only; it cannot be combined with --policy/--beta")

    def factors(self) -> dict[str, int] | None:
        """Copies per answer kind, or None without rebalancing."""
        if not self.rebalance:
            return None
        return dict(self.rebalance_factors) if self.rebalance_factors is not None else dict(REBALANCE_FACTORS)


# ---------------------------------------------------------------------------------------------------------------
# Labelling: pure functions of the low-level action sequence.


@dataclass(frozen=True)
class Decision:
    t: int  # step index at which the decision is taken (frames 0..t have been seen)
    action: MidLevelAction  # the expert's mid-level answer
    low_level: tuple[int, ...]  # the low-level actions it stands for


def decision_points(actions: Sequence[int]) -> list[Decision]:
    """NaVILA's labelling of one expert trajectory: merged answers and the steps where they are asked.

    [1,1,1,1,2,2,3,1,1,0] → t=0 forward 75, t=3 forward 25, t=4 left 30, t=6 right 15, t=7 forward 50, t=9 stop.
    """
    out: list[Decision] = []
    t = 0
    for mid in merge_low_level(list(actions)):
        n = mid.num_steps
        out.append(Decision(t, mid, tuple(int(a) for a in actions[t : t + n])))
        t += n
    return out


def sample_frame_indices(num_seen: int, num_frames: int = NUM_FRAMES) -> list[int]:
    """Frame indices (into frames 0..num_seen-1) that `vlnce_frame_sampling` picks, -1 for black padding.

    NaVILA's rule (NAVILA_REFERENCE.md; `vlm.mm_utils.frame_indices` with rule "uniform"): pad with black at the
    front to `num_frames`, take `linspace(0, L - 1, num_frames - 1, endpoint=False)` of the padded buffer as
    history, current frame last. Samples always store these; a model trained with another rule re-derives its
    frames from the sample's step (`TrajectoryDataset.set_frame_sampling`).
    """
    from vlm.mm_utils import frame_indices

    return frame_indices(num_seen, num_frames, "uniform")


def check_rebalance_factors(factors: Mapping[str, int]) -> dict[str, int]:
    """`factors` over REBALANCE_FACTORS (kinds not named keep their default); ValueError naming a bad kind or count."""
    unknown = sorted(set(factors) - set(REBALANCE_FACTORS))
    if unknown:
        raise ValueError(
            f"--rebalance-factors: unknown answer kind(s) {unknown}; available: {', '.join(REBALANCE_FACTORS)}"
        )
    out = dict(REBALANCE_FACTORS)
    for kind, count in factors.items():
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"--rebalance-factors: {kind}={count!r} must be a whole number of copies >= 1")
        out[kind] = count
    return out


def parse_rebalance_factors(text: str) -> dict[str, int]:
    """'stop=2,left=2' -> every kind's copies (unnamed kinds keep REBALANCE_FACTORS); ValueError on bad text."""
    factors: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        kind, sep, count = part.partition("=")
        if not sep or not count.strip().lstrip("-").isdigit():
            raise ValueError(f"--rebalance-factors: '{part}' is not KIND=COUNT (e.g. 'stop=2,left=2,right=2')")
        factors[kind.strip()] = int(count)
    if not factors:
        raise ValueError("--rebalance-factors: empty; give KIND=COUNT pairs, e.g. 'stop=2'")
    return check_rebalance_factors(factors)


def rebalance_copies(kind: str, factors: Mapping[str, int] | None) -> int:
    """How many times a sample with answer `kind` is written (1 without rebalancing, `factors` None)."""
    return factors[kind] if factors is not None else 1


# ---------------------------------------------------------------------------------------------------------------
# What drives an episode: the env (through a small driver), the expert, and optionally a model policy.


class EpisodeDriver(Protocol):
    """The few env operations collection needs; `env_driver` adapts `envs.VLNCEEnv`, tests use fakes."""

    def reset(self, episode: Episode) -> np.ndarray:
        """Start `episode`; return the first RGB frame [H, W, 3] uint8."""

    def step(self, action: int) -> tuple[np.ndarray, bool]:
        """Apply one low-level action; return (the new RGB frame, whether the episode ended)."""

    def pose(self) -> tuple[np.ndarray, np.ndarray]:
        """(position [x, y, z], rotation quaternion [x, y, z, w]) of the agent now."""


class Expert(Protocol):
    """Next low-level action at a pose; `t` is the step index (ground-truth replay uses it, followers don't)."""

    def reset(self, episode: Episode) -> None: ...

    def next_action(self, position: np.ndarray, rotation: np.ndarray, t: int) -> int: ...


class DecisionPolicy(Protocol):
    """A model deciding from every frame seen so far: returns the low-level actions of one decision."""

    def decide(self, frames: list[np.ndarray], instruction: str) -> list[int]: ...

    # Optional: `reset(episode)` is called at the start of each episode when the policy defines it.


class ReplayExpert:
    """Ground-truth action replay (real data): action t of the episode's `gt.actions`, STOP past the end."""

    def __init__(self) -> None:
        self._actions: list[int] = []

    def reset(self, episode: Episode) -> None:
        if episode.gt is None or not episode.gt.actions:
            raise ValueError(
                f"episode {episode.uid} has no ground-truth actions to replay ({{split}}_gt.json.gz)"
            )
        self._actions = list(episode.gt.actions)

    def next_action(self, position: np.ndarray, rotation: np.ndarray, t: int) -> int:
        return self._actions[t] if t < len(self._actions) else STOP


class FollowerExpert:
    """The shortest-path follower towards the episode's goal (generated data, and DAgger's labels)."""

    def __init__(self, make_follower: Callable[[Episode], Any]) -> None:
        self._make_follower = make_follower  # episode -> object with next_action(position, rotation, goal)
        self._follower: Any = None
        self._goal: np.ndarray | None = None

    def reset(self, episode: Episode) -> None:
        self._follower = self._make_follower(episode)
        self._goal = np.asarray(episode.goal_position, dtype=np.float64)

    def next_action(self, position: np.ndarray, rotation: np.ndarray, t: int) -> int:
        return int(self._follower.next_action(position, rotation, self._goal))


class AutoExpert:
    """Ground-truth replay for episodes that carry ground-truth actions, the follower for the others."""

    def __init__(self, follower: FollowerExpert) -> None:
        self._replay, self._follower = ReplayExpert(), follower
        self._current: Expert = follower

    def reset(self, episode: Episode) -> None:
        has_gt = episode.gt is not None and bool(episode.gt.actions)
        self._current = self._replay if has_gt else self._follower
        self._current.reset(episode)

    def next_action(self, position: np.ndarray, rotation: np.ndarray, t: int) -> int:
        return self._current.next_action(position, rotation, t)


def make_expert(name: str, make_follower: Callable[[Episode], Any], dagger: bool) -> Expert:
    """The expert called `name` ("auto" | "replay" | "follower"); DAgger always gets the follower."""
    if name not in EXPERTS:
        raise ValueError(f"unknown expert '{name}'; available: {', '.join(EXPERTS)}")
    if dagger and name == "replay":
        raise ValueError("--expert replay cannot label the states a policy visits; DAgger uses the follower")
    follower = FollowerExpert(make_follower)
    if dagger or name == "follower":
        return follower
    return ReplayExpert() if name == "replay" else AutoExpert(follower)


def predict_pose(position: np.ndarray, rotation: np.ndarray, action: int) -> tuple[np.ndarray, np.ndarray]:
    """Pose after `action` assuming no collision: the expert's look-ahead for a DAgger label."""
    from envs.geometry import heading_to_forward, heading_to_quaternion, quaternion_to_heading

    heading = quaternion_to_heading(rotation)
    if action == MOVE_FORWARD:
        return np.asarray(position, dtype=np.float64) + FORWARD_STEP_M * heading_to_forward(heading), rotation
    if action in (TURN_LEFT, TURN_RIGHT):
        sign = 1.0 if action == TURN_LEFT else -1.0
        return position, heading_to_quaternion(heading + sign * math.radians(TURN_ANGLE_DEG))
    return position, rotation


def expert_label(expert: Expert, position: np.ndarray, rotation: np.ndarray, t: int) -> Decision:
    """The expert's mid-level answer at a visited pose: its next identical actions (≤ 3) from predicted poses."""
    first = expert.next_action(position, rotation, t)
    run = [first]
    while first != STOP and len(run) < MAX_MERGE:
        position, rotation = predict_pose(position, rotation, first)
        if expert.next_action(position, rotation, t + len(run)) != first:
            break
        run.append(first)
    return Decision(t, merge_low_level(run)[0], tuple(run))


# ---------------------------------------------------------------------------------------------------------------
# One trajectory.


@dataclass
class Trajectory:
    key: str  # file-safe episode uid ("r2r_train__17")
    episode: Episode
    frames: list[np.ndarray]  # frame t = observation before the action of step t
    actions: list[int]  # executed low-level actions
    decisions: list[Decision]  # expert labels (at the visited states)
    executed_by: list[str] = field(default_factory=list)  # per decision: "expert" or "policy"
    ended_with_stop: bool = False
    policy_parse_failures: int = 0  # DAgger: unparsable model answers (each fell back to a 15° left turn)
    policy_monitor_stops: int = 0  # DAgger: decisions the model's progress monitor turned into STOP
    outcome: dict[str, Any] = field(
        default_factory=dict
    )  # the driver's final_distance / success, when it knows
    poses: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # expert drives: (position,
    # rotation) at frame t, for scene QA
    depths: list[np.ndarray] = field(default_factory=list)  # with record_depth: depth [H, W] metres at frame t


def trajectory_key(episode: Episode) -> str:
    """File-safe trajectory name: the episode uid with ':' replaced by '__' (as rollout folders do)."""
    return episode.uid.replace(":", "__").replace("/", "_")


def frames_file(key: str) -> str:
    """Where trajectory `key` stores its frames, relative to its shard (samples' `frames_file`)."""
    return f"frames/{key}.npz"


def path_key(episode: Episode) -> str:
    """What makes two episodes' expert trajectories identical: one path (trajectory id, scene, start pose, goals)
    and the same ground-truth actions. R2R's several instructions per path share it; nothing else does."""
    gt = episode.gt.actions if episode.gt is not None else None
    parts = [
        episode.dataset,
        str(episode.trajectory_id),
        episode.scene_id,
        [round(float(v), 4) for v in episode.start_position],
        [round(float(v), 4) for v in episode.start_rotation],
        [[round(float(v), 4) for v in g.position] for g in episode.goals],
        list(gt) if gt is not None else None,
    ]
    return json.dumps(parts, separators=(",", ":"))


def shared_trajectory(episode: Episode, source: dict[str, Any]) -> Trajectory:
    """The trajectory of `episode` when an episode with the same path was collected already (`source`, its
    trajectories.jsonl line): the same actions and expert labels, no frames of its own."""
    actions = [int(a) for a in source["low_level_actions"]]
    decisions = decision_points(actions)
    outcome = {k: source[k] for k in ("final_distance", "success") if k in source}
    return Trajectory(
        trajectory_key(episode),
        episode,
        [],
        actions,
        decisions,
        ["expert"] * len(decisions),
        ended_with_stop=bool(source["ended_with_stop"]),
        outcome=outcome,
    )


def _depth_now(driver: Any) -> np.ndarray:
    """The depth [H, W] of the driver's latest observation (`--depth-size`); a clear error for a driver without."""
    if not hasattr(driver, "depth"):
        raise ValueError("--depth-size needs a driver that observes depth (the env's 'depth' observation)")
    return driver.depth()


def run_expert(
    driver: EpisodeDriver, expert: Expert, episode: Episode, max_steps: int, record_depth: bool = False
) -> Trajectory:
    """The expert drives the whole episode; labels come from NaVILA's merge of its actions afterwards.

    record_depth: also keep the depth of every kept frame (`Trajectory.depths`, index-aligned with `frames`)."""
    frames = [driver.reset(episode)]
    depths = [_depth_now(driver)] if record_depth else []
    expert.reset(episode)
    actions: list[int] = []
    poses: list[tuple[np.ndarray, np.ndarray]] = []
    done = False
    while not done and len(actions) < max_steps:
        position, rotation = driver.pose()
        poses.append((position, rotation))
        action = expert.next_action(position, rotation, len(actions))
        actions.append(action)
        frame, done = driver.step(action)
        if not done and action != STOP:
            frames.append(frame)
            if record_depth:
                depths.append(_depth_now(driver))
    frames = frames[: len(actions)]  # the frame after the last action is never a decision input
    decisions = decision_points(actions)
    return Trajectory(
        trajectory_key(episode),
        episode,
        frames,
        actions,
        decisions,
        ["expert"] * len(decisions),
        ended_with_stop=bool(actions) and actions[-1] == STOP,
        poses=poses[: len(frames)],
        depths=depths[: len(frames)],
    )


def run_dagger(
    driver: EpisodeDriver,
    expert: Expert,
    policy: DecisionPolicy,
    episode: Episode,
    beta: float,
    rng: random.Random,
    max_steps: int,
    record_depth: bool = False,
) -> Trajectory:
    """At each decision the expert (prob. beta) or the policy acts; the expert's label is always recorded."""
    frames = [driver.reset(episode)]
    depths = [_depth_now(driver)] if record_depth else []
    expert.reset(episode)
    if hasattr(policy, "reset"):
        policy.reset(episode)
    actions: list[int] = []
    decisions: list[Decision] = []
    executed_by: list[str] = []
    done = False
    while not done and len(actions) < max_steps:
        t = len(actions)
        position, rotation = driver.pose()
        label = expert_label(expert, position, rotation, t)
        decisions.append(label)
        if rng.random() < beta:
            plan, who = list(label.low_level), "expert"
        else:
            plan, who = list(policy.decide(frames[: t + 1], episode.instruction.instruction_text)), "policy"
            plan = plan or [STOP]  # an empty plan would never advance: treat it as stopping
        executed_by.append(who)
        for action in plan:
            actions.append(action)
            frame, done = driver.step(action)
            if done or action == STOP or len(actions) >= max_steps:
                done = done or action == STOP
                break
            frames.append(frame)
            if record_depth:
                depths.append(_depth_now(driver))
    frames = frames[: len(actions)]
    return Trajectory(
        trajectory_key(episode),
        episode,
        frames,
        actions,
        decisions,
        executed_by,
        ended_with_stop=bool(actions) and actions[-1] == STOP,
        depths=depths[: len(frames)],
    )


# ---------------------------------------------------------------------------------------------------------------
# Writing: frames once per trajectory, samples referencing them, a line per finished trajectory.


def build_samples(
    traj: Trajectory,
    prompt_fn: Callable[[str, int], str],
    num_frames: int,
    factors: Mapping[str, int] | None,
    frames_file: str,
) -> list[dict[str, Any]]:
    """One LLaVA-style sample per decision (plus rebalancing duplicates), frames by index into `frames_file`."""
    instruction = traj.episode.instruction.instruction_text
    prompt = prompt_fn(instruction, num_frames)
    samples = []
    for k, (d, who) in enumerate(zip(traj.decisions, traj.executed_by, strict=True)):
        answer = format_action(d.action)
        base = {
            "id": f"{traj.key}:{k}",
            "traj": traj.key,
            "episode_uid": traj.episode.uid,
            "frames_file": frames_file,
            "t": d.t,
            "frames": sample_frame_indices(d.t + 1, num_frames),
            "instruction": instruction,
            "conversations": [{"from": "human", "value": prompt}, {"from": "gpt", "value": answer}],
            "action": d.action.kind,
            "amount": d.action.amount,
            "low_level": list(d.low_level),
            "executed_by": who,
        }
        samples.extend({**base, "copy": c} for c in range(rebalance_copies(d.action.kind, factors)))
    return samples


def _resize(frame: np.ndarray, size: int | None) -> np.ndarray:
    if size is None or frame.shape[:2] == (size, size):
        return frame
    import cv2

    return cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)


def _append_lines(path: Path, records: Iterable[dict[str, Any]]) -> None:
    text = "".join(json.dumps(r) + "\n" for r in records)
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Records of a JSONL file; a torn last line (a crash mid-write) is skipped."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def write_frames(path: Path, frames: np.ndarray, codec: str) -> None:
    """One trajectory's frames [T, H, W, 3] uint8 in one .npz: raw (`rgb`, zlib-compressed) or one encoded
    image per frame (`data` = the concatenated PNG/JPEG bytes, `offsets` [T + 1]), so a reader decodes only
    the 8 frames a sample needs (`vlm/train/dataset.py::FrameStore`)."""
    if codec == "npz":
        np.savez_compressed(path, rgb=frames)
        return
    if codec not in FRAME_CODECS:
        raise ValueError(f"unknown frame codec '{codec}'; available: {', '.join(FRAME_CODECS)}")
    import cv2

    ext, params = (
        (".png", [cv2.IMWRITE_PNG_COMPRESSION, 3])
        if codec == "png"
        else (".jpg", [cv2.IMWRITE_JPEG_QUALITY, 95])
    )
    encoded = []
    for frame in frames:
        ok, buf = cv2.imencode(ext, np.ascontiguousarray(frame[:, :, ::-1]), params)  # cv2 wants BGR
        if not ok:
            raise RuntimeError(f"could not encode a frame as {codec}")
        encoded.append(buf.reshape(-1))
    offsets = np.cumsum([0] + [len(b) for b in encoded]).astype(np.int64)  # [T + 1]
    np.savez(
        path,
        codec=np.array(codec),
        data=np.concatenate(encoded),
        offsets=offsets,
        shape=np.array(frames.shape, dtype=np.int64),
    )


class ShardWriter:
    """Appends finished trajectories to one shard folder; on open, drops samples of unfinished ones.

    Holds an exclusive lock on the shard (`.lock`, released by `close` or when the process ends): two collectors
    appending to one shard would interleave lines and collect episodes twice, so the second one fails at once.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        (folder / "frames").mkdir(parents=True, exist_ok=True)
        self._lock = open(folder / ".lock", "a+")  # noqa: SIM115 - held for the writer's lifetime
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise RuntimeError(
                f"another collector is writing {folder} (its lock {folder / '.lock'} is held); "
                "run one collector per shard (--shards S --shard-index K)"
            ) from None
        records = read_jsonl(folder / TRAJECTORIES_FILE)
        self.done = {r["traj"] for r in records}
        # path_key -> the line of the trajectory that owns the frames (older collections have no path_key)
        self.paths = {r["path_key"]: r for r in records if "path_key" in r and "shares_frames_with" not in r}
        samples = read_jsonl(folder / SAMPLES_FILE)
        kept = [s for s in samples if s["traj"] in self.done]
        if len(kept) != len(samples) or (folder / SAMPLES_FILE).is_file():
            # Rewrite so a crash between a trajectory's samples and its trajectories.jsonl line leaves no orphans.
            tmp = folder / (SAMPLES_FILE + ".tmp")
            tmp.write_text("".join(json.dumps(s) + "\n" for s in kept), encoding="utf-8")
            os.replace(tmp, folder / SAMPLES_FILE)

    def close(self) -> None:
        """Release the shard's lock."""
        self._lock.close()

    def write(
        self,
        traj: Trajectory,
        samples: list[dict[str, Any]],
        frames: np.ndarray | None,
        codec: str = "png",
        path: str | None = None,
        shares_frames_with: dict[str, Any] | None = None,
        depth: np.ndarray | None = None,
        objects: dict[str, np.ndarray] | None = None,
    ) -> dict[str, Any]:
        """Frames file (atomic rename), its depth file if any, then the samples, then the trajectory line that
        marks it finished.

        `path`: the episode's `path_key` (recorded so later episodes of the path can share these frames);
        `shares_frames_with`: the line of the trajectory whose frames this one uses (then `frames` is None);
        `depth`: [T, S, S] metres per frame (`depth_grid`), stored as float16 in depth/<traj>.npz;
        `objects`: `ids` [T, S, S] per frame (`label_grid`), `categories` and `colours`, in objects/<traj>.npz."""
        if shares_frames_with is None:
            if frames is None:
                raise ValueError(f"trajectory {traj.key}: no frames to write")
            frames_path = self.folder / frames_file(traj.key)
            tmp = frames_path.with_suffix(f".{os.getpid()}.tmp.npz")
            write_frames(tmp, frames, codec)
            os.replace(tmp, frames_path)
            if depth is not None:
                if len(depth) != len(frames):
                    raise ValueError(f"trajectory {traj.key}: {len(depth)} depth maps for {len(frames)} frames")
                from vlm.train.dataset import depth_file

                depth_path = self.folder / depth_file(frames_file(traj.key))
                depth_path.parent.mkdir(exist_ok=True)
                tmp = depth_path.with_suffix(f".{os.getpid()}.tmp.npz")
                np.savez_compressed(tmp, depth=depth.astype(np.float16))
                os.replace(tmp, depth_path)
            if objects is not None:
                if len(objects["ids"]) != len(frames):
                    raise ValueError(f"trajectory {traj.key}: {len(objects['ids'])} object maps for {len(frames)} frames")
                from vlm.train.dataset import objects_file

                objects_path = self.folder / objects_file(frames_file(traj.key))
                objects_path.parent.mkdir(exist_ok=True)
                tmp = objects_path.with_suffix(f".{os.getpid()}.tmp.npz")
                np.savez_compressed(tmp, **objects)
                os.replace(tmp, objects_path)
        _append_lines(self.folder / SAMPLES_FILE, samples)
        record = {
            "traj": traj.key,
            "episode_uid": traj.episode.uid,
            "scene_id": traj.episode.scene_id,
            "frames": int(shares_frames_with["frames"] if shares_frames_with else frames.shape[0]),
            "steps": len(traj.actions),
            "decisions": len(traj.decisions),
            "samples": len(samples),
            "actions": dict(Counter(s["action"] for s in samples if s.get("task") != "scene_qa")),
            "scene_qa": sum(1 for s in samples if s.get("task") == "scene_qa"),
            "policy_decisions": traj.executed_by.count("policy"),
            "policy_parse_failures": traj.policy_parse_failures,
            "policy_monitor_stops": traj.policy_monitor_stops,
            "ended_with_stop": traj.ended_with_stop,
            **traj.outcome,
        }
        if path is not None:
            record["path_key"] = path
            record["low_level_actions"] = list(traj.actions)
        if shares_frames_with is not None:
            record["shares_frames_with"] = shares_frames_with["traj"]
        _append_lines(self.folder / TRAJECTORIES_FILE, [record])
        self.done.add(traj.key)
        if path is not None and shares_frames_with is None:
            self.paths[path] = record
        return record


def shard_folder(output: Path, shard: int) -> Path:
    return output / f"shard-{shard:05d}"


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def write_manifest(output: Path, config: CollectConfig, selected: int | None = None) -> dict[str, Any]:
    """Totals over every shard on disk (so parallel per-shard collectors agree), plus the settings.

    `selected` is the number of episodes the whole collection covers (every shard, after `every` and `limit`). It
    is recorded as `episodes_selected`, with `complete` saying whether every one of them is on disk, so a folder
    whose other shards are still running, or whose collection was interrupted, is not trained on as if finished.
    """
    trajectories = []
    for folder in sorted(output.glob("shard-*")):
        trajectories.extend(read_jsonl(folder / TRAJECTORIES_FILE))
    actions: Counter[str] = Counter()
    for r in trajectories:
        actions.update(r["actions"])
    settings = asdict(config)
    settings["output"] = str(output)
    manifest = {
        "format": FORMAT,
        "split": config.split,
        "trajectories": len(trajectories),
        "samples": sum(r["samples"] for r in trajectories),
        "decisions": sum(r["decisions"] for r in trajectories),
        "frames": sum(r["frames"] for r in trajectories if "shares_frames_with" not in r),  # stored
        "sharing_frames": sum(1 for r in trajectories if "shares_frames_with" in r),
        "actions": {k: actions.get(k, 0) for k in ("forward", "left", "right", "stop")},
        "scene_qa": sum(r.get("scene_qa", 0) for r in trajectories),
        "ended_with_stop": sum(1 for r in trajectories if r["ended_with_stop"]),
        # Share of trajectories that end in VLN-CE success (STOP within 3 m): ~1.0 for a sound expert.
        "success_rate": _mean([float(r["success"]) for r in trajectories if "success" in r]),
        "policy_decisions": sum(r.get("policy_decisions", 0) for r in trajectories),
        "policy_parse_failures": sum(r.get("policy_parse_failures", 0) for r in trajectories),
        "policy_monitor_stops": sum(r.get("policy_monitor_stops", 0) for r in trajectories),
        "shards": sorted(p.name for p in output.glob("shard-*")),
        "rebalance_factors": config.factors(),
        "expert": "shortest_path_follower" if config.beta < 1.0 else config.expert,
        "settings": settings,
    }
    if selected is not None:
        manifest["episodes_selected"] = selected
        manifest["complete"] = len(trajectories) >= selected
    tmp = (
        output / f"{MANIFEST_FILE}.{os.getpid()}.tmp"
    )  # per process: parallel shard collectors may race here
    tmp.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    os.replace(tmp, output / MANIFEST_FILE)
    return manifest


# Settings that change what a sample is: a resumed collection must keep them, or its shards would mix two labellings.
RESUME_SETTINGS: tuple[str, ...] = (
    "split", "every", "shards", "policy", "beta", "data_root", "num_frames", "frame_size", "frame_codec", "max_steps",
    "expert", "scene_qa_every", "depth_size", "object_size",
)  # fmt: skip


def check_resume(output: Path, config: CollectConfig) -> None:
    """Refuse to resume a collection in `output` with settings that would change its samples (ValueError naming
    the first differing setting); a folder without a manifest is a fresh start."""
    path = output / MANIFEST_FILE
    if not path.is_file():
        return
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        before = manifest["settings"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: unreadable collection manifest ({e}); use another --output") from None
    now = asdict(config)
    differing = [(k, before.get(k), now[k]) for k in RESUME_SETTINGS if k in before and before[k] != now[k]]
    if manifest.get("rebalance_factors") != config.factors():
        differing.insert(0, ("rebalance_factors", manifest.get("rebalance_factors"), config.factors()))
    if differing:
        key, old, new = differing[0]
        raise ValueError(
            f"{output} already holds a collection made with {key}={old!r}; this run asks for {key}={new!r}. "
            "Resume with the same settings, or collect into another --output."
        )


def collect(
    config: CollectConfig,
    episodes: Sequence[Episode],
    driver: EpisodeDriver,
    expert: Expert,
    prompt_fn: Callable[[str, int], str],
    policy: DecisionPolicy | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Drive every (not yet collected) episode of this shard selection and write it; returns the manifest.

    `episodes` is the whole split (in split order: shard assignment depends on the index); `progress(done,
    total)` is called after each trajectory. Finished trajectories already on disk are skipped.
    """
    if config.beta < 1.0 and policy is None:
        raise ValueError("collect: beta < 1 needs a policy")
    output = Path(config.output)
    check_resume(output, config)
    output.mkdir(parents=True, exist_ok=True)
    selected = list(episodes)[:: config.every]
    selected = selected[: config.limit] if config.limit else selected
    shards = range(config.shards) if config.shard_index is None else [config.shard_index]
    # Without DAgger the expert drives alone and episodes of one path share frames; DAgger's drives all differ.
    expert_only = policy is None or config.beta >= 1.0
    writers: dict[int, ShardWriter] = {}
    try:
        for s in shards:
            writers[s] = ShardWriter(shard_folder(output, s))
        shard = shard_assignment(selected, config.shards, by_path=expert_only)
        done_elsewhere = _done_in_other_shards(output, writers)
        todo = [(i, ep) for i, ep in enumerate(selected) if shard[i] in writers]
        for n, (i, episode) in enumerate(todo):
            writer = writers[shard[i]]
            key = trajectory_key(episode)
            if key not in writer.done and key not in done_elsewhere:
                _collect_episode(config, episode, writer, driver, expert, prompt_fn, policy, expert_only)
            if progress:
                progress(n + 1, len(todo))
    finally:
        for writer in writers.values():
            writer.close()
    return write_manifest(output, config, selected=len(selected))


def shard_assignment(episodes: Sequence[Episode], shards: int, by_path: bool) -> list[int]:
    """Shard of each episode: `i % shards`, or with `by_path` (no DAgger) the same shard for every episode of a
    path (its paths numbered in order of first appearance, `% shards`).

    Why: the episodes of one path share its stored frames only inside one shard. Splitting R2R's instruction
    pairs by episode index sent the two halves of every path to different shards, storing (and encoding for
    training) every path's frames twice.
    """
    if not by_path:
        return [i % shards for i in range(len(episodes))]
    group: dict[str, int] = {}
    return [group.setdefault(path_key(ep), len(group)) % shards for ep in episodes]


def _done_in_other_shards(output: Path, writers: dict[int, ShardWriter]) -> set[str]:
    """Trajectories finished in shard folders this collector does not write (when it started): skipped, so a
    collection made with another shard assignment resumes without duplicates."""
    mine = {w.folder.resolve() for w in writers.values()}
    done: set[str] = set()
    for folder in sorted(output.glob("shard-*")):
        if folder.resolve() not in mine:
            done |= {r["traj"] for r in read_jsonl(folder / TRAJECTORIES_FILE)}
    return done


def _collect_episode(
    config: CollectConfig,
    episode: Episode,
    writer: ShardWriter,
    driver: EpisodeDriver,
    expert: Expert,
    prompt_fn: Callable[[str, int], str],
    policy: DecisionPolicy | None,
    expert_only: bool,
) -> None:
    """One episode into `writer`: without DAgger, the frames of its path when that is collected; else a drive."""
    key = trajectory_key(episode)
    pkey = path_key(episode) if expert_only else None
    source = writer.paths.get(pkey) if pkey is not None else None
    if source is not None:
        traj = shared_trajectory(episode, source)
        samples = build_samples(
            traj, prompt_fn, config.num_frames, config.factors(), frames_file(source["traj"])
        )
        writer.write(traj, samples, None, path=pkey, shares_frames_with=source)
        return
    rng = random.Random(f"{config.seed}:{key}")  # per episode, so a resumed run flips the same coins
    failures_before = getattr(policy, "parse_failures", 0)
    monitor_stops_before = getattr(policy, "monitor_stops", 0)
    record_depth = config.depth_size > 0 or config.object_size > 0  # object maps are made from the depth
    if expert_only:
        traj = run_expert(driver, expert, episode, config.max_steps, record_depth)
    else:
        traj = run_dagger(driver, expert, policy, episode, config.beta, rng, config.max_steps, record_depth)
    traj.policy_parse_failures = getattr(policy, "parse_failures", 0) - failures_before
    traj.policy_monitor_stops = getattr(policy, "monitor_stops", 0) - monitor_stops_before
    if hasattr(driver, "outcome"):
        traj.outcome = driver.outcome()
    if not traj.frames:
        raise RuntimeError(f"episode {episode.uid}: the expert produced no action")
    frames = np.stack([_resize(f, config.frame_size) for f in traj.frames])  # [T, H, W, 3] uint8
    samples = build_samples(traj, prompt_fn, config.num_frames, config.factors(), frames_file(key))
    if config.scene_qa_every:
        samples += scene_qa_for(traj, driver, config)
    depth = None
    if config.depth_size:
        from vlm.train.dataset import depth_grid

        depth = depth_grid(np.stack(traj.depths), config.depth_size)  # [T, S, S]
    objects = object_maps(traj, driver, config.object_size) if config.object_size else None
    writer.write(traj, samples, frames, config.frame_codec, path=pkey, depth=depth, objects=objects)


def object_maps(traj: Trajectory, driver: Any, size: int) -> dict[str, np.ndarray]:
    """The object map of every frame of an expert trajectory on size × size cells (`--object-size`): `ids`
    [T, S, S] int16 (1 + the object's index in the house's semantics, 0 = none), `categories`, `colours`."""
    from benchmarks.scene_qa import object_id_map
    from vlm.train.dataset import OBJECT_PIXEL_SHARE, label_grid

    scene, camera = getattr(driver, "scene", None), getattr(driver, "camera", None)
    if scene is None or camera is None:
        raise ValueError("--object-size needs a driver that knows the scene's semantics and its camera")
    semantics, _grid = scene(traj.episode)
    hfov_deg, camera_height = camera()
    height = traj.depths[0].shape[0]
    stride = max(1, height // (2 * size))  # 2 x 2 labelled pixels per stored cell
    ids = np.stack([
        label_grid(object_id_map(d, p, r, semantics, hfov_deg, camera_height, stride=stride), size, OBJECT_PIXEL_SHARE)
        for d, (p, r) in zip(traj.depths, traj.poses, strict=True)
    ])  # fmt: skip
    return {
        "ids": ids.astype(np.int16),
        "categories": np.array([o.category for o in semantics.objects], dtype=str),
        "colours": np.array([o.color_name for o in semantics.objects], dtype=str),
    }


def scene_qa_for(traj: Trajectory, driver: Any, config: CollectConfig) -> list[dict[str, Any]]:
    """Scene QA samples over an expert trajectory's frames (once per path: the frames are the path's)."""
    from benchmarks.scene_qa import qa_samples, scene_facts
    from envs.geometry import quaternion_to_heading

    scene = getattr(driver, "scene", None)
    if scene is None:
        raise ValueError("--scene-qa-every needs a driver that knows the scene's semantics and navigation grid")
    semantics, grid = scene(traj.episode)
    facts = [scene_facts(semantics, grid, p, quaternion_to_heading(r)) for p, r in traj.poses]
    return qa_samples(
        traj.key,
        traj.episode.uid,
        facts,
        config.scene_qa_every,
        config.num_frames,
        frames_file(traj.key),
        sample_frame_indices,
    )


# ---------------------------------------------------------------------------------------------------------------
# The real env and model behind the protocols above (used by `navila-agent collect`).


class EnvDriver:
    """`EpisodeDriver` over a `envs.VLNCEEnv` (any gymnasium env with its obs/info keys)."""

    def __init__(self, env: Any, data_root: str | None = None) -> None:
        self.env = env
        self.data_root = data_root
        self._info: dict[str, Any] = {}
        self._semantics: dict[str, Any] = {}  # semantics file -> HouseSemantics
        self._depth: np.ndarray | None = None

    def reset(self, episode: Episode) -> np.ndarray:
        obs, self._info = self.env.reset(options={"episode_id": episode.episode_id})
        self._depth = obs.get("depth")
        return obs["rgb"]

    def step(self, action: int) -> tuple[np.ndarray, bool]:
        obs, _, terminated, truncated, self._info = self.env.step(action)
        self._depth = obs.get("depth")
        return obs["rgb"], bool(terminated or truncated)

    def depth(self) -> np.ndarray:
        """Depth [H, W] float32 metres of the latest observation (0 where nothing was hit)."""
        if self._depth is None:
            raise ValueError("--depth-size: the env gives no 'depth' observation")
        d = np.asarray(self._depth, dtype=np.float32)
        return d.reshape(d.shape[0], d.shape[1])

    def camera(self) -> tuple[float, float]:
        """(horizontal field of view in degrees, camera height above the agent's feet in metres), for object maps."""
        config = getattr(self.env.sim, "config", None)
        if config is None or not hasattr(config, "camera_height"):
            raise ValueError("--object-size: this env's simulator does not say its camera height (embedded env only)")
        return float(self.env.hfov_deg), float(config.camera_height)

    def pose(self) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(self._info["position"], dtype=np.float64), np.asarray(
            self._info["rotation"], dtype=np.float64
        )

    def scene(self, episode: Episode) -> tuple[Any, Any]:
        """(HouseSemantics, NavGrid) of the episode's house, for scene QA; generated houses only."""
        from envs.datasets.splits import semantics_path
        from envs.scenes.semantics import HouseSemantics

        path = semantics_path(episode, self.data_root)
        if not path.is_file():
            raise ValueError(
                f"--scene-qa-every / --object-size: episode {episode.uid} has no house semantics ({path} not "
                "found); they need generated houses"
            )
        if str(path) not in self._semantics:
            self._semantics[str(path)] = HouseSemantics.load(path)
        return self._semantics[str(path)], self.env.sim.nav_grid

    def outcome(self) -> dict[str, Any]:
        """How the trajectory ended: geodesic distance to the goal and VLN-CE success (a check on the expert)."""
        distance = float(self._info.get("distance_to_goal", float("nan")))
        return {
            "final_distance": round(distance, 3) if math.isfinite(distance) else None,
            "success": bool(self._info.get("is_success", False)),
        }


class ModelPolicy:
    """`DecisionPolicy` from a loaded VILA-layout model: NaVILA's frame sampling, prompt and parser, with the model's
    own frame count, history rule and progress cue (its config; NaVILA's 8 frames, uniform rule and no cue when
    absent), as the agent shows them.

    An unparsable answer counts as a failure and falls back to one 15° left turn (the agent's default fallback).
    A model whose progress monitor comes with a stop threshold (`vlm.progress_head`, the shipped model's) stops on it
    as the agent does by default (`monitor_stop` / `monitor_patience` override it, 0 = never): DAgger must visit the
    states the agent visits.
    """

    def __init__(
        self,
        model: Any,
        num_frames: int | None = None,
        max_new_tokens: int = 32,
        monitor_stop: float | None = None,
        monitor_patience: int = 1,
    ) -> None:
        from vlm.mm_utils import model_frame_sampling, model_num_frames, model_progress_cue
        from vlm.progress_head import monitor_stop_in_force

        self.model = model
        self.num_frames = num_frames or model_num_frames(model)
        self.frame_sampling = model_frame_sampling(model)
        self.progress_cue = model_progress_cue(model)
        self.max_new_tokens = max_new_tokens
        if monitor_patience < 1:
            raise ValueError(f"ModelPolicy: monitor_patience must be >= 1, got {monitor_patience}")
        # The threshold in force, as NavilaAgent chooses it: the one asked for, else the monitor's own; None = never.
        self.monitor_stop = monitor_stop_in_force(model, monitor_stop, "ModelPolicy: monitor_stop")
        self.monitor_patience = monitor_patience
        self.monitor_stops = 0  # decisions the monitor turned into STOP
        self.parse_failures = 0
        self.decisions = 0
        self._uid: str | None = None
        self._estimates: list[float | None] = []

    def reset(self, episode: Episode) -> None:
        """Frames are keyed (episode uid, t): the model's feature cache encodes each frame once per episode."""
        cache = getattr(self.model, "feature_cache", None)
        if cache is not None and self._uid is not None:
            cache.drop(self._uid)  # the previous episode's features are never needed again
        self._uid = episode.uid
        self._estimates = []

    def decide(self, frames: list[np.ndarray], instruction: str) -> list[int]:
        from agent.actions import parse_action
        from agent.navila import fallback_decision
        from agent.prompt import build_prompt
        from vlm.media import Image
        from vlm.mm_utils import vlnce_frame_sampling
        from vlm.progress_head import monitor_stop_fires

        keyed = [
            Image(np.ascontiguousarray(f), key=(self._uid, t) if self._uid else None)
            for t, f in enumerate(frames)
        ]
        images = vlnce_frame_sampling(keyed, self.num_frames, rule=self.frame_sampling)
        conv_mode = getattr(self.model, "conv_mode", "llama_3")
        prompt = build_prompt(
            instruction, conv_mode, self.num_frames, progress_cue=self.progress_cue, steps=len(frames) - 1
        )
        if self.monitor_stop is not None:
            texts, estimates = self.model.generate_text(
                [(images, prompt)], max_new_tokens=self.max_new_tokens, return_progress=True
            )
            text = texts[0]
            self._estimates.append(estimates[0])
            if monitor_stop_fires(self._estimates, self.monitor_stop, self.monitor_patience):
                self.decisions += 1
                self.monitor_stops += 1
                return [STOP]
        else:
            text = self.model.generate_text([(images, prompt)], max_new_tokens=self.max_new_tokens)[0]
        parsed = parse_action(text)
        self.decisions += 1
        if not parsed.ok or parsed.action is None:
            self.parse_failures += 1
            return fallback_decision("left").to_low_level()
        return parsed.action.to_low_level()


def collect_split(
    config: CollectConfig, progress: Callable[[int, int], None] | None = None, device: str = "cpu"
) -> dict[str, Any]:
    """`collect` on `config.split` with the embedded (or habitat) env, the configured expert and policy."""
    from agent.prompt import build_user_prompt
    from envs.datasets.splits import load_split
    from envs.env import VLNCEEnv
    from envs.follower import expert_follower

    episodes = load_split(config.split, data_root=config.data_root)
    if not episodes:
        raise ValueError(f"split '{config.split}' has no episodes")
    env = VLNCEEnv(episodes=list(episodes), data_root=config.data_root, max_steps=config.max_steps)
    dagger = config.beta < 1.0
    expert = make_expert(
        config.expert,
        lambda _ep: expert_follower(env.sim, goal_radius=FOLLOWER_GOAL_RADIUS),
        dagger,
    )
    policy = None
    if dagger:
        import vlm

        policy = ModelPolicy(vlm.load(config.policy, device=device))  # the model's own frame count
    try:
        driver = EnvDriver(env, config.data_root)
        return collect(config, episodes, driver, expert, build_user_prompt, policy, progress)
    finally:
        env.close()
