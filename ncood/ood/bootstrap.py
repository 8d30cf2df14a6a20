"""Stratified bootstrap of the OOD metrics, vectorised over resamples and shared by scorers.

A resample draws the ID scores and the OOD scores separately, with replacement, keeping both
sizes. It is represented by how many times each original sample is drawn (a count matrix, one
row per resample), so a scorer's scores are sorted once and every resample's ROC curve is a
cumulative sum of counts in that order: no sort, no sklearn call per resample.

The same count matrices serve every scorer (the resamples are paired across scorers), and the
ID counts are the same for every OOD set of one call, so a mean over OOD sets can be bootstrapped
by averaging the per-set resample values.

Each metric follows `ncood.ood.conventions` exactly (ties included): AUROC with ID positive and ties
counted one half, AUPR-In and AUPR-Out as sklearn's average precision over distinct thresholds,
FPR@95 at the first threshold that keeps 95 % of ID.
"""

from __future__ import annotations

import os
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ncood.ood.conventions import ID_RECALL
from ncood.ood.defaults import DEFAULT_RESAMPLES

METRICS = ("auroc", "aupr_in", "aupr_out", "fpr95")
DEFAULT_LEVEL = 0.95
METHOD = "stratified percentile bootstrap"
_CHUNK_CELLS = 1 << 18  # sample cells per block of resamples: keeps a block's arrays in cache
WORKERS = max(1, min(4, os.cpu_count() or 1))
_DRAW_ROWS = 64  # resamples drawn per call (part of the stream's definition)


@dataclass(frozen=True)
class _Ranked:
    """One scorer's scores sorted once, with where each sample's threshold cuts the other class."""

    order_id: np.ndarray  # ID samples, descending score
    order_ood: np.ndarray  # OOD samples, descending score
    id_through: np.ndarray | None  # per sorted ID sample: #ID >= it (None: no ties, i + 1)
    ood_at_id: np.ndarray  # per sorted ID sample: #OOD >= it
    id_above_ood: np.ndarray  # per sorted OOD sample: #ID > it
    id_through_ood: np.ndarray | None  # per sorted OOD sample: #ID >= it (None: same as above)
    ood_above: np.ndarray | None  # per sorted OOD sample: #OOD > it (None: no ties, j)


def _rank(id_scores: np.ndarray, ood_scores: np.ndarray) -> _Ranked:
    order_id = np.argsort(-id_scores, kind="stable")
    order_ood = np.argsort(-ood_scores, kind="stable")
    asc_id, asc_ood = np.sort(id_scores), np.sort(ood_scores)
    x, y = id_scores[order_id], ood_scores[order_ood]
    n1, n0 = len(x), len(y)

    def at_least(sorted_asc, values):  # how many of sorted_asc are >= each value
        return len(sorted_asc) - np.searchsorted(sorted_asc, values, side="left")

    def above(sorted_asc, values):  # how many are > each value
        return len(sorted_asc) - np.searchsorted(sorted_asc, values, side="right")

    id_through = at_least(asc_id, x)
    ood_above = above(asc_ood, y)
    id_above_ood = above(asc_id, y)
    id_through_ood = at_least(asc_id, y)
    return _Ranked(
        order_id=order_id,
        order_ood=order_ood,
        id_through=None if np.array_equal(id_through, np.arange(1, n1 + 1)) else id_through,
        ood_at_id=at_least(asc_ood, x),
        id_above_ood=id_above_ood,
        id_through_ood=None if np.array_equal(id_through_ood, id_above_ood) else id_through_ood,
        ood_above=None if np.array_equal(ood_above, np.arange(n0)) else ood_above,
    )


class _Workspace:
    """Buffers for one block of resamples, reused across scorers (no allocation per scorer)."""

    def __init__(self, rows: int, n1: int, n0: int) -> None:
        self.w1 = np.empty((rows, n1), np.int32)
        self.w0 = np.empty((rows, n0), np.int32)
        self.tp_cum = np.zeros((rows, n1 + 1), np.int32)  # column 0 stays 0
        self.fp_cum = np.zeros((rows, n0 + 1), np.int32)
        self.at_id = np.empty((rows, n1), np.int32)
        self.at_ood = np.empty((rows, n0), np.int32)
        self.at_ood2 = np.empty((rows, n0), np.int32)
        self.ratio_id = np.empty((rows, n1), np.float64)
        self.ratio_ood = np.empty((rows, n0), np.float64)
        self.denominator_ood = np.empty((rows, n0), np.int32)
        self.below_ood = np.empty((rows, n0), np.int32)


