"""Top-down map of a house: rooms, walls, doors, furniture, navigable area, paths, goal and agent.

The map's pixels are the navigation grid's cells: pixel (col, row) covers world x in [x0 + col * res, ...),
z in [z0 + row * res, ...) — rows follow z, columns follow x, exactly like `navigable[row, col]`. So a map drawn
over the navigability grid lines up with it cell for cell.

    from envs.topdown import map_transform_for, render_topdown, save_png
    transform, _ = map_transform_for(semantics, resolution=0.05)
    image = render_topdown(semantics, None, (transform.origin_x, transform.origin_z), 0.05,
                           path=positions, goal=goal_xyz, goal_radius=3.0, agent=(position, rotation))
    save_png(image, "map.png")
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from envs.scenes.semantics import Door, HouseSemantics, Room

# Pale floor tints by room type (rgb uint8), so room types can be told apart at a glance.
ROOM_TINTS: dict[str, tuple[int, int, int]] = {
    "living room": (245, 225, 190),
    "kitchen": (250, 245, 180),
    "bedroom": (200, 220, 245),
    "bathroom": (190, 240, 240),
    "office": (225, 205, 240),
    "dining room": (245, 210, 200),
    "hallway": (225, 225, 225),
    "laundry room": (210, 240, 210),
}
_DEFAULT_TINT = (235, 235, 235)
_OUTSIDE = (70, 72, 78)
_WALL = (40, 40, 45)
_DOOR = (255, 255, 255)
_WINDOW = (140, 200, 240)
_BLOCKED = (150, 150, 155)  # inside a room but not navigable (furniture footprints, wall margins)
_PATH = (220, 40, 40)
_REFERENCE = (30, 150, 60)
_GOAL = (230, 120, 0)
_AGENT = (30, 60, 220)
_TEXT = (30, 30, 30)


@dataclass(frozen=True)
class MapTransform:
    """World (x, z) <-> map pixel (col, row): col = (x - origin_x) / resolution, row = (z - origin_z) / resolution."""

    origin_x: float  # world x of the left edge of column 0
    origin_z: float  # world z of the top edge of row 0
    resolution: float  # metres per pixel

    def __post_init__(self) -> None:
        if not self.resolution > 0:
            raise ValueError(f"MapTransform.resolution must be > 0 metres per pixel, got {self.resolution}")

    def world_to_pixel(self, x, z) -> tuple[np.ndarray, np.ndarray]:
        """Continuous (col, row) of world (x, z); scalars or arrays. The containing cell is floor() of it."""
        return (np.asarray(x, dtype=np.float64) - self.origin_x) / self.resolution, (
            np.asarray(z, dtype=np.float64) - self.origin_z
        ) / self.resolution

    def pixel_to_world(self, col, row) -> tuple[np.ndarray, np.ndarray]:
        """World (x, z) of continuous pixel coordinates; pass col + 0.5, row + 0.5 for a cell's centre."""
        return self.origin_x + np.asarray(col, dtype=np.float64) * self.resolution, (
            self.origin_z + np.asarray(row, dtype=np.float64) * self.resolution
        )


def map_transform_for(
    semantics: HouseSemantics, resolution: float, margin: float = 0.5
) -> tuple[MapTransform, tuple[int, int]]:
    """A transform and (rows, cols) image size that frame all rooms with `margin` metres around them."""
    points = np.array([p for room in semantics.rooms for p in room.polygon], dtype=np.float64)  # [P, 2] x, z
    if len(points) == 0:
        raise ValueError(f"house '{semantics.house_id}' has no rooms to frame")
    lo, hi = points.min(axis=0) - margin, points.max(axis=0) + margin
    transform = MapTransform(float(lo[0]), float(lo[1]), resolution)
    cols, rows = (math.ceil(v) for v in (hi - lo) / resolution)
    return transform, (rows, cols)


