"""`navila-agent data build|show`: build generated splits, inspect any split's episodes.

    navila-agent data build --split r2r_val_unseen                # generated houses + episodes, cached
    navila-agent data build --split r2r_train --split rxr_train --force
    navila-agent data build --split r2r_val_unseen --houses 2 --episodes 5   # a tiny split for a quick look
    navila-agent data show r2r_val_unseen                          # split summary + its first episode
    navila-agent data show r2r_val_unseen:17 --out map.png         # one episode + its top-down map
    navila-agent data show r2r_val_seen:4 --data-root shared/data/r2r_vlnce_sample

`--data-root` takes a VLN-CE data folder (`datasets/R2R_VLNCE_v1-3_preprocessed/<split>/`, scenes in
`scene_datasets/`) or a dataset folder holding `<split>/` directly, like the shared R2R-CE sample; the split name
keeps its dataset prefix (`r2r_val_seen`), which picks the file format. See `envs.datasets.splits`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

data_app = typer.Typer(
    help="Build generated VLN-CE splits and inspect episodes (generated or real R2R-CE / RxR-CE).",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add the `data` command group to the `navila-agent` app."""
    app.add_typer(data_app, name="data")


def _fail(message: str, code: int = 2) -> typer.Exit:
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True).print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    return typer.Exit(code)


@data_app.command("build")
def build(
    split: Annotated[
        list[str],
        typer.Option(
            help="Generated split to build (repeatable): r2r_train, r2r_val_seen, r2r_val_unseen, rxr_..."
        ),
    ],
    force: Annotated[bool, typer.Option(help="Rebuild even if the split is already built.")] = False,
    houses: Annotated[int | None, typer.Option(min=1, help="Override the preset's number of houses.")] = None,
    episodes: Annotated[
        int | None, typer.Option(min=1, help="Override the preset's episodes per house.")
    ] = None,
    first_house: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Override the index of the split's first house, e.g. 40 to build r2r_train in houses 40..79 "
            "(more distinct training houses; keep below 1000, where the unseen houses start).",
        ),
    ] = None,
    workers: Annotated[
        int, typer.Option(min=0, help="Processes building houses in parallel (0 = CPU count, at most 8).")
    ] = 0,
) -> None:
    """Generate houses and episodes of a split into the cache (skipped when already built with this config)."""
    import json
    from dataclasses import replace

    from rich.console import Console

    from envs.datasets.generate import (
        UNSEEN_FIRST_HOUSE,
        build_split,
        is_built,
        manifest_path,
        preset_config,
    )

    console = Console(stderr=True)
    for name in split:
        try:
            cfg = preset_config(name)
        except ValueError as e:
            raise _fail(f"--split: {e}") from None
        if houses is not None:
            cfg = replace(cfg, num_houses=houses)
        if episodes is not None:
            cfg = replace(cfg, episodes_per_house=episodes)
        if first_house is not None:
            cfg = replace(cfg, first_house=first_house)
        seen = cfg.first_house < UNSEEN_FIRST_HOUSE
        if seen and cfg.first_house + cfg.num_houses > UNSEEN_FIRST_HOUSE:
            raise _fail(
                f"--first-house/--houses: {name} would use houses {cfg.first_house}..."
                f"{cfg.first_house + cfg.num_houses - 1}, which overlap the unseen houses "
                f"({UNSEEN_FIRST_HOUSE}+) of the val_unseen splits"
            )
        cached = not force and is_built(name, cfg)
        path = build_split(name, force=force, config=cfg, workers=workers)
        stats = json.loads(manifest_path(name).read_text())["stats"]
        state = "already built" if cached else f"built in {stats['build_seconds']:.1f} s"
        console.print(
            f"[bold]{name}[/]: {state}: {stats['episodes']} episodes in {stats['scenes']} houses, "
            f"mean geodesic {stats['mean_geodesic_m']:.2f} m, mean instruction {stats['mean_instruction_words']:.1f} "
            f"words, mean expert actions {stats['mean_gt_actions']:.0f}\n  {path}",
            highlight=False,
        )


