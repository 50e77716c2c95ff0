"""The `navila-agent` command line: one typer app composed from one module per command group.

The CLI lives in `benchmarks` because it is the composition root: it wires envs, agents, the runner, training
and the viewer together, and `benchmarks` is the only package allowed to import all of them. Command modules
import heavy libraries (torch, GL) inside the command functions so `navila-agent --help` stays instant.

    navila-agent run --episode r2r_val_unseen
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="navila-agent",
    help="NaVILA-style vision-language-action navigation: simulator, benchmark runner, training and viewer.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Each command module registers its commands on `app`; this list is the one place that wires them.
from benchmarks.cli import evaluate as _evaluate  # noqa: E402  (run, eval)

_evaluate.register(app)
from benchmarks.cli import data as _data  # noqa: E402  (data build, data show)

_data.register(app)
from benchmarks.cli import viz as _viz  # noqa: E402  (viz serve / viz export)

_viz.register(app)
from benchmarks.cli import collect as _collect  # noqa: E402  (collect)
from benchmarks.cli import tower as _tower  # noqa: E402  (train-tower)
from benchmarks.cli import train as _train  # noqa: E402  (train)

_collect.register(app)
_train.register(app)
_tower.register(app)
from benchmarks.cli import compare as _compare  # noqa: E402  (compare)

_compare.register(app)


def main() -> None:
    """Console-script entry point."""
    app()
