"""`VLNCEEnv`: VLN-CE (R2R-CE / RxR-CE) as a plain Gymnasium environment.

Observations are {"rgb": HxWx3 uint8, "depth": HxWx1 float32 metres, "instruction": str}; actions are habitat's
ids (0 STOP, 1 MOVE_FORWARD 0.25 m, 2 TURN_LEFT 15°, 3 TURN_RIGHT 15°). An episode is `terminated` on STOP and
`truncated` after `max_steps` actions. The reward is always 0: VLN-CE is scored by metrics over the finished
trajectory (`benchmarks.metrics`), and `info` carries what they need (pose, collisions, geodesic distance to
the goal, `is_success`).

    env = VLNCEEnv(split="r2r_val_unseen")                 # generated episodes, embedded simulator
    obs, info = env.reset(options={"episode_id": "17"})
    obs, reward, terminated, truncated, info = env.step(1)

    env = gymnasium.make("navila/VLNCE-v0", split="r2r_val_unseen", data_root="data")   # real VLN-CE data

The simulator is created on the first `reset`, so constructing the env in a parent process and running it in a
worker (vector envs, multiprocessing) opens exactly one GL context, in the worker. Start workers with the
"spawn" or "forkserver" context (`AsyncVectorEnv(..., context="spawn")`): a worker forked from a process that
already holds an EGL context hangs on Mesa.
"""

from __future__ import annotations

import math
import string
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.backend import SimulatorBackend
from envs.constants import (
    HFOV_DEG,
    MAX_EPISODE_STEPS,
    MAX_INSTRUCTION_CHARS,
    NUM_ACTIONS,
    OBS_DEPTH,
    OBS_INSTRUCTION,
    OBS_RGB,
    STOP,
    SUCCESS_DISTANCE_M,
)
from envs.datasets.episode import Episode

# Characters the instruction space admits: printable ASCII plus Latin-1, Latin Extended-A and typographic
# punctuation (curly quotes, dashes), which real R2R / RxR English instructions contain. Anything else is
# replaced by "?" in the observation (see `instruction_text`).
INSTRUCTION_CHARSET = "".join(
    sorted(
        set(string.printable)
        | {chr(c) for c in range(0xA0, 0x180)}
        | {chr(c) for c in range(0x2010, 0x2027)}
    )
)
_CHARSET = frozenset(INSTRUCTION_CHARSET)


def instruction_text(text: str) -> str:
    """The instruction as the observation carries it: characters outside INSTRUCTION_CHARSET become "?" and
    the text is cut at MAX_INSTRUCTION_CHARS, so it always lies in the observation space."""
    if not all(ch in _CHARSET for ch in text):
        text = "".join(ch if ch in _CHARSET else "?" for ch in text)
    return text[:MAX_INSTRUCTION_CHARS]


def to_observation(raw: dict[str, np.ndarray], instruction: str, height: int, width: int) -> dict[str, Any]:
    """Convert a backend's raw output to the env's observation (the one place that does it).

    rgb: [H, W, 3] uint8 (an alpha channel is dropped); depth: [H, W, 1] float32 metres, NaN and negative
    values (no hit) set to 0.
    """
    rgb = np.asarray(raw[OBS_RGB])
    if rgb.ndim != 3 or rgb.shape[:2] != (height, width) or rgb.shape[2] < 3:
        raise ValueError(f"backend returned rgb of shape {rgb.shape}, expected ({height}, {width}, 3)")
    rgb = np.ascontiguousarray(rgb[:, :, :3], dtype=np.uint8)
    depth = np.asarray(raw[OBS_DEPTH], dtype=np.float32).reshape(height, width, 1)  # [H, W, 1]
    lo, hi = float(depth.min()), float(depth.max())  # NaN makes both comparisons below False
    if not (lo >= 0.0 and hi < math.inf):  # only then pay for the cleaning copy (2 ms at 512^2)
        depth = np.nan_to_num(depth, nan=0.0, posinf=0.0, neginf=0.0)
        np.maximum(depth, 0.0, out=depth)
    return {OBS_RGB: rgb, OBS_DEPTH: depth, OBS_INSTRUCTION: instruction_text(instruction)}


def action_id(action: Any) -> int:
    """The habitat action id of `action` (a Python or numpy integer, or a 0-d integer array) as an int.

    A plain check instead of `Discrete.contains`, which costs more than a whole 224x224 simulator step.
    """
    if isinstance(action, np.ndarray) and action.shape == () and np.issubdtype(action.dtype, np.integer):
        action = action.item()
    if isinstance(action, (int, np.integer)) and not isinstance(action, bool) and 0 <= action < NUM_ACTIONS:
        return int(action)
    raise ValueError(f"invalid action {action!r}; valid: 0 STOP, 1 MOVE_FORWARD, 2 TURN_LEFT, 3 TURN_RIGHT")


