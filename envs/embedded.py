"""The embedded VLN-CE simulator: scene mesh + navigation grid + kinematics + OpenGL RGB-D camera.

The default backend, with no dependency beyond numpy/scipy/trimesh/moderngl: it runs on a laptop CPU
(Mesa's llvmpipe through EGL) and on GPU machines (the NVIDIA EGL driver). It implements
`envs.backend.SimulatorBackend` with habitat's conventions, so R2R-CE / RxR-CE episodes run unchanged.

    sim = EmbeddedSimulator(EmbeddedSimConfig(width=224, height=224), scenes_root="data/scene_datasets")
    sim.reset(episode)
    collided = sim.step(MOVE_FORWARD)
    obs = sim.observe()              # {"rgb": [H, W, 3] uint8, "depth": [H, W, 1] float32 metres}

Scenes are loaded once and kept while consecutive episodes share them; navigation grids are built per floor
height and cached on disk (`<cache>/navgrid/`), keyed by the mesh file's content hash and the grid settings.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from envs.constants import (
    AGENT_HEIGHT_M,
    AGENT_RADIUS_M,
    CAMERA_HEIGHT_M,
    DEFAULT_RESOLUTION,
    FORWARD_STEP_M,
    HFOV_DEG,
    OBS_DEPTH,
    OBS_RGB,
    TURN_ANGLE_DEG,
)
from envs.datasets.episode import Episode
from envs.geometry import normalize_quaternion
from envs.kinematics import AgentState, KinematicsConfig, apply_action
from envs.navigation import NavGrid, NavGridConfig
from envs.paths import cache_dir

SCENE_UP_CHOICES = ("auto", "y", "z")


@dataclass
class EmbeddedSimConfig:
    width: int = DEFAULT_RESOLUTION  # camera image width, pixels
    height: int = DEFAULT_RESOLUTION  # camera image height, pixels
    hfov_deg: float = HFOV_DEG  # horizontal field of view, degrees
    camera_height: float = CAMERA_HEIGHT_M  # camera above the agent's feet, metres
    agent_radius: float = AGENT_RADIUS_M  # clearance kept from obstacles, metres
    agent_height: float = AGENT_HEIGHT_M  # obstacles below this height block the agent, metres
    forward_step: float = FORWARD_STEP_M  # metres per MOVE_FORWARD
    turn_angle: float = TURN_ANGLE_DEG  # degrees per TURN_LEFT / TURN_RIGHT
    allow_sliding: bool = True  # slide along walls on collision (habitat / VLN-CE behaviour)
    grid_resolution: float = 0.05  # navigation grid cell size, metres
    start_snap_tolerance: float = 0.3  # a start this close to the navigable area is snapped onto it, metres
    scene_up: str = "auto"  # up axis of scene files: "y", "z", or "auto" (z for Matterport3D "mp3d/" scenes)
    near: float = 0.05  # camera near plane, metres
    far: float = 50.0  # camera far plane, metres (depth reads 0 beyond)
    disk_cache: bool = True  # keep navigation grids under <cache>/navgrid/ between runs

    def __post_init__(self) -> None:
        if not (1 <= self.width <= 8192 and 1 <= self.height <= 8192):
            raise ValueError(f"EmbeddedSimConfig.width/height must be in [1, 8192], got {self.width}x{self.height}")
        if not 1.0 <= self.hfov_deg < 180.0:
            raise ValueError(f"EmbeddedSimConfig.hfov_deg must be in [1, 180), got {self.hfov_deg}")
        if not self.camera_height >= 0.0:
            raise ValueError(f"EmbeddedSimConfig.camera_height must be >= 0 metres, got {self.camera_height}")
        if not self.start_snap_tolerance >= 0:
            raise ValueError(f"EmbeddedSimConfig.start_snap_tolerance must be >= 0, got {self.start_snap_tolerance}")
        if self.scene_up not in SCENE_UP_CHOICES:
            raise ValueError(f"EmbeddedSimConfig.scene_up: unknown value '{self.scene_up}'; available: {SCENE_UP_CHOICES}")
        # The component configs validate the rest and name their own fields.
        self.nav_grid_config()
        self.kinematics_config()

    def nav_grid_config(self) -> NavGridConfig:
        return NavGridConfig(resolution=self.grid_resolution, agent_radius=self.agent_radius,
                             agent_height=self.agent_height)

    def kinematics_config(self) -> KinematicsConfig:
        return KinematicsConfig(forward_step=self.forward_step, turn_angle=self.turn_angle,
                                allow_sliding=self.allow_sliding)


def scene_up_axis(scene_id: str, setting: str) -> str:
    """The up axis to load a scene file with: Matterport3D meshes are z-up, everything else here is y-up."""
    if setting != "auto":
        return setting
    return "z" if "mp3d" in Path(scene_id).parts else "y"


def file_digest(path: Path) -> str:
    """Content hash of a file (sha1, hex), read in chunks: the key of its cached navigation grids."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class EmbeddedSimulator:
    """`SimulatorBackend` over a scene mesh: see the module docstring."""

    def __init__(self, config: EmbeddedSimConfig | None = None, scenes_root: str | Path | None = None) -> None:
        self.config = config if config is not None else EmbeddedSimConfig()
        if scenes_root is None:
            from envs.datasets.splits import scene_root

            scenes_root = scene_root(None)
        self.scenes_root = Path(scenes_root).expanduser()
        self._kin = self.config.kinematics_config()
        self._renderer = None  # created on first reset: one GL context per process, none before it is needed
        self._scene_path: Path | None = None
        self._mesh = None
        self._mesh_digest: str | None = None
        self._grids: list[NavGrid] = []  # grids of the loaded scene, one per floor height seen
        self._grid: NavGrid | None = None
        self._state: AgentState | None = None
        self._episode: Episode | None = None

    # -- scene and grid -----------------------------------------------------------------------------------
    def _load_scene(self, episode: Episode) -> None:
        path = self.scenes_root / episode.scene_id
        if path == self._scene_path:
            return
        if not path.is_file():
            raise FileNotFoundError(
                f"episode {episode.episode_id}: scene mesh not found at {path} (scene_id '{episode.scene_id}' "
                f"under scenes root {self.scenes_root}); point --data-root at a folder with scene_datasets/, "
                "or generate the split's houses first"
            )
        from envs.scenes.mesh import load_scene_mesh

        mesh = load_scene_mesh(path, up=scene_up_axis(episode.scene_id, self.config.scene_up))
        if self._renderer is None:
            from envs.render import RenderConfig, Renderer

            c = self.config
            self._renderer = Renderer(RenderConfig(width=c.width, height=c.height, hfov_deg=c.hfov_deg,
                                                   near=c.near, far=c.far))
        self._renderer.load_mesh(mesh)
        self._mesh, self._scene_path, self._grids = mesh, path, []
        self._mesh_digest = file_digest(path) if self.config.disk_cache else None

    def _grid_for(self, floor_y: float) -> NavGrid:
        """The navigation grid of the loaded scene at this floor height (reused within 5 cm)."""
        for g in self._grids:
            if abs(g.floor_y - floor_y) < 0.05:
                return g
        grid_config = self.config.nav_grid_config()
        cache_file = None
        if self._mesh_digest is not None:
            settings = hashlib.sha1(repr(sorted(asdict(grid_config).items())).encode()).hexdigest()[:12]
            cache_file = cache_dir() / "navgrid" / f"{self._mesh_digest[:20]}_{settings}_y{floor_y:+.2f}.npz"
            if cache_file.is_file():
                try:
                    grid = NavGrid.load(cache_file, grid_config)
                    self._grids.append(grid)
                    return grid
                except (OSError, ValueError, KeyError):
                    cache_file.unlink(missing_ok=True)  # a torn write from a killed process: rebuild it
        grid = NavGrid.from_mesh(self._mesh, floor_y, grid_config)
        if cache_file is not None:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_suffix(f".tmp{os.getpid()}.npz")  # per process: workers may race
            grid.save(tmp)
            tmp.replace(cache_file)  # atomic: parallel workers never read a half-written grid
        self._grids.append(grid)
        return grid

    @property
    def nav_grid(self) -> NavGrid:
        """The navigation grid of the current episode's floor (after reset)."""
        self._check_reset()
        return self._grid  # type: ignore[return-value]

    # -- SimulatorBackend ---------------------------------------------------------------------------------
    def reset(self, episode: Episode) -> None:
        """Load the episode's scene (if another is loaded), build/reuse its floor's grid, place the agent.

        A start within `start_snap_tolerance` of the navigable area is snapped onto it; farther off is an
        error naming the episode and the position (a wrong scene, floor or coordinate frame).
        """
        self._load_scene(episode)
        start = np.asarray(episode.start_position, dtype=np.float64).reshape(3)
        grid = self._grid_for(float(start[1]))
        if not grid.is_navigable(start):
            off = grid.distance_to_navigable(start)
            if off > self.config.start_snap_tolerance:
                raise ValueError(
                    f"episode {episode.episode_id}: start position {start.round(3).tolist()} is {off:.2f} m off the "
                    f"navigable area of {episode.scene_id} at floor height y={start[1]:.2f} (tolerance "
                    f"{self.config.start_snap_tolerance} m; EmbeddedSimConfig.start_snap_tolerance)"
                )
            start = grid.snap(start)
            start[1] = episode.start_position[1]
        rotation = normalize_quaternion(np.asarray(episode.start_rotation, dtype=np.float64))
        self._grid, self._episode = grid, episode
        self._state = AgentState(start, rotation)

    def step(self, action: int) -> bool:
        """Apply one habitat action id; True when a forward move hit an obstacle (and slid along it)."""
        self._check_reset()
        self._state, collided = apply_action(self._state, action, self._grid, self._kin)  # type: ignore[arg-type]
        return collided

    def observe(self) -> dict[str, np.ndarray]:
        """RGB-D at the current pose: rgb [H, W, 3] uint8, depth [H, W, 1] float32 metres (0 = nothing hit)."""
        self._check_reset()
        state = self._state
        eye = state.position + np.array([0.0, self.config.camera_height, 0.0])  # type: ignore[union-attr]
        rgb, depth = self._renderer.render(eye, state.rotation)  # type: ignore[union-attr]
        return {OBS_RGB: rgb, OBS_DEPTH: depth[:, :, None]}

    def agent_state(self) -> tuple[np.ndarray, np.ndarray]:
        """(position [x, y, z], rotation [x, y, z, w]), float64 copies."""
        self._check_reset()
        return self._state.position.copy(), self._state.rotation.copy()  # type: ignore[union-attr]

    def set_agent_state(self, position: np.ndarray, rotation: np.ndarray) -> None:
        """Teleport the agent (tests, replaying trajectories); the position must be navigable."""
        self._check_reset()
        p = np.asarray(position, dtype=np.float64).reshape(3)
        if not self._grid.is_navigable(p):  # type: ignore[union-attr]
            raise ValueError(f"set_agent_state: position {p.round(3).tolist()} is not navigable")
        self._state = AgentState(p.copy(), normalize_quaternion(rotation))

    def geodesic_distance(self, a: np.ndarray, b: np.ndarray) -> float:
        """Shortest navigable distance (m) on the current floor; inf when unreachable."""
        self._check_reset()
        return self._grid.geodesic_distance(a, b)  # type: ignore[union-attr]

    def shortest_path(self, a: np.ndarray, b: np.ndarray) -> list[np.ndarray]:
        """Waypoints [a, ..., b] on the current floor; [] when unreachable."""
        self._check_reset()
        return self._grid.shortest_path(a, b)  # type: ignore[union-attr]

    def close(self) -> None:
        """Free the renderer's GL objects and the scene (the process's GL context stays for reuse)."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        self._mesh = self._scene_path = self._grid = self._state = None
        self._grids = []

    def _check_reset(self) -> None:
        if self._state is None:
            raise RuntimeError("EmbeddedSimulator: call reset(episode) first")

    @property
    def episode(self) -> Episode | None:
        return self._episode

