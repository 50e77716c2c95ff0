"""NavGrid: slicing a mesh into navigable cells, geodesic fields (FMM and Dijkstra), paths, snapping."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import trimesh

from envs.navigation import NavGrid, NavGridConfig, erode
from tests.envs.fakes import two_room_mesh

A = np.array([1.0, 0.0, 1.0])  # left room
B = np.array([5.0, 0.0, 3.0])  # right room, in sight of A through the doorway
C = np.array([1.0, 0.0, 0.3])  # left room, near the z = 0 wall
D = np.array([5.0, 0.0, 0.3])  # right room, hidden from C behind the inner wall


@pytest.fixture(scope="module")
def grid() -> NavGrid:
    return NavGrid.from_mesh(two_room_mesh(), floor_y=0.0)


def path_length(path):
    return sum(float(np.linalg.norm(path[i + 1] - path[i])) for i in range(len(path) - 1))


def test_walls_table_and_clearance(grid):
    assert grid.is_navigable(A) and grid.is_navigable(B)
    assert not grid.is_navigable([3.0, 0, 0.5])  # inside the inner wall
    assert grid.is_navigable([3.0, 0, 2.0])  # the doorway
    assert not grid.is_navigable([4.5, 0, 1.0])  # under the table (0.75 m high: an obstacle)
    assert not grid.is_navigable([-1.0, 0, 1.0])  # outside the house
    # Clearance: at least agent_radius from every wall face; the z = 0 wall face is at z = 0.
    assert not grid.is_navigable([1.0, 0, 0.09])
    assert grid.is_navigable([1.0, 0, 0.2])


def test_low_geometry_is_stepped_over():
    rug = trimesh.creation.box(extents=[1.0, 0.05, 1.0])
    rug.apply_translation([1.5, 0.025, 2.0])
    mesh = trimesh.util.concatenate([two_room_mesh(), rug])
    g = NavGrid.from_mesh(mesh, 0.0)
    assert g.is_navigable([1.5, 0, 2.0])


def test_grid_layout_round_trip(grid):
    r, c = grid.world_to_cell(A)
    centre = grid.cell_to_world(r, c)
    assert abs(centre[0] - A[0]) <= grid.resolution / 2 and abs(centre[2] - A[2]) <= grid.resolution / 2
    # origin is the corner of cell [0, 0]
    assert grid.world_to_cell([grid.origin[0] + 1e-9, 0, grid.origin[1] + 1e-9]) == (0, 0)


def test_geodesic_straight_line_in_sight(grid):
    d = grid.geodesic_distance(A, B)
    assert abs(d - math.dist(A, B)) < 0.05


def test_geodesic_around_wall_exceeds_euclid(grid):
    d = grid.geodesic_distance(C, D)
    assert d > math.dist(C, D) + 0.5
    # Through the doorway centre (3, 2) is a valid but not the shortest route: an upper bound.
    assert d < math.dist(C, [3, 0, 2]) + math.dist([3, 0, 2], D)


def test_fmm_and_dijkstra_agree(grid):
    rng = np.random.default_rng(0)
    cells = np.argwhere(grid.navigable)
    for _ in range(30):
        i, j = rng.integers(len(cells), size=2)
        a, b = grid.cell_to_world(*cells[i]), grid.cell_to_world(*cells[j])
        f, k = grid.geodesic_distance(a, b, "fmm"), grid.geodesic_distance(a, b, "dijkstra")
        # 16-connected Dijkstra overestimates oblique distances by < 3 %; fast marching is near exact.
        assert abs(f - k) <= 0.05 * max(f, 1.0) + 0.05, (a, b, f, k)


def test_unreachable_is_inf():
    g = NavGrid.from_mesh(two_room_mesh(door=False), 0.0)
    for method in ("fmm", "dijkstra"):
        assert math.isinf(g.geodesic_distance(A, B, method))
    assert g.shortest_path(A, B) == []
    assert g.next_waypoint(A, B) is None
    assert g.components().max() == 2


def test_shortest_path_is_navigable_and_near_geodesic(grid):
    path = grid.shortest_path(C, D)
    assert np.allclose(path[0], C) and np.allclose(path[-1], D)
    assert len(path) >= 3  # has to bend through the doorway
    for p, q in itertools.pairwise(path):
        assert grid.segment_free(p, q)
    assert path_length(path) <= grid.geodesic_distance(C, D) * 1.03 + 0.05


def test_next_waypoint_is_first_corner(grid):
    assert np.allclose(grid.next_waypoint(A, B), B)  # in sight through the doorway
    w = grid.next_waypoint(C, D)
    assert grid.segment_free(C, w) and 2.5 < w[0] < 3.5  # a corner at the doorway


def test_snap(grid):
    inside_table = np.array([4.5, 0.0, 1.0])
    s = grid.snap(inside_table)
    assert grid.is_navigable(s)
    assert 0.15 < grid.distance_to_navigable(inside_table) < 0.6
    assert np.allclose(grid.snap(A), A)


def test_distance_field_cache(grid):
    f1 = grid.distance_field(B)
    assert grid.distance_field(B + np.array([0.001, 0, 0])) is f1  # same goal cell -> the cached field
    assert not f1.flags.writeable
    assert f1[grid.world_to_cell(B)] < grid.resolution


def test_save_load_round_trip(grid, tmp_path):
    grid.save(tmp_path / "g.npz")
    g2 = NavGrid.load(tmp_path / "g.npz")
    assert np.array_equal(g2.navigable, grid.navigable) and g2.origin == grid.origin
    assert g2.geodesic_distance(C, D) == pytest.approx(grid.geodesic_distance(C, D))


def test_erode_radius():
    free = np.ones((21, 21), bool)
    free[10, 10] = False
    e = erode(free, radius=0.1, resolution=0.05)
    assert not e[10, 12] and e[10, 13]  # clearance measured to the blocked cell's edge


def test_config_validation():
    with pytest.raises(ValueError, match="resolution"):
        NavGridConfig(resolution=0)
    with pytest.raises(ValueError, match="field_method"):
        NavGridConfig(field_method="astar")
    with pytest.raises(ValueError, match="no floor or obstacle"):
        NavGrid.from_mesh(two_room_mesh(), floor_y=20.0)


def test_large_mesh_is_fast():
    # ~110k small triangles (a subdivided house) must slice in a few seconds: the rasteriser is vectorised.
    import time

    mesh = two_room_mesh()
    for _ in range(5):
        mesh = mesh.subdivide()
    assert len(mesh.faces) > 100_000
    t = time.perf_counter()
    g = NavGrid.from_mesh(mesh, 0.0)
    assert time.perf_counter() - t < 5.0
    assert g.is_navigable(A) and not g.is_navigable([4.5, 0, 1.0])


def test_field_cache_is_bounded_by_memory():
    g = NavGrid.from_mesh(two_room_mesh(), 0.0, NavGridConfig(field_cache_mb=1e-6))
    goals = [np.array([1.0 + 0.5 * k, 0.0, 1.0]) for k in range(4)]
    for goal in goals:
        g.distance_field(goal)
    assert len(g._fields) == 2  # never fewer than two, never more than memory allows
    assert g.distance_field(goals[-1]).dtype == np.float32


def test_small_islands_dropped():
    from envs.navigation import drop_small_islands

    nav = np.zeros((30, 30), bool)
    nav[2:20, 2:20] = True  # 324 cells
    nav[25:28, 25:28] = True  # 9 cells
    out = drop_small_islands(nav, min_cells=10)
    assert out[5, 5] and not out[26, 26]
    # In a mesh: a free-standing 0.6 m floor tile outside the house (0.35 m wide after clearance) is dropped.
    tile = trimesh.creation.box(extents=[0.6, 0.05, 0.6])
    tile.apply_translation([-2.0, -0.025, 1.0])
    g = NavGrid.from_mesh(trimesh.util.concatenate([two_room_mesh(), tile]), 0.0)
    g_all = NavGrid.from_mesh(trimesh.util.concatenate([two_room_mesh(), tile]), 0.0, NavGridConfig(min_island_area=0))
    assert g_all.is_navigable([-2.0, 0, 1.0]) and not g.is_navigable([-2.0, 0, 1.0])
