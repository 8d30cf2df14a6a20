"""``ncood report``: the LaTeX/PDF report of analyzed runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ncood.cli.app import Command, app, user_errors, warn_broken_plugins


@app.command(cls=Command)
@user_errors
def report(
    runs: Annotated[
        list[Path],
        typer.Argument(metavar="RUN_DIR...", help="One or more analyzed run directories."),
    ],
    lang: Annotated[
        str, typer.Option(metavar="fr|en", help="Language of the document: fr or en.")
    ] = "fr",
    out: Annotated[Path, typer.Option(metavar="DIR", help="Output folder.")] = Path("reports"),
    name: Annotated[
        str | None, typer.Option(metavar="NAME", help="Base name of the .tex/.pdf.")
    ] = None,
    no_pdf: Annotated[bool, typer.Option("--no-pdf", help="Write the .tex only.")] = False,
    verify: Annotated[
        bool,
        typer.Option("--verify", help="Check each features file's sha256 against its manifest."),
    ] = False,
) -> None:
    """Render figures and tables into a LaTeX report and compile it to PDF."""
    from ncood.host.loading import host
    from ncood.report.build import build_report

    result = build_report(runs, lang=lang, out_dir=out, name=name, pdf=not no_pdf, verify=verify)
    warn_broken_plugins(host())
    if result.pdf is not None:
        typer.echo(f"report written to {result.pdf}")
    else:
        typer.echo(f"LaTeX source written to {result.tex}")
        if result.message:
            typer.echo(result.message, err=True)
