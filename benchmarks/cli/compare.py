"""`navila-agent compare RUN_A RUN_B`: paired comparison of two evaluation runs, and `navila-agent spread RUN...`:
the scatter of several runs of one recipe (benchmarks/compare.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from benchmarks.cli.data import _fail  # the same error line as `data` (message escaped, exit 2)


def register(app: typer.Typer) -> None:
    """Add the `compare` command to the `navila-agent` app."""
    app.command("compare")(compare_command)
    app.command("spread")(spread_command)


def compare_command(
    run_a: Annotated[
        Path, typer.Argument(help="Run folder of the baseline (A), e.g. the shipped model's eval.")
    ],
    run_b: Annotated[
        Path, typer.Argument(help="Run folder of the candidate (B), on the same split and episodes.")
    ],
    json_out: Annotated[
        Path | None,
        typer.Option("--json", help="Also write the comparison as JSON (atomically) to this file."),
    ] = None,
) -> None:
    """Compare two evaluation runs episode by episode: B - A per metric with 95% intervals, McNemar's test on
    success. Tells a real difference between checkpoints from the noise of a few hundred episodes."""
    import json

    from rich.console import Console

    from benchmarks.compare import compare_runs, format_comparison
    from benchmarks.store import RunFolderError, atomic_write_text, json_safe

    try:
        cmp = compare_runs(run_a, run_b)
    except RunFolderError as e:
        raise _fail(str(e)) from None
    Console().print(format_comparison(cmp))
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(json_out, json.dumps(json_safe(cmp.to_json()), indent=1) + "\n")


def spread_command(
    runs: Annotated[
        list[Path],
        typer.Argument(
            help="Two or more run folders of one recipe (e.g. training seeds) on the same episodes."
        ),
    ],
    json_out: Annotated[
        Path | None,
        typer.Option("--json", help="Also write the spread as JSON (atomically) to this file."),
    ] = None,
) -> None:
    """How far runs of one recipe scatter on the same episodes: each run's metrics with their mean, standard
    deviation and range, how many episodes succeed in 0..N runs, and McNemar's p for every pair. A candidate's
    gain over a baseline means something only when it is larger than this."""
    import json

    from rich.console import Console

    from benchmarks.compare import format_spread, spread_runs
    from benchmarks.store import RunFolderError, atomic_write_text, json_safe

    try:
        spread = spread_runs(runs)
    except (RunFolderError, ValueError) as e:
        raise _fail(str(e)) from None
    Console().print(format_spread(spread))
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(json_out, json.dumps(json_safe(spread.to_json()), indent=1) + "\n")
