"""`navila-agent train-tower`: fine-tune the top of the vision tower on scene facts (stage 0, before `train`).

    navila-agent collect --split r2r_train --output data/r2r_qa --scene-qa-every 2 --frame-codec npz
    navila-agent train-tower --samples data/r2r_qa --output runs/tower --epochs 6       # ~25 min on 2 CPU cores
    python -m benchmarks.probe_tower --samples data/r2r_qa --model runs/tower           # held-out houses
    navila-agent train --model runs/tower --data-mixture ... --output runs/nav          # the navigator on it

With `--tasks depth` the tower learns the depth of every cell of its 7 × 7 grid (collect with `--depth-size 28`; no
scene QA needed); with `--tasks objects` (and `object_colours`) it names the object every cell shows, or its colour
(collect with `--object-size 28`). The other labels are the answers of the folder's scene-QA samples: the room the agent is in ("pink
bedroom") and the nearest object in view ("red sofa", or none), read by `benchmarks.probe_tower.labels_of`. The last --holdout share
of the houses is never trained on and is scored after every epoch, by the same rule `probe_tower --holdout` uses.
Use --holdout 0 for a tower that is meant to ship. The result is the --model checkpoint with the fine-tuned tower,
written to --output. Rerunning the same command continues from the last finished epoch (vlm/train/tower_facts.py).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import typer

from benchmarks.cli.train import _fail

TASKS = ("room", "room_type", "room_colour", "object", "object_side", "clearance", "depth", "objects", "object_colours")
DENSE = ("depth", "objects", "object_colours")  # one label per token cell, from stored maps, not from scene QA


def fact_examples(data: Any, samples: Path, tasks: list[str], limit: int, holdout: float) -> list[Any]:
    """Up to `limit` examples, spread evenly over the folder's scene-QA samples whose answers give one of `tasks`
    and, for the dense tasks, over the distinct current frames of all samples with stored depth (`collect
    --depth-size`) or object maps (`--object-size`); those in the held-out houses (`probe_tower.held_out_houses`)
    are marked held out."""
    import numpy as np

    from benchmarks.probe_tower import held_out_houses, labels_of, scene_ids
    from vlm.train.tower_facts import FactExample

    scene_of = scene_ids(samples)
    rows: list[tuple[int, str, str, str]] = []
    seen_frames: set[tuple[Any, str, int]] = set()
    stored: dict[tuple[str, tuple[Any, str]], bool] = {}  # (task, trajectory file) -> has the task's maps
    dense = [t for t in tasks if t in DENSE]
    for i, s in enumerate(data.samples):
        source = data.frame_source(i)
        if dense and (*source, s["frames"][-1]) not in seen_frames:
            seen_frames.add((*source, s["frames"][-1]))
            for task in dense:
                if (task, source) not in stored:
                    stored[(task, source)] = data.has_depth(i) if task == "depth" else data.has_objects(i)
                if stored[(task, source)]:
                    rows.append((i, task, "", scene_of[(source[0].name, s["traj"])]))
        if s.get("task") != "scene_qa":
            continue
        labels = labels_of(s["qa_kind"], s["conversations"][1]["value"])
        for task in tasks:
            if task in labels:
                rows.append((i, task, labels[task], scene_of[(source[0].name, s["traj"])]))
    if "depth" in tasks and not any(r[1] == "depth" for r in rows):
        raise ValueError(f"--samples {samples}: no stored depth for --tasks depth; collect with --depth-size S")
    for task in dense:
        if task != "depth" and not any(r[1] == task for r in rows):
            raise ValueError(
                f"--samples {samples}: no stored object maps for --tasks {task}; collect with --object-size S"
            )
    named = [t for t in tasks if t not in DENSE]
    if named and not any(r[1] not in DENSE for r in rows):
        raise ValueError(
            f"--samples {samples}: no scene-QA answers for {', '.join(named)}; collect "
            "with `navila-agent collect --scene-qa-every K` (generated houses)"
        )
    picks = np.linspace(0, len(rows) - 1, num=min(limit, len(rows))).round().astype(int)
    rows = [rows[j] for j in sorted(set(picks.tolist()))]
    test = held_out_houses([r[3] for r in rows], holdout)
    return [FactExample(i, task, label, house in test) for i, task, label, house in rows]


def register(app: typer.Typer) -> None:
    """Add `train-tower` to the navila-agent app."""

    @app.command("train-tower")
    def train_tower_command(
        samples: Path = typer.Option(
            ..., help="Collected folder with scene-QA samples (navila-agent collect --scene-qa-every K)."
        ),
        output: Path = typer.Option(
            ..., help="Where the checkpoint with the fine-tuned tower goes; rerun to resume."
        ),
        model: Path = typer.Option(
            None, help="Checkpoint whose tower is fine-tuned (default: the shipped model)."
        ),
        init: str = typer.Option(
            None,
            help="Or start from a fresh model's tower: embedded (ImageNet EfficientNet-Lite0, whatever is shipped). "
            "Its LM and projector stay untrained: use the output with `train --init embedded --vision-tower`.",
        ),
        tasks: str = typer.Option(
            "room,object",
            help=f"Comma-separated facts the tower learns to name: {', '.join(TASKS)} (depth: per-cell depth, "
            "from collect --depth-size; objects / object_colours: the object or its colour per cell, from collect "
            "--object-size).",
        ),
        tune_blocks: int = typer.Option(5, help="The last N blocks of the tower (and its head) are trained."),
        epochs: int = typer.Option(6, help="Passes over the training examples."),
        limit: int = typer.Option(8000, help="Examples used at most, spread evenly over the folder."),
        holdout: float = typer.Option(
            0.2, help="Share of the houses never trained on, scored every epoch (0: train on all)."
        ),
        batch_size: int = typer.Option(32, help="Frames per optimizer step."),
        lr: float = typer.Option(1e-4, help="The tower's learning rate (AdamW)."),
        head_lr: float = typer.Option(1e-3, help="The task heads' learning rate."),
        seed: int = typer.Option(0, help="Seed of the heads' init and the example order."),
        keep: str = typer.Option(
            "last",
            help="Which epoch's tower the checkpoint gets: last, or best (highest mean held-out accuracy; "
            "needs --holdout > 0). Can change on a rerun of a finished run.",
        ),
        augment: str = typer.Option(
            "",
            help="Comma-separated perturbations the tower learns to ignore: pixel_noise (every value +-1 of 255), "
            "jpeg (q90). Each training frame is also shown perturbed, through the frozen blocks too, and its "
            "tokens are pulled toward the clean frame's. Empty: off. Not used by the shipped model; measured with "
            "both kinds (sessions 35-36, val_unseen, D0's recipe): at weight 1.0 the navigator keeps 94 % of its "
            "answers under the noise but walks far worse (SR 3.5 % against 14.5 %); at 0.1 it keeps 92 % and "
            "walks again (SR 10.5 %, 12.0 under the noise), still behind the unaugmented tower's (val_seen 8.0 "
            "against 15.3 %).",
        ),
        consistency_weight: float = typer.Option(
            0.1,
            help="Weight of that pull (the squared relative change of the tokens) beside the task loss. 0.1 "
            "(sessions 35-36): held-out depth delta1 0.935 against 0.921 at 1.0, and a navigator that walks.",
        ),
    ) -> None:
        """Stage 0: teach the vision tower the scene facts instructions name, before training the navigator."""
        import json

        from rich.console import Console

        console = Console(stderr=True)
        wanted = [t.strip() for t in tasks.split(",") if t.strip()]
        unknown = [t for t in wanted if t not in TASKS]
        if unknown or not wanted:
            raise _fail(
                f"--tasks: unknown {', '.join(unknown) or '(none given)'}; available: {', '.join(TASKS)}"
            )
        if not (samples / "manifest.json").is_file():
            raise _fail(f"--samples {samples}: not a collected folder (no manifest.json)")
        if not 0 <= holdout < 1:
            raise _fail(f"--holdout must be at least 0 and below 1, got {holdout}")
        if limit < 2:
            raise _fail(f"--limit must be at least 2, got {limit}")
        perturbations = tuple(k.strip() for k in augment.split(",") if k.strip())  # checked by train_tower_facts
        if init is not None and init != "embedded":
            raise _fail(f"--init: unknown '{init}'; available: embedded")
        if model is not None and init is not None:
            raise _fail("give --model PATH or --init embedded, not both")
        if model is None and init is None:
            from benchmarks.cli.evaluate import default_model_path

            model = default_model_path()
        if model is not None and not (model / "config.json").is_file():
            raise _fail(f"--model {model}: not a checkpoint folder (expected config.json)")

        import vlm
        from vlm.train.dataset import SampleEncoder, TrajectoryDataset
        from vlm.train.tower_facts import TowerFactsConfig, check_tune_blocks, train_tower_facts

        try:
            data = TrajectoryDataset(samples)
            examples = fact_examples(data, samples, wanted, limit, holdout)
            if model is not None:
                net = vlm.load(model, device="cpu", dtype="float32")
            else:  # only the tower matters: a placeholder tokenizer, an untrained LM and projector
                tokenizer = vlm.build_tokenizer(["the tower of a fresh embedded model"], vocab_size=300)
                net = vlm.build_model(vlm.embedded_config(tokenizer), tokenizer)
            check_tune_blocks(net, tune_blocks)
        except ValueError as e:
            raise _fail(str(e)) from None
        held = sum(e.held_out for e in examples)
        # --limit is shared by the tasks in proportion to their rows, so a task beside others gets fewer examples
        # than alone (session 19: depth 8000 alone, 5500 beside room and object): say how many each one got.
        counts = Counter(e.task for e in examples)
        per_task = ", ".join(f"{t} {counts[t]}" for t in wanted)
        console.print(
            f"{len(examples) - held} training and {held} held-out examples ({per_task}) from {samples}; "
            f"tuning the last {tune_blocks} blocks of {model or 'a fresh embedded model'}'s tower",
            highlight=False,
        )
        encoder = SampleEncoder(net.tokenizer, net.image_processor)
        config = TowerFactsConfig(
            output_dir=str(output),
            tune_blocks=tune_blocks,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            head_lr=head_lr,
            seed=seed,
            keep=keep,
            augment=perturbations,
            consistency_weight=consistency_weight,
        )
        output.mkdir(parents=True, exist_ok=True)
        try:
            result = train_tower_facts(net, encoder, data, examples, config, console)
        except ValueError as e:
            raise _fail(str(e)) from None
        except KeyboardInterrupt:
            console.print(
                f"interrupted: rerun the same command to resume from the last finished epoch in {output}"
            )
            raise typer.Exit(130) from None
        last = result.epochs[-1] if result.epochs else {}
        console.print(
            json.dumps({"epochs": len(result.epochs), "resumed_from": result.resumed_from,
                        "kept_epoch": result.kept_epoch,
                        "held_out_acc": last.get("held_out_acc", {}), "seconds": round(result.seconds, 1)}),
            highlight=False,
        )  # fmt: skip
        console.print(
            f"model saved to {output}; probe it with python -m benchmarks.probe_tower --samples {samples} "
            f"--model {output} --holdout {holdout or 0.2}",
            highlight=False,
        )
