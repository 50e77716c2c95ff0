"""Choose the progress monitor's stop rule from one recorded run, without one evaluation per setting.

The monitor's rule (`navila-agent eval --monitor-stop T --monitor-patience K`, `vlm.progress_head.monitor_stop_fires`)
only ever turns a decision into STOP. Up to the decision where it fires, an episode is exactly the episode without
the rule: the same observations, the same model calls, the same estimates. So one run made without the rule and
recorded (`eval --monitor-stop 0 --record`, a model with a monitor) holds every rule's episodes: cut each one at the
first decision where the rule fires, add the STOP step there, and score the cut path with the runner's own metrics
(`benchmarks.metrics.episode_metrics`; the geodesic distances to the goal are the recorded ones).

    python -m benchmarks.stop_rule_sweep RUN_DIR [--thresholds 0.8,0.85,0.9,0.95] [--patience 1,2,3] [--json F]

Prints, per (threshold, patience), the VLN-CE means, the episodes the rule ended, and the paired difference against
the run itself (episodes gained and lost, McNemar's p, SR / SPL / nDTW differences with 95 % intervals; as
`navila-agent compare`). Checks first that the run is one without the rule (no decision's reason says the monitor
stopped it) and that recomputing each recorded episode's metrics gives the recorded ones, so the cut episodes are
scored as the runner would score them. Choose on one split (val_seen), confirm on another with a real evaluation.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agent.navila import MONITOR_STOP_REASON
from benchmarks.compare import MetricDiff, mcnemar_exact, paired_metric
from benchmarks.metrics import METRIC_KEYS, aggregate, episode_metrics
from benchmarks.store import atomic_write_json
from envs.constants import STOP, SUCCESS_DISTANCE_M
from viz.run_folder import RECORD_FILE, ROLLOUTS_DIR, RunFolderError, load_record, load_run
from vlm.progress_head import monitor_stop_fires

DEFAULT_THRESHOLDS: tuple[float, ...] = (0.8, 0.85, 0.9, 0.95)
DEFAULT_PATIENCE: tuple[int, ...] = (1, 2, 3)
TOLERANCE = 1e-6  # recomputed against recorded metrics


@dataclass(frozen=True)
class Rule:
    """One stop rule: STOP once `patience` consecutive decisions estimate at least `threshold`."""

    threshold: float
    patience: int

    @property
    def label(self) -> str:
        return f"T={self.threshold:g}, K={self.patience}"


@dataclass
class RuleResult:
    """A rule over the run's episodes: the metric means, how many it ended, and the paired comparison with none."""

    rule: Rule
    summary: dict[str, Any]
    ended: int  # episodes the rule ended: it fired at a decision whose answer was not STOP
    gained: int  # successes with the rule only
    lost: int  # successes without the rule only
    mcnemar_p: float
    diffs: list[MetricDiff]
    per_episode: dict[str, dict[str, float]]  # uid → the episode's metrics under the rule


def first_firing(decisions: Sequence[dict[str, Any]], rule: Rule) -> int | None:
    """Index of the first decision at which `rule` stops the episode (None: it never does)."""
    estimates: list[float | None] = []
    for k, decision in enumerate(decisions):
        estimates.append(decision.get("progress"))
        if monitor_stop_fires(estimates, rule.threshold, rule.patience):
            return k
    return None


def _reference(record: dict[str, Any]) -> list[list[float]]:
    """nDTW's reference, as the runner chose it: the dense locations, else the sparse reference path."""
    return record.get("gt_locations") or record.get("reference_path") or []


def _geodesic(record: dict[str, Any], where: Path) -> Any:
    """The recorded distance to the goal of every recorded position, as a geodesic function to the goal."""
    table: dict[tuple[float, ...], float] = {}
    for i, step in enumerate(record["steps"]):
        distance = step.get("distance_to_goal")
        if not isinstance(distance, int | float):
            raise RunFolderError(f"{where}: steps[{i}].distance_to_goal must be a number, got {distance!r}")
        table[tuple(float(v) for v in step["position"])] = float(distance)

    def geodesic(point: np.ndarray, _goal: np.ndarray) -> float:
        return table[tuple(float(v) for v in point)]

    return geodesic


