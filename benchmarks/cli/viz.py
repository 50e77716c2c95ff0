"""`navila-agent viz`: the rollout viewer (local web page), live mode and MP4 export.

    navila-agent viz runs/my_run                                    # browse a run folder (prints the URL)
    navila-agent viz runs/my_run --port 8765 --no-open
    navila-agent viz --live --episode r2r_val_unseen:17 --agent oracle    # step an agent in the browser
    navila-agent viz --live --episode r2r_val_unseen:17 --agent manual    # drive the env with W/A/D/S
    navila-agent viz export runs/my_run --episode r2r_val_unseen:17 --out ep17.mp4 --fps 4

`viz RUN_DIR` is shorthand for `viz serve RUN_DIR`. The live session is built with the runner's own env and agent
factories, so `--agent`, `--model`, `--data-root` and `--backend` mean what they mean for `navila-agent run`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import typer
from typer.core import TyperGroup

MANUAL_AGENT = "manual"  # live mode without an agent: the keyboard drives the env


class _ServeByDefault(TyperGroup):
    """`viz RUN_DIR ...` runs `viz serve RUN_DIR ...`; `viz export ...` and `viz --help` work as usual."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ("--help", "-h")):
            args = ["serve", *args]
        return super().parse_args(ctx, args)


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(2)


def _live_session(episode: str, agent: str, model: Path | None, data_root: Path | None, backend: str) -> Any:
    """Env + agent for live mode, from the runner's factories; ValueError names the flag at fault."""
    from benchmarks.cli.evaluate import _check_split, parse_episode_spec, resolve_model
    from benchmarks.runner import EvalConfig, load_episodes, make_agent, make_env
    from viz.live import LiveConfig, LiveSession, env_topdown

    split, ids = parse_episode_spec(episode)
    if len(ids) != 1:
        raise ValueError(f"--episode {episode!r}: live mode needs one episode, e.g. {split}:17")
    _check_split(split, "--episode")
    model_path = None if agent == MANUAL_AGENT else resolve_model(agent, model)
    config = EvalConfig(
        split=split,
        output=Path("."),
        agent="random" if agent == MANUAL_AGENT else agent,
        model=model_path,
        data_root=str(data_root) if data_root else None,
        backend=backend,
    )
    episodes = load_episodes(config)
    if not any(e.episode_id == ids[0] for e in episodes):
        sample = ", ".join(e.episode_id for e in episodes[:5])
        raise ValueError(
            f"--episode {episode!r}: no episode {ids[0]!r} in {split} (ids start: {sample}, ...)"
        )
    env = make_env(config, episodes)
    the_agent = None
    if agent != MANUAL_AGENT:
        device = "cpu"
        if agent == "navila":
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        the_agent = make_agent(config, env, device)
    return LiveSession(
        env=env, agent=the_agent, config=LiveConfig(episode_id=ids[0]), agent_name=agent, topdown=env_topdown
    )


def register(app: typer.Typer) -> None:
    """Add the `viz` command group (serve, export) to the navila-agent app."""
    viz_app = typer.Typer(
        cls=_ServeByDefault,
        help="Rollout viewer (local web page), live mode and MP4 export. `viz RUN_DIR` = `viz serve RUN_DIR`.",
        no_args_is_help=False,
    )

    @viz_app.command("serve")
    def serve_command(
        run_dir: Path = typer.Argument(
            None, help="Run folder written by `navila-agent run/eval` (not with --live)."
        ),
        host: str = typer.Option(
            "127.0.0.1", help="Address to bind; the default keeps the viewer on this machine."
        ),
        port: int = typer.Option(0, help="Port; 0 picks a free one (the URL is printed)."),
        open_browser: bool = typer.Option(
            True, "--open/--no-open", help="Open the page in the default browser."
        ),
        live: bool = typer.Option(
            False, "--live", help="Live mode: step an agent (or drive by keyboard) in the page."
        ),
        episode: str = typer.Option(None, help="Live mode: SPLIT:EPISODE_ID, e.g. r2r_val_unseen:17."),
        agent: str = typer.Option(
            "navila", help="Live mode: navila, oracle, random, forward, or manual (keyboard)."
        ),
        model: Path = typer.Option(
            None, help="Live mode: VILA-layout checkpoint folder (navila; default: shipped)."
        ),
        data_root: Path = typer.Option(None, help="Live mode: VLN-CE data folder (default: generated data)."),
        backend: str = typer.Option("embedded", help="Live mode: simulator backend (embedded or habitat)."),
    ) -> None:
        """Serve the viewer for a run folder, or a live session with --live."""
        import logging

        from viz.run_folder import RunFolderError, load_run
        from viz.server import ViewerConfig, make_server, serve

        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
        try:
            config = ViewerConfig(host=host, port=port, open_browser=open_browser)
            if live:
                if run_dir is not None:
                    raise ValueError("give either RUN_DIR (browse a run) or --live (step an agent), not both")
                if not episode:
                    raise ValueError("--live needs --episode SPLIT:EPISODE_ID, e.g. r2r_val_unseen:17")
                session = _live_session(episode, agent, model, data_root, backend)
                session.reset()  # load the scene now: a broken scene fails here, not later in the page
                server = make_server(None, config, live=session)
            else:
                if run_dir is None:
                    raise ValueError(
                        "give a RUN_DIR to browse (e.g. navila-agent viz runs/my_run), or --live"
                    )
                run = load_run(run_dir)
                for warning in run.warnings:
                    typer.secho(f"warning: {warning}", err=True, fg=typer.colors.YELLOW)
                server = make_server(run, config)
        except (ValueError, RunFolderError) as exc:
            raise _fail(str(exc)) from None
        what = "live session" if live else str(server.run.root)
        typer.echo(f"navila-agent viewer for {what}: {server.url}  (Ctrl-C to stop)")
        serve(server, open_browser=open_browser)

    @viz_app.command("export")
    def export_command(
        run_dir: Path = typer.Argument(..., help="Run folder written with --record."),
        episode: str = typer.Option(..., help="Episode uid, e.g. r2r_val_unseen:17 (see results.jsonl)."),
        out: Path = typer.Option(None, help="Output .mp4 (default RUN_DIR/videos/<uid>.mp4)."),
        fps: float = typer.Option(4.0, help="Frames per second (one frame per low-level step)."),
    ) -> None:
        """Write an MP4 of one recorded episode: frame | top-down map with path | model answer."""
        from viz.run_folder import RunFolderError
        from viz.video import export_episode

        try:
            path = export_episode(run_dir, episode, out, fps=fps)
        except (ValueError, RunFolderError) as exc:
            raise _fail(str(exc)) from None
        typer.echo(f"wrote {path}")

    app.add_typer(viz_app, name="viz")
