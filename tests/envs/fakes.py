"""Tiny hand-built scenes and episodes for the envs tests (no generator needed).

`two_room_mesh()` is a 6 m x 4 m box (floor at y = 0, walls 2.7 m, a ceiling) split by an inner wall at x = 3
with a 1 m doorway at z in [1.5, 2.5], and a 0.6 m table-sized box in the right room.
"""

from __future__ import annotations

import itertools
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


def fake_habitat_sim_module():
    """A stand-in `habitat_sim` module exposing the part of habitat-sim's API that `HabitatSimulator` uses,
    backed by this project's grid, kinematics and renderer. It tests the glue (configuration, action names,
    quaternion and observation conversions) where habitat-sim itself is not installed."""
    import types

    from envs.geometry import normalize_quaternion
    from envs.kinematics import AgentState as _State
    from envs.kinematics import KinematicsConfig, apply_action
    from envs.navigation import NavGrid
    from envs.render import RenderConfig, Renderer
    from envs.scenes.mesh import load_scene_mesh

    hs = types.ModuleType("habitat_sim")

    class _Bag:
        def __init__(self, *args, **kwargs):
            self.args = args
            self.__dict__.update(kwargs)

    class SensorType:
        COLOR, DEPTH = "color", "depth"

    class Quat:  # numpy-quaternion's attribute interface
        def __init__(self, x, y, z, w):
            self.x, self.y, self.z, self.w = x, y, z, w

    class PathFinder:
        def __init__(self):
            self.grid = None

        @property
        def is_loaded(self):
            return self.grid is not None

        def load_nav_mesh(self, path):
            raise FileNotFoundError(path)

        def is_navigable(self, p):
            return self.grid.is_navigable(np.asarray(p, float))

        def snap_point(self, p):
            return self.grid.snap(np.asarray(p, float))

        def find_path(self, path):
            pts = self.grid.shortest_path(np.asarray(path.requested_start, float), np.asarray(path.requested_end, float))
            path.points = pts
            path.geodesic_distance = (
                sum(float(np.linalg.norm(b - a)) for a, b in itertools.pairwise(pts)) if pts else np.inf
            )
            return bool(pts)

    class Agent:
        def __init__(self, sim):
            self.sim = sim

        def set_state(self, state):
            q = state.rotation
            self.sim.state = _State(np.asarray(state.position, float), np.array([q.x, q.y, q.z, q.w]))

        def get_state(self):
            s = self.sim.state
            return _Bag(position=s.position.astype(np.float32), rotation=Quat(*s.rotation))

    class Simulator:
        def __init__(self, cfg):
            self.pathfinder = PathFinder()
            self.renderer = None
            self.closed = False
            self.reconfigure(cfg)

        def reconfigure(self, cfg):
            self.cfg = cfg
            agent_cfg = cfg.agents[0]
            sensor = agent_cfg.sensor_specifications[0]
            h, w = sensor.resolution
            self.camera_height = sensor.position[1]
            self.mesh = load_scene_mesh(cfg.sim_cfg.scene_id)
            if self.renderer is None:
                self.renderer = Renderer(RenderConfig(width=w, height=h, hfov_deg=sensor.hfov))
            self.renderer.load_mesh(self.mesh)
            self.actions = agent_cfg.action_space
            self.pathfinder.grid = None
            self.previous_step_collided = False

        def recompute_navmesh(self, pathfinder, settings):
            pathfinder.grid = NavGrid.from_mesh(self.mesh, 0.0)

        def get_agent(self, i):
            return Agent(self)

        def get_sensor_observations(self):
            s = self.state
            rgb, depth = self.renderer.render(s.position + np.array([0.0, self.camera_height, 0.0]), s.rotation)
            return {"rgb": np.concatenate([rgb, np.full((*rgb.shape[:2], 1), 255, np.uint8)], -1), "depth": depth}

        def step(self, name):
            spec = self.actions[name]
            kin = KinematicsConfig(forward_step=self.actions["move_forward"].actuation.amount,
                                   turn_angle=self.actions["turn_left"].actuation.amount)
            action = {"move_forward": 1, "turn_left": 2, "turn_right": 3}[spec.name]
            self.state, self.previous_step_collided = apply_action(self.state, action, self.pathfinder.grid, kin)
            return self.get_sensor_observations()

        def close(self):
            self.renderer.close()
            self.closed = True

    def action_spec(name, actuation):
        return _Bag(name=name, actuation=actuation)

    def configuration(sim_cfg, agents):
        return _Bag(sim_cfg=sim_cfg, agents=agents)

    hs.SimulatorConfiguration = _Bag
    hs.CameraSensorSpec = _Bag
    hs.SensorType = SensorType
    hs.Configuration = configuration
    hs.Simulator = Simulator
    hs.AgentState = _Bag
    hs.ShortestPath = _Bag
    hs.NavMeshSettings = lambda: _Bag(set_defaults=lambda: None)
    hs.agent = types.SimpleNamespace(AgentConfiguration=_Bag, ActionSpec=action_spec, ActuationSpec=_Bag)
    common = types.ModuleType("habitat_sim.utils.common")
    common.quat_from_coeffs = lambda c: Quat(*normalize_quaternion(np.asarray(c, float)))
    hs.utils = types.SimpleNamespace(common=common)
    return hs, {"habitat_sim": hs, "habitat_sim.utils": hs.utils, "habitat_sim.utils.common": common}
