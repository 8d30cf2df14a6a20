"""Statistics of the ID train features that several scorers share, computed once per split.

Core, not a plugin: built-in and third-party scorers alike import it.

Mahalanobis, RMDS, ViM and NECO all need a D×D second-moment matrix of the same train
features; computing it is most of their cost. :func:`train_moments` computes it once, in float64,
streamed over the split in chunks (memory O(chunk·D + D² + C·D), whatever N), and keeps it for
as long as the split's arrays live; every scorer then derives its own matrix from it in O(D²).

Two passes, so nothing cancels: the first sums each class and gives the class means; the
second accumulates the within-class scatter Σᵢ (xᵢ − μ_{yᵢ})(xᵢ − μ_{yᵢ})ᵀ of the residuals
by blocked syrk. The scatter about the global mean is then that plus the between-class
Σ_c n_c (μ_c − m)(μ_c − m)ᵀ, a sum of two positive semi-definite terms. The chunks' pieces
run one thread per core (:mod:`ncood.store.chunked`).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ncood.errors import NcoodError
from ncood.store.chunked import fold_chunks, map_chunks, serial_blas
from ncood.store.features import Split


@dataclass(frozen=True)
class TrainMoments:
    """Sufficient statistics of the ID train features (all float64).

    ``scatter`` is Σᵢ (xᵢ − m)(xᵢ − m)ᵀ about the global mean ``mean``; ``class_sums`` holds
    Σ_{i∈c} (xᵢ − m) per class, from which :attr:`class_means` derives μ_c;
    ``within_scatter`` is Σᵢ (xᵢ − μ_{yᵢ})(xᵢ − μ_{yᵢ})ᵀ and ``class_within`` Σ_{i∈c} ‖xᵢ − μ_c‖².
    """

    count: int
    mean: np.ndarray
    scatter: np.ndarray
    class_counts: np.ndarray
    class_sums: np.ndarray
    within_scatter: np.ndarray
    class_within: np.ndarray
    centres: np.ndarray  # C×D: the class means (raw sums / counts; 0 for an empty class)

    @property
    def class_means(self) -> np.ndarray:
        """C×D class means μ_c; every class must have a train sample."""
        require_every_class(self.class_counts)
        return self.centres

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    def global_covariance(self) -> np.ndarray:
        """Σ₀ = (1/N) Σᵢ (xᵢ − m)(xᵢ − m)ᵀ."""
        return self.scatter / self.count

    def within_class_covariance(self) -> np.ndarray:
        """The tied covariance Σ = (1/N) Σ_c Σ_{i∈c} (xᵢ − μ_c)(xᵢ − μ_c)ᵀ (accumulated from
        the residuals themselves, not as a difference)."""
        return self.within_scatter / self.count

    def second_moment_about(self, origin: np.ndarray) -> np.ndarray:
        """(1/N) Σᵢ (xᵢ − o)(xᵢ − o)ᵀ = Σ₀ + (m − o)(m − o)ᵀ."""
        shift = self.mean - np.asarray(origin, np.float64)
        return self.global_covariance() + np.outer(shift, shift)

    def std(self) -> np.ndarray:
        """Per-feature population standard deviation (ddof = 0, as scikit-learn's scaler)."""
        return np.sqrt(np.clip(np.diag(self.scatter) / self.count, 0.0, None))


_cache: dict[tuple, tuple[weakref.ref, weakref.ref, object]] = {}


def _memo(kind: str, arrays: tuple[np.ndarray, ...], compute: Callable[[], object]) -> object:
    """``compute()``, remembered while every array of ``arrays`` is alive (a features file's
    views live as long as its dump, so each statistic is computed once per file)."""
    key = (kind, *map(id, arrays))
    hit = _cache.get(key)
    if hit is not None and all(ref() is array for ref, array in zip(hit[0], arrays, strict=True)):
        return hit[1]
    value = compute()
    for stale in [k for k, (refs, _) in _cache.items() if any(r() is None for r in refs)]:
        del _cache[stale]
    _cache[key] = (tuple(weakref.ref(a) for a in arrays), value)
    return value


def train_moments(
    train: Split, num_classes: int, part: str = "features", rows: int | None = None
) -> TrainMoments:
    """The moments of ``train`` (or of one of its stages, ``part="layers/<stage>"``), computed
    on first use (in chunks of ``rows``) and shared while its arrays are alive."""
    arrays = (train.part(part), train.labels)
    return _memo(
        f"moments/{num_classes}", arrays, lambda: compute_moments(train, num_classes, part, rows)
    )


def compute_moments(
    split: Split, num_classes: int, part: str = "features", rows: int | None = None
) -> TrainMoments:
    """Two streamed passes (class sums, then the residuals' scatter); see the module docstring."""
    labels = split.labels
    counts = np.bincount(labels, minlength=num_classes)[:num_classes].astype(np.float64)

    def sums(piece):
        values = piece.part(part).astype(np.float64)
        return values.sum(axis=0), class_sums(values, piece.labels, num_classes)

    total, raw_class_sums = fold_chunks(split, sums, (part, "labels"), rows)
    n = len(split)
    mean = total / n
    centres = raw_class_sums / np.maximum(counts, 1.0)[:, None]

    def within(piece):
        residual = piece.part(part).astype(np.float64)
        residual -= centres[piece.labels]
        squared = np.einsum("ij,ij->i", residual, residual)
        # NumPy hands Aᵀ·A to BLAS syrk.
        return residual.T @ residual, np.bincount(piece.labels, squared, num_classes)

    within_scatter, class_within = fold_chunks(split, within, (part, "labels"), rows)
    offsets = centres - mean
    offsets[counts == 0] = 0.0
    between = (offsets.T * counts) @ offsets
    return TrainMoments(
        n,
        mean,
        within_scatter + between,
        counts,
        offsets * counts[:, None],
        within_scatter,
        class_within[:num_classes],
        centres,
    )


@dataclass(frozen=True)
class LogitSummary:
    """What the network decided on a split: argmax of the logits, and the mean max logit."""

    predictions: np.ndarray  # N int64
    mean_max_logit: float


def logit_summary(split: Split) -> LogitSummary:
    """Computed in one streamed pass over the logits, remembered while they are alive."""

    def compute() -> LogitSummary:
        predictions = np.empty(len(split), np.int64)
        total = 0.0
        for rows, argmax, peak_sum in map_chunks(split, _argmax_and_peak, ("logits",)):
            predictions[rows] = argmax
            total += peak_sum
        return LogitSummary(predictions, total / max(len(split), 1))

    return _memo("logits", (split.logits,), compute)


def _argmax_and_peak(chunk) -> tuple[slice, np.ndarray, float]:
    logits = chunk.logits
    argmax = np.argmax(logits, axis=1)
    return (
        chunk.rows,
        argmax,
        float(logits[np.arange(len(argmax)), argmax].astype(np.float64).sum()),
    )


def require_every_class(counts: np.ndarray) -> None:
    """A class without an ID train sample has no mean: a user error naming the classes."""
    missing = np.flatnonzero(np.asarray(counts) == 0).tolist()
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (" …" if len(missing) > 10 else "")
        raise NcoodError(
            f"{len(missing)} class(es) have no train sample ({shown}); "
            "their class means are undefined"
        )


def class_sums(values: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """C×D float64 per-class sums, as one sparse one-hot product (no Python loop over classes)."""
    import scipy.sparse  # 0.4 s to import: paid by the scorers that need class sums, when used

    n = values.shape[0]
    one_hot = scipy.sparse.csr_matrix((np.ones(n), (labels, np.arange(n))), shape=(num_classes, n))
    return np.asarray(one_hot @ np.asarray(values, np.float64))


def ridged(matrix: np.ndarray, ridge: float) -> np.ndarray:
    """matrix + ridge · (tr(matrix)/D) · I: a ridge relative to the mean variance."""
    dim = matrix.shape[0]
    scale = float(np.trace(matrix)) / dim
    return matrix + (ridge * (scale if scale > 0 else 1.0)) * np.eye(dim)


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


def logsumexp_rows(logits: np.ndarray) -> np.ndarray:
    """log Σ_c exp(z_c) per row, in float64, shifted by the row maximum (never overflows).

    The same values as ``scipy.special.logsumexp(z, axis=1)`` (to 1e-15), without its
    per-call overhead (half a second on the first call in a fresh process).
    """
    values = np.asarray(logits, np.float64)
    peak = values.max(axis=1)
    return peak + np.log(np.exp(values - peak[:, None]).sum(axis=1))


def predicted_classes(logits: np.ndarray | Split) -> np.ndarray:
    """The network's decision: argmax of the logits (ties go to the lowest class); of a split,
    streamed and remembered while its logits are alive."""
    if isinstance(logits, Split):
        return logit_summary(logits).predictions
    return np.argmax(logits, axis=1)


def head_arrays(head) -> tuple[np.ndarray, np.ndarray]:
    """(W, b) as float64 C×D and C."""
    if head is None:
        raise NcoodError("this scorer needs the classifier head (head/weight, head/bias)")
    return np.asarray(head.weight, np.float64), np.asarray(head.bias, np.float64)


def percentile(split: Split, q: float, part: str = "features") -> float:
    """``np.percentile(values, q)`` (linear method) of every value of ``split``'s float32
    ``part``, exactly, in two streamed histogram passes instead of a copy of all N×D values.

    Float32 values map to uint32 keys in the same order; pass 1 counts the keys' high 16 bits,
    pass 2 the low 16 bits of the values in the one or two bins holding the wanted ranks,
    which pins each of the two neighbouring order statistics down to its bit pattern.
    """
    total = len(split) * int(np.prod(split.part(part).shape[1:], dtype=np.int64))
    virtual = (total - 1) * (q / 100)
    below = int(np.floor(virtual))
    ranks = (below, min(below + 1, total - 1))

    def keys(chunk) -> np.ndarray:
        bits = np.ascontiguousarray(chunk.part(part), np.float32).reshape(-1).view(np.uint32)
        negative = bits >> 31 == 1
        return np.where(negative, ~bits, bits | np.uint32(0x80000000))

    def high(chunk) -> tuple[np.ndarray]:
        return (np.bincount(keys(chunk) >> 16, minlength=1 << 16),)

    (counts,) = fold_chunks(split, high, (part,))
    cumulative = np.cumsum(counts)
    bins = sorted({int(np.searchsorted(cumulative, rank, side="right")) for rank in ranks})

    def low(chunk) -> tuple[np.ndarray, ...]:
        key = keys(chunk)
        top = key >> 16
        return tuple(np.bincount(key[top == b] & 0xFFFF, minlength=1 << 16) for b in bins)

    lows = fold_chunks(split, low, (part,))
    values = []
    for rank in ranks:
        b = int(np.searchsorted(cumulative, rank, side="right"))
        before = int(cumulative[b - 1]) if b else 0
        inner = np.cumsum(lows[bins.index(b)])
        key = np.uint32((b << 16) | int(np.searchsorted(inner, rank - before, side="right")))
        bits = key & np.uint32(0x7FFFFFFF) if key >> 31 else ~key
        values.append(np.array(bits, np.uint32).view(np.float32)[()])
    first, second = values
    gamma = virtual - below
    diff = second - first  # float32 arithmetic, as NumPy's _lerp on a float32 array
    return float(second - diff * (1 - gamma) if gamma >= 0.5 else first + diff * gamma)
