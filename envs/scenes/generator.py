"""Procedural houses: multi-room floor plans with doors, coloured walls and floors, and furniture.

Deterministic from a seed: the same seed gives byte-identical meshes and semantics on every machine. The plan is
a binary space partition of a rectangular footprint (every split line becomes an interior wall), rooms are
joined by doors along a random spanning tree of the room adjacency graph plus a few extra doors (so every room
is reachable and some routes have loops), and each room is furnished by type.

    from envs.scenes.generator import build_house
    glb = build_house(seed=3, house_id="gen_00003", out_dir=Path("/tmp/houses"))

Coordinates follow habitat: metres, y up, floor at y = 0; the footprint spans x in [0, W], z in [0, D].
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh

from envs.scenes.decor import decorate_room
from envs.scenes.furniture import (
    CATEGORIES,
    COMPANIONS,
    OBJECT_COLORS,
    ROOM_FURNITURE,
    add_furniture,
    local_to_world_offset,
    rotated_size,
)
from envs.scenes.mesh import MeshBuilder
from envs.scenes.semantics import Door, HouseSemantics, Room, SceneObject


@dataclass
class HouseConfig:
    min_rooms: int = 6  # fewest rooms in a house
    max_rooms: int = 10  # most rooms in a house
    width_range: tuple[float, float] = (14.0, 22.0)  # footprint extent along x (metres)
    depth_range: tuple[float, float] = (10.0, 16.0)  # footprint extent along z (metres)
    min_room_side: float = 2.6  # no room is narrower than this (metres, wall centre to wall centre)
    wall_height: float = 2.7  # floor to ceiling (metres)
    wall_thickness: float = 0.15  # metres
    door_width: float = 1.0  # clear width of a doorway (metres)
    door_height: float = 2.1  # height of a doorway; a lintel closes the wall above it (metres)
    corridor_prob: float = 0.5  # chance that a house of 7+ rooms has a hallway across it, rooms on both sides
    corridor_width: float = 1.6  # metres, wall centre to wall centre
    extra_door_prob: float = 0.35  # chance that an adjacency outside the spanning tree also gets a door
    min_objects_per_room: int = 2  # furniture pieces per room (fewer if the room has no space)
    max_objects_per_room: int = (
        6  # (a room type's required pieces, e.g. a bathroom's toilet, always get a try)
    )
    door_clearance: float = 1.1  # furniture keeps this far (metres) in front of each doorway
    tile_size: float = 0.6  # floor tile edge; planks are 3x as long and half as wide (metres)
    ceiling: bool = True  # draw the ceiling (and ceiling lights)
    decorations: bool = True  # windows on outside walls, paintings on inside walls

    def __post_init__(self) -> None:
        if not 1 <= self.min_rooms <= self.max_rooms:
            raise ValueError(
                f"HouseConfig.min_rooms/max_rooms need 1 <= min <= max, got {self.min_rooms}, {self.max_rooms}"
            )
        for name in ("width_range", "depth_range"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"HouseConfig.{name} must be (lo, hi) with 0 < lo <= hi, got {(lo, hi)}")
        if self.door_width + 0.4 > self.min_room_side:
            raise ValueError(
                "HouseConfig.min_room_side must exceed door_width + 0.4 so every wall can hold a door"
            )
        if not 0 < self.door_height < self.wall_height:
            raise ValueError(f"HouseConfig.door_height must be in (0, wall_height), got {self.door_height}")
        if not 0 < self.wall_thickness < 0.5:
            raise ValueError(f"HouseConfig.wall_thickness must be in (0, 0.5), got {self.wall_thickness}")
        if not 0 <= self.min_objects_per_room <= self.max_objects_per_room:
            raise ValueError("HouseConfig.min_objects_per_room must be in [0, max_objects_per_room]")
        if not 0.0 <= self.corridor_prob <= 1.0:
            raise ValueError(f"HouseConfig.corridor_prob must be in [0, 1], got {self.corridor_prob}")
        if not self.door_width + 0.2 <= self.corridor_width:
            raise ValueError("HouseConfig.corridor_width must be at least door_width + 0.2")
        if self.tile_size <= 0:
            raise ValueError(f"HouseConfig.tile_size must be > 0, got {self.tile_size}")


ROOM_TYPES = (
    "living room",
    "kitchen",
    "bedroom",
    "bathroom",
    "office",
    "dining room",
    "hallway",
    "laundry room",
)

# Wall paints and floor finishes by name (rgb in [0, 1]); the paint's name tells same-type rooms apart.
WALL_PAINTS: dict[str, tuple[float, float, float]] = {
    "white": (0.88, 0.87, 0.84),
    "blue": (0.55, 0.68, 0.85),
    "green": (0.6, 0.8, 0.6),
    "yellow": (0.93, 0.86, 0.55),
    "pink": (0.92, 0.7, 0.74),
    "grey": (0.66, 0.67, 0.7),
    "orange": (0.95, 0.72, 0.5),
    "purple": (0.72, 0.64, 0.85),
}
_FLOORS = {  # finish -> two alternating shades
    "planks": ((0.55, 0.38, 0.22), (0.62, 0.45, 0.27)),
    "light planks": ((0.78, 0.65, 0.46), (0.72, 0.59, 0.4)),
    "tiles": ((0.85, 0.85, 0.83), (0.62, 0.63, 0.65)),
    "dark tiles": ((0.35, 0.36, 0.4), (0.5, 0.5, 0.54)),
    "carpet": ((0.45, 0.5, 0.62), (0.42, 0.47, 0.59)),
}
_FLOOR_BY_TYPE = {
    "bathroom": ("tiles", "dark tiles"),
    "kitchen": ("tiles", "dark tiles", "light planks"),
    "laundry room": ("tiles",),
    "bedroom": ("carpet", "planks", "light planks"),
}
_EXTERIOR = (0.8, 0.78, 0.74)
_CEILING = (0.95, 0.95, 0.94)
_LIGHT_PANEL = (1.0, 0.98, 0.85)

Rect = tuple[float, float, float, float]  # x0, z0, x1, z1 (wall centre lines)


@dataclass
class _Split:
    """A wall line: along x at z = c (axis "x") or along z at x = c (axis "z"), from s to e."""

    axis: str
    c: float
    s: float
    e: float


def generate_house(
    seed: int, house_id: str, config: HouseConfig | None = None
) -> tuple[trimesh.Trimesh, HouseSemantics]:
    """A furnished multi-room house: its mesh (vertex colours and normals, floor at y = 0) and semantics."""
    config = config if config is not None else HouseConfig()
    rng = np.random.default_rng(seed)
    width = _snap(rng.uniform(*config.width_range))
    depth = _snap(rng.uniform(*config.depth_range))
    n_rooms = int(rng.integers(config.min_rooms, config.max_rooms + 1))
    corridor = None
    if n_rooms >= 7 and rng.uniform() < config.corridor_prob:
        corridor = corridor_cell(width, depth, config.corridor_width, rng)
    cells, splits = partition_footprint(width, depth, n_rooms, config.min_room_side, rng, corridor)
    types = assign_room_types(cells, rng, corridor)
    links = plan_doors(cells, config, rng, corridor)

    t = config.wall_thickness
    rooms: list[Room] = []
    finishes: list[str] = []
    paint_names = _paint_names(types, rng)
    for i, ((x0, z0, x1, z1), rtype) in enumerate(zip(cells, types, strict=True)):
        finish = _FLOOR_BY_TYPE.get(rtype, ("planks", "light planks", "carpet"))
        floor_name = finish[int(rng.integers(len(finish)))]
        finishes.append(floor_name)
        rooms.append(
            Room(
                id=i,
                type=rtype,
                polygon=[
                    [x0 + t / 2, z0 + t / 2],
                    [x1 - t / 2, z0 + t / 2],
                    [x1 - t / 2, z1 - t / 2],
                    [x0 + t / 2, z1 - t / 2],
                ],
                floor_color=list(_FLOORS[floor_name][0]),
                wall_color=list(WALL_PAINTS[paint_names[i]]),
                name=_room_name(rtype, paint_names[i], types),
            )
        )
    doors = [
        Door(id=k, rooms=(a, b), position=[round(p[0], 4), 0.0, round(p[1], 4)], width=config.door_width)
        for k, (a, b, p) in enumerate(links)
    ]
    semantics = HouseSemantics(house_id=house_id, seed=int(seed), floor_height=0.0, rooms=rooms, doors=doors)

    builder = MeshBuilder()
    for cell, finish in zip(cells, finishes, strict=True):
        _add_floor(builder, cell, finish, config)
    _add_walls(builder, cells, splits, width, depth, rooms, doors, config)
    if config.ceiling:
        _add_ceiling(builder, cells, width, depth, config)
    for room in rooms:
        furniture = _furnish_room(builder, room, doors, config, rng, first_id=len(semantics.objects))
        semantics.objects.extend(furniture)
        if config.decorations:
            first_id = len(semantics.objects)
            decor = decorate_room(builder, room, doors, furniture, (width, depth), t, rng, first_id)
            semantics.objects.extend(decor)
    return builder.build(), semantics


def build_house(seed: int, house_id: str, out_dir: Path, config: HouseConfig | None = None) -> Path:
    """Generate a house and write `<out_dir>/<house_id>/<house_id>.glb` and `.semantics.json`; returns the glb path."""
    if not re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*", house_id):
        raise ValueError(
            f"house_id must be a plain file name (letters, digits, '_', '-', '.'), got '{house_id}'"
        )
    mesh, semantics = generate_house(seed, house_id, config)
    folder = Path(out_dir) / house_id
    folder.mkdir(parents=True, exist_ok=True)
    glb = folder / f"{house_id}.glb"
    tmp = glb.with_suffix(".glb.tmp")  # write then rename: a concurrent reader never sees half a file
    tmp.write_bytes(mesh.export(file_type="glb"))
    tmp.replace(glb)
    semantics.save(folder / f"{house_id}.semantics.json")
    return glb


def _snap(v: float, step: float = 0.1) -> float:
    """Round to a 10 cm grid so walls line up exactly and coordinates print cleanly."""
    return round(round(v / step) * step, 4)


def corridor_cell(width: float, depth: float, corridor_width: float, rng: np.random.Generator) -> Rect:
    """A hallway strip across the whole footprint along its long side, roughly in the middle."""
    if width >= depth:
        c0 = _snap(depth / 2 - corridor_width / 2 + rng.uniform(-0.15, 0.15) * depth)
        return (0.0, c0, width, _snap(c0 + corridor_width))
    c0 = _snap(width / 2 - corridor_width / 2 + rng.uniform(-0.15, 0.15) * width)
    return (c0, 0.0, _snap(c0 + corridor_width), depth)


def partition_footprint(
    width: float,
    depth: float,
    n_rooms: int,
    min_side: float,
    rng: np.random.Generator,
    corridor: Rect | None = None,
) -> tuple[list[Rect], list[_Split]]:
    """Split the footprint into up to `n_rooms` rectangles, always cutting the largest one across its long side.

    With a `corridor` strip, the footprint is first cut along both its sides and the corridor itself is never
    cut again. Returns the room cells and the split lines (each becomes an interior wall spanning its parent).
    """
    cells: list[Rect] = [(0.0, 0.0, width, depth)]
    splits: list[_Split] = []
    if corridor is not None:
        x0, z0, x1, z1 = corridor
        if x1 - x0 == width:  # along x: cells below, the corridor, above
            cells = [(0.0, 0.0, width, z0), corridor, (0.0, z1, width, depth)]
            splits = [_Split("x", z0, 0.0, width), _Split("x", z1, 0.0, width)]
        else:
            cells = [(0.0, 0.0, x0, depth), corridor, (x1, 0.0, width, depth)]
            splits = [_Split("z", x0, 0.0, depth), _Split("z", x1, 0.0, depth)]
    while len(cells) < n_rooms:
        order = sorted(
            range(len(cells)), key=lambda i: -(cells[i][2] - cells[i][0]) * (cells[i][3] - cells[i][1])
        )
        for i in order:
            if cells[i] == corridor:
                continue
            x0, z0, x1, z1 = cells[i]
            along_x = (x1 - x0) >= (z1 - z0)
            lo, hi = (x0, x1) if along_x else (z0, z1)
            if hi - lo < 2 * min_side:
                continue
            cut = _snap(lo + (hi - lo) * rng.uniform(0.35, 0.65))
            cut = min(max(cut, _snap(lo + min_side + 0.05)), _snap(hi - min_side - 0.05))
            if along_x:
                cells[i : i + 1] = [(x0, z0, cut, z1), (cut, z0, x1, z1)]
                splits.append(_Split("z", cut, z0, z1))
            else:
                cells[i : i + 1] = [(x0, z0, x1, cut), (x0, cut, x1, z1)]
                splits.append(_Split("x", cut, x0, x1))
            break
        else:
            break  # no cell is large enough to split again
    return cells, splits


def assign_room_types(cells: list[Rect], rng: np.random.Generator, corridor: Rect | None = None) -> list[str]:
    """Room types by size and shape: the corridor (if any) or a long thin room is the hallway, the largest room
    the living room, the smallest a bathroom; the rest come from a shuffled list with kitchen and bedroom first."""
    n = len(cells)
    area = [(c[2] - c[0]) * (c[3] - c[1]) for c in cells]
    aspect = [max(c[2] - c[0], c[3] - c[1]) / min(c[2] - c[0], c[3] - c[1]) for c in cells]
    types: list[str | None] = [None] * n
    if corridor is not None:
        types[cells.index(corridor)] = "hallway"
    by_area = sorted((i for i in range(n) if types[i] is None), key=lambda i: -area[i])
    types[by_area[0]] = "living room"
    if n > 1:
        types[by_area[-1]] = "bathroom"
    rest = [i for i in range(n) if types[i] is None]
    if n >= 6 and rest and corridor is None:
        longest = max(rest, key=lambda i: aspect[i])
        types[longest] = "hallway"
        rest.remove(longest)
    pool = ["kitchen", "bedroom", "dining room", "office", "bedroom", "bathroom", "laundry room", "office"]
    first, later = pool[:2], pool[2:]
    rng.shuffle(later)
    pool = first + later
    rng.shuffle(rest)
    for i, rtype in zip(rest, pool, strict=False):
        types[i] = rtype
    for i in range(n):
        types[i] = types[i] or "bedroom"  # more rooms than the pool: extra bedrooms
    return types  # type: ignore[return-value]


def shared_walls(cells: list[Rect], min_overlap: float) -> list[tuple[int, int, str, float, float, float]]:
    """Pairs of cells that share a wall at least `min_overlap` long: (a, b, axis, c, s, e) with the wall along
    `axis` at coordinate c from s to e."""
    out = []
    for a in range(len(cells)):
        for b in range(a + 1, len(cells)):
            ax0, az0, ax1, az1 = cells[a]
            bx0, bz0, bx1, bz1 = cells[b]
            for touching, axis, c, lo, hi in (
                (
                    abs(ax1 - bx0) < 1e-6 or abs(bx1 - ax0) < 1e-6,
                    "z",
                    ax1 if abs(ax1 - bx0) < 1e-6 else ax0,
                    max(az0, bz0),
                    min(az1, bz1),
                ),
                (
                    abs(az1 - bz0) < 1e-6 or abs(bz1 - az0) < 1e-6,
                    "x",
                    az1 if abs(az1 - bz0) < 1e-6 else az0,
                    max(ax0, bx0),
                    min(ax1, bx1),
                ),
            ):
                if touching and hi - lo >= min_overlap:
                    out.append((a, b, axis, c, lo, hi))
    return out


def plan_doors(
    cells: list[Rect], config: HouseConfig, rng: np.random.Generator, corridor: Rect | None = None
) -> list[tuple[int, int, tuple[float, float]]]:
    """Doors as (room a, room b, (x, z) centre): a random spanning tree of the adjacency graph (every room
    reachable) plus extra doors with probability `extra_door_prob`. Walls onto the corridor come first, so
    every room beside it opens onto it."""
    margin = 0.3  # keep door frames off wall junctions
    walls = shared_walls(cells, config.door_width + 2 * margin)
    order = [int(k) for k in rng.permutation(len(walls))]
    if corridor is not None:
        hub = cells.index(corridor)
        order.sort(key=lambda k: hub not in walls[k][:2])  # stable: random order within each group
    parent = list(range(len(cells)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    doors = []
    for k in order:
        a, b, axis, c, lo, hi = walls[k]
        ra, rb = find(a), find(b)
        if ra == rb and rng.uniform() >= config.extra_door_prob:
            continue
        parent[ra] = rb
        half = config.door_width / 2 + margin
        t = _snap(rng.uniform(lo + half, hi - half), 0.05)
        doors.append((a, b, (t, c) if axis == "x" else (c, t)))
    return sorted(doors, key=lambda d: (d[0], d[1]))


def _paint_names(types: list[str], rng: np.random.Generator) -> list[str]:
    """A wall paint per room; rooms of the same type get different paints so their names differ."""
    names = list(WALL_PAINTS)
    used: dict[str, set[str]] = {}
    out = []
    for rtype in types:
        taken = used.setdefault(rtype, set())
        free = [n for n in names if n not in taken] or names
        pick = free[int(rng.integers(len(free)))]
        taken.add(pick)
        out.append(pick)
    return out


def _room_name(rtype: str, paint: str, types: list[str]) -> str:
    """ "the kitchen" when the type is unique in the house, else "the blue bedroom"."""
    return f"the {rtype}" if types.count(rtype) == 1 else f"the {paint} {rtype}"


def _add_floor(builder: MeshBuilder, cell: Rect, finish: str, config: HouseConfig) -> None:
    """Floor of one cell as alternating-shade quads: a checkerboard for tiles, staggered strips for planks."""
    x0, z0, x1, z1 = cell
    shade_a, shade_b = _FLOORS[finish]
    up = (0.0, 1.0, 0.0)
    if "tiles" in finish:
        step_x = step_z = config.tile_size
    elif finish == "carpet":
        step_x = step_z = 2 * config.tile_size
    else:
        step_x, step_z = 3 * config.tile_size, 0.5 * config.tile_size
    nx, nz = max(1, round((x1 - x0) / step_x)), max(1, round((z1 - z0) / step_z))
    xs, zs = np.linspace(x0, x1, nx + 1), np.linspace(z0, z1, nz + 1)
    for j in range(nz):
        if "planks" in finish:  # stagger plank joints row by row
            offset = (j % 3) * (x1 - x0) / nx / 3
            row_xs = np.unique(np.clip(np.concatenate([[x0], xs[1:-1] + offset, [x1]]), x0, x1))
        else:
            row_xs = xs
        for i in range(len(row_xs) - 1):
            color = shade_a if (i + j) % 2 == 0 else shade_b
            corners = [
                [row_xs[i], 0.0, zs[j]],
                [row_xs[i + 1], 0.0, zs[j]],
                [row_xs[i + 1], 0.0, zs[j + 1]],
                [row_xs[i], 0.0, zs[j + 1]],
            ]
            builder.add_quad(np.array(corners), up, color)
    # A backing sheet 2 mm below: staggered planks meet in T-junctions, where the rasteriser can leave
    # pixel-sized cracks; the sheet fills them (with a floor shade and a floor depth) instead of showing holes.
    y = -0.002
    builder.add_quad(np.array([[x0, y, z0], [x1, y, z0], [x1, y, z1], [x0, y, z1]]), up, shade_a)


def _room_color_at(rooms: list[Room], cells: list[Rect], x: float, z: float) -> tuple[float, float, float]:
    for room, (x0, z0, x1, z1) in zip(rooms, cells, strict=True):
        if x0 < x < x1 and z0 < z < z1:
            return tuple(room.wall_color)  # type: ignore[return-value]
    return _EXTERIOR


def _add_walls(
    builder: MeshBuilder,
    cells: list[Rect],
    splits: list[_Split],
    width: float,
    depth: float,
    rooms: list[Room],
    doors: list[Door],
    config: HouseConfig,
) -> None:
    """Closed wall boxes along every wall line, with door gaps and lintels; each side painted like its room."""
    t, h = config.wall_thickness, config.wall_height
    lines = [
        _Split("x", 0.0, 0.0, width),
        _Split("x", depth, 0.0, width),
        _Split("z", 0.0, 0.0, depth),
        _Split("z", width, 0.0, depth),
    ]
    for line in [*lines, *splits]:
        # Break the line where a room on either side starts or ends (paint changes) and at door edges.
        cuts = {line.s, line.e}
        gaps = []
        for door in doors:
            along, across = (
                (door.position[0], door.position[2])
                if line.axis == "x"
                else (door.position[2], door.position[0])
            )
            if abs(across - line.c) < 1e-6 and line.s < along < line.e:
                gaps.append((along - door.width / 2, along + door.width / 2))
                cuts.update(gaps[-1])
        for x0, z0, x1, z1 in cells:
            lo, hi, near = (x0, x1, (z0, z1)) if line.axis == "x" else (z0, z1, (x0, x1))
            if any(abs(v - line.c) < 1e-6 for v in near):
                cuts.update(v for v in (lo, hi) if line.s < v < line.e)
        cuts_sorted = sorted(cuts)
        for a, b in itertools.pairwise(cuts_sorted):
            mid = (a + b) / 2
            in_gap = any(g0 - 1e-6 <= a and b <= g1 + 1e-6 for g0, g1 in gaps)
            a_ext = a - t / 2 if a == line.s else a  # wall ends reach into the crossing wall: closed corners
            b_ext = b + t / 2 if b == line.e else b
            y0 = config.door_height if in_gap else 0.0
            if line.axis == "x":
                lo, hi = (a_ext, y0, line.c - t / 2), (b_ext, h, line.c + t / 2)
                plus = _room_color_at(rooms, cells, mid, line.c + t)
                minus = _room_color_at(rooms, cells, mid, line.c - t)
                faces = {"+z": plus, "-z": minus, "+x": plus, "-x": plus, "-y": plus}
            else:
                lo, hi = (line.c - t / 2, y0, a_ext), (line.c + t / 2, h, b_ext)
                plus = _room_color_at(rooms, cells, line.c + t, mid)
                minus = _room_color_at(rooms, cells, line.c - t, mid)
                faces = {"+x": plus, "-x": minus, "+z": plus, "-z": plus, "-y": plus}
            beside_gap = not in_gap and any(abs(v - g) < 1e-6 for v in (a, b) for gap in gaps for g in gap)
            if beside_gap:
                # Split at the lintel's height so the lintel and its neighbours share whole edges: a T-junction
                # there could leave pixel cracks through the wall.
                builder.add_box(lo, (hi[0], config.door_height, hi[2]), plus, face_colors=faces)
                builder.add_box((lo[0], config.door_height, lo[2]), hi, plus, face_colors=faces)
            else:
                builder.add_box(lo, hi, plus, face_colors=faces)


def _add_ceiling(
    builder: MeshBuilder, cells: list[Rect], width: float, depth: float, config: HouseConfig
) -> None:
    """One downward-facing quad over the footprint, and a light panel in the middle of each room."""
    h = config.wall_height
    corners = np.array([[0.0, h, 0.0], [width, h, 0.0], [width, h, depth], [0.0, h, depth]])
    builder.add_quad(corners, (0.0, -1.0, 0.0), _CEILING)
    for x0, z0, x1, z1 in cells:
        cx, cz = (x0 + x1) / 2, (z0 + z1) / 2
        builder.add_box((cx - 0.3, h - 0.04, cz - 0.3), (cx + 0.3, h, cz + 0.3), _LIGHT_PANEL)


def _furnish_room(
    builder: MeshBuilder,
    room: Room,
    doors: list[Door],
    config: HouseConfig,
    rng: np.random.Generator,
    first_id: int,
) -> list[SceneObject]:
    """Place the room type's furniture against walls (or centred), never in front of a door or on each other."""
    (x0, z0), _, (x1, z1), _ = room.polygon
    required, optional = ROOM_FURNITURE.get(room.type, ((), ("plant",)))
    n_target = int(rng.integers(config.min_objects_per_room, config.max_objects_per_room + 1))
    wanted = list(required) + [optional[i] for i in rng.permutation(len(optional))]
    wanted = wanted[: max(n_target, len(required))]
    # Keep-out boxes (x0, z0, x1, z1): a clearance area in front of and behind every doorway of this room.
    blocked = []
    reach = config.door_clearance
    for d in doors:
        if room.id in d.rooms:
            dx, dz = d.position[0], d.position[2]
            half = d.width / 2 + 0.2
            if _door_on_x_wall(d, room):
                blocked.append((dx - half, dz - reach, dx + half, dz + reach))
            else:
                blocked.append((dx - reach, dz - half, dx + reach, dz + half))
    placed: list[SceneObject] = []
    occupied: list[tuple[float, float, float, float]] = []
    inner = (x0, z0, x1, z1)
    entries = [_entry_point(d, room) for d in doors if room.id in d.rooms]

    def keeps_room_open(box: tuple[float, float, float, float]) -> bool:
        return _room_stays_open(inner, [*occupied, box], entries)

    def place(category: str, color_name: str, cx: float, cz: float, turns: int) -> None:
        size, parts = CATEGORIES[category].build(OBJECT_COLORS[color_name])
        sx, sy, sz = rotated_size(size, turns)
        add_furniture(builder, parts, turns, (cx, 0.0, cz))
        if category != "rug":  # a rug is walkable: it does not block other furniture either
            occupied.append((cx - sx / 2 - 0.05, cz - sz / 2 - 0.05, cx + sx / 2 + 0.05, cz + sz / 2 + 0.05))
        placed.append(
            SceneObject(
                id=first_id + len(placed),
                category=category,
                color_name=color_name,
                color=list(OBJECT_COLORS[color_name]),
                position=[round(cx, 4), 0.0, round(cz, 4)],
                size=[round(sx, 4), round(sy, 4), round(sz, 4)],
                room_id=room.id,
            )
        )

    for category in wanted:
        spec = CATEGORIES[category]
        color_name = spec.colors[int(rng.integers(len(spec.colors)))]
        size, _ = spec.build(OBJECT_COLORS[color_name])
        # Chairs around a table take 0.5 m on each side; the walkway around them stays.
        walkway = 1.6 + (1.0 if category in COMPANIONS and spec.placement == "center" else 0.0)
        is_ok = None if category == "rug" else keeps_room_open
        spot = _find_spot(size, spec.placement, inner, blocked + occupied, rng, walkway=walkway, is_ok=is_ok)
        if spot is None:
            continue  # the room is full; fewer objects rather than blocked paths
        cx, cz, turns = spot
        place(category, color_name, cx, cz, turns)
        parent_box = len(occupied) - 1  # chairs may tuck in beside their own table/desk, not into others
        chair_color = CATEGORIES["chair"].colors[int(rng.integers(len(CATEGORIES["chair"].colors)))]
        for dx, dz, rel_turns in COMPANIONS.get(category, ()):
            ox, oz = local_to_world_offset(dx, dz, turns)
            chair_turns = (turns + rel_turns) % 4
            csize = rotated_size(CATEGORIES["chair"].build(OBJECT_COLORS[chair_color])[0], chair_turns)
            ccx, ccz = _snap(cx + ox, 0.01), _snap(cz + oz, 0.01)
            box = (ccx - csize[0] / 2, ccz - csize[2] / 2, ccx + csize[0] / 2, ccz + csize[2] / 2)
            inside = x0 <= box[0] and box[2] <= x1 and z0 <= box[1] and box[3] <= z1
            others = [b for i, b in enumerate(occupied) if i != parent_box]
            if inside and not _overlaps(box, blocked + others) and keeps_room_open(box):
                place("chair", chair_color, ccx, ccz, chair_turns)
    return placed


