"""Statistics of the ID train features that several scorers share, computed once per split,
and the block-parallel loop the scorers run their large products in.

Core, not a plugin: built-in and third-party scorers alike import it.

Mahalanobis, RMDS, ViM and NECO all need a D×D second-moment matrix of the same 50,000 train
features; computing it is most of their cost. :func:`train_moments` computes it once, in float64
on globally centred features (so nothing cancels), and keeps it for as long as the split's
arrays live; every scorer then derives its own matrix from it in O(D²).

Large products go through :func:`map_blocks`: row blocks processed by one thread per core, each
with single-threaded BLAS. On the shared 2-core development VM this beat OpenBLAS's own threading
by 3× for the 50,000 × 512 scatter matrix (syrk: 0.3 s against 1.0 s while another process held
a core), and it never lets BLAS threads spin against each other.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import scipy.sparse
from threadpoolctl import threadpool_limits

from ncood.errors import NcoodError
from ncood.features import Split

BLOCK_ROWS = 8192  # rows per block when a split is processed piecewise (bounds memory)
WORKERS = max(1, min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1, 8))
Result = TypeVar("Result")


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

    def block(rows: slice) -> tuple[np.ndarray, np.ndarray]:
        centred = features[rows].astype(np.float64)
        centred -= mean
        # NumPy hands Aᵀ·A to BLAS syrk.
        return centred.T @ centred, class_sums(centred, labels[rows], num_classes)

    parts = map_blocks(block, features.shape[0])
    scatter = np.sum([scatter for scatter, _ in parts], axis=0)
    sums = np.sum([sums for _, sums in parts], axis=0)
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


def serial_blas():
    """A context in which BLAS runs on one thread, for LAPACK on small (D×D) matrices.

    OpenBLAS's threaded level-2 kernels inside ``eigh`` cost more in synchronisation than they
    save at D = 512 — and far more when other processes share the cores (a 512 × 512 ``eigh``
    measured 0.06 s on one thread, 0.2–3.8 s on two on the shared development VM).
    """
    return threadpool_limits(1, user_api="blas")


def symmetric_eigh(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (ascending) and eigenvectors of a small symmetric matrix, on one thread."""
    with serial_blas():
        return np.linalg.eigh(matrix)


def cholesky(matrix: np.ndarray, what: str) -> np.ndarray:
    try:
        with serial_blas():
            return np.linalg.cholesky(matrix)
    except np.linalg.LinAlgError:
        raise NcoodError(
            f"the {what} is not positive definite even with the ridge; raise the ridge parameter"
        ) from None


def blocks(count: int, size: int = BLOCK_ROWS) -> Iterator[slice]:
    for start in range(0, count, size):
        yield slice(start, min(start + size, count))


def map_blocks(
    function: Callable[[slice], Result], count: int, size: int = BLOCK_ROWS
) -> list[Result]:
    """``[function(rows) for rows in blocks(count, size)]``, one thread per core, each block's
    BLAS single-threaded (NumPy releases the GIL inside BLAS, so the blocks run in parallel)."""
    slices = list(blocks(count, size))
    with serial_blas():
        if WORKERS == 1 or len(slices) == 1:
            return [function(rows) for rows in slices]
        with ThreadPoolExecutor(min(WORKERS, len(slices))) as pool:
            return list(pool.map(function, slices))


def map_rows(function: Callable[[slice], np.ndarray], count: int) -> np.ndarray:
    """:func:`map_blocks` for a function returning one value per row: the values, in order."""
    if count == 0:
        return np.empty(0)
    return np.concatenate(map_blocks(function, count))


def logsumexp_rows(logits: np.ndarray) -> np.ndarray:
    """log Σ_c exp(z_c) per row, in float64, shifted by the row maximum (never overflows).

    The same values as ``scipy.special.logsumexp(z, axis=1)`` (to 1e-15), without its
    per-call overhead (half a second on the first call in a fresh process).
    """
    values = np.asarray(logits, np.float64)
    peak = values.max(axis=1)
    return peak + np.log(np.exp(values - peak[:, None]).sum(axis=1))


def predicted_classes(split: Split) -> np.ndarray:
    """The network's decision: argmax of the logits."""
    return np.argmax(split.logits, axis=1)


def head_arrays(head) -> tuple[np.ndarray, np.ndarray]:
    """(W, b) as float64 C×D and C."""
    if head is None:
        raise NcoodError("this scorer needs the classifier head (head/weight, head/bias)")
    return np.asarray(head.weight, np.float64), np.asarray(head.bias, np.float64)
