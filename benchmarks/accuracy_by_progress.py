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

import argparse
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks.store import atomic_write_json

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
    import vlm
    from vlm.train.action_eval import answer_items, parse_action
    from vlm.train.dataset import MixtureDataset, SampleEncoder
    from vlm.train.registry import DatasetEntry

    if every < 1:
        raise ValueError(f"--every must be >= 1, got {every}")
    steps = trajectory_steps(samples)
    data = MixtureDataset([DatasetEntry(samples.name, samples)])
    model = vlm.load(model_path, device="cpu", dtype="float32").eval()
    data.follow_model(model)  # the frames and prompts the agent would show this model
    rule, cue = data.datasets[0].frame_sampling, data.datasets[0].progress_cue
    raw = data.datasets[0].samples
    picks = [
        i
        for i in range(0, len(raw), every)
        if not raw[i].get("copy", 0) and raw[i].get("task", "navigation") == "navigation" and raw[i]["traj"] in steps
    ]
    if not picks:
        raise ValueError(f"{samples}: no navigation sample to score")
    encoder = SampleEncoder(model.tokenizer, model.image_processor)
    dataset: Any = data
    if feature_cache is not None:
        from vlm.train.frame_features import CachedFeatureDataset, precompute_features

        dataset = CachedFeatureDataset(data, precompute_features(model, data, encoder, str(feature_cache)))
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.accuracy_by_progress", description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path, help="checkpoint folder (VILA layout)")
    parser.add_argument("samples", type=Path, help="collected folder of a validation split (navila-agent collect)")
    parser.add_argument("--every", type=int, default=1, help="score every k-th sample (a spread subset)")
    parser.add_argument("--feature-cache", type=Path, default=None, help="cache the frozen tower's features here")
    parser.add_argument("--json", type=Path, default=None, help="also write the table as JSON (atomically)")
    args = parser.parse_args(argv)
    for flag, path in (("MODEL", args.model / "config.json"), ("SAMPLES", args.samples / "manifest.json")):
        if not path.is_file():
            parser.error(f"{flag} {path.parent}: {path.name} not found")
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task("answering", total=None)
        try:
            result = score(
                args.model,
                args.samples,
                args.every,
                args.feature_cache,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
        except ValueError as e:
            parser.error(str(e))
    cue = "" if result["progress_cue"] == "none" else f", progress cue {result['progress_cue']}"
    print(f"{result['model']} on {result['samples']} (every {result['every']}, {result['frame_sampling']} history{cue})")
    print(format_table(result))
    if args.json is not None:
        atomic_write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
