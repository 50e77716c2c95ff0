"""VLN-CE episode metrics as pure functions of a finished trajectory, and their aggregation.

Definitions follow VLN-CE (Krantz et al., "Beyond the Nav-Graph: Vision-and-Language Navigation in Continuous
Environments", ECCV 2020; habitat-lab v0.1.7 measures), nDTW / SDTW follow Ilharco et al., "General Evaluation
for Instruction Conditioned Navigation using Dynamic Time Warping" (2019), and SPL follows Anderson et al., "On
Evaluation of Embodied Navigation Agents" (2018). Notation: x_t is the agent position after step t (x_0 after
reset, T the last step), d_t the geodesic distance from x_t to the goal, R the dense ground-truth locations.

    metrics = episode_metrics(positions, stopped=True, goal=goal, reference_locations=gt.locations,
                              geodesic=backend.geodesic_distance, collisions=2, steps=61)
    summary = aggregate([metrics, ...]); print(stats_json(summary, dtw="fastdtw"))

Aggregation policy (a decision, documented here and in the summary): each mean is taken over the episodes whose
value is finite, and the number of non-finite values per key is reported under "non_finite". NaVILA's summary
drops non-finite NE/SPL silently; VLN-CE's mean would turn NaN. Reporting the count keeps the mean usable and
makes the problem visible — a non-zero count always means something upstream is wrong (unreachable goal,
missing ground truth).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from envs.constants import SUCCESS_DISTANCE_M

# Keys of one episode's metric dict, in display order (docs/rollout_format.md).
METRIC_KEYS: tuple[str, ...] = ("ne", "os", "sr", "spl", "ndtw", "sdtw", "tl", "steps", "collisions")
DTW_METHODS: tuple[str, ...] = ("fastdtw", "exact")
# VLN-CE runs fastdtw with its default radius.
FASTDTW_RADIUS = 1

Geodesic = Callable[[np.ndarray, np.ndarray], float]


def _as_points(points: Sequence[Sequence[float]] | np.ndarray, name: str) -> np.ndarray:
    """[N, 3] float64 array from a list of [x, y, z]; ValueError naming the argument otherwise."""
    array = np.asarray(points, dtype=np.float64)
    if array.size == 0:
        return np.zeros((0, 3), dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 3:
        raise ValueError(f"{name}: expected a list of [x, y, z] points, got an array of shape {array.shape}")
    return array


def navigation_error(distances_to_goal: Sequence[float]) -> float:
    """NE = d_T, the geodesic distance from the final position to the goal, in metres (VLN-CE, Krantz et al.
    2020; habitat `DistanceToGoal` at the end of the episode)."""
    if len(distances_to_goal) == 0:
        raise ValueError(
            "navigation_error: no distances (the trajectory must hold at least the start position)"
        )
    return float(distances_to_goal[-1])


def success(stopped: bool, final_distance: float, success_distance: float = SUCCESS_DISTANCE_M) -> float:
    """SR = 1 if the agent called STOP and d_T < success_distance (strict), else 0 (VLN-CE, Krantz et al. 2020).
    An episode that ends at the step limit is a failure even when it ends near the goal."""
    return 1.0 if stopped and final_distance < success_distance else 0.0


def oracle_success(distances_to_goal: Sequence[float], success_distance: float = SUCCESS_DISTANCE_M) -> float:
    """OS = 1 if min over t = 0..T of d_t < success_distance, else 0: the agent passed within reach of the goal
    at some step, whether or not it stopped there (VLN-CE, Krantz et al. 2020)."""
    if len(distances_to_goal) == 0:
        raise ValueError(
            "oracle_success: no distances (the trajectory must hold at least the start position)"
        )
    return 1.0 if min(distances_to_goal) < success_distance else 0.0


def path_length(positions: Sequence[Sequence[float]] | np.ndarray) -> float:
    """TL = sum over t of ||x_{t+1} − x_t||_2, the Euclidean 3-D length of the path actually walked, in metres
    (VLN-CE `PathLength`, Krantz et al. 2020)."""
    points = _as_points(positions, "positions")  # [T+1, 3]
    if len(points) < 2:
        return 0.0
    return float(np.linalg.norm(np.diff(points, axis=0), axis=1).sum())


def spl(success_value: float, shortest_distance: float, agent_path_length: float) -> float:
    """SPL = S · ℓ / max(ℓ, TL), with S the success, ℓ = d_0 (geodesic start→goal measured at reset) and TL the
    path length (Anderson et al. 2018; VLN-CE). A failed episode scores 0 without computing the ratio, and a
    successful one with ℓ = TL = 0 (start already at the goal, no move) scores 1 instead of 0/0."""
    if success_value == 0.0:
        return 0.0
    denominator = max(shortest_distance, agent_path_length)
    if denominator == 0.0:
        return float(success_value)
    return float(success_value * shortest_distance / denominator)


def remove_consecutive_duplicates(positions: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """The positions with exact consecutive repeats removed (turns and blocked moves do not move the agent);
    VLN-CE's nDTW only appends a position when it differs from the previous one."""
    points = _as_points(positions, "positions")  # [N, 3]
    if len(points) < 2:
        return points
    keep = np.ones(len(points), dtype=bool)
    keep[1:] = np.any(points[1:] != points[:-1], axis=1)
    return points[keep]


