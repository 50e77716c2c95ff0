"""The benchmark runner: run agents on VLN-CE episodes and record one result line per finished episode.

    from benchmarks.runner import EvalConfig, evaluate
    outcome = evaluate(EvalConfig(split="r2r_val_unseen", agent="oracle", output=Path("runs/oracle"), limit=10))
    print(outcome.summary["sr"])

The episode loop (`run_episode`) is reset -> act -> step until done -> metrics; everything else hangs off
callbacks (benchmarks.callbacks). `run_batched` steps K envs together so one batched model call (the agent's
`act_batch`) serves all of them. `evaluate` wires the rest: the episode selection, the results store (resume,
config fingerprint), sharding over ranks and workers (benchmarks.parallel) and the summary.

Determinism: every episode is seeded from (seed, uid) — env.reset(seed=episode_seed(seed, uid)), and the agents
draw their randomness from (seed, uid) too (agent.baselines.episode_rng) — so an episode's metrics do not depend
on which rank, worker or slot ran it, nor on what ran before.
"""

from __future__ import annotations

import functools
import time
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agent.base import act_all
from benchmarks.callbacks import EpisodeCallback, RecordingCallback, RunListener, VideoCallback
from benchmarks.parallel import DistInfo, WorkerFailure, dist_info, episode_seed, run_in_processes, shard
from benchmarks.store import ResultWriter, load_results, merge_shards, open_run, results_file_name
from benchmarks.summary import summarize, write_summary
from envs.constants import STOP
from envs.datasets.episode import Episode

AGENTS = ("navila", "random", "forward", "oracle", "replay")
BACKENDS = ("embedded", "habitat")
DTW_METHODS = ("fastdtw", "exact")
# Config fields that change an episode's result: a run folder holding results of other values is refused.
FINGERPRINTED = ("split", "agent", "model", "data_root", "seed", "dtw", "backend", "max_steps")
# Fields that change results too but joined later: in the fingerprint only when set, so folders written before they
# existed still resume.
FINGERPRINTED_WHEN_SET = ("monitor_stop", "monitor_patience", "perturb")


