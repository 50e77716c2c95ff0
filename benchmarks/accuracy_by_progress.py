"""Held-out action accuracy by how far along its route a decision is, from the expert's own history.

SR falls with the route's length (`benchmarks.failure_modes`: success by legs), but an episode's outcome mixes two
things: how well the model reads a decision, and how its own earlier mistakes compound. This tool isolates the
first. It answers every sample of a collected folder (`navila-agent collect` of a validation split: the expert drove,
so every history is a correct one) greedily, as the agent would, and bins the decisions by their position on the
route, `t / steps` of their trajectory:

- `t=0`: the first decision (the view at the start and the instruction only);
- `0-25%`, `25-50%`, `50-75%`, `75-100%`: the later ones, by quarter of the trajectory's low-level steps.

Per bin: kind accuracy (forward / turn / stop right) over all its decisions, and within the forward and the turn
decisions (so a change in the bins' mix of kinds cannot pass for a change in reading), with binomial standard errors;
the last line compares the first and the last quarter. Rebalanced duplicates (`copy` > 0) are skipped.

Session 27 (`docs/training_log.md`) found that the shipped model's accuracy on val_unseen falls from 0.70 in the first
quarter to 0.53 in the last, within each kind (this tool reproduces those numbers); session 28 used it to measure
`train --frame-sampling geometric`: later turns read better by 0.06-0.07, the fall flattens but stays.

    python -m benchmarks.accuracy_by_progress MODEL SAMPLES [--every 3] [--feature-cache DIR] [--json out.json]

The model sees the history frames of its own frame sampling rule (`LlavaLlamaConfig.frame_sampling`). With
`--feature-cache` the frozen tower's features are computed once per tower and reused (`vlm.train.frame_features`).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

BINS: tuple[str, ...] = ("t=0", "0-25%", "25-50%", "50-75%", "75-100%")
GROUPS: tuple[str, ...] = ("all", "forward", "turn", "stop")


def progress_bin(t: int, steps: int) -> str:
    """The bin of a decision at step `t` of a trajectory of `steps` low-level steps (one of BINS)."""
    if t < 0 or steps < 1:
        raise ValueError(f"progress_bin needs t >= 0 and steps >= 1, got t={t}, steps={steps}")
    if t == 0:
        return "t=0"
    quarter = min(3, int(4 * t / steps))
    return BINS[1 + quarter]


def _group(kind: str) -> str:
    return "turn" if kind in ("left", "right") else kind


def tabulate(
    samples: Sequence[Mapping[str, Any]], predicted: Sequence[str], steps: Mapping[str, int]
) -> dict[str, Any]:
    """Kind accuracy per (bin, group) from samples (with `t`, `traj`, `action`) and the predicted kinds.

    Returns {"cells": {bin: {group: {"n", "correct", "acc", "se"}}}, "first_vs_last": {"diff", "se"}}, where
    `diff` is the last quarter's accuracy minus the first's over all decisions; accuracies of empty cells are None."""
    if len(samples) != len(predicted):
        raise ValueError(f"tabulate: {len(samples)} samples but {len(predicted)} predictions")
    counts: dict[str, dict[str, list[int]]] = {b: {g: [0, 0] for g in GROUPS} for b in BINS}
    for sample, kind in zip(samples, predicted, strict=True):
        true = str(sample["action"])
        key = progress_bin(int(sample["t"]), int(steps[sample["traj"]]))
        for group in ("all", _group(true)):
            counts[key][group][0] += kind == true
            counts[key][group][1] += 1
    cells: dict[str, dict[str, dict[str, float]]] = {}
    for b in BINS:
        cells[b] = {}
        for g in GROUPS:
            correct, n = counts[b][g]
            acc = correct / n if n else None  # None, not NaN: the JSON stays strict
            se = math.sqrt(acc * (1 - acc) / n) if acc is not None else None
            cells[b][g] = {"n": n, "correct": correct, "acc": acc, "se": se}
    first, last = cells["0-25%"]["all"], cells["75-100%"]["all"]
    if first["n"] and last["n"]:
        compare = {"diff": last["acc"] - first["acc"], "se": math.hypot(first["se"], last["se"])}
    else:
        compare = {"diff": None, "se": None}
    return {"cells": cells, "first_vs_last": compare}


def trajectory_steps(root: Path) -> dict[str, int]:
    """Low-level steps of every finished trajectory of a collected folder (its trajectories.jsonl lines)."""
    from benchmarks.collect import read_jsonl

    out: dict[str, int] = {}
    for path in sorted(root.glob("shard-*/trajectories.jsonl")):
        for record in read_jsonl(path):
            if "steps" not in record:
                raise ValueError(f"{path}: trajectory {record.get('traj')!r} has no 'steps' (an older collect?)")
            out[record["traj"]] = int(record["steps"])
    if not out:
        raise ValueError(f"{root}: no finished trajectory (shard-*/trajectories.jsonl)")
    return out


def score(
    model_path: Path,
    samples: Path,
    every: int = 1,
    feature_cache: Path | None = None,
    batch_size: int = 16,
    progress: Any = None,
) -> dict[str, Any]:
    """Greedy answers of the model to every `every`-th navigation sample of `samples`, tabulated by progress."""
    from benchmarks.sample_tools import check_every, open_samples
    from vlm.train.action_eval import answer_items, parse_action

    check_every(every)
    steps = trajectory_steps(samples)
    setup = open_samples(model_path, samples, feature_cache)
    model, encoder, dataset = setup.model, setup.encoder, setup.dataset
    rule, cue = setup.folder.frame_sampling, setup.folder.progress_cue
    raw = setup.folder.samples
    picks = setup.spread_picks(
        every,
        lambda i: raw[i].get("task", "navigation") == "navigation" and raw[i]["traj"] in steps,
        f"{samples}: no navigation sample to score",
    )
    predicted: list[str] = []
    for start in range(0, len(picks), batch_size):
        items = [dataset[i] for i in picks[start : start + batch_size]]
        predicted += [parse_action(text)[0] for text in answer_items(model, items, encoder, "generate")]
        if progress is not None:
            progress(len(predicted), len(picks))
    table = tabulate([raw[i] for i in picks], predicted, steps)
    return {"model": str(model_path), "samples": str(samples), "every": every, "frame_sampling": rule, "progress_cue": cue, **table}


def format_table(result: Mapping[str, Any]) -> str:
    """A text table: one row per bin, kind accuracy ± standard error (n) for all, forward, turn and stop."""
    lines = [f"{'decision':>9} " + " ".join(f"{g:>19}" for g in GROUPS)]
    for b in BINS:
        cells = []
        for g in GROUPS:
            c = result["cells"][b][g]
            cells.append(f"{c['acc']:.3f} ±{c['se']:.3f} ({c['n']:>4})" if c["n"] else f"{'-':>19}")
        lines.append(f"{b:>9} " + " ".join(f"{c:>19}" for c in cells))
    fl = result["first_vs_last"]
    if fl["diff"] is not None:
        lines.append(f"last quarter - first quarter: {fl['diff']:+.3f} ± {fl['se']:.3f} (all decisions)")
    return "\n".join(lines)


def _report(result: Mapping[str, Any]) -> str:
    cue = "" if result["progress_cue"] == "none" else f", progress cue {result['progress_cue']}"
    head = f"{result['model']} on {result['samples']} (every {result['every']}, {result['frame_sampling']} history{cue})"
    return f"{head}\n{format_table(result)}"


def main(argv: Sequence[str] | None = None) -> int:
    from benchmarks.sample_tools import sample_tool_main

    return sample_tool_main(
        argv,
        "python -m benchmarks.accuracy_by_progress",
        __doc__.split("\n")[0],
        "checkpoint folder (VILA layout)",
        "answering",
        score,
        _report,
    )


if __name__ == "__main__":
    sys.exit(main())
