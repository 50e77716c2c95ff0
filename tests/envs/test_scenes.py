"""Generated houses (determinism, plan, doors, furniture, files) and scene mesh loading."""

from __future__ import annotations

import math
from collections import deque
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from envs.render import RenderConfig, Renderer
from envs.scenes.generator import HouseConfig, build_house, generate_house
from envs.scenes.mesh import MeshBuilder, load_scene_mesh
from envs.scenes.semantics import HouseSemantics

SEEDS = (0, 1, 2, 3)


@pytest.fixture(scope="module")
def houses() -> dict[int, tuple[trimesh.Trimesh, HouseSemantics]]:
    return {seed: generate_house(seed, f"house_{seed}") for seed in SEEDS}


@pytest.fixture(scope="module")
def renderer():
    r = Renderer(RenderConfig(width=96, height=96, hfov_deg=90.0))
    yield r
    r.close()


def _yaw_quat(yaw: float) -> np.ndarray:
    """Camera rotation about +y by `yaw` radians; yaw 0 looks along -z."""
    return np.array([0.0, math.sin(yaw / 2), 0.0, math.cos(yaw / 2)])


def test_same_seed_gives_identical_house(tmp_path: Path) -> None:
    m1, s1 = generate_house(7, "h")
    m2, s2 = generate_house(7, "h")
    assert m1.vertices.tobytes() == m2.vertices.tobytes()
    assert m1.faces.tobytes() == m2.faces.tobytes()
    assert m1.visual.vertex_colors.tobytes() == m2.visual.vertex_colors.tobytes()
    assert s1.to_json() == s2.to_json()
    a = build_house(7, "h", tmp_path / "a")
    b = build_house(7, "h", tmp_path / "b")
    assert a.read_bytes() == b.read_bytes()
    m3, _ = generate_house(8, "h")
    assert m3.vertices.shape != m1.vertices.shape or not np.array_equal(m3.vertices, m1.vertices)


def test_house_size_rooms_and_coverage(houses) -> None:
    room_types, categories = set(), set()
    for mesh, sem in houses.values():
        assert 6 <= len(sem.rooms) <= 10
        lo, hi = mesh.bounds
        assert lo[1] == pytest.approx(0.0, abs=0.005) and hi[1] == pytest.approx(
            2.7
        )  # floor at 0, ceiling on top
        assert 14.0 <= hi[0] - lo[0] <= 22.5 and 10.0 <= hi[2] - lo[2] <= 16.5
        names = [r.name for r in sem.rooms]
        assert len(set(names)) == len(names) and all(names)
        room_types |= {r.type for r in sem.rooms}
        categories |= {o.category for o in sem.objects}
        assert mesh.visual.vertex_colors.shape == (len(mesh.vertices), 4)
        assert mesh.vertex_normals.shape == mesh.vertices.shape
    assert len(room_types) >= 6, room_types
    assert len(categories) >= 12, categories


def test_every_room_reachable_through_doors(houses) -> None:
    for _, sem in houses.values():
        graph: dict[int, set[int]] = {r.id: set() for r in sem.rooms}
        for d in sem.doors:
            a, b = d.rooms
            graph[a].add(b)
            graph[b].add(a)
        seen, queue = {0}, deque([0])
        while queue:
            for nxt in graph[queue.popleft()] - seen:
                seen.add(nxt)
                queue.append(nxt)
        assert seen == set(graph), f"house {sem.house_id}: rooms {set(graph) - seen} unreachable"


