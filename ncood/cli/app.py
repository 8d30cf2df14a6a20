"""The Typer application every command module adds itself to, and what they share: the
user-error wrapper (one line on stderr, exit 1), the parsers of comma-separated options, and
the options of a config dataclass (:func:`config_options`, :func:`config_values`)."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import sys
import warnings
import weakref
from typing import Annotated, Any

import typer
from typer.core import TyperCommand

import ncood
from ncood.errors import NcoodError
from ncood.store.settings import field_hint, field_kind, option_name

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Click's own help layout: flags read as flags ("--quiet", "--flip / --no-flip"), where
    # Typer's rich layout prints a "<bool>" metavar after every one of them
    rich_markup_mode=None,
    help="Neural Collapse and OOD detection: train, analyze features, write the report.",
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
        _WARNED.clear()  # each command names each broken plugin once
        try:
            with quiet_warnings():
                result = command(*args, **kwargs)
        except NcoodError as exc:
            warn_broken_plugins()  # a broken plugin may be why a name is unknown
            typer.echo(f"ncood: error: {exc}", err=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            typer.echo("ncood: interrupted", err=True)
            raise typer.Exit(130) from None
        warn_broken_plugins()
        return result

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


# The broken plugins this command has named, by identity.
_WARNED: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def warn_broken_plugins(plugin_host=None) -> None:
    """One line per plugin that failed to import or register (once): the command goes on
    without it. Without a host, the process's, if the command loaded plugins at all."""
    if plugin_host is None:
        from ncood.host.loading import host

        if not host.cache_info().currsize:
            return
        plugin_host = host()
    for info in plugin_host.broken():
        if _WARNED.get(id(info)) is info:
            continue
        _WARNED[id(info)] = info
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


def keyword(name: str, kind, option, default) -> inspect.Parameter:
    """One parameter of a command whose signature is built (``command.__signature__``)."""
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[kind, option]
    )


def config_options(config_class: type, *, unset: bool = False) -> list[inspect.Parameter]:
    """One ``--option`` per field of a config dataclass (ncood/store/settings.py), in their
    order: lists comma-separated (or repeatable, as ``given`` says), booleans ``--x/--no-x``.

    An option shows the field's default; one without a default is required. ``unset=True``
    makes every option default to None: unset, whatever the caller starts from (a preset)
    stands."""
    options = []
    for spec in dataclasses.fields(config_class):
        meta = spec.metadata
        if not meta.get("option", True):
            continue
        kind = meta.get("given")
        if kind is None:
            element, is_list, _ = field_kind(field_hint(config_class, spec))
            kind = str if is_list else element
        default = spec.default
        if unset or spec.default_factory is not dataclasses.MISSING:
            default = None  # a list or a mapping: unset, the field's own stands
        elif default is dataclasses.MISSING:
            default = inspect.Parameter.empty  # required
        settings: dict[str, Any] = {"help": meta["help"]}
        if kind is not bool and meta.get("metavar"):
            settings["metavar"] = meta["metavar"]
        names = [meta["name"]] if meta.get("name") else []
        if kind is bool and not meta.get("negatable", True):
            names = names or [option_name(spec.name)]
        elif kind is bool and names:
            names = [f"{names[0]}/--no-{names[0].removeprefix('--')}"]
        option = typer.Option(*names, **settings)
        options.append(
            keyword(spec.name, kind | None if default is None else kind, option, default)
        )
    return options


def parse_option(config_class: type, name: str, value):
    """A command-line value as the field's: ``parse`` where declared, comma-separated lists
    split and converted."""
    if value is None:
        return None
    spec = next(s for s in dataclasses.fields(config_class) if s.name == name)
    if spec.metadata.get("parse"):
        return spec.metadata["parse"](value)
    if spec.metadata.get("given") is not None:
        return value
    element, is_list, _ = field_kind(field_hint(config_class, spec))
    if not is_list:
        return value
    if element is str:
        return split_names(value)
    if element is int:
        return int_list(value)
    try:
        return [element(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated numbers, got {value!r}") from None


def config_values(config_class: type, given: dict[str, Any]) -> dict[str, Any]:
    """The options of ``config_class`` that the command line gave, as the fields' values; one
    left unset is left out (timm's ``create_model``), so the field's own default stands."""
    values = {}
    for spec in dataclasses.fields(config_class):
        value = given.get(spec.name)
        if value is None or (isinstance(value, list | tuple) and not value):
            continue
        values[spec.name] = parse_option(config_class, spec.name, value)
    return values
