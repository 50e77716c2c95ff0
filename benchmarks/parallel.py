"""Splitting an evaluation over nodes, processes and GPUs.

- Ranks (one per node or per launched task) come from torchrun (`RANK`, `WORLD_SIZE`) or SLURM (`SLURM_PROCID`,
  `SLURM_NTASKS`); without either the run is rank 0 of 1.
- Sharding is deterministic and hash-free: sort the episode uids, then take every `count`-th one starting at
  `index` (first over ranks, then over the workers of a rank). The same command therefore gives each rank the
  same episodes on every machine, and each episode is seeded from its uid (`episode_seed`), not from its position,
  so metrics do not depend on how many ranks or workers ran it.
- Workers are separate processes started with `spawn` (a fresh interpreter: safe with CUDA and GL contexts), one
  per GPU (`CUDA_VISIBLE_DEVICES` set before torch loads) or per CPU slot. Each builds its own env(s) and model
  replica and sends finished-episode records to the parent through a queue; the parent is the only writer of
  the results file. A worker asks the kernel to kill it when the parent dies (PR_SET_PDEATHSIG), so a `kill -9`
  of the eval leaves no orphan still running episodes when the command is started again.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import traceback
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

RANK_ENV_VARS = (("RANK", "WORLD_SIZE"), ("SLURM_PROCID", "SLURM_NTASKS"))


@dataclass(frozen=True)
class DistInfo:
    rank: int  # index of this process among the ranks of the run
    world_size: int  # number of ranks sharing the episodes
    source: str  # where rank / world size came from: "torchrun", "slurm", "flags" or "single"

    def __post_init__(self) -> None:
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ValueError(
                f"rank {self.rank} is not in [0, world size {self.world_size}) (from {self.source})"
            )


def dist_info(environ: dict[str, str] | None = None) -> DistInfo:
    """This process's rank and the world size, from torchrun or SLURM environment variables."""
    env = os.environ if environ is None else environ
    for (rank_var, world_var), source in zip(RANK_ENV_VARS, ("torchrun", "slurm"), strict=True):
        if rank_var in env and world_var in env:
            try:
                rank, world = int(env[rank_var]), int(env[world_var])
            except ValueError as e:
                raise ValueError(
                    f"{rank_var}={env[rank_var]!r} / {world_var}={env[world_var]!r} are not a valid rank / world size"
                ) from e
            return DistInfo(rank, world, source)
    return DistInfo(0, 1, "single")


def shard(items: Sequence[str], index: int, count: int) -> list[str]:
    """The `index`-th of `count` deterministic shards of `items`: sorted, then every `count`-th item."""
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"shard index {index} is not in [0, {count})")
    return sorted(items)[index::count]


def episode_seed(seed: int, uid: str) -> int:
    """The seed of one episode: a stable function of the run seed and the episode uid (crc32, not hash())."""
    return zlib.crc32(f"{seed}:{uid}".encode()) & 0x7FFFFFFF


def parse_gpus(text: str | None) -> tuple[int, ...]:
    """'0,1,3' -> (0, 1, 3); '' or None -> (); ValueError naming --gpus for anything else."""
    if not text:
        return ()
    try:
        gpus = tuple(int(t) for t in text.split(",") if t.strip() != "")
    except ValueError as e:
        raise ValueError(
            f"--gpus must be a comma-separated list of GPU indices like 0,1; got {text!r}"
        ) from e
    if any(g < 0 for g in gpus) or len(set(gpus)) != len(gpus):
        raise ValueError(f"--gpus must list distinct non-negative GPU indices; got {text!r}")
    return gpus


