"""Which scorers the data cannot tell apart from the best one: DeLong p-values, Holm's correction.

The family is, for one ID/OOD pair, the k − 1 comparisons of the best scorer (highest AUROC)
with each other one. Holm's step-down procedure keeps the family-wise error rate at ``alpha``
without assuming the tests independent (they share the samples); it rejects a comparison when
its Holm-adjusted p-value is ≤ alpha, and a scorer is *indistinguishable from the best* when its
comparison is not rejected (adjusted p > alpha).

Scorers tied at the highest AUROC: the best is the one whose name sorts first (Python's string
order), so the verdict does not depend on the order the scorers come in (a merged folder lists
them kept-then-new, a single run as asked). The others tied have p = 1 against it, so they are
always in ``indistinguishable``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

ALPHA = 0.05
CORRECTION = "holm"


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm-adjusted p-values, in the input order: max over the first steps of (m − i) p_(i)."""
    p = np.asarray(pvalues, np.float64)
    m = p.size
    if m == 0:
        return p
    order = np.argsort(p, kind="stable")
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(stepped, 1.0)
    return adjusted


def compare_with_best(
    names: Sequence[str], auroc: np.ndarray, pvalues: np.ndarray, alpha: float = ALPHA
) -> dict:
    """The best scorer, each other's raw and Holm-adjusted p-value against it, and the ties.

    ``pvalues`` is the (k, k) matrix of `ncood.ood.delong.pairwise_pvalues`. The best is the highest
    AUROC, ties to the name that sorts first; ``indistinguishable`` lists the best, then every
    scorer not rejected (adjusted p > alpha) by AUROC, then name.
    """
    auroc = np.asarray(auroc, np.float64)
    best = min(np.flatnonzero(auroc == auroc.max()), key=lambda k: names[k])
    others = sorted((k for k in range(len(names)) if k != best), key=lambda k: names[k])
    raw = [float(pvalues[best, k]) for k in others]
    adjusted = holm(raw)
    tied = [k for k, p in zip(others, adjusted, strict=True) if p > alpha]  # not rejected
    tied = [best] + sorted(tied, key=lambda k: (-auroc[k], names[k]))
    return {
        "best": names[best],
        "alpha": alpha,
        "correction": CORRECTION,
        "p": {names[k]: p for k, p in zip(others, raw, strict=True)},
        "p_adjusted": {names[k]: float(p) for k, p in zip(others, adjusted, strict=True)},
        "indistinguishable": [names[k] for k in tied],
    }