@dataclass
class EvalConfig:
    split: str  # split name, e.g. r2r_val_unseen (generated, or real data under data_root)
    output: Path  # run folder (created; resumed when it holds results of the same configuration)
    agent: str = "navila"  # one of AGENTS
    model: str | None = None  # checkpoint folder for the navila agent (resolved to an absolute path)
    episode_ids: tuple[str, ...] = ()  # run only these episode ids (empty: the whole split)
    limit: int | None = None  # run only the first N episodes of the split, sorted by uid
    workers: int = 1  # worker processes per rank (1: run in this process)
    gpus: tuple[int, ...] = ()  # GPU indices; worker i uses gpus[i % len(gpus)]
    envs_per_worker: int = 1  # K envs stepped together per worker, one batched model call for all
    data_root: str | None = None  # VLN-CE data folder; None: generated data
    seed: int = 0  # run seed; each episode's seed derives from it and the episode uid
    record: bool = False  # write rollout records (frames, poses, model text) under output/rollouts/
    video: bool = False  # write output/videos/<EP_DIR>.mp4 per episode (implies record)
    dtw: str = "fastdtw"  # nDTW's DTW: "fastdtw" (VLN-CE) or "exact"
    backend: str = "embedded"  # simulator backend
    overwrite: bool = False  # delete the results already in `output` first
    retry_errors: bool = False  # run again the episodes recorded with status "error"
    max_steps: int | None = None  # env step limit (None: the env default, 500)
    # navila agent: STOP when its progress monitor says >= this (beyond NaVILA); None: the monitor's own, 0: never
    monitor_stop: float | None = None
    # ... only once this many consecutive decisions reach it; None: 1 (the first decision that does)
    monitor_patience: int | None = None
    # every RGB observation through this camera-side change (vlm.media.PERTURBATIONS; benchmarks.perturb); None: off
    perturb: str | None = None

    def __post_init__(self) -> None:
        self.output = Path(self.output)
        if self.agent not in AGENTS:
            raise ValueError(f"unknown agent '{self.agent}' (--agent); available: {', '.join(AGENTS)}")
        if self.backend not in BACKENDS:
            raise ValueError(
                f"unknown backend '{self.backend}' (--backend); available: {', '.join(BACKENDS)}"
            )
        if self.dtw not in DTW_METHODS:
            raise ValueError(f"unknown dtw '{self.dtw}' (--dtw); available: {', '.join(DTW_METHODS)}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"--limit must be >= 1, got {self.limit}")
        if self.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {self.workers}")
        if self.envs_per_worker < 1:
            raise ValueError(f"--envs-per-worker must be >= 1, got {self.envs_per_worker}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.monitor_stop is not None:
            if self.agent != "navila":
                raise ValueError(f"--monitor-stop goes with --agent navila, not {self.agent}")
            if not 0.0 <= self.monitor_stop <= 1.0:
                raise ValueError(f"--monitor-stop must be in [0, 1] (0 = never), got {self.monitor_stop}")
        if self.monitor_patience is not None:
            if self.agent != "navila":
                raise ValueError(f"--monitor-patience goes with --agent navila, not {self.agent}")
            if self.monitor_patience < 1:
                raise ValueError(f"--monitor-patience must be >= 1, got {self.monitor_patience}")
            if self.monitor_patience == 1:
                self.monitor_patience = None  # the default: the same results, so the same run folder
        if self.perturb is not None:
            from vlm.media import check_perturbation

            check_perturbation(self.perturb, "--perturb")
        self.gpus = tuple(self.gpus)
        self.episode_ids = tuple(str(e) for e in self.episode_ids)
        if self.model is not None:
            self.model = str(Path(self.model).expanduser().resolve())
        if self.data_root is not None:
            self.data_root = str(Path(self.data_root).expanduser().resolve())

    def to_json(self) -> dict[str, Any]:
        """The configuration as JSON-safe values (run.json)."""
        d = asdict(self)
        d["output"] = str(self.output)
        d["gpus"] = list(self.gpus)
        d["episode_ids"] = list(self.episode_ids)
        return d


# ----------------------------------------------------------------------------------------- factories (plug-ins)


def load_episodes(config: EvalConfig) -> list[Episode]:
    """The episodes of `config.split` (generated, or real under `config.data_root`); FileNotFoundError naming
    the missing scene files (e.g. Matterport3D not downloaded) before any episode starts, instead of one crashed
    episode per missing scene."""
    from envs.datasets.splits import load_split, scene_path

    episodes = load_split(config.split, data_root=config.data_root)
    scenes = {scene_path(ep, config.data_root) for ep in episodes}
    missing = sorted(str(p) for p in scenes if not p.is_file())
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} scene file(s) of split '{config.split}' not found, e.g. {missing[0]}; scenes live in "
            "<data_root>/scene_datasets/<scene_id> (--data-root)"
        )
    return episodes


def make_env(config: EvalConfig, episodes: list[Episode]) -> Any:
    """A VLN-CE gymnasium env over `episodes` on the configured backend."""
    from envs.env import VLNCEEnv

    kwargs: dict[str, Any] = {"episodes": episodes, "backend": config.backend, "data_root": config.data_root}
    if config.max_steps is not None:
        kwargs["max_steps"] = config.max_steps
    return VLNCEEnv(**kwargs)


def env_backend(env: Any) -> Any:
    """The simulator backend of an env (VLNCEEnv calls it `sim`), for geodesic queries and the oracle."""
    inner = env.unwrapped
    return inner.sim if hasattr(inner, "sim") else inner.backend


@functools.lru_cache(maxsize=2)
def load_model(path: str, device: str) -> Any:
    """The VILA-layout checkpoint at `path` on `device` ("auto": a GPU when there is one), loaded once per
    process: the K agents of a worker share one model replica (their batched calls go through it together)."""
    from transformers.utils import logging as hf_logging

    import vlm

    # transformers' per-tensor "Loading weights" bar would interleave with the run's own progress display.
    hf_logging.disable_progress_bar()
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    return vlm.load(path, device=device)


def make_agent(config: EvalConfig, env: Any, device: str) -> Any:
    """The configured agent: the oracle plans on `env`'s backend, the navila agent loads `config.model`, the
    random and forward agents draw from (seed, episode uid)."""
    from agent.factory import make_agent as make

    if config.agent == "navila":
        if config.model is None:
            raise ValueError("--agent navila needs --model (a VILA-layout checkpoint folder)")
        patience = {} if config.monitor_patience is None else {"monitor_patience": config.monitor_patience}
        return make("navila", model=load_model(config.model, device), monitor_stop=config.monitor_stop, **patience)
    if config.agent == "oracle":
        return make("oracle", backend=env_backend(env))
    if config.agent in ("random", "forward"):
        return make(config.agent, seed=config.seed)
    return make(config.agent)