def render_topdown(
    semantics: HouseSemantics | None,
    navigable: np.ndarray | None,
    origin: tuple[float, float],
    resolution: float,
    path: Sequence[Sequence[float]] | None = None,
    reference: Sequence[Sequence[float]] | None = None,
    goal: Sequence[float] | None = None,
    goal_radius: float | None = None,
    agent: tuple[Sequence[float], Sequence[float]] | None = None,
) -> np.ndarray:
    """Draw the house from above; returns an RGB image [rows, cols, 3] uint8.

    `navigable` [rows, cols] bool (the navigation grid, same origin and resolution) sets the image size and greys
    out cells inside rooms that the agent cannot occupy; without it the size comes from the room outlines.
    `semantics` may be None for scenes without a semantics file (Matterport3D): then the navigable area alone is
    drawn, light on dark.
    Positions (`path`, `reference`, `goal`, the agent's) are habitat [x, y, z] or plain [x, z]; `agent` is
    (position, rotation quaternion [x, y, z, w]) and is drawn as an arrow along the camera's view direction.
    """
    import cv2

    transform = MapTransform(float(origin[0]), float(origin[1]), float(resolution))
    if navigable is not None:
        navigable = np.asarray(navigable, dtype=bool)
        if navigable.ndim != 2:
            raise ValueError(f"navigable must be a 2-D [rows, cols] grid, got shape {navigable.shape}")
        rows, cols = navigable.shape
    elif semantics is None:
        raise ValueError("render_topdown needs the house semantics, the navigable grid, or both; got neither")
    else:
        framed, (r2, c2) = map_transform_for(semantics, resolution)
        col0, row0 = transform.world_to_pixel(framed.origin_x, framed.origin_z)
        rows, cols = max(1, math.ceil(row0 + r2)), max(1, math.ceil(col0 + c2))
    image = np.empty((rows, cols, 3), dtype=np.uint8)
    image[:] = _OUTSIDE
    px_per_m = 1.0 / resolution

    if semantics is not None:
        _draw_house(image, transform, semantics, navigable)
    elif navigable is not None:
        image[navigable] = _DEFAULT_TINT

    if reference is not None and len(reference) > 1:
        cv2.polylines(
            image,
            [_points_px(transform, reference)],
            False,
            _REFERENCE,
            max(1, round(0.08 * px_per_m)),
            cv2.LINE_AA,
            _SHIFT,
        )
    if path is not None and len(path) > 1:
        cv2.polylines(
            image,
            [_points_px(transform, path)],
            False,
            _PATH,
            max(1, round(0.06 * px_per_m)),
            cv2.LINE_AA,
            _SHIFT,
        )
    if goal is not None:
        g = _points_px(transform, [goal])[0]
        if goal_radius is not None and goal_radius > 0:
            cv2.circle(
                image,
                tuple(int(v) for v in g),
                round(goal_radius * px_per_m * 16),
                _GOAL,
                max(1, round(0.04 * px_per_m)),
                cv2.LINE_AA,
                _SHIFT,
            )
        cv2.circle(
            image,
            tuple(int(v) for v in g),
            max(2, round(0.15 * px_per_m)) * 16,
            _GOAL,
            -1,
            cv2.LINE_AA,
            _SHIFT,
        )
    if agent is not None:
        _draw_agent(image, transform, agent[0], agent[1], px_per_m)
    return image


def _draw_house(
    image: np.ndarray, transform: MapTransform, semantics: HouseSemantics, navigable: np.ndarray | None
) -> None:
    """Rooms tinted by type, blocked cells greyed, furniture, walls, door openings and room labels."""
    import cv2

    rows, cols = image.shape[:2]
    px_per_m = 1.0 / transform.resolution
    inside = np.zeros((rows, cols), dtype=np.uint8)  # 1 inside some room
    for room in semantics.rooms:
        poly = _poly_px(transform, room.polygon)
        cv2.fillPoly(image, [poly], ROOM_TINTS.get(room.type, _DEFAULT_TINT), cv2.LINE_AA, _SHIFT)
        cv2.fillPoly(inside, [poly], 1, cv2.LINE_8, _SHIFT)
    if navigable is not None:
        blocked = inside.astype(bool) & ~navigable
        image[blocked] = _blend(image[blocked], _BLOCKED, 0.6)
    wall_mounted = ("window", "painting")  # drawn on the walls, below
    for obj in sorted(semantics.objects, key=lambda o: o.category != "rug"):  # rugs underneath everything
        if obj.category not in wall_mounted:
            _draw_object(image, transform, obj, px_per_m)
    wall_px = max(1, round(0.15 * px_per_m))
    for room in semantics.rooms:
        cv2.polylines(image, [_poly_px(transform, room.polygon)], True, _WALL, wall_px, cv2.LINE_AA, _SHIFT)
    for door in semantics.doors:
        _draw_door(image, transform, door, semantics.rooms, px_per_m)
    for obj in semantics.objects:
        if obj.category == "window":
            _draw_window(image, transform, obj)
    for room in semantics.rooms:
        _draw_label(image, transform, room)