def test_doors_are_open_in_the_mesh(houses, renderer: Renderer) -> None:
    """Standing in front of each doorway and looking through it, the camera sees far beyond the wall."""
    for mesh, sem in houses.values():
        renderer.load_mesh(mesh)
        for door in sem.doors:
            a = sem.rooms[door.rooms[0]]
            (x0, z0), _, (x1, z1), _ = a.polygon
            dx, dz = door.position[0], door.position[2]
            # Which side of room a the door is on decides the viewing direction (from inside a, through the door).
            dists = {"-z": abs(dz - z0), "+z": abs(dz - z1), "-x": abs(dx - x0), "+x": abs(dx - x1)}
            side = min(dists, key=dists.get)
            step = {"-z": (0.0, 0.6), "+z": (0.0, -0.6), "-x": (0.6, 0.0), "+x": (-0.6, 0.0)}[side]
            yaw = {"-z": 0.0, "+z": math.pi, "-x": math.pi / 2, "+x": -math.pi / 2}[side]
            eye = np.array([dx + step[0], 1.0, dz + step[1]])
            _, depth = renderer.render(eye, _yaw_quat(yaw))
            assert depth[48, 48] > 1.0, (
                f"{sem.house_id} door {door.id} looks closed (depth {depth[48, 48]:.2f})"
            )


def test_furniture_inside_rooms_apart_and_clear_of_doors(houses) -> None:
    for _, sem in houses.values():
        for o in sem.objects:
            (x0, z0), _, (x1, z1), _ = sem.rooms[o.room_id].polygon
            hx, hz = o.size[0] / 2, o.size[2] / 2
            assert x0 - 1e-6 <= o.position[0] - hx and o.position[0] + hx <= x1 + 1e-6
            assert z0 - 1e-6 <= o.position[2] - hz and o.position[2] + hz <= z1 + 1e-6
            for d in sem.doors:  # nothing stands within half a metre of a doorway centre
                assert (
                    max(abs(d.position[0] - o.position[0]) - hx, abs(d.position[2] - o.position[2]) - hz)
                    > 0.5
                )
        solid = [o for o in sem.objects if o.category != "rug"]
        for i, a in enumerate(solid):
            for b in solid[i + 1 :]:
                overlap_x = abs(a.position[0] - b.position[0]) < (a.size[0] + b.size[0]) / 2
                overlap_z = abs(a.position[2] - b.position[2]) < (a.size[2] + b.size[2]) / 2
                assert not (overlap_x and overlap_z), f"{a.category} {a.id} overlaps {b.category} {b.id}"


def test_render_inside_a_room(houses, renderer: Renderer) -> None:
    mesh, sem = houses[0]
    renderer.load_mesh(mesh)
    room = max(
        sem.rooms, key=lambda r: (r.polygon[1][0] - r.polygon[0][0]) * (r.polygon[2][1] - r.polygon[1][1])
    )
    (x0, z0), _, (x1, z1), _ = room.polygon
    eye = np.array([(x0 + x1) / 2, 1.25, (z0 + z1) / 2])
    rgb, depth = renderer.render(eye, _yaw_quat(0.0))  # looking along -z at the wall z = z0
    assert rgb.reshape(-1, 3).std(axis=0).max() > 10  # not a constant image
    assert ((depth > 0) & (depth < 25)).all()  # inside a closed house every pixel hits something
    # The wall is solid between the door lintel (2.1 m) and the ceiling (2.7 m), and no furniture reaches
    # there: the centre-column pixel that sees height ~2.45 m on the wall has z-depth = distance to the wall.
    wall = eye[2] - z0
    slope = (2.45 - 1.25) / wall  # tan of the elevation angle of that ray
    row = round((1.0 - slope) * 96 / 2 - 0.5)  # tan(hfov/2) = 1 for 90°
    assert depth[row, 48] == pytest.approx(wall, abs=0.05)


def test_house_is_closed_from_inside(houses, renderer: Renderer) -> None:
    """From every room centre, in 8 directions, every pixel hits a surface: no holes, cracks or open walls."""
    for mesh, sem in houses.values():
        renderer.load_mesh(mesh)
        for room in sem.rooms:
            (x0, z0), _, (x1, z1), _ = room.polygon
            for k in range(8):
                _, depth = renderer.render(
                    np.array([(x0 + x1) / 2, 1.25, (z0 + z1) / 2]), _yaw_quat(k * math.pi / 4)
                )
                assert (depth > 0).all(), (
                    f"{sem.house_id} {room.name}: {(depth == 0).sum()} pixels see nothing"
                )


