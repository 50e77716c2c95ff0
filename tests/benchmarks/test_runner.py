"""The episode loop, the batched loop, resume, errors, sharding over ranks and workers — on the fake env."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import runner
from benchmarks.callbacks import RecordingCallback, TimingListener, episode_line
from benchmarks.parallel import DistInfo
from benchmarks.store import load_results, read_jsonl
from tests.benchmarks import fakes

FAKE = fakes.FAKE_FACTORIES


def _config(tmp_path: Path, name: str = "run", **kw) -> runner.EvalConfig:
    return runner.EvalConfig(split="r2r_val_unseen", output=tmp_path / name, **{"agent": "random", **kw})


def _metrics(run_dir: Path) -> dict[str, dict]:
    return {uid: rec["metrics"] for uid, rec in load_results(run_dir).items()}


def test_run_episode_oracle_reaches_the_goal_and_reports_a_full_record() -> None:
    episodes = fakes.fake_episodes(3)
    env = fakes.FakeEnv(episodes)
    agent = fakes.FakeAgent("oracle", env)
    rec = runner.run_episode(env, agent, episodes[2], seed=1)
    assert rec["status"] == "ok" and rec["error"] is None
    m = rec["metrics"]
    assert m["sr"] == 1.0 and m["os"] == 1.0 and m["ne"] < 3.0 and m["spl"] > 0.5
    assert m["steps"] == rec["decisions"] == agent.t  # one decision per step for the fake
    assert rec["uid"] == "r2r_val_unseen:3" and rec["split"] == "r2r_val_unseen"
    assert set(rec["timings"]) == {"sim_s", "model_s", "wait_s", "other_s", "wall_s"}
    assert rec["timings"]["wait_s"] == 0.0  # one episode at a time: nothing to wait for
    assert episode_line(rec).startswith("r2r_val_unseen:3  SR 1  SPL")


def test_forward_agent_at_the_step_limit_is_a_failure() -> None:
    episodes = fakes.fake_episodes(1)
    env = fakes.FakeEnv(episodes, max_steps=5)
    rec = runner.run_episode(env, fakes.FakeAgent("forward", env), episodes[0], seed=0)
    assert rec["metrics"]["steps"] == 5 and rec["metrics"]["sr"] == 0.0  # truncated, never stopped


def test_crashed_episode_is_recorded_with_its_traceback_and_the_run_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NAVILA_FAKE_CRASH", "2")
    out = runner.evaluate(_config(tmp_path, agent="oracle"), factories=FAKE)
    recs = load_results(out.run_dir)
    assert len(recs) == 6 and out.summary["errors"] == 1
    bad = recs["r2r_val_unseen:2"]
    assert (
        bad["status"] == "error"
        and "fake agent crash in episode 2" in bad["error"]
        and bad["metrics"] is None
    )
    assert out.summary["episodes"] == 5 and out.summary["sr"] == 1.0  # errors are not averaged in as zeros
    # A plain rerun skips the recorded error; --retry-errors runs it again (now without the crash).
    assert runner.evaluate(_config(tmp_path, agent="oracle"), factories=FAKE).new == 0
    monkeypatch.delenv("NAVILA_FAKE_CRASH")
    again = runner.evaluate(_config(tmp_path, agent="oracle", retry_errors=True), factories=FAKE)
    assert again.new == 1 and again.summary["errors"] == 0 and again.summary["episodes"] == 6
    lines = read_jsonl(out.run_dir / "results.jsonl")  # compacted: the superseded error line is gone
    assert len(lines) == 6 and all(r["status"] == "ok" for r in lines)


def test_same_seed_same_metrics_across_reruns_workers_and_batching(tmp_path: Path) -> None:
    base = runner.evaluate(_config(tmp_path, "a", seed=3), factories=FAKE)
    assert base.new == 6 and base.summary["complete"]
    rerun = runner.evaluate(_config(tmp_path, "b", seed=3), factories=FAKE)
    two_workers = runner.evaluate(_config(tmp_path, "c", seed=3, workers=2), factories=FAKE)
    batched = runner.evaluate(_config(tmp_path, "d", seed=3, envs_per_worker=4), factories=FAKE)
    expected = _metrics(base.run_dir)
    assert _metrics(rerun.run_dir) == expected
    assert _metrics(two_workers.run_dir) == expected
    assert _metrics(batched.run_dir) == expected
    assert {r["worker"] for r in load_results(two_workers.run_dir).values()} == {0, 1}
    other_seed = runner.evaluate(_config(tmp_path, "e", seed=4), factories=FAKE)
    assert _metrics(other_seed.run_dir) != expected  # the seed matters for the random agent


def _fake_slots(episodes: list, k: int, policy: str) -> list[runner.Slot]:
    """K fake envs over `episodes`, each with its own fake agent, as a batched worker holds them."""
    slots = []
    for _ in range(k):
        env = fakes.FakeEnv(episodes)
        slots.append(runner.Slot(env, fakes.FakeAgent(policy, env)))
    return slots


def test_batched_loop_uses_one_act_batch_per_round(tmp_path: Path) -> None:
    episodes = fakes.fake_episodes(5)
    slots = _fake_slots(episodes, 3, "oracle")
    records: list[dict] = []
    runner.run_batched(slots, episodes, seed=0, emit=records.append)
    assert sorted(r["uid"] for r in records) == sorted(ep.uid for ep in episodes)
    assert all(r["metrics"]["sr"] == 1.0 for r in records)
    assert all(s.agent.batch_calls > 0 for s in slots)
    # Same results as one episode at a time.
    env = fakes.FakeEnv(episodes)
    single = {
        ep.uid: runner.run_episode(env, fakes.FakeAgent("oracle", env), ep, 0)["metrics"] for ep in episodes
    }
    assert {r["uid"]: r["metrics"] for r in records} == single


def test_resume_skips_recorded_episodes_and_extends_with_a_larger_limit(tmp_path: Path) -> None:
    first = runner.evaluate(_config(tmp_path, limit=2), factories=FAKE)
    assert first.new == 2 and first.summary["episodes"] == 2
    second = runner.evaluate(_config(tmp_path, limit=4), factories=FAKE)  # --limit is not fingerprinted
    assert second.new == 2 and second.skipped == 2 and second.summary["episodes"] == 4
    lines = read_jsonl(tmp_path / "run" / "results.jsonl")
    assert len(lines) == len({r["uid"] for r in lines}) == 4


def test_a_different_configuration_is_refused(tmp_path: Path) -> None:
    runner.evaluate(_config(tmp_path, limit=1), factories=FAKE)
    with pytest.raises(ValueError, match=r"different configuration.*--overwrite"):
        runner.evaluate(_config(tmp_path, limit=1, agent="oracle"), factories=FAKE)
    fresh = runner.evaluate(_config(tmp_path, limit=1, agent="oracle", overwrite=True), factories=FAKE)
    assert fresh.new == 1 and fresh.summary["sr"] == 1.0


def test_episode_selection_by_id_and_limit(tmp_path: Path) -> None:
    eps = fakes.fake_episodes(12)
    cfg = _config(tmp_path, limit=3)
    assert [e.uid for e in runner.select_episodes(eps, cfg)] == sorted(e.uid for e in eps)[:3]
    cfg = _config(tmp_path, episode_ids=("7", "2"))
    assert [e.episode_id for e in runner.select_episodes(eps, cfg)] == ["2", "7"]
    with pytest.raises(ValueError, match=r"episode id.*99"):
        runner.select_episodes(eps, _config(tmp_path, episode_ids=("99",)))


@pytest.mark.parametrize(
    ("field", "value", "flag"),
    [
        ("agent", "bogus", "--agent"),
        ("dtw", "x", "--dtw"),
        ("backend", "x", "--backend"),
        ("workers", 0, "--workers"),
        ("limit", 0, "--limit"),
        ("envs_per_worker", 0, "--envs-per-worker"),
    ],
)
def test_config_errors_name_the_flag(tmp_path: Path, field: str, value: object, flag: str) -> None:
    with pytest.raises(ValueError, match=flag):
        _config(tmp_path, **{field: value})


def test_monitor_patience_one_is_the_default_and_keeps_the_run_folder(tmp_path: Path) -> None:
    """--monitor-patience 1 gives the results of no flag, so it is the same configuration (fingerprint unchanged);
    2 is another one."""
    assert _config(tmp_path, agent="navila", monitor_patience=1).monitor_patience is None
    assert _config(tmp_path, agent="navila", monitor_patience=2).monitor_patience == 2


def test_ranks_write_their_shards_and_the_last_one_merges(tmp_path: Path) -> None:
    single = runner.evaluate(_config(tmp_path, "single"), factories=FAKE)
    r1 = runner.evaluate(_config(tmp_path, "multi"), factories=FAKE, dist=DistInfo(1, 3, "flags"))
    assert r1.summary is None and r1.new == 2  # other ranks not done yet: no summary
    r0 = runner.evaluate(_config(tmp_path, "multi"), factories=FAKE, dist=DistInfo(0, 3, "flags"))
    assert r0.summary is None
    r2 = runner.evaluate(_config(tmp_path, "multi"), factories=FAKE, dist=DistInfo(2, 3, "flags"))
    assert r2.summary is not None and r2.summary["complete"]
    run = tmp_path / "multi"
    assert sorted(p.name for p in run.glob("results-rank*.jsonl")) == [
        f"results-rank00{i}.jsonl" for i in range(3)
    ]
    merged = read_jsonl(run / "results.jsonl")
    assert [r["uid"] for r in merged] == sorted(r["uid"] for r in merged) and len(merged) == 6
    assert _metrics(run) == _metrics(single.run_dir)
    assert json.loads((run / "summary.json").read_text())["sr"] == pytest.approx(single.summary["sr"])
    again = runner.merge_run(run, factories=FAKE)
    assert again["episodes"] == 6 and again["complete"]


def test_recording_writes_frames_poses_and_decisions(tmp_path: Path) -> None:
    out = runner.evaluate(_config(tmp_path, agent="oracle", record=True, limit=2), factories=FAKE)
    rec_dir = out.run_dir / "rollouts" / "r2r_val_unseen__1"
    record = json.loads((rec_dir / "record.json").read_text())
    steps = record["steps"]
    assert record["format"] == "navila-agent-rollout/1" and record["uid"] == "r2r_val_unseen:1"
    assert len(steps) == record["metrics"]["steps"] + 1 and steps[0]["action"] is None
    assert all((rec_dir / s["frame"]).is_file() for s in steps)
    assert [s["decision"] for s in steps[:-1]] == list(range(len(steps) - 1))  # one decision per step here
    assert record["decisions"][0]["t"] == 0 and record["gt_locations"]


def test_recording_callback_restarts_a_half_written_episode(tmp_path: Path) -> None:
    episodes = fakes.fake_episodes(1)
    env = fakes.FakeEnv(episodes)
    stale = tmp_path / "rollouts" / "r2r_val_unseen__1" / "frames"
    stale.mkdir(parents=True)
    (stale / "000999.jpg").write_bytes(b"old")
    cb = RecordingCallback(tmp_path, env=env)
    runner.run_episode(env, fakes.FakeAgent("oracle", env), episodes[0], seed=0, callbacks=[cb])
    assert not (stale / "000999.jpg").exists() and (stale / "000000.jpg").exists()


def test_timing_listener_breakdown(tmp_path: Path) -> None:
    timing = TimingListener()
    runner.evaluate(_config(tmp_path, agent="oracle", limit=2), factories=FAKE, listeners=[timing])
    assert timing.episodes == 2 and timing.steps > 0
    assert set(timing.per_step_ms()) == {"sim", "model", "other", "wait"} and "per step" in timing.describe()
    assert "waiting" not in timing.describe()  # one env per worker: no batch to wait for


def test_batched_timings_count_the_wait_for_batch_mates_apart_from_other(monkeypatch: pytest.MonkeyPatch) -> None:
    """With K envs stepped in turn, an episode spends most of its wall time waiting while the other K-1 step;
    that is "wait", not the episode's own overhead ("other"), and the parts still add up to the wall time."""
    monkeypatch.setenv("NAVILA_FAKE_STEP_S", "0.004")
    episodes = fakes.fake_episodes(4)
    slots = _fake_slots(episodes, 4, "forward")
    records: list[dict] = []
    runner.run_batched(slots, episodes, seed=0, emit=records.append)
    for rec in records:
        t = rec["timings"]
        assert t["wait_s"] > 2 * t["sim_s"] > 0  # three batch-mates step for each of its own steps
        assert t["other_s"] < 0.5 * t["sim_s"]  # the fake env's own overhead is tiny
        parts = t["sim_s"] + t["model_s"] + t["wait_s"] + t["other_s"]
        assert parts == pytest.approx(t["wall_s"], rel=0.05)
    timing = TimingListener()
    for rec in records:
        timing.on_result(rec)
    assert "waiting for the batch" in timing.describe()


