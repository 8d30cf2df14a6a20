"""Scores that say nothing: one value for every sample, or only a handful of values.

A scorer whose parameters or data make every score the same number still yields an AUROC
(0.5) and an FPR@95 that look like results. Per OOD set, the scores of ID test and that set
together are counted: one distinct value is **degenerate** (the metrics hold by construction
and no sample is ranked; the report never calls it the best), fewer than ``FEW_DISTINCT``
among more samples than that is **few distinct values** (the metrics rest on ties). Both are
recorded beside the metrics in results.json (docs/conventions.md, "Scores that say nothing").

Constant scores on one split alone are not flagged: a confident network's MSP is 1.0 to the
last bit on many ID test samples, and the OOD set still ranks against them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# No built-in scorer gives fewer than this many distinct values to a few dozen real samples;
# the continuous scores of a working scorer give one per sample, save exact ties.
FEW_DISTINCT = 10

DEGENERATE = "degenerate"  # key of results.json's per-scorer metrics: true when constant
DISTINCT = "distinct_values"  # key recorded when there are few distinct values


def constant(*scores: np.ndarray) -> bool:
    """Whether the given scores, all together, are one value (none counts as not)."""
    values = np.concatenate([np.asarray(s).reshape(-1) for s in scores])
    return bool(values.size) and bool(values.min() == values.max())


def spread(id_scores: np.ndarray, ood_scores: np.ndarray) -> dict[str, Any]:
    """What to record beside one OOD set's metrics: nothing for scores that rank samples."""
    values = np.concatenate([np.asarray(id_scores), np.asarray(ood_scores)])
    if values.size == 0:
        return {}
    if constant(values):
        return {DEGENERATE: True, DISTINCT: 1}
    if values.size <= FEW_DISTINCT:
        return {}
    distinct = int(np.unique(values).size)
    return {DISTINCT: distinct} if distinct < FEW_DISTINCT else {}


def is_degenerate(metrics: Any) -> bool:
    """Whether a results.json metrics entry is marked degenerate."""
    return isinstance(metrics, dict) and metrics.get(DEGENERATE) is True


def warn_spread(scorer: str, flagged: dict[str, dict[str, Any]]) -> None:
    """One line on stderr per kind of flag a scorer got (the OOD sets named)."""
    from ncood.errors import warn

    constant = [name for name, found in flagged.items() if found.get(DEGENERATE)]
    few = {name: found[DISTINCT] for name, found in flagged.items() if DISTINCT in found}
    few = {name: count for name, count in few.items() if name not in constant}
    if constant:
        warn(
            f"{scorer} gives every sample of ID test and {', '.join(constant)} the same score: "
            f"its metrics there say nothing (marked degenerate)"
        )
    if few:
        counts = ", ".join(f"{name}: {count}" for name, count in few.items())
        warn(
            f"{scorer} gives fewer than {FEW_DISTINCT} distinct scores to ID test and an OOD "
            f"set ({counts}): its metrics rest on ties"
        )
