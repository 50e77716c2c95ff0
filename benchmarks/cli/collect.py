"""`navila-agent collect`: drive an expert through a split and write a training dataset.

    navila-agent collect --split r2r_train --output ~/.cache/navila-agent/train_data/r2r_gen --rebalance
    navila-agent collect --split r2r_train --output data/r2r_real --data-root data          # real R2R-CE: gt replay
    navila-agent collect --split r2r_train --output data/r2r_dagger --policy runs/sft --beta 0.5   # DAgger
    navila-agent collect ... --shards 4 --shard-index 2      # one of 4 parallel collectors

Rerunning the same command resumes: finished trajectories are skipped. The format is described in
`benchmarks/collect.py`; `navila-agent train --data-mixture PATH` trains on the folder directly.
"""

from __future__ import annotations

from pathlib import Path

import typer


def _fail(message: str, code: int = 2) -> typer.Exit:
    from rich.console import Console

    Console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    return typer.Exit(code)


def register(app: typer.Typer) -> None:
    """Add `collect` to the navila-agent app."""

    @app.command("collect")
    def collect_command(
        split: str = typer.Option("r2r_train", help="Split to drive, e.g. r2r_train, rxr_train."),
        output: Path = typer.Option(..., help="Output folder (created; rerun the same command to resume)."),
        limit: int = typer.Option(None, help="Only the first N episodes of the split (after --every)."),
        every: int = typer.Option(
            1,
            help="Every k-th episode of the split (a subset spread over all houses; splits are house-major).",
        ),
        shards: int = typer.Option(
            1,
            help="Split the output into S shards (path p goes to shard p % S: the episodes of one path share its "
            "frames; under DAgger episode i goes to shard i % S).",
        ),
        shard_index: int = typer.Option(None, help="Collect only this shard (run S collectors in parallel)."),
        rebalance: bool = typer.Option(
            False, help="Duplicate stop (x4) and turn (x2) samples, as NaVILA does."
        ),
        rebalance_factors: str = typer.Option(
            None,
            help="Copies per answer kind when rebalancing, e.g. 'stop=2' (kinds not named keep the defaults "
            "stop=4, left=2, right=2, forward=1); implies --rebalance.",
        ),
        policy: Path = typer.Option(
            None,
            help="DAgger: checkpoint that acts when the expert does not (stopping on its progress monitor's own "
            "threshold, as the agent does, when it comes with one).",
        ),
        beta: float = typer.Option(1.0, help="DAgger: probability that the expert acts at each decision."),
        expert: str = typer.Option(
            "auto",
            help="auto (ground-truth replay when available, else the "
            "shortest-path follower), replay or follower.",
        ),
        data_root: Path = typer.Option(None, help="VLN-CE data folder (default: generated data)."),
        frame_size: int = typer.Option(
            None,
            help="Store frames resized to SxS (default: the env's 224). For smoke runs: the agent sees full-size "
            "frames, so a model trained on resized ones sees other images at evaluation (train warns).",
        ),
        frame_codec: str = typer.Option(
            "png",
            help="How frames are stored: png (lossless), jpeg (q95, for "
            "photoreal scenes) or npz (raw, zlib).",
        ),
        num_frames: int = typer.Option(8, help="Frames per sample (7 history + current)."),
        seed: int = typer.Option(0, help="Seed of DAgger's coin flips."),
        max_steps: int = typer.Option(500, help="Low-level step limit per trajectory."),
        scene_qa_every: int = typer.Option(
            0,
            help="Also write a scene question-answer sample (room, nearest object in view, free distance ahead; "
            "auxiliary grounding data, as NaVILA mixes in ScanQA) every K frames of each expert path; generated "
            "houses only. 0 = off.",
        ),
        depth_size: int = typer.Option(
            0,
            help="Also store each frame's depth averaged to SxS cells (depth/<traj>.npz): a dense target for "
            "`train-tower --tasks depth`. The model never sees it. 0 = off; 28 suits the 7x7-token tower.",
        ),
        object_size: int = typer.Option(
            0,
            help="Also store which object each frame shows in each of SxS cells (objects/<traj>.npz; from the "
            "depth and the house's semantics): a dense target for `train-tower --tasks objects,object_colours`. "
            "Generated houses, expert drives only. The model never sees it. 0 = off; 28 suits the 7x7-token tower.",
        ),
        device: str = typer.Option("cpu", help="Device of the DAgger policy model: cpu, cuda, auto."),
    ) -> None:
        """Record expert trajectories as LLaVA-style training samples (frames stored once per trajectory)."""
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        from benchmarks.collect import CollectConfig, collect_split, parse_rebalance_factors

        console = Console(stderr=True)
        if policy is not None and not (policy / "config.json").is_file():
            raise _fail(
                f"--policy {policy}: not a checkpoint folder (expected config.json, llm/, vision_tower/, "
                "mm_projector/)"
            )
        if policy is not None and beta >= 1.0:
            raise _fail("--policy is only used with --beta < 1 (the share of decisions the expert takes)")
        try:
            factors = parse_rebalance_factors(rebalance_factors) if rebalance_factors is not None else None
            config = CollectConfig(
                split=split,
                output=str(output),
                limit=limit,
                every=every,
                shards=shards,
                shard_index=shard_index,
                rebalance=rebalance or factors is not None,
                rebalance_factors=factors,
                policy=str(policy.resolve()) if policy else None,
                beta=beta,
                data_root=str(data_root.resolve()) if data_root else None,
                num_frames=num_frames,
                frame_size=frame_size,
                frame_codec=frame_codec,
                seed=seed,
                expert=expert,
                max_steps=max_steps,
                scene_qa_every=scene_qa_every,
                depth_size=depth_size,
                object_size=object_size,
            )
            from envs.datasets.splits import parse_split

            parse_split(split)
        except ValueError as e:
            raise _fail(str(e)) from None
        if device == "auto":
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        progress = Progress(
            TextColumn(f"collect {split}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
        )
        task = progress.add_task("collect", total=None)
        try:
            with progress:
                manifest = collect_split(
                    config,
                    lambda done, total: progress.update(task, completed=done, total=total),
                    device=device,
                )
        except (ValueError, FileNotFoundError) as e:
            raise _fail(str(e)) from None
        except KeyboardInterrupt:
            console.print(f"interrupted: rerun the same command to resume ({output})")
            raise typer.Exit(130) from None
        acts = ", ".join(f"{k} {v}" for k, v in manifest["actions"].items())
        if manifest.get("scene_qa"):
            acts += f", scene QA {manifest['scene_qa']}"
        console.print(
            f"{manifest['trajectories']} trajectories, {manifest['samples']} samples ({acts}), "
            f"{manifest['frames']} frames -> {output}",
            highlight=False,
        )
        if manifest.get("complete") is False:
            console.print(
                f"incomplete: {manifest['trajectories']} of the {manifest['episodes_selected']} trajectories are on "
                "disk (other shards still running or not run yet); `train` refuses the folder until the rest is "
                "collected",
                highlight=False,
            )
