"""habitat-sim backend: the reference simulator of VLN-CE, behind the same `SimulatorBackend` contract.

Optional: habitat-sim is not on PyPI (conda, or a source build), so it is imported only when a
`HabitatSimulator` is created. Settings follow VLN-CE / NaVILA on R2R-CE: RGB + depth cameras with a 90 degree
HFOV 1.25 m above the agent's feet, MOVE_FORWARD 0.25 m, turns of 15 degrees, sliding on collisions, agent
radius 0.1 m and height 1.5 m. Scenes use their `.navmesh` beside the `.glb`; without one, a navmesh is
computed for the agent size.

    sim = HabitatSimulator(HabitatSimConfig(width=512, height=512), scenes_root="data/scene_datasets")
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from envs.constants import (
    AGENT_HEIGHT_M,
    AGENT_RADIUS_M,
    CAMERA_HEIGHT_M,
    DEFAULT_RESOLUTION,
    FORWARD_STEP_M,
    HFOV_DEG,
    MOVE_FORWARD,
    OBS_DEPTH,
    OBS_RGB,
    STOP,
    TURN_ANGLE_DEG,
    TURN_LEFT,
    TURN_RIGHT,
)
from envs.datasets.episode import Episode

INSTALL_HINT = (
    "the 'habitat' backend needs habitat-sim, which is not installed. Install it with conda "
    "(conda install habitat-sim headless -c conda-forge -c aihabitat; VLN-CE used habitat-sim 0.1.7), "
    "or use the built-in simulator: --backend embedded"
)

_ACTION_NAMES = {MOVE_FORWARD: "move_forward", TURN_LEFT: "turn_left", TURN_RIGHT: "turn_right"}


@dataclass
class HabitatSimConfig:
    width: int = DEFAULT_RESOLUTION  # camera image width, pixels
    height: int = DEFAULT_RESOLUTION  # camera image height, pixels
    hfov_deg: float = HFOV_DEG  # horizontal field of view, degrees
    camera_height: float = CAMERA_HEIGHT_M  # camera above the agent's feet, metres
    agent_radius: float = AGENT_RADIUS_M  # metres (navmesh erosion when a navmesh is computed)
    agent_height: float = AGENT_HEIGHT_M  # metres
    forward_step: float = FORWARD_STEP_M  # metres per MOVE_FORWARD
    turn_angle: float = TURN_ANGLE_DEG  # degrees per turn
    allow_sliding: bool = True  # slide along walls on collision
    gpu_device_id: int = 0  # CUDA device habitat-sim renders on
    min_depth: float = 0.0  # depth sensor range, metres (VLN-CE: 0 .. 10, not normalised here)
    max_depth: float = 10.0

    def __post_init__(self) -> None:
        if not (1 <= self.width <= 8192 and 1 <= self.height <= 8192):
            raise ValueError(f"HabitatSimConfig.width/height must be in [1, 8192], got {self.width}x{self.height}")
        if not 1.0 <= self.hfov_deg < 180.0:
            raise ValueError(f"HabitatSimConfig.hfov_deg must be in [1, 180), got {self.hfov_deg}")
        if not self.forward_step > 0:
            raise ValueError(f"HabitatSimConfig.forward_step must be > 0 metres, got {self.forward_step}")
        if not 0 < self.turn_angle <= 180:
            raise ValueError(f"HabitatSimConfig.turn_angle must be in (0, 180] degrees, got {self.turn_angle}")
        if not 0 <= self.min_depth < self.max_depth:
            raise ValueError(f"HabitatSimConfig needs 0 <= min_depth < max_depth, got {self.min_depth}, {self.max_depth}")


def import_habitat_sim():
    """The habitat_sim module, or an ImportError that says how to install it."""
    try:
        import habitat_sim
    except ImportError as e:
        raise ImportError(INSTALL_HINT) from e
    return habitat_sim


class HabitatSimulator:
    """`SimulatorBackend` on habitat-sim (see the module docstring)."""

    def __init__(self, config: HabitatSimConfig | None = None, scenes_root: str | Path | None = None) -> None:
        self._hs = import_habitat_sim()
        self.config = config if config is not None else HabitatSimConfig()
        if scenes_root is None:
            from envs.datasets.splits import scene_root

            scenes_root = scene_root(None)
        self.scenes_root = Path(scenes_root).expanduser()
        self._sim = None
        self._scene_path: Path | None = None
        self._obs: dict | None = None
        self._episode: Episode | None = None

    def _sim_config(self, scene: Path):
        hs, c = self._hs, self.config
        backend_cfg = hs.SimulatorConfiguration()
        backend_cfg.scene_id = str(scene)
        backend_cfg.gpu_device_id = c.gpu_device_id
        backend_cfg.allow_sliding = c.allow_sliding
        backend_cfg.enable_physics = False
        sensors = []
        camera_spec = getattr(hs, "CameraSensorSpec", None)  # habitat-sim >= 0.2; 0.1.x has SensorSpec only
        for uuid, kind in ((OBS_RGB, hs.SensorType.COLOR), (OBS_DEPTH, hs.SensorType.DEPTH)):
            spec = camera_spec() if camera_spec is not None else hs.SensorSpec()
            spec.uuid = uuid
            spec.sensor_type = kind
            spec.resolution = [c.height, c.width]
            spec.position = [0.0, c.camera_height, 0.0]
            if camera_spec is not None:
                spec.hfov = c.hfov_deg
            else:
                spec.parameters["hfov"] = str(c.hfov_deg)  # 0.1.x takes camera parameters as strings
            sensors.append(spec)
        agent_cfg = hs.agent.AgentConfiguration()
        agent_cfg.height = c.agent_height
        agent_cfg.radius = c.agent_radius
        agent_cfg.sensor_specifications = sensors
        agent_cfg.action_space = {
            "move_forward": hs.agent.ActionSpec("move_forward", hs.agent.ActuationSpec(amount=c.forward_step)),
            "turn_left": hs.agent.ActionSpec("turn_left", hs.agent.ActuationSpec(amount=c.turn_angle)),
            "turn_right": hs.agent.ActionSpec("turn_right", hs.agent.ActuationSpec(amount=c.turn_angle)),
        }
        return hs.Configuration(backend_cfg, [agent_cfg])

    def _load_scene(self, episode: Episode) -> None:
        path = self.scenes_root / episode.scene_id
        if path == self._scene_path and self._sim is not None:
            return
        if not path.is_file():
            raise FileNotFoundError(
                f"episode {episode.episode_id}: scene mesh not found at {path} (scene_id '{episode.scene_id}' "
                f"under scenes root {self.scenes_root})"
            )
        cfg = self._sim_config(path)
        if self._sim is None:
            self._sim = self._hs.Simulator(cfg)
        else:
            self._sim.reconfigure(cfg)
        navmesh = path.with_suffix(".navmesh")
        if not self._sim.pathfinder.is_loaded:
            if navmesh.is_file():
                self._sim.pathfinder.load_nav_mesh(str(navmesh))
            else:
                settings = self._hs.NavMeshSettings()
                settings.set_defaults()
                settings.agent_radius = self.config.agent_radius
                settings.agent_height = self.config.agent_height
                self._sim.recompute_navmesh(self._sim.pathfinder, settings)
        self._scene_path = path

    def reset(self, episode: Episode) -> None:
        self._load_scene(episode)
        start = np.asarray(episode.start_position, dtype=np.float32)
        if not self._sim.pathfinder.is_navigable(start):
            snapped = np.asarray(self._sim.pathfinder.snap_point(start), dtype=np.float64)
            if not np.all(np.isfinite(snapped)) or np.linalg.norm(snapped - start) > 0.5:
                raise ValueError(f"episode {episode.episode_id}: start position {start.tolist()} is off the navmesh "
                                 f"of {episode.scene_id}")
        from habitat_sim.utils.common import quat_from_coeffs

        state = self._hs.AgentState()
        state.position = start
        state.rotation = quat_from_coeffs(np.asarray(episode.start_rotation, dtype=np.float64))
        self._sim.get_agent(0).set_state(state)
        self._obs = self._sim.get_sensor_observations()
        self._episode = episode

    def step(self, action: int) -> bool:
        self._check_reset()
        action = int(action)
        if action == STOP:
            return False
        if action not in _ACTION_NAMES:
            raise ValueError(f"unknown action {action}; valid actions are 0 STOP, 1 MOVE_FORWARD, 2 TURN_LEFT, 3 TURN_RIGHT")
        self._obs = self._sim.step(_ACTION_NAMES[action])
        return bool(self._sim.previous_step_collided)

    def observe(self) -> dict[str, np.ndarray]:
        self._check_reset()
        rgb = np.ascontiguousarray(np.asarray(self._obs[OBS_RGB])[:, :, :3], dtype=np.uint8)
        depth = np.asarray(self._obs[OBS_DEPTH], dtype=np.float32)
        return {OBS_RGB: rgb, OBS_DEPTH: depth.reshape(depth.shape[0], depth.shape[1], 1)}

    def agent_state(self) -> tuple[np.ndarray, np.ndarray]:
        self._check_reset()
        s = self._sim.get_agent(0).get_state()
        q = s.rotation  # numpy-quaternion (w, x, y, z attributes)
        return np.asarray(s.position, dtype=np.float64), np.array([q.x, q.y, q.z, q.w], dtype=np.float64)

    def geodesic_distance(self, a: np.ndarray, b: np.ndarray) -> float:
        self._check_reset()
        path = self._hs.ShortestPath()
        path.requested_start = np.asarray(a, dtype=np.float32)
        path.requested_end = np.asarray(b, dtype=np.float32)
        found = self._sim.pathfinder.find_path(path)
        return float(path.geodesic_distance) if found and math.isfinite(path.geodesic_distance) else math.inf

    def shortest_path(self, a: np.ndarray, b: np.ndarray) -> list[np.ndarray]:
        self._check_reset()
        path = self._hs.ShortestPath()
        path.requested_start = np.asarray(a, dtype=np.float32)
        path.requested_end = np.asarray(b, dtype=np.float32)
        if not self._sim.pathfinder.find_path(path):
            return []
        return [np.asarray(p, dtype=np.float64) for p in path.points]

    def close(self) -> None:
        if self._sim is not None:
            self._sim.close()
            self._sim = None
        self._scene_path = self._obs = None

    def _check_reset(self) -> None:
        if self._sim is None or self._obs is None:
            raise RuntimeError("HabitatSimulator: call reset(episode) first")
