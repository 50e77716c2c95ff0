"""The SimulatorBackend contract, run against every backend that can be imported here.

habitat-sim is optional (not on PyPI); its cases skip with the install hint when it is missing.
"""

from __future__ import annotations

import itertools
import math
import sys

import numpy as np
import pytest

from envs.backend import SimulatorBackend
from envs.constants import MOVE_FORWARD, STOP, TURN_LEFT, TURN_RIGHT
from envs.factory import available_backends, make_backend
from envs.habitat_backend import INSTALL_HINT, HabitatSimulator, import_habitat_sim
from tests.envs.fakes import fake_habitat_sim_module, make_data_root, make_episode


def _habitat_missing() -> str | None:
    try:
        import_habitat_sim()
    except ImportError as e:
        return str(e)
    return None


BACKENDS = [
    "embedded",
    pytest.param("habitat", marks=pytest.mark.skipif(_habitat_missing() is not None, reason=str(_habitat_missing()))),
    "habitat-glue",  # HabitatSimulator over a stand-in habitat_sim module (tests the glue without habitat-sim)
]


@pytest.fixture(scope="module")
def scenes_root(tmp_path_factory):
    return make_data_root(tmp_path_factory.mktemp("contract")) / "scene_datasets"


@pytest.fixture(params=BACKENDS)
def sim(request, scenes_root, monkeypatch):
    name = request.param
    if name == "habitat-glue":
        _, modules = fake_habitat_sim_module()
        for mod_name, mod in modules.items():
            monkeypatch.setitem(sys.modules, mod_name, mod)
        name = "habitat"
    s = make_backend(name, scenes_root=scenes_root, width=40, height=30)
    yield s
    s.close()


def test_is_a_simulator_backend(sim):
    assert isinstance(sim, SimulatorBackend)


def test_reset_state_and_observation(sim):
    ep = make_episode()
    sim.reset(ep)
    pos, rot = sim.agent_state()
    assert pos.dtype == np.float64 and rot.dtype == np.float64 and pos.shape == (3,) and rot.shape == (4,)
    assert np.allclose(pos, ep.start_position, atol=0.05) and np.allclose(rot, ep.start_rotation, atol=1e-5)
    obs = sim.observe()
    assert obs["rgb"].shape == (30, 40, 3) and obs["rgb"].dtype == np.uint8
    assert obs["depth"].shape == (30, 40, 1) and obs["depth"].dtype == np.float32
    assert obs["rgb"].max() > 0  # something is visible


def test_actions(sim):
    sim.reset(make_episode(start=(1.5, 0.0, 2.0)))
    p0, r0 = sim.agent_state()
    for a in (TURN_LEFT, TURN_RIGHT, STOP):
        assert sim.step(a) is False
    p1, r1 = sim.agent_state()
    assert np.allclose(p0, p1) and np.allclose(np.abs(np.dot(r0, r1)), 1.0, atol=1e-6)
    assert sim.step(MOVE_FORWARD) is False
    p2, _ = sim.agent_state()
    assert np.linalg.norm(p2 - p1) == pytest.approx(0.25, abs=1e-3)
    assert p2[2] < p1[2]  # forward is -z at the identity rotation


def test_collisions_reported(sim):
    sim.reset(make_episode(start=(1.0, 0.0, 0.4)))
    hits = [sim.step(MOVE_FORWARD) for _ in range(4)]
    assert any(hits)
    assert sim.agent_state()[0][2] > 0.0  # never through the wall


def test_geodesics(sim):
    sim.reset(make_episode())
    a, b = np.array([1.0, 0.0, 0.3]), np.array([5.0, 0.0, 0.3])
    assert sim.geodesic_distance(a, a) < 0.1
    d = sim.geodesic_distance(a, b)
    assert math.dist(a, b) + 0.5 < d < 7.0
    path = sim.shortest_path(a, b)
    assert len(path) >= 3 and np.allclose(path[0], a, atol=0.05) and np.allclose(path[-1], b, atol=0.05)
    length = sum(float(np.linalg.norm(q - p)) for p, q in itertools.pairwise(path))
    assert length == pytest.approx(d, rel=0.05)
    assert math.isinf(sim.geodesic_distance(a, np.array([-3.0, 0.0, -3.0]))) or sim.geodesic_distance(
        a, np.array([-3.0, 0.0, -3.0])
    ) > 0  # outside the house: unreachable, or snapped (habitat)


def test_close_is_idempotent(sim):
    sim.reset(make_episode())
    sim.close()
    sim.close()


def test_factory_errors():
    assert available_backends() == ["embedded", "habitat"]
    with pytest.raises(ValueError, match="unknown backend 'unity'; available: embedded, habitat"):
        make_backend("unity")
    with pytest.raises(ValueError, match=r"backend 'embedded': unknown option\(s\) \['hfov'\]; available: .*hfov_deg"):
        make_backend("embedded", hfov=90)


@pytest.mark.skipif(_habitat_missing() is None, reason="habitat-sim is installed")
def test_habitat_missing_says_how_to_install():
    with pytest.raises(ImportError) as e:
        HabitatSimulator()
    assert str(e.value) == INSTALL_HINT and "conda install habitat-sim" in str(e.value)
    with pytest.raises(ImportError, match="--backend embedded"):
        make_backend("habitat")
