"""Paired comparison of two run folders (`benchmarks/compare.py`, `navila-agent compare`)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from benchmarks.cli import app
from benchmarks.compare import compare_runs, mcnemar_exact, paired_metric, spread_runs, wilson_interval
from benchmarks.store import RunFolderError


def write_run(folder: Path, episodes: dict[int, tuple[float, float] | None]) -> Path:
    """A run folder whose results.jsonl holds episode k with (sr, spl), or a crashed record for None."""
    folder.mkdir(parents=True)
    lines = []
    for k, value in episodes.items():
        uid = f"r2r_val_unseen:{k}"
        if value is None:
            lines.append({"uid": uid, "status": "error", "error": "boom"})
        else:
            sr, spl = value
            lines.append({"uid": uid, "status": "ok", "metrics": {"sr": sr, "spl": spl, "ne": 5.0 - 2 * sr}})
    (folder / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return folder


def test_mcnemar_exact_matches_the_binomial_tail():
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(0, 5) == pytest.approx(2 / 32)  # 2 * P(X <= 0), X ~ Bin(5, 1/2)
    assert mcnemar_exact(1, 9) == pytest.approx(2 * 11 / 1024) == mcnemar_exact(9, 1)
    assert mcnemar_exact(11, 19) == pytest.approx(0.2005, abs=1e-4)  # run G vs F in the training log
    assert mcnemar_exact(7, 7) == 1.0
    with pytest.raises(ValueError, match="counts must be >= 0"):
        mcnemar_exact(-1, 2)


def test_wilson_interval():
    low, high = wilson_interval(25, 200)  # the shipped model: 25 successes in 200 episodes
    assert (round(100 * low, 1), round(100 * high, 1)) == (8.6, 17.8)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and 0.25 < high < 0.35


def test_paired_metric_mean_and_standard_error():
    a = [{"spl": 0.0}, {"spl": 0.5}, {"spl": 1.0}, {"spl": float("nan")}]
    b = [{"spl": 0.5}, {"spl": 0.5}, {"spl": 0.5}, {"spl": 0.9}]
    m = paired_metric("spl", a, b)
    assert m.n == 3  # the non-finite pair is left out, not counted as 0
    assert m.diff == pytest.approx(0.0) and m.mean_a == pytest.approx(0.5) and m.mean_b == pytest.approx(0.5)
    assert m.se == pytest.approx(math.sqrt((0.25 + 0 + 0.25) / 2 / 3))  # diffs +0.5, 0, -0.5
    assert m.low == pytest.approx(-1.96 * m.se, rel=1e-3) and m.high == pytest.approx(1.96 * m.se, rel=1e-3)


def test_compare_pairs_by_episode_and_names_what_it_left_out(tmp_path):
    a = write_run(
        tmp_path / "a", {1: (1, 0.8), 2: (1, 0.9), 3: (0, 0), 4: (0, 0), 5: (1, 0.5), 6: (0, 0), 7: None}
    )
    b = write_run(
        tmp_path / "b", {1: (1, 0.9), 2: (0, 0), 3: (1, 0.7), 4: (1, 0.6), 5: (1, 0.5), 7: (1, 1), 8: (0, 0)}
    )
    cmp = compare_runs(a, b)
    assert cmp.paired == 5  # 1..5: 6 is only in A, 8 only in B, 7 crashed in A
    assert cmp.only_in_a == ["r2r_val_unseen:6"] and cmp.only_in_b == ["r2r_val_unseen:8"]
    assert cmp.not_ok == ["r2r_val_unseen:7"]
    assert cmp.success == {"both": 2, "only_a": 1, "only_b": 2, "neither": 0}
    assert cmp.mcnemar_p == pytest.approx(1.0)
    spl = next(m for m in cmp.metrics if m.key == "spl")
    assert spl.n == 5 and spl.diff == pytest.approx((0.1 - 0.9 + 0.7 + 0.6 + 0) / 5)
    assert [m.key for m in cmp.metrics] == ["ne", "sr", "spl"]  # METRIC_KEYS order, only keys present


def test_compare_refuses_runs_without_common_episodes(tmp_path):
    a = write_run(tmp_path / "a", {1: (1, 1.0)})
    b = write_run(tmp_path / "b", {2: (1, 1.0)})
    with pytest.raises(RunFolderError, match="no finished episode in common"):
        compare_runs(a, b)
    with pytest.raises(RunFolderError, match="no such run folder"):
        compare_runs(a, tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunFolderError, match="no recorded episodes"):
        compare_runs(a, tmp_path / "empty")


def test_cli_compare_prints_the_tables_and_writes_json(tmp_path):
    a = write_run(tmp_path / "a", {k: (float(k % 4 == 0), 0.5 * (k % 4 == 0)) for k in range(1, 41)})
    b = write_run(tmp_path / "b", {k: (float(k % 2 == 0), 0.6 * (k % 2 == 0)) for k in range(1, 41)})
    out = tmp_path / "cmp" / "a_vs_b.json"
    runner = CliRunner()
    result = runner.invoke(app, ["compare", str(a), str(b), "--json", str(out)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "40 paired episodes" in result.output
    assert "both 10, only A 0, only B 10, neither 20; McNemar exact p = 0.002" in result.output
    assert "SR %" in result.output and "+25.0" in result.output
    saved = json.loads(out.read_text())
    assert saved["paired"] == 40 and saved["success"]["only_b"] == 10
    assert saved["mcnemar_p"] == pytest.approx(2 / 1024)
    bad = runner.invoke(app, ["compare", str(a), str(tmp_path / "nope")], env={"COLUMNS": "200"})
    assert bad.exit_code == 2 and "no such run folder" in bad.output


@pytest.mark.parametrize("split", ["r2r_val_unseen", "r2r_val_seen"])
def test_shipped_model_per_episode_results_match_its_summaries(split):
    """The shipped model's per-episode results (so a new checkpoint is compared with it, paired, without
    re-running it) hold the episodes and the metrics its summary and the model card report."""
    from benchmarks.store import load_results

    eval_dir = Path(__file__).resolve().parents[2] / "models" / "navila-tiny" / "training" / "eval"
    summary = json.loads((eval_dir / f"summary_{split}.json").read_text())
    records = load_results(eval_dir / split)
    assert {r["status"] for r in records.values()} == {"ok"}
    assert len(records) == summary["episodes"]
    for key in ("sr", "spl", "ne", "ndtw"):
        mean = sum(r["metrics"][key] for r in records.values()) / len(records)
        assert mean == pytest.approx(summary[key], abs=1e-9), key
    same = compare_runs(eval_dir / split, eval_dir / split)
    assert same.paired == summary["episodes"] and same.success["only_a"] == same.success["only_b"] == 0


def test_spread_of_three_runs_on_the_episodes_all_of_them_finished(tmp_path):
    """`spread_runs`: per-run means over the episodes every run finished, their mean / sd / range, how many
    episodes succeed in 0..N runs, and McNemar's p for each pair."""
    a = write_run(tmp_path / "a", {1: (1, 0.8), 2: (1, 0.6), 3: (0, 0), 4: (0, 0), 5: (0, 0)})
    b = write_run(tmp_path / "b", {1: (1, 1.0), 2: (0, 0), 3: (1, 0.4), 4: (0, 0), 5: None})
    c = write_run(tmp_path / "c", {1: (1, 0.6), 2: (0, 0), 3: (0, 0), 4: (0, 0), 6: (1, 1)})
    spread = spread_runs([a, b, c])
    assert spread.paired == 4  # 1..4: 5 crashed in B and is missing from C, 6 is only in C
    assert spread.left_out == ["r2r_val_unseen:5", "r2r_val_unseen:6"]
    assert [round(m["sr"], 4) for m in spread.per_run] == [0.5, 0.5, 0.25]
    assert spread.mean["sr"] == pytest.approx(5 / 12)
    assert spread.sd["sr"] == pytest.approx(math.sqrt(((1 / 12) ** 2 * 2 + (1 / 6) ** 2) / 2))
    assert (spread.low["sr"], spread.high["sr"]) == (0.25, 0.5)
    assert spread.per_run[1]["spl"] == pytest.approx(1.4 / 4)
    assert spread.succeeded_in == [1, 2, 0, 1]  # 4: none; 2, 3: one run each; 1: all three
    assert [(p["a"], p["b"], p["only_a"], p["only_b"]) for p in spread.pairs] == [
        (0, 1, 1, 1),
        (0, 2, 1, 0),
        (1, 2, 1, 0),
    ]
    assert spread.pairs[1]["mcnemar_p"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="at least 2 run folders"):
        spread_runs([a])
    with pytest.raises(RunFolderError, match="no finished episode in common"):
        spread_runs([a, write_run(tmp_path / "d", {9: (1, 1.0)})])