# ----------------------------------------------------------------- the real env (embedded simulator) + real agents


def load_two_room_episodes(config: runner.EvalConfig) -> list:
    from tests.envs.fakes import make_episode

    return [make_episode("1"), make_episode("2", start=(5.0, 0.0, 3.0), goal=(1.0, 0.0, 1.0))]


def make_small_env(config: runner.EvalConfig, episodes: list):
    from envs.env import VLNCEEnv

    return VLNCEEnv(episodes=episodes, data_root=config.data_root, width=32, height=32)


REAL_SMALL = runner.Factories(load_two_room_episodes, make_small_env, runner.make_agent)


def test_oracle_on_the_embedded_simulator_with_recording(tmp_path: Path) -> None:
    from tests.envs.fakes import make_data_root

    data_root = make_data_root(tmp_path / "data")
    cfg = runner.EvalConfig(
        split="r2r_val_unseen", output=tmp_path / "run", agent="oracle", data_root=str(data_root), record=True
    )
    out = runner.evaluate(cfg, factories=REAL_SMALL)
    assert out.summary["errors"] == 0, load_results(out.run_dir)
    assert out.summary["sr"] == 1.0 and out.summary["episodes"] == 2
    rec_dir = out.run_dir / "rollouts" / "test_fake__1"
    record = json.loads((rec_dir / "record.json").read_text())
    assert (rec_dir / "topdown.png").is_file() and record["map"]["image"] == "topdown.png"
    assert {"origin", "resolution", "width", "height"} <= set(record["map"])
    assert len(list((rec_dir / "frames").glob("*.jpg"))) == len(record["steps"])