@data_app.command("show")
def show(
    spec: Annotated[
        str, typer.Argument(metavar="SPLIT[:EPISODE_ID]", help="e.g. r2r_val_unseen or r2r_val_unseen:17")
    ],
    data_root: Annotated[
        Path | None,
        typer.Option(
            help="Real data: a VLN-CE data folder, or a folder holding <split>/ (e.g. the R2R-CE sample)."
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Write the episode's top-down map (PNG) here.")] = None,
    role: Annotated[str, typer.Option(help="RxR-CE annotator role: guide or follower.")] = "guide",
    language: Annotated[
        list[str] | None,
        typer.Option(help="RxR-CE languages to keep (repeatable; default en-US; 'all' keeps all)."),
    ] = None,
) -> None:
    """Print one episode (id, scene, instruction, start, goal, geodesic distance, gt steps) and optionally its map."""
    from rich.console import Console

    from envs.datasets.splits import find_episode, read_split_data

    console = Console()
    name, _, episode_id = spec.partition(":")
    languages = ("en-US",) if not language else (None if "all" in language else tuple(language))
    try:
        data = read_split_data(name, data_root, role=role, languages=languages)
    except (ValueError, FileNotFoundError) as e:
        raise _fail(str(e)) from None
    if not data.episodes:
        raise _fail(f"split '{name}' has no episodes ({data.episodes_path}; languages {languages})")
    try:
        episode = find_episode(data.episodes, episode_id) if episode_id else data.episodes[0]
    except ValueError as e:
        raise _fail(f"{spec}: {e}") from None
    if not episode_id:
        console.print(_summary_table(name, data))
    console.print(_episode_panel(episode, data_root))
    if out is not None:
        try:
            _write_map(episode, data_root, out)
        except (FileNotFoundError, ValueError) as e:
            raise _fail(f"--out {out}: cannot draw the map: {e}", code=1) from None
        console.print(f"map written to {out}", highlight=False)


def _summary_table(name: str, data):
    from rich.table import Table

    from envs.datasets.generate import split_stats

    stats = split_stats(data.episodes)
    table = Table(title=f"{name} ({data.episodes_path})", show_header=False)
    for key, value in stats.items():
        table.add_row(key, str(value))
    return table


def _fmt(v) -> str:
    return "[" + ", ".join(f"{x:.2f}" for x in v) + "]"


def _episode_panel(ep, data_root: Path | None):
    import math

    from rich.panel import Panel
    from rich.table import Table

    from envs.datasets.splits import scene_path
    from envs.geometry import quaternion_to_heading

    scene = scene_path(ep, data_root)
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("episode", f"{ep.uid}  (trajectory {ep.trajectory_id})")
    grid.add_row("scene", f"{ep.scene_id}" + ("" if scene.is_file() else "  [dim](mesh not found)[/]"))
    grid.add_row("instruction", ep.instruction.instruction_text.strip())
    heading = math.degrees(quaternion_to_heading(ep.start_rotation))
    grid.add_row("start", f"{_fmt(ep.start_position)}  heading {heading:.0f} deg")
    grid.add_row("goal", f"{_fmt(ep.goal_position)}  radius {ep.goals[0].radius}")
    geo = "unknown" if ep.geodesic_distance is None else f"{ep.geodesic_distance:.2f} m"
    grid.add_row("geodesic", geo)
    grid.add_row("reference path", f"{len(ep.reference_path)} points")
    if ep.gt is not None:
        grid.add_row(
            "ground truth",
            f"{len(ep.gt.actions)} actions ({ep.gt.forward_steps} forward), {len(ep.gt.locations)} locations",
        )
    else:
        grid.add_row("ground truth", "none (test split)")
    for key, value in ep.instruction.extra.items():
        if key != "timed_instruction":
            grid.add_row(key, str(value))
    return Panel(grid, title=f"{ep.dataset} {ep.split} episode {ep.episode_id}", expand=False)


def _write_map(ep, data_root: Path | None, out: Path) -> None:
    """Top-down map of the episode: rooms and objects when the scene has semantics, else the navigable area."""
    import numpy as np

    from envs.datasets.splits import scene_path, semantics_path
    from envs.embedded import EmbeddedSimConfig, scene_up_axis
    from envs.navigation import NavGrid
    from envs.scenes.mesh import load_scene_mesh
    from envs.scenes.semantics import HouseSemantics

    mesh_file = scene_path(ep, data_root)
    if not mesh_file.is_file():
        raise FileNotFoundError(
            f"scene mesh not found at {mesh_file} (scene_id '{ep.scene_id}'; put the scenes under "
            f"<data-root>/scene_datasets/)"
        )
    try:
        from envs.topdown import render_topdown, save_png
    except ImportError as e:
        raise ValueError(f"the top-down map renderer (envs.topdown) is not available: {e}") from None
    sem_file = semantics_path(ep, data_root)
    semantics = HouseSemantics.load(sem_file) if sem_file.is_file() else None
    sim_cfg = EmbeddedSimConfig()
    mesh = load_scene_mesh(mesh_file, up=scene_up_axis(ep.scene_id, sim_cfg.scene_up))
    grid = NavGrid.from_mesh(mesh, float(ep.start_position[1]), sim_cfg.nav_grid_config())
    rgb = render_topdown(
        semantics,
        grid.navigable,
        grid.origin,
        grid.resolution,
        path=np.asarray(ep.gt.locations) if ep.gt is not None else None,
        reference=np.asarray(ep.reference_path),
        goal=np.asarray(ep.goal_position),
        goal_radius=ep.goals[0].radius,
        agent=(np.asarray(ep.start_position), np.asarray(ep.start_rotation)),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    save_png(rgb, out)
