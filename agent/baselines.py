"""Non-learning baselines with the same interface as the NaVILA agent (reset(episode) / act(obs) / episode_stats()).

- `RandomAgent`: VLN-CE's random baseline (Krantz et al. 2020, `nonlearning_agents.py`): every step samples an
  action from the oracle action distribution of the R2R-CE training set, P(STOP, FORWARD, LEFT, RIGHT) =
  (0.02, 0.68, 0.15, 0.15), so the episode ends at its first sampled STOP (about 50 steps on average) or at the
  env's step limit. Optionally STOP after `max_steps`.
- `ForwardOnlyAgent`: forward for `forward_steps` (default 37 = VLN-CE's 9.25 m, the mean oracle path length of
  R2R-CE train), then STOP. With `random_heading=True` it first turns right a uniform 0..24 times (a random
  heading in 15° steps), which is exactly VLN-CE's "hand-crafted" baseline; without it, it walks straight ahead.
- `OracleAgent`: the shortest-path follower to the goal, through the backend's geodesics (an upper bound that
  checks the env, the follower and the metrics together).
- `ReplayAgent`: replays the episode's ground-truth actions (`episode.gt.actions`), then STOP.

Randomness is seeded per episode from (seed, episode uid), so results do not depend on episode order, on how
episodes are split across workers, or on resuming a run.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from agent.actions import FORWARD_STEP_CM, TURN_STEP_DEG
from agent.base import Decision, DecisionLog
from envs.constants import ACTION_NAMES, MOVE_FORWARD, NUM_ACTIONS, STOP, TURN_RIGHT
from envs.datasets.episode import Episode

# VLN-CE RandomAgent: the training set's oracle action distribution over (STOP, FORWARD, LEFT, RIGHT).
VLNCE_RANDOM_PROBS: tuple[float, float, float, float] = (0.02, 0.68, 0.15, 0.15)
# VLN-CE HandcraftedAgent: 9.27 m mean oracle path length in train / 0.25 m per step, rounded to 37.
VLNCE_FORWARD_STEPS = 37
# Random heading of the hand-crafted agent: 0..24 right turns of 15° (24 = a full turn).
MAX_HEADING_TURNS = 24

_KIND = {0: "stop", 1: "forward", 2: "left", 3: "right"}
_AMOUNT = {0: 0, 1: FORWARD_STEP_CM, 2: TURN_STEP_DEG, 3: TURN_STEP_DEG}


def episode_rng(seed: int, uid: str) -> np.random.Generator:
    """A generator that depends only on (seed, episode uid): stable across processes and episode orders."""
    return np.random.default_rng([int(seed), zlib.crc32(uid.encode("utf-8"))])


class _StepLog:
    """One decision per low-level step, as baselines decide step by step (raw_text None, no frames)."""

    def __init__(self) -> None:
        self.log = DecisionLog()
        self.t = 0

    def reset(self) -> None:
        self.log.reset()
        self.t = 0

    def record(self, action: int) -> int:
        self.log.add(
            Decision(
                k=self.log.next_index,
                t=self.t,
                frames_seen=[],
                raw_text=None,
                action=_KIND[action],
                amount=_AMOUNT[action],
                low_level=[action],
                parse_ok=True,
                retried=False,
            )
        )
        self.t += 1
        return action

    def stats(self) -> dict[str, Any]:
        return {**self.log.stats(), "steps": self.t}


class RandomAgent:
    """Samples each action from `probs` over (STOP, FORWARD, LEFT, RIGHT) — VLN-CE's random baseline."""

    def __init__(
        self, seed: int = 0, probs: Sequence[float] = VLNCE_RANDOM_PROBS, max_steps: int | None = None
    ) -> None:
        probs_array = np.asarray(probs, dtype=np.float64)
        if (
            probs_array.shape != (NUM_ACTIONS,)
            or np.any(probs_array < 0)
            or not np.isclose(probs_array.sum(), 1.0)
        ):
            raise ValueError(
                f"RandomAgent.probs must be {NUM_ACTIONS} non-negative numbers summing to 1 "
                f"(STOP, FORWARD, LEFT, RIGHT), got {list(probs)}"
            )
        if max_steps is not None and max_steps < 0:
            raise ValueError(f"RandomAgent.max_steps must be >= 0 or None, got {max_steps}")
        self.seed = seed
        self.probs = probs_array / probs_array.sum()
        self.max_steps = max_steps
        self._rng = episode_rng(seed, "")
        self._steps = _StepLog()

    def reset(self, episode: Episode) -> None:
        self._rng = episode_rng(self.seed, episode.uid)
        self._steps.reset()

    def act(self, obs: Mapping[str, Any]) -> int:
        if self.max_steps is not None and self._steps.t >= self.max_steps:
            return self._steps.record(STOP)
        return self._steps.record(int(self._rng.choice(NUM_ACTIONS, p=self.probs)))

    def episode_stats(self) -> dict[str, Any]:
        return self._steps.stats()


