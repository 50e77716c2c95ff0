"""Scene QA: facts of a pose (room, nearest object in view, free distance ahead), answers, samples, collection."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from benchmarks.collect import CollectConfig, ReplayExpert, collect, read_jsonl, sample_frame_indices
from benchmarks.scene_qa import (
    QA_KINDS,
    SceneFacts,
    answer,
    object_id_map,
    qa_prompt,
    qa_samples,
    scene_facts,
)
from envs.navigation import NavGrid
from envs.scenes.semantics import HouseSemantics, Room, SceneObject
from tests.benchmarks.test_collect import FakeDriver, make_episode, prompt_fn


def _house() -> HouseSemantics:
    """Two 4 m × 4 m rooms side by side along x: the kitchen x ∈ [0, 4], the blue bedroom x ∈ [4, 8]; z ∈ [-4, 0]."""
    kitchen = Room(0, "kitchen", [[0, -4], [4, -4], [4, 0], [0, 0]], [0.5] * 3, [0.8] * 3)
    bedroom = Room(
        1, "bedroom", [[4, -4], [8, -4], [8, 0], [4, 0]], [0.5] * 3, [0.8] * 3, name="the blue bedroom"
    )

    def obj(i: int, cat: str, color: str, x: float, z: float, room: int) -> SceneObject:
        return SceneObject(i, cat, color, [0.5] * 3, [x, 0.0, z], [0.4, 0.8, 0.4], room)

    objects = [
        obj(0, "sofa", "red", 1.0, -3.0, 0),  # ahead-left of an agent at (2, -0.5) facing -z
        obj(1, "table", "brown", 3.5, -2.0, 0),  # to the right
        obj(2, "bed", "white", 2.0, 1.0, 0),  # behind (and outside the polygon, but in room 0's list)
        obj(3, "lamp", "", 5.0, -3.0, 1),  # another room: never "in view" from the kitchen
    ]
    return HouseSemantics("h", 0, 0.0, rooms=[kitchen, bedroom], objects=objects)


def _grid(free_rows_up_to_z: float = -4.0) -> NavGrid:
    """0.1 m cells over x ∈ [0, 8], z ∈ [-4, 0]; cells with z < free_rows_up_to_z are blocked (a wall)."""
    res = 0.1
    z_centres = -4.0 + res * (np.arange(40) + 0.5)
    navigable = np.ones((40, 80), dtype=bool)
    navigable[z_centres < free_rows_up_to_z] = False
    return NavGrid(navigable, (0.0, -4.0), res, 0.0)


def test_room_nearest_object_side_and_distance():
    facts = scene_facts(_house(), _grid(), [2.0, 0.0, -0.5], heading=0.0)  # facing -z
    assert facts.room == "the kitchen"
    # Sofa: dx -1, dz -2.5 → bearing atan2(-1, 2.5) = -21.8° (left), distance hypot(1, 2.5) - 0.2 = 2.49 m.
    # Table: dx 1.5, dz -1.5 → 45° right, exactly at the edge of the 90° field of view, distance 1.92 m: in view.
    assert facts.nearest_object == "the brown table" and facts.object_side == "right"
    assert facts.object_distance == pytest.approx(math.hypot(1.5, 1.5) - 0.2)
    # Turned 5° left: the sofa at -16.8° (left), the table at 50° (out of view).
    left = scene_facts(_house(), _grid(), [2.0, 0.0, -0.5], heading=math.radians(5))
    assert left.nearest_object == "the red sofa" and left.object_side == "left"  # the table left the view
    ahead = scene_facts(_house(), _grid(), [1.0, 0.0, -0.5], heading=0.0)
    assert ahead.nearest_object == "the red sofa" and ahead.object_side == "ahead"


def test_objects_behind_or_in_other_rooms_are_not_in_view():
    facing_bedroom = scene_facts(_house(), _grid(), [3.0, 0.0, -3.0], heading=-math.pi / 2)  # facing +x
    assert facing_bedroom.room == "the kitchen" and facing_bedroom.nearest_object == ""  # the lamp: next door
    in_bedroom = scene_facts(_house(), _grid(), [6.0, 0.0, -1.0], heading=math.pi / 2)  # faces the kitchen
    assert in_bedroom.room == "the blue bedroom" and in_bedroom.nearest_object == ""
    outside = scene_facts(_house(), _grid(), [9.0, 0.0, -1.0], heading=0.0)
    assert outside.room == "" and outside.nearest_object == ""


def test_clearance_is_the_free_distance_ahead_capped():
    open_floor = scene_facts(_house(), _grid(), [2.0, 0.0, -0.5], heading=0.0)
    assert open_floor.clearance == pytest.approx(3.0)  # 3.5 m free, capped at 3
    walled = scene_facts(_house(), _grid(free_rows_up_to_z=-1.72), [2.0, 0.0, -0.5], heading=0.0)
    assert walled.clearance == pytest.approx(1.2, abs=0.02)  # the cell of z ∈ [-1.8, -1.7] is blocked
    assert scene_facts(_house(), _grid(), [2.0, 0.0, -0.5], heading=math.pi).clearance < 0.6  # faces the edge


def _facts(**kw) -> SceneFacts:
    base = dict(
        room="the kitchen",
        nearest_object="the red sofa",
        object_distance=2.4,
        object_side="left",
        clearance=1.3,
    )
    return SceneFacts(**{**base, **kw})


def test_answers():
    assert answer("room", _facts()) == "I am in the kitchen."
    assert answer("room", _facts(room="")) == "I am between two rooms."
    assert answer("object", _facts()) == "The red sofa, 2 meters away on the left."
    assert answer("object", _facts(object_distance=0.6, object_side="ahead")) == (
        "The red sofa, less than 1 meter away straight ahead."
    )
    assert answer("object", _facts(object_distance=1.2)) == "The red sofa, 1 meter away on the left."
    assert answer("object", _facts(nearest_object="", object_side="")) == "No object is in view."
    assert answer("clearance", _facts()) == "About 1 meter."  # rounded down to half metres
    assert answer("clearance", _facts(clearance=1.6)) == "About 1.5 meters."
    assert answer("clearance", _facts(clearance=0.1)) == "I cannot move forward: the way is blocked."
    assert answer("clearance", _facts(clearance=0.4)) == "Less than half a meter."
    assert answer("clearance", _facts(clearance=3.0)) == "At least 3 meters."
    with pytest.raises(ValueError, match="unknown scene QA kind 'colour'"):
        answer("colour", _facts())


def test_prompt_keeps_navilas_video_preamble():
    from agent.prompt import build_user_prompt

    prompt = qa_prompt("Which room are you in?", 8)
    assert prompt.count("<image>") == 8
    assert prompt.endswith("Answer about your current observation: Which room are you in?")
    assert build_user_prompt("go", 8).startswith(prompt.split("Answer about")[0])


def test_samples_every_k_frames_kinds_in_turn():
    facts = [_facts(clearance=float(t)) for t in range(7)]
    samples = qa_samples("r2r_train__3", "r2r_train:3", facts, 3, 8, "frames/x.npz", sample_frame_indices)
    assert [s["t"] for s in samples] == [0, 3, 6]
    assert [s["qa_kind"] for s in samples] == list(QA_KINDS)
    assert samples[2]["conversations"][1]["value"] == "At least 3 meters."
    assert samples[1]["frames"] == sample_frame_indices(4, 8)
    assert all(s["task"] == "scene_qa" and s["action"] is None for s in samples)
    with pytest.raises(ValueError, match="--scene-qa-every must be >= 1"):
        qa_samples("k", "u", facts, 0, 8, "f", sample_frame_indices)


class SceneDriver(FakeDriver):
    """FakeDriver walking the kitchen along -z from (2, -0.5), with the scene facts' inputs."""

    def pose(self):
        return np.array([2.0, 0.0, -0.5 - 0.25 * self.t]), np.array([0.0, 0.0, 0.0, 1.0])

    def scene(self, episode):
        return _house(), _grid(free_rows_up_to_z=-2.75)


