"""Ranks, deterministic sharding, per-episode seeds, and worker processes (spawn, failures, no orphans)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from benchmarks import parallel


def test_dist_info_from_torchrun_slurm_or_nothing() -> None:
    assert parallel.dist_info({"RANK": "2", "WORLD_SIZE": "4"}) == parallel.DistInfo(2, 4, "torchrun")
    assert parallel.dist_info({"SLURM_PROCID": "1", "SLURM_NTASKS": "3"}) == parallel.DistInfo(1, 3, "slurm")
    assert parallel.dist_info({}) == parallel.DistInfo(0, 1, "single")
    with pytest.raises(ValueError, match="rank 4"):
        parallel.dist_info({"RANK": "4", "WORLD_SIZE": "4"})
    with pytest.raises(ValueError, match="RANK"):
        parallel.dist_info({"RANK": "x", "WORLD_SIZE": "4"})


def test_shards_partition_sorted_items_whatever_the_input_order() -> None:
    items = [f"r2r_val_unseen:{i}" for i in range(11)]
    shards = [parallel.shard(items, i, 3) for i in range(3)]
    assert sorted(u for s in shards for u in s) == sorted(items)
    assert all(len(s) in (3, 4) for s in shards)
    assert parallel.shard(list(reversed(items)), 1, 3) == shards[1]
    with pytest.raises(ValueError):
        parallel.shard(items, 3, 3)


def test_episode_seed_is_stable_and_per_uid() -> None:
    # crc32 of "0:r2r_val_unseen:1": the same on every machine and Python process (unlike hash()).
    assert parallel.episode_seed(0, "r2r_val_unseen:1") == parallel.episode_seed(0, "r2r_val_unseen:1")
    assert parallel.episode_seed(0, "r2r_val_unseen:1") == 1673157598
    seeds = {parallel.episode_seed(0, f"u:{i}") for i in range(100)}
    assert len(seeds) == 100
    assert parallel.episode_seed(1, "u:1") != parallel.episode_seed(0, "u:1")


def test_parse_gpus() -> None:
    assert parallel.parse_gpus("0,1,3") == (0, 1, 3)
    assert parallel.parse_gpus("") == ()
    for bad in ("a,b", "0,0", "-1"):
        with pytest.raises(ValueError, match="--gpus"):
            parallel.parse_gpus(bad)


def emit_three(index: int, device: str, emit) -> None:
    for k in range(3):
        emit({"uid": f"w{index}:{k}", "device": device, "cuda": os.environ.get("CUDA_VISIBLE_DEVICES")})


def fail_on_worker_one(index: int, device: str, emit) -> None:
    emit({"uid": f"w{index}:0"})
    if index == 1:
        raise RuntimeError("boom in worker one")


def die_on_worker_one(index: int, device: str, emit) -> None:
    if index == 1:
        os._exit(7)
    emit({"uid": f"w{index}:0"})


def test_workers_report_records_and_get_their_gpu() -> None:
    out = list(parallel.run_in_processes(emit_three, 2, gpus=(5,)))
    assert sorted(r["uid"] for r in out) == ["w0:0", "w0:1", "w0:2", "w1:0", "w1:1", "w1:2"]
    assert {r["cuda"] for r in out} == {"5"} and {r["device"] for r in out} == {"cuda:0"}


def report_threads(index: int, device: str, emit) -> None:
    import torch

    emit({"uid": f"w{index}", "threads": torch.get_num_threads()})


def test_cpu_workers_share_the_cores_instead_of_oversubscribing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel.os, "sched_getaffinity", lambda _pid: set(range(8)), raising=False)
    assert parallel.cpu_threads_per_worker(1, {}) == 8
    assert parallel.cpu_threads_per_worker(2, {}) == 4
    assert parallel.cpu_threads_per_worker(3, {}) == 2
    assert parallel.cpu_threads_per_worker(16, {}) == 1  # at least one thread
    assert parallel.cpu_threads_per_worker(2, {"OMP_NUM_THREADS": "2"}) == 2  # never above the user's cap
    assert parallel.cpu_threads_per_worker(2, {"OMP_NUM_THREADS": "6"}) == 4  # nor above the worker's share
    with pytest.raises(ValueError, match="--workers"):
        parallel.cpu_threads_per_worker(0, {})


def test_cpu_workers_run_with_their_share_of_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    expected = parallel.cpu_threads_per_worker(2)
    out = list(parallel.run_in_processes(report_threads, 2))
    assert {r["threads"] for r in out} == {expected}


def test_worker_exception_and_death_are_reported_not_hidden() -> None:
    out = list(parallel.run_in_processes(fail_on_worker_one, 2))
    failures = [o for o in out if isinstance(o, parallel.WorkerFailure)]
    assert len(failures) == 1 and failures[0].index == 1 and "boom in worker one" in failures[0].message
    assert sorted(o["uid"] for o in out if isinstance(o, dict)) == ["w0:0", "w1:0"]
    out = list(parallel.run_in_processes(die_on_worker_one, 2, poll_s=0.2))
    failures = [o for o in out if isinstance(o, parallel.WorkerFailure)]
    assert len(failures) == 1 and "code 7" in failures[0].message


def test_workers_die_with_a_killed_parent(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import os, sys, time
        sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
        from benchmarks.parallel import run_in_processes
        from tests.benchmarks.test_parallel import sleeper
        if __name__ == "__main__":
            for _ in run_in_processes(sleeper, 1):
                pass
        """
    )
    (tmp_path / "parent.py").write_text(script)
    env = {**os.environ, "H6_PID_FILE": str(tmp_path / "child.pid")}
    parent = subprocess.Popen([sys.executable, str(tmp_path / "parent.py")], env=env)
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "child.pid").exists():
            assert time.monotonic() < deadline, "worker never started"
            time.sleep(0.05)
        child = int((tmp_path / "child.pid").read_text())
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        while _alive(child):
            assert time.monotonic() < deadline, "worker outlived its killed parent"
            time.sleep(0.05)
    finally:
        parent.kill()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def sleeper(index: int, device: str, emit) -> None:
    Path(os.environ["H6_PID_FILE"]).write_text(str(os.getpid()))
    time.sleep(60)
