"""`kill -9` of a running `navila-agent eval` at a random moment, then the same command again: every episode is
recorded exactly once and the metrics equal those of an uninterrupted run."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks import runner
from benchmarks.store import load_results, read_jsonl
from tests.benchmarks import fakes

REPO = Path(__file__).resolve().parents[2]
# The CLI with the fake env and agents installed (spawned workers get them through the pickled job).
CLI = "import tests.benchmarks.fakes as f; f.install(); from benchmarks.cli import main; main()"
N_EPISODES = 10


def _eval_cmd(out: Path, workers: int) -> list[str]:
    return [
        sys.executable,
        "-c",
        CLI,
        "eval",
        "--agent",
        "random",
        "--split",
        "r2r_val_unseen",
        "--output",
        str(out),
        "--workers",
        str(workers),
        "--seed",
        "7",
    ]


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "NAVILA_FAKE_EPISODES": str(N_EPISODES),
        "NAVILA_FAKE_STEP_S": "0.008",
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
        "COLUMNS": "120",
    }


def _reference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, dict]:
    monkeypatch.setenv("NAVILA_FAKE_EPISODES", str(N_EPISODES))
    cfg = runner.EvalConfig(split="r2r_val_unseen", output=tmp_path / "reference", agent="random", seed=7)
    runner.evaluate(cfg, factories=fakes.FAKE_FACTORIES)
    return {u: r["metrics"] for u, r in load_results(cfg.output).items()}


def _kill_then_resume(out: Path, workers: int, delay: float) -> tuple[int, str, int]:
    """Start the eval, SIGKILL it after `delay` s, run it again; (exit code, stderr, records kept from the kill)."""
    proc = subprocess.Popen(
        _eval_cmd(out, workers), cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = len(read_jsonl(out / "results.jsonl"))
    done = subprocess.run(
        _eval_cmd(out, workers), cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120
    )
    return done.returncode, done.stderr, kept


def _check_exactly_once(out: Path, reference: dict[str, dict]) -> None:
    lines = read_jsonl(out / "results.jsonl")
    uids = [r["uid"] for r in lines]
    assert len(uids) == len(set(uids)) == N_EPISODES, "an episode was recorded twice or never"
    assert (out / "results.jsonl").read_bytes().endswith(b"\n")
    assert {r["uid"]: r["metrics"] for r in lines} == reference
    assert (out / "summary.json").is_file()


def test_kill_9_then_rerun_records_every_episode_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = _reference(tmp_path, monkeypatch)
    delay = random.Random().uniform(0.6, 2.0)  # a random moment: interpreter start, workers, or mid-episode
    rc, err, kept = _kill_then_resume(tmp_path / "killed", workers=2, delay=delay)
    assert rc == 0, f"resume failed after a kill at {delay:.2f}s:\n{err}"
    # The rerun ran exactly the episodes the killed run had not recorded: none twice, none lost.
    assert f"{N_EPISODES - kept} episodes run, {kept} already recorded" in " ".join(err.split())
    _check_exactly_once(tmp_path / "killed", reference)


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_repeated_kills_at_random_moments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    reference = _reference(tmp_path, monkeypatch)
    rng = random.Random()
    out = tmp_path / "killed"
    for _ in range(4):  # several kills into the same folder before letting it finish
        proc = subprocess.Popen(
            _eval_cmd(out, workers),
            cwd=REPO,
            env=_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.5, 2.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done = subprocess.run(
        _eval_cmd(out, workers), cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    _check_exactly_once(out, reference)