def _draw_window(image: np.ndarray, transform: MapTransform, obj) -> None:
    """A glass-coloured bar across the wall where a window is (windows sit flat on a wall's inner face)."""
    import cv2

    x, z = obj.position[0], obj.position[2]
    across = 0.2  # metres each side: covers the wall line drawn over the room outline
    if obj.size[0] >= obj.size[2]:  # on a wall running along x
        box = [[x - obj.size[0] / 2, z - across], [x + obj.size[0] / 2, z + across]]
    else:
        box = [[x - across, z - obj.size[2] / 2], [x + across, z + obj.size[2] / 2]]
    (bx0, bz0), (bx1, bz1) = box
    corners = _to_cv(transform, np.array([[bx0, bz0], [bx1, bz0], [bx1, bz1], [bx0, bz1]]))
    cv2.fillPoly(image, [corners], _WINDOW, cv2.LINE_AA, _SHIFT)


def env_topdown(env) -> tuple[np.ndarray, dict]:
    """The rollout map of an env's current scene: (RGB image, {"origin", "resolution", "width", "height"}).

    For the embedded simulator after `reset`: its navigation grid sets the frame (so map pixels are grid cells)
    and the `<scene>.semantics.json` beside the scene mesh, when there is one, adds rooms and furniture. No path
    is drawn (docs/rollout_format.md: viewers draw paths over it). Raises ValueError for a backend without a
    navigation grid (e.g. habitat-sim).
    """
    sim = getattr(getattr(env, "unwrapped", env), "sim", env)
    grid = getattr(sim, "nav_grid", None)
    if grid is None:
        raise ValueError(f"{type(sim).__name__} has no navigation grid to draw a top-down map from")
    semantics = None
    episode = getattr(sim, "episode", None)
    scenes_root = getattr(sim, "scenes_root", None)
    if episode is not None and scenes_root is not None:
        mesh_path = Path(scenes_root) / episode.scene_id
        sem_path = mesh_path.with_name(f"{mesh_path.stem}.semantics.json")
        if sem_path.is_file():
            semantics = HouseSemantics.load(sem_path)
    image = render_topdown(semantics, grid.navigable, grid.origin, grid.resolution)
    info = {
        "origin": [float(grid.origin[0]), float(grid.origin[1])],
        "resolution": float(grid.resolution),
        "width": int(image.shape[1]),
        "height": int(image.shape[0]),
    }
    return image, info


