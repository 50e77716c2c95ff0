"""Contract test: what the runner's --record writes (benchmarks.runner + RecordingCallback, on the fake env of
tests/benchmarks/fakes.py) is what the viewer and the video exporter read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from viz.run_folder import list_episodes, load_record, load_run, missing_files, record_dir
from viz.video import write_episode_video


@pytest.fixture()
def recorded_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from benchmarks import runner
    from tests.benchmarks.fakes import FAKE_FACTORIES

    monkeypatch.setenv("NAVILA_FAKE_EPISODES", "3")
    out = tmp_path / "run"
    config = runner.EvalConfig(split="r2r_val_unseen", output=out, agent="oracle", record=True)
    runner.evaluate(config, factories=FAKE_FACTORIES)
    return out


def test_runner_records_load_in_the_viewer(recorded_run: Path, tmp_path: Path) -> None:
    run = load_run(recorded_run)
    rows = list_episodes(run)
    assert len(rows) == 3 and all(r["has_record"] for r in rows), rows
    for row in rows:
        ep_dir = record_dir(run, row["uid"])
        rec = load_record(ep_dir)
        assert rec["uid"] == row["uid"] and len(rec["steps"]) >= 2
        assert missing_files(rec, ep_dir) == []
        json.dumps(rec, allow_nan=False)  # what /api/episode sends must be strict JSON
    out = write_episode_video(record_dir(run, rows[0]["uid"]), tmp_path / "v.mp4", fps=4)
    assert out.stat().st_size > 0