def cut_metrics(record: dict[str, Any], stop_at: int | None, dtw: str, where: Path) -> dict[str, float]:
    """The episode's metrics had it stopped at decision `stop_at` (None: as recorded, up to its own end)."""
    steps = record["steps"]
    if stop_at is None:
        positions = [s["position"] for s in steps]
        stopped = record.get("stopped")
        if stopped is None:  # records do not store it: the episode stopped iff its last action was STOP
            stopped = len(steps) > 1 and steps[-1].get("action") == STOP
        n_steps = len(steps) - 1
        collisions = sum(bool(s.get("collided")) for s in steps[1:])
    else:
        t = int(record["decisions"][stop_at]["t"])
        if not 0 <= t < len(steps):
            raise RunFolderError(f"{where}: decisions[{stop_at}].t = {t} is outside the {len(steps)} recorded steps")
        positions = [s["position"] for s in steps[: t + 1]] + [steps[t]["position"]]  # the STOP step stays put
        stopped, n_steps = True, t + 1
        collisions = sum(bool(s.get("collided")) for s in steps[1 : t + 1])
    return episode_metrics(
        positions=positions,
        stopped=bool(stopped),
        goal=record["goal"],
        reference_locations=_reference(record),
        geodesic=_geodesic(record, where),
        collisions=collisions,
        steps=n_steps,
        dtw=dtw,
        success_distance=float(record.get("success_distance", SUCCESS_DISTANCE_M)),
    )


def _same(recomputed: Any, recorded: Any) -> bool:
    """Equal within TOLERANCE; a non-finite value matches another or the None a record stores for it."""
    if isinstance(recomputed, int | float) and not math.isfinite(recomputed):
        return recorded is None or (isinstance(recorded, int | float) and not math.isfinite(recorded))
    if isinstance(recomputed, int | float) and isinstance(recorded, int | float):
        return abs(float(recomputed) - float(recorded)) <= TOLERANCE
    return recomputed == recorded


def load_episodes(run_dir: str | Path) -> tuple[list[tuple[Path, dict[str, Any]]], str]:
    """The run's ok records (checked: made without the rule, with a monitor, rescored as recorded) and its DTW."""
    run = load_run(run_dir)
    files = sorted((run.root / ROLLOUTS_DIR).glob(f"*/{RECORD_FILE}"))
    if not files:
        raise RunFolderError(f"{run.root}: no rollout records under {ROLLOUTS_DIR}/ (evaluate with --record)")
    dtw = str((run.summary or {}).get("dtw") or run.run.get("config", {}).get("dtw") or "fastdtw")
    episodes: list[tuple[Path, dict[str, Any]]] = []
    estimates = 0
    for path in files:
        record = load_record(path)
        if record.get("status") != "ok" or record.get("metrics") is None:
            continue
        for k, decision in enumerate(record["decisions"]):
            if MONITOR_STOP_REASON in str(decision.get("reason") or ""):
                raise RunFolderError(
                    f"{path}: decisions[{k}] was stopped by the progress monitor ({decision.get('reason')!r}); "
                    "the sweep needs a run without the rule: evaluate with --monitor-stop 0 --record"
                )
            estimates += decision.get("progress") is not None
        recomputed = cut_metrics(record, None, dtw, path)
        for key in METRIC_KEYS:
            if key in record["metrics"] and not _same(recomputed[key], record["metrics"][key]):
                raise RunFolderError(
                    f"{path}: metrics.{key} is {record['metrics'][key]!r} but the record's steps give "
                    f"{recomputed[key]!r}; the sweep cannot score cut episodes as the runner did"
                )
        episodes.append((path, record))
    if not episodes:
        raise RunFolderError(f"{run.root}: no finished (status ok) rollout records")
    if estimates == 0:
        raise RunFolderError(
            f"{run.root}: no decision has a progress estimate (the model has no progress monitor; train one with "
            "--progress-loss-weight)"
        )
    return episodes, dtw


