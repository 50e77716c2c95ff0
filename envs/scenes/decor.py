"""Wall decorations of generated houses: windows on outside walls, paintings on inside walls.

They make walls tell apart ("the room with two windows", "turn left at the painting") and give optical flow
on otherwise flat walls. Each is a thin box on the wall surface, kept clear of doorways and of furniture that
stands against the same wall, and recorded in the semantics like furniture (category "window" or "painting";
`position` is the centre of its footprint at the height of its lower edge).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from envs.scenes.furniture import OBJECT_COLORS
from envs.scenes.mesh import MeshBuilder
from envs.scenes.semantics import Door, Room, SceneObject

_FRAME_WHITE = (0.95, 0.95, 0.93)
_GLASS = (0.62, 0.8, 0.95)  # a bright sky seen through the glass
_PAINTING_FRAME = (0.25, 0.16, 0.08)
_CANVAS_COLORS = ("red", "blue", "green", "yellow", "orange", "purple", "pink")


@dataclass
class DecorConfig:
    window_spacing: float = 3.0  # at most one window per this many metres of outside wall
    window_width: float = 1.2  # metres
    window_sill: float = 0.9  # height of the lower edge (metres)
    window_top: float = 2.1  # height of the upper edge (metres)
    painting_prob: float = 0.5  # chance that a room gets a painting on an inside wall
    keep_clear: float = 0.3  # distance kept from door frames and furniture along the wall (metres)

    def __post_init__(self) -> None:
        if not 0 < self.window_sill < self.window_top:
            raise ValueError("DecorConfig.window_sill/window_top need 0 < sill < top")
        if not 0.0 <= self.painting_prob <= 1.0:
            raise ValueError(f"DecorConfig.painting_prob must be in [0, 1], got {self.painting_prob}")


# A room side: the wall at the polygon's x0/x1/z0/z1 edge; "normal" is the direction into the room.
_SIDES = ("z0", "z1", "x0", "x1")


def decorate_room(
    builder: MeshBuilder,
    room: Room,
    doors: list[Door],
    furniture: list[SceneObject],
    footprint: tuple[float, float],
    wall_thickness: float,
    rng: np.random.Generator,
    first_id: int,
    config: DecorConfig | None = None,
) -> list[SceneObject]:
    """Add windows to the room's outside walls and maybe a painting to an inside wall; returns their semantics.

    `footprint` is the house's (width, depth): a side whose wall lies on the footprint's edge is outside.
    """
    config = config if config is not None else DecorConfig()
    (x0, z0), _, (x1, z1), _ = room.polygon
    width, depth = footprint
    t = wall_thickness
    outside = {
        "z0": abs(z0 - t / 2) < 1e-6,
        "z1": abs(z1 + t / 2 - depth) < 1e-6,
        "x0": abs(x0 - t / 2) < 1e-6,
        "x1": abs(x1 + t / 2 - width) < 1e-6,
    }
    placed: list[SceneObject] = []
    for side in _SIDES:
        if not outside[side]:
            continue
        a, b = _side_range(room, side)
        for _ in range(int((b - a) // config.window_spacing)):
            spot = _free_spot(
                room, side, config.window_width, doors, furniture + placed, config.keep_clear, rng
            )
            if spot is not None:
                placed.append(_window(builder, room, side, spot, config, first_id + len(placed)))
    inside_sides = [s for s in _SIDES if not outside[s]]
    if inside_sides and rng.uniform() < config.painting_prob:
        side = inside_sides[int(rng.integers(len(inside_sides)))]
        w = float(rng.choice([0.6, 0.8, 1.0]))
        spot = _free_spot(room, side, w, doors, furniture + placed, config.keep_clear, rng)
        if spot is not None:
            color_name = _CANVAS_COLORS[int(rng.integers(len(_CANVAS_COLORS)))]
            placed.append(_painting(builder, room, side, spot, w, color_name, first_id + len(placed)))
    return placed


def _side_range(room: Room, side: str) -> tuple[float, float]:
    """The along-wall extent (x for z-sides, z for x-sides) of a room side."""
    (x0, z0), _, (x1, z1), _ = room.polygon
    return (x0, x1) if side in ("z0", "z1") else (z0, z1)


def _free_spot(
    room: Room,
    side: str,
    width: float,
    doors: list[Door],
    taken: list[SceneObject],
    keep_clear: float,
    rng: np.random.Generator,
    tries: int = 20,
) -> float | None:
    """An along-wall centre for a `width`-wide decoration, away from doorways and from anything on that wall."""
    (x0, z0), _, (x1, z1), _ = room.polygon
    a, b = _side_range(room, side)
    if b - a < width + 2 * keep_clear:
        return None
    wall_at = {"z0": z0, "z1": z1, "x0": x0, "x1": x1}[side]
    along_axis, across_axis = (0, 2) if side in ("z0", "z1") else (2, 0)
    blocked = []
    for d in doors:
        if room.id in d.rooms and abs(d.position[across_axis] - wall_at) < 0.3:
            blocked.append((d.position[along_axis] - d.width / 2, d.position[along_axis] + d.width / 2))
    for o in taken:
        half_across = o.size[across_axis] / 2
        if abs(o.position[across_axis] - wall_at) - half_across < 0.35:  # stands against (or on) this wall
            half = o.size[along_axis] / 2
            blocked.append((o.position[along_axis] - half, o.position[along_axis] + half))
    for _ in range(tries):
        c = float(rng.uniform(a + width / 2 + keep_clear, b - width / 2 - keep_clear))
        lo, hi = c - width / 2 - keep_clear, c + width / 2 + keep_clear
        if not any(lo < g1 and g0 < hi for g0, g1 in blocked):
            return round(c, 2)
    return None


def _wall_box(
    room: Room, side: str, u0: float, u1: float, y0: float, y1: float, d0: float, d1: float
) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """World box for along-wall [u0, u1], height [y0, y1], and depth [d0, d1] off the wall into the room."""
    (x0, z0), _, (x1, z1), _ = room.polygon
    if side == "z0":
        return (u0, y0, z0 + d0), (u1, y1, z0 + d1)
    if side == "z1":
        return (u0, y0, z1 - d1), (u1, y1, z1 - d0)
    if side == "x0":
        return (x0 + d0, y0, u0), (x0 + d1, y1, u1)
    return (x1 - d1, y0, u0), (x1 - d0, y1, u1)


def _record(obj_id: int, category: str, color_name: str, color, lo, hi, room: Room) -> SceneObject:
    return SceneObject(
        id=obj_id,
        category=category,
        color_name=color_name,
        color=list(color),
        position=[round((lo[0] + hi[0]) / 2, 4), round(lo[1], 4), round((lo[2] + hi[2]) / 2, 4)],
        size=[round(hi[0] - lo[0], 4), round(hi[1] - lo[1], 4), round(hi[2] - lo[2], 4)],
        room_id=room.id,
    )


def _window(
    builder: MeshBuilder, room: Room, side: str, c: float, config: DecorConfig, obj_id: int
) -> SceneObject:
    """A white frame with a sky-blue pane standing 1 cm proud of it (no coplanar faces to flicker)."""
    half = config.window_width / 2
    sill, top = config.window_sill, config.window_top
    lo, hi = _wall_box(room, side, c - half, c + half, sill, top, 0.0, 0.03)
    builder.add_box(lo, hi, _FRAME_WHITE, skip=_back_face(side))
    glass_lo, glass_hi = _wall_box(
        room, side, c - half + 0.07, c + half - 0.07, sill + 0.07, top - 0.07, 0.0, 0.04
    )
    builder.add_box(glass_lo, glass_hi, _GLASS, skip=_back_face(side))
    bar_lo, bar_hi = _wall_box(room, side, c - 0.03, c + 0.03, sill + 0.07, top - 0.07, 0.0, 0.05)  # mullion
    builder.add_box(bar_lo, bar_hi, _FRAME_WHITE, skip=_back_face(side))
    return _record(obj_id, "window", "white", OBJECT_COLORS["white"], lo, hi, room)


def _painting(
    builder: MeshBuilder, room: Room, side: str, c: float, width: float, color_name: str, obj_id: int
) -> SceneObject:
    """A dark frame with a canvas in the named colour and a lighter stripe, centred at eye height."""
    height = round(width * 0.75, 3)
    y0, y1 = 1.55 - height / 2, 1.55 + height / 2
    lo, hi = _wall_box(room, side, c - width / 2, c + width / 2, y0, y1, 0.0, 0.03)
    builder.add_box(lo, hi, _PAINTING_FRAME, skip=_back_face(side))
    canvas = OBJECT_COLORS[color_name]
    c_lo, c_hi = _wall_box(
        room, side, c - width / 2 + 0.05, c + width / 2 - 0.05, y0 + 0.05, y1 - 0.05, 0.0, 0.04
    )
    builder.add_box(c_lo, c_hi, canvas, skip=_back_face(side))
    s_lo, s_hi = _wall_box(
        room, side, c - width / 2 + 0.05, c + width / 2 - 0.05, y0 + 0.15, y0 + 0.2, 0.0, 0.045
    )
    builder.add_box(s_lo, s_hi, tuple(min(1.0, v * 0.5 + 0.5) for v in canvas), skip=_back_face(side))
    return _record(obj_id, "painting", color_name, canvas, lo, hi, room)


def _back_face(side: str) -> tuple[str]:
    """The face that lies flat on the wall (never visible)."""
    return ({"z0": "-z", "z1": "+z", "x0": "-x", "x1": "+x"}[side],)
