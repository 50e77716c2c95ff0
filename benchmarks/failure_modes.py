"""Where do a run's episodes fail? A failure taxonomy of recorded rollouts (`eval --record`).

SR, SPL and nDTW say how often and how well an agent arrives; they do not say why it does not. This tool reads the
rollout records of a run folder (docs/rollout_format.md) and puts every episode in one class, checked in this order:

- `success`: the episode's SR is 1.
- `missed_stop`: it came within the success distance of the goal at some step but ended elsewhere (OS without SR:
  the route was right, the stop was not).
- `no_stop`: it never said stop (the step limit ended it: stuck against a wall, or turning in place).
- `left_route`: at some step it was more than `--off-route` metres (default 2) from the reference path, the
  polyline through `reference_path` on the floor plane. The leg it was on when it first left (0: before the first
  waypoint after the start) says which part of the instruction it lost.
- `stopped_short`: it stayed on the route and stopped before reaching the goal.

Per class it reports the share of episodes and the median route progress at the end (the arc length of the
agent's last position projected on the reference path, as a fraction of the path's length), and over the run the
share of forward steps that collided (also without the never-stopping episodes, which often end pressed against a
wall and dominate it) and the legs at which `left_route` episodes left.

Success by the route's number of legs (segments of `reference_path`): if each leg is a chance to go wrong, SR falls
with the legs. Session 26 found it does, over eleven runs' records of the generated val_unseen: 28 % mean SR on
routes of 4–5 legs, 12 % on 6–7, 6 % on 8–9 and 5 % on 10–13.

The first turn: VLN-CE episodes often start facing away from the route ("Turn around and ..."). The turn the agent
makes before its first non-turn action is compared with the turn that faces the first waypoint at least 0.5 m from
the start: the absolute error, the share off by more than 45°, and whether it turned the right way when the route
starts with a turn of more than 30°. The instruction names the direction; the size has to come from the view.

    python -m benchmarks.failure_modes RUN_DIR [--off-route 2.0] [--json out.json]

Session 17 (`docs/training_log.md`) used it on the shipped model: 42 % of the episodes leave the route (half of
them on its first leg, after a first turn of the right direction but the wrong size) and 34 % stop on the route a
sixth of the way along; suppressing the stops alone does not fix them.
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.metrics import oracle_success
from benchmarks.store import atomic_write_json
from envs.constants import MOVE_FORWARD, STOP, SUCCESS_DISTANCE_M, TURN_LEFT, TURN_RIGHT
from envs.geometry import angle_difference, heading_towards, quaternion_to_heading
from viz.run_folder import RECORD_FILE, ROLLOUTS_DIR, RunFolderError, load_record, load_run

CATEGORIES: tuple[str, ...] = ("success", "missed_stop", "no_stop", "left_route", "stopped_short")
DESCRIPTIONS: dict[str, str] = {
    "success": "success",
    "missed_stop": "reached the goal area, ended elsewhere",
    "no_stop": "never stopped (step limit)",
    "left_route": "left the route",
    "stopped_short": "stopped on the route, short of the goal",
}
OFF_ROUTE_M = 2.0
FIRST_WAYPOINT_M = 0.5  # the first turn aims at the first reference point at least this far from the start


@dataclass(frozen=True)
class EpisodeFailure:
    """One episode's class and the numbers behind it."""

    uid: str
    category: str  # one of CATEGORIES
    route_m: float  # length of the reference path on the floor plane
    progress: float  # final position's arc length along the path / route_m, in [0, 1]
    max_progress: float  # the furthest any step got along the path, same scale
    left_leg: int | None  # leg of the reference path (0-based) being walked when it first left the route
    left_progress: float | None  # progress when it first left the route
    steps: int  # low-level steps taken
    legs: int  # segments of the reference path (its points less one)
    forward_steps: int
    collided_forward: int  # forward steps whose move collided
    first_turn_needed: float | None = None  # degrees (+ left) that face the first waypoint from the start pose
    first_turn_made: float | None = None  # degrees (+ left) turned before the first non-turn action
    first_turn_error: float | None = None  # |made - needed|, wrapped to [0, 180]


