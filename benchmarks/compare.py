"""Paired comparison of two evaluation runs on the same episodes: is checkpoint B better than A, or is it noise?

    navila-agent compare runs/ckpt-a runs/ckpt-b --json runs/a_vs_b.json

Why paired: two checkpoints evaluated on the same episodes are not two independent samples. At the success
rates of small models most episodes are failures for both, and the successes of two runs overlap little (the
training log's runs F, G and H share 6-7 of their ~20 successes on 200 episodes), so a 2-point difference in SR
between two runs says little on its own. The paired statistics say how much:

- success: the 2x2 table (both, only A, only B, neither) and McNemar's exact test — the two-sided binomial
  p-value of the discordant episodes (only A vs only B) under "equally likely", which is what decides whether
  B's SR differs from A's;
- each metric's mean for A and B, the mean of the per-episode differences B - A and its standard error
  (sample standard deviation of the differences / sqrt(n)), with a 95% interval (±1.96 SE, normal
  approximation; fine for n in the hundreds, optimistic below ~30 episodes);
- each run's SR with its 95% Wilson interval (the uncertainty of one run, not of the difference).

Only episodes finished with status "ok" in both runs are paired; episodes in one run only, and crashed ones, are
counted and named, never averaged in.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.metrics import METRIC_KEYS, _is_finite_number, aggregate
from benchmarks.store import RunFolderError, load_results

Z95 = 1.959963984540054  # two-sided 95% quantile of the standard normal


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value: P(a split at least as uneven as (only_a, only_b) | p = 1/2).

    1.0 when there is no discordant episode (no evidence of any difference)."""
    if only_a < 0 or only_b < 0:
        raise ValueError(f"mcnemar_exact: counts must be >= 0, got {only_a}, {only_b}")
    n = only_a + only_b
    if n == 0:
        return 1.0
    k = min(only_a, only_b)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0**n
    return min(1.0, 2.0 * tail)


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a success rate (fractions in [0, 1]); (0, 1) when n is 0."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class MetricDiff:
    """One metric over the paired episodes where both runs have a finite value."""

    key: str
    n: int
    mean_a: float
    mean_b: float
    diff: float  # mean of (B - A) per episode
    se: float  # standard error of that mean (nan when n < 2)
    low: float  # 95% interval of the difference
    high: float


@dataclass
class Comparison:
    """Everything `compare_runs` measured; `asdict` gives the JSON that `--json` writes."""

    run_a: str
    run_b: str
    paired: int
    only_in_a: list[str] = field(default_factory=list)
    only_in_b: list[str] = field(default_factory=list)
    not_ok: list[str] = field(default_factory=list)  # uids that crashed in either run
    success: dict[str, int] = field(default_factory=dict)  # both, only_a, only_b, neither
    mcnemar_p: float = 1.0
    sr_a_interval: tuple[float, float] = (0.0, 1.0)
    sr_b_interval: tuple[float, float] = (0.0, 1.0)
    metrics: list[MetricDiff] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def paired_metric(key: str, a: Sequence[Mapping[str, Any]], b: Sequence[Mapping[str, Any]]) -> MetricDiff:
    """Mean of B - A for `key` over the pairs where both values are finite."""
    pairs = [
        (float(x[key]), float(y[key]))
        for x, y in zip(a, b, strict=True)
        if _is_finite_number(x.get(key)) and _is_finite_number(y.get(key))
    ]
    n = len(pairs)
    if n == 0:
        nan = float("nan")
        return MetricDiff(key, 0, nan, nan, nan, nan, nan, nan)
    diffs = [y - x for x, y in pairs]
    mean = sum(diffs) / n
    se = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1) / n) if n > 1 else float("nan")
    return MetricDiff(
        key=key,
        n=n,
        mean_a=sum(x for x, _ in pairs) / n,
        mean_b=sum(y for _, y in pairs) / n,
        diff=mean,
        se=se,
        low=mean - Z95 * se,
        high=mean + Z95 * se,
    )


def _ok_records(run_dir: Path) -> tuple[dict[str, dict[str, Any]], set[str]]:
    if not Path(run_dir).is_dir():
        raise RunFolderError(f"{run_dir}: no such run folder")
    records = load_results(Path(run_dir))
    if not records:
        raise RunFolderError(f"{run_dir}: no recorded episodes (no results.jsonl with episode lines)")
    ok = {uid: r for uid, r in records.items() if r.get("status") == "ok"}
    return ok, set(records) - set(ok)