@dataclass(frozen=True)
class Factories:
    """Where episodes, envs and agents come from. Tests pass fakes; every field must be a picklable top-level
    function because spawned workers receive them."""

    load_episodes: Callable[[EvalConfig], list[Episode]] = load_episodes
    make_env: Callable[[EvalConfig, list[Episode]], Any] = make_env
    make_agent: Callable[[EvalConfig, Any, str], Any] = make_agent


DEFAULT_FACTORIES = Factories()

# ------------------------------------------------------------------------------------------------ episode loop


@dataclass
class _Trajectory:
    """What the loop accumulates for one episode: the inputs of benchmarks.metrics.episode_metrics."""

    episode: Episode
    obs: dict[str, Any]
    positions: list[list[float]]
    t_start: float
    stopped: bool = False
    done: bool = False
    steps: int = 0
    collisions: int = 0
    sim_s: float = 0.0
    model_s: float = 0.0
    # Batched runs: time this episode spent waiting while its batch-mates stepped (and for the part of each
    # batched model call that is charged to them), so that "other" is this episode's own overhead only.
    wait_s: float = 0.0


def _position(info: dict[str, Any]) -> list[float]:
    return [float(v) for v in np.asarray(info["position"], dtype=np.float64).reshape(3)]


def _start(
    env: Any, agent: Any, episode: Episode, seed: int, callbacks: Sequence[EpisodeCallback]
) -> _Trajectory:
    t0 = time.perf_counter()
    obs, info = env.reset(seed=seed, options={"episode_id": episode.episode_id})
    agent.reset(episode)
    traj = _Trajectory(episode, obs, [_position(info)], t_start=t0, sim_s=time.perf_counter() - t0)
    for cb in callbacks:
        cb.on_episode_start(episode, obs, info)
    return traj


def _step(env: Any, traj: _Trajectory, action: int, callbacks: Sequence[EpisodeCallback]) -> None:
    t0 = time.perf_counter()
    obs, _reward, terminated, truncated, info = env.step(action)
    traj.sim_s += time.perf_counter() - t0
    traj.obs = obs
    traj.steps += 1
    traj.collisions += int(bool(info.get("collided", False)))
    traj.positions.append(_position(info))
    traj.stopped = bool(terminated) and action == STOP
    traj.done = bool(terminated or truncated)
    for cb in callbacks:
        cb.on_step(traj.episode, traj.steps, action, obs, info)


def _reference(episode: Episode) -> list[list[float]]:
    """nDTW's reference: the dense ground-truth locations, or the sparse reference path when a split has none."""
    return episode.gt.locations if episode.gt is not None and episode.gt.locations else episode.reference_path


def _stats(agent: Any) -> dict[str, Any]:
    return dict(agent.episode_stats()) if hasattr(agent, "episode_stats") else {}


def _count(value: Any) -> int:
    return len(value) if isinstance(value, list | tuple) else int(value or 0)


def _record(
    episode: Episode, stats: dict[str, Any], timings: dict[str, float], worker: int
) -> dict[str, Any]:
    return {
        "uid": episode.uid,
        "episode_id": episode.episode_id,
        "split": episode.uid.rsplit(":", 1)[0],
        "scene_id": episode.scene_id,
        "status": "ok",
        "error": None,
        "metrics": None,
        "parse_failures": _count(stats.get("parse_failures")),
        "decisions": _count(stats.get("decisions")),
        "instruction": episode.instruction.instruction_text,
        "timings": timings,
        "worker": worker,
    }


