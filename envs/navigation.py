"""Navigability grid and geodesic distances of one floor of a scene mesh.

The embedded simulator's navmesh: a 2-D occupancy grid sliced out of the triangle mesh at the agent's floor
height. A cell is navigable when there is floor under it, nothing between `obstacle_min_height` and
`agent_height` above the floor over it, and no such obstacle within `agent_radius` of it. Geodesic distances
are fast-marching distance fields over the navigable cells (scikit-fmm), with a pure-scipy Dijkstra fallback.

Grid layout: `navigable[row, col]`, rows follow world z and columns world x; `origin = (x0, z0)` is the world
(x, z) of the *corner* of cell [0, 0] (its minimum x and z), so cell [r, c] covers
x in [x0 + c * res, x0 + (c + 1) * res) and z in [z0 + r * res, z0 + (r + 1) * res), and its centre is
(x0 + (c + 0.5) * res, z0 + (r + 0.5) * res).

Differences from habitat's Recast navmesh: the grid is one flat floor, so ramps and stairs to another floor
are not traversable (a goal on another storey is unreachable: geodesic distance inf); clearance is measured to
the edge of 5 cm cells, so it is up to half a cell more conservative; ledges lower than obstacle_min_height
(10 cm; Recast climbs 20 cm) are stepped over.

    grid = NavGrid.from_mesh(mesh, floor_y=0.0, config=NavGridConfig())
    grid.geodesic_distance(start_xyz, goal_xyz)   # metres, inf when unreachable
    grid.shortest_path(start_xyz, goal_xyz)       # [start, waypoint..., goal]
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

FIELD_METHODS = ("fmm", "dijkstra")


@dataclass
class NavGridConfig:
    resolution: float = 0.05  # cell size in metres
    agent_radius: float = 0.1  # clearance kept from every obstacle, metres
    agent_height: float = 1.5  # anything below this height above the floor blocks the agent, metres
    obstacle_min_height: float = 0.1  # geometry lower than this above the floor is stepped over, metres
    floor_tolerance: float = 0.15  # a floor surface lies within +- this of the floor height, metres
    floor_normal_min: float = 0.7  # |normal.y| of a floor triangle (0.7 ~ slopes up to 45 degrees)
    min_island_area: float = 0.25  # navigable islands smaller than this (m^2) are dropped: scan noise, shelves
    field_method: str = "fmm"  # "fmm" (scikit-fmm fast marching) or "dijkstra" (scipy, 16-connected grid)
    field_cache_size: int = 64  # distance fields kept per grid (LRU, one per goal cell) ...
    field_cache_mb: float = 512.0  # ... and at most this much memory for them (Matterport grids are large)
    max_cells: int = 50_000_000  # refuse grids larger than this (a wrong floor height or unit, not a house)

    def __post_init__(self) -> None:
        if not self.resolution > 0:
            raise ValueError(f"NavGridConfig.resolution must be > 0 metres, got {self.resolution}")
        if not self.agent_radius >= 0:
            raise ValueError(f"NavGridConfig.agent_radius must be >= 0 metres, got {self.agent_radius}")
        if not self.agent_height > self.obstacle_min_height >= 0:
            raise ValueError(
                "NavGridConfig needs agent_height > obstacle_min_height >= 0, got "
                f"agent_height={self.agent_height}, obstacle_min_height={self.obstacle_min_height}"
            )
        if not self.floor_tolerance >= 0:
            raise ValueError(f"NavGridConfig.floor_tolerance must be >= 0, got {self.floor_tolerance}")
        if not 0.0 < self.floor_normal_min <= 1.0:
            raise ValueError(f"NavGridConfig.floor_normal_min must be in (0, 1], got {self.floor_normal_min}")
        if self.field_method not in FIELD_METHODS:
            raise ValueError(f"NavGridConfig.field_method: unknown method '{self.field_method}'; available: {FIELD_METHODS}")
        if self.field_cache_size < 1:
            raise ValueError(f"NavGridConfig.field_cache_size must be >= 1, got {self.field_cache_size}")
        if not self.min_island_area >= 0:
            raise ValueError(f"NavGridConfig.min_island_area must be >= 0 m^2, got {self.min_island_area}")
        if not self.field_cache_mb > 0:
            raise ValueError(f"NavGridConfig.field_cache_mb must be > 0, got {self.field_cache_mb}")


# ----------------------------------------------------------------------------------------------------------
# Rasterising the mesh


def _sample_triangles(tris: np.ndarray, spacing: float, chunk_points: int = 2_000_000):
    """Yield [P, 3] points covering the triangles [F, 3, 3] with at most `spacing` between neighbours.

    Each triangle gets a barycentric lattice with n subdivisions per edge, n from its longest edge. Triangles
    are grouped by n (rounded up to a short ladder of values when there are many) so every group is one
    vectorised product, and groups are cut in chunks to bound memory on Matterport-sized meshes.
    """
    if len(tris) == 0:
        return
    e = np.stack([tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 1], tris[:, 0] - tris[:, 2]], axis=1)  # [F, 3, 3]
    longest = np.sqrt((e * e).sum(-1)).max(-1)  # [F]
    n = np.maximum(1, np.ceil(longest / spacing)).astype(np.int64)
    # Round n up to 1, 2, 3, 4, 6, 8, 12, 16, 24, ... so there are few groups.
    if len(np.unique(n)) > 64:  # many sizes (scanned meshes): few groups matter more than a few extra points
        ladder = np.unique(np.concatenate([[1, 2, 3], 2 ** np.arange(2, 16), 3 * 2 ** np.arange(1, 15)]))
        n = ladder[np.searchsorted(ladder, n)]
    for k in np.unique(n):
        idx = np.nonzero(n == k)[0]
        i, j = np.meshgrid(np.arange(k + 1), np.arange(k + 1), indexing="ij")
        keep = (i + j) <= k
        bary = np.stack([i[keep], j[keep], k - i[keep] - j[keep]], axis=1).astype(np.float64) / k  # [K, 3]
        per_chunk = max(1, chunk_points // len(bary))
        for s in range(0, len(idx), per_chunk):
            t = tris[idx[s : s + per_chunk]]  # [f, 3, 3]
            yield np.matmul(bary[None], t).reshape(-1, 3)  # [f, K, 3] -> [f * K, 3]; matmul is BLAS, einsum is not


def _mark(grid: np.ndarray, pts: np.ndarray, x0: float, z0: float, res: float) -> None:
    """Set grid cells containing the points' (x, z) to True (points outside the grid are ignored)."""
    c = np.floor((pts[:, 0] - x0) / res).astype(np.int64)
    r = np.floor((pts[:, 2] - z0) / res).astype(np.int64)
    ok = (r >= 0) & (r < grid.shape[0]) & (c >= 0) & (c < grid.shape[1])
    grid[r[ok], c[ok]] = True