def dtw_exact(query: np.ndarray, reference: np.ndarray) -> float:
    """Exact dynamic time warping cost with Euclidean point distance:
    D[i, j] = c[i, j] + min(D[i−1, j], D[i, j−1], D[i−1, j−1]), DTW = D[N−1, M−1] (Ilharco et al. 2019).

    Each row is vectorised: with t[j] = c[i, j] + min(D[i−1, j], D[i−1, j−1]) and C the running sum of row i's
    costs, D[i, j] = C[j] + min_{k ≤ j}(t[k] − C[k]), so the inner recurrence becomes a cumulative minimum.
    """
    query = _as_points(query, "query")
    reference = _as_points(reference, "reference")
    if len(query) == 0 or len(reference) == 0:
        raise ValueError("dtw_exact: both sequences need at least one point")
    cost = np.linalg.norm(query[:, None, :] - reference[None, :, :], axis=2)  # [N, M]
    row = np.cumsum(cost[0])  # [M] D[0, :]
    for i in range(1, len(query)):
        above = row  # D[i-1, :]
        diagonal = np.concatenate(([np.inf], above[:-1]))  # D[i-1, j-1]
        candidates = cost[i] + np.minimum(above, diagonal)  # [M]
        running = np.cumsum(cost[i])  # [M]
        row = running + np.minimum.accumulate(candidates - running)
    return float(row[-1])


def dtw_fast(query: np.ndarray, reference: np.ndarray, radius: int = FASTDTW_RADIUS) -> float:
    """Approximate DTW with the `fastdtw` package (Salvador & Chan 2007) and Euclidean point distance, as VLN-CE
    computes nDTW (radius 1). It equals the exact DTW on short sequences and is at least as large otherwise."""
    from fastdtw import fastdtw  # imported here: only this path needs it

    query = _as_points(query, "query")
    reference = _as_points(reference, "reference")
    if len(query) == 0 or len(reference) == 0:
        raise ValueError("dtw_fast: both sequences need at least one point")
    distance, _path = fastdtw(query, reference, radius=radius, dist=2)  # dist=2: the Euclidean (L2) norm
    return float(distance)


