"""The ``ncood`` command line, one module per command (train, presets, analyze, report,
plugins, extract); :mod:`ncood.cli.app` holds the Typer app they add themselves to."""

# importing a command module registers its command
from ncood.cli import analyze, extract, plugins, presets, report, train  # noqa: F401
from ncood.cli.app import app, main

__all__ = ["app", "main"]
