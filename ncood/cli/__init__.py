"""The ``ncood`` command line, one module per command (train, presets, analyze, report,
plugins); :mod:`ncood.cli.app` holds the Typer app they add themselves to."""

from ncood.cli import analyze, plugins, presets, report, train  # noqa: F401  (registers them)
from ncood.cli.app import app, main

__all__ = ["app", "main"]
