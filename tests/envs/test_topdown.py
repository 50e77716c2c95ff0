"""Top-down map: pixel/world transform, what is drawn where, sizes, PNG output."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from envs.scenes.semantics import Door, HouseSemantics, Room, SceneObject
from envs.topdown import ROOM_TINTS, MapTransform, heading_xz, map_transform_for, render_topdown, save_png


def _house() -> HouseSemantics:
    """Two 4 m x 4 m rooms side by side along x, joined by a door at x = 4, and a red sofa in room 0."""
    rooms = [
        Room(
            0,
            "bedroom",
            [[0.0, 0.0], [4.0, 0.0], [4.0, 4.0], [0.0, 4.0]],
            [0.5] * 3,
            [0.8] * 3,
            "the bedroom",
        ),
        Room(
            1,
            "kitchen",
            [[4.0, 0.0], [8.0, 0.0], [8.0, 4.0], [4.0, 4.0]],
            [0.5] * 3,
            [0.8] * 3,
            "the kitchen",
        ),
    ]
    doors = [Door(0, (0, 1), [4.0, 0.0, 2.0], 1.0)]
    objects = [SceneObject(0, "sofa", "red", [1.0, 0.0, 0.0], [1.0, 0.0, 0.5], [2.0, 0.85, 0.9], 0)]
    return HouseSemantics("t", 0, 0.0, rooms, doors, objects)


@given(
    st.floats(-50, 50),
    st.floats(-50, 50),
    st.floats(0.01, 0.5),
    st.floats(-100, 100),
    st.floats(-100, 100),
)
def test_pixel_world_round_trip(ox: float, oz: float, res: float, x: float, z: float) -> None:
    t = MapTransform(ox, oz, res)
    col, row = t.world_to_pixel(x, z)
    assert col == pytest.approx((x - ox) / res) and row == pytest.approx((z - oz) / res)
    x2, z2 = t.pixel_to_world(col, row)
    assert x2 == pytest.approx(x, abs=1e-9) and z2 == pytest.approx(z, abs=1e-9)


def test_transform_arrays_and_validation() -> None:
    t = MapTransform(-1.0, 2.0, 0.1)
    cols, rows = t.world_to_pixel(np.array([-1.0, 0.0]), np.array([2.0, 3.0]))
    assert np.allclose(cols, [0.0, 10.0]) and np.allclose(rows, [0.0, 10.0])
    with pytest.raises(ValueError, match="resolution"):
        MapTransform(0.0, 0.0, 0.0)


def test_shape_dtype_with_and_without_grid() -> None:
    sem = _house()
    nav = np.zeros((50, 90), dtype=bool)
    img = render_topdown(sem, nav, (-0.5, -0.5), 0.1)
    assert img.shape == (50, 90, 3) and img.dtype == np.uint8
    transform, (rows, cols) = map_transform_for(sem, 0.1, margin=0.5)
    assert (transform.origin_x, transform.origin_z) == pytest.approx((-0.5, -0.5)) and (rows, cols) == (
        50,
        90,
    )
    img2 = render_topdown(sem, None, (-0.5, -0.5), 0.1)
    assert img2.shape == (50, 90, 3)
    with pytest.raises(ValueError, match="2-D"):
        render_topdown(sem, np.zeros(5, dtype=bool), (0.0, 0.0), 0.1)


def test_goal_and_radius_drawn_at_the_right_pixel() -> None:
    sem = _house()
    origin, res = (-0.5, -0.5), 0.05
    base = render_topdown(sem, None, origin, res)
    img = render_topdown(sem, None, origin, res, goal=[6.0, 0.3, 1.0], goal_radius=1.0)
    col, row = (int(v) for v in MapTransform(*origin, res).world_to_pixel(6.0, 1.0))
    assert tuple(img[row, col]) == (230, 120, 0)  # goal colour at the goal
    assert not np.array_equal(base[row, col], img[row, col])
    # The radius circle passes 1 m (20 px) to the left of the goal, not at 0.5 m.
    assert tuple(img[row, col - 20]) != tuple(base[row, col - 20])
    assert np.array_equal(img[row, col - 10], base[row, col - 10])


def test_navigable_grid_greys_blocked_cells_and_object_drawn() -> None:
    sem = _house()
    origin, res = (-0.5, -0.5), 0.1
    nav = np.ones((50, 90), dtype=bool)
    nav[30, 60] = False  # a blocked cell in the kitchen (x = 5.55, z = 3.05)
    img = render_topdown(sem, nav, origin, res)
    assert not np.array_equal(img[30, 60], img[30, 62])
    # The red sofa's footprint (x 0.5..1.5 at z 0.05..0.95) is red-ish in the middle of its pixels.
    col, row = (int(v) for v in MapTransform(*origin, res).world_to_pixel(0.7, 0.3))
    r, g, b = img[row, col]
    assert r > 150 and g < 80 and b < 80


def test_paths_and_agent_arrow_direction() -> None:
    sem = _house()
    origin, res = (-0.5, -0.5), 0.05
    base = render_topdown(sem, None, origin, res)
    path = [[1.0, 0.0, 2.5], [3.0, 0.0, 2.5]]
    img = render_topdown(sem, None, origin, res, path=path)
    t = MapTransform(*origin, res)
    col, row = (int(v) for v in t.world_to_pixel(2.0, 2.5))
    assert tuple(img[row, col]) != tuple(base[row, col])
    # Agent at (6, 2) looking along -x (yaw +90°): the arrow's tip lies west of the agent, nothing east.
    q = [0.0, math.sin(math.pi / 4), 0.0, math.cos(math.pi / 4)]
    img = render_topdown(sem, None, origin, res, agent=([6.0, 0.0, 2.0], q))
    col, row = (int(v) for v in t.world_to_pixel(6.0, 2.0))
    band = img[row - 10 : row + 11].astype(int)  # 1 m tall strip around the agent
    agent_blue = (band[..., 2] > 150) & (band[..., 0] < 120)
    assert agent_blue[:, col - 10 : col].sum() > 10  # the tip half, towards -x
    assert agent_blue[:, col + 8 : col + 20].sum() == 0  # nothing well behind the agent


def test_heading() -> None:
    assert heading_xz([0.0, 0.0, 0.0, 1.0]) == pytest.approx((0.0, -1.0))
    a = math.radians(90) / 2
    assert heading_xz([0.0, math.sin(a), 0.0, math.cos(a)]) == pytest.approx((-1.0, 0.0), abs=1e-9)


def test_save_png(tmp_path) -> None:
    img = render_topdown(_house(), None, (-0.5, -0.5), 0.1)
    path = save_png(img, tmp_path / "maps" / "m.png")
    assert np.array_equal(np.array(Image.open(path)), img)


def test_env_topdown_on_the_embedded_simulator(tmp_path) -> None:
    """The rollout map of a generated house: framed by the navigation grid, with the house drawn on it."""
    from envs.datasets.episode import Episode, Goal, Instruction
    from envs.embedded import EmbeddedSimConfig, EmbeddedSimulator
    from envs.scenes.generator import build_house
    from envs.topdown import env_topdown

    build_house(2, "gen_2", tmp_path / "gen")
    sem = HouseSemantics.load(tmp_path / "gen" / "gen_2" / "gen_2.semantics.json")
    room = sem.rooms[0]
    (x0, z0), _, (x1, z1), _ = room.polygon
    start = [(x0 + x1) / 2, 0.0, (z0 + z1) / 2]
    episode = Episode(
        "1",
        None,
        "gen/gen_2/gen_2.glb",
        start,
        [0.0, 0.0, 0.0, 1.0],
        [Goal(start, 3.0)],
        Instruction("go"),
        [start],
    )
    sim = EmbeddedSimulator(EmbeddedSimConfig(width=32, height=32, disk_cache=False), scenes_root=tmp_path)
    try:
        sim.reset(episode)
        image, info = env_topdown(sim)
        grid = sim.nav_grid
        assert image.shape == (*grid.navigable.shape, 3)
        assert info == {
            "origin": list(grid.origin),
            "resolution": grid.resolution,
            "width": grid.navigable.shape[1],
            "height": grid.navigable.shape[0],
        }
        # Navigable cells well inside the room show its tint (objects and labels cover a few of them).
        t = MapTransform(*grid.origin, grid.resolution)
        c0, r0 = (int(v) for v in t.world_to_pixel(x0 + 0.3, z0 + 0.3))
        c1, r1 = (int(v) for v in t.world_to_pixel(x1 - 0.3, z1 - 0.3))
        cells = image[r0:r1, c0:c1][grid.navigable[r0:r1, c0:c1]]
        assert len(cells) > 100
        assert (cells == ROOM_TINTS[room.type]).all(axis=1).mean() > 0.5
        # Blocked cells inside the room are greyed, not tinted.
        blocked = image[r0:r1, c0:c1][~grid.navigable[r0:r1, c0:c1]]
        assert not (blocked == ROOM_TINTS[room.type]).all(axis=1).any()
    finally:
        sim.close()


def test_window_drawn_across_its_wall() -> None:
    sem = _house()
    sem.objects.append(SceneObject(1, "window", "white", [0.9] * 3, [6.0, 0.9, 0.015], [1.2, 1.2, 0.03], 1))
    origin, res = (-0.5, -0.5), 0.05
    base = render_topdown(_house(), None, origin, res)
    img = render_topdown(sem, None, origin, res)
    col, row = (int(v) for v in MapTransform(*origin, res).world_to_pixel(6.0, 0.0))
    assert tuple(base[row, col]) == (40, 40, 45)  # the wall line without a window
    assert tuple(img[row, col]) == (140, 200, 240)  # glass colour on the wall