def _finish(
    env: Any, agent: Any, traj: _Trajectory, dtw: str, callbacks: Sequence[EpisodeCallback], worker: int
) -> dict[str, Any]:
    from benchmarks.metrics import episode_metrics

    episode = traj.episode
    t0 = time.perf_counter()
    metrics = episode_metrics(
        positions=traj.positions,
        stopped=traj.stopped,
        goal=episode.goal_position,
        reference_locations=_reference(episode),
        geodesic=env_backend(env).geodesic_distance,
        collisions=traj.collisions,
        steps=traj.steps,
        dtw=dtw,
    )
    traj.sim_s += time.perf_counter() - t0  # geodesic queries are simulator time
    stats = _stats(agent)
    record = _record(episode, stats, {}, worker)
    record["metrics"] = metrics
    for cb in callbacks:
        cb.on_episode_end(episode, record, stats)
    wall = time.perf_counter() - traj.t_start
    record["timings"] = {
        "sim_s": traj.sim_s,
        "model_s": traj.model_s,
        "wait_s": traj.wait_s,
        "other_s": max(wall - traj.sim_s - traj.model_s - traj.wait_s, 0.0),
        "wall_s": wall,
    }
    return record


def _failed(
    episode: Episode, agent: Any, error: str, callbacks: Sequence[EpisodeCallback], worker: int, t0: float
) -> dict[str, Any]:
    """The record of a crashed episode: status "error" with the traceback; the run goes on."""
    try:
        stats = _stats(agent)
    except Exception:
        stats = {}
    record = _record(
        episode,
        stats,
        {"sim_s": 0.0, "model_s": 0.0, "wait_s": 0.0, "other_s": time.perf_counter() - t0},
        worker,
    )
    record.update(status="error", error=error)
    for cb in callbacks:
        try:
            cb.on_episode_end(episode, record, stats)
        except Exception:
            record["error"] += "\n(callback on_episode_end also failed)\n" + traceback.format_exc()
    return record


def run_episode(
    env: Any,
    agent: Any,
    episode: Episode,
    seed: int,
    dtw: str = "fastdtw",
    callbacks: Sequence[EpisodeCallback] = (),
    worker: int = 0,
) -> dict[str, Any]:
    """Run one episode to its end and return its results line; a crash becomes a status "error" record."""
    t0 = time.perf_counter()
    try:
        traj = _start(env, agent, episode, seed, callbacks)
        while not traj.done:
            t = time.perf_counter()
            action = int(agent.act(traj.obs))
            traj.model_s += time.perf_counter() - t
            _step(env, traj, action, callbacks)
        return _finish(env, agent, traj, dtw, callbacks, worker)
    except Exception:
        return _failed(episode, agent, traceback.format_exc(), callbacks, worker, t0)


@dataclass
class Slot:
    """One env of a worker with its own agent (per-env history and action queue) and callbacks."""

    env: Any
    agent: Any
    callbacks: list[EpisodeCallback] = field(default_factory=list)


def run_batched(
    slots: Sequence[Slot],
    episodes: Sequence[Episode],
    seed: int,
    emit: Callable[[dict[str, Any]], None],
    dtw: str = "fastdtw",
    worker: int = 0,
) -> None:
    """Run `episodes` on K slots stepped together: each round, one `act_batch` over the active slots, then one
    step per env; a slot whose episode ends emits its record and takes the next episode.

    An exception in the batched act call fails every episode of that batch (the call's state cannot be split per
    agent: the NaVILA agent records its frames before the model call); `--retry-errors` runs them again."""
    todo: deque[Episode] = deque(episodes)
    active: dict[int, _Trajectory] = {}

    def begin(i: int) -> None:
        while todo:
            ep = todo.popleft()
            t0 = time.perf_counter()
            try:
                active[i] = _start(
                    slots[i].env, slots[i].agent, ep, episode_seed(seed, ep.uid), slots[i].callbacks
                )
                return
            except Exception:
                emit(_failed(ep, slots[i].agent, traceback.format_exc(), slots[i].callbacks, worker, t0))

    def end(i: int, error: str | None = None) -> None:
        """Emit slot i's record (finished, or failed with `error`) and give the slot its next episode."""
        traj = active.pop(i)
        slot = slots[i]
        record = None
        if error is None:
            try:
                record = _finish(slot.env, slot.agent, traj, dtw, slot.callbacks, worker)
            except Exception:
                error = traceback.format_exc()
        if record is None:
            record = _failed(traj.episode, slot.agent, error or "", slot.callbacks, worker, traj.t_start)
        emit(record)
        begin(i)

    for i in range(len(slots)):
        begin(i)
    while active:
        ids = sorted(active)
        batch = {i: active[i] for i in ids}
        t = time.perf_counter()
        try:
            actions = act_all([slots[i].agent for i in ids], [active[i].obs for i in ids])
        except Exception:
            error = traceback.format_exc()  # a failed batched call fails every episode in the batch
            for i in ids:
                end(i, error)
            continue
        share = (time.perf_counter() - t) / len(ids)  # model time split evenly over the batch
        own: dict[int, float] = {}  # each episode's own step time (env step + its callbacks)
        for i, action in zip(ids, actions, strict=True):
            traj = batch[i]
            traj.model_s += share
            t_step = time.perf_counter()
            try:
                _step(slots[i].env, traj, action, slots[i].callbacks)
            except Exception:
                end(i, traceback.format_exc())
                continue
            own[i] = time.perf_counter() - t_step
            if traj.done:
                traj.wait_s += max(time.perf_counter() - t - own[i] - share, 0.0)  # its round so far
                end(i)
        round_s = time.perf_counter() - t
        for i, traj in batch.items():
            if active.get(i) is traj:  # still running (not ended, not replaced by the slot's next episode)
                traj.wait_s += max(round_s - own[i] - share, 0.0)


