"""`navila-agent run` and `navila-agent eval`: run an agent on VLN-CE episodes and write a run folder.

    navila-agent run --episode r2r_val_unseen:17 --record            # the shipped model on one episode
    navila-agent run --episode r2r_val_unseen --limit 10 --agent oracle
    navila-agent eval --agent navila --split r2r_val_unseen --model ckpt/navila-8b --gpus 0,1,2,3 --output runs/x
    navila-agent eval --agent oracle --split r2r_val_unseen --workers 2 --output runs/oracle   # again: resumes
    navila-agent eval --merge-only --output runs/x                   # summarise the shards of a multi-node run

The run folder format is docs/rollout_format.md. Rerunning the same command resumes (recorded episodes are
skipped); a folder holding results of another configuration is refused (use another --output, or --overwrite).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import typer

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED_MODEL_DIR = "models/navila-tiny"
# What a VILA-layout checkpoint folder holds (NAVILA_REFERENCE.md); config.json is the one we insist on.
CHECKPOINT_MARKER = "config.json"


def default_model_path() -> Path:
    """The shipped model: `vlm.default_model_path()` when the vlm package provides it, else models/navila-tiny/
    in the repository root."""
    try:
        from vlm import default_model_path as vlm_default  # type: ignore[attr-defined]
    except ImportError:
        return REPO_ROOT / SHIPPED_MODEL_DIR
    return Path(vlm_default())


def resolve_model(agent: str, model: Path | None) -> str | None:
    """The checkpoint folder the navila agent will load (None for baselines); ValueError naming --model when the
    path is missing or is not a checkpoint, so the run stops before any worker starts."""
    if agent != "navila":
        return None  # baselines load no model (and a stray --model must not change the run's fingerprint)
    if model is None:
        path = default_model_path()
        if not (path / CHECKPOINT_MARKER).is_file():
            raise ValueError(
                f"no shipped model at {path} (the default for --agent navila); pass --model PATH to a VILA-layout "
                "checkpoint folder, or run a baseline with --agent oracle|random|forward|replay"
            )
        return str(path)
    if not model.exists():
        raise ValueError(f"--model {model}: no such file or folder")
    if not model.is_dir() or not (model / CHECKPOINT_MARKER).is_file():
        raise ValueError(
            f"--model {model}: not a checkpoint folder (expected {CHECKPOINT_MARKER} with llm/, vision_tower/ and "
            "mm_projector/ beside it: the VILA / NaVILA layout)"
        )
    from vlm.checkpoint import check_checkpoint_folder  # the full layout check, before any worker starts

    try:
        check_checkpoint_folder(model)
    except (FileNotFoundError, ValueError) as e:
        raise ValueError(f"--model {model}: {e}") from None
    return str(model.resolve())


def parse_episode_spec(spec: str) -> tuple[str, tuple[str, ...]]:
    """'r2r_val_unseen' -> ('r2r_val_unseen', ()); 'r2r_val_unseen:17' or ':17,18' -> (split, ('17', '18'))."""
    split, _, ids = spec.partition(":")
    if not split:
        raise ValueError(f"--episode {spec!r}: expected SPLIT or SPLIT:EPISODE_ID, e.g. r2r_val_unseen:17")
    return split, tuple(i.strip() for i in ids.split(",") if i.strip())


def _check_split(split: str, flag: str) -> None:
    """Fail fast with the split registry's message (it lists the known names) for a misspelt split."""
    from envs.datasets.splits import parse_split

    try:
        parse_split(split)
    except ValueError as e:
        raise ValueError(f"{flag}: {e}") from None


def _dist_from_flags(rank: int | None, world_size: int | None) -> Any:
    """DistInfo from --rank / --world-size (both or neither); None lets the runner read torchrun / SLURM."""
    from benchmarks.parallel import DistInfo

    if rank is None and world_size is None:
        return None
    if rank is None or world_size is None:
        raise ValueError("--rank and --world-size go together")
    try:
        return DistInfo(rank, world_size, "flags")
    except ValueError as e:
        raise ValueError(f"--rank / --world-size: {e}") from None


def _fail(message: str, code: int = 2) -> typer.Exit:
    from rich.console import Console

    Console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    return typer.Exit(code)


