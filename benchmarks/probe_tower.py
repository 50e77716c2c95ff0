"""What does a vision tower see? Linear probes on its features, scored in houses the probe never saw.

The navigator can only follow "stop next to the red sofa in the pink bedroom" if its vision tower's features say
which room it is in and what is in view, in *any* house. This tool measures that directly, without training the
LM: it encodes the current frame of every scene-QA sample of a collected folder (`navila-agent collect
--scene-qa-every K`) with a checkpoint's vision tower, pools the features (mean and max over the tower's tokens),
and fits a softmax probe per target on some houses and scores it on the others. The same probe on 8 × 8
thumbnails of the frames is the baseline: a tower that decodes less than the thumbnail has discarded what the
instructions talk about.

Targets, read from the scene-QA answers (`benchmarks/scene_qa.py`):
- `room` the room's name ("the pink bedroom", "the hallway"), `room_type` without its colour, and `room_colour`
  (rooms named by colour only): which room is this?
- `object` the nearest object in view ("the red sofa", or none) and `object_side` (left / straight ahead / right);
- `clearance` the free distance ahead, in the answer's half-metre bands.

`--pool grid` keeps where things are: the tower's token grid (7 × 7 for EfficientNet-Lite0) averaged into 3 × 3
cells, concatenated (9·C numbers). Mean and max pooling throw the layout away, and free space ahead is a
question of where the floor is in the frame; the navigator's projector keeps the layout (2 × 2 downsampling).

The probe's weight decay is chosen on a slice of the training houses, then the probe is refitted on all of them
and scored once on the held-out houses; the majority class of the training houses is the baseline. Labels that
occur only in held-out houses count as errors: the probe cannot name what it never saw, and neither can the agent.

    python -m benchmarks.probe_tower --samples /data/r2r_qa [--model models/navila-tiny] [--limit 3000]

Session 11 (`docs/training_log.md`) measured the shipped EfficientNet-Lite0 tower this way: a room's name in a new
house is decoded little better than the majority guess, although the training houses are fitted almost perfectly.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.store import atomic_write_json
from envs.scenes.generator import WALL_PAINTS

TARGETS = ("room", "room_type", "room_colour", "object", "object_side", "clearance")
COLOURS = frozenset(WALL_PAINTS)  # the paint names that tell same-type rooms apart ("the pink bedroom")
WEIGHT_DECAYS = (1e-3, 1e-1, 1.0, 5.0)
THUMBNAIL = 8  # the pixel baseline's side: 8 × 8 RGB = 192 numbers
POOLS = ("meanmax", "grid")
GRID = 3  # --pool grid: the token grid averaged into GRID × GRID cells


def labels_of(qa_kind: str, answer: str) -> dict[str, str]:
    """The probe targets that one scene-QA answer gives (none for answers that name nothing)."""
    if qa_kind == "room":
        m = re.fullmatch(r"I am in (?:the )?(.+)\.", answer.strip())
        if not m:  # "I am between two rooms."
            return {}
        name = m.group(1)
        words = name.split()
        out = {"room": name, "room_type": " ".join(w for w in words if w not in COLOURS)}
        if words[0] in COLOURS:
            out["room_colour"] = words[0]
        return out
    if qa_kind == "object":
        if answer.startswith("No object"):
            return {"object": "none", "object_side": "none"}
        name, _, where = answer.partition(",")
        side = "ahead" if "straight ahead" in where else ("left" if "left" in where else "right")
        return {"object": re.sub(r"^the ", "", name.strip().lower()), "object_side": side}
    if qa_kind == "clearance":
        return {"clearance": answer.strip().rstrip(".")}
    return {}


def scene_ids(samples: Path) -> dict[tuple[str, str], str]:
    """(shard folder name, trajectory id) → scene id (the house) of every finished trajectory of a collected folder."""
    from benchmarks.collect import TRAJECTORIES_FILE, read_jsonl

    scene_of: dict[tuple[str, str], str] = {}
    for shard in sorted(Path(samples).glob("shard-*")):
        for row in read_jsonl(shard / TRAJECTORIES_FILE):
            scene_of[(shard.name, row["traj"])] = row["scene_id"]
    return scene_of


def held_out_houses(houses: Sequence[str], holdout: float) -> set[str]:
    """The last `holdout` share (at least one) of the sorted house names: the houses a probe, or the tower's
    fine-tuning (`navila-agent train-tower`), never trains on. The same rule in both, so a tower fine-tuned with
    --holdout H is probed with --holdout H on houses it never saw."""
    names = sorted(set(houses))
    if holdout <= 0:
        return set()
    return set(names[-max(1, round(len(names) * holdout)) :])


def fit_softmax_probe(
    x: torch.Tensor, y: torch.Tensor, classes: int, weight_decay: float, steps: int = 300, seed: int = 0
) -> torch.nn.Linear:
    """Full-batch AdamW softmax regression of labels y [N] on features x [N, D] (standardised by the caller)."""
    torch.manual_seed(seed)
    probe = torch.nn.Linear(x.shape[1], classes)
    opt = torch.optim.AdamW(probe.parameters(), lr=1e-2, weight_decay=weight_decay)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(probe(x), y).backward()
        opt.step()
    return probe


def probe_target(
    features: np.ndarray, labels: Sequence[str], houses: Sequence[str], holdout: float, steps: int = 300
) -> dict[str, Any]:
    """Train / held-out-house accuracy of a linear probe of `labels` on `features` [N, D], and the majority baseline.

    The last `holdout` share of the sorted house names is held out; the weight decay is picked on the last
    quarter of the training houses, then the probe is refitted on all training houses."""
    names = sorted(set(houses))
    test_houses = held_out_houses(houses, max(holdout, 1e-9))
    n_test = len(test_houses)
    if len(names) - n_test < 2:
        raise ValueError(f"need at least 3 houses to probe (2 to fit, 1 to test), got {len(names)}")
    train_names = names[:-n_test]
    val_houses = set(train_names[-max(1, len(train_names) // 4) :])
    house = np.array(houses)
    test = np.isin(house, list(test_houses))
    train = ~test
    val = np.isin(house, list(val_houses))
    classes = sorted(set(np.array(labels)[train]))
    if len(classes) < 2:
        raise ValueError(f"only one class ({classes}) in the training houses: nothing to probe")
    index = {c: i for i, c in enumerate(classes)}
    y = torch.tensor([index.get(label, -1) for label in labels])  # -1: a label no training house has
    x = torch.tensor(features, dtype=torch.float32)
    x = (x - x[train].mean(0)) / (x[train].std(0) + 1e-6)

    def accuracy(probe: torch.nn.Linear, mask: np.ndarray) -> float:
        with torch.no_grad():
            return float((probe(x[mask]).argmax(1) == y[mask]).float().mean())

    fit = train & ~val
    scores = {
        wd: accuracy(fit_softmax_probe(x[fit], y[fit], len(classes), wd, steps), val) for wd in WEIGHT_DECAYS
    }
    best = max(WEIGHT_DECAYS, key=lambda wd: (scores[wd], wd))
    probe = fit_softmax_probe(x[train], y[train], len(classes), best, steps)
    majority = Counter(np.array(labels)[train].tolist()).most_common(1)[0][0]
    return {
        "classes": len(classes),
        "train_samples": int(train.sum()),
        "test_samples": int(test.sum()),
        "train_houses": len(names) - n_test,
        "test_houses": n_test,
        "train_acc": accuracy(probe, train),
        "test_acc": accuracy(probe, test),
        "majority_acc": float(np.mean(np.array(labels)[test] == majority)),
        "weight_decay": best,
    }


def thumbnail(frame: np.ndarray, size: int = THUMBNAIL) -> np.ndarray:
    """The pixel baseline's features: the frame shrunk to size × size by area averaging, RGB in [0, 1], flattened."""
    import cv2

    small = cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)  # [size, size, 3] uint8
    return small.reshape(-1).astype(np.float32) / 255.0


