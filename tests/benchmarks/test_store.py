"""The results store: atomic writes, torn-line recovery, config fingerprint refusal, shard merging."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from benchmarks import store


def test_fingerprint_ignores_key_order_and_sees_values() -> None:
    a = store.fingerprint({"agent": "oracle", "seed": 0})
    assert a == store.fingerprint({"seed": 0, "agent": "oracle"})
    assert a != store.fingerprint({"agent": "oracle", "seed": 1})


def test_atomic_write_replaces_and_leaves_no_temporaries(tmp_path: Path) -> None:
    target = tmp_path / "summary.json"
    store.atomic_write_json(target, {"sr": float("nan"), "n": 1})
    store.atomic_write_json(target, {"sr": 0.5, "inf": float("inf")})
    assert json.loads(target.read_text()) == {"sr": 0.5, "inf": None}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


def test_writer_round_trip_and_torn_last_line_is_ignored_then_cut(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    with store.ResultWriter(path) as w:
        w.write({"uid": "a", "metrics": {"ne": math.nan}})
        w.write({"uid": "b"})
    with open(path, "a") as f:
        f.write('{"uid": "c", "metr')  # a kill -9 in the middle of a write
    assert [r["uid"] for r in store.read_jsonl(path)] == ["a", "b"]
    assert store.read_jsonl(path)[0]["metrics"]["ne"] is None  # NaN is not JSON: written as null
    with store.ResultWriter(path) as w:  # reopening cuts the torn tail before appending
        w.write({"uid": "c"})
    assert path.read_text().count("\n") == 3
    assert [r["uid"] for r in store.read_jsonl(path)] == ["a", "b", "c"]


def test_complete_json_without_newline_is_treated_as_unfinished(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text('{"uid": "a"}\n{"uid": "b"}')
    assert [r["uid"] for r in store.read_jsonl(path)] == ["a"]
    assert store.repair_tail(path) == len('{"uid": "b"}')


def test_damaged_middle_line_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text('{"uid": "a"}\nnot json\n{"uid": "b"}\n')
    with pytest.raises(store.RunFolderError, match="line 2"):
        store.read_jsonl(path)


def test_open_run_refuses_a_different_configuration(tmp_path: Path) -> None:
    run = tmp_path / "run"
    cfg = {"agent": "oracle", "seed": 0, "workers": 1}
    meta = store.open_run(run, cfg, ["agent", "seed"])
    assert (run / "results.jsonl").read_text() == ""  # the viewer can open the folder at once
    assert meta["fingerprint"] == store.fingerprint({"agent": "oracle", "seed": 0})
    store.ResultWriter(run / "results.jsonl").write({"uid": "x"})
    # Same experiment on another machine shape: accepted, results kept.
    store.open_run(run, {**cfg, "workers": 8}, ["agent", "seed"])
    assert store.read_run(run)["config"]["workers"] == 8
    with pytest.raises(store.RunFolderError, match=r"seed: 0 -> 1.*--overwrite"):
        store.open_run(run, {**cfg, "seed": 1}, ["agent", "seed"])
    assert list(store.load_results(run)) == ["x"]
    store.open_run(run, {**cfg, "seed": 1}, ["agent", "seed"], overwrite=True)
    assert store.load_results(run) == {}
    assert store.read_run(run)["config"]["seed"] == 1


def test_an_option_fingerprinted_when_set_keeps_older_folders_resumable(tmp_path: Path) -> None:
    """`when_set` keys count only when not None: a folder written before the key existed (no key in its config)
    reopens with the key None, and a run that sets it is a different experiment, named in the refusal."""
    run = tmp_path / "run"
    store.open_run(run, {"agent": "navila", "seed": 0}, ["agent", "seed"])  # written before monitor_stop existed
    cfg = {"agent": "navila", "seed": 0, "monitor_stop": None}
    store.open_run(run, cfg, ["agent", "seed"], when_set=["monitor_stop"])
    with pytest.raises(store.RunFolderError, match=r"monitor_stop: None -> 0.9"):
        store.open_run(run, {**cfg, "monitor_stop": 0.9}, ["agent", "seed"], when_set=["monitor_stop"])
    other = tmp_path / "other"
    store.open_run(other, {**cfg, "monitor_stop": 0.9}, ["agent", "seed"], when_set=["monitor_stop"])
    store.open_run(other, {**cfg, "monitor_stop": 0.9}, ["agent", "seed"], when_set=["monitor_stop"])
    with pytest.raises(store.RunFolderError, match=r"monitor_stop: 0.9 -> None"):
        store.open_run(other, cfg, ["agent", "seed"], when_set=["monitor_stop"])


def test_shards_are_merged_sorted_and_deduplicated(tmp_path: Path) -> None:
    assert store.results_file_name(0, 1) == "results.jsonl"
    assert store.results_file_name(3, 4) == "results-rank003.jsonl"
    with store.ResultWriter(tmp_path / store.results_file_name(1, 2)) as w:
        w.write({"uid": "b", "v": 1})
        w.write({"uid": "d", "v": 1})
    with store.ResultWriter(tmp_path / store.results_file_name(0, 2)) as w:
        w.write({"uid": "c", "v": 1})
        w.write({"uid": "a", "v": 1})
    assert store.merge_shards(tmp_path) == 4
    merged = store.read_jsonl(tmp_path / "results.jsonl")
    assert [r["uid"] for r in merged] == ["a", "b", "c", "d"]
    assert store.merge_shards(tmp_path) == 4  # idempotent: the merged file and the shards agree
    assert len(store.load_results(tmp_path)) == 4
