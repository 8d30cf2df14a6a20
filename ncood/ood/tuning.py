"""Choosing scorer parameters without looking at the test OOD sets (``analyze --tune``).

The choice is made on a **validation pair**: a held-out part of the ID *train* features
(carved per class, seeded) against one OOD set that is *not* a test set. For every point of
the grid the scorer is fitted on the rest of ID train, scores the validation pair, and the point
with the highest AUROC wins (the first in grid order on a tie). The test split and the test OOD
sets are never passed to a scorer during the choice; the chosen parameters are then used as if
given with ``--set``, fitted on the whole ID train split.

The held-out rows are held out from the scorers' fit only: the network (its features and its
head) was trained on those images, so the ID side of the validation is optimistic (training
images sit closer to their class and get more confident logits than unseen ones). The validation
AUROCs rank the grid; they are not an estimate of test AUROC. docs/conventions.md and the
report's appendix say so.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from ncood.errors import NcoodError
from ncood.host.guard import call_plugin
from ncood.host.scoring import Contribution
from ncood.ood.conventions import ood_metrics
from ncood.ood.defaults import DEFAULT_FRACTION, DEFAULT_SEED
from ncood.store.features import FeatureDump, Split


def parse_tune(values: list[str]) -> dict[str, dict[str, list[str]]]:
    """``["vim.dim=64,128", "knn.k=10,50"]`` → ``{"vim": {"dim": ["64", "128"]}, ...}``."""
    grids: dict[str, dict[str, list[str]]] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        name, dot, param = key.strip().partition(".")
        choices = [v.strip() for v in raw.split(",") if v.strip()]
        if not sep or not dot or not name or not param or not choices:
            raise NcoodError(f"--tune expects NAME.PARAM=V1,V2,..., got {item!r}")
        if param in grids.get(name, {}):
            raise NcoodError(f"--tune names {name}.{param} twice")
        if len(set(choices)) != len(choices):
            raise NcoodError(f"--tune {item!r} repeats a value")
        grids.setdefault(name, {})[param] = choices
    return grids


def grid_points(grid: Mapping[str, list[str]]) -> list[dict[str, str]]:
    """Every combination, in the order given (the first parameter varies slowest)."""
    params = list(grid)
    return [dict(zip(params, values, strict=True)) for values in itertools.product(*grid.values())]


def validation_indices(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A seeded ``fraction`` of each class's train samples (at least one when it has two),
    sorted. Per class, so class-conditional scorers keep every class on both sides."""
    if not 0.0 < fraction < 1.0:
        raise NcoodError(f"the validation fraction must be between 0 and 1, got {fraction}")
    rng = np.random.default_rng([seed, 2])
    chosen = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        count = int(round(fraction * members.size))
        count = min(max(count, 1 if members.size >= 2 else 0), members.size - 1)
        chosen.append(rng.choice(members, count, replace=False))
    picked = np.sort(np.concatenate(chosen)) if chosen else np.empty(0, np.int64)
    if picked.size == 0:
        raise NcoodError("ID train is too small to hold out a validation split")
    return picked


def _subset(split: Split, rows: np.ndarray) -> Split:
    return replace(
        split,
        features=split.features[rows],
        logits=split.logits[rows],
        labels=split.labels[rows],
        layers={name: values[rows] for name, values in split.layers.items()},
        _backing=None,  # in memory now, whatever the split was backed by
    )


def check_validation_set(valset: str, available: list[str], test_sets: list[str]) -> None:
    """The validation OOD set must exist and must not be a test set (one-line errors)."""
    if valset in test_sets:
        raise NcoodError(
            f"--tune-on {valset} is one of the test OOD sets ({', '.join(test_sets)}): a choice "
            f"made on a test set is not a test; name the test sets with --ood, without {valset}"
        )
    if valset not in available:
        raise NcoodError(
            f"--tune-on {valset}: no such OOD set in the features (known: {', '.join(available)})"
        )


def tune(
    dump: FeatureDump,
    scorers: list[Contribution],
    grids: Mapping[str, Mapping[str, list[str]]],
    settings: Mapping[str, Mapping[str, str]],
    valset: str,
    *,
    fraction: float = DEFAULT_FRACTION,
    seed: int = DEFAULT_SEED,
) -> tuple[dict[str, dict[str, str]], dict[str, Any]]:
    """The settings with each tuned scorer's chosen point, and what was tried (for results.json).

    Only ``dump.train`` (split in two) and ``dump.ood[valset]`` reach the scorers.
    """
    by_name = {c.name: c for c in scorers}
    for name in grids:
        if name not in by_name:
            raise NcoodError(
                f"--tune names {name!r}, which is not among the selected scorers "
                f"({', '.join(sorted(by_name))})"
            )
        for param in grids[name]:
            if param in settings.get(name, {}):
                raise NcoodError(f"{name}.{param} is given both with --set and with --tune")
    held_out = validation_indices(dump.train.labels, fraction, seed)
    kept = np.setdiff1d(np.arange(len(dump.train)), held_out, assume_unique=True)
    fit_on, id_validation = _subset(dump.train, kept), _subset(dump.train, held_out)
    ood_validation = dump.ood[valset]
    chosen_settings = {name: dict(values) for name, values in settings.items()}
    record: dict[str, Any] = {
        "ood": valset,
        "metric": "auroc",
        "validation": {
            "from": "train",
            "fraction": fraction,
            "seed": seed,
            "id_size": int(held_out.size),
            "fit_size": int(kept.size),
            "ood_size": len(ood_validation),
        },
        "scorers": {},
    }
    for name, grid in grids.items():
        tried = []
        for point in grid_points(grid):
            scorer, params = by_name[name].build({**settings.get(name, {}), **point})
            entry: dict[str, Any] = {"params": {p: params[p] for p in point}}
            called = call_plugin(
                validation_auroc, scorer, fit_on, dump, id_validation, ood_validation
            )
            if called.failed:  # one grid point's failure leaves the others to choose from
                entry["error"] = called.reason
            else:
                entry["auroc"] = called.value
            tried.append(entry)
        usable = [k for k, entry in enumerate(tried) if "auroc" in entry]
        if not usable:
            raise NcoodError(f"--tune {name}: every grid point failed ({tried[0]['error']})")
        best = max(usable, key=lambda k: (tried[k]["auroc"], -k))
        record["scorers"][name] = {
            "grid": {p: list(values) for p, values in grid.items()},
            "tried": tried,
            "chosen": tried[best]["params"],
        }
        chosen_settings.setdefault(name, {}).update(grid_points(grid)[best])
    return chosen_settings, record


def validation_auroc(scorer, fit_on: Split, dump: FeatureDump, id_split: Split, ood_split: Split):
    """Fit on the kept part of ID train; AUROC of the held-out part against the validation set."""
    scorer.fit(fit_on, dump.head)
    values = []
    for split in (id_split, ood_split):
        scores = np.asarray(scorer.score(split), np.float64)
        if scores.shape != (len(split),) or not np.isfinite(scores).all():
            raise NcoodError("score() did not return one finite value per sample")
        values.append(scores)
    return ood_metrics(*values)["auroc"]
