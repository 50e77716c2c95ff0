"""`eval --perturb`: every camera frame the agent sees changed in a way nobody can see.

Every SR in this repository was measured on frames from one renderer (Mesa's, on CPU machines), handed to the model
unchanged. A real robot's camera stream is compressed, and another renderer rounds colours differently. Session 33
found the shipped model answering differently on 10-18 % of its decisions when its frames went through JPEG q90 or
got +-1/255 noise: `navila-agent eval --perturb jpeg|pixel_noise` measures what that does to whole episodes, with
the same runner, metrics and resume as any evaluation (the perturbation is part of the run's fingerprint, so a run
folder never mixes perturbed and clean episodes).

`PerturbedCamera` wraps the env: it applies `vlm.media.perturb_frames` to `obs["rgb"]` after every reset and step
and leaves depth, poses and metrics alone. The draws of `pixel_noise` depend on the run seed, the episode id and the
step only, so an episode gets the same frames whichever worker or rank runs it, and a resumed run repeats them.
"""

from __future__ import annotations

import zlib
from typing import Any

import gymnasium as gym
import numpy as np

from vlm.media import check_perturbation, perturb_frames


class PerturbedCamera(gym.Wrapper):
    """The env with `kind` (one of vlm.media.PERTURBATIONS) applied to every RGB observation."""

    def __init__(self, env: gym.Env, kind: str, seed: int = 0) -> None:
        super().__init__(env)
        self.kind = check_perturbation(kind, "--perturb")
        self.seed = seed
        self._episode_seed = 0
        self._t = 0

    def _perturbed(self, obs: dict[str, Any]) -> dict[str, Any]:
        seed = self._episode_seed * 1_000_003 + self._t
        rgb = perturb_frames(np.asarray(obs["rgb"])[None], self.kind, seed=seed)[0]
        return {**obs, "rgb": rgb}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """Reset the env; the episode's noise draws start from the run seed and its episode id."""
        obs, info = self.env.reset(seed=seed, options=options)
        episode = str(info.get("episode_id", ""))
        self._episode_seed = zlib.crc32(f"{self.seed}:{episode}".encode())
        self._t = 0
        return self._perturbed(obs), info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        """Step the env and perturb the observation it returns."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._t += 1
        return self._perturbed(obs), reward, terminated, truncated, info