def compare_runs(run_a: Path, run_b: Path) -> Comparison:
    """Pair the finished episodes of two run folders by uid and compare them (see the module docstring).

    RunFolderError naming the folder when one holds no episodes, or when the two share none (different
    splits, or episode subsets that do not overlap)."""
    ok_a, bad_a = _ok_records(run_a)
    ok_b, bad_b = _ok_records(run_b)
    not_ok = bad_a | bad_b
    common = sorted((set(ok_a) & set(ok_b)) - not_ok, key=_uid_order)
    if not common:
        raise RunFolderError(
            f"{run_a} and {run_b} have no finished episode in common (e.g. {next(iter(ok_a), '-')} vs "
            f"{next(iter(ok_b), '-')}): compare runs of the same split and episodes"
        )
    a = [ok_a[u].get("metrics") or {} for u in common]
    b = [ok_b[u].get("metrics") or {} for u in common]
    table = _success_table([_succeeded(x) for x in a], [_succeeded(y) for y in b])
    return Comparison(
        run_a=str(run_a),
        run_b=str(run_b),
        paired=len(common),
        only_in_a=sorted(set(ok_a) - set(ok_b) - not_ok, key=_uid_order),
        only_in_b=sorted(set(ok_b) - set(ok_a) - not_ok, key=_uid_order),
        not_ok=sorted(not_ok, key=_uid_order),
        success=table,
        mcnemar_p=mcnemar_exact(table["only_a"], table["only_b"]),
        sr_a_interval=wilson_interval(table["both"] + table["only_a"], len(common)),
        sr_b_interval=wilson_interval(table["both"] + table["only_b"], len(common)),
        metrics=[paired_metric(k, a, b) for k in METRIC_KEYS if any(k in m for m in a + b)],
    )


def _success_table(a: Sequence[bool], b: Sequence[bool]) -> dict[str, int]:
    """The paired 2x2 success table of two runs over the same episodes: both, only_a, only_b, neither."""
    cells = Counter(zip(a, b, strict=True))
    return {
        "both": cells[True, True],
        "only_a": cells[True, False],
        "only_b": cells[False, True],
        "neither": cells[False, False],
    }


def _succeeded(metrics: Mapping[str, Any]) -> bool:
    """The episode's `sr` (0 or 1) as a bool; a missing or non-finite value is no success."""
    return bool(_is_finite_number(metrics.get("sr")) and metrics["sr"] > 0.5)


def _uid_order(uid: str) -> tuple[str, int, str]:
    """`r2r_val_unseen:17` sorts by split, then by the episode number (not as text: 17 before 100)."""
    split, _, episode = uid.rpartition(":")
    return (split, int(episode), "") if episode.isdigit() else (split, -1, episode)


@dataclass
class Spread:
    """Several runs of one recipe (e.g. training seeds) on the same episodes; `asdict` is `--json`'s output."""

    runs: list[str]
    paired: int  # episodes finished "ok" in every run: all the numbers below are over these
    left_out: list[str] = field(default_factory=list)  # uids missing from, or crashed in, at least one run
    per_run: list[dict[str, float]] = field(default_factory=list)  # metric means of each run
    mean: dict[str, float] = field(default_factory=dict)  # across runs
    sd: dict[str, float] = field(default_factory=dict)  # sample standard deviation across runs (n - 1)
    low: dict[str, float] = field(default_factory=dict)  # the smallest run mean
    high: dict[str, float] = field(default_factory=dict)  # the largest run mean
    succeeded_in: list[int] = field(default_factory=list)  # [k]: episodes that succeed in exactly k runs
    pairs: list[dict[str, Any]] = field(default_factory=list)  # a, b (indices), only_a, only_b, mcnemar_p

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def spread_runs(runs: Sequence[Path]) -> Spread:
    """How far runs of one recipe scatter on the same episodes: each run's means, their mean, standard deviation
    and range, how many episodes succeed in 0..N of the runs, and McNemar's p for every pair.

    Why: `compare_runs` answers "is B better than A on these episodes?", but two trainings that differ only in
    the seed also differ on those episodes; a candidate's gain means something only when it exceeds that scatter.
    RunFolderError naming the folder when one holds no episodes, or when the runs share no finished episode."""
    if len(runs) < 2:
        raise ValueError(f"spread needs at least 2 run folders, got {len(runs)}")
    loaded = [_ok_records(Path(r)) for r in runs]
    everywhere = set.intersection(*(set(ok) for ok, _ in loaded))
    anywhere = set.union(*(set(ok) | bad for ok, bad in loaded))
    common = sorted(everywhere, key=_uid_order)
    if not common:
        raise RunFolderError(
            f"{', '.join(str(r) for r in runs)} have no finished episode in common: spread compares runs of the "
            "same split and episodes"
        )
    metrics = [[ok[u].get("metrics") or {} for u in common] for ok, _ in loaded]
    keys = [k for k in METRIC_KEYS if any(k in m for run in metrics for m in run)]
    # Each run's means over its finite values (NaN where a run has none).
    per_run = [{k: means[k] for k in keys} for means in map(aggregate, metrics)]
    spread = Spread(
        runs=[str(r) for r in runs],
        paired=len(common),
        left_out=sorted(anywhere - everywhere, key=_uid_order),
        per_run=per_run,
    )
    n = len(runs)
    for k in keys:
        values = [m[k] for m in per_run if math.isfinite(m[k])]
        if not values:
            continue
        mean = sum(values) / len(values)
        spread.mean[k] = mean
        spread.sd[k] = (
            math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
            if len(values) > 1
            else math.nan
        )
        spread.low[k], spread.high[k] = min(values), max(values)
    wins = [[_succeeded(m) for m in run] for run in metrics]
    counts = Counter(sum(run[i] for run in wins) for i in range(len(common)))
    spread.succeeded_in = [counts[k] for k in range(n + 1)]
    for i in range(n):
        for j in range(i + 1, n):
            table = _success_table(wins[i], wins[j])
            only_a, only_b = table["only_a"], table["only_b"]
            spread.pairs.append(
                {
                    "a": i,
                    "b": j,
                    "only_a": only_a,
                    "only_b": only_b,
                    "mcnemar_p": mcnemar_exact(only_a, only_b),
                }
            )
    return spread


