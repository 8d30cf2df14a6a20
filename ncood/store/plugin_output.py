"""What a plugin returns, checked and made JSON at the boundary.

An analysis may return numpy scalars, arrays, NaN; results.json is strict JSON (no NaN). The
conversion happens as each plugin finishes, so an odd value fails that plugin alone instead
of crashing the final write and losing every other plugin's results. A non-finite number
becomes ``null`` ("undefined"), which is what it means.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from ncood.errors import NcoodError

MAX_DEPTH = 64
# results.json keys that are not a plugin's: an analysis may not take one of these names
RESERVED_KEYS = frozenset(
    {
        "ood",
        "params",
        "timings",
        "errors",
        "test",
        "features",
        "epoch",
        "scores_file",
        "significance",
        "ood_groups",
        "tuning",
    }
)


def to_json(value: Any, where: str, depth: int = 0) -> Any:
    """``value`` as plain JSON types; anything else is a one-line :class:`NcoodError`."""
    if depth > MAX_DEPTH:
        raise NcoodError(f"{where} is nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, np.ndarray):
        return to_json(value.tolist(), where, depth + 1)
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, Mapping):
        converted = {}
        for key, item in value.items():
            if isinstance(key, np.generic):
                key = key.item()
            if not isinstance(key, str | int | float | bool) or key is None:
                raise NcoodError(f"{where} has a key of type {type(key).__name__}")
            converted[str(key)] = to_json(item, where, depth + 1)
        return converted
    if isinstance(value, list | tuple):
        return [to_json(item, where, depth + 1) for item in value]
    raise NcoodError(f"{where} holds a value of type {type(value).__name__}, which is not JSON")