# ------------------------------------------------------------------------------------------------ a worker's job


@dataclass
class WorkerJob:
    """Everything one worker needs, picklable for spawn: it builds K envs + agents and runs its episodes."""

    config: EvalConfig
    factories: Factories
    shards: list[list[Episode]]  # episodes of each worker, by worker index
    all_episodes: list[Episode]  # every selected episode (the env is built over them)

    def __call__(self, index: int, device: str, emit: Callable[[dict[str, Any]], None]) -> None:
        episodes = self.shards[index]
        if not episodes:
            return
        cfg = self.config
        k = min(cfg.envs_per_worker, len(episodes))
        slots = []
        for _ in range(k):
            env = self.factories.make_env(cfg, self.all_episodes)
            agent = self.factories.make_agent(cfg, env, device)
            callbacks: list[EpisodeCallback] = []
            if cfg.record or cfg.video:  # the video is composed from the rollout record
                callbacks.append(RecordingCallback(cfg.output, env=env))
            if cfg.video:
                callbacks.append(VideoCallback(cfg.output))
            if cfg.perturb is not None:  # the observations the agent (and the recorder) get are perturbed
                from benchmarks.perturb import PerturbedCamera

                env = PerturbedCamera(env, cfg.perturb, seed=cfg.seed)
            slots.append(Slot(env, agent, callbacks))
        try:
            if k == 1:
                s = slots[0]
                for ep in episodes:
                    emit(
                        run_episode(
                            s.env, s.agent, ep, episode_seed(cfg.seed, ep.uid), cfg.dtw, s.callbacks, index
                        )
                    )
            else:
                run_batched(slots, episodes, cfg.seed, emit, cfg.dtw, index)
        finally:
            for s in slots:
                s.env.close()


# ------------------------------------------------------------------------------------------------ the whole run


def select_episodes(episodes: Sequence[Episode], config: EvalConfig) -> list[Episode]:
    """The run's episodes: sorted by uid, filtered to `episode_ids`, then the first `limit`."""
    by_id = {ep.episode_id: ep for ep in episodes}
    if config.episode_ids:
        missing = [e for e in config.episode_ids if e not in by_id]
        if missing:
            some = ", ".join(sorted(by_id)[:10])
            raise ValueError(
                f"episode id(s) {', '.join(missing)} not in split '{config.split}' "
                f"({len(by_id)} episodes; some ids: {some})"
            )
        chosen = [by_id[e] for e in config.episode_ids]
    else:
        chosen = list(episodes)
    chosen = sorted(chosen, key=lambda ep: ep.uid)
    if len({ep.uid for ep in chosen}) != len(chosen):
        raise ValueError(f"split '{config.split}' has duplicate episode ids; results are keyed by uid")
    return chosen[: config.limit] if config.limit is not None else chosen


@dataclass
class RunOutcome:
    run_dir: Path  # the run folder
    selected: int  # episodes in the run's selection (all ranks)
    new: int  # episodes this call ran and recorded
    skipped: int  # episodes of this rank already recorded before this call (resume)
    summary: dict[str, Any] | None  # the summary, when this call wrote one
    failures: list[WorkerFailure]  # workers that crashed or died (their remaining episodes did not run)


