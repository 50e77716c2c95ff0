"""The episode record shared by every reader, writer and backend.

Fields mirror R2R-CE / RxR-CE episode files (see NAVILA_REFERENCE.md) plus the ground truth from
`{split}_gt.json.gz`. `extra` keeps any other field of the source episode so a read → write round trip loses
nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Instruction:
    instruction_text: str
    instruction_tokens: list[int] | None = None  # R2R-CE only
    # RxR-CE extras (absent in R2R-CE): instruction_id, language, annotator_id, edit_distance, timed_instruction
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Goal:
    position: list[float]  # [x, y, z], y up
    radius: float | None = 3.0


@dataclass
class GroundTruth:
    locations: list[list[float]]  # dense expert positions [[x, y, z], ...] (nDTW reference)
    actions: list[int]  # habitat action ids, ending with 0 (STOP)
    forward_steps: int


@dataclass
class Episode:
    episode_id: str  # always a string here; R2R-CE files store ints, RxR-CE strings — the writer restores the type
    trajectory_id: int | str | None
    scene_id: str  # e.g. "mp3d/<scan>/<scan>.glb" or "gen/<house>/<house>.glb", relative to the scenes root
    start_position: list[float]  # [x, y, z]
    start_rotation: list[float]  # quaternion [x, y, z, w]
    goals: list[Goal]
    instruction: Instruction
    reference_path: list[list[float]]  # sparse waypoints
    geodesic_distance: float | None = None  # info.geodesic_distance
    gt: GroundTruth | None = None
    dataset: str = ""  # "r2r" or "rxr"
    split: str = ""  # "val_unseen", ...
    episode_id_is_int: bool = True  # how the source file typed episode_id
    info: dict[str, Any] = field(default_factory=dict)  # the full `info` object of the source
    extra: dict[str, Any] = field(default_factory=dict)  # unknown top-level fields, kept for round trips

    @property
    def goal_position(self) -> list[float]:
        return self.goals[0].position

    @property
    def uid(self) -> str:
        """Globally unique id across datasets and splits (results are keyed by it)."""
        return f"{self.dataset}_{self.split}:{self.episode_id}"
