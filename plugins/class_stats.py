"""Statistics of the ID train features that several scorers share, computed once per split.

Mahalanobis, RMDS, ViM and NECO all need a D×D second-moment matrix of the same 50,000 train
features; computing it is most of their cost. :func:`train_moments` computes it once, in float64
on globally centred features (so nothing cancels), and keeps it for as long as the split's
arrays live; every scorer then derives its own matrix from it in O(D²).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import scipy.sparse

from ncood.errors import NcoodError
from ncood.features import Split

BLOCK_ROWS = 8192  # rows per block when a split is processed piecewise (bounds memory)


@dataclass(frozen=True)
class TrainMoments:
    """Sufficient statistics of the ID train features (all float64).

    ``scatter`` is Σᵢ (xᵢ − m)(xᵢ − m)ᵀ about the global mean ``mean``; ``class_sums`` holds
    Σ_{i∈c} (xᵢ − m) per class, from which :attr:`class_means` derives μ_c.
    """

    count: int
    mean: np.ndarray
    scatter: np.ndarray
    class_counts: np.ndarray
    class_sums: np.ndarray

    @property
    def class_means(self) -> np.ndarray:
        """C×D class means μ_c; every class must have a train sample."""
        if np.any(self.class_counts == 0):
            missing = np.flatnonzero(self.class_counts == 0).tolist()
            shown = ", ".join(map(str, missing[:10])) + (" …" if len(missing) > 10 else "")
            raise NcoodError(
                f"the ID train split has no sample of class {shown}; class means are undefined"
            )
        return self.mean + self.class_sums / self.class_counts[:, None]

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    def global_covariance(self) -> np.ndarray:
        """Σ₀ = (1/N) Σᵢ (xᵢ − m)(xᵢ − m)ᵀ."""
        return self.scatter / self.count

    def within_class_covariance(self) -> np.ndarray:
        """The tied covariance Σ = (1/N) Σ_c Σ_{i∈c} (xᵢ − μ_c)(xᵢ − μ_c)ᵀ.

        Uses Σᵢ (xᵢ − μ_c)(xᵢ − μ_c)ᵀ = scatter − Σ_c n_c (μ_c − m)(μ_c − m)ᵀ.
        """
        offsets = self.class_means - self.mean
        between = (offsets.T * self.class_counts) @ offsets
        return (self.scatter - between) / self.count

    def second_moment_about(self, origin: np.ndarray) -> np.ndarray:
        """(1/N) Σᵢ (xᵢ − o)(xᵢ − o)ᵀ = Σ₀ + (m − o)(m − o)ᵀ."""
        shift = self.mean - np.asarray(origin, np.float64)
        return self.global_covariance() + np.outer(shift, shift)

    def std(self) -> np.ndarray:
        """Per-feature population standard deviation (ddof = 0, as scikit-learn's scaler)."""
        return np.sqrt(np.clip(np.diag(self.scatter) / self.count, 0.0, None))


_cache: dict[tuple[int, int, int], tuple[weakref.ref, weakref.ref, TrainMoments]] = {}


def train_moments(train: Split, num_classes: int) -> TrainMoments:
    """The moments of ``train``, computed on first use and shared while its arrays are alive."""
    key = (id(train.features), id(train.labels), num_classes)
    hit = _cache.get(key)
    if hit is not None and hit[0]() is train.features and hit[1]() is train.labels:
        return hit[2]
    moments = compute_moments(train.features, train.labels, num_classes)
    for stale in [k for k, (f, y, _) in _cache.items() if f() is None or y() is None]:
        del _cache[stale]
    _cache[key] = (weakref.ref(train.features), weakref.ref(train.labels), moments)
    return moments


def compute_moments(features: np.ndarray, labels: np.ndarray, num_classes: int) -> TrainMoments:
    counts = np.bincount(labels, minlength=num_classes)[:num_classes].astype(np.float64)
    mean = features.mean(axis=0, dtype=np.float64)
    centred = features.astype(np.float64)
    centred -= mean
    scatter = centred.T @ centred  # NumPy hands Aᵀ·A to BLAS syrk
    sums = class_sums(centred, labels, num_classes)
    return TrainMoments(features.shape[0], mean, scatter, counts, sums)


def class_sums(values: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """C×D float64 per-class sums, as one sparse one-hot product (no Python loop over classes)."""
    n = values.shape[0]
    one_hot = scipy.sparse.csr_matrix((np.ones(n), (labels, np.arange(n))), shape=(num_classes, n))
    return np.asarray(one_hot @ np.asarray(values, np.float64))


def ridged(matrix: np.ndarray, ridge: float) -> np.ndarray:
    """matrix + ridge · (tr(matrix)/D) · I: a ridge relative to the mean variance."""
    dim = matrix.shape[0]
    scale = float(np.trace(matrix)) / dim
    return matrix + (ridge * (scale if scale > 0 else 1.0)) * np.eye(dim)


def cholesky(matrix: np.ndarray, what: str) -> np.ndarray:
    try:
        return np.linalg.cholesky(matrix)
    except np.linalg.LinAlgError:
        raise NcoodError(
            f"the {what} is not positive definite even with the ridge; raise the ridge parameter"
        ) from None


def blocks(count: int, size: int = BLOCK_ROWS) -> Iterator[slice]:
    for start in range(0, count, size):
        yield slice(start, min(start + size, count))


def predicted_classes(split: Split) -> np.ndarray:
    """The network's decision: argmax of the logits."""
    return np.argmax(split.logits, axis=1)


def head_arrays(head) -> tuple[np.ndarray, np.ndarray]:
    """(W, b) as float64 C×D and C."""
    if head is None:
        raise NcoodError("this scorer needs the classifier head (head/weight, head/bias)")
    return np.asarray(head.weight, np.float64), np.asarray(head.bias, np.float64)
