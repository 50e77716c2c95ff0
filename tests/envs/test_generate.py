"""Generated splits: real-format files, valid episodes, gt that replays in the simulator, caching, determinism."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from envs.constants import MOVE_FORWARD, STOP
from envs.datasets.generate import (
    ENV_EPISODES,
    ENV_HOUSES,
    House,
    SplitGenConfig,
    build_split,
    is_built,
    manifest_path,
    preset_config,
    sample_path,
)
from envs.datasets.instructions import tokenize
from envs.datasets.splits import load_split, read_split_data, scene_path, semantics_path
from envs.embedded import EmbeddedSimConfig
from envs.kinematics import AgentState, apply_action
from envs.navigation import NavGrid
from envs.scenes.mesh import load_scene_mesh
from envs.scenes.semantics import Door, HouseSemantics, Room, SceneObject

TINY = {"num_houses": 1, "episodes_per_house": 4}


def tiny(name: str) -> SplitGenConfig:
    return replace(preset_config(name), **TINY)


@pytest.fixture(scope="module")
def r2r_tiny():
    path = build_split("r2r_val_unseen", config=tiny("r2r_val_unseen"), progress=False)
    return path, read_split_data("r2r_val_unseen")


def _grid_like_simulator(ep) -> NavGrid:
    mesh = load_scene_mesh(scene_path(ep), up="y")
    return NavGrid.from_mesh(mesh, float(ep.start_position[1]), EmbeddedSimConfig().nav_grid_config())


def test_tiny_split_is_valid_r2r_ce(r2r_tiny):
    path, data = r2r_tiny
    assert path.name == "val_unseen.json.gz" and path.parent.parent.name == "R2R_VLNCE_gen"
    eps = data.episodes
    assert [ep.episode_id for ep in eps] == ["1", "2", "3", "4"] and all(ep.episode_id_is_int for ep in eps)
    cfg = tiny("r2r_val_unseen")
    vocab = data.instruction_vocab
    for ep in eps:
        assert ep.scene_id == "gen/house_1000/house_1000.glb"
        assert scene_path(ep).is_file() and semantics_path(ep).is_file()
        assert cfg.min_geodesic <= ep.geodesic_distance <= cfg.max_geodesic
        assert ep.goals[0].radius == 3.0
        assert abs(np.linalg.norm(ep.start_rotation) - 1) < 1e-9
        assert ep.reference_path[0] == ep.start_position
        assert np.allclose(ep.reference_path[-1], ep.goal_position)
        gaps = np.linalg.norm(np.diff(np.asarray(ep.reference_path), axis=0), axis=1)
        assert gaps.max() <= cfg.ref_spacing + 1e-6
        gt = ep.gt
        assert gt.actions[-1] == STOP and STOP not in gt.actions[:-1]
        assert gt.forward_steps == gt.actions.count(MOVE_FORWARD) == len(gt.locations) - 1
        assert len(gt.actions) < 500
        tokens = ep.instruction.instruction_tokens
        assert len(tokens) == 200
        words = [vocab["itos"][t] for t in tokens if t != vocab["PAD_INDEX"]]
        assert words == tokenize(ep.instruction.instruction_text)
        assert 8 <= len(ep.instruction.instruction_text.split()) <= 90


def test_gt_actions_replay_to_gt_locations(r2r_tiny):
    _, data = r2r_tiny
    grid = _grid_like_simulator(data.episodes[0])
    kin = EmbeddedSimConfig().kinematics_config()
    for ep in data.episodes:
        state = AgentState(np.array(ep.start_position), np.array(ep.start_rotation))
        assert grid.is_navigable(state.position)
        replayed = [state.position.tolist()]
        for a in ep.gt.actions:
            state, _ = apply_action(state, a, grid, kin)
            if a == MOVE_FORWARD:
                replayed.append(state.position.tolist())
        assert replayed == ep.gt.locations  # bit-exact: same grid, same kinematics
        assert grid.geodesic_distance(state.position, np.array(ep.goal_position)) < 0.5


def test_gt_replays_in_embedded_simulator(r2r_tiny):
    from envs.datasets.splits import scene_root
    from envs.embedded import EmbeddedSimulator

    _, data = r2r_tiny
    ep = data.episodes[0]
    sim = EmbeddedSimulator(
        EmbeddedSimConfig(width=16, height=16, disk_cache=False), scenes_root=scene_root()
    )
    try:
        sim.reset(ep)
        positions = [sim.agent_state()[0].tolist()]
        for a in ep.gt.actions[:-1]:
            sim.step(a)
            if a == MOVE_FORWARD:
                positions.append(sim.agent_state()[0].tolist())
    finally:
        sim.close()
    assert np.allclose(positions, ep.gt.locations, atol=1e-9)


def test_build_is_cached_deterministic_and_loaded_by_name(r2r_tiny, tmp_path):
    path, data = r2r_tiny
    before = (path.stat().st_mtime_ns, path.read_bytes())
    assert is_built("r2r_val_unseen") and is_built("r2r_val_unseen", tiny("r2r_val_unseen"))
    assert build_split("r2r_val_unseen", config=tiny("r2r_val_unseen"), progress=False) == path
    assert path.stat().st_mtime_ns == before[0]  # not rebuilt
    assert build_split("r2r_val_unseen", force=True, config=tiny("r2r_val_unseen"), progress=False) == path
    assert path.read_bytes() == before[1]  # same seed, same bytes
    # load_split without a data root reads the generated split (any complete build is kept)
    assert [ep.episode_id for ep in load_split("r2r_val_unseen")] == [ep.episode_id for ep in data.episodes]
    stats = __import__("json").loads(manifest_path("r2r_val_unseen").read_text())["stats"]
    assert stats["episodes"] == 4 and stats["build_seconds"] > 0


def test_rxr_tiny_split_has_rxr_format():
    cfg = replace(preset_config("rxr_val_unseen"), num_houses=1, episodes_per_house=2)
    path = build_split("rxr_val_unseen", config=cfg, progress=False)
    assert path.name == "val_unseen_guide.json.gz"
    assert (path.parent / "val_unseen_guide_gt.json.gz").is_file()
    data = read_split_data("rxr_val_unseen")
    assert data.instruction_vocab is None and len(data.episodes) == 2
    for ep in data.episodes:
        assert not ep.episode_id_is_int and isinstance(ep.trajectory_id, str)
        assert ep.instruction.extra["language"] == "en-US" and ep.instruction.instruction_tokens is None
        assert ep.info["role"] == "guide"
        assert ep.geodesic_distance >= 10.0
        assert len(ep.instruction.instruction_text.split()) >= 50


def test_config_validation_and_env_overrides(monkeypatch):
    with pytest.raises(ValueError, match=r"SplitGenConfig\.num_houses must be >= 1"):
        SplitGenConfig(num_houses=0, episodes_per_house=1, seed=0)
    with pytest.raises(ValueError, match=r"SplitGenConfig\.style: unknown style 'x'"):
        SplitGenConfig(1, 1, 0, style="x")
    with pytest.raises(ValueError, match="min_geodesic < max_geodesic"):
        SplitGenConfig(1, 1, 0, min_geodesic=9, max_geodesic=5)
    with pytest.raises(ValueError, match="split 'r2r_test' cannot be generated"):
        preset_config("r2r_test")
    assert preset_config("r2r_val_unseen").first_house >= 1000 > preset_config("r2r_val_seen").first_house
    monkeypatch.setenv(ENV_HOUSES, "2")
    monkeypatch.setenv(ENV_EPISODES, "3")
    cfg = preset_config("r2r_train")
    assert (cfg.num_houses, cfg.episodes_per_house) == (2, 3)
    monkeypatch.setenv(ENV_HOUSES, "many")
    with pytest.raises(ValueError, match=r"\$NAVILA_AGENT_GEN_HOUSES must be a positive integer, got 'many'"):
        preset_config("r2r_train")


def test_an_env_size_rebuilds_a_preset_build_and_keeps_an_explicit_one(tmp_path, monkeypatch):
    """Without a config the preset is built (with $NAVILA_AGENT_GEN_HOUSES / _EPISODES); asking for another size
    through the environment rebuilds it, while a build made with an explicit config (`data build --houses`) is
    kept whatever the environment says, as is a manifest from before the rule (no `from_preset`)."""
    import json

    monkeypatch.setenv("NAVILA_AGENT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(ENV_HOUSES, "1")
    monkeypatch.setenv(ENV_EPISODES, "2")
    build_split("r2r_val_seen", progress=False)
    assert len(load_split("r2r_val_seen")) == 2 and is_built("r2r_val_seen")
    assert json.loads(manifest_path("r2r_val_seen").read_text())["from_preset"] is True
    monkeypatch.setenv(ENV_EPISODES, "3")
    assert not is_built("r2r_val_seen")
    assert len(load_split("r2r_val_seen")) == 3  # rebuilt at the size asked for
    explicit = replace(preset_config("r2r_val_seen"), episodes_per_house=1)
    build_split("r2r_val_seen", config=explicit, progress=False)
    assert is_built("r2r_val_seen") and len(load_split("r2r_val_seen")) == 1  # kept although the env says 3
    manifest = json.loads(manifest_path("r2r_val_seen").read_text())
    assert manifest["from_preset"] is False
    manifest["from_preset"] = True  # the same build made from a preset: the env's size now wins
    manifest_path("r2r_val_seen").write_text(json.dumps(manifest))
    assert not is_built("r2r_val_seen")
    del manifest["from_preset"]  # written before the rule: kept
    manifest_path("r2r_val_seen").write_text(json.dumps(manifest))
    assert is_built("r2r_val_seen")


def _synthetic_house() -> House:
    """Two 4 m x 4 m rooms side by side (x 0-4 and 4-8, z 0-4) joined by a 1 m doorway at z 1.5-2.5."""
    res = 0.1
    nav = np.zeros((40, 80), dtype=bool)  # [rows (z), cols (x)]
    nav[2:38, 2:38] = True
    nav[2:38, 42:78] = True
    nav[15:25, 38:42] = True  # the doorway
    grid = NavGrid(nav, (0.0, 0.0), res, 0.0)
    rooms = [
        Room(0, "bedroom", [[0, 0], [4, 0], [4, 4], [0, 4]], [0.5] * 3, [0.8] * 3, "the bedroom"),
        Room(1, "kitchen", [[4, 0], [8, 0], [8, 4], [4, 4]], [0.5] * 3, [0.8] * 3, "the kitchen"),
    ]
    objects = [SceneObject(0, "sofa", "red", [1, 0, 0], [7.6, 0.0, 3.6], [0.6, 0.8, 0.6], 1)]
    sem = HouseSemantics(
        "syn", 0, 0.0, rooms=rooms, doors=[Door(0, (0, 1), [4.0, 0.0, 2.0], 1.0)], objects=objects
    )
    return House("syn", "gen/syn/syn.glb", sem, grid)


def test_sample_path_on_a_synthetic_grid():
    house = _synthetic_house()
    cfg = SplitGenConfig(1, 1, 0, min_geodesic=3.0, max_geodesic=12.0, target_geodesic=6.0)
    rng = np.random.default_rng(0)
    kin = EmbeddedSimConfig().kinematics_config()
    paths = [p for p in (sample_path(house, cfg, rng) for _ in range(8)) if p is not None]
    assert len(paths) >= 4
    for p in paths:
        assert 3.0 <= p.geodesic <= 12.0
        assert house.grid.is_navigable(np.array(p.start))
        state = AgentState(np.array(p.start), np.array([0.0, math.sin(p.yaw / 2), 0.0, math.cos(p.yaw / 2)]))
        for a in p.actions:
            state, _ = apply_action(state, a, house.grid, kin)
        assert house.grid.geodesic_distance(state.position, np.array(p.goal)) < 0.5
        length = sum(np.linalg.norm(np.diff(np.asarray(p.polyline)[:, [0, 2]], axis=0), axis=1))
        assert length <= cfg.max_detour * p.geodesic + 0.5 + 1e-6


@pytest.mark.slow  # ~10 s: two house builds plus spawned worker processes
def test_parallel_build_matches_serial_build():
    cfg = replace(preset_config("r2r_val_seen"), num_houses=2, episodes_per_house=1)
    serial = build_split("r2r_val_seen", force=True, config=cfg, progress=False, workers=1)
    files = {p.name: p.read_bytes() for p in serial.parent.glob("*.json.gz")}
    parallel = build_split("r2r_val_seen", force=True, config=cfg, progress=False, workers=2)
    assert {p.name: p.read_bytes() for p in parallel.parent.glob("*.json.gz")} == files
    assert [ep.episode_id for ep in load_split("r2r_val_seen")] == ["1", "2"]
