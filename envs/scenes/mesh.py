"""Triangle meshes of scenes: a small builder for generated houses, and a loader for any indoor mesh file.

`MeshBuilder` collects flat-shaded primitives (quads, boxes, cylinders) with per-vertex colours into one
`trimesh.Trimesh` (one vertex buffer, one draw call). `load_scene_mesh` reads .glb/.gltf/.obj/.ply files,
including textured ones such as Matterport3D's, and returns the same kind of mesh: textures and materials are
converted to per-vertex colours because the embedded renderer draws vertex colours only.

    from envs.scenes.mesh import load_scene_mesh
    mesh = load_scene_mesh("data/scene_datasets/mp3d/17DRP5sb8fy/17DRP5sb8fy.glb", up="z")
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import trimesh

SUPPORTED_EXTENSIONS = (".glb", ".gltf", ".obj", ".ply")
UP_AXES = ("y", "z")

Color = Sequence[float]  # rgb in [0, 1]

# Box faces by outward normal; used to give the two sides of a wall different colours.
BOX_FACES = ("+x", "-x", "+y", "-y", "+z", "-z")
_FACE_NORMALS = {
    "+x": (1.0, 0.0, 0.0),
    "-x": (-1.0, 0.0, 0.0),
    "+y": (0.0, 1.0, 0.0),
    "-y": (0.0, -1.0, 0.0),
    "+z": (0.0, 0.0, 1.0),
    "-z": (0.0, 0.0, -1.0),
}


class MeshBuilder:
    """Accumulates coloured, flat-shaded triangles; `build()` returns one Trimesh.

    Every primitive gets its own vertices (nothing is shared between faces), so vertex normals are face
    normals and boxes look like boxes under the renderer's directional light.
    """

    def __init__(self) -> None:
        self._vertices: list[np.ndarray] = []  # each [k, 3]
        self._normals: list[np.ndarray] = []  # each [k, 3]
        self._colors: list[np.ndarray] = []  # each [k, 3] in [0, 1]
        self._faces: list[np.ndarray] = []  # each [m, 3], already offset
        self._count = 0

    @property
    def num_vertices(self) -> int:
        return self._count

    def add_triangles(
        self, vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray, color: Color
    ) -> None:
        """Append raw triangles: vertices [k, 3], faces [m, 3] indexing them, normals [k, 3], one colour."""
        vertices = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
        self._vertices.append(vertices)
        self._normals.append(np.asarray(normals, dtype=np.float64).reshape(-1, 3))
        self._colors.append(np.tile(np.asarray(color, dtype=np.float64)[:3], (len(vertices), 1)))
        self._faces.append(np.asarray(faces, dtype=np.int64).reshape(-1, 3) + self._count)
        self._count += len(vertices)

    def add_quad(self, corners: np.ndarray, normal: Sequence[float], color: Color) -> None:
        """A planar quad [4, 3] (corners in order around it) that faces `normal` (its visible side)."""
        corners = np.asarray(corners, dtype=np.float64).reshape(4, 3)
        normal = np.asarray(normal, dtype=np.float64)
        # Wind counter-clockwise as seen from the side the normal points to (OpenGL's front face).
        if np.dot(np.cross(corners[1] - corners[0], corners[2] - corners[0]), normal) < 0:
            corners = corners[::-1]
        self.add_triangles(corners, np.array([[0, 1, 2], [0, 2, 3]]), np.tile(normal, (4, 1)), color)

    def add_box(
        self,
        lo: Sequence[float],
        hi: Sequence[float],
        color: Color,
        face_colors: dict[str, Color] | None = None,
        skip: Sequence[str] = (),
    ) -> None:
        """An axis-aligned box from corner `lo` to `hi`; `face_colors` overrides the colour per face ("+x", ...).

        `skip` leaves faces out (e.g. "-y" under furniture standing on the floor, which nobody can see).
        """
        lo_a, hi_a = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
        if np.any(hi_a - lo_a <= 0):
            return  # degenerate pieces (e.g. a zero-length wall stub next to a door) add nothing
        for face in BOX_FACES:
            if face in skip:
                continue
            axis = "xyz".index(face[1])
            value = hi_a[axis] if face[0] == "+" else lo_a[axis]
            u, v = [a for a in range(3) if a != axis]
            corners = np.zeros((4, 3))
            for i, (cu, cv) in enumerate(
                ((lo_a[u], lo_a[v]), (hi_a[u], lo_a[v]), (hi_a[u], hi_a[v]), (lo_a[u], hi_a[v]))
            ):
                corners[i, axis], corners[i, u], corners[i, v] = value, cu, cv
            self.add_quad(corners, _FACE_NORMALS[face], (face_colors or {}).get(face, color))

    def add_cylinder(
        self, base_center: Sequence[float], radius: float, height: float, color: Color, sections: int = 12
    ) -> None:
        """A closed vertical cylinder standing on `base_center` (x, y, z); flat caps, smooth side."""
        cx, cy, cz = (float(c) for c in base_center)
        angles = np.linspace(0.0, 2.0 * math.pi, sections, endpoint=False)
        ring = np.stack([np.cos(angles), np.zeros_like(angles), np.sin(angles)], axis=1)  # [S, 3] unit circle
        bottom = ring * radius + (cx, cy, cz)
        top = bottom + np.array([0.0, height, 0.0])
        # Side: two rings sharing radial normals (smooth shading around, distinct from the caps).
        side_v = np.vstack([bottom, top])
        i = np.arange(sections)
        j = (i + 1) % sections
        # Outward winding: (b_i, t_i, t_j) and (b_i, t_j, b_j) are counter-clockwise seen from outside.
        side_f = np.vstack([np.stack([i, i + sections, j + sections], 1), np.stack([i, j + sections, j], 1)])
        self.add_triangles(side_v, side_f, np.vstack([ring, ring]), color)
        for y_cap, normal, verts in ((cy + height, (0.0, 1.0, 0.0), top), (cy, (0.0, -1.0, 0.0), bottom)):
            center = np.array([[cx, y_cap, cz]])
            fan = np.stack([np.zeros(sections, dtype=int), i + 1, j + 1], 1)
            if normal[1] > 0:
                fan = fan[:, [0, 2, 1]]  # seen from above, the ring runs clockwise: flip to face up
            self.add_triangles(np.vstack([center, verts]), fan, np.tile(normal, (sections + 1, 1)), color)

    def build(self) -> trimesh.Trimesh:
        """One Trimesh with uint8 RGBA vertex colours and the builder's (flat) vertex normals."""
        if not self._vertices:
            raise ValueError("MeshBuilder.build: nothing was added")
        vertices = np.vstack(self._vertices)
        colors = (np.vstack(self._colors).clip(0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        rgba = np.hstack([colors, np.full((len(colors), 1), 255, dtype=np.uint8)])
        return trimesh.Trimesh(
            vertices=vertices,
            faces=np.vstack(self._faces),
            vertex_normals=np.vstack(self._normals),
            vertex_colors=rgba,
            process=False,  # keep duplicated vertices: they carry the flat normals and per-face colours
        )


def load_scene_mesh(path: str | Path, up: str = "y") -> trimesh.Trimesh:
    """Load an indoor scene mesh (.glb/.gltf/.obj/.ply) as one Trimesh with vertex colours and normals.

    Every geometry of the file is placed by its scene-graph transform and concatenated. Textures are sampled
    at the vertices' UVs and materials contribute their base colour, because the embedded renderer draws
    vertex colours only. `up="z"` turns a z-up mesh (Matterport3D's .glb) into habitat's y-up frame
    (x, y, z) -> (x, z, -y), which is the frame R2R-CE / RxR-CE episode coordinates are given in.
    """
    path = Path(path)
    if up not in UP_AXES:
        raise ValueError(f"unknown up axis '{up}'; available: {', '.join(UP_AXES)}")
    if not path.is_file():
        raise FileNotFoundError(f"scene mesh not found: {path}")
    if path.suffix.lower() not in SUPPORTED_EXTENSIONS:
        raise ValueError(
            f"unsupported scene mesh format '{path.suffix}' ({path}); supported: {', '.join(SUPPORTED_EXTENSIONS)}"
        )
    try:
        loaded = trimesh.load(str(path), force="scene", process=False)
    except Exception as e:  # trimesh raises many types for corrupt files; name the file instead
        raise ValueError(f"could not read scene mesh {path}: {type(e).__name__}: {e}") from None
    meshes = [g for g in loaded.dump() if isinstance(g, trimesh.Trimesh) and len(g.faces) > 0]
    if not meshes:
        raise ValueError(f"scene mesh {path} contains no triangles")
    vertices, faces, colors, normals, offset = [], [], [], [], 0
    for m in meshes:
        vertices.append(np.asarray(m.vertices, dtype=np.float64))
        faces.append(np.asarray(m.faces, dtype=np.int64) + offset)
        colors.append(_vertex_colors_of(m))
        normals.append(np.asarray(m.vertex_normals, dtype=np.float64))
        offset += len(m.vertices)
    v, n = np.vstack(vertices), np.vstack(normals)
    if up == "z":
        z_up_to_y_up = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
        v, n = v @ z_up_to_y_up.T, n @ z_up_to_y_up.T
    return trimesh.Trimesh(
        vertices=v, faces=np.vstack(faces), vertex_normals=n, vertex_colors=np.vstack(colors), process=False
    )


def _vertex_colors_of(mesh: trimesh.Trimesh) -> np.ndarray:
    """[N, 4] uint8 RGBA per vertex, whatever the mesh's visual (vertex/face colours, texture, material)."""
    visual = mesh.visual
    n = len(mesh.vertices)
    if visual.kind == "texture" or isinstance(visual, trimesh.visual.texture.TextureVisuals):
        try:
            visual = visual.to_color()  # samples the texture at each vertex's UV, or uses the material colour
        except Exception:  # a material without an image and without a colour: fall back to grey below
            visual = None
    if visual is not None and visual.kind in ("vertex", "face"):
        vc = np.asarray(visual.vertex_colors, dtype=np.uint8)
        if vc.shape == (n, 4):
            return vc
    if visual is not None and visual.kind is None and hasattr(visual, "vertex_colors"):
        vc = np.asarray(visual.vertex_colors, dtype=np.uint8)  # trimesh's default colour
        if vc.shape == (n, 4):
            return vc
    return np.tile(np.array([153, 153, 153, 255], dtype=np.uint8), (n, 1))
