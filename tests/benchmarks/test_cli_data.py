"""End-to-end `navila-agent data build|show` on a tiny generated split and on the shared real R2R-CE sample."""

from __future__ import annotations

import shutil

import pytest
from typer.testing import CliRunner

from benchmarks.cli import app

runner = CliRunner()
ENV = {"COLUMNS": "250"}  # keep rich from wrapping the lines we look for


def invoke(*args: str):
    return runner.invoke(app, list(args), env=ENV)


@pytest.fixture(scope="module")
def built():
    result = invoke("data", "build", "--split", "r2r_val_unseen", "--houses", "1", "--episodes", "4")
    assert result.exit_code == 0, result.output
    return result


def test_build_reports_stats_and_caches(built):
    assert "r2r_val_unseen" in built.output and "4 episodes in 1 houses" in built.output
    assert "mean geodesic" in built.output
    again = invoke("data", "build", "--split", "r2r_val_unseen", "--houses", "1", "--episodes", "4")
    assert again.exit_code == 0 and "already built" in again.output


def test_show_generated_episode_and_map(built, tmp_path):
    from envs.datasets.splits import find_episode, load_split

    ep = find_episode(load_split("r2r_val_unseen"), "2")
    out = tmp_path / "map.png"
    result = invoke("data", "show", "r2r_val_unseen:2", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "r2r_val_unseen:2" in result.output and "gen/house_1000/house_1000.glb" in result.output
    assert ep.instruction.instruction_text.split(".")[0] in result.output
    assert f"{ep.geodesic_distance:.2f} m" in result.output
    assert f"{len(ep.gt.actions)} actions" in result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_show_split_summary(built):
    result = invoke("data", "show", "r2r_val_unseen")
    assert result.exit_code == 0, result.output
    assert "mean_geodesic_m" in result.output and "r2r_val_unseen:1" in result.output


def test_show_real_sample_episode(r2r_sample_dir, tmp_path):
    result = invoke("data", "show", "r2r_val_seen:4", "--data-root", str(r2r_sample_dir))
    assert result.exit_code == 0, result.output
    assert "mp3d/E9uDoFAP3SH/E9uDoFAP3SH.glb" in result.output and "mesh not found" in result.output
    assert "TURN LEFT YOU FACE A CHANDELIER" in result.output
    assert "66 actions (45 forward)" in result.output
    # no Matterport3D mesh in the sample: an explicit --out fails with a message, not a traceback
    result = invoke(
        "data", "show", "r2r_val_seen:4", "--data-root", str(r2r_sample_dir), "--out", str(tmp_path / "m.png")
    )
    assert result.exit_code == 1
    assert "cannot draw the map: scene mesh not found" in result.output
    assert not (tmp_path / "m.png").exists()


def test_map_of_real_layout_without_semantics_draws_the_grid(built, tmp_path):
    """A VLN-CE style data root whose scene has a mesh but no semantics file (like Matterport3D)."""
    from envs.datasets.generate import generated_dataset_dir
    from envs.datasets.splits import scene_root

    root = tmp_path / "data"
    shutil.copytree(
        generated_dataset_dir("r2r_val_unseen") / "val_unseen",
        root / "datasets" / "R2R_VLNCE_v1-3_preprocessed" / "val_unseen",
    )
    mesh_dir = root / "scene_datasets" / "gen" / "house_1000"
    mesh_dir.mkdir(parents=True)
    shutil.copy(scene_root() / "gen" / "house_1000" / "house_1000.glb", mesh_dir)
    out = tmp_path / "grid.png"
    result = invoke("data", "show", "r2r_val_unseen:1", "--data-root", str(root), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert out.is_file() and out.stat().st_size > 100


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["data", "show", "r2r_val_seen:999"], "episode '999' not in this split"),
        (["data", "show", "val_seen"], "unknown split 'val_seen' (did you mean 'r2r_val_seen'?)"),
        (["data", "show", "r2r_val_unseen"], "looked for:"),
        (["data", "build", "--split", "bogus"], "--split: unknown split 'bogus'"),
        (["data", "build", "--split", "r2r_test"], "cannot be generated"),
    ],
)
def test_bad_input_exits_2_with_message(r2r_sample_dir, args, message):
    if args[1] == "show" and args[2] != "val_seen":
        args = [*args, "--data-root", str(r2r_sample_dir)]
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_build_first_house_moves_a_split_to_other_houses(tmp_path, monkeypatch):
    """`--first-house` builds a training split in houses no other split uses (more distinct training houses)."""
    from envs.datasets.splits import load_split

    monkeypatch.setenv("NAVILA_AGENT_CACHE", str(tmp_path))  # its own cache: the shared r2r_train stays as it is
    args = ["data", "build", "--split", "r2r_train", "--houses", "1", "--episodes", "2", "--workers", "1"]
    result = invoke(*args, "--first-house", "40")
    assert result.exit_code == 0, result.output
    assert "2 episodes in 1 houses" in result.output
    assert {ep.scene_id for ep in load_split("r2r_train")} == {"gen/house_0040/house_0040.glb"}
    # a training split must not reach into the held-out houses of the val_unseen splits
    bad = invoke("data", "build", "--split", "r2r_train", "--houses", "2", "--first-house", "999")
    assert bad.exit_code == 2
    assert "--first-house/--houses" in bad.output and "houses 999...1000" in bad.output
    assert "overlap the unseen houses (1000+)" in bad.output
