"""Furniture of generated houses: one small function per category, built from boxes and cylinders.

Each builder returns the object's footprint size and its parts in a local frame: the footprint is centred on
the origin, the object stands on y = 0, and its front faces +z (its back goes against a wall). The generator
rotates it by a multiple of 90° and moves it into place; `add_furniture` writes the parts into a MeshBuilder.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from envs.scenes.mesh import MeshBuilder

# Named colours of objects (rgb in [0, 1]); the name goes into the semantics and hence into instructions.
OBJECT_COLORS: dict[str, tuple[float, float, float]] = {
    "red": (0.72, 0.15, 0.13),
    "blue": (0.15, 0.28, 0.68),
    "green": (0.2, 0.52, 0.24),
    "yellow": (0.92, 0.78, 0.18),
    "orange": (0.9, 0.48, 0.12),
    "purple": (0.45, 0.24, 0.6),
    "pink": (0.92, 0.55, 0.66),
    "white": (0.93, 0.93, 0.91),
    "black": (0.09, 0.09, 0.1),
    "grey": (0.48, 0.49, 0.52),
    "brown": (0.42, 0.25, 0.12),
    "wooden": (0.62, 0.43, 0.24),
    "silver": (0.74, 0.76, 0.79),
}
_WOOD = (0.55, 0.37, 0.2)
_DARK_WOOD = (0.33, 0.2, 0.1)
_WHITE = (0.94, 0.94, 0.92)
_BLACK = (0.06, 0.06, 0.07)
_METAL = (0.6, 0.6, 0.62)
_LEAF = (0.16, 0.5, 0.18)
_POT = (0.7, 0.35, 0.2)
_SCREEN = (0.05, 0.07, 0.12)


@dataclass(frozen=True)
class Box:
    lo: tuple[float, float, float]
    hi: tuple[float, float, float]
    color: tuple[float, float, float]


@dataclass(frozen=True)
class Cylinder:
    base: tuple[float, float, float]  # centre of the bottom cap
    radius: float
    height: float
    color: tuple[float, float, float]


Part = Box | Cylinder
Size = tuple[float, float, float]  # (sx, sy, sz) of the footprint box in the local frame


def _legs(sx: float, sz: float, height: float, inset: float, thick: float, color) -> list[Part]:
    """Four square legs under a top of footprint sx x sz."""
    xs, zs = sx / 2 - inset, sz / 2 - inset
    return [
        Box((x - thick / 2, 0.0, z - thick / 2), (x + thick / 2, height, z + thick / 2), color)
        for x in (-xs, xs)
        for z in (-zs, zs)
    ]


def sofa(c) -> tuple[Size, list[Part]]:
    sx, sy, sz = 2.0, 0.85, 0.9
    return (sx, sy, sz), [
        Box((-sx / 2, 0.0, -sz / 2), (sx / 2, 0.42, sz / 2), c),  # seat
        Box((-sx / 2, 0.0, -sz / 2), (sx / 2, sy, -sz / 2 + 0.22), c),  # back
        Box((-sx / 2, 0.0, -sz / 2), (-sx / 2 + 0.2, 0.62, sz / 2), c),  # arms
        Box((sx / 2 - 0.2, 0.0, -sz / 2), (sx / 2, 0.62, sz / 2), c),
        Box((-sx / 2 + 0.25, 0.42, -sz / 2 + 0.22), (-0.02, 0.5, sz / 2 - 0.05), _shade(c, 1.15)),  # cushions
        Box((0.02, 0.42, -sz / 2 + 0.22), (sx / 2 - 0.25, 0.5, sz / 2 - 0.05), _shade(c, 1.15)),
    ]


def armchair(c) -> tuple[Size, list[Part]]:
    sx, sy, sz = 0.9, 0.95, 0.85
    return (sx, sy, sz), [
        Box((-sx / 2, 0.1, -sz / 2), (sx / 2, 0.45, sz / 2), c),
        Box((-sx / 2, 0.1, -sz / 2), (sx / 2, sy, -sz / 2 + 0.18), c),
        Box((-sx / 2, 0.1, -sz / 2), (-sx / 2 + 0.15, 0.65, sz / 2), c),
        Box((sx / 2 - 0.15, 0.1, -sz / 2), (sx / 2, 0.65, sz / 2), c),
        *_legs(sx, sz, 0.1, 0.06, 0.06, _DARK_WOOD),
    ]


def bed(c) -> tuple[Size, list[Part]]:
    sx, sy, sz = 1.6, 1.0, 2.1
    return (sx, sy, sz), [
        Box((-sx / 2, 0.0, -sz / 2), (sx / 2, 0.3, sz / 2), _WOOD),  # frame
        Box((-sx / 2 + 0.04, 0.3, -sz / 2 + 0.08), (sx / 2 - 0.04, 0.5, sz / 2 - 0.04), _WHITE),  # mattress
        Box((-sx / 2 + 0.02, 0.3, -sz / 2 + 0.75), (sx / 2 - 0.02, 0.56, sz / 2 - 0.02), c),  # blanket
        Box((-sx / 2 + 0.15, 0.5, -sz / 2 + 0.15), (-0.05, 0.62, -sz / 2 + 0.55), _WHITE),  # pillows
        Box((0.05, 0.5, -sz / 2 + 0.15), (sx / 2 - 0.15, 0.62, -sz / 2 + 0.55), _WHITE),
        Box((-sx / 2, 0.0, -sz / 2), (sx / 2, sy, -sz / 2 + 0.08), _WOOD),  # headboard
    ]


def table(c) -> tuple[Size, list[Part]]:
    sx, sy, sz = 1.5, 0.76, 0.9
    return (sx, sy, sz), [
        Box((-sx / 2, sy - 0.05, -sz / 2), (sx / 2, sy, sz / 2), c),
        *_legs(sx, sz, sy - 0.05, 0.08, 0.07, c),
    ]


def chair(c) -> tuple[Size, list[Part]]:
    sx, sy, sz = 0.46, 0.92, 0.46
    return (sx, sy, sz), [
        Box((-sx / 2, 0.42, -sz / 2), (sx / 2, 0.47, sz / 2), c),
        Box((-sx / 2, 0.47, -sz / 2), (sx / 2, sy, -sz / 2 + 0.05), c),
        *_legs(sx, sz, 0.42, 0.03, 0.04, _shade(c, 0.7)),
    ]


def plant(c) -> tuple[Size, list[Part]]:
    return (0.5, 1.3, 0.5), [
        Cylinder((0.0, 0.0, 0.0), 0.17, 0.35, c),  # pot, in the named colour
        Cylinder((0.0, 0.35, 0.0), 0.03, 0.3, _DARK_WOOD),
        Cylinder((0.0, 0.6, 0.0), 0.25, 0.45, _LEAF),
        Cylinder((0.0, 1.05, 0.0), 0.15, 0.25, _shade(_LEAF, 1.25)),
    ]


def tv(c) -> tuple[Size, list[Part]]:
    sx, sz = 1.4, 0.45
    return (sx, 1.35, sz), [
        Box((-sx / 2, 0.0, -sz / 2), (sx / 2, 0.5, sz / 2), c),  # stand
        Box((-0.6, 0.58, -0.05), (0.6, 1.35, 0.0), _BLACK),  # bezel
        Box((-0.56, 0.62, 0.0), (0.56, 1.31, 0.015), _SCREEN),  # screen
        Box((-0.1, 0.5, -0.1), (0.1, 0.58, 0.05), _BLACK),  # foot
    ]


def fridge(c) -> tuple[Size, list[Part]]:
    sx, sy, sz = 0.75, 1.85, 0.7
    return (sx, sy, sz), [
        Box((-sx / 2, 0.0, -sz / 2), (sx / 2, sy, sz / 2), c),
        Box((-sx / 2 + 0.02, 1.2, sz / 2), (sx / 2 - 0.02, 1.215, sz / 2 + 0.01), _shade(c, 0.6)),  # door gap
        Box((sx / 2 - 0.12, 0.8, sz / 2), (sx / 2 - 0.08, 1.1, sz / 2 + 0.05), _METAL),  # handles
        Box((sx / 2 - 0.12, 1.3, sz / 2), (sx / 2 - 0.08, 1.6, sz / 2 + 0.05), _METAL),
    ]


def shelf(c) -> tuple[Size, list[Part]]:
    sx, sy, sz = 1.0, 1.9, 0.35
    parts: list[Part] = [
        Box((-sx / 2, 0.0, -sz / 2), (sx / 2, sy, -sz / 2 + 0.03), c),  # back
        Box((-sx / 2, 0.0, -sz / 2), (-sx / 2 + 0.03, sy, sz / 2), c),  # sides
        Box((sx / 2 - 0.03, 0.0, -sz / 2), (sx / 2, sy, sz / 2), c),
    ]
    book_colors = [OBJECT_COLORS[k] for k in ("red", "blue", "green", "yellow", "white", "orange")]
    for level in range(5):
        y = level * 0.45
        parts.append(Box((-sx / 2, y, -sz / 2), (sx / 2, y + 0.03, sz / 2), c))  # board
        if level < 4:
            for k in range(4):  # a few books per board: colourful blocks
                x0 = -sx / 2 + 0.06 + k * 0.22
                h = 0.22 + 0.04 * ((level + k) % 3)
                parts.append(
                    Box(
                        (x0, y + 0.03, -0.12),
                        (x0 + 0.16, y + 0.03 + h, 0.1),
                        book_colors[(level * 4 + k) % 6],
                    )
                )
    return (sx, sy, sz), parts


def rug(c) -> tuple[Size, list[Part]]:
    sx, sz = 2.2, 1.5
    return (sx, 0.02, sz), [
        Box((-sx / 2, 0.0, -sz / 2), (sx / 2, 0.015, sz / 2), c),
        Box((-sx / 2 + 0.2, 0.0, -sz / 2 + 0.2), (sx / 2 - 0.2, 0.02, sz / 2 - 0.2), _shade(c, 1.3)),
    ]


def lamp(c) -> tuple[Size, list[Part]]:
    return (0.45, 1.7, 0.45), [
        Cylinder((0.0, 0.0, 0.0), 0.18, 0.04, _BLACK),
        Cylinder((0.0, 0.04, 0.0), 0.02, 1.3, _METAL),
        Cylinder((0.0, 1.3, 0.0), 0.22, 0.4, c),  # shade, in the named colour
    ]


def toilet(c) -> tuple[Size, list[Part]]:
    return (0.45, 0.8, 0.7), [
        Box((-0.2, 0.0, -0.35), (0.2, 0.8, -0.17), c),  # tank
        Box((-0.13, 0.0, -0.17), (0.13, 0.3, 0.2), c),  # pedestal
        Cylinder((0.0, 0.3, 0.1), 0.2, 0.12, c),  # bowl
        Cylinder((0.0, 0.42, 0.1), 0.21, 0.02, _shade(c, 0.85)),  # seat
    ]


def sink(c) -> tuple[Size, list[Part]]:
    sx, sz = 0.7, 0.5
    return (sx, 1.6, sz), [
        Box((-sx / 2, 0.0, -sz / 2), (sx / 2, 0.8, sz / 2), c),  # cabinet
        Box((-sx / 2, 0.8, -sz / 2), (sx / 2, 0.88, sz / 2), _WHITE),  # basin rim
        Box((-0.22, 0.87, -0.12), (0.22, 0.881, 0.18), _shade(_WHITE, 0.75)),  # basin
        Cylinder((0.0, 0.88, -0.18), 0.02, 0.15, _METAL),  # tap
        Box((-0.3, 1.05, -sz / 2), (0.3, 1.6, -sz / 2 + 0.02), (0.7, 0.8, 0.85)),  # mirror
    ]


def desk(c) -> tuple[Size, list[Part]]:
    sx, sy, sz = 1.3, 0.75, 0.65
    return (sx, 1.2, sz), [
        Box((-sx / 2, sy - 0.04, -sz / 2), (sx / 2, sy, sz / 2), c),
        Box((-sx / 2, 0.0, -sz / 2), (-sx / 2 + 0.04, sy - 0.04, sz / 2), c),
        Box((sx / 2 - 0.4, 0.0, -sz / 2), (sx / 2, sy - 0.04, sz / 2), c),  # drawers
        Box((-0.3, sy + 0.12, -0.2), (0.3, sy + 0.45, -0.17), _BLACK),  # monitor
        Box((-0.05, sy, -0.22), (0.05, sy + 0.12, -0.15), _BLACK),
    ]


def wardrobe(c) -> tuple[Size, list[Part]]:
    sx, sy, sz = 1.2, 2.1, 0.6
    return (sx, sy, sz), [
        Box((-sx / 2, 0.0, -sz / 2), (sx / 2, sy, sz / 2), c),
        Box((-0.01, 0.05, sz / 2), (0.01, sy - 0.05, sz / 2 + 0.005), _shade(c, 0.5)),  # door split
        Box((-0.08, 0.9, sz / 2), (-0.05, 1.3, sz / 2 + 0.03), _METAL),
        Box((0.05, 0.9, sz / 2), (0.08, 1.3, sz / 2 + 0.03), _METAL),
    ]


def bathtub(c) -> tuple[Size, list[Part]]:
    sx, sy, sz = 1.7, 0.58, 0.75
    w = 0.08
    return (sx, sy, sz), [
        Box((-sx / 2, 0.0, -sz / 2), (sx / 2, 0.2, sz / 2), c),  # bottom
        Box((-sx / 2, 0.0, -sz / 2), (sx / 2, sy, -sz / 2 + w), c),  # rims
        Box((-sx / 2, 0.0, sz / 2 - w), (sx / 2, sy, sz / 2), c),
        Box((-sx / 2, 0.0, -sz / 2), (-sx / 2 + w, sy, sz / 2), c),
        Box((sx / 2 - w, 0.0, -sz / 2), (sx / 2, sy, sz / 2), c),
        Box((-sx / 2 + w, 0.2, -sz / 2 + w), (sx / 2 - w, 0.45, sz / 2 - w), (0.55, 0.75, 0.9)),  # water
    ]


def counter(c) -> tuple[Size, list[Part]]:
    sx, sy, sz = 2.0, 0.92, 0.62
    return (sx, sy, sz), [
        Box((-sx / 2, 0.0, -sz / 2), (sx / 2, sy - 0.04, sz / 2), c),  # cabinets
        Box((-sx / 2, sy - 0.04, -sz / 2), (sx / 2, sy, sz / 2), (0.82, 0.82, 0.8)),  # worktop
        Box((0.2, sy, -0.2), (0.8, sy + 0.01, 0.2), _BLACK),  # hob
        Box((-0.8, sy - 0.005, -0.15), (-0.3, sy + 0.002, 0.2), _METAL),  # sink
        Box(
            (-sx / 2 + 0.05, 0.45, sz / 2), (sx / 2 - 0.05, 0.47, sz / 2 + 0.01), _shade(c, 0.6)
        ),  # drawer line
    ]


def nightstand(c) -> tuple[Size, list[Part]]:
    return (0.5, 0.55, 0.42), [
        Box((-0.25, 0.0, -0.21), (0.25, 0.55, 0.21), c),
        Box((-0.05, 0.35, 0.21), (0.05, 0.38, 0.24), _METAL),
        Cylinder((0.1, 0.55, -0.05), 0.07, 0.25, (0.95, 0.9, 0.7)),  # small lamp
    ]


def dresser(c) -> tuple[Size, list[Part]]:
    sx, sy, sz = 1.2, 0.9, 0.5
    parts: list[Part] = [Box((-sx / 2, 0.0, -sz / 2), (sx / 2, sy, sz / 2), c)]
    for k in range(3):  # drawer handles
        y = 0.2 + 0.28 * k
        parts.append(Box((-0.15, y, sz / 2), (0.15, y + 0.03, sz / 2 + 0.03), _METAL))
    return (sx, sy, sz), parts


@dataclass(frozen=True)
class Category:
    build: Callable[[tuple[float, float, float]], tuple[Size, list[Part]]]
    colors: tuple[str, ...]  # colour names it comes in (keys of OBJECT_COLORS)
    placement: str  # "wall": back against a wall; "center": free-standing in the room's middle


CATEGORIES: dict[str, Category] = {
    "sofa": Category(sofa, ("red", "blue", "grey", "green", "brown", "purple"), "wall"),
    "armchair": Category(armchair, ("red", "blue", "yellow", "green", "orange"), "wall"),
    "bed": Category(bed, ("blue", "red", "green", "purple", "pink", "yellow"), "wall"),
    "table": Category(table, ("wooden", "white", "black", "brown"), "center"),
    "chair": Category(chair, ("wooden", "black", "white", "red"), "wall"),
    "plant": Category(plant, ("orange", "white", "grey", "blue"), "wall"),
    "tv": Category(tv, ("black", "wooden", "white"), "wall"),
    "fridge": Category(fridge, ("white", "silver", "black"), "wall"),
    "shelf": Category(shelf, ("wooden", "white", "black", "brown"), "wall"),
    "rug": Category(rug, ("red", "blue", "green", "yellow", "purple", "orange"), "center"),
    "lamp": Category(lamp, ("yellow", "white", "orange", "red"), "wall"),
    "toilet": Category(toilet, ("white",), "wall"),
    "sink": Category(sink, ("white", "wooden", "grey"), "wall"),
    "desk": Category(desk, ("wooden", "white", "black"), "wall"),
    "wardrobe": Category(wardrobe, ("wooden", "white", "brown"), "wall"),
    "bathtub": Category(bathtub, ("white",), "wall"),
    "counter": Category(counter, ("white", "wooden", "grey", "blue", "green"), "wall"),
    "nightstand": Category(nightstand, ("wooden", "white", "brown"), "wall"),
    "dresser": Category(dresser, ("wooden", "white", "brown"), "wall"),
}

# What each room type contains: (required categories, optional categories drawn at random).
ROOM_FURNITURE: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "bedroom": (("bed",), ("wardrobe", "nightstand", "lamp", "dresser", "plant", "desk", "rug")),
    "kitchen": (("counter", "fridge"), ("table", "plant", "shelf")),
    "living room": (("sofa", "tv"), ("armchair", "rug", "lamp", "plant", "shelf", "table")),
    "bathroom": (("toilet", "sink"), ("bathtub", "plant")),
    "office": (("desk",), ("shelf", "lamp", "plant", "armchair")),
    "dining room": (("table",), ("shelf", "plant", "lamp", "dresser")),
    "hallway": ((), ("plant", "shelf", "lamp", "rug")),
    "laundry room": ((), ("shelf", "sink", "plant")),
}


# Objects that come with chairs: (x, z) offsets in the parent's local frame and the chair's quarter turns
# relative to the parent (2 = facing the parent's front side back towards it). Chairs stand just clear of the
# parent's footprint, so footprints never overlap.
COMPANIONS: dict[str, tuple[tuple[float, float, int], ...]] = {
    "table": ((-0.4, 0.7, 2), (0.4, 0.7, 2), (-0.4, -0.7, 0), (0.4, -0.7, 0)),
    "desk": ((-0.2, 0.58, 2),),
}


def local_to_world_offset(dx: float, dz: float, quarter_turns: int) -> tuple[float, float]:
    """An (x, z) offset in an object's local frame, rotated like the object (quarter_turns * 90° about +y)."""
    p = _to_world((dx, 0.0, dz), quarter_turns, (0.0, 0.0, 0.0))
    return float(p[0]), float(p[2])