def evaluate(
    config: EvalConfig,
    factories: Factories | None = None,
    listeners: Sequence[RunListener] = (),
    dist: DistInfo | None = None,
) -> RunOutcome:
    """Run (or resume) an evaluation into `config.output` and summarise it once every episode is recorded.

    Each rank runs its shard; the last rank to finish (it sees every episode recorded) merges the shard files and
    writes summary.json / summary.md. A single rank with unfinished episodes (a worker died) writes a summary
    marked incomplete.
    """
    factories = factories or DEFAULT_FACTORIES
    dist = dist or dist_info()
    if config.overwrite and dist.world_size > 1:
        raise ValueError(
            "--overwrite is not supported with several ranks; delete the output folder first instead"
        )
    episodes = select_episodes(factories.load_episodes(config), config)
    if not episodes:
        raise ValueError(f"split '{config.split}' has no episodes")
    open_run(config.output, config.to_json(), FINGERPRINTED, overwrite=config.overwrite, when_set=FINGERPRINTED_WHEN_SET)

    uids = [ep.uid for ep in episodes]
    recorded = load_results(config.output)
    if config.retry_errors:
        recorded = {u: r for u, r in recorded.items() if r.get("status") == "ok"}
    mine = set(shard(uids, dist.rank, dist.world_size))
    todo = [ep for ep in episodes if ep.uid in mine and ep.uid not in recorded]
    done_mine = [recorded[u] for u in uids if u in mine and u in recorded]
    n_workers = max(1, min(config.workers, len(todo)))
    todo_uids = [ep.uid for ep in todo]
    by_uid = {ep.uid: ep for ep in todo}
    shards = [[by_uid[u] for u in shard(todo_uids, w, n_workers)] for w in range(n_workers)] if todo else [[]]
    job = WorkerJob(config, factories, shards, episodes)

    for lst in listeners:
        lst.on_run_start(len(mine), done_mine)
    failures: list[WorkerFailure] = []
    new = 0
    with ResultWriter(config.output / results_file_name(dist.rank, dist.world_size)) as writer:

        def emit(record: dict[str, Any]) -> None:
            nonlocal new
            record["rank"] = dist.rank
            writer.write(record)
            new += 1
            for lst in listeners:
                lst.on_result(record)

        if todo and n_workers == 1 and len(config.gpus) <= 1:
            device = f"cuda:{config.gpus[0]}" if config.gpus else "auto"
            try:
                job(0, device, emit)
            except (ValueError, FileNotFoundError):
                raise  # bad input (a model or data path): the CLI reports it as a usage error
            except Exception:
                failures.append(WorkerFailure(0, traceback.format_exc()))  # as a spawned worker would report
        elif todo:
            for item in run_in_processes(job, n_workers, config.gpus):
                if isinstance(item, WorkerFailure):
                    failures.append(item)
                else:
                    emit(item)

    recorded = load_results(config.output)
    selection = [recorded[u] for u in uids if u in recorded]
    summary = None
    complete = len(selection) == len(uids)
    if complete or dist.world_size == 1:
        if complete:  # one line per uid, sorted (rank shards merged, superseded error records dropped)
            merge_shards(config.output)
        summary = summarize(selection, config.dtw, selected=len(uids))
        write_summary(config.output, summary, title=f"{config.split} - {config.agent}")
    for lst in listeners:
        lst.on_run_end(summary or {})
    return RunOutcome(config.output, len(uids), new, len(done_mine), summary, failures)


def merge_run(run_dir: Path, factories: Factories | None = None) -> dict[str, Any]:
    """`eval --merge-only`: merge the rank shards of `run_dir` into results.jsonl and write the summary of the
    configuration stored in its run.json (marked incomplete when episodes are missing)."""
    from benchmarks.store import read_run

    factories = factories or DEFAULT_FACTORIES
    stored = dict(read_run(run_dir)["config"])
    stored["output"] = Path(run_dir)
    config = EvalConfig(**stored)
    uids = [ep.uid for ep in select_episodes(factories.load_episodes(config), config)]
    merge_shards(run_dir)
    recorded = load_results(run_dir)
    summary = summarize([recorded[u] for u in uids if u in recorded], config.dtw, selected=len(uids))
    write_summary(run_dir, summary, title=f"{config.split} - {config.agent}")
    return summary