# Display: (key, label, scale, decimals); percentages for the rates, metres for distances.
_DISPLAY = {
    "sr": ("SR %", 100, 1),
    "spl": ("SPL %", 100, 1),
    "os": ("OS %", 100, 1),
    "ndtw": ("nDTW %", 100, 1),
    "sdtw": ("SDTW %", 100, 1),
    "ne": ("NE m", 1, 2),
    "tl": ("TL m", 1, 2),
    "steps": ("steps", 1, 1),
    "collisions": ("collisions", 1, 1),
}


def format_comparison(cmp: Comparison) -> Any:
    """A rich renderable: the metric table (A, B, B - A ± 95%, z) and the success table with McNemar's p."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"A = {cmp.run_a}\nB = {cmp.run_b}\n{cmp.paired} paired episodes")
    for header in ("metric", "A", "B", "B - A", "95% interval", "z"):
        table.add_column(header, justify="left" if header == "metric" else "right")
    for m in cmp.metrics:
        label, scale, dec = _DISPLAY.get(m.key, (m.key, 1, 3))
        if m.n == 0:
            table.add_row(label, "n/a", "n/a", "n/a", "", "")
            continue
        z = m.diff / m.se if m.se and math.isfinite(m.se) and m.se > 0 else float("nan")
        table.add_row(
            label,
            f"{m.mean_a * scale:.{dec}f}",
            f"{m.mean_b * scale:.{dec}f}",
            f"{m.diff * scale:+.{dec}f}",
            f"[{m.low * scale:+.{dec}f}, {m.high * scale:+.{dec}f}]" if math.isfinite(m.se) else "",
            f"{z:+.2f}" if math.isfinite(z) else "",
        )
    s = cmp.success
    lo_a, hi_a = cmp.sr_a_interval
    lo_b, hi_b = cmp.sr_b_interval
    lines = [
        f"successes: both {s['both']}, only A {s['only_a']}, only B {s['only_b']}, neither {s['neither']}; "
        f"McNemar exact p = {cmp.mcnemar_p:.3f}"
        + (" (no evidence that the success rates differ at the 5% level)" if cmp.mcnemar_p >= 0.05 else ""),
        f"SR 95% Wilson intervals: A [{100 * lo_a:.1f}, {100 * hi_a:.1f}] %, B [{100 * lo_b:.1f}, {100 * hi_b:.1f}] %",
    ]
    for name, uids in (("only in A", cmp.only_in_a), ("only in B", cmp.only_in_b), ("crashed", cmp.not_ok)):
        if uids:
            shown = ", ".join(uids[:5]) + (f", … ({len(uids)} in all)" if len(uids) > 5 else "")
            lines.append(f"not paired, {name}: {shown}")
    return Group(table, Text("\n".join(lines)))


def format_spread(spread: Spread) -> Any:
    """A rich renderable: one column per run, then mean ± sd and the range; the success agreement; each pair."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    names = "\n".join(f"{i + 1} = {r}" for i, r in enumerate(spread.runs))
    table = Table(title=f"{names}\n{spread.paired} episodes finished in every run")
    table.add_column("metric")
    for i in range(len(spread.runs)):
        table.add_column(str(i + 1), justify="right")
    for header in ("mean", "sd", "range"):
        table.add_column(header, justify="right")
    for key in spread.mean:
        label, scale, dec = _DISPLAY.get(key, (key, 1, 3))
        sd = spread.sd[key]
        table.add_row(
            label,
            *(f"{m[key] * scale:.{dec}f}" if math.isfinite(m[key]) else "n/a" for m in spread.per_run),
            f"{spread.mean[key] * scale:.{dec}f}",
            f"{sd * scale:.{dec}f}" if math.isfinite(sd) else "",
            f"{spread.low[key] * scale:.{dec}f} – {spread.high[key] * scale:.{dec}f}",
        )
    n = len(spread.runs)
    lines = [
        "episodes by the number of runs that succeed on them: "
        + ", ".join(f"{k} of {n}: {c}" for k, c in enumerate(spread.succeeded_in))
    ]
    for pair in spread.pairs:
        lines.append(
            f"{pair['a'] + 1} vs {pair['b'] + 1}: successes only in {pair['a'] + 1} {pair['only_a']}, only in "
            f"{pair['b'] + 1} {pair['only_b']}; McNemar exact p = {pair['mcnemar_p']:.3f}"
        )
    if spread.left_out:
        shown = ", ".join(spread.left_out[:5])
        more = f", … ({len(spread.left_out)} in all)" if len(spread.left_out) > 5 else ""
        lines.append(f"left out (missing or crashed in some run): {shown}{more}")
    return Group(table, Text("\n".join(lines)))
