"""VLN-CE episode files: the real R2R-CE sample reads with every field intact and round-trips exactly."""

from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path

import pytest

from envs.datasets.episode import Episode, Goal, GroundTruth, Instruction
from envs.datasets.io import read_r2r_split, read_rxr_split, write_split


def _load(path: Path):
    with gzip.open(path, "rt") as f:
        return json.load(f)


def _dump(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as f:
        json.dump(obj, f)


def test_reads_real_sample_with_every_field(r2r_sample_dir):
    data = read_r2r_split(r2r_sample_dir, "val_seen")
    raw = _load(r2r_sample_dir / "val_seen" / "val_seen.json.gz")
    raw_gt = _load(r2r_sample_dir / "val_seen" / "val_seen_gt.json.gz")
    assert len(data.episodes) == len(raw["episodes"]) == 20
    ep, src = data.episodes[0], raw["episodes"][0]
    assert ep.episode_id == str(src["episode_id"]) and ep.episode_id_is_int
    assert ep.trajectory_id == src["trajectory_id"]
    assert ep.scene_id == src["scene_id"] and ep.scene_id.startswith("mp3d/")
    assert ep.start_position == src["start_position"]
    assert ep.start_rotation == src["start_rotation"]
    assert ep.info == src["info"]
    assert ep.geodesic_distance == src["info"]["geodesic_distance"]
    assert ep.goals[0].position == src["goals"][0]["position"] and ep.goals[0].radius == 3.0
    assert ep.instruction.instruction_text == src["instruction"]["instruction_text"]
    assert ep.instruction.instruction_tokens == src["instruction"]["instruction_tokens"]
    assert ep.reference_path == src["reference_path"]
    assert ep.dataset == "r2r" and ep.split == "val_seen" and ep.uid == f"r2r_val_seen:{ep.episode_id}"
    assert ep.extra == {}
    gt = raw_gt[ep.episode_id]
    assert ep.gt.locations == gt["locations"] and ep.gt.actions == gt["actions"]
    assert ep.gt.forward_steps == gt["forward_steps"]
    assert ep.gt.actions[-1] == 0
    assert data.instruction_vocab == raw["instruction_vocab"]


def test_read_write_read_is_identical(r2r_sample_dir, tmp_path):
    data = read_r2r_split(r2r_sample_dir, "val_seen")
    write_split(tmp_path, "val_seen", data.episodes, vocab=data.instruction_vocab)
    for name in ("val_seen.json.gz", "val_seen_gt.json.gz"):
        original = _load(r2r_sample_dir / "val_seen" / name)
        rewritten = _load(tmp_path / "val_seen" / name)
        assert rewritten == original, name
        # same key order too, so diffs of the files stay readable
        assert json.dumps(rewritten) == json.dumps(original), name
    again = read_r2r_split(tmp_path, "val_seen")
    assert again.episodes == data.episodes


def test_unknown_fields_survive_round_trip(r2r_sample_dir, tmp_path):
    raw = _load(r2r_sample_dir / "val_seen" / "val_seen.json.gz")
    raw["episodes"][0]["my_field"] = {"a": 1}
    raw["episodes"][0]["info"]["extra_info"] = "x"
    _dump(tmp_path / "src" / "val_seen" / "val_seen.json.gz", raw)
    (tmp_path / "src" / "val_seen" / "val_seen_gt.json.gz").write_bytes(
        (r2r_sample_dir / "val_seen" / "val_seen_gt.json.gz").read_bytes()
    )
    data = read_r2r_split(tmp_path / "src", "val_seen")
    assert data.episodes[0].extra == {"my_field": {"a": 1}}
    write_split(tmp_path / "out", "val_seen", data.episodes, vocab=data.instruction_vocab)
    assert _load(tmp_path / "out" / "val_seen" / "val_seen.json.gz") == raw


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda e: e.__setitem__("start_rotation", [0, 1, 0]),
            "episode 1: start_rotation must have 4 numbers, got 3",
        ),
        (lambda e: e.__setitem__("start_position", "here"), "episode 1: start_position must be a list of 3"),
        (lambda e: e.pop("scene_id"), "episode 1: missing field 'scene_id'"),
        (lambda e: e.__setitem__("goals", []), "episode 1: goals must be a non-empty list"),
        (
            lambda e: e["goals"][0].__setitem__("position", [1, 2]),
            r"episode 1: goals\[0\].position must have 3",
        ),
        (lambda e: e["instruction"].pop("instruction_text"), "episode 1: instruction must be an object"),
        (
            lambda e: e["reference_path"].__setitem__(1, [1, "a", 2]),
            r"episode 1: reference_path\[1\] must contain",
        ),
        (lambda e: e["info"].__setitem__("geodesic_distance", "far"), "episode 1: info.geodesic_distance"),
    ],
)
def test_malformed_episode_names_file_episode_and_field(r2r_sample_dir, tmp_path, mutate, message):
    raw = _load(r2r_sample_dir / "val_seen" / "val_seen.json.gz")
    mutate(raw["episodes"][0])
    _dump(tmp_path / "val_seen" / "val_seen.json.gz", raw)
    (tmp_path / "val_seen" / "val_seen_gt.json.gz").write_bytes(
        (r2r_sample_dir / "val_seen" / "val_seen_gt.json.gz").read_bytes()
    )
    with pytest.raises(ValueError, match=rf"val_seen\.json\.gz: {message}"):
        read_r2r_split(tmp_path, "val_seen")


