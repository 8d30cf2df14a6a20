"""Neural Collapse metrics as pure functions of arrays, in float64 (docs/neural-collapse.md).

Conventions, written once here and in the docs:

* class means μ_c are train means; the global mean μ_G is the mean of the class means
  (Papyan et al., 2020), so the centred means m_c = μ_c − μ_G sum to zero exactly and Σ_B has
  rank ≤ C − 1 by construction;
* Σ_W = (1/N) Σ_i (h_i − μ_{y_i})(h_i − μ_{y_i})ᵀ, Σ_B = (1/C) Σ_c m_c m_cᵀ;
* NC1 = Tr(Σ_W Σ_B†) / C, Σ_B† built from the top r eigenpairs of Σ_B with
  r = min(C − 1, D, numerical rank of the centred means);
* standard deviations are population ones (ddof = 0); pairs of classes are unordered (c < c').

Everything is streamed over the split in chunks (:meth:`ncood.store.features.Split.chunks`), memory
O(chunk·(D + C) + D² + C·D) whatever N. The class sums and the within-class scatter
N·Σ_W = Σ_i (h_i − μ_{y_i})(h_i − μ_{y_i})ᵀ come from the shared train moments
(:func:`ncood.maths.stats.train_moments`: two passes, the scatter of the residuals
themselves, so nothing cancels); then Tr(Σ_W Σ_B†) = Σ_k v_kᵀ Σ_W v_k / λ_k in O(D²·r). The
per-class variances are accumulated in the same pass. Only the nearest-class-centre predictions
need one more pass, in float32 with the rows whose two best classes are too close to call
recomputed in float64 (so the predictions are those of the float64 formula).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ncood.errors import NcoodError
from ncood.maths.stats import (
    TrainMoments,
    require_every_class,
    train_moments,
)
from ncood.store.chunked import fold_chunks, map_chunks
from ncood.store.features import Split

CHUNK_ROWS: int | None = None  # rows per chunk of the streamed passes (None: about 32 MiB)
FLOAT32_EPS = float(np.finfo(np.float32).eps) / 2  # unit roundoff u of float32


@dataclass(frozen=True)
class ClassMeans:
    """Train class means (uncentred), their counts, and the global mean μ_G (mean of means)."""

    means: np.ndarray  # C×D float64
    counts: np.ndarray  # C int64

    @property
    def num_classes(self) -> int:
        return int(self.means.shape[0])

    @property
    def global_mean(self) -> np.ndarray:
        return self.means.mean(axis=0)

    @property
    def centred(self) -> np.ndarray:
        return self.means - self.global_mean


@dataclass(frozen=True)
class BetweenClass:
    """Σ_B's top eigenpairs: Σ_B† = V diag(1/λ) Vᵀ with V = ``vectors`` (D×r)."""

    values: np.ndarray  # r, descending, all > 0
    vectors: np.ndarray  # D×r
    trace: float  # Tr Σ_B (all eigenvalues, not only the kept ones)

    @property
    def rank(self) -> int:
        return int(self.values.shape[0])


@dataclass
class TrainPass:
    """What one pass over the train features yields."""

    nc1: float | None  # None when the class means coincide (undefined, not 0)
    trace_within: float  # Tr Σ_W
    class_variance: np.ndarray  # C: mean ‖h − μ_c‖² over class c (0 for a one-sample class)
    ncc_predictions: np.ndarray  # N int64
    notes: list[str] = field(default_factory=list)


def as_split(features: np.ndarray, labels: np.ndarray | None = None) -> Split:
    """Arrays seen as a split (features only), for the array-level functions below."""
    n = features.shape[0]
    labels = np.zeros(n, np.int64) if labels is None else np.asarray(labels)
    return Split(features, np.empty((n, 0), np.float32), labels)


def collapse_moments(split: Split, num_classes: int, part: str = "features") -> TrainMoments:
    """The shared train moments of ``split``'s ``part``, after the checks NC needs: at least
    two classes, and a sample in each (else class means, hence the metrics, are undefined)."""
    if num_classes < 2:
        raise NcoodError(f"Neural Collapse needs at least 2 classes, the head has {num_classes}")
    require_every_class(np.bincount(split.labels, minlength=num_classes)[:num_classes])
    return train_moments(split, num_classes, part, CHUNK_ROWS)


def means_of(moments: TrainMoments) -> ClassMeans:
    return ClassMeans(moments.class_means, moments.class_counts.astype(np.int64))


def class_means(features: np.ndarray, labels: np.ndarray, num_classes: int) -> ClassMeans:
    """Class means in float64; a class without a sample is a user error (its mean is undefined)."""
    return means_of(collapse_moments(as_split(features, labels), num_classes))


