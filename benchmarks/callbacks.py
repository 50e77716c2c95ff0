"""What hangs off the episode loop: rollout recording and video (in the worker), progress, per-episode lines
and the time breakdown (in the parent).

Two small protocols keep the loop in `benchmarks.runner` short:

- `EpisodeCallback` runs inside the worker that steps the env, so it sees every observation
  (`on_episode_start`, `on_step`, `on_episode_end`); `RecordingCallback` writes rollout records per
  docs/rollout_format.md and `VideoCallback` an MP4 per episode (videos/<EP_DIR>.mp4).
- `RunListener` runs in the parent process, which receives one finished-episode record (a JSON-safe dict, the
  results.jsonl line) at a time from all workers (`on_run_start`, `on_result`, `on_run_end`);
  `ProgressListener` draws the rich progress bar with live SR and ETA, `EpisodeLineListener` prints one compact
  line per episode and `TimingListener` keeps the sim / model / other breakdown.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from benchmarks.store import ROLLOUTS_DIR, VIDEOS_DIR, atomic_write_json, json_safe
from benchmarks.summary import step_times_text
from envs.datasets.episode import Episode
from viz.run_folder import episode_dir_name  # the viewer reads records under the same name

ROLLOUT_FORMAT = "navila-agent-rollout/1"


class EpisodeCallback(Protocol):
    def on_episode_start(self, episode: Episode, obs: dict[str, Any], info: dict[str, Any]) -> None:
        """After env.reset and agent.reset: obs and info of t = 0."""

    def on_step(
        self, episode: Episode, t: int, action: int, obs: dict[str, Any], info: dict[str, Any]
    ) -> None:
        """After env.step number t (1-based): the action taken and the observation / info it led to."""

    def on_episode_end(self, episode: Episode, record: dict[str, Any], agent_stats: dict[str, Any]) -> None:
        """Once the results line is built (also for an episode that crashed: record["status"] == "error")."""


class RunListener(Protocol):
    def on_run_start(self, total: int, done: Sequence[dict[str, Any]]) -> None:
        """`total` episodes in this run's selection, `done` of them already recorded (resume)."""

    def on_result(self, record: dict[str, Any]) -> None:
        """One finished episode, as written to results.jsonl."""

    def on_run_end(self, summary: dict[str, Any]) -> None:
        """The summary of every recorded episode of the selection."""


# ----------------------------------------------------------------------------------------------- in the worker


def _to_list(x: Any) -> list[float]:
    return [float(v) for v in np.asarray(x, dtype=np.float64).reshape(-1)]


def _decision_log(agent_stats: dict[str, Any]) -> list[dict[str, Any]]:
    """The agent's per-decision log (`episode_stats()["decision_log"]`, agent.base.Decision dicts), copied."""
    log = agent_stats.get("decision_log")
    return [dict(d) for d in log] if isinstance(log, list) else []