def test_cli_spread_prints_the_table_and_writes_json(tmp_path):
    runs = [
        write_run(tmp_path / name, {k: (float(k % m == 0), 0.5 * (k % m == 0)) for k in range(1, 41)})
        for name, m in (("s0", 4), ("s1", 2), ("s2", 5))
    ]
    out = tmp_path / "spread" / "seeds.json"
    runner = CliRunner()
    result = runner.invoke(app, ["spread", *map(str, runs), "--json", str(out)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "40 episodes finished in every run" in result.output and "SR %" in result.output
    assert "25.0" in result.output and "50.0" in result.output and "20.0 – 50.0" in result.output
    assert "1 vs 2: successes only in 1 0, only in 2 10; McNemar exact p = 0.002" in result.output
    # Successes at multiples of 4, 2 and 5 in 1..40. All three: 20, 40. Two: the other multiples of 4 (8) and
    # 10, 30. One: the other even numbers (8) and the odd multiples of 5 (4). None: the other 16.
    saved = json.loads(out.read_text())
    assert saved["succeeded_in"] == [16, 12, 10, 2] and saved["paired"] == 40
    bad = runner.invoke(app, ["spread", str(runs[0])], env={"COLUMNS": "200"})
    assert bad.exit_code == 2 and "at least 2 run folders" in bad.output
