"""The ``ncood`` command line, one module per command (train, presets, analyze, report,
plugins, extract); :mod:`ncood.cli.app` holds the Typer app they add themselves to, and
:func:`main` (the ``ncood`` script) runs it. The top of the layering: it may import any part of
ncood (tests/test_layering.py), and nothing in ncood imports it but ``__main__``."""

import sys

# importing a command module registers its command
from ncood.cli import analyze, extract, plugins, presets, report, table, train  # noqa: F401
from ncood.cli.analyze import regroup_ood
from ncood.cli.app import app

__all__ = ["app", "main"]


def main() -> None:
    """The ``ncood`` script: OpenOOD's ``--ood near:a,b far:c`` regrouped, then the app."""
    app(args=regroup_ood(sys.argv[1:]), prog_name="ncood")