@dataclass
class RecordingCallback:
    """Writes rollouts/<EP_DIR>/{record.json, frames/*.jpg, topdown.png} for every episode (see the doc).

    Frames are written as they arrive (JPEG, quality `jpeg_quality`) so a 500-step episode never sits in
    memory; record.json is written atomically at the end, so a folder without it is an unfinished episode that
    a resumed run overwrites.
    """

    run_dir: Path  # the run folder; records go under run_dir/rollouts/
    jpeg_quality: int = 90  # JPEG quality of the saved frames
    topdown: bool = True  # also render topdown.png + the map transform (needs envs.topdown)
    env: Any = None  # the env whose backend / scene the top-down map is drawn from (set by the runner)
    _steps: list[dict[str, Any]] = field(default_factory=list, init=False)
    _dir: Path | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"RecordingCallback.jpeg_quality must be in [1, 100], got {self.jpeg_quality}")

    def _frame(self, t: int, obs: dict[str, Any]) -> str | None:
        import cv2

        rgb = obs.get("rgb")
        if rgb is None or self._dir is None:
            return None
        rel = f"frames/{t:06d}.jpg"
        bgr = cv2.cvtColor(np.ascontiguousarray(rgb[..., :3]), cv2.COLOR_RGB2BGR)
        cv2.imwrite(str(self._dir / rel), bgr, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        return rel

    def _step_entry(
        self, t: int, action: int | None, obs: dict[str, Any], info: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            "t": t,
            "position": _to_list(info.get("position", [np.nan] * 3)),
            "rotation": _to_list(info.get("rotation", [np.nan] * 4)),
            "action": None if action is None else int(action),
            "collided": bool(info.get("collided", False)),
            "distance_to_goal": float(info.get("distance_to_goal", float("nan"))),
            "frame": self._frame(t, obs),
            "decision": None,
        }

    def on_episode_start(self, episode: Episode, obs: dict[str, Any], info: dict[str, Any]) -> None:
        self._dir = Path(self.run_dir) / ROLLOUTS_DIR / episode_dir_name(episode.uid)
        shutil.rmtree(self._dir, ignore_errors=True)  # a half-written record of a killed run
        (self._dir / "frames").mkdir(parents=True)
        self._steps = [self._step_entry(0, None, obs, info)]

    def on_step(
        self, episode: Episode, t: int, action: int, obs: dict[str, Any], info: dict[str, Any]
    ) -> None:
        self._steps.append(self._step_entry(t, action, obs, info))

    def _map(self) -> dict[str, Any] | None:
        """Write topdown.png of the current scene (envs.topdown.env_topdown) and return the record's "map";
        None when the backend has no navigation grid to draw (habitat-sim) or no env was given."""
        if not self.topdown or self.env is None or self._dir is None:
            return None
        from envs.topdown import env_topdown, save_png

        try:
            image, info = env_topdown(self.env)
        except ValueError:
            return None
        save_png(image, self._dir / "topdown.png")
        return {"image": "topdown.png", **json_safe(info)}

    def on_episode_end(self, episode: Episode, record: dict[str, Any], agent_stats: dict[str, Any]) -> None:
        if self._dir is None:
            return
        decisions = _decision_log(agent_stats)
        for k, d in enumerate(decisions):
            d.setdefault("k", k)
            t = d.get("t")
            if isinstance(t, int) and 0 <= t < len(self._steps):
                self._steps[t]["decision"] = d["k"]
        gt = episode.gt
        out = {
            "format": ROLLOUT_FORMAT,
            "uid": episode.uid,
            "episode_id": episode.episode_id,
            "split": record.get("split"),
            "scene_id": episode.scene_id,
            "instruction": episode.instruction.instruction_text,
            "goal": list(episode.goal_position),
            "success_distance": episode.goals[0].radius,
            "reference_path": episode.reference_path,
            "gt_locations": gt.locations if gt is not None else [],
            "steps": self._steps,
            "decisions": decisions,
            "metrics": record.get("metrics"),
            "status": record.get("status"),
            "error": record.get("error"),
            "map": self._map(),
        }
        atomic_write_json(self._dir / "record.json", out)
        self._steps, self._dir = [], None


@dataclass
class VideoCallback:
    """Writes videos/<EP_DIR>.mp4 for every episode from its rollout record (viz.video.write_episode_video:
    egocentric frame | top-down map with the path | model answer), so it must come after a RecordingCallback."""

    run_dir: Path  # the run folder
    fps: float = 4.0  # video frames (= steps) per second

    def __post_init__(self) -> None:
        if not self.fps > 0:
            raise ValueError(f"VideoCallback.fps must be > 0, got {self.fps}")

    def on_episode_start(self, episode: Episode, obs: dict[str, Any], info: dict[str, Any]) -> None:
        pass

    def on_step(
        self, episode: Episode, t: int, action: int, obs: dict[str, Any], info: dict[str, Any]
    ) -> None:
        pass

    def on_episode_end(self, episode: Episode, record: dict[str, Any], agent_stats: dict[str, Any]) -> None:
        from viz.video import write_episode_video  # the viewer's composition; imported only with --video

        name = episode_dir_name(episode.uid)
        record_dir = Path(self.run_dir) / ROLLOUTS_DIR / name
        if not (record_dir / "record.json").is_file():
            raise RuntimeError(f"VideoCallback: no rollout record in {record_dir}; --video needs --record")
        out = Path(self.run_dir) / VIDEOS_DIR / f"{name}.mp4"
        tmp = out.with_name(f".{name}.tmp.mp4")  # renamed when complete: an .mp4 in videos/ is always whole
        write_episode_video(record_dir, tmp, fps=self.fps)
        tmp.replace(out)


# ----------------------------------------------------------------------------------------------- in the parent


@dataclass
class TimingListener:
    """Sums the per-episode time breakdown (sim / model / other) and the number of low-level steps."""

    sim_s: float = 0.0
    model_s: float = 0.0
    other_s: float = 0.0
    wait_s: float = 0.0  # batched runs: waiting for batch-mates (see benchmarks.runner.run_batched)
    steps: int = 0
    episodes: int = 0

    def on_run_start(self, total: int, done: Sequence[dict[str, Any]]) -> None:
        pass

    def on_result(self, record: dict[str, Any]) -> None:
        t = record.get("timings") or {}
        self.sim_s += float(t.get("sim_s", 0.0))
        self.model_s += float(t.get("model_s", 0.0))
        self.other_s += float(t.get("other_s", 0.0))
        self.wait_s += float(t.get("wait_s", 0.0))
        self.steps += int((record.get("metrics") or {}).get("steps") or 0)
        self.episodes += 1

    def on_run_end(self, summary: dict[str, Any]) -> None:
        pass

    def per_step_ms(self) -> dict[str, float]:
        """Mean milliseconds per low-level step spent in the simulator, the agent/model, the episode's own rest,
        and (batched runs) waiting while the other episodes of its batch stepped."""
        n = max(self.steps, 1)
        return {k: 1000.0 * getattr(self, f"{k}_s") / n for k in ("sim", "model", "other", "wait")}

    def describe(self) -> str:
        totals = {f"{k}_s": getattr(self, f"{k}_s") for k in ("sim", "model", "other", "wait")}
        return "per step: " + step_times_text(totals, self.steps)


def _fmt(x: Any, spec: str) -> str:
    return "-" if x is None or (isinstance(x, float) and not np.isfinite(x)) else format(x, spec)


def episode_line(record: dict[str, Any]) -> str:
    """One compact line per finished episode: id, SR, SPL, NE, steps, parse failures (or the error)."""
    if record.get("status") != "ok":
        last = (record.get("error") or "").strip().splitlines()[-1:] or ["?"]
        return f"{record['uid']}  ERROR  {last[0]}"
    m = record.get("metrics") or {}
    return (
        f"{record['uid']}  SR {_fmt(m.get('sr'), '.0f')}  SPL {_fmt(m.get('spl'), '.2f')}  "
        f"NE {_fmt(m.get('ne'), '.2f')}  steps {m.get('steps', '-')}  parse_failures {record.get('parse_failures', 0)}"
    )


@dataclass
class EpisodeLineListener:
    """Prints `episode_line` for every finished episode (through `print_fn`, e.g. a rich console)."""

    print_fn: Any = print  # callable taking one string

    def on_run_start(self, total: int, done: Sequence[dict[str, Any]]) -> None:
        pass

    def on_result(self, record: dict[str, Any]) -> None:
        self.print_fn(episode_line(record))

    def on_run_end(self, summary: dict[str, Any]) -> None:
        pass


class ProgressListener:
    """Progress over the run's episodes with live SR, errors, ETA and the per-step time breakdown: a rich bar on
    a terminal; on anything else (a SLURM log, a pipe) one plain line at most every `log_every_s` seconds, since a
    live bar there prints nothing until the end."""

    def __init__(
        self, console: Any = None, timing: TimingListener | None = None, log_every_s: float = 30.0
    ) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.console = console or Console(stderr=True)
        self.timing = timing or TimingListener()
        self.log_every_s = log_every_s
        self._live = bool(self.console.is_terminal)
        self._progress = Progress(
            TextColumn("[bold]eval"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("SR {task.fields[sr]}  errors {task.fields[errors]}  {task.fields[timing]}"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self._task: Any = None
        self._success = 0.0
        self._ok = 0
        self._errors = 0
        self._total = 0
        self._done = 0
        self._new = 0
        self._t0 = time.monotonic()
        self._last_log = self._t0

    def _count(self, record: dict[str, Any]) -> None:
        self._done += 1
        if record.get("status") == "ok":
            self._ok += 1
            sr = (record.get("metrics") or {}).get("sr")
            self._success += float(sr) if sr is not None else 0.0
        else:
            self._errors += 1

    def _fields(self) -> dict[str, str]:
        sr = f"{self._success / self._ok:.3f}" if self._ok else "-"
        return {
            "sr": sr,
            "errors": str(self._errors),
            "timing": self.timing.describe() if self.timing.steps else "",
        }

    def status_line(self) -> str:
        """'eval 120/1839  SR 0.531  errors 0  ETA 1:23:05  per step: ...' (ETA from this call's episode rate)."""
        elapsed = time.monotonic() - self._t0
        eta = "-"
        if self._new and self._total > self._done:
            seconds = int(elapsed / self._new * (self._total - self._done))
            eta = f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        f = self._fields()
        return f"eval {self._done}/{self._total}  SR {f['sr']}  errors {f['errors']}  ETA {eta}  {f['timing']}".rstrip()

    def on_run_start(self, total: int, done: Sequence[dict[str, Any]]) -> None:
        self._total = total
        for rec in done:
            self._count(rec)
        if self._live:
            self._progress.start()
            self._task = self._progress.add_task("eval", total=total, completed=len(done), **self._fields())
        else:
            self.console.print(self.status_line(), highlight=False, markup=False)

    def on_result(self, record: dict[str, Any]) -> None:
        self._count(record)
        self._new += 1
        if self._task is not None:
            self._progress.update(self._task, advance=1, **self._fields())
        elif not self._live and time.monotonic() - self._last_log >= self.log_every_s:
            self._last_log = time.monotonic()
            self.console.print(self.status_line(), highlight=False, markup=False)

    def on_run_end(self, summary: dict[str, Any]) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop drawing (also on interrupt) so the terminal is left clean; off a terminal, print the last line."""
        if self._live:
            self._progress.stop()
        else:
            self.console.print(self.status_line(), highlight=False, markup=False)
