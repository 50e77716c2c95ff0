"""How well a trained progress monitor tells, on held-out routes, how far along its route the agent is.

`navila-agent train --progress-loss-weight W` (beyond NaVILA) trains a linear head (`vlm.progress_head`, saved as the
model's `progress_head/`) on the LM's state at the answer to estimate each expert sample's progress, t / (steps - 1).
Its training error says little about whether the LM learned to match the views to the instruction in houses it never
saw. This tool answers that: it runs the model and its head over the expert samples of a collected validation folder
and reports

- the head's mean squared and absolute error, and the correlation of estimate and truth;
- the error of the best constant guess (the targets' variance) and of a guess from the step count alone (a
  least-squares line in t, fitted on these very samples: an optimistic baseline that reads no image and no word);
- per position on the route (the bins of `benchmarks.accuracy_by_progress`) the mean truth and estimate;
- at the expert's STOP against elsewhere: the mean estimate, and how well it separates the two (ROC AUC), which is
  what a stop rule built on the monitor would need.

    python -m benchmarks.progress_monitor MODEL SAMPLES [--every 3] [--feature-cache DIR] [--json out.json]

The estimates are read exactly where the agent reads them (`generate_text(..., return_progress=True)`: the last
prompt position), from teacher-forced batches as in training.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.accuracy_by_progress import BINS, progress_bin


def roc_auc(positive: Sequence[float], negative: Sequence[float]) -> float | None:
    """P(a positive's score > a negative's), ties counted half (the Mann-Whitney form); None when a side is empty."""
    if not positive or not negative:
        return None
    neg = np.sort(np.asarray(negative, dtype=float))
    wins = 0.0
    for p in positive:
        below = np.searchsorted(neg, p, side="left")
        ties = np.searchsorted(neg, p, side="right") - below
        wins += below + 0.5 * ties
    return float(wins / (len(positive) * len(neg)))


def summarise(truth: Sequence[float], estimate: Sequence[float], t: Sequence[int], steps: Sequence[int],
              stop: Sequence[bool]) -> dict[str, Any]:  # fmt: skip
    """The numbers of the module docstring from per-sample truth, estimate, step, route length and STOP flag."""
    y, e = np.asarray(truth, dtype=float), np.asarray(estimate, dtype=float)
    if y.size < 2:
        raise ValueError("summarise needs at least 2 samples")
    tt = np.asarray(t, dtype=float)
    slope, intercept = np.polyfit(tt, y, 1) if np.ptp(tt) > 0 else (0.0, float(y.mean()))
    corr = float(np.corrcoef(y, e)[0, 1]) if np.std(e) > 0 and np.std(y) > 0 else None
    bins: dict[str, dict[str, Any]] = {}
    keys = [progress_bin(int(a), int(b)) for a, b in zip(t, steps, strict=True)]
    for name in BINS:
        mask = np.asarray([k == name for k in keys])
        bins[name] = {
            "n": int(mask.sum()),
            "truth": float(y[mask].mean()) if mask.any() else None,
            "estimate": float(e[mask].mean()) if mask.any() else None,
            "mae": float(np.abs(e[mask] - y[mask]).mean()) if mask.any() else None,
        }
    at_stop = [float(v) for v, s in zip(e, stop, strict=True) if s]
    elsewhere = [float(v) for v, s in zip(e, stop, strict=True) if not s]
    return {
        "n": int(y.size),
        "mse": float(((e - y) ** 2).mean()),
        "mae": float(np.abs(e - y).mean()),
        "corr": corr,
        "mse_constant": float(y.var()),
        "mse_steps_line": float(((slope * tt + intercept - y) ** 2).mean()),
        "bins": bins,
        "stop": {
            "n": len(at_stop),
            "estimate_at_stop": float(np.mean(at_stop)) if at_stop else None,
            "estimate_elsewhere": float(np.mean(elsewhere)) if elsewhere else None,
            "auc": roc_auc(at_stop, elsewhere),
        },
    }


def score(
    model_path: Path,
    samples: Path,
    every: int = 1,
    feature_cache: Path | None = None,
    batch_size: int = 16,
    progress: Any = None,
) -> dict[str, Any]:
    """The head's estimates on every `every`-th expert navigation sample of `samples`, summarised."""
    import torch

    from benchmarks.sample_tools import check_every, open_samples
    from vlm.train.action_eval import prompt_end_states

    check_every(every)
    setup = open_samples(model_path, samples, feature_cache)
    head = setup.model.progress_head
    if head is None:
        raise ValueError(f"{model_path}: this model was trained without --progress-loss-weight (no progress_head/)")
    folder = setup.folder
    picks = setup.spread_picks(
        every,
        lambda i: folder.progress(i) is not None,
        f"{samples}: no expert navigation sample with a route length (collect's trajectories.jsonl)",
    )
    estimates: list[float] = []
    with torch.no_grad():
        for start in range(0, len(picks), batch_size):
            items = [setup.dataset[i] for i in picks[start : start + batch_size]]
            estimates += head(prompt_end_states(setup.model, items, setup.encoder)).tolist()
            if progress is not None:
                progress(len(estimates), len(picks))
    raw = [folder.samples[i] for i in picks]
    summary = summarise(
        [folder.progress(i) for i in picks],
        estimates,
        [int(s["t"]) for s in raw],
        [folder.expert_route_steps(i) for i in picks],
        [s.get("action") == "stop" for s in raw],
    )
    return {"model": str(model_path), "samples": str(samples), "every": every, **summary}


def format_report(result: dict[str, Any]) -> str:
    """A text report: the errors against the two baselines, then truth and estimate per bin, then the STOP split."""
    corr = "n/a" if result["corr"] is None else f"{result['corr']:.3f}"
    lines = [
        f"{result['n']} expert samples: MSE {result['mse']:.4f} (constant {result['mse_constant']:.4f}, "
        f"line in the step count {result['mse_steps_line']:.4f}), MAE {result['mae']:.3f}, correlation {corr}",
        f"{'decision':>9} {'n':>6} {'truth':>7} {'estimate':>9} {'MAE':>7}",
    ]
    for name in BINS:
        b = result["bins"][name]
        if b["n"]:
            lines.append(f"{name:>9} {b['n']:>6} {b['truth']:>7.3f} {b['estimate']:>9.3f} {b['mae']:>7.3f}")
    s = result["stop"]
    if s["n"] and s["auc"] is not None:
        lines.append(
            f"at the expert's STOP ({s['n']}): estimate {s['estimate_at_stop']:.3f} against "
            f"{s['estimate_elsewhere']:.3f} elsewhere; AUC {s['auc']:.3f}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from benchmarks.sample_tools import sample_tool_main

    return sample_tool_main(
        argv,
        "python -m benchmarks.progress_monitor",
        __doc__.split("\n")[0],
        "checkpoint folder of a model trained with --progress-loss-weight",
        "estimating",
        score,
        lambda r: f"{r['model']} on {r['samples']} (every {r['every']})\n{format_report(r)}",
    )


if __name__ == "__main__":
    sys.exit(main())