def _overlaps(box: tuple[float, float, float, float], others: list) -> bool:
    """Whether an (x0, z0, x1, z1) box overlaps any of `others` (touching edges do not count)."""
    return any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in others)


def _entry_point(door: Door, room: Room, depth: float = 0.4) -> tuple[float, float]:
    """(x, z) a little inside the room in front of a doorway: where a walker enters the room."""
    (x0, z0), _, (x1, z1), _ = room.polygon
    dx, dz = door.position[0], door.position[2]
    if _door_on_x_wall(door, room):
        return dx, (z0 + depth if abs(dz - z0) < abs(dz - z1) else z1 - depth)
    return (x0 + depth if abs(dx - x0) < abs(dx - x1) else x1 - depth), dz


def _room_stays_open(
    inner: tuple[float, float, float, float],
    boxes: list[tuple[float, float, float, float]],
    entries: list[tuple[float, float]],
    clearance: float = 0.3,
    res: float = 0.1,
) -> bool:
    """Whether a walker (kept `clearance` off furniture and walls) can get from every doorway of the room to
    every other and to most of its floor: furniture must never wall a door or a part of the room off."""
    from scipy import ndimage

    x0, z0, x1, z1 = inner
    xs = x0 + (np.arange(int((x1 - x0) / res)) + 0.5) * res  # cell centres
    zs = z0 + (np.arange(int((z1 - z0) / res)) + 0.5) * res
    gx, gz = np.meshgrid(xs, zs)  # [rows (z), cols (x)]
    free = (
        (gx > x0 + clearance / 2)
        & (gx < x1 - clearance / 2)
        & (gz > z0 + clearance / 2)
        & (gz < z1 - clearance / 2)
    )
    for bx0, bz0, bx1, bz1 in boxes:
        free &= ~(
            (gx > bx0 - clearance) & (gx < bx1 + clearance) & (gz > bz0 - clearance) & (gz < bz1 + clearance)
        )
    labels, n = ndimage.label(free)
    if n == 0:
        return False
    sizes = np.bincount(labels.ravel())[1:]
    main = int(np.argmax(sizes)) + 1
    if sizes[main - 1] < 0.5 * free.sum():
        return False
    for ex, ez in entries:
        r = min(max(int((ez - z0) / res), 0), len(zs) - 1)
        c = min(max(int((ex - x0) / res), 0), len(xs) - 1)
        if labels[r, c] != main:
            return False
    return True


