"""Fakes for agent tests: a model with vlm's inference interface that answers from a script and records what it
was given, and small episode / observation builders."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np

from envs.datasets.episode import Episode, Goal, GroundTruth, Instruction

Answer = str | Callable[[Sequence[Any], str], str]


class FakeFeatureCache:
    """Records every `drop(prefix)` call."""

    def __init__(self) -> None:
        self.dropped: list[Any] = []

    def drop(self, prefix: Any) -> None:
        self.dropped.append(prefix)


class FakeModel:
    """`generate_text(samples, max_new_tokens)` like a vlm model: answers come from `answers` (consumed in order,
    the last one repeating) or from a function of (images, prompt); every call is recorded as its samples."""

    def __init__(
        self,
        answers: Sequence[str] | Callable[[Sequence[Any], str], str],
        conv_mode: str = "llama_3",
        progress: Sequence[float] | None = None,
        stop_threshold: float | None = None,
    ) -> None:
        self._answers = answers
        self._next = 0
        # With `progress` the model has a progress monitor: estimates in order, one per sample, the last repeating;
        # `stop_threshold` is the threshold the monitor comes with (vlm.progress_head).
        self._progress = progress
        self.progress_head = SimpleNamespace(stop_threshold=stop_threshold) if progress is not None else None
        self.progress_calls = 0
        self.conv_mode = conv_mode
        self.feature_cache = FakeFeatureCache()
        self.calls: list[list[tuple[list[Any], str]]] = []
        self.max_new_tokens: list[int] = []

    def _answer(self, images: Sequence[Any], prompt: str) -> str:
        if callable(self._answers):
            return self._answers(images, prompt)
        answer = self._answers[min(self._next, len(self._answers) - 1)]
        self._next += 1
        return answer

    def generate_text(
        self, samples: Sequence[tuple[Sequence[Any], str]], max_new_tokens: int = 32, return_progress: bool = False
    ) -> list[str] | tuple[list[str], list[float]]:
        self.calls.append([(list(images), prompt) for images, prompt in samples])
        self.max_new_tokens.append(max_new_tokens)
        answers = [self._answer(images, prompt) for images, prompt in samples]
        if not return_progress:
            return answers
        if self._progress is None:
            raise ValueError("this fake model has no progress monitor")
        estimates = []
        for _ in samples:
            estimates.append(self._progress[min(self.progress_calls, len(self._progress) - 1)])
            self.progress_calls += 1
        return answers, estimates

    @property
    def num_samples(self) -> int:
        return sum(len(call) for call in self.calls)


def make_episode(
    episode_id: str = "7",
    instruction: str = "Walk past the sofa and stop at the door.",
    actions: list[int] | None = None,
    split: str = "val_seen",
) -> Episode:
    return Episode(
        episode_id=episode_id,
        trajectory_id=1,
        scene_id="gen/h0000/h0000.glb",
        start_position=[0.0, 0.0, 0.0],
        start_rotation=[0.0, 0.0, 0.0, 1.0],
        goals=[Goal(position=[0.0, 0.0, -5.0], radius=3.0)],
        instruction=Instruction(instruction_text=instruction),
        reference_path=[[0.0, 0.0, 0.0], [0.0, 0.0, -5.0]],
        gt=None
        if actions is None
        else GroundTruth(locations=[], actions=actions, forward_steps=actions.count(1)),
        dataset="r2r",
        split=split,
    )


def make_obs(t: int, seed: int = 0, size: int = 8) -> dict[str, Any]:
    """An observation whose RGB frame is distinct per (seed, t)."""
    rng = np.random.default_rng([seed, t])
    return {
        "rgb": rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8),
        "depth": np.zeros((size, size, 1), dtype=np.float32),
        "instruction": "unused",
    }
