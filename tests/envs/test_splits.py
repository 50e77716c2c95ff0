"""Split registry: names, where real data is looked up, scene paths."""

from __future__ import annotations

import shutil

import pytest

from envs.datasets.splits import (
    GENERATED_SPLITS,
    SPLITS,
    candidate_dirs,
    find_episode,
    load_split,
    parse_split,
    read_split_data,
    scene_path,
    semantics_path,
)
from envs.paths import generated_root


def test_parse_split_names():
    assert parse_split("r2r_val_unseen") == ("r2r", "val_unseen")
    assert parse_split("rxr_train") == ("rxr", "train")
    assert parse_split("rxr_test_challenge") == ("rxr", "test_challenge")
    assert set(GENERATED_SPLITS) <= set(SPLITS)
    with pytest.raises(
        ValueError, match=r"unknown split 'val_seen' \(did you mean 'r2r_val_seen'\?\); available: r2r_train"
    ):
        parse_split("val_seen")
    with pytest.raises(ValueError, match=r"unknown split 'r2r_vall_unseen' .*did you mean 'r2r_val_unseen'"):
        parse_split("r2r_vall_unseen")


def test_bare_sample_folder_maps_to_prefixed_split(r2r_sample_dir):
    eps = load_split("r2r_val_seen", data_root=r2r_sample_dir)
    assert len(eps) == 20 and eps[0].dataset == "r2r" and eps[0].split == "val_seen"
    assert find_episode(eps, "4").episode_id == "4"
    with pytest.raises(ValueError, match="episode '999' not in this split"):
        find_episode(eps, "999")


def test_vlnce_data_folder_layout_is_found_first(r2r_sample_dir, tmp_path):
    target = tmp_path / "data" / "datasets" / "R2R_VLNCE_v1-3_preprocessed" / "val_seen"
    shutil.copytree(r2r_sample_dir / "val_seen", target)
    data = read_split_data("r2r_val_seen", data_root=tmp_path / "data")
    assert data.episodes_path == target / "val_seen.json.gz"
    # a `data/datasets` folder works too
    data = read_split_data("r2r_val_seen", data_root=tmp_path / "data" / "datasets")
    assert data.episodes_path == target / "val_seen.json.gz"
    ep = data.episodes[0]
    assert scene_path(ep, tmp_path / "data") == tmp_path / "data" / "scene_datasets" / ep.scene_id
    assert semantics_path(ep, tmp_path / "data").name == ep.scene_id.split("/")[1] + ".semantics.json"


def test_missing_split_lists_every_path_tried(r2r_sample_dir, tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_split("r2r_val_unseen", data_root=r2r_sample_dir)
    msg = str(err.value)
    for d in candidate_dirs("r2r_val_unseen", r2r_sample_dir):
        assert str(d / "val_unseen" / "val_unseen.json.gz") in msg
    assert "R2R_VLNCE_v1-3_preprocessed" in msg
    with pytest.raises(FileNotFoundError, match=r"val_seen_guide\.json\.gz"):
        load_split("rxr_val_seen", data_root=tmp_path)


def test_real_only_split_needs_data_root():
    with pytest.raises(
        ValueError, match="split 'r2r_test' exists only in real data; pass a VLN-CE data folder"
    ):
        load_split("r2r_test")


def test_generated_scene_paths_live_under_generated_root(r2r_sample_dir):
    ep = load_split("r2r_val_seen", data_root=r2r_sample_dir)[0]
    ep.scene_id = "gen/house_0001/house_0001.glb"
    assert scene_path(ep) == generated_root() / "scene_datasets" / "gen" / "house_0001" / "house_0001.glb"
    assert semantics_path(ep) == scene_path(ep).with_name("house_0001.semantics.json")