def test_collect_writes_scene_qa_beside_the_navigation_samples(tmp_path):
    out = tmp_path / "c"
    episodes = [make_episode(0, [1, 1, 1, 1, 0])]
    config = CollectConfig(output=str(out), scene_qa_every=2)
    manifest = collect(config, episodes, SceneDriver(), ReplayExpert(), prompt_fn)
    samples = read_jsonl(out / "shard-00000" / "samples.jsonl")
    qa = [s for s in samples if s.get("task") == "scene_qa"]
    assert [s["t"] for s in qa] == [0, 2, 4]
    # t = 0: the room; t = 2, at (2, -1): the sofa at dx -1, dz -2 → 2.24 - 0.2 m, 26.6° left; t = 4, at
    # z = -1.5, blocked beyond z = -2.75: 1.25 m free, rounded down to half metres.
    answers = ["I am in the kitchen.", "The red sofa, 2 meters away on the left.", "About 1 meter."]
    assert [s["conversations"][1]["value"] for s in qa] == answers
    assert manifest["scene_qa"] == 3
    assert manifest["actions"] == {"forward": 2, "left": 0, "right": 0, "stop": 1}
    assert json.loads((out / "manifest.json").read_text())["samples"] == 3 + 3


def test_scene_qa_config_errors():
    with pytest.raises(ValueError, match="--scene-qa-every must be >= 0"):
        CollectConfig(scene_qa_every=-1)
    with pytest.raises(ValueError, match="expert drives only"):
        CollectConfig(scene_qa_every=2, policy="m", beta=0.5)


