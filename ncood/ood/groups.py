"""Test OOD sets and their groups (``analyze --ood near:cifar10,tin far:svhn,mnist,dtd``).

OpenOOD v1.5 reports *near* and *far* OOD separately, each as the mean over its sets. Here a
group is a name and its sets; sets given without a name are test sets outside any group. The
groups are an analysis choice (the same features can be grouped differently), so they belong to
``ncood analyze`` and are recorded in results.json for the report; ``ncood train --ood`` only
says which sets to dump.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ncood.errors import NcoodError
from ncood.ood.bootstrap import METRICS, percentile_interval

_GROUP_NAME = re.compile(r"^[A-Za-z][\w-]*$")


@dataclass(frozen=True)
class TestSets:
    """The OOD sets to report, in order, and the named groups among them."""

    sets: list[str]
    groups: dict[str, list[str]]


def parse_ood(values: list[str]) -> TestSets:
    """``["near:cifar10,tin far:svhn,mnist"]`` (or one value per group) → sets and groups."""
    sets: list[str] = []
    groups: dict[str, list[str]] = {}
    for token in (t for value in values for t in value.split()):
        name, colon, listed = token.partition(":") if ":" in token else ("", "", token)
        if colon and not _GROUP_NAME.match(name):
            raise NcoodError(f"--ood {token!r}: a group name is a letter then letters or digits")
        members = [s.strip() for s in listed.split(",") if s.strip()]
        if not members:
            raise NcoodError(f"--ood {token!r} names no OOD set")
        for member in members:
            if member in sets:
                raise NcoodError(f"--ood names {member!r} twice")
            sets.append(member)
        if colon:
            if name in groups:
                raise NcoodError(f"--ood names group {name!r} twice")
            groups[name] = members
    if not sets:
        raise NcoodError("--ood names no OOD set")
    return TestSets(sets, groups)


def check_available(test_sets: TestSets, available: list[str]) -> None:
    missing = [s for s in test_sets.sets if s not in available]
    if missing:
        raise NcoodError(
            f"--ood names {', '.join(missing)}, not in the features (known: {', '.join(available)})"
        )


def group_summary(
    per_set: dict[str, dict[str, dict[str, float]]],
    sets: list[str],
    resampled: dict[str, dict[str, np.ndarray]] | None = None,
    level: float = 0.95,
) -> dict[str, dict[str, float | list[float]]]:
    """scorer → the mean of each metric over ``sets`` (and its interval).

    ``per_set[ood][scorer]`` holds the metrics; ``resampled[ood][scorer]`` the bootstrap values
    (resamples × METRICS) drawn with the same ID resamples for every set, so the mean of the
    per-set values of one resample is that resample's group mean.
    """
    scorers = [s for s in per_set[sets[0]] if all(s in per_set[o] for o in sets)]
    summary: dict[str, dict[str, float | list[float]]] = {}
    for scorer in scorers:
        values: dict[str, float | list[float]] = {
            metric: float(np.mean([per_set[o][scorer][metric] for o in sets])) for metric in METRICS
        }
        if resampled and all(scorer in resampled.get(o, {}) for o in sets):
            mean = np.mean([resampled[o][scorer] for o in sets], axis=0)
            bounds = percentile_interval(mean, level)
            for k, metric in enumerate(METRICS):
                values[f"{metric}_ci"] = [float(bounds[0, k]), float(bounds[1, k])]
        summary[scorer] = values
    return summary