def _execute(config_kwargs: dict[str, Any], per_episode_lines: bool, dist: Any = None) -> None:
    """Build the EvalConfig, run it with progress display, print the final table; exit codes: 0 done, 1 some
    episodes crashed or a worker died, 2 bad input, 130 interrupted."""
    from rich.console import Console

    from benchmarks import runner
    from benchmarks.callbacks import EpisodeLineListener, ProgressListener, TimingListener
    from benchmarks.metrics import format_table
    from benchmarks.store import RunFolderError

    console = Console(stderr=True)
    try:
        config = runner.EvalConfig(**config_kwargs)
    except ValueError as e:
        raise _fail(str(e)) from None
    console.print(f"run folder: [bold]{config.output}[/]", highlight=False)
    timing = TimingListener()
    progress = ProgressListener(console=console, timing=timing)
    listeners: list[Any] = [timing, progress]
    if per_episode_lines:
        listeners.append(
            EpisodeLineListener(print_fn=lambda s: console.print(s, highlight=False, markup=False))
        )
    try:
        outcome = runner.evaluate(config, listeners=listeners, dist=dist)
    except KeyboardInterrupt:
        progress.stop()
        console.print(f"interrupted: rerun the same command to resume ({config.output})")
        raise typer.Exit(130) from None
    except (ValueError, RunFolderError, FileNotFoundError) as e:
        progress.stop()
        raise _fail(str(e)) from None
    _report(console, outcome, timing, format_table, config)


def _report(console: Any, outcome: Any, timing: Any, format_table: Any, config: Any) -> None:
    for failure in outcome.failures:
        console.print(f"[red]worker {failure.index} failed:[/]\n{failure.message}", highlight=False)
    summary = outcome.summary
    if summary is None:
        console.print(
            f"this rank is done ({outcome.new} new episodes); the last rank to finish writes the summary "
            f"(or: navila-agent eval --merge-only --output {outcome.run_dir})"
        )
        return
    console.print(format_table(summary, title=f"{config.split} - {config.agent}"))
    if timing.steps:
        console.print(timing.describe(), highlight=False)
    console.print(
        f"{outcome.new} episodes run, {outcome.skipped} already recorded; {summary['errors']} errors, "
        f"{summary['parse_failures']} parse failures; results in {outcome.run_dir}",
        highlight=False,
    )
    if not summary["complete"]:
        console.print(f"incomplete: {summary['recorded']} of {summary['selected']} recorded; rerun to resume")
    if outcome.failures or summary["errors"] or not summary["complete"]:
        if summary["errors"]:
            console.print(
                "crashed episodes are in results.jsonl with their traceback; --retry-errors runs them again"
            )
        raise typer.Exit(1)