class VLNCEEnv(gym.Env):
    """VLN-CE as a Gymnasium env (see the module docstring)."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(
        self,
        split: str | None = None,
        episodes: list[Episode] | None = None,
        data_root: str | None = None,
        backend: str | SimulatorBackend = "embedded",
        width: int = 224,
        height: int = 224,
        hfov_deg: float = HFOV_DEG,
        max_steps: int = MAX_EPISODE_STEPS,
        success_distance: float = SUCCESS_DISTANCE_M,
        shuffle: bool = False,
        render_mode: str | None = None,
        backend_options: dict[str, Any] | None = None,
    ) -> None:
        """split: a split name (e.g. "r2r_val_unseen"), read from `data_root` or generated; or pass `episodes`.
        backend: "embedded", "habitat", or a ready SimulatorBackend instance (tests, custom simulators).
        backend_options: extra fields of the backend's config (e.g. {"camera_height": 0.88})."""
        if (split is None) == (episodes is None):
            raise ValueError("VLNCEEnv needs exactly one of split= (a split name) or episodes= (a list of Episode)")
        if max_steps < 1:
            raise ValueError(f"VLNCEEnv max_steps must be >= 1, got {max_steps}")
        if not success_distance > 0:
            raise ValueError(f"VLNCEEnv success_distance must be > 0 metres, got {success_distance}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"unknown render_mode '{render_mode}'; available: {self.metadata['render_modes']}")
        if isinstance(backend, str):
            from envs.factory import available_backends

            if backend not in available_backends():
                raise ValueError(f"unknown backend '{backend}'; available: {', '.join(available_backends())}")
        if split is not None:
            from envs.datasets.splits import load_split

            episodes = load_split(split, data_root)
        if not episodes:
            raise ValueError(f"VLNCEEnv: no episodes (split={split!r}, data_root={data_root!r})")
        self.episodes: list[Episode] = list(episodes)
        self.split, self.data_root = split, data_root
        self.width, self.height, self.hfov_deg = int(width), int(height), float(hfov_deg)
        self.max_steps, self.success_distance, self.shuffle = int(max_steps), float(success_distance), shuffle
        self.render_mode = render_mode
        self._backend_spec = backend
        self._backend_options = dict(backend_options or {})
        self._sim: SimulatorBackend | None = None if isinstance(backend, str) else backend

        self.observation_space = spaces.Dict(
            {
                OBS_RGB: spaces.Box(0, 255, (self.height, self.width, 3), np.uint8),
                OBS_DEPTH: spaces.Box(0.0, np.inf, (self.height, self.width, 1), np.float32),
                OBS_INSTRUCTION: spaces.Text(max_length=MAX_INSTRUCTION_CHARS, min_length=0,
                                             charset=INSTRUCTION_CHARSET),
            }
        )
        self.action_space = spaces.Discrete(NUM_ACTIONS)

        self._order: list[int] = list(range(len(self.episodes)))
        self._cursor = 0
        self._episode: Episode | None = None
        self._steps = 0
        self._done = True
        self._last_rgb: np.ndarray | None = None

    # -- helpers ------------------------------------------------------------------------------------------
    @property
    def sim(self) -> SimulatorBackend:
        """The simulator backend, created on first use (one per env, in the process that steps it)."""
        if self._sim is None:
            from envs.datasets.splits import scene_root
            from envs.factory import make_backend

            self._sim = make_backend(
                self._backend_spec,  # type: ignore[arg-type]
                scenes_root=scene_root(self.data_root),
                width=self.width,
                height=self.height,
                hfov_deg=self.hfov_deg,
                **self._backend_options,
            )
        return self._sim

    @property
    def current_episode(self) -> Episode | None:
        return self._episode

    def _next_episode(self, episode_id: str | None) -> Episode:
        if episode_id is not None:
            from envs.datasets.splits import find_episode

            return find_episode(self.episodes, str(episode_id))
        if self._cursor >= len(self._order):
            self._cursor = 0
        if self._cursor == 0 and self.shuffle:
            self._order = [int(i) for i in self.np_random.permutation(len(self.episodes))]
        ep = self.episodes[self._order[self._cursor]]
        self._cursor += 1
        return ep

    def _info(self, collided: bool, stopped: bool) -> dict[str, Any]:
        position, rotation = self.sim.agent_state()
        ep = self._episode
        distance = float(self.sim.geodesic_distance(position, np.asarray(ep.goal_position, dtype=np.float64)))
        return {
            "episode_id": ep.episode_id,
            "episode_uid": ep.uid,
            "scene_id": ep.scene_id,
            "position": position,
            "rotation": rotation,
            "collided": bool(collided),
            "distance_to_goal": distance,
            "is_success": bool(stopped and math.isfinite(distance) and distance < self.success_distance),
            "steps": self._steps,
        }

    def _observe(self) -> dict[str, Any]:
        obs = to_observation(self.sim.observe(), self._episode.instruction.instruction_text, self.height, self.width)
        self._last_rgb = obs[OBS_RGB]
        return obs

    # -- gymnasium API ------------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Start the next episode in order (shuffled per pass with shuffle=True), or options["episode_id"]."""
        super().reset(seed=seed)
        if seed is not None:
            self._cursor = 0  # a seed restarts the episode sequence, so a seeded run is reproducible
        options = options or {}
        unknown = set(options) - {"episode_id"}
        if unknown:
            raise ValueError(f"VLNCEEnv.reset: unknown option(s) {sorted(unknown)}; available: ['episode_id']")
        self._episode = self._next_episode(options.get("episode_id"))
        self.sim.reset(self._episode)
        self._steps = 0
        self._done = False
        return self._observe(), self._info(collided=False, stopped=False)

    def step(self, action):
        if self._done:
            raise RuntimeError("VLNCEEnv.step called on a finished episode; call reset() first")
        action = action_id(action)
        collided = self.sim.step(action)
        self._steps += 1
        terminated = action == STOP
        truncated = not terminated and self._steps >= self.max_steps
        self._done = terminated or truncated
        obs = self._observe()
        return obs, 0.0, terminated, truncated, self._info(collided=collided, stopped=terminated)

    def render(self):
        """The last RGB frame (render_mode "rgb_array"); None before the first reset."""
        return None if self._last_rgb is None else self._last_rgb.copy()

    def close(self) -> None:
        if self._sim is not None:
            self._sim.close()
            if isinstance(self._backend_spec, str):
                self._sim = None
