"""VLN-CE metrics: hand-computed small trajectories, DTW worked out by hand, the real sample's ground truth."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.metrics import (
    METRIC_KEYS,
    aggregate,
    dtw_exact,
    dtw_fast,
    episode_metrics,
    format_markdown,
    format_table,
    navigation_error,
    ndtw,
    oracle_success,
    path_length,
    remove_consecutive_duplicates,
    sdtw,
    spl,
    stats_json,
    success,
)


def xz(*points: tuple[float, float]) -> list[list[float]]:
    """2-D examples on the floor plane (y = 0)."""
    return [[x, 0.0, z] for x, z in points]


def euclidean(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)))


# --- single metrics -------------------------------------------------------------------------------------------


def test_success_is_strict_and_needs_stop() -> None:
    assert success(True, 2.999) == 1.0
    assert success(True, 3.0) == 0.0  # strict: exactly 3 m is a failure
    assert success(False, 0.0) == 0.0  # ended at the step limit on the goal: still a failure


def test_oracle_success_uses_the_minimum_over_the_whole_path() -> None:
    assert oracle_success([9.0, 2.0, 8.0]) == 1.0
    assert oracle_success([9.0, 3.0, 8.0]) == 0.0


def test_navigation_error_is_the_last_distance() -> None:
    assert navigation_error([9.0, 2.0, 8.0]) == 8.0
    with pytest.raises(ValueError, match="no distances"):
        navigation_error([])


def test_path_length_is_euclidean_3d() -> None:
    assert path_length([[0, 0, 0], [3, 4, 0], [3, 4, 0], [3, 4, 2]]) == pytest.approx(7.0)
    assert path_length([[1, 2, 3]]) == 0.0


def test_spl_cases() -> None:
    assert spl(1.0, 4.0, 8.0) == pytest.approx(0.5)
    assert spl(1.0, 4.0, 2.0) == pytest.approx(1.0)  # shorter than geodesic (e.g. sliding): capped at 1
    assert spl(0.0, 4.0, 8.0) == 0.0
    assert spl(0.0, math.inf, 8.0) == 0.0  # a failure never produces NaN
    assert spl(1.0, 0.0, 0.0) == 1.0  # started on the goal and stopped: not 0/0


def test_sdtw_is_zero_for_failures_even_without_reference() -> None:
    assert sdtw(0.0, float("nan")) == 0.0
    assert sdtw(1.0, 0.7) == pytest.approx(0.7)


def test_remove_consecutive_duplicates_keeps_revisits() -> None:
    out = remove_consecutive_duplicates(xz((0, 0), (0, 0), (1, 0), (1, 0), (0, 0)))
    assert out.tolist() == xz((0, 0), (1, 0), (0, 0))


# --- DTW by hand ----------------------------------------------------------------------------------------------


def test_dtw_hand_example_one() -> None:
    # P = (0,0) (1,0) (2,0); R = (0,0) (2,0). Costs: P0 [0, 2]; P1 [1, 1]; P2 [2, 0].
    # D row 0 = [0, 2]; row 1 = [1, 1 + min(2, 1, 0)] = [1, 1]; row 2 = [3, 0 + min(1, 3, 1)] = [3, 1] → DTW = 1.
    p, r = np.array(xz((0, 0), (1, 0), (2, 0))), np.array(xz((0, 0), (2, 0)))
    assert dtw_exact(p, r) == pytest.approx(1.0)
    assert dtw_fast(p, r) == pytest.approx(1.0)
    assert ndtw(p, r, dtw="exact") == pytest.approx(math.exp(-1.0 / (2 * 3.0)))
    assert ndtw(p, r, dtw="fastdtw") == pytest.approx(math.exp(-1.0 / (2 * 3.0)))


def test_dtw_hand_example_two() -> None:
    # P = (0,0) (0,1); R = (1,0) (1,1) (1,2). Costs: P0 [1, √2, √5]; P1 [√2, 1, √2].
    # Row 0 = [1, 1+√2, 1+√2+√5]; row 1: [1+√2, 1 + min(1+√2, 1+√2, 1) = 2, √2 + min(1+√2+√5, 2, 1+√2) = 2+√2].
    p, r = np.array(xz((0, 0), (0, 1))), np.array(xz((1, 0), (1, 1), (1, 2)))
    expected = 2.0 + math.sqrt(2.0)
    assert dtw_exact(p, r) == pytest.approx(expected)
    assert ndtw(p, r, dtw="exact") == pytest.approx(math.exp(-expected / (3 * 3.0)))


def test_ndtw_ignores_standing_still() -> None:
    r = xz((0, 0), (1, 0), (2, 0))
    moving = xz((0, 0), (1, 0), (2, 0))
    with_turns = xz((0, 0), (0, 0), (0, 0), (1, 0), (1, 0), (2, 0))
    assert ndtw(with_turns, r, dtw="exact") == ndtw(moving, r, dtw="exact") == 1.0


def test_ndtw_without_reference_is_nan_and_unknown_method_is_rejected() -> None:
    assert math.isnan(ndtw(xz((0, 0)), []))
    with pytest.raises(ValueError, match="unknown dtw 'dp'; available: fastdtw, exact"):
        ndtw(xz((0, 0)), xz((0, 0)), dtw="dp")


def _dtw_brute_force(p: np.ndarray, r: np.ndarray) -> float:
    """The textbook O(NM) recurrence with explicit loops, to check the vectorised rows."""
    n, m = len(p), len(r)
    d = np.full((n + 1, m + 1), np.inf)
    d[0, 0] = 0.0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            cost = float(np.linalg.norm(p[i - 1] - r[j - 1]))
            d[i, j] = cost + min(d[i - 1, j], d[i, j - 1], d[i - 1, j - 1])
    return float(d[n, m])


points = st.lists(
    st.tuples(st.floats(-5, 5), st.floats(-5, 5)).map(lambda t: [t[0], 0.0, t[1]]), min_size=1, max_size=12
)


@settings(max_examples=60, deadline=None)
@given(p=points, r=points)
def test_exact_dtw_matches_brute_force_and_fastdtw_is_an_upper_bound(p: list, r: list) -> None:
    p_arr, r_arr = np.array(p), np.array(r)
    exact = dtw_exact(p_arr, r_arr)
    assert exact == pytest.approx(_dtw_brute_force(p_arr, r_arr), rel=1e-9, abs=1e-9)
    assert dtw_fast(p_arr, r_arr) >= exact - 1e-9


def test_fastdtw_with_l2_norm_matches_vlnce_callable_distance() -> None:
    """VLN-CE passes a Python Euclidean function to fastdtw; dist=2 (the L2 norm) must give the same number."""
    from fastdtw import fastdtw

    rng = np.random.default_rng(0)
    p = np.cumsum(rng.normal(size=(60, 3)), axis=0)
    r = np.cumsum(rng.normal(size=(45, 3)), axis=0)
    vlnce, _ = fastdtw(
        p.tolist(), r.tolist(), dist=lambda a, b: np.linalg.norm(np.array(a) - np.array(b), ord=2)
    )
    assert dtw_fast(p, r) == pytest.approx(vlnce)


def test_ground_truth_replay_of_real_sample_gives_ndtw_one(r2r_sample_dir: Path) -> None:
    path = r2r_sample_dir / "val_seen" / "val_seen_gt.json.gz"
    with gzip.open(path, "rt") as f:
        gt = json.load(f)
    assert len(gt) == 20
    for episode_id, record in gt.items():
        locations = record["locations"]
        assert len(locations) > 1, episode_id
        for method in ("fastdtw", "exact"):
            assert ndtw(locations, locations, dtw=method) == 1.0, (episode_id, method)
        # A copy shifted 1 m sideways scores lower, but no lower than matching each point to its own copy
        # (DTW <= |R| * 1 m, so nDTW >= exp(-1/3)).
        shifted = (np.asarray(locations) + np.array([1.0, 0.0, 0.0])).tolist()
        assert math.exp(-1.0 / 3.0) - 1e-12 <= ndtw(shifted, locations, dtw="exact") < 1.0


# --- one episode ----------------------------------------------------------------------------------------------


def test_episode_metrics_hand_computed_detour() -> None:
    # A detour around a box: (0,0) → (0,1) → (1,1) → (1,0) → (2,0), TL = 4; goal at (3.5, 0).
    positions = xz((0, 0), (0, 0), (0, 1), (1, 1), (1, 0), (2, 0))
    goal = [3.5, 0.0, 0.0]
    reference = xz((0, 0), (1, 0), (2, 0), (3, 0))
    calls: list[tuple] = []

    def geodesic(a: np.ndarray, b: np.ndarray) -> float:
        calls.append((tuple(a), tuple(b)))
        return euclidean(a, b)

    m = episode_metrics(positions, True, goal, reference, geodesic, collisions=1, steps=5, dtw="exact")
    assert list(m) == list(METRIC_KEYS)
    assert m["ne"] == pytest.approx(1.5)
    assert m["sr"] == 1.0 and m["os"] == 1.0
    assert m["tl"] == pytest.approx(4.0)
    assert m["spl"] == pytest.approx(3.5 / 4.0)
    # P (deduplicated) = (0,0) (0,1) (1,1) (1,0) (2,0); R = (0,0) (1,0) (2,0) (3,0).
    assert m["ndtw"] == pytest.approx(
        math.exp(
            -dtw_exact(np.array(xz((0, 0), (0, 1), (1, 1), (1, 0), (2, 0))), np.array(reference)) / (4 * 3.0)
        )
    )
    assert m["sdtw"] == m["ndtw"]
    assert m["steps"] == 5 and m["collisions"] == 1
    assert len(calls) == 5  # the repeated start position is queried once


def test_episode_metrics_step_limit_and_near_miss() -> None:
    positions = xz((0, 0), (1, 0), (2, 0))
    goal = [5.0, 0.0, 0.0]  # d = 5, 4, 3: 3.0 is not < 3.0
    m = episode_metrics(positions, True, goal, xz((0, 0), (5, 0)), euclidean, collisions=0, steps=2)
    assert m["sr"] == 0.0 and m["os"] == 0.0 and m["spl"] == 0.0 and m["sdtw"] == 0.0
    near = episode_metrics(xz((0, 0), (4, 0)), False, goal, [], euclidean, collisions=0, steps=500)
    assert near["os"] == 1.0 and near["sr"] == 0.0  # step limit near the goal: oracle success only
    assert math.isnan(near["ndtw"]) and near["sdtw"] == 0.0


def test_episode_metrics_rejects_bad_input_with_a_clear_message() -> None:
    with pytest.raises(ValueError, match="positions is empty"):
        episode_metrics([], True, [0, 0, 0], [], euclidean, collisions=0, steps=0)
    with pytest.raises(ValueError, match=r"positions: expected a list of \[x, y, z\] points"):
        episode_metrics([[0, 0]], True, [0, 0, 0], [], euclidean, collisions=0, steps=0)
    with pytest.raises(ValueError, match="goal must be"):
        episode_metrics(xz((0, 0)), True, [0, 0], [], euclidean, collisions=0, steps=0)


# --- aggregation and output -----------------------------------------------------------------------------------


def test_aggregate_means_over_finite_values_and_counts_the_rest() -> None:
    episodes = [
        {"ne": 1.0, "sr": 1.0, "spl": 0.5},
        {"ne": 3.0, "sr": 0.0, "spl": float("nan")},
        {"ne": float("inf"), "sr": 0.0, "spl": 0.0},
    ]
    summary = aggregate(episodes)
    assert summary["ne"] == pytest.approx(2.0)
    assert summary["sr"] == pytest.approx(1 / 3)
    assert summary["spl"] == pytest.approx(0.25)
    assert summary["episodes"] == 3
    assert summary["non_finite"] == {"ne": 1, "sr": 0, "spl": 1}


def test_aggregate_all_non_finite_and_empty() -> None:
    summary = aggregate([{"ndtw": float("nan")}, {"ndtw": None}])
    assert math.isnan(summary["ndtw"]) and summary["non_finite"] == {"ndtw": 2}
    assert aggregate([]) == {"episodes": 0, "non_finite": {}}


def test_stats_json_is_strict_json_and_records_the_dtw_method() -> None:
    summary = aggregate([{"ne": 1.0, "ndtw": float("nan")}])
    text = stats_json(summary, dtw="exact", split="r2r_val_seen")
    loaded = json.loads(text)  # strict: no NaN tokens
    assert "NaN" not in text
    assert loaded["ndtw"] is None and loaded["non_finite"]["ndtw"] == 1
    assert loaded["dtw"] == "exact" and loaded["split"] == "r2r_val_seen"
    with pytest.raises(ValueError, match="unknown dtw"):
        stats_json(summary, dtw="slow")


def test_tables_show_percentages_and_non_finite_counts() -> None:
    from rich.console import Console

    summary = aggregate([{"ne": 1.25, "sr": 1.0, "spl": float("nan")}, {"ne": 2.75, "sr": 0.0, "spl": 0.5}])
    console = Console(width=200, record=True)
    console.print(format_table(summary))
    text = console.export_text()
    assert "2.00" in text and "50.0" in text and "(1 non-finite)" in text
    md = format_markdown(summary)
    assert "| NE (m) | SR % | SPL % | episodes |" in md
    assert "| 2.00 | 50.0 | 50.0 (1 non-finite) | 2 |" in md


@settings(max_examples=60, deadline=None)
@given(path=points, reference=points, stopped=st.booleans(), method=st.sampled_from(["fastdtw", "exact"]))
def test_metric_invariants(path: list, reference: list, stopped: bool, method: str) -> None:
    goal = reference[-1]
    m = episode_metrics(
        path, stopped, goal, reference, euclidean, collisions=0, steps=len(path) - 1, dtw=method
    )
    assert 0.0 < m["ndtw"] <= 1.0
    assert m["sr"] <= m["os"] and m["sr"] <= float(stopped)
    assert 0.0 <= m["spl"] <= m["sr"] and 0.0 <= m["sdtw"] <= m["ndtw"]
    assert m["ne"] >= 0.0 and m["tl"] >= 0.0