class ForwardOnlyAgent:
    """MOVE_FORWARD `forward_steps` times, then STOP; with `random_heading`, VLN-CE's hand-crafted baseline."""

    def __init__(
        self, forward_steps: int = VLNCE_FORWARD_STEPS, random_heading: bool = False, seed: int = 0
    ) -> None:
        if forward_steps < 0:
            raise ValueError(f"ForwardOnlyAgent.forward_steps must be >= 0, got {forward_steps}")
        self.forward_steps = forward_steps
        self.random_heading = random_heading
        self.seed = seed
        self._turns_left = 0
        self._forward_left = forward_steps
        self._steps = _StepLog()

    def reset(self, episode: Episode) -> None:
        self._steps.reset()
        self._forward_left = self.forward_steps
        # VLN-CE: np.random.randint(0, 360 / 15 + 1) right turns, i.e. 0..24 inclusive.
        self._turns_left = (
            int(episode_rng(self.seed, episode.uid).integers(0, MAX_HEADING_TURNS + 1))
            if self.random_heading
            else 0
        )

    def act(self, obs: Mapping[str, Any]) -> int:
        if self._turns_left > 0:
            self._turns_left -= 1
            return self._steps.record(TURN_RIGHT)
        if self._forward_left > 0:
            self._forward_left -= 1
            return self._steps.record(MOVE_FORWARD)
        return self._steps.record(STOP)

    def episode_stats(self) -> dict[str, Any]:
        return self._steps.stats()


FollowerFactory = Callable[[Any], Any]  # backend -> object with next_action(position, rotation, goal) -> int


def _default_follower(backend: Any) -> Any:
    from envs.follower import expert_follower

    # The same expert as the generated ground truth and `collect` (no 15° zig-zag).
    return expert_follower(backend)


class OracleAgent:
    """Follows the geodesic shortest path to the goal: asks the backend for the agent's pose at every step and
    the follower for the action (STOP within the follower's goal radius, 0.5 m by default).

    `backend` is the env's simulator backend (the one that is stepped); `follower_factory(backend)` builds the
    follower (default: `envs.follower.ShortestPathFollower`).
    """

    def __init__(self, backend: Any, follower_factory: FollowerFactory | None = None) -> None:
        if backend is None or not callable(getattr(backend, "agent_state", None)):
            raise ValueError(
                "OracleAgent needs the env's simulator backend (with agent_state() and geodesics); "
                f"got {type(backend).__name__}"
            )
        self.backend = backend
        self.follower = (follower_factory or _default_follower)(backend)
        self._goal: np.ndarray | None = None
        self._steps = _StepLog()

    def reset(self, episode: Episode) -> None:
        self._goal = np.asarray(episode.goal_position, dtype=np.float64)
        self._steps.reset()

    def act(self, obs: Mapping[str, Any]) -> int:
        if self._goal is None:
            raise RuntimeError("OracleAgent.act called before reset(episode)")
        position, rotation = self.backend.agent_state()
        action = int(self.follower.next_action(position, rotation, self._goal))
        if action not in ACTION_NAMES:
            raise RuntimeError(
                f"follower returned unknown action {action}; available: {sorted(ACTION_NAMES)}"
            )
        return self._steps.record(action)

    def episode_stats(self) -> dict[str, Any]:
        return self._steps.stats()


class ReplayAgent:
    """Replays `episode.gt.actions` (the dense ground-truth expert actions of `{split}_gt.json.gz`); STOP when
    they run out. On a faithful simulator this reproduces the reference trajectory (nDTW ≈ 1)."""

    def __init__(self) -> None:
        self._actions: list[int] = []
        self._steps = _StepLog()

    def reset(self, episode: Episode) -> None:
        if episode.gt is None or not episode.gt.actions:
            raise ValueError(
                f"ReplayAgent: episode {episode.uid} has no ground-truth actions "
                "(load the split with its {split}_gt.json.gz file)"
            )
        unknown = sorted({a for a in episode.gt.actions if a not in ACTION_NAMES})
        if unknown:
            raise ValueError(
                f"ReplayAgent: episode {episode.uid} has unknown action ids {unknown}; "
                f"available: {sorted(ACTION_NAMES)}"
            )
        self._actions = [int(a) for a in episode.gt.actions]
        self._steps.reset()

    def act(self, obs: Mapping[str, Any]) -> int:
        t = self._steps.t
        return self._steps.record(self._actions[t] if t < len(self._actions) else STOP)

    def episode_stats(self) -> dict[str, Any]:
        return self._steps.stats()
