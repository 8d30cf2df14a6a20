"""DeLong's test at ImageNet size, where the variance of a near-zero difference must not cancel.

The reference is DeLong's O(m·n) definition evaluated only where it can be non-zero: two scorers
that give the same score to every sample but a few have the same ψ on every pair of unchanged
samples, so the matrix Δ = ψ₁ − ψ₂ over all (ID, OOD) pairs is zero outside the changed ID rows
and OOD columns. Those rows and columns are computed pair by pair from the definition; the
components' differences are their row and column means, in float64.
"""

import math

import numpy as np
from scipy.stats import norm
from test_delong import slow_delong

from ncood.ood.delong import pairwise_pvalues


def psi(id_values: np.ndarray, ood_values: np.ndarray) -> np.ndarray:
    """ψ of the definition, ID positive: 1 above, ½ tied, 0 below."""
    return (id_values > ood_values) + 0.5 * (id_values == ood_values)


def sparse_reference_p(x1, y1, x2, y2) -> float:
    """DeLong's p for scorers 1 and 2 from the definition, on the rows/columns where Δ ≠ 0."""
    m, n = x1.size, y1.size
    rows = np.flatnonzero(x1 != x2)  # changed ID samples
    cols = np.flatnonzero(y1 != y2)  # changed OOD samples
    delta_rows = psi(x1[rows, None], y1[None, :]) - psi(x2[rows, None], y2[None, :])  # (|A|, n)
    delta_cols = psi(x1[:, None], y1[None, cols]) - psi(x2[:, None], y2[None, cols])  # (m, |B|)
    # V10ᵢ − V10ⱼ: row means of Δ; an unchanged row is non-zero only in the changed columns
    d10 = delta_cols.sum(axis=1) / n
    d10[rows] = delta_rows.sum(axis=1) / n
    d01 = delta_rows.sum(axis=0) / m
    d01[cols] = delta_cols.sum(axis=0) / m
    difference = d10.mean()  # AUROC₁ − AUROC₂, the mean of Δ
    variance = np.sum((d10 - d10.mean()) ** 2) / (m - 1) / m
    variance += np.sum((d01 - d01.mean()) ** 2) / (n - 1) / n
    return float(2 * norm.sf(abs(difference) / math.sqrt(variance)))


def swap_adjacent_pair(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same scores but for one ID sample and the OOD sample just above it, swapped."""
    values = np.concatenate([x, y])
    order = np.argsort(values)
    is_id = order < x.size
    t = int(np.flatnonzero(is_id[:-1] & ~is_id[1:])[0])  # ID at t, OOD right above it
    a, b = order[t], order[t + 1] - x.size
    x2, y2 = x.copy(), y.copy()
    x2[a], y2[b] = y[b], x[a]
    return x2, y2


def test_the_sparse_reference_is_the_definition():
    """On small sets with a few changed samples, it equals the full O(m·n) computation."""
    rng = np.random.default_rng(5)
    for _ in range(20):
        m, n = rng.integers(5, 50), rng.integers(5, 60)
        x1, y1 = np.round(rng.normal(0.7, 1, m), 1), np.round(rng.normal(0, 1, n), 1)
        x2, y2 = x1.copy(), y1.copy()
        x2[rng.choice(m, 2, replace=False)] += rng.normal(0, 1, 2)
        y2[rng.choice(n, 3, replace=False)] += rng.normal(0, 1, 3)
        *_, p = slow_delong(np.stack([x1, x2]), np.stack([y1, y2]))
        assert abs(sparse_reference_p(x1, y1, x2, y2) - p[0, 1]) < 1e-12


def test_one_swapped_pair_at_100k_each_is_not_significant():
    """One swapped adjacent ID/OOD pair at 100,000 × 100,000: AUROCs differ by 1/(m·n), and
    the variance of the difference is 2/(m·n)² (one component of each side moves by 1/n,
    resp. 1/m), so z = 1/√2 and p = erfc(½) = 0.4795. The subtraction var₁ + var₂ − 2·cov
    lost it to rounding and said p = 0."""
    rng = np.random.default_rng(0)
    m = n = 100_000
    x, y = rng.normal(1.0, 1, m), rng.normal(0, 1, n)
    x2, y2 = swap_adjacent_pair(x, y)
    reference = sparse_reference_p(x, y, x2, y2)
    assert abs(reference - math.erfc(0.5)) < 1e-9  # the closed form above
    # a third scorer ranking every sample as the first does: exactly the same ranking
    auroc, p = pairwise_pvalues(np.stack([x, x2, 2.0 * x]), np.stack([y, y2, 2.0 * y]))
    assert abs(auroc[1] - auroc[0] - 1 / (m * n)) < 1e-15  # each AUROC is rounded to ~1e-16
    # the issue asks 1e-6; it agrees to rounding
    assert abs(p[0, 1] - reference) < 1e-12 and p[1, 0] == p[0, 1]
    assert abs(p[1, 2] - reference) < 1e-12
    assert p[0, 2] == 1.0  # identical rankings: variance exactly 0, p exactly 1


def test_sizes_along_the_way_agree_with_the_closed_form():
    """10k, 50k: the same p, whatever the size (the issue's table)."""
    rng = np.random.default_rng(1)
    for size in (10_000, 50_000):
        x, y = rng.normal(1.0, 1, size), rng.normal(0, 1, size)
        x2, y2 = swap_adjacent_pair(x, y)
        _, p = pairwise_pvalues(np.stack([x, x2]), np.stack([y, y2]))
        assert abs(p[0, 1] - math.erfc(0.5)) < 1e-6
