"""DeLong's paired test of AUROC differences, with the O(n log n) algorithm of Sun & Xu (2014).

DeLong, DeLong & Clarke-Pearson (1988) estimate the covariance of several AUROCs measured on
the same samples from their structural components; Sun & Xu ("Fast implementation of DeLong's
algorithm for comparing the areas under correlated receiver operating characteristic curves",
IEEE Signal Processing Letters 21(11), 2014) obtain those components from midranks instead of
the O(m·n) pair comparisons. ID is the positive class (`ncood.ood.conventions`), ties count
one half.
The variance of a pair's difference is taken directly from the per-sample differences of the
components, which stays exact for near-identical scorers at any size (`difference_variance`).
"""

from __future__ import annotations

import numpy as np


def rankdata(values: np.ndarray, axis: int = 1) -> np.ndarray:
    """Midranks along ``axis`` (ties share the mean of their ranks), as
    ``scipy.stats.rankdata(method="average")`` computes them, in NumPy: importing scipy.stats
    costs ``ncood analyze`` a second before any work."""
    values = np.moveaxis(np.asarray(values), axis, -1)
    order = np.argsort(values, axis=-1, kind="mergesort")
    ordered = np.take_along_axis(values, order, axis=-1)
    ranks = np.empty(values.shape, np.float64)
    for row in np.ndindex(values.shape[:-1]):
        sorted_row = ordered[row]
        starts = np.flatnonzero(np.concatenate([[True], sorted_row[1:] != sorted_row[:-1]]))
        counts = np.diff(np.concatenate([starts, [sorted_row.size]]))
        # ranks starts+1 … starts+count: their mean is starts + (count + 1) / 2
        mean_rank = np.repeat(starts + 0.5 * (counts + 1), counts)
        ranks[row + (order[row],)] = mean_rank
    return np.moveaxis(ranks, -1, axis)


def _placements(
    id_scores: np.ndarray, ood_scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AUROCs (k,) and the placement counts behind the structural components: (k, m) how many
    OOD samples lie below each ID sample, (k, n) how many ID samples lie above each OOD sample
    (ties one half). Counts are exact half-integers in float64, so two scorers ranking the
    samples alike have bit-identical rows."""
    x = np.atleast_2d(np.asarray(id_scores, np.float64))
    y = np.atleast_2d(np.asarray(ood_scores, np.float64))
    m, n = x.shape[1], y.shape[1]
    if m == 0 or n == 0:
        raise ValueError("both the ID and the OOD scores must be non-empty")
    rank_x = rankdata(x, axis=1)  # midranks within ID
    rank_y = rankdata(y, axis=1)  # midranks within OOD
    rank_z = rankdata(np.concatenate([x, y], axis=1), axis=1)  # midranks in both
    auroc = (rank_z[:, :m].sum(axis=1) - m * (m + 1) / 2.0) / (m * n)
    below = rank_z[:, :m] - rank_x
    above = m - (rank_z[:, m:] - rank_y)
    return auroc, below, above


def structural_components(
    id_scores: np.ndarray, ood_scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AUROCs (k,), ID components V10 (k, m) and OOD components V01 (k, n) of k scorers.

    ``id_scores`` is (k, m), ``ood_scores`` (k, n): row r is scorer r on the same samples.
    V10[r, i] is the share of OOD samples below ID sample i (ties one half), V01[r, j] the share
    of ID samples above OOD sample j; each AUROC is the mean of either.
    """
    auroc, below, above = _placements(id_scores, ood_scores)
    return auroc, below / above.shape[1], above / below.shape[1]


def covariance(v10: np.ndarray, v01: np.ndarray) -> np.ndarray:
    """DeLong's covariance matrix (k, k) of the k AUROCs: S10 / m + S01 / n."""
    m, n = v10.shape[1], v01.shape[1]
    s10 = np.atleast_2d(np.cov(v10)) if m > 1 else np.zeros((len(v10), len(v10)))
    s01 = np.atleast_2d(np.cov(v01)) if n > 1 else np.zeros((len(v01), len(v01)))
    return s10 / m + s01 / n


def _variance_of_rows(values: np.ndarray) -> np.ndarray:
    """Sample variance (n − 1) of each row; 0 for a single column (it estimates nothing)."""
    if values.shape[1] < 2:
        return np.zeros(len(values))
    return np.var(values, axis=1, ddof=1)


def difference_variance(below: np.ndarray, above: np.ndarray) -> np.ndarray:
    """DeLong's variance (k, k) of every pair's AUROC difference, computed from the per-sample
    differences of the structural components, var(V10ᵢ − V10ⱼ)/m + var(V01ᵢ − V01ⱼ)/n.

    Not var_i + var_j − 2·cov: at ImageNet size that subtraction cancels to rounding noise for
    near-identical scorers (one swapped pair at 100k × 100k gives a true variance ~1e-20 beside
    variances ~1e-6). Here two identical rankings give exactly 0. ``below``/``above`` are the
    placement counts of `_placements`; their differences are exact, divided once at the end.
    """
    k, m = below.shape
    n = above.shape[1]
    variance = np.zeros((k, k))
    for i in range(k - 1):
        v10 = _variance_of_rows(below[i] - below[i + 1 :]) / (float(n) ** 2 * m)
        v01 = _variance_of_rows(above[i] - above[i + 1 :]) / (float(m) ** 2 * n)
        variance[i, i + 1 :] = variance[i + 1 :, i] = v10 + v01
    return variance


def pairwise_pvalues(
    id_scores: np.ndarray, ood_scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """AUROCs (k,) and the two-sided p-value of each pair's AUROC difference (k, k).

    The diagonal is 1. A pair whose difference has zero estimated variance (exactly: the same
    ranking gives the same placement counts) gets p = 1 when the AUROCs are equal and 0
    otherwise (only possible with a single ID or OOD sample, or with two scorers that each
    separate the sets completely, one each way).
    """
    auroc, below, above = _placements(id_scores, ood_scores)
    variance = difference_variance(below, above)
    # From the exact placement totals, not auroc_i − auroc_j: each AUROC is rounded to ~1e-16,
    # a millionth of a difference of 1/(m·n) at 100k × 100k.
    totals = below.sum(axis=1)
    difference = (totals[:, None] - totals[None, :]) / (float(below.shape[1]) * above.shape[1])
    degenerate = variance == 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.abs(difference) / np.sqrt(variance)
    from scipy.special import ndtr  # the normal CDF; imported when p-values are computed

    pvalues = 2.0 * ndtr(-z)
    pvalues = np.where(degenerate, np.where(difference == 0.0, 1.0, 0.0), pvalues)
    np.fill_diagonal(pvalues, 1.0)
    return auroc, np.clip(pvalues, 0.0, 1.0)