def ndtw(
    positions: Sequence[Sequence[float]] | np.ndarray,
    reference_locations: Sequence[Sequence[float]] | np.ndarray,
    dtw: str = "fastdtw",
    success_distance: float = SUCCESS_DISTANCE_M,
) -> float:
    """nDTW = exp(−DTW(P, R) / (|R| · success_distance)) (Ilharco et al. 2019, as in VLN-CE): P the agent
    positions with consecutive duplicates removed, R the dense ground-truth locations (`{split}_gt.json.gz`, not
    the sparse reference path), Euclidean 3-D point distance. `dtw` picks "fastdtw" (VLN-CE's approximation,
    radius 1; the default) or "exact". NaN when there is no reference (counted by `aggregate`)."""
    if dtw not in DTW_METHODS:
        raise ValueError(f"unknown dtw '{dtw}'; available: {', '.join(DTW_METHODS)}")
    reference = _as_points(reference_locations, "reference_locations")
    path = remove_consecutive_duplicates(positions)
    if len(reference) == 0 or len(path) == 0:
        return float("nan")
    cost = dtw_exact(path, reference) if dtw == "exact" else dtw_fast(path, reference)
    return float(math.exp(-cost / (len(reference) * success_distance)))


def sdtw(success_value: float, ndtw_value: float) -> float:
    """SDTW = SR · nDTW: nDTW counted only for successful episodes (Ilharco et al. 2019; VLN-CE). A failed
    episode scores 0 even when nDTW is undefined."""
    if success_value == 0.0:
        return 0.0
    return float(success_value * ndtw_value)


def distances_to_goal(positions: np.ndarray, goal: np.ndarray, geodesic: Geodesic) -> list[float]:
    """d_t for every position, querying the geodesic once per run of identical positions (turns do not move the
    agent, so most consecutive positions repeat)."""
    distances: list[float] = []
    previous: np.ndarray | None = None
    for point in positions:
        if previous is None or np.any(point != previous):
            value = float(geodesic(point, goal))
        distances.append(value)
        previous = point
    return distances


def episode_metrics(
    positions: Sequence[Sequence[float]] | np.ndarray,
    stopped: bool,
    goal: Sequence[float] | np.ndarray,
    reference_locations: Sequence[Sequence[float]] | np.ndarray,
    geodesic: Geodesic,
    collisions: int,
    steps: int,
    dtw: str = "fastdtw",
    success_distance: float = SUCCESS_DISTANCE_M,
) -> dict[str, float]:
    """Every VLN-CE metric of one finished episode, keyed as in docs/rollout_format.md:
    ne, os, sr, spl, ndtw, sdtw, tl, steps, collisions.

    `positions` are x_0 (after reset) .. x_T (one per low-level step), `stopped` whether the episode ended with
    STOP (not the step limit), `geodesic(a, b)` the backend's navigable distance (inf when unreachable). SPL's ℓ is
    d_0, the geodesic distance from x_0, as VLN-CE measures it at reset.
    """
    points = _as_points(positions, "positions")  # [T+1, 3]
    if len(points) == 0:
        raise ValueError("episode_metrics: positions is empty; it must hold at least the start position x_0")
    goal_point = np.asarray(goal, dtype=np.float64)
    if goal_point.shape != (3,):
        raise ValueError(f"episode_metrics: goal must be [x, y, z], got shape {goal_point.shape}")
    distances = distances_to_goal(points, goal_point, geodesic)
    tl = path_length(points)
    sr = success(stopped, distances[-1], success_distance)
    ndtw_value = ndtw(points, reference_locations, dtw=dtw, success_distance=success_distance)
    return {
        "ne": navigation_error(distances),
        "os": oracle_success(distances, success_distance),
        "sr": sr,
        "spl": spl(sr, distances[0], tl),
        "ndtw": ndtw_value,
        "sdtw": sdtw(sr, ndtw_value),
        "tl": tl,
        "steps": int(steps),
        "collisions": int(collisions),
    }