def _metrics_block(
    ranked: _Ranked, w_id: np.ndarray, w_ood: np.ndarray, space: _Workspace | None = None
) -> np.ndarray:
    """The four metrics for a block of resamples given as count rows; shape (rows, 4)."""
    rows, n1 = w_id.shape
    n0 = w_ood.shape[1]
    if space is None or space.w1.shape[0] != rows:
        space = _Workspace(rows, n1, n0)
    w1 = np.take(w_id, ranked.order_id, axis=1, out=space.w1)  # counts, descending score
    w0 = np.take(w_ood, ranked.order_ood, axis=1, out=space.w0)
    tp_cum, fp_cum = space.tp_cum, space.fp_cum  # [:, k] = count among the first k
    np.cumsum(w1, axis=1, out=tp_cum[:, 1:])
    np.cumsum(w0, axis=1, out=fp_cum[:, 1:])

    # At each ID sample's threshold (score >= it): TP, FP; precision, then AUPR-In.
    tp = tp_cum[:, 1:] if ranked.id_through is None else tp_cum[:, ranked.id_through]
    fp = np.take(fp_cum, ranked.ood_at_id, axis=1, out=space.at_id)
    np.add(tp, fp, out=fp)
    np.maximum(fp, 1, out=fp)  # 0 only where tp = 0, whose term is 0 anyway
    precision = np.divide(tp, fp, out=space.ratio_id)
    aupr_in = np.einsum("ij,ij->i", w1, precision) / n1
    # FPR@95: the first threshold with tp / n1 >= ID_RECALL (sklearn's float test), as a count.
    needed = int(np.argmax(np.arange(n1 + 1) / n1 >= ID_RECALL))
    first = np.count_nonzero(tp < needed, axis=1)
    first_at = ranked.ood_at_id[first]
    fpr95 = fp_cum[np.arange(rows), first_at] / n0

    # At each OOD sample: ID strictly above it (and tied with it), OOD strictly above it.
    tp_above = np.take(tp_cum, ranked.id_above_ood, axis=1, out=space.at_ood)
    if ranked.id_through_ood is None:
        pairs = np.einsum("ij,ij->i", w0, tp_above, dtype=np.float64)
    else:
        tp_through = np.take(tp_cum, ranked.id_through_ood, axis=1, out=space.at_ood2)
        pairs = np.einsum("ij,ij->i", w0, tp_through, dtype=np.float64)
        pairs += np.einsum("ij,ij->i", w0, tp_above, dtype=np.float64)
        pairs /= 2.0
    auroc = pairs / (float(n1) * n0)
    if ranked.ood_above is None:
        fp_above = fp_cum[:, :-1]
    else:
        fp_above = np.take(fp_cum, ranked.ood_above, axis=1, out=space.at_ood2)
    ood_below = np.subtract(n0, fp_above, out=space.below_ood)  # OOD <= it, it included
    rejected = np.subtract(n0 + n1, fp_above, out=space.denominator_ood)
    rejected -= tp_above
    np.maximum(rejected, 1, out=rejected)  # 0 only where this sample's count is 0
    precision_out = np.divide(ood_below, rejected, out=space.ratio_ood)
    aupr_out = np.einsum("ij,ij->i", w0, precision_out) / n0
    return np.stack([auroc, aupr_in, aupr_out, fpr95], axis=1)


def _counts(rng: np.random.Generator, resamples: int, size: int) -> np.ndarray:
    """How often each of ``size`` samples is drawn in each resample (rows sum to ``size``).

    Drawn in fixed blocks of rows, so memory stays small and the stream depends only on the
    seed, the number of resamples and the size.
    """
    out = np.empty((resamples, size), dtype=np.int32)
    for start in range(0, resamples, _DRAW_ROWS):
        rows = min(_DRAW_ROWS, resamples - start)
        draws = rng.integers(0, size, (rows, size))
        draws += (np.arange(rows) * size)[:, None]
        out[start : start + rows] = np.bincount(draws.ravel(), minlength=rows * size).reshape(
            rows, size
        )
    return out