def between_class(stats: ClassMeans) -> BetweenClass:
    """Eigenpairs of Σ_B from the SVD of the centred means (C×D), truncated to rank r.

    r = min(C − 1, D, numerical rank), the numerical rank counting singular values above
    max(C, D) · ε · s_max (NumPy's ``matrix_rank`` rule). Σ_B's C-th eigenvalue is zero in exact
    arithmetic; keeping it, as an untruncated pseudo-inverse does when rounding makes it 1e-14
    instead of 0, divides Σ_W by rounding noise and makes NC1 explode.
    """
    centred = stats.centred
    c, d = centred.shape
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    tolerance = max(c, d) * np.finfo(np.float64).eps * (singular[0] if singular.size else 0.0)
    rank = min(c - 1, d, int(np.count_nonzero(singular > tolerance)))
    values = singular[:rank] ** 2 / c
    return BetweenClass(values, vt[:rank].T.copy(), float(np.sum(singular**2) / c))


def train_pass(
    features: np.ndarray, labels: np.ndarray, stats: ClassMeans, between: BetweenClass
) -> TrainPass:
    """NC1, Tr Σ_W, per-class variances and NCC predictions of arrays (see :func:`pass_of`)."""
    split = as_split(features, labels)
    return pass_of(split, collapse_moments(split, stats.num_classes), stats, between)


def pass_of(
    split: Split,
    moments: TrainMoments,
    stats: ClassMeans,
    between: BetweenClass,
    part: str = "features",
) -> TrainPass:
    """NC1 = Tr(Σ_W Σ_B†)/C from the within-class scatter, the variances, NCC on ``split``."""
    n, c = moments.count, stats.num_classes
    vectors = between.vectors
    quadratic = np.einsum("dk,dk->k", vectors, moments.within_scatter @ vectors)  # v_kᵀ N·Σ_W v_k
    nc1 = float(np.sum(quadratic / between.values) / n / c)
    notes = []
    d = moments.dim
    if between.rank == 0:  # Σ_B = 0: NC1 = Tr(Σ_W Σ_B†)/C would read 0, "perfect collapse"
        notes.append("the class means coincide (Sigma_B = 0): NC1 is undefined")
    elif d < c - 1:
        notes.append(
            f"feature dimension D={d} < C-1={c - 1}: the class means cannot form a simplex ETF; "
            f"NC1 uses the top {between.rank} eigenpairs of Sigma_B"
        )
    elif between.rank < c - 1:
        notes.append(
            f"the centred class means span only {between.rank} < C-1={c - 1} dimensions; "
            f"NC1 uses the top {between.rank} eigenpairs of Sigma_B"
        )
    singletons = np.flatnonzero(stats.counts == 1).tolist()
    if singletons:
        notes.append(
            f"classes {singletons[:10]} have one train sample: their within-class variance is 0"
        )
    return TrainPass(
        nc1=nc1 if between.rank > 0 else None,
        trace_within=float(moments.class_within.sum() / n),
        class_variance=moments.class_within / stats.counts,
        ncc_predictions=ncc_predictions(split, stats, part),
        notes=notes,
    )


def ncc_predict(features: np.ndarray, stats: ClassMeans) -> np.ndarray:
    """Nearest class centre of each row of an array (see :func:`ncc_predictions`)."""
    return ncc_predictions(as_split(features), stats)


def ncc_predictions(split: Split, stats: ClassMeans, part: str = "features") -> np.ndarray:
    """Nearest class centre: argmin_c ‖h − μ_c‖² = argmax_c ⟨h − μ_G, m_c⟩ − ‖m_c‖²/2.

    The product runs in float32 (half the time of float64 at ImageNet size); a row whose two
    best scores are closer than twice a bound on the float32 rounding error — γ_D‖s‖·max‖m_c‖
    for the product (γ_D = D·u/(1 − D·u), u the float32 unit roundoff), plus the rounding of
    s = h − μ_G, of m_c and of ‖m_c‖²/2 — is recomputed in float64, so every prediction is the
    float64 formula's.
    """
    centred = stats.centred
    half = 0.5 * np.einsum("cd,cd->c", centred, centred)
    global_mean = stats.global_mean
    centred32, half32 = centred.astype(np.float32), half.astype(np.float32)
    mean32 = global_mean.astype(np.float32)
    d = centred.shape[1]
    gamma = d * FLOAT32_EPS / (1 - d * FLOAT32_EPS)
    top_norm = float(np.sqrt(np.max(np.einsum("cd,cd->c", centred, centred))))
    mean_norm = float(np.linalg.norm(global_mean))

    def piece(chunk) -> tuple[slice, np.ndarray]:
        features = chunk.part(part)
        shifted = np.asarray(features, np.float32) - mean32
        scores = shifted @ centred32.T
        scores -= half32
        predictions = np.argmax(scores, axis=1)
        if scores.shape[1] > 1:
            best_two = np.partition(scores, -2, axis=1)[:, -2:]
            margin = best_two[:, 1].astype(np.float64) - best_two[:, 0]
            shifted_norm = np.linalg.norm(shifted, axis=1).astype(np.float64)
            row_norm = np.linalg.norm(np.asarray(features, np.float32), axis=1).astype(np.float64)
            bound = (gamma + 2 * FLOAT32_EPS) * shifted_norm * top_norm
            bound += 2 * FLOAT32_EPS * (row_norm + mean_norm) * top_norm
            bound += 2 * FLOAT32_EPS * float(half.max())
            close = np.flatnonzero(margin <= 2 * bound)
            if close.size:
                exact = np.asarray(features[close], np.float64) - global_mean
                predictions[close] = np.argmax(exact @ centred.T - half, axis=1)
        return chunk.rows, predictions

    out = np.empty(len(split), np.int64)
    for rows, predictions in map_chunks(split, piece, (part,), CHUNK_ROWS):
        out[rows] = predictions
    return out