def sweep(run_dir: str | Path, rules: Sequence[Rule]) -> tuple[dict[str, Any], list[RuleResult]]:
    """The run's own summary and, per rule, its `RuleResult` (see the module docstring)."""
    episodes, dtw = load_episodes(run_dir)
    base = [record["metrics"] for _, record in episodes]
    results = []
    for rule in rules:
        cut, ended = [], 0
        for path, record in episodes:
            k = first_firing(record["decisions"], rule)
            ended += k is not None and record["decisions"][k].get("action") != "stop"
            cut.append(cut_metrics(record, k, dtw, path) if k is not None else record["metrics"])
        gained = sum(b["sr"] < 0.5 <= c["sr"] for b, c in zip(base, cut, strict=True))
        lost = sum(c["sr"] < 0.5 <= b["sr"] for b, c in zip(base, cut, strict=True))
        results.append(
            RuleResult(
                rule=rule,
                summary=aggregate(cut),
                ended=ended,
                gained=gained,
                lost=lost,
                mcnemar_p=mcnemar_exact(lost, gained),
                diffs=[paired_metric(key, base, cut) for key in ("sr", "spl", "ndtw", "os", "ne", "tl")],
                per_episode={record["uid"]: m for (_, record), m in zip(episodes, cut, strict=True)},
            )
        )
    return aggregate(base), results


def sweep_table(base: dict[str, Any], results: Sequence[RuleResult], title: str) -> Any:
    """A rich table: one row per rule after the run's own (no rule)."""
    from rich.table import Table

    table = Table(title=title)
    for column in ("rule", "SR %", "SPL %", "nDTW %", "OS %", "NE m", "TL m", "steps", "ended", "gained/lost",
                   "McNemar p", "ΔSR [95 %]", "ΔSPL", "ΔnDTW"):  # fmt: skip
        table.add_column(column, justify="left" if column == "rule" else "right")

    def means(s: dict[str, Any]) -> list[str]:
        return [f"{100 * s['sr']:.1f}", f"{100 * s['spl']:.1f}", f"{100 * s['ndtw']:.1f}", f"{100 * s['os']:.1f}",
                f"{s['ne']:.2f}", f"{s['tl']:.2f}", f"{s['steps']:.0f}"]  # fmt: skip

    table.add_row("none (the run)", *means(base), "", "", "", "", "", "")
    for r in results:
        d = {m.key: m for m in r.diffs}
        table.add_row(
            r.rule.label,
            *means(r.summary),
            str(r.ended),
            f"{r.gained}/{r.lost}",
            f"{r.mcnemar_p:.3f}",
            f"{100 * d['sr'].diff:+.1f} [{100 * d['sr'].low:+.1f}, {100 * d['sr'].high:+.1f}]",
            f"{100 * d['spl'].diff:+.1f}",
            f"{100 * d['ndtw'].diff:+.1f}",
        )
    return table


def _number_list(text: str, flag: str, cast: Callable[[str], Any], valid: Callable[[Any], bool], what: str) -> list:
    """`text` split at commas and cast; ValueError naming `flag` when a value does not parse or is not `valid`."""
    try:
        values = [cast(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{flag} takes {cast.__name__} values separated by commas, got {text!r}") from None
    if not values or not all(valid(v) for v in values):
        raise ValueError(f"{flag} values must be {what}, got {text!r}")
    return values


def main(argv: list[str] | None = None) -> int:
    """CLI entry point (see the module docstring)."""
    from rich.console import Console

    parser = argparse.ArgumentParser(prog="python -m benchmarks.stop_rule_sweep", description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path, help="A run folder evaluated with --monitor-stop 0 --record.")
    parser.add_argument("--thresholds", default=",".join(f"{t:g}" for t in DEFAULT_THRESHOLDS),
                        help="Thresholds T, comma separated, each in (0, 1].")  # fmt: skip
    parser.add_argument("--patience", default=",".join(str(k) for k in DEFAULT_PATIENCE),
                        help="Patience K (consecutive decisions at or above T), comma separated.")  # fmt: skip
    parser.add_argument("--json", type=Path, default=None, help="Also write every rule's summary here.")
    args = parser.parse_args(argv)
    try:
        thresholds = _number_list(args.thresholds, "--thresholds", float, lambda v: 0.0 < v <= 1.0, "in (0, 1]")
        patience = _number_list(args.patience, "--patience", int, lambda v: v >= 1, ">= 1")
    except ValueError as err:
        parser.error(str(err))
    rules = [Rule(t, k) for k in patience for t in thresholds]
    try:
        base, results = sweep(args.run_dir, rules)
    except RunFolderError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    Console().print(sweep_table(base, results, f"Stop rules replayed on {args.run_dir} ({base['episodes']} episodes)"))
    if args.json is not None:
        atomic_write_json(
            args.json,
            {"run": str(args.run_dir), "none": base,
             "rules": [{**asdict(r.rule), **{k: v for k, v in asdict(r).items() if k != "rule"}} for r in results]},
        )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