def cpu_threads_per_worker(n_workers: int, environ: dict[str, str] | None = None) -> int:
    """Torch threads for each of `n_workers` CPU worker processes: the cores this process may use, split evenly
    (at least 1), and never more than OMP_NUM_THREADS when that is set.

    Without a cap every worker starts one thread per core (or OMP_NUM_THREADS each), so K workers oversubscribe
    the machine K times over. On the 2-core VM, 2 workers with OMP_NUM_THREADS=2 spent 160-210 ms per step in the
    model against 30 ms with 1 thread each (session 13), a 6x slower evaluation."""
    if n_workers < 1:
        raise ValueError(f"--workers must be >= 1, got {n_workers}")
    environ = os.environ if environ is None else environ
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    threads = max(1, cores // n_workers)
    omp = environ.get("OMP_NUM_THREADS", "").strip()
    if omp.isdigit() and int(omp) > 0:
        threads = min(threads, int(omp))
    return threads


def _die_with_parent() -> None:
    """Linux: have the kernel SIGKILL this process when its parent exits (no orphans after a kill -9)."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)


# A worker job is any picklable callable `job(worker_index, device, emit)` that runs its episodes and calls
# `emit(record)` once per finished episode; `device` is "cuda:0" on a GPU worker (its only visible GPU), else
# "auto" (the agent picks a GPU when there is one, the CPU otherwise).
WorkerJob = Callable[[int, str, Callable[[dict[str, Any]], None]], None]


def _worker_main(
    job: WorkerJob, index: int, gpu: int | None, ppid: int, out: Any, cpu_threads: int | None = None
) -> None:
    """Entry point of a spawned worker: pin the GPU (or cap the CPU threads), run the job, report records, then
    'done' or 'fatal'."""
    _die_with_parent()
    if os.getppid() != ppid:  # the parent died before prctl took effect
        os._exit(1)
    if cpu_threads is not None:  # a CPU worker (GPU workers get None)
        import torch

        torch.set_num_threads(cpu_threads)
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)  # before anything imports torch in this process
        # Render on the same GPU (EGL ignores CUDA_VISIBLE_DEVICES); EGL lists NVIDIA GPUs in PCI order, which is
        # CUDA's order under CUDA_DEVICE_ORDER=PCI_BUS_ID. A value set by the user wins.
        os.environ.setdefault("NAVILA_AGENT_EGL_DEVICE", str(gpu))
    device = "cuda:0" if gpu is not None else "auto"
    try:
        job(index, device, lambda rec: out.put(("result", index, rec)))
        out.put(("done", index, None))
    except BaseException:
        out.put(("fatal", index, traceback.format_exc()))


@dataclass
class WorkerFailure:
    index: int  # worker index
    message: str  # traceback, or how the process ended


def run_in_processes(
    job: WorkerJob, n_workers: int, gpus: Sequence[int] = (), poll_s: float = 0.5
) -> Iterator[dict[str, Any] | WorkerFailure]:
    """Run `job` in `n_workers` spawned processes; yield each record as it arrives, and a WorkerFailure for a
    worker that raised or died. Worker i gets GPU gpus[i % len(gpus)] (none when `gpus` is empty); CPU workers
    share the cores (`cpu_threads_per_worker`).

    Closing the generator early (an exception or Ctrl-C in the consumer) terminates the workers.
    """
    import multiprocessing as mp

    if n_workers < 1:
        raise ValueError(f"--workers must be >= 1, got {n_workers}")
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = []
    cpu_threads = None if gpus else cpu_threads_per_worker(n_workers)
    for i in range(n_workers):
        gpu = gpus[i % len(gpus)] if gpus else None
        p = ctx.Process(
            target=_worker_main, args=(job, i, gpu, os.getpid(), out, cpu_threads), name=f"navila-eval-{i}"
        )
        p.start()
        procs.append(p)
    pending = set(range(n_workers))
    try:
        while pending:
            try:
                kind, index, payload = out.get(timeout=poll_s)
            except queue.Empty:
                for i in sorted(pending):
                    if not procs[i].is_alive():
                        # Drain what it sent before dying, then report it (its messages may still be in flight).
                        with contextlib.suppress(queue.Empty):
                            while True:
                                kind, index, payload = out.get(timeout=poll_s)
                                if kind == "result":
                                    yield payload
                                else:
                                    pending.discard(index)
                                    if kind == "fatal":
                                        yield WorkerFailure(index, payload)
                        if i in pending:
                            pending.discard(i)
                            yield WorkerFailure(i, f"worker {i} exited with code {procs[i].exitcode}")
                continue
            if kind == "result":
                yield payload
            elif kind == "done":
                pending.discard(index)
            else:
                pending.discard(index)
                yield WorkerFailure(index, payload)
    finally:
        for p in procs:
            if p.is_alive() and pending:
                p.terminate()
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
                p.join()