def test_build_house_files_and_glb_round_trip(tmp_path: Path) -> None:
    glb = build_house(3, "gen_3", tmp_path)
    assert glb == tmp_path / "gen_3" / "gen_3.glb"
    sem = HouseSemantics.load(tmp_path / "gen_3" / "gen_3.semantics.json")
    mesh, expected = generate_house(3, "gen_3")
    assert sem.to_json() == expected.to_json()
    loaded = load_scene_mesh(glb)
    assert np.allclose(loaded.vertices, mesh.vertices, atol=1e-5)
    assert np.array_equal(loaded.faces, mesh.faces)
    assert np.array_equal(loaded.visual.vertex_colors, mesh.visual.vertex_colors)


def test_load_textured_and_z_up_mesh(tmp_path: Path) -> None:
    # A box textured with a solid orange image (like a Matterport3D .glb) comes back with orange vertex colours.
    box = trimesh.creation.box(extents=[1.0, 2.0, 3.0])
    uv = np.random.default_rng(0).uniform(0.1, 0.9, size=(len(box.vertices), 2))
    image = Image.new("RGB", (8, 8), (230, 120, 20))
    box.visual = trimesh.visual.TextureVisuals(uv=uv, image=image)
    path = tmp_path / "textured.glb"
    path.write_bytes(box.export(file_type="glb"))
    mesh = load_scene_mesh(path)
    assert np.abs(mesh.visual.vertex_colors[:, :3].astype(int) - [230, 120, 20]).max() <= 2
    # z-up input: the 3 m extent along z becomes the height (y) in habitat's frame.
    zup = load_scene_mesh(path, up="z")
    extents = zup.bounds[1] - zup.bounds[0]
    assert extents == pytest.approx([1.0, 3.0, 2.0])


def test_load_obj_and_ply(tmp_path: Path) -> None:
    b = MeshBuilder()
    b.add_box((0, 0, 0), (1, 1, 1), (0.2, 0.4, 0.6))
    mesh = b.build()
    for ext in ("ply", "obj"):
        path = tmp_path / f"box.{ext}"
        mesh.export(path)
        loaded = load_scene_mesh(path)
        assert len(loaded.faces) == 12
        assert np.abs(loaded.visual.vertex_colors[:, :3].astype(int) - [51, 102, 153]).max() <= 1


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nowhere\.glb"):
        load_scene_mesh(tmp_path / "nowhere.glb")
    bad = tmp_path / "scene.fbx"
    bad.write_text("x")
    with pytest.raises(ValueError, match=r"unsupported scene mesh format '\.fbx'"):
        load_scene_mesh(bad)
    empty = tmp_path / "empty.ply"
    trimesh.PointCloud(np.zeros((3, 3))).export(empty)
    with pytest.raises(ValueError, match="no triangles"):
        load_scene_mesh(empty)
    with pytest.raises(ValueError, match="unknown up axis 'x'"):
        load_scene_mesh(empty, up="x")


def test_corridor_house_has_a_hallway_with_rooms_off_it() -> None:
    mesh, sem = generate_house(5, "c", HouseConfig(min_rooms=8, max_rooms=8, corridor_prob=1.0))
    halls = [r for r in sem.rooms if r.type == "hallway"]
    assert len(halls) == 1
    (x0, z0), _, (x1, z1), _ = halls[0].polygon
    lo, hi = mesh.bounds
    long_side = max(hi[0] - lo[0], hi[2] - lo[2])
    assert max(x1 - x0, z1 - z0) > long_side - 0.5  # runs the whole length of the house
    assert min(x1 - x0, z1 - z0) < 2.0  # and is narrow
    assert sum(halls[0].id in d.rooms for d in sem.doors) >= 4  # rooms on both sides open onto it


def test_build_house_rejects_path_like_ids(tmp_path: Path) -> None:
    for bad in ("../x", "a/b", "", ".hidden"):
        with pytest.raises(ValueError, match="house_id"):
            build_house(0, bad, tmp_path)


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="min_rooms"):
        HouseConfig(min_rooms=5, max_rooms=3)
    with pytest.raises(ValueError, match="door_height"):
        HouseConfig(door_height=3.0)
    small = generate_house(
        1, "small", HouseConfig(min_rooms=2, max_rooms=2, width_range=(6, 6), depth_range=(5, 5))
    )
    assert len(small[1].rooms) == 2 and len(small[1].doors) >= 1


