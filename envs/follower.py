"""Shortest-path follower: the expert that drives the agent to a goal with habitat's discrete actions.

Like habitat's `ShortestPathFollower`: STOP once the geodesic distance to the goal is within `goal_radius`;
otherwise look at the next corner of the geodesic path (the farthest point of the path in a straight line of
sight) and turn towards it while it is more than half a turn step off the heading, else move forward. Turning
never changes the position, so the path (and the decision) stays the same until the heading is within half a
step: the follower cannot oscillate in place.

`lateral_tolerance` (metres, beyond habitat): also move forward while walking straight on would pass the corner
within that distance (and the corner is less than `max_tolerated_angle` off). Without it the follower zig-zags
near every close corner: a 25 cm step towards a point 1 m away swings its bearing by more than half a turn, so
the actions alternate "forward, turn 15°, forward, turn 15° the other way" — 36% of the generated ground truth's
decisions were such 15° corrections, which a learner cannot tell apart from the frames. The experts that label
training data (`expert_follower`: the generated ground truth, `collect`, the oracle) use it.

`turn_hysteresis` (degrees, beyond habitat): also move forward while the heading is off by at most half a turn
step plus this. Headings come in 15° steps, so a hallway whose direction falls between two of them is walked in
alternation; with habitat's 7.5° rule the alternation happens after every single step (7.6° left: turn, 7.4°
right: step, 7.6° right: turn back, ...), because a turn only flips the sign of the error. Measured on 120 random
5-15 m episodes in 6 generated houses (lateral tolerance 0.3 m): "turn, 25 cm, opposite turn" patterns per path
5.6 -> 0.36 with 4°, decisions per path 35 -> 26, collisions per path 2.6 -> 2.0, success unchanged (1.00).

    follower = ShortestPathFollower(sim)                 # any backend with shortest_path / geodesic_distance
    action = follower.next_action(position, rotation, goal)
"""

from __future__ import annotations

import math

import numpy as np

from envs.constants import FORWARD_STEP_M, MOVE_FORWARD, STOP, TURN_ANGLE_DEG, TURN_LEFT, TURN_RIGHT
from envs.geometry import angle_difference, heading_towards, quaternion_to_heading
from envs.navigation import NavGrid

# The experts' settings: the generated ground truth, `collect`'s follower and the oracle agree (`expert_follower`).
EXPERT_LATERAL_TOLERANCE_M = 0.3  # metres
EXPERT_TURN_HYSTERESIS_DEG = 4.0  # degrees beyond half a turn step