def route_position(point: np.ndarray, path: np.ndarray) -> tuple[float, float, int]:
    """(distance to the polyline `path` [N, 2], arc length of the closest point, index of its segment)."""
    if len(path) == 1:
        return float(np.linalg.norm(point - path[0])), 0.0, 0
    best = (math.inf, 0.0, 0)
    start = 0.0
    for k, (a, b) in enumerate(itertools.pairwise(path)):
        ab = b - a
        length = float(np.linalg.norm(ab))
        t = 0.0 if length < 1e-9 else float(np.clip(np.dot(point - a, ab) / length**2, 0.0, 1.0))
        d = float(np.linalg.norm(point - (a + t * ab)))
        if d < best[0]:
            best = (d, start + t * length, k)
        start += length
    return best


def _floor(points: Sequence[Sequence[float]], where: str) -> np.ndarray:
    """[x, y, z] points -> [N, 2] (x, z): the floor plane, where VLN-CE measures distances."""
    try:
        arr = np.asarray(points, dtype=float)
    except (TypeError, ValueError):
        raise RunFolderError(f"{where}: expected a list of [x, y, z] points") from None
    if arr.ndim != 2 or arr.shape[1] != 3 or len(arr) == 0:
        raise RunFolderError(f"{where}: expected a non-empty list of [x, y, z] points, got shape {arr.shape}")
    return arr[:, [0, 2]]


def first_turn(record: dict[str, Any], path: np.ndarray) -> tuple[float, float, float] | None:
    """(needed, made, |error|) in degrees for the turn before the first non-turn action; None when the record has
    no rotations or the route has no point FIRST_WAYPOINT_M from the start."""
    steps = record["steps"]
    rotations = [s.get("rotation") for s in steps]
    if any(r is None or len(r) != 4 for r in rotations):
        return None
    start = np.asarray(steps[0]["position"], dtype=float)
    far = [p for p in path if np.linalg.norm(p - start[[0, 2]]) >= FIRST_WAYPOINT_M]
    if not far:
        return None
    heading = quaternion_to_heading(np.asarray(rotations[0], dtype=float))
    target = heading_towards(start, np.array([far[0][0], 0.0, far[0][1]]))
    k = 1
    while k < len(steps) and steps[k].get("action") in (TURN_LEFT, TURN_RIGHT):
        k += 1
    made = angle_difference(quaternion_to_heading(np.asarray(rotations[k - 1], dtype=float)), heading)
    needed = angle_difference(target, heading)
    return math.degrees(needed), math.degrees(made), abs(math.degrees(angle_difference(made, needed)))


def classify(record: dict[str, Any], off_route_m: float = OFF_ROUTE_M) -> EpisodeFailure:
    """The class of one rollout record (see the module docstring for the order of the checks)."""
    uid = str(record.get("uid"))
    if "reference_path" not in record:
        raise RunFolderError(f"record {uid}: field 'reference_path' is missing")
    path = _floor(record["reference_path"], f"record {uid}: field 'reference_path'")
    steps = record["steps"]
    points = _floor([s["position"] for s in steps], f"record {uid}: steps[].position")
    route_m = float(np.linalg.norm(np.diff(path, axis=0), axis=1).sum()) if len(path) > 1 else 0.0
    where = [route_position(p, path) for p in points]
    scale = route_m if route_m > 0 else 1.0
    progress = [min(1.0, arc / scale) for _, arc, _ in where]
    off = next((i for i, (d, _, _) in enumerate(where) if d > off_route_m), None)
    moves = [s for s in steps[1:] if s.get("action") == MOVE_FORWARD]
    metrics = record.get("metrics") or {}
    radius = float(record.get("success_distance", SUCCESS_DISTANCE_M))
    dist = [d for d in (s.get("distance_to_goal") for s in steps) if d is not None and math.isfinite(d)]
    reached = bool(dist) and oracle_success(dist, radius) == 1.0  # VLN-CE's OS, from the steps
    stopped = len(steps) > 1 and steps[-1].get("action") == STOP
    if metrics.get("sr") == 1.0:
        category = "success"
    elif reached or metrics.get("os") == 1.0:
        category = "missed_stop"
    elif not stopped:
        category = "no_stop"
    elif off is not None:
        category = "left_route"
    else:
        category = "stopped_short"
    turn = first_turn(record, path)
    return EpisodeFailure(
        uid=uid,
        category=category,
        route_m=round(route_m, 3),
        progress=round(progress[-1], 4),
        max_progress=round(max(progress), 4),
        left_leg=where[off][2] if off is not None else None,
        left_progress=round(progress[off], 4) if off is not None else None,
        steps=len(steps) - 1,
        legs=max(0, len(path) - 1),
        forward_steps=len(moves),
        collided_forward=sum(bool(s.get("collided")) for s in moves),
        first_turn_needed=round(turn[0], 1) if turn else None,
        first_turn_made=round(turn[1], 1) if turn else None,
        first_turn_error=round(turn[2], 1) if turn else None,
    )