def rasterize_floor_and_obstacles(
    vertices: np.ndarray, faces: np.ndarray, floor_y: float, config: NavGridConfig
) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """(floor [R, C] bool, obstacle [R, C] bool, origin (x0, z0)) of the mesh sliced at `floor_y`.

    Floor: points of near-horizontal triangles within `floor_tolerance` of floor_y. Obstacle: any point of any
    triangle strictly between floor_y + obstacle_min_height and floor_y + agent_height (its x-z footprint).
    """
    res = config.resolution
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    tris = v[f]  # [F, 3, 3]
    lo_y, hi_y = floor_y + config.obstacle_min_height, floor_y + config.agent_height
    tri_min_y, tri_max_y = tris[..., 1].min(1), tris[..., 1].max(1)
    normal = np.cross(tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0])  # [F, 3]
    norm = np.linalg.norm(normal, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ny = np.abs(normal[:, 1]) / norm
    # abs(): generated and scanned meshes do not agree on winding; a horizontal surface at floor height is floor.
    is_floor = (
        (norm > 0)
        & (ny >= config.floor_normal_min)
        & (tri_max_y >= floor_y - config.floor_tolerance)
        & (tri_min_y <= floor_y + config.floor_tolerance)
    )
    is_obst = (tri_max_y > lo_y) & (tri_min_y < hi_y)
    relevant = is_floor | is_obst
    if not relevant.any():
        raise ValueError(f"the mesh has no floor or obstacle near height y={floor_y:.3f} (mesh y range "
                         f"{v[:, 1].min():.3f}..{v[:, 1].max():.3f}); is the floor height right?")
    xz = tris[relevant][..., [0, 2]].reshape(-1, 2)
    x0, z0 = xz.min(0) - 2 * res  # a blocked margin around everything keeps erosion and lookups in bounds
    x1, z1 = xz.max(0) + 2 * res
    cols, rows = math.ceil((x1 - x0) / res), math.ceil((z1 - z0) / res)
    if rows * cols > config.max_cells:
        raise ValueError(f"navigation grid of {rows}x{cols} cells at {res} m exceeds max_cells={config.max_cells}; "
                         "is the mesh in metres?")
    floor = np.zeros((rows, cols), dtype=bool)
    obstacle = np.zeros((rows, cols), dtype=bool)
    spacing = 0.5 * res  # two samples per cell along any edge: no cell a triangle crosses is skipped
    for pts in _sample_triangles(tris[is_floor], spacing):
        pts = pts[np.abs(pts[:, 1] - floor_y) <= config.floor_tolerance]
        _mark(floor, pts, x0, z0, res)
    for pts in _sample_triangles(tris[is_obst], spacing):
        pts = pts[(pts[:, 1] > lo_y) & (pts[:, 1] < hi_y)]
        _mark(obstacle, pts, x0, z0, res)
    # Sampling can miss a cell that two floor triangles share only in part (neither's points land in it);
    # close such one-cell holes, or erosion would grow each into a 25 cm blocked disc.
    floor = ndimage.binary_closing(floor, structure=np.ones((3, 3), dtype=bool))
    return floor, obstacle, (float(x0), float(z0))


def erode(free: np.ndarray, radius: float, resolution: float) -> np.ndarray:
    """Cells of `free` whose centre lies at least `radius` from every non-free cell.

    A blocked cell may be blocked anywhere inside it, so the clearance is measured to its near edge:
    centre distance - res / 2 >= radius.
    """
    if radius <= 0:
        return free.copy()
    edt = ndimage.distance_transform_edt(free)  # [R, C] cells to the nearest non-free cell centre
    return (edt - 0.5) * resolution >= radius - 1e-9


def drop_small_islands(navigable: np.ndarray, min_cells: float) -> np.ndarray:
    """The navigable mask without 8-connected islands of fewer than `min_cells` cells.

    Scanned meshes leave floor-height patches inside furniture and under beds; a goal or start snapped onto
    one would be unreachable from everywhere else (habitat's navmesh drops small regions the same way).
    """
    if min_cells <= 1:
        return navigable
    labels, n = ndimage.label(navigable, structure=np.ones((3, 3), dtype=bool))
    if n == 0:
        return navigable
    sizes = np.bincount(labels.ravel())  # [n + 1]; index 0 counts the blocked cells
    keep = sizes >= min_cells
    keep[0] = False
    return keep[labels]


# ----------------------------------------------------------------------------------------------------------
# The grid


class NavGrid:
    """Navigable cells of one floor plus geodesic queries over them (see the module docstring for layout)."""

    def __init__(
        self,
        navigable: np.ndarray,
        origin: tuple[float, float],
        resolution: float,
        floor_y: float,
        config: NavGridConfig | None = None,
    ) -> None:
        self.navigable = np.ascontiguousarray(navigable, dtype=bool)  # [rows (z), cols (x)]
        self.origin = (float(origin[0]), float(origin[1]))  # world (x, z) of the corner of cell [0, 0]
        self.resolution = float(resolution)
        self.floor_y = float(floor_y)
        self.config = config if config is not None else NavGridConfig(resolution=resolution)
        self._fields: OrderedDict[tuple[int, int, str], np.ndarray] = OrderedDict()
        self._descent: OrderedDict[tuple[int, int, str], np.ndarray] = OrderedDict()
        self._nearest: np.ndarray | None = None  # [2, R, C] index of the nearest navigable cell (lazy)
        self._labels: np.ndarray | None = None  # [R, C] connected-component ids, 0 = not navigable (lazy)
        self._graph = None  # scipy sparse adjacency for the Dijkstra fallback (lazy)

    # -- construction -------------------------------------------------------------------------------------
    @classmethod
    def from_mesh(cls, mesh, floor_y: float, config: NavGridConfig | None = None) -> NavGrid:
        """Slice a trimesh.Trimesh (or anything with `.vertices`, `.faces`) at `floor_y` into a NavGrid."""
        config = config if config is not None else NavGridConfig()
        floor, obstacle, origin = rasterize_floor_and_obstacles(mesh.vertices, mesh.faces, floor_y, config)
        navigable = erode(floor & ~obstacle, config.agent_radius, config.resolution)
        navigable = drop_small_islands(navigable, config.min_island_area / config.resolution**2)
        return cls(navigable, origin, config.resolution, floor_y, config)

    def save(self, path: str | Path) -> None:
        """Write the grid (not its distance fields) to an .npz file."""
        np.savez_compressed(
            path, navigable=self.navigable, origin=np.array(self.origin), resolution=self.resolution,
            floor_y=self.floor_y, config=np.array(repr(sorted(asdict(self.config).items()))),
        )

    @classmethod
    def load(cls, path: str | Path, config: NavGridConfig | None = None) -> NavGrid:
        """Read a grid written by `save`."""
        with np.load(path) as z:
            return cls(z["navigable"], tuple(z["origin"]), float(z["resolution"]), float(z["floor_y"]), config)

    # -- coordinates --------------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        return self.navigable.shape  # type: ignore[return-value]

    def world_to_cell(self, xyz: np.ndarray) -> tuple[int, int]:
        """(row, col) of the cell containing the point's (x, z); may lie outside the grid."""
        p = np.asarray(xyz, dtype=np.float64).reshape(-1)
        return (math.floor((p[2] - self.origin[1]) / self.resolution),
                math.floor((p[0] - self.origin[0]) / self.resolution))

    def cell_to_world(self, row: int, col: int) -> np.ndarray:
        """World [x, floor_y, z] of the centre of cell (row, col)."""
        return np.array([self.origin[0] + (col + 0.5) * self.resolution, self.floor_y,
                         self.origin[1] + (row + 0.5) * self.resolution])

    def in_bounds(self, row: int, col: int) -> bool:
        return 0 <= row < self.navigable.shape[0] and 0 <= col < self.navigable.shape[1]

    def is_navigable(self, xyz: np.ndarray) -> bool:
        """Whether the point's (x, z) falls in a navigable cell (its height is not checked)."""
        r, c = self.world_to_cell(xyz)
        return self.in_bounds(r, c) and bool(self.navigable[r, c])

    def _nearest_index(self) -> np.ndarray:
        if self._nearest is None:
            if not self.navigable.any():
                raise ValueError("the navigation grid has no navigable cell")
            # EDT of the non-navigable mask: for every cell, the index of the closest navigable cell.
            _, idx = ndimage.distance_transform_edt(~self.navigable, return_indices=True)
            self._nearest = idx.astype(np.int32)  # [2, R, C]
        return self._nearest

    def snap_cell(self, xyz: np.ndarray) -> tuple[int, int]:
        """(row, col) of the navigable cell nearest to the point."""
        r, c = self.world_to_cell(xyz)
        r = min(max(r, 0), self.navigable.shape[0] - 1)
        c = min(max(c, 0), self.navigable.shape[1] - 1)
        if self.navigable[r, c]:
            return r, c
        idx = self._nearest_index()
        return int(idx[0, r, c]), int(idx[1, r, c])

    def snap(self, xyz: np.ndarray) -> np.ndarray:
        """Nearest navigable point [x, floor_y, z]: the point itself when navigable, else the closest point of
        the nearest navigable cell."""
        p = np.asarray(xyz, dtype=np.float64).reshape(3)
        r, c = self.snap_cell(p)
        res, eps = self.resolution, 1e-6 * self.resolution
        x = min(max(p[0], self.origin[0] + c * res + eps), self.origin[0] + (c + 1) * res - eps)
        z = min(max(p[2], self.origin[1] + r * res + eps), self.origin[1] + (r + 1) * res - eps)
        return np.array([x, self.floor_y, z])

    def distance_to_navigable(self, xyz: np.ndarray) -> float:
        """Horizontal distance (metres) from the point to the nearest navigable point; 0 when navigable."""
        p = np.asarray(xyz, dtype=np.float64).reshape(3)
        s = self.snap(p)
        return float(math.hypot(s[0] - p[0], s[2] - p[2]))

    def components(self) -> np.ndarray:
        """[R, C] int labels of 8-connected navigable islands (0 = not navigable)."""
        if self._labels is None:
            self._labels, _ = ndimage.label(self.navigable, structure=np.ones((3, 3), dtype=bool))
        return self._labels

    def segment_free(self, a: np.ndarray, b: np.ndarray) -> bool:
        """Whether the straight x-z segment a -> b stays on navigable cells (sampled every res / 4)."""
        return self.free_fraction(a, b) >= 1.0

    def free_fraction(self, a: np.ndarray, b: np.ndarray) -> float:
        """Largest t in [0, 1] such that a + s (b - a) is navigable for every sampled s <= t (0 if a is not)."""
        a = np.asarray(a, dtype=np.float64).reshape(-1)
        b = np.asarray(b, dtype=np.float64).reshape(-1)
        length = math.hypot(b[0] - a[0], b[2] - a[2])
        n = max(2, math.ceil(length / (0.25 * self.resolution)) + 1)
        t = np.arange(n) * (1.0 / (n - 1))  # [n] in [0, 1]
        inv = 1.0 / self.resolution
        c = np.floor((a[0] - self.origin[0] + t * (b[0] - a[0])) * inv).astype(np.int64)
        r = np.floor((a[2] - self.origin[1] + t * (b[2] - a[2])) * inv).astype(np.int64)
        rows, cols = self.navigable.shape
        ok = (r >= 0) & (r < rows) & (c >= 0) & (c < cols)
        ok[ok] = self.navigable[r[ok], c[ok]]
        if ok.all():
            return 1.0
        first_bad = int(np.argmin(ok))
        return 0.0 if first_bad == 0 else float(t[first_bad - 1])

    # -- distance fields ----------------------------------------------------------------------------------
    def distance_field(self, goal_xyz: np.ndarray, method: str | None = None) -> np.ndarray:
        """[R, C] float64 geodesic distance (metres) from every cell centre to the goal; inf where unreachable.

        The goal is first snapped to the navigable area. Fields are cached per (goal cell, method), LRU.
        """
        method = method or self.config.field_method
        if method not in FIELD_METHODS:
            raise ValueError(f"unknown distance field method '{method}'; available: {FIELD_METHODS}")
        goal = self.snap(goal_xyz)
        gr, gc = self.world_to_cell(goal)
        key = (gr, gc, method)
        field = self._fields.get(key)
        if field is not None:
            self._fields.move_to_end(key)
            return field
        field = self._field_fmm(goal, gr, gc) if method == "fmm" else self._field_dijkstra(goal, gr, gc)
        field = field.astype(np.float32)  # half the memory; float32 resolves 10 um over 100 m
        field.setflags(write=False)
        self._fields[key] = field
        # A field (float32) and its descent map (2 x int32) cost 12 bytes per cell; keep at least two fields.
        per_field = 12.0 * self.navigable.size / 2**20
        limit = max(2, min(self.config.field_cache_size, int(self.config.field_cache_mb / per_field)))
        while len(self._fields) > limit:
            old, _ = self._fields.popitem(last=False)
            self._descent.pop(old, None)
        return field

    def _cell_centres(self) -> tuple[np.ndarray, np.ndarray]:
        rows, cols = self.navigable.shape
        xs = self.origin[0] + (np.arange(cols) + 0.5) * self.resolution  # [C]
        zs = self.origin[1] + (np.arange(rows) + 0.5) * self.resolution  # [R]
        return xs, zs

    def _field_fmm(self, goal: np.ndarray, gr: int, gc: int) -> np.ndarray:
        import skfmm

        res = self.resolution
        # Seed with the exact distance to the goal point inside a one-cell disc around it: a point seed would
        # carry fast marching's first-order error near the source (about half a cell) into the whole field.
        r0 = 1.0 * res
        rows, cols = self.navigable.shape
        r_lo, r_hi, c_lo, c_hi = max(gr - 3, 0), min(gr + 4, rows), max(gc - 3, 0), min(gc + 4, cols)
        xs, zs = self._cell_centres()
        phi = np.ones((rows, cols))  # [R, C]; positive = outside the seed disc
        local = np.hypot(xs[None, c_lo:c_hi] - goal[0], zs[r_lo:r_hi, None] - goal[2]) - r0
        phi[r_lo:r_hi, c_lo:c_hi] = np.minimum(local, 1.0)
        phi[gr, gc] = min(phi[gr, gc], 0.0)  # the goal's own cell is always inside the seed
        masked = np.ma.MaskedArray(phi, mask=~self.navigable)
        try:
            d = skfmm.distance(masked, dx=res)
        except ValueError:  # the seed disc holds no zero crossing (an isolated goal cell): only it is reachable
            field = np.full((rows, cols), np.inf)
            field[gr, gc] = math.hypot(xs[gc] - goal[0], zs[gr] - goal[2])
            return field
        field = np.ma.filled(d, np.inf).astype(np.float64) + r0
        field[~self.navigable] = np.inf
        return np.maximum(field, 0.0)

    def _adjacency(self):
        """Sparse symmetric 16-connected graph over navigable cells (each move only over navigable cells)."""
        if self._graph is None:
            from scipy.sparse import coo_matrix

            nav = self.navigable
            rows, cols = nav.shape
            ids = np.arange(rows * cols).reshape(rows, cols)
            src, dst, w = [], [], []
            # 16-connected (king + knight moves): the octile metric of 8 neighbours overestimates oblique
            # distances by up to 8 %, knight moves bring that under 3 %. Each move lists the cells it crosses,
            # which must be navigable too (no corner cutting).
            moves = (
                (0, 1, ()), (1, 0, ()), (1, 1, ((1, 0), (0, 1))), (1, -1, ((1, 0), (0, -1))),
                (1, 2, ((0, 1), (1, 1))), (2, 1, ((1, 0), (1, 1))),
                (1, -2, ((0, -1), (1, -1))), (2, -1, ((1, 0), (1, -1))),
            )
            for dr, dc, crossed in moves:
                cost = math.hypot(dr, dc)
                c_lo, c_hi = max(0, -dc), cols - max(0, dc)

                def win(arr: np.ndarray, er: int, ec: int, c_lo=c_lo, c_hi=c_hi, dr=dr) -> np.ndarray:
                    # The cells at offset (er, ec) from every base cell whose (dr, dc) neighbour is in bounds.
                    return arr[er : rows - dr + er, c_lo + ec : c_hi + ec]

                ok = win(nav, 0, 0) & win(nav, dr, dc)
                for er, ec in crossed:
                    ok &= win(nav, er, ec)
                ia, ib = win(ids, 0, 0)[ok], win(ids, dr, dc)[ok]
                src.append(ia)
                dst.append(ib)
                w.append(np.full(len(ia), cost * self.resolution))
            s, t, ww = np.concatenate(src), np.concatenate(dst), np.concatenate(w)
            self._graph = coo_matrix((ww, (s, t)), shape=(rows * cols, rows * cols)).tocsr()
        return self._graph

    def _field_dijkstra(self, goal: np.ndarray, gr: int, gc: int) -> np.ndarray:
        from scipy.sparse.csgraph import dijkstra

        rows, cols = self.navigable.shape
        d = dijkstra(self._adjacency(), directed=False, indices=gr * cols + gc)  # [R * C]
        centre = self.cell_to_world(gr, gc)
        # Distances are to the goal cell's centre; add the goal's offset inside it (at most half a diagonal).
        field = d.reshape(rows, cols) + math.hypot(centre[0] - goal[0], centre[2] - goal[2])
        field[~self.navigable] = np.inf
        return field

    # -- queries ------------------------------------------------------------------------------------------
    def lookup(self, field: np.ndarray, xyz: np.ndarray) -> float:
        """Bilinear value of a distance field at the point's (x, z), over the finite neighbouring cells.

        A point off the navigable area is snapped to it first (as habitat snaps to its navmesh).
        """
        p = np.asarray(xyz, dtype=np.float64).reshape(3)
        if not self.is_navigable(p):
            p = self.snap(p)
        u = (p[0] - self.origin[0]) / self.resolution - 0.5  # continuous column; cell centres are integers
        v = (p[2] - self.origin[1]) / self.resolution - 0.5
        c0, r0 = math.floor(u), math.floor(v)
        fu, fv = u - c0, v - r0
        total, weight = 0.0, 0.0
        rows, cols = field.shape
        for dr, dc, wgt in ((0, 0, (1 - fu) * (1 - fv)), (0, 1, fu * (1 - fv)), (1, 0, (1 - fu) * fv), (1, 1, fu * fv)):
            r, c = r0 + dr, c0 + dc
            if 0 <= r < rows and 0 <= c < cols and wgt > 0 and math.isfinite(field[r, c]):
                total += wgt * float(field[r, c])
                weight += wgt
        if weight > 1e-9:
            return total / weight
        r, c = self.world_to_cell(p)
        return float(field[r, c]) if self.in_bounds(r, c) else math.inf

    def geodesic_distance(self, a: np.ndarray, b: np.ndarray, method: str | None = None) -> float:
        """Shortest navigable distance from a to b in metres (inf when they are on different islands)."""
        return self.lookup(self.distance_field(b, method), a)

    def _descent_map(self, field: np.ndarray, key: tuple[int, int, str]) -> np.ndarray:
        """[2, R, C] int: for every cell, the 8-neighbour with the smallest field value (itself at minima)."""
        nxt = self._descent.get(key)
        if nxt is not None:
            return nxt
        rows, cols = field.shape
        padded = np.pad(field, 1, constant_values=np.inf)  # [R + 2, C + 2]
        offsets = [(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1)]

        def shifted(dr: int, dc: int) -> np.ndarray:
            return padded[1 + dr : 1 + dr + rows, 1 + dc : 1 + dc + cols]

        layers = []
        for dr, dc in offsets:
            v = shifted(dr, dc)
            if dr and dc:  # a diagonal move must not cut a blocked corner: both orthogonal cells reachable
                v = np.where(np.isfinite(shifted(dr, 0)) & np.isfinite(shifted(0, dc)), v, np.inf)
            layers.append(v)
        stack = np.stack(layers)  # [9, R, C]
        best = np.argmin(stack, axis=0)  # [R, C]; offset (0, 0) is index 4, kept only at local minima
        off = np.array(offsets)  # [9, 2]
        rr, cc = np.mgrid[0:rows, 0:cols]
        nxt = np.stack([rr + off[best, 0], cc + off[best, 1]]).astype(np.int32)  # [2, R, C]
        self._descent[key] = nxt
        return nxt

    def _cell_path(self, a: np.ndarray, b: np.ndarray, method: str | None) -> list[tuple[int, int]] | None:
        """Cells from a's cell down the goal's distance field to the goal cell; None when unreachable."""
        method = method or self.config.field_method
        field = self.distance_field(b, method)
        goal = self.snap(b)
        key = (*self.world_to_cell(goal), method)
        r, c = self.snap_cell(a)
        if not math.isfinite(field[r, c]):
            return None
        nxt = self._descent_map(field, key)
        cells = [(r, c)]
        for _ in range(field.size):
            nr, nc = int(nxt[0, r, c]), int(nxt[1, r, c])
            if (nr, nc) == (r, c):
                break
            r, c = nr, nc
            cells.append((r, c))
        return cells

    def shortest_path(self, a: np.ndarray, b: np.ndarray, method: str | None = None) -> list[np.ndarray]:
        """Waypoints [a, ..., b] of a short navigable path (grid descent, then straightened by line of sight).

        Returns [] when b is unreachable from a. Intermediate waypoints are at the floor height.
        """
        a = np.asarray(a, dtype=np.float64).reshape(3)
        b = np.asarray(b, dtype=np.float64).reshape(3)
        cells = self._cell_path(a, b, method)
        if cells is None:
            return []
        pts = [a] + [self.cell_to_world(r, c) for r, c in cells[1:-1]] + [self.snap(b)]
        waypoints = [a]
        i = 0
        while i < len(pts) - 1:
            if self.segment_free(pts[i], pts[-1]):
                waypoints.append(pts[-1])
                break
            j = i + 1
            # Greedy string pulling: extend the straight segment from pts[i] while it stays navigable.
            while j + 1 < len(pts) and self.segment_free(pts[i], pts[j + 1]):
                j += 1
            waypoints.append(pts[j])
            i = j
        last = waypoints[-1]
        if len(waypoints) > 1 and math.hypot(last[0] - b[0], last[2] - b[2]) < 1e-6:
            waypoints[-1] = b  # the goal was navigable: end exactly on it
        else:
            waypoints.append(b)  # the goal lies off the navigable area: end on it after its snapped point
        return waypoints

    def next_waypoint(self, a: np.ndarray, b: np.ndarray, method: str | None = None) -> np.ndarray | None:
        """The first corner of `shortest_path(a, b)` after a (b itself when in sight); None when unreachable.

        Cheaper than the whole path: only the first straight segment is traced.
        """
        a = np.asarray(a, dtype=np.float64).reshape(3)
        b = np.asarray(b, dtype=np.float64).reshape(3)
        cells = self._cell_path(a, b, method)
        if cells is None:
            return None
        goal = self.snap(b)
        if self.segment_free(a, goal):
            return b
        if len(cells) < 2:
            return b
        # Visibility along the descent path is (almost always) a prefix: find its end by doubling, then
        # bisection: ~2 log2(n) line-of-sight tests instead of n.
        last_ok, hi = 0, 1
        while hi < len(cells) and self.segment_free(a, self.cell_to_world(*cells[hi])):
            last_ok, hi = hi, hi * 2
        hi = min(hi, len(cells))
        while hi - last_ok > 1:
            mid = (last_ok + hi) // 2
            if self.segment_free(a, self.cell_to_world(*cells[mid])):
                last_ok = mid
            else:
                hi = mid
        return self.cell_to_world(*cells[max(last_ok, 1)])