def pool_tokens(tokens: np.ndarray, pool: str = "meanmax") -> np.ndarray:
    """One frame's tower tokens [T, C] as a vector: `meanmax` [2C] (mean and max over the tokens), or `grid`
    [GRID²·C] (a square token grid, row-major as the towers emit it, averaged into GRID × GRID cells)."""
    if pool == "meanmax":
        return np.concatenate([tokens.mean(0), tokens.max(0)])
    if pool != "grid":
        raise ValueError(f"pool must be one of {', '.join(POOLS)}, got '{pool}'")
    side = round(len(tokens) ** 0.5)
    if side * side != len(tokens):
        raise ValueError(f"--pool grid needs a square token grid, this tower gives {len(tokens)} tokens")
    grid = torch.from_numpy(np.ascontiguousarray(tokens.T.reshape(1, -1, side, side), dtype=np.float32))
    cells = torch.nn.functional.adaptive_avg_pool2d(grid, GRID)  # [1, C, GRID, GRID]
    return cells[0].permute(1, 2, 0).reshape(-1).numpy()  # cell-major: cell (0, 0)'s C channels first


def frame_features(
    model_path: Path, samples: Path, limit: int, pool: str = "meanmax"
) -> tuple[dict[str, np.ndarray], list[dict[str, str]], list[str]]:
    """Features of the current frame of up to `limit` scene-QA samples (an even spread): `tower` (the checkpoint's
    tower tokens, pooled by `pool_tokens`) and `pixels` (a thumbnail [N, 3·THUMBNAIL²]); their targets; the
    house (scene id) of each."""
    import vlm
    from vlm.train.dataset import SampleEncoder, TrajectoryDataset
    from vlm.train.frame_features import encode_frames

    data = TrajectoryDataset(samples)
    qa = [i for i, s in enumerate(data.samples) if s.get("task") == "scene_qa"]
    if not qa:
        raise ValueError(
            f"{samples}: no scene-QA samples; collect with `navila-agent collect --scene-qa-every K` (generated houses)"
        )
    picks = [qa[int(j)] for j in np.linspace(0, len(qa) - 1, num=min(limit, len(qa))).round()]
    scene_of = scene_ids(samples)
    model = vlm.load(model_path, device="cpu", dtype="float32")
    encoder = SampleEncoder(model.tokenizer, model.image_processor)
    tower: dict[int, np.ndarray] = {}
    pixels: dict[int, np.ndarray] = {}
    from rich.progress import track

    files = len({data.frame_source(i) for i in picks})
    for positions, frames in track(data.current_frames(picks), total=files, description="tower features"):
        out = encode_frames(model, encoder, frames).astype(np.float32)  # [n, tokens, C]
        for position, frame, f in zip(positions, frames, out, strict=True):
            tower[picks[position]] = pool_tokens(f, pool)
            pixels[picks[position]] = thumbnail(frame)
    targets, houses = [], []
    for i in picks:
        s = data.samples[i]
        targets.append(labels_of(s["qa_kind"], s["conversations"][1]["value"]))
        houses.append(scene_of[(data.frame_source(i)[0].name, s["traj"])])
    features = {"tower": np.stack([tower[i] for i in picks]), "pixels": np.stack([pixels[i] for i in picks])}
    return features, targets, houses