def _is_finite_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def aggregate(per_episode: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Means over episodes: {key: mean, ..., "episodes": N, "non_finite": {key: count}}.

    Each key's mean is over the episodes where it is a finite number; the others (NaN, ±inf, None, missing) are
    counted per key under "non_finite" instead of being dropped silently (see the module docstring). A key with no
    finite value at all has mean NaN. Keys beyond METRIC_KEYS are averaged too, after them, in sorted order.
    """
    keys = [key for key in METRIC_KEYS if any(key in m for m in per_episode)]
    extra = sorted({key for m in per_episode for key in m} - set(METRIC_KEYS))
    summary: dict[str, Any] = {}
    non_finite: dict[str, int] = {}
    for key in keys + extra:
        finite = [float(m[key]) for m in per_episode if _is_finite_number(m.get(key))]
        summary[key] = float(np.mean(finite)) if finite else float("nan")
        non_finite[key] = len(per_episode) - len(finite)
    summary["episodes"] = len(per_episode)
    summary["non_finite"] = non_finite
    return summary


def _nan_to_none(value: Any) -> Any:
    """Strict JSON has no NaN / Infinity: write them as null (the non_finite counts say why)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {key: _nan_to_none(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_nan_to_none(item) for item in value]
    return value


def stats_json(summary: Mapping[str, Any], dtw: str, **extra: Any) -> str:
    """The summary as strict JSON text (summary.json): the aggregate plus the DTW method used (`dtw`, which must
    be recorded with the results) and any `extra` fields; non-finite means are written as null."""
    if dtw not in DTW_METHODS:
        raise ValueError(f"unknown dtw '{dtw}'; available: {', '.join(DTW_METHODS)}")
    payload = {**summary, "dtw": dtw, **extra}
    return json.dumps(_nan_to_none(payload), indent=2, allow_nan=False)


# (key, column header, multiply by, number format) for the human-readable tables: rates as percentages, as in
# the VLN-CE and NaVILA papers.
_COLUMNS: tuple[tuple[str, str, float, str], ...] = (
    ("ne", "NE (m)", 1.0, "{:.2f}"),
    ("os", "OS %", 100.0, "{:.1f}"),
    ("sr", "SR %", 100.0, "{:.1f}"),
    ("spl", "SPL %", 100.0, "{:.1f}"),
    ("ndtw", "nDTW %", 100.0, "{:.1f}"),
    ("sdtw", "SDTW %", 100.0, "{:.1f}"),
    ("tl", "TL (m)", 1.0, "{:.2f}"),
    ("steps", "steps", 1.0, "{:.1f}"),
    ("collisions", "collisions", 1.0, "{:.2f}"),
)


def _table_cells(summary: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(header, cell text) per metric present; a cell gets "(k non-finite)" appended when k > 0."""
    non_finite = summary.get("non_finite", {})
    cells: list[tuple[str, str]] = []
    for key, header, scale, fmt in _COLUMNS:
        if key not in summary:
            continue
        value = summary[key]
        text = fmt.format(value * scale) if _is_finite_number(value) else "n/a"
        if non_finite.get(key, 0):
            text += f" ({non_finite[key]} non-finite)"
        cells.append((header, text))
    cells.append(("episodes", str(summary.get("episodes", 0))))
    return cells


def format_table(summary: Mapping[str, Any], title: str = "VLN-CE metrics") -> Any:
    """A `rich.table.Table` of the summary (one row), ready for `rich.console.Console().print`."""
    from rich.table import Table  # imported here so importing the metrics stays light

    table = Table(title=title)
    cells = _table_cells(summary)
    for header, _text in cells:
        table.add_column(header, justify="right")
    table.add_row(*(text for _header, text in cells))
    return table


def format_markdown(summary: Mapping[str, Any], title: str = "VLN-CE metrics") -> str:
    """The same table as Markdown (summary.md)."""
    cells = _table_cells(summary)
    header = "| " + " | ".join(h for h, _ in cells) + " |"
    rule = "| " + " | ".join("---:" for _ in cells) + " |"
    row = "| " + " | ".join(t for _, t in cells) + " |"
    return f"## {title}\n\n{header}\n{rule}\n{row}\n"