def analyse_run(run_dir: str | Path, off_route_m: float = OFF_ROUTE_M) -> list[EpisodeFailure]:
    """Classify every recorded episode of a run folder; RunFolderError when it holds no records."""
    run = load_run(run_dir)
    files = sorted((run.root / ROLLOUTS_DIR).glob(f"*/{RECORD_FILE}"))
    if not files:
        raise RunFolderError(
            f"{run.root}: no rollout records under {ROLLOUTS_DIR}/ (evaluate with --record to write them)"
        )
    return [classify(load_record(f), off_route_m) for f in files]


def _median(values: Sequence[float]) -> float | None:
    return round(float(np.median(values)), 4) if values else None


def _collided_share(rows: Sequence[EpisodeFailure]) -> float | None:
    """Share of the rows' forward steps that collided; None without forward steps."""
    forward = sum(r.forward_steps for r in rows)
    return round(sum(r.collided_forward for r in rows) / forward, 4) if forward else None


LEG_BINS: tuple[tuple[int, int | None], ...] = ((0, 3), (4, 5), (6, 7), (8, 9), (10, None))  # inclusive; None: open


def success_by_legs(rows: Sequence[EpisodeFailure]) -> dict[str, dict[str, float | int]]:
    """Episodes, successes and SR per bin of the route's number of legs ("4-5", "10+"); empty bins are left out."""
    out: dict[str, dict[str, float | int]] = {}
    for lo, hi in LEG_BINS:
        mine = [r for r in rows if r.legs >= lo and (hi is None or r.legs <= hi)]
        if mine:
            wins = sum(r.category == "success" for r in mine)
            label = f"{lo}+" if hi is None else f"{lo}-{hi}"
            out[label] = {"episodes": len(mine), "successes": wins, "sr": round(wins / len(mine), 4)}
    return out


def summarise(rows: Sequence[EpisodeFailure]) -> dict[str, Any]:
    """Counts, shares and median progress per class; the legs where routes were left; collided forward steps."""
    n = len(rows)
    classes = {}
    for c in CATEGORIES:
        mine = [r for r in rows if r.category == c]
        classes[c] = {
            "episodes": len(mine),
            "share": round(len(mine) / n, 4) if n else 0.0,
            "median_progress": _median([r.progress for r in mine]),
            "median_steps": _median([r.steps for r in mine]),
            "median_first_turn_error": _median([r.first_turn_error for r in mine if r.first_turn_error is not None]),
        }
    left = [r for r in rows if r.category == "left_route"]
    turned = [r for r in rows if r.first_turn_error is not None]
    big = [r for r in turned if abs(r.first_turn_needed) > 30]
    return {
        "episodes": n,
        "classes": classes,
        "left_route_legs": dict(sorted(Counter(r.left_leg for r in left if r.left_leg is not None).items())),
        "left_route_median_progress": _median([r.left_progress for r in left if r.left_progress is not None]),
        "success_by_legs": success_by_legs(rows),
        "collided_forward_share": _collided_share(rows),
        # The episodes that never stop often end pressed against a wall for hundreds of steps and dominate the
        # count (session 24: 40.3 % of X0's forward steps collided, 11.3 % outside its 21 never-stopping episodes).
        "collided_forward_share_without_no_stop": _collided_share([r for r in rows if r.category != "no_stop"]),
        "episodes_mostly_colliding": sum(
            1 for r in rows if r.forward_steps and r.collided_forward > r.forward_steps / 2
        ),
        "first_turn": {
            "episodes": len(turned),
            "median_error": _median([r.first_turn_error for r in turned]),
            "share_error_over_45": round(sum(r.first_turn_error > 45 for r in turned) / len(turned), 4) if turned else None,
            "routes_starting_with_turn_over_30": len(big),
            "right_direction_share": (
                round(sum(r.first_turn_made * r.first_turn_needed > 0 for r in big) / len(big), 4) if big else None
            ),
            "median_error_left_on_leg_0": _median(
                [r.first_turn_error for r in turned if r.category == "left_route" and r.left_leg == 0]
            ),
        },
    }


