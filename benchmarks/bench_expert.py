"""What the expert's labels look like: NaVILA's merged decisions of generated expert paths under follower settings.

The expert (envs/follower.py) labels all training data and the generated ground truth, so its habits become the
model's: 15° corrections alternating with single 25 cm steps are labels no learner can predict from the frames.
This prints, for the same sampled paths (the generator's `sample_path` in the first houses of r2r_train), per
setting: decisions per path, the share of each merged label, "turn, 25 cm, opposite turn" patterns per path,
collisions per path and the success of the path (the expert ends within its stop distance):

    python -m benchmarks.bench_expert                       # habitat's rule, lateral tolerance, the experts' settings
    python -m benchmarks.bench_expert --houses 3 --paths 25 --json out.json

The settings compared: habitat's rule (turn when more than half a turn step off), + the 0.3 m lateral tolerance
(generated data v2), + the 4° turn hysteresis (v3, `expert_follower`).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from benchmarks.store import atomic_write_json
from envs.follower import EXPERT_LATERAL_TOLERANCE_M, EXPERT_TURN_HYSTERESIS_DEG, count_zigzags

SETTINGS: dict[str, dict[str, float]] = {
    "habitat rule": {"expert_lateral_tolerance": 0.0, "expert_turn_hysteresis": 0.0},
    "+ lateral tolerance (v2)": {"expert_lateral_tolerance": EXPERT_LATERAL_TOLERANCE_M, "expert_turn_hysteresis": 0.0},
    "+ turn hysteresis (v3, expert)": {
        "expert_lateral_tolerance": EXPERT_LATERAL_TOLERANCE_M,
        "expert_turn_hysteresis": EXPERT_TURN_HYSTERESIS_DEG,
    },
}
LABELS = ("forward 25", "forward 50", "forward 75", "turn 15", "turn 30", "turn 45", "stop")


def label_stats(action_lists: list[list[int]]) -> dict[str, Any]:
    """Decisions per path, share of each merged label and zig-zags per path over the given low-level sequences."""
    from agent.actions import merge_low_level

    counts: Counter[str] = Counter()
    decisions = zig = 0
    for actions in action_lists:
        merged = merge_low_level(actions)
        decisions += len(merged)
        zig += count_zigzags(actions)
        for m in merged:
            kind = "turn" if m.kind in ("left", "right") else m.kind
            counts["stop" if kind == "stop" else f"{kind} {m.amount}"] += 1
    n = max(len(action_lists), 1)
    return {
        "paths": len(action_lists),
        "decisions_per_path": decisions / n,
        "zigzags_per_path": zig / n,
        "label_share": {k: counts[k] / max(decisions, 1) for k in LABELS},
    }


def run(houses: int, paths: int, seed: int) -> dict[str, dict[str, Any]]:
    """Sample `paths` paths in each of the first `houses` r2r_train houses once per setting (same rng seeds)."""
    from envs.datasets.generate import PRESETS, _points_of_interest, ensure_house, sample_path

    built = [ensure_house(h) for h in range(houses)]
    out: dict[str, dict[str, Any]] = {}
    for name, overrides in SETTINGS.items():
        cfg = dataclasses.replace(PRESETS["r2r_train"], **overrides)
        action_lists: list[list[int]] = []
        collisions = 0
        for h, house in enumerate(built):
            candidates = _points_of_interest(house)
            rng = np.random.default_rng(seed + h)
            attempts = 0
            got = 0
            while got < paths and attempts < paths * cfg.max_attempts:
                attempts += 1
                p = sample_path(house, cfg, rng, candidates)
                if p is None:
                    continue
                got += 1
                action_lists.append(p.actions)
                collisions += p.collisions
        stats = label_stats(action_lists)
        stats["collisions_per_path"] = collisions / max(len(action_lists), 1)
        out[name] = stats
    return out


def main(
    houses: Annotated[int, typer.Option(help="First N houses of r2r_train (built into the cache if missing).")] = 3,
    paths: Annotated[int, typer.Option(help="Sampled expert paths per house (the same for every setting).")] = 25,
    seed: Annotated[int, typer.Option(help="Seed of the path sampler (house h uses seed + h).")] = 0,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the numbers to this file.")] = None,
) -> None:
    """Print the expert's label statistics under each follower setting."""
    from rich.console import Console
    from rich.table import Table

    results = run(houses, paths, seed)
    table = Table(title=f"expert labels, {houses} houses x {paths} paths (NaVILA's merged decisions)")
    for col in ("setting", "decisions/path", "zig-zags/path", "collisions/path", *LABELS):
        table.add_column(col, justify="right" if col != "setting" else "left")
    for name, r in results.items():
        table.add_row(
            name,
            f"{r['decisions_per_path']:.1f}",
            f"{r['zigzags_per_path']:.2f}",
            f"{r['collisions_per_path']:.2f}",
            *(f"{100 * r['label_share'][k]:.1f}%" for k in LABELS),
        )
    Console(width=170).print(table)
    if json_out is not None:
        atomic_write_json(json_out, results)


if __name__ == "__main__":
    typer.run(main)
