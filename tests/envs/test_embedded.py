"""EmbeddedSimulator: scene loading, start validation, rendering, stepping, grid caching, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from envs.constants import MOVE_FORWARD, TURN_LEFT
from envs.embedded import EmbeddedSimConfig, EmbeddedSimulator, scene_up_axis
from envs.geometry import heading_to_quaternion
from envs.paths import cache_dir
from tests.envs.fakes import make_data_root, make_episode

SMALL = EmbeddedSimConfig(width=48, height=32)


@pytest.fixture(scope="module")
def scenes_root(tmp_path_factory):
    return make_data_root(tmp_path_factory.mktemp("embedded")) / "scene_datasets"


@pytest.fixture(scope="module")
def sim(scenes_root):
    s = EmbeddedSimulator(SMALL, scenes_root)
    yield s
    s.close()


def test_reset_places_agent_and_observes(sim):
    sim.reset(make_episode())
    pos, rot = sim.agent_state()
    assert np.allclose(pos, [1.0, 0.0, 1.0]) and np.allclose(rot, [0, 0, 0, 1])
    obs = sim.observe()
    assert obs["rgb"].shape == (32, 48, 3) and obs["rgb"].dtype == np.uint8
    assert obs["depth"].shape == (32, 48, 1) and obs["depth"].dtype == np.float32
    # Facing -z from z = 1: the wall face at z = 0 is 1 m ahead along the optical axis.
    assert obs["depth"][16, 24, 0] == pytest.approx(1.0, abs=0.02)


def test_step_moves_and_turns_change_the_view(sim):
    sim.reset(make_episode())
    before = sim.observe()["rgb"]
    assert sim.step(TURN_LEFT) is False
    assert not np.array_equal(before, sim.observe()["rgb"])
    sim.reset(make_episode())
    sim.step(MOVE_FORWARD)
    pos, _ = sim.agent_state()
    assert np.allclose(pos, [1.0, 0.0, 0.75])
    assert sim.observe()["depth"][16, 24, 0] == pytest.approx(0.75, abs=0.02)


def test_collision_reported(sim):
    sim.reset(make_episode(start=(1.0, 0.0, 0.35)))
    assert sim.step(MOVE_FORWARD) is True
    assert sim.nav_grid.is_navigable(sim.agent_state()[0])


def test_geodesic_and_path(sim):
    sim.reset(make_episode())
    a, b = np.array([1.0, 0, 0.3]), np.array([5.0, 0, 0.3])
    d = sim.geodesic_distance(a, b)
    assert d > 4.0 and math.isfinite(d)
    path = sim.shortest_path(a, b)
    assert np.allclose(path[0], a) and np.allclose(path[-1], b)


def test_scene_kept_between_episodes(sim):
    sim.reset(make_episode("1"))
    mesh = sim._mesh
    sim.reset(make_episode("2", start=(2.0, 0.0, 3.0)))
    assert sim._mesh is mesh  # same scene: not reloaded


def test_start_snapped_within_tolerance(sim):
    sim.reset(make_episode(start=(1.0, 0.0, 0.05)))  # 0.08 m inside the wall clearance
    pos, _ = sim.agent_state()
    assert sim.nav_grid.is_navigable(pos) and pos[1] == 0.0 and abs(pos[0] - 1.0) < 1e-6


def test_start_off_navigable_area_is_an_error(sim):
    with pytest.raises(ValueError, match=r"episode 77: start position \[4\.5, 0\.0, 1\.0\] is 0\.\d+ m off") as e:
        sim.reset(make_episode("77", start=(4.5, 0.0, 1.0)))  # under the table
    assert "start_snap_tolerance" in str(e.value)


def test_missing_scene_names_episode_and_path(scenes_root):
    sim = EmbeddedSimulator(SMALL, scenes_root)
    with pytest.raises(FileNotFoundError, match=r"episode 5: scene mesh not found at .*nowhere\.glb"):
        sim.reset(make_episode("5", scene_id="gen/nowhere/nowhere.glb"))


def test_use_before_reset(scenes_root):
    sim = EmbeddedSimulator(SMALL, scenes_root)
    with pytest.raises(RuntimeError, match="reset"):
        sim.step(MOVE_FORWARD)


def test_grid_cached_on_disk(scenes_root):
    sim = EmbeddedSimulator(SMALL, scenes_root)
    sim.reset(make_episode())
    files = list((cache_dir() / "navgrid").glob("*.npz"))
    assert files
    sim2 = EmbeddedSimulator(SMALL, scenes_root)
    sim2.reset(make_episode())
    assert np.array_equal(sim2.nav_grid.navigable, sim.nav_grid.navigable)
    sim.close()
    sim2.close()


def test_set_agent_state(sim):
    sim.reset(make_episode())
    sim.set_agent_state(np.array([2.0, 0, 2.0]), heading_to_quaternion(1.0))
    assert np.allclose(sim.agent_state()[0], [2.0, 0, 2.0])
    with pytest.raises(ValueError, match="not navigable"):
        sim.set_agent_state(np.array([4.5, 0, 1.0]), heading_to_quaternion(0.0))


def test_config_validation_and_up_axis():
    with pytest.raises(ValueError, match="hfov_deg"):
        EmbeddedSimConfig(hfov_deg=0)
    with pytest.raises(ValueError, match="scene_up"):
        EmbeddedSimConfig(scene_up="x")
    with pytest.raises(ValueError, match="forward_step"):
        EmbeddedSimConfig(forward_step=-1)
    assert scene_up_axis("mp3d/abc/abc.glb", "auto") == "z"
    assert scene_up_axis("gen/h1/h1.glb", "auto") == "y"


def test_matterport_scene_ids_load_z_up(tmp_path):
    from tests.envs.fakes import two_room_mesh, write_scene

    mesh = two_room_mesh()
    v = mesh.vertices.copy()
    mesh.vertices = np.stack([v[:, 0], -v[:, 2], v[:, 1]], axis=1)  # y-up -> z-up, as Matterport3D stores it
    write_scene(tmp_path, mesh, "mp3d/fake/fake.glb")
    sim = EmbeddedSimulator(SMALL, tmp_path)
    sim.reset(make_episode(scene_id="mp3d/fake/fake.glb"))  # habitat (y-up) coordinates
    assert sim.geodesic_distance(np.array([1.0, 0, 1.0]), np.array([5.0, 0, 3.0])) == pytest.approx(4.47, abs=0.05)
    assert sim.observe()["depth"][16, 24, 0] == pytest.approx(1.0, abs=0.02)
    sim.close()
