"""Runs that differ only by their seed, reported as one: mean ± standard deviation, and bands.

``ncood report D`` where ``D`` holds ``seed-*/`` runs (what ``ncood train --seeds`` writes), or
the seed runs given one by one: runs whose configurations are equal but for the seed (and where
they ran: device, data folder) become one :class:`SeedGroup`. Its results and history hold
:class:`Spread` numbers — floats equal to the mean over seeds that carry the standard deviation —
so every table that prints a number with the ``num`` filter prints ``mean ± std`` and every
curve drawn with :func:`plot_curve` gets a shaded ±1 std band, without a section knowing.
"""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ncood.errors import NcoodError
from ncood.report.context import AnalyzedRun
from ncood.store.run import MANIFEST

SEED_FOLDER = "seed-"
# Configuration fields that say where a run ran, not what it is.
INCIDENTAL = ("seed", "device", "data_dir", "download")
BAND_ALPHA = 0.2


class Spread(float):
    """A mean over seeds (the float value) with the sample standard deviation and the count.

    Scaling and shifting by a plain number keeps the spread (``100 * accuracy``); any other
    arithmetic gives a plain float.
    """

    std: float
    count: int

    def __new__(cls, mean: float, std: float, count: int) -> Spread:
        value = super().__new__(cls, mean)
        value.std, value.count = float(std), int(count)
        return value

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        count = len(values)
        mean = math.fsum(values) / count
        variance = math.fsum((v - mean) ** 2 for v in values) / (count - 1) if count > 1 else 0.0
        return cls(mean, math.sqrt(variance), count)

    def _scaled(self, factor: float, shift: float = 0.0) -> Spread:
        return Spread(float(self) * factor + shift, self.std * abs(factor), self.count)

    def __mul__(self, other):
        if _plain_number(other):
            return self._scaled(float(other))
        return float(self) * _bare(other)

    __rmul__ = __mul__

    def __truediv__(self, other):
        if _plain_number(other):
            return self._scaled(1.0 / float(other))
        return float(self) / _bare(other)

    def __add__(self, other):
        if _plain_number(other):
            return self._scaled(1.0, float(other))
        return float(self) + _bare(other)

    __radd__ = __add__

    def __sub__(self, other):
        if _plain_number(other):
            return self._scaled(1.0, -float(other))
        return float(self) - _bare(other)

    def __rsub__(self, other):
        if _plain_number(other):
            return self._scaled(-1.0, float(other))
        return _bare(other) - float(self)

    def __neg__(self):
        return self._scaled(-1.0)

    def __repr__(self) -> str:
        return f"Spread({float(self)!r} ± {self.std!r}, n={self.count})"


def _bare(value: object) -> object:
    """Another Spread as a plain float: the two spreads' correlation is unknown."""
    return float(value) if isinstance(value, Spread) else value


def _plain_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, Spread | bool)


def aggregate(values: list[Any]) -> Any:
    """One value standing for the members' values (same structure in every member).

    Numbers become a :class:`Spread` (integers equal in every member stay as they are: epochs,
    sizes); dictionaries keep the keys all members have; lists of equal length go element by
    element; anything else is the first member's.
    """
    first = values[0]
    if all(_is_number(v) for v in values):
        if all(isinstance(v, numbers.Integral) for v in values) and len(set(values)) == 1:
            return first
        return Spread.of([float(v) for v in values])
    if all(isinstance(v, dict) for v in values):
        keys = [k for k in first if all(k in v for v in values[1:])]
        return {k: aggregate([v[k] for v in values]) for k in keys}
    if all(isinstance(v, list) for v in values) and len({len(v) for v in values}) == 1:
        return [aggregate(list(items)) for items in zip(*values, strict=True)]
    return first


def _is_number(value: object) -> bool:
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


@dataclass
class SeedGroup(AnalyzedRun):
    """Several seeds of one configuration, seen by the report as one run."""

    members: list[AnalyzedRun] = field(default_factory=list)
    group_name: str = ""

    @property
    def name(self) -> str:
        return self.group_name

    @property
    def seeds(self) -> list[int]:
        return [int(m.manifest["config"].get("seed", 0)) for m in self.members]


def expand_paths(paths: list[Path]) -> list[Path]:
    """A folder without a manifest that holds ``seed-*`` runs stands for those runs."""
    expanded: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir() and not (path / MANIFEST).is_file():
            seeds = sorted(
                (p for p in path.iterdir() if p.name.startswith(SEED_FOLDER) and p.is_dir()),
                key=_seed_order,
            )
            if seeds:
                expanded += seeds
                continue
        expanded.append(path)
    return expanded