def probe_tower(
    model_path: Path, samples: Path, limit: int = 3000, holdout: float = 0.2, pool: str = "meanmax"
) -> dict[str, Any]:
    """Every target's probe result (`probe_target`) on the checkpoint's tower features, with `pixels` (the same
    probe on thumbnails: what the frame itself gives away); targets with too few classes or samples are reported
    as skipped, with the reason."""
    features, targets, houses = frame_features(model_path, samples, limit, pool)
    results: dict[str, Any] = {}
    for target in TARGETS:
        rows = [i for i, t in enumerate(targets) if target in t]
        try:
            if len(rows) < 10:
                raise ValueError(f"{len(rows)} samples")
            labels, where = [targets[i][target] for i in rows], [houses[i] for i in rows]
            results[target] = probe_target(features["tower"][rows], labels, where, holdout)
            results[target]["pixels"] = probe_target(features["pixels"][rows], labels, where, holdout)
        except ValueError as err:
            results[target] = {"skipped": str(err)}
    return results


def probe_table(results: dict[str, Any]) -> str:
    """A text table: one line per target, the tower's held-out accuracy beside the pixel baseline's and the
    majority guess."""
    head = (
        f"{'target':12s} {'classes':>7s} {'train':>6s} {'held-out':>8s} {'pixels':>7s} {'majority':>8s} "
        f"{'samples':>13s}"
    )
    lines = [head, "-" * len(head)]
    for target, r in results.items():
        if "skipped" in r:
            lines.append(f"{target:12s} skipped: {r['skipped']}")
            continue
        pixels = r.get("pixels", {}).get("test_acc", float("nan"))
        lines.append(
            f"{target:12s} {r['classes']:7d} {r['train_acc']:6.3f} {r['test_acc']:8.3f} {pixels:7.3f} "
            f"{r['majority_acc']:8.3f} {r['train_samples']:6d}/{r['test_samples']:<6d}"
        )
    lines.append(
        "(linear probes on pooled tower features; held-out = houses the probe never saw; pixels = the same probe "
        f"on {THUMBNAIL}x{THUMBNAIL} thumbnails)"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.probe_tower", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--samples", type=Path, required=True, help="Collected with --scene-qa-every K.")
    parser.add_argument(
        "--model", type=Path, default=None, help="Checkpoint whose tower is probed (default: shipped)."
    )
    parser.add_argument("--limit", type=int, default=3000, help="Scene-QA samples used, spread evenly.")
    parser.add_argument(
        "--holdout", type=float, default=0.2, help="Share of the houses held out for scoring."
    )
    parser.add_argument(
        "--pool",
        choices=POOLS,
        default="meanmax",
        help=f"meanmax: mean and max over the tokens; grid: the token grid averaged into {GRID}x{GRID} cells.",
    )
    parser.add_argument("--json", type=Path, default=None, help="Also write the results here.")
    args = parser.parse_args(argv)
    if not args.samples.is_dir():
        parser.error(f"--samples: {args.samples} is not a folder")
    if args.limit < 10:
        parser.error("--limit must be at least 10")
    if not 0 < args.holdout < 1:
        parser.error(f"--holdout must be between 0 and 1, got {args.holdout}")
    if args.model is None:
        from benchmarks.cli.evaluate import default_model_path

        args.model = default_model_path()
    try:
        results = probe_tower(args.model, args.samples, args.limit, args.holdout, args.pool)
    except ValueError as err:
        parser.error(str(err))
    print(f"model {args.model}, samples {args.samples}, pool {args.pool}")
    print(probe_table(results))
    if args.json is not None:
        atomic_write_json(
            args.json,
            {"model": str(args.model), "samples": str(args.samples), "pool": args.pool, "results": results},
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
