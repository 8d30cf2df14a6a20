"""Settings declared once: a config dataclass's fields carry their type, default, help and
bounds, and everything else (a command's options, a schema, the checks) is derived from them.

:func:`setting` declares a field; ``TrainConfig`` (ncood/store/train_config.py), ``OodOptions``
and ``AnalyzeOptions`` (ncood/analyze/options.py) and ``ExtractRequest``
(ncood/extraction/named.py) are declared with it, and ncood/cli/app.py turns any of them into
command-line options. It lives in the run format's layer, the lowest that every declaring
layer may import.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import field
from typing import Any

from ncood.errors import NcoodError


def setting(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    metavar: str | None = None,
    choices: tuple[str, ...] = (),
    minimum: float | None = None,
    above: float | None = None,
    option: bool = True,
    on_resume: bool = False,
    name: str | None = None,
    given: Any = None,
    parse: Callable[[Any], Any] | None = None,
    negatable: bool = True,
    record: bool | str = False,
) -> Any:
    """A field of a config dataclass with what the CLI, the schema and the checks need.

    ``minimum`` (inclusive) and ``above`` (exclusive) bound a number (floats must also be
    finite); ``choices`` lists a text's values; ``option=False`` keeps it off the command line;
    ``on_resume`` marks what may change when a run is resumed (where it runs, not what it is).

    On the command line a field is ``--field-name`` (``name`` spells it otherwise), a list is
    comma-separated, a boolean reads ``--x/--no-x`` (a flag alone with ``negatable=False``).
    ``given`` is the type the command line gives when it is not the field's (``list[str]``: a
    repeatable option) and ``parse`` turns it into the field's value. ``record`` puts the
    field in what a run records of it (under its own name, or the key given).
    """
    metadata = {
        "help": help,
        "metavar": metavar,
        "choices": choices,
        "minimum": minimum,
        "above": above,
        "option": option,
        "on_resume": on_resume,
        "name": name,
        "given": given,
        "parse": parse,
        "negatable": negatable,
        "record": record,
    }
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def option_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_bounds(config: Any) -> None:
    """Each field against the choices and bounds its declaration states (one line each)."""
    for spec in dataclasses.fields(config):
        value, meta = getattr(config, spec.name), spec.metadata
        if value is None or isinstance(value, bool):
            continue
        if meta.get("choices") and value not in meta["choices"]:
            raise NcoodError(
                f"unknown {spec.name.replace('_', ' ')} {value!r} "
                f"(known: {', '.join(meta['choices'])})"
            )
        if not isinstance(value, int | float):
            continue
        minimum, above = meta.get("minimum"), meta.get("above")
        if isinstance(value, float) or isinstance(minimum, float) or isinstance(above, float):
            below = (minimum is not None and value < minimum) or (
                above is not None and value <= above
            )
            if not math.isfinite(value) or below:
                raise NcoodError(f"{option_name(spec.name)} must be a finite positive number")
            continue
        if minimum is not None and value < minimum:
            wanted = "0 or more" if minimum == 0 else f"at least {minimum}"
            raise NcoodError(f"{option_name(spec.name)} must be {wanted}, got {value}")


def field_kind(hint: Any) -> tuple[type, bool, bool]:
    """(the element type, is it a list, may it be None) of a field's type hint."""
    optional = False
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        members = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(members) < len(typing.get_args(hint))
        hint = members[0]
    if typing.get_origin(hint) is list:
        return typing.get_args(hint)[0], True, optional
    return hint, False, optional


def field_hint(config_class: type, spec: dataclasses.Field) -> Any:
    """A field's type hint, evaluated alone (in the module of the class that declares it): a
    field whose type only a heavy module defines needs it only where that type is asked for."""
    hint = spec.type
    if isinstance(hint, str):
        owner = next(
            k for k in config_class.__mro__ if spec.name in vars(k).get("__annotations__", {})
        )
        hint = eval(hint, vars(sys.modules[owner.__module__]))  # what typing.get_type_hints does
    return hint


def config_fields(cls: type) -> list[tuple[dataclasses.Field, type, bool, bool]]:
    """Each field of a config dataclass with its (element type, list?, optional?)."""
    return [(spec, *field_kind(field_hint(cls, spec))) for spec in dataclasses.fields(cls)]


def recorded(config: Any) -> dict[str, Any]:
    """The fields declared with ``record``, under the key each names, as a run records them."""
    return {
        (spec.metadata["record"] if isinstance(spec.metadata["record"], str) else spec.name): (
            getattr(config, spec.name)
        )
        for spec in dataclasses.fields(config)
        if spec.metadata.get("record")
    }
