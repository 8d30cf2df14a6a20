"""``ncood table``: the OOD results of analyzed runs as a table to paste (markdown, CSV, LaTeX)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ncood.cli.app import Command, app, user_errors, warn_broken_plugins


@app.command(cls=Command)
@user_errors
def table(
    runs: Annotated[
        list[Path],
        typer.Argument(
            metavar="RUN...",
            help="Analyzed run directories (a folder of seed-*/ runs stands for them), or the "
            "results.json (or its folder) of an analyzed features file; several runs are "
            "stacked as row blocks.",
        ),
    ],
    format: Annotated[
        str, typer.Option("--format", metavar="markdown|csv|latex", help="Output format.")
    ] = "markdown",
    metric: Annotated[
        list[str] | None,
        typer.Option(
            metavar="NAMES",
            help="Metrics under each OOD set, comma-separated or repeated: fpr95, auroc, "
            "aupr_in, aupr_out (default: fpr95,auroc).",
        ),
    ] = None,
    epoch: Annotated[
        str, typer.Option(metavar="N|last", help="Which analyzed epoch of each run.")
    ] = "last",
    mean: Annotated[
        bool,
        typer.Option("--mean", help="One row per method: the mean ± std over the runs (seeds)."),
    ] = False,
    intervals: Annotated[
        bool,
        typer.Option("--intervals/--no-intervals", help="Bootstrap intervals after the values."),
    ] = True,
) -> None:
    """Print the OOD results as papers lay them out: a row per method, a column per OOD set
    and per group mean (near, far), FPR@95 and AUROC in percent."""
    from ncood.host.loading import host
    from ncood.report.seeds import expand_paths
    from ncood.report.table import DEFAULT_METRICS, build_table, load_source, render

    metrics = [m.strip() for given in metric or [] for m in given.split(",") if m.strip()]
    sources = [load_source(path, epoch) for path in expand_paths(runs)]
    scorers = host().scorers()
    titles = {name: scorers.get(name).display for name in scorers.names()}
    warn_broken_plugins(host())
    built = build_table(sources, metrics or list(DEFAULT_METRICS), titles, mean=mean)
    typer.echo(render(built, format, intervals), nl=False)
