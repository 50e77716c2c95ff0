"""Semantic description of a house: rooms, doors and objects.

Written next to each generated `.glb` as `<house_id>.semantics.json`. Instruction generation, the top-down
map and the viewer read it. Coordinates follow habitat: metres, y up; room polygons live in the x-z plane.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class Room:
    id: int  # index of the room in the house
    type: str  # "bedroom", "kitchen", "living room", "bathroom", "office", "hallway", ...
    polygon: list[list[float]]  # [[x, z], ...] counter-clockwise outline of the floor
    floor_color: list[float]  # rgb in [0, 1]
    wall_color: list[float]  # rgb in [0, 1]
    name: str = ""  # a unique, human name used in instructions ("the blue bedroom"); may be empty


@dataclass
class Door:
    id: int
    rooms: tuple[int, int]  # the two room ids it connects
    position: list[float]  # [x, y, z] of the doorway centre (y = floor height)
    width: float  # metres


@dataclass
class SceneObject:
    id: int
    category: str  # "sofa", "bed", "table", ...
    color_name: str  # "red", "wooden", ... used in instructions
    color: list[float]  # rgb in [0, 1]
    position: list[float]  # [x, y, z] centre of the footprint on the floor
    size: list[float]  # [sx, sy, sz] axis-aligned extent in metres
    room_id: int


@dataclass
class HouseSemantics:
    house_id: str
    seed: int
    floor_height: float  # y of the floor
    rooms: list[Room] = field(default_factory=list)
    doors: list[Door] = field(default_factory=list)
    objects: list[SceneObject] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json())

    @classmethod
    def from_dict(cls, d: dict) -> HouseSemantics:
        return cls(
            house_id=d["house_id"],
            seed=int(d["seed"]),
            floor_height=float(d["floor_height"]),
            rooms=[Room(**r) for r in d.get("rooms", [])],
            doors=[Door(**{**x, "rooms": tuple(x["rooms"])}) for x in d.get("doors", [])],
            objects=[SceneObject(**o) for o in d.get("objects", [])],
        )

    @classmethod
    def load(cls, path: str | Path) -> HouseSemantics:
        path = Path(path)
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except FileNotFoundError:
            raise FileNotFoundError(f"scene semantics file not found: {path}") from None
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"malformed scene semantics file {path}: {e}") from None

    def room_at(self, x: float, z: float) -> Room | None:
        """The room whose polygon contains the point (x, z), or None (e.g. inside a wall)."""
        for room in self.rooms:
            if _point_in_polygon(x, z, room.polygon):
                return room
        return None


def _point_in_polygon(x: float, z: float, poly: list[list[float]]) -> bool:
    inside = False
    n = len(poly)
    for i in range(n):
        x1, z1 = poly[i]
        x2, z2 = poly[(i + 1) % n]
        if (z1 > z) != (z2 > z):
            xc = x1 + (z - z1) * (x2 - x1) / (z2 - z1)
            if x < xc:
                inside = not inside
    return inside