def _seed_order(path: Path) -> tuple[int, str]:
    suffix = path.name[len(SEED_FOLDER) :]
    return (int(suffix), "") if suffix.isdigit() else (1 << 62, suffix)


def configuration_key(run: AnalyzedRun) -> str:
    """What must be equal for two runs to be seeds of one experiment."""
    config = {k: v for k, v in run.manifest.get("config", {}).items() if k not in INCIDENTAL}
    return json.dumps(
        {"config": config, "dataset": run.manifest.get("dataset", {}).get("name")},
        sort_keys=True,
        default=str,
    )


def group_by_seed(runs: list[AnalyzedRun]) -> list[AnalyzedRun]:
    """Runs equal but for the seed (at least two, all seeds distinct) become one SeedGroup,
    placed where its first member was; the others stay as they are."""
    by_key: dict[str, list[AnalyzedRun]] = {}
    for run in runs:
        by_key.setdefault(configuration_key(run), []).append(run)
    out: list[AnalyzedRun] = []
    placed: set[str] = set()
    for run in runs:
        key = configuration_key(run)
        members = by_key[key]
        seeds = [m.manifest.get("config", {}).get("seed") for m in members]
        if len(members) < 2 or len(set(map(str, seeds))) < len(seeds):
            out.append(run)
        elif key not in placed:
            placed.add(key)
            out.append(make_group(members))
    return out


def make_group(members: list[AnalyzedRun]) -> SeedGroup:
    members = sorted(members, key=lambda m: int(m.manifest["config"].get("seed", 0)))
    epochs = sorted(set.intersection(*(set(m.results) for m in members)))
    if not epochs:
        raise NcoodError(
            "the seed runs "
            + ", ".join(str(m.run.root) for m in members)
            + " share no analyzed epoch (run `ncood analyze RUN --epoch all` on each)"
        )
    results = {e: aggregate([m.results[e] for m in members]) for e in epochs}
    seeds = [int(m.manifest["config"].get("seed", 0)) for m in members]
    manifest = {**members[0].manifest, "seed": seeds, "seeds": seeds}
    manifest["config"] = {**members[0].manifest["config"], "seed": seeds}
    parents = {m.run.root.resolve().parent for m in members}
    name = parents.pop().name if len(parents) == 1 else members[0].name
    return SeedGroup(
        run=members[0].run,
        manifest=manifest,
        history=_history(members),
        results=results,
        members=members,
        group_name=name,
    )


def _history(members: list[AnalyzedRun]) -> list[dict[str, Any]]:
    """Per epoch present in every member's history, the aggregated record."""
    by_epoch = [{r["epoch"]: r for r in m.history if "epoch" in r} for m in members]
    common = sorted(set.intersection(*(set(h) for h in by_epoch)))
    return [aggregate([h[e] for h in by_epoch]) for e in common]


def spread_of(values: list[Any]) -> list[float] | None:
    """The standard deviations of a curve's points, or None when none carries one."""
    if not any(isinstance(v, Spread) for v in values):
        return None
    return [v.std if isinstance(v, Spread) else 0.0 for v in values]


def plot_curve(axis, x: list[Any], y: list[Any], **style):
    """``axis.plot(x, y, **style)``, plus a shaded ±1 std band where the points are Spreads."""
    (line,) = axis.plot(x, [float(v) for v in y], **style)
    stds = spread_of(list(y))
    if stds is not None:
        # Positive quantities (losses, accuracies, NC metrics, often on log axes) keep a band
        # above 1 % of the mean rather than one reaching 0 or below.
        floor = 0.01 if all(float(v) > 0 for v in y) else None
        low = [
            float(v) - s if floor is None else max(float(v) - s, floor * float(v))
            for v, s in zip(y, stds, strict=True)
        ]
        high = [float(v) + s for v, s in zip(y, stds, strict=True)]
        axis.fill_between(
            [float(v) for v in x], low, high, color=line.get_color(), alpha=BAND_ALPHA, lw=0
        )
    return line


def plot_points(axis, points, *, log: bool = False, **kwargs) -> bool:
    """A line with markers through (epoch, value) points; on a log axis only positive values.
    False when there is nothing to draw."""
    if log:
        points = [(e, v) for e, v in points if v > 0]
    if not points:
        return False
    epochs, values = zip(*points, strict=True)
    kwargs = {"marker": "o", "ms": 2.5, "lw": 1.1, **kwargs}
    plot_curve(axis, epochs, values, **kwargs)  # a mean over seeds gets its ±1 std band
    return True