def test_malformed_gt_and_missing_files(r2r_sample_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere/val_seen/val_seen\.json\.gz"):
        read_r2r_split(tmp_path / "nowhere", "val_seen")
    (tmp_path / "val_seen").mkdir()
    (tmp_path / "val_seen" / "val_seen.json.gz").write_bytes(
        (r2r_sample_dir / "val_seen" / "val_seen.json.gz").read_bytes()
    )
    with pytest.raises(FileNotFoundError, match=r"val_seen_gt\.json\.gz"):
        read_r2r_split(tmp_path, "val_seen")
    assert all(ep.gt is None for ep in read_r2r_split(tmp_path, "val_seen", require_gt=False).episodes)
    gt = _load(r2r_sample_dir / "val_seen" / "val_seen_gt.json.gz")
    gt["3"]["actions"] = [1, 9]
    _dump(tmp_path / "val_seen" / "val_seen_gt.json.gz", gt)
    with pytest.raises(ValueError, match=r"val_seen_gt\.json\.gz: episode 3: actions must be"):
        read_r2r_split(tmp_path, "val_seen")
    del gt["3"]
    _dump(tmp_path / "val_seen" / "val_seen_gt.json.gz", gt)
    with pytest.raises(ValueError, match="episode 3: missing from the ground truth"):
        read_r2r_split(tmp_path, "val_seen")
    (tmp_path / "val_seen" / "val_seen.json.gz").write_bytes(b"not gzip")
    with pytest.raises(ValueError, match=r"val_seen\.json\.gz: not a gzip-compressed JSON"):
        read_r2r_split(tmp_path, "val_seen")


def _rxr_episode(eid: str, language: str) -> Episode:
    return Episode(
        episode_id=eid,
        trajectory_id="7",
        scene_id="mp3d/abc/abc.glb",
        start_position=[0.5, 0.0, -1.0],
        start_rotation=[0.0, 0.96, 0.0, -0.25],
        goals=[Goal([2.0, 0.0, -3.0], 3.0)],
        instruction=Instruction(
            "Walk to the sofa and stop.",
            None,
            {
                "instruction_id": eid,
                "language": language,
                "annotator_id": "3",
                "edit_distance": 0.07,
                "timed_instruction": [{"word": "Walk", "start_time": 1.0, "end_time": 1.4}],
            },
        ),
        reference_path=[[0.5, 0.0, -1.0], [2.0, 0.0, -3.0]],
        geodesic_distance=None,
        gt=GroundTruth([[0.5, 0.0, -1.0], [0.5, 0.0, -1.25]], [1, 0], 1),
        dataset="rxr",
        split="val_unseen",
        episode_id_is_int=False,
        info={"role": "guide"},
    )


def test_rxr_role_files_language_filter_and_round_trip(tmp_path):
    eps = [_rxr_episode("1", "en-US"), _rxr_episode("2", "hi-IN"), _rxr_episode("3", "en-IN")]
    path = write_split(tmp_path, "val_unseen", eps, role="guide")
    assert path == tmp_path / "val_unseen" / "val_unseen_guide.json.gz"
    assert (tmp_path / "val_unseen" / "val_unseen_guide_gt.json.gz").is_file()
    raw = _load(path)
    assert "instruction_vocab" not in raw and raw["episodes"][0]["episode_id"] == "1"
    assert raw["episodes"][0]["instruction"]["timed_instruction"][0]["word"] == "Walk"
    assert "geodesic_distance" not in raw["episodes"][0]["info"]

    en = read_rxr_split(tmp_path, "val_unseen")
    assert [e.episode_id for e in en.episodes] == ["1"]
    assert en.episodes[0] == eps[0]
    everything = read_rxr_split(tmp_path, "val_unseen", languages=None)
    assert everything.episodes == eps
    assert [
        e.episode_id for e in read_rxr_split(tmp_path, "val_unseen", languages=("en-US", "en-IN")).episodes
    ] == [
        "1",
        "3",
    ]
    with pytest.raises(FileNotFoundError, match=r"val_unseen_follower\.json\.gz"):
        read_rxr_split(tmp_path, "val_unseen", role="follower")
    with pytest.raises(ValueError, match="unknown RxR role 'leader'; available: guide, follower"):
        read_rxr_split(tmp_path, "val_unseen", role="leader")


def test_rxr_accepts_roleless_gt_name_and_lists_tried_names(tmp_path):
    eps = [_rxr_episode("1", "en-US")]
    write_split(tmp_path, "val_seen", eps, role="guide")
    gt = tmp_path / "val_seen" / "val_seen_guide_gt.json.gz"
    gt.rename(tmp_path / "val_seen" / "val_seen_gt.json.gz")
    assert read_rxr_split(tmp_path, "val_seen").episodes[0].gt == eps[0].gt
    (tmp_path / "val_seen" / "val_seen_gt.json.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"val_seen_guide_gt\.json\.gz, .*val_seen_gt\.json\.gz"):
        read_rxr_split(tmp_path, "val_seen")


def test_writer_rejects_duplicate_ids_and_is_deterministic(tmp_path):
    ep = _rxr_episode("1", "en-US")
    with pytest.raises(ValueError, match=r"duplicate episode ids \['1'\]"):
        write_split(tmp_path, "x", [ep, copy.deepcopy(ep)], role="guide")
    a = write_split(tmp_path / "a", "x", [ep], role="guide").read_bytes()
    b = write_split(tmp_path / "b", "x", [ep], role="guide").read_bytes()
    assert a == b