def failure_table(summary: dict[str, Any]) -> str:
    """A readable table of `summarise`'s output."""
    head = (
        f"{'class':40s} {'episodes':>8s} {'share':>7s} {'progress (median)':>17s} {'steps (median)':>14s} "
        f"{'first-turn error (median)':>25s}"
    )
    lines = [head, "-" * len(head)]

    def fmt(value: float | None, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    for c, row in summary["classes"].items():
        lines.append(
            f"{DESCRIPTIONS[c]:40s} {row['episodes']:8d} {100 * row['share']:6.1f}% "
            f"{fmt(row['median_progress'], '.2f'):>17s} {fmt(row['median_steps'], '.0f'):>14s} "
            f"{fmt(row['median_first_turn_error'], '.0f'):>25s}"
        )
    legs = ", ".join(f"leg {k}: {v}" for k, v in summary["left_route_legs"].items()) or "-"
    lines.append(f"left the route at: {legs} (median progress there {summary['left_route_median_progress']})")
    by_legs = ", ".join(
        f"{k}: {v['successes']}/{v['episodes']} ({100 * v['sr']:.1f}%)" for k, v in summary["success_by_legs"].items()
    )
    lines.append(f"success by the route's legs: {by_legs or '-'}")
    share, rest = summary["collided_forward_share"], summary["collided_forward_share_without_no_stop"]
    lines.append(
        f"forward steps that collided: {'-' if share is None else f'{100 * share:.1f}%'} "
        f"({'-' if rest is None else f'{100 * rest:.1f}%'} without the "
        f"{summary['classes']['no_stop']['episodes']} never-stopping episodes); episodes where most "
        f"forward steps collided: {summary['episodes_mostly_colliding']} of {summary['episodes']}"
    )
    turn = summary["first_turn"]
    if turn["episodes"]:
        lines.append(
            f"first turn (degrees): error median {fmt(turn['median_error'], '.0f')}, over 45 in "
            f"{100 * turn['share_error_over_45']:.1f}% of {turn['episodes']} episodes (median "
            f"{fmt(turn['median_error_left_on_leg_0'], '.0f')} where the route was left on leg 0); the right way in "
            f"{fmt(None if turn['right_direction_share'] is None else 100 * turn['right_direction_share'], '.1f')}% "
            f"of the {turn['routes_starting_with_turn_over_30']} routes that start with a turn over 30"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.failure_modes", description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path, help="A run folder evaluated with --record.")
    parser.add_argument(
        "--off-route", type=float, default=OFF_ROUTE_M, help="Metres from the reference path that count as off it."
    )
    parser.add_argument("--json", type=Path, default=None, help="Also write the summary and every episode here.")
    args = parser.parse_args(argv)
    if not args.off_route > 0:
        parser.error(f"--off-route must be > 0, got {args.off_route}")
    try:
        rows = analyse_run(args.run_dir, args.off_route)
    except RunFolderError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    summary = summarise(rows)
    print(failure_table(summary))
    if args.json is not None:
        out = {**summary, "off_route_m": args.off_route, "per_episode": [asdict(r) for r in rows]}
        atomic_write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