def _door_on_x_wall(door: Door, room: Room) -> bool:
    """Whether the door sits in a wall running along x (the room's z0 or z1 side)."""
    (x0, z0), _, (x1, z1), _ = room.polygon
    dz = door.position[2]
    return min(abs(dz - z0), abs(dz - z1)) < min(abs(door.position[0] - x0), abs(door.position[0] - x1))


def _find_spot(
    size,
    placement: str,
    inner: tuple[float, float, float, float],
    taken: list,
    rng: np.random.Generator,
    walkway: float = 1.6,
    is_ok=None,
    tries: int = 40,
) -> tuple[float, float, int] | None:
    """A free (x, z, quarter_turns) for a footprint: back to a random wall, or near the room centre."""
    x0, z0, x1, z1 = inner
    gap = 0.02  # off the wall surface, so faces never coincide
    for _ in range(tries):
        if placement == "center":
            turns = int(rng.integers(2))
            sx, _, sz = rotated_size(size, turns)
            if sx > x1 - x0 - walkway or sz > z1 - z0 - walkway:
                return None  # too big to leave a walkway around it
            cx = (x0 + x1) / 2 + rng.uniform(-0.3, 0.3)
            cz = (z0 + z1) / 2 + rng.uniform(-0.3, 0.3)
        else:
            # wall 0: z0 side, object faces +z (0 turns); 1: x0 side faces +x (1); 2: z1 side (2); 3: x1 side (3)
            wall = int(rng.integers(4))
            turns = wall
            sx, _, sz = rotated_size(size, turns)
            if sx > x1 - x0 - 0.1 or sz > z1 - z0 - 0.1:
                continue
            if wall in (0, 2):
                cx = rng.uniform(x0 + sx / 2 + gap, x1 - sx / 2 - gap)
                cz = z0 + sz / 2 + gap if wall == 0 else z1 - sz / 2 - gap
            else:
                cz = rng.uniform(z0 + sz / 2 + gap, z1 - sz / 2 - gap)
                cx = x0 + sx / 2 + gap if wall == 1 else x1 - sx / 2 - gap
        box = (cx - sx / 2, cz - sz / 2, cx + sx / 2, cz + sz / 2)
        if not _overlaps(box, taken) and (is_ok is None or is_ok(box)):
            return _snap(cx, 0.01), _snap(cz, 0.01), turns
    return None