def _merge_only(output: Path) -> None:
    from rich.console import Console

    from benchmarks import runner
    from benchmarks.metrics import format_table
    from benchmarks.store import RunFolderError

    try:
        summary = runner.merge_run(output)
    except (ValueError, RunFolderError, FileNotFoundError) as e:
        raise _fail(str(e)) from None
    console = Console(stderr=True)
    console.print(format_table(summary, title=str(output)))
    console.print(f"{summary['recorded']} of {summary['selected']} episodes recorded; summary in {output}")
    if not summary["complete"]:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add `run` and `eval` to the navila-agent app."""

    @app.command("eval")
    def eval_command(
        agent: str = typer.Option("navila", help="Agent: navila, random, forward, oracle or replay."),
        split: str = typer.Option("r2r_val_unseen", help="Split name, e.g. r2r_val_unseen, rxr_val_unseen."),
        model: Path = typer.Option(
            None, help="VILA-layout checkpoint folder (navila agent; default: shipped)."
        ),
        episodes: str = typer.Option(
            "", help="Comma-separated episode ids to run (default: the whole split)."
        ),
        limit: int = typer.Option(None, help="Run only the first N episodes (sorted by uid)."),
        workers: int = typer.Option(1, help="Worker processes per rank (each with its own envs and model)."),
        gpus: str = typer.Option(
            "", help="GPU indices, e.g. 0,1,2,3: one worker per GPU unless --workers says more."
        ),
        envs_per_worker: int = typer.Option(
            1, help="K envs per worker stepped together (batched model calls)."
        ),
        output: Path = typer.Option(None, help="Run folder (default runs/<split>-<agent>); rerun to resume."),
        data_root: Path = typer.Option(None, help="VLN-CE data folder (default: generated data)."),
        seed: int = typer.Option(0, help="Run seed (each episode's seed derives from it and its uid)."),
        record: bool = typer.Option(
            False, help="Write rollout records (frames, poses, model text) per episode."
        ),
        video: bool = typer.Option(False, help="Write an MP4 per episode."),
        dtw: str = typer.Option("fastdtw", help="nDTW's DTW: fastdtw (as VLN-CE) or exact."),
        backend: str = typer.Option("embedded", help="Simulator backend: embedded or habitat."),
        overwrite: bool = typer.Option(False, help="Delete the results already in --output first."),
        retry_errors: bool = typer.Option(False, help="Run again the episodes recorded as errors."),
        max_steps: int = typer.Option(
            None, help="Step limit per episode (default: the env's, 500 as VLN-CE)."
        ),
        monitor_stop: float = typer.Option(
            None,
            help="Beyond NaVILA: STOP as soon as the model's progress monitor estimates at least this share of the "
            "route done (a model trained with --progress-loss-weight). Default: the threshold the monitor comes "
            "with (progress_head/config.json stop_threshold; the shipped model's), else never; 0 = never.",
        ),
        monitor_patience: int = typer.Option(
            None,
            help="Beyond NaVILA: with the monitor's stop rule, STOP only once this many consecutive decisions reach "
            "the threshold (default 1: the first one that does).",
        ),
        perturb: str = typer.Option(
            None,
            help="Beyond NaVILA: every camera frame through a change nobody can see, to measure how much the "
            "results depend on the renderer: jpeg (q90, as a compressed camera stream) or pixel_noise (every value "
            "+-1 of 255). Part of the run's fingerprint.",
        ),
        rank: int = typer.Option(None, help="This rank (default: RANK or SLURM_PROCID; needs --world-size)."),
        world_size: int = typer.Option(None, help="Number of ranks (default: WORLD_SIZE or SLURM_NTASKS)."),
        merge_only: bool = typer.Option(
            False, help="Only merge the shards in --output and write the summary."
        ),
    ) -> None:
        """Evaluate an agent on a split: sharded over ranks (torchrun / SLURM), workers and GPUs; resumable."""
        from benchmarks.parallel import parse_gpus

        if merge_only:
            if output is None:
                raise _fail("--merge-only needs --output RUN_DIR")
            _merge_only(output)
            return
        try:
            _check_split(split, "--split")
            gpu_ids = parse_gpus(gpus)
            model_path = resolve_model(agent, model)
            dist = _dist_from_flags(rank, world_size)
            if monitor_stop and model_path is not None:
                from vlm.progress_head import has_progress_head

                if not has_progress_head(Path(model_path)):
                    raise ValueError(
                        f"--monitor-stop needs a model with a progress monitor: {model_path} has no "
                        "progress_head/ (train it with --progress-loss-weight)"
                    )
        except ValueError as e:
            raise _fail(str(e)) from None
        n_workers = max(workers, len(gpu_ids)) if gpu_ids else workers
        _execute(
            {
                "split": split,
                "output": output or Path("runs") / f"{split}-{agent}",
                "agent": agent,
                "model": model_path,
                "episode_ids": tuple(e.strip() for e in episodes.split(",") if e.strip()),
                "limit": limit,
                "workers": n_workers,
                "gpus": gpu_ids,
                "envs_per_worker": envs_per_worker,
                "data_root": str(data_root) if data_root else None,
                "seed": seed,
                "record": record,
                "video": video,
                "dtw": dtw,
                "backend": backend,
                "overwrite": overwrite,
                "retry_errors": retry_errors,
                "max_steps": max_steps,
                "monitor_stop": monitor_stop,
                "monitor_patience": monitor_patience,
                "perturb": perturb,
            },
            per_episode_lines=False,
            dist=dist,
        )

    @app.command("run")
    def run_command(
        episode: str = typer.Option(
            "r2r_val_unseen", help="SPLIT or SPLIT:EPISODE_ID, e.g. r2r_val_unseen:17."
        ),
        agent: str = typer.Option(
            "navila", help="Agent: navila (the shipped model by default), or a baseline."
        ),
        model: Path = typer.Option(None, help="VILA-layout checkpoint folder (default: the shipped model)."),
        record: bool = typer.Option(
            False, help="Write rollout records for the viewer (navila-agent viz RUN_DIR)."
        ),
        limit: int = typer.Option(None, help="Run only the first N episodes of the split."),
        data_root: Path = typer.Option(None, help="VLN-CE data folder (default: generated data)."),
        output: Path = typer.Option(None, help="Run folder (default runs/<split>-<agent>-<timestamp>)."),
        workers: int = typer.Option(1, help="Worker processes."),
        seed: int = typer.Option(0, help="Run seed."),
    ) -> None:
        """Run the agent (the shipped NaVILA model by default) on a split or one episode, one line per episode."""
        try:
            split, ids = parse_episode_spec(episode)
            _check_split(split, "--episode")
            model_path = resolve_model(agent, model)
        except ValueError as e:
            raise _fail(str(e)) from None
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        _execute(
            {
                "split": split,
                "output": output or Path("runs") / f"{split}-{agent}-{stamp}",
                "agent": agent,
                "model": model_path,
                "episode_ids": ids,
                "limit": limit,
                "workers": workers,
                "data_root": str(data_root) if data_root else None,
                "seed": seed,
                "record": record,
            },
            per_episode_lines=True,
        )
