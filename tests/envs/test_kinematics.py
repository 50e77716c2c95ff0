"""Kinematics: 0.25 m forward steps, 15 degree turns (left = counter-clockwise), sliding along walls."""

from __future__ import annotations

import math

import numpy as np
import pytest

from envs.constants import MOVE_FORWARD, STOP, TURN_LEFT, TURN_RIGHT
from envs.geometry import heading_to_quaternion
from envs.kinematics import AgentState, KinematicsConfig, apply_action, try_step, turn
from envs.navigation import NavGrid
from tests.envs.fakes import two_room_mesh

CFG = KinematicsConfig()


@pytest.fixture(scope="module")
def grid() -> NavGrid:
    return NavGrid.from_mesh(two_room_mesh(), floor_y=0.0)


def state(x, z, heading_deg=0.0, y=0.0):
    return AgentState(np.array([x, y, z], dtype=float), heading_to_quaternion(math.radians(heading_deg)))


def test_forward_moves_quarter_metre_along_minus_z(grid):
    s, collided = apply_action(state(1.0, 2.0), MOVE_FORWARD, grid, CFG)
    assert not collided
    assert np.allclose(s.position, [1.0, 0.0, 1.75])


def test_turns_are_15_degrees_and_left_is_counter_clockwise(grid):
    s, _ = apply_action(state(1.0, 2.0), TURN_LEFT, grid, CFG)
    assert math.isclose(math.degrees(s.heading), 15.0, abs_tol=1e-9)
    s, _ = apply_action(s, MOVE_FORWARD, grid, CFG)
    assert s.position[0] < 1.0  # turning left from facing -z veers towards -x
    s2, _ = apply_action(state(1.0, 2.0), TURN_RIGHT, grid, CFG)
    assert math.isclose(math.degrees(s2.heading), -15.0, abs_tol=1e-9)
    # 24 left turns are a full circle
    q = np.array([0, 0, 0, 1.0])
    for _ in range(24):
        q = turn(q, 15.0)
    assert np.allclose(np.abs(q), [0, 0, 0, 1], atol=1e-9)


def test_stop_and_turns_do_not_move(grid):
    s0 = state(1.0, 2.0)
    for a in (STOP, TURN_LEFT, TURN_RIGHT):
        s, collided = apply_action(s0, a, grid, CFG)
        assert np.array_equal(s.position, s0.position) and not collided


def test_height_is_kept(grid):
    s, _ = apply_action(state(1.0, 2.0, y=0.07), MOVE_FORWARD, grid, CFG)
    assert s.position[1] == 0.07


def test_head_on_wall_collides_and_stays_navigable(grid):
    s = state(1.0, 0.3)  # facing the z = 0 wall, about 0.18 m of free space ahead
    s2, collided = apply_action(s, MOVE_FORWARD, grid, CFG)
    assert collided
    assert grid.is_navigable(s2.position)
    assert s2.position[2] <= 0.3


def test_oblique_wall_hit_slides_along_wall(grid):
    # 45 degrees towards the z = 0 wall (heading -45 faces +x, -z): the move slides along the wall, gaining x.
    s = state(1.0, 0.25, heading_deg=-45.0)
    s2, collided = apply_action(s, MOVE_FORWARD, grid, CFG)
    assert collided
    assert grid.is_navigable(s2.position)
    assert s2.position[0] - 1.0 > 0.1  # slid along x by more than the blocked straight move would allow
    assert np.linalg.norm(s2.position - s.position) <= CFG.forward_step + 1e-9


def test_no_sliding_stops_at_wall(grid):
    s = state(1.0, 0.25, heading_deg=-45.0)
    s2, collided = apply_action(s, MOVE_FORWARD, grid, KinematicsConfig(allow_sliding=False))
    assert collided
    d = s2.position - s.position
    assert abs(abs(d[0]) - abs(d[2])) < 1e-9  # stayed on the straight line


def test_try_step_free_move_is_exact(grid):
    end, collided = try_step(grid, np.array([1.0, 0, 2.0]), np.array([1.2, 0, 2.1]))
    assert not collided and np.allclose(end, [1.2, 0, 2.1])


def test_walls_never_crossed(grid):
    # Walk straight into the inner wall many times: the agent never gets to the other room except by the door.
    s = state(2.5, 0.8, heading_deg=-90.0)  # facing +x, towards the inner wall at x = 3
    for _ in range(40):
        s, _ = apply_action(s, MOVE_FORWARD, grid, CFG)
        assert grid.is_navigable(s.position)
        assert s.position[0] < 3.0 or 1.5 < s.position[2] < 2.5


def test_bad_action_and_config():
    with pytest.raises(ValueError, match="unknown action 7"):
        apply_action(state(1, 2), 7, None, CFG)
    with pytest.raises(ValueError, match="forward_step"):
        KinematicsConfig(forward_step=0)