def test_collect_without_a_scene_says_what_is_missing(tmp_path):
    config = CollectConfig(output=str(tmp_path / "c"), scene_qa_every=1)
    with pytest.raises(ValueError, match="semantics and navigation grid"):
        collect(config, [make_episode(0, [1, 0])], FakeDriver(), ReplayExpert(), prompt_fn)


def _wall_house(*boxes: tuple[str, list[float], list[float]]) -> HouseSemantics:
    """A house with only these objects: (category, footprint centre [x, y of the bottom, z], size [sx, sy, sz])."""
    objects = [SceneObject(i, cat, "white", [1.0] * 3, pos, size, 0) for i, (cat, pos, size) in enumerate(boxes)]
    return HouseSemantics("h", 0, 0.0, objects=objects)


def test_object_id_map_puts_each_pixel_s_surface_in_the_house():
    """An agent at the origin faces -z (eye 1.25 m up, 90° fov) a wall 3 m away: depth 3 everywhere. A 1 m box
    against the wall, from 0.75 to 1.75 m high, covers the middle of the image: x, y within ±0.55 of the eye's
    line of sight (with the 5 cm margin) out of ±3 m at that distance, about 9 % of the width each way."""
    house = _wall_house(("painting", [0.0, 0.75, -3.0], [1.0, 1.0, 0.1]))
    depth = np.full((40, 40), 3.0, dtype=np.float32)
    ids = object_id_map(depth, [0, 0, 0], [0, 0, 0, 1], house)
    assert ids.shape == (40, 40) and ids.dtype == np.int16
    assert ids[20, 20] == 1 and ids[0, 0] == 0 and ids[20, 0] == 0 and ids[0, 20] == 0
    rows, cols = np.nonzero(ids)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (16, 23, 16, 23)  # |u| < 0.55 / 3 of the half-width
    depth[18:22, 18:22] = 0  # nothing hit there: no object either
    assert object_id_map(depth, [0, 0, 0], [0, 0, 0, 1], house)[20, 20] == 0
    # Turned 90° to the left (yaw +90°: forward is -x), the same box placed 3 m along -x is in the middle again,
    # and the one at -z is out of view.
    turned = [0.0, math.sin(math.pi / 4), 0.0, math.cos(math.pi / 4)]
    house = _wall_house(("painting", [0.0, 0.75, -3.0], [1.0, 1.0, 0.1]), ("tv", [-3.0, 0.75, 0.0], [0.1, 1.0, 1.0]))
    ids = object_id_map(np.full((40, 40), 3.0), [0, 0, 0], turned, house)
    assert ids[20, 20] == 2 and not (ids == 1).any()
    # The camera is camera_height above the agent's feet: 1 m lower, the middle rows see the floor-level box
    low = _wall_house(("rug", [0.0, 0.0, -3.0], [1.0, 0.5, 0.1]))
    assert object_id_map(np.full((40, 40), 3.0), [0, 0, 0], [0, 0, 0, 1], low, camera_height=0.25)[20, 20] == 1
    assert object_id_map(np.full((40, 40), 3.0), [0, 0, 0], [0, 0, 0, 1], low)[20, 20] == 0


def test_object_id_map_prefers_the_smallest_box_and_labels_every_stride_th_pixel():
    house = _wall_house(
        ("table", [0.0, 0.0, -3.0], [2.0, 2.0, 0.2]),  # big box around the line of sight
        ("lamp", [0.0, 1.0, -3.0], [0.3, 0.5, 0.2]),  # a small one inside it: the lamp on the table
    )
    depth = np.full((40, 40), 3.0, dtype=np.float32)
    full = object_id_map(depth, [0, 0, 0], [0, 0, 0, 1], house)
    assert full[20, 20] == 2 and full[20, 16] == 1 and full[0, 0] == 0
    strided = object_id_map(depth, [0, 0, 0], [0, 0, 0, 1], house, stride=4)
    assert strided.shape == (10, 10) and np.array_equal(strided, full[2::4, 2::4])  # the middle pixel of each block
    assert object_id_map(depth[:, :, None], [0, 0, 0], [0, 0, 0, 1], house).shape == (40, 40)  # the env's [H, W, 1]
    assert not object_id_map(depth, [0, 0, 0], [0, 0, 0, 1], _wall_house()).any()
    with pytest.raises(ValueError, match="depth must be"):
        object_id_map(np.zeros(5), [0, 0, 0], [0, 0, 0, 1], house)
    with pytest.raises(ValueError, match="stride must be >= 1"):
        object_id_map(depth, [0, 0, 0], [0, 0, 0, 1], house, stride=0)