def cdnv(stats: ClassMeans, class_variance: np.ndarray) -> float | None:
    """Class-distance normalized variance (Galanti et al., 2022), averaged over pairs c < c':
    (Var_c + Var_c') / (2 ‖μ_c − μ_c'‖²). ``None`` when two class means coincide."""
    from scipy.spatial.distance import pdist  # scipy.spatial: 0.4 s, paid when NC is measured

    sq_distances = pdist(stats.means, "sqeuclidean")
    if np.any(sq_distances == 0):
        return None
    first, second = np.triu_indices(stats.num_classes, k=1)
    return float(np.mean((class_variance[first] + class_variance[second]) / (2 * sq_distances)))


def _unit_rows(vectors: np.ndarray) -> np.ndarray | None:
    norms = np.linalg.norm(vectors, axis=1)
    if np.any(norms == 0):
        return None
    return vectors / norms[:, None]


def equinorm(vectors: np.ndarray) -> float | None:
    """std_c ‖v_c‖ / mean_c ‖v_c‖ (NC2, equal norms)."""
    norms = np.linalg.norm(vectors, axis=1)
    mean = norms.mean()
    return float(norms.std() / mean) if mean > 0 else None


def pairwise_cosines(vectors: np.ndarray) -> np.ndarray | None:
    """cos(v_c, v_c') for the unordered pairs c < c'; ``None`` if a vector is zero."""
    unit = _unit_rows(vectors)
    if unit is None:
        return None
    first, second = np.triu_indices(vectors.shape[0], k=1)
    return (unit @ unit.T)[first, second]


def equiangularity(vectors: np.ndarray) -> float | None:
    """std over pairs of cos(v_c, v_c') (NC2, equal angles)."""
    cosines = pairwise_cosines(vectors)
    return None if cosines is None else float(cosines.std())


def max_angle(vectors: np.ndarray) -> float | None:
    """mean over pairs of |cos(v_c, v_c') + 1/(C − 1)| (NC2, the simplex's maximal angle)."""
    cosines = pairwise_cosines(vectors)
    if cosines is None:
        return None
    return float(np.mean(np.abs(cosines + 1.0 / (vectors.shape[0] - 1))))


def self_duality(weight: np.ndarray, centred_means: np.ndarray) -> float | None:
    """NC3 = ‖W/‖W‖_F − M/‖M‖_F‖²_F with M the centred class means (C×D)."""
    w_norm, m_norm = np.linalg.norm(weight), np.linalg.norm(centred_means)
    if w_norm == 0 or m_norm == 0:
        return None
    return float(np.sum((weight / w_norm - centred_means / m_norm) ** 2))


def ood_orthodev(means: np.ndarray, ood_mean: np.ndarray) -> float | None:
    """NECO's NC5 (Ben Ammar et al., 2024): mean_c |cos(μ_c, μ_G^OOD)|, means as given."""
    unit = _unit_rows(means)
    norm = np.linalg.norm(ood_mean)
    if unit is None or norm == 0:
        return None
    return float(np.mean(np.abs(unit @ (ood_mean / norm))))


def feature_mean(features: np.ndarray | Split, part: str = "features") -> np.ndarray:
    """Mean of a split's features (or of an array), accumulated in float64, streamed."""
    split = features if isinstance(features, Split) else as_split(features)

    def piece(chunk) -> tuple[np.ndarray]:
        return (np.asarray(chunk.part(part), np.float64).sum(axis=0),)

    (total,) = fold_chunks(split, piece, (part,), CHUNK_ROWS)
    return total / len(split)


def share(mask: np.ndarray) -> float:
    return float(np.mean(mask)) if mask.size else 0.0


def class_geometry(stats: ClassMeans, class_variance: np.ndarray, weight: np.ndarray) -> dict:
    """The per-class arrays the assignment's figures show (C×C distances and cosines, C variances).

    ``mean_distances``: ‖μ_c − μ_c'‖; ``within_variance``: mean ‖h − μ_c‖² of class c;
    ``weight_mean_cosines``: cos(w_c, μ_c' − μ_G), classifier rows against centred means.
    """
    c = stats.num_classes
    distances = np.zeros((c, c))
    first, second = np.triu_indices(c, k=1)
    from scipy.spatial.distance import pdist

    distances[first, second] = np.sqrt(pdist(stats.means, "sqeuclidean"))
    distances += distances.T
    unit_w, unit_m = _unit_rows(np.asarray(weight, np.float64)), _unit_rows(stats.centred)
    cosines = unit_w @ unit_m.T if unit_w is not None and unit_m is not None else None
    return {
        "mean_distances": distances,
        "within_variance": np.asarray(class_variance, dtype=np.float64),
        "weight_mean_cosines": cosines,
    }
