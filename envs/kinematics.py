"""Agent kinematics on a navigation grid: habitat's discrete VLN-CE actions with sliding collisions.

MOVE_FORWARD moves `forward_step` metres along the heading; TURN_LEFT / TURN_RIGHT rotate by `turn_angle`
degrees about +y (left = counter-clockwise seen from above, as in habitat). A forward move that would leave the
navigable area slides along the obstacle instead, like habitat's navmesh `try_step`: the agent ends at the
navigable point nearest to the blocked target, provided it can reach it in a straight line, else as far along
the straight move as is free; the step then reports `collided=True`. The height never changes: positions keep
the episode's floor height.

    state = AgentState(position=np.array([1.0, 0.0, 1.0]), rotation=np.array([0.0, 0.0, 0.0, 1.0]))
    state, collided = apply_action(state, MOVE_FORWARD, grid, KinematicsConfig())
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from envs.constants import FORWARD_STEP_M, MOVE_FORWARD, STOP, TURN_ANGLE_DEG, TURN_LEFT, TURN_RIGHT
from envs.geometry import (
    heading_to_forward,
    heading_to_quaternion,
    normalize_quaternion,
    quaternion_multiply,
    quaternion_to_heading,
)
from envs.navigation import NavGrid


@dataclass
class KinematicsConfig:
    forward_step: float = FORWARD_STEP_M  # metres per MOVE_FORWARD
    turn_angle: float = TURN_ANGLE_DEG  # degrees per TURN_LEFT / TURN_RIGHT
    allow_sliding: bool = True  # slide along obstacles (habitat / VLN-CE); False stops at the obstacle

    def __post_init__(self) -> None:
        if not self.forward_step > 0:
            raise ValueError(f"KinematicsConfig.forward_step must be > 0 metres, got {self.forward_step}")
        if not 0 < self.turn_angle <= 180:
            raise ValueError(f"KinematicsConfig.turn_angle must be in (0, 180] degrees, got {self.turn_angle}")


@dataclass
class AgentState:
    position: np.ndarray  # [x, y, z] float64, metres
    rotation: np.ndarray  # quaternion [x, y, z, w] float64

    def copy(self) -> AgentState:
        return AgentState(self.position.copy(), self.rotation.copy())

    @property
    def heading(self) -> float:
        """Yaw about +y in radians (0 faces -z, positive is to the left)."""
        return quaternion_to_heading(self.rotation)


def turn(rotation: np.ndarray, angle_deg: float) -> np.ndarray:
    """The rotation turned by angle_deg about world +y (positive = left), normalised."""
    return normalize_quaternion(quaternion_multiply(heading_to_quaternion(math.radians(angle_deg)), rotation))


def try_step(grid: NavGrid, start: np.ndarray, target: np.ndarray, allow_sliding: bool = True) -> tuple[np.ndarray, bool]:
    """(end position, collided) of a straight move from start towards target on the grid.

    Free move: (target, False). Blocked: with sliding, the navigable point nearest the target when the straight
    segment to it is free (the move projected onto the obstacle's free side); otherwise, or without sliding, the
    farthest free point of the straight segment. The end keeps start's height.
    """
    start = np.asarray(start, dtype=np.float64).reshape(3)
    target = np.array(target, dtype=np.float64).reshape(3)
    target[1] = start[1]
    if grid.segment_free(start, target):
        return target, False
    end = None
    if allow_sliding:
        slid = grid.snap(target)
        slid[1] = start[1]
        if grid.segment_free(start, slid) and np.linalg.norm(slid - start) > 1e-9:
            end = slid
    if end is None:
        t = grid.free_fraction(start, target)
        end = start + t * (target - start)
    return end, True


def apply_action(state: AgentState, action: int, grid: NavGrid, config: KinematicsConfig) -> tuple[AgentState, bool]:
    """(new state, collided) after one low-level action (habitat ids). STOP leaves the state unchanged."""
    action = int(action)
    if action == STOP:
        return state.copy(), False
    if action == TURN_LEFT:
        return AgentState(state.position.copy(), turn(state.rotation, config.turn_angle)), False
    if action == TURN_RIGHT:
        return AgentState(state.position.copy(), turn(state.rotation, -config.turn_angle)), False
    if action == MOVE_FORWARD:
        target = state.position + config.forward_step * heading_to_forward(state.heading)
        end, collided = try_step(grid, state.position, target, config.allow_sliding)
        return AgentState(end, state.rotation.copy()), collided
    raise ValueError(f"unknown action {action}; valid actions are 0 STOP, 1 MOVE_FORWARD, 2 TURN_LEFT, 3 TURN_RIGHT")
