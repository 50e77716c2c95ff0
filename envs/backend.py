"""The simulator backend contract every backend implements (embedded, habitat, test fakes).

Coordinates follow habitat: metres, y up, quaternions [x, y, z, w]; the agent looks along its local -z axis.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from envs.datasets.episode import Episode


@runtime_checkable
class SimulatorBackend(Protocol):
    def reset(self, episode: Episode) -> None:
        """Load the episode's scene (if not loaded), place the agent at its start pose."""

    def step(self, action: int) -> bool:
        """Apply one low-level action (habitat id); return True when the move collided (and slid)."""

    def observe(self) -> dict[str, np.ndarray]:
        """{"rgb": HxWx3 uint8, "depth": HxWx1 float32 metres} at the current pose."""

    def agent_state(self) -> tuple[np.ndarray, np.ndarray]:
        """(position [x, y, z], rotation quaternion [x, y, z, w]) as float64 arrays."""

    def geodesic_distance(self, a: np.ndarray, b: np.ndarray) -> float:
        """Shortest navigable distance from a to b in metres (inf when unreachable)."""

    def shortest_path(self, a: np.ndarray, b: np.ndarray) -> list[np.ndarray]:
        """Navigable waypoints from a to b (both included); empty when unreachable."""

    def close(self) -> None:
        """Release the scene and any GL / simulator resources."""
