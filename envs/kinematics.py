"""Agent kinematics on a navigation grid: habitat's discrete VLN-CE actions with sliding collisions.

MOVE_FORWARD moves `forward_step` metres along the heading; TURN_LEFT / TURN_RIGHT rotate by `turn_angle`
degrees about +y (left = counter-clockwise seen from above, as in habitat). A forward move that would leave the
navigable area slides along the obstacle instead, like habitat's navmesh `try_step`: the move is projected on
the obstacle's tangent (see `try_step`), else cut where it meets the obstacle; the step then reports
`collided=True`. The height never changes: positions keep
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


SLIDE_ANGLES_DEG = (10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0)  # how far a blocked move may turn to slide


def try_step(grid: NavGrid, start: np.ndarray, target: np.ndarray, allow_sliding: bool = True) -> tuple[np.ndarray, bool]:
    """(end position, collided) of a straight move from start towards target on the grid.

    Free move: (target, False). Blocked, with sliding: the move projected onto the obstacle's tangent, found as
    the smallest turn of the move direction (10 degree steps, up to 80) whose projection (length scaled by the
    cosine of the turn) is free; the side closer to the target wins a tie. Without sliding, or when nothing
    slides, the farthest free point of the straight move. The end keeps start's height.
    """
    start = np.asarray(start, dtype=np.float64).reshape(3)
    target = np.array(target, dtype=np.float64).reshape(3)
    target[1] = start[1]
    if grid.segment_free(start, target):
        return target, False
    move = target - start
    if allow_sliding:
        for ang in SLIDE_ANGLES_DEG:
            a = math.radians(ang)
            best = None
            for sign in (1.0, -1.0):
                ca, sa = math.cos(sign * a), math.sin(sign * a)
                # Rotate the move in the x-z plane and shorten it to its projection on the new direction.
                d = np.array([ca * move[0] + sa * move[2], 0.0, -sa * move[0] + ca * move[2]]) * ca
                end = start + d
                if grid.segment_free(start, end):
                    gap = float(np.linalg.norm(end - target))
                    if best is None or gap < best[0]:
                        best = (gap, end)
            if best is not None:
                return best[1], True
    t = grid.free_fraction(start, target)
    return start + t * move, True


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