class ObjectDriver(SceneDriver):
    """SceneDriver with a camera and depth: a wall 3 m ahead, a painting on it straight ahead (see above)."""

    def pose(self):
        return np.zeros(3), np.array([0.0, 0.0, 0.0, 1.0])

    def depth(self):
        return np.full((40, 40), 3.0, dtype=np.float32)

    def camera(self):
        return 90.0, 1.25

    def scene(self, episode):
        return _wall_house(("window", [9.0, 0.0, 9.0], [1, 1, 1]), ("painting", [0.0, 0.75, -3.0], [1.0, 1.0, 0.1])), None


def test_collect_stores_object_maps_aligned_with_frames(tmp_path):
    from vlm.train.dataset import TrajectoryDataset, objects_file

    out = tmp_path / "c"
    config = CollectConfig(output=str(out), object_size=5)
    manifest = collect(config, [make_episode(0, [1, 1, 0])], ObjectDriver(), ReplayExpert(), prompt_fn)
    assert manifest["settings"]["object_size"] == 5
    shard = out / "shard-00000"
    assert not (shard / "depth").exists()  # the depth is read for the maps, stored only with --depth-size
    stored = np.load(shard / objects_file("frames/r2r_train__0.npz"))
    assert stored["ids"].shape == (3, 5, 5) and stored["ids"].dtype == np.int16  # one map per stored frame
    assert stored["categories"].tolist() == ["window", "painting"] and stored["colours"].tolist() == ["white"] * 2
    # 40 px on 5 cells: 4 labelled pixels per 8-px cell; the painting covers pixels 16-23, the middle cell
    assert (stored["ids"][:, 2, 2] == 2).all() and stored["ids"].sum() == 3 * 2
    data = TrajectoryDataset(out)
    assert data.has_objects(0) and not data.has_depth(0)
    positions, ids, categories, _colours = next(data.current_objects([1, 0]))
    assert positions == [0, 1] and ids.shape == (2, 5, 5) and categories == ["window", "painting"]
    with pytest.raises(ValueError, match="object_size=5; this run asks for object_size=4"):
        collect(CollectConfig(output=str(out), object_size=4), [make_episode(0, [1, 1, 0])], ObjectDriver(),
                ReplayExpert(), prompt_fn)  # fmt: skip


def test_object_maps_name_what_is_missing(tmp_path):
    from vlm.train.dataset import TrajectoryDataset

    with pytest.raises(ValueError, match="--object-size must be >= 0"):
        CollectConfig(object_size=-1)
    with pytest.raises(ValueError, match="--object-size works on expert drives only"):
        CollectConfig(object_size=4, policy="m", beta=0.5)
    with pytest.raises(ValueError, match="--object-size needs a driver that knows the scene's semantics and its camera"):
        collect(CollectConfig(output=str(tmp_path / "a"), object_size=4), [make_episode(0, [1, 0])], SceneDepth(),
                ReplayExpert(), prompt_fn)  # fmt: skip
    collect(CollectConfig(output=str(tmp_path / "b")), [make_episode(0, [1, 0])], FakeDriver(), ReplayExpert(), prompt_fn)
    data = TrajectoryDataset(tmp_path / "b")
    assert not data.has_objects(0)
    with pytest.raises(ValueError, match=r"r2r_train__0.npz: no stored object maps; collect with .*--object-size"):
        next(data.current_objects([0]))


class SceneDepth(FakeDriver):
    """Observes depth, but knows no scene."""

    def depth(self):
        return np.full((8, 8), 2.0, dtype=np.float32)


def test_cli_collects_scene_qa_on_generated_houses_and_trains_on_it(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from benchmarks.cli import app

    monkeypatch.setenv("NAVILA_AGENT_GEN_HOUSES", "1")  # one house, two episodes per split: seconds
    monkeypatch.setenv("NAVILA_AGENT_GEN_EPISODES", "2")
    data = tmp_path / "collected"
    args = ["collect", "--split", "r2r_train", "--output", str(data), "--limit", "1", "--frame-size", "32"]
    result = CliRunner().invoke(app, [*args, "--scene-qa-every", "3"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    manifest = json.loads((data / "manifest.json").read_text())
    assert manifest["scene_qa"] > 0 and f"scene QA {manifest['scene_qa']}" in result.output
    qa = [s for s in read_jsonl(data / "shard-00000" / "samples.jsonl") if s.get("task") == "scene_qa"]
    assert qa[0]["conversations"][1]["value"].startswith("I am ")  # a generated house names its rooms
    run = tmp_path / "run"
    train = [
        "train",
        "--data-mixture",
        str(data),
        "--init",
        "tiny",
        "--batch-size",
        "4",
        "--steps",
        "2",
        "--vocab-size",
        "400",
        "--output",
        str(run),
        "--eval-every",
        "0",
    ]
    result = CliRunner().invoke(app, train, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert (run / "config.json").is_file()