def _shade(c, k: float) -> tuple[float, float, float]:
    return tuple(float(min(1.0, v * k)) for v in c)  # type: ignore[return-value]


def rotated_size(size: Size, quarter_turns: int) -> Size:
    """Axis-aligned extent of a footprint after `quarter_turns` rotations by 90° about y."""
    sx, sy, sz = size
    return (sz, sy, sx) if quarter_turns % 2 else (sx, sy, sz)


def _to_world(p, quarter_turns: int, origin) -> np.ndarray:
    """Rotate a local point by quarter_turns * 90° about +y (habitat's left turn), then translate."""
    a = quarter_turns * math.pi / 2
    ca, sa = round(math.cos(a)), round(math.sin(a))
    x, y, z = p
    return np.array([x * ca + z * sa + origin[0], y + origin[1], -x * sa + z * ca + origin[2]])


def add_furniture(builder: MeshBuilder, parts: list[Part], quarter_turns: int, origin) -> None:
    """Write an object's parts into the mesh, rotated by quarter_turns * 90° and moved to `origin` (x, y, z)."""
    for part in parts:
        if isinstance(part, Box):
            a, b = _to_world(part.lo, quarter_turns, origin), _to_world(part.hi, quarter_turns, origin)
            builder.add_box(
                np.minimum(a, b), np.maximum(a, b), part.color, skip=("-y",) if part.lo[1] <= 0 else ()
            )
        else:
            builder.add_cylinder(
                _to_world(part.base, quarter_turns, origin), part.radius, part.height, part.color
            )