def id_rng(seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, 0])


def ood_rng(seed: int, ood_name: str) -> np.random.Generator:
    """One stream per OOD set, from its name: adding or reordering sets changes no other set."""
    return np.random.default_rng([seed, 1, zlib.crc32(ood_name.encode())])


def resampled_metrics(
    id_scores: dict[str, np.ndarray],
    ood_scores: dict[str, np.ndarray],
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    ood_name: str = "ood",
    id_counts: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Each scorer's metrics on every resample: scorer → array (resamples, 4) in METRICS order.

    ``id_scores[s]`` and ``ood_scores[s]`` are scorer ``s``'s scores on the same ID and OOD
    samples for every scorer. ``id_counts`` lets several OOD sets share one ID resampling (see
    `id_resamples`); otherwise it is drawn from ``seed``.
    """
    if not id_scores:
        return {}
    n1 = len(next(iter(id_scores.values())))
    n0 = len(next(iter(ood_scores.values())))
    if n1 == 0 or n0 == 0:
        raise ValueError("both the ID and the OOD scores must be non-empty")
    if resamples < 1:
        raise ValueError("resamples must be at least 1")
    w_id = id_resamples(seed, resamples, n1) if id_counts is None else id_counts
    if w_id.shape != (resamples, n1):
        raise ValueError(f"id_counts has shape {w_id.shape}, expected {(resamples, n1)}")
    w_ood = _counts(ood_rng(seed, ood_name), resamples, n0)
    ranked = {
        name: _rank(
            np.asarray(id_scores[name], np.float64), np.asarray(ood_scores[name], np.float64)
        )
        for name in id_scores
    }
    out = {name: np.empty((resamples, len(METRICS))) for name in id_scores}
    step = max(1, min(resamples, _CHUNK_CELLS // (n1 + n0)))
    local = threading.local()

    def one_block(start: int) -> None:
        block = slice(start, min(start + step, resamples))
        rows = block.stop - block.start
        space = getattr(local, "space", None)
        if space is None or space.w1.shape[0] != rows:
            space = local.space = _Workspace(rows, n1, n0)
        for name, one in ranked.items():
            out[name][block] = _metrics_block(one, w_id[block], w_ood[block], space)

    starts = range(0, resamples, step)
    workers = min(WORKERS, len(starts))
    if workers == 1:
        for start in starts:
            one_block(start)
    else:  # NumPy releases the GIL in take, cumsum and the ufuncs: blocks run in parallel
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(one_block, starts))
    return out


def id_resamples(seed: int, resamples: int, size: int) -> np.ndarray:
    """The ID count matrix drawn from ``seed``: pass it to every OOD set's call."""
    return _counts(id_rng(seed), resamples, size)


def point_metrics(id_scores: np.ndarray, ood_scores: np.ndarray) -> dict[str, float]:
    """The four metrics on the original samples, through the same code (all counts one)."""
    ones_id = np.ones((1, len(id_scores)), np.int32)
    ones_ood = np.ones((1, len(ood_scores)), np.int32)
    ranked = _rank(np.asarray(id_scores, np.float64), np.asarray(ood_scores, np.float64))
    values = _metrics_block(ranked, ones_id, ones_ood)[0]
    return dict(zip(METRICS, map(float, values), strict=True))


def percentile_interval(values: np.ndarray, level: float = DEFAULT_LEVEL) -> np.ndarray:
    """The percentile interval of resampled values along axis 0: shape (2, ...)."""
    tail = (1.0 - level) / 2.0
    return np.quantile(values, [tail, 1.0 - tail], axis=0)


def intervals(
    resampled: dict[str, np.ndarray], level: float = DEFAULT_LEVEL
) -> dict[str, dict[str, list[float]]]:
    """scorer → metric → [lo, hi] from `resampled_metrics`' output."""
    out = {}
    for name, values in resampled.items():
        bounds = percentile_interval(values, level)
        out[name] = {
            metric: [float(bounds[0, k]), float(bounds[1, k])] for k, metric in enumerate(METRICS)
        }
    return out
