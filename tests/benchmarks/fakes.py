"""A fake VLN-CE env, backend and agents for runner tests: no GL, no model, milliseconds per episode.

The fake world is an open plane (geodesic = Euclidean distance in x-z). Episodes start at the origin facing -z
with a goal a few metres away; the ground truth is the straight line. Behaviour that tests vary between
processes (a spawned worker, a CLI subprocess) is read from environment variables:

- NAVILA_FAKE_EPISODES: number of episodes in every split (default 6);
- NAVILA_FAKE_STEP_S: seconds each env.step sleeps (default 0), so a kill lands mid-run;
- NAVILA_FAKE_CRASH: comma-separated episode ids whose agent raises mid-episode.

`install()` makes `benchmarks.runner` use these fakes by default (for the CLI run in a subprocess); pickled
references to the functions below reach spawned workers, which import this module themselves.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

import gymnasium
import numpy as np

from agent.baselines import episode_rng
from benchmarks import runner
from envs.constants import FORWARD_STEP_M, MOVE_FORWARD, STOP, TURN_ANGLE_DEG, TURN_LEFT, TURN_RIGHT
from envs.datasets.episode import Episode, Goal, GroundTruth, Instruction


def fake_episodes(n: int, dataset: str = "r2r", split: str = "val_unseen") -> list[Episode]:
    """n episodes from the origin to goals 2-6 m away in different directions (deterministic)."""
    out = []
    for i in range(n):
        angle = 2.0 * math.pi * i / max(n, 1)
        dist = 2.0 + (i % 5)
        goal = [dist * math.sin(angle), 0.0, -dist * math.cos(angle)]
        line = [[goal[0] * s, 0.0, goal[2] * s] for s in np.linspace(0.0, 1.0, 9)]
        out.append(
            Episode(
                episode_id=str(i + 1),
                trajectory_id=i,
                scene_id=f"fake/s{i % 2}/s{i % 2}.glb",
                start_position=[0.0, 0.0, 0.0],
                start_rotation=[0.0, 0.0, 0.0, 1.0],
                goals=[Goal(position=goal, radius=3.0)],
                instruction=Instruction(instruction_text=f"walk to goal {i + 1}"),
                reference_path=[line[0], line[-1]],
                geodesic_distance=dist,
                gt=GroundTruth(locations=line, actions=[MOVE_FORWARD, STOP], forward_steps=1),
                dataset=dataset,
                split=split,
            )
        )
    return out


class FakeBackend:
    """Just enough of SimulatorBackend for the runner: geodesic distance on an open plane."""

    def geodesic_distance(self, a: np.ndarray, b: np.ndarray) -> float:
        a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
        return float(math.hypot(a[0] - b[0], a[2] - b[2]))


class FakeEnv(gymnasium.Env):
    """A gymnasium-style VLN-CE env on the plane: reset(seed, options={"episode_id"}), 5-tuple step, info pose."""

    def __init__(self, episodes: list[Episode], max_steps: int = 80) -> None:
        self.episodes = episodes
        self.max_steps = max_steps
        self.sim = FakeBackend()  # VLNCEEnv's name for its backend
        self.step_s = float(os.environ.get("NAVILA_FAKE_STEP_S", "0"))
        self.closed = False
        self._ep: Episode | None = None

    def _obs(self) -> dict[str, Any]:
        # A tiny image that depends on the pose, so recorded frames differ between steps.
        v = int(abs(self.pos[0] * 37 + self.pos[2] * 11 + self.heading * 5)) % 256
        rgb = np.full((8, 8, 3), v, dtype=np.uint8)
        return {
            "rgb": rgb,
            "depth": np.zeros((8, 8, 1), np.float32),
            "instruction": self._ep.instruction.instruction_text,
        }

    def _info(self, collided: bool = False) -> dict[str, Any]:
        half = self.heading / 2.0
        return {
            "position": self.pos.copy(),
            "rotation": np.array([0.0, math.sin(half), 0.0, math.cos(half)]),
            "episode_id": self._ep.episode_id,
            "collided": collided,
            "distance_to_goal": self.sim.geodesic_distance(self.pos, self._ep.goal_position),
            "steps": self.t,
        }

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict, dict]:
        episode_id = (options or {})["episode_id"]
        self._ep = next(ep for ep in self.episodes if ep.episode_id == episode_id)
        self.pos = np.array(self._ep.start_position, dtype=float)
        self.heading = 0.0  # radians, counter-clockwise seen from above; 0 faces -z
        self.t = 0
        return self._obs(), self._info()

    def step(self, action: int) -> tuple[dict, float, bool, bool, dict]:
        if self.step_s:
            time.sleep(self.step_s)
        self.t += 1
        collided = False
        if action == MOVE_FORWARD:
            self.pos = self.pos + FORWARD_STEP_M * np.array(
                [-math.sin(self.heading), 0.0, -math.cos(self.heading)]
            )
            collided = self.t % 7 == 0  # some collisions, deterministically
        elif action == TURN_LEFT:
            self.heading += math.radians(TURN_ANGLE_DEG)
        elif action == TURN_RIGHT:
            self.heading -= math.radians(TURN_ANGLE_DEG)
        terminated = action == STOP
        truncated = not terminated and self.t >= self.max_steps
        return self._obs(), 0.0, terminated, truncated, self._info(collided)

    def close(self) -> None:
        self.closed = True


class FakeAgent:
    """Agents on the fake env: "oracle" walks to the goal, "random" acts from its per-episode seed,
    "forward" always moves forward. Keeps a decision log like the real agents (one decision per step)."""

    def __init__(self, kind: str, env: FakeEnv, seed: int = 0) -> None:
        self.kind = kind
        self.env = env
        self.seed = seed
        self.rng = np.random.default_rng(0)
        self.crash = {s for s in os.environ.get("NAVILA_FAKE_CRASH", "").split(",") if s}
        self.batch_calls = 0

    def reset(self, episode: Episode) -> None:
        self.rng = episode_rng(self.seed, episode.uid)  # as the real baselines: independent of episode order
        self.episode = episode
        self.t = 0
        self.log: list[dict[str, Any]] = []

    def _decide(self) -> int:
        if self.episode.episode_id in self.crash and self.t == 3:
            raise RuntimeError(f"fake agent crash in episode {self.episode.episode_id}")
        if self.kind == "random":
            return int(self.rng.choice([STOP, MOVE_FORWARD, TURN_LEFT, TURN_RIGHT], p=[0.04, 0.56, 0.2, 0.2]))
        if self.kind == "forward":
            return MOVE_FORWARD
        goal = np.asarray(self.episode.goal_position)
        delta = goal - self.env.pos
        if math.hypot(delta[0], delta[2]) < 1.0:
            return STOP
        want = math.atan2(-delta[0], -delta[2])
        err = (want - self.env.heading + math.pi) % (2 * math.pi) - math.pi
        if abs(err) > math.radians(TURN_ANGLE_DEG) / 2:
            return TURN_LEFT if err > 0 else TURN_RIGHT
        return MOVE_FORWARD

    def act(self, obs: dict[str, Any]) -> int:
        action = self._decide()
        self.log.append(
            {"k": len(self.log), "t": self.t, "raw_text": None, "action": int(action), "parse_ok": True}
        )
        self.t += 1
        return action

    @staticmethod
    def act_batch(agents: list[FakeAgent], observations: list[dict[str, Any]]) -> list[int]:
        for a in agents:
            a.batch_calls += 1
        return [a.act(o) for a, o in zip(agents, observations, strict=True)]

    def episode_stats(self) -> dict[str, Any]:
        return {"parse_failures": 0, "decisions": len(self.log), "decision_log": self.log}


def load_fake_episodes(config: runner.EvalConfig) -> list[Episode]:
    dataset, split = config.split.split("_", 1)
    return fake_episodes(int(os.environ.get("NAVILA_FAKE_EPISODES", "6")), dataset, split)


def make_fake_env(config: runner.EvalConfig, episodes: list[Episode]) -> FakeEnv:
    return FakeEnv(episodes, max_steps=config.max_steps or 80)


def make_fake_agent(config: runner.EvalConfig, env: FakeEnv, device: str) -> FakeAgent:
    return FakeAgent(config.agent, env, config.seed)


FAKE_FACTORIES = runner.Factories(load_fake_episodes, make_fake_env, make_fake_agent)


def install() -> None:
    """Make the runner (and so the CLI in this process) use the fakes."""
    runner.DEFAULT_FACTORIES = FAKE_FACTORIES