class ShortestPathFollower:
    """Greedy geodesic follower over a NavGrid or any backend exposing `shortest_path` and `geodesic_distance`."""

    def __init__(
        self,
        backend_or_grid,
        goal_radius: float = 0.5,
        forward_step: float = FORWARD_STEP_M,
        turn_angle: float = TURN_ANGLE_DEG,
        stop_on_unreachable: bool = True,
        lateral_tolerance: float = 0.0,
        max_tolerated_angle: float = 30.0,
        turn_hysteresis: float = 0.0,
    ) -> None:
        """goal_radius: STOP within this geodesic distance (m) of the goal; must exceed half a forward step, or
        the agent could step over the goal forever. stop_on_unreachable: STOP when no path exists (else raise).
        lateral_tolerance: keep moving forward while the straight line ahead passes the next corner within this
        many metres and the corner is at most `max_tolerated_angle` degrees off (0 = habitat's behaviour).
        turn_hysteresis: degrees beyond half a turn step that the heading may be off before a turn (0 = habitat's
        behaviour); must stay below half a turn step."""
        if goal_radius <= forward_step / 2:
            raise ValueError(f"ShortestPathFollower goal_radius={goal_radius} must exceed half the forward step "
                             f"({forward_step / 2} m), or the follower can overshoot the goal forever")
        if not 0 < turn_angle <= 180:
            raise ValueError(f"ShortestPathFollower turn_angle must be in (0, 180] degrees, got {turn_angle}")
        self.target = backend_or_grid
        self.goal_radius = float(goal_radius)
        self.forward_step = float(forward_step)
        self.turn_angle = math.radians(turn_angle)
        self.stop_on_unreachable = stop_on_unreachable
        if lateral_tolerance < 0:
            raise ValueError(f"ShortestPathFollower lateral_tolerance must be >= 0 metres, got {lateral_tolerance}")
        if not 0 <= max_tolerated_angle < 90:
            raise ValueError(
                f"ShortestPathFollower max_tolerated_angle must be in [0, 90) degrees, got {max_tolerated_angle}"
            )
        if not 0 <= turn_hysteresis < turn_angle / 2:
            raise ValueError(
                f"ShortestPathFollower turn_hysteresis must be in [0, {turn_angle / 2}) degrees (half a turn step), "
                f"got {turn_hysteresis}"
            )
        self.lateral_tolerance = float(lateral_tolerance)
        self.max_tolerated_angle = math.radians(max_tolerated_angle)
        self.turn_hysteresis = math.radians(turn_hysteresis)

    def _lookahead(self, position: np.ndarray, goal: np.ndarray) -> np.ndarray | None:
        """The next corner of the geodesic path from position to goal; None when unreachable."""
        # A grid (ours, or the embedded simulator's current one) answers the first corner without the full path.
        grid = self.target if isinstance(self.target, NavGrid) else getattr(self.target, "nav_grid", None)
        if isinstance(grid, NavGrid):
            return grid.next_waypoint(position, goal)
        path = self.target.shortest_path(position, goal)
        if len(path) < 2:
            return None
        # Skip waypoints that coincide with the agent (the path starts at its position).
        for p in path[1:]:
            if math.hypot(p[0] - position[0], p[2] - position[2]) > 1e-3:
                return np.asarray(p, dtype=np.float64)
        return np.asarray(path[-1], dtype=np.float64)

    def distance(self, position: np.ndarray, goal: np.ndarray) -> float:
        """Geodesic distance from position to goal (metres)."""
        return float(self.target.geodesic_distance(np.asarray(position, float), np.asarray(goal, float)))

    def next_action(self, position: np.ndarray, rotation: np.ndarray, goal: np.ndarray) -> int:
        """The habitat action id (0 STOP, 1 MOVE_FORWARD, 2 TURN_LEFT, 3 TURN_RIGHT) to take at this pose."""
        position = np.asarray(position, dtype=np.float64).reshape(3)
        goal = np.asarray(goal, dtype=np.float64).reshape(3)
        d = self.distance(position, goal)
        if not math.isfinite(d):
            if self.stop_on_unreachable:
                return STOP
            raise ValueError(f"goal {goal.tolist()} is unreachable from {position.tolist()}")
        if d <= self.goal_radius:
            return STOP
        waypoint = self._lookahead(position, goal)
        if waypoint is None:
            return STOP if self.stop_on_unreachable else MOVE_FORWARD
        if math.hypot(waypoint[0] - position[0], waypoint[2] - position[2]) < 1e-6:
            return MOVE_FORWARD
        delta = angle_difference(heading_towards(position, waypoint), quaternion_to_heading(rotation))
        # Half a turn step (plus a hair for floating point): after turning, the residual is at most that much.
        # Within the hysteresis band a turn would only flip the error's sign (7.6° left -> 7.4° right): walk on.
        if abs(delta) <= 0.5 * self.turn_angle + self.turn_hysteresis + 1e-6:
            return MOVE_FORWARD
        if self.lateral_tolerance > 0 and abs(delta) <= self.max_tolerated_angle:
            # Walking straight on passes the corner at this distance: close enough, no 15° correction.
            miss = math.hypot(waypoint[0] - position[0], waypoint[2] - position[2]) * math.sin(abs(delta))
            if miss <= self.lateral_tolerance:
                return MOVE_FORWARD
        return TURN_LEFT if delta > 0 else TURN_RIGHT


def count_zigzags(actions: list[int]) -> int:
    """'Turn, one forward step, opposite turn' patterns in a low-level action sequence: the 15° alternation that
    `lateral_tolerance` and `turn_hysteresis` remove (a learner cannot tell its direction from the frames)."""
    return sum(
        {a, c} == {TURN_LEFT, TURN_RIGHT} and b == MOVE_FORWARD
        for a, b, c in zip(actions, actions[1:], actions[2:], strict=False)
    )


def expert_follower(target, **kwargs) -> ShortestPathFollower:
    """The follower that labels data and drives the oracle: `ShortestPathFollower` with the experts' lateral
    tolerance and turn hysteresis (no 15° zig-zag); `kwargs` (goal_radius, turn_angle, ...) as the class takes."""
    kwargs.setdefault("lateral_tolerance", EXPERT_LATERAL_TOLERANCE_M)
    kwargs.setdefault("turn_hysteresis", EXPERT_TURN_HYSTERESIS_DEG)
    return ShortestPathFollower(target, **kwargs)
