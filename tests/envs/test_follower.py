"""ShortestPathFollower: reaches goals (STOP within the goal radius), never oscillates in place."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from envs.constants import MOVE_FORWARD, STOP, TURN_LEFT, TURN_RIGHT
from envs.follower import (
    EXPERT_LATERAL_TOLERANCE_M,
    EXPERT_TURN_HYSTERESIS_DEG,
    ShortestPathFollower,
    count_zigzags,
    expert_follower,
)
from envs.geometry import heading_to_quaternion
from envs.kinematics import AgentState, KinematicsConfig, apply_action
from envs.navigation import NavGrid
from tests.envs.fakes import two_room_mesh

KIN = KinematicsConfig()


@pytest.fixture(scope="module")
def grid() -> NavGrid:
    return NavGrid.from_mesh(two_room_mesh(), floor_y=0.0)


def run(follower, grid, start, heading, goal, max_steps=500):
    s = AgentState(np.asarray(start, float), heading_to_quaternion(heading))
    actions = []
    for _ in range(max_steps):
        a = follower.next_action(s.position, s.rotation, goal)
        actions.append(a)
        if a == STOP:
            break
        s, _ = apply_action(s, a, grid, KIN)
    return s, actions


def assert_no_turn_oscillation(actions):
    for x, y in itertools.pairwise(actions):
        assert {x, y} != {TURN_LEFT, TURN_RIGHT}, actions


def test_stop_inside_goal_radius(grid):
    f = ShortestPathFollower(grid, goal_radius=0.5)
    assert f.next_action([1.0, 0, 1.0], heading_to_quaternion(0), np.array([1.2, 0, 1.1])) == STOP


def test_turns_towards_goal_then_forward(grid):
    f = ShortestPathFollower(grid)
    goal = np.array([1.0, 0, 3.5])  # behind the agent (it faces -z)
    first = f.next_action([1.0, 0, 1.0], heading_to_quaternion(0.0), goal)
    assert first in (TURN_LEFT, TURN_RIGHT)
    assert f.next_action([1.0, 0, 1.0], heading_to_quaternion(math.pi), goal) == MOVE_FORWARD
    # left of the agent (-x side) -> turn left
    assert f.next_action([2.0, 0, 1.0], heading_to_quaternion(0.0), np.array([0.5, 0, 1.0])) == TURN_LEFT


def test_reaches_goal_through_doorway(grid):
    f = ShortestPathFollower(grid, goal_radius=0.5)
    goal = np.array([5.0, 0, 0.3])
    s, actions = run(f, grid, [1.0, 0, 0.3], 0.0, goal)
    assert actions[-1] == STOP
    assert grid.geodesic_distance(s.position, goal) <= 0.5
    assert_no_turn_oscillation(actions)
    # efficient: forward steps close to the geodesic length / 0.25
    assert actions.count(MOVE_FORWARD) <= grid.geodesic_distance([1.0, 0, 0.3], goal) / 0.25 * 1.2 + 4


def test_random_episodes_two_room(grid):
    f = ShortestPathFollower(grid, goal_radius=0.5)
    rng = np.random.default_rng(1)
    cells = np.argwhere(grid.navigable)
    ok = 0
    for _ in range(20):
        a, b = (grid.cell_to_world(*cells[rng.integers(len(cells))]) for _ in range(2))
        s, actions = run(f, grid, a, rng.uniform(-3, 3), b)
        ok += actions[-1] == STOP and grid.geodesic_distance(s.position, b) <= 0.5
        assert_no_turn_oscillation(actions)
    assert ok == 20


def test_unreachable_goal_stops():
    g = NavGrid.from_mesh(two_room_mesh(door=False), 0.0)
    f = ShortestPathFollower(g)
    assert f.next_action([1.0, 0, 1.0], heading_to_quaternion(0), np.array([5.0, 0, 3.0])) == STOP
    strict = ShortestPathFollower(g, stop_on_unreachable=False)
    with pytest.raises(ValueError, match="unreachable"):
        strict.next_action([1.0, 0, 1.0], heading_to_quaternion(0), np.array([5.0, 0, 3.0]))


def test_works_with_a_backend_exposing_shortest_path(grid):
    class PathOnly:  # a backend without a NavGrid (e.g. habitat): the follower uses shortest_path
        def shortest_path(self, a, b):
            return grid.shortest_path(a, b)

        def geodesic_distance(self, a, b):
            return grid.geodesic_distance(a, b)

    f = ShortestPathFollower(PathOnly())
    goal = np.array([5.0, 0, 3.0])
    s, actions = run(f, grid, [1.0, 0, 1.0], 0.0, goal)
    assert actions[-1] == STOP and grid.geodesic_distance(s.position, goal) <= 0.5


def test_goal_radius_validated(grid):
    with pytest.raises(ValueError, match="goal_radius"):
        ShortestPathFollower(grid, goal_radius=0.1)
    with pytest.raises(ValueError, match="lateral_tolerance"):
        ShortestPathFollower(grid, lateral_tolerance=-0.1)
    with pytest.raises(ValueError, match="max_tolerated_angle"):
        ShortestPathFollower(grid, max_tolerated_angle=95)
    with pytest.raises(ValueError, match="turn_hysteresis"):
        ShortestPathFollower(grid, turn_hysteresis=7.5)  # half of the 15° turn: a turn could never help


def test_lateral_tolerance_walks_on_instead_of_correcting(grid):
    """A goal 1 m ahead and 10° off: habitat's rule turns 15°; with a 0.3 m tolerance the line ahead passes it
    within 0.17 m, so the expert walks on. 40° off is beyond the tolerated angle: it turns either way."""
    pos = np.array([1.0, 0, 1.5])
    for off_deg, tolerant_action in ((10.0, MOVE_FORWARD), (40.0, TURN_LEFT)):
        off = math.radians(off_deg)
        goal = pos + np.array([-math.sin(off), 0.0, -math.cos(off)])  # off_deg to the left of -z
        strict = ShortestPathFollower(grid, goal_radius=0.3)
        tolerant = ShortestPathFollower(grid, goal_radius=0.3, lateral_tolerance=0.3)
        assert strict.next_action(pos, heading_to_quaternion(0.0), goal) == TURN_LEFT
        assert tolerant.next_action(pos, heading_to_quaternion(0.0), goal) == tolerant_action


def test_lateral_tolerance_fewer_small_corrections_same_success(grid):
    """Random episodes: the tolerant expert still reaches every goal, with fewer decisions (no zig-zag)."""
    rng = np.random.default_rng(3)
    cells = np.argwhere(grid.navigable)
    counts = {0.0: 0, 0.3: 0}
    for _ in range(15):
        a, b = (grid.cell_to_world(*cells[rng.integers(len(cells))]) for _ in range(2))
        heading = rng.uniform(-3, 3)
        for tol in counts:
            f = ShortestPathFollower(grid, goal_radius=0.5, lateral_tolerance=tol)
            s, actions = run(f, grid, a, heading, b)
            assert actions[-1] == STOP and grid.geodesic_distance(s.position, b) <= 0.5
            assert_no_turn_oscillation(actions)
            # a direction change between consecutive actions = a new decision for NaVILA's labelling
            counts[tol] += sum(x != y for x, y in itertools.pairwise(actions))
    assert counts[0.3] < counts[0.0]


def test_turn_hysteresis_walks_on_where_a_turn_only_flips_the_error():
    """A corner 3.3 m ahead, 9.5° off: habitat's rule and the lateral tolerance (the line misses it by 0.54 m) turn
    15°, which leaves it 5.5° off the other way; with the experts' 4° hysteresis the agent walks on. 13° off is
    beyond the band: it turns either way."""
    g = NavGrid.from_mesh(two_room_mesh(inner_wall=False, table=False), floor_y=0.0)
    pos = np.array([3.0, 0, 3.8])
    for off_deg, expected in ((9.5, MOVE_FORWARD), (13.0, TURN_LEFT)):
        off = math.radians(off_deg)
        goal = pos + 3.3 * np.array([-math.sin(off), 0.0, -math.cos(off)])
        tolerant = ShortestPathFollower(g, goal_radius=0.3, lateral_tolerance=0.3)
        assert tolerant.next_action(pos, heading_to_quaternion(0.0), goal) == TURN_LEFT
        assert expert_follower(g, goal_radius=0.3).next_action(pos, heading_to_quaternion(0.0), goal) == expected


def test_expert_follower_settings_and_overrides(grid):
    f = expert_follower(grid)
    assert f.lateral_tolerance == EXPERT_LATERAL_TOLERANCE_M
    assert f.turn_hysteresis == pytest.approx(math.radians(EXPERT_TURN_HYSTERESIS_DEG))
    g = expert_follower(grid, goal_radius=0.75, turn_hysteresis=0.0)
    assert g.goal_radius == 0.75 and g.turn_hysteresis == 0.0


def test_expert_follower_no_zigzag_in_a_generated_house():
    """Random 5-15 m episodes in a generated house: the lateral tolerance alone still alternates 15° turns with
    single steps along hallways between two of the 15° headings; the experts' hysteresis all but removes that,
    with the same success and fewer decisions."""
    from envs.scenes.generator import generate_house

    mesh, _ = generate_house(0, "zigzag0")
    g = NavGrid.from_mesh(mesh, 0.0)
    labels = g.components()
    cells = np.argwhere(labels == np.argmax(np.bincount(labels.ravel())[1:]) + 1)
    rng = np.random.default_rng(0)
    episodes = []
    while len(episodes) < 12:
        a, b = (g.cell_to_world(*cells[rng.integers(len(cells))]) for _ in range(2))
        if 5 <= g.geodesic_distance(a, b) <= 15:
            episodes.append((a, b, rng.uniform(-math.pi, math.pi)))
    stats = {}
    for name, follower in (
        ("tolerance", ShortestPathFollower(g, goal_radius=0.3, lateral_tolerance=EXPERT_LATERAL_TOLERANCE_M)),
        ("expert", expert_follower(g, goal_radius=0.3)),
    ):
        zig = changes = 0
        for a, b, heading in episodes:
            s, actions = run(follower, g, a, heading, b, max_steps=600)
            assert actions[-1] == STOP and g.geodesic_distance(s.position, b) <= 0.3
            assert_no_turn_oscillation(actions)
            zig += count_zigzags(actions)
            changes += sum(x != y for x, y in itertools.pairwise(actions))
        stats[name] = (zig, changes)
    assert stats["tolerance"][0] >= 10, stats  # the failure mode is real here
    assert stats["expert"][0] <= stats["tolerance"][0] / 4, stats
    assert stats["expert"][1] < stats["tolerance"][1], stats


@pytest.mark.slow
def test_generated_houses_success_rate():
    """The brief's bar: >= 99 % of generated episodes end with STOP within 3 m (we check 0.5 m)."""
    from envs.scenes.generator import generate_house

    results = []
    for h in range(4):
        mesh, _ = generate_house(h, f"follow{h}")
        g = NavGrid.from_mesh(mesh, 0.0)
        labels = g.components()
        cells = np.argwhere(labels == np.argmax(np.bincount(labels.ravel())[1:]) + 1)
        rng = np.random.default_rng(h)
        f = ShortestPathFollower(g, goal_radius=0.5)
        for _ in range(25):
            a, b = (g.cell_to_world(*cells[rng.integers(len(cells))]) for _ in range(2))
            s, actions = run(f, g, a, rng.uniform(-math.pi, math.pi), b)
            results.append(actions[-1] == STOP and g.geodesic_distance(s.position, b) <= 0.5)
    assert np.mean(results) >= 0.99
