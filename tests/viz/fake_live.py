"""A fake VLN-CE env and agent with the public API live mode relies on (envs.VLNCEEnv, agent contract).

The env moves a point agent with the task's kinematics on an open plane (no walls) and draws a frame whose
colour encodes the step, so tests can tell frames apart; the agent answers like the NaVILA agent (one decision
per 3 forward steps, with a decision_log in episode_stats()).
"""

from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np

from envs.datasets.episode import Episode, Goal, Instruction


def fake_episode(episode_id: str = "7") -> Episode:
    return Episode(
        episode_id=episode_id,
        trajectory_id=1,
        scene_id="gen/fake/fake.glb",
        start_position=[0.0, 0.0, 0.0],
        start_rotation=[0.0, 0.0, 0.0, 1.0],
        goals=[Goal(position=[0.0, 0.0, -2.0], radius=1.0)],
        instruction=Instruction("Walk straight ahead two metres and stop."),
        reference_path=[[0.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 0.0, -2.0]],
        dataset="r2r",
        split="val_unseen",
    )


class FakeLiveEnv:
    """reset(options={'episode_id'}) / step(a) -> 5-tuple / current_episode, like envs.VLNCEEnv."""

    def __init__(self, episodes: list[Episode] | None = None, max_steps: int = 30, size: int = 32) -> None:
        self.episodes = episodes or [fake_episode()]
        self.max_steps, self.size = max_steps, size
        self.current_episode: Episode | None = None
        self.resets = 0
        self.threads: set[int] = set()  # threads that called reset/step (a GL env must see only one)

    def _obs(self) -> dict[str, Any]:
        rgb = np.zeros((self.size, self.size, 3), np.uint8)
        rgb[..., 0] = (self.t * 20) % 256
        rgb[..., 1] = int(math.degrees(self.yaw)) % 256
        return {
            "rgb": rgb,
            "depth": np.ones((self.size, self.size, 1), np.float32),
            "instruction": self.current_episode.instruction.instruction_text,
        }

    def _info(self, collided: bool = False, stopped: bool = False) -> dict[str, Any]:
        d = float(np.linalg.norm(self.pos - np.array(self.current_episode.goal_position)))
        q = [0.0, math.sin(self.yaw / 2), 0.0, math.cos(self.yaw / 2)]
        return {
            "position": self.pos.copy(),
            "rotation": np.array(q),
            "collided": collided,
            "distance_to_goal": d,
            "is_success": stopped and d < 1.0,
            "steps": self.t,
        }

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        self.threads.add(threading.get_ident())
        wanted = (options or {}).get("episode_id")
        matches = [e for e in self.episodes if e.episode_id == wanted]
        if not matches:
            raise ValueError(f"no episode {wanted!r}")
        self.current_episode = matches[0]
        self.pos, self.yaw, self.t, self.done = np.zeros(3), 0.0, 0, False
        self.resets += 1
        return self._obs(), self._info()

    def step(self, action: int):
        self.threads.add(threading.get_ident())
        if self.done:
            raise RuntimeError("step on a finished episode")
        if action == 1:
            self.pos = self.pos + 0.25 * np.array([-math.sin(self.yaw), 0.0, -math.cos(self.yaw)])
        elif action == 2:
            self.yaw += math.radians(15)
        elif action == 3:
            self.yaw -= math.radians(15)
        self.t += 1
        terminated = action == 0
        truncated = not terminated and self.t >= self.max_steps
        self.done = terminated or truncated
        return self._obs(), 0.0, terminated, truncated, self._info(stopped=terminated)


class FakeLiveAgent:
    """Goes forward in 75 cm answers until 1.5 m are done, then stops; logs decisions like the NaVILA agent."""

    def __init__(self) -> None:
        self.reset(None)

    def reset(self, episode: Any) -> None:
        self.queue: list[int] = []
        self.t = 0
        self.log: list[dict[str, Any]] = []
        self.episode = episode

    def act(self, obs: dict[str, Any]) -> int:
        if not self.queue:
            k = len(self.log)
            if k < 2:
                text, low = "The next action is move forward 75 cm.", [1, 1, 1]
            else:
                text, low = "The next action is stop.", [0]
            self.log.append(
                {
                    "k": k,
                    "t": self.t,
                    "frames_seen": [-1] * 7 + [self.t],
                    "raw_text": text,
                    "action": "forward" if low[0] == 1 else "stop",
                    "amount": 75 if low[0] == 1 else 0,
                    "low_level": low,
                    "parse_ok": True,
                    "retried": k == 1,
                    "first_raw_text": "hmm, where am I?" if k == 1 else None,
                }
            )
            self.queue = list(low)
        self.t += 1
        return self.queue.pop(0)

    def episode_stats(self) -> dict[str, Any]:
        return {
            "decisions": len(self.log),
            "parse_failures": sum(bool(d["first_raw_text"]) for d in self.log),
            "decision_log": [dict(d) for d in self.log],
        }
