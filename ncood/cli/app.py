"""The Typer application every command module adds itself to, and what they share: the
user-error wrapper (one line on stderr, exit 1) and the parsers of comma-separated options."""

from __future__ import annotations

import contextlib
import functools
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperCommand

import ncood
from ncood.errors import NcoodError

# Options that mean the same in several commands, declared once.
DataDirOption = Annotated[
    Path | None,
    typer.Option(
        metavar="DIR", help="Where the datasets live (default $NCOOD_DATA_DIR or ./data)."
    ),
]

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Click's own help layout: flags read as flags ("--quiet", "--flip / --no-flip"), where
    # Typer's rich layout prints a "<bool>" metavar after every one of them
    rich_markup_mode=None,
    help="Neural Collapse and OOD detection: train, analyse features, write the report.",
)


class Command(TyperCommand):
    """Every ncood command: an argument with a ``metavar`` is shown as that metavar alone.

    Typer 0.29 uses an argument's metavar only as its name: the help row still appends the
    type placeholder (``SOURCE <path>``) and the usage line wraps it in ``{}`` or ``[]``.
    Options already print their metavar as given. Parsing is untouched."""

    def collect_usage_pieces(self, ctx: typer.Context) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument" and param.metavar and not param.hidden:
                pieces.append(param.metavar)
            else:
                pieces.extend(param.get_usage_pieces(ctx))
        return pieces

    def format_options(self, ctx: typer.Context, formatter) -> None:
        args, opts = [], []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.param_type_name == "argument":
                args.append((param.metavar or record[0], record[1]))
            elif param.param_type_name == "option":
                opts.append(record)
        if args:
            with formatter.section("Arguments"):
                formatter.write_dl(args)
        if opts:
            with formatter.section("Options"):
                formatter.write_dl(opts)


def user_errors(command):
    """A user error becomes one line on stderr and exit 1, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            with quiet_warnings():
                return command(*args, **kwargs)
        except NcoodError as exc:
            typer.echo(f"ncood: error: {exc}", err=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            typer.echo("ncood: interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper


@contextlib.contextmanager
def quiet_warnings():
    """Python warnings (numpy, scikit-learn, matplotlib) would be extra lines on stderr around
    ncood's own; they stay hidden unless asked for with ``-W`` or ``PYTHONWARNINGS``."""
    if sys.warnoptions:
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def warn_broken_plugins(plugin_host) -> None:
    """One line per plugin that failed to import or register: the command goes on without it."""
    for info in plugin_host.broken():
        typer.echo(
            f"ncood: warning: plugin {info.name!r} ({info.distribution}) is broken and was "
            f"skipped: {info.error}",
            err=True,
        )


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ncood {ncood.__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Neural Collapse and OOD detection: train, analyze, report."""


def split_names(value: str | None) -> list[str] | None:
    if value is None:
        return None
    names = [n.strip() for n in value.split(",") if n.strip()]
    if not names:
        raise typer.BadParameter("give at least one name")
    return names


def int_list(value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated integers, got {value!r}") from None