def test_real_env_metrics_do_not_depend_on_the_worker_count(tmp_path: Path) -> None:
    from tests.envs.fakes import make_data_root

    data_root = str(make_data_root(tmp_path / "data"))
    runs = {}
    for workers in (1, 2):
        cfg = runner.EvalConfig(
            split="r2r_val_unseen", output=tmp_path / f"w{workers}", agent="random", seed=5, workers=workers,
            data_root=data_root, max_steps=40,
        )  # fmt: skip
        out = runner.evaluate(cfg, factories=REAL_SMALL)
        assert out.summary["errors"] == 0, load_results(out.run_dir)
        runs[workers] = _metrics(out.run_dir)
    assert runs[1] == runs[2] and len(runs[1]) == 2


def test_a_crash_in_a_batched_call_fails_that_batch_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One batched act call serves K episodes, so its exception fails those K (recorded, retryable); the run goes
    on with the next episodes."""
    monkeypatch.setenv("NAVILA_FAKE_CRASH", "4")
    out = runner.evaluate(_config(tmp_path, agent="oracle", envs_per_worker=3), factories=FAKE)
    recs = load_results(out.run_dir)
    errors = sorted(u for u, r in recs.items() if r["status"] == "error")
    assert "r2r_val_unseen:4" in errors and len(errors) <= 3 and len(recs) == 6
    assert out.summary["errors"] == len(errors) and out.summary["sr"] == 1.0
    monkeypatch.delenv("NAVILA_FAKE_CRASH")
    again = runner.evaluate(
        _config(tmp_path, agent="oracle", envs_per_worker=3, retry_errors=True), factories=FAKE
    )
    assert again.new == len(errors) and again.summary["errors"] == 0


def test_progress_off_a_terminal_prints_status_lines_with_sr_and_eta(tmp_path: Path) -> None:
    import io

    from rich.console import Console

    from benchmarks.callbacks import ProgressListener

    buf = io.StringIO()
    progress = ProgressListener(console=Console(file=buf, width=200), log_every_s=0.0)
    runner.evaluate(
        _config(tmp_path, agent="oracle", limit=3), factories=FAKE, listeners=[progress.timing, progress]
    )
    lines = buf.getvalue().splitlines()
    assert lines[0].startswith("eval 0/3  SR -  errors 0  ETA -")
    assert "eval 2/3  SR 1.000  errors 0  ETA 0:00:0" in buf.getvalue()
    assert lines[-1].startswith("eval 3/3  SR 1.000  errors 0  ETA -  per step: sim")


def broken_env(config: runner.EvalConfig, episodes: list):
    raise RuntimeError("no GL context on this machine")


def test_a_worker_that_cannot_start_is_reported_and_nothing_is_recorded(tmp_path: Path) -> None:
    factories = runner.Factories(fakes.load_fake_episodes, broken_env, fakes.make_fake_agent)
    for workers in (1, 2):
        out = runner.evaluate(_config(tmp_path, f"w{workers}", workers=workers), factories=factories)
        assert len(out.failures) == workers and "no GL context" in out.failures[0].message
        assert out.new == 0 and out.summary["complete"] is False and out.summary["recorded"] == 0
