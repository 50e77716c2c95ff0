"""Tiny hand-built scenes and episodes for the envs tests (no generator needed).

`two_room_mesh()` is a 6 m x 4 m box (floor at y = 0, walls 2.7 m, a ceiling) split by an inner wall at x = 3
with a 1 m doorway at z in [1.5, 2.5], and a 0.6 m table-sized box in the right room.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh

from envs.datasets.episode import Episode, Goal, Instruction

WALL_T = 0.1  # wall thickness (m)


def _box(lo: tuple[float, float, float], hi: tuple[float, float, float], rgb: tuple[int, int, int]) -> trimesh.Trimesh:
    lo_a, hi_a = np.array(lo, dtype=float), np.array(hi, dtype=float)
    box = trimesh.creation.box(extents=hi_a - lo_a)
    box.apply_translation((lo_a + hi_a) / 2)
    box.visual.vertex_colors = np.tile([*rgb, 255], (len(box.vertices), 1)).astype(np.uint8)
    return box


def two_room_mesh(width: float = 6.0, depth: float = 4.0, height: float = 2.7, door: bool = True,
                  table: bool = True, inner_wall: bool = True) -> trimesh.Trimesh:
    """The test house described in the module docstring, as one mesh with vertex colours."""
    parts = [
        _box((0, -0.1, 0), (width, 0.0, depth), (180, 160, 120)),  # floor slab, top face at y = 0
        _box((0, height, 0), (width, height + 0.1, depth), (230, 230, 230)),  # ceiling
        _box((-WALL_T, 0, -WALL_T), (width + WALL_T, height, 0), (200, 80, 80)),  # z = 0 wall
        _box((-WALL_T, 0, depth), (width + WALL_T, height, depth + WALL_T), (80, 200, 80)),  # z = depth wall
        _box((-WALL_T, 0, 0), (0, height, depth), (80, 80, 200)),  # x = 0 wall
        _box((width, 0, 0), (width + WALL_T, height, depth), (200, 200, 80)),  # x = width wall
    ]
    if inner_wall:
        mid = width / 2
        if door:
            parts.append(_box((mid - WALL_T / 2, 0, 0), (mid + WALL_T / 2, height, 1.5), (150, 150, 150)))
            parts.append(_box((mid - WALL_T / 2, 0, 2.5), (mid + WALL_T / 2, height, depth), (150, 150, 150)))
        else:
            parts.append(_box((mid - WALL_T / 2, 0, 0), (mid + WALL_T / 2, height, depth), (150, 150, 150)))
    if table:
        parts.append(_box((4.2, 0, 0.7), (4.8, 0.75, 1.3), (120, 60, 20)))
    return trimesh.util.concatenate(parts)


def write_scene(scenes_root: Path, mesh: trimesh.Trimesh, scene_id: str = "test/two_room/two_room.glb") -> Path:
    """Export the mesh as a .glb at scenes_root / scene_id; returns the path."""
    path = Path(scenes_root) / scene_id
    path.parent.mkdir(parents=True, exist_ok=True)
    mesh.export(path)
    return path


def make_episode(
    episode_id: str = "1",
    scene_id: str = "test/two_room/two_room.glb",
    start: tuple[float, float, float] = (1.0, 0.0, 1.0),
    goal: tuple[float, float, float] = (5.0, 0.0, 3.0),
    heading_quat: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 1.0),
    text: str = "Walk through the doorway and stop next to the table.",
) -> Episode:
    """A hand-made R2R-CE-like episode in the two-room scene."""
    return Episode(
        episode_id=episode_id,
        trajectory_id=int(episode_id) if episode_id.isdigit() else None,
        scene_id=scene_id,
        start_position=list(start),
        start_rotation=list(heading_quat),
        goals=[Goal(position=list(goal), radius=3.0)],
        instruction=Instruction(instruction_text=text),
        reference_path=[list(start), list(goal)],
        dataset="test",
        split="fake",
    )


def make_data_root(root: Path) -> Path:
    """A VLN-CE-like data root holding the two-room scene at `scene_datasets/test/two_room/two_room.glb`."""
    write_scene(Path(root) / "scene_datasets", two_room_mesh())
    return Path(root)