def test_every_room_walkable_from_every_other(houses) -> None:
    """On the navigation grid (agent radius, furniture as obstacles) all rooms lie in one connected area:
    furniture never closes a doorway or walls a room off."""
    from envs.embedded import EmbeddedSimConfig
    from envs.navigation import NavGrid

    for seed in (0, 1):
        mesh, sem = houses[seed]
        grid = NavGrid.from_mesh(mesh, 0.0, EmbeddedSimConfig().nav_grid_config())
        comp = grid.components()
        labels, counts = np.unique(comp[grid.navigable], return_counts=True)
        main = labels[np.argmax(counts)]
        assert counts.max() / counts.sum() > 0.97  # at most small pockets behind furniture
        for room in sem.rooms:
            (x0, z0), _, (x1, z1), _ = room.polygon
            r0, c0 = grid.world_to_cell(np.array([x0, 0.0, z0]))
            r1, c1 = grid.world_to_cell(np.array([x1, 0.0, z1]))
            assert (comp[r0:r1, c0:c1] == main).sum() > 50, f"{sem.house_id}: {room.name} is cut off"


def test_windows_on_outside_walls_paintings_inside(houses, renderer: Renderer) -> None:
    counts = {"window": 0, "painting": 0}
    for _, sem in houses.values():
        hi = np.max([p for r in sem.rooms for p in r.polygon], axis=0) + 0.075  # footprint (x, z) extent
        for o in sem.objects:
            if o.category not in counts:
                continue
            counts[o.category] += 1
            (x0, z0), _, (x1, z1), _ = sem.rooms[o.room_id].polygon
            x, z = o.position[0], o.position[2]
            # Flat on one of its room's walls...
            gaps = {"z0": abs(z - o.size[2] / 2 - z0), "z1": abs(z + o.size[2] / 2 - z1)}
            gaps |= {"x0": abs(x - o.size[0] / 2 - x0), "x1": abs(x + o.size[0] / 2 - x1)}
            side = min(gaps, key=gaps.get)
            assert gaps[side] < 1e-3 and min(o.size[0], o.size[2]) < 0.06
            # ...which is an outside wall for a window and an inside one for a painting.
            on_edge = {"z0": z0 < 0.1, "z1": z1 > hi[1] - 0.1, "x0": x0 < 0.1, "x1": x1 > hi[0] - 0.1}[side]
            assert on_edge == (o.category == "window"), (sem.house_id, o)
    assert counts["window"] >= 8 and counts["painting"] >= 1, counts
    # Looking straight at a window from 1.5 m: glass (bluish) 4 cm in front of the wall, 30 cm right of its
    # centre (the centre has the mullion, 5 cm in front of the wall).
    mesh, sem = houses[0]
    renderer.load_mesh(mesh)
    window = next(o for o in sem.objects if o.category == "window")
    (x0, z0), _, (x1, z1), _ = sem.rooms[window.room_id].polygon
    wx, wz = window.position[0], window.position[2]
    if window.size[2] < window.size[0]:  # on a z wall
        into = 1.0 if abs(wz - z0) < abs(wz - z1) else -1.0
        wall = z0 if into > 0 else z1
        eye, yaw = np.array([wx, 1.5, wall + into * 1.5]), (0.0 if into > 0 else math.pi)
    else:
        into = 1.0 if abs(wx - x0) < abs(wx - x1) else -1.0
        wall = x0 if into > 0 else x1
        eye, yaw = np.array([wall + into * 1.5, 1.5, wz]), (math.pi / 2 if into > 0 else -math.pi / 2)
    rgb, depth = renderer.render(eye, _yaw_quat(yaw))
    assert depth[48, 48] == pytest.approx(1.5 - 0.05, abs=0.005)
    assert depth[48, 58] == pytest.approx(1.5 - 0.04, abs=0.005)
    r, _, b = (int(v) for v in rgb[48, 58])
    assert b > r + 30