def save_png(image: np.ndarray, path: str | Path) -> Path:
    """Write an RGB uint8 image as PNG (parent folders are created); returns the path."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(path, format="PNG")
    return path


def heading_xz(rotation_xyzw: Sequence[float]) -> tuple[float, float]:
    """Unit (x, z) direction the camera looks along (its local -z) for a habitat quaternion [x, y, z, w]."""
    x, y, z, w = (float(v) for v in rotation_xyzw)
    # Third column of the rotation matrix, negated: R @ (0, 0, -1).
    fx, fz = -(2 * (x * z + y * w)), -(1 - 2 * (x * x + y * y))
    n = math.hypot(fx, fz)
    return (fx / n, fz / n) if n > 1e-9 else (0.0, -1.0)


_SHIFT = 4  # cv2 sub-pixel bits: coordinates are passed as integers * 16


def _xz(p: Sequence[float]) -> tuple[float, float]:
    """(x, z) of a habitat [x, y, z] position or of a plain [x, z] pair."""
    return (float(p[0]), float(p[2])) if len(p) >= 3 else (float(p[0]), float(p[1]))


def _to_cv(transform: MapTransform, xz: np.ndarray) -> np.ndarray:
    """World [N, 2] (x, z) -> cv2 fixed-point pixel coordinates [N, 2] int32 (pixel centres at integers)."""
    col, row = transform.world_to_pixel(xz[:, 0], xz[:, 1])
    return np.round(np.stack([col - 0.5, row - 0.5], axis=1) * (1 << _SHIFT)).astype(np.int32)


def _poly_px(transform: MapTransform, polygon: list[list[float]]) -> np.ndarray:
    return _to_cv(transform, np.asarray(polygon, dtype=np.float64).reshape(-1, 2))


def _points_px(transform: MapTransform, points: Sequence[Sequence[float]]) -> np.ndarray:
    return _to_cv(transform, np.array([_xz(p) for p in points], dtype=np.float64))


def _blend(pixels: np.ndarray, color: tuple[int, int, int], alpha: float) -> np.ndarray:
    return (pixels * (1 - alpha) + np.array(color) * alpha).astype(np.uint8)


def _draw_object(image: np.ndarray, transform: MapTransform, obj, px_per_m: float) -> None:
    """Footprint rectangle in the object's colour, a dark outline, and its category's initials if it fits."""
    import cv2

    x, z = obj.position[0], obj.position[2]
    hx, hz = obj.size[0] / 2, obj.size[2] / 2
    corners = _to_cv(
        transform, np.array([[x - hx, z - hz], [x + hx, z - hz], [x + hx, z + hz], [x - hx, z + hz]])
    )
    color = tuple(round(c * 255) for c in obj.color)
    cv2.fillPoly(image, [corners], color, cv2.LINE_AA, _SHIFT)
    cv2.polylines(image, [corners], True, _WALL, 1, cv2.LINE_AA, _SHIFT)
    initials = (
        "".join(w[0] for w in obj.category.split())[:2].upper()
        if " " in obj.category
        else obj.category[:2].title()
    )
    scale = 0.3
    (tw, th), _ = cv2.getTextSize(initials, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    if tw + 2 <= 2 * hx * px_per_m and th + 2 <= 2 * hz * px_per_m:
        col, row = transform.world_to_pixel(x, z)
        ink = (0, 0, 0) if sum(color) > 380 else (255, 255, 255)
        cv2.putText(
            image,
            initials,
            (int(col - tw / 2), int(row + th / 2)),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            ink,
            1,
            cv2.LINE_AA,
        )


def _draw_door(
    image: np.ndarray, transform: MapTransform, door: Door, rooms: list[Room], px_per_m: float
) -> None:
    """A light bar across the wall, as wide as the doorway, so the wall outline shows the opening."""
    import cv2

    room = rooms[door.rooms[0]]
    (x0, z0), _, (x1, z1), _ = room.polygon
    dx, dz = door.position[0], door.position[2]
    on_x_wall = min(abs(dz - z0), abs(dz - z1)) <= min(abs(dx - x0), abs(dx - x1))  # the wall runs along x
    half, depth = door.width / 2, 0.2
    if on_x_wall:
        box = [
            [dx - half, dz - depth],
            [dx + half, dz - depth],
            [dx + half, dz + depth],
            [dx - half, dz + depth],
        ]
    else:
        box = [
            [dx - depth, dz - half],
            [dx + depth, dz - half],
            [dx + depth, dz + half],
            [dx - depth, dz + half],
        ]
    cv2.fillPoly(image, [_to_cv(transform, np.array(box))], _DOOR, cv2.LINE_AA, _SHIFT)


def _draw_label(image: np.ndarray, transform: MapTransform, room: Room) -> None:
    """The room's type, centred near the top of the room (where furniture rarely stands in the middle)."""
    import cv2

    poly = np.asarray(room.polygon, dtype=np.float64)
    cx = float(poly[:, 0].mean())
    z_top = float(poly[:, 1].min())
    col, row = transform.world_to_pixel(cx, z_top)
    text = room.type
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.35, 1)
    width_px = (poly[:, 0].max() - poly[:, 0].min()) / transform.resolution
    if tw + 4 <= width_px:
        x0, y0 = int(col - tw / 2), int(row + th + 6)
        # A half-white plate under the text keeps it readable over furniture, and what is under it visible.
        r0, r1 = max(0, y0 - th - 2), max(0, y0 + 4)
        c0, c1 = max(0, x0 - 2), max(0, x0 + tw + 3)
        image[r0:r1, c0:c1] = _blend(image[r0:r1, c0:c1], (255, 255, 255), 0.5)
        cv2.putText(
            image,
            text,
            (x0, y0),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.35,
            _TEXT,
            1,
            cv2.LINE_AA,
        )


def _draw_agent(image: np.ndarray, transform: MapTransform, position, rotation, px_per_m: float) -> None:
    """A filled triangle pointing where the camera looks, centred on the agent's position."""
    import cv2

    x, z = _xz(position)
    fx, fz = heading_xz(rotation)
    size = max(0.5, 10.0 / px_per_m)  # metres; never smaller than 10 pixels
    left, right = (-fz, fx), (fz, -fx)  # perpendiculars of the heading in the x-z plane
    tip = (x + fx * size, z + fz * size)
    back_l = (x - fx * size * 0.5 + left[0] * size * 0.6, z - fz * size * 0.5 + left[1] * size * 0.6)
    back_r = (x - fx * size * 0.5 + right[0] * size * 0.6, z - fz * size * 0.5 + right[1] * size * 0.6)
    tri = _to_cv(transform, np.array([tip, back_l, back_r]))
    cv2.fillPoly(image, [tri], _AGENT, cv2.LINE_AA, _SHIFT)
    cv2.polylines(image, [tri], True, (255, 255, 255), 1, cv2.LINE_AA, _SHIFT)
