"""The shapes of a run's JSON files, checked when they are read.

A manifest or history that is valid JSON but of the wrong shape (a list, a string where a
number goes, a NaN, a config that lost its keys) must be one line naming the key, not a
``KeyError`` deep inside a command. Keys are checked when present, so older or imported runs
that lack some still read; values must have the documented type (docs/run-format.md).
``MANIFEST`` is also the order in which ncood.store.manifest writes a new manifest's sections.
"""

from __future__ import annotations

import math
from typing import Any

from ncood.errors import NcoodError
from ncood.store.train_config import config_schema

INT, NUMBER, TEXT, BOOL, ANY = "int", "number", "text", "bool", "any"
_INT_OR_NONE, _TEXT_OR_NONE, _BOOL_OR_NONE = ("int", None), ("text", None), ("bool", None)

CONFIG = config_schema()  # derived from TrainConfig, the one declaration of the settings
MANIFEST = {
    "format": TEXT,
    "format_version": INT,
    "source": TEXT,  # "imported" for a run extracted from a model trained elsewhere
    "status": TEXT,
    "error": TEXT,
    "created": TEXT,
    "finished": TEXT,
    "seed": INT,
    "config": CONFIG,
    "versions": {str: TEXT},
    "device": TEXT,
    "acceleration": {str: ("text", "bool", None)},
    "distributed": {str: ("int", "text", "bool", None)},
    "resumes": [{str: ("int", "text", None)}],
    "dataset": {
        "name": TEXT,
        "num_classes": INT,
        "train_size": INT,
        "test_size": INT,
        "ood": {str: INT},
        "digests": {str: TEXT},  # split → sha256 of its uint8 images (ncood.datasets.digest)
        "mean": ([NUMBER], None),  # null for an imported run without them
        "std": ([NUMBER], None),
        # a run of an OpenOOD benchmark: its name, near/far groups, OOD validation set
        "benchmark": {"name": TEXT, "groups": {str: [TEXT]}, "validation": _TEXT_OR_NONE},
    },
    "preprocessing": ANY,  # an imported run's: read by ncood.extraction.rerun and the report
    "model": {"name": TEXT, "width": INT, "feature_dim": INT},
    "weights": ANY,  # an imported run's weights files (file, epoch, sha256, adapted)
    "evaluation": ANY,  # an imported run's accuracy and head check at each epoch
    "files": {str: TEXT},
    "file_stats": {str: {"size": INT, "mtime_ns": INT}},
}
HISTORY_RECORD = {
    "epoch": INT,
    "lr": NUMBER,
    "train_loss": NUMBER,
    "train_acc": NUMBER,
    "test_loss": NUMBER,
    "test_acc": NUMBER,
    "seconds": NUMBER,
    "images_per_s": NUMBER,
}
_NON_NEGATIVE = {"epochs", "num_classes", "train_size", "test_size", "epoch", "size", "width"}


def _is(value: Any, kind: str | None) -> bool:
    if kind is None:
        return value is None
    if kind == ANY:
        return True
    if kind == BOOL:
        return isinstance(value, bool)
    if kind == INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == NUMBER:
        return (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and math.isfinite(float(value))
        )
    return isinstance(value, str)


def _describe(kind: Any) -> str:
    if isinstance(kind, tuple):
        return " or ".join("null" if k is None else _describe(k) for k in kind)
    if isinstance(kind, list):
        return "a list"
    if isinstance(kind, dict):
        return "an object"
    names = {INT: "an integer", NUMBER: "a finite number", TEXT: "a string", BOOL: "true/false"}
    return names.get(kind, "anything")


def check(value: Any, spec: Any, where: str, keys: str = "") -> None:
    """Raise a one-line :class:`NcoodError` where ``value`` does not fit ``spec``."""
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            _refuse(where, keys, "an object", value)
        if str in spec:  # a mapping of any string to one kind
            for key, item in value.items():
                check(item, spec[str], where, f"{keys}.{key}" if keys else key)
            return
        for key, kind in spec.items():
            if key in value:
                check(value[key], kind, where, f"{keys}.{key}" if keys else key)
        return
    if isinstance(spec, list):
        if not isinstance(value, list):
            _refuse(where, keys, "a list", value)
        for index, item in enumerate(value):
            check(item, spec[0], where, f"{keys}[{index}]")
        return
    kinds = spec if isinstance(spec, tuple) else (spec,)
    nested = [k for k in kinds if isinstance(k, dict | list)]
    if nested:  # e.g. ([NUMBER], None): a list of numbers, or null
        if value is None and None in kinds:
            return
        check(value, nested[0], where, keys)
        return
    if not any(_is(value, k) for k in kinds):
        _refuse(where, keys, _describe(spec), value)
    if keys.rsplit(".", 1)[-1] in _NON_NEGATIVE and _is(value, INT) and value < 0:
        _refuse(where, keys, "0 or more", value)


def _refuse(where: str, keys: str, wanted: str, value: Any) -> None:
    shown = repr(value) if len(repr(value)) <= 40 else type(value).__name__
    raise NcoodError(f"{where}: {keys or 'the whole file'} must be {wanted}, got {shown}")


def check_manifest(manifest: Any, path: object) -> dict[str, Any]:
    check(manifest, MANIFEST, str(path))
    return manifest


def check_history(history: Any, path: object) -> list[dict[str, Any]]:
    check(history, [HISTORY_RECORD], str(path))
    return history
