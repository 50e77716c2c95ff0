"""benchmarks/bench_expert.py: the label statistics it prints are counted right, and it runs on a generated house."""

from __future__ import annotations

import json

import pytest

from benchmarks import bench_expert
from envs.constants import MOVE_FORWARD as F
from envs.constants import STOP as S
from envs.constants import TURN_LEFT as L
from envs.constants import TURN_RIGHT as R
from envs.follower import count_zigzags


def test_zigzags_counts_turn_step_opposite_turn() -> None:
    assert count_zigzags([L, F, R, F, L, F, F, S]) == 2  # L F R and R F L
    assert count_zigzags([L, F, L, F, F, R, F, F, S]) == 0  # same-side corrections, two-step gaps


def test_label_stats_merges_like_navila() -> None:
    # forward x4 -> "forward 75" + "forward 25"; left x2 -> "turn 30"; stop
    stats = bench_expert.label_stats([[F, F, F, F, L, L, S]])
    assert stats["decisions_per_path"] == 4
    share = stats["label_share"]
    assert share["forward 75"] == share["forward 25"] == share["turn 30"] == share["stop"] == 0.25
    assert stats["zigzags_per_path"] == 0


@pytest.mark.slow
def test_bench_expert_runs_and_the_expert_zigzags_least(tmp_path) -> None:
    out = tmp_path / "expert.json"
    bench_expert.main(houses=1, paths=6, seed=0, json_out=out)
    results = json.loads(out.read_text())
    assert list(results) == list(bench_expert.SETTINGS)
    habitat, expert = results["habitat rule"], results["+ turn hysteresis (v3, expert)"]
    assert expert["paths"] == habitat["paths"] >= 5
    assert expert["decisions_per_path"] < habitat["decisions_per_path"]
    assert expert["zigzags_per_path"] < habitat["zigzags_per_path"]
    assert all(abs(sum(r["label_share"].values()) - 1) < 1e-9 for r in results.values())
