"""Neural Collapse metrics as pure functions of arrays, in float64 (docs/neural-collapse.md).

Conventions, written once here and in the docs:

* class means μ_c are train means; the global mean μ_G is the mean of the class means
  (Papyan et al., 2020), so the centred means m_c = μ_c − μ_G sum to zero exactly and Σ_B has
  rank ≤ C − 1 by construction;
* Σ_W = (1/N) Σ_i (h_i − μ_{y_i})(h_i − μ_{y_i})ᵀ, Σ_B = (1/C) Σ_c m_c m_cᵀ;
* NC1 = Tr(Σ_W Σ_B†) / C, Σ_B† built from the top r eigenpairs of Σ_B with
  r = min(C − 1, D, numerical rank of the centred means);
* standard deviations are population ones (ddof = 0); pairs of classes are unordered (c < c').

Σ_W is never formed: Tr(Σ_W Σ_B†) = (1/N) Σ_i ‖Λ^{-1/2} Vᵀ (h_i − μ_{y_i})‖², one pass over the
features in chunks, which is what makes 50,000 × 512 take well under a second.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.distance import pdist

from ncood.errors import NcoodError

CHUNK_ROWS = 8192


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


def class_means(features: np.ndarray, labels: np.ndarray, num_classes: int) -> ClassMeans:
    """Class means in float64; a class without a sample is a user error (its mean is undefined)."""
    if num_classes < 2:
        raise NcoodError(f"Neural Collapse needs at least 2 classes, the head has {num_classes}")
    labels = np.asarray(labels)
    counts = np.bincount(labels, minlength=num_classes)[:num_classes]
    if np.any(counts == 0):
        missing = np.flatnonzero(counts == 0).tolist()
        shown = ", ".join(map(str, missing[:10])) + (" …" if len(missing) > 10 else "")
        raise NcoodError(
            f"{len(missing)} class(es) have no train sample ({shown}); "
            "their class means, hence the NC metrics, are undefined"
        )
    sums = np.zeros((num_classes, features.shape[1]))
    for start in range(0, features.shape[0], CHUNK_ROWS):
        chunk = np.asarray(features[start : start + CHUNK_ROWS], dtype=np.float64)
        one_hot = np.zeros((chunk.shape[0], num_classes))
        one_hot[np.arange(chunk.shape[0]), labels[start : start + CHUNK_ROWS]] = 1.0
        sums += one_hot.T @ chunk
    return ClassMeans(sums / counts[:, None], counts.astype(np.int64))


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
    """NC1, Tr Σ_W, per-class variances and NCC predictions in one chunked pass."""
    n, c = features.shape[0], stats.num_classes
    centred_means = stats.centred
    global_mean = stats.global_mean
    whitening = between.vectors / np.sqrt(between.values)  # D×r: Σ_B† = whitening · whiteningᵀ
    half_sq_norms = 0.5 * np.einsum("cd,cd->c", centred_means, centred_means)
    projected_sum = 0.0
    per_class_sq = np.zeros(c)
    predictions = np.empty(n, dtype=np.int64)
    for start in range(0, n, CHUNK_ROWS):
        stop = min(start + CHUNK_ROWS, n)
        y = labels[start:stop]
        shifted = np.asarray(features[start:stop], dtype=np.float64) - global_mean
        predictions[start:stop] = np.argmax(shifted @ centred_means.T - half_sq_norms, axis=1)
        residual = shifted - centred_means[y]
        projected = residual @ whitening
        projected_sum += float(np.einsum("ij,ij->", projected, projected))
        per_class_sq += np.bincount(
            y, weights=np.einsum("ij,ij->i", residual, residual), minlength=c
        )
    notes = []
    d = features.shape[1]
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
        nc1=projected_sum / n / c if between.rank > 0 else None,
        trace_within=float(per_class_sq.sum() / n),
        class_variance=per_class_sq / stats.counts,
        ncc_predictions=predictions,
        notes=notes,
    )


def ncc_predict(features: np.ndarray, stats: ClassMeans) -> np.ndarray:
    """Nearest class centre: argmin_c ‖h − μ_c‖², computed as argmax_c ⟨h − μ_G, m_c⟩ − ‖m_c‖²/2."""
    centred_means = stats.centred
    half_sq_norms = 0.5 * np.einsum("cd,cd->c", centred_means, centred_means)
    out = np.empty(features.shape[0], dtype=np.int64)
    for start in range(0, features.shape[0], CHUNK_ROWS):
        shifted = np.asarray(features[start : start + CHUNK_ROWS], dtype=np.float64)
        shifted = shifted - stats.global_mean
        out[start : start + CHUNK_ROWS] = np.argmax(
            shifted @ centred_means.T - half_sq_norms, axis=1
        )
    return out


def cdnv(stats: ClassMeans, class_variance: np.ndarray) -> float | None:
    """Class-distance normalised variance (Galanti et al., 2022), averaged over pairs c < c':
    (Var_c + Var_c') / (2 ‖μ_c − μ_c'‖²). ``None`` when two class means coincide."""
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


def feature_mean(features: np.ndarray) -> np.ndarray:
    """Mean of a split's features, accumulated in float64."""
    total = np.zeros(features.shape[1])
    for start in range(0, features.shape[0], CHUNK_ROWS):
        total += np.asarray(features[start : start + CHUNK_ROWS], dtype=np.float64).sum(axis=0)
    return total / features.shape[0]


def network_predictions(logits: np.ndarray) -> np.ndarray:
    """The network's decision: argmax of the dumped logits (ties go to the lowest class)."""
    return np.argmax(logits, axis=1)


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
    distances[first, second] = np.sqrt(pdist(stats.means, "sqeuclidean"))
    distances += distances.T
    unit_w, unit_m = _unit_rows(np.asarray(weight, np.float64)), _unit_rows(stats.centred)
    cosines = unit_w @ unit_m.T if unit_w is not None and unit_m is not None else None
    return {
        "mean_distances": distances,
        "within_variance": np.asarray(class_variance, dtype=np.float64),
        "weight_mean_cosines": cosines,
    }
